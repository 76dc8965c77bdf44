//! `roamgate gateway` on a real veth in a network namespace: it attaches in
//! native mode, counts real traffic, serves the counters, detaches on SIGTERM
//! and leaves its pinned maps for the next start. Needs root.

use std::{process::Command, time::Duration};

use roamgate_integration::netns::{roamgate_bin, wait_for, Topology};
use roamgate_testkit::fixture::TestPinDir;

fn counters(pin_dir: &str) -> serde_json::Value {
    let out = Command::new(roamgate_bin().unwrap())
        .args(["counters", "--json", "--pin-dir", pin_dir])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// The data plane alone: every role of the home gateway off
/// (tests/tests/home_gateway.rs runs them).
const ROLES_OFF: &str = "[kdc]\nenabled = false\n[directory]\nenabled = false\n\
    [billing]\nenabled = false\n[home_agent]\nenabled = false\n\
    [proxy_manager]\nenabled = false\n[base_station]\nenabled = false\n";

fn start_gateway(topo: &mut Topology, dir: &std::path::Path, pin_dir: &str) -> usize {
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\ninterfaces = [\"gw0\"]\nxdp_mode = \"native\"\npin_dir = \"{pin_dir}\"\n\
             counters_interval_secs = 1\nstate_dir = \"{state}\"\naddress = \"10.77.0.2\"\n\
             {ROLES_OFF}[metrics]\nlisten = \"127.0.0.1:9464\"\n",
            state = dir.display(),
        ),
    )
    .unwrap();
    let mut cmd = Command::new(roamgate_bin().unwrap());
    cmd.arg("gateway").arg("--config").arg(&cfg);
    topo.spawn("gw", cmd, Some(&dir.join("gateway.log")))
        .unwrap()
}

#[test]
fn gateway_attaches_counts_and_detaches() {
    let mut topo = Topology::new("gw").unwrap();
    topo.add_host("peer").unwrap();
    topo.add_host("gw").unwrap();
    topo.link(
        ("peer", "p0", "10.77.0.1/24"),
        ("gw", "gw0", "10.77.0.2/24"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Removed on drop, also when an assertion fails.
    let pin = TestPinDir::new("gateway");
    let pin_dir = pin.path().display().to_string();

    let gw = start_gateway(&mut topo, dir.path(), &pin_dir);
    wait_for("XDP on gw0", Duration::from_secs(20), || {
        topo.xdp_attached("gw", "gw0")
    })
    .unwrap();

    // Real traffic through the attached program.
    topo.exec_ok(
        "peer",
        &["ping", "-c", "5", "-i", "0.2", "-W", "2", "10.77.0.2"],
    )
    .unwrap();
    let c = counters(&pin_dir);
    assert!(c["rx_ipv4"].as_u64().unwrap() >= 5, "{c}");
    assert!(c["action_pass"].as_u64().unwrap() >= 5, "{c}");
    assert!(
        c["rx_non_ipv4"].as_u64().unwrap() >= 1,
        "ARP must be seen: {c}"
    );
    assert_eq!(c["action_drop"].as_u64().unwrap(), 0, "{c}");

    // The Prometheus endpoint, reached from inside the gateway's namespace.
    let metrics = topo
        .exec_ok(
            "gw",
            &[
                "python3",
                "-c",
                "import urllib.request;print(urllib.request.urlopen('http://127.0.0.1:9464/metrics').read().decode())",
            ],
        )
        .unwrap();
    assert!(metrics.contains("roamgate_xdp_rx_ipv4_total "), "{metrics}");

    // SIGTERM: clean exit, XDP gone, maps stay pinned.
    let pid = topo.child_mut(gw).id();
    let children = Command::new("pgrep")
        .args(["-P", &pid.to_string()])
        .output()
        .unwrap();
    // nsenter execs the gateway in place, so the pid is the gateway's own.
    assert!(children.stdout.is_empty(), "nsenter should exec, not fork");
    assert!(Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .unwrap()
        .success());
    let status = {
        let mut waited = None;
        for _ in 0..100 {
            if let Some(s) = topo.child_mut(gw).try_wait().unwrap() {
                waited = Some(s);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        waited.expect("gateway did not exit within 5 s of SIGTERM")
    };
    let log = std::fs::read_to_string(dir.path().join("gateway.log")).unwrap();
    assert!(status.success(), "gateway exited with {status}: {log}");
    assert!(log.contains("XDP attached"), "{log}");
    assert!(log.contains("SIGTERM: shutting down"), "{log}");
    assert!(log.contains("XDP detached"), "{log}");
    assert!(log.contains("data plane counters"), "{log}");
    assert!(
        !topo.xdp_attached("gw", "gw0").unwrap(),
        "XDP left attached"
    );
    let before_restart = counters(&pin_dir)["rx_ipv4"].as_u64().unwrap();
    assert!(before_restart >= 5);

    // A restart reuses the pinned counters instead of starting from zero.
    let gw2 = start_gateway(&mut topo, dir.path(), &pin_dir);
    wait_for("XDP on gw0 again", Duration::from_secs(20), || {
        topo.xdp_attached("gw", "gw0")
    })
    .unwrap();
    topo.exec_ok(
        "peer",
        &["ping", "-c", "2", "-i", "0.2", "-W", "2", "10.77.0.2"],
    )
    .unwrap();
    let after = counters(&pin_dir)["rx_ipv4"].as_u64().unwrap();
    assert!(
        after >= before_restart + 2,
        "{after} < {before_restart} + 2"
    );
    let pid2 = topo.child_mut(gw2).id();
    Command::new("kill")
        .args(["-INT", &pid2.to_string()])
        .status()
        .unwrap();
    let _ = topo.child_mut(gw2).wait();
    assert!(
        !topo.xdp_attached("gw", "gw0").unwrap(),
        "XDP left attached after SIGINT"
    );
}

#[test]
fn gateway_refuses_a_missing_interface_with_a_clear_error() {
    let mut topo = Topology::new("gwerr").unwrap();
    topo.add_host("gw").unwrap();
    topo.exec_ok("gw", &["ip", "addr", "add", "10.77.0.2/32", "dev", "lo"])
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("g.toml");
    let pin = TestPinDir::new("gateway");
    let pin_dir = pin.path().display().to_string();
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\ninterfaces = [\"nope0\"]\npin_dir = \"{pin_dir}\"\nstate_dir = \"{}\"\n\
             address = \"10.77.0.2\"\n{ROLES_OFF}[metrics]\nlisten = \"\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let out = topo
        .command("gw", roamgate_bin().unwrap())
        .arg("gateway")
        .arg("--config")
        .arg(&cfg)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("attaching XDP to nope0"), "{err}");
}
