//! RFC 5944 registration messages on the wire (UDP port 434), smoltcp style.
//!
//! Two layers per message:
//! - zero-copy views, [`RequestPacket`] and [`ReplyPacket`], with getters
//!   and (for `T: AsMut<[u8]>`) setters; both are a [`Packet`] of one
//!   [`kind`], which holds the accessors of the fields they share;
//! - small `Copy` representations, [`RequestRepr`] and [`ReplyRepr`], with
//!   `parse`, `emit` and `buffer_len`.
//!
//! Extensions (RFC 5944 §1.9-§1.11) follow the fixed part. [`Extensions`]
//! walks them and yields [`ExtensionRepr`]s; [`ExtensionRepr::emit`] writes
//! them. [`parse_request`] and [`parse_reply`] do the whole message and apply
//! the RFC's rule for unknown extensions: a type in 0-127 that is not
//! recognised makes the whole message unusable ([`WireError::UnknownExtension`]),
//! a type in 128-255 that is not recognised is skipped.
//!
//! Once `check_len` has passed, no accessor of a view panics. Every parser
//! returns a typed [`WireError`].
//!
//! Extension forms handled here:
//! - the TLV form of §1.9 (`type | length(8) | data`) for the authentication
//!   extensions 32, 33, 34, the NVSE 134 (RFC 3115) and every skippable type;
//! - the long form of §1.10 (`type | sub-type | length(16) | data`) for the
//!   Generalized Authentication Extension 36 (RFC 3012) and the CVSE 38
//!   (RFC 3115: `type | reserved | length(16) | vendor-id(32) | cvse-type(16) | data`);
//! - the short form of §1.11 (`type | length(8) | sub-type | data`) is a TLV
//!   whose first data byte is a sub-type: [`ExtensionRepr::Skipped`] keeps the
//!   data, so a caller that knows a short-form type reads `data[0]`.

use std::marker::PhantomData;
use std::net::Ipv4Addr;

/// The Mobile IP control port (RFC 5944 §3.1).
pub const MIP_PORT: u16 = 434;

/// The largest registration message roamgate accepts or builds. A
/// registration with a Kerberos AP-REQ is about 1 KiB; nothing legitimate
/// comes near this.
pub const MAX_MESSAGE_LEN: usize = 4096;

/// Message types (RFC 5944 §3.3, §3.4).
pub mod msg_type {
    pub const REGISTRATION_REQUEST: u8 = 1;
    pub const REGISTRATION_REPLY: u8 = 3;
}

/// Extension types used in registration messages (IANA "Mobile IPv4 Numbers").
pub mod ext_type {
    /// Mobile-Home Authentication Extension (RFC 5944 §3.5.2).
    pub const MN_HA_AUTH: u8 = 32;
    /// Mobile-Foreign Authentication Extension (RFC 5944 §3.5.3).
    pub const MN_FA_AUTH: u8 = 33;
    /// Foreign-Home Authentication Extension (RFC 5944 §3.5.4).
    pub const FA_HA_AUTH: u8 = 34;
    /// Generalized Mobile IP Authentication Extension (RFC 3012), long form.
    pub const GENERALIZED_AUTH: u8 = 36;
    /// Critical Vendor/Organization Specific Extension (RFC 3115), long form.
    pub const CVSE: u8 = 38;
    /// Normal Vendor/Organization Specific Extension (RFC 3115).
    pub const NVSE: u8 = 134;
}

/// Registration Request flag bits (RFC 5944 §3.3).
pub mod flags {
    /// Simultaneous bindings.
    pub const S: u8 = 0x80;
    /// Broadcast datagrams.
    pub const B: u8 = 0x40;
    /// Decapsulation by the mobile node (co-located care-of address).
    pub const D: u8 = 0x20;
    /// Minimal encapsulation.
    pub const M: u8 = 0x10;
    /// GRE encapsulation.
    pub const G: u8 = 0x08;
    /// Reserved, sent as zero.
    pub const R: u8 = 0x04;
    /// Reverse tunnelling requested (RFC 3024).
    pub const T: u8 = 0x02;
    /// Reserved, sent as zero, ignored on reception.
    pub const X: u8 = 0x01;
}

