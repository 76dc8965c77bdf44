//! Attach frames on the wire (docs/attach.md §2-§4), smoltcp style.
//!
//! Two frame kinds, each a UDP payload:
//! - a unit frame ([`Frame`], [`Repr`]): between the unit and its base
//!   station, and carried inside a relay frame between the base station and
//!   the proxy manager. Every unit frame has the same 32-byte fixed part
//!   (version, type, reserved, identity code, nonce, and four bytes whose
//!   meaning depends on the type), then up to two length-delimited
//!   Kerberos messages;
//! - a relay frame ([`RelayFrame`], [`RelayRepr`]): the base station's
//!   envelope, which adds its id, its domain and the unit's link address to
//!   the unit frame it carries.
//!
//! Once `check_len` has passed, no accessor of a view panics (every range
//! it slices was checked against the buffer). Every parser returns a typed
//! [`WireError`].

use std::net::{Ipv4Addr, SocketAddrV4};

use roamgate_directory::IdentityCode;

/// The UDP port base stations and proxy managers listen on by default.
/// Unassigned by IANA; configurable in every role.
pub const ATTACH_PORT: u16 = 4340;

/// The only version this crate speaks.
pub const VERSION: u8 = 1;

/// The largest datagram (relay frame included) roamgate accepts or builds.
/// A switch-on with AES-256 tickets is about 1.5 KiB; nothing legitimate
/// comes near this.
pub const MAX_FRAME_LEN: usize = 4096;

/// The longest domain name a relay frame carries.
pub const MAX_DOMAIN_LEN: usize = 63;

/// The largest plaintext of a status answer's KRB-PRIV.
pub const STATUS_BODY_LEN: usize = field::STATUS_END;

/// Why a frame could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("frame truncated: {len} bytes, at least {need} needed")]
    Truncated { len: usize, need: usize },
    #[error("frame of {0} bytes exceeds the {MAX_FRAME_LEN}-byte limit")]
    Oversized(usize),
    #[error("attach version {0} is not supported (this end speaks version {VERSION})")]
    BadVersion(u8),
    #[error("unknown attach message type {0}")]
    UnknownType(u8),
    #[error("the lengths in the frame add up to {declared} bytes, the datagram has {len}")]
    LengthMismatch { declared: usize, len: usize },
    #[error("a {0} must carry a {1}")]
    MissingPart(MessageType, &'static str),
    #[error("a {0} carries no {1}, but this one does")]
    UnexpectedPart(MessageType, &'static str),
    #[error("a relay frame cannot carry another relay frame")]
    NestedRelay,
    #[error(
        "relay frame domain of {0} bytes: it must be 1 to {MAX_DOMAIN_LEN} printable ASCII bytes"
    )]
    BadDomain(usize),
    #[error("a status body is {STATUS_BODY_LEN} bytes, got {0}")]
    BadStatusBody(usize),
    #[error("unknown proxy state {0} in a status body")]
    UnknownState(u8),
    #[error("reserved bytes at offset {offset} are not zero (a newer version would change the version byte)")]
    Reserved { offset: usize },
    #[error("a {0} of {1} bytes cannot be encoded")]
    TooLong(&'static str, usize),
}

/// The message types of unit frames, and the relay envelope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    SwitchOn = 1,
    SwitchOnAck = 2,
    Refused = 3,
    SwitchOff = 4,
    SwitchOffAck = 5,
    StatusRequest = 6,
    StatusAnswer = 7,
    ProxyRequest = 8,
    ProxyAnswer = 9,
    Relay = 0x80,
}

