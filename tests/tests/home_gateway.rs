//! The home gateway as an operator meets it (issue 14): `roamgate gateway`
//! on one config in a namespace, its state in a temporary directory;
//! `roamgate status` says healthy; the commands the first run printed are
//! run as printed (parsed from its output) in a unit's namespace across a
//! veth, which provisions the unit and switches it on through the
//! gateway's own base-station listener; status then shows the unit and its
//! binding; a second start reuses the realm. Needs root.

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use roamgate_integration::netns::{roamgate_bin, wait_for, Topology};
use serde_json::Value;

const GW_ADDR: &str = "10.78.0.1";

/// The gateway's pin directories (its own and the proxies' beside it),
/// removed on drop.
struct Pins(PathBuf);

impl Pins {
    fn new() -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = PathBuf::from(format!("/sys/fs/bpf/gw-test-{}-{n}", std::process::id()));
        let s = Self(p);
        s.remove();
        s
    }
    fn pm(&self) -> PathBuf {
        PathBuf::from(format!("{}-pm", self.0.display()))
    }
    fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir_all(self.pm());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.remove();
    }
}

fn write_config(dir: &Path, pins: &Pins) -> PathBuf {
    let cfg = dir.join("gateway.toml");
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\ninterfaces = [\"gw0\"]\nxdp_mode = \"auto\"\npin_dir = \"{pin}\"\n\
             state_dir = \"{state}\"\nrealm = \"HOME.GW.TEST\"\naddress = \"{GW_ADDR}\"\n\
             status_interval_secs = 1\ncounters_interval_secs = 0\n\
             [home_agent]\nunits_refresh_secs = 1\n[metrics]\nlisten = \"\"\n",
            pin = pins.0.display(),
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
    cfg
}

fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

fn start(topo: &mut Topology, cfg: &Path, dir: &Path, name: &str) -> usize {
    let mut cmd = Command::new(roamgate_bin().unwrap());
    cmd.arg("gateway").arg("--config").arg(cfg);
    let idx = topo.spawn("gw", cmd, Some(&dir.join(name))).unwrap();
    wait_for(
        "the home gateway to come up",
        Duration::from_secs(30),
        || {
            if let Some(st) = topo.child_mut(idx).try_wait()? {
                anyhow::bail!("the gateway exited ({st}): {}", log(dir, name));
            }
            Ok(log(dir, name).contains("home gateway up"))
        },
    )
    .unwrap();
    idx
}

fn stop(topo: &mut Topology, idx: usize, dir: &Path, name: &str) {
    let pid = topo.child_mut(idx).id();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let st = topo.child_mut(idx).wait().unwrap();
    assert!(st.success(), "gateway exited {st}: {}", log(dir, name));
}

fn status(cfg: &Path) -> (bool, Value) {
    let out = Command::new(roamgate_bin().unwrap())
        .args(["status", "--json", "--config"])
        .arg(cfg)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

/// The printed provisioning commands: from the `UNIT=` line to the
/// switch-on.
fn printed_commands(out: &str) -> String {
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("UNIT="))
        .collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("roamgate unit switch-on"))
        .expect("no switch-on command printed");
    lines[..=end].join("\n")
}

#[test]
fn home_gateway_first_run_status_provision_and_switch_on() {
    let mut topo = Topology::new("home").unwrap();
    topo.add_host("gw").unwrap();
    topo.add_host("u1").unwrap();
    topo.link(
        ("gw", "gw0", &format!("{GW_ADDR}/24")),
        ("u1", "u0", "10.78.0.11/24"),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new();
    let cfg = write_config(dir.path(), &pins);

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

    // The printed commands, as printed, in the unit's namespace (PATH
    // finds this build's roamgate).
    let script = printed_commands(&first);
    let bin_dir = roamgate_bin().unwrap().parent().unwrap().to_owned();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = topo
        .command("u1", "sh")
        .arg("-ec")
        .arg(&script)
        .current_dir(dir.path())
        .env("PATH", path)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the printed commands failed:\n{script}\n--- stdout\n{stdout}\n--- stderr\n{}\n--- gateway\n{}",
        String::from_utf8_lossy(&out.stderr),
        log(dir.path(), "gw1.log")
    );
    assert!(stdout.contains("switched on"), "{stdout}");

    // The unit is attached and bound at the home agent.
    wait_for("the unit in status", Duration::from_secs(10), || {
        let (ok, v) = status(&cfg);
        Ok(ok
            && v["units"].as_array().is_some_and(|u| u.len() == 1)
            && v["bindings"].as_array().is_some_and(|b| !b.is_empty()))
    })
    .unwrap_or_else(|e| panic!("{e:#}: {:#}", status(&cfg).1));
    let (_, v) = status(&cfg);
    assert_eq!(v["units"][0]["principal"], "alice@HOME.GW.TEST", "{v:#}");
    assert_eq!(v["charges_open"], 0, "{v:#}");

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
    let dir = tempfile::tempdir().unwrap();
    let pins = Pins::new();
    // gw0 does not exist in this namespace: the attach fails.
    let cfg = write_config(dir.path(), &pins);
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
