//! What every role's TOML configuration shares: the `ConfigFile` trait
//! (unknown keys refused, then a `validate()` step that names what is
//! wrong), `[metrics]` and `[log]`. The gateway's own is in
//! `gateway/config.rs`.

use std::{net::SocketAddr, path::Path};

use anyhow::Context as _;
use serde::Deserialize;

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