impl MessageType {
    pub fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            1 => Self::SwitchOn,
            2 => Self::SwitchOnAck,
            3 => Self::Refused,
            4 => Self::SwitchOff,
            5 => Self::SwitchOffAck,
            6 => Self::StatusRequest,
            7 => Self::StatusAnswer,
            8 => Self::ProxyRequest,
            9 => Self::ProxyAnswer,
            0x80 => Self::Relay,
            other => return Err(WireError::UnknownType(other)),
        })
    }

    /// Sent by a unit (towards the proxy manager).
    pub fn is_request(self) -> bool {
        matches!(
            self,
            Self::SwitchOn | Self::SwitchOff | Self::StatusRequest | Self::ProxyRequest
        )
    }

    /// Sent by a proxy manager (towards a unit).
    pub fn is_answer(self) -> bool {
        matches!(
            self,
            Self::SwitchOnAck
                | Self::Refused
                | Self::SwitchOffAck
                | Self::StatusAnswer
                | Self::ProxyAnswer
        )
    }

    /// What the two length fields of this type delimit, `None` where the
    /// type carries no such part: (first, second, second required).
    fn parts(self) -> Option<(&'static str, Option<&'static str>, bool)> {
        match self {
            Self::SwitchOn => Some(("AP-REQ", Some("KRB-CRED"), true)),
            Self::SwitchOff | Self::StatusRequest => Some(("AP-REQ", None, false)),
            Self::SwitchOnAck | Self::SwitchOffAck => Some(("AP-REP", None, false)),
            Self::StatusAnswer | Self::ProxyAnswer => Some(("AP-REP", Some("KRB-PRIV"), true)),
            Self::ProxyRequest => Some(("AP-REQ", Some("KRB-PRIV"), true)),
            Self::Refused | Self::Relay => None,
        }
    }
}

impl std::fmt::Display for MessageType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::SwitchOn => "switch-on",
            Self::SwitchOnAck => "switch-on ack",
            Self::Refused => "refusal",
            Self::SwitchOff => "switch-off",
            Self::SwitchOffAck => "switch-off ack",
            Self::StatusRequest => "status request",
            Self::StatusAnswer => "status answer",
            Self::ProxyRequest => "proxy request",
            Self::ProxyAnswer => "proxy answer",
            Self::Relay => "relay frame",
        })
    }
}

/// Why a proxy manager refused a unit's request (the cause byte of a
/// [`MessageType::Refused`] frame, docs/attach.md §4.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Cause {
    /// The frame or a Kerberos message in it did not parse.
    Malformed,
    /// The ticket or authenticator did not decrypt: a wrong key, or forged.
    BadProof,
    /// The authenticator or KRB-CRED was seen before.
    Replayed,
    /// The unit's clock is more than 300 s from the proxy manager's.
    ClockSkew,
    /// The service ticket has expired (or is not yet valid).
    TicketExpired,
    /// The ticket is for another service than this proxy manager.
    WrongService,
    /// The authenticator checksum does not cover this frame's fixed part.
    Tampered,
    /// Mutual authentication with a fresh subkey is required.
    MutualRequired,
    /// The KRB-CRED is missing, does not open, or holds no usable
    /// forwarded TGT.
    NoDelegation,
    /// The forwarded TGT is for another client than the AP-REQ.
    ClientMismatch,
    /// The proxy manager is refusing new work for now (replay cache or rate
    /// limit); retry after the frame's retry-after.
    Busy,
    /// The directory has no entry for this identity code and principal.
    UnknownUnit,
    /// A switch-off or status request for a unit with no proxy.
    NotAttached,
    /// The KDC or the directory is unreachable.
    Unavailable,
    /// A cause this end does not know (a newer peer).
    Other(u8),
}

impl Cause {
    pub fn to_u8(self) -> u8 {
        match self {
            Self::Malformed => 1,
            Self::BadProof => 2,
            Self::Replayed => 3,
            Self::ClockSkew => 4,
            Self::TicketExpired => 5,
            Self::WrongService => 6,
            Self::Tampered => 7,
            Self::MutualRequired => 8,
            Self::NoDelegation => 9,
            Self::ClientMismatch => 10,
            Self::Busy => 11,
            Self::UnknownUnit => 12,
            Self::NotAttached => 13,
            Self::Unavailable => 14,
            Self::Other(v) => v,
        }
    }

    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Malformed,
            2 => Self::BadProof,
            3 => Self::Replayed,
            4 => Self::ClockSkew,
            5 => Self::TicketExpired,
            6 => Self::WrongService,
            7 => Self::Tampered,
            8 => Self::MutualRequired,
            9 => Self::NoDelegation,
            10 => Self::ClientMismatch,
            11 => Self::Busy,
            12 => Self::UnknownUnit,
            13 => Self::NotAttached,
            14 => Self::Unavailable,
            other => Self::Other(other),
        }
    }
}

