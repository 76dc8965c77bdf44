//! The directory's messages on the wire (docs/directory.md, "Messages"):
//! one UDP datagram each, big-endian, no padding.
//!
//! ```text
//! request : version(1)=1 kind(1)=1 code(16) len(2) AP-REQ(len)
//! answer  : version(1)=1 kind(1)=2 code(16) len(2) AP-REP(len) len(2) KRB-PRIV(len)
//! error   : version(1)=1 kind(1)=3 code(16) reason(1)
//! resolve : version(1)=1 kind(1)=4 n(1) digits(n) len(2) AP-REQ(len)
//! resolved: version(1)=1 kind(1)=5 n(1) digits(n) len(2) AP-REP(len) len(2) KRB-PRIV(len)
//! error   : version(1)=1 kind(1)=3 n(1) digits(n) reason(1)   (answering a resolve)
//! ```
//!
//! The AP-REQ's authenticator checksum covers the request's first 18 bytes
//! ([`Request::bound_bytes`]), which binds it to the identity code; a
//! resolve's covers its bytes before the AP-REQ length
//! ([`ResolveRequest::bound_bytes`]), which binds it to the number.

use crate::identity::IdentityCode;
use crate::record::{DialledNumber, E164_MAX_DIGITS};

pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_ANSWER: u8 = 2;
pub const KIND_ERROR: u8 = 3;
pub const KIND_RESOLVE: u8 = 4;
pub const KIND_RESOLVED: u8 = 5;
/// version, kind, code.
pub const HEADER_LEN: usize = 2 + IdentityCode::LEN;
/// Largest datagram either side accepts: room for a ticket and an
/// authenticator (about 1 KiB with roamgate's KDC) with a wide margin,
/// and below any common path MTU's reassembly limit.
pub const MAX_MESSAGE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("directory message of {0} bytes is shorter than its {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("directory message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    Oversized(usize),
    #[error("directory message version {0}; this directory speaks version {VERSION}")]
    Version(u8),
    #[error("directory message kind {got}, expected {want}")]
    Kind { got: u8, want: u8 },
    #[error("directory message {field} length {len} runs past the end ({left} bytes left)")]
    Length {
        field: &'static str,
        len: usize,
        left: usize,
    },
    #[error("directory message {field} is empty")]
    Empty { field: &'static str },
    #[error("directory message has {0} bytes after its last field")]
    Trailing(usize),
    #[error("directory error answer carries unknown reason {0}")]
    Reason(u8),
    #[error("directory message's dialled number is not 1 to {E164_MAX_DIGITS} ASCII digits")]
    Number,
}

/// Why the directory refused, as it tells the caller. Deliberately coarse:
/// the exact cause goes to the audit log only (docs/directory.md,
/// "Refusals").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The AP-REQ was refused: bad, expired or not-yet-valid ticket, clock
    /// skew, replay, wrong service, no subkey.
    AuthenticationFailed = 1,
    /// The code is unknown, or the ticket's client is not the unit's
    /// subscriber: one answer, so that a ticket holder cannot learn which
    /// codes exist.
    NotAuthorised = 2,
    /// The directory cannot serve now (its store failed).
    Unavailable = 3,
    /// No unit has the dialled number (answers a resolve only).
    UnknownNumber = 4,
}

impl Reason {
    pub fn from_u8(v: u8) -> Option<Self> {
        match v {
            1 => Some(Reason::AuthenticationFailed),
            2 => Some(Reason::NotAuthorised),
            3 => Some(Reason::Unavailable),
            4 => Some(Reason::UnknownNumber),
            _ => None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::AuthenticationFailed => {
                "authentication failed (check the ticket, its expiry and the clocks)"
            }
            Reason::NotAuthorised => {
                "not authorised (unknown identity code, or the ticket is not in the unit's own name)"
            }
            Reason::Unavailable => "the directory is unavailable; retry later",
            Reason::UnknownNumber => "unknown number: no unit has it",
        })
    }
}

/// A request: which unit, and the AP-REQ that proves who asks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub code: IdentityCode,
    pub ap_req: &'a [u8],
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<'a> {
    pub code: IdentityCode,
    pub ap_rep: &'a [u8],
    pub krb_priv: &'a [u8],
}

/// Any message a client may get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Answer(Answer<'a>),
    Error { code: IdentityCode, reason: Reason },
}

fn header(kind: u8, code: &IdentityCode) -> Vec<u8> {
    let mut b = Vec::with_capacity(256);
    b.push(VERSION);
    b.push(kind);
    b.extend_from_slice(code.as_bytes());
    b
}

