//! The mobile node's TUN data plane (`dataplane.mode = "tun"`) against a
//! home agent running XDP, in the namespaces of the Mobile IP scenario
//! (tests/src/mobility.rs): the node's host itself holds the home address
//! on its TUN device, no XDP on the node. Needs root.
//!
//! It registers from A; the correspondent pings the home address; a
//! 50 packets/s UDP stream runs each way (the node's sender is bound to no
//! address, so the kernel's choice of source is checked to be the home
//! address); the node moves to B (A's link goes down) and the stream keeps
//! flowing, also across a kill -9 and restart of the home agent; forged
//! tunnel packets sent to the node are dropped and counted by reason;
//! SIGTERM deregisters (0 bindings at the home agent) and removes the TUN
//! device, its routes and its policy rules.
//!
//! A second scenario: traffic from the care-of address (an application
//! bound to it) leaves directly, not into the tunnel; after kill -9 the
//! node's policy rules are left behind, and the next start removes them
//! before it installs its own (each rule once).
//!
//! The scenarios run one at a time (they share the machine's two cores).
//! `ROAMGATE_NETNS_PREFIX` names their namespaces (default `rg`).

use std::{
    collections::HashMap,
    net::{Ipv4Addr, SocketAddr, UdpSocket},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant},
};

use roamgate_integration::{
    mobility::{Scenario, CN, COA_A, COA_B, HOME},
    netns::{spawn_in_netns, Topology},
};
use serde_json::Value;

const TUN: &str = "rgmn0";
const TABLE: u32 = 434;
const PRIORITY: u32 = 4340;
const PORT_MN: u16 = 5004;
const PORT_CN: u16 = 5006;
const INTERVAL: Duration = Duration::from_millis(20);
/// roamgate's protocol value on its policy rules (`ip rule` shows it).
const PROTO: &str = "proto 167";

/// One scenario at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|p| p.into_inner())
}

/// The rules the node installs for [`tun_dataplane`]`(priority)`, as `ip
/// rule` shows them (the KDC's bypass rule as well as the home agent's).
fn node_rules(priority: u32) -> Vec<String> {
    vec![
        format!("{priority}:\tfrom all to 192.0.2.1 lookup main {PROTO}"),
        format!("{priority}:\tfrom all to 10.1.1.2 lookup main {PROTO}"),
        format!(
            "{}:\tfrom all lookup main suppress_prefixlength 0 {PROTO}",
            priority + 1
        ),
        format!("{}:\tfrom 0.0.0.0 lookup {TABLE} {PROTO}", priority + 2),
        format!("{}:\tfrom {HOME} lookup {TABLE} {PROTO}", priority + 2),
    ]
}

/// The node's rules tagged with roamgate's protocol, one per line.
fn tagged_rules(s: &Scenario) -> Vec<String> {
    s.topo
        .exec_ok("mn", &["ip", "-4", "rule", "show"])
        .unwrap()
        .lines()
        .filter(|l| l.contains(PROTO))
        .map(|l| l.trim_end().to_owned())
        .collect()
}

/// The `[dataplane]` section of a TUN node whose rules start at
/// `priority`.
fn tun_dataplane(priority: u32) -> String {
    format!(
        "mode = \"tun\"\ntun_name = \"{TUN}\"\nroutes = [\"0.0.0.0/0\"]\nroute_table = {TABLE}\nrule_priority = {priority}\n"
    )
}

/// A scenario whose node's host holds the home address itself (on the TUN
/// device), not the application host behind it; KDC and home agent up.
fn tun_scenario() -> Scenario {
    let s = Scenario::build().expect("topology");
    s.topo
        .exec_ok("mn", &["ip", "route", "del", &format!("{HOME}/32")])
        .unwrap();
    s.topo
        .exec_ok(
            "app",
            &["ip", "addr", "del", &format!("{HOME}/32"), "dev", "app0"],
        )
        .unwrap();
    s
}

/// One direction of the stream: what was sent (count) and what arrived
/// (sequence → source address).
struct Flow {
    sent: Arc<Mutex<u32>>,
    got: Arc<Mutex<HashMap<u32, Ipv4Addr>>>,
}