mod field {
    pub type Field = core::ops::Range<usize>;
    // Unit frames: the fixed part.
    pub const VERSION: usize = 0;
    pub const TYPE: usize = 1;
    pub const RESERVED: Field = 2..4;
    pub const IDENTITY: Field = 4..20;
    pub const NONCE: Field = 20..28;
    /// The bytes an AP-REQ's authenticator checksum covers.
    pub const BOUND: Field = 0..NONCE.end;
    // Requests and answers: two part lengths.
    pub const FIRST_LEN: Field = 28..30;
    pub const SECOND_LEN: Field = 30..32;
    // Refused: what was refused, why, and when to retry.
    pub const REFUSED_TYPE: usize = 28;
    pub const CAUSE: usize = 29;
    pub const RETRY_AFTER: Field = 30..32;
    pub const FIXED_END: usize = SECOND_LEN.end;

    // Relay frames.
    pub const BASE_STATION: Field = 4..8;
    pub const UNIT_ADDR: Field = 8..12;
    pub const UNIT_PORT: Field = 12..14;
    pub const DOMAIN_LEN: usize = 14;
    pub const RELAY_RESERVED: usize = 15;
    pub const RELAY_FIXED_END: usize = RELAY_RESERVED + 1;

    // Status body (the plaintext of a status answer's KRB-PRIV).
    pub const STATE: usize = 0;
    pub const STATUS_RESERVED: Field = 1..4;
    pub const HOME_ADDRESS: Field = 4..8;
    pub const CARE_OF: Field = 8..12;
    pub const TGT_EXPIRY: Field = 12..20;
    pub const REGISTRATION_EXPIRY: Field = 20..28;
    pub const STATUS_END: usize = REGISTRATION_EXPIRY.end;
}

/// The length of a unit frame's bound part (what an AP-REQ checksum covers).
pub const BOUND_LEN: usize = field::BOUND.end;
/// The fixed part shared by every unit frame.
pub const FIXED_LEN: usize = field::FIXED_END;
/// The fixed part of a relay frame (without its domain).
pub const RELAY_FIXED_LEN: usize = field::RELAY_FIXED_END;

fn be16(b: &[u8], f: field::Field) -> u16 {
    let mut a = [0u8; 2];
    a.copy_from_slice(&b[f]);
    u16::from_be_bytes(a)
}

// ---------------------------------------------------------------------------
// Unit frames

