//! The switch-on end-to-end scenario (issue 11), shared by `cargo xtask e2e`
//! (binary `mobility_e2e`, after the Mobile IP scenario) and
//! `tests/tests/switch_on_e2e.rs`.
//!
//! ```text
//!  cn 10.1.0.2 ── ha-cn 10.1.0.1 [ha] ha-tr 192.0.2.1 ── tr ─┬─ 198.51.100.2 [pmh] 10.20.0.1 ── 10.20.0.2 [bsh] br0 10.21.0.1 ─┬─ u1 10.21.0.11
//!  kdc 10.1.1.2 ── ha-kdc 10.1.1.1                           │                                                              ├─ u2 10.21.0.12
//!  (KDC :88, directory :7750)                                │                                                              └─ u3 10.21.0.13
//!                                                            └─ 203.0.113.2  [pmf] 10.30.0.1 ── 10.30.0.2 [bsf] br0 10.31.0.1 ─┬─ u1 10.31.0.11
//!                                                                                                                              └─ u2 10.31.0.12
//! ```
//!
//! - `kdc` runs `roamgate kdc serve` and `roamgate directory serve`; `ha`
//!   the home agent (one `[[node]]` per unit); `pmh`, `pmf` the home and
//!   foreign domains' proxy managers (their XDP on the uplink and the base
//!   station link, their care-of address the uplink's); `bsh`, `bsf` the
//!   base stations, whose bridge is the access network.
//! - `u1`, `u2` are units with home addresses 10.1.0.51 and .52, on the
//!   home link: the home agent proxy-ARPs for bound ones. After a switch-on
//!   the unit puts its home address on the interface towards its base
//!   station and sends from it; the base station routes the home prefix
//!   onto its bridge, and everything from its bridge to its proxy manager.
//! - `u3` is a third host on the home access network, for the units that
//!   must not switch on (one the KDC does not know the keys of, one the
//!   directory does not know) and for forged frames.
//!
//! Scenario: u1 and u2 switch on at home (cn reaches them through the
//! tunnel); u1 moves to the foreign domain; replayed, forged, unknown and
//! unauthorised requests; the directory goes down during a switch-on; both
//! switch off. Every link is captured from the start to `target/e2e/`,
//! and the captures are checked: tshark decodes them cleanly, and no key,
//! account or home address crosses any link in clear.

use std::{
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{
    mit::{MitKdc, MitKdcConfig},
    mobility::{
        add_service, counters, delta, ha_bindings, home_network, kill, percentile, read_json,
        roamgate_ok, start_home_agent, start_kdc_serve, write_ha_config, write_private, HaNode, HA,
    },
    netns::{in_netns, roamgate_bin, root, wait_for, Topology},
    tunnel_net::read_pcap,
};

mod calls;

pub const REALM: &str = "HOME.TEST";
const KDC_ADDR: &str = "10.1.1.2:88";
const DIRECTORY_ADDR: &str = "10.1.1.2:7750";
const DIRECTORY_SERVICE: &str = "directory/dir@HOME.TEST";
const BILLING_SERVICE: &str = "billing/billing@HOME.TEST";
const BILLING_ADDR: &str = "10.1.1.2:7760";
/// FreeRADIUS accounting, on the kdc host's loopback beside the billing
/// service.
const RADIUS_PORT: u16 = 18130;
const RADIUS_SECRET: &str = "e2e-radius-shared-secret";
const ATTACH_PORT: u16 = 4340;
const DIRECTORY_PORT: u16 = 7750;
/// Routing table of the base stations for what comes from their bridge.
const ACCESS_TABLE: &str = "100";

/// One domain: its proxy manager and base station.
struct Domain {
    pm: &'static str,
    bs: &'static str,
    /// The proxy manager's uplink address: its proxies' care-of address.
    care_of: Ipv4Addr,
    /// The base station's address on its bridge (the units' gateway).
    bs_access: Ipv4Addr,
    /// The base station's address on its proxy manager link.
    bs_uplink: Ipv4Addr,
    /// The proxy manager's address on that link.
    pm_downlink: Ipv4Addr,
    /// The units' interface suffix in this domain.
    unit_if: &'static str,
}

const HOME_DOMAIN: Domain = Domain {
    pm: "pmh",
    bs: "bsh",
    care_of: Ipv4Addr::new(198, 51, 100, 2),
    bs_access: Ipv4Addr::new(10, 21, 0, 1),
    bs_uplink: Ipv4Addr::new(10, 20, 0, 2),
    pm_downlink: Ipv4Addr::new(10, 20, 0, 1),
    unit_if: "h",
};

const FOREIGN_DOMAIN: Domain = Domain {
    pm: "pmf",
    bs: "bsf",
    care_of: Ipv4Addr::new(203, 0, 113, 2),
    bs_access: Ipv4Addr::new(10, 31, 0, 1),
    bs_uplink: Ipv4Addr::new(10, 30, 0, 2),
    pm_downlink: Ipv4Addr::new(10, 30, 0, 1),
    unit_if: "f",
};

impl Domain {
    fn attach_addr(&self) -> String {
        format!("{}:{ATTACH_PORT}", self.bs_access)
    }

    fn service(&self) -> String {
        format!("attach/{}@{REALM}", self.pm)
    }
}

/// A unit of the scenario: its host, principal and initiating information.
struct Unit {
    host: &'static str,
    home: Ipv4Addr,
    spi: u32,
    /// Its E.164 number (the directory's).
    number: &'static str,
}

const U1: Unit = Unit {
    host: "u1",
    home: Ipv4Addr::new(10, 1, 0, 51),
    spi: 257,
    number: "4930100051",
};
const U2: Unit = Unit {
    host: "u2",
    home: Ipv4Addr::new(10, 1, 0, 52),
    spi: 258,
    number: "4930100052",
};

impl Unit {
    fn principal(&self) -> String {
        format!("{}@{REALM}", self.host)
    }

    /// The principal callers get tickets for (docs/call.md).
    fn call_principal(&self) -> String {
        format!("call/{}@{REALM}", self.host)
    }

    fn iface(&self, d: &Domain) -> String {
        format!("{}-{}", self.host, d.unit_if)
    }
}

/// Collects failed expectations.
#[derive(Default)]
struct Checks(Vec<String>);

impl Checks {
    fn expect(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.0.push(what.into());
        }
    }
}

/// The outcome of one `roamgate unit` command.
struct UnitRun {
    ok: bool,
    json: Value,
    stderr: String,
}

/// The running scenario's processes and files.
pub struct SwitchOn {
    pub topo: Topology,
    pub dir: tempfile::TempDir,
    pin_ha: PathBuf,
    pin_pm: [PathBuf; 2],
    /// (link name, child index, file) per capture.
    captures: Vec<(String, usize, PathBuf)>,
    directory: Option<usize>,
    /// Children stopped with SIGTERM first on drop (they detach XDP).
    daemons: Vec<usize>,
    /// The units' identity codes (u1, u2, u3).
    codes: Vec<String>,
    /// The realm's KDC when it is MIT krb5kdc (stopped on drop).
    mit: Option<MitKdc>,
    /// The home agent's child.
    ha: Option<usize>,
    /// The billing service's child (roamgate KDC runs only).
    billing: Option<usize>,
    /// FreeRADIUS, the billing service's accounting peer.
    radius: Option<crate::freeradius::FreeRadius>,
}

/// Which KDC serves the realm: a config switch for every role.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KdcKind {
    Roamgate,
    Mit,
}

