//! The billing service's messages on the wire (docs/billing.md, "The
//! service"): one UDP datagram each, big-endian, no padding.
//!
//! ```text
//! request: version(1)=1 kind(1)=1 nonce(8) len(2) AP-REQ(len) len(2) KRB-PRIV(len)
//! answer : version(1)=1 kind(1)=2 nonce(8) len(2) AP-REP(len) len(2) KRB-PRIV(len)
//! error  : version(1)=1 kind(1)=3 nonce(8) reason(1)
//! ```
//!
//! The AP-REQ's authenticator checksum covers the request's first
//! [`HEADER_LEN`] bytes ([`bound_bytes`]), which binds it to the nonce.
//! The request's KRB-PRIV is sealed under the AP-REQ's subkey and carries
//! an [`OpBody`] (the nonce again and the operation); the answer's KRB-PRIV
//! carries a [`ResultBody`] (the nonce, the call id and the result). An
//! error answer is unauthenticated: a hint for the operator, never a grant.
//!
//! Every parser checks lengths before it reads, returns a typed
//! [`WireError`], and never panics.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::ledger::CallId;

pub const VERSION: u8 = 1;
pub const KIND_REQUEST: u8 = 1;
pub const KIND_ANSWER: u8 = 2;
pub const KIND_ERROR: u8 = 3;
/// version, kind, nonce.
pub const HEADER_LEN: usize = 2 + 8;
/// Largest datagram either side accepts: a ticket and an authenticator
/// (about 1 KiB with roamgate's KDC) with a wide margin.
pub const MAX_MESSAGE: usize = 4096;

const OP_OPEN: u8 = 1;
const OP_CLOSE: u8 = 2;
/// nonce(8) tag(1) call_id(16) time_ms(8).
pub const OP_BODY_LEN: usize = 8 + 1 + 16 + 8;

const RES_OPENED: u8 = 1;
const RES_ALREADY_OPEN: u8 = 2;
const RES_CLOSED: u8 = 3;
const RES_ALREADY_CLOSED: u8 = 4;
const RES_REFUSED: u8 = 5;
/// nonce(8) call_id(16) tag(1), then the tag's fields.
const RESULT_HEAD_LEN: usize = 8 + 16 + 1;
/// `allowed_seconds` on the wire when nothing limits the call.
const NO_LIMIT: u64 = u64::MAX;

fn limit(v: u64) -> Option<u64> {
    (v != NO_LIMIT).then_some(v)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("billing message of {0} bytes is shorter than its {HEADER_LEN}-byte header")]
    Short(usize),
    #[error("billing message of {0} bytes exceeds the {MAX_MESSAGE}-byte limit")]
    Oversized(usize),
    #[error("billing message version {0}; this service speaks version {VERSION}")]
    Version(u8),
    #[error("billing message kind {got}, expected {want}")]
    Kind { got: u8, want: u8 },
    #[error("billing message {field} length {len} runs past the end ({left} bytes left)")]
    Length {
        field: &'static str,
        len: usize,
        left: usize,
    },
    #[error("billing message {field} is empty")]
    Empty { field: &'static str },
    #[error("billing message has {0} bytes after its last field")]
    Trailing(usize),
    #[error("billing error answer carries unknown reason {0}")]
    Reason(u8),
    #[error("billing {what} carries unknown tag {tag}")]
    Tag { what: &'static str, tag: u8 },
    #[error("billing {what} is {got} bytes, expected {want}")]
    BodyLength {
        what: &'static str,
        got: usize,
        want: usize,
    },
    #[error("billing message time {0} ms is out of range")]
    Time(u64),
    #[error("billing result amount {0} is negative or out of range")]
    Amount(u64),
}

/// Why the service refused, as it tells the caller: inside the sealed
/// result ([`Result::Refused`]), or, for the first four, in an
/// unauthenticated error answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// The AP-REQ or the KRB-PRIV was refused: bad, expired or
    /// not-yet-valid ticket, clock skew, replay, wrong service, no subkey,
    /// altered bytes. (Error answer.)
    AuthenticationFailed = 1,
    /// The service cannot serve now (its ledger failed). Retry. (Error
    /// answer, or sealed.)
    Unavailable = 2,
    /// The ticket's client principal is bound to no account.
    NoAccount = 3,
    /// The account has no tariff.
    NoTariff = 4,
    /// Prepaid: the balance does not cover the setup fee and the minimum
    /// seconds.
    InsufficientFunds = 5,
    /// Postpaid: the credit limit would be exceeded.
    CreditLimit = 6,
    /// The call id is charged to another account.
    NotYourCall = 7,
    /// Close of a call id no charge was opened for.
    UnknownCall = 8,
    /// The operation's time is in the future (beyond the clock skew) or
    /// out of range.
    BadTime = 9,
    /// The operation failed the ledger's validation (an overflowing
    /// amount, say); nothing was charged.
    Invalid = 10,
}