/// Registration Reply codes (RFC 5944 §3.4, RFC 3024 §4.2, RFC 3115 §4).
pub mod code {
    pub const ACCEPTED: u8 = 0;
    pub const ACCEPTED_NO_SIMULTANEOUS: u8 = 1;
    pub const REASON_UNSPECIFIED: u8 = 128;
    pub const ADMINISTRATIVELY_PROHIBITED: u8 = 129;
    pub const INSUFFICIENT_RESOURCES: u8 = 130;
    pub const MN_FAILED_AUTHENTICATION: u8 = 131;
    pub const FA_FAILED_AUTHENTICATION: u8 = 132;
    pub const IDENTIFICATION_MISMATCH: u8 = 133;
    pub const POORLY_FORMED_REQUEST: u8 = 134;
    pub const TOO_MANY_BINDINGS: u8 = 135;
    pub const UNKNOWN_HOME_AGENT: u8 = 136;
    /// RFC 3024: requested reverse tunnel unavailable.
    pub const REVERSE_TUNNEL_UNAVAILABLE: u8 = 137;
    /// RFC 3024: reverse tunnel is mandatory and 'T' bit not set.
    pub const REVERSE_TUNNEL_MANDATORY: u8 = 138;
    /// RFC 3024: requested encapsulation unavailable.
    pub const ENCAPSULATION_UNAVAILABLE: u8 = 139;
    /// RFC 3115: unsupported Vendor-ID or unable to interpret the
    /// Vendor-CVSE-Type in the CVSE sent by the mobile node to the home agent.
    pub const UNSUPPORTED_CVSE_FROM_MN: u8 = 140;

    /// Whether `c` means the registration was accepted.
    pub fn is_accepted(c: u8) -> bool {
        c == ACCEPTED || c == ACCEPTED_NO_SIMULTANEOUS
    }
}

/// Why a registration message could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("message truncated: {len} bytes, the fixed part needs {need}")]
    Truncated { len: usize, need: usize },
    #[error("message of {0} bytes exceeds the {MAX_MESSAGE_LEN}-byte limit")]
    Oversized(usize),
    #[error("message type {0} is not a registration {1}")]
    WrongType(u8, &'static str),
    #[error("extension at offset {offset} runs past the end of the message")]
    ExtensionTruncated { offset: usize },
    #[error("extension type {ty} at offset {offset} has an impossible length {len}")]
    BadExtensionLength { ty: u8, offset: usize, len: usize },
    #[error("unrecognised non-skippable extension type {ty} at offset {offset}")]
    UnknownExtension { ty: u8, offset: usize },
    #[error("extension data too long to encode ({0} bytes)")]
    ExtensionTooLong(usize),
}

mod field {
    pub type Field = core::ops::Range<usize>;
    // The part both messages share (RFC 5944 §3.3, §3.4).
    pub const TYPE: usize = 0;
    /// Flags in a request, Code in a reply.
    pub const FLAGS_OR_CODE: usize = 1;
    pub const LIFETIME: Field = 2..4;
    pub const HOME_ADDRESS: Field = 4..8;
    pub const HOME_AGENT: Field = 8..12;
    // Request: the care-of address, then Identification.
    pub const CARE_OF: Field = 12..16;
    pub const REQ_IDENTIFICATION: Field = 16..24;
    // Reply: Identification right after the home agent.
    pub const REP_IDENTIFICATION: Field = 12..20;
}

/// The two registration messages, as type parameters of [`Packet`]: what
/// tells their fixed parts apart.
pub mod kind {
    use super::field;

    mod sealed {
        pub trait Sealed {}
        impl Sealed for super::Request {}
        impl Sealed for super::Reply {}
    }

    /// A registration message kind; sealed, the two are [`Request`] and
    /// [`Reply`].
    pub trait Kind: sealed::Sealed {
        /// The Type field's value.
        const MSG_TYPE: u8;
        /// How [`WireError::WrongType`](super::WireError::WrongType) names it.
        const NAME: &'static str;
        /// Where Identification sits; the fixed part ends with it.
        const IDENTIFICATION: core::ops::Range<usize>;
        /// Length of the fixed part, derived from its last field.
        const HEADER_LEN: usize = Self::IDENTIFICATION.end;
    }

    /// A Registration Request (RFC 5944 §3.3).
    #[derive(Debug, Clone, Copy)]
    pub enum Request {}

    /// A Registration Reply (RFC 5944 §3.4).
    #[derive(Debug, Clone, Copy)]
    pub enum Reply {}

    impl Kind for Request {
        const MSG_TYPE: u8 = super::msg_type::REGISTRATION_REQUEST;
        const NAME: &'static str = "request";
        const IDENTIFICATION: core::ops::Range<usize> = field::REQ_IDENTIFICATION;
    }

    impl Kind for Reply {
        const MSG_TYPE: u8 = super::msg_type::REGISTRATION_REPLY;
        const NAME: &'static str = "reply";
        const IDENTIFICATION: core::ops::Range<usize> = field::REP_IDENTIFICATION;
    }
}

use kind::Kind;

/// Length of a Registration Request's fixed part.
pub const REQUEST_HEADER_LEN: usize = kind::Request::HEADER_LEN;
/// Length of a Registration Reply's fixed part.
pub const REPLY_HEADER_LEN: usize = kind::Reply::HEADER_LEN;