impl Drop for SwitchOn {
    fn drop(&mut self) {
        if let Some(keep) = std::env::var_os("MOBILITY_E2E_LOGS") {
            let keep = Path::new(&keep).join("switch-on");
            let _ = std::fs::create_dir_all(&keep);
            if let Ok(rd) = std::fs::read_dir(self.dir.path()) {
                for e in rd.flatten() {
                    let _ = std::fs::copy(e.path(), keep.join(e.file_name()));
                }
            }
        }
        for idx in self.daemons.iter().rev() {
            let c = self.topo.child_mut(*idx);
            kill(c.id(), libc::SIGTERM);
            for _ in 0..40 {
                if matches!(c.try_wait(), Ok(Some(_))) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        for p in std::iter::once(&self.pin_ha).chain(&self.pin_pm) {
            let _ = std::fs::remove_dir_all(p);
        }
    }
}

/// Where the pcaps go: `target/e2e/` in the workspace.
pub fn pcap_dir() -> PathBuf {
    root().join("target/e2e")
}

impl SwitchOn {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// The last `n` lines of a log, for error messages.
    fn log_tail(&self, name: &str, n: usize) -> String {
        let text = self.log(name);
        let lines: Vec<&str> = text.lines().collect();
        format!(
            "--- {name} (last {n} lines) ---\n{}",
            lines[lines.len().saturating_sub(n)..].join("\n")
        )
    }

    fn logs_tail(&self) -> String {
        [
            "pmh.log",
            "pmf.log",
            "bsh.log",
            "bsf.log",
            "ha.log",
            "directory.log",
        ]
        .iter()
        .map(|l| self.log_tail(l, 15))
        .collect::<Vec<_>>()
        .join("\n")
    }

    pub fn build() -> anyhow::Result<Self> {
        let hosts = [
            "cn", "kdc", "ha", "tr", "pmh", "bsh", "pmf", "bsf", "u1", "u2", "u3",
        ];
        let mut topo = home_network(
            "son",
            &hosts[4..],
            [("tr-pmh", "pmh", "pmh-tr"), ("tr-pmf", "pmf", "pmf-tr")],
        )?;
        let mut access = Vec::new();
        for d in [&HOME_DOMAIN, &FOREIGN_DOMAIN] {
            topo.link(
                (
                    d.pm,
                    &format!("{}-bs", d.pm),
                    &format!("{}/24", d.pm_downlink),
                ),
                (
                    d.bs,
                    &format!("{}-pm", d.bs),
                    &format!("{}/24", d.bs_uplink),
                ),
            )?;
            topo.bridge(d.bs, "br0", &format!("{}/24", d.bs_access))?;
            let units: &[(&str, u8)] = if d.unit_if == "h" {
                &[("u1", 11), ("u2", 12), ("u3", 13)]
            } else {
                &[("u1", 11), ("u2", 12)]
            };
            for (u, n) in units {
                let o = d.bs_access.octets();
                let cidr = format!("{}.{}.{}.{n}/24", o[0], o[1], o[2]);
                let (uif, port) = (format!("{u}-{}", d.unit_if), format!("{}-{u}", d.bs));
                topo.port((u, &uif, &cidr), (d.bs, &port, "br0"))?;
                access.push((u.to_string(), uif));
                access.push((d.bs.to_string(), port));
            }
        }
        for h in ["ha", "tr", "pmh", "pmf", "bsh", "bsf"] {
            topo.forward(h)?;
        }
        topo.no_rp_filter(&hosts)?;
        let mut ifaces: Vec<(String, String)> = [
            ("cn", "cn0"),
            ("kdc", "kdc0"),
            ("ha", "ha-cn"),
            ("ha", "ha-kdc"),
            ("ha", "ha-tr"),
            ("tr", "tr-ha"),
            ("tr", "tr-pmh"),
            ("tr", "tr-pmf"),
            ("pmh", "pmh-tr"),
            ("pmh", "pmh-bs"),
            ("bsh", "bsh-pm"),
            ("pmf", "pmf-tr"),
            ("pmf", "pmf-bs"),
            ("bsf", "bsf-pm"),
        ]
        .iter()
        .map(|(h, i)| (h.to_string(), i.to_string()))
        .collect();
        ifaces.extend(access.iter().cloned());
        let refs: Vec<(&str, &str)> = ifaces
            .iter()
            .map(|(h, i)| (h.as_str(), i.as_str()))
            .collect();
        topo.tune_for_xdp(&refs)?;
        // Inner packets must fit in a tunnel frame on the 1500-byte transit
        // links: every link that carries them unencapsulated gets 1440.
        for (h, i) in refs.iter().filter(|(_, i)| {
            !matches!(
                *i,
                "ha-tr" | "tr-ha" | "tr-pmh" | "tr-pmf" | "pmh-tr" | "pmf-tr"
            )
        }) {
            topo.exec_ok(h, &["ip", "link", "set", "dev", i, "mtu", "1440"])?;
        }
        topo.route("cn", "default", "10.1.0.1")?;
        topo.route("kdc", "default", "10.1.1.1")?;
        topo.route("ha", "default", "192.0.2.2")?;
        topo.route("tr", "10.1.0.0/16", "192.0.2.1")?;
        for d in [&HOME_DOMAIN, &FOREIGN_DOMAIN] {
            let pm_net = format!("{}/24", Ipv4Addr::from(u32::from(d.pm_downlink) & !0xff));
            let access_net = format!("{}/24", Ipv4Addr::from(u32::from(d.bs_access) & !0xff));
            let (bs_up, pm_down) = (d.bs_uplink.to_string(), d.pm_downlink.to_string());
            let care_of = d.care_of.to_string();
            let tr = Ipv4Addr::from(u32::from(d.care_of) & !0xff | 1).to_string();
            topo.route("tr", &pm_net, &care_of)?;
            topo.route("tr", &access_net, &care_of)?;
            topo.route(d.pm, "default", &tr)?;
            topo.route(d.pm, "10.1.0.0/24", &bs_up)?;
            topo.route(d.pm, &access_net, &bs_up)?;
            // The base station: the home prefix is on its bridge, and what
            // comes from there goes up to its proxy manager.
            topo.base_station_routes(d.bs, "br0", "10.1.0.0/24", &pm_down, ACCESS_TABLE)?;
        }
        for u in ["u1", "u2", "u3"] {
            topo.route(u, "default", &HOME_DOMAIN.bs_access.to_string())?;
        }
        let p = topo.prefix().to_owned();
        let s = Self {
            pin_ha: PathBuf::from(format!("/sys/fs/bpf/{p}ha")),
            pin_pm: [
                PathBuf::from(format!("/sys/fs/bpf/{p}pmh")),
                PathBuf::from(format!("/sys/fs/bpf/{p}pmf")),
            ],
            topo,
            dir: tempfile::tempdir()?,
            captures: Vec::new(),
            directory: None,
            daemons: Vec::new(),
            codes: Vec::new(),
            mit: None,
            ha: None,
            billing: None,
            radius: None,
        };
        // Every link, and the paths a unit's KDC exchange takes.
        for (h, dst) in [
            ("cn", "10.1.0.1"),
            ("kdc", "10.1.1.1"),
            ("ha", "192.0.2.2"),
            ("tr", "198.51.100.2"),
            ("tr", "203.0.113.2"),
            ("pmh", "10.20.0.2"),
            ("pmf", "10.30.0.2"),
            ("u1", "10.21.0.1"),
            ("u2", "10.21.0.1"),
            ("u3", "10.21.0.1"),
            ("u1", "10.31.0.1"),
            ("u2", "10.31.0.1"),
            ("u1", "10.1.1.2"),
            ("u2", "10.1.1.2"),
            ("u3", "10.1.1.2"),
            ("pmh", "10.1.1.2"),
            ("pmf", "10.1.1.2"),
            ("pmh", "192.0.2.1"),
            ("pmf", "192.0.2.1"),
        ] {
            s.topo
                .exec_ok(h, &["ping", "-c", "1", "-W", "2", dst])
                .with_context(|| format!("connectivity {h} -> {dst}"))?;
        }
        Ok(s)
    }

    /// Captures every link from now on, each on the side that runs no XDP
    /// (frames an XDP program redirects are seen by their receiver's tap,
    /// not the sender's), into `target/e2e/<link>.pcap`.
    pub fn start_captures(&mut self) -> anyhow::Result<()> {
        let out = pcap_dir();
        std::fs::create_dir_all(&out)?;
        let links = [
            ("cn-ha", "cn", "cn0"),
            ("kdc-ha", "kdc", "kdc0"),
            // The billing service's RADIUS accounting to FreeRADIUS.
            ("kdc-lo", "kdc", "lo"),
            ("ha-tr", "tr", "tr-ha"),
            ("tr-pmh", "tr", "tr-pmh"),
            ("tr-pmf", "tr", "tr-pmf"),
            ("pmh-bsh", "bsh", "bsh-pm"),
            ("pmf-bsf", "bsf", "bsf-pm"),
            ("bsh-u1", "u1", "u1-h"),
            ("bsh-u2", "u2", "u2-h"),
            ("bsh-u3", "u3", "u3-h"),
            ("bsf-u1", "u1", "u1-f"),
            ("bsf-u2", "u2", "u2-f"),
        ];
        for (link, host, iface) in links {
            let file = out.join(format!("{link}.pcap"));
            let _ = std::fs::remove_file(&file);
            let mut cmd = Command::new("dumpcap");
            cmd.args(["-q", "-P", "-i", iface, "-w"]).arg(&file);
            let log = self.path(&format!("capture-{link}.log"));
            let idx = self.topo.spawn(host, cmd, Some(&log))?;
            self.captures.push((link.to_owned(), idx, file));
        }
        for (link, idx, file) in &self.captures {
            let log = self.path(&format!("capture-{link}.log"));
            wait_for(
                &format!("the capture on {link}"),
                Duration::from_secs(20),
                || {
                    if let Some(st) = self.topo.child_mut(*idx).try_wait()? {
                        bail!(
                            "dumpcap on {link} exited ({st}): {}",
                            std::fs::read_to_string(&log).unwrap_or_default()
                        );
                    }
                    // dumpcap writes the file header once it captures.
                    Ok(std::fs::metadata(file)
                        .map(|m| m.len() >= 24)
                        .unwrap_or(false))
                },
            )?;
        }
        Ok(())
    }

    /// Stops the captures (SIGINT: dumpcap flushes and closes its file).
    pub fn stop_captures(&mut self) -> Vec<PathBuf> {
        std::thread::sleep(Duration::from_millis(300));
        let mut files = Vec::new();
        for (_, idx, file) in std::mem::take(&mut self.captures) {
            let c = self.topo.child_mut(idx);
            kill(c.id(), libc::SIGINT);
            let _ = c.wait();
            files.push(file);
        }
        files
    }

    /// The key of `u`'s call principal, for its directory entry.
    fn call_keytab(&self, u: &Unit) -> PathBuf {
        self.path(&format!("{}-call.keytab", u.host))
    }

    fn unit_config(&self, name: &str) -> PathBuf {
        self.path(&format!("{name}.toml"))
    }

    /// Writes a unit's configuration and initialises its state file for
    /// `principal`; returns its identity code.
    fn unit_init(&self, name: &str, principal: &str) -> anyhow::Result<String> {
        self.unit_init_from(name, principal, None)
    }

    /// As [`Self::unit_init`]; with `keytab`, the keys the KDC made.
    fn unit_init_from(
        &self,
        name: &str,
        principal: &str,
        keytab: Option<&Path>,
    ) -> anyhow::Result<String> {
        let cfg = self.unit_config(name);
        std::fs::write(
            &cfg,
            format!(
                r#"[unit]
state_file = "{state}"
session_file = "{session}"
manager = "{manager}"

[kerberos]
kdc = "{KDC_ADDR}"

[call]
number = "{number}"
calls_dir = "{calls}"

[log]
level = "info"
"#,
                state = self.path(&format!("{name}-state.toml")).display(),
                session = self.path(&format!("{name}-session.json")).display(),
                manager = HOME_DOMAIN.service(),
                number = [&U1, &U2]
                    .iter()
                    .find(|u| u.host == name)
                    .map_or("", |u| u.number),
                calls = self.path(&format!("{name}-calls")).display(),
            ),
        )?;
        let cfgs = cfg.display().to_string();
        let mut args = vec![
            "unit",
            "init",
            "--config",
            &cfgs,
            "--principal",
            principal,
            "--json",
        ];
        let kts = keytab.map(|k| k.display().to_string());
        if let Some(k) = &kts {
            args.extend(["--keytab", k]);
        }
        let out = roamgate_ok(&args)?;
        let v: Value = serde_json::from_str(out.trim())
            .with_context(|| format!("`roamgate unit init --json` printed {out:?}"))?;
        let code = v["identity_code"]
            .as_str()
            .with_context(|| format!("no identity_code in {v}"))?;
        Ok(code.to_owned())
    }

    /// Realm, principals (the units' from their own state), directory
    /// entries, home agent nodes; starts the KDC, the directory, the home
    /// agent, the proxy managers and the base stations.
    pub fn provision_and_start(&mut self) -> anyhow::Result<()> {
        self.provision_and_start_with(KdcKind::Roamgate)
    }

    /// The same with the realm on MIT krb5kdc: the KDC makes every key,
    /// and the units get theirs by `roamgate unit init --keytab`.
    fn provision_mit(&mut self) -> anyhow::Result<()> {
        let listen: std::net::SocketAddr = KDC_ADDR.parse()?;
        let mit = in_netns(&self.topo.ns("kdc"), move || {
            MitKdc::start_with(MitKdcConfig {
                realm: REALM.to_owned(),
                listen: Some(listen),
                ..MitKdcConfig::default()
            })
        })
        .context("starting MIT krb5kdc in the kdc namespace")?;
        for (p, kt) in [
            (format!("mip/ha@{REALM}"), "ha.keytab"),
            (DIRECTORY_SERVICE.to_owned(), "directory.keytab"),
            (HOME_DOMAIN.service(), "pmh.keytab"),
            (FOREIGN_DOMAIN.service(), "pmf.keytab"),
        ] {
            mit.add_random_principal(&p, &[])?;
            mit.export_keytab(&p, &self.path(kt))?;
        }
        for u in [&U1, &U2] {
            mit.add_random_principal(&u.call_principal(), &[])?;
            mit.export_keytab(&u.call_principal(), &self.call_keytab(u))?;
        }
        for name in ["u1", "u2", "u3"] {
            let principal = format!("{name}@{REALM}");
            let kt = self.path(&format!("{name}.keytab"));
            mit.add_random_principal(&principal, &[])?;
            mit.export_keytab(&principal, &kt)?;
            let code = self.unit_init_from(name, &principal, Some(&kt))?;
            self.codes.push(code);
        }
        self.mit = Some(mit);
        Ok(())
    }

    pub fn provision_and_start_with(&mut self, kdc: KdcKind) -> anyhow::Result<()> {
        let db = self.path("kdc.db");
        if kdc == KdcKind::Mit {
            self.provision_mit()?;
        } else {
            self.provision_roamgate_kdc(&db)?;
        }
        self.provision_rest_and_start(kdc, &db)
    }

    fn provision_roamgate_kdc(&mut self, db: &Path) -> anyhow::Result<()> {
        let dbs = db.display().to_string();
        roamgate_ok(&["kdc", "init", "--realm", REALM, "--db", &dbs])?;
        for (p, kt) in [
            (format!("mip/ha@{REALM}"), "ha.keytab"),
            (DIRECTORY_SERVICE.to_owned(), "directory.keytab"),
            (HOME_DOMAIN.service(), "pmh.keytab"),
            (FOREIGN_DOMAIN.service(), "pmf.keytab"),
        ] {
            add_service(db, &p, &self.path(kt))?;
        }
        for u in [&U1, &U2] {
            add_service(db, &u.call_principal(), &self.call_keytab(u))?;
        }
        add_service(db, BILLING_SERVICE, &self.path("billing.keytab"))?;
        // The units: u1, u2 provisioned everywhere; u3 at the KDC only.
        for name in ["u1", "u2", "u3"] {
            let principal = format!("{name}@{REALM}");
            let code = self.unit_init(name, &principal)?;
            let kt = self.path(&format!("{name}.keytab"));
            let (cfg, kts) = (self.unit_config(name), kt.display().to_string());
            roamgate_ok(&[
                "unit",
                "export-keytab",
                "--config",
                &cfg.display().to_string(),
                "--out",
                &kts,
            ])?;
            roamgate_ok(&[
                "kdc",
                "add-principal",
                "--db",
                &dbs,
                &principal,
                "--keytab",
                &kts,
            ])?;
            self.codes.push(code);
        }
        Ok(())
    }

    fn provision_rest_and_start(&mut self, kdc: KdcKind, db: &Path) -> anyhow::Result<()> {
        // An impostor: u2's name, keys of its own the KDC never saw.
        self.unit_init("impostor", &U2.principal())?;

        let dir_cfg = self.path("directory.toml");
        std::fs::write(
            &dir_cfg,
            format!(
                r#"[directory]
listen = "0.0.0.0:{DIRECTORY_PORT}"
database = "{db}"

[kerberos]
keytab = "{kt}"
service = "{DIRECTORY_SERVICE}"

[metrics]
listen = ""

[log]
level = "info"
"#,
                db = self.path("directory.sqlite").display(),
                kt = self.path("directory.keytab").display(),
            ),
        )?;
        let mut keys = Vec::new();
        for (i, u) in [&U1, &U2].into_iter().enumerate() {
            let key = self.path(&format!("{}-mip.key", u.host));
            write_private(&key, &hex(&roamgate_krb_crypto::random_bytes(32)))?;
            let account = format!(
                "acct-{}-{}",
                u.host,
                hex(&roamgate_krb_crypto::random_bytes(6))
            );
            std::fs::write(self.path(&format!("{}-account.txt", u.host)), &account)?;
            roamgate_ok(&[
                "directory",
                "add-unit",
                "-c",
                &dir_cfg.display().to_string(),
                "--code",
                &self.codes[i],
                "--principal",
                &u.principal(),
                "--home-address",
                &u.home.to_string(),
                "--home-agent",
                &HA.to_string(),
                "--spi",
                &u.spi.to_string(),
                "--mip-key-file",
                &key.display().to_string(),
                "--account",
                &account,
                "--dialled-number",
                u.number,
                "--call-keytab",
                &self.call_keytab(u).display().to_string(),
            ])?;
            keys.push(key);
        }
        let principals = [U1.principal(), U2.principal()];
        let nodes: Vec<HaNode<'_>> = [&U1, &U2]
            .iter()
            .zip(&keys)
            .zip(&principals)
            .map(|((u, k), p)| HaNode {
                home_address: u.home,
                spi: u.spi,
                key_file: k,
                principal: p,
            })
            .collect();
        let ha_cfg = self.path("ha.toml");
        write_ha_config(&ha_cfg, self.dir.path(), REALM, &self.pin_ha, &nodes)?;

        if kdc == KdcKind::Roamgate {
            start_kdc_serve(
                &mut self.topo,
                "kdc",
                db,
                KDC_ADDR,
                &self.dir.path().join("kdc.log"),
            )?;
        }
        self.start_directory("directory.log")?;
        if kdc == KdcKind::Roamgate {
            self.start_billing()?;
        }
        let (stats, log) = (self.path("ha-stats.json"), self.path("ha.log"));
        let ha = start_home_agent(&mut self.topo, "ha", &ha_cfg, &stats, &log)?;
        self.daemons.push(ha);
        self.ha = Some(ha);
        for (i, d) in [&HOME_DOMAIN, &FOREIGN_DOMAIN].into_iter().enumerate() {
            self.start_proxy_manager(d, i)?;
            self.start_base_station(d, i as u32 + 1)?;
        }
        Ok(())
    }

    fn billing_config(&self) -> PathBuf {
        self.path("billing.toml")
    }

    /// `roamgate billing ARGS -c billing.toml`, its stdout.
    fn billing_cli(&self, args: &[&str]) -> anyhow::Result<String> {
        let cfg = self.billing_config().display().to_string();
        let mut all = vec!["billing", args[0], "-c", &cfg];
        all.extend_from_slice(&args[1..]);
        roamgate_ok(&all)
    }

    /// FreeRADIUS and the billing service on the kdc host; u1's account
    /// postpaid, u2's prepaid and empty (its calls cannot be charged).
    fn start_billing(&mut self) -> anyhow::Result<()> {
        let radius = crate::freeradius::FreeRadius::start_in(
            Some(&self.topo.ns("kdc")),
            RADIUS_PORT,
            RADIUS_SECRET,
        )
        .context("starting FreeRADIUS in the kdc namespace")?;
        self.radius = Some(radius);
        let secret = self.path("radius.secret");
        write_private(&secret, RADIUS_SECRET)?;
        std::fs::write(
            self.billing_config(),
            format!(
                r#"[billing]
listen = "{BILLING_ADDR}"
database = "{db}"
# A prepaid call opens when the balance pays for its setup and 1 s: the
# e2e's prepaid call is cut after a few seconds.
minimum_seconds = 1

[kerberos]
keytab = "{kt}"
service = "{BILLING_SERVICE}"

[radius]
server = "127.0.0.1:{RADIUS_PORT}"
secret_file = "{secret}"
nas_identifier = "e2e-home"

[metrics]
listen = ""

[log]
level = "info"
"#,
                db = self.path("billing.sqlite").display(),
                kt = self.path("billing.keytab").display(),
                secret = secret.display(),
            ),
        )?;
        for (u, kind) in [(&U1, "postpaid"), (&U2, "prepaid")] {
            let account = std::fs::read_to_string(self.path(&format!("{}-account.txt", u.host)))?;
            let principal = u.principal();
            let mut args = vec![
                "add-account",
                account.trim(),
                "--principal",
                &principal,
                "--setup-fee",
                "10",
                "--per-second",
                "2",
            ];
            if kind == "postpaid" {
                args.extend(["--postpaid", "--credit-limit", "1000000"]);
            } else {
                args.extend(["--prepaid", "--balance", "0"]);
            }
            self.billing_cli(&args)?;
        }
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.args(["billing", "serve", "-c"])
            .arg(self.billing_config());
        let log = self.path("billing.log");
        let idx = self.topo.spawn("kdc", cmd, Some(&log))?;
        self.billing = Some(idx);
        self.daemons.push(idx);
        wait_for(
            "the billing service to listen",
            Duration::from_secs(10),
            || {
                if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                    bail!("billing exited ({st}): {}", self.log("billing.log"));
                }
                let out = self.topo.exec("kdc", &["ss", "-lnu"])?;
                Ok(String::from_utf8_lossy(&out.stdout).contains(":7760"))
            },
        )
    }

    fn start_directory(&mut self, log: &str) -> anyhow::Result<()> {
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.args(["directory", "serve", "-c"])
            .arg(self.path("directory.toml"));
        let idx = self.topo.spawn("kdc", cmd, Some(&self.path(log)))?;
        self.directory = Some(idx);
        wait_for("the directory to listen", Duration::from_secs(10), || {
            if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                bail!("directory exited ({st}): {}", self.log(log));
            }
            let out = self.topo.exec("kdc", &["ss", "-lnu"])?;
            Ok(String::from_utf8_lossy(&out.stdout).contains(&format!(":{DIRECTORY_PORT}")))
        })
    }

