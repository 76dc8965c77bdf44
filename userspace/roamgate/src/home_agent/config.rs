//! `roamgate home-agent` configuration (TOML): every key has a named default
//! except the home agent's address and its nodes; unknown keys are refused;
//! `validate()` names the key that is wrong.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::{bail, Context as _};
use roamgate_krb::Principal;
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgentConfig, NodeConfig, RateLimit, ReverseTunnel},
};
use serde::Deserialize;

use crate::{
    config::{ConfigFile, LogSection, OptionalMetrics},
    dataplane::AttachMode,
    platform::keyfile::read_hex_key,
};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:434";
pub const DEFAULT_STATE_DIR: &str = "/var/lib/roamgate";
pub const DEFAULT_TUNNEL_MTU: u16 = 1500;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAgentFile {
    pub home_agent: HomeAgentSection,
    #[serde(default)]
    pub kerberos: KerberosSection,
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default, rename = "node")]
    pub nodes: Vec<NodeSection>,
    #[serde(default)]
    pub metrics: OptionalMetrics,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HomeAgentSection {
    /// The home agent's addresses (the Home Agent field of registrations);
    /// the first is the tunnel's local end.
    pub addresses: Vec<Ipv4Addr>,
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    /// The home link: proxy ARP entries and gratuitous ARP for bound home
    /// addresses go here. Empty: no proxy ARP.
    #[serde(default)]
    pub home_interface: String,
    /// A next hop off the home link for bound home addresses: the daemon
    /// adds `HOME/32 via this` while a binding lives, so the kernel answers
    /// ARP for them on the home link (it proxies only for addresses routed
    /// through another interface). Packets that XDP passes to the stack
    /// follow this route.
    #[serde(default)]
    pub home_route_via: Option<Ipv4Addr>,
    /// Directory for the binding journal (`bindings.sqlite`, mode 0600).
    #[serde(default = "default_state_dir")]
    pub state_dir: PathBuf,
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime: u16,
    #[serde(default = "default_skew")]
    pub identification_skew_secs: u64,
    #[serde(default = "default_max_bindings")]
    pub max_bindings: usize,
    #[serde(default = "default_reverse")]
    pub reverse_tunnel: ReverseTunnelPolicy,
    #[serde(default = "default_grace")]
    pub tunnel_grace_secs: u64,
    #[serde(default = "default_burst")]
    pub rate_limit_burst: u32,
    #[serde(default = "default_per_second")]
    pub rate_limit_per_second: u32,
    /// JSON counters written here every `stats_interval_ms` (empty: off).
    #[serde(default)]
    pub stats_file: Option<PathBuf>,
    #[serde(default = "default_stats_interval")]
    pub stats_interval_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReverseTunnelPolicy {
    Unavailable,
    Optional,
    Mandatory,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    /// The keytab with the home agent's service key.
    pub keytab: Option<PathBuf>,
    /// The home agent's service principal (e.g. `mip/ha.example@REALM`);
    /// unset accepts tickets for any principal in the keytab.
    pub service: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    /// Interfaces to attach XDP to (home link and tunnel side). Empty: the
    /// data plane is not loaded here (another process owns it) and only
    /// the pinned maps are used.
    pub interfaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    /// Largest outer packet of a tunnel.
    pub tunnel_mtu: u16,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            xdp_mode: AttachMode::Auto,
            pin_dir: PathBuf::from(roamgate_common::maps::PIN_DIR),
            tunnel_mtu: DEFAULT_TUNNEL_MTU,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSection {
    pub home_address: Ipv4Addr,
    /// MN-HA SPI (256..2^31: HMAC-MD5; 2^31 and above: HMAC-SHA256).
    pub spi: u32,
    /// File holding the MN-HA key in hex (mode 0600).
    pub key_file: PathBuf,
    /// The Kerberos client principal the node must present.
    #[serde(default)]
    pub principal: Option<String>,
    #[serde(default = "default_true")]
    pub require_kerberos: bool,
}

fn default_listen() -> SocketAddr {
    DEFAULT_LISTEN.parse().expect("valid default")
}
fn default_state_dir() -> PathBuf {
    PathBuf::from(DEFAULT_STATE_DIR)
}
fn default_max_lifetime() -> u16 {
    roamgate_mip::home_agent::DEFAULT_MAX_LIFETIME
}
fn default_skew() -> u64 {
    roamgate_mip::identification::DEFAULT_SKEW.as_secs()
}
fn default_max_bindings() -> usize {
    100_000
}
fn default_reverse() -> ReverseTunnelPolicy {
    ReverseTunnelPolicy::Optional
}
fn default_grace() -> u64 {
    roamgate_mip::home_agent::DEFAULT_TUNNEL_GRACE.as_secs()
}
fn default_burst() -> u32 {
    RateLimit::default().burst
}
fn default_per_second() -> u32 {
    RateLimit::default().per_second
}
fn default_stats_interval() -> u64 {
    200
}
fn default_true() -> bool {
    true
}

impl ConfigFile for HomeAgentFile {
    fn validate(&self) -> anyhow::Result<()> {
        let ha = &self.home_agent;
        if ha.addresses.is_empty() {
            bail!("home_agent.addresses: give at least one address");
        }
        if ha.max_lifetime == 0 {
            bail!("home_agent.max_lifetime: must be at least 1 second");
        }
        if ha.identification_skew_secs == 0
            || ha.identification_skew_secs > roamgate_mip::identification::MAX_SKEW.as_secs()
        {
            bail!("home_agent.identification_skew_secs: must be 1..=300");
        }
        if ha.rate_limit_burst == 0 || ha.rate_limit_per_second == 0 {
            bail!("home_agent.rate_limit_*: must be at least 1");
        }
        for i in self
            .dataplane
            .interfaces
            .iter()
            .chain(std::iter::once(&ha.home_interface).filter(|s| !s.is_empty()))
        {
            if i.is_empty() || i.len() > 15 || i.contains('/') || i.contains(char::is_whitespace) {
                bail!("{i:?} is not a valid interface name (1-15 characters, no '/' or spaces)");
            }
        }
        if !self.dataplane.pin_dir.is_absolute() {
            bail!("dataplane.pin_dir: must be an absolute path on a bpffs");
        }
        if self.dataplane.tunnel_mtu < 128 {
            bail!(
                "dataplane.tunnel_mtu: {} is too small",
                self.dataplane.tunnel_mtu
            );
        }
        if let Some(s) = &self.kerberos.service {
            Principal::parse(s).map_err(|e| anyhow::anyhow!("kerberos.service {s:?}: {e}"))?;
        }
        let mut seen = std::collections::HashSet::new();
        for n in &self.nodes {
            if !seen.insert(n.home_address) {
                bail!("node {}: configured twice", n.home_address);
            }
            if roamgate_mip::auth::Algorithm::for_spi(n.spi).is_none() {
                bail!(
                    "node {}: spi {} is reserved (use 256 or above)",
                    n.home_address,
                    n.spi
                );
            }
            if let Some(p) = &n.principal {
                Principal::parse(p).map_err(|e| {
                    anyhow::anyhow!("node {}: principal {p:?}: {e}", n.home_address)
                })?;
            }
            if n.require_kerberos && self.kerberos.keytab.is_none() {
                bail!(
                    "node {}: require_kerberos needs kerberos.keytab",
                    n.home_address
                );
            }
        }
        self.metrics.addr()?;
        Ok(())
    }
}

impl HomeAgentFile {
    pub fn journal_path(&self) -> PathBuf {
        self.home_agent.state_dir.join("bindings.sqlite")
    }

    /// The core's configuration.
    pub fn core_config(&self) -> anyhow::Result<HomeAgentConfig> {
        let ha = &self.home_agent;
        let mut c = HomeAgentConfig::new(ha.addresses[0]);
        c.addresses = ha.addresses.clone();
        c.service = self
            .kerberos
            .service
            .as_deref()
            .map(Principal::parse)
            .transpose()
            .map_err(|e| anyhow::anyhow!("kerberos.service: {e}"))?;
        c.max_lifetime = ha.max_lifetime;
        c.identification_skew = Duration::from_secs(ha.identification_skew_secs);
        c.max_bindings = ha.max_bindings;
        c.reverse_tunnel = match ha.reverse_tunnel {
            ReverseTunnelPolicy::Unavailable => ReverseTunnel::Unavailable,
            ReverseTunnelPolicy::Optional => ReverseTunnel::Optional,
            ReverseTunnelPolicy::Mandatory => ReverseTunnel::Mandatory,
        };
        c.tunnel_grace = Duration::from_secs(ha.tunnel_grace_secs);
        c.rate_limit = RateLimit {
            burst: ha.rate_limit_burst,
            per_second: ha.rate_limit_per_second,
            ..RateLimit::default()
        };
        Ok(c)
    }

    /// The nodes, with their keys read from their key files.
    pub fn node_configs(&self) -> anyhow::Result<Vec<NodeConfig>> {
        self.nodes
            .iter()
            .map(|n| {
                let key = read_hex_key(&n.key_file)
                    .with_context(|| format!("node {}", n.home_address))?;
                let sa = SecurityAssociation::new(n.spi, &key)
                    .map_err(|e| anyhow::anyhow!("node {}: {e}", n.home_address))?;
                Ok(NodeConfig {
                    home_address: n.home_address,
                    security_associations: vec![sa],
                    principal: n
                        .principal
                        .as_deref()
                        .map(Principal::parse)
                        .transpose()
                        .map_err(|e| anyhow::anyhow!("node {}: {e}", n.home_address))?,
                    require_kerberos: n.require_kerberos,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../../config/home-agent.toml");
        let cfg = HomeAgentFile::from_toml(text).unwrap();
        assert_eq!(cfg.home_agent.addresses, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(cfg.home_agent.listen, default_listen());
        assert_eq!(cfg.nodes.len(), 1);
        assert_eq!(cfg.nodes[0].spi, 256);
        assert!(cfg.nodes[0].require_kerberos);
        let core = cfg.core_config().unwrap();
        assert_eq!(core.max_lifetime, 1800);
        assert_eq!(core.reverse_tunnel, ReverseTunnel::Optional);
    }

    #[test]
    fn minimal_config_gets_defaults() {
        let cfg = HomeAgentFile::from_toml("[home_agent]\naddresses = [\"10.0.0.1\"]\n").unwrap();
        assert_eq!(cfg.home_agent.state_dir, PathBuf::from(DEFAULT_STATE_DIR));
        assert_eq!(cfg.home_agent.identification_skew_secs, 7);
        assert_eq!(cfg.dataplane.tunnel_mtu, 1500);
        assert!(cfg.nodes.is_empty());
    }

    #[test]
    fn unknown_keys_and_bad_values_are_refused() {
        let e =
            HomeAgentFile::from_toml("[home_agent]\naddresses = [\"10.0.0.1\"]\nlisten_port = 1\n")
                .unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        let e = HomeAgentFile::from_toml("[home_agent]\naddresses = []\n").unwrap_err();
        assert!(e.to_string().contains("home_agent.addresses"), "{e}");
        let e = HomeAgentFile::from_toml(
            "[home_agent]\naddresses = [\"10.0.0.1\"]\n[[node]]\nhome_address = \"10.0.0.5\"\nspi = 3\nkey_file = \"/k\"\nrequire_kerberos = false\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
        let e = HomeAgentFile::from_toml(
            "[home_agent]\naddresses = [\"10.0.0.1\"]\n[[node]]\nhome_address = \"10.0.0.5\"\nspi = 300\nkey_file = \"/k\"\n",
        )
        .unwrap_err();
        assert!(e.to_string().contains("kerberos.keytab"), "{e}");
    }
}
