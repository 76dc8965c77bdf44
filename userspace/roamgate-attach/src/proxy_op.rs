//! What a unit asks of its proxy, and what the proxy answers: the
//! plaintexts of a proxy request's and a proxy answer's KRB-PRIV
//! (docs/attach.md §5.1). The proxy does a call's Kerberos in the
//! subscriber's name; the unit is the call's endpoint at its home address
//! (docs/call.md, "Where a call runs").
//!
//! ```text
//! request: op(1) fields                     answer: op(1) status(1) fields (status 0 only)
//! op 1 call ticket : n(1) number(n)         home address(4) KRB-CRED(rest)
//! op 2 accept call : call id(16) n(1)       m(1) caller(m) etype(4) k(1) caller subkey(k)
//!                    number(n) AP-REQ(rest)   k(1) callee subkey(k) AP-REP(rest)
//! op 3 call event  : call id(16) event(1)   (nothing)
//!                    cause(1) role(1)
//!                    local(6) remote(6)
//!                    ssrc out(4) ssrc in(4)
//! ```
//!
//! A nonzero status is the Q.850 cause the unit puts in its RELEASE
//! COMPLETE (1 unallocated number, 20 subscriber absent, 21 call
//! rejected, 41 temporary failure, ...).

use std::net::{Ipv4Addr, SocketAddrV4};

use zeroize::Zeroizing;

/// The longest E.164 number: 15 digits.
pub const NUMBER_MAX: usize = 15;
/// The longest principal name in an answer.
pub const PRINCIPAL_MAX: usize = 255;

const OP_CALL_TICKET: u8 = 1;
const OP_ACCEPT_CALL: u8 = 2;
const OP_CALL_EVENT: u8 = 3;

/// Why a proxy request or answer body is malformed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OpError {
    #[error("proxy op body truncated in {0}")]
    Truncated(&'static str),
    #[error("unknown proxy op {0}")]
    UnknownOp(u8),
    #[error("the number must be 1 to {NUMBER_MAX} digits")]
    BadNumber,
    #[error("{0} is empty")]
    Empty(&'static str),
    #[error("{0} bytes after the last field")]
    Trailing(usize),
    #[error("unknown call event {0}")]
    UnknownEvent(u8),
    #[error("unknown call role {0}")]
    UnknownRole(u8),
    #[error("{0} is too long to encode")]
    TooLong(&'static str),
    #[error("the principal is not UTF-8")]
    BadPrincipal,
    #[error("answer for op {got}, the request was op {want}")]
    OpMismatch { got: u8, want: u8 },
}

/// Which end of a call the unit is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Caller = 1,
    Callee = 2,
}

/// What happened to a call, as the unit reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallEventKind {
    Connected = 1,
    Released = 2,
}

/// A call's two voice flows, for the data plane's voice path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Media {
    /// The unit's own RTP address (its home address).
    pub local: SocketAddrV4,
    pub remote: SocketAddrV4,
    pub ssrc_out: u32,
    pub ssrc_in: u32,
}

/// A unit's request to its proxy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyOp<'a> {
    /// Resolve `number` and get a service ticket for its call principal.
    CallTicket { number: &'a str },
    /// Accept the caller's AP-REQ from a SETUP for `number`.
    AcceptCall {
        call_id: [u8; 16],
        number: &'a str,
        ap_req: &'a [u8],
    },
    /// A call connected or ended.
    CallEvent {
        call_id: [u8; 16],
        kind: CallEventKind,
        /// Q.850 cause of a release (0 for connect).
        cause: u8,
        role: Role,
        media: Media,
    },
}

/// The proxy's answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProxyReply<'a> {
    CallTicket {
        /// The callee's home address, where the SETUP goes.
        home_address: Ipv4Addr,
        /// The ticket and its session key, in a KRB-CRED under the
        /// request's subkey.
        krb_cred: &'a [u8],
    },
    CallAccepted {
        caller: &'a str,
        etype: i32,
        caller_subkey: Zeroizing<Vec<u8>>,
        callee_subkey: Zeroizing<Vec<u8>>,
        ap_rep: &'a [u8],
    },
    /// The event is noted. `max_seconds`: the caller's CONNECT opened a
    /// charge on a prepaid account whose balance pays for this many
    /// seconds of the call; the unit releases the call then (and the proxy
    /// cuts its voice flows if it does not). `None`: no limit.
    EventNoted { max_seconds: Option<u32> },
    /// The op failed: the Q.850 cause for the call.
    Failed { op: u8, cause: u8 },
}

