//! `roamgate proxy-manager` configuration (TOML, config/proxy-manager.toml):
//! every key has a named default; unknown keys are refused; `validate()`
//! names the key that is wrong.

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    time::Duration,
};

use anyhow::bail;
use roamgate_attach::ManagerConfig;
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::config::{valid_ifname, ConfigFile, LogSection, OptionalMetrics};
use crate::dataplane::AttachMode;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxyManagerFile {
    pub proxy_manager: Section,
    pub kerberos: KerberosSection,
    pub directory: DirectorySection,
    pub billing: BillingSection,
    pub proxy: ProxySection,
    pub dataplane: DataplaneSection,
    pub metrics: OptionalMetrics,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Section {
    /// UDP address base stations send relay frames to.
    pub listen: SocketAddr,
    /// The proxies' co-located care-of address: this host's address on
    /// the IP network (the tunnels end here).
    pub care_of: Ipv4Addr,
    /// A proxy whose unit sent nothing for this long is stopped and
    /// deregistered.
    pub silence_timeout_secs: u64,
    /// Switch-ons in progress at once, in all and per base station.
    pub max_in_progress: usize,
    pub max_in_progress_per_base_station: usize,
    /// Units (proxies and switch-ons in progress).
    pub max_units: usize,
    /// JSON status (counters, proxies) rewritten every
    /// `stats_interval_ms`; empty: none. Holds home addresses: mode 0600.
    pub status_file: String,
    pub stats_interval_ms: u64,
}

impl Default for Section {
    fn default() -> Self {
        let d = ManagerConfig::default();
        Self {
            listen: "0.0.0.0:4341".parse().expect("valid default"),
            care_of: Ipv4Addr::UNSPECIFIED,
            silence_timeout_secs: d.silence_timeout.as_secs(),
            max_in_progress: d.max_in_progress,
            max_in_progress_per_base_station: d.max_in_progress_per_base_station,
            max_units: d.max_units,
            status_file: String::new(),
            stats_interval_ms: 1000,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    pub kdc: SocketAddr,
    /// The proxy manager's own keys (its attach service principal).
    pub keytab: PathBuf,
    /// The principal units get their switch-on ticket for.
    pub service: String,
    /// The directory's service principal (tickets in the unit's name).
    pub directory_service: String,
    /// The home agent's service principal (the proxies' registrations).
    pub home_agent_service: String,
}

impl Default for KerberosSection {
    fn default() -> Self {
        Self {
            kdc: "127.0.0.1:88".parse().expect("valid default"),
            keytab: PathBuf::from("/etc/roamgate/proxy-manager.keytab"),
            service: "attach/pm.example.org@EXAMPLE.ORG".to_owned(),
            directory_service: "directory/dir.example.org@EXAMPLE.ORG".to_owned(),
            home_agent_service: "mip/ha.example.org@EXAMPLE.ORG".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySection {
    pub address: SocketAddr,
}

impl Default for DirectorySection {
    fn default() -> Self {
        Self {
            address: "127.0.0.1:7750".parse().expect("valid default"),
        }
    }
}

/// Where the caller's proxy charges its unit's calls (docs/billing.md).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSection {
    /// The billing service's UDP address; empty: calls are not charged.
    pub address: String,
    /// Its service principal (tickets in the subscriber's name).
    pub service: String,
}

impl Default for BillingSection {
    fn default() -> Self {
        Self {
            address: String::new(),
            service: "billing/billing.example.org@EXAMPLE.ORG".to_owned(),
        }
    }
}

impl BillingSection {
    /// `None` when charging is off.
    pub fn billing(&self) -> anyhow::Result<Option<super::charge::Billing>> {
        if self.address.is_empty() {
            return Ok(None);
        }
        let address = self.address.parse().map_err(|e| {
            anyhow::anyhow!(
                "billing.address: {:?}: {e} (e.g. 10.1.1.2:7760, or \"\" for no charging)",
                self.address
            )
        })?;
        let service = principal(&self.service, "billing.service")?;
        Ok(Some(super::charge::Billing { address, service }))
    }
}

/// What every proxy asks of its home agent.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProxySection {
    /// Requested registration lifetime, seconds.
    pub lifetime: u16,
    pub reverse_tunnel: bool,
    /// How long a replaced tunnel stays installed, seconds.
    pub tunnel_grace_secs: u64,
}

impl Default for ProxySection {
    fn default() -> Self {
        Self {
            lifetime: 600,
            reverse_tunnel: true,
            tunnel_grace_secs: 2,
        }
    }
}

/// The XDP data plane every proxy shares (role: care-of end).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    /// Interfaces to attach XDP to: the uplink and the base-station side.
    /// Empty: use maps pinned by another process (`pin_dir`).
    pub interfaces: Vec<String>,
    /// Where units' frames come from: only frames arriving here from a
    /// unit's home address are tunnelled.
    pub inside_interfaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    /// Largest outer IPv4 packet of the tunnel.
    pub tunnel_mtu: u16,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            inside_interfaces: Vec::new(),
            xdp_mode: AttachMode::Auto,
            pin_dir: PathBuf::from("/sys/fs/bpf/roamgate-pm"),
            tunnel_mtu: 1500,
        }
    }
}

fn principal(s: &str, key: &str) -> anyhow::Result<Principal> {
    Principal::parse(s).map_err(|e| anyhow::anyhow!("{key}: {e} (e.g. service/host@REALM)"))
}

impl ConfigFile for ProxyManagerFile {
    fn validate(&self) -> anyhow::Result<()> {
        let k = &self.kerberos;
        principal(&k.service, "kerberos.service")?;
        principal(&k.directory_service, "kerberos.directory_service")?;
        principal(&k.home_agent_service, "kerberos.home_agent_service")?;
        let s = &self.proxy_manager;
        if s.care_of.is_unspecified() {
            bail!(
                "proxy_manager.care_of: set this host's IPv4 address on the IP network \
                 (the proxies register it as their care-of address)"
            );
        }
        if s.silence_timeout_secs == 0 {
            bail!("proxy_manager.silence_timeout_secs must be at least 1");
        }
        if s.max_in_progress == 0 || s.max_in_progress_per_base_station == 0 || s.max_units == 0 {
            bail!("proxy_manager.max_in_progress, max_in_progress_per_base_station and max_units must be at least 1");
        }
        if s.stats_interval_ms == 0 {
            bail!("proxy_manager.stats_interval_ms must be at least 1");
        }
        if self.proxy.lifetime == 0 {
            bail!("proxy.lifetime must be at least 1 second");
        }
        for i in self
            .dataplane
            .interfaces
            .iter()
            .chain(&self.dataplane.inside_interfaces)
        {
            if !valid_ifname(i) {
                bail!("dataplane: {i:?} is not an interface name");
            }
        }
        if self.dataplane.tunnel_mtu < 576 {
            bail!("dataplane.tunnel_mtu must be at least 576");
        }
        self.billing.billing()?;
        self.metrics.addr()?;
        Ok(())
    }
}

impl ProxyManagerFile {
    pub fn service(&self) -> anyhow::Result<Principal> {
        principal(&self.kerberos.service, "kerberos.service")
    }
    pub fn directory_service(&self) -> anyhow::Result<Principal> {
        principal(
            &self.kerberos.directory_service,
            "kerberos.directory_service",
        )
    }
    pub fn home_agent_service(&self) -> anyhow::Result<Principal> {
        principal(
            &self.kerberos.home_agent_service,
            "kerberos.home_agent_service",
        )
    }

    /// The core's settings.
    pub fn core(&self) -> ManagerConfig {
        let s = &self.proxy_manager;
        ManagerConfig {
            silence_timeout: Duration::from_secs(s.silence_timeout_secs),
            max_in_progress: s.max_in_progress,
            max_in_progress_per_base_station: s.max_in_progress_per_base_station,
            max_units: s.max_units,
            ..ManagerConfig::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_defaults_but_care_of() {
        let text = include_str!("../../../../config/proxy-manager.toml");
        let cfg = ProxyManagerFile::from_toml(text).unwrap();
        let d = ProxyManagerFile::default();
        assert_eq!(cfg.proxy_manager.listen, d.proxy_manager.listen);
        assert_eq!(
            cfg.proxy_manager.silence_timeout_secs,
            d.proxy_manager.silence_timeout_secs
        );
        assert_eq!(cfg.proxy_manager.max_units, d.proxy_manager.max_units);
        assert_eq!(cfg.kerberos.service, d.kerberos.service);
        assert_eq!(cfg.kerberos.kdc, d.kerberos.kdc);
        assert_eq!(cfg.directory.address, d.directory.address);
        assert_eq!(cfg.billing.address, d.billing.address);
        assert_eq!(cfg.billing.service, d.billing.service);
        assert_eq!(cfg.proxy.lifetime, d.proxy.lifetime);
        assert_eq!(cfg.dataplane.pin_dir, d.dataplane.pin_dir);
        // The one key without a usable default.
        assert!(ProxyManagerFile::from_toml("").is_err());
    }

    #[test]
    fn bad_values_name_their_key() {
        let base = "[proxy_manager]\ncare_of = \"192.0.2.7\"\n";
        ProxyManagerFile::from_toml(base).unwrap();
        let e = ProxyManagerFile::from_toml(&format!("{base}[kerberos]\nservice = \"x@\"\n"))
            .unwrap_err();
        assert!(format!("{e:#}").contains("kerberos.service"), "{e:#}");
        let e = ProxyManagerFile::from_toml("").unwrap_err();
        assert!(format!("{e:#}").contains("proxy_manager.care_of"), "{e:#}");
    }
}