fn addr(b: &[u8], f: field::Field) -> Ipv4Addr {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[f]);
    Ipv4Addr::from(a)
}

fn u64_at(b: &[u8], f: field::Field) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[f]);
    u64::from_be_bytes(a)
}

fn u16_at(b: &[u8], f: field::Field) -> u16 {
    u16::from_be_bytes([b[f.start], b[f.start + 1]])
}

// ---------------------------------------------------------------------------
// The fixed part of either message

/// A read/write view of a registration message of kind `K`: the accessors
/// of the fields both kinds share live here, [`RequestPacket`] and
/// [`ReplyPacket`] add their own.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>, K: Kind> {
    buffer: T,
    kind: PhantomData<K>,
}

/// A read/write view of a Registration Request.
pub type RequestPacket<T> = Packet<T, kind::Request>;
/// A read/write view of a Registration Reply.
pub type ReplyPacket<T> = Packet<T, kind::Reply>;

impl<T: AsRef<[u8]>, K: Kind> Packet<T, K> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self {
            buffer,
            kind: PhantomData,
        }
    }

    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// One branch per invariant: the fixed part fits, the whole is within
    /// [`MAX_MESSAGE_LEN`].
    pub fn check_len(&self) -> Result<(), WireError> {
        let len = self.buffer.as_ref().len();
        if len < K::HEADER_LEN {
            return Err(WireError::Truncated {
                len,
                need: K::HEADER_LEN,
            });
        }
        if len > MAX_MESSAGE_LEN {
            return Err(WireError::Oversized(len));
        }
        Ok(())
    }

    /// The Type field names this kind of message.
    pub fn check_type(&self) -> Result<(), WireError> {
        match self.msg_type() {
            t if t == K::MSG_TYPE => Ok(()),
            t => Err(WireError::WrongType(t, K::NAME)),
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn msg_type(&self) -> u8 {
        self.buffer.as_ref()[field::TYPE]
    }
    pub fn lifetime(&self) -> u16 {
        u16_at(self.buffer.as_ref(), field::LIFETIME)
    }
    pub fn home_address(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::HOME_ADDRESS)
    }
    pub fn home_agent(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::HOME_AGENT)
    }
    pub fn identification(&self) -> u64 {
        u64_at(self.buffer.as_ref(), K::IDENTIFICATION)
    }
    /// The fixed part (type through Identification).
    pub fn header(&self) -> &[u8] {
        &self.buffer.as_ref()[..K::HEADER_LEN]
    }
    /// The extensions, as bytes.
    pub fn extensions(&self) -> &[u8] {
        &self.buffer.as_ref()[K::HEADER_LEN..]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>, K: Kind> Packet<T, K> {
    pub fn set_msg_type(&mut self, v: u8) {
        self.buffer.as_mut()[field::TYPE] = v;
    }
    pub fn set_lifetime(&mut self, v: u16) {
        self.buffer.as_mut()[field::LIFETIME].copy_from_slice(&v.to_be_bytes());
    }
    pub fn set_home_address(&mut self, v: Ipv4Addr) {
        self.buffer.as_mut()[field::HOME_ADDRESS].copy_from_slice(&v.octets());
    }
    pub fn set_home_agent(&mut self, v: Ipv4Addr) {
        self.buffer.as_mut()[field::HOME_AGENT].copy_from_slice(&v.octets());
    }
    pub fn set_identification(&mut self, v: u64) {
        self.buffer.as_mut()[K::IDENTIFICATION].copy_from_slice(&v.to_be_bytes());
    }

    /// Writes this kind's Type and the fields both kinds share; `byte1` is
    /// the request's Flags or the reply's Code.
    fn emit_common(
        &mut self,
        byte1: u8,
        lifetime: u16,
        home_address: Ipv4Addr,
        home_agent: Ipv4Addr,
        identification: u64,
    ) {
        self.set_msg_type(K::MSG_TYPE);
        self.buffer.as_mut()[field::FLAGS_OR_CODE] = byte1;
        self.set_lifetime(lifetime);
        self.set_home_address(home_address);
        self.set_home_agent(home_agent);
        self.set_identification(identification);
    }
}

/// The extensions of a message of kind `K` whose fixed part has been checked.
fn extension_list<K: Kind>(bytes: &[u8]) -> Result<ExtensionList<'_>, WireError> {
    Extensions::new(&bytes[K::HEADER_LEN..], K::HEADER_LEN).collect()
}

// ---------------------------------------------------------------------------
// Registration Request

impl<T: AsRef<[u8]>> RequestPacket<T> {
    pub fn flags(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS_OR_CODE]
    }
    pub fn care_of_address(&self) -> Ipv4Addr {
        addr(self.buffer.as_ref(), field::CARE_OF)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> RequestPacket<T> {
    pub fn set_flags(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS_OR_CODE] = v;
    }
    pub fn set_care_of_address(&mut self, v: Ipv4Addr) {
        self.buffer.as_mut()[field::CARE_OF].copy_from_slice(&v.octets());
    }
}

