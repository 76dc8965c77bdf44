//! The proxy manager's protocol core (docs/attach.md §6.3): relay frames,
//! the completions of the work it asks for, and the time in; frames to
//! send, commands for the I/O layer and events out. No I/O.
//!
//! Per unit, a switch-on goes: verified ([`Verifier`]) → directory ticket
//! in the unit's name ([`Command::GetDirectoryTicket`]) → directory request
//! ([`Command::SendDirectoryRequest`], built with
//! `roamgate_directory::client`) → [`Command::StartProxy`] → the ack, sent
//! only once the I/O layer reports the proxy started. A step that fails
//! for want of the KDC or the directory is retried with exponential
//! backoff until the switch-on's deadline, then refused `Unavailable`.
//!
//! Work in progress is keyed by session ([`Session`]): a completion for a
//! session that no longer exists (replaced, switched off, given up) is
//! ignored, so a late answer can never start a second proxy. Running
//! proxies are keyed by identity code: one per unit.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_directory::client::{self, ClientError, PendingLookup};
use roamgate_directory::wire::Reason;
use roamgate_directory::{IdentityCode, UnitRecord};
use roamgate_krb::ap::ServiceKeys;
use roamgate_krb::credential::Credential;
use roamgate_krb::messages::same_principal;
use roamgate_krb::Principal;

use crate::manager::{ProxyRequest, Request, SwitchOn, Verified, Verifier, BUSY_RETRY_AFTER};
use crate::relay::answer_relay;
use crate::wire::{Cause, MessageType, ProxyState, RelayRepr, Repr, StatusBody};

/// A unit silent for this long loses its proxy (deregistered).
pub const SILENCE_TIMEOUT: Duration = Duration::from_secs(600);
/// First retry after a KDC or directory failure; doubled per failure.
pub const RETRY_INITIAL: Duration = Duration::from_millis(500);
/// Longest wait between two retries.
pub const RETRY_MAX: Duration = Duration::from_secs(8);
/// A switch-on not acked by then is refused `Unavailable`: below the unit's
/// own give-up time (1+2+4+8+8 s, docs/attach.md §2).
pub const SWITCH_ON_DEADLINE: Duration = Duration::from_secs(20);
/// A step the I/O layer has not completed by then counts as unreachable.
pub const STEP_TIMEOUT: Duration = Duration::from_secs(3);
/// Switch-ons in progress, all base stations together.
pub const MAX_IN_PROGRESS: usize = 4096;
/// Switch-ons in progress relayed by one base station.
pub const MAX_IN_PROGRESS_PER_BASE_STATION: usize = 512;
/// Units (proxies and switch-ons in progress).
pub const MAX_UNITS: usize = 100_000;

/// The proxy manager's tunables; [`Default`] gives the named constants.
#[derive(Debug, Clone)]
pub struct ManagerConfig {
    pub silence_timeout: Duration,
    pub retry_initial: Duration,
    pub retry_max: Duration,
    pub switch_on_deadline: Duration,
    pub step_timeout: Duration,
    pub max_in_progress: usize,
    pub max_in_progress_per_base_station: usize,
    pub max_units: usize,
}

impl Default for ManagerConfig {
    fn default() -> Self {
        Self {
            silence_timeout: SILENCE_TIMEOUT,
            retry_initial: RETRY_INITIAL,
            retry_max: RETRY_MAX,
            switch_on_deadline: SWITCH_ON_DEADLINE,
            step_timeout: STEP_TIMEOUT,
            max_in_progress: MAX_IN_PROGRESS,
            max_in_progress_per_base_station: MAX_IN_PROGRESS_PER_BASE_STATION,
            max_units: MAX_UNITS,
        }
    }
}

/// One switch-on's work, and the proxy it starts: completions name it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Session(pub u64);

/// Why the KDC did not issue the directory ticket.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KdcFailure {
    /// No answer (timeout, connection refused): retried.
    #[error("the KDC is unreachable: {0}")]
    Unreachable(String),
    /// A KRB-ERROR (e.g. the TGT was revoked): final.
    #[error("the KDC refused the directory ticket in the unit's name: {0}")]
    Refused(String),
}

/// Work the I/O layer must do. Commands are applied in order: a
/// `StopProxy` takes the old proxy out of the runner's table before the
/// `StartProxy` that follows it, so a unit never has two proxies.
#[derive(Debug)]
pub enum Command {
    /// A TGS request for the directory service with the unit's forwarded
    /// TGT; answer with [`ProxyManager::handle_ticket`].
    GetDirectoryTicket {
        unit: IdentityCode,
        session: Session,
        tgt: Box<Credential>,
    },
    /// Send `bytes` to the directory; answer with
    /// [`ProxyManager::handle_directory`].
    SendDirectoryRequest {
        unit: IdentityCode,
        session: Session,
        bytes: Vec<u8>,
    },
    /// Start the unit's proxy with its initiating information; answer with
    /// [`ProxyManager::proxy_started`] or [`ProxyManager::proxy_failed`].
    StartProxy {
        unit: IdentityCode,
        session: Session,
        record: Box<UnitRecord>,
        tgt: Box<Credential>,
        /// The domain of the base station the unit switched on at.
        domain: String,
    },
    /// A unit's request for its proxy (a call's Kerberos): do it with the
    /// proxy's credentials and answer with [`ProxyManager::proxy_answered`]
    /// and the same `id`.
    Proxy {
        unit: IdentityCode,
        session: Session,
        id: u64,
        request: Box<ProxyRequest>,
    },
    /// Stop the unit's proxy and destroy its tickets; with `deregister`,
    /// it first deregisters its binding at the home agent.
    StopProxy {
        unit: IdentityCode,
        session: Session,
        deregister: bool,
    },
}

