//! RADIUS accounting, RFC 2866: the Accounting-Request (code 4) roamgate
//! sends for each call's Start and Stop, and the check of the server's
//! Accounting-Response (code 5).
//!
//! smoltcp style: [`Packet`] is a zero-copy view over a buffer, and
//! [`AccountingRequest`] the small typed `Repr` with `parse`, `emit` and
//! `buffer_len`. Once [`Packet::check_len`] (or [`Packet::new_checked`])
//! has passed, no accessor panics: the length field is at least the header
//! and at most the buffer and [`MAX_PACKET_LEN`]. Octets past the length
//! field are padding and ignored (RFC 2865 §3). The attribute iterator
//! returns a typed error for an attribute that runs past the packet.
//!
//! Authenticators (RFC 2866 §3):
//! - Request Authenticator = MD5(Code + Identifier + Length + 16 zero
//!   octets + Attributes + Secret);
//! - Response Authenticator = MD5(Code + Identifier + Length + Request
//!   Authenticator + Attributes + Secret).
//!
//! The charge travels in a Vendor-Specific attribute (26) under
//! [`VENDOR_ID`], with two sub-attributes in the RFC 2865 §5.26 suggested
//! format (type, length, value): [`VSA_CHARGE_MINOR_UNITS`] (8 octets,
//! unsigned, network order: RFC 6929's integer64) and [`VSA_CURRENCY`] (3
//! octets, the ISO 4217 alphabetic code). docs/billing.md has the
//! FreeRADIUS dictionary lines.

use std::net::Ipv4Addr;

use md5::{Digest, Md5};
use subtle::ConstantTimeEq;

/// Accounting-Request.
pub const CODE_ACCOUNTING_REQUEST: u8 = 4;
/// Accounting-Response.
pub const CODE_ACCOUNTING_RESPONSE: u8 = 5;

/// RFC 2865 §3: a packet is at most 4096 octets.
pub const MAX_PACKET_LEN: usize = 4096;
/// The longest attribute value (an attribute's length octet covers the
/// type and length octets too).
pub const MAX_VALUE_LEN: usize = 253;

/// The Vendor-Id of roamgate's Vendor-Specific attribute. 32473 is the
/// IANA Private Enterprise Number reserved for documentation (RFC 5612):
/// a PLACEHOLDER, safe because no real vendor has it, until roamgate (or the
/// operator) registers its own number. Never 0, which IANA's registry
/// marks Reserved.
pub const VENDOR_ID: u32 = 32473;
/// Sub-attribute: the amount charged, in minor units (integer64).
pub const VSA_CHARGE_MINOR_UNITS: u8 = 1;
/// Sub-attribute: the ISO 4217 alphabetic currency code (3 octets).
pub const VSA_CURRENCY: u8 = 2;

/// Attribute types (RFC 2865 §5, RFC 2866 §5, RFC 2869 §5.3).
pub mod attr {
    pub const USER_NAME: u8 = 1;
    pub const NAS_IP_ADDRESS: u8 = 4;
    pub const VENDOR_SPECIFIC: u8 = 26;
    pub const NAS_IDENTIFIER: u8 = 32;
    pub const ACCT_STATUS_TYPE: u8 = 40;
    pub const ACCT_DELAY_TIME: u8 = 41;
    pub const ACCT_SESSION_ID: u8 = 44;
    pub const ACCT_SESSION_TIME: u8 = 46;
    pub const EVENT_TIMESTAMP: u8 = 55;
}

mod field {
    use std::ops::{Range, RangeFrom};

    pub const CODE: usize = 0;
    pub const IDENTIFIER: usize = 1;
    pub const LENGTH: Range<usize> = 2..4;
    pub const AUTHENTICATOR: Range<usize> = 4..20;
    pub const ATTRIBUTES: RangeFrom<usize> = AUTHENTICATOR.end..;
}

/// The RADIUS header: code, identifier, length, authenticator.
pub const HEADER_LEN: usize = field::ATTRIBUTES.start;

/// What is wrong with a RADIUS packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RadiusError {
    #[error("RADIUS: truncated packet")]
    Truncated,
    #[error("RADIUS: length field {0} below the 20-octet header")]
    LengthTooShort(u16),
    #[error("RADIUS: length {0} above the 4096-octet maximum")]
    TooLong(usize),
    #[error("RADIUS: code {0} where {1} was expected")]
    UnexpectedCode(u8, u8),
    #[error("RADIUS: attribute at offset {0} runs past the packet or is shorter than 2")]
    BadAttribute(usize),
    #[error("RADIUS: attribute {0} has a value of the wrong length {1}")]
    BadAttributeLength(u8, usize),
    #[error("RADIUS: attribute {0} appears twice")]
    DuplicateAttribute(u8),
    #[error("RADIUS: attribute {0} is missing")]
    MissingAttribute(&'static str),
    #[error("RADIUS: value of attribute {0} is empty or longer than 253 octets")]
    BadValue(u8),
    #[error("RADIUS: malformed roamgate vendor-specific attribute")]
    BadVendorAttribute,
    #[error("RADIUS: the shared secret is empty")]
    EmptySecret,
    #[error("RADIUS: authenticator does not verify")]
    BadAuthenticator,
    #[error("RADIUS: response identifier {got} does not match the request's {expected}")]
    IdentifierMismatch { expected: u8, got: u8 },
}

/// A read/write view of a RADIUS packet.
#[derive(Debug, Clone)]
pub struct Packet<T: AsRef<[u8]>> {
    buffer: T,
}

impl<T: AsRef<[u8]>> Packet<T> {
    /// A view without checks: accessors may panic until
    /// [`Packet::check_len`] passes.
    pub fn new_unchecked(buffer: T) -> Self {
        Self { buffer }
    }

    /// A view whose accessors never panic.
    pub fn new_checked(buffer: T) -> Result<Self, RadiusError> {
        let p = Self::new_unchecked(buffer);
        p.check_len()?;
        Ok(p)
    }

