//! The home agent's registration core (RFC 5944 §3.8). No I/O: time is
//! passed in; the outcome says what to journal, what to do to the data
//! plane and what to send.
//!
//! Order of checks on a Registration Request (docs/mobile-ip.md, "Home
//! agent processing"):
//! 1. per-source rate limit → silent drop;
//! 2. fixed part: shorter than 24 bytes, larger than [`MAX_MESSAGE_LEN`] or
//!    not type 1 → silent drop;
//! 3. extensions: malformed, or an unrecognised type in 0-127 → 134;
//! 4. the home address names no configured node → 131 (no security
//!    association, unauthenticated reply);
//! 5. MN-HA authentication (RFC 5944 §3.8.2.1): no MHAE → 134; reserved or
//!    unknown SPI, wrong length, bad authenticator → 131;
//! 6. Identification (timestamps, §5.7) → 133 with our time;
//!    from here on the request is authentic and its Identification is
//!    recorded;
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
//! binding change.
//!
//! An accepted request carries an [`Undo`]. When the daemon cannot journal
//! it or apply its actions, [`HomeAgent::rollback`] takes the binding change
//! back, says how to undo the part the data plane did apply, and turns the
//! reply into 130 (insufficient resources): the node is never told
//! "accepted" for a binding the home agent does not hold.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::ServiceKeys;
use roamgate_krb::messages::same_principal;
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;

use crate::auth::{self, AuthError, SecurityAssociation};
use crate::identification::{self, DEFAULT_SKEW};
use crate::journal::{BindingRecord, JournalOp, JournalState};
use crate::kerberos::{self, CVSE_KRB_AP_REQ, ROAMGATE_VENDOR_ID};
use crate::tunnel_key::{self, MasterKey};
use crate::wire::{
    self, code, flags, ExtensionRepr, ReplyRepr, RequestRepr, WireError, MAX_MESSAGE_LEN,
    REQUEST_HEADER_LEN,
};
use crate::{Action, Role, TunnelInstall};

/// How long an old tunnel stays installed after a re-registration or a
/// handover replaced it, so packets in flight under it still verify.
pub const DEFAULT_TUNNEL_GRACE: Duration = Duration::from_secs(5);
/// Replaced tunnels a node may have waiting for their grace period.
pub const MAX_RETIRING_PER_NODE: usize = 4;
/// Default upper bound on a granted lifetime (seconds).
pub const DEFAULT_MAX_LIFETIME: u16 = 1800;

/// Reverse tunnelling (RFC 3024) policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReverseTunnel {
    /// The T bit is refused (137).
    Unavailable,
    /// Granted when asked for.
    Optional,
    /// Required: a request without the T bit gets 138.
    Mandatory,
}

/// One mobile node the home agent serves.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    pub home_address: Ipv4Addr,
    /// MN-HA security associations; the first one authenticates replies to
    /// requests whose own SPI is unknown.
    pub security_associations: Vec<SecurityAssociation>,
    /// The Kerberos client principal this node must present, if any.
    pub principal: Option<Principal>,
    /// Require the Kerberos AP-REQ CVSE on registrations. When false and
    /// none is sent, the tunnel master key is derived from the MN-HA key
    /// instead (docs/mobile-ip.md).
    pub require_kerberos: bool,
}

/// Per-source rate limit: a token bucket per source address.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RateLimit {
    /// Requests a source may send at once.
    pub burst: u32,
    /// Sustained requests per second per source.
    pub per_second: u32,
    /// Sources tracked at most; when full, new sources are dropped until
    /// idle ones are forgotten.
    pub max_sources: usize,
}

impl Default for RateLimit {
    fn default() -> Self {
        Self {
            burst: 20,
            per_second: 10,
            max_sources: 65_536,
        }
    }
}

/// Home agent configuration.
#[derive(Debug, Clone)]
pub struct HomeAgentConfig {
    /// This home agent's addresses; the first goes into 136 replies.
    pub addresses: Vec<Ipv4Addr>,
    /// This home agent's Kerberos service principal; `None` accepts a
    /// ticket for any principal whose key the key set holds.
    pub service: Option<Principal>,
    pub max_lifetime: u16,
    pub identification_skew: Duration,
    pub max_bindings: usize,
    pub reverse_tunnel: ReverseTunnel,
    pub tunnel_grace: Duration,
    pub rate_limit: RateLimit,
    /// Capacity of the AP-REQ replay cache.
    pub replay_capacity: usize,
}

