//! Home agent and node configuration, and its validation.

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::Duration;

use roamgate_krb::Principal;

use crate::auth::SecurityAssociation;
use crate::identification::{self, DEFAULT_SKEW};

/// How long an old tunnel stays installed after a re-registration or a
/// handover replaced it, so packets in flight under it still verify.
pub const DEFAULT_TUNNEL_GRACE: Duration = Duration::from_secs(5);
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
    /// MN-HA security associations. A reply is authenticated with the one
    /// its request was authenticated with; a reply to a request that failed
    /// authentication carries no authenticator (RFC 5944 §3.8.3.1).
    pub security_associations: Vec<SecurityAssociation>,
    /// The Kerberos client principal this node must present, if any.
    pub principal: Option<Principal>,
    /// Require the Kerberos AP-REQ CVSE on registrations. When false and
    /// none is sent, the tunnel master key is derived from the MN-HA key
    /// instead (docs/mobile-ip.md).
    pub require_kerberos: bool,
}

/// Token buckets of the rate limit (docs/mobile-ip.md §6). The same burst
/// and rate apply to two kinds of bucket:
/// - one per node (home address), charged by requests that passed MN-HA
///   authentication and the Identification check, which only the node can
///   send;
/// - one per source address, charged by every other request: they are
///   answered only while their source has tokens, so a forged or replayed
///   flood buys no more than `burst` replies per source, and cannot spend
///   a genuine node's budget even from the node's own care-of address.
pub use crate::rate_limit::RateLimit;

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
        let mut homes = HashSet::new();
        for n in nodes {
            if !homes.insert(n.home_address) {
                return Err(ConfigError::DuplicateNode(n.home_address));
            }
            if n.security_associations.is_empty() {
                return Err(ConfigError::NoSecurityAssociation(n.home_address));
            }
            let mut spis = HashSet::new();
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