/// The step a retry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    DirectoryTicket,
    DirectoryRequest,
    ProxyStart,
}

/// Why a step is retried (or the switch-on given up): for the logs.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RetryReason {
    #[error("{0}")]
    Kdc(KdcFailure),
    #[error("the directory is unreachable: {0}")]
    DirectoryUnreachable(String),
    #[error("the directory answered {0}")]
    DirectoryRefused(Reason),
    #[error("the directory's answer was refused: {0}")]
    BadAnswer(String),
    #[error("no completion within the step timeout")]
    NoCompletion,
    #[error("the proxy failed: {0}")]
    ProxyFailed(String),
}

/// Something to log or count.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A datagram that is no relay frame, or whose unit frame does not
    /// parse: no answer.
    Dropped { from: SocketAddr, error: String },
    /// A request refused with `cause`; `error` says why.
    Refused {
        from: SocketAddr,
        unit: Option<IdentityCode>,
        cause: Cause,
        error: String,
    },
    /// A resend of a switch-on in progress: its ack goes to the newest.
    Joined {
        unit: IdentityCode,
        session: Session,
    },
    /// A step failed; it runs again at `at`.
    Retrying {
        unit: IdentityCode,
        session: Session,
        step: Step,
        attempt: u32,
        at: SystemTime,
        reason: RetryReason,
    },
    /// The unit's proxy runs and the unit has its ack.
    Attached {
        unit: IdentityCode,
        session: Session,
        principal: Principal,
    },
    /// A new switch-on's proxy replaced the old session's.
    Replaced {
        unit: IdentityCode,
        old: Session,
        new: Session,
    },
    SwitchedOff {
        unit: IdentityCode,
        session: Session,
    },
    SilenceTimeout {
        unit: IdentityCode,
        session: Session,
    },
    /// A completion for a session that no longer exists.
    Stale { session: Session },
}

/// What the core wants done.
#[derive(Debug)]
pub enum Output {
    /// A relay frame for the base station at `to`.
    Send {
        to: SocketAddr,
        bytes: Vec<u8>,
    },
    Command(Command),
    Event(Event),
}

/// Counters, for the role's metrics.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub dropped: u64,
    /// Refusals by cause byte.
    pub refused: [u64; 16],
    pub refused_busy_in_progress: u64,
    pub refused_busy_base_station: u64,
    pub refused_busy_units: u64,
    pub switch_ons_ok: u64,
    pub joined: u64,
    pub replaced: u64,
    pub retries: u64,
    pub gave_up: u64,
    pub switched_off: u64,
    pub silence_timeouts: u64,
    pub proxy_restarts: u64,
    pub stale: u64,
    /// Proxy requests handed to proxies, answered, and dropped unanswered.
    pub proxy_ops: u64,
    pub proxy_ops_answered: u64,
    pub proxy_ops_expired: u64,
}

impl Stats {
    pub fn refused(&self, cause: Cause) -> u64 {
        self.refused
            .get(usize::from(cause.to_u8()))
            .copied()
            .unwrap_or(0)
    }
}

/// Where a frame came from and how to answer it.
#[derive(Debug, Clone)]
struct ReplyTo {
    from: SocketAddr,
    base_station: u32,
    domain: String,
    unit_addr: SocketAddrV4,
}

impl ReplyTo {
    fn frame(&self, answer: &[u8]) -> Option<Vec<u8>> {
        answer_relay(
            &RelayRepr {
                base_station: self.base_station,
                domain: &self.domain,
                unit: self.unit_addr,
                inner: answer,
            },
            answer,
        )
        .ok()
    }
}

#[derive(Debug)]
enum Stage {
    Ticket,
    Directory {
        ticket: Box<Credential>,
        lookup: Box<PendingLookup>,
    },
    /// Waiting to run `step` again.
    Backoff {
        step: Step,
        ticket: Option<Box<Credential>>,
    },
    /// StartProxy issued; the ack waits for "proxy started".
    Proxy,
}

#[derive(Debug)]
struct Pending {
    unit: IdentityCode,
    principal: Principal,
    tgt: Credential,
    /// The newest switch-on's ack, and where it goes.
    reply: ReplyTo,
    ack: Vec<u8>,
    nonce: u64,
    /// The base station charged for this switch-on (the first one's).
    charged: SocketAddr,
    stage: Stage,
    attempt: u32,
    /// The current stage's timer.
    wake: SystemTime,
    deadline: SystemTime,
}