impl HomeAgentConfig {
    /// Defaults for a home agent at `address`.
    pub fn new(address: Ipv4Addr) -> Self {
        Self {
            addresses: vec![address],
            service: None,
            max_lifetime: DEFAULT_MAX_LIFETIME,
            identification_skew: DEFAULT_SKEW,
            max_bindings: 100_000,
            reverse_tunnel: ReverseTunnel::Optional,
            tunnel_grace: DEFAULT_TUNNEL_GRACE,
            rate_limit: RateLimit::default(),
            replay_capacity: roamgate_krb::replay::DEFAULT_CAPACITY,
        }
    }
}

/// A configuration the home agent cannot run with.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("the home agent has no address")]
    NoAddress,
    #[error("identification skew {0:?} exceeds the {max:?} limit", max = identification::MAX_SKEW)]
    SkewTooLarge(Duration),
    #[error("{0} must be at least 1")]
    Zero(&'static str),
    #[error("node {0} has no MN-HA security association")]
    NoSecurityAssociation(Ipv4Addr),
    #[error("node {home} has SPI {spi} twice")]
    DuplicateSpi { home: Ipv4Addr, spi: u32 },
    #[error("home address {0} is configured twice")]
    DuplicateNode(Ipv4Addr),
}

impl HomeAgentConfig {
    /// Checks the configuration and the nodes before the home agent starts.
    pub fn validate(&self, nodes: &[NodeConfig]) -> Result<(), ConfigError> {
        if self.addresses.is_empty() {
            return Err(ConfigError::NoAddress);
        }
        if self.identification_skew > identification::MAX_SKEW {
            return Err(ConfigError::SkewTooLarge(self.identification_skew));
        }
        for (v, name) in [
            (self.max_bindings, "max_bindings"),
            (usize::from(self.max_lifetime), "max_lifetime"),
            (self.rate_limit.burst as usize, "rate_limit.burst"),
            (self.rate_limit.per_second as usize, "rate_limit.per_second"),
            (self.rate_limit.max_sources, "rate_limit.max_sources"),
            (self.replay_capacity, "replay_capacity"),
        ] {
            if v == 0 {
                return Err(ConfigError::Zero(name));
            }
        }
        let mut homes = std::collections::HashSet::new();
        for n in nodes {
            if !homes.insert(n.home_address) {
                return Err(ConfigError::DuplicateNode(n.home_address));
            }
            if n.security_associations.is_empty() {
                return Err(ConfigError::NoSecurityAssociation(n.home_address));
            }
            let mut spis = std::collections::HashSet::new();
            for sa in &n.security_associations {
                if !spis.insert(sa.spi()) {
                    return Err(ConfigError::DuplicateSpi {
                        home: n.home_address,
                        spi: sa.spi(),
                    });
                }
            }
        }
        Ok(())
    }
}

/// A binding in the cache.
#[derive(Debug, Clone)]
pub struct Binding {
    pub home: Ipv4Addr,
    pub care_of: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub spi: u32,
    pub master_key: MasterKey,
    pub identification: u64,
    pub lifetime: u16,
    pub registered_at: SystemTime,
    pub expires: SystemTime,
    pub reverse_tunnel: bool,
    pub client: Option<String>,
}

// By hand: the master key has no `PartialEq`, only a constant-time `ct_eq`.
impl PartialEq for Binding {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            home,
            care_of,
            home_agent,
            spi,
            master_key,
            identification,
            lifetime,
            registered_at,
            expires,
            reverse_tunnel,
            client,
        } = self;
        *home == other.home
            && *care_of == other.care_of
            && *home_agent == other.home_agent
            && *spi == other.spi
            && master_key.ct_eq(&other.master_key)
            && *identification == other.identification
            && *lifetime == other.lifetime
            && *registered_at == other.registered_at
            && *expires == other.expires
            && *reverse_tunnel == other.reverse_tunnel
            && *client == other.client
    }
}

