//! Each role's configuration, derived from the one gateway configuration:
//! where its files live under state_dir, which principal it serves as,
//! and how the roles reach each other. The derived text goes through the
//! role's own parser and `validate()`, so the gateway can never run a role
//! with a configuration the role itself would refuse.

use std::{
    net::{Ipv4Addr, SocketAddr, ToSocketAddrs as _},
    path::{Path, PathBuf},
};

use anyhow::Context as _;
use roamgate_directory::UnitRecord;

use super::config::{GatewayConfig, ServiceDefaults, ServiceSection};
use crate::{
    base_station::BaseStationFile, billing::config::BillingFile, config::ConfigFile,
    directory::config::DirectoryFile, home_agent::config::HomeAgentFile,
    proxy_manager::config::ProxyManagerFile,
};

/// The roles, in start order, by the names errors and `status` use.
pub const KDC: &str = "kdc";
pub const DIRECTORY: &str = "directory";
pub const BILLING: &str = "billing";
pub const HOME_AGENT: &str = "home-agent";
pub const PROXY_MANAGER: &str = "proxy-manager";
pub const BASE_STATION: &str = "base-station";
pub const DATA_PLANE: &str = "data-plane";
pub const METRICS: &str = "metrics";

/// The first `HOST:PORT` resolution of `s`.
pub fn resolve(s: &str) -> anyhow::Result<SocketAddr> {
    s.to_socket_addrs()
        .with_context(|| format!("resolving {s:?}"))?
        .next()
        .with_context(|| format!("{s:?} resolves to no address"))
}

/// Where a local listener is reached from this host: the wildcard becomes
/// the loopback.
fn reach(listen: SocketAddr) -> SocketAddr {
    if listen.ip().is_unspecified() {
        SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())
    } else {
        listen
    }
}

/// TOML basic string (quotes and escapes).
fn q(s: impl AsRef<str>) -> String {
    toml::Value::String(s.as_ref().to_owned()).to_string()
}

fn qp(p: &Path) -> String {
    q(p.display().to_string())
}

/// The state directory's layout and the gateway's principals.
pub struct Layout<'a> {
    pub cfg: &'a GatewayConfig,
    /// This host's address on the IP network.
    pub address: Ipv4Addr,
}

impl<'a> Layout<'a> {
    pub fn new(cfg: &'a GatewayConfig, address: Ipv4Addr) -> Self {
        Self { cfg, address }
    }

    fn dir(&self) -> &Path {
        self.cfg.state_dir()
    }
    fn realm(&self) -> &str {
        &self.cfg.gateway.realm
    }
    pub fn kdc_db(&self) -> PathBuf {
        self.dir().join("kdc.sqlite")
    }
    pub fn keytab(&self, role: &str) -> PathBuf {
        self.dir().join("keytabs").join(format!("{role}.keytab"))
    }
    pub fn role_config(&self, role: &str) -> PathBuf {
        self.dir().join(format!("{role}.toml"))
    }
    pub fn role_stats(&self, role: &str) -> PathBuf {
        self.dir().join(format!("{role}.json"))
    }
    pub fn mip_key_dir(&self) -> PathBuf {
        self.dir().join("mip")
    }
    pub fn unit_template(&self) -> PathBuf {
        self.dir().join("unit.toml")
    }

    /// The service principal of a role: `<service>/gateway@REALM`.
    pub fn principal(&self, role: &str) -> String {
        let service = match role {
            HOME_AGENT => "mip",
            DIRECTORY => "directory",
            PROXY_MANAGER => "attach",
            BILLING => "billing",
            other => other,
        };
        format!("{service}/gateway@{}", self.realm())
    }