    fn stop_directory(&mut self) -> anyhow::Result<()> {
        let idx = self.directory.take().context("no directory")?;
        let c = self.topo.child_mut(idx);
        kill(c.id(), libc::SIGTERM);
        c.wait()?;
        Ok(())
    }

    fn pm_status_path(&self, d: &Domain) -> PathBuf {
        self.path(&format!("{}-status.json", d.pm))
    }

    fn pm_status(&self, d: &Domain) -> Value {
        read_json(&self.pm_status_path(d))
    }

    fn start_proxy_manager(&mut self, d: &Domain, i: usize) -> anyhow::Result<()> {
        let cfg = self.path(&format!("{}.toml", d.pm));
        let status = self.pm_status_path(d);
        std::fs::write(
            &cfg,
            format!(
                r#"[proxy_manager]
listen = "0.0.0.0:{ATTACH_PORT}"
care_of = "{care_of}"
silence_timeout_secs = 600
status_file = "{status}"
stats_interval_ms = 100

[kerberos]
kdc = "{KDC_ADDR}"
keytab = "{kt}"
service = "{service}"
directory_service = "{DIRECTORY_SERVICE}"
home_agent_service = "mip/ha@{REALM}"

[directory]
address = "{DIRECTORY_ADDR}"

[billing]
address = "{billing}"
service = "{BILLING_SERVICE}"

[dataplane]
interfaces = ["{pm}-tr", "{pm}-bs"]
inside_interfaces = ["{pm}-bs"]
pin_dir = "{pin}"
xdp_mode = "native"

[metrics]
listen = ""

[log]
level = "info"
"#,
                care_of = d.care_of,
                status = status.display(),
                kt = self.path(&format!("{}.keytab", d.pm)).display(),
                service = d.service(),
                pm = d.pm,
                pin = self.pin_pm[i].display(),
                billing = if self.billing.is_some() {
                    BILLING_ADDR
                } else {
                    ""
                },
            ),
        )?;
        let _ = std::fs::remove_file(&status);
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.arg("proxy-manager").arg("--config").arg(&cfg);
        let log = format!("{}.log", d.pm);
        let idx = self.topo.spawn(d.pm, cmd, Some(&self.path(&log)))?;
        self.daemons.push(idx);
        let pid = u64::from(self.topo.child_mut(idx).id());
        wait_for(
            &format!("the proxy manager {}", d.pm),
            Duration::from_secs(20),
            || {
                if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                    bail!("{} exited ({st}): {}", d.pm, self.log(&log));
                }
                Ok(self.pm_status(d)["pid"].as_u64() == Some(pid))
            },
        )?;
        for iface in [format!("{}-tr", d.pm), format!("{}-bs", d.pm)] {
            wait_for(
                &format!("XDP on {} {iface}", d.pm),
                Duration::from_secs(20),
                || self.topo.xdp_attached(d.pm, &iface),
            )
            .with_context(|| self.log(&log))?;
        }
        Ok(())
    }

    fn start_base_station(&mut self, d: &Domain, id: u32) -> anyhow::Result<()> {
        let cfg = self.path(&format!("{}.toml", d.bs));
        let domain = if d.unit_if == "h" {
            REALM
        } else {
            "FOREIGN.TEST"
        };
        std::fs::write(
            &cfg,
            format!(
                r#"[base_station]
id = {id}
domain = "{domain}"
listen = "0.0.0.0:{ATTACH_PORT}"
manager = "{pm}:{ATTACH_PORT}"
stats_file = "{stats}"
stats_interval_ms = 100

# u1 places 20 calls at once (five requests each, both ends): far more
# than one handset's default budget of 10 and 5/s.
[limits]
burst = 200
per_second = 100

[metrics]
listen = ""

[log]
level = "info"
"#,
                pm = d.pm_downlink,
                stats = self.path(&format!("{}-stats.json", d.bs)).display(),
            ),
        )?;
        let mut cmd = Command::new(roamgate_bin()?);
        cmd.arg("base-station").arg("--config").arg(&cfg);
        let log = format!("{}.log", d.bs);
        let idx = self.topo.spawn(d.bs, cmd, Some(&self.path(&log)))?;
        self.daemons.push(idx);
        wait_for(
            &format!("the base station {}", d.bs),
            Duration::from_secs(20),
            || {
                if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                    bail!("{} exited ({st}): {}", d.bs, self.log(&log));
                }
                let out = self.topo.exec(d.bs, &["ss", "-lnu"])?;
                Ok(String::from_utf8_lossy(&out.stdout).contains(&format!(":{ATTACH_PORT}")))
            },
        )
    }

    /// `roamgate unit ARGS --config <name>.toml` in `host`.
    fn unit_cmd(&self, host: &str, name: &str, args: &[&str]) -> anyhow::Result<Command> {
        let mut c = self.topo.command(host, roamgate_bin()?);
        c.arg("unit")
            .arg(args[0])
            .arg("--config")
            .arg(self.unit_config(name))
            .args(&args[1..]);
        Ok(c)
    }

    fn unit_run(&self, host: &str, name: &str, args: &[&str]) -> anyhow::Result<UnitRun> {
        let out = self
            .unit_cmd(host, name, args)?
            .output()
            .with_context(|| format!("roamgate unit {args:?} ({name})"))?;
        Ok(unit_outcome(&out))
    }

    /// `unit switch-on` of `name` from `host` at `d`'s base station.
    fn switch_on(
        &self,
        host: &str,
        name: &str,
        d: &Domain,
        frame: Option<&Path>,
    ) -> anyhow::Result<UnitRun> {
        let (bs, manager) = (d.attach_addr(), d.service());
        let mut args = vec![
            "switch-on",
            "--base-station",
            &bs,
            "--manager",
            &manager,
            "--json",
        ];
        let f = frame.map(|p| p.display().to_string());
        if let Some(f) = &f {
            args.extend(["--write-frame", f]);
        }
        self.unit_run(host, name, &args)
    }

    /// `unit status --json` of `name`.
    fn unit_status(&self, name: &str) -> anyhow::Result<Value> {
        let r = self.unit_run(name, name, &["status", "--json"])?;
        if !r.ok {
            bail!("roamgate unit status ({name}): {}", r.stderr);
        }
        Ok(r.json)
    }

    /// The unit takes its home address (from its status) on its interface
    /// in `d` and sends from it.
    fn adopt_home(&self, u: &Unit, d: &Domain) -> anyhow::Result<Ipv4Addr> {
        let st = self.unit_status(u.host)?;
        let home: Ipv4Addr = st["home_address"]
            .as_str()
            .with_context(|| format!("no home address in {st}"))?
            .parse()?;
        let cidr = format!("{home}/32");
        self.topo.exec_ok(
            u.host,
            &["ip", "addr", "replace", &cidr, "dev", &u.iface(d)],
        )?;
        self.default_route(u, d, Some(home))?;
        Ok(home)
    }

    /// The unit gives its home address up and sends from its link address
    /// at `d`'s base station.
    fn release_home(&self, u: &Unit, d: &Domain) -> anyhow::Result<()> {
        for other in [&HOME_DOMAIN, &FOREIGN_DOMAIN] {
            let _ = self.topo.exec(
                u.host,
                &[
                    "ip",
                    "addr",
                    "del",
                    &format!("{}/32", u.home),
                    "dev",
                    &u.iface(other),
                ],
            );
        }
        self.default_route(u, d, None)
    }

    /// The unit's default route: via `d`'s base station, from `src` if
    /// given (else the outgoing interface's address).
    fn default_route(&self, u: &Unit, d: &Domain, src: Option<Ipv4Addr>) -> anyhow::Result<()> {
        let (via, src) = (d.bs_access.to_string(), src.map(|a| a.to_string()));
        let mut argv = vec!["ip", "route", "replace", "default", "via", &via];
        if let Some(a) = &src {
            argv.extend(["src", a]);
        }
        self.topo.exec_ok(u.host, &argv)?;
        Ok(())
    }

    fn bindings(&self) -> anyhow::Result<Vec<Value>> {
        ha_bindings(&self.pin_ha, &self.path("ha-state/bindings.sqlite"))
    }

    /// The home agent's care-of address for `home`, if bound.
    fn care_of(&self, home: Ipv4Addr) -> anyhow::Result<Option<String>> {
        Ok(self
            .bindings()?
            .iter()
            .find(|b| b["home"] == home.to_string())
            .and_then(|b| b["remote"].as_str().map(str::to_owned)))
    }

    fn wait_care_of(&self, u: &Unit, d: &Domain) -> anyhow::Result<()> {
        let want = d.care_of.to_string();
        wait_for(
            &format!("{}'s binding to {want}", u.host),
            Duration::from_secs(20),
            || Ok(self.care_of(u.home)?.as_deref() == Some(want.as_str())),
        )
        .with_context(|| {
            format!(
                "bindings: {:?}\n{}",
                self.bindings().unwrap_or_default(),
                self.logs_tail()
            )
        })
    }

    /// Whether `d`'s proxy manager lists a proxy for identity code `code`.
    fn pm_has_unit(&self, d: &Domain, code: &str) -> bool {
        self.pm_status(d)["units"]
            .as_array()
            .is_some_and(|a| a.iter().any(|u| u["identity_code"] == code))
    }

    fn pm_refused(&self, d: &Domain, cause: &str) -> u64 {
        self.pm_status(d)["stats"]["refused_by_cause"][cause]
            .as_u64()
            .unwrap_or(0)
    }

    fn pm_stat(&self, d: &Domain, key: &str) -> u64 {
        self.pm_status(d)["stats"][key].as_u64().unwrap_or(0)
    }

    /// Waits one status interval and a bit, so that status files are
    /// current.
    fn settle(&self) {
        std::thread::sleep(Duration::from_millis(400));
    }

    fn pin(&self, d: &Domain) -> &Path {
        if d.pm == HOME_DOMAIN.pm {
            &self.pin_pm[0]
        } else {
            &self.pin_pm[1]
        }
    }

    /// cn pings `u`'s home address five times while `u` is at `d`. Besides
    /// the replies, `d`'s proxy manager's XDP must have decapsulated the
    /// requests (the home agent tunnelled them) and encapsulated the
    /// replies (the reverse tunnel: without it the replies would still
    /// reach cn, routed straight to the home link).
    fn reach(&self, u: &Unit, d: &Domain, c: &mut Checks) -> anyhow::Result<Value> {
        let h = u.home.to_string();
        // The first exchange resolves every neighbour on the way.
        let _ = wait_for(&format!("cn -> {h}"), Duration::from_secs(5), || {
            Ok(self
                .topo
                .exec("cn", &["ping", "-c", "1", "-W", "1", &h])?
                .status
                .success())
        });
        let before = counters(self.pin(d))?;
        let out = self
            .topo
            .exec("cn", &["ping", "-c", "5", "-i", "0.2", "-W", "1", &h])?;
        let after = counters(self.pin(d))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let num = |what: &str| -> u64 {
            text.lines()
                .find(|l| l.contains("packets transmitted"))
                .and_then(|l| {
                    l.split(',')
                        .find(|p| p.contains(what))
                        .and_then(|p| p.split_whitespace().next())
                        .and_then(|n| n.parse().ok())
                })
                .unwrap_or(0)
        };
        let (tx, rx) = (num("transmitted"), num("received"));
        let (decap, encap) = (
            delta(&before, &after, "tunnel_decap"),
            delta(&before, &after, "tunnel_encap"),
        );
        c.expect(
            tx == 5 && rx == 5 && decap >= 5 && encap >= 5,
            format!(
                "cn -> {} at {}: {rx}/{tx} pings answered; {}'s XDP decapsulated {decap}, \
                 encapsulated {encap}",
                u.host, d.bs, d.pm
            ),
        );
        Ok(json!({"pings": format!("{rx}/{tx}"), "decap": decap, "encap": encap}))
    }

    /// Sends `frame` from `host` to `d`'s base station; the answer, if one
    /// comes within 2 s.
    fn send_frame(
        &self,
        host: &str,
        d: &Domain,
        frame: Vec<u8>,
    ) -> anyhow::Result<Option<Vec<u8>>> {
        let bs = SocketAddr::new(d.bs_access.into(), ATTACH_PORT);
        in_netns(&self.topo.ns(host), move || {
            let s = UdpSocket::bind("0.0.0.0:0")?;
            s.set_read_timeout(Some(Duration::from_secs(2)))?;
            s.send_to(&frame, bs)?;
            let mut buf = [0u8; 4096];
            match s.recv(&mut buf) {
                Ok(n) => Ok(Some(buf[..n].to_vec())),
                Err(_) => Ok(None),
            }
        })
    }
}

