//! The directory's protocol core: request bytes and the time in, answer
//! bytes out (docs/directory.md). No I/O besides the store.
//!
//! Order of checks: framing, then the AP-REQ (ticket for our service,
//! skew, ticket times, checksum over the request header, replay cache
//! last, as `roamgate_krb::ap` does), then the record and its subscriber
//! principal. Every refusal after framing, and every read, is audited.
//!
//! A resolve (kind 4) goes through the same AP-REQ checks, bound to its
//! dialled number; its client must be some unit's subscriber; the answer
//! carries the callee's call principal and home address (§4.1).

use std::time::{Duration, SystemTime};

use roamgate_krb::ap::{self, AcceptParams, ApError, ServiceKeys};
use roamgate_krb::priv_safe::SecureChannel;
use roamgate_krb::replay::{ReplayCache, CLOCK_SKEW, DEFAULT_CAPACITY};
use roamgate_krb::Principal;

use crate::identity::IdentityCode;
use crate::record::{DialledNumber, Resolution};
use crate::store::{AuditEntry, DirectoryStore, StoreError};
use crate::wire::{
    self, Answer, Reason, Request, ResolveRequest, Resolved, WireError, KIND_RESOLVE,
};

/// Tunables of the directory core.
#[derive(Clone, Debug)]
pub struct DirectoryConfig {
    /// The service principal tickets must be for, e.g.
    /// `directory/dir.example.com@EXAMPLE.COM`.
    pub service: Principal,
    pub skew: Duration,
    /// Live authenticators remembered against replay.
    pub replay_capacity: usize,
    /// Live authenticators one client principal may hold.
    pub replay_per_client: usize,
}

impl DirectoryConfig {
    pub fn new(service: Principal) -> Self {
        Self {
            service,
            skew: CLOCK_SKEW,
            replay_capacity: DEFAULT_CAPACITY,
            replay_per_client: 1024,
        }
    }
}

/// Why a request was refused: the full cause, for the audit log and the
/// role's logs. The caller only learns the coarse [`Reason`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("AP-REQ refused: {0}")]
    Ap(ApError),
    #[error("the AP-REQ carries no subkey; the answer is sealed under one")]
    NoSubkey,
    #[error("unknown identity code")]
    UnknownCode,
    #[error("ticket client {client} is not the unit's subscriber {subscriber}")]
    WrongPrincipal {
        client: Principal,
        subscriber: Principal,
    },
    #[error("ticket client {0} is no unit's subscriber, so it may not resolve numbers")]
    NotASubscriber(Principal),
    #[error("unknown number: no unit has it")]
    UnknownNumber,
    #[error("directory store failed: {0}")]
    Store(StoreError),
    #[error("the audit log could not record the read or resolution, so nothing was sent")]
    AuditFailed,
    #[error("sealing the answer failed: {0}")]
    Seal(String),
}

impl Refusal {
    /// What the caller is told.
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::Ap(ApError::ReplayCacheFull) => Reason::Unavailable,
            Refusal::Ap(_) | Refusal::NoSubkey => Reason::AuthenticationFailed,
            Refusal::UnknownCode | Refusal::WrongPrincipal { .. } | Refusal::NotASubscriber(_) => {
                Reason::NotAuthorised
            }
            Refusal::UnknownNumber => Reason::UnknownNumber,
            Refusal::Store(_) | Refusal::AuditFailed | Refusal::Seal(_) => Reason::Unavailable,
        }
    }
}

/// What became of one datagram.
#[derive(Debug)]
pub enum Outcome {
    /// The record of `code` went to `client`.
    Served {
        code: IdentityCode,
        client: Principal,
    },
    /// Refused with an error answer, and audited.
    Refused {
        code: IdentityCode,
        client: Option<Principal>,
        refusal: Refusal,
        /// The audit write itself failed (the refusal still stands).
        audit_failed: bool,
    },
    /// `number` was resolved for `client` to the unit `callee`, whose call
    /// principal is `call_principal`.
    Resolved {
        number: DialledNumber,
        client: Principal,
        callee: IdentityCode,
        call_principal: Principal,
    },
    /// A resolve refused with an error answer, and audited.
    ResolveRefused {
        number: DialledNumber,
        client: Option<Principal>,
        refusal: Refusal,
        audit_failed: bool,
    },
    /// Not a directory request: no answer, not audited (it names no
    /// unit, and a junk flood must not grow the audit table).
    Dropped(WireError),
}

