//! The home gateway's one TOML configuration (`config/gateway.toml`): every
//! key optional with a named default, unknown keys refused, `validate()`
//! naming the key that is wrong. Each role's own configuration is derived
//! from it (see `roles.rs`).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::{
    config::{valid_ifname, ConfigFile, LogSection, MetricsSection},
    dataplane::AttachMode,
};

pub const DEFAULT_STATE_DIR: &str = "/var/lib/roamgate";
pub const DEFAULT_REALM: &str = "HOME.ROAMGATE.TEST";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub gateway: GatewaySection,
    pub kdc: ServiceSection<KdcDefaults>,
    pub directory: ServiceSection<DirectoryDefaults>,
    pub billing: ServiceSection<BillingDefaults>,
    pub home_agent: HomeAgentSection,
    pub proxy_manager: ProxyManagerSection,
    pub base_station: BaseStationSection,
    pub metrics: MetricsSection,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySection {
    /// Interfaces to attach XDP to; empty means the default-route interface.
    pub interfaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    pub counters_interval_secs: u64,
    /// Every database, keytab and derived role file lives here.
    pub state_dir: PathBuf,
    /// The Kerberos realm the first run creates.
    pub realm: String,
    /// This host's IPv4 address on the IP network: the home agent's
    /// address, the proxies' care-of address, where units reach the KDC.
    /// Empty: the source address of the default route.
    pub address: String,
    /// How often state_dir/status.json is rewritten.
    pub status_interval_secs: u64,
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            xdp_mode: AttachMode::Auto,
            pin_dir: PathBuf::from(roamgate_common::maps::PIN_DIR),
            counters_interval_secs: 10,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            realm: DEFAULT_REALM.to_owned(),
            address: String::new(),
            status_interval_secs: 2,
        }
    }
}

/// The default listen address of a service section.
pub trait ServiceDefaults {
    const LISTEN: &'static str;
}
#[derive(Debug, Default)]
pub struct KdcDefaults;
impl ServiceDefaults for KdcDefaults {
    const LISTEN: &'static str = "0.0.0.0:88";
}
#[derive(Debug, Default)]
pub struct DirectoryDefaults;
impl ServiceDefaults for DirectoryDefaults {
    const LISTEN: &'static str = "0.0.0.0:7750";
}
#[derive(Debug, Default)]
pub struct BillingDefaults;
impl ServiceDefaults for BillingDefaults {
    const LISTEN: &'static str = "0.0.0.0:7760";
}

/// `[kdc]`, `[directory]` and `[billing]`: embedded on SQLite, or an
/// external server (e.g. MIT krb5kdc), whose keytabs the operator puts
/// under state_dir/keytabs/.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServiceSection<D: ServiceDefaults> {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// `HOST:PORT` of a service run elsewhere; none is run here.
    pub external: String,
    #[serde(skip)]
    _d: std::marker::PhantomData<D>,
}

impl<D: ServiceDefaults> Default for ServiceSection<D> {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: D::LISTEN.parse().expect("valid default"),
            external: String::new(),
            _d: std::marker::PhantomData,
        }
    }
}

impl<D: ServiceDefaults> ServiceSection<D> {
    /// Runs here: enabled and not external.
    pub fn local(&self) -> bool {
        self.enabled && self.external.is_empty()
    }

