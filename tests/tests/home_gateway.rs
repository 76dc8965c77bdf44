//! The home gateway as an operator meets it (issue 14): `roamgate gateway`
//! on one config in a namespace, its state in a temporary directory;
//! `roamgate status` says healthy; the commands the first run printed are
//! run as printed (parsed from its output) in a unit's namespace across a
//! veth, which provisions two units and switches them on through the
//! gateway's own base-station listener; status then shows the units and
//! their bindings; one calls the other, the call completes and is charged
//! once; a second start reuses the realm. Needs root.

use std::{path::Path, process::Command, time::Duration};

use roamgate_integration::{
    home_gateway::{self as gateway, for_unit, printed_commands, status, Pins},
    netns::{roamgate_bin, wait_for, Topology},
};
use serde_json::Value;

const GW_ADDR: &str = "10.78.0.1";

fn write_config(dir: &Path, pins: &Pins, interfaces: &[&str]) -> std::path::PathBuf {
    gateway::write_config(
        dir,
        pins,
        interfaces,
        "HOME.GW.TEST",
        GW_ADDR,
        "[home_agent]\nunits_refresh_secs = 1\n",
    )
}

fn log(dir: &Path, name: &str) -> String {
    gateway::log(dir, name)
}

fn start(topo: &mut Topology, cfg: &Path, dir: &Path, name: &str) -> usize {
    gateway::start(topo, cfg, dir, name).unwrap()
}

fn stop(topo: &mut Topology, idx: usize, dir: &Path, name: &str) {
    gateway::stop(topo, idx, dir, name).unwrap()
}

/// The units: host, name, home address, number, MIP SPI.
const UNITS: [(&str, &str, &str, &str, &str); 2] = [
    ("u1", "alice", "10.78.0.51", "4930100051", "257"),
    ("u2", "bob", "10.78.0.52", "4930100052", "258"),
];

fn run_in(topo: &Topology, host: &str, script: &str, cwd: &Path) -> (bool, String, String) {
    gateway::run_in(topo, host, script, cwd).unwrap()
}