/// The fixed part of a Registration Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRepr {
    /// The S B D M G r T x bits ([`flags`]).
    pub flags: u8,
    /// Seconds; 0 deregisters, 0xffff is infinity.
    pub lifetime: u16,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub care_of_address: Ipv4Addr,
    pub identification: u64,
}

impl RequestRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &RequestPacket<T>) -> Result<Self, WireError> {
        p.check_len()?;
        p.check_type()?;
        Ok(Self {
            flags: p.flags(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            care_of_address: p.care_of_address(),
            identification: p.identification(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        REQUEST_HEADER_LEN
    }

    /// Writes the fixed part; the buffer must be at least `buffer_len()`.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut RequestPacket<T>) {
        p.emit_common(
            self.flags,
            self.lifetime,
            self.home_address,
            self.home_agent,
            self.identification,
        );
        p.set_care_of_address(self.care_of_address);
    }

    /// The fixed part as bytes.
    pub fn to_bytes(&self) -> [u8; REQUEST_HEADER_LEN] {
        let mut b = [0u8; REQUEST_HEADER_LEN];
        self.emit(&mut RequestPacket::new_unchecked(&mut b[..]));
        b
    }

    pub fn has(&self, flag: u8) -> bool {
        self.flags & flag != 0
    }

    /// A deregistration: lifetime zero, or the care-of address is the home
    /// address (RFC 5944 §3.6.1.1).
    pub fn is_deregistration(&self) -> bool {
        self.lifetime == 0 || self.care_of_address == self.home_address
    }
}

// ---------------------------------------------------------------------------
// Registration Reply

impl<T: AsRef<[u8]>> ReplyPacket<T> {
    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::FLAGS_OR_CODE]
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> ReplyPacket<T> {
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::FLAGS_OR_CODE] = v;
    }
}

/// The fixed part of a Registration Reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReplyRepr {
    /// [`code`].
    pub code: u8,
    pub lifetime: u16,
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub identification: u64,
}

impl ReplyRepr {
    pub fn parse<T: AsRef<[u8]>>(p: &ReplyPacket<T>) -> Result<Self, WireError> {
        p.check_len()?;
        p.check_type()?;
        Ok(Self {
            code: p.code(),
            lifetime: p.lifetime(),
            home_address: p.home_address(),
            home_agent: p.home_agent(),
            identification: p.identification(),
        })
    }

    pub const fn buffer_len(&self) -> usize {
        REPLY_HEADER_LEN
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(&self, p: &mut ReplyPacket<T>) {
        p.emit_common(
            self.code,
            self.lifetime,
            self.home_address,
            self.home_agent,
            self.identification,
        );
    }

    pub fn to_bytes(&self) -> [u8; REPLY_HEADER_LEN] {
        let mut b = [0u8; REPLY_HEADER_LEN];
        self.emit(&mut ReplyPacket::new_unchecked(&mut b[..]));
        b
    }
}

// ---------------------------------------------------------------------------
// Extensions

/// Bytes before the SPI in a TLV authentication extension (type, length).
pub const AUTH_EXT_HEADER_LEN: usize = 2;
/// Bytes from the start of an authentication extension through its SPI: the
/// MN-HA authenticator covers the message up to here (RFC 5944 §3.5.1).
pub const AUTH_EXT_THROUGH_SPI: usize = AUTH_EXT_HEADER_LEN + 4;
/// The CVSE header: type, reserved, length(16), vendor-id(32), cvse-type(16).
pub const CVSE_HEADER_LEN: usize = 10;
/// The NVSE header: type, length, reserved(16), vendor-id(32), nvse-type(16).
pub const NVSE_HEADER_LEN: usize = 10;

/// One extension, borrowed from the message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtensionRepr<'a> {
    /// Types 32, 33, 34: `type | length | SPI(32) | authenticator`.
    Auth {
        ty: u8,
        spi: u32,
        authenticator: &'a [u8],
    },
    /// Type 38 (RFC 3115).
    Cvse {
        vendor_id: u32,
        cvse_type: u16,
        data: &'a [u8],
    },
    /// Type 134 (RFC 3115).
    Nvse {
        vendor_id: u32,
        nvse_type: u16,
        data: &'a [u8],
    },
    /// Type 36 (RFC 3012): `type | subtype | length(16) | SPI | authenticator`.
    GeneralizedAuth {
        subtype: u8,
        spi: u32,
        authenticator: &'a [u8],
    },
    /// A skippable (128-255) type roamgate does not interpret; `data` is
    /// what follows the length byte (a short-form extension's sub-type is
    /// `data[0]`).
    Skipped { ty: u8, data: &'a [u8] },
}

impl<'a> ExtensionRepr<'a> {
    pub fn ty(&self) -> u8 {
        match self {
            ExtensionRepr::Auth { ty, .. } | ExtensionRepr::Skipped { ty, .. } => *ty,
            ExtensionRepr::Cvse { .. } => ext_type::CVSE,
            ExtensionRepr::Nvse { .. } => ext_type::NVSE,
            ExtensionRepr::GeneralizedAuth { .. } => ext_type::GENERALIZED_AUTH,
        }
    }