impl Reason {
    pub const ALL: [Reason; 10] = [
        Reason::AuthenticationFailed,
        Reason::Unavailable,
        Reason::NoAccount,
        Reason::NoTariff,
        Reason::InsufficientFunds,
        Reason::CreditLimit,
        Reason::NotYourCall,
        Reason::UnknownCall,
        Reason::BadTime,
        Reason::Invalid,
    ];

    pub fn from_u8(v: u8) -> Option<Self> {
        Self::ALL.into_iter().find(|r| *r as u8 == v)
    }

    /// A short name for metrics labels.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::AuthenticationFailed => "authentication_failed",
            Reason::Unavailable => "unavailable",
            Reason::NoAccount => "no_account",
            Reason::NoTariff => "no_tariff",
            Reason::InsufficientFunds => "insufficient_funds",
            Reason::CreditLimit => "credit_limit",
            Reason::NotYourCall => "not_your_call",
            Reason::UnknownCall => "unknown_call",
            Reason::BadTime => "bad_time",
            Reason::Invalid => "invalid",
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Reason::AuthenticationFailed => {
                "authentication failed (check the ticket, its expiry and the clocks)"
            }
            Reason::Unavailable => "the billing service is unavailable; retry later",
            Reason::NoAccount => "the ticket's client is bound to no account",
            Reason::NoTariff => "the account has no tariff",
            Reason::InsufficientFunds => "insufficient funds on the prepaid account",
            Reason::CreditLimit => "the postpaid account's credit limit is reached",
            Reason::NotYourCall => "the call is charged to another account",
            Reason::UnknownCall => "no charge was opened for this call",
            Reason::BadTime => "the operation's time is in the future or out of range",
            Reason::Invalid => "the operation is invalid (amount out of range)",
        })
    }
}

/// A charge operation, sealed in the request's KRB-PRIV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    OpenCharge {
        call_id: [u8; 16],
        started_at: SystemTime,
    },
    CloseCharge {
        call_id: [u8; 16],
        ended_at: SystemTime,
    },
}

impl Op {
    pub fn call(&self) -> CallId {
        match self {
            Op::OpenCharge { call_id, .. } | Op::CloseCharge { call_id, .. } => CallId(*call_id),
        }
    }
}

/// The result of one operation, sealed in the answer's KRB-PRIV.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpResult {
    /// `allowed_seconds`: for a prepaid account, how long from its start
    /// the call may last (the balance pays for no more); `None`: no limit.
    Opened {
        allowed_seconds: Option<u64>,
    },
    AlreadyOpen {
        allowed_seconds: Option<u64>,
    },
    Closed {
        amount: i64,
        seconds: u64,
    },
    AlreadyClosed {
        amount: i64,
        seconds: u64,
    },
    Refused {
        reason: Reason,
    },
}

fn time_ms(t: SystemTime) -> u64 {
    // Before 1970 encodes as 0; after year 584 million as u64::MAX, which
    // the parser refuses.
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// Times up to year 9999 (253,402,300,799 s).
const MAX_TIME_MS: u64 = 253_402_300_799_999;

fn parse_time(ms: u64) -> Result<SystemTime, WireError> {
    if ms > MAX_TIME_MS {
        return Err(WireError::Time(ms));
    }
    Ok(UNIX_EPOCH + Duration::from_millis(ms))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_be_bytes(a)
}

/// The sealed body of a request: the nonce (so that a KRB-PRIV cannot
/// be moved to another request's header) and the operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OpBody {
    pub nonce: u64,
    pub op: Op,
}

