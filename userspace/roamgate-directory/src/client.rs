//! The caller's side (the proxy manager, in the unit's name): build a
//! request from a directory service ticket, then open and verify the
//! answer. No I/O; time is passed in.

use std::time::SystemTime;

use roamgate_krb::ap::{self, ApClient, ApError, ApReqParams};
use roamgate_krb::credential::Credential;
use roamgate_krb::priv_safe::{PrivSafeError, SecureChannel};
use roamgate_krb::Principal;
use zeroize::Zeroizing;

use crate::identity::IdentityCode;
use crate::record::{DialledNumber, RecordError, Resolution, UnitRecord};
use crate::wire::{Reason, Reply, Request, ResolveReply, ResolveRequest, WireError};

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the directory AP-REQ: {0}")]
    Build(ApError),
    #[error("malformed directory answer: {0}")]
    Wire(#[from] WireError),
    #[error("the directory refused unit {code}: {reason}")]
    Refused { code: IdentityCode, reason: Reason },
    #[error("the directory answered for unit {got}, but we asked for {want}")]
    WrongCode {
        want: IdentityCode,
        got: IdentityCode,
    },
    #[error("the directory did not prove itself (mutual authentication): {0}")]
    MutualAuth(ApError),
    #[error("the directory's sealed record did not open: {0}")]
    Sealed(PrivSafeError),
    #[error("the directory's record is invalid: {0}")]
    Record(RecordError),
    #[error("the directory's record is for unit {code} / {principal}, not the one asked for")]
    RecordMismatch {
        code: IdentityCode,
        principal: Principal,
    },
    #[error("the directory refused to resolve {number}: {reason}")]
    ResolveRefused {
        number: DialledNumber,
        reason: Reason,
    },
    #[error("the directory answered for number {got}, but we asked for {want}")]
    WrongNumber {
        want: DialledNumber,
        got: DialledNumber,
    },
    #[error("the directory's resolution is invalid: {0}")]
    Resolution(RecordError),
}

/// A resolve in flight: what the answer must match.
#[derive(Debug)]
pub struct PendingResolve {
    number: DialledNumber,
    ap: ApClient,
}

/// Builds the request resolving `number` from `cred`, a ticket for the
/// directory service in a unit's subscriber name. Returns the datagram and
/// the state to open the answer with.
pub fn build_resolve_request(
    cred: &Credential,
    number: &DialledNumber,
    now: SystemTime,
) -> Result<(Vec<u8>, PendingResolve), ClientError> {
    let bound = ResolveRequest::bound_bytes(number);
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
    let bytes = ResolveRequest {
        number: number.clone(),
        ap_req: &ap_req,
    }
    .encode();
    Ok((
        bytes,
        PendingResolve {
            number: number.clone(),
            ap,
        },
    ))
}

impl PendingResolve {
    pub fn number(&self) -> &DialledNumber {
        &self.number
    }

    /// Opens the directory's answer to a resolve: the AP-REP must answer
    /// our authenticator, the KRB-PRIV must open under our subkey, and the
    /// resolution must be of the number we asked for.
    pub fn open(&self, answer: &[u8], now: SystemTime) -> Result<Resolution, ClientError> {
        let a = match ResolveReply::parse(answer)? {
            ResolveReply::Error { number, reason } => {
                // Unauthenticated: a hint, never a grant.
                return Err(ClientError::ResolveRefused { number, reason });
            }
            ResolveReply::Resolved(a) => a,
        };
        if a.number != self.number {
            return Err(ClientError::WrongNumber {
                want: self.number.clone(),
                got: a.number,
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
        let res = Resolution::decode(&plain).map_err(ClientError::Resolution)?;
        if res.number != self.number {
            return Err(ClientError::WrongNumber {
                want: self.number.clone(),
                got: res.number,
            });
        }
        Ok(res)
    }
}

/// A request in flight: what the answer must match.
#[derive(Debug)]
pub struct PendingLookup {
    code: IdentityCode,
    client: Principal,
    ap: ApClient,
}

/// Builds the request for `code` from `cred`, a ticket for the directory
/// service in the unit's name. Returns the datagram and the state to open
/// the answer with.
pub fn build_request(
    cred: &Credential,
    code: IdentityCode,
    now: SystemTime,
) -> Result<(Vec<u8>, PendingLookup), ClientError> {
    let bound = Request::bound_bytes(&code);
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
    let bytes = Request {
        code,
        ap_req: &ap_req,
    }
    .encode();
    Ok((
        bytes,
        PendingLookup {
            code,
            client: cred.client.clone(),
            ap,
        },
    ))
}

impl PendingLookup {
    pub fn code(&self) -> IdentityCode {
        self.code
    }

    /// Opens the directory's answer: the AP-REP must answer our
    /// authenticator, the KRB-PRIV must open under our subkey, and the
    /// record must be the unit's we asked for.
    pub fn open(&self, answer: &[u8], now: SystemTime) -> Result<UnitRecord, ClientError> {
        let a = match Reply::parse(answer)? {
            Reply::Error { code, reason } => {
                // Unauthenticated: a hint for the operator, never a grant.
                return Err(ClientError::Refused { code, reason });
            }
            Reply::Answer(a) => a,
        };
        if a.code != self.code {
            return Err(ClientError::WrongCode {
                want: self.code,
                got: a.code,
            });
        }
        let info = self
            .ap
            .verify_ap_rep(a.ap_rep)
            .map_err(ClientError::MutualAuth)?;
        let mut chan = SecureChannel::for_initiator(&self.ap, &info);
        let plain = Zeroizing::new(
            chan.open_priv(a.krb_priv, now)
                .map_err(ClientError::Sealed)?,
        );
        let rec = UnitRecord::decode(&plain).map_err(ClientError::Record)?;
        if rec.code != self.code || rec.principal != self.client {
            return Err(ClientError::RecordMismatch {
                code: rec.code,
                principal: rec.principal,
            });
        }
        Ok(rec)
    }
}