    /// Parses the extension at the start of `buf` (which starts `offset`
    /// bytes into the message, for error messages). Returns it and its
    /// total length.
    pub fn parse(buf: &'a [u8], offset: usize) -> Result<(Self, usize), WireError> {
        let truncated = WireError::ExtensionTruncated { offset };
        let ty = *buf.first().ok_or(truncated)?;
        match ty {
            ext_type::GENERALIZED_AUTH | ext_type::CVSE => {
                // Long form (§1.10): type, sub-type/reserved, length(16).
                if buf.len() < 4 {
                    return Err(truncated);
                }
                let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
                let total = 4 + len;
                let body = buf.get(4..total).ok_or(truncated)?;
                let ext = if ty == ext_type::CVSE {
                    if len < CVSE_HEADER_LEN - 4 {
                        return Err(WireError::BadExtensionLength { ty, offset, len });
                    }
                    ExtensionRepr::Cvse {
                        vendor_id: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        cvse_type: u16::from_be_bytes([body[4], body[5]]),
                        data: &body[6..],
                    }
                } else {
                    if len < 4 {
                        return Err(WireError::BadExtensionLength { ty, offset, len });
                    }
                    ExtensionRepr::GeneralizedAuth {
                        subtype: buf[1],
                        spi: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        authenticator: &body[4..],
                    }
                };
                Ok((ext, total))
            }
            ext_type::MN_HA_AUTH | ext_type::MN_FA_AUTH | ext_type::FA_HA_AUTH => {
                let (body, total) = tlv(buf, offset)?;
                if body.len() < 4 {
                    return Err(WireError::BadExtensionLength {
                        ty,
                        offset,
                        len: body.len(),
                    });
                }
                Ok((
                    ExtensionRepr::Auth {
                        ty,
                        spi: u32::from_be_bytes([body[0], body[1], body[2], body[3]]),
                        authenticator: &body[4..],
                    },
                    total,
                ))
            }
            ext_type::NVSE => {
                let (body, total) = tlv(buf, offset)?;
                if body.len() < NVSE_HEADER_LEN - 2 {
                    return Err(WireError::BadExtensionLength {
                        ty,
                        offset,
                        len: body.len(),
                    });
                }
                Ok((
                    ExtensionRepr::Nvse {
                        vendor_id: u32::from_be_bytes([body[2], body[3], body[4], body[5]]),
                        nvse_type: u16::from_be_bytes([body[6], body[7]]),
                        data: &body[8..],
                    },
                    total,
                ))
            }
            128..=255 => {
                let (body, total) = tlv(buf, offset)?;
                Ok((ExtensionRepr::Skipped { ty, data: body }, total))
            }
            _ => Err(WireError::UnknownExtension { ty, offset }),
        }
    }

    /// The encoded length.
    pub fn buffer_len(&self) -> usize {
        match self {
            ExtensionRepr::Auth { authenticator, .. } => 6 + authenticator.len(),
            ExtensionRepr::Cvse { data, .. } => CVSE_HEADER_LEN + data.len(),
            ExtensionRepr::Nvse { data, .. } => NVSE_HEADER_LEN + data.len(),
            ExtensionRepr::GeneralizedAuth { authenticator, .. } => 8 + authenticator.len(),
            ExtensionRepr::Skipped { data, .. } => 2 + data.len(),
        }
    }