/// A zero-copy view of a unit frame.
#[derive(Debug, Clone, Copy)]
pub struct Frame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Frame<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// [`Frame::new_unchecked`] then [`Frame::check_len`].
    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks that every accessor stays in bounds: the size limits, the
    /// version and type (the layout depends on them), and that the part
    /// lengths add up to exactly the datagram.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        let len = b.len();
        if len > MAX_FRAME_LEN {
            return Err(WireError::Oversized(len));
        }
        if len < FIXED_LEN {
            return Err(WireError::Truncated {
                len,
                need: FIXED_LEN,
            });
        }
        if b[field::VERSION] != VERSION {
            return Err(WireError::BadVersion(b[field::VERSION]));
        }
        // Strict, so that a parsed frame re-encodes to the same bytes.
        if b[field::RESERVED] != [0, 0] {
            return Err(WireError::Reserved {
                offset: field::RESERVED.start,
            });
        }
        let ty = MessageType::from_u8(b[field::TYPE])?;
        let Some((first, second, second_required)) = ty.parts() else {
            return match ty {
                MessageType::Relay => Err(WireError::NestedRelay),
                _ if len != FIXED_LEN => Err(WireError::LengthMismatch {
                    declared: FIXED_LEN,
                    len,
                }),
                _ => Ok(()),
            };
        };
        let a = usize::from(be16(b, field::FIRST_LEN));
        let c = usize::from(be16(b, field::SECOND_LEN));
        let declared = FIXED_LEN + a + c;
        if declared != len {
            return Err(WireError::LengthMismatch { declared, len });
        }
        if a == 0 {
            return Err(WireError::MissingPart(ty, first));
        }
        match second {
            Some(name) if second_required && c == 0 => Err(WireError::MissingPart(ty, name)),
            None if c != 0 => Err(WireError::UnexpectedPart(ty, "second part")),
            _ => Ok(()),
        }
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn version(&self) -> u8 {
        self.buffer.as_ref()[field::VERSION]
    }

    /// The type byte (known, once `check_len` passed).
    pub fn msg_type(&self) -> Result<MessageType, WireError> {
        MessageType::from_u8(self.buffer.as_ref()[field::TYPE])
    }

    pub fn identity(&self) -> IdentityCode {
        let mut a = [0u8; IdentityCode::LEN];
        a.copy_from_slice(&self.buffer.as_ref()[field::IDENTITY]);
        IdentityCode::from_bytes(a)
    }

    pub fn nonce(&self) -> u64 {
        let mut a = [0u8; 8];
        a.copy_from_slice(&self.buffer.as_ref()[field::NONCE]);
        u64::from_be_bytes(a)
    }

    /// The bytes an AP-REQ's authenticator checksum covers: version, type,
    /// reserved, identity code and nonce.
    pub fn bound_part(&self) -> &[u8] {
        &self.buffer.as_ref()[field::BOUND]
    }

    fn first_len(&self) -> usize {
        usize::from(be16(self.buffer.as_ref(), field::FIRST_LEN))
    }

    /// The first Kerberos message: the AP-REQ of a request, the AP-REP of
    /// an answer; empty in a refusal.
    pub fn first(&self) -> &[u8] {
        match self.msg_type().ok().and_then(MessageType::parts) {
            Some(_) => &self.buffer.as_ref()[FIXED_LEN..FIXED_LEN + self.first_len()],
            None => &[],
        }
    }

    /// The second Kerberos message: the KRB-CRED of a switch-on, the
    /// KRB-PRIV of a status answer; empty otherwise.
    pub fn second(&self) -> &[u8] {
        match self.msg_type().ok().and_then(MessageType::parts) {
            Some(_) => &self.buffer.as_ref()[FIXED_LEN + self.first_len()..],
            None => &[],
        }
    }

    pub fn refused_type(&self) -> u8 {
        self.buffer.as_ref()[field::REFUSED_TYPE]
    }

    pub fn cause(&self) -> Cause {
        Cause::from_u8(self.buffer.as_ref()[field::CAUSE])
    }

    pub fn retry_after(&self) -> u16 {
        be16(self.buffer.as_ref(), field::RETRY_AFTER)
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Frame<T> {
    fn header_mut(&mut self, ty: MessageType, identity: &IdentityCode, nonce: u64) {
        let b = self.buffer.as_mut();
        b[field::VERSION] = VERSION;
        b[field::TYPE] = ty as u8;
        b[field::RESERVED].fill(0);
        b[field::IDENTITY].copy_from_slice(identity.as_bytes());
        b[field::NONCE].copy_from_slice(&nonce.to_be_bytes());
    }

    fn parts_mut(&mut self, first: &[u8], second: &[u8]) {
        let b = self.buffer.as_mut();
        // Lengths were checked by `Repr::buffer_len`'s caller (emit).
        b[field::FIRST_LEN].copy_from_slice(&(first.len() as u16).to_be_bytes());
        b[field::SECOND_LEN].copy_from_slice(&(second.len() as u16).to_be_bytes());
        b[FIXED_LEN..FIXED_LEN + first.len()].copy_from_slice(first);
        b[FIXED_LEN + first.len()..FIXED_LEN + first.len() + second.len()].copy_from_slice(second);
    }
}

/// A parsed unit frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Repr<'a> {
    SwitchOn {
        identity: IdentityCode,
        nonce: u64,
        ap_req: &'a [u8],
        krb_cred: &'a [u8],
    },
    SwitchOnAck {
        identity: IdentityCode,
        nonce: u64,
        ap_rep: &'a [u8],
    },
    Refused {
        identity: IdentityCode,
        nonce: u64,
        /// The type of the refused request (kept as sent, so that a refusal
        /// of a type this end does not know still parses).
        refused: u8,
        cause: Cause,
        /// Seconds before a retry makes sense (0: retry at will).
        retry_after: u16,
    },
    SwitchOff {
        identity: IdentityCode,
        nonce: u64,
        ap_req: &'a [u8],
    },
    SwitchOffAck {
        identity: IdentityCode,
        nonce: u64,
        ap_rep: &'a [u8],
    },
    StatusRequest {
        identity: IdentityCode,
        nonce: u64,
        ap_req: &'a [u8],
    },
    StatusAnswer {
        identity: IdentityCode,
        nonce: u64,
        ap_rep: &'a [u8],
        krb_priv: &'a [u8],
    },
    /// A request for the unit's proxy (`proxy_op`), sealed under the
    /// AP-REQ's subkey.
    ProxyRequest {
        identity: IdentityCode,
        nonce: u64,
        ap_req: &'a [u8],
        krb_priv: &'a [u8],
    },
    ProxyAnswer {
        identity: IdentityCode,
        nonce: u64,
        ap_rep: &'a [u8],
        krb_priv: &'a [u8],
    },
}

