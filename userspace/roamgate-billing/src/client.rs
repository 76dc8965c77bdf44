//! The caller's side (the subscriber's proxy): build a request from a
//! billing service ticket in the subscriber's name, then open and verify
//! the answer. No I/O; time is passed in. A retry after a timeout is a
//! FRESH request (a new authenticator, so the replay cache lets it in)
//! for the same call id: the ledger makes it idempotent.

use std::time::SystemTime;

use roamgate_krb::ap::{self, ApClient, ApError, ApReqParams};
use roamgate_krb::credential::Credential;
use roamgate_krb::priv_safe::{Direction, PrivSafeError, ReplayMode, SecureChannel};

use crate::wire::{self, Op, OpBody, OpResult, Reason, Reply, Request, ResultBody, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the billing AP-REQ: {0}")]
    Build(ApError),
    #[error("cannot seal the billing operation: {0}")]
    Seal(PrivSafeError),
    #[error("no random source for the request nonce")]
    Random,
    #[error("malformed billing answer: {0}")]
    Wire(#[from] WireError),
    #[error("the billing service refused (unauthenticated hint): {0}")]
    Refused(Reason),
    #[error("the billing answer is for another request (nonce {got:#x}, expected {want:#x})")]
    WrongNonce { want: u64, got: u64 },
    #[error("the billing service did not prove itself (mutual authentication): {0}")]
    MutualAuth(ApError),
    #[error("the billing service's sealed result did not open: {0}")]
    Sealed(PrivSafeError),
    #[error("the billing service's result is for another call or request")]
    Mismatch,
}

/// A request in flight: what its answer must match.
#[derive(Debug)]
pub struct Pending {
    nonce: u64,
    op: Op,
    ap: ApClient,
}

fn nonce() -> Result<u64, ClientError> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| ClientError::Random)?;
    Ok(u64::from_be_bytes(b))
}

/// Builds the request for `op` from `cred`, a ticket for the billing
/// service in the subscriber's name. Returns the datagram and the state to
/// open the answer with.
pub fn build_request(
    cred: &Credential,
    op: Op,
    now: SystemTime,
) -> Result<(Vec<u8>, Pending), ClientError> {
    let nonce = nonce()?;
    let bound = wire::bound_bytes(nonce);
    let (ap_req, ap) = ap::build_ap_req(
        cred,
        &ApReqParams {
            mutual: true,
            subkey: true,
            seq_number: None,
            app_data: Some(&bound),
        },
        now,
    )
    .map_err(ClientError::Build)?;
    let subkey = ap
        .subkey()
        .cloned()
        .ok_or(ClientError::Build(ApError::BadAuthenticatorIntegrity))?;
    // Sealed before the AP-REP exists: under our own subkey, which the
    // service learns from the authenticator (RFC 4120 §3.2.6).
    let mut chan = SecureChannel::new(subkey, Direction::Initiator, ReplayMode::Timestamp);
    let sealed = chan
        .seal_priv(&OpBody { nonce, op }.encode(), now)
        .map_err(ClientError::Seal)?;
    let bytes = Request {
        nonce,
        ap_req: &ap_req,
        krb_priv: &sealed,
    }
    .encode();
    Ok((bytes, Pending { nonce, op, ap }))
}

impl Pending {
    pub fn nonce(&self) -> u64 {
        self.nonce
    }

    pub fn op(&self) -> Op {
        self.op
    }

    /// Opens the service's answer: the AP-REP must answer our
    /// authenticator, the KRB-PRIV must open under our subkey and carry
    /// our nonce and call id. An error answer is returned as
    /// [`ClientError::Refused`]: unauthenticated, a hint only. A sealed
    /// refusal is `Ok(OpResult::Refused{..})`.
    pub fn open(&self, answer: &[u8], now: SystemTime) -> Result<OpResult, ClientError> {
        let a = match Reply::parse(answer)? {
            Reply::Error { nonce, reason } => {
                if nonce != self.nonce {
                    return Err(ClientError::WrongNonce {
                        want: self.nonce,
                        got: nonce,
                    });
                }
                return Err(ClientError::Refused(reason));
            }
            Reply::Answer(a) => a,
        };
        if a.nonce != self.nonce {
            return Err(ClientError::WrongNonce {
                want: self.nonce,
                got: a.nonce,
            });
        }
        let info = self
            .ap
            .verify_ap_rep(a.ap_rep)
            .map_err(ClientError::MutualAuth)?;
        let mut chan = SecureChannel::for_initiator(&self.ap, &info);
        let plain = chan
            .open_priv(a.krb_priv, now)
            .map_err(ClientError::Sealed)?;
        let body = ResultBody::parse(&plain)?;
        if body.nonce != self.nonce || body.call_id != self.op.call().0 {
            return Err(ClientError::Mismatch);
        }
        Ok(body.result)
    }
}
