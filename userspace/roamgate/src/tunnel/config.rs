//! TOML configuration of the `roamgate tunnel` role (config/tunnel.toml is the
//! annotated example, parsed by a test so it cannot rot).

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
};

use anyhow::bail;
use roamgate_mip::MasterKey;
use serde::Deserialize;

use crate::{
    config::{ConfigFile, LogSection},
    dataplane::maps::Role,
    home_agent::config::DEFAULT_STATE_DIR,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelConfig {
    pub tunnel: TunnelSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TunnelSection {
    /// `home-agent` or `care-of`.
    pub role: Role,
    /// The tunnel's SPI (non-zero).
    pub spi: u32,
    /// This end's tunnel address: bound with UDP port 434, the outer source.
    pub local: Ipv4Addr,
    /// The far end's tunnel address.
    pub remote: Ipv4Addr,
    /// The unit's home address the tunnel carries.
    pub home: Ipv4Addr,
    /// File holding the tunnel master key (16 to 64 bytes) in hex; must not
    /// be readable by group or others.
    pub master_key_file: PathBuf,
    /// Name of the TUN device to create.
    #[serde(default = "default_tun_name")]
    pub tun_name: String,
    /// Optional address (CIDR) for the TUN device.
    #[serde(default)]
    pub tun_address: Option<String>,
    /// Largest outer IPv4 packet; the TUN MTU is this minus the tunnel
    /// overhead (60 bytes).
    #[serde(default = "default_mtu")]
    pub mtu: u16,
    /// Prefixes routed into the TUN device (`ip route replace P dev TUN`).
    #[serde(default)]
    pub routes: Vec<String>,
    /// If set, the counters are written here as JSON every `stats_interval_ms`.
    #[serde(default)]
    pub stats_file: Option<PathBuf>,
    #[serde(default = "default_stats_interval")]
    pub stats_interval_ms: u64,
    /// Where the sequence state persists across restarts (docs/wire.md §3);
    /// default `/var/lib/roamgate/tunnel-SPI.state` (SPI in hex). Created
    /// 0600 in a 0700 directory. Losing it under an unchanged master key
    /// reopens replays: keep it with the key.
    #[serde(default)]
    pub state_file: Option<PathBuf>,
}

fn default_tun_name() -> String {
    "rgtun0".to_owned()
}

fn default_mtu() -> u16 {
    crate::dataplane::maps::DEFAULT_TUNNEL_MTU
}

fn default_stats_interval() -> u64 {
    1000
}

/// Smallest sensible outer MTU: the IPv4 minimum (RFC 791) of 576.
pub const MIN_MTU: u16 = 576;

impl ConfigFile for TunnelConfig {
    fn validate(&self) -> anyhow::Result<()> {
        let t = &self.tunnel;
        if t.spi == 0 {
            bail!("tunnel.spi: 0 is reserved");
        }
        let n = &t.tun_name;
        if n.is_empty() || n.len() > 15 || n.contains('/') || n.contains(char::is_whitespace) {
            bail!("tunnel.tun_name: {n:?} is not a valid interface name (1-15 characters, no '/' or spaces)");
        }
        if t.mtu < MIN_MTU {
            bail!("tunnel.mtu: {} is below {MIN_MTU}", t.mtu);
        }
        if t.local.is_unspecified() || t.remote.is_unspecified() {
            bail!("tunnel.local and tunnel.remote must be real addresses, not 0.0.0.0");
        }
        for r in &t.routes {
            if let Err(e) = r.parse::<super::route::Prefix>() {
                bail!("tunnel.routes: {e} (write ADDR/LEN, e.g. \"10.1.0.0/24\")");
            }
        }
        if let Some(p) = &t.state_file {
            if p.file_name().is_none() || p.as_os_str().is_empty() {
                bail!(
                    "tunnel.state_file: {} names no file (write a file path, e.g. \"/var/lib/roamgate/tunnel.state\")",
                    p.display()
                );
            }
        }
        if let Some(a) = &t.tun_address {
            if !is_cidr(a) {
                bail!("tunnel.tun_address: {a:?} is not ADDR/LEN");
            }
        }
        Ok(())
    }
}

impl TunnelConfig {
    /// Reads the master key, refusing a file others can read.
    pub fn master_key(&self) -> anyhow::Result<MasterKey> {
        crate::platform::keyfile::read_master_key(&self.tunnel.master_key_file)
    }

    /// The sequence state file (configured, or the default under
    /// [`DEFAULT_STATE_DIR`]).
    pub fn state_path(&self) -> PathBuf {
        let t = &self.tunnel;
        t.state_file.clone().unwrap_or_else(|| {
            Path::new(DEFAULT_STATE_DIR).join(format!("tunnel-{:08x}.state", t.spi))
        })
    }
}

fn is_cidr(s: &str) -> bool {
    match s.split_once('/') {
        Some((a, l)) => a.parse::<Ipv4Addr>().is_ok() && l.parse::<u8>().is_ok_and(|l| l <= 32),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let cfg = TunnelConfig::from_toml(include_str!("../../../../config/tunnel.toml")).unwrap();
        assert_eq!(cfg.tunnel.role, Role::CareOf);
        assert_eq!(cfg.tunnel.mtu, 1500);
        assert_eq!(cfg.tunnel.tun_name, "rgtun0");
        assert_eq!(
            cfg.state_path(),
            PathBuf::from("/var/lib/roamgate/tunnel-00001001.state")
        );
    }

    #[test]
    fn bad_values_are_named() {
        let base = "[tunnel]\nrole = \"home-agent\"\nspi = 1\nlocal = \"192.0.2.1\"\n\
                    remote = \"192.0.2.2\"\nhome = \"10.10.0.2\"\nmaster_key_file = \"/k\"\n";
        TunnelConfig::from_toml(base).unwrap();
        let e = TunnelConfig::from_toml(&base.replace("spi = 1", "spi = 0")).unwrap_err();
        assert!(e.to_string().contains("tunnel.spi"), "{e}");
        let e = TunnelConfig::from_toml(&format!("{base}mtu = 100\n")).unwrap_err();
        assert!(e.to_string().contains("tunnel.mtu"), "{e}");
        let e = TunnelConfig::from_toml(&format!("{base}routes = [\"10.1/99\"]\n")).unwrap_err();
        assert!(e.to_string().contains("tunnel.routes"), "{e}");
        let e = TunnelConfig::from_toml(&format!("{base}state_file = \"/\"\n")).unwrap_err();
        assert!(e.to_string().contains("tunnel.state_file"), "{e}");
        let cfg = TunnelConfig::from_toml(&format!("{base}state_file = \"/s/t.state\"\n")).unwrap();
        assert_eq!(cfg.state_path(), PathBuf::from("/s/t.state"));
        let e = TunnelConfig::from_toml(&format!("{base}colour = 1\n")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }
}