    /// The header fits, and the length field is at least the header, at
    /// most [`MAX_PACKET_LEN`] and at most the buffer.
    pub fn check_len(&self) -> Result<(), RadiusError> {
        let buf = self.buffer.as_ref();
        if buf.len() < HEADER_LEN {
            return Err(RadiusError::Truncated);
        }
        let len = self.length();
        if usize::from(len) < HEADER_LEN {
            return Err(RadiusError::LengthTooShort(len));
        }
        if usize::from(len) > MAX_PACKET_LEN {
            return Err(RadiusError::TooLong(usize::from(len)));
        }
        if usize::from(len) > buf.len() {
            return Err(RadiusError::Truncated);
        }
        Ok(())
    }

    pub fn into_inner(self) -> T {
        self.buffer
    }

    pub fn code(&self) -> u8 {
        self.buffer.as_ref()[field::CODE]
    }

    pub fn identifier(&self) -> u8 {
        self.buffer.as_ref()[field::IDENTIFIER]
    }

    pub fn length(&self) -> u16 {
        let b = &self.buffer.as_ref()[field::LENGTH];
        u16::from_be_bytes([b[0], b[1]])
    }

    pub fn authenticator(&self) -> [u8; 16] {
        let mut a = [0; 16];
        a.copy_from_slice(&self.buffer.as_ref()[field::AUTHENTICATOR]);
        a
    }

    /// The packet up to its length field (padding dropped).
    pub fn as_bytes(&self) -> &[u8] {
        &self.buffer.as_ref()[..usize::from(self.length())]
    }

    /// The attribute octets, up to the length field.
    pub fn attribute_bytes(&self) -> &[u8] {
        &self.as_bytes()[field::ATTRIBUTES]
    }

    pub fn attributes(&self) -> Attributes<'_> {
        Attributes {
            data: self.attribute_bytes(),
            pos: 0,
        }
    }
}

impl<T: AsRef<[u8]> + AsMut<[u8]>> Packet<T> {
    pub fn set_code(&mut self, v: u8) {
        self.buffer.as_mut()[field::CODE] = v;
    }

    pub fn set_identifier(&mut self, v: u8) {
        self.buffer.as_mut()[field::IDENTIFIER] = v;
    }

    pub fn set_length(&mut self, v: u16) {
        self.buffer.as_mut()[field::LENGTH].copy_from_slice(&v.to_be_bytes());
    }

    pub fn set_authenticator(&mut self, v: &[u8; 16]) {
        self.buffer.as_mut()[field::AUTHENTICATOR].copy_from_slice(v);
    }
}

/// One attribute: its type and value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attribute<'a> {
    pub kind: u8,
    pub value: &'a [u8],
}

/// The attributes of a packet. After an error it yields nothing more.
#[derive(Debug, Clone)]
pub struct Attributes<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Iterator for Attributes<'a> {
    type Item = Result<Attribute<'a>, RadiusError>;

    fn next(&mut self) -> Option<Self::Item> {
        let rest = self.data.get(self.pos..)?;
        if rest.is_empty() {
            return None;
        }
        let at = self.pos;
        let (kind, len) = match rest {
            [kind, len, ..] if usize::from(*len) >= 2 && usize::from(*len) <= rest.len() => {
                (*kind, usize::from(*len))
            }
            _ => {
                self.pos = self.data.len();
                return Some(Err(RadiusError::BadAttribute(HEADER_LEN + at)));
            }
        };
        self.pos += len;
        Some(Ok(Attribute {
            kind,
            value: &rest[2..len],
        }))
    }
}

/// Acct-Status-Type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcctStatusType {
    Start,
    Stop,
    /// Interim-Update (3), Accounting-On (7), ...: parsed, never sent.
    Other(u32),
}

impl AcctStatusType {
    pub fn value(&self) -> u32 {
        match self {
            Self::Start => 1,
            Self::Stop => 2,
            Self::Other(v) => *v,
        }
    }

    pub fn from_value(v: u32) -> Self {
        match v {
            1 => Self::Start,
            2 => Self::Stop,
            v => Self::Other(v),
        }
    }
}

/// Who sends the request (RFC 2866 §4.1: one of the two MUST be present).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nas<'a> {
    IpAddress(Ipv4Addr),
    Identifier(&'a [u8]),
}

/// The charge in roamgate's Vendor-Specific attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Charge {
    pub minor_units: u64,
    /// ISO 4217 alphabetic code, three upper-case ASCII letters.
    pub currency: [u8; 3],
}

fn check_currency(c: &[u8; 3]) -> Result<(), RadiusError> {
    if c.iter().all(u8::is_ascii_uppercase) {
        Ok(())
    } else {
        Err(RadiusError::BadVendorAttribute)
    }
}

/// The VSA's length: type, length, Vendor-Id, and two sub-attributes.
const VSA_LEN: usize = 2 + 4 + (2 + 8) + (2 + 3);

/// An Accounting-Request's typed content. Unknown attributes (and other
/// vendors' VSAs) are skipped on parse; when both NAS-IP-Address and
/// NAS-Identifier are present the address is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AccountingRequest<'a> {
    pub status: AcctStatusType,
    pub session_id: &'a [u8],
    pub user_name: &'a [u8],
    pub session_time: Option<u32>,
    pub delay_time: Option<u32>,
    pub nas: Nas<'a>,
    pub event_timestamp: Option<u32>,
    pub charge: Option<Charge>,
}

fn u32_value(a: &Attribute<'_>) -> Result<u32, RadiusError> {
    <[u8; 4]>::try_from(a.value)
        .map(u32::from_be_bytes)
        .map_err(|_| RadiusError::BadAttributeLength(a.kind, a.value.len()))
}

fn text_value<'a>(a: &Attribute<'a>) -> Result<&'a [u8], RadiusError> {
    if a.value.is_empty() {
        return Err(RadiusError::BadValue(a.kind));
    }
    Ok(a.value)
}

