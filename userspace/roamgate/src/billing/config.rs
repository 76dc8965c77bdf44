//! `roamgate billing` configuration (TOML, config/billing.toml): every
//! key has a named default; unknown keys are refused; `validate()` names
//! the key that is wrong.

use std::{net::SocketAddr, path::PathBuf, time::Duration};

use anyhow::bail;
use roamgate_billing::server::ServerConfig;
use roamgate_krb::Principal;
use serde::Deserialize;

use super::radius::RadiusSection;
use crate::config::{ConfigFile, LogSection, OptionalMetrics};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:7760";
pub const DEFAULT_DATABASE: &str = "/var/lib/roamgate/billing/billing.sqlite";
pub const DEFAULT_KEYTAB: &str = "/etc/roamgate/billing.keytab";
pub const DEFAULT_SERVICE: &str = "billing/bill.example.org@EXAMPLE.ORG";
/// A charge whose close never comes is closed after this long (4 h).
pub const DEFAULT_MAX_CALL_SECS: u64 = 4 * 3600;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingFile {
    pub billing: BillingSection,
    pub kerberos: KerberosSection,
    pub radius: RadiusSection,
    pub metrics: OptionalMetrics,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BillingSection {
    /// UDP address the service answers on.
    pub listen: SocketAddr,
    /// The SQLite ledger (created with mode 0600, WAL, synchronous=FULL).
    pub database: PathBuf,
    /// Charges open longer than this are closed as expired.
    pub max_call_secs: u64,
    /// How often open charges are checked against `max_call_secs`.
    pub expire_every_secs: u64,
    /// Most requests committed in one transaction (group commit).
    pub batch_max: usize,
    /// Seconds a prepaid balance must cover beyond the setup fee for a
    /// call to open.
    pub minimum_seconds: u64,
    /// The ISO 4217 currency `add-account` records when none is given.
    pub currency: String,
}

impl Default for BillingSection {
    fn default() -> Self {
        Self {
            listen: DEFAULT_LISTEN.parse().expect("valid default address"),
            database: PathBuf::from(DEFAULT_DATABASE),
            max_call_secs: DEFAULT_MAX_CALL_SECS,
            expire_every_secs: 60,
            batch_max: 256,
            minimum_seconds: roamgate_billing::ledger::DEFAULT_MINIMUM_SECONDS,
            currency: "EUR".to_owned(),
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KerberosSection {
    /// The billing service's keys.
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
        let d = ServerConfig::new(Principal::parse(DEFAULT_SERVICE).expect("valid default"));
        Self {
            keytab: PathBuf::from(DEFAULT_KEYTAB),
            service: DEFAULT_SERVICE.to_owned(),
            skew_secs: d.skew.as_secs(),
            replay_capacity: d.replay_capacity,
            replay_per_client: d.replay_per_client,
        }
    }
}

impl ConfigFile for BillingFile {
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
        let b = &self.billing;
        if b.database.as_os_str().is_empty() {
            bail!("billing.database: empty; give the SQLite file's path");
        }
        if b.max_call_secs == 0 {
            bail!("billing.max_call_secs: must be at least 1 (the default is 14400, 4 h)");
        }
        if b.expire_every_secs == 0 {
            bail!("billing.expire_every_secs: must be at least 1");
        }
        if b.batch_max == 0 || b.batch_max > 10_000 {
            bail!(
                "billing.batch_max: {} is out of range; use 1 to 10000",
                b.batch_max
            );
        }
        if b.currency.len() != 3 || !b.currency.bytes().all(|c| c.is_ascii_uppercase()) {
            bail!(
                "billing.currency: {:?} is not an ISO 4217 code (three upper-case letters, e.g. EUR)",
                b.currency
            );
        }
        self.metrics.addr()?;
        Ok(())
    }
}

impl BillingFile {
    pub fn service(&self) -> anyhow::Result<Principal> {
        Principal::parse(&self.kerberos.service).map_err(|e| {
            anyhow::anyhow!("kerberos.service: {e} (e.g. billing/bill.example.org@EXAMPLE.ORG)")
        })
    }

    /// The core's settings.
    pub fn core(&self) -> anyhow::Result<ServerConfig> {
        let mut c = ServerConfig::new(self.service()?);
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
        let text = include_str!("../../../../config/billing.toml");
        let cfg = BillingFile::from_toml(text).unwrap();
        let d = BillingFile::default();
        assert_eq!(cfg.billing.listen, d.billing.listen);
        assert_eq!(cfg.billing.database, d.billing.database);
        assert_eq!(cfg.billing.max_call_secs, DEFAULT_MAX_CALL_SECS);
        assert_eq!(cfg.billing.expire_every_secs, d.billing.expire_every_secs);
        assert_eq!(cfg.billing.batch_max, d.billing.batch_max);
        assert_eq!(cfg.billing.minimum_seconds, d.billing.minimum_seconds);
        assert_eq!(cfg.billing.currency, d.billing.currency);
        assert_eq!(cfg.kerberos.keytab, d.kerberos.keytab);
        assert_eq!(cfg.kerberos.service, d.kerberos.service);
        assert_eq!(cfg.kerberos.skew_secs, 300);
        assert_eq!(cfg.kerberos.replay_capacity, d.kerberos.replay_capacity);
        assert_eq!(cfg.kerberos.replay_per_client, d.kerberos.replay_per_client);
        assert_eq!(cfg.radius, d.radius);
        assert_eq!(cfg.metrics.listen, "");
        assert_eq!(cfg.log.level, "info");
        assert_eq!(cfg.core().unwrap().service.to_string(), DEFAULT_SERVICE);
    }

    #[test]
    fn empty_file_gives_defaults() {
        let cfg = BillingFile::from_toml("").unwrap();
        assert_eq!(cfg.billing.listen, DEFAULT_LISTEN.parse().unwrap());
        assert_eq!(cfg.billing.max_call_secs, 14_400);
    }

    #[test]
    fn bad_values_name_the_key() {
        let e = |t: &str| format!("{:#}", BillingFile::from_toml(t).unwrap_err());
        assert!(e("[billing]\nport = 1\n").contains("unknown field"));
        assert!(e("[radius]\nport = 1\n").contains("unknown field"));
        assert!(e("[kerberos]\nservice = \"no-realm\"\n").contains("kerberos.service"));
        assert!(e("[kerberos]\nskew_secs = 301\n").contains("kerberos.skew_secs"));
        assert!(e("[billing]\nmax_call_secs = 0\n").contains("billing.max_call_secs"));
        assert!(e("[billing]\nbatch_max = 0\n").contains("billing.batch_max"));
        assert!(e("[billing]\ncurrency = \"eur\"\n").contains("billing.currency"));
        assert!(e("[metrics]\nlisten = \"x\"\n").contains("metrics.listen"));
    }
}