struct Streams {
    stop: Arc<AtomicBool>,
    flows: [Flow; 2],
    threads: Vec<std::thread::JoinHandle<anyhow::Result<()>>>,
}

impl Streams {
    /// cn → home:PORT_MN (from cn's address) and node → cn:PORT_CN from a
    /// socket bound to 0.0.0.0 (the kernel picks the source).
    fn start(topo: &Topology) -> Streams {
        let stop = Arc::new(AtomicBool::new(false));
        let mut threads = Vec::new();
        let dirs = [
            (topo.ns("cn"), topo.ns("mn"), CN, HOME, PORT_MN),
            (
                topo.ns("mn"),
                topo.ns("cn"),
                Ipv4Addr::UNSPECIFIED,
                CN,
                PORT_CN,
            ),
        ];
        let flows = dirs.map(|(sns, rns, from, to, port)| {
            let flow = Flow {
                sent: Arc::new(Mutex::new(0)),
                got: Arc::new(Mutex::new(HashMap::new())),
            };
            let (ready_tx, ready_rx) = std::sync::mpsc::channel();
            let (got, stop_r) = (flow.got.clone(), stop.clone());
            threads.push(spawn_in_netns(&rns, move || {
                let sock = UdpSocket::bind(SocketAddr::new(to.into(), port))?;
                sock.set_read_timeout(Some(Duration::from_millis(50)))?;
                let _ = ready_tx.send(());
                let mut buf = [0u8; 2048];
                while !stop_r.load(Ordering::Relaxed) {
                    if let Ok((n, SocketAddr::V4(src))) = sock.recv_from(&mut buf) {
                        if n >= 4 {
                            let seq = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]);
                            got.lock().unwrap().insert(seq, *src.ip());
                        }
                    }
                }
                Ok(())
            }));
            ready_rx
                .recv_timeout(Duration::from_secs(5))
                .expect("stream receiver started");
            let (sent, stop_s) = (flow.sent.clone(), stop.clone());
            threads.push(spawn_in_netns(&sns, move || {
                let sock = UdpSocket::bind(SocketAddr::new(from.into(), port + 100))?;
                let dst = SocketAddr::new(to.into(), port);
                let start = Instant::now();
                let mut seq: u32 = 0;
                while !stop_s.load(Ordering::Relaxed) {
                    let due = start + INTERVAL * seq;
                    if let Some(d) = due.checked_duration_since(Instant::now()) {
                        std::thread::sleep(d);
                    }
                    let mut p = [0x5au8; 160];
                    p[..4].copy_from_slice(&seq.to_be_bytes());
                    let _ = sock.send_to(&p, dst);
                    seq += 1;
                    *sent.lock().unwrap() = seq;
                }
                Ok(())
            }));
            flow
        });
        Streams {
            stop,
            flows,
            threads,
        }
    }

    /// Packets sent so far, per direction.
    fn mark(&self) -> [u32; 2] {
        [0, 1].map(|i| *self.flows[i].sent.lock().unwrap())
    }

    /// Lost packets of direction `d` among those sent in `from..to`.
    fn lost(&self, d: usize, from: u32, to: u32) -> u32 {
        let got = self.flows[d].got.lock().unwrap();
        (from..to).filter(|q| !got.contains_key(q)).count() as u32
    }

    /// The source addresses direction `d`'s packets arrived from.
    fn sources(&self, d: usize) -> Vec<Ipv4Addr> {
        let mut v: Vec<Ipv4Addr> = self.flows[d]
            .got
            .lock()
            .unwrap()
            .values()
            .copied()
            .collect();
        v.sort();
        v.dedup();
        v
    }

    fn stop(mut self) -> Self {
        std::thread::sleep(Duration::from_millis(200));
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            t.join().expect("stream thread").expect("stream thread ran");
        }
        self
    }
}

/// The node's TUN routing table, as `ip route` shows it.
fn tun_table(s: &Scenario) -> String {
    let table = TABLE.to_string();
    s.topo
        .exec_ok("mn", &["ip", "-4", "route", "show", "table", &table])
        .unwrap()
}