    /// Appends the encoding to `out`.
    pub fn emit(&self, out: &mut Vec<u8>) -> Result<(), WireError> {
        let len = self.buffer_len();
        let short_limit = 2 + usize::from(u8::MAX);
        let long_limit = 4 + usize::from(u16::MAX);
        match self {
            ExtensionRepr::Auth {
                ty,
                spi,
                authenticator,
            } => {
                if len > short_limit {
                    return Err(WireError::ExtensionTooLong(len));
                }
                out.push(*ty);
                out.push((len - 2) as u8);
                out.extend_from_slice(&spi.to_be_bytes());
                out.extend_from_slice(authenticator);
            }
            ExtensionRepr::Cvse {
                vendor_id,
                cvse_type,
                data,
            } => {
                if len > long_limit {
                    return Err(WireError::ExtensionTooLong(len));
                }
                out.push(ext_type::CVSE);
                out.push(0);
                out.extend_from_slice(&((len - 4) as u16).to_be_bytes());
                out.extend_from_slice(&vendor_id.to_be_bytes());
                out.extend_from_slice(&cvse_type.to_be_bytes());
                out.extend_from_slice(data);
            }
            ExtensionRepr::Nvse {
                vendor_id,
                nvse_type,
                data,
            } => {
                if len > short_limit {
                    return Err(WireError::ExtensionTooLong(len));
                }
                out.push(ext_type::NVSE);
                out.push((len - 2) as u8);
                out.extend_from_slice(&[0, 0]);
                out.extend_from_slice(&vendor_id.to_be_bytes());
                out.extend_from_slice(&nvse_type.to_be_bytes());
                out.extend_from_slice(data);
            }
            ExtensionRepr::GeneralizedAuth {
                subtype,
                spi,
                authenticator,
            } => {
                if len > long_limit {
                    return Err(WireError::ExtensionTooLong(len));
                }
                out.push(ext_type::GENERALIZED_AUTH);
                out.push(*subtype);
                out.extend_from_slice(&((len - 4) as u16).to_be_bytes());
                out.extend_from_slice(&spi.to_be_bytes());
                out.extend_from_slice(authenticator);
            }
            ExtensionRepr::Skipped { ty, data } => {
                if len > short_limit {
                    return Err(WireError::ExtensionTooLong(len));
                }
                out.push(*ty);
                out.push((len - 2) as u8);
                out.extend_from_slice(data);
            }
        }
        Ok(())
    }
}

/// A TLV (§1.9): returns the data and the total length.
fn tlv(buf: &[u8], offset: usize) -> Result<(&[u8], usize), WireError> {
    let len = usize::from(*buf.get(1).ok_or(WireError::ExtensionTruncated { offset })?);
    let total = 2 + len;
    let body = buf
        .get(2..total)
        .ok_or(WireError::ExtensionTruncated { offset })?;
    Ok((body, total))
}

/// An iterator over the extensions of a message. Yields each extension with
/// its offset from the start of the message; stops after the first error.
#[derive(Debug, Clone)]
pub struct Extensions<'a> {
    buf: &'a [u8],
    /// Offset of `buf` in the message.
    base: usize,
    pos: usize,
    failed: bool,
}

impl<'a> Extensions<'a> {
    /// Extensions in `buf`, which starts `base` bytes into the message.
    pub fn new(buf: &'a [u8], base: usize) -> Self {
        Self {
            buf,
            base,
            pos: 0,
            failed: false,
        }
    }
}

impl<'a> Iterator for Extensions<'a> {
    type Item = Result<(usize, ExtensionRepr<'a>), WireError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.failed || self.pos >= self.buf.len() {
            return None;
        }
        let offset = self.base + self.pos;
        match ExtensionRepr::parse(&self.buf[self.pos..], offset) {
            Ok((ext, len)) => {
                self.pos += len;
                Some(Ok((offset, ext)))
            }
            Err(e) => {
                self.failed = true;
                Some(Err(e))
            }
        }
    }
}

/// A whole message's extensions, in order, with their offsets.
pub type ExtensionList<'a> = Vec<(usize, ExtensionRepr<'a>)>;

/// A parsed Registration Request: the fixed part and its extensions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub repr: RequestRepr,
    pub extensions: ExtensionList<'a>,
}

/// A parsed Registration Reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply<'a> {
    pub repr: ReplyRepr,
    pub extensions: ExtensionList<'a>,
}

/// The first Mobile-Home Authentication Extension and its offset.
pub fn find_mn_ha_auth<'a>(exts: &ExtensionList<'a>) -> Option<(usize, u32, &'a [u8])> {
    exts.iter().find_map(|(off, e)| match e {
        ExtensionRepr::Auth {
            ty: ext_type::MN_HA_AUTH,
            spi,
            authenticator,
        } => Some((*off, *spi, *authenticator)),
        _ => None,
    })
}

/// Parses a whole Registration Request (fixed part and extensions).
pub fn parse_request(bytes: &[u8]) -> Result<Request<'_>, WireError> {
    let repr = RequestRepr::parse(&RequestPacket::new_checked(bytes)?)?;
    let extensions = extension_list::<kind::Request>(bytes)?;
    Ok(Request { repr, extensions })
}

/// Parses a whole Registration Reply.
pub fn parse_reply(bytes: &[u8]) -> Result<Reply<'_>, WireError> {
    let repr = ReplyRepr::parse(&ReplyPacket::new_checked(bytes)?)?;
    let extensions = extension_list::<kind::Reply>(bytes)?;
    Ok(Reply { repr, extensions })
}

#[cfg(test)]
mod tests {
    use super::*;

