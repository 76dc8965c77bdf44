//! The billing service's protocol core (docs/billing.md, "The service"):
//! request bytes and the time in, ledger operations and answer bytes out.
//! No I/O; the ledger is reached through [`Accounts`] (reads) and the
//! caller's own [`crate::LedgerStore::apply_batch`] (the one write).
//!
//! One datagram goes through three steps, so that a runner can commit
//! many at once (group commit):
//! 1. [`BillingServer::accept`]: framing, then the AP-REQ (ticket for our
//!    service, its times, skew, the checksum over the request header,
//!    the replay cache), a subkey, then the KRB-PRIV under that subkey
//!    and the operation in it, bound to the same nonce. A refusal here is
//!    an unauthenticated error answer (a hint) or, for junk, silence.
//! 2. [`Batch::push`]: the ticket's CLIENT principal names the account
//!    ([`Accounts::account_for`]); the request carries no account. A close
//!    for a call charged to another account is refused here, before the
//!    ledger is touched.
//! 3. [`Batch::finish`]: the ledger's answers become sealed results.

use std::collections::HashMap;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::{self, AcceptParams, ApError, ServiceKeys};
use roamgate_krb::priv_safe::{PrivSafeError, SecureChannel};
use roamgate_krb::replay::{ReplayCache, CLOCK_SKEW, DEFAULT_CAPACITY};
use roamgate_krb::Principal;

use crate::ledger::{self, CallId, LedgerError, Outcome};
use crate::store::SqliteLedger;
use crate::tariff::Tariff;
use crate::wire::{self, Answer, Op, OpBody, OpResult, Reason, Request, ResultBody, WireError};

/// Tunables of the billing core.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The service principal tickets must be for, e.g.
    /// `billing/bill.example.org@EXAMPLE.ORG`.
    pub service: Principal,
    pub skew: Duration,
    /// Live authenticators remembered against replay.
    pub replay_capacity: usize,
    /// Live authenticators one client principal may hold.
    pub replay_per_client: usize,
}

impl ServerConfig {
    pub fn new(service: Principal) -> Self {
        Self {
            service,
            skew: CLOCK_SKEW,
            replay_capacity: DEFAULT_CAPACITY,
            replay_per_client: 4096,
        }
    }
}

/// Why a datagram was refused before the ledger: the full cause, for the
/// logs. The caller learns only [`Refusal::reason`].
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("not a billing request: {0}")]
    Wire(WireError),
    #[error("AP-REQ refused: {0}")]
    Ap(ApError),
    #[error("the AP-REQ carries no subkey; the operation is sealed under one")]
    NoSubkey,
    #[error("the operation's KRB-PRIV did not open under the subkey: {0}")]
    Priv(PrivSafeError),
    #[error("the sealed operation is malformed: {0}")]
    Body(WireError),
    #[error("the sealed operation's nonce does not match the request's")]
    NonceMismatch,
}

impl Refusal {
    /// What the caller is told (an unauthenticated hint).
    pub fn reason(&self) -> Reason {
        match self {
            Refusal::Ap(ApError::ReplayCacheFull) => Reason::Unavailable,
            _ => Reason::AuthenticationFailed,
        }
    }
}

/// A request refused by [`BillingServer::accept`].
#[derive(Debug)]
pub struct Rejected {
    /// The error answer to send; `None` for a datagram that is no billing
    /// request at all (junk gets no answer).
    pub reply: Option<Vec<u8>>,
    /// The client, when the AP-REQ named one we could trust (a replay).
    pub client: Option<Principal>,
    pub refusal: Refusal,
}

/// A request that proved itself: its client and its operation, and what
/// is needed to answer it under the same subkey.
#[derive(Debug)]
pub struct Authenticated {
    pub nonce: u64,
    pub client: Principal,
    pub op: Op,
    chan: SecureChannel,
    ap_rep: Vec<u8>,
}

impl Authenticated {
    /// The sealed answer carrying `result`. `None` only if sealing failed
    /// (the caller then times out and retries).
    pub fn answer(&mut self, result: OpResult, now: SystemTime) -> Option<Vec<u8>> {
        let body = ResultBody {
            nonce: self.nonce,
            call_id: self.op.call().0,
            result,
        };
        let sealed = self.chan.seal_priv(&body.encode(), now).ok()?;
        Some(
            Answer {
                nonce: self.nonce,
                ap_rep: &self.ap_rep,
                krb_priv: &sealed,
            }
            .encode(),
        )
    }
}

/// Counters of the authentication step.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub requests: u64,
    pub accepted: u64,
    pub refused_auth: u64,
    pub dropped: u64,
}

/// The billing core: the service's keys and the replay cache.
pub struct BillingServer<K> {
    keys: K,
    config: ServerConfig,
    replay: ReplayCache,
    stats: Stats,
}