impl OpBody {
    pub fn encode(&self) -> [u8; OP_BODY_LEN] {
        let mut b = [0u8; OP_BODY_LEN];
        b[..8].copy_from_slice(&self.nonce.to_be_bytes());
        let (tag, call, t) = match self.op {
            Op::OpenCharge {
                call_id,
                started_at,
            } => (OP_OPEN, call_id, started_at),
            Op::CloseCharge { call_id, ended_at } => (OP_CLOSE, call_id, ended_at),
        };
        b[8] = tag;
        b[9..25].copy_from_slice(&call);
        b[25..33].copy_from_slice(&time_ms(t).to_be_bytes());
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() != OP_BODY_LEN {
            return Err(WireError::BodyLength {
                what: "operation",
                got: b.len(),
                want: OP_BODY_LEN,
            });
        }
        let nonce = u64_at(b, 0);
        let mut call_id = [0u8; 16];
        call_id.copy_from_slice(&b[9..25]);
        let t = parse_time(u64_at(b, 25))?;
        let op = match b[8] {
            OP_OPEN => Op::OpenCharge {
                call_id,
                started_at: t,
            },
            OP_CLOSE => Op::CloseCharge {
                call_id,
                ended_at: t,
            },
            tag => {
                return Err(WireError::Tag {
                    what: "operation",
                    tag,
                })
            }
        };
        Ok(Self { nonce, op })
    }
}

/// The sealed body of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResultBody {
    pub nonce: u64,
    pub call_id: [u8; 16],
    pub result: OpResult,
}

fn amount_seconds(b: &mut Vec<u8>, amount: i64, seconds: u64) {
    // A ledger amount is never negative (0..=MAX_AMOUNT).
    b.extend_from_slice(&amount.max(0).unsigned_abs().to_be_bytes());
    b.extend_from_slice(&seconds.to_be_bytes());
}

impl ResultBody {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(RESULT_HEAD_LEN + 16);
        b.extend_from_slice(&self.nonce.to_be_bytes());
        b.extend_from_slice(&self.call_id);
        match self.result {
            OpResult::Opened { allowed_seconds } => {
                b.push(RES_OPENED);
                b.extend_from_slice(&allowed_seconds.unwrap_or(NO_LIMIT).to_be_bytes());
            }
            OpResult::AlreadyOpen { allowed_seconds } => {
                b.push(RES_ALREADY_OPEN);
                b.extend_from_slice(&allowed_seconds.unwrap_or(NO_LIMIT).to_be_bytes());
            }
            OpResult::Closed { amount, seconds } => {
                b.push(RES_CLOSED);
                amount_seconds(&mut b, amount, seconds);
            }
            OpResult::AlreadyClosed { amount, seconds } => {
                b.push(RES_ALREADY_CLOSED);
                amount_seconds(&mut b, amount, seconds);
            }
            OpResult::Refused { reason } => {
                b.push(RES_REFUSED);
                b.push(reason as u8);
            }
        }
        b
    }

    pub fn parse(b: &[u8]) -> Result<Self, WireError> {
        if b.len() < RESULT_HEAD_LEN {
            return Err(WireError::BodyLength {
                what: "result",
                got: b.len(),
                want: RESULT_HEAD_LEN,
            });
        }
        let nonce = u64_at(b, 0);
        let mut call_id = [0u8; 16];
        call_id.copy_from_slice(&b[8..24]);
        let tag = b[24];
        let rest = &b[RESULT_HEAD_LEN..];
        let want = match tag {
            RES_OPENED | RES_ALREADY_OPEN => 8,
            RES_CLOSED | RES_ALREADY_CLOSED => 16,
            RES_REFUSED => 1,
            tag => {
                return Err(WireError::Tag {
                    what: "result",
                    tag,
                })
            }
        };
        if rest.len() != want {
            return Err(WireError::BodyLength {
                what: "result",
                got: b.len(),
                want: RESULT_HEAD_LEN + want,
            });
        }
        let money = || -> Result<(i64, u64), WireError> {
            let a = u64_at(rest, 0);
            let amount = i64::try_from(a)
                .ok()
                .filter(|v| *v <= crate::tariff::MAX_AMOUNT)
                .ok_or(WireError::Amount(a))?;
            Ok((amount, u64_at(rest, 8)))
        };
        let result = match tag {
            RES_OPENED => OpResult::Opened {
                allowed_seconds: limit(u64_at(rest, 0)),
            },
            RES_ALREADY_OPEN => OpResult::AlreadyOpen {
                allowed_seconds: limit(u64_at(rest, 0)),
            },
            RES_CLOSED => {
                let (amount, seconds) = money()?;
                OpResult::Closed { amount, seconds }
            }
            RES_ALREADY_CLOSED => {
                let (amount, seconds) = money()?;
                OpResult::AlreadyClosed { amount, seconds }
            }
            _ => OpResult::Refused {
                reason: Reason::from_u8(rest[0]).ok_or(WireError::Reason(rest[0]))?,
            },
        };
        Ok(Self {
            nonce,
            call_id,
            result,
        })
    }
}