fn counter(status: &Value, name: &str) -> u64 {
    status["forwarder"][name].as_u64().unwrap_or(0)
}

/// Sends `payload` to `to:434` from namespace `ns` (a plain UDP socket).
fn send_udp(ns: String, to: Ipv4Addr, payload: Vec<u8>) {
    spawn_in_netns(&ns, move || {
        let s = UdpSocket::bind("0.0.0.0:0")?;
        s.send_to(&payload, SocketAddr::new(to.into(), 434))?;
        Ok(())
    })
    .join()
    .expect("sender thread")
    .expect("sent");
}

/// A tunnel-data payload (docs/wire.md §1) for `spi` whose tag is zero.
fn forged_tunnel_payload(spi: u32) -> Vec<u8> {
    let mut p = vec![4, 4, 0, 0];
    // Inner IPv4 header only: cn → home, UDP, total length 20.
    p.extend_from_slice(&[0x45, 0, 0, 20, 0, 0, 0x40, 0, 64, 17, 0, 0]);
    p.extend_from_slice(&CN.octets());
    p.extend_from_slice(&HOME.octets());
    p.extend_from_slice(&spi.to_be_bytes());
    p.extend_from_slice(&1u64.to_be_bytes());
    p.extend_from_slice(&[0; 16]);
    p
}