    // A Registration Request: flags S|T, lifetime 300, home 10.0.0.5,
    // HA 10.0.0.1, CoA 192.0.2.7, Identification 0x0102030405060708, then an
    // MN-HA auth extension with SPI 256 and a 16-byte authenticator.
    static REQUEST: [u8; 46] = [
        0x01, 0x82, 0x01, 0x2c, // type, flags, lifetime
        0x0a, 0x00, 0x00, 0x05, // home address
        0x0a, 0x00, 0x00, 0x01, // home agent
        0xc0, 0x00, 0x02, 0x07, // care-of
        0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, // identification
        0x20, 0x14, 0x00, 0x00, 0x01, 0x00, // MHAE: type 32, len 20, SPI 256
        0xa0, 0xa1, 0xa2, 0xa3, 0xa4, 0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xab, 0xac, 0xad, 0xae,
        0xaf,
    ];

    static REPLY: [u8; 20] = [
        0x03, 0x85, 0x00, 0x00, // type, code 133, lifetime 0
        0x0a, 0x00, 0x00, 0x05, 0x0a, 0x00, 0x00, 0x01, // home, HA
        0xe0, 0x00, 0x00, 0x01, 0x05, 0x06, 0x07, 0x08, // identification
    ];

    fn request_repr() -> RequestRepr {
        RequestRepr {
            flags: flags::S | flags::T,
            lifetime: 300,
            home_address: Ipv4Addr::new(10, 0, 0, 5),
            home_agent: Ipv4Addr::new(10, 0, 0, 1),
            care_of_address: Ipv4Addr::new(192, 0, 2, 7),
            identification: 0x0102_0304_0506_0708,
        }
    }

    #[test]
    fn request_deconstruct() {
        let p = RequestPacket::new_checked(&REQUEST[..]).unwrap();
        assert_eq!(p.msg_type(), 1);
        assert_eq!(p.flags(), 0x82);
        assert_eq!(p.lifetime(), 300);
        assert_eq!(p.home_address(), Ipv4Addr::new(10, 0, 0, 5));
        assert_eq!(p.home_agent(), Ipv4Addr::new(10, 0, 0, 1));
        assert_eq!(p.care_of_address(), Ipv4Addr::new(192, 0, 2, 7));
        assert_eq!(p.identification(), 0x0102_0304_0506_0708);
        assert_eq!(p.extensions().len(), 22);
    }

    #[test]
    fn request_construct() {
        let mut buf = [0xffu8; REQUEST_HEADER_LEN];
        let mut p = RequestPacket::new_unchecked(&mut buf[..]);
        p.set_msg_type(1);
        p.set_flags(0x82);
        p.set_lifetime(300);
        p.set_home_address(Ipv4Addr::new(10, 0, 0, 5));
        p.set_home_agent(Ipv4Addr::new(10, 0, 0, 1));
        p.set_care_of_address(Ipv4Addr::new(192, 0, 2, 7));
        p.set_identification(0x0102_0304_0506_0708);
        assert_eq!(&buf[..], &REQUEST[..REQUEST_HEADER_LEN]);
    }

    #[test]
    fn request_parse() {
        let r = parse_request(&REQUEST).unwrap();
        assert_eq!(r.repr, request_repr());
        assert_eq!(r.extensions.len(), 1);
        let (off, spi, auth) = find_mn_ha_auth(&r.extensions).unwrap();
        assert_eq!((off, spi), (24, 256));
        assert_eq!(auth, &REQUEST[30..]);
        assert!(!r.repr.is_deregistration());
    }

    #[test]
    fn request_emit() {
        let repr = request_repr();
        let mut out = repr.to_bytes().to_vec();
        ExtensionRepr::Auth {
            ty: ext_type::MN_HA_AUTH,
            spi: 256,
            authenticator: &REQUEST[30..],
        }
        .emit(&mut out)
        .unwrap();
        assert_eq!(out, REQUEST);
        assert_eq!(repr.buffer_len(), 24);
    }

    #[test]
    fn reply_deconstruct_construct_parse_emit() {
        let p = ReplyPacket::new_checked(&REPLY[..]).unwrap();
        assert_eq!(p.code(), 133);
        assert_eq!(p.identification(), 0xe000_0001_0506_0708);
        let repr = ReplyRepr::parse(&p).unwrap();
        assert_eq!(
            repr,
            ReplyRepr {
                code: code::IDENTIFICATION_MISMATCH,
                lifetime: 0,
                home_address: Ipv4Addr::new(10, 0, 0, 5),
                home_agent: Ipv4Addr::new(10, 0, 0, 1),
                identification: 0xe000_0001_0506_0708,
            }
        );
        assert_eq!(repr.to_bytes(), REPLY);
        assert!(parse_reply(&REPLY).unwrap().extensions.is_empty());
    }

