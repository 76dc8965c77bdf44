//! `roamgate unit` configuration (TOML, config/unit.toml): every key has a
//! named default; unknown keys are refused; `validate()` names the key.

use std::{net::SocketAddr, path::PathBuf};

use anyhow::bail;
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::config::{ConfigFile, LogSection};

pub const DEFAULT_STATE_FILE: &str = "/var/lib/roamgate/unit/state.toml";
pub const DEFAULT_SESSION_FILE: &str = "/var/lib/roamgate/unit/session.json";
pub const DEFAULT_MANAGER: &str = "attach/pm.example.org@EXAMPLE.ORG";
pub const DEFAULT_KDC: &str = "127.0.0.1:88";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitFile {
    pub unit: UnitSection,
    pub kerberos: KerberosSection,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UnitSection {
    /// Identity code and long-term keys (`roamgate unit init`), mode 0600.
    pub state_file: PathBuf,
    /// Where the unit is attached (base station, proxy manager): no secret.
    pub session_file: PathBuf,
    /// The proxy manager's service principal, unless `--manager` names one.
    pub manager: String,
}

impl Default for UnitSection {
    fn default() -> Self {
        Self {
            state_file: PathBuf::from(DEFAULT_STATE_FILE),
            session_file: PathBuf::from(DEFAULT_SESSION_FILE),
            manager: DEFAULT_MANAGER.to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    /// The realm's KDC (UDP, then TCP for large answers).
    pub kdc: SocketAddr,
}

impl Default for KerberosSection {
    fn default() -> Self {
        Self {
            kdc: DEFAULT_KDC.parse().expect("valid default address"),
        }
    }
}

impl ConfigFile for UnitFile {
    fn validate(&self) -> anyhow::Result<()> {
        if self.unit.state_file.as_os_str().is_empty() {
            bail!("unit.state_file: empty; give the state file's path");
        }
        if self.unit.session_file.as_os_str().is_empty() {
            bail!("unit.session_file: empty; give the session file's path");
        }
        self.manager()?;
        Ok(())
    }
}

impl UnitFile {
    pub fn manager(&self) -> anyhow::Result<Principal> {
        Principal::parse(&self.unit.manager).map_err(|e| {
            anyhow::anyhow!("unit.manager: {e} (e.g. attach/pm.example.org@EXAMPLE.ORG)")
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_defaults() {
        let text = include_str!("../../../../config/unit.toml");
        let cfg = UnitFile::from_toml(text).unwrap();
        let d = UnitFile::default();
        assert_eq!(cfg.unit.state_file, d.unit.state_file);
        assert_eq!(cfg.unit.session_file, d.unit.session_file);
        assert_eq!(cfg.unit.manager, d.unit.manager);
        assert_eq!(cfg.kerberos.kdc, d.kerberos.kdc);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = UnitFile::from_toml("[unit]\nmanager = \"not a principal@\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("unit.manager"), "{e:#}");
        assert!(UnitFile::from_toml("[unit]\nstray = 1\n").is_err());
    }
}