impl<'a> Repr<'a> {
    /// Parses a checked frame.
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &Frame<&'a T>) -> Result<Self, WireError> {
        frame.check_len()?;
        let buf: &'a [u8] = frame.buffer.as_ref();
        let view = Frame::new_unchecked(buf);
        let identity = view.identity();
        let nonce = view.nonce();
        // Only types with parts have lengths at 28..32 (check_len summed them).
        let (p1, p2) = match view.msg_type()?.parts() {
            Some(_) => buf[FIXED_LEN..].split_at(view.first_len()),
            None => (&[][..], &[][..]),
        };
        Ok(match view.msg_type()? {
            MessageType::SwitchOn => Self::SwitchOn {
                identity,
                nonce,
                ap_req: p1,
                krb_cred: p2,
            },
            MessageType::SwitchOnAck => Self::SwitchOnAck {
                identity,
                nonce,
                ap_rep: p1,
            },
            MessageType::Refused => Self::Refused {
                identity,
                nonce,
                refused: view.refused_type(),
                cause: view.cause(),
                retry_after: view.retry_after(),
            },
            MessageType::SwitchOff => Self::SwitchOff {
                identity,
                nonce,
                ap_req: p1,
            },
            MessageType::SwitchOffAck => Self::SwitchOffAck {
                identity,
                nonce,
                ap_rep: p1,
            },
            MessageType::StatusRequest => Self::StatusRequest {
                identity,
                nonce,
                ap_req: p1,
            },
            MessageType::StatusAnswer => Self::StatusAnswer {
                identity,
                nonce,
                ap_rep: p1,
                krb_priv: p2,
            },
            MessageType::ProxyRequest => Self::ProxyRequest {
                identity,
                nonce,
                ap_req: p1,
                krb_priv: p2,
            },
            MessageType::ProxyAnswer => Self::ProxyAnswer {
                identity,
                nonce,
                ap_rep: p1,
                krb_priv: p2,
            },
            MessageType::Relay => return Err(WireError::NestedRelay),
        })
    }

    /// Parses a datagram.
    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&Frame::new_unchecked(bytes))
    }

    pub fn msg_type(&self) -> MessageType {
        match self {
            Self::SwitchOn { .. } => MessageType::SwitchOn,
            Self::SwitchOnAck { .. } => MessageType::SwitchOnAck,
            Self::Refused { .. } => MessageType::Refused,
            Self::SwitchOff { .. } => MessageType::SwitchOff,
            Self::SwitchOffAck { .. } => MessageType::SwitchOffAck,
            Self::StatusRequest { .. } => MessageType::StatusRequest,
            Self::StatusAnswer { .. } => MessageType::StatusAnswer,
            Self::ProxyRequest { .. } => MessageType::ProxyRequest,
            Self::ProxyAnswer { .. } => MessageType::ProxyAnswer,
        }
    }

    pub fn identity(&self) -> IdentityCode {
        match *self {
            Self::SwitchOn { identity, .. }
            | Self::SwitchOnAck { identity, .. }
            | Self::Refused { identity, .. }
            | Self::SwitchOff { identity, .. }
            | Self::SwitchOffAck { identity, .. }
            | Self::StatusRequest { identity, .. }
            | Self::StatusAnswer { identity, .. }
            | Self::ProxyRequest { identity, .. }
            | Self::ProxyAnswer { identity, .. } => identity,
        }
    }

    pub fn nonce(&self) -> u64 {
        match *self {
            Self::SwitchOn { nonce, .. }
            | Self::SwitchOnAck { nonce, .. }
            | Self::Refused { nonce, .. }
            | Self::SwitchOff { nonce, .. }
            | Self::SwitchOffAck { nonce, .. }
            | Self::StatusRequest { nonce, .. }
            | Self::StatusAnswer { nonce, .. }
            | Self::ProxyRequest { nonce, .. }
            | Self::ProxyAnswer { nonce, .. } => nonce,
        }
    }

    /// The two Kerberos parts (empty where the type has none).
    fn parts(&self) -> (&'a [u8], &'a [u8]) {
        match *self {
            Self::SwitchOn {
                ap_req, krb_cred, ..
            } => (ap_req, krb_cred),
            Self::SwitchOnAck { ap_rep, .. } | Self::SwitchOffAck { ap_rep, .. } => (ap_rep, &[]),
            Self::SwitchOff { ap_req, .. } | Self::StatusRequest { ap_req, .. } => (ap_req, &[]),
            Self::StatusAnswer {
                ap_rep, krb_priv, ..
            }
            | Self::ProxyAnswer {
                ap_rep, krb_priv, ..
            } => (ap_rep, krb_priv),
            Self::ProxyRequest {
                ap_req, krb_priv, ..
            } => (ap_req, krb_priv),
            Self::Refused { .. } => (&[], &[]),
        }
    }

    pub fn buffer_len(&self) -> usize {
        let (a, b) = self.parts();
        FIXED_LEN + a.len() + b.len()
    }

    /// Writes the frame into `frame`, whose buffer is exactly
    /// [`Repr::buffer_len`] bytes. Refuses what would not parse back.
    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut Frame<T>,
    ) -> Result<(), WireError> {
        let len = self.buffer_len();
        if len > MAX_FRAME_LEN {
            return Err(WireError::Oversized(len));
        }
        if frame.buffer.as_ref().len() != len {
            return Err(WireError::LengthMismatch {
                declared: len,
                len: frame.buffer.as_ref().len(),
            });
        }
        frame.header_mut(self.msg_type(), &self.identity(), self.nonce());
        match *self {
            Self::Refused {
                refused,
                cause,
                retry_after,
                ..
            } => {
                let b = frame.buffer.as_mut();
                b[field::REFUSED_TYPE] = refused;
                b[field::CAUSE] = cause.to_u8();
                b[field::RETRY_AFTER].copy_from_slice(&retry_after.to_be_bytes());
            }
            _ => {
                let (a, b) = self.parts();
                frame.parts_mut(a, b);
            }
        }
        // What we send must be what a peer accepts (empty parts, etc.).
        frame.check_len()
    }

    /// The frame as a new datagram.
    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut Frame::new_unchecked(&mut buf[..]))?;
        Ok(buf)
    }
}