fn set_once<V>(slot: &mut Option<V>, kind: u8, v: V) -> Result<(), RadiusError> {
    if slot.is_some() {
        return Err(RadiusError::DuplicateAttribute(kind));
    }
    *slot = Some(v);
    Ok(())
}

/// The charge's two halves, as roamgate's VSAs deliver them: in one VSA
/// (as roamgate sends it) or one VSA per sub-attribute (as FreeRADIUS
/// sends it; RFC 2865 §5.26 allows both).
#[derive(Default)]
struct ChargeParts {
    minor_units: Option<u64>,
    currency: Option<[u8; 3]>,
}

impl ChargeParts {
    /// Adds one Vendor-Specific value (after type and length); other
    /// vendors' are skipped.
    fn add(&mut self, value: &[u8]) -> Result<(), RadiusError> {
        let Some((vendor, mut subs)) = value.split_first_chunk::<4>() else {
            return Err(RadiusError::BadAttributeLength(
                attr::VENDOR_SPECIFIC,
                value.len(),
            ));
        };
        if u32::from_be_bytes(*vendor) != VENDOR_ID {
            return Ok(());
        }
        if subs.is_empty() {
            return Err(RadiusError::BadVendorAttribute);
        }
        while !subs.is_empty() {
            let (kind, len) = match subs {
                [k, l, ..] if usize::from(*l) >= 2 && usize::from(*l) <= subs.len() => {
                    (*k, usize::from(*l))
                }
                _ => return Err(RadiusError::BadVendorAttribute),
            };
            let v = &subs[2..len];
            match kind {
                VSA_CHARGE_MINOR_UNITS => {
                    let v = <[u8; 8]>::try_from(v).map_err(|_| RadiusError::BadVendorAttribute)?;
                    set_once(&mut self.minor_units, kind, u64::from_be_bytes(v))
                        .map_err(|_| RadiusError::BadVendorAttribute)?;
                }
                VSA_CURRENCY => {
                    let v = <[u8; 3]>::try_from(v).map_err(|_| RadiusError::BadVendorAttribute)?;
                    check_currency(&v)?;
                    set_once(&mut self.currency, kind, v)
                        .map_err(|_| RadiusError::BadVendorAttribute)?;
                }
                _ => {}
            }
            subs = &subs[len..];
        }
        Ok(())
    }

    /// Both halves, or neither.
    fn finish(self) -> Result<Option<Charge>, RadiusError> {
        match (self.minor_units, self.currency) {
            (Some(minor_units), Some(currency)) => Ok(Some(Charge {
                minor_units,
                currency,
            })),
            (None, None) => Ok(None),
            _ => Err(RadiusError::BadVendorAttribute),
        }
    }
}

impl<'a> AccountingRequest<'a> {
    /// Parses an Accounting-Request (the authenticator is checked by
    /// [`verify_request`], not here).
    pub fn parse(packet: &Packet<&'a [u8]>) -> Result<Self, RadiusError> {
        packet.check_len()?;
        if packet.code() != CODE_ACCOUNTING_REQUEST {
            return Err(RadiusError::UnexpectedCode(
                packet.code(),
                CODE_ACCOUNTING_REQUEST,
            ));
        }
        let bytes: &'a [u8] = packet.buffer;
        let len = usize::from(packet.length());
        let attrs = Attributes {
            data: bytes.get(HEADER_LEN..len).ok_or(RadiusError::Truncated)?,
            pos: 0,
        };
        let mut status = None;
        let mut session_id = None;
        let mut user_name = None;
        let mut session_time = None;
        let mut delay_time = None;
        let mut nas_ip = None;
        let mut nas_id = None;
        let mut event_timestamp = None;
        let mut charge = ChargeParts::default();
        for a in attrs {
            let a = a?;
            match a.kind {
                attr::ACCT_STATUS_TYPE => set_once(&mut status, a.kind, u32_value(&a)?)?,
                attr::ACCT_SESSION_ID => set_once(&mut session_id, a.kind, text_value(&a)?)?,
                attr::USER_NAME => set_once(&mut user_name, a.kind, text_value(&a)?)?,
                attr::ACCT_SESSION_TIME => set_once(&mut session_time, a.kind, u32_value(&a)?)?,
                attr::ACCT_DELAY_TIME => set_once(&mut delay_time, a.kind, u32_value(&a)?)?,
                attr::EVENT_TIMESTAMP => set_once(&mut event_timestamp, a.kind, u32_value(&a)?)?,
                attr::NAS_IP_ADDRESS => {
                    let v = <[u8; 4]>::try_from(a.value)
                        .map_err(|_| RadiusError::BadAttributeLength(a.kind, a.value.len()))?;
                    set_once(&mut nas_ip, a.kind, Ipv4Addr::from(v))?;
                }
                attr::NAS_IDENTIFIER => set_once(&mut nas_id, a.kind, text_value(&a)?)?,
                attr::VENDOR_SPECIFIC => charge.add(a.value)?,
                _ => {}
            }
        }
        let nas = match (nas_ip, nas_id) {
            (Some(ip), _) => Nas::IpAddress(ip),
            (None, Some(id)) => Nas::Identifier(id),
            (None, None) => return Err(RadiusError::MissingAttribute("NAS-IP-Address")),
        };
        Ok(Self {
            status: AcctStatusType::from_value(
                status.ok_or(RadiusError::MissingAttribute("Acct-Status-Type"))?,
            ),
            session_id: session_id.ok_or(RadiusError::MissingAttribute("Acct-Session-Id"))?,
            user_name: user_name.ok_or(RadiusError::MissingAttribute("User-Name"))?,
            session_time,
            delay_time,
            nas,
            event_timestamp,
            charge: charge.finish()?,
        })
    }