fn push_field(b: &mut Vec<u8>, f: &[u8]) {
    // Fields are bounded by MAX_MESSAGE, so the length fits.
    b.extend_from_slice(&(f.len() as u16).to_be_bytes());
    b.extend_from_slice(f);
}

/// The header check common to all kinds; returns the kind, the code and
/// the rest.
fn split(bytes: &[u8]) -> Result<(u8, IdentityCode, &[u8]), WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::Oversized(bytes.len()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(WireError::Version(bytes[0]));
    }
    let mut code = [0u8; IdentityCode::LEN];
    code.copy_from_slice(&bytes[2..HEADER_LEN]);
    Ok((
        bytes[1],
        IdentityCode::from_bytes(code),
        &bytes[HEADER_LEN..],
    ))
}

fn field<'a>(rest: &mut &'a [u8], name: &'static str) -> Result<&'a [u8], WireError> {
    if rest.len() < 2 {
        return Err(WireError::Length {
            field: name,
            len: 2,
            left: rest.len(),
        });
    }
    let len = u16::from_be_bytes([rest[0], rest[1]]) as usize;
    let body = &rest[2..];
    if len > body.len() {
        return Err(WireError::Length {
            field: name,
            len,
            left: body.len(),
        });
    }
    if len == 0 {
        return Err(WireError::Empty { field: name });
    }
    let (f, r) = body.split_at(len);
    *rest = r;
    Ok(f)
}

fn end(rest: &[u8]) -> Result<(), WireError> {
    if rest.is_empty() {
        Ok(())
    } else {
        Err(WireError::Trailing(rest.len()))
    }
}

impl<'a> Request<'a> {
    /// The bytes the AP-REQ's authenticator checksum covers.
    pub fn bound_bytes(code: &IdentityCode) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0] = VERSION;
        b[1] = KIND_REQUEST;
        b[2..].copy_from_slice(code.as_bytes());
        b
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = header(KIND_REQUEST, &self.code);
        push_field(&mut b, self.ap_req);
        b
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, code, mut rest) = split(bytes)?;
        if kind != KIND_REQUEST {
            return Err(WireError::Kind {
                got: kind,
                want: KIND_REQUEST,
            });
        }
        let ap_req = field(&mut rest, "AP-REQ")?;
        end(rest)?;
        Ok(Self { code, ap_req })
    }
}

impl Answer<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = header(KIND_ANSWER, &self.code);
        push_field(&mut b, self.ap_rep);
        push_field(&mut b, self.krb_priv);
        b
    }
}

/// An error answer.
pub fn encode_error(code: &IdentityCode, reason: Reason) -> Vec<u8> {
    let mut b = header(KIND_ERROR, code);
    b.push(reason as u8);
    b
}

impl<'a> Reply<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, code, mut rest) = split(bytes)?;
        match kind {
            KIND_ANSWER => {
                let ap_rep = field(&mut rest, "AP-REP")?;
                let krb_priv = field(&mut rest, "KRB-PRIV")?;
                end(rest)?;
                Ok(Reply::Answer(Answer {
                    code,
                    ap_rep,
                    krb_priv,
                }))
            }
            KIND_ERROR => {
                let (&r, rest) = rest.split_first().ok_or(WireError::Length {
                    field: "reason",
                    len: 1,
                    left: 0,
                })?;
                end(rest)?;
                let reason = Reason::from_u8(r).ok_or(WireError::Reason(r))?;
                Ok(Reply::Error { code, reason })
            }
            got => Err(WireError::Kind {
                got,
                want: KIND_ANSWER,
            }),
        }
    }
}

/// A resolve request: which number, and the AP-REQ of the subscriber who
/// dials it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolveRequest<'a> {
    pub number: DialledNumber,
    pub ap_req: &'a [u8],
}

/// A successful resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved<'a> {
    pub number: DialledNumber,
    pub ap_rep: &'a [u8],
    pub krb_priv: &'a [u8],
}

/// Any message that answers a resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResolveReply<'a> {
    Resolved(Resolved<'a>),
    Error {
        number: DialledNumber,
        reason: Reason,
    },
}

/// version, kind, the number with its length byte.
fn number_header(kind: u8, number: &DialledNumber) -> Vec<u8> {
    let d = number.digits().as_bytes();
    let mut b = Vec::with_capacity(256);
    b.push(VERSION);
    b.push(kind);
    // At most 15 digits (DialledNumber's invariant).
    b.push(d.len() as u8);
    b.extend_from_slice(d);
    b
}

