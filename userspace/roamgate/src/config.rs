//! The gateway's TOML configuration: every key optional, named defaults,
//! unknown keys refused, and a `validate()` step that names what is wrong.

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use anyhow::{bail, Context as _};
use serde::Deserialize;

use crate::dataplane::AttachMode;

/// A role's TOML configuration file: unknown keys refused by its serde
/// types, then [`ConfigFile::validate`] for what the types cannot say.
pub trait ConfigFile: serde::de::DeserializeOwned {
    /// Checks the parsed values; errors name the setting and the fix.
    fn validate(&self) -> anyhow::Result<()>;

    fn from_toml(text: &str) -> anyhow::Result<Self> {
        let cfg: Self = toml::from_str(text)?;
        cfg.validate()?;
        Ok(cfg)
    }

    fn load(path: &Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading config {}", path.display()))?;
        Self::from_toml(&text).with_context(|| format!("in config {}", path.display()))
    }
}

/// A Linux interface name: 1-15 bytes, no '/' or whitespace.
pub fn valid_ifname(i: &str) -> bool {
    !i.is_empty() && i.len() <= 15 && !i.contains('/') && !i.contains(char::is_whitespace)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub gateway: GatewaySection,
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
}

impl Default for GatewaySection {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            xdp_mode: AttachMode::Auto,
            pin_dir: PathBuf::from(roamgate_common::maps::PIN_DIR),
            counters_interval_secs: 10,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MetricsSection {
    /// `ADDR:PORT` for Prometheus text at /metrics; empty disables it.
    pub listen: String,
}

impl Default for MetricsSection {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:9464".to_owned(),
        }
    }
}

/// `[metrics]` of a role whose endpoint is off unless configured.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptionalMetrics {
    /// `ADDR:PORT` for Prometheus text at /metrics; empty disables it.
    pub listen: String,
}

impl OptionalMetrics {
    /// The endpoint, if one is configured; an error names the key.
    pub fn addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        if self.listen.is_empty() {
            return Ok(None);
        }
        self.listen
            .parse()
            .map(Some)
            .map_err(|_| anyhow::anyhow!("metrics.listen: {:?} is not ADDR:PORT", self.listen))
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    pub format: LogFormat,
    /// A tracing filter directive (`info`, `roamgate=debug`); RUST_LOG wins.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        Self {
            format: LogFormat::Text,
            level: "info".to_owned(),
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

impl ConfigFile for GatewayConfig {
    fn validate(&self) -> anyhow::Result<()> {
        for i in &self.gateway.interfaces {
            if !valid_ifname(i) {
                bail!("gateway.interfaces: {i:?} is not a valid interface name (1-15 characters, no '/' or spaces)");
            }
        }
        if !self.gateway.pin_dir.is_absolute() {
            bail!(
                "gateway.pin_dir: {} must be an absolute path on a bpffs (e.g. /sys/fs/bpf/roamgate)",
                self.gateway.pin_dir.display()
            );
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../config/gateway.toml");
        let cfg = GatewayConfig::from_toml(text).unwrap();
        assert_eq!(cfg.gateway.xdp_mode, AttachMode::Native);
        assert_eq!(cfg.gateway.pin_dir, PathBuf::from("/sys/fs/bpf/roamgate"));
        assert!(cfg.gateway.interfaces.is_empty());
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = GatewayConfig::from_toml("").unwrap();
        assert_eq!(cfg.gateway.counters_interval_secs, 10);
        assert_eq!(cfg.gateway.xdp_mode, AttachMode::Auto);
        assert_eq!(
            cfg.metrics_addr().unwrap(),
            Some("127.0.0.1:9464".parse().unwrap())
        );
    }

    #[test]
    fn unknown_keys_are_refused() {
        let err = GatewayConfig::from_toml("[gateway]\ninterface = [\"eth0\"]\n").unwrap_err();
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
    }
}
