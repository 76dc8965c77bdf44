//! `roamgate directory` configuration (TOML, config/directory.toml): every
//! key has a named default; unknown keys are refused; `validate()` names
//! the key that is wrong.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::bail;
use roamgate_directory::DirectoryConfig;
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::config::{ConfigFile, LogSection, OptionalMetrics};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:7750";
pub const DEFAULT_DATABASE: &str = "/var/lib/roamgate/directory/directory.sqlite";
pub const DEFAULT_KEYTAB: &str = "/etc/roamgate/directory.keytab";
pub const DEFAULT_SERVICE: &str = "directory/dir.example.org@EXAMPLE.ORG";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectoryFile {
    pub directory: DirectorySection,
    pub limits: Limits,
    pub kerberos: KerberosSection,
    pub metrics: OptionalMetrics,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DirectorySection {
    /// UDP address the directory answers on.
    pub listen: SocketAddr,
    /// The SQLite store (created with mode 0600).
    pub database: PathBuf,
    /// Audit entries older than this are deleted (checked hourly); 0 keeps
    /// them forever.
    pub audit_retention_days: u64,
}

/// Per source address of requests. The directory's clients are proxy
/// managers (a few, busy): the defaults let one take 2,000 switch-ons/s,
/// and stop a flood from one source writing more audit rows than that.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub burst: u32,
    pub per_second: u32,
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            burst: 1000,
            per_second: 2000,
            max_sources: 4096,
        }
    }
}

impl Default for DirectorySection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            database: PathBuf::from(DEFAULT_DATABASE),
            audit_retention_days: 90,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    /// The directory service's keys.
    pub keytab: PathBuf,
    /// The service principal callers' tickets must be for.
    pub service: String,
    pub skew_secs: u64,
    /// Live authenticators remembered against replay.
    pub replay_capacity: usize,
    /// Live authenticators one client principal may hold.
    pub replay_per_client: usize,
}

impl Default for KerberosSection {
    fn default() -> Self {
        let d = DirectoryConfig::new(Principal::parse(DEFAULT_SERVICE).expect("valid default"));
        Self {
            keytab: PathBuf::from(DEFAULT_KEYTAB),
            service: DEFAULT_SERVICE.to_owned(),
            skew_secs: d.skew.as_secs(),
            replay_capacity: d.replay_capacity,
            replay_per_client: d.replay_per_client,
        }
    }
}

impl ConfigFile for DirectoryFile {
    fn validate(&self) -> anyhow::Result<()> {
        self.service()?;
        let k = &self.kerberos;
        if k.skew_secs == 0 || k.skew_secs > 300 {
            bail!(
                "kerberos.skew_secs: {} is out of range; use 1 to 300 (RFC 4120's default is 300)",
                k.skew_secs
            );
        }
        if k.replay_capacity == 0 || k.replay_per_client == 0 {
            bail!("kerberos.replay_capacity and kerberos.replay_per_client must be at least 1");
        }
        if k.replay_per_client > k.replay_capacity {
            bail!(
                "kerberos.replay_per_client ({}) exceeds kerberos.replay_capacity ({})",
                k.replay_per_client,
                k.replay_capacity
            );
        }
        let l = &self.limits;
        if l.burst == 0 || l.per_second == 0 || l.max_sources == 0 {
            bail!("limits.burst, limits.per_second and limits.max_sources must be at least 1");
        }
        if self.directory.database.as_os_str().is_empty() {
            bail!("directory.database: empty; give the SQLite file's path");
        }
        self.metrics.addr()?;
        Ok(())
    }
}

impl DirectoryFile {
    pub fn service(&self) -> anyhow::Result<Principal> {
        Principal::parse(&self.kerberos.service).map_err(|e| {
            anyhow::anyhow!("kerberos.service: {e} (e.g. directory/dir.example.org@EXAMPLE.ORG)")
        })
    }

    /// The core's settings.
    pub fn core(&self) -> anyhow::Result<DirectoryConfig> {
        let mut c = DirectoryConfig::new(self.service()?);
        c.skew = Duration::from_secs(self.kerberos.skew_secs);
        c.replay_capacity = self.kerberos.replay_capacity;
        c.replay_per_client = self.kerberos.replay_per_client;
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_is_every_default() {
        let text = include_str!("../../../../config/directory.toml");
        let cfg = DirectoryFile::from_toml(text).unwrap();
        let d = DirectoryFile::default();
        assert_eq!(cfg.directory.listen, d.directory.listen);
        assert_eq!(cfg.directory.database, d.directory.database);
        assert_eq!(
            cfg.directory.audit_retention_days,
            d.directory.audit_retention_days
        );
        assert_eq!(cfg.limits.burst, d.limits.burst);
        assert_eq!(cfg.limits.per_second, d.limits.per_second);
        assert_eq!(cfg.limits.max_sources, d.limits.max_sources);
        assert_eq!(cfg.kerberos.keytab, d.kerberos.keytab);
        assert_eq!(cfg.kerberos.service, d.kerberos.service);
        assert_eq!(cfg.kerberos.skew_secs, 300);
        assert_eq!(cfg.kerberos.replay_capacity, d.kerberos.replay_capacity);
        assert_eq!(cfg.kerberos.replay_per_client, d.kerberos.replay_per_client);
        assert_eq!(cfg.metrics.listen, "");
        assert_eq!(cfg.log.level, "info");
        let core = cfg.core().unwrap();
        assert_eq!(core.service.to_string(), DEFAULT_SERVICE);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = DirectoryFile::from_toml("").unwrap();
        assert_eq!(cfg.directory.listen, DEFAULT_LISTEN.parse().unwrap());
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = |t: &str| format!("{:#}", DirectoryFile::from_toml(t).unwrap_err());
        assert!(e("[directory]\nport = 1\n").contains("unknown field"));
        assert!(e("[kerberos]\nservice = \"no-realm\"\n").contains("kerberos.service"));
        assert!(e("[kerberos]\nskew_secs = 301\n").contains("kerberos.skew_secs"));
        assert!(
            e("[kerberos]\nreplay_capacity = 10\nreplay_per_client = 11\n")
                .contains("kerberos.replay_per_client")
        );
        assert!(e("[metrics]\nlisten = \"x\"\n").contains("metrics.listen"));
    }
}