    fn check(&self) -> Result<(), RadiusError> {
        for (kind, v) in [
            (attr::ACCT_SESSION_ID, self.session_id),
            (attr::USER_NAME, self.user_name),
        ] {
            if v.is_empty() || v.len() > MAX_VALUE_LEN {
                return Err(RadiusError::BadValue(kind));
            }
        }
        if let Nas::Identifier(id) = self.nas {
            if id.is_empty() || id.len() > MAX_VALUE_LEN {
                return Err(RadiusError::BadValue(attr::NAS_IDENTIFIER));
            }
        }
        if let Some(c) = &self.charge {
            check_currency(&c.currency)?;
        }
        let len = self.buffer_len();
        if len > MAX_PACKET_LEN {
            return Err(RadiusError::TooLong(len));
        }
        Ok(())
    }

    /// The packet's length.
    pub fn buffer_len(&self) -> usize {
        let int = 2 + 4;
        let text = |v: &[u8]| 2 + v.len();
        HEADER_LEN
            + int
            + text(self.session_id)
            + text(self.user_name)
            + self.session_time.map_or(0, |_| int)
            + self.delay_time.map_or(0, |_| int)
            + match self.nas {
                Nas::IpAddress(_) => 2 + 4,
                Nas::Identifier(id) => text(id),
            }
            + self.event_timestamp.map_or(0, |_| int)
            + self.charge.map_or(0, |_| VSA_LEN)
    }

    /// Writes the packet (code 4, `identifier`, length, a zero
    /// authenticator, the attributes) into `packet`, whose buffer must be
    /// at least [`AccountingRequest::buffer_len`] long. Sign it with
    /// [`sign_request`] afterwards.
    pub fn emit(&self, packet: &mut Packet<&mut [u8]>, identifier: u8) -> Result<(), RadiusError> {
        self.check()?;
        let len = self.buffer_len();
        let buf: &mut [u8] = packet.buffer;
        let buf = buf.get_mut(..len).ok_or(RadiusError::Truncated)?;
        let mut attrs: Vec<u8> = Vec::with_capacity(len - HEADER_LEN);
        let mut put = |kind: u8, value: &[u8]| {
            // check() bounded every value to 253 octets.
            attrs.push(kind);
            attrs.push(u8::try_from(2 + value.len()).unwrap_or(u8::MAX));
            attrs.extend_from_slice(value);
        };
        put(attr::ACCT_STATUS_TYPE, &self.status.value().to_be_bytes());
        put(attr::ACCT_SESSION_ID, self.session_id);
        put(attr::USER_NAME, self.user_name);
        match self.nas {
            Nas::IpAddress(ip) => put(attr::NAS_IP_ADDRESS, &ip.octets()),
            Nas::Identifier(id) => put(attr::NAS_IDENTIFIER, id),
        }
        if let Some(t) = self.session_time {
            put(attr::ACCT_SESSION_TIME, &t.to_be_bytes());
        }
        if let Some(t) = self.delay_time {
            put(attr::ACCT_DELAY_TIME, &t.to_be_bytes());
        }
        if let Some(t) = self.event_timestamp {
            put(attr::EVENT_TIMESTAMP, &t.to_be_bytes());
        }
        if let Some(c) = self.charge {
            let mut v = Vec::with_capacity(VSA_LEN - 2);
            v.extend_from_slice(&VENDOR_ID.to_be_bytes());
            v.extend_from_slice(&[VSA_CHARGE_MINOR_UNITS, 10]);
            v.extend_from_slice(&c.minor_units.to_be_bytes());
            v.extend_from_slice(&[VSA_CURRENCY, 5]);
            v.extend_from_slice(&c.currency);
            put(attr::VENDOR_SPECIFIC, &v);
        }
        let mut p = Packet::new_unchecked(&mut *buf);
        p.set_code(CODE_ACCOUNTING_REQUEST);
        p.set_identifier(identifier);
        p.set_length(u16::try_from(len).map_err(|_| RadiusError::TooLong(len))?);
        p.set_authenticator(&[0; 16]);
        buf[HEADER_LEN..].copy_from_slice(&attrs);
        Ok(())
    }

    /// The whole signed packet.
    pub fn to_bytes(&self, identifier: u8, secret: &[u8]) -> Result<Vec<u8>, RadiusError> {
        if secret.is_empty() {
            return Err(RadiusError::EmptySecret);
        }
        let mut buf = vec![0; self.buffer_len()];
        self.emit(&mut Packet::new_unchecked(&mut buf[..]), identifier)?;
        sign_request(&mut buf, secret)?;
        Ok(buf)
    }
}

/// MD5(Code + Identifier + Length + `auth` + Attributes + Secret) of a
/// checked packet.
fn authenticator_over(packet: &[u8], auth: &[u8; 16], secret: &[u8]) -> [u8; 16] {
    let mut h = Md5::new();
    h.update(&packet[..field::AUTHENTICATOR.start]);
    h.update(auth);
    h.update(&packet[HEADER_LEN..]);
    h.update(secret);
    h.finalize().into()
}

/// The Request Authenticator of an Accounting-Request (RFC 2866 §3).
pub fn request_authenticator(packet: &[u8], secret: &[u8]) -> Result<[u8; 16], RadiusError> {
    let p = Packet::new_checked(packet)?;
    Ok(authenticator_over(p.as_bytes(), &[0; 16], secret))
}

/// Writes the Request Authenticator into an emitted Accounting-Request.
pub fn sign_request(packet: &mut [u8], secret: &[u8]) -> Result<(), RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    let auth = request_authenticator(packet, secret)?;
    Packet::new_unchecked(packet).set_authenticator(&auth);
    Ok(())
}

/// Checks an Accounting-Request's code and Request Authenticator (the
/// server's side; tests and fake servers).
pub fn verify_request<'a>(
    packet: &'a [u8],
    secret: &[u8],
) -> Result<Packet<&'a [u8]>, RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    let p = Packet::new_checked(packet)?;
    if p.code() != CODE_ACCOUNTING_REQUEST {
        return Err(RadiusError::UnexpectedCode(
            p.code(),
            CODE_ACCOUNTING_REQUEST,
        ));
    }
    let want = authenticator_over(p.as_bytes(), &[0; 16], secret);
    if bool::from(want.ct_eq(&p.authenticator())) {
        Ok(p)
    } else {
        Err(RadiusError::BadAuthenticator)
    }
}