/// The bytes an AP-REQ's authenticator checksum covers for a request of
/// type `ty` from `identity` with `nonce`: the first 28 bytes of its frame.
pub fn bound_part(ty: MessageType, identity: &IdentityCode, nonce: u64) -> [u8; BOUND_LEN] {
    let mut b = [0u8; BOUND_LEN];
    b[field::VERSION] = VERSION;
    b[field::TYPE] = ty as u8;
    b[field::IDENTITY].copy_from_slice(identity.as_bytes());
    b[field::NONCE].copy_from_slice(&nonce.to_be_bytes());
    b
}

// ---------------------------------------------------------------------------
// Relay frames

/// A zero-copy view of a relay frame.
#[derive(Debug, Clone, Copy)]
pub struct RelayFrame<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> RelayFrame<T> {
    pub const fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    pub fn new_checked(buffer: T) -> Result<Self, WireError> {
        let f = Self::new_unchecked(buffer);
        f.check_len()?;
        Ok(f)
    }

    /// Checks the size limits, version, type, the domain (length and
    /// bytes), and the carried unit frame in full.
    pub fn check_len(&self) -> Result<(), WireError> {
        let b = self.buffer.as_ref();
        let len = b.len();
        if len > MAX_FRAME_LEN {
            return Err(WireError::Oversized(len));
        }
        if len < RELAY_FIXED_LEN {
            return Err(WireError::Truncated {
                len,
                need: RELAY_FIXED_LEN,
            });
        }
        if b[field::VERSION] != VERSION {
            return Err(WireError::BadVersion(b[field::VERSION]));
        }
        let ty = MessageType::from_u8(b[field::TYPE])?;
        if ty != MessageType::Relay {
            return Err(WireError::UnknownType(ty as u8));
        }
        if b[field::RESERVED] != [0, 0] {
            return Err(WireError::Reserved {
                offset: field::RESERVED.start,
            });
        }
        if b[field::RELAY_RESERVED] != 0 {
            return Err(WireError::Reserved {
                offset: field::RELAY_RESERVED,
            });
        }
        let d = usize::from(b[field::DOMAIN_LEN]);
        if d == 0 || d > MAX_DOMAIN_LEN {
            return Err(WireError::BadDomain(d));
        }
        let need = RELAY_FIXED_LEN + d + FIXED_LEN;
        if len < need {
            return Err(WireError::Truncated { len, need });
        }
        if !b[RELAY_FIXED_LEN..RELAY_FIXED_LEN + d]
            .iter()
            .all(u8::is_ascii_graphic)
        {
            return Err(WireError::BadDomain(d));
        }
        Frame::new_unchecked(&b[RELAY_FIXED_LEN + d..]).check_len()
    }