    #[test]
    fn truncated_and_oversized() {
        for n in 0..REQUEST_HEADER_LEN {
            assert_eq!(
                parse_request(&REQUEST[..n]).unwrap_err(),
                WireError::Truncated { len: n, need: 24 }
            );
        }
        for n in 0..REPLY_HEADER_LEN {
            assert!(matches!(
                parse_reply(&REPLY[..n]),
                Err(WireError::Truncated { .. })
            ));
        }
        // Every cut inside the extension is a truncated extension.
        for n in REQUEST_HEADER_LEN + 1..REQUEST.len() {
            assert_eq!(
                parse_request(&REQUEST[..n]).unwrap_err(),
                WireError::ExtensionTruncated { offset: 24 },
                "cut at {n}"
            );
        }
        let mut big = REQUEST.to_vec();
        big.resize(MAX_MESSAGE_LEN + 1, 0x80);
        assert_eq!(
            parse_request(&big).unwrap_err(),
            WireError::Oversized(MAX_MESSAGE_LEN + 1)
        );
    }

    #[test]
    fn wrong_type() {
        let mut b = REQUEST;
        b[0] = 3;
        assert_eq!(
            parse_request(&b).unwrap_err(),
            WireError::WrongType(3, "request")
        );
        assert!(matches!(
            parse_reply(&REQUEST),
            Err(WireError::WrongType(1, "reply"))
        ));
    }

    #[test]
    fn unknown_extensions_follow_the_rfc_ranges() {
        // 128-255 unknown: skipped (kept as Skipped), parsing continues.
        let mut b = REQUEST[..24].to_vec();
        b.extend_from_slice(&[200, 3, 1, 2, 3]);
        b.extend_from_slice(&REQUEST[24..]);
        let r = parse_request(&b).unwrap();
        assert_eq!(
            r.extensions[0],
            (
                24,
                ExtensionRepr::Skipped {
                    ty: 200,
                    data: &[1, 2, 3]
                }
            )
        );
        assert_eq!(find_mn_ha_auth(&r.extensions).unwrap().0, 29);
        // 0-127 unknown: the message is unusable.
        let mut b = REQUEST[..24].to_vec();
        b.extend_from_slice(&[100, 3, 1, 2, 3]);
        assert_eq!(
            parse_request(&b).unwrap_err(),
            WireError::UnknownExtension {
                ty: 100,
                offset: 24
            }
        );
    }

    #[test]
    fn cvse_and_nvse_round_trip() {
        let data = [9u8; 300];
        let exts = [
            ExtensionRepr::Cvse {
                vendor_id: 32473,
                cvse_type: 1,
                data: &data,
            },
            ExtensionRepr::Nvse {
                vendor_id: 32473,
                nvse_type: 7,
                data: &data[..5],
            },
            ExtensionRepr::GeneralizedAuth {
                subtype: 1,
                spi: 0x1234,
                authenticator: &data[..16],
            },
        ];
        let mut out = request_repr().to_bytes().to_vec();
        for e in &exts {
            e.emit(&mut out).unwrap();
        }
        // CVSE long form: type 38, reserved, length 16 bit = 4 + 2 + 300.
        assert_eq!(&out[24..34], &[38, 0, 0x01, 0x32, 0, 0, 0x7e, 0xd9, 0, 1]);
        let r = parse_request(&out).unwrap();
        let got: Vec<_> = r.extensions.iter().map(|(_, e)| *e).collect();
        assert_eq!(got, exts);
        assert_eq!(
            out.len(),
            24 + exts.iter().map(|e| e.buffer_len()).sum::<usize>()
        );
    }

    #[test]
    fn impossible_lengths() {
        let mut b = REQUEST[..24].to_vec();
        b.extend_from_slice(&[32, 3, 0, 0, 1]);
        assert_eq!(
            parse_request(&b).unwrap_err(),
            WireError::BadExtensionLength {
                ty: 32,
                offset: 24,
                len: 3
            }
        );
        let mut b = REQUEST[..24].to_vec();
        b.extend_from_slice(&[38, 0, 0, 2, 0, 0]);
        assert!(matches!(
            parse_request(&b),
            Err(WireError::BadExtensionLength { ty: 38, .. })
        ));
        let too_long = [0u8; 300];
        let e = ExtensionRepr::Auth {
            ty: 32,
            spi: 1,
            authenticator: &too_long,
        };
        assert_eq!(
            e.emit(&mut Vec::new()).unwrap_err(),
            WireError::ExtensionTooLong(306)
        );
    }

    #[test]
    fn deregistration_forms() {
        let mut r = request_repr();
        assert!(!r.is_deregistration());
        r.lifetime = 0;
        assert!(r.is_deregistration());
        r.lifetime = 10;
        r.care_of_address = r.home_address;
        assert!(r.is_deregistration());
    }
}