struct Reader<'a>(&'a [u8], &'static str);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], OpError> {
        if self.0.len() < n {
            return Err(OpError::Truncated(self.1));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }

    fn u8(&mut self) -> Result<u8, OpError> {
        Ok(self.take(1)?[0])
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], OpError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }

    fn short(&mut self) -> Result<&'a [u8], OpError> {
        let n = usize::from(self.u8()?);
        self.take(n)
    }

    fn number(&mut self) -> Result<&'a str, OpError> {
        let d = self.short()?;
        if d.is_empty() || d.len() > NUMBER_MAX || !d.iter().all(u8::is_ascii_digit) {
            return Err(OpError::BadNumber);
        }
        // ASCII digits, so UTF-8.
        std::str::from_utf8(d).map_err(|_| OpError::BadNumber)
    }

    fn addr(&mut self) -> Result<SocketAddrV4, OpError> {
        let ip = Ipv4Addr::from(self.array::<4>()?);
        Ok(SocketAddrV4::new(ip, u16::from_be_bytes(self.array()?)))
    }

    fn rest(&mut self, what: &'static str) -> Result<&'a [u8], OpError> {
        let r = std::mem::take(&mut self.0);
        if r.is_empty() {
            return Err(OpError::Empty(what));
        }
        Ok(r)
    }

    fn end(&self) -> Result<(), OpError> {
        match self.0.len() {
            0 => Ok(()),
            n => Err(OpError::Trailing(n)),
        }
    }
}

fn check_number(n: &str) -> Result<(), OpError> {
    if n.is_empty() || n.len() > NUMBER_MAX || !n.bytes().all(|c| c.is_ascii_digit()) {
        return Err(OpError::BadNumber);
    }
    Ok(())
}

fn push_short(out: &mut Vec<u8>, what: &'static str, b: &[u8]) -> Result<(), OpError> {
    let n = u8::try_from(b.len()).map_err(|_| OpError::TooLong(what))?;
    out.push(n);
    out.extend_from_slice(b);
    Ok(())
}

fn push_addr(out: &mut Vec<u8>, a: SocketAddrV4) {
    out.extend_from_slice(&a.ip().octets());
    out.extend_from_slice(&a.port().to_be_bytes());
}

impl<'a> ProxyOp<'a> {
    pub fn op(&self) -> u8 {
        match self {
            Self::CallTicket { .. } => OP_CALL_TICKET,
            Self::AcceptCall { .. } => OP_ACCEPT_CALL,
            Self::CallEvent { .. } => OP_CALL_EVENT,
        }
    }

    pub fn parse(b: &'a [u8]) -> Result<Self, OpError> {
        let mut r = Reader(b, "proxy request");
        let op = r.u8()?;
        let parsed = match op {
            OP_CALL_TICKET => Self::CallTicket {
                number: r.number()?,
            },
            OP_ACCEPT_CALL => Self::AcceptCall {
                call_id: r.array()?,
                number: r.number()?,
                ap_req: r.rest("AP-REQ")?,
            },
            OP_CALL_EVENT => Self::CallEvent {
                call_id: r.array()?,
                kind: match r.u8()? {
                    1 => CallEventKind::Connected,
                    2 => CallEventKind::Released,
                    e => return Err(OpError::UnknownEvent(e)),
                },
                cause: r.u8()?,
                role: match r.u8()? {
                    1 => Role::Caller,
                    2 => Role::Callee,
                    e => return Err(OpError::UnknownRole(e)),
                },
                media: Media {
                    local: r.addr()?,
                    remote: r.addr()?,
                    ssrc_out: u32::from_be_bytes(r.array()?),
                    ssrc_in: u32::from_be_bytes(r.array()?),
                },
            },
            other => return Err(OpError::UnknownOp(other)),
        };
        r.end()?;
        Ok(parsed)
    }

    /// The body's bytes; refuses what would not parse back.
    pub fn to_bytes(&self) -> Result<Vec<u8>, OpError> {
        let mut out = vec![self.op()];
        match self {
            Self::CallTicket { number } => {
                check_number(number)?;
                push_short(&mut out, "number", number.as_bytes())?;
            }
            Self::AcceptCall {
                call_id,
                number,
                ap_req,
            } => {
                check_number(number)?;
                if ap_req.is_empty() {
                    return Err(OpError::Empty("AP-REQ"));
                }
                out.extend_from_slice(call_id);
                push_short(&mut out, "number", number.as_bytes())?;
                out.extend_from_slice(ap_req);
            }
            Self::CallEvent {
                call_id,
                kind,
                cause,
                role,
                media,
            } => {
                out.extend_from_slice(call_id);
                out.extend_from_slice(&[*kind as u8, *cause, *role as u8]);
                push_addr(&mut out, media.local);
                push_addr(&mut out, media.remote);
                out.extend_from_slice(&media.ssrc_out.to_be_bytes());
                out.extend_from_slice(&media.ssrc_in.to_be_bytes());
            }
        }
        Ok(out)
    }
}