#[test]
fn tun_mobile_node_with_an_xdp_home_agent() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let _one = serial();
    let mut s = tun_scenario();
    s.start_kdc().expect("KDC");
    s.start_ha(1).expect("home agent (XDP)");
    s.start_mn_with(&tun_dataplane(PRIORITY))
        .expect("mobile node");
    s.wait_registered(1, COA_A).expect("registered from A");
    let status = s.mn_status();
    assert_eq!(status["dataplane"], "tun", "{status}");

    // Routing as configured: the home address on the device, the TUN table,
    // the rules with the home agent's bypass.
    let addr = s
        .topo
        .exec_ok("mn", &["ip", "-4", "-o", "addr", "show", "dev", TUN])
        .unwrap();
    assert!(addr.contains(&format!("{HOME}/32")), "{addr}");
    let table = tun_table(&s);
    assert!(
        table.contains(&format!("default dev {TUN}")) && table.contains(&format!("src {HOME}")),
        "{table}"
    );
    let rules = tagged_rules(&s);
    assert_eq!(rules, node_rules(PRIORITY));
    let via = s
        .topo
        .exec_ok("mn", &["ip", "-4", "route", "get", &CN.to_string()])
        .unwrap();
    assert!(
        via.contains(&format!("dev {TUN}")) && via.contains(&format!("src {HOME}")),
        "{via}"
    );

    // The correspondent pings the home address through the XDP home agent
    // and the node's TUN forwarder.
    let ping = s
        .topo
        .exec(
            "cn",
            &["ping", "-c", "5", "-i", "0.2", "-W", "1", &HOME.to_string()],
        )
        .unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(
        ping.status.success() && ping_out.contains(" 0% packet loss"),
        "ping cn -> home: {ping_out}\nmn log:\n{}",
        s.log("mn.log")
    );

    // UDP both ways, then a handover to B mid-stream.
    let streams = Streams::start(&s.topo);
    std::thread::sleep(Duration::from_millis(1500));
    let before = streams.mark();
    let t_down = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    s.topo
        .exec_ok("mn", &["ip", "link", "set", "dev", "mna", "down"])
        .unwrap();
    s.wait_registered(2, COA_B).expect("registered from B");
    let handover_ms =
        (s.mn_status()["registered_at"].as_f64().unwrap_or(f64::NAN) - t_down) * 1000.0;
    // Packets sent from here on travel the new tunnel only.
    std::thread::sleep(Duration::from_millis(100));
    let after = streams.mark();
    std::thread::sleep(Duration::from_millis(1500));
    let end = streams.mark();

    // The home agent is killed (-9) and restarted mid-stream: its pinned
    // XDP data plane keeps forwarding, the node's forwarder notices nothing.
    s.kill_ha().expect("kill -9 the home agent");
    std::thread::sleep(Duration::from_secs(1));
    s.start_ha(2).expect("home agent restarted");
    std::thread::sleep(Duration::from_millis(500));
    let restarted = streams.mark();

    // Forged tunnel packets to the new care-of address (from the transit
    // router): one under the live SPI with a zero tag, one not tunnel data.
    let spi = s.mn_status()["spi"].as_u64().expect("spi in status") as u32;
    let c0 = s.mn_status();
    send_udp(s.topo.ns("tr"), COA_B, forged_tunnel_payload(spi));
    let mut not_tunnel = vec![0u8; 24];
    not_tunnel[0] = 1; // a registration request's type, on the tunnel port
    send_udp(s.topo.ns("tr"), COA_B, not_tunnel);
    send_udp(
        s.topo.ns("tr"),
        COA_B,
        forged_tunnel_payload(spi ^ 0x5555_0000),
    );
    std::thread::sleep(Duration::from_millis(1300));
    let c1 = s.mn_status();
    let streams = streams.stop();

    let lost = |d: usize, a: [u32; 2], b: [u32; 2]| streams.lost(d, a[d], b[d]);
    let report = format!(
        "sent before/after/end/restarted {before:?} {after:?} {end:?} {restarted:?}; lost before {}/{}, \
         handover {}/{}, after {}/{}, across the HA restart {}/{}; handover {handover_ms:.1} ms; status {c1}",
        lost(0, [0, 0], before),
        lost(1, [0, 0], before),
        lost(0, before, after),
        lost(1, before, after),
        lost(0, after, end),
        lost(1, after, end),
        lost(0, end, restarted),
        lost(1, end, restarted),
    );
    println!("{report}");
    for d in 0..2 {
        assert!(before[d] >= 50 && end[d] >= after[d] + 50, "{report}");
        assert_eq!(
            lost(d, [0, 0], before),
            0,
            "loss before the handover: {report}"
        );
        assert_eq!(lost(d, after, end), 0, "loss after the handover: {report}");
        assert!(lost(d, before, after) <= 25, "handover loss: {report}");
        assert_eq!(
            lost(d, end, restarted),
            0,
            "loss across the home-agent restart: {report}"
        );
    }
    // The node's applications used the home address, unchanged.
    assert_eq!(streams.sources(1), vec![HOME], "{report}");
    assert_eq!(streams.sources(0), vec![CN], "{report}");

    // Counters: traffic both ways, every forged packet dropped by reason.
    assert!(
        counter(&c1, "tunnel_encap") >= u64::from(end[1]) / 2,
        "{report}"
    );
    assert!(
        counter(&c1, "tunnel_decap") >= u64::from(end[0]) / 2,
        "{report}"
    );
    let delta = |k: &str| counter(&c1, k) - counter(&c0, k);
    assert_eq!(delta("drop_bad_mac"), 1, "{report}");
    assert_eq!(delta("drop_not_tunnel"), 1, "{report}");
    assert_eq!(delta("drop_unknown_spi"), 1, "{report}");
    // The new tunnel is held (the old one may still be in its grace time).
    let spis = c1["tunnel_spis"].as_array().cloned().unwrap_or_default();
    assert!(
        spis.contains(&Value::from(spi)) && spis.len() <= 2,
        "{report}"
    );

    // SIGTERM: deregistration, and nothing left behind.
    let st = s.stop_mn().expect("mobile node stopped");
    assert!(st.success(), "exit {st}: {}", s.log("mn.log"));
    let fin = s.mn_status();
    assert_eq!(fin["deregistered"], true, "{fin}");
    std::thread::sleep(Duration::from_millis(200));
    let bindings = s.ha_bindings().expect("bindings");
    assert!(
        bindings.is_empty(),
        "bindings after deregistration: {bindings:?}"
    );
    let link = s
        .topo
        .exec("mn", &["ip", "link", "show", "dev", TUN])
        .unwrap();
    assert!(!link.status.success(), "{TUN} still exists");
    let rules = s.topo.exec_ok("mn", &["ip", "-4", "rule", "show"]).unwrap();
    assert!(
        !rules.contains(&format!("{PRIORITY}:"))
            && !rules.contains(&format!("{}:", PRIORITY + 1))
            && !rules.contains(&format!("{}:", PRIORITY + 2)),
        "rules left:\n{rules}"
    );
    let table = tun_table(&s);
    assert!(
        table.trim().is_empty(),
        "routes left in table {TABLE}: {table}"
    );
    assert!(
        s.log("mn.log").contains("drop_bad_mac"),
        "counters logged on stop"
    );
}