/// The header check of the number-addressed kinds; returns the kind, the
/// number and the rest.
fn split_number(bytes: &[u8]) -> Result<(u8, DialledNumber, &[u8]), WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::Oversized(bytes.len()));
    }
    if bytes.len() < 3 {
        return Err(WireError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(WireError::Version(bytes[0]));
    }
    let n = bytes[2] as usize;
    let rest = &bytes[3..];
    if n > rest.len() {
        return Err(WireError::Length {
            field: "number",
            len: n,
            left: rest.len(),
        });
    }
    if n == 0 {
        return Err(WireError::Empty { field: "number" });
    }
    let (d, rest) = rest.split_at(n);
    if n > E164_MAX_DIGITS || !d.iter().all(u8::is_ascii_digit) {
        return Err(WireError::Number);
    }
    let number = std::str::from_utf8(d)
        .ok()
        .and_then(|s| DialledNumber::parse(s).ok())
        .ok_or(WireError::Number)?;
    Ok((bytes[1], number, rest))
}

impl<'a> ResolveRequest<'a> {
    /// The bytes the AP-REQ's authenticator checksum covers: version, kind
    /// and the number with its length byte (everything before the AP-REQ's
    /// length).
    pub fn bound_bytes(number: &DialledNumber) -> Vec<u8> {
        number_header(KIND_RESOLVE, number)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut b = number_header(KIND_RESOLVE, &self.number);
        push_field(&mut b, self.ap_req);
        b
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, number, mut rest) = split_number(bytes)?;
        if kind != KIND_RESOLVE {
            return Err(WireError::Kind {
                got: kind,
                want: KIND_RESOLVE,
            });
        }
        let ap_req = field(&mut rest, "AP-REQ")?;
        end(rest)?;
        Ok(Self { number, ap_req })
    }
}

impl Resolved<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = number_header(KIND_RESOLVED, &self.number);
        push_field(&mut b, self.ap_rep);
        push_field(&mut b, self.krb_priv);
        b
    }
}

/// An error answer to a resolve.
pub fn encode_resolve_error(number: &DialledNumber, reason: Reason) -> Vec<u8> {
    let mut b = number_header(KIND_ERROR, number);
    b.push(reason as u8);
    b
}