/// The exit status, stdout JSON and stderr of a `roamgate unit` command.
fn unit_outcome(out: &std::process::Output) -> UnitRun {
    let stdout = String::from_utf8_lossy(&out.stdout);
    UnitRun {
        ok: out.status.success(),
        json: serde_json::from_str(stdout.trim()).unwrap_or(Value::Null),
        stderr: format!("{}{}", stdout, String::from_utf8_lossy(&out.stderr)),
    }
}

fn last_line(s: &str) -> &str {
    s.trim().lines().last().unwrap_or_default()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    let s = s.trim();
    (0..s.len() / 2)
        .filter_map(|i| u8::from_str_radix(&s[2 * i..2 * i + 2], 16).ok())
        .collect()
}

/// The refusal cause of an attach answer (docs/attach.md §3.3): a 32-byte
/// Refused frame, possibly inside a relay envelope.
fn refusal_cause(answer: &[u8]) -> Option<u8> {
    (answer.len() == 32 && answer[0] == 1 && answer[1] == 3).then(|| answer[29])
}

const CAUSE_REPLAYED: u8 = 3;
const CAUSE_TAMPERED: u8 = 7;

/// Asks the directory, from `host`, for `code` as `principal` (keys from
/// `keytab`): a TGT, a directory ticket, the request. The directory's
/// answer as the client opened it.
fn directory_lookup(
    topo: &Topology,
    host: &str,
    principal: &str,
    keytab: &Path,
    code: &str,
) -> anyhow::Result<Result<(), roamgate_directory::client::ClientError>> {
    use roamgate_krb::{
        client::{get_service_ticket, get_tgt, AsOptions, ClientSecret, KdcTransport},
        keytab::Keytab,
        Principal,
    };
    let principal = Principal::parse(principal).map_err(|e| anyhow::anyhow!("{e}"))?;
    let service = Principal::parse(DIRECTORY_SERVICE).map_err(|e| anyhow::anyhow!("{e}"))?;
    let kt = Keytab::load(keytab).with_context(|| format!("reading {}", keytab.display()))?;
    let keys: Vec<_> = kt.keys_for(&principal).map(|e| e.key.clone()).collect();
    let code: roamgate_directory::IdentityCode = code.parse()?;
    in_netns(&topo.ns(host), move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let cred = rt.block_on(async {
            let kdc = KdcTransport::new(KDC_ADDR);
            let tgt = get_tgt(
                &kdc,
                principal,
                ClientSecret::Keys(keys),
                AsOptions::default(),
                SystemTime::now,
            )
            .await?;
            get_service_ticket(&kdc, &tgt, service, SystemTime::now).await
        })?;
        let (req, pending) =
            roamgate_directory::client::build_request(&cred, code, SystemTime::now())?;
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.set_read_timeout(Some(Duration::from_secs(3)))?;
        s.send_to(&req, DIRECTORY_ADDR)?;
        let mut buf = [0u8; 4096];
        let n = s.recv(&mut buf).context("no answer from the directory")?;
        Ok(pending.open(&buf[..n], SystemTime::now()).map(|_| ()))
    })
}