/// Traffic from the care-of address goes out directly while the node is
/// registered; kill -9 leaves the node's rules behind, and the next start
/// cleans them before installing its own.
#[test]
fn tun_care_of_traffic_goes_direct_and_stale_rules_are_cleaned() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipping: needs root");
        return;
    }
    let _one = serial();
    let mut s = tun_scenario();
    s.start_kdc().expect("KDC");
    s.start_ha(1).expect("home agent (XDP)");
    s.start_mn_with(&tun_dataplane(PRIORITY))
        .expect("mobile node");
    s.wait_registered(1, COA_A).expect("registered from A");

    // An application bound to the care-of address reaches the
    // correspondent, both ways, outside the tunnel; one bound to nothing
    // still uses the home address through it.
    let coa = COA_A.to_string();
    let direct = s
        .topo
        .exec_ok(
            "mn",
            &["ip", "-4", "route", "get", &CN.to_string(), "from", &coa],
        )
        .unwrap();
    assert!(
        !direct.contains(TUN) && direct.contains("dev mna"),
        "{direct}"
    );
    let before = counter(&s.mn_status(), "tunnel_encap");
    let ping = s
        .topo
        .exec(
            "mn",
            &[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "1",
                "-I",
                &coa,
                &CN.to_string(),
            ],
        )
        .unwrap();
    let ping_out = String::from_utf8_lossy(&ping.stdout).into_owned();
    assert!(
        ping.status.success() && ping_out.contains(" 0% packet loss"),
        "ping -I {coa} {CN}: {ping_out}\nmn log:\n{}",
        s.log("mn.log")
    );
    let unbound = spawn_in_netns(&s.topo.ns("mn"), || {
        let u = UdpSocket::bind("0.0.0.0:0")?;
        u.connect(SocketAddr::new(CN.into(), 9))?;
        Ok(u.local_addr()?)
    })
    .join()
    .expect("socket thread")
    .expect("socket");
    assert_eq!(unbound.ip(), HOME, "an unbound socket's source");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        counter(&s.mn_status(), "tunnel_encap"),
        before,
        "the care-of address's pings went into the tunnel"
    );

    // kill -9: the TUN device (and its routes) die with the process, the
    // rules stay.
    assert_eq!(tagged_rules(&s), node_rules(PRIORITY));
    s.kill_mn().expect("kill -9 the mobile node");
    std::thread::sleep(Duration::from_millis(200));
    assert!(
        !s.topo
            .exec("mn", &["ip", "link", "show", "dev", TUN])
            .unwrap()
            .status
            .success(),
        "{TUN} outlived its process"
    );
    assert_eq!(
        tagged_rules(&s),
        node_rules(PRIORITY),
        "rules left by kill -9"
    );

    // The next start removes them first, even where its own rules differ
    // (here their priorities): only its own rules, each once, and the node
    // registers again.
    let _ = std::fs::remove_file(s.path("mn-status.json"));
    s.start_mn_with(&tun_dataplane(PRIORITY + 10))
        .expect("mobile node again");
    s.wait_registered(1, COA_A).expect("registered again");
    assert_eq!(
        tagged_rules(&s),
        node_rules(PRIORITY + 10),
        "rules after the restart"
    );
    assert!(
        s.log("mn.log")
            .contains("removed the policy rules an earlier run left"),
        "{}",
        s.log("mn.log")
    );

    // SIGTERM: none of roamgate's rules stay.
    let st = s.stop_mn().expect("mobile node stopped");
    assert!(st.success(), "exit {st}: {}", s.log("mn.log"));
    assert_eq!(
        tagged_rules(&s),
        Vec::<String>::new(),
        "rules after SIGTERM"
    );
}
