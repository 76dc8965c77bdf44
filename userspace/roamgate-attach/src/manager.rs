//! The proxy manager's verification of a unit's requests (docs/attach.md
//! §6), as a protocol core. No I/O; time is passed in.
//!
//! A switch-on is accepted only if, in this order:
//! 1. the frame parses ([`crate::wire`]);
//! 2. its AP-REQ is for this proxy manager's service principal, decrypts
//!    with a key of its keytab, is within the clock skew, asks for mutual
//!    authentication with a subkey, and its authenticator checksum covers
//!    the frame's bound part (version, type, identity code, nonce); the
//!    replay cache has not seen it;
//! 3. its KRB-CRED opens under that subkey, is fresh (replay cache), and
//!    holds exactly one ticket: a forwarded TGT, valid now, whose client is
//!    the AP-REQ's client.
//!
//! What comes out is the unit's identity code, its principal, and the TGT
//! [`Credential`] the proxy manager may now use in the unit's name. The
//! identity code is only a claim the unit made under its own key: the
//! directory checks that the code belongs to that principal.

use std::time::{Duration, SystemTime};

use roamgate_directory::IdentityCode;
use roamgate_krb::ap::{accept_ap_req, AcceptParams, Accepted, ApError, ServiceKeys};
use roamgate_krb::cred::{open_krb_cred, CredError};
use roamgate_krb::credential::Credential;
use roamgate_krb::messages::{self, ticket_flags};
use roamgate_krb::priv_safe::{PrivSafeError, SecureChannel};
use roamgate_krb::replay::{ReplayCache, CLOCK_SKEW};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Key;
use zeroize::Zeroizing;

use crate::proxy_op::{OpError, ProxyOp, ProxyReply};
use crate::wire::{Cause, MessageType, Repr, StatusBody, WireError, BOUND_LEN};

/// Live authenticators one unit principal may hold in a replay cache; a
/// flooding unit fills only its own share.
pub const REPLAY_PER_CLIENT: usize = 64;
/// Authenticators remembered by each replay cache.
pub const REPLAY_CAPACITY: usize = 100_000;
/// The retry-after a [`Cause::Busy`] refusal advises, in seconds.
pub const BUSY_RETRY_AFTER: u16 = 5;

/// Why a unit's request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum VerifyError {
    #[error("attach frame: {0}")]
    Wire(#[from] WireError),
    #[error("a {0} is not a unit's request")]
    NotARequest(MessageType),
    #[error("the unit's AP-REQ was refused: {0}")]
    Ap(ApError),
    #[error("the AP-REQ must ask for mutual authentication and carry a fresh subkey")]
    MutualRequired,
    #[error("the forwarded credentials were refused: {0}")]
    Cred(CredError),
    #[error("the KRB-CRED must hold exactly one ticket, a forwarded TGT; it holds {0}")]
    CredCount(usize),
    #[error("the forwarded ticket is for {0}, not a TGT")]
    NotATgt(Principal),
    #[error("the TGT of {0} was not forwarded (its FORWARDED flag is clear)")]
    NotForwarded(Principal),
    #[error("the forwarded TGT of {0} is expired or not yet valid")]
    TgtExpired(Principal),
    #[error(
        "the forwarded TGT is for {tgt}, but the AP-REQ proves {ap}: \
         a unit may only delegate its own name"
    )]
    ClientMismatch { ap: Principal, tgt: Principal },
    #[error("the proxy request's KRB-PRIV was refused: {0}")]
    Priv(PrivSafeError),
    #[error("the proxy request's body: {0}")]
    Op(OpError),
}