/// Bytes that must cross no link in clear.
struct Secrets {
    /// (what, bytes)
    items: Vec<(String, Vec<u8>)>,
    /// The units' home addresses (only in attach and directory payloads).
    homes: Vec<Ipv4Addr>,
}

/// What tshark made of one capture.
struct Decoded {
    packets: u64,
    /// Packets with a Kerberos, Mobile IP message.
    kerberos: u64,
    mip: u64,
    /// Malformed packets and expert infos at warning level or above, one
    /// line each as tshark lists them.
    problems: Vec<String>,
}

/// (a) tshark decodes `file` with no malformed packet and no expert info
/// at warning level or above.
fn tshark_decode(file: &Path) -> anyhow::Result<Decoded> {
    let all = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args(["-T", "fields", "-e", "frame.protocols"])
        .output()
        .context("running tshark")?;
    if !all.status.success() {
        bail!(
            "tshark -r {}: {}",
            file.display(),
            String::from_utf8_lossy(&all.stderr)
        );
    }
    let protocols = String::from_utf8_lossy(&all.stdout);
    let with = |p: &str| {
        protocols
            .lines()
            .filter(|l| l.split(':').any(|x| x == p))
            .count() as u64
    };
    let (packets, kerberos, mip) = (
        protocols.lines().count() as u64,
        with("kerberos"),
        with("mip"),
    );
    // PI_WARN is 0x00600000 (epan/proto.h); errors are above it.
    let out = Command::new("tshark")
        .arg("-r")
        .arg(file)
        .args([
            "-Y",
            crate::call_capture::PROBLEM_FILTER,
            "-T",
            "fields",
            "-e",
            "frame.number",
            "-e",
            "_ws.col.Protocol",
            "-e",
            "_ws.expert.message",
            "-e",
            "_ws.col.Info",
        ])
        .output()?;
    if !out.status.success() {
        bail!(
            "tshark -r {} -Y ...: {}",
            file.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let problems = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_owned)
        .collect();
    Ok(Decoded {
        packets,
        kerberos,
        mip,
        problems,
    })
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// UDP payloads of IPv4-in-Ethernet frames to or from `port`.
fn udp_payloads(frames: &[Vec<u8>], port: u16) -> Vec<Vec<u8>> {
    frames
        .iter()
        .filter_map(|f| {
            if f.len() < 14 + 20 + 8 || f[12..14] != [0x08, 0x00] || f[14 + 9] != 17 {
                return None;
            }
            // Only first fragments carry the UDP header.
            if u16::from_be_bytes([f[14 + 6], f[14 + 7]]) & 0x1fff != 0 {
                return None;
            }
            let ihl = usize::from(f[14] & 0x0f) * 4;
            let udp = 14 + ihl;
            let (sport, dport) = (
                u16::from_be_bytes([*f.get(udp)?, *f.get(udp + 1)?]),
                u16::from_be_bytes([*f.get(udp + 2)?, *f.get(udp + 3)?]),
            );
            (sport == port || dport == port).then(|| f.get(udp + 8..).unwrap_or_default().to_vec())
        })
        .collect()
}

/// Checks every capture: (a) tshark, (b) secrets anywhere in the raw file,
/// (c) home addresses in attach and directory payloads.
fn check_pcaps(files: &[PathBuf], secrets: &Secrets, checks: &mut Checks) -> anyhow::Result<Value> {
    let mut per_file = serde_json::Map::new();
    let mut attach_payloads = 0usize;
    let mut directory_payloads = 0usize;
    let mut total_packets = 0u64;
    let (mut total_kerberos, mut total_mip) = (0u64, 0u64);
    let mut dirty = 0usize;
    let mut leaks = Vec::new();
    for f in files {
        let name = f
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let Decoded {
            packets,
            kerberos,
            mip,
            problems,
        } = tshark_decode(f)?;
        total_packets += packets;
        total_kerberos += kerberos;
        total_mip += mip;
        if !problems.is_empty() {
            dirty += 1;
        }
        checks.expect(
            problems.is_empty(),
            format!(
                "{name}: tshark reports {} malformed or warning+ packets: {:?}",
                problems.len(),
                problems.iter().take(5).collect::<Vec<_>>()
            ),
        );
        let raw = std::fs::read(f)?;
        for (what, bytes) in &secrets.items {
            // RFC 2866 accounting carries the account (User-Name) in
            // clear: the billing host's own link to its RADIUS server is
            // the operator's back office (docs/billing.md). Keys never.
            if name == "kdc-lo.pcap" && what.ends_with("account") {
                continue;
            }
            if contains(&raw, bytes) {
                leaks.push(format!("{what} in {name}"));
            }
        }
        let frames = read_pcap(f)?;
        for (port, n) in [
            (ATTACH_PORT, &mut attach_payloads),
            (DIRECTORY_PORT, &mut directory_payloads),
        ] {
            for p in udp_payloads(&frames, port) {
                *n += 1;
                for h in &secrets.homes {
                    if contains(&p, &h.octets()) {
                        leaks.push(format!(
                            "home address {h} in a UDP {port} payload in {name}"
                        ));
                    }
                }
            }
        }
        per_file.insert(
            name,
            json!({"packets": packets, "kerberos": kerberos, "mip": mip, "tshark_problems": problems.len()}),
        );
    }
    checks.expect(leaks.is_empty(), format!("in clear: {leaks:?}"));
    checks.expect(
        total_kerberos > 0 && total_mip > 0,
        format!("tshark decoded {total_kerberos} Kerberos and {total_mip} Mobile IP packets"),
    );
    checks.expect(
        attach_payloads > 0 && directory_payloads > 0,
        format!("captured {attach_payloads} attach and {directory_payloads} directory datagrams"),
    );
    Ok(json!({
        "files": per_file,
        "packets": total_packets,
        "kerberos_packets": total_kerberos,
        "mip_packets": total_mip,
        "files_with_tshark_problems": dirty,
        "secrets_checked": secrets.items.len(),
        "secrets_in_clear": leaks,
        "attach_datagrams": attach_payloads,
        "directory_datagrams": directory_payloads,
    }))
}

/// What must never cross a link in clear: the MIP keys, every long-term
/// key the KDC holds for the units and services (from their keytabs), and
/// the accounts.
fn secrets(s: &SwitchOn) -> anyhow::Result<Secrets> {
    let mut items = Vec::new();
    for u in [&U1, &U2] {
        let key = std::fs::read_to_string(s.path(&format!("{}-mip.key", u.host)))?;
        items.push((format!("{}'s MIP key", u.host), unhex(&key)));
        let account = std::fs::read_to_string(s.path(&format!("{}-account.txt", u.host)))?;
        items.push((format!("{}'s account", u.host), account.into_bytes()));
    }
    for kt in [
        "u1",
        "u2",
        "u3",
        "ha",
        "directory",
        "pmh",
        "pmf",
        "u1-call",
        "u2-call",
    ] {
        let k = roamgate_krb::keytab::Keytab::load(&s.path(&format!("{kt}.keytab")))?;
        for e in &k.entries {
            items.push((
                format!(
                    "{} key of {} (etype {})",
                    kt,
                    e.principal,
                    e.key.etype().to_i32()
                ),
                e.key.as_bytes().to_vec(),
            ));
        }
    }
    Ok(Secrets {
        items,
        homes: vec![U1.home, U2.home],
    })
}

/// Runs the whole scenario; returns the result object and the list of
/// failed expectations.
pub fn run() -> anyhow::Result<(Value, Vec<String>)> {
    let t0 = Instant::now();
    let mut c = Checks::default();
    let mut s = SwitchOn::build()?;
    s.start_captures()?;
    s.provision_and_start()?;
    let (h, f) = (&HOME_DOMAIN, &FOREIGN_DOMAIN);
    let code = |i: usize| s.codes[i].clone();
    let (code1, code3) = (code(0), code(2));

    // 1. u1 and u2 switch on at home.
    let mut switch_on_ms = Vec::new();
    let mut switched_on = 0u64;
    let frames = [s.path("u1-switch-on.bin"), s.path("u2-switch-on.bin")];
    for (u, frame) in [&U1, &U2].into_iter().zip(&frames) {
        let r = s.switch_on(u.host, u.host, h, Some(frame))?;
        if !r.ok {
            bail!(
                "{} did not switch on at {}: {}\n{}",
                u.host,
                h.bs,
                r.stderr,
                s.logs_tail()
            );
        }
        switched_on += 1;
        c.expect(
            r.json["switched_on"] == true && r.json["previous"].is_null(),
            format!("{}'s switch-on answer: {}", u.host, r.json),
        );
        if let Some(ms) = r.json["switch_on_ms"].as_f64() {
            switch_on_ms.push(ms);
        }
    }
    for u in [&U1, &U2] {
        s.wait_care_of(u, h)?;
        let home = s.adopt_home(u, h)?;
        c.expect(home == u.home, format!("{}'s home address {home}", u.host));
        let st = s.unit_status(u.host)?;
        c.expect(
            st["state"] == "attached" && st["care_of"] == h.care_of.to_string(),
            format!("{}'s status at home: {st}", u.host),
        );
    }
    let mut reach = serde_json::Map::new();
    for u in [&U1, &U2] {
        reach.insert(format!("{}_home", u.host), s.reach(u, h, &mut c)?);
    }

    // 1b. u2 switches on again where it is: its new proxy replaces the
    // old one, with one binding, and u2 stays reachable.
    let replaced_before = s.pm_stat(h, "replaced");
    let r = s.switch_on("u2", "u2", h, None)?;
    c.expect(r.ok, format!("u2's second switch-on at home: {}", r.stderr));
    if r.ok {
        switched_on += 1;
        switch_on_ms.extend(r.json["switch_on_ms"].as_f64());
    }
    s.settle();
    let replaced = s.pm_stat(h, "replaced") - replaced_before;
    let pm_proxies = s.pm_status(h)["proxies"].as_u64();
    let u2_bindings = s
        .bindings()?
        .iter()
        .filter(|b| b["home"] == U2.home.to_string())
        .count();
    let switch_on_again_ok = r.ok && replaced == 1 && pm_proxies == Some(2) && u2_bindings == 1;
    c.expect(
        switch_on_again_ok,
        format!(
            "u2 switched on again: replaced {replaced}, {} proxies at {}, {u2_bindings} \
             bindings for u2",
            pm_proxies.unwrap_or(0),
            h.pm
        ),
    );
    reach.insert("u2_again".into(), s.reach(&U2, h, &mut c)?);

    // 1c. Calls between u1 and u2 (issue 12).
    let calls = calls::run(&mut s, &mut c)?;
    switched_on += calls.switch_ons;
    // The KDC's and the directory's side of the home agent (not the home
    // link) reaches the units too: their answers to a unit's home address
    // enter the tunnel at the home agent's XDP on that interface.
    let out = s.topo.exec(
        "kdc",
        &[
            "ping",
            "-c",
            "3",
            "-i",
            "0.2",
            "-W",
            "1",
            &U2.home.to_string(),
        ],
    )?;
    let kdc_side = String::from_utf8_lossy(&out.stdout)
        .lines()
        .find(|l| l.contains("packets transmitted"))
        .unwrap_or("")
        .to_owned();
    c.expect(
        out.status.success() && kdc_side.contains(" 0% packet loss"),
        format!("kdc -> u2's home address: {kdc_side}"),
    );
    reach.insert("u2_from_kdc".into(), json!(kdc_side));

    // 2. u1 moves to the foreign domain.
    s.default_route(&U1, f, None)?;
    let r = s.switch_on("u1", "u1", f, None)?;
    if !r.ok {
        bail!(
            "u1 did not switch on at {}: {}\n{}",
            f.bs,
            r.stderr,
            s.logs_tail()
        );
    }
    switched_on += 1;
    if let Some(ms) = r.json["switch_on_ms"].as_f64() {
        switch_on_ms.push(ms);
    }
    c.expect(
        r.json["previous"]["switched_off"] == true,
        format!("u1's move did not switch off at {}: {}", h.bs, r.json),
    );
    s.wait_care_of(&U1, f)?;
    s.release_home(&U1, f)?;
    s.adopt_home(&U1, f)?;
    s.settle();
    let old_proxy_gone = !s.pm_has_unit(h, &code1);
    c.expect(
        old_proxy_gone,
        format!(
            "{} still has a proxy for u1 after the move: {}",
            h.pm,
            s.pm_status(h)
        ),
    );
    c.expect(
        s.pm_has_unit(f, &code1),
        format!(
            "{} has no proxy for u1 after the move: {}",
            f.pm,
            s.pm_status(f)
        ),
    );
    reach.insert("u1_foreign".into(), s.reach(&U1, f, &mut c)?);

    // 3. Attacks.
    // Replay: u1's first switch-on frame again, from u1, at home.
    let replayed_before = s.pm_refused(h, "Replayed");
    let proxies_before = s.pm_status(h)["proxies"].as_u64();
    let frame1 = std::fs::read(&frames[0]).context("u1's saved switch-on frame")?;
    let answer = s.send_frame("u1", h, frame1)?;
    s.settle();
    let replay_answer = answer.as_deref().and_then(refusal_cause);
    let replay_counted = s.pm_refused(h, "Replayed") > replayed_before;
    let replay_no_proxy =
        !s.pm_has_unit(h, &code1) && s.pm_status(h)["proxies"].as_u64() == proxies_before;
    let switch_on_replayed_rejected =
        u64::from(replay_answer == Some(CAUSE_REPLAYED) && replay_counted && replay_no_proxy);
    c.expect(
        switch_on_replayed_rejected == 1,
        format!(
            "replayed switch-on: answer cause {replay_answer:?}, counted {replay_counted}, \
             no new proxy {replay_no_proxy}"
        ),
    );
    // Forged: one bit of the identity code in u2's saved frame, from u3.
    let tampered_before = s.pm_refused(h, "Tampered");
    let mut forged = std::fs::read(&frames[1]).context("u2's saved switch-on frame")?;
    forged[4] ^= 0x01;
    let answer = s.send_frame("u3", h, forged)?;
    s.settle();
    let forged_answer = answer.as_deref().and_then(refusal_cause);
    let forged_counted = s.pm_refused(h, "Tampered") > tampered_before;
    let tampered_rejected = forged_answer == Some(CAUSE_TAMPERED) && forged_counted;
    c.expect(
        tampered_rejected,
        format!("tampered switch-on: answer cause {forged_answer:?}, counted {forged_counted}"),
    );
    // An impostor: u2's name, keys the KDC does not know.
    let ok_before = s.pm_stat(h, "switch_ons_ok");
    let imp = s.switch_on("u3", "impostor", h, None)?;
    s.settle();
    let impostor_rejected = !imp.ok && s.pm_stat(h, "switch_ons_ok") == ok_before;
    c.expect(
        impostor_rejected,
        format!(
            "a unit with keys the KDC does not know switched on: {}",
            imp.stderr
        ),
    );
    let switch_on_forged_rejected = u64::from(tampered_rejected) + u64::from(impostor_rejected);
    // Unknown identity code: u3 is at the KDC, not in the directory.
    let unknown_before = s.pm_refused(h, "UnknownUnit");
    let u3 = s.switch_on("u3", "u3", h, None)?;
    s.settle();
    let unknown_rejected = !u3.ok
        && u3.stderr.contains("UnknownUnit")
        && s.pm_refused(h, "UnknownUnit") > unknown_before
        && !s.pm_has_unit(h, &code3);
    c.expect(
        unknown_rejected,
        format!(
            "unknown unit: exit ok {}, {}; counted {}",
            u3.ok,
            u3.stderr.trim(),
            s.pm_refused(h, "UnknownUnit") - unknown_before
        ),
    );
    // The directory: the proxy manager's own identity, and u2, ask for u1.
    let mut directory_unauthorised_rejected = 0u64;
    let mut dir_answers = Vec::new();
    for (who, host, principal, kt) in [
        ("pmh", "pmh", h.service(), "pmh.keytab"),
        ("u2", "u2", U2.principal(), "u2.keytab"),
    ] {
        // No answer at all is a failed expectation, not a broken scenario.
        let r = directory_lookup(&s.topo, host, &principal, &s.path(kt), &code1)
            .map_err(|e| format!("{e:#}"));
        let refused = matches!(
            &r,
            Ok(Err(roamgate_directory::client::ClientError::Refused {
                reason: roamgate_directory::wire::Reason::NotAuthorised,
                ..
            }))
        );
        let audited = roamgate_directory::SqliteStore::open(&s.path("directory.sqlite"))
            .ok()
            .and_then(|st| {
                use roamgate_directory::DirectoryStore as _;
                st.audit_log(1000).ok()
            })
            .is_some_and(|log| {
                log.iter().any(|e| {
                    e.code.is_some_and(|c| c.to_string() == code1)
                        && e.client.as_deref() == Some(principal.as_str())
                        && e.outcome.starts_with("refused")
                })
            });
        c.expect(
            refused && audited,
            format!("directory asked by {who} for u1: {r:?}, audited {audited}"),
        );
        directory_unauthorised_rejected += u64::from(refused && audited);
        dir_answers.push(json!({"who": who, "answer": format!("{r:?}"), "audited": audited}));
    }

    // 4. The directory goes down during a switch-on of u2 (switched off
    // first), and is back within 2 s.
    let off = s.unit_run("u2", "u2", &["switch-off", "--json"])?;
    c.expect(off.ok, format!("u2's switch-off: {}", off.stderr));
    s.release_home(&U2, h)?;
    wait_for("u2's binding to go", Duration::from_secs(10), || {
        Ok(s.care_of(U2.home)?.is_none())
    })?;
    s.stop_directory()?;
    let pm_log_mark = s.log("pmh.log").len();
    let started = Instant::now();
    let child: Child = s
        .unit_cmd(
            "u2",
            "u2",
            &[
                "switch-on",
                "--base-station",
                &h.attach_addr(),
                "--manager",
                &h.service(),
                "--json",
            ],
        )?
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    std::thread::sleep(Duration::from_millis(1500));
    s.start_directory("directory-2.log")?;
    let out = child.wait_with_output()?;
    let directory_down_switch_on_s = started.elapsed().as_secs_f64();
    let down = unit_outcome(&out);
    let pm_log = s.log("pmh.log");
    let retry_lines: Vec<&str> = pm_log[pm_log_mark.min(pm_log.len())..]
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("director") && (l.contains("retry") || l.contains("backoff"))
        })
        .map(|l| l.split_once("proxy_manager: ").map_or(l, |(_, m)| m))
        .collect();
    c.expect(
        down.ok,
        format!(
            "switch-on while the directory was down for 1.5 s: {}\n{}",
            down.stderr,
            s.log_tail("pmh.log", 20)
        ),
    );
    c.expect(
        !retry_lines.is_empty(),
        "the proxy manager's log says nothing about retrying the directory".to_owned(),
    );
    if down.ok {
        switched_on += 1;
        s.wait_care_of(&U2, h)?;
        s.adopt_home(&U2, h)?;
    }

    // 5. Both switch off.
    let mut off_ok = true;
    for (u, d) in [(&U1, f), (&U2, h)] {
        let r = s.unit_run(u.host, u.host, &["switch-off", "--json"])?;
        c.expect(r.ok, format!("{}'s switch-off: {}", u.host, r.stderr));
        off_ok &= r.ok;
        s.release_home(u, d)?;
    }
    let proxies = || {
        [h, f]
            .iter()
            .map(|d| s.pm_status(d)["proxies"].as_u64().unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add)
    };
    let maps_left = || -> anyhow::Result<(usize, usize)> {
        let mut b = 0;
        let mut t = 0;
        for p in &s.pin_pm {
            let m = roamgate::dataplane::maps::Maps::open(p)?;
            b += m.list()?.len();
            t += m.tunnel_count();
        }
        Ok((b, t))
    };
    let _ = wait_for(
        "everything to go after switch-off",
        Duration::from_secs(10),
        || Ok(proxies() == 0 && s.bindings()?.is_empty() && maps_left()? == (0, 0)),
    );
    s.settle();
    let proxies_after_switch_off = proxies();
    let bindings_after_switch_off = s.bindings()?.len();
    let (pm_bindings_left, pm_tunnels_left) = maps_left()?;
    c.expect(
        proxies_after_switch_off == 0,
        format!("{proxies_after_switch_off} proxies after switch-off"),
    );
    c.expect(
        bindings_after_switch_off == 0,
        format!("{bindings_after_switch_off} bindings at the home agent after switch-off"),
    );
    c.expect(
        pm_bindings_left == 0 && pm_tunnels_left == 0,
        format!(
            "the proxy managers' maps hold {pm_bindings_left} bindings and {pm_tunnels_left} \
             tunnels after switch-off"
        ),
    );

    let switch_ons_ok = s.pm_stat(h, "switch_ons_ok") + s.pm_stat(f, "switch_ons_ok");
    c.expect(
        switch_ons_ok == switched_on,
        format!("the proxy managers counted {switch_ons_ok} switch-ons, the units {switched_on}"),
    );
    let refused: Value = json!({
        h.pm: s.pm_status(h)["stats"]["refused_by_cause"],
        f.pm: s.pm_status(f)["stats"]["refused_by_cause"],
    });

    // 6. The captures.
    let files = s.stop_captures();
    let secrets = secrets(&s)?;
    let pcap_report = check_pcaps(&files, &secrets, &mut c)?;
    let call_pcaps = calls::check_captures(&files, &calls.media_ports, &mut c)?;
    let pcaps: Vec<String> = files
        .iter()
        .map(|f| f.strip_prefix(root()).unwrap_or(f).display().to_string())
        .collect();

    let result = json!({
        "switch_on_ms_p50": percentile(&switch_on_ms, 0.5),
        "switch_on_ms": switch_on_ms,
        "switch_ons_ok": switch_ons_ok,
        "switch_on_forged_rejected": switch_on_forged_rejected,
        "switch_on_replayed_rejected": switch_on_replayed_rejected,
        "switch_on_unknown_rejected": u64::from(unknown_rejected),
        "switch_on_refusals": {
            "impostor": last_line(&imp.stderr),
            "unknown": last_line(&u3.stderr),
        },
        "directory_unauthorised_rejected": directory_unauthorised_rejected,
        "directory_unauthorised_answers": dir_answers,
        "directory_down_switch_on_ok": down.ok,
        "directory_down_switch_on_s": directory_down_switch_on_s,
        "directory_down_retries_logged": retry_lines,
        "switch_on_reachability": reach,
        "moved_old_proxy_gone": old_proxy_gone,
        "switch_on_again_replaced_ok": switch_on_again_ok,
        "switch_offs_ok": off_ok,
        "proxies_after_switch_off": proxies_after_switch_off,
        "bindings_after_switch_off": bindings_after_switch_off,
        "pm_map_bindings_after_switch_off": pm_bindings_left,
        "pm_map_tunnels_after_switch_off": pm_tunnels_left,
        "pm_refused_by_cause": refused,
        "pcap_check": pcap_report,
        "call_pcap_check": call_pcaps,
        "pcaps": pcaps,
        "switch_on_elapsed_s": t0.elapsed().as_secs_f64(),
    });
    let mut result = result;
    if let (Value::Object(r), Value::Object(calls)) = (&mut result, calls.result) {
        r.extend(calls);
    }
    Ok((result, c.0))
}