#[derive(Debug)]
enum Run {
    Starting,
    Running {
        care_of: Ipv4Addr,
        registration_expiry: Option<SystemTime>,
    },
    Restarting {
        at: SystemTime,
        attempt: u32,
    },
}

#[derive(Debug)]
struct Proxy {
    session: Session,
    principal: Principal,
    record: UnitRecord,
    tgt: Credential,
    domain: String,
    last_heard: SystemTime,
    run: Run,
    armed: SystemTime,
}

impl Proxy {
    fn next_wake(&self, silence: Duration) -> SystemTime {
        let silent = self.last_heard + silence;
        match self.run {
            Run::Restarting { at, .. } => at.min(silent),
            _ => silent,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Pending(Session),
    Proxy(IdentityCode, Session),
    Op(u64),
}

/// A proxy request waiting for its proxy's answer.
#[derive(Debug)]
struct Op {
    reply: ReplyTo,
    request: (MessageType, IdentityCode, u64),
    deadline: SystemTime,
}

/// Proxy requests in flight at once; past it a unit is told to retry.
pub const MAX_PROXY_OPS: usize = 4096;
/// How long a proxy has to answer a proxy request (the unit's own
/// retransmissions go on meanwhile, each a fresh request).
pub const PROXY_OP_TIMEOUT: Duration = Duration::from_secs(10);

/// The proxy manager core.
pub struct ProxyManager<K> {
    verifier: Verifier<K>,
    config: ManagerConfig,
    next_session: u64,
    pending: HashMap<Session, Pending>,
    /// In progress by (code, principal): a second principal claiming the
    /// same code does not disturb the owner's switch-on; the directory
    /// decides which of them owns it.
    by_claim: HashMap<(IdentityCode, Principal), Session>,
    per_base_station: HashMap<SocketAddr, usize>,
    /// Boxed: a proxy is ~1.3 KiB, and the table grows by doubling. Inline,
    /// with 10,000 units the table held 16,384 slots of it (twice that
    /// while growing) and each growth moved every entry, stalling the
    /// proxy manager's loop for ~30 ms; boxed, a slot is 24 bytes.
    proxies: HashMap<IdentityCode, Box<Proxy>>,
    timers: BinaryHeap<Reverse<(SystemTime, Timer)>>,
    ops: HashMap<u64, Op>,
    next_op: u64,
    out: VecDeque<Output>,
    stats: Stats,
}

impl<K> std::fmt::Debug for ProxyManager<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProxyManager")
            .field("in_progress", &self.pending.len())
            .field("proxies", &self.proxies.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

fn unix_secs(t: Option<SystemTime>) -> u64 {
    t.and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs())
}

impl<K: ServiceKeys> ProxyManager<K> {
    pub fn new(verifier: Verifier<K>, config: ManagerConfig) -> Self {
        Self {
            verifier,
            config,
            next_session: 1,
            pending: HashMap::new(),
            by_claim: HashMap::new(),
            per_base_station: HashMap::new(),
            proxies: HashMap::new(),
            timers: BinaryHeap::new(),
            ops: HashMap::new(),
            next_op: 1,
            out: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Switch-ons in progress (not yet acked).
    pub fn in_progress(&self) -> usize {
        self.pending.len()
    }

    /// Live proxies.
    pub fn proxies(&self) -> usize {
        self.proxies.len()
    }

    /// Timers held, live or finished (bounded by the live work).
    pub fn timers(&self) -> usize {
        self.timers.len()
    }

    /// The session of `unit`'s proxy, if it has one.
    pub fn proxy_session(&self, unit: &IdentityCode) -> Option<Session> {
        self.proxies.get(unit).map(|p| p.session)
    }

    /// The next thing to do, if any.
    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    /// When to call [`Self::handle_timeout`] next.
    pub fn poll_timeout(&mut self) -> Option<SystemTime> {
        while let Some(Reverse((at, timer))) = self.timers.peek().copied() {
            if self.timer_live(at, timer) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    fn timer_live(&self, at: SystemTime, timer: Timer) -> bool {
        match timer {
            Timer::Pending(s) => self.pending.get(&s).is_some_and(|p| p.wake == at),
            Timer::Proxy(code, s) => self
                .proxies
                .get(&code)
                .is_some_and(|p| p.session == s && p.armed == at),
            Timer::Op(id) => self.ops.get(&id).is_some_and(|o| o.deadline == at),
        }
    }

    fn event(&mut self, e: Event) {
        self.out.push_back(Output::Event(e));
    }

    fn command(&mut self, c: Command) {
        self.out.push_back(Output::Command(c));
    }

    fn send(&mut self, reply: &ReplyTo, answer: &[u8]) {
        if let Some(bytes) = reply.frame(answer) {
            self.out.push_back(Output::Send {
                to: reply.from,
                bytes,
            });
        }
    }

    fn refuse(
        &mut self,
        reply: &ReplyTo,
        request: (MessageType, IdentityCode, u64),
        cause: Cause,
        error: String,
    ) {
        let (ty, identity, nonce) = request;
        self.count_refusal(cause);
        let frame = Repr::Refused {
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
        .to_bytes();
        if let Ok(frame) = frame {
            self.send(reply, &frame);
        }
        self.event(Event::Refused {
            from: reply.from,
            unit: Some(identity),
            cause,
            error,
        });
    }

    fn count_refusal(&mut self, cause: Cause) {
        if let Some(n) = self.stats.refused.get_mut(usize::from(cause.to_u8())) {
            *n += 1;
        }
    }

    fn new_session(&mut self) -> Session {
        let s = Session(self.next_session);
        self.next_session += 1;
        s
    }

    /// A datagram from the base station at `from`.
    pub fn handle_relay(&mut self, bytes: &[u8], from: SocketAddr, now: SystemTime) {
        let relay = match RelayRepr::parse_bytes(bytes) {
            Ok(r) => r,
            Err(error) => {
                self.stats.dropped += 1;
                let error = error.to_string();
                self.event(Event::Dropped { from, error });
                return;
            }
        };
        let reply = ReplyTo {
            from,
            base_station: relay.base_station,
            domain: relay.domain.to_owned(),
            unit_addr: relay.unit,
        };
        match self.verifier.verify(relay.inner, now) {
            Err(refusal) => match refusal.request {
                None => {
                    self.stats.dropped += 1;
                    let error = refusal.error.to_string();
                    self.event(Event::Dropped { from, error });
                }
                Some(request) => {
                    let cause = refusal.cause();
                    self.refuse(&reply, request, cause, refusal.error.to_string());
                }
            },
            Ok(Verified::SwitchOn(s)) => self.switch_on(*s, reply, now),
            Ok(Verified::SwitchOff(r)) => self.switch_off(r, reply),
            Ok(Verified::Status(r)) => self.status(r, reply, now),
            Ok(Verified::Proxy(r)) => self.proxy_op(r, reply, now),
        }
    }

    fn proxy_op(&mut self, r: Box<ProxyRequest>, reply: ReplyTo, now: SystemTime) {
        let req = (MessageType::ProxyRequest, r.identity, r.nonce);
        let session = match self.proxies.get_mut(&r.identity) {
            Some(p) if same_principal(&p.principal, &r.client) => {
                p.last_heard = now;
                p.session
            }
            _ => {
                return self.refuse(
                    &reply,
                    req,
                    Cause::NotAttached,
                    format!("{} has no proxy for this identity code", r.client),
                )
            }
        };
        if self.ops.len() >= MAX_PROXY_OPS {
            return self.refuse(
                &reply,
                req,
                Cause::Busy,
                format!("{MAX_PROXY_OPS} proxy requests in flight"),
            );
        }
        self.arm_proxy(r.identity);
        let id = self.next_op;
        self.next_op += 1;
        let deadline = now + PROXY_OP_TIMEOUT;
        self.ops.insert(
            id,
            Op {
                reply,
                request: req,
                deadline,
            },
        );
        self.timers.push(Reverse((deadline, Timer::Op(id))));
        self.stats.proxy_ops += 1;
        self.command(Command::Proxy {
            unit: r.identity,
            session,
            id,
            request: r,
        });
    }

    /// The proxy's answer to proxy request `id`: the unit frame built with
    /// [`ProxyRequest::answer`], or why there is none (the unit is told
    /// the service is unavailable). An answer after the timeout is dropped.
    pub fn proxy_answered(&mut self, id: u64, answer: Result<Vec<u8>, String>) {
        let Some(op) = self.ops.remove(&id) else {
            self.stats.stale += 1;
            return;
        };
        match answer {
            Ok(frame) => {
                self.stats.proxy_ops_answered += 1;
                self.send(&op.reply, &frame);
            }
            Err(error) => self.refuse(&op.reply, op.request, Cause::Unavailable, error),
        }
    }

    /// Proxy requests waiting for their proxies.
    pub fn proxy_ops_in_flight(&self) -> usize {
        self.ops.len()
    }

    fn switch_on(&mut self, s: SwitchOn, reply: ReplyTo, now: SystemTime) {
        let ack = match s.ack() {
            Ok(a) => a,
            Err(e) => {
                let req = (MessageType::SwitchOn, s.identity, s.nonce);
                return self.refuse(&reply, req, Cause::Malformed, e.to_string());
            }
        };
        if let Some(p) = self.proxies.get_mut(&s.identity) {
            if same_principal(&p.principal, &s.client) {
                p.last_heard = now;
            }
        }
        let claim = (s.identity, s.client.clone());
        if let Some(&session) = self.by_claim.get(&claim) {
            // The unit's resend (a fresh frame): the work goes on, the ack
            // goes to the newest frame, the newest TGT is used from now on.
            if let Some(p) = self.pending.get_mut(&session) {
                p.reply = reply;
                p.ack = ack;
                p.nonce = s.nonce;
                p.tgt = s.tgt;
                self.stats.joined += 1;
                self.event(Event::Joined {
                    unit: s.identity,
                    session,
                });
                return;
            }
        }
        let req = (MessageType::SwitchOn, s.identity, s.nonce);
        let charged = self.per_base_station.get(&reply.from).copied().unwrap_or(0);
        if self.pending.len() >= self.config.max_in_progress {
            self.stats.refused_busy_in_progress += 1;
            return self.refuse(
                &reply,
                req,
                Cause::Busy,
                "too many switch-ons in progress".into(),
            );
        }
        if charged >= self.config.max_in_progress_per_base_station {
            self.stats.refused_busy_base_station += 1;
            return self.refuse(
                &reply,
                req,
                Cause::Busy,
                format!(
                    "too many switch-ons in progress from base station {}",
                    reply.from
                ),
            );
        }
        if !self.proxies.contains_key(&s.identity)
            && self.pending.len() + self.proxies.len() >= self.config.max_units
        {
            self.stats.refused_busy_units += 1;
            return self.refuse(&reply, req, Cause::Busy, "unit table full".into());
        }
        let session = self.new_session();
        *self.per_base_station.entry(reply.from).or_insert(0) += 1;
        self.by_claim.insert(claim, session);
        let wake = now + self.config.step_timeout;
        self.pending.insert(
            session,
            Pending {
                unit: s.identity,
                principal: s.client.clone(),
                tgt: s.tgt.clone(),
                charged: reply.from,
                reply,
                ack,
                nonce: s.nonce,
                stage: Stage::Ticket,
                attempt: 0,
                wake,
                deadline: now + self.config.switch_on_deadline,
            },
        );
        self.arm_pending(session, wake);
        self.command(Command::GetDirectoryTicket {
            unit: s.identity,
            session,
            tgt: Box::new(s.tgt),
        });
    }

    fn arm_pending(&mut self, session: Session, at: SystemTime) {
        if let Some(p) = self.pending.get_mut(&session) {
            p.wake = at;
            self.timers.push(Reverse((at, Timer::Pending(session))));
            self.compact_timers();
        }
    }

    fn arm_proxy(&mut self, unit: IdentityCode) {
        let silence = self.config.silence_timeout;
        if let Some(p) = self.proxies.get_mut(&unit) {
            let at = p.next_wake(silence);
            // Only ever earlier: a later wake (the unit was heard) is
            // found when the armed one fires, so a chatty unit does not
            // grow the heap.
            if p.armed == UNIX_EPOCH || at < p.armed {
                p.armed = at;
                self.timers
                    .push(Reverse((at, Timer::Proxy(unit, p.session))));
                self.compact_timers();
            }
        }
    }

    /// Drops timers of finished work once they outnumber the live ones,
    /// so that churn cannot grow the heap.
    fn compact_timers(&mut self) {
        let live = self.pending.len() + self.proxies.len();
        if self.timers.len() > 2 * live + 64 {
            let mut timers = std::mem::take(&mut self.timers);
            timers.retain(|Reverse((at, t))| self.timer_live(*at, *t));
            self.timers = timers;
        }
    }

    /// Removes a switch-on in progress and releases its base station's slot.
    fn take_pending(&mut self, session: Session) -> Option<Pending> {
        let p = self.pending.remove(&session)?;
        self.by_claim.remove(&(p.unit, p.principal.clone()));
        if let Some(n) = self.per_base_station.get_mut(&p.charged) {
            *n -= 1;
            if *n == 0 {
                self.per_base_station.remove(&p.charged);
            }
        }
        Some(p)
    }

    /// The request's principal must be the one its proxy (or switch-on in
    /// progress) is for.
    fn owner(&self, r: &Request) -> (Option<Session>, Option<Session>) {
        let proxy = self
            .proxies
            .get(&r.identity)
            .filter(|p| same_principal(&p.principal, &r.client))
            .map(|p| p.session);
        let pending = self.by_claim.get(&(r.identity, r.client.clone())).copied();
        (proxy, pending)
    }

    fn switch_off(&mut self, r: Request, reply: ReplyTo) {
        let req = (r.kind, r.identity, r.nonce);
        let (proxy, pending) = self.owner(&r);
        if proxy.is_none() && pending.is_none() {
            return self.refuse(
                &reply,
                req,
                Cause::NotAttached,
                format!("{} has no proxy for this identity code", r.client),
            );
        }
        // A proxy being started for the pending switch-on is in the proxy
        // table under the same principal, so it is stopped just below.
        if let Some(session) = pending {
            self.take_pending(session);
        }
        if let Some(session) = proxy {
            self.proxies.remove(&r.identity);
            self.command(Command::StopProxy {
                unit: r.identity,
                session,
                deregister: true,
            });
        }
        self.stats.switched_off += 1;
        let session = proxy.or(pending).unwrap_or(Session(0));
        self.event(Event::SwitchedOff {
            unit: r.identity,
            session,
        });
        match r.switch_off_ack() {
            Ok(ack) => self.send(&reply, &ack),
            Err(e) => self.refuse(&reply, req, Cause::Malformed, e.to_string()),
        }
    }

    fn status(&mut self, r: Request, reply: ReplyTo, now: SystemTime) {
        let req = (r.kind, r.identity, r.nonce);
        let (proxy, pending) = self.owner(&r);
        let body = if let Some(p) = proxy.and_then(|_| self.proxies.get_mut(&r.identity)) {
            p.last_heard = now;
            let (state, care_of, reg) = match p.run {
                Run::Starting => (ProxyState::Starting, Ipv4Addr::UNSPECIFIED, None),
                Run::Running {
                    care_of,
                    registration_expiry,
                } => (
                    if registration_expiry.is_some() {
                        ProxyState::Attached
                    } else {
                        ProxyState::Starting
                    },
                    care_of,
                    registration_expiry,
                ),
                Run::Restarting { .. } => (ProxyState::Retrying, Ipv4Addr::UNSPECIFIED, None),
            };
            StatusBody {
                state,
                home_address: p.record.home_address,
                care_of,
                tgt_expiry: unix_secs(Some(p.tgt.end_time)),
                registration_expiry: unix_secs(reg),
            }
        } else if let Some(p) = pending.and_then(|s| self.pending.get(&s)) {
            StatusBody {
                state: if matches!(p.stage, Stage::Backoff { .. }) {
                    ProxyState::Retrying
                } else {
                    ProxyState::Starting
                },
                home_address: Ipv4Addr::UNSPECIFIED,
                care_of: Ipv4Addr::UNSPECIFIED,
                tgt_expiry: unix_secs(Some(p.tgt.end_time)),
                registration_expiry: 0,
            }
        } else {
            return self.refuse(
                &reply,
                req,
                Cause::NotAttached,
                format!("{} has no proxy for this identity code", r.client),
            );
        };
        self.arm_proxy(r.identity);
        match r.status_answer(&body, now) {
            Ok(answer) => self.send(&reply, &answer),
            Err(e) => self.refuse(&reply, req, Cause::Malformed, e.to_string()),
        }
    }

    /// The directory ticket for `session`, or why there is none.
    pub fn handle_ticket(
        &mut self,
        session: Session,
        result: Result<Credential, KdcFailure>,
        now: SystemTime,
    ) {
        let Some(p) = self.pending.get(&session) else {
            return self.stale(session);
        };
        if !matches!(p.stage, Stage::Ticket) {
            return self.stale(session);
        }
        match result {
            Ok(ticket) if same_principal(&ticket.client, &p.principal) => {
                self.send_directory_request(session, Box::new(ticket), now)
            }
            Ok(ticket) => self.give_up(
                session,
                Cause::NoDelegation,
                format!(
                    "the directory ticket is for {}, not the unit's {}",
                    ticket.client, p.principal
                ),
            ),
            Err(f @ KdcFailure::Unreachable(_)) => self.retry(
                session,
                Step::DirectoryTicket,
                None,
                RetryReason::Kdc(f),
                now,
            ),
            Err(f @ KdcFailure::Refused(_)) => {
                self.give_up(session, Cause::NoDelegation, f.to_string())
            }
        }
    }

    fn send_directory_request(
        &mut self,
        session: Session,
        ticket: Box<Credential>,
        now: SystemTime,
    ) {
        let Some(p) = self.pending.get_mut(&session) else {
            return;
        };
        let unit = p.unit;
        match client::build_request(&ticket, unit, now) {
            Ok((bytes, lookup)) => {
                p.stage = Stage::Directory {
                    ticket,
                    lookup: Box::new(lookup),
                };
                let wake = now + self.config.step_timeout;
                self.arm_pending(session, wake);
                self.command(Command::SendDirectoryRequest {
                    unit,
                    session,
                    bytes,
                });
            }
            // An unusable ticket: a fresh one may do.
            Err(e) => self.retry(
                session,
                Step::DirectoryTicket,
                None,
                RetryReason::BadAnswer(e.to_string()),
                now,
            ),
        }
    }

    /// The directory's answer for `session`, or `Err` when it did not
    /// answer (the I/O layer's timeout, a refused connection).
    pub fn handle_directory(
        &mut self,
        session: Session,
        result: Result<&[u8], String>,
        now: SystemTime,
    ) {
        let Some(p) = self.pending.get_mut(&session) else {
            return self.stale(session);
        };
        let Stage::Directory { .. } = &p.stage else {
            return self.stale(session);
        };
        let Stage::Directory { ticket, lookup } = std::mem::replace(&mut p.stage, Stage::Proxy)
        else {
            return;
        };
        let answer = match result {
            Ok(bytes) => lookup.open(bytes, now),
            Err(e) => {
                let reason = RetryReason::DirectoryUnreachable(e);
                return self.retry(session, Step::DirectoryRequest, Some(ticket), reason, now);
            }
        };
        match answer {
            Ok(record) => self.start_proxy(session, record, now),
            Err(ClientError::Refused {
                reason: Reason::NotAuthorised,
                ..
            }) => self.give_up(
                session,
                Cause::UnknownUnit,
                "the directory has no entry for this identity code and principal".into(),
            ),
            Err(ClientError::Refused { reason, .. }) => self.retry(
                session,
                Step::DirectoryRequest,
                Some(ticket),
                RetryReason::DirectoryRefused(reason),
                now,
            ),
            // Tampered, forged or mismatched answers: a genuine one may
            // still come with the next request.
            Err(e) => self.retry(
                session,
                Step::DirectoryRequest,
                Some(ticket),
                RetryReason::BadAnswer(e.to_string()),
                now,
            ),
        }
    }

    fn start_proxy(&mut self, session: Session, record: UnitRecord, now: SystemTime) {
        let Some(p) = self.pending.get_mut(&session) else {
            return;
        };
        p.stage = Stage::Proxy;
        let unit = p.unit;
        let principal = p.principal.clone();
        let tgt = p.tgt.clone();
        let domain = p.reply.domain.clone();
        let wake = now + self.config.step_timeout;
        self.arm_pending(session, wake);
        // The directory proved that this principal owns the code: its
        // proxy replaces any other. No deregistration: the new proxy's
        // registration replaces the binding, and a deregistration racing
        // it could remove the new one.
        if let Some(old) = self.proxies.remove(&unit) {
            self.stats.replaced += 1;
            self.command(Command::StopProxy {
                unit,
                session: old.session,
                deregister: false,
            });
            self.event(Event::Replaced {
                unit,
                old: old.session,
                new: session,
            });
        }
        self.proxies.insert(
            unit,
            Box::new(Proxy {
                session,
                principal,
                record: record.clone(),
                tgt: tgt.clone(),
                domain: domain.clone(),
                last_heard: now,
                run: Run::Starting,
                armed: UNIX_EPOCH,
            }),
        );
        self.arm_proxy(unit);
        self.command(Command::StartProxy {
            unit,
            session,
            record: Box::new(record),
            tgt: Box::new(tgt),
            domain,
        });
    }

    /// The I/O layer started the proxy of `session`.
    pub fn proxy_started(&mut self, unit: IdentityCode, session: Session) {
        let Some(unit) = self.proxy_unit(unit, session) else {
            return self.stale(session);
        };
        if let Some(p) = self.proxies.get_mut(&unit) {
            p.run = Run::Running {
                care_of: Ipv4Addr::UNSPECIFIED,
                registration_expiry: None,
            };
        }
        self.arm_proxy(unit);
        if let Some(p) = self.take_pending(session) {
            self.stats.switch_ons_ok += 1;
            self.send(&p.reply, &p.ack);
            self.event(Event::Attached {
                unit,
                session,
                principal: p.principal,
            });
        }
    }

    /// The proxy of `session` registered `care_of` until `expiry` (for
    /// status answers).
    pub fn proxy_registered(
        &mut self,
        unit: IdentityCode,
        session: Session,
        care_of: Ipv4Addr,
        expiry: SystemTime,
    ) {
        let Some(unit) = self.proxy_unit(unit, session) else {
            return self.stale(session);
        };
        if let Some(p) = self.proxies.get_mut(&unit) {
            p.run = Run::Running {
                care_of,
                registration_expiry: Some(expiry),
            };
        }
    }

    /// The proxy of `session` failed (or could not start): it is restarted
    /// with backoff until its unit falls silent.
    pub fn proxy_failed(
        &mut self,
        unit: IdentityCode,
        session: Session,
        reason: String,
        now: SystemTime,
    ) {
        let Some(unit) = self.proxy_unit(unit, session) else {
            return self.stale(session);
        };
        let (initial, max) = (self.config.retry_initial, self.config.retry_max);
        let Some(p) = self.proxies.get_mut(&unit) else {
            return;
        };
        let attempt = match p.run {
            Run::Restarting { attempt, .. } => attempt + 1,
            _ => 1,
        };
        let at = now + backoff(initial, max, attempt);
        p.run = Run::Restarting { at, attempt };
        self.stats.retries += 1;
        self.event(Event::Retrying {
            unit,
            session,
            step: Step::ProxyStart,
            attempt,
            at,
            reason: RetryReason::ProxyFailed(reason),
        });
        self.arm_proxy(unit);
    }

    /// The proxy of `session` has stopped. Expected after a
    /// [`Command::StopProxy`]; a proxy that stops by itself has failed.
    pub fn proxy_stopped(&mut self, unit: IdentityCode, session: Session, now: SystemTime) {
        if self.proxy_unit(unit, session).is_some() {
            self.proxy_failed(unit, session, "the proxy stopped by itself".into(), now);
        }
    }

    /// `unit`, if its proxy is the one of `session`.
    fn proxy_unit(&self, unit: IdentityCode, session: Session) -> Option<IdentityCode> {
        self.proxies
            .get(&unit)
            .filter(|p| p.session == session)
            .map(|_| unit)
    }

    fn stale(&mut self, session: Session) {
        self.stats.stale += 1;
        self.event(Event::Stale { session });
    }

    fn retry(
        &mut self,
        session: Session,
        step: Step,
        ticket: Option<Box<Credential>>,
        reason: RetryReason,
        now: SystemTime,
    ) {
        let (initial, max) = (self.config.retry_initial, self.config.retry_max);
        let Some(p) = self.pending.get_mut(&session) else {
            return;
        };
        p.attempt += 1;
        let at = now + backoff(initial, max, p.attempt);
        if at >= p.deadline {
            let error = format!("gave up after {} attempts: {reason}", p.attempt);
            self.stats.gave_up += 1;
            return self.give_up(session, Cause::Unavailable, error);
        }
        let (unit, attempt) = (p.unit, p.attempt);
        p.stage = Stage::Backoff { step, ticket };
        self.stats.retries += 1;
        self.arm_pending(session, at);
        self.event(Event::Retrying {
            unit,
            session,
            step,
            attempt,
            at,
            reason,
        });
    }

    /// Ends a switch-on in progress with a refusal of its newest frame.
    fn give_up(&mut self, session: Session, cause: Cause, error: String) {
        let Some(p) = self.take_pending(session) else {
            return;
        };
        if matches!(p.stage, Stage::Proxy)
            && self
                .proxies
                .get(&p.unit)
                .is_some_and(|x| x.session == session)
        {
            self.proxies.remove(&p.unit);
            self.command(Command::StopProxy {
                unit: p.unit,
                session,
                deregister: true,
            });
        }
        self.refuse(
            &p.reply,
            (MessageType::SwitchOn, p.unit, p.nonce),
            cause,
            error,
        );
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: SystemTime) {
        while let Some(at) = self.poll_timeout() {
            if at > now {
                break;
            }
            let Some(Reverse((_, timer))) = self.timers.pop() else {
                break;
            };
            match timer {
                Timer::Pending(s) => self.pending_timer(s, now),
                Timer::Proxy(code, _) => self.proxy_timer(code, now),
                Timer::Op(id) => {
                    if self.ops.remove(&id).is_some() {
                        self.stats.proxy_ops_expired += 1;
                    }
                }
            }
        }
    }

    fn pending_timer(&mut self, session: Session, now: SystemTime) {
        let Some(p) = self.pending.get_mut(&session) else {
            return;
        };
        match std::mem::replace(&mut p.stage, Stage::Ticket) {
            Stage::Backoff { step, ticket } => match (step, ticket) {
                (Step::DirectoryRequest, Some(ticket)) if ticket.is_valid_at(now) => {
                    self.send_directory_request(session, ticket, now)
                }
                _ => {
                    let (unit, tgt) = (p.unit, p.tgt.clone());
                    let wake = now + self.config.step_timeout;
                    self.arm_pending(session, wake);
                    self.command(Command::GetDirectoryTicket {
                        unit,
                        session,
                        tgt: Box::new(tgt),
                    });
                }
            },
            Stage::Ticket => {
                self.retry(
                    session,
                    Step::DirectoryTicket,
                    None,
                    RetryReason::NoCompletion,
                    now,
                );
            }
            Stage::Directory { ticket, .. } => self.retry(
                session,
                Step::DirectoryRequest,
                Some(ticket),
                RetryReason::NoCompletion,
                now,
            ),
            Stage::Proxy => {
                p.stage = Stage::Proxy;
                if now >= p.deadline {
                    self.stats.gave_up += 1;
                    self.give_up(
                        session,
                        Cause::Unavailable,
                        "the proxy did not start before the switch-on's deadline".into(),
                    );
                } else {
                    let at = p.deadline;
                    self.arm_pending(session, at);
                }
            }
        }
    }

    fn proxy_timer(&mut self, unit: IdentityCode, now: SystemTime) {
        let silence = self.config.silence_timeout;
        let Some(p) = self.proxies.get_mut(&unit) else {
            return;
        };
        p.armed = UNIX_EPOCH;
        let session = p.session;
        if now >= p.last_heard + silence {
            self.proxies.remove(&unit);
            self.take_pending(session);
            self.stats.silence_timeouts += 1;
            self.command(Command::StopProxy {
                unit,
                session,
                deregister: true,
            });
            self.event(Event::SilenceTimeout { unit, session });
            return;
        }
        if let Run::Restarting { at, .. } = p.run {
            if now >= at {
                p.run = Run::Starting;
                self.stats.proxy_restarts += 1;
                let cmd = Command::StartProxy {
                    unit,
                    session,
                    record: Box::new(p.record.clone()),
                    tgt: Box::new(p.tgt.clone()),
                    domain: p.domain.clone(),
                };
                self.command(cmd);
            }
        }
        self.arm_proxy(unit);
    }
}

/// The wait before attempt `attempt` (1-based): initial, doubled, capped.
pub fn backoff(initial: Duration, max: Duration, attempt: u32) -> Duration {
    initial
        .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
        .min(max)
}