    /// Runs here or elsewhere: the other roles can use it.
    pub fn reachable(&self) -> bool {
        self.enabled || !self.external.is_empty()
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HomeAgentSection {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The home link (proxy ARP for bound home addresses); empty: none.
    pub home_interface: String,
    /// The next hop of the /32 route that makes the kernel proxy-ARP a
    /// bound home address on the home link (the uplink's router); unset:
    /// no route (see `home-agent.toml`).
    pub home_route_via: Option<std::net::Ipv4Addr>,
    pub max_lifetime: u16,
    /// How often the directory's units are compared with the home agent's
    /// nodes; a change restarts the home agent (bindings stay).
    pub units_refresh_secs: u64,
}

impl Default for HomeAgentSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: crate::home_agent::config::DEFAULT_LISTEN
                .parse()
                .expect("valid default"),
            home_interface: String::new(),
            home_route_via: None,
            max_lifetime: roamgate_mip::home_agent::DEFAULT_MAX_LIFETIME,
            units_refresh_secs: 5,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyManagerSection {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// XDP for the proxies' data plane (e.g. the base-station side, "bs0");
    /// empty: its maps are pinned but no interface is attached.
    pub interfaces: Vec<String>,
    /// The base-station side among `interfaces`.
    pub inside_interfaces: Vec<String>,
    pub silence_timeout_secs: u64,
}

impl Default for ProxyManagerSection {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: "0.0.0.0:4341".parse().expect("valid default"),
            interfaces: Vec::new(),
            inside_interfaces: Vec::new(),
            silence_timeout_secs: 600,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseStationSection {
    pub enabled: bool,
    pub id: u32,
    pub listen: SocketAddr,
}

impl Default for BaseStationSection {
    fn default() -> Self {
        Self {
            enabled: true,
            id: 1,
            listen: crate::base_station::DEFAULT_LISTEN
                .parse()
                .expect("valid default"),
        }
    }
}

impl ConfigFile for GatewayConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let g = &self.gateway;
        for i in g
            .interfaces
            .iter()
            .chain(&self.proxy_manager.interfaces)
            .chain(&self.proxy_manager.inside_interfaces)
        {
            if !valid_ifname(i) {
                bail!("{i:?} is not a valid interface name (1-15 characters, no '/' or spaces); see gateway.interfaces and proxy_manager.interfaces");
            }
        }
        if !g.pin_dir.is_absolute() {
            bail!(
                "gateway.pin_dir: {} must be an absolute path on a bpffs (e.g. /sys/fs/bpf/roamgate)",
                g.pin_dir.display()
            );
        }
        if !g.state_dir.is_absolute() {
            bail!(
                "gateway.state_dir: {} must be an absolute path (e.g. /var/lib/roamgate)",
                g.state_dir.display()
            );
        }
        if g.realm.is_empty() || g.realm.contains(['/', '@', ' ', '"']) {
            bail!(
                "gateway.realm: {:?} is not a realm name (e.g. HOME.ROAMGATE.TEST)",
                g.realm
            );
        }
        if !g.address.is_empty() {
            g.address.parse::<Ipv4Addr>().map_err(|_| {
                anyhow::anyhow!(
                    "gateway.address: {:?} is not an IPv4 address; leave it empty for the default route's",
                    g.address
                )
            })?;
        }
        if g.status_interval_secs == 0 {
            bail!("gateway.status_interval_secs: must be at least 1");
        }
        for (key, ext) in [
            ("kdc.external", &self.kdc.external),
            ("directory.external", &self.directory.external),
            ("billing.external", &self.billing.external),
        ] {
            if !ext.is_empty() {
                crate::gateway::roles::resolve(ext)
                    .with_context(|| format!("{key}: {ext:?} is not HOST:PORT"))?;
            }
        }
        if self.proxy_manager.enabled && !self.kdc.reachable() {
            bail!(
                "proxy_manager needs a KDC: set kdc.enabled = true or kdc.external = \"HOST:88\""
            );
        }
        if self.proxy_manager.enabled && !self.directory.reachable() {
            bail!("proxy_manager needs a directory: set directory.enabled = true or directory.external = \"HOST:7750\"");
        }
        if !self.home_agent.home_interface.is_empty()
            && !valid_ifname(&self.home_agent.home_interface)
        {
            bail!(
                "home_agent.home_interface: {:?} is not a valid interface name",
                self.home_agent.home_interface
            );
        }
        if self.home_agent.units_refresh_secs == 0 {
            bail!("home_agent.units_refresh_secs: must be at least 1");
        }
        if let Some(addr) = self.metrics_addr()? {
            if addr.port() == 0 {
                bail!("metrics.listen: port 0 is not allowed; pick a fixed port");
            }
        }
        Ok(())
    }
}

impl GatewayConfig {
    pub fn metrics_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.metrics.listen.is_empty() {
            return Ok(None);
        }
        self.metrics
            .listen
            .parse()
            .map(Some)
            .with_context(|| format!("metrics.listen: {:?} is not ADDR:PORT", self.metrics.listen))
    }