impl VerifyError {
    /// The cause a refusal frame reports.
    pub fn cause(&self) -> Cause {
        match self {
            Self::Wire(_) | Self::NotARequest(_) => Cause::Malformed,
            Self::Ap(e) => match e {
                ApError::Malformed(_) | ApError::BadVersion(_) => Cause::Malformed,
                ApError::NotUs { .. } => Cause::WrongService,
                ApError::NoKey { .. }
                | ApError::BadTicketIntegrity(_)
                | ApError::BadAuthenticatorIntegrity
                | ApError::BadMatch { .. }
                | ApError::MutualFailed => Cause::BadProof,
                ApError::Skew { .. } => Cause::ClockSkew,
                ApError::TicketNotYetValid | ApError::TicketExpired | ApError::TicketInvalid => {
                    Cause::TicketExpired
                }
                ApError::Replay(_) => Cause::Replayed,
                ApError::ReplayCacheFull => Cause::Busy,
                ApError::ChecksumMissing | ApError::ChecksumMismatch => Cause::Tampered,
            },
            Self::MutualRequired => Cause::MutualRequired,
            Self::Cred(e) => match e {
                CredError::Replay => Cause::Replayed,
                CredError::ReplayCacheFull => Cause::Busy,
                CredError::Skew(_) => Cause::ClockSkew,
                CredError::Integrity => Cause::Tampered,
                _ => Cause::NoDelegation,
            },
            Self::CredCount(_) | Self::NotATgt(_) | Self::NotForwarded(_) | Self::TgtExpired(_) => {
                Cause::NoDelegation
            }
            Self::ClientMismatch { .. } => Cause::ClientMismatch,
            Self::Priv(e) => match e {
                PrivSafeError::Malformed(_) | PrivSafeError::BadVersion(_) => Cause::Malformed,
                PrivSafeError::Skew(_) => Cause::ClockSkew,
                PrivSafeError::ReplayCacheFull => Cause::Busy,
                PrivSafeError::Replay => Cause::Replayed,
                _ => Cause::Tampered,
            },
            Self::Op(_) => Cause::Malformed,
        }
    }
}

/// A refused request, with what is needed to answer it.
#[derive(Debug)]
pub struct Refusal {
    pub error: Box<VerifyError>,
    /// The request's type, identity code and nonce, if its frame parsed.
    pub request: Option<(MessageType, IdentityCode, u64)>,
}

impl Refusal {
    pub fn cause(&self) -> Cause {
        self.error.cause()
    }

    /// The refusal frame to send back, or `None` for a frame that did not
    /// parse (junk gets no answer, so the proxy manager reflects nothing).
    pub fn frame(&self) -> Option<Vec<u8>> {
        let (ty, identity, nonce) = self.request?;
        let cause = self.cause();
        Repr::Refused {
            identity,
            nonce,
            refused: ty as u8,
            cause,
            retry_after: if cause == Cause::Busy {
                BUSY_RETRY_AFTER
            } else {
                0
            },
        }
        .to_bytes()
        .ok()
    }
}

/// A verified switch-on.
#[derive(Debug)]
pub struct SwitchOn {
    pub identity: IdentityCode,
    pub nonce: u64,
    /// The unit's principal, as its AP-REQ proved it.
    pub client: Principal,
    /// The unit's forwarded TGT, usable for TGS requests in its name.
    pub tgt: Credential,
    accepted: Accepted,
}

impl SwitchOn {
    /// The switch-on ack: the AP-REP that proves this proxy manager to the
    /// unit.
    pub fn ack(&self) -> Result<Vec<u8>, WireError> {
        Repr::SwitchOnAck {
            identity: self.identity,
            nonce: self.nonce,
            ap_rep: &self.accepted.ap_rep(None, None),
        }
        .to_bytes()
    }

    /// When the unit's authentication (its TGT) ends.
    pub fn end_time(&self) -> SystemTime {
        self.tgt.end_time
    }
}

/// A verified switch-off or status request.
#[derive(Debug)]
pub struct Request {
    pub kind: MessageType,
    pub identity: IdentityCode,
    pub nonce: u64,
    pub client: Principal,
    accepted: Accepted,
}

impl Request {
    /// The switch-off ack (for a switch-off).
    pub fn switch_off_ack(&self) -> Result<Vec<u8>, WireError> {
        Repr::SwitchOffAck {
            identity: self.identity,
            nonce: self.nonce,
            ap_rep: &self.accepted.ap_rep(None, None),
        }
        .to_bytes()
    }