impl<'a> ProxyReply<'a> {
    pub fn op(&self) -> u8 {
        match self {
            Self::CallTicket { .. } => OP_CALL_TICKET,
            Self::CallAccepted { .. } => OP_ACCEPT_CALL,
            Self::EventNoted { .. } => OP_CALL_EVENT,
            Self::Failed { op, .. } => *op,
        }
    }

    /// Parses the answer to a request of op `want`.
    pub fn parse(b: &'a [u8], want: u8) -> Result<Self, OpError> {
        let mut r = Reader(b, "proxy answer");
        let op = r.u8()?;
        if op != want {
            return Err(OpError::OpMismatch { got: op, want });
        }
        let status = r.u8()?;
        if status != 0 {
            r.end()?;
            return Ok(Self::Failed { op, cause: status });
        }
        let parsed = match op {
            OP_CALL_TICKET => Self::CallTicket {
                home_address: Ipv4Addr::from(r.array::<4>()?),
                krb_cred: r.rest("KRB-CRED")?,
            },
            OP_ACCEPT_CALL => {
                let caller = std::str::from_utf8(r.short()?).map_err(|_| OpError::BadPrincipal)?;
                if caller.is_empty() {
                    return Err(OpError::Empty("caller principal"));
                }
                let etype = i32::from_be_bytes(r.array()?);
                let caller_subkey = Zeroizing::new(r.short()?.to_vec());
                let callee_subkey = Zeroizing::new(r.short()?.to_vec());
                if caller_subkey.is_empty() || callee_subkey.is_empty() {
                    return Err(OpError::Empty("subkey"));
                }
                Self::CallAccepted {
                    caller,
                    etype,
                    caller_subkey,
                    callee_subkey,
                    ap_rep: r.rest("AP-REP")?,
                }
            }
            OP_CALL_EVENT => Self::EventNoted {
                // Empty: no limit.
                max_seconds: match r.0.len() {
                    0 => None,
                    _ => Some(u32::from_be_bytes(r.array()?)),
                },
            },
            other => return Err(OpError::UnknownOp(other)),
        };
        r.end()?;
        Ok(parsed)
    }

