//! `roamgate mobile-node` configuration (TOML, unknown keys refused).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::{config::LogSection, dataplane::AttachMode};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeFile {
    pub mobile_node: MobileNodeSection,
    #[serde(default)]
    pub kerberos: Option<KerberosSection>,
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeSection {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    /// MN-HA SPI and the file with its key (hex, mode 0600).
    pub spi: u32,
    pub key_file: PathBuf,
    /// Requested lifetime, seconds.
    #[serde(default = "default_lifetime")]
    pub lifetime: u16,
    #[serde(default = "default_true")]
    pub reverse_tunnel: bool,
    #[serde(default = "default_true")]
    pub co_located: bool,
    /// Interfaces that may carry the care-of address, most preferred
    /// first: the care-of address is the first IPv4 address of the first
    /// of them that is up and has one. A change is a handover.
    pub care_of_interfaces: Vec<String>,
    /// How often the interfaces are checked.
    #[serde(default = "default_poll_ms")]
    pub care_of_poll_ms: u64,
    #[serde(default = "default_grace")]
    pub tunnel_grace_secs: u64,
    /// JSON status (state, care-of, registration latencies) written on
    /// every change (unset: off).
    #[serde(default)]
    pub status_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosSection {
    /// KDC `ADDR:PORT`.
    pub kdc: SocketAddr,
    /// The node's client principal and the keytab with its key.
    pub principal: String,
    pub keytab: PathBuf,
    /// The home agent's service principal.
    pub service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    /// This process loads the XDP program and attaches it to `interfaces`.
    Xdp,
    /// Another process owns the data plane; only its pinned maps are used.
    Pinned,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    pub mode: DataplaneMode,
    pub interfaces: Vec<String>,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    pub tunnel_mtu: u16,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self {
            mode: DataplaneMode::Xdp,
            interfaces: Vec::new(),
            xdp_mode: AttachMode::Native,
            pin_dir: PathBuf::from("/sys/fs/bpf/roamgate-mn"),
            tunnel_mtu: 1500,
        }
    }
}

fn default_lifetime() -> u16 {
    300
}
fn default_true() -> bool {
    true
}
fn default_poll_ms() -> u64 {
    20
}
fn default_grace() -> u64 {
    roamgate_mip::home_agent::DEFAULT_TUNNEL_GRACE.as_secs()
}

fn valid_ifname(i: &str) -> bool {
    !i.is_empty() && i.len() <= 15 && !i.contains('/') && !i.contains(char::is_whitespace)
}

impl MobileNodeFile {
    pub fn from_toml(text: &str) -> anyhow::Result<Self> {
        let cfg: Self = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in config {}", path.display()))
    }

    pub fn validate(&self) -> anyhow::Result<()> {
        let m = &self.mobile_node;
        if roamgate_mip::auth::Algorithm::for_spi(m.spi).is_none() {
            bail!("mobile_node.spi: {} is reserved (use 256 or above)", m.spi);
        }
        if m.lifetime == 0 {
            bail!("mobile_node.lifetime: must be at least 1 second");
        }
        if m.care_of_interfaces.is_empty() {
            bail!("mobile_node.care_of_interfaces: name at least one interface");
        }
        if m.care_of_poll_ms == 0 || m.care_of_poll_ms > 10_000 {
            bail!("mobile_node.care_of_poll_ms: must be 1..=10000");
        }
        for i in m
            .care_of_interfaces
            .iter()
            .chain(&self.dataplane.interfaces)
        {
            if !valid_ifname(i) {
                bail!("{i:?} is not a valid interface name");
            }
        }
        if self.dataplane.mode == DataplaneMode::Xdp && self.dataplane.interfaces.is_empty() {
            bail!("dataplane.interfaces: XDP mode needs the interfaces to attach to");
        }
        if !self.dataplane.pin_dir.is_absolute() {
            bail!("dataplane.pin_dir: must be an absolute path on a bpffs");
        }
        if let Some(k) = &self.kerberos {
            Principal::parse(&k.principal)
                .map_err(|e| anyhow::anyhow!("kerberos.principal {:?}: {e}", k.principal))?;
            Principal::parse(&k.service)
                .map_err(|e| anyhow::anyhow!("kerberos.service {:?}: {e}", k.service))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../../config/mobile-node.toml");
        let cfg = MobileNodeFile::from_toml(text).unwrap();
        assert_eq!(cfg.mobile_node.lifetime, 300);
        assert_eq!(cfg.mobile_node.care_of_interfaces, vec!["wlan0", "wwan0"]);
        assert_eq!(cfg.dataplane.mode, DataplaneMode::Xdp);
        assert!(cfg.kerberos.is_some());
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let base = "[mobile_node]\nhome_address = \"10.1.0.50\"\nhome_agent = \"192.0.2.1\"\nspi = 256\nkey_file = \"/k\"\ncare_of_interfaces = [\"eth0\"]\n";
        let ok = format!("{base}[dataplane]\nmode = \"pinned\"\n");
        let cfg = MobileNodeFile::from_toml(&ok).unwrap();
        assert_eq!(cfg.mobile_node.care_of_poll_ms, 20);
        assert!(cfg.mobile_node.reverse_tunnel);
        let e = MobileNodeFile::from_toml(&format!("{ok}bogus = 1\n")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        let e = MobileNodeFile::from_toml(base).unwrap_err();
        assert!(e.to_string().contains("dataplane.interfaces"), "{e}");
        let e = MobileNodeFile::from_toml(&ok.replace("spi = 256", "spi = 7")).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }
}