/// A request as it travels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request<'a> {
    pub nonce: u64,
    pub ap_req: &'a [u8],
    pub krb_priv: &'a [u8],
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer<'a> {
    pub nonce: u64,
    pub ap_rep: &'a [u8],
    pub krb_priv: &'a [u8],
}

/// Any message a client may get back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply<'a> {
    Answer(Answer<'a>),
    Error { nonce: u64, reason: Reason },
}

/// The bytes the AP-REQ's authenticator checksum covers: version, kind
/// and nonce of a request.
pub fn bound_bytes(nonce: u64) -> [u8; HEADER_LEN] {
    header(KIND_REQUEST, nonce)
}

fn header(kind: u8, nonce: u64) -> [u8; HEADER_LEN] {
    let mut b = [0u8; HEADER_LEN];
    b[0] = VERSION;
    b[1] = kind;
    b[2..].copy_from_slice(&nonce.to_be_bytes());
    b
}

fn push_field(b: &mut Vec<u8>, f: &[u8]) {
    // Callers bound fields by MAX_MESSAGE; a longer one is cut to what the
    // length can say, and the receiver refuses the message.
    let len = u16::try_from(f.len()).unwrap_or(u16::MAX);
    b.extend_from_slice(&len.to_be_bytes());
    b.extend_from_slice(&f[..usize::from(len)]);
}

/// The header check common to all kinds; returns the kind, the nonce and
/// the rest.
fn split(bytes: &[u8]) -> Result<(u8, u64, &[u8]), WireError> {
    if bytes.len() > MAX_MESSAGE {
        return Err(WireError::Oversized(bytes.len()));
    }
    if bytes.len() < HEADER_LEN {
        return Err(WireError::Short(bytes.len()));
    }
    if bytes[0] != VERSION {
        return Err(WireError::Version(bytes[0]));
    }
    Ok((bytes[1], u64_at(bytes, 2), &bytes[HEADER_LEN..]))
}

fn field<'a>(rest: &mut &'a [u8], name: &'static str) -> Result<&'a [u8], WireError> {
    if rest.len() < 2 {
        return Err(WireError::Length {
            field: name,
            len: 2,
            left: rest.len(),
        });
    }
    let len = usize::from(u16::from_be_bytes([rest[0], rest[1]]));
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
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + 4 + self.ap_req.len() + self.krb_priv.len());
        b.extend_from_slice(&header(KIND_REQUEST, self.nonce));
        push_field(&mut b, self.ap_req);
        push_field(&mut b, self.krb_priv);
        b
    }

    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, nonce, mut rest) = split(bytes)?;
        if kind != KIND_REQUEST {
            return Err(WireError::Kind {
                got: kind,
                want: KIND_REQUEST,
            });
        }
        let ap_req = field(&mut rest, "AP-REQ")?;
        let krb_priv = field(&mut rest, "KRB-PRIV")?;
        end(rest)?;
        Ok(Self {
            nonce,
            ap_req,
            krb_priv,
        })
    }
}

