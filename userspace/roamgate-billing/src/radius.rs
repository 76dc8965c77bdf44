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
/// operator) registers its own number. Never 0: RFC 2865 §5.26 reserves
/// the high octet 0 and 0 itself is IANA's.
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

/// roamgate's VSA value (after type and length): Some(charge) for ours,
/// None for another vendor's.
fn parse_vsa(value: &[u8]) -> Result<Option<Charge>, RadiusError> {
    let Some((vendor, mut subs)) = value.split_first_chunk::<4>() else {
        return Err(RadiusError::BadAttributeLength(
            attr::VENDOR_SPECIFIC,
            value.len(),
        ));
    };
    if u32::from_be_bytes(*vendor) != VENDOR_ID {
        return Ok(None);
    }
    let (mut units, mut currency) = (None, None);
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
                set_once(&mut units, kind, u64::from_be_bytes(v))
                    .map_err(|_| RadiusError::BadVendorAttribute)?;
            }
            VSA_CURRENCY => {
                let v = <[u8; 3]>::try_from(v).map_err(|_| RadiusError::BadVendorAttribute)?;
                check_currency(&v)?;
                set_once(&mut currency, kind, v).map_err(|_| RadiusError::BadVendorAttribute)?;
            }
            _ => {}
        }
        subs = &subs[len..];
    }
    match (units, currency) {
        (Some(minor_units), Some(currency)) => Ok(Some(Charge {
            minor_units,
            currency,
        })),
        _ => Err(RadiusError::BadVendorAttribute),
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
        let mut charge = None;
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
                attr::VENDOR_SPECIFIC => {
                    if let Some(c) = parse_vsa(a.value)? {
                        set_once(&mut charge, a.kind, c)?;
                    }
                }
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
            charge,
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