impl Eq for Binding {}

impl Binding {
    fn record(&self) -> BindingRecord {
        BindingRecord {
            home: self.home,
            care_of: self.care_of,
            home_agent: self.home_agent,
            spi: self.spi,
            master_key: self.master_key.clone(),
            identification: self.identification,
            lifetime: self.lifetime,
            registered_at: self.registered_at,
            expires: self.expires,
            reverse_tunnel: self.reverse_tunnel,
            client: self.client.clone(),
        }
    }

    fn from_record(r: BindingRecord) -> Self {
        Self {
            home: r.home,
            care_of: r.care_of,
            home_agent: r.home_agent,
            spi: r.spi,
            master_key: r.master_key,
            identification: r.identification,
            lifetime: r.lifetime,
            registered_at: r.registered_at,
            expires: r.expires,
            reverse_tunnel: r.reverse_tunnel,
            client: r.client,
        }
    }
}

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

/// What an accepted registration or deregistration changed in the binding
/// cache, so that [`HomeAgent::rollback`] can take it back. Opaque; its
/// `Debug` never shows a key (the binding's master key redacts itself).
#[derive(Debug)]
pub struct Undo {
    repr: RequestRepr,
    /// The MN-HA SPI the request was authenticated with (for the reply).
    auth_spi: u32,
    deregistration: bool,
    /// The node's binding before the request.
    previous: Option<Binding>,
    /// The node's tunnels in their grace period before the request.
    retiring: Vec<(SystemTime, Ipv4Addr, u32)>,
}

impl Undo {
    /// The home address whose binding the request changed.
    pub fn home(&self) -> Ipv4Addr {
        self.repr.home_address
    }
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
    pub rejected: u64,
    pub dropped: u64,
    pub expired: u64,
    /// Accepted requests taken back because the journal or the data plane
    /// failed (they are counted as rejected instead of accepted).
    pub apply_failed: u64,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    last: SystemTime,
}

#[derive(Debug)]
struct RateLimiter {
    cfg: RateLimit,
    buckets: HashMap<IpAddr, Bucket>,
}

impl RateLimiter {
    fn refill(cfg: &RateLimit, b: &mut Bucket, now: SystemTime) {
        let dt = now.duration_since(b.last).unwrap_or_default().as_secs_f64();
        b.tokens = (b.tokens + dt * f64::from(cfg.per_second)).min(f64::from(cfg.burst));
        b.last = now;
    }

    /// Takes a token for `src`; false when it has none left or the table
    /// is full of active sources.
    fn allow(&mut self, src: IpAddr, now: SystemTime) -> bool {
        if !self.buckets.contains_key(&src) && self.buckets.len() >= self.cfg.max_sources {
            self.forget_idle(now);
            if self.buckets.len() >= self.cfg.max_sources {
                return false;
            }
        }
        let cfg = self.cfg;
        let b = self.buckets.entry(src).or_insert(Bucket {
            tokens: f64::from(cfg.burst),
            last: now,
        });
        Self::refill(&cfg, b, now);
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }

    /// Forgets sources whose bucket is full again (they look new anyway).
    fn forget_idle(&mut self, now: SystemTime) {
        let cfg = self.cfg;
        self.buckets.retain(|_, b| {
            Self::refill(&cfg, b, now);
            b.tokens < f64::from(cfg.burst)
        });
    }
}

#[derive(Debug)]
struct Node {
    config: NodeConfig,
    last_id: Option<u64>,
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
    limiter: RateLimiter,
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
        let limiter = RateLimiter {
            cfg: config.rate_limit,
            buckets: HashMap::new(),
        };
        Self {
            nodes: nodes
                .into_iter()
                .map(|n| {
                    (
                        n.home_address,
                        Node {
                            config: n,
                            last_id: None,
                        },
                    )
                })
                .collect(),
            config,
            keys,
            replay,
            bindings: HashMap::new(),
            retiring: Vec::new(),
            spis: HashSet::new(),
            limiter,
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
        self.limiter.buckets.len()
    }

