//! The home agent's registration core (RFC 5944 §3.8). No I/O: time is
//! passed in; the outcome says what to journal, what to do to the data
//! plane and what to send.
//!
//! Order of checks on a Registration Request (docs/mobile-ip.md, "Home
//! agent processing"; one function per step in [`request`]):
//! 1. fixed part: shorter than 24 bytes, larger than [`MAX_MESSAGE_LEN`] or
//!    not type 1 → silent drop;
//! 2. extensions: malformed, or an unrecognised type in 0-127 → 134;
//! 3. the home address names no configured node → 131;
//! 4. MN-HA authentication (RFC 5944 §3.8.2.1): no MHAE → 134; reserved or
//!    unknown SPI, wrong length, bad authenticator → 131;
//! 5. Identification (timestamps, §5.7) → 133 with our time;
//! 6. the node's rate limit → silent drop; from here on the request is
//!    authentic and fresh and its Identification is recorded;
//! 7. Home Agent field not one of ours → 136;
//! 8. deregistration (lifetime 0 or care-of = home) → 0, binding removed;
//! 9. M or G bit → 139; T bit against the reverse-tunnel policy → 137/138;
//! 10. CVSEs before the MHAE: not roamgate's Kerberos AP-REQ → 140;
//! 11. Kerberos AP-REQ (required unless the node is configured otherwise):
//!     missing, invalid, replayed, wrong client or no subkey → 131;
//! 12. resources: binding table full or tunnel SPI collision → 130;
//! 13. accept: 0 (1 if simultaneous bindings were asked for).
//!
//! A request that fails any check yields no data-plane action and no
//! binding change. A reply to a request that did not pass step 4 carries no
//! MN-HA authenticator (RFC 5944 §3.8.3.1): the home agent cannot know who
//! sent it. Refusals in steps 2-5 are answered only while the source
//! address has tokens in its own bucket ([`RateLimit`]); a source address
//! proves nothing, so that bucket never gates an authentic, fresh request.
//!
//! An accepted request carries an [`Undo`]. When the daemon cannot journal
//! it or apply its actions, [`HomeAgent::rollback`] takes the binding change
//! back, says how to undo the part the data plane did apply, and turns the
//! reply into 130 (insufficient resources): the node is never told
//! "accepted" for a binding the home agent does not hold.

use std::collections::{HashMap, HashSet};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::ServiceKeys;
use roamgate_krb::replay::ReplayCache;

use crate::auth::AuthError;
use crate::identification;
use crate::journal::{JournalOp, JournalState};
use crate::kerberos;
use crate::wire::WireError;
#[cfg(doc)]
use crate::wire::MAX_MESSAGE_LEN;
use crate::{Action, Role};

mod config;
mod request;
mod rollback;

/// A binding in the cache: the journal's record, one type for both.
pub use crate::journal::BindingRecord as Binding;
pub use config::{
    ConfigError, HomeAgentConfig, NodeConfig, RateLimit, ReverseTunnel, DEFAULT_MAX_LIFETIME,
    DEFAULT_TUNNEL_GRACE,
};
pub use rollback::Undo;

use crate::rate_limit::{Bucket, SourceLimiter};

/// Replaced tunnels a node may have waiting for their grace period.
pub const MAX_RETIRING_PER_NODE: usize = 4;

/// Why a request was dropped without a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DropReason {
    RateLimited,
    Malformed(WireError),
}

/// Why a request got a rejection (for logs and counters; never a secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejection {
    PoorlyFormed(WireError),
    UnknownNode,
    MissingAuth,
    Auth(AuthError),
    Identification(identification::IdentificationError),
    UnknownHomeAgent(Ipv4Addr),
    Encapsulation,
    ReverseTunnelUnavailable,
    ReverseTunnelMandatory,
    UnsupportedCvse {
        vendor_id: u32,
        cvse_type: u16,
    },
    KerberosMissing,
    Kerberos(String),
    KerberosWrongClient(String),
    KerberosNoSubkey,
    TooManyBindings,
    SpiCollision(u32),
    /// The request was accepted, but the journal or the data plane could
    /// not take the binding change ([`HomeAgent::rollback`]).
    ApplyFailed,
}