impl<'a> ResolveReply<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, number, mut rest) = split_number(bytes)?;
        match kind {
            KIND_RESOLVED => {
                let ap_rep = field(&mut rest, "AP-REP")?;
                let krb_priv = field(&mut rest, "KRB-PRIV")?;
                end(rest)?;
                Ok(ResolveReply::Resolved(Resolved {
                    number,
                    ap_rep,
                    krb_priv,
                }))
            }
            KIND_ERROR => {
                let (&r, rest) = rest.split_first().ok_or(WireError::Length {
                    field: "reason",
                    len: 1,
                    left: 0,
                })?;
                end(rest)?;
                let reason = Reason::from_u8(r).ok_or(WireError::Reason(r))?;
                Ok(ResolveReply::Error { number, reason })
            }
            got => Err(WireError::Kind {
                got,
                want: KIND_RESOLVED,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CODE: IdentityCode = IdentityCode::from_bytes([0xab; 16]);

    #[test]
    fn request_fixture() {
        let b = Request {
            code: CODE,
            ap_req: &[0x6e, 0x01, 0x00],
        }
        .encode();
        let mut want = vec![1, 1];
        want.extend_from_slice(&[0xab; 16]);
        want.extend_from_slice(&[0, 3, 0x6e, 0x01, 0x00]);
        assert_eq!(b, want);
        assert_eq!(&Request::bound_bytes(&CODE)[..], &b[..HEADER_LEN]);
        let r = Request::parse(&b).unwrap();
        assert_eq!(r.code, CODE);
        assert_eq!(r.ap_req, &[0x6e, 0x01, 0x00]);
    }

    #[test]
    fn answer_and_error_round_trip() {
        let a = Answer {
            code: CODE,
            ap_rep: b"rep",
            krb_priv: b"priv",
        };
        assert_eq!(Reply::parse(&a.encode()).unwrap(), Reply::Answer(a));
        let e = encode_error(&CODE, Reason::NotAuthorised);
        assert_eq!(e.len(), HEADER_LEN + 1);
        assert_eq!(e[..2], [1, 3]);
        assert_eq!(e[HEADER_LEN], 2);
        assert_eq!(
            Reply::parse(&e).unwrap(),
            Reply::Error {
                code: CODE,
                reason: Reason::NotAuthorised
            }
        );
    }

    #[test]
    fn bad_requests_get_typed_errors() {
        let good = Request {
            code: CODE,
            ap_req: &[9; 10],
        }
        .encode();
        for n in 0..good.len() {
            assert!(Request::parse(&good[..n]).is_err(), "prefix {n}");
        }
        let mut t = good.clone();
        t.push(0);
        assert_eq!(Request::parse(&t), Err(WireError::Trailing(1)));
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(Request::parse(&v), Err(WireError::Version(2)));
        let mut k = good.clone();
        k[1] = KIND_ANSWER;
        assert!(matches!(Request::parse(&k), Err(WireError::Kind { .. })));
        let mut z = good[..HEADER_LEN].to_vec();
        z.extend_from_slice(&[0, 0]);
        assert_eq!(
            Request::parse(&z),
            Err(WireError::Empty { field: "AP-REQ" })
        );
        assert_eq!(
            Request::parse(&vec![1; MAX_MESSAGE + 1]),
            Err(WireError::Oversized(MAX_MESSAGE + 1))
        );
        let mut r = encode_error(&CODE, Reason::Unavailable);
        r[HEADER_LEN] = 9;
        assert_eq!(Reply::parse(&r), Err(WireError::Reason(9)));
    }

    fn number() -> DialledNumber {
        DialledNumber::parse("+4930555").unwrap()
    }

    #[test]
    fn resolve_fixture() {
        let b = ResolveRequest {
            number: number(),
            ap_req: &[0x6e, 0x01, 0x00],
        }
        .encode();
        let mut want = vec![1, 4, 7];
        want.extend_from_slice(b"4930555");
        want.extend_from_slice(&[0, 3, 0x6e, 0x01, 0x00]);
        assert_eq!(b, want);
        let bound = ResolveRequest::bound_bytes(&number());
        assert_eq!(&bound[..], &b[..10]);
        let r = ResolveRequest::parse(&b).unwrap();
        assert_eq!(r.number, number());
        assert_eq!(r.ap_req, &[0x6e, 0x01, 0x00]);
        // Not a lookup request, and a lookup request is not a resolve.
        assert!(Request::parse(&b).is_err());
        let look = Request {
            code: CODE,
            ap_req: &[1],
        }
        .encode();
        assert!(ResolveRequest::parse(&look).is_err());
    }

    #[test]
    fn resolved_and_its_error_round_trip() {
        let a = Resolved {
            number: number(),
            ap_rep: b"rep",
            krb_priv: b"priv",
        };
        assert_eq!(
            ResolveReply::parse(&a.encode()).unwrap(),
            ResolveReply::Resolved(a)
        );
        let e = encode_resolve_error(&number(), Reason::UnknownNumber);
        let mut want = vec![1, 3, 7];
        want.extend_from_slice(b"4930555");
        want.push(4);
        assert_eq!(e, want);
        assert_eq!(
            ResolveReply::parse(&e).unwrap(),
            ResolveReply::Error {
                number: number(),
                reason: Reason::UnknownNumber
            }
        );
    }

    #[test]
    fn bad_resolves_get_typed_errors() {
        let good = ResolveRequest {
            number: number(),
            ap_req: &[9; 10],
        }
        .encode();
        for n in 0..good.len() {
            assert!(ResolveRequest::parse(&good[..n]).is_err(), "prefix {n}");
        }
        let mut t = good.clone();
        t.push(0);
        assert_eq!(ResolveRequest::parse(&t), Err(WireError::Trailing(1)));
        let mut d = good.clone();
        d[4] = b'+';
        assert_eq!(ResolveRequest::parse(&d), Err(WireError::Number));
        let mut z = vec![1, 4, 0, 0, 1, 9];
        assert_eq!(
            ResolveRequest::parse(&z),
            Err(WireError::Empty { field: "number" })
        );
        z = vec![1, 4, 16];
        z.extend_from_slice(&[b'1'; 16]);
        z.extend_from_slice(&[0, 1, 9]);
        assert_eq!(ResolveRequest::parse(&z), Err(WireError::Number));
        assert_eq!(
            ResolveRequest::parse(&vec![1; MAX_MESSAGE + 1]),
            Err(WireError::Oversized(MAX_MESSAGE + 1))
        );
    }
}