    /// The roles whose keytab this gateway needs (those it runs).
    pub fn keyed_roles(&self) -> Vec<&'static str> {
        let c = self.cfg;
        [
            (HOME_AGENT, c.home_agent.enabled),
            (DIRECTORY, c.directory.local()),
            (PROXY_MANAGER, c.proxy_manager.enabled),
            (BILLING, c.billing.local()),
        ]
        .into_iter()
        .filter_map(|(r, on)| on.then_some(r))
        .collect()
    }

    fn target<D: ServiceDefaults>(s: &ServiceSection<D>) -> anyhow::Result<Option<SocketAddr>> {
        if !s.external.is_empty() {
            return resolve(&s.external).map(Some);
        }
        Ok(s.enabled.then(|| reach(s.listen)))
    }

    /// Where this host's clients reach the KDC (none: disabled).
    pub fn kdc_addr(&self) -> anyhow::Result<Option<SocketAddr>> {
        Self::target(&self.cfg.kdc)
    }

    /// Where units reach the KDC: the external one, or this host's address.
    pub fn kdc_addr_for_units(&self) -> anyhow::Result<Option<SocketAddr>> {
        let k = &self.cfg.kdc;
        if !k.external.is_empty() {
            return resolve(&k.external).map(Some);
        }
        Ok(k.enabled
            .then(|| SocketAddr::new(self.address.into(), k.listen.port())))
    }

    /// Where units send their attach frames.
    pub fn base_station_addr(&self) -> SocketAddr {
        let l = self.cfg.base_station.listen;
        if l.ip().is_unspecified() {
            SocketAddr::new(self.address.into(), l.port())
        } else {
            l
        }
    }

    pub fn directory_text(&self) -> String {
        let hint =
            "`roamgate directory add-unit -c THIS_FILE ...` provisions the gateway's directory.";
        self.service_text(DIRECTORY, self.cfg.directory.listen, hint)
    }

    pub fn billing_text(&self) -> String {
        let hint =
            "`roamgate billing add-account -c THIS_FILE ...` provisions the gateway's ledger.";
        self.service_text(BILLING, self.cfg.billing.listen, hint)
    }

    /// The directory's or billing's file: the two share their shape
    /// (`[ROLE]` with listen and database, `[kerberos]`, `[metrics]`, `[log]`).
    fn service_text(&self, role: &str, listen: SocketAddr, hint: &str) -> String {
        format!(
            "# Generated by `roamgate gateway` from its configuration at every start: do not edit.\n\
             # {hint}\n\
             [{role}]\nlisten = {listen}\ndatabase = {db}\n\n\
             [kerberos]\nkeytab = {kt}\nservice = {svc}\n\n[metrics]\nlisten = \"\"\n\n[log]\n{log}",
            listen = q(listen.to_string()),
            db = qp(&self.dir().join(format!("{role}.sqlite"))),
            kt = qp(&self.keytab(role)),
            svc = q(self.principal(role)),
            log = self.log_text(),
        )
    }

    /// A unit's configuration for this gateway; its files sit beside it
    /// (relative paths: copy it to the unit and run there).
    pub fn unit_text(&self) -> anyhow::Result<String> {
        let kdc = self
            .kdc_addr_for_units()?
            .map_or_else(String::new, |a| a.to_string());
        Ok(format!(
            "# A unit of the home gateway (written by `roamgate gateway`). Copy it into\n\
             # the unit's own directory and run `roamgate unit ...` from there: the paths\n\
             # below are relative to the working directory.\n\
             [unit]\nstate_file = \"state.toml\"\nsession_file = \"session.json\"\nmanager = {mgr}\n\n\
             [kerberos]\nkdc = {kdc}\n\n\
             [call]\nnumber = \"\"\ncalls_dir = \"calls\"\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n",
            mgr = q(self.principal(PROXY_MANAGER)),
            kdc = q(kdc),
        ))
    }

    fn log_text(&self) -> String {
        let l = &self.cfg.log;
        let format = match l.format {
            crate::config::LogFormat::Text => "text",
            crate::config::LogFormat::Json => "json",
        };
        format!("format = {}\nlevel = {}\n", q(format), q(&l.level))
    }

    pub fn directory(&self) -> anyhow::Result<DirectoryFile> {
        DirectoryFile::from_toml(&self.directory_text())
            .context("the derived directory configuration")
    }

    pub fn billing(&self) -> anyhow::Result<BillingFile> {
        BillingFile::from_toml(&self.billing_text()).context("the derived billing configuration")
    }

    /// The home agent, with one node per unit of the directory that names
    /// this home agent (their MIP keys written under state_dir/mip/).
    pub fn home_agent(&self, units: &[UnitRecord]) -> anyhow::Result<HomeAgentFile> {
        let h = &self.cfg.home_agent;
        let mut t = format!(
            "[home_agent]\naddresses = [{addr}]\nlisten = {listen}\nhome_interface = {hi}\n{via}\
             state_dir = {sd}\nmax_lifetime = {ml}\nstats_file = {stats}\nstats_interval_ms = 1000\n\n\
             [kerberos]\nkeytab = {kt}\nservice = {svc}\n\n\
             [dataplane]\ninterfaces = []\npin_dir = {pin}\n\n[metrics]\nlisten = \"\"\n\n[log]\n{log}",
            addr = q(self.address.to_string()),
            listen = q(h.listen.to_string()),
            hi = q(&h.home_interface),
            via = h
                .home_route_via
                .map_or_else(String::new, |v| format!("home_route_via = {}\n", q(v.to_string()))),
            sd = qp(self.dir()),
            ml = h.max_lifetime,
            stats = qp(&self.role_stats(HOME_AGENT)),
            kt = qp(&self.keytab(HOME_AGENT)),
            svc = q(self.principal(HOME_AGENT)),
            pin = qp(&self.cfg.gateway.pin_dir),
            log = self.log_text(),
        );
        crate::platform::fs::private_dir(&self.mip_key_dir())
            .with_context(|| format!("creating {}", self.mip_key_dir().display()))?;
        for u in units.iter().filter(|u| u.home_agent == self.address) {
            let key = self.mip_key_dir().join(format!("{}.key", u.home_address));
            crate::platform::fs::write_atomic(&key, u.mip_key.expose_hex().as_bytes(), 0o600)
                .with_context(|| format!("writing {}", key.display()))?;
            t.push_str(&format!(
                "\n[[node]]\nhome_address = {ha}\nspi = {spi}\nkey_file = {kf}\nprincipal = {p}\n",
                ha = q(u.home_address.to_string()),
                spi = u.mip_spi,
                kf = qp(&key),
                p = q(u.principal.to_string()),
            ));
        }
        HomeAgentFile::from_toml(&t).context("the derived home agent configuration")
    }

    pub fn proxy_manager(&self) -> anyhow::Result<ProxyManagerFile> {
        let p = &self.cfg.proxy_manager;
        let list = |v: &[String]| v.iter().map(q).collect::<Vec<_>>().join(", ");
        let opt = |a: Option<SocketAddr>| a.map_or_else(String::new, |a| a.to_string());
        let t = format!(
            "[proxy_manager]\nlisten = {listen}\ncare_of = {care}\nsilence_timeout_secs = {st}\n\
             status_file = {status}\nstats_interval_ms = 1000\n\n\
             [kerberos]\nkdc = {kdc}\nkeytab = {kt}\nservice = {svc}\n\
             directory_service = {dsvc}\nhome_agent_service = {hsvc}\n\n\
             [directory]\naddress = {dir}\n\n[billing]\naddress = {bill}\nservice = {bsvc}\n\n\
             [dataplane]\ninterfaces = [{ifs}]\ninside_interfaces = [{ins}]\npin_dir = {pin}\n\n\
             [metrics]\nlisten = \"\"\n\n[log]\n{log}",
            listen = q(p.listen.to_string()),
            care = q(self.address.to_string()),
            st = p.silence_timeout_secs,
            status = qp(&self.role_stats(PROXY_MANAGER)),
            kdc = q(opt(self.kdc_addr()?)),
            kt = qp(&self.keytab(PROXY_MANAGER)),
            svc = q(self.principal(PROXY_MANAGER)),
            dsvc = q(self.principal(DIRECTORY)),
            hsvc = q(self.principal(HOME_AGENT)),
            dir = q(opt(Self::target(&self.cfg.directory)?)),
            bill = q(opt(Self::target(&self.cfg.billing)?)),
            bsvc = q(self.principal(BILLING)),
            ifs = list(&p.interfaces),
            ins = list(&p.inside_interfaces),
            pin = qp(&self.cfg.proxy_pin_dir()),
            log = self.log_text(),
        );
        ProxyManagerFile::from_toml(&t).context("the derived proxy manager configuration")
    }

    pub fn base_station(&self) -> anyhow::Result<BaseStationFile> {
        let b = &self.cfg.base_station;
        // The base station listens on the gateway's address (below), so
        // the proxy manager's answers come from that address too: name it
        // by that address, or they would not be recognised as its.
        let pm = self.cfg.proxy_manager.listen;
        let manager = if pm.ip().is_unspecified() {
            SocketAddr::new(self.address.into(), pm.port())
        } else {
            pm
        };
        let t = format!(
            "[base_station]\nid = {id}\ndomain = {dom}\nlisten = {listen}\nmanager = {mgr}\n\
             stats_file = {stats}\n\n[metrics]\nlisten = \"\"\n\n[log]\n{log}",
            id = b.id,
            dom = q(&self.cfg.gateway.realm),
            // On the address units are told (not the wildcard): a unit
            // takes answers only from the address it sent to, and a
            // wildcard socket answers from whichever address the route
            // back picks (the access side's, on a gateway with two).
            listen = q(self.base_station_addr().to_string()),
            mgr = q(manager.to_string()),
            stats = qp(&self.role_stats(BASE_STATION)),
            log = self.log_text(),
        );
        BaseStationFile::from_toml(&t).context("the derived base station configuration")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_derived_role_configuration_passes_its_own_validation() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("[gateway]\nstate_dir = {}\n", qp(dir.path()));
        let cfg = GatewayConfig::from_toml(&text).unwrap();
        let l = Layout::new(&cfg, Ipv4Addr::new(192, 0, 2, 1));
        l.directory().unwrap();
        l.billing().unwrap();
        let ha = l.home_agent(&[]).unwrap();
        assert_eq!(ha.home_agent.addresses, vec![Ipv4Addr::new(192, 0, 2, 1)]);
        assert_eq!(ha.journal_path(), dir.path().join("bindings.sqlite"));
        let pm = l.proxy_manager().unwrap();
        assert_eq!(pm.proxy_manager.care_of, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(pm.kerberos.kdc, "127.0.0.1:88".parse().unwrap());
        let bs = l.base_station().unwrap();
        assert_eq!(bs.base_station.manager, "192.0.2.1:4341".parse().unwrap());
        assert_eq!(bs.base_station.listen, "192.0.2.1:4340".parse().unwrap());
        let unit: crate::unit::config::UnitFile =
            crate::unit::config::UnitFile::from_toml(&l.unit_text().unwrap()).unwrap();
        assert_eq!(unit.kerberos.kdc, "192.0.2.1:88".parse().unwrap());
        assert_eq!(l.principal(HOME_AGENT), "mip/gateway@HOME.ROAMGATE.TEST");
    }

    #[test]
    fn external_servers_replace_the_embedded_ones() {
        let cfg = GatewayConfig::from_toml(
            "[kdc]\nexternal = \"127.0.0.9:88\"\n[billing]\nenabled = false\n",
        )
        .unwrap();
        let l = Layout::new(&cfg, Ipv4Addr::new(192, 0, 2, 1));
        assert_eq!(l.kdc_addr().unwrap(), Some("127.0.0.9:88".parse().unwrap()));
        assert!(!l.keyed_roles().contains(&BILLING));
        let pm = l.proxy_manager().unwrap();
        assert_eq!(pm.billing.address, "");
    }
}