    /// The status answer (for a status request): the AP-REP, and `body` in
    /// a KRB-PRIV under the unit's subkey.
    pub fn status_answer(
        &self,
        body: &StatusBody,
        now: SystemTime,
    ) -> Result<Vec<u8>, PrivSafeError> {
        let mut channel = SecureChannel::for_acceptor(&self.accepted, None, None);
        let krb_priv = channel.seal_priv(&body.to_bytes(), now)?;
        Repr::StatusAnswer {
            identity: self.identity,
            nonce: self.nonce,
            ap_rep: &self.accepted.ap_rep(None, None),
            krb_priv: &krb_priv,
        }
        .to_bytes()
        .map_err(|_| PrivSafeError::BadVersion("status answer too large"))
    }
}

/// A verified proxy request: the unit's principal and its opened body
/// (a [`ProxyOp`]).
#[derive(Debug)]
pub struct ProxyRequest {
    pub identity: IdentityCode,
    pub nonce: u64,
    pub client: Principal,
    body: Zeroizing<Vec<u8>>,
    accepted: Accepted,
}

impl ProxyRequest {
    /// What the unit asks (the body already parsed once, when the request
    /// was verified).
    pub fn op(&self) -> Result<ProxyOp<'_>, OpError> {
        ProxyOp::parse(&self.body)
    }

    /// The request's subkey: a KRB-CRED in the answer is sealed under it.
    pub fn subkey(&self) -> Key {
        self.accepted.key()
    }

    /// The proxy answer: the AP-REP, and `reply` in a KRB-PRIV under the
    /// unit's subkey.
    pub fn answer(&self, reply: &ProxyReply<'_>, now: SystemTime) -> Result<Vec<u8>, AnswerError> {
        let body = reply.to_bytes().map_err(AnswerError::Op)?;
        let mut channel = SecureChannel::for_acceptor(&self.accepted, None, None);
        let krb_priv = channel.seal_priv(&body, now).map_err(AnswerError::Priv)?;
        Repr::ProxyAnswer {
            identity: self.identity,
            nonce: self.nonce,
            ap_rep: &self.accepted.ap_rep(None, None),
            krb_priv: &krb_priv,
        }
        .to_bytes()
        .map_err(AnswerError::Wire)
    }
}

/// Why a proxy answer could not be built.
#[derive(Debug, thiserror::Error)]
pub enum AnswerError {
    #[error("proxy answer body: {0}")]
    Op(OpError),
    #[error("sealing the proxy answer: {0}")]
    Priv(PrivSafeError),
    #[error("proxy answer frame: {0}")]
    Wire(WireError),
}

/// A verified request of any type.
#[derive(Debug)]
pub enum Verified {
    SwitchOn(Box<SwitchOn>),
    SwitchOff(Request),
    Status(Request),
    Proxy(Box<ProxyRequest>),
}

/// The proxy manager's verifier: its service principal, its keys and its
/// replay caches.
#[derive(Debug)]
pub struct Verifier<K> {
    service: Principal,
    keys: K,
    skew: Duration,
    ap_replay: ReplayCache,
    cred_replay: ReplayCache,
}

impl<K: ServiceKeys> Verifier<K> {
    /// A verifier for tickets to `service`, decrypted with `keys`.
    pub fn new(service: Principal, keys: K) -> Self {
        let cache = || {
            ReplayCache::new(CLOCK_SKEW, REPLAY_CAPACITY).with_per_client_limit(REPLAY_PER_CLIENT)
        };
        Self {
            service,
            keys,
            skew: CLOCK_SKEW,
            ap_replay: cache(),
            cred_replay: cache(),
        }
    }

    /// Uses `cache` for AP-REQ authenticators (e.g. one shared with other
    /// acceptors of the same service principal).
    pub fn with_replay_cache(mut self, cache: ReplayCache) -> Self {
        self.ap_replay = cache;
        self
    }

    pub fn service(&self) -> &Principal {
        &self.service
    }