    pub fn base_station(&self) -> u32 {
        let mut a = [0u8; 4];
        a.copy_from_slice(&self.buffer.as_ref()[field::BASE_STATION]);
        u32::from_be_bytes(a)
    }

    pub fn unit(&self) -> SocketAddrV4 {
        let b = self.buffer.as_ref();
        let mut a = [0u8; 4];
        a.copy_from_slice(&b[field::UNIT_ADDR]);
        SocketAddrV4::new(Ipv4Addr::from(a), be16(b, field::UNIT_PORT))
    }

    fn domain_len(&self) -> usize {
        usize::from(self.buffer.as_ref()[field::DOMAIN_LEN])
    }

    /// The base station's domain (printable ASCII, once checked).
    pub fn domain(&self) -> &str {
        let d = &self.buffer.as_ref()[RELAY_FIXED_LEN..RELAY_FIXED_LEN + self.domain_len()];
        std::str::from_utf8(d).unwrap_or("")
    }

    /// The unit frame carried.
    pub fn inner(&self) -> &[u8] {
        &self.buffer.as_ref()[RELAY_FIXED_LEN + self.domain_len()..]
    }
}

/// A parsed relay frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayRepr<'a> {
    pub base_station: u32,
    pub domain: &'a str,
    /// The unit's link address as the base station sees it.
    pub unit: SocketAddrV4,
    /// The unit frame, checked.
    pub inner: &'a [u8],
}

impl<'a> RelayRepr<'a> {
    pub fn parse<T: AsRef<[u8]> + ?Sized>(frame: &RelayFrame<&'a T>) -> Result<Self, WireError> {
        frame.check_len()?;
        let buf: &'a [u8] = frame.buffer.as_ref();
        let view = RelayFrame::new_unchecked(buf);
        let d = view.domain_len();
        let domain = std::str::from_utf8(&buf[RELAY_FIXED_LEN..RELAY_FIXED_LEN + d])
            .map_err(|_| WireError::BadDomain(d))?;
        Ok(Self {
            base_station: view.base_station(),
            domain,
            unit: view.unit(),
            inner: &buf[RELAY_FIXED_LEN + d..],
        })
    }

    pub fn parse_bytes(bytes: &'a [u8]) -> Result<Self, WireError> {
        Self::parse(&RelayFrame::new_unchecked(bytes))
    }

    pub fn buffer_len(&self) -> usize {
        RELAY_FIXED_LEN + self.domain.len() + self.inner.len()
    }

