//! `cargo xtask demo`: the whole system in network namespaces, narrated.
//!
//! ```text
//!  u1 alice u1-h 10.78.0.11 ─┐                                        IP network
//!  u2 bob   u2-h 10.78.0.12 ─┼─ [sw] ── gw-acc 10.78.0.1 [gw] gw-up 10.79.0.1 ── [tr] ── 10.80.0.2 [pmf] 10.30.0.1 ── [bsf] br0 10.31.0.1 ── u2-f 10.31.0.12 (bob, away)
//!                  home access network (a switch)  home gateway                      foreign proxy manager   foreign base station
//! ```
//!
//! - `gw` runs `roamgate gateway`, the whole home domain in one process: the
//!   XDP data plane on its uplink and its access side, the home agent, the
//!   KDC, directory and billing on SQLite, a proxy manager and a base
//!   station. Its first run creates the realm; the demo provisions two
//!   units with the commands it printed, run as printed.
//! - `pmf` and `bsf` are a foreign domain: a proxy manager (XDP on its
//!   uplink and its base-station side) with a key of the home realm, and a
//!   base station.
//! - `tr` is the IP network between them; the captures are taken there and
//!   on the two access networks.
//!
//! The story: both units switch on at home; alice calls bob; mid-call bob
//! walks to the foreign domain (switch-on there, his proxy registers the
//! foreign care-of address with the home agent, his voice now crosses the
//! IP network in the authenticated tunnel); the call ends and is charged;
//! then an attacker on the IP network sends a forged tunnel frame, replays
//! a captured one and replays bob's captured registration: each is
//! dropped and counted. Everything is measured; nothing is left behind.

use std::{
    io::Write as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};

use crate::{
    home_gateway::{self as gateway, for_unit, printed_commands, run_in, status, Pins},
    mobility::counters,
    netns::{roamgate_bin, root, wait_for, Topology},
};

const REALM: &str = "HOME.DEMO";
const GW: &str = "10.79.0.1";
const TR_GW: &str = "10.79.0.2";
const PMF_UP: &str = "10.80.0.2";
const PMF_BS: &str = "10.30.0.1";
const BSF_PM: &str = "10.30.0.2";
const BSF_ACCESS: &str = "10.31.0.1";
const HOME_NET: &str = "10.78.0.0/24";
const PM_PORT: u16 = 4341;
const BS_PORT: u16 = 4340;
/// The routing table of the foreign base station for what comes from its
/// access network.
const ACCESS_TABLE: &str = "100";

/// A unit: host, name, home address, number, MIP SPI.
struct Unit {
    host: &'static str,
    name: &'static str,
    home: &'static str,
    number: &'static str,
    spi: &'static str,
}

const ALICE: Unit = Unit {
    host: "u1",
    name: "alice",
    home: "10.78.0.51",
    number: "4930100051",
    spi: "257",
};
const BOB: Unit = Unit {
    host: "u2",
    name: "bob",
    home: "10.78.0.52",
    number: "4930100052",
    spi: "258",
};

/// Where the pcaps go: `target/demo/` in the workspace.
pub fn pcap_dir() -> PathBuf {
    root().join("target/demo")
}

/// The steps as they run: `[n/N] what … figure (ms)`.
struct Progress {
    n: usize,
    total: usize,
    t0: Instant,
    step: Instant,
}

impl Progress {
    const STEPS: usize = 10;

    fn new() -> Self {
        Self {
            n: 0,
            total: Self::STEPS,
            t0: Instant::now(),
            step: Instant::now(),
        }
    }

    fn start(&mut self, what: &str) {
        self.n += 1;
        self.step = Instant::now();
        eprint!("[{:>2}/{}] {what} ... ", self.n, self.total);
        let _ = std::io::stderr().flush();
    }

    fn done(&self, result: &str) {
        eprintln!(
            "{result} ({:.1} s, {:.1} s in)",
            self.step.elapsed().as_secs_f64(),
            self.t0.elapsed().as_secs_f64()
        );
    }
}

/// The running demo: hosts, processes, files.
struct Demo {
    topo: Topology,
    dir: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    pins: Pins,
    pin_pmf: PathBuf,
    cfg: PathBuf,
    gw: Option<usize>,
    /// Children stopped with SIGTERM first (they deregister and detach).
    daemons: Vec<usize>,
    captures: Vec<(usize, PathBuf)>,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for idx in self.daemons.iter().rev() {
            terminate(self.topo.child_mut(*idx));
        }
        let _ = std::fs::remove_dir_all(&self.pin_pmf);
        self.pins.remove();
    }
}