impl<K: ServiceKeys> BillingServer<K> {
    pub fn new(keys: K, config: ServerConfig) -> Self {
        let replay = ReplayCache::new(config.skew, config.replay_capacity)
            .with_per_client_limit(config.replay_per_client);
        Self {
            keys,
            config,
            replay,
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Step 1: authenticates one request datagram received at `now`.
    #[allow(clippy::result_large_err)]
    pub fn accept(&mut self, bytes: &[u8], now: SystemTime) -> Result<Authenticated, Rejected> {
        self.stats.requests += 1;
        let req = match Request::parse(bytes) {
            Ok(r) => r,
            Err(e) => {
                self.stats.dropped += 1;
                return Err(Rejected {
                    reply: None,
                    client: None,
                    refusal: Refusal::Wire(e),
                });
            }
        };
        let nonce = req.nonce;
        let r = self.authenticate(&req, now);
        match r {
            Ok(a) => {
                self.stats.accepted += 1;
                Ok(a)
            }
            Err((refusal, client)) => {
                self.stats.refused_auth += 1;
                Err(Rejected {
                    reply: Some(wire::encode_error(nonce, refusal.reason())),
                    client,
                    refusal,
                })
            }
        }
    }

    #[allow(clippy::result_large_err)]
    fn authenticate(
        &mut self,
        req: &Request<'_>,
        now: SystemTime,
    ) -> Result<Authenticated, (Refusal, Option<Principal>)> {
        let bound = wire::bound_bytes(req.nonce);
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
        // Belt and braces: accept_ap_req enforces the ticket's times too.
        if accepted.end_time <= now {
            return Err(fail(Refusal::Ap(ApError::TicketExpired)));
        }
        let mut chan = SecureChannel::for_acceptor(&accepted, None, None);
        let plain = chan
            .open_priv(req.krb_priv, now)
            .map_err(|e| fail(Refusal::Priv(e)))?;
        let body = OpBody::parse(&plain).map_err(|e| fail(Refusal::Body(e)))?;
        if body.nonce != req.nonce {
            return Err(fail(Refusal::NonceMismatch));
        }
        Ok(Authenticated {
            nonce: req.nonce,
            client,
            op: body.op,
            chan,
            ap_rep: accepted.ap_rep(None, None),
        })
    }
}

/// The reads the core needs from the ledger.
pub trait Accounts {
    /// The account a client principal is bound to.
    fn account_for(&self, principal: &str) -> Result<Option<String>, LedgerError>;
    /// The tariff new calls of `account` are opened under.
    fn tariff_for(&self, account: &str) -> Result<Option<Tariff>, LedgerError>;
    /// The account the charge of `call` is on.
    fn charge_account(&self, call: CallId) -> Result<Option<String>, LedgerError>;
}

impl Accounts for SqliteLedger {
    fn account_for(&self, principal: &str) -> Result<Option<String>, LedgerError> {
        SqliteLedger::account_for(self, principal)
    }

    fn tariff_for(&self, account: &str) -> Result<Option<Tariff>, LedgerError> {
        Ok(SqliteLedger::tariff_for(self, account)?.map(|(t, _)| t))
    }

    fn charge_account(&self, call: CallId) -> Result<Option<String>, LedgerError> {
        SqliteLedger::charge_account(self, call)
    }
}

/// One request's result, ready to send.
#[derive(Debug)]
pub struct Answered {
    pub client: Principal,
    /// The account charged, if the client is bound to one.
    pub account: Option<String>,
    pub op: Op,
    pub result: OpResult,
    /// The sealed answer; `None` if sealing failed.
    pub reply: Option<Vec<u8>>,
    /// A ledger error behind a `Refused{Invalid}` or `Refused{Unavailable}`
    /// (for the logs).
    pub error: Option<String>,
}

struct Item {
    req: Authenticated,
    account: Option<String>,
    /// Decided before the ledger, or the index of its op.
    slot: Result<usize, (OpResult, Option<String>)>,
}

/// The operations of many requests, for one [`crate::LedgerStore::apply_batch`]
/// (one transaction, one fsync).
#[derive(Default)]
pub struct Batch {
    items: Vec<Item>,
    ops: Vec<ledger::Op>,
    /// Calls opened earlier in this batch, and by which account.
    opened: HashMap<CallId, String>,
}

fn refused(reason: Reason) -> OpResult {
    OpResult::Refused { reason }
}

impl Batch {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// The ledger operations to apply, in order.
    pub fn ops(&self) -> &[ledger::Op] {
        &self.ops
    }

    /// Step 2: maps the request's client principal to its account and
    /// queues its ledger operation, or decides its refusal now.
    pub fn push<A: Accounts + ?Sized>(
        &mut self,
        req: Authenticated,
        accounts: &A,
        skew: Duration,
        now: SystemTime,
    ) {
        let (account, slot) = match self.plan(&req, accounts, skew, now) {
            Ok((account, op)) => {
                self.ops.push(op);
                (Some(account), Ok(self.ops.len() - 1))
            }
            Err((account, result, error)) => (account, Err((result, error))),
        };
        self.items.push(Item { req, account, slot });
    }

    #[allow(clippy::type_complexity)]
    fn plan<A: Accounts + ?Sized>(
        &mut self,
        req: &Authenticated,
        accounts: &A,
        skew: Duration,
        now: SystemTime,
    ) -> Result<(String, ledger::Op), (Option<String>, OpResult, Option<String>)> {
        let unavailable =
            |e: LedgerError| (None, refused(Reason::Unavailable), Some(e.to_string()));
        let account = accounts
            .account_for(&req.client.to_string())
            .map_err(unavailable)?
            .ok_or((None, refused(Reason::NoAccount), None))?;
        let mine = |r: OpResult| (Some(account.clone()), r, None);
        let call = req.op.call();
        let when = match req.op {
            Op::OpenCharge { started_at, .. } => started_at,
            Op::CloseCharge { ended_at, .. } => ended_at,
        };
        // A charge opens as its call connects: an open dated more than the
        // clock skew back would bill (and cap) time that was never asked
        // for. A close may be late (a proxy that restarted).
        let backdated = matches!(req.op, Op::OpenCharge { .. })
            && now.duration_since(when).is_ok_and(|d| d > skew);
        if when > now + skew || backdated {
            return Err(mine(refused(Reason::BadTime)));
        }
        match req.op {
            Op::OpenCharge { started_at, .. } => {
                let tariff = accounts
                    .tariff_for(&account)
                    .map_err(|e| {
                        (
                            Some(account.clone()),
                            refused(Reason::Unavailable),
                            Some(e.to_string()),
                        )
                    })?
                    .ok_or_else(|| mine(refused(Reason::NoTariff)))?;
                self.opened.entry(call).or_insert_with(|| account.clone());
                Ok((
                    account.clone(),
                    ledger::Op::Open {
                        call,
                        account,
                        tariff,
                        started_at,
                    },
                ))
            }
            Op::CloseCharge { ended_at, .. } => {
                let owner = match accounts.charge_account(call).map_err(|e| {
                    (
                        Some(account.clone()),
                        refused(Reason::Unavailable),
                        Some(e.to_string()),
                    )
                })? {
                    Some(owner) => Some(owner),
                    None => self.opened.get(&call).cloned(),
                };
                match owner {
                    None => Err(mine(refused(Reason::UnknownCall))),
                    Some(owner) if owner != account => Err(mine(refused(Reason::NotYourCall))),
                    Some(_) => Ok((account, ledger::Op::Close { call, ended_at })),
                }
            }
        }
    }

    /// Step 3: the ledger's answers (the result of `apply_batch(self.ops())`)
    /// become sealed answers, one per request, in order.
    pub fn finish(
        self,
        outcomes: Result<Vec<Result<Outcome, LedgerError>>, LedgerError>,
        now: SystemTime,
    ) -> Vec<Answered> {
        let (mut outcomes, batch_error) = match outcomes {
            Ok(v) => (v.into_iter().map(Some).collect::<Vec<_>>(), None),
            Err(e) => (Vec::new(), Some(e.to_string())),
        };
        self.items
            .into_iter()
            .map(|mut item| {
                let (result, error) = match item.slot {
                    Err((r, e)) => (r, e),
                    Ok(i) => match outcomes.get_mut(i).and_then(Option::take) {
                        Some(Ok(o)) => (result_of(o), None),
                        Some(Err(e)) => (refused(Reason::Invalid), Some(e.to_string())),
                        None => (
                            refused(Reason::Unavailable),
                            Some(
                                batch_error
                                    .clone()
                                    .unwrap_or_else(|| "the ledger gave no answer".into()),
                            ),
                        ),
                    },
                };
                let reply = item.req.answer(result, now);
                Answered {
                    client: item.req.client.clone(),
                    account: item.account,
                    op: item.req.op,
                    result,
                    reply,
                    error,
                }
            })
            .collect()
    }
}

/// The result a ledger outcome is told as.
pub fn result_of(o: Outcome) -> OpResult {
    match o {
        Outcome::Opened { allowed_seconds } => OpResult::Opened { allowed_seconds },
        Outcome::AlreadyOpen { allowed_seconds } => OpResult::AlreadyOpen { allowed_seconds },
        Outcome::Closed { amount, seconds } => OpResult::Closed { amount, seconds },
        Outcome::AlreadyClosed {
            amount, seconds, ..
        } => OpResult::AlreadyClosed { amount, seconds },
        Outcome::UnknownCall => refused(Reason::UnknownCall),
        Outcome::Refused(r) => refused(match r {
            ledger::Refusal::InsufficientFunds { .. } => Reason::InsufficientFunds,
            ledger::Refusal::CreditLimit { .. } => Reason::CreditLimit,
            ledger::Refusal::UnknownAccount => Reason::NoAccount,
            ledger::Refusal::Conflict { .. } => Reason::NotYourCall,
        }),
        Outcome::Credited { .. } => refused(Reason::Invalid),
    }
}