/// The Response Authenticator for `response` (its own authenticator
/// field ignored) answering a request with `request_auth`.
pub fn response_authenticator(
    response: &[u8],
    request_auth: &[u8; 16],
    secret: &[u8],
) -> Result<[u8; 16], RadiusError> {
    let p = Packet::new_checked(response)?;
    Ok(authenticator_over(p.as_bytes(), request_auth, secret))
}

/// Checks that `response` is the Accounting-Response to `request` under
/// `secret`: code 5, the request's identifier, and the Response
/// Authenticator (compared in constant time).
pub fn verify_response(response: &[u8], request: &[u8], secret: &[u8]) -> Result<(), RadiusError> {
    if secret.is_empty() {
        return Err(RadiusError::EmptySecret);
    }
    let req = Packet::new_checked(request)?;
    let resp = Packet::new_checked(response)?;
    if resp.code() != CODE_ACCOUNTING_RESPONSE {
        return Err(RadiusError::UnexpectedCode(
            resp.code(),
            CODE_ACCOUNTING_RESPONSE,
        ));
    }
    if resp.identifier() != req.identifier() {
        return Err(RadiusError::IdentifierMismatch {
            expected: req.identifier(),
            got: resp.identifier(),
        });
    }
    // Well-formed attributes, too.
    for a in resp.attributes() {
        a?;
    }
    let want = authenticator_over(resp.as_bytes(), &req.authenticator(), secret);
    if bool::from(want.ct_eq(&resp.authenticator())) {
        Ok(())
    } else {
        Err(RadiusError::BadAuthenticator)
    }
}