impl Answer<'_> {
    pub fn encode(&self) -> Vec<u8> {
        let mut b = Vec::with_capacity(HEADER_LEN + 4 + self.ap_rep.len() + self.krb_priv.len());
        b.extend_from_slice(&header(KIND_ANSWER, self.nonce));
        push_field(&mut b, self.ap_rep);
        push_field(&mut b, self.krb_priv);
        b
    }
}

/// An unauthenticated error answer.
pub fn encode_error(nonce: u64, reason: Reason) -> Vec<u8> {
    let mut b = header(KIND_ERROR, nonce).to_vec();
    b.push(reason as u8);
    b
}

impl<'a> Reply<'a> {
    pub fn parse(bytes: &'a [u8]) -> Result<Self, WireError> {
        let (kind, nonce, mut rest) = split(bytes)?;
        match kind {
            KIND_ANSWER => {
                let ap_rep = field(&mut rest, "AP-REP")?;
                let krb_priv = field(&mut rest, "KRB-PRIV")?;
                end(rest)?;
                Ok(Reply::Answer(Answer {
                    nonce,
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
                Ok(Reply::Error { nonce, reason })
            }
            got => Err(WireError::Kind {
                got,
                want: KIND_ANSWER,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: u64 = 0x0102_0304_0506_0708;

    #[test]
    fn request_fixture_deconstruct_and_construct() {
        let b = Request {
            nonce: NONCE,
            ap_req: &[0x6e, 0x01],
            krb_priv: &[0x75],
        }
        .encode();
        let want = [1, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 2, 0x6e, 0x01, 0, 1, 0x75];
        assert_eq!(b, want);
        assert_eq!(&bound_bytes(NONCE)[..], &b[..HEADER_LEN]);
        let r = Request::parse(&want).unwrap();
        assert_eq!(r.nonce, NONCE);
        assert_eq!(r.ap_req, &[0x6e, 0x01]);
        assert_eq!(r.krb_priv, &[0x75]);
    }

    #[test]
    fn answer_and_error_round_trip() {
        let a = Answer {
            nonce: NONCE,
            ap_rep: b"rep",
            krb_priv: b"priv",
        };
        assert_eq!(Reply::parse(&a.encode()).unwrap(), Reply::Answer(a));
        for reason in Reason::ALL {
            let e = encode_error(NONCE, reason);
            assert_eq!(e.len(), HEADER_LEN + 1);
            assert_eq!(
                Reply::parse(&e).unwrap(),
                Reply::Error {
                    nonce: NONCE,
                    reason
                }
            );
        }
        let mut e = encode_error(NONCE, Reason::Unavailable);
        e[HEADER_LEN] = 0;
        assert_eq!(Reply::parse(&e), Err(WireError::Reason(0)));
    }

    #[test]
    fn op_body_round_trips_and_fixture() {
        let t = UNIX_EPOCH + Duration::from_millis(1_800_000_000_123);
        for op in [
            Op::OpenCharge {
                call_id: [7; 16],
                started_at: t,
            },
            Op::CloseCharge {
                call_id: [9; 16],
                ended_at: t,
            },
        ] {
            let b = OpBody { nonce: NONCE, op }.encode();
            assert_eq!(OpBody::parse(&b).unwrap(), OpBody { nonce: NONCE, op });
        }
        let b = OpBody {
            nonce: 1,
            op: Op::OpenCharge {
                call_id: [0xaa; 16],
                started_at: UNIX_EPOCH + Duration::from_millis(0x0102),
            },
        }
        .encode();
        let mut want = vec![0, 0, 0, 0, 0, 0, 0, 1, 1];
        want.extend_from_slice(&[0xaa; 16]);
        want.extend_from_slice(&[0, 0, 0, 0, 0, 0, 1, 2]);
        assert_eq!(&b[..], &want[..]);
    }

    #[test]
    fn bad_op_bodies_get_typed_errors() {
        let good = OpBody {
            nonce: 1,
            op: Op::CloseCharge {
                call_id: [1; 16],
                ended_at: UNIX_EPOCH,
            },
        }
        .encode();
        for n in 0..good.len() {
            assert!(
                matches!(OpBody::parse(&good[..n]), Err(WireError::BodyLength { .. })),
                "{n}"
            );
        }
        let mut long = good.to_vec();
        long.push(0);
        assert!(matches!(
            OpBody::parse(&long),
            Err(WireError::BodyLength { .. })
        ));
        let mut tag = good;
        tag[8] = 3;
        assert_eq!(
            OpBody::parse(&tag),
            Err(WireError::Tag {
                what: "operation",
                tag: 3
            })
        );
        let mut time = good;
        time[25..].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(OpBody::parse(&time), Err(WireError::Time(u64::MAX)));
    }

    #[test]
    fn result_bodies_round_trip_and_bad_ones_fail() {
        for result in [
            OpResult::Opened {
                allowed_seconds: None,
            },
            OpResult::Opened {
                allowed_seconds: Some(0),
            },
            OpResult::AlreadyOpen {
                allowed_seconds: Some(86_400),
            },
            OpResult::Closed {
                amount: 1234,
                seconds: 61,
            },
            OpResult::AlreadyClosed {
                amount: 0,
                seconds: 0,
            },
            OpResult::Refused {
                reason: Reason::NotYourCall,
            },
        ] {
            let r = ResultBody {
                nonce: NONCE,
                call_id: [3; 16],
                result,
            };
            let b = r.encode();
            assert_eq!(ResultBody::parse(&b).unwrap(), r);
            for n in 0..b.len() {
                assert!(ResultBody::parse(&b[..n]).is_err(), "{result:?} prefix {n}");
            }
            let mut long = b.clone();
            long.push(0);
            assert!(ResultBody::parse(&long).is_err());
        }
        let mut b = ResultBody {
            nonce: 0,
            call_id: [0; 16],
            result: OpResult::Closed {
                amount: 1,
                seconds: 1,
            },
        }
        .encode();
        b[RESULT_HEAD_LEN..RESULT_HEAD_LEN + 8].copy_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(ResultBody::parse(&b), Err(WireError::Amount(u64::MAX)));
        b[24] = 99;
        assert!(matches!(
            ResultBody::parse(&b),
            Err(WireError::Tag { tag: 99, .. })
        ));
    }

    #[test]
    fn bad_requests_get_typed_errors() {
        let good = Request {
            nonce: NONCE,
            ap_req: &[9; 10],
            krb_priv: &[8; 5],
        }
        .encode();
        for n in 0..good.len() {
            assert!(Request::parse(&good[..n]).is_err(), "prefix {n}");
        }
        assert_eq!(Request::parse(&[]), Err(WireError::Short(0)));
        let mut t = good.clone();
        t.push(0);
        assert_eq!(Request::parse(&t), Err(WireError::Trailing(1)));
        let mut v = good.clone();
        v[0] = 2;
        assert_eq!(Request::parse(&v), Err(WireError::Version(2)));
        let mut k = good.clone();
        k[1] = KIND_ANSWER;
        assert!(matches!(Request::parse(&k), Err(WireError::Kind { .. })));
        let mut e = good.clone();
        e[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&[0, 0]);
        assert!(matches!(
            Request::parse(&e),
            Err(WireError::Empty { field: "AP-REQ" }) | Err(WireError::Length { .. })
        ));
        let mut l = good.clone();
        l[HEADER_LEN..HEADER_LEN + 2].copy_from_slice(&[0xff, 0xff]);
        assert!(matches!(
            Request::parse(&l),
            Err(WireError::Length {
                field: "AP-REQ",
                ..
            })
        ));
        let big = vec![1u8; MAX_MESSAGE + 1];
        assert_eq!(
            Request::parse(&big),
            Err(WireError::Oversized(MAX_MESSAGE + 1))
        );
    }
}