fn terminate(c: &mut Child) {
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
    for _ in 0..100 {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = c.kill();
    let _ = c.wait();
}

impl Demo {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    fn tail(&self, name: &str) -> String {
        let t = self.log(name);
        let lines: Vec<&str> = t.lines().collect();
        format!(
            "--- {name} ---\n{}",
            lines[lines.len().saturating_sub(20)..].join("\n")
        )
    }

    fn build(keep: Option<&Path>) -> anyhow::Result<Self> {
        let mut topo = Topology::new("demo")?;
        let hosts = ["gw", "sw", "u1", "u2", "tr", "pmf", "bsf"];
        for h in hosts {
            topo.add_host(h)?;
        }
        // The home access network: a switch with the gateway and the units.
        topo.bridge("sw", "br0", "10.78.0.254/24")?;
        topo.port(("gw", "gw-acc", "10.78.0.1/24"), ("sw", "sw-gw", "br0"))?;
        topo.port(("u1", "u1-h", "10.78.0.11/24"), ("sw", "sw-u1", "br0"))?;
        topo.port(("u2", "u2-h", "10.78.0.12/24"), ("sw", "sw-u2", "br0"))?;
        // The IP network, and the foreign domain.
        topo.link(
            ("gw", "gw-up", &format!("{GW}/24")),
            ("tr", "tr-gw", &format!("{TR_GW}/24")),
        )?;
        topo.link(
            ("tr", "tr-pmf", "10.80.0.1/24"),
            ("pmf", "pmf-up", &format!("{PMF_UP}/24")),
        )?;
        topo.link(
            ("pmf", "pmf-bs", &format!("{PMF_BS}/24")),
            ("bsf", "bsf-pm", &format!("{BSF_PM}/24")),
        )?;
        topo.bridge("bsf", "br0", &format!("{BSF_ACCESS}/24"))?;
        topo.port(("u2", "u2-f", "10.31.0.12/24"), ("bsf", "bsf-u2", "br0"))?;
        for h in ["gw", "tr", "pmf", "bsf"] {
            topo.forward(h)?;
        }
        topo.no_rp_filter(&hosts)?;
        let veths = [
            ("gw", "gw-acc"),
            ("sw", "sw-gw"),
            ("sw", "sw-u1"),
            ("sw", "sw-u2"),
            ("u1", "u1-h"),
            ("u2", "u2-h"),
            ("gw", "gw-up"),
            ("tr", "tr-gw"),
            ("tr", "tr-pmf"),
            ("pmf", "pmf-up"),
            ("pmf", "pmf-bs"),
            ("bsf", "bsf-pm"),
            ("bsf", "bsf-u2"),
            ("u2", "u2-f"),
        ];
        topo.tune_for_xdp(&veths)?;
        // A unit's packets must fit in a tunnel frame on the 1500-byte IP
        // network: the access networks get 1440.
        for (h, i) in veths
            .iter()
            .filter(|(_, i)| !matches!(*i, "gw-up" | "tr-gw" | "tr-pmf" | "pmf-up"))
        {
            topo.exec_ok(h, &["ip", "link", "set", "dev", i, "mtu", "1440"])?;
        }
        for u in ["u1", "u2"] {
            topo.route(u, "default", "10.78.0.1")?;
        }
        topo.route("gw", "default", TR_GW)?;
        topo.route("tr", HOME_NET, GW)?;
        for net in ["10.30.0.0/24", "10.31.0.0/24"] {
            topo.route("tr", net, PMF_UP)?;
        }
        topo.route("pmf", "default", "10.80.0.1")?;
        for net in [HOME_NET, "10.31.0.0/24"] {
            topo.route("pmf", net, BSF_PM)?;
        }
        // The foreign base station: a visiting unit's home address is on
        // its access network, and what comes from there goes up to the
        // proxy manager.
        topo.base_station_routes("bsf", "br0", HOME_NET, PMF_BS, ACCESS_TABLE)?;
        for (h, dst) in [
            ("u1", GW),
            ("u2", GW),
            ("pmf", GW),
            ("u2", BSF_ACCESS),
            ("gw", PMF_UP),
        ] {
            topo.exec_ok(h, &["ping", "-c", "1", "-W", "2", dst])
                .with_context(|| format!("connectivity {h} -> {dst}"))?;
        }

        let (tmp, dir) = match keep {
            Some(d) => {
                std::fs::create_dir_all(d)?;
                (None, d.to_owned())
            }
            None => {
                let t = tempfile::tempdir()?;
                let p = t.path().to_owned();
                (Some(t), p)
            }
        };
        let pins = Pins::new("roamgate-demo");
        let pin_pmf = PathBuf::from(format!("/sys/fs/bpf/{}pmf", topo.prefix()));
        let cfg = gateway::write_config(
            &dir,
            &pins,
            &["gw-up", "gw-acc"],
            REALM,
            GW,
            &format!(
                "[home_agent]\nunits_refresh_secs = 1\nhome_interface = \"gw-acc\"\n\
                 home_route_via = \"{TR_GW}\"\n"
            ),
        );
        Ok(Self {
            topo,
            dir,
            _tmp: tmp,
            pins,
            pin_pmf,
            cfg,
            gw: None,
            daemons: Vec::new(),
            captures: Vec::new(),
        })
    }

    /// dumpcap on the links that run no XDP: the IP network at `tr`, and
    /// the two access networks at their switch ports.
    fn start_captures(&mut self) -> anyhow::Result<()> {
        let out = pcap_dir();
        std::fs::create_dir_all(&out)?;
        for (host, iface, name) in [
            ("tr", "tr-gw", "ip-network"),
            ("sw", "sw-gw", "home-access"),
            ("bsf", "bsf-u2", "foreign-access"),
        ] {
            let file = out.join(format!("{name}.pcap"));
            let _ = std::fs::remove_file(&file);
            let mut cmd = Command::new("dumpcap");
            cmd.args(["-q", "-P", "-i", iface, "-w"]).arg(&file);
            let log = self.path(&format!("capture-{name}.log"));
            let idx = self.topo.spawn(host, cmd, Some(&log))?;
            self.daemons.push(idx);
            self.captures.push((idx, file));
        }
        // dumpcap writes the file header once it captures.
        wait_for("the captures to start", Duration::from_secs(20), || {
            Ok(self
                .captures
                .iter()
                .all(|(_, f)| std::fs::metadata(f).is_ok_and(|m| m.len() >= 24)))
        })?;
        Ok(())
    }

    fn stop_captures(&mut self) -> Vec<PathBuf> {
        let caps = std::mem::take(&mut self.captures);
        for (idx, _) in &caps {
            // SIGINT: dumpcap flushes and closes its file.
            let c = self.topo.child_mut(*idx);
            // SAFETY: kill(2) on our own child's pid.
            unsafe { libc::kill(c.id() as i32, libc::SIGINT) };
            let _ = c.wait();
            self.daemons.retain(|d| d != idx);
        }
        caps.into_iter().map(|(_, f)| f).collect()
    }

    fn start_gateway(&mut self) -> anyhow::Result<String> {
        let idx = gateway::start(&mut self.topo, &self.cfg, &self.dir, "gateway.log")?;
        self.daemons.push(idx);
        self.gw = Some(idx);
        wait_for("the gateway to be healthy", Duration::from_secs(15), || {
            Ok(status(&self.cfg).0)
        })
        .with_context(|| format!("{:#}", status(&self.cfg).1))?;
        Ok(self.log("gateway.log"))
    }

    /// Provisions a unit with the gateway's printed commands, as printed
    /// (they end with its switch-on at home); returns the switch-on's
    /// wall time in ms.
    fn provision(&self, banner: &str, u: &Unit) -> anyhow::Result<f64> {
        let script =
            printed_commands(banner).context("the gateway printed no provisioning commands")?;
        let script = for_unit(&script, u.name, u.home, u.number, u.spi);
        let (body, switch_on) = script
            .rsplit_once('\n')
            .context("no switch-on line in the printed commands")?;
        let (ok, out, err) = run_in(&self.topo, u.host, body, &self.dir)?;
        if !ok {
            bail!(
                "provisioning {}: {out}{err}\n{}",
                u.name,
                self.tail("gateway.log")
            );
        }
        let t = Instant::now();
        let (ok, out, err) = run_in(
            &self.topo,
            u.host,
            &format!("cd {} && {switch_on}", u.name),
            &self.dir,
        )?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !ok || !out.contains("switched on") {
            bail!(
                "{} did not switch on: {out}{err}\n{}",
                u.name,
                self.tail("gateway.log")
            );
        }
        // The unit sends from its home address (docs/attach.md).
        self.hold_home(u, &format!("{}-h", u.host), "10.78.0.1")?;
        Ok(ms)
    }

    /// The unit puts its home address on `iface` and sends from it via
    /// `via`.
    fn hold_home(&self, u: &Unit, iface: &str, via: &str) -> anyhow::Result<()> {
        let cidr = format!("{}/32", u.home);
        self.topo
            .exec_ok(u.host, &["ip", "addr", "replace", &cidr, "dev", iface])?;
        self.topo.exec_ok(
            u.host,
            &[
                "ip", "route", "replace", "default", "via", via, "src", u.home,
            ],
        )?;
        if via == "10.78.0.1" {
            self.topo.exec_ok(
                u.host,
                &[
                    "ip", "route", "replace", HOME_NET, "dev", iface, "src", u.home,
                ],
            )?;
        }
        Ok(())
    }

    fn unit(&self, u: &Unit, args: &[&str]) -> Command {
        let mut c = self
            .topo
            .command(u.host, roamgate_bin().expect("roamgate built"));
        c.arg("unit")
            .arg(args[0])
            .arg("--config")
            .arg("unit.toml")
            .args(&args[1..])
            .current_dir(self.dir.join(u.name));
        c
    }

    /// The foreign domain: a principal of the home realm for its proxy
    /// manager (a keytab made at the home KDC), then the proxy manager and
    /// its base station.
    fn start_foreign_domain(&mut self) -> anyhow::Result<()> {
        let db = self.dir.join("state/kdc.sqlite");
        let kt = self.path("pmf.keytab");
        let principal = format!("attach/pmf@{REALM}");
        let bin = roamgate_bin()?;
        for args in [
            vec![
                "kdc",
                "add-principal",
                "--db",
                db.to_str().unwrap_or_default(),
                &principal,
                "--random-key",
            ],
            vec![
                "kdc",
                "export-keytab",
                "--db",
                db.to_str().unwrap_or_default(),
                &principal,
                "--out",
                kt.to_str().unwrap_or_default(),
            ],
        ] {
            let out = Command::new(&bin).args(&args).output()?;
            if !out.status.success() {
                bail!(
                    "roamgate {}: {}",
                    args.join(" "),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
        }
        let pm_cfg = self.path("pmf.toml");
        let pm_status = self.path("pmf-status.json");
        std::fs::write(
            &pm_cfg,
            format!(
                r#"[proxy_manager]
listen = "0.0.0.0:{PM_PORT}"
care_of = "{PMF_UP}"
status_file = "{status}"
stats_interval_ms = 200

[kerberos]
kdc = "{GW}:88"
keytab = "{kt}"
service = "{principal}"
directory_service = "directory/gateway@{REALM}"
home_agent_service = "mip/gateway@{REALM}"

[directory]
address = "{GW}:7750"

[billing]
address = "{GW}:7760"
service = "billing/gateway@{REALM}"

[dataplane]
interfaces = ["pmf-up", "pmf-bs"]
inside_interfaces = ["pmf-bs"]
pin_dir = "{pin}"
xdp_mode = "native"

[metrics]
listen = ""
"#,
                status = pm_status.display(),
                kt = kt.display(),
                pin = self.pin_pmf.display(),
            ),
        )?;
        let mut cmd = Command::new(&bin);
        cmd.arg("proxy-manager").arg("--config").arg(&pm_cfg);
        let idx = self.topo.spawn("pmf", cmd, Some(&self.path("pmf.log")))?;
        self.daemons.push(idx);
        for iface in ["pmf-up", "pmf-bs"] {
            wait_for(
                &format!("XDP on pmf {iface}"),
                Duration::from_secs(20),
                || {
                    if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                        bail!(
                            "the foreign proxy manager exited ({st}): {}",
                            self.log("pmf.log")
                        );
                    }
                    self.topo.xdp_attached("pmf", iface)
                },
            )?;
        }
        let bs_cfg = self.path("bsf.toml");
        std::fs::write(
            &bs_cfg,
            format!(
                "[base_station]\nid = 2\ndomain = \"FOREIGN.DEMO\"\nlisten = \"0.0.0.0:{BS_PORT}\"\n\
                 manager = \"{PMF_BS}:{PM_PORT}\"\nstats_file = \"{}\"\n\n[metrics]\nlisten = \"\"\n",
                self.path("bsf-stats.json").display()
            ),
        )?;
        let mut cmd = Command::new(&bin);
        cmd.arg("base-station").arg("--config").arg(&bs_cfg);
        let idx = self.topo.spawn("bsf", cmd, Some(&self.path("bsf.log")))?;
        self.daemons.push(idx);
        wait_for("the foreign base station", Duration::from_secs(20), || {
            if let Some(st) = self.topo.child_mut(idx).try_wait()? {
                bail!(
                    "the foreign base station exited ({st}): {}",
                    self.log("bsf.log")
                );
            }
            let out = self.topo.exec("bsf", &["ss", "-lnu"])?;
            Ok(String::from_utf8_lossy(&out.stdout).contains(&format!(":{BS_PORT}")))
        })
    }

    /// The home agent's care-of address for `home`, from status.
    fn care_of(&self, home: &str) -> Option<String> {
        let (_, v) = status(&self.cfg);
        v["bindings"].as_array()?.iter().find_map(|b| {
            (b["home"] == home)
                .then(|| b["remote"].as_str().map(str::to_owned))
                .flatten()
        })
    }

    /// Bob walks to the foreign domain: he switches on at its base station
    /// (his home proxy is switched off), his new proxy registers the
    /// foreign care-of address, and he takes his home address onto the
    /// foreign access network. Returns the switch-on's wall time in ms.
    fn hand_over(&self, u: &Unit) -> anyhow::Result<f64> {
        self.topo.exec_ok(
            u.host,
            &["ip", "route", "replace", "default", "via", BSF_ACCESS],
        )?;
        let t = Instant::now();
        let out = self
            .unit(
                u,
                &[
                    "switch-on",
                    "--base-station",
                    &format!("{BSF_ACCESS}:{BS_PORT}"),
                    "--manager",
                    &format!("attach/pmf@{REALM}"),
                    "--json",
                ],
            )
            .output()?;
        let ms = t.elapsed().as_secs_f64() * 1e3;
        if !out.status.success() {
            bail!(
                "{} did not switch on in the foreign domain: {}{}\n{}\n{}",
                u.name,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.tail("pmf.log"),
                self.tail("gateway.log")
            );
        }
        wait_for(
            "the foreign care-of address at the home agent",
            Duration::from_secs(10),
            || Ok(self.care_of(u.home).as_deref() == Some(PMF_UP)),
        )
        .with_context(|| format!("{:#}", status(&self.cfg).1))?;
        let _ = self.topo.exec(
            u.host,
            &[
                "ip",
                "addr",
                "del",
                &format!("{}/32", u.home),
                "dev",
                &format!("{}-h", u.host),
            ],
        );
        let _ = self.topo.exec(
            u.host,
            &[
                "ip",
                "route",
                "del",
                HOME_NET,
                "dev",
                &format!("{}-h", u.host),
            ],
        );
        self.hold_home(u, &format!("{}-f", u.host), BSF_ACCESS)?;
        Ok(ms)
    }

    fn ha_stats(&self) -> Value {
        std::fs::read(self.path("state/home-agent.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(Value::Null)
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or(0)
}

fn f(v: &Value, k: &str) -> f64 {
    v[k].as_f64().unwrap_or(f64::NAN)
}

/// Replays from `tr` (an attacker on the IP network) what the capture
/// holds: the last tunnel frame from the foreign proxy manager to the
/// gateway, once as it was (a replay) and once with a byte of its payload
/// changed (a forgery); and the foreign proxy's last registration request.
const ATTACK: &str = r#"
import sys
from scapy.all import rdpcap, sendp, Ether, IP, UDP, conf
conf.verb = 0
pcap, iface, src, dst = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
tunnel = reg = None
for p in rdpcap(pcap):
    if IP in p and UDP in p and p[IP].src == src and p[IP].dst == dst and p[UDP].dport == 434:
        payload = bytes(p[UDP].payload)
        if payload[:1] == b"\x04":
            tunnel = p
        elif payload[:1] == b"\x01":
            reg = p
if tunnel is None or reg is None:
    print(f"capture holds tunnel={tunnel is not None} registration={reg is not None}")
    sys.exit(1)
raw = bytearray(bytes(tunnel))
forged = bytearray(raw)
forged[-30] ^= 0x01   # inside the authenticated inner packet
sendp(Ether(bytes(forged)), iface=iface)
sendp(Ether(bytes(raw)), iface=iface)
sendp(Ether(bytes(reg)), iface=iface)
print("sent 1 forged tunnel frame, 1 replayed tunnel frame, 1 replayed registration")
"#;

/// What is left of the demo after it ends: namespaces, pinned maps,
/// processes.
fn leftovers(prefix: &str, pins: &[PathBuf], pids: &[u32]) -> Vec<String> {
    let mut left = Vec::new();
    if let Ok(out) = Command::new("ip").args(["netns", "list"]).output() {
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            if l.starts_with(prefix) {
                left.push(format!(
                    "namespace {}",
                    l.split_whitespace().next().unwrap_or(l)
                ));
            }
        }
    }
    for p in pins {
        if p.exists() {
            left.push(format!("pinned maps {}", p.display()));
        }
    }
    for pid in pids {
        if Path::new(&format!("/proc/{pid}")).exists() {
            let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            // A zombie is gone once reaped; a live process is left behind.
            let state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            if !state.contains(") Z ") {
                left.push(format!("process {pid} {}", comm.trim()));
            }
        }
    }
    left
}

/// Runs the demo: progress on stderr; returns the timeline as JSON (the
/// binary prints it as text and JSON). Fails if a step fails or if the
/// dropped attacks were not counted.
pub fn run(keep: Option<&Path>) -> anyhow::Result<Value> {
    let mut p = Progress::new();
    p.start("network namespaces: home gateway, switch, 2 units, IP network, foreign domain");
    let mut d = Demo::build(keep)?;
    let prefix = d.topo.prefix().to_owned();
    let pins = vec![d.pins.0.clone(), d.pins.pm(), d.pin_pmf.clone()];
    d.start_captures()?;
    p.done("7 hosts, captures on 3 links");

    p.start("home gateway (roamgate gateway): first run");
    let t = Instant::now();
    let banner = d.start_gateway()?;
    let gateway_up_ms = t.elapsed().as_secs_f64() * 1e3;
    let (_, st) = status(&d.cfg);
    let roles = st["roles"]
        .as_object()
        .map(|r| r.keys().cloned().collect::<Vec<_>>().join(", "))
        .unwrap_or_default();
    p.done(&format!("healthy, realm {REALM}; roles: {roles}"));

    p.start("provision alice and bob with the printed commands; switch on at home");
    let attach_alice = d.provision(&banner, &ALICE)?;
    let attach_bob = d.provision(&banner, &BOB)?;
    p.done(&format!(
        "switched on in {attach_alice:.0} ms and {attach_bob:.0} ms"
    ));

    p.start("foreign domain: proxy manager and base station, keyed by the home KDC");
    d.start_foreign_domain()?;
    p.done("XDP on pmf-up and pmf-bs, base station on :4340");

    p.start("bob answers; alice calls bob (H.225 Fast Connect, SRTP)");
    let mut answer = d.unit(&BOB, &["answer", "--json", "--calls", "1"]);
    answer.stdout(Stdio::piped()).stderr(Stdio::piped());
    let answering = answer.spawn()?;
    wait_for("bob to answer calls", Duration::from_secs(20), || {
        let out = d.topo.exec_ok(BOB.host, &["ss", "-lnt"])?;
        Ok(out.contains(&format!("{}:1720", BOB.home)))
    })?;
    let mut call = d.unit(&ALICE, &["call", BOB.number, "--duration", "6", "--json"]);
    call.stdout(Stdio::piped()).stderr(Stdio::piped());
    let calling = call.spawn()?;
    std::thread::sleep(Duration::from_millis(2000));
    p.done("connected, talking");

    p.start("mid-call, bob walks to the foreign domain (handover)");
    let attach_foreign = d.hand_over(&BOB)?;
    p.done(&format!(
        "switched on there in {attach_foreign:.0} ms; home agent: {} -> care-of {PMF_UP}",
        BOB.home
    ));

    p.start("the call goes on through the tunnel, then alice hangs up");
    let out = calling.wait_with_output()?;
    let caller: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("null"),
    )
    .unwrap_or(Value::Null);
    let out_b = answering.wait_with_output()?;
    let callee: Value = String::from_utf8_lossy(&out_b.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|v| v["call_id"] == caller["call_id"])
        .unwrap_or(Value::Null);
    let connected =
        caller["connected"] == true && caller["cause"] == 16 && callee["connected"] == true;
    if !connected {
        bail!(
            "the call failed: caller {caller}\n{}\ncallee {callee}\n{}\n{}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out_b.stderr),
            d.tail("gateway.log"),
            d.tail("pmf.log")
        );
    }
    let sent = n(&caller, "packets_sent") + n(&callee, "packets_sent");
    let lost = caller["packets_lost"].as_i64().unwrap_or(0).max(0)
        + callee["packets_lost"].as_i64().unwrap_or(0).max(0);
    let loss_pct = 100.0 * lost as f64 / sent.max(1) as f64;
    let gap_ms = f(&caller, "max_gap_ms").max(f(&callee, "max_gap_ms"));
    let setup_ms = f(&caller, "setup_ms");
    p.done(&format!(
        "{:.1} s of speech each way, {lost} of {sent} packets lost",
        f(&caller, "duration_s")
    ));

    p.start("the charge (billing, double-entry ledger)");
    let mut charge = Value::Null;
    wait_for("the charge to close", Duration::from_secs(10), || {
        let v = gateway::billing_report(&d.path("state"))?;
        charge = v
            .as_array()
            .and_then(|a| {
                a.iter()
                    .find(|c| c["call_id"] == caller["call_id"])
                    .cloned()
            })
            .unwrap_or(Value::Null);
        Ok(charge["status"] == "closed")
    })
    .with_context(|| format!("charge {charge}"))?;
    p.done(&format!(
        "{} charged {} (minor units) for {} s",
        charge["account"].as_str().unwrap_or("?"),
        charge["amount"],
        charge["seconds"]
    ));

    p.start("an attacker on the IP network: forged frame, replayed frame, replayed registration");
    let gw_pin = d.pins.0.clone();
    let before = counters(&gw_pin)?;
    let ha_before = d.ha_stats();
    // The capture so far, read while dumpcap keeps writing it.
    let attack = d
        .topo
        // Debian's python3 (python3-scapy), not one a user put first on PATH.
        .command("tr", "/usr/bin/python3")
        .args(["-c", ATTACK])
        .arg(pcap_dir().join("ip-network.pcap"))
        .args(["tr-gw", PMF_UP, GW])
        .output()?;
    if !attack.status.success() {
        bail!(
            "the attacker could not run: {}{}",
            String::from_utf8_lossy(&attack.stdout),
            String::from_utf8_lossy(&attack.stderr)
        );
    }
    let mut forged = 0;
    let mut replayed = 0;
    let mut reg_refused = 0;
    let _ = wait_for("the attacks to be counted", Duration::from_secs(5), || {
        let after = counters(&gw_pin)?;
        let delta = |k: &str| n(&after, k).saturating_sub(n(&before, k));
        forged = delta("drop_bad_mac");
        replayed = delta("drop_replayed") + delta("drop_too_old");
        reg_refused = n(&d.ha_stats(), "rejected").saturating_sub(n(&ha_before, "rejected"));
        Ok(forged >= 1 && replayed >= 1 && reg_refused >= 1)
    });
    p.done(&format!(
        "dropped and counted: drop_bad_mac +{forged}, drop_replayed +{replayed}; home agent rejected +{reg_refused}"
    ));

    p.start("stop everything; check that nothing is left behind");
    let pcaps = d.stop_captures();
    if let Some(gw) = d.gw.take() {
        gateway::stop(&mut d.topo, gw, &d.dir.clone(), "gateway.log")?;
        d.daemons.retain(|x| *x != gw);
    }
    let pids: Vec<u32> = d
        .daemons
        .iter()
        .map(|i| d.topo.child_mut(*i).id())
        .collect();
    drop(d);
    let left = leftovers(&prefix, &pins, &pids);
    p.done(if left.is_empty() {
        "nothing left: no namespace, no pinned map, no process"
    } else {
        "LEFT BEHIND (see below)"
    });

    let (tunnel_frames, malformed) = decode(&pcaps)?;
    let report = json!({
        "gateway_up_ms": gateway_up_ms.round(),
        "attach_ms": { "alice_home": attach_alice.round(), "bob_home": attach_bob.round(), "bob_foreign": attach_foreign.round() },
        "call_setup_ms": (setup_ms * 10.0).round() / 10.0,
        "handover_gap_ms": gap_ms.round(),
        "loss_pct": (loss_pct * 100.0).round() / 100.0,
        "packets_sent": sent,
        "packets_lost": lost,
        "charge": { "account": charge["account"], "amount": charge["amount"], "seconds": charge["seconds"], "call_id": charge["call_id"] },
        "attacks": { "forged_dropped": forged, "replayed_dropped": replayed, "registration_replay_rejected": reg_refused },
        "tunnel_frames_ip_network": tunnel_frames,
        "tshark_malformed": malformed,
        "pcaps": pcaps.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "left_behind": left,
        "elapsed_s": (p.t0.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    });
    let mut failures = Vec::new();
    if forged < 1 || replayed < 1 || reg_refused < 1 {
        failures.push("an attack was not dropped and counted");
    }
    if n(&report["tunnel_frames_ip_network"], "to_foreign") < 50
        || n(&report["tunnel_frames_ip_network"], "to_home") < 50
    {
        failures.push("the voice did not cross the IP network in the tunnel after the handover");
    }
    if malformed > 0 {
        failures.push("tshark found malformed packets in the captures");
    }
    if !report["left_behind"].as_array().is_some_and(Vec::is_empty) {
        failures.push("something was left behind");
    }
    if !failures.is_empty() {
        bail!("{}: {report:#}", failures.join("; "));
    }
    Ok(report)
}

/// tshark, as an independent decoder, over the captures: the Mobile IP
/// tunnel frames on the IP network each way (alice's voice to bob away,
/// and his back), and the packets it finds malformed in any capture.
fn decode(pcaps: &[PathBuf]) -> anyhow::Result<(Value, u64)> {
    let mut malformed = 0;
    let mut to_foreign = 0;
    let mut to_home = 0;
    for p in pcaps {
        let out = Command::new("tshark")
            .arg("-r")
            .arg(p)
            .args([
                "-T",
                "fields",
                "-e",
                "ip.dst",
                "-e",
                "mip.type",
                "-e",
                "_ws.malformed",
            ])
            .output()
            .context("running tshark")?;
        if !out.status.success() {
            bail!(
                "tshark -r {}: {}",
                p.display(),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            let f: Vec<&str> = l.split('\t').collect();
            if f.get(2).is_some_and(|m| !m.is_empty()) {
                malformed += 1;
            }
            // The outer destination first; tunnel data is type 4.
            if f.get(1) == Some(&"4") {
                match f[0].split(',').next() {
                    Some(PMF_UP) => to_foreign += 1,
                    Some(GW) => to_home += 1,
                    _ => {}
                }
            }
        }
    }
    Ok((
        json!({ "to_foreign": to_foreign, "to_home": to_home }),
        malformed,
    ))
}

/// The timeline, for people.
pub fn timeline(r: &Value) -> String {
    let a = &r["attach_ms"];
    let c = &r["charge"];
    let k = &r["attacks"];
    let mut t = String::new();
    t.push_str("roamgate demo: timeline\n");
    t.push_str(&format!(
        "  home gateway up        {} ms\n",
        r["gateway_up_ms"]
    ));
    t.push_str(&format!(
        "  attach (switch-on)     alice {} ms, bob {} ms at home; bob {} ms in the foreign domain\n",
        a["alice_home"], a["bob_home"], a["bob_foreign"]
    ));
    t.push_str(&format!(
        "  call setup             {} ms (Kerberos ticket + H.225 Fast Connect)\n",
        r["call_setup_ms"]
    ));
    t.push_str(&format!(
        "  handover gap           {} ms (longest silence in the call)\n",
        r["handover_gap_ms"]
    ));
    t.push_str(&format!(
        "  loss                   {} % ({} of {} SRTP packets)\n",
        r["loss_pct"], r["packets_lost"], r["packets_sent"]
    ));
    t.push_str(&format!(
        "  charge                 {} minor units to {} for {} s\n",
        c["amount"],
        c["account"].as_str().unwrap_or("?"),
        c["seconds"]
    ));
    t.push_str(&format!(
        "  attacks                forged frame dropped {}x, replayed frame {}x, replayed registration rejected {}x\n",
        k["forged_dropped"], k["replayed_dropped"], k["registration_replay_rejected"]
    ));
    t.push_str(&format!(
        "  tunnel on IP network   {} frames to bob away, {} back (tshark); {} malformed\n",
        r["tunnel_frames_ip_network"]["to_foreign"],
        r["tunnel_frames_ip_network"]["to_home"],
        r["tshark_malformed"]
    ));
    if let Some(p) = r["pcaps"].as_array() {
        t.push_str("  pcaps                  ");
        t.push_str(
            &p.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join("\n                         "),
        );
        t.push('\n');
    }
    t.push_str(&format!(
        "  whole run              {} s; left behind: nothing\n",
        r["elapsed_s"]
    ));
    t
}