/// The Accounting-Response (no attributes) a server sends for a verified
/// `request`: what a fake server in tests answers.
pub fn build_response(request: &[u8], secret: &[u8]) -> Result<Vec<u8>, RadiusError> {
    let req = verify_request(request, secret)?;
    let mut buf = vec![0; HEADER_LEN];
    let mut p = Packet::new_unchecked(&mut buf[..]);
    p.set_code(CODE_ACCOUNTING_RESPONSE);
    p.set_identifier(req.identifier());
    p.set_length(HEADER_LEN as u16);
    let auth = authenticator_over(&buf, &req.authenticator(), secret);
    Packet::new_unchecked(&mut buf[..]).set_authenticator(&auth);
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"xyzzy5461";

    /// An Accounting-Request Start, identifier 0x2a, as RFC 2866 lays it
    /// out; the authenticator field is zero here and signed in the tests.
    const START_HEADER: [u8; 4] = [4, 0x2a, 0, 85];
    const STATUS_START: [u8; 6] = [40, 6, 0, 0, 0, 1];
    const SESSION_ID: &[u8; 34] = b",\x2200112233445566778899aabbccddeeff";
    const USER_NAME: [u8; 7] = [1, 7, b'a', b'l', b'i', b'c', b'e'];
    const NAS_IP: [u8; 6] = [4, 6, 192, 0, 2, 1];
    const DELAY_0: [u8; 6] = [41, 6, 0, 0, 0, 0];
    const EVENT: [u8; 6] = [55, 6, 0x6b, 0x49, 0xd2, 0x00];
    /// The Stop of the same call, identifier 0x2b: 30 s, 160 EUR cents.
    const STOP_HEADER: [u8; 4] = [4, 0x2b, 0, 112];
    const STATUS_STOP: [u8; 6] = [40, 6, 0, 0, 0, 2];
    const SESSION_TIME: [u8; 6] = [46, 6, 0, 0, 0, 30];
    const VSA: [u8; 21] = [
        26, 21, 0, 0, 0x7e, 0xd9, 1, 10, 0, 0, 0, 0, 0, 0, 0, 160, 2, 5, b'E', b'U', b'R',
    ];

    fn start_unsigned() -> Vec<u8> {
        [
            &START_HEADER[..],
            &[0; 16],
            &STATUS_START,
            SESSION_ID,
            &USER_NAME,
            &NAS_IP,
            &DELAY_0,
            &EVENT,
        ]
        .concat()
    }

    fn stop_unsigned() -> Vec<u8> {
        [
            &STOP_HEADER[..],
            &[0; 16],
            &STATUS_STOP,
            SESSION_ID,
            &USER_NAME,
            &NAS_IP,
            &SESSION_TIME,
            &DELAY_0,
            &EVENT,
            &VSA,
        ]
        .concat()
    }

    fn start_repr() -> AccountingRequest<'static> {
        AccountingRequest {
            status: AcctStatusType::Start,
            session_id: &SESSION_ID[2..],
            user_name: b"alice",
            session_time: None,
            delay_time: Some(0),
            nas: Nas::IpAddress(Ipv4Addr::new(192, 0, 2, 1)),
            event_timestamp: Some(1_800_000_000),
            charge: None,
        }
    }

    fn stop_repr() -> AccountingRequest<'static> {
        AccountingRequest {
            status: AcctStatusType::Stop,
            session_time: Some(30),
            charge: Some(Charge {
                minor_units: 160,
                currency: *b"EUR",
            }),
            ..start_repr()
        }
    }

    /// The Request Authenticator computed here from its definition, apart
    /// from the code under test: MD5 over the packet with a zero
    /// authenticator, then the secret.
    fn independent_request_auth(unsigned: &[u8], secret: &[u8]) -> [u8; 16] {
        let mut input = unsigned.to_vec();
        input[4..20].fill(0);
        input.extend_from_slice(secret);
        Md5::digest(&input).into()
    }

    fn signed(unsigned: &[u8]) -> Vec<u8> {
        let mut p = unsigned.to_vec();
        let auth = independent_request_auth(unsigned, SECRET);
        p[4..20].copy_from_slice(&auth);
        p
    }

    #[test]
    fn deconstruct() {
        let bytes = signed(&start_unsigned());
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(p.code(), CODE_ACCOUNTING_REQUEST);
        assert_eq!(p.identifier(), 0x2a);
        assert_eq!(p.length(), 85);
        assert_eq!(p.authenticator(), independent_request_auth(&bytes, SECRET));
        let attrs: Vec<_> = p.attributes().collect::<Result<_, _>>().unwrap();
        let kinds: Vec<u8> = attrs.iter().map(|a| a.kind).collect();
        assert_eq!(kinds, [40, 44, 1, 4, 41, 55]);
        assert_eq!(attrs[1].value, b"00112233445566778899aabbccddeeff");
        assert_eq!(attrs[2].value, b"alice");
    }

    #[test]
    fn construct() {
        let mut buf = vec![0xff; start_repr().buffer_len()];
        start_repr()
            .emit(&mut Packet::new_unchecked(&mut buf[..]), 0x2a)
            .unwrap();
        assert_eq!(buf, start_unsigned());
        let mut buf = vec![0xff; stop_repr().buffer_len()];
        stop_repr()
            .emit(&mut Packet::new_unchecked(&mut buf[..]), 0x2b)
            .unwrap();
        assert_eq!(buf, stop_unsigned());
    }

    #[test]
    fn parse() {
        let start = signed(&start_unsigned());
        let p = Packet::new_checked(&start[..]).unwrap();
        assert_eq!(AccountingRequest::parse(&p).unwrap(), start_repr());
        let stop = signed(&stop_unsigned());
        let p = Packet::new_checked(&stop[..]).unwrap();
        assert_eq!(AccountingRequest::parse(&p).unwrap(), stop_repr());
    }

    #[test]
    fn emit() {
        // to_bytes signs: the authenticator is the independent one.
        for (repr, id, unsigned) in [
            (start_repr(), 0x2a, start_unsigned()),
            (stop_repr(), 0x2b, stop_unsigned()),
        ] {
            let bytes = repr.to_bytes(id, SECRET).unwrap();
            assert_eq!(bytes, signed(&unsigned));
            assert_eq!(
                request_authenticator(&bytes, SECRET).unwrap(),
                independent_request_auth(&unsigned, SECRET)
            );
            verify_request(&bytes, SECRET).unwrap();
        }
    }

    /// The authenticator against python3's hashlib, when python3 is here:
    /// an MD5 no one here wrote.
    #[test]
    fn request_authenticator_matches_python_hashlib() {
        let bytes = stop_repr().to_bytes(0x2b, SECRET).unwrap();
        let mut input = stop_unsigned();
        input.extend_from_slice(SECRET);
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        let out = std::process::Command::new("python3")
            .args([
                "-c",
                "import hashlib,sys; print(hashlib.md5(bytes.fromhex(sys.argv[1])).hexdigest())",
                &hex,
            ])
            .output();
        let Ok(out) = out else {
            eprintln!("python3 not found: cross-check skipped");
            return;
        };
        assert!(out.status.success());
        let want = String::from_utf8(out.stdout).unwrap();
        let got: String = Packet::new_checked(&bytes[..])
            .unwrap()
            .authenticator()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(got, want.trim());
    }

    #[test]
    fn a_wrong_secret_or_an_altered_octet_does_not_verify() {
        let bytes = start_repr().to_bytes(0x2a, SECRET).unwrap();
        assert_eq!(
            verify_request(&bytes, b"xyzzy5462").unwrap_err(),
            RadiusError::BadAuthenticator
        );
        assert_eq!(
            verify_request(&bytes, b"").unwrap_err(),
            RadiusError::EmptySecret
        );
        for i in 0..bytes.len() {
            if (2..4).contains(&i) {
                continue; // the length: a structural error instead
            }
            let mut bad = bytes.clone();
            bad[i] ^= 0x01;
            assert!(verify_request(&bad, SECRET).is_err(), "octet {i}");
        }
        assert_eq!(
            start_repr().to_bytes(1, b"").unwrap_err(),
            RadiusError::EmptySecret
        );
    }

    #[test]
    fn the_response_authenticator_verifies_only_for_its_request() {
        let req = stop_repr().to_bytes(0x2b, SECRET).unwrap();
        let resp = build_response(&req, SECRET).unwrap();
        // Independently: MD5(5, id, 20, request auth, secret).
        let mut input = vec![5, 0x2b, 0, 20];
        input.extend_from_slice(&req[4..20]);
        input.extend_from_slice(SECRET);
        let want: [u8; 16] = Md5::digest(&input).into();
        assert_eq!(&resp[4..20], &want);
        assert_eq!(
            response_authenticator(
                &resp,
                &Packet::new_checked(&req[..]).unwrap().authenticator(),
                SECRET
            )
            .unwrap(),
            want
        );
        verify_response(&resp, &req, SECRET).unwrap();
        assert_eq!(
            verify_response(&resp, &req, b"other").unwrap_err(),
            RadiusError::BadAuthenticator
        );
        // Another request (same call, new identifier after a retry).
        let req2 = stop_repr().to_bytes(0x2c, SECRET).unwrap();
        assert_eq!(
            verify_response(&resp, &req2, SECRET).unwrap_err(),
            RadiusError::IdentifierMismatch {
                expected: 0x2c,
                got: 0x2b
            }
        );
        let mut forged = resp.clone();
        forged[19] ^= 1;
        assert_eq!(
            verify_response(&forged, &req, SECRET).unwrap_err(),
            RadiusError::BadAuthenticator
        );
        // A request is not a response.
        assert_eq!(
            verify_response(&req, &req, SECRET).unwrap_err(),
            RadiusError::UnexpectedCode(4, 5)
        );
        // A response with attributes: they are covered.
        let mut with_attr = resp.clone();
        with_attr.extend_from_slice(&[18, 4, b'o', b'k']);
        with_attr[3] = 24;
        let auth =
            response_authenticator(&with_attr, &req[4..20].try_into().unwrap(), SECRET).unwrap();
        with_attr[4..20].copy_from_slice(&auth);
        verify_response(&with_attr, &req, SECRET).unwrap();
        with_attr[22] = b'O';
        assert_eq!(
            verify_response(&with_attr, &req, SECRET).unwrap_err(),
            RadiusError::BadAuthenticator
        );
        // A bad attribute in a response.
        let mut broken = with_attr.clone();
        broken[21] = 40;
        assert_eq!(
            verify_response(&broken, &req, SECRET).unwrap_err(),
            RadiusError::BadAttribute(20)
        );
    }

    #[test]
    fn truncated_packets_are_errors() {
        let bytes = stop_repr().to_bytes(1, SECRET).unwrap();
        for n in 0..bytes.len() {
            let cut = &bytes[..n];
            assert!(Packet::new_checked(cut).is_err(), "{n} octets");
            assert!(verify_request(cut, SECRET).is_err());
        }
        // The length field shortened: an attribute runs past the packet.
        let mut short = bytes.clone();
        short[3] -= 1;
        let p = Packet::new_checked(&short[..]).unwrap();
        assert!(matches!(
            AccountingRequest::parse(&p),
            Err(RadiusError::BadAttribute(_))
        ));
        // Padding after the length is ignored (RFC 2865 §3).
        let mut padded = bytes.clone();
        padded.extend_from_slice(&[0xee; 10]);
        verify_request(&padded, SECRET).unwrap();
        let p = Packet::new_checked(&padded[..]).unwrap();
        assert_eq!(AccountingRequest::parse(&p).unwrap(), stop_repr());
    }

    #[test]
    fn oversized_and_undersized_lengths_are_errors() {
        let mut big = start_unsigned();
        big.resize(5000, 0);
        big[2..4].copy_from_slice(&4097u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&big[..]).unwrap_err(),
            RadiusError::TooLong(4097)
        );
        let mut small = start_unsigned();
        small[2..4].copy_from_slice(&19u16.to_be_bytes());
        assert_eq!(
            Packet::new_checked(&small[..]).unwrap_err(),
            RadiusError::LengthTooShort(19)
        );
        // Values beyond 253 octets cannot be emitted.
        let long = [b'a'; 254];
        let repr = AccountingRequest {
            user_name: &long,
            ..start_repr()
        };
        assert_eq!(
            repr.to_bytes(1, SECRET).unwrap_err(),
            RadiusError::BadValue(1)
        );
        let ok = AccountingRequest {
            user_name: &long[..253],
            ..start_repr()
        };
        let bytes = ok.to_bytes(1, SECRET).unwrap();
        let p = Packet::new_checked(&bytes[..]).unwrap();
        assert_eq!(AccountingRequest::parse(&p).unwrap(), ok);
        let empty = AccountingRequest {
            session_id: b"",
            ..start_repr()
        };
        assert_eq!(
            empty.to_bytes(1, SECRET).unwrap_err(),
            RadiusError::BadValue(44)
        );
        let mut buf = [0u8; 30];
        assert_eq!(
            start_repr()
                .emit(&mut Packet::new_unchecked(&mut buf[..]), 1)
                .unwrap_err(),
            RadiusError::Truncated
        );
    }

    /// Rewrites a fixture's attribute list and length.
    fn with_attrs(attrs: &[&[u8]]) -> Vec<u8> {
        let mut p = start_unsigned()[..20].to_vec();
        for a in attrs {
            p.extend_from_slice(a);
        }
        let len = u16::try_from(p.len()).unwrap();
        p[2..4].copy_from_slice(&len.to_be_bytes());
        p
    }

    fn parse_err(bytes: &[u8]) -> RadiusError {
        let p = Packet::new_checked(bytes).unwrap();
        AccountingRequest::parse(&p).unwrap_err()
    }

    #[test]
    fn malformed_attributes_are_errors() {
        let base: [&[u8]; 4] = [&STATUS_START, SESSION_ID, &USER_NAME, &NAS_IP];
        // The base itself parses; unknown attributes are skipped.
        let p = with_attrs(&[&base[..], &[&[18u8, 3, b'x'][..]]].concat());
        Packet::new_checked(&p[..]).unwrap();
        AccountingRequest::parse(&Packet::new_checked(&p[..]).unwrap()).unwrap();
        // Attribute length 0 or 1, or past the end.
        for bad in [&[1u8, 0][..], &[1, 1], &[1, 9, b'a'], &[1]] {
            let p = with_attrs(&[&base[..], &[bad]].concat());
            assert!(matches!(parse_err(&p), RadiusError::BadAttribute(_)));
        }
        // An integer of the wrong size.
        let p = with_attrs(&[&base[..], &[&[46u8, 5, 0, 0, 1][..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadAttributeLength(46, 3));
        let p = with_attrs(&[&base[..], &[&[4u8, 7, 1, 2, 3, 4, 5][..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadAttributeLength(4, 5));
        // Twice.
        let p = with_attrs(&[&base[..], &[&USER_NAME[..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::DuplicateAttribute(1));
        // Empty text.
        let p = with_attrs(&[&base[..], &[&[32u8, 2][..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadValue(32));
        // Missing ones.
        let p = with_attrs(&[SESSION_ID, &USER_NAME, &NAS_IP]);
        assert_eq!(
            parse_err(&p),
            RadiusError::MissingAttribute("Acct-Status-Type")
        );
        let p = with_attrs(&[&STATUS_START, &USER_NAME, &NAS_IP]);
        assert_eq!(
            parse_err(&p),
            RadiusError::MissingAttribute("Acct-Session-Id")
        );
        let p = with_attrs(&[&STATUS_START, SESSION_ID, &USER_NAME]);
        assert_eq!(
            parse_err(&p),
            RadiusError::MissingAttribute("NAS-IP-Address")
        );
        // NAS-Identifier instead of the address.
        let p = with_attrs(&[
            &STATUS_START,
            SESSION_ID,
            &USER_NAME,
            &[32, 7, b'i', b'm', b'u', b'-', b'1'],
        ]);
        let bytes = p.clone();
        let r = AccountingRequest::parse(&Packet::new_checked(&bytes[..]).unwrap()).unwrap();
        assert_eq!(r.nas, Nas::Identifier(b"imu-1"));
        // Not an Accounting-Request.
        let mut p = start_unsigned();
        p[0] = 1;
        assert_eq!(parse_err(&p), RadiusError::UnexpectedCode(1, 4));
    }

    #[test]
    fn vendor_specific_attributes() {
        let base: [&[u8]; 4] = [&STATUS_STOP, SESSION_ID, &USER_NAME, &NAS_IP];
        // Another vendor's VSA is skipped.
        let other = [26u8, 9, 0, 0, 0, 9, 1, 3, 0];
        let p = with_attrs(&[&base[..], &[&other[..]]].concat());
        let r = AccountingRequest::parse(&Packet::new_checked(&p[..]).unwrap()).unwrap();
        assert_eq!(r.charge, None);
        // Ours, with an unknown sub-attribute skipped.
        let mut ours = VSA.to_vec();
        ours.extend_from_slice(&[9, 3, 0]);
        ours[1] = 24;
        let p = with_attrs(&[&base[..], &[&ours[..]]].concat());
        let r = AccountingRequest::parse(&Packet::new_checked(&p[..]).unwrap()).unwrap();
        assert_eq!(r.charge.unwrap().minor_units, 160);
        // A lower-case currency, a missing sub-attribute, a short amount,
        // a sub-attribute running past the VSA, a VSA without a vendor id.
        let mut lower = VSA;
        lower[18] = b'e';
        let missing = [26u8, 12, 0, 0, 0x7e, 0xd9, 2, 5, b'E', b'U', b'R', 0];
        let mut missing = missing.to_vec();
        missing.pop();
        missing[1] = 11;
        let mut short = VSA.to_vec();
        short[7] = 9;
        let mut overrun = VSA;
        overrun[17] = 9;
        for bad in [&lower[..], &missing, &short, &overrun] {
            let p = with_attrs(&[&base[..], &[bad]].concat());
            assert_eq!(parse_err(&p), RadiusError::BadVendorAttribute, "{bad:?}");
        }
        let p = with_attrs(&[&base[..], &[&[26u8, 5, 0, 0, 1][..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadAttributeLength(26, 3));
        // Two of ours, each with both: the charge twice.
        let p = with_attrs(&[&base[..], &[&VSA[..], &VSA[..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadVendorAttribute);
        // One VSA per sub-attribute (as FreeRADIUS sends them) is the same
        // charge.
        let units = [26u8, 16, 0, 0, 0x7e, 0xd9, 1, 10, 0, 0, 0, 0, 0, 0, 0, 160];
        let eur = [26u8, 11, 0, 0, 0x7e, 0xd9, 2, 5, b'E', b'U', b'R'];
        let p = with_attrs(&[&base[..], &[&eur[..], &units[..]]].concat());
        let r = AccountingRequest::parse(&Packet::new_checked(&p[..]).unwrap()).unwrap();
        assert_eq!(r.charge, stop_repr().charge);
        // Our vendor with no sub-attribute at all.
        let p = with_attrs(&[&base[..], &[&[26u8, 6, 0, 0, 0x7e, 0xd9][..]]].concat());
        assert_eq!(parse_err(&p), RadiusError::BadVendorAttribute);
        // A bad currency cannot be emitted.
        let repr = AccountingRequest {
            charge: Some(Charge {
                minor_units: 1,
                currency: *b"eu1",
            }),
            ..stop_repr()
        };
        assert_eq!(
            repr.to_bytes(1, SECRET).unwrap_err(),
            RadiusError::BadVendorAttribute
        );
    }

    /// Random garbage and random mutations of valid packets: every parser
    /// answers, none panics, and whatever parses re-encodes to itself.
    #[test]
    fn garbage_never_panics() {
        let mut s = 0x1234_5678_9abc_def0u64;
        let mut rnd = move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s
        };
        let valid = stop_repr().to_bytes(7, SECRET).unwrap();
        let resp = build_response(&valid, SECRET).unwrap();
        let mut parsed = 0;
        for i in 0..50_000 {
            let mut buf = if i % 2 == 0 {
                let mut b = valid.clone();
                for _ in 0..1 + rnd() % 4 {
                    let at = (rnd() as usize) % b.len();
                    b[at] = rnd() as u8;
                }
                b
            } else {
                let n = (rnd() % 300) as usize;
                let mut b: Vec<u8> = (0..n).map(|_| rnd() as u8).collect();
                if b.len() >= 4 {
                    b[0] = 4;
                    b[2..4].copy_from_slice(&(n as u16).to_be_bytes());
                }
                b
            };
            if rnd() % 3 == 0 {
                buf.truncate((rnd() as usize) % (buf.len() + 1));
            }
            let _ = verify_request(&buf, SECRET);
            let _ = verify_response(&buf, &valid, SECRET);
            let _ = verify_response(&resp, &buf, SECRET);
            let _ = build_response(&buf, SECRET);
            if let Ok(p) = Packet::new_checked(&buf[..]) {
                let _ = p.attributes().count();
                if let Ok(r) = AccountingRequest::parse(&p) {
                    parsed += 1;
                    let again = r.to_bytes(p.identifier(), SECRET).unwrap();
                    let p2 = Packet::new_checked(&again[..]).unwrap();
                    assert_eq!(AccountingRequest::parse(&p2).unwrap(), r);
                }
            }
        }
        assert!(parsed > 100, "only {parsed} parsed");
    }
}