/// What the home agent decided about one request.
#[derive(Debug, Default)]
pub struct Outcome {
    /// The Registration Reply to send back to the request's source, if any.
    pub reply: Option<Vec<u8>>,
    /// The reply code, if a reply is sent.
    pub code: Option<u8>,
    /// Data-plane actions, in order. Empty unless the request was accepted.
    pub actions: Vec<Action>,
    /// Journal changes.
    pub journal: Vec<JournalOp>,
    pub dropped: Option<DropReason>,
    pub rejection: Option<Rejection>,
    /// Set on an accepted registration or deregistration: hand it to
    /// [`HomeAgent::rollback`] if the journal or the actions fail.
    pub undo: Option<Undo>,
}

/// Counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Stats {
    pub accepted: u64,
    pub deregistered: u64,
    /// Deregistrations of a care-of address the binding no longer has
    /// (accepted, nothing removed).
    pub deregistered_stale: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub expired: u64,
    /// Accepted requests taken back because the journal or the data plane
    /// failed (they are counted as rejected instead of accepted).
    pub apply_failed: u64,
}

#[derive(Debug)]
struct Node {
    config: NodeConfig,
    last_id: Option<u64>,
    /// The node's rate limit, spent only by its authentic, fresh requests.
    bucket: Bucket,
}

/// The home agent core.
pub struct HomeAgent {
    config: HomeAgentConfig,
    nodes: HashMap<Ipv4Addr, Node>,
    keys: Arc<dyn ServiceKeys + Send + Sync>,
    replay: ReplayCache,
    bindings: HashMap<Ipv4Addr, Binding>,
    /// Tunnels replaced by a newer registration, removed at the time given.
    retiring: Vec<(SystemTime, Ipv4Addr, u32)>,
    /// Every tunnel SPI installed (bindings' and retiring ones).
    spis: HashSet<u32>,
    /// Budgets of replies to requests not proven authentic and fresh.
    sources: SourceLimiter,
    stats: Stats,
}

impl std::fmt::Debug for HomeAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HomeAgent")
            .field("addresses", &self.config.addresses)
            .field("nodes", &self.nodes.len())
            .field("bindings", &self.bindings.len())
            .field("stats", &self.stats)
            .finish()
    }
}

fn lifetime_secs(l: u16) -> Duration {
    Duration::from_secs(u64::from(l))
}

impl HomeAgent {
    pub fn new(
        config: HomeAgentConfig,
        nodes: Vec<NodeConfig>,
        keys: Arc<dyn ServiceKeys + Send + Sync>,
    ) -> Self {
        let replay = ReplayCache::new(kerberos::AP_REQ_SKEW, config.replay_capacity);
        // Full from the start; the epoch avoids a clock read in the core.
        let full = Bucket::full(&config.rate_limit, SystemTime::UNIX_EPOCH);
        Self {
            nodes: nodes
                .into_iter()
                .map(|n| {
                    (
                        n.home_address,
                        Node {
                            config: n,
                            last_id: None,
                            bucket: full,
                        },
                    )
                })
                .collect(),
            sources: SourceLimiter::new(config.rate_limit),
            config,
            keys,
            replay,
            bindings: HashMap::new(),
            retiring: Vec::new(),
            spis: HashSet::new(),
            stats: Stats::default(),
        }
    }

    pub fn config(&self) -> &HomeAgentConfig {
        &self.config
    }

    pub fn stats(&self) -> Stats {
        self.stats
    }

    pub fn binding(&self, home: Ipv4Addr) -> Option<&Binding> {
        self.bindings.get(&home)
    }

    pub fn bindings(&self) -> impl Iterator<Item = &Binding> {
        self.bindings.values()
    }

    pub fn binding_count(&self) -> usize {
        self.bindings.len()
    }

    /// Sources currently tracked by the rate limiter (bounded by
    /// `rate_limit.max_sources`).
    pub fn tracked_sources(&self) -> usize {
        self.sources.len()
    }