    pub fn emit<T: AsRef<[u8]> + AsMut<[u8]>>(
        &self,
        frame: &mut RelayFrame<T>,
    ) -> Result<(), WireError> {
        let d = self.domain.len();
        if d == 0 || d > MAX_DOMAIN_LEN || !self.domain.bytes().all(|c| c.is_ascii_graphic()) {
            return Err(WireError::BadDomain(d));
        }
        let len = self.buffer_len();
        if len > MAX_FRAME_LEN {
            return Err(WireError::Oversized(len));
        }
        let b = frame.buffer.as_mut();
        if b.len() != len {
            return Err(WireError::LengthMismatch {
                declared: len,
                len: b.len(),
            });
        }
        b[field::VERSION] = VERSION;
        b[field::TYPE] = MessageType::Relay as u8;
        b[field::RESERVED].fill(0);
        b[field::BASE_STATION].copy_from_slice(&self.base_station.to_be_bytes());
        b[field::UNIT_ADDR].copy_from_slice(&self.unit.ip().octets());
        b[field::UNIT_PORT].copy_from_slice(&self.unit.port().to_be_bytes());
        b[field::DOMAIN_LEN] = d as u8;
        b[field::RELAY_RESERVED] = 0;
        b[RELAY_FIXED_LEN..RELAY_FIXED_LEN + d].copy_from_slice(self.domain.as_bytes());
        b[RELAY_FIXED_LEN + d..].copy_from_slice(self.inner);
        frame.check_len()
    }

    pub fn to_bytes(&self) -> Result<Vec<u8>, WireError> {
        let mut buf = vec![0u8; self.buffer_len()];
        self.emit(&mut RelayFrame::new_unchecked(&mut buf[..]))?;
        Ok(buf)
    }
}

// ---------------------------------------------------------------------------
// Status body

/// The proxy's state as a status answer reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ProxyState {
    /// Verified, fetching the initiating information or registering.
    Starting = 1,
    /// Registered with the home agent.
    Attached = 2,
    /// Retrying after a failure (KDC, directory or home agent).
    Retrying = 3,
    /// Deregistering after a switch-off.
    Stopping = 4,
}

/// The plaintext a status answer carries inside its KRB-PRIV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBody {
    pub state: ProxyState,
    /// 0.0.0.0 until the directory has answered.
    pub home_address: Ipv4Addr,
    /// 0.0.0.0 until registered.
    pub care_of: Ipv4Addr,
    /// Seconds since the Unix epoch; 0 for "none".
    pub tgt_expiry: u64,
    pub registration_expiry: u64,
}

impl StatusBody {
    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() != STATUS_BODY_LEN {
            return Err(WireError::BadStatusBody(b.len()));
        }
        if b[field::STATUS_RESERVED] != [0, 0, 0] {
            return Err(WireError::Reserved {
                offset: field::STATUS_RESERVED.start,
            });
        }
        let state = match b[field::STATE] {
            1 => ProxyState::Starting,
            2 => ProxyState::Attached,
            3 => ProxyState::Retrying,
            4 => ProxyState::Stopping,
            other => return Err(WireError::UnknownState(other)),
        };
        let ip = |f: field::Field| {
            let mut a = [0u8; 4];
            a.copy_from_slice(&b[f]);
            Ipv4Addr::from(a)
        };
        let u64_at = |f: field::Field| {
            let mut a = [0u8; 8];
            a.copy_from_slice(&b[f]);
            u64::from_be_bytes(a)
        };
        Ok(Self {
            state,
            home_address: ip(field::HOME_ADDRESS),
            care_of: ip(field::CARE_OF),
            tgt_expiry: u64_at(field::TGT_EXPIRY),
            registration_expiry: u64_at(field::REGISTRATION_EXPIRY),
        })
    }

    pub fn to_bytes(&self) -> [u8; STATUS_BODY_LEN] {
        let mut b = [0u8; STATUS_BODY_LEN];
        b[field::STATE] = self.state as u8;
        b[field::STATUS_RESERVED].fill(0);
        b[field::HOME_ADDRESS].copy_from_slice(&self.home_address.octets());
        b[field::CARE_OF].copy_from_slice(&self.care_of.octets());
        b[field::TGT_EXPIRY].copy_from_slice(&self.tgt_expiry.to_be_bytes());
        b[field::REGISTRATION_EXPIRY].copy_from_slice(&self.registration_expiry.to_be_bytes());
        b
    }
}

#[cfg(test)]
mod tests;