/// The switch-on flow with MIT krb5kdc as the realm's KDC (issue 11, "real
/// peers"): the same roles and configs, only `kerberos.kdc` points at MIT.
/// u1 switches on at home, is reachable through the tunnel, moves to the
/// foreign domain and switches off; nothing is left behind.
pub fn run_mit() -> anyhow::Result<(Value, Vec<String>)> {
    let t0 = Instant::now();
    let mut c = Checks::default();
    let mut s = SwitchOn::build()?;
    s.provision_and_start_with(KdcKind::Mit)?;
    let (h, f) = (&HOME_DOMAIN, &FOREIGN_DOMAIN);
    let code1 = s.codes[0].clone();
    let mut switch_on_ms = Vec::new();

    let r = s.switch_on("u1", "u1", h, None)?;
    if !r.ok {
        bail!(
            "u1 did not switch on at {} with MIT krb5kdc: {}\n{}",
            h.bs,
            r.stderr,
            s.logs_tail()
        );
    }
    switch_on_ms.extend(r.json["switch_on_ms"].as_f64());
    s.wait_care_of(&U1, h)?;
    let home = s.adopt_home(&U1, h)?;
    c.expect(home == U1.home, format!("u1's home address {home}"));
    let st = s.unit_status("u1")?;
    c.expect(
        st["state"] == "attached" && st["care_of"] == h.care_of.to_string(),
        format!("u1's status at home: {st}"),
    );
    let mut reach = serde_json::Map::new();
    reach.insert("u1_home".into(), s.reach(&U1, h, &mut c)?);

    s.default_route(&U1, f, None)?;
    let r = s.switch_on("u1", "u1", f, None)?;
    c.expect(r.ok, format!("u1's move with MIT krb5kdc: {}", r.stderr));
    switch_on_ms.extend(r.json["switch_on_ms"].as_f64());
    c.expect(
        r.json["previous"]["switched_off"] == true,
        format!("u1's move did not switch off at {}: {}", h.bs, r.json),
    );
    if r.ok {
        s.wait_care_of(&U1, f)?;
        s.release_home(&U1, f)?;
        s.adopt_home(&U1, f)?;
        s.settle();
        c.expect(
            !s.pm_has_unit(h, &code1) && s.pm_has_unit(f, &code1),
            "after the move u1's proxy is not (only) at the foreign proxy manager".to_owned(),
        );
        reach.insert("u1_foreign".into(), s.reach(&U1, f, &mut c)?);
    }

    let off = s.unit_run("u1", "u1", &["switch-off", "--json"])?;
    c.expect(off.ok, format!("u1's switch-off: {}", off.stderr));
    s.release_home(&U1, f)?;
    let proxies = || {
        [h, f]
            .iter()
            .map(|d| s.pm_status(d)["proxies"].as_u64().unwrap_or(u64::MAX))
            .fold(0u64, u64::saturating_add)
    };
    let _ = wait_for(
        "u1's proxy and binding to go",
        Duration::from_secs(10),
        || Ok(proxies() == 0 && s.bindings()?.is_empty()),
    );
    let (proxies_left, bindings_left) = (proxies(), s.bindings()?.len());
    c.expect(
        proxies_left == 0 && bindings_left == 0,
        format!("{proxies_left} proxies and {bindings_left} bindings after switch-off"),
    );
    let mit_log = s.mit.as_ref().map(|m| m.log()).unwrap_or_default();
    let issued = mit_log.matches("ISSUE:").count();
    c.expect(
        issued > 0,
        "MIT krb5kdc's log shows no ticket issued: the roles did not use it".to_owned(),
    );
    Ok((
        json!({
            "kdc": "mit-krb5kdc",
            "switch_on_ms": switch_on_ms,
            "reachability": reach,
            "mit_tickets_issued": issued,
            "proxies_after_switch_off": proxies_left,
            "bindings_after_switch_off": bindings_left,
            "elapsed_s": t0.elapsed().as_secs_f64(),
        }),
        c.0,
    ))
}