    pub fn state_dir(&self) -> &Path {
        &self.gateway.state_dir
    }

    /// The gateway's status file, read by `roamgate status`.
    pub fn status_file(&self) -> PathBuf {
        self.state_dir().join("status.json")
    }

    /// The proxies' data plane: its own maps beside the home agent's, so
    /// the two ends of a tunnel never share one map entry.
    pub fn proxy_pin_dir(&self) -> PathBuf {
        let mut p = self.gateway.pin_dir.clone().into_os_string();
        p.push("-pm");
        PathBuf::from(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses_and_writes_every_default() {
        let text = include_str!("../../../../config/gateway.toml");
        let cfg = GatewayConfig::from_toml(text).unwrap();
        let d = GatewayConfig::default();
        assert_eq!(cfg.gateway.xdp_mode, AttachMode::Auto);
        assert_eq!(cfg.gateway.pin_dir, PathBuf::from("/sys/fs/bpf/roamgate"));
        assert!(cfg.gateway.interfaces.is_empty());
        assert_eq!(cfg.gateway.state_dir, d.gateway.state_dir);
        assert_eq!(cfg.gateway.realm, DEFAULT_REALM);
        assert_eq!(cfg.kdc.listen, d.kdc.listen);
        assert_eq!(cfg.directory.listen, d.directory.listen);
        assert_eq!(cfg.billing.listen, d.billing.listen);
        assert_eq!(cfg.home_agent.listen, d.home_agent.listen);
        assert_eq!(cfg.home_agent.max_lifetime, d.home_agent.max_lifetime);
        assert_eq!(cfg.proxy_manager.listen, d.proxy_manager.listen);
        assert_eq!(cfg.base_station.listen, d.base_station.listen);
        assert_eq!(cfg.metrics.listen, d.metrics.listen);
        // Every section is written out in the file.
        for s in [
            "[gateway]",
            "[kdc]",
            "[directory]",
            "[billing]",
            "[home_agent]",
            "[proxy_manager]",
            "[base_station]",
            "[metrics]",
            "[log]",
        ] {
            assert!(text.contains(s), "{s} missing from config/gateway.toml");
        }
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = GatewayConfig::from_toml("").unwrap();
        assert_eq!(cfg.gateway.counters_interval_secs, 10);
        assert!(cfg.kdc.local() && cfg.directory.local() && cfg.billing.local());
        assert_eq!(
            cfg.metrics_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
        assert_eq!(
            cfg.proxy_pin_dir(),
            PathBuf::from("/sys/fs/bpf/roamgate-pm")
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = GatewayConfig::from_toml("[gateway]\ninterface = [\"eth0\"]\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
        let err = GatewayConfig::from_toml("[kdc]\nport = 88\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown field"), "{err:#}");
    }

    #[test]
    fn bad_values_name_the_key() {
        let err = GatewayConfig::from_toml("[gateway]\ninterfaces = [\"a b\"]\n").unwrap_err();
        assert!(err.to_string().contains("gateway.interfaces"), "{err}");
        let err = GatewayConfig::from_toml("[gateway]\nxdp_mode = \"turbo\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("unknown variant"), "{err:#}");
        let err = GatewayConfig::from_toml("[metrics]\nlisten = \"nowhere\"\n").unwrap_err();
        assert!(err.to_string().contains("metrics.listen"), "{err}");
        let err = GatewayConfig::from_toml("[gateway]\nstate_dir = \"rel\"\n").unwrap_err();
        assert!(err.to_string().contains("gateway.state_dir"), "{err}");
        let err = GatewayConfig::from_toml("[gateway]\naddress = \"x\"\n").unwrap_err();
        assert!(err.to_string().contains("gateway.address"), "{err}");
        let err = GatewayConfig::from_toml("[kdc]\nexternal = \"nohost\"\n").unwrap_err();
        assert!(format!("{err:#}").contains("kdc.external"), "{err:#}");
    }
}