/// One datagram's result: what to send back, and what happened.
#[derive(Debug)]
pub struct Handled {
    pub reply: Option<Vec<u8>>,
    pub outcome: Outcome,
}

/// Counters, for the role's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub served: u64,
    pub refused_auth: u64,
    pub refused_not_authorised: u64,
    pub refused_unavailable: u64,
    /// Resolves answered with a callee.
    pub resolved: u64,
    /// Resolves refused: no unit has the number.
    pub refused_unknown_number: u64,
    pub dropped: u64,
    pub audit_failures: u64,
}

/// The directory core.
pub struct Directory<S, K> {
    store: S,
    keys: K,
    config: DirectoryConfig,
    replay: ReplayCache,
    stats: Stats,
}

impl<S: DirectoryStore, K: ServiceKeys> Directory<S, K> {
    pub fn new(store: S, keys: K, config: DirectoryConfig) -> Self {
        let replay = ReplayCache::new(config.skew, config.replay_capacity)
            .with_per_client_limit(config.replay_per_client);
        Self {
            store,
            keys,
            config,
            replay,
            stats: Stats::default(),
        }
    }

    pub fn store(&self) -> &S {
        &self.store
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Handles one request datagram (a lookup or a resolve) received at
    /// `now`.
    pub fn handle(&mut self, bytes: &[u8], now: SystemTime) -> Handled {
        if bytes.get(1) == Some(&KIND_RESOLVE) {
            return self.handle_resolve(bytes, now);
        }
        let req = match Request::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.stats.dropped += 1;
                return Handled {
                    reply: None,
                    outcome: Outcome::Dropped(e),
                };
            }
        };
        let code = req.code;
        match self.serve(&req, now) {
            Ok((reply, client)) => {
                self.stats.served += 1;
                Handled {
                    reply: Some(reply),
                    outcome: Outcome::Served { code, client },
                }
            }
            Err((refusal, client)) => self.refuse(code, client, refusal, now),
        }
    }

    fn handle_resolve(&mut self, bytes: &[u8], now: SystemTime) -> Handled {
        let req = match ResolveRequest::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.stats.dropped += 1;
                return Handled {
                    reply: None,
                    outcome: Outcome::Dropped(e),
                };
            }
        };
        match self.resolve(&req, now) {
            Ok((reply, client, callee, call_principal)) => {
                self.stats.resolved += 1;
                Handled {
                    reply: Some(reply),
                    outcome: Outcome::Resolved {
                        number: req.number,
                        client,
                        callee,
                        call_principal,
                    },
                }
            }
            Err((refusal, client)) => {
                self.count_refusal(refusal.reason());
                let audit_failed = !self.audit(
                    None,
                    Some(&req.number),
                    client.as_ref(),
                    format!("refused: {refusal}"),
                    now,
                );
                Handled {
                    reply: Some(wire::encode_resolve_error(&req.number, refusal.reason())),
                    outcome: Outcome::ResolveRefused {
                        number: req.number,
                        client,
                        refusal,
                        audit_failed,
                    },
                }
            }
        }
    }

    fn count_refusal(&mut self, reason: Reason) {
        match reason {
            Reason::AuthenticationFailed => self.stats.refused_auth += 1,
            Reason::NotAuthorised => self.stats.refused_not_authorised += 1,
            Reason::Unavailable => self.stats.refused_unavailable += 1,
            Reason::UnknownNumber => self.stats.refused_unknown_number += 1,
        }
    }

    fn audit(
        &mut self,
        code: Option<IdentityCode>,
        number: Option<&DialledNumber>,
        client: Option<&Principal>,
        outcome: String,
        now: SystemTime,
    ) -> bool {
        let ok = self
            .store
            .audit(&AuditEntry {
                time: now,
                code,
                number: number.cloned(),
                client: client.map(Principal::to_string),
                outcome,
            })
            .is_ok();
        if !ok {
            self.stats.audit_failures += 1;
        }
        ok
    }

    fn refuse(
        &mut self,
        code: IdentityCode,
        client: Option<Principal>,
        refusal: Refusal,
        now: SystemTime,
    ) -> Handled {
        let reason = refusal.reason();
        self.count_refusal(reason);
        let audit_failed = !self.audit(
            Some(code),
            None,
            client.as_ref(),
            format!("refused: {refusal}"),
            now,
        );
        Handled {
            reply: Some(wire::encode_error(&code, reason)),
            outcome: Outcome::Refused {
                code,
                client,
                refusal,
                audit_failed,
            },
        }
    }

    #[allow(clippy::result_large_err)]
    fn serve(
        &mut self,
        req: &Request<'_>,
        now: SystemTime,
    ) -> Result<(Vec<u8>, Principal), (Refusal, Option<Principal>)> {
        let bound = Request::bound_bytes(&req.code);
        let accepted = ap::accept_ap_req(
            req.ap_req,
            &self.keys,
            &AcceptParams {
                service: Some(&self.config.service),
                app_data: Some(&bound),
                skew: self.config.skew,
            },
            &mut self.replay,
            now,
        )
        .map_err(|e| {
            let client = match &e {
                ApError::Replay(p) => Some(p.clone()),
                _ => None,
            };
            (Refusal::Ap(e), client)
        })?;
        let client = accepted.client.clone();
        let fail = |r| (r, Some(client.clone()));
        if accepted.subkey.is_none() {
            return Err(fail(Refusal::NoSubkey));
        }
        let record = self
            .store
            .get(&req.code)
            .map_err(|e| fail(Refusal::Store(e)))?
            .ok_or_else(|| fail(Refusal::UnknownCode))?;
        if record.principal != client {
            return Err(fail(Refusal::WrongPrincipal {
                client: client.clone(),
                subscriber: record.principal.clone(),
            }));
        }
        // Fail closed: no read leaves without its audit entry.
        if !self.audit(Some(req.code), None, Some(&client), "served".into(), now) {
            return Err(fail(Refusal::AuditFailed));
        }
        let ap_rep = accepted.ap_rep(None, None);
        let mut chan = SecureChannel::for_acceptor(&accepted, None, None);
        let sealed = chan
            .seal_priv(&record.encode(), now)
            .map_err(|e| fail(Refusal::Seal(e.to_string())))?;
        let answer = Answer {
            code: req.code,
            ap_rep: &ap_rep,
            krb_priv: &sealed,
        }
        .encode();
        Ok((answer, client))
    }

    /// §4.1: the AP-REQ as for a lookup but bound to the number, a subkey,
    /// a client that is some unit's subscriber, then the number.
    #[allow(clippy::result_large_err, clippy::type_complexity)]
    fn resolve(
        &mut self,
        req: &ResolveRequest<'_>,
        now: SystemTime,
    ) -> Result<(Vec<u8>, Principal, IdentityCode, Principal), (Refusal, Option<Principal>)> {
        let bound = ResolveRequest::bound_bytes(&req.number);
        let accepted = ap::accept_ap_req(
            req.ap_req,
            &self.keys,
            &AcceptParams {
                service: Some(&self.config.service),
                app_data: Some(&bound),
                skew: self.config.skew,
            },
            &mut self.replay,
            now,
        )
        .map_err(|e| {
            let client = match &e {
                ApError::Replay(p) => Some(p.clone()),
                _ => None,
            };
            (Refusal::Ap(e), client)
        })?;
        let client = accepted.client.clone();
        let fail = |r| (r, Some(client.clone()));
        if accepted.subkey.is_none() {
            return Err(fail(Refusal::NoSubkey));
        }
        // Before the number: a principal the directory does not serve
        // learns nothing about which numbers exist.
        if !self
            .store
            .is_subscriber(&client)
            .map_err(|e| fail(Refusal::Store(e)))?
        {
            return Err(fail(Refusal::NotASubscriber(client.clone())));
        }
        let callee = self
            .store
            .get_by_number(&req.number)
            .map_err(|e| fail(Refusal::Store(e)))?
            .ok_or_else(|| fail(Refusal::UnknownNumber))?;
        let resolution = Resolution::of(req.number.clone(), &callee);
        // Fail closed, as for lookups.
        if !self.audit(
            Some(callee.code),
            Some(&req.number),
            Some(&client),
            format!("resolved: {}", resolution.call_principal),
            now,
        ) {
            return Err(fail(Refusal::AuditFailed));
        }
        let ap_rep = accepted.ap_rep(None, None);
        let mut chan = SecureChannel::for_acceptor(&accepted, None, None);
        let sealed = chan
            .seal_priv(&resolution.encode(), now)
            .map_err(|e| fail(Refusal::Seal(e.to_string())))?;
        let answer = Resolved {
            number: req.number.clone(),
            ap_rep: &ap_rep,
            krb_priv: &sealed,
        }
        .encode();
        Ok((answer, client, callee.code, resolution.call_principal))
    }
}