    /// The body's bytes, secret when it carries subkeys.
    pub fn to_bytes(&self) -> Result<Zeroizing<Vec<u8>>, OpError> {
        let mut out = Zeroizing::new(vec![self.op()]);
        match self {
            Self::Failed { cause, .. } => {
                if *cause == 0 {
                    return Err(OpError::Empty("cause"));
                }
                out.push(*cause);
                return Ok(out);
            }
            _ => out.push(0),
        }
        match self {
            Self::CallTicket {
                home_address,
                krb_cred,
            } => {
                if krb_cred.is_empty() {
                    return Err(OpError::Empty("KRB-CRED"));
                }
                out.extend_from_slice(&home_address.octets());
                out.extend_from_slice(krb_cred);
            }
            Self::CallAccepted {
                caller,
                etype,
                caller_subkey,
                callee_subkey,
                ap_rep,
            } => {
                if caller.is_empty() || caller.len() > PRINCIPAL_MAX {
                    return Err(OpError::TooLong("caller principal"));
                }
                if caller_subkey.is_empty() || callee_subkey.is_empty() {
                    return Err(OpError::Empty("subkey"));
                }
                if ap_rep.is_empty() {
                    return Err(OpError::Empty("AP-REP"));
                }
                push_short(&mut out, "caller principal", caller.as_bytes())?;
                out.extend_from_slice(&etype.to_be_bytes());
                push_short(&mut out, "subkey", caller_subkey)?;
                push_short(&mut out, "subkey", callee_subkey)?;
                out.extend_from_slice(ap_rep);
            }
            Self::EventNoted { max_seconds } => {
                if let Some(m) = max_seconds {
                    out.extend_from_slice(&m.to_be_bytes());
                }
            }
            Self::Failed { .. } => {}
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn media() -> Media {
        Media {
            local: "10.1.0.51:40000".parse().unwrap(),
            remote: "10.1.0.52:40002".parse().unwrap(),
            ssrc_out: 0x1111_2222,
            ssrc_in: 0x3333_4444,
        }
    }

    #[test]
    fn requests_round_trip_byte_exact() {
        let ops = [
            (
                ProxyOp::CallTicket {
                    number: "4940123456",
                },
                &b"\x01\x0a4940123456"[..],
            ),
            (
                ProxyOp::AcceptCall {
                    call_id: [7; 16],
                    number: "12",
                    ap_req: b"\x6e\x00",
                },
                &b"\x02\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x07\x0212\x6e\x00"[..],
            ),
        ];
        for (op, bytes) in ops {
            assert_eq!(op.to_bytes().unwrap(), bytes);
            assert_eq!(ProxyOp::parse(bytes).unwrap(), op);
        }
        let ev = ProxyOp::CallEvent {
            call_id: [1; 16],
            kind: CallEventKind::Released,
            cause: 16,
            role: Role::Caller,
            media: media(),
        };
        let b = ev.to_bytes().unwrap();
        assert_eq!(b.len(), 1 + 16 + 3 + 6 + 6 + 8);
        assert_eq!(&b[17..20], &[2, 16, 1]);
        assert_eq!(&b[20..26], &[10, 1, 0, 51, 0x9c, 0x40]);
        assert_eq!(ProxyOp::parse(&b).unwrap(), ev);
    }

    #[test]
    fn answers_round_trip() {
        let answers = [
            ProxyReply::CallTicket {
                home_address: Ipv4Addr::new(10, 1, 0, 52),
                krb_cred: b"\x76\x01",
            },
            ProxyReply::CallAccepted {
                caller: "unit1@HOME.TEST",
                etype: 18,
                caller_subkey: Zeroizing::new(vec![1; 32]),
                callee_subkey: Zeroizing::new(vec![2; 32]),
                ap_rep: b"\x6f\x01",
            },
            ProxyReply::EventNoted { max_seconds: None },
            ProxyReply::EventNoted {
                max_seconds: Some(0),
            },
            ProxyReply::EventNoted {
                max_seconds: Some(3_600),
            },
            ProxyReply::Failed { op: 1, cause: 1 },
        ];
        for a in answers {
            let b = a.to_bytes().unwrap();
            assert_eq!(ProxyReply::parse(&b, a.op()).unwrap(), a);
        }
        assert_eq!(
            ProxyReply::parse(b"\x01\x00\x0a\x01\x00\x34\x76", 2),
            Err(OpError::OpMismatch { got: 1, want: 2 })
        );
        // A limit is four bytes, no more, no less.
        assert_eq!(
            ProxyReply::parse(b"\x03\x00\x00\x00\x0e", 3),
            Err(OpError::Truncated("proxy answer"))
        );
        assert_eq!(
            ProxyReply::parse(b"\x03\x00\x00\x00\x0e\x10\x01", 3),
            Err(OpError::Trailing(1))
        );
        let failed = ProxyReply::Failed { op: 2, cause: 21 }.to_bytes().unwrap();
        assert_eq!(&failed[..], &[2, 21]);
    }

    #[test]
    fn bad_bodies_get_typed_errors_and_every_prefix_fails() {
        let good = ProxyOp::AcceptCall {
            call_id: [7; 16],
            number: "4940",
            ap_req: b"req",
        }
        .to_bytes()
        .unwrap();
        // Every cut before the AP-REQ (the rest of the body) fails.
        for n in 0..=good.len() - 3 {
            assert!(ProxyOp::parse(&good[..n]).is_err(), "{n} bytes");
        }
        assert_eq!(ProxyOp::parse(b"\x09"), Err(OpError::UnknownOp(9)));
        assert_eq!(ProxyOp::parse(b"\x01\x0212x"), Err(OpError::Trailing(1)));
        assert_eq!(ProxyOp::parse(b"\x01\x021a"), Err(OpError::BadNumber));
        assert_eq!(ProxyOp::parse(b"\x01\x00"), Err(OpError::BadNumber));
        assert_eq!(
            ProxyOp::parse(&[&[1u8, 16][..], &[b'1'; 16]].concat()),
            Err(OpError::BadNumber)
        );
        assert_eq!(
            ProxyOp::CallTicket { number: "+49" }.to_bytes(),
            Err(OpError::BadNumber)
        );
        let mut ev = ProxyOp::CallEvent {
            call_id: [1; 16],
            kind: CallEventKind::Connected,
            cause: 0,
            role: Role::Callee,
            media: media(),
        }
        .to_bytes()
        .unwrap();
        ev[17] = 9;
        assert_eq!(ProxyOp::parse(&ev), Err(OpError::UnknownEvent(9)));
        ev[17] = 1;
        ev[19] = 3;
        assert_eq!(ProxyOp::parse(&ev), Err(OpError::UnknownRole(3)));
        // Answers.
        assert_eq!(
            ProxyReply::parse(b"\x01\x00\x0a\x01\x00\x34", 1),
            Err(OpError::Empty("KRB-CRED"))
        );
        assert_eq!(
            ProxyReply::parse(b"\x01\x15\x00", 1),
            Err(OpError::Trailing(1))
        );
        assert_eq!(
            ProxyReply::parse(b"\x02\x00\x00", 2),
            Err(OpError::Empty("caller principal"))
        );
        assert!(ProxyReply::Failed { op: 1, cause: 0 }.to_bytes().is_err());
    }
}