    /// Restores the binding cache and the replay state from the journal
    /// after a restart. Bindings that expired while the daemon was down are
    /// removed (actions and journal ops in the outcome); live ones are
    /// already in the pinned maps and need no action.
    pub fn restore(&mut self, state: JournalState, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        for (home, id) in state.identifications {
            if let Some(n) = self.nodes.get_mut(&home) {
                n.last_id = Some(n.last_id.map_or(id, |l| l.max(id)));
            }
        }
        for r in state.bindings {
            let b = Binding::from_record(r);
            if let Some(n) = self.nodes.get_mut(&b.home) {
                n.last_id = Some(
                    n.last_id
                        .map_or(b.identification, |l| l.max(b.identification)),
                );
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
        self.limiter.forget_idle(now);
        out
    }

    fn remove_binding(&mut self, home: Ipv4Addr, out: &mut Outcome) {
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

    /// Handles one Registration Request received from `src` at `now`.
    pub fn handle_request(&mut self, bytes: &[u8], src: IpAddr, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        if !self.limiter.allow(src, now) {
            self.stats.dropped += 1;
            out.dropped = Some(DropReason::RateLimited);
            return out;
        }
        if bytes.len() > MAX_MESSAGE_LEN {
            // Oversized: nothing roamgate's nodes send; do no work for it.
            self.stats.dropped += 1;
            out.dropped = Some(DropReason::Malformed(WireError::Oversized(bytes.len())));
            return out;
        }
        let packet = match wire::RequestPacket::new_checked(bytes) {
            Ok(p) => p,
            Err(e) => return self.drop(out, e),
        };
        let repr = match RequestRepr::parse(&packet) {
            Ok(r) => r,
            Err(e) => return self.drop(out, e),
        };
        let extensions =
            match wire::Extensions::new(&bytes[REQUEST_HEADER_LEN..], REQUEST_HEADER_LEN)
                .collect::<Result<Vec<_>, _>>()
            {
                Ok(e) => e,
                Err(e) => {
                    return self.reject(
                        out,
                        &repr,
                        None,
                        code::POORLY_FORMED_REQUEST,
                        Rejection::PoorlyFormed(e),
                        now,
                    )
                }
            };
        let Some(node) = self.nodes.get(&repr.home_address) else {
            return self.reject(
                out,
                &repr,
                None,
                code::MN_FAILED_AUTHENTICATION,
                Rejection::UnknownNode,
                now,
            );
        };
        let sas = &node.config.security_associations;
        let (spi, mhae_index) = match auth::verify_mn_ha(bytes, &extensions, |spi| {
            sas.iter().find(|s| s.spi() == spi)
        }) {
            Ok(v) => v,
            Err(AuthError::Missing) => {
                return self.reject(
                    out,
                    &repr,
                    None,
                    code::POORLY_FORMED_REQUEST,
                    Rejection::MissingAuth,
                    now,
                )
            }
            Err(e) => {
                return self.reject(
                    out,
                    &repr,
                    None,
                    code::MN_FAILED_AUTHENTICATION,
                    Rejection::Auth(e),
                    now,
                )
            }
        };
        if let Err(e) = identification::check(
            repr.identification,
            node.last_id,
            now,
            self.config.identification_skew,
        ) {
            return self.reject(
                out,
                &repr,
                Some(spi),
                code::IDENTIFICATION_MISMATCH,
                Rejection::Identification(e),
                now,
            );
        }
        // Authentic and fresh: its Identification may never be used again.
        if let Some(n) = self.nodes.get_mut(&repr.home_address) {
            n.last_id = Some(repr.identification);
        }
        out.journal.push(JournalOp::Identification {
            home: repr.home_address,
            id: repr.identification,
        });
        if !self.config.addresses.contains(&repr.home_agent) {
            return self.reject(
                out,
                &repr,
                Some(spi),
                code::UNKNOWN_HOME_AGENT,
                Rejection::UnknownHomeAgent(repr.home_agent),
                now,
            );
        }
        if repr.is_deregistration() {
            out.undo = Some(self.undo_point(&repr, spi, true));
            self.remove_binding(repr.home_address, &mut out);
            self.stats.deregistered += 1;
            return self.reply(out, &repr, Some(spi), code::ACCEPTED, 0, now);
        }
        if repr.has(flags::M) || repr.has(flags::G) {
            return self.reject(
                out,
                &repr,
                Some(spi),
                code::ENCAPSULATION_UNAVAILABLE,
                Rejection::Encapsulation,
                now,
            );
        }
        let reverse = repr.has(flags::T);
        match (self.config.reverse_tunnel, reverse) {
            (ReverseTunnel::Unavailable, true) => {
                return self.reject(
                    out,
                    &repr,
                    Some(spi),
                    code::REVERSE_TUNNEL_UNAVAILABLE,
                    Rejection::ReverseTunnelUnavailable,
                    now,
                )
            }
            (ReverseTunnel::Mandatory, false) => {
                return self.reject(
                    out,
                    &repr,
                    Some(spi),
                    code::REVERSE_TUNNEL_MANDATORY,
                    Rejection::ReverseTunnelMandatory,
                    now,
                )
            }
            _ => {}
        }
        // Authenticated CVSEs (those before the MHAE).
        let mut ap_req: Option<&[u8]> = None;
        for (_, e) in &extensions[..mhae_index] {
            if let ExtensionRepr::Cvse {
                vendor_id,
                cvse_type,
                data,
            } = e
            {
                if *vendor_id == ROAMGATE_VENDOR_ID && *cvse_type == CVSE_KRB_AP_REQ {
                    ap_req = Some(data);
                } else {
                    let rej = Rejection::UnsupportedCvse {
                        vendor_id: *vendor_id,
                        cvse_type: *cvse_type,
                    };
                    return self.reject(
                        out,
                        &repr,
                        Some(spi),
                        code::UNSUPPORTED_CVSE_FROM_MN,
                        rej,
                        now,
                    );
                }
            }
        }
        // Kerberos: the key material of the tunnel.
        let node = &self.nodes[&repr.home_address];
        let header = &bytes[..REQUEST_HEADER_LEN];
        let (ikm, client): (zeroize::Zeroizing<Vec<u8>>, Option<String>) = match ap_req {
            Some(ap) => {
                let accepted = match kerberos::verify_registration_ap_req(
                    ap,
                    self.keys.as_ref(),
                    self.config.service.as_ref(),
                    header,
                    &mut self.replay,
                    now,
                ) {
                    Ok(a) => a,
                    Err(e) => {
                        let rej = Rejection::Kerberos(e.to_string());
                        return self.reject(
                            out,
                            &repr,
                            Some(spi),
                            code::MN_FAILED_AUTHENTICATION,
                            rej,
                            now,
                        );
                    }
                };
                if let Some(want) = &node.config.principal {
                    if !same_principal(want, &accepted.client) {
                        let rej = Rejection::KerberosWrongClient(accepted.client.to_string());
                        return self.reject(
                            out,
                            &repr,
                            Some(spi),
                            code::MN_FAILED_AUTHENTICATION,
                            rej,
                            now,
                        );
                    }
                }
                let Some(subkey) = accepted.subkey.as_ref() else {
                    return self.reject(
                        out,
                        &repr,
                        Some(spi),
                        code::MN_FAILED_AUTHENTICATION,
                        Rejection::KerberosNoSubkey,
                        now,
                    );
                };
                (
                    zeroize::Zeroizing::new(subkey.as_bytes().to_vec()),
                    Some(accepted.client.to_string()),
                )
            }
            None if node.config.require_kerberos => {
                return self.reject(
                    out,
                    &repr,
                    Some(spi),
                    code::MN_FAILED_AUTHENTICATION,
                    Rejection::KerberosMissing,
                    now,
                )
            }
            None => {
                let sa = node
                    .config
                    .security_associations
                    .iter()
                    .find(|s| s.spi() == spi)
                    .expect("verified SPI is configured");
                (zeroize::Zeroizing::new(sa.tunnel_ikm()), None)
            }
        };
        let (master_key, tunnel_spi) = tunnel_key::derive_tunnel(
            &ikm,
            repr.identification,
            repr.home_address,
            repr.home_agent,
        );
        let existing = self.bindings.get(&repr.home_address).map(|b| b.spi);
        if self.spis.contains(&tunnel_spi) {
            return self.reject(
                out,
                &repr,
                Some(spi),
                code::INSUFFICIENT_RESOURCES,
                Rejection::SpiCollision(tunnel_spi),
                now,
            );
        }
        if existing.is_none() && self.bindings.len() >= self.config.max_bindings {
            return self.reject(
                out,
                &repr,
                Some(spi),
                code::INSUFFICIENT_RESOURCES,
                Rejection::TooManyBindings,
                now,
            );
        }
        let lifetime = repr.lifetime.min(self.config.max_lifetime);
        let expires = now + lifetime_secs(lifetime);
        let binding = Binding {
            home: repr.home_address,
            care_of: repr.care_of_address,
            home_agent: repr.home_agent,
            spi: tunnel_spi,
            master_key: master_key.clone(),
            identification: repr.identification,
            lifetime,
            registered_at: now,
            expires,
            reverse_tunnel: reverse,
            client,
        };
        out.undo = Some(self.undo_point(&repr, spi, false));
        // Install the new tunnel (receive side ready), then point the
        // binding at it; the replaced tunnel stays for the grace period.
        out.actions.push(Action::InstallTunnel(TunnelInstall {
            spi: tunnel_spi,
            role: Role::HomeAgent,
            local: repr.home_agent,
            remote: repr.care_of_address,
            home: repr.home_address,
            master_key,
            expires: expires + self.config.tunnel_grace,
        }));
        out.actions.push(Action::SetBinding {
            home: repr.home_address,
            role: Role::HomeAgent,
            remote: repr.care_of_address,
            spi: tunnel_spi,
            expires,
            reverse_tunnel: reverse,
        });
        if let Some(old) = existing {
            self.retire(now, repr.home_address, old, &mut out);
        }
        out.journal.push(JournalOp::PutBinding(binding.record()));
        self.spis.insert(tunnel_spi);
        self.bindings.insert(repr.home_address, binding);
        self.stats.accepted += 1;
        let c = if repr.has(flags::S) {
            code::ACCEPTED_NO_SIMULTANEOUS
        } else {
            code::ACCEPTED
        };
        self.reply(out, &repr, Some(spi), c, lifetime, now)
    }

    /// The node's binding state before an accepted request changes it.
    fn undo_point(&self, repr: &RequestRepr, auth_spi: u32, deregistration: bool) -> Undo {
        let home = repr.home_address;
        Undo {
            repr: *repr,
            auth_spi,
            deregistration,
            previous: self.bindings.get(&home).cloned(),
            retiring: self
                .retiring
                .iter()
                .filter(|(_, h, _)| *h == home)
                .copied()
                .collect(),
        }
    }

    /// Takes back an accepted registration or deregistration whose journal
    /// write or data-plane actions failed. `applied` is the prefix of that
    /// outcome's actions the data plane did apply (empty when the journal
    /// failed, since the journal comes first).
    ///
    /// The node's binding and grace-period tunnels return to what they were
    /// before the request, except tunnels the data plane already removed
    /// (they cannot come back with their sequence numbers). The returned
    /// outcome holds:
    /// - the actions that undo `applied` in the safe order: the binding is
    ///   restored (or removed) first, then the tunnels the request installed
    ///   are removed, so nothing is ever sent into a missing tunnel;
    /// - one journal op that records the node's binding as it is now;
    /// - the reply, 130 (insufficient resources, RFC 5944 §3.4): the home
    ///   agent could not commit the binding for a reason of its own (a full
    ///   map, a failed disk write), not because of anything in the request,
    ///   and the node may try again later. 128 (reason unspecified) would
    ///   tell the node less; the other codes name faults of the request.
    pub fn rollback(&mut self, undo: Undo, applied: &[Action], now: SystemTime) -> Outcome {
        let home = undo.repr.home_address;
        let mut out = Outcome::default();
        let removed: HashSet<u32> = applied
            .iter()
            .filter_map(|a| match a {
                Action::RemoveTunnel { spi } => Some(*spi),
                _ => None,
            })
            .collect();
        let binding_touched = applied.iter().any(|a| {
            matches!(a, Action::SetBinding { home: h, .. } | Action::RemoveBinding { home: h, .. } if *h == home)
        });
        let restorable = undo.previous.filter(|b| !removed.contains(&b.spi));
        if binding_touched {
            out.actions.push(match &restorable {
                Some(b) => Action::SetBinding {
                    home,
                    role: Role::HomeAgent,
                    remote: b.care_of,
                    spi: b.spi,
                    expires: b.expires,
                    reverse_tunnel: b.reverse_tunnel,
                },
                None => Action::RemoveBinding {
                    home,
                    role: Role::HomeAgent,
                },
            });
        }
        for a in applied.iter().rev() {
            if let Action::InstallTunnel(t) = a {
                if restorable.as_ref().map(|b| b.spi) != Some(t.spi) {
                    out.actions.push(Action::RemoveTunnel { spi: t.spi });
                }
            }
        }
        // The binding cache as the request found it.
        if let Some(cur) = self.bindings.remove(&home) {
            self.spis.remove(&cur.spi);
        }
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(_, h, _)| *h == home);
        self.retiring = others;
        for (_, _, spi) in mine {
            self.spis.remove(&spi);
        }
        for r in undo.retiring {
            if !removed.contains(&r.2) {
                self.spis.insert(r.2);
                self.retiring.push(r);
            }
        }
        match restorable {
            Some(b) => {
                self.spis.insert(b.spi);
                out.journal.push(JournalOp::PutBinding(b.record()));
                self.bindings.insert(home, b);
            }
            None => out.journal.push(JournalOp::RemoveBinding(home)),
        }
        if undo.deregistration {
            self.stats.deregistered = self.stats.deregistered.saturating_sub(1);
        } else {
            self.stats.accepted = self.stats.accepted.saturating_sub(1);
        }
        self.stats.apply_failed += 1;
        self.stats.rejected += 1;
        out.rejection = Some(Rejection::ApplyFailed);
        self.reply(
            out,
            &undo.repr,
            Some(undo.auth_spi),
            code::INSUFFICIENT_RESOURCES,
            0,
            now,
        )
    }

    /// Queues a replaced tunnel for removal after the grace period. A node
    /// keeps at most [`MAX_RETIRING_PER_NODE`] such tunnels; beyond that the
    /// oldest goes at once (bounded memory under rapid re-registration).
    fn retire(&mut self, now: SystemTime, home: Ipv4Addr, spi: u32, out: &mut Outcome) {
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

    fn drop(&mut self, mut out: Outcome, e: WireError) -> Outcome {
        self.stats.dropped += 1;
        out.dropped = Some(DropReason::Malformed(e));
        out
    }

    fn reject(
        &mut self,
        mut out: Outcome,
        repr: &RequestRepr,
        spi: Option<u32>,
        c: u8,
        why: Rejection,
        now: SystemTime,
    ) -> Outcome {
        debug_assert!(out.actions.is_empty());
        self.stats.rejected += 1;
        out.rejection = Some(why);
        self.reply(out, repr, spi, c, 0, now)
    }

    /// Builds the reply, authenticated with the SA the request used, or the
    /// node's first SA, or not at all if the node is unknown.
    fn reply(
        &self,
        mut out: Outcome,
        repr: &RequestRepr,
        spi: Option<u32>,
        c: u8,
        lifetime: u16,
        now: SystemTime,
    ) -> Outcome {
        let identification = if c == code::IDENTIFICATION_MISMATCH {
            identification::mismatch_reply(now, repr.identification)
        } else {
            repr.identification
        };
        let home_agent = if c == code::UNKNOWN_HOME_AGENT {
            self.config
                .addresses
                .first()
                .copied()
                .unwrap_or(repr.home_agent)
        } else {
            repr.home_agent
        };
        let reply = ReplyRepr {
            code: c,
            lifetime,
            home_address: repr.home_address,
            home_agent,
            identification,
        };
        let bytes = reply.to_bytes().to_vec();
        let sa = self.nodes.get(&repr.home_address).and_then(|n| {
            let sas = &n.config.security_associations;
            spi.and_then(|s| sas.iter().find(|a| a.spi() == s))
                .or_else(|| sas.first())
        });
        out.reply = Some(match sa {
            Some(sa) => sa.append_mn_ha_auth(bytes),
            None => bytes,
        });
        out.code = Some(c);
        out
    }
}