    /// Restores the binding cache and the replay state from the journal
    /// after a restart. Bindings that expired while the daemon was down are
    /// removed (actions and journal ops in the outcome); live ones are
    /// already in the pinned maps and need no action.
    pub fn restore(&mut self, state: JournalState, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        for (home, id) in state.identifications {
            if let Some(n) = self.nodes.get_mut(&home) {
                n.last_id = Some(n.last_id.map_or(id, |l| identification::later(l, id)));
            }
        }
        for r in state.bindings {
            let b = r;
            if let Some(n) = self.nodes.get_mut(&b.home) {
                n.last_id = Some(n.last_id.map_or(b.identification, |l| {
                    identification::later(l, b.identification)
                }));
            }
            if b.expires <= now || !self.nodes.contains_key(&b.home) {
                out.actions.push(Action::RemoveBinding {
                    home: b.home,
                    role: Role::HomeAgent,
                });
                out.actions.push(Action::RemoveTunnel { spi: b.spi });
                out.journal.push(JournalOp::RemoveBinding(b.home));
                self.stats.expired += 1;
            } else {
                self.spis.insert(b.spi);
                self.bindings.insert(b.home, b);
            }
        }
        out
    }

    /// When [`HomeAgent::poll`] next has something to do.
    pub fn next_wakeup(&self) -> Option<SystemTime> {
        let b = self.bindings.values().map(|b| b.expires).min();
        let r = self.retiring.iter().map(|(t, _, _)| *t).min();
        match (b, r) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Expires bindings and retires replaced tunnels whose time has come.
    pub fn poll(&mut self, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        let mut expired: Vec<Ipv4Addr> = self
            .bindings
            .values()
            .filter(|b| b.expires <= now)
            .map(|b| b.home)
            .collect();
        expired.sort();
        for home in expired {
            self.remove_binding(home, &mut out);
            self.stats.expired += 1;
        }
        let mut keep = Vec::with_capacity(self.retiring.len());
        for (t, home, spi) in std::mem::take(&mut self.retiring) {
            if t <= now {
                self.spis.remove(&spi);
                out.actions.push(Action::RemoveTunnel { spi });
            } else {
                keep.push((t, home, spi));
            }
        }
        self.retiring = keep;
        self.replay.expire(now);
        self.sources.forget_idle(now);
        out
    }

    pub(super) fn remove_binding(&mut self, home: Ipv4Addr, out: &mut Outcome) {
        if let Some(b) = self.bindings.remove(&home) {
            self.spis.remove(&b.spi);
            out.actions.push(Action::RemoveBinding {
                home,
                role: Role::HomeAgent,
            });
            out.actions.push(Action::RemoveTunnel { spi: b.spi });
            out.journal.push(JournalOp::RemoveBinding(home));
        }
        // Tunnels of this node still in their grace period go too.
        let mut i = 0;
        while i < self.retiring.len() {
            if self.retiring[i].1 == home {
                let (_, _, spi) = self.retiring.swap_remove(i);
                self.spis.remove(&spi);
                out.actions.push(Action::RemoveTunnel { spi });
            } else {
                i += 1;
            }
        }
    }

    /// Queues a replaced tunnel for removal after the grace period. A node
    /// keeps at most [`MAX_RETIRING_PER_NODE`] such tunnels; beyond that the
    /// oldest goes at once (bounded memory under rapid re-registration).
    pub(super) fn retire(&mut self, now: SystemTime, home: Ipv4Addr, spi: u32, out: &mut Outcome) {
        let mine = self.retiring.iter().filter(|(_, h, _)| *h == home).count();
        if mine >= MAX_RETIRING_PER_NODE {
            if let Some(i) = self
                .retiring
                .iter()
                .enumerate()
                .filter(|(_, (_, h, _))| *h == home)
                .min_by_key(|(_, (t, _, _))| *t)
                .map(|(i, _)| i)
            {
                let (_, _, old) = self.retiring.swap_remove(i);
                self.spis.remove(&old);
                out.actions.push(Action::RemoveTunnel { spi: old });
            }
        }
        self.retiring
            .push((now + self.config.tunnel_grace, home, spi));
    }
}