#[test]
fn home_gateway_first_run_status_provision_switch_on_and_call() {
    // The access network: a bridge in the gateway, a unit on each port;
    // the data plane on the uplink towards a correspondent, cn. (Units at
    // home reach each other over the access network: their care-of
    // address is the gateway itself, see docs/operations.md.)
    let mut topo = Topology::new("home").unwrap();
    topo.add_host("gw").unwrap();
    topo.add_host("cn").unwrap();
    topo.link(
        ("gw", "gw-up", "10.79.0.1/24"),
        ("cn", "cn0", "10.79.0.2/24"),
    )
    .unwrap();
    topo.bridge("gw", "br0", &format!("{GW_ADDR}/24")).unwrap();
    for (u, addr) in [("u1", "10.78.0.11/24"), ("u2", "10.78.0.12/24")] {
        topo.add_host(u).unwrap();
        topo.port((u, "u0", addr), ("gw", &format!("gw-{u}"), "br0"))
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("gw-test");
    let cfg = write_config(dir.path(), &pins, &["gw-up"]);

    let gw = start(&mut topo, &cfg, dir.path(), "gw1.log");
    let first = log(dir.path(), "gw1.log");
    assert!(
        first.contains(&format!(
            "created realm HOME.GW.TEST in {}",
            dir.path().join("state").display()
        )),
        "{first}"
    );
    wait_for("status healthy", Duration::from_secs(10), || {
        Ok(status(&cfg).0)
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:#}", status(&cfg).1));
    let (_, v) = status(&cfg);
    for role in [
        "data-plane",
        "kdc",
        "directory",
        "billing",
        "home-agent",
        "proxy-manager",
        "base-station",
    ] {
        assert_eq!(v["roles"][role]["state"], "running", "{role}: {v:#}");
    }
    assert!(v["counters"].is_object(), "{v:#}");

    // The printed commands, as printed, in each unit's namespace, with
    // each unit's own choice of the variables on the first line.
    let script = printed_commands(&first).expect("no switch-on command printed");
    for (u, name, home, number, spi) in UNITS {
        let script = for_unit(&script, name, home, number, spi);
        let (ok, stdout, stderr) = run_in(&topo, u, &script, dir.path());
        assert!(
            ok,
            "the printed commands failed in {u}:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{stderr}\n--- gateway\n{}",
            log(dir.path(), "gw1.log")
        );
        assert!(stdout.contains("switched on"), "{stdout}");
        // The unit sends from its home address (docs/attach.md).
        topo.exec_ok(
            u,
            &["ip", "addr", "add", &format!("{home}/32"), "dev", "u0"],
        )
        .unwrap();
        topo.exec_ok(
            u,
            &[
                "ip",
                "route",
                "replace",
                "10.78.0.0/24",
                "dev",
                "u0",
                "src",
                home,
            ],
        )
        .unwrap();
    }

    // Both units are attached and bound at the home agent.
    wait_for("the units in status", Duration::from_secs(10), || {
        let (ok, v) = status(&cfg);
        Ok(ok
            && v["units"].as_array().is_some_and(|u| u.len() == 2)
            && v["bindings"].as_array().is_some_and(|b| b.len() >= 2))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:#}", status(&cfg).1));
    let (_, v) = status(&cfg);
    let principals: Vec<&str> = v["units"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|u| u["principal"].as_str())
        .collect();
    assert!(principals.contains(&"alice@HOME.GW.TEST"), "{v:#}");
    assert!(principals.contains(&"bob@HOME.GW.TEST"), "{v:#}");
    assert_eq!(v["charges_open"], 0, "{v:#}");
    // The same as a page for people.
    let page = Command::new(roamgate_bin().unwrap())
        .args(["status", "--config"])
        .arg(&cfg)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&page.stdout);
    assert!(page.status.success(), "{text}");
    for want in [
        "roamgate home gateway: healthy (realm HOME.GW.TEST",
        "units attached: 2",
        "bindings: 2",
        "charges open: 0",
        "drop_bad_mac",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }

    // A call from alice to bob: it completes and is charged once.
    let u2_dir = dir.path().join("bob");
    // The unit's files are relative to its directory (Topology::spawn
    // takes no working directory).
    let mut answer = Command::new("sh");
    answer.arg("-c").arg(format!(
        "cd '{}' && exec '{}' unit answer --json --calls 1 --config unit.toml",
        u2_dir.display(),
        roamgate_bin().unwrap().display()
    ));
    let answering = topo
        .spawn("u2", answer, Some(&dir.path().join("answer.log")))
        .unwrap();
    wait_for("bob to answer calls", Duration::from_secs(20), || {
        if let Some(st) = topo.child_mut(answering).try_wait()? {
            anyhow::bail!(
                "unit answer exited ({st}): {}",
                log(dir.path(), "answer.log")
            );
        }
        let out = topo.exec_ok("u2", &["ss", "-lnt"])?;
        Ok(out.contains(&format!("{}:1720", UNITS[1].2)))
    })
    .unwrap();
    let out = topo
        .command("u1", roamgate_bin().unwrap())
        .args([
            "unit",
            "call",
            UNITS[1].3,
            "--duration",
            "1",
            "--json",
            "--config",
        ])
        .arg(dir.path().join("alice").join("unit.toml"))
        .current_dir(dir.path().join("alice"))
        .output()
        .unwrap();
    let caller: Value = serde_json::from_str(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .last()
            .unwrap_or("null"),
    )
    .unwrap_or(Value::Null);
    assert!(
        out.status.success() && caller["connected"] == true && caller["cause"] == 16,
        "the call failed: {caller}\n{}\n--- answer\n{}\n--- gateway\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(dir.path(), "answer.log"),
        log(dir.path(), "gw1.log")
    );
    let _ = topo.child_mut(answering).wait();
    wait_for("the charge closed", Duration::from_secs(10), || {
        Ok(status(&cfg).1["charges_open"] == 0)
    })
    .unwrap();
    let charges = gateway::billing_report(&dir.path().join("state")).unwrap();
    let alice: Vec<&Value> = charges
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["account"] == "acct-alice")
        .collect();
    assert_eq!(alice.len(), 1, "charged once: {charges:#}");
    assert_eq!(alice[0]["status"], "closed", "{charges:#}");
    assert_eq!(
        alice[0]["call_id"], caller["call_id"],
        "{charges:#} {caller}"
    );

    stop(&mut topo, gw, dir.path(), "gw1.log");
    let (ok, v) = status(&cfg);
    assert!(!ok, "a stopped gateway must not be healthy: {v:#}");

    // A second start reuses the realm, and the bindings stay pinned.
    let gw2 = start(&mut topo, &cfg, dir.path(), "gw2.log");
    let second = log(dir.path(), "gw2.log");
    assert!(second.contains("reusing realm HOME.GW.TEST in"), "{second}");
    wait_for("status healthy again", Duration::from_secs(10), || {
        Ok(status(&cfg).0)
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:#}", status(&cfg).1));
    stop(&mut topo, gw2, dir.path(), "gw2.log");
}

#[test]
fn a_failed_start_leaves_no_maps_pinned() {
    let mut topo = Topology::new("homefail").unwrap();
    topo.add_host("gw").unwrap();
    topo.exec_ok(
        "gw",
        &["ip", "addr", "add", &format!("{GW_ADDR}/32"), "dev", "lo"],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("gw-test");
    // gw0 does not exist in this namespace: the attach fails.
    let cfg = write_config(dir.path(), &pins, &["gw0"]);
    let out = topo
        .command("gw", roamgate_bin().unwrap())
        .arg("gateway")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("gw0"), "{err}");
    assert!(!pins.0.exists(), "maps left pinned in {}", pins.0.display());
    assert!(
        !pins.pm().exists(),
        "maps left pinned in {}",
        pins.pm().display()
    );
}

#[test]
fn auto_falls_back_to_skb_where_the_driver_has_no_native_xdp() {
    let mut topo = Topology::new("homeskb").unwrap();
    topo.add_host("gw").unwrap();
    // A bridge has no native XDP (this kernel has no dummy or ifb module).
    topo.exec_ok("gw", &["ip", "link", "add", "gw0", "type", "bridge"])
        .unwrap();
    topo.exec_ok("gw", &["ip", "link", "set", "gw0", "up"])
        .unwrap();
    topo.exec_ok(
        "gw",
        &["ip", "addr", "add", &format!("{GW_ADDR}/24"), "dev", "gw0"],
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new("gw-test");
    let cfg = write_config(dir.path(), &pins, &["gw0"]);
    let gw = start(&mut topo, &cfg, dir.path(), "gw.log");
    let out = log(dir.path(), "gw.log");
    assert_eq!(
        out.matches("no native XDP in this driver").count(),
        1,
        "one warning: {out}"
    );
    assert!(
        out.contains("XDP attached interface=gw0 mode=\"skb\""),
        "{out}"
    );
    assert!(topo.xdp_attached("gw", "gw0").unwrap());
    stop(&mut topo, gw, dir.path(), "gw.log");
}