    /// Verifies a unit frame (as carried in a relay frame).
    pub fn verify(&mut self, bytes: &[u8], now: SystemTime) -> Result<Verified, Refusal> {
        let repr = Repr::parse_bytes(bytes).map_err(|e| Refusal {
            error: Box::new(e.into()),
            request: None,
        })?;
        let ty = repr.msg_type();
        let request = Some((ty, repr.identity(), repr.nonce()));
        // The bytes as sent, reserved ones included, are what the checksum
        // must cover.
        let bound = bytes.get(..BOUND_LEN).unwrap_or_default();
        let refuse = |error| Refusal {
            error: Box::new(error),
            request,
        };
        match repr {
            Repr::SwitchOn {
                identity,
                nonce,
                ap_req,
                krb_cred,
            } => self
                .switch_on(identity, nonce, bound, ap_req, krb_cred, now)
                .map(|s| Verified::SwitchOn(Box::new(s)))
                .map_err(refuse),
            Repr::SwitchOff {
                identity,
                nonce,
                ap_req,
            }
            | Repr::StatusRequest {
                identity,
                nonce,
                ap_req,
            } => {
                let accepted = self.accept(bound, ap_req, now).map_err(refuse)?;
                let req = Request {
                    kind: ty,
                    identity,
                    nonce,
                    client: accepted.client.clone(),
                    accepted,
                };
                Ok(if ty == MessageType::SwitchOff {
                    Verified::SwitchOff(req)
                } else {
                    Verified::Status(req)
                })
            }
            Repr::ProxyRequest {
                identity,
                nonce,
                ap_req,
                krb_priv,
            } => {
                let accepted = self.accept(bound, ap_req, now).map_err(refuse)?;
                // Sealed under the AP-REQ's subkey, by the initiator.
                let body = SecureChannel::for_acceptor(&accepted, None, None)
                    .open_priv(krb_priv, now)
                    .map(Zeroizing::new)
                    .map_err(|e| refuse(VerifyError::Priv(e)))?;
                ProxyOp::parse(&body).map_err(|e| refuse(VerifyError::Op(e)))?;
                Ok(Verified::Proxy(Box::new(ProxyRequest {
                    identity,
                    nonce,
                    client: accepted.client.clone(),
                    body,
                    accepted,
                })))
            }
            _ => Err(refuse(VerifyError::NotARequest(ty))),
        }
    }

    fn accept(
        &mut self,
        bound: &[u8],
        ap_req: &[u8],
        now: SystemTime,
    ) -> Result<Accepted, VerifyError> {
        let accepted = accept_ap_req(
            ap_req,
            &self.keys,
            &AcceptParams {
                service: Some(&self.service),
                app_data: Some(bound),
                skew: self.skew,
            },
            &mut self.ap_replay,
            now,
        )
        .map_err(VerifyError::Ap)?;
        if !accepted.mutual_required || accepted.subkey.is_none() {
            return Err(VerifyError::MutualRequired);
        }
        Ok(accepted)
    }

    fn switch_on(
        &mut self,
        identity: IdentityCode,
        nonce: u64,
        bound: &[u8],
        ap_req: &[u8],
        krb_cred: &[u8],
        now: SystemTime,
    ) -> Result<SwitchOn, VerifyError> {
        let accepted = self.accept(bound, ap_req, now)?;
        let subkey = accepted
            .subkey
            .as_ref()
            .ok_or(VerifyError::MutualRequired)?;
        let mut creds = open_krb_cred(krb_cred, subkey, self.skew, &mut self.cred_replay, now)
            .map_err(VerifyError::Cred)?;
        if creds.len() != 1 {
            return Err(VerifyError::CredCount(creds.len()));
        }
        let tgt = creds.remove(0);
        if !tgt.is_tgt() {
            return Err(VerifyError::NotATgt(tgt.server));
        }
        if !messages::same_principal(&tgt.client, &accepted.client) {
            return Err(VerifyError::ClientMismatch {
                ap: accepted.client.clone(),
                tgt: tgt.client,
            });
        }
        if tgt.flags & ticket_flags::FORWARDED == 0 {
            return Err(VerifyError::NotForwarded(tgt.client));
        }
        if !tgt.is_valid_at(now) {
            return Err(VerifyError::TgtExpired(tgt.client));
        }
        Ok(SwitchOn {
            identity,
            nonce,
            client: accepted.client.clone(),
            tgt,
            accepted,
        })
    }
}
