//! The home gateway (`roamgate gateway`) in a namespace: its config, start
//! and stop, `roamgate status`, and the provisioning commands its first run
//! prints, run as printed. Shared by `tests/tests/home_gateway.rs` and the
//! demo (`cargo xtask demo`).

use std::{
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use serde_json::Value;

use crate::netns::{roamgate_bin, wait_for, Topology};

/// The gateway's pin directories (its own and the proxies' beside it),
/// removed on drop.
pub struct Pins(pub PathBuf);

impl Pins {
    pub fn new(tag: &str) -> Self {
        static SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let p = PathBuf::from(format!("/sys/fs/bpf/{tag}-{}-{n}", std::process::id()));
        let s = Self(p);
        s.remove();
        s
    }
    pub fn pm(&self) -> PathBuf {
        PathBuf::from(format!("{}-pm", self.0.display()))
    }
    pub fn remove(&self) {
        let _ = std::fs::remove_dir_all(&self.0);
        let _ = std::fs::remove_dir_all(self.pm());
    }
}

impl Drop for Pins {
    fn drop(&mut self) {
        self.remove();
    }
}

/// `dir/gateway.toml`: the data plane on `interfaces`, state in
/// `dir/state`, this `realm` and `address`; `extra` is appended (more
/// sections: a home link, say).
pub fn write_config(
    dir: &Path,
    pins: &Pins,
    interfaces: &[&str],
    realm: &str,
    address: &str,
    extra: &str,
) -> PathBuf {
    let cfg = dir.join("gateway.toml");
    let ifs: Vec<String> = interfaces.iter().map(|i| format!("{i:?}")).collect();
    std::fs::write(
        &cfg,
        format!(
            "[gateway]\ninterfaces = [{ifs}]\nxdp_mode = \"auto\"\npin_dir = \"{pin}\"\n\
             state_dir = \"{state}\"\nrealm = \"{realm}\"\naddress = \"{address}\"\n\
             status_interval_secs = 1\ncounters_interval_secs = 0\n\
             [metrics]\nlisten = \"\"\n{extra}",
            ifs = ifs.join(", "),
            pin = pins.0.display(),
            state = dir.join("state").display(),
        ),
    )
    .unwrap();
    cfg
}

pub fn log(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_default()
}

/// Starts `roamgate gateway` in host `gw`, its output in `dir/name`; waits
/// until it says it is up.
pub fn start(topo: &mut Topology, cfg: &Path, dir: &Path, name: &str) -> anyhow::Result<usize> {
    let mut cmd = Command::new(roamgate_bin()?);
    cmd.arg("gateway").arg("--config").arg(cfg);
    let idx = topo.spawn("gw", cmd, Some(&dir.join(name)))?;
    wait_for(
        "the home gateway to come up",
        Duration::from_secs(30),
        || {
            if let Some(st) = topo.child_mut(idx).try_wait()? {
                anyhow::bail!("the gateway exited ({st}): {}", log(dir, name));
            }
            Ok(log(dir, name).contains("home gateway up"))
        },
    )?;
    Ok(idx)
}

/// SIGTERM, and the exit status must be success.
pub fn stop(topo: &mut Topology, idx: usize, dir: &Path, name: &str) -> anyhow::Result<()> {
    let pid = topo.child_mut(idx).id();
    // SAFETY: kill(2) on our own child's pid.
    unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    let st = topo.child_mut(idx).wait()?;
    if !st.success() {
        anyhow::bail!("gateway exited {st}: {}", log(dir, name));
    }
    Ok(())
}

/// `roamgate status --json`: (healthy, the page).
pub fn status(cfg: &Path) -> (bool, Value) {
    let Ok(bin) = roamgate_bin() else {
        return (false, Value::Null);
    };
    let Ok(out) = Command::new(bin)
        .args(["status", "--json", "--config"])
        .arg(cfg)
        .output()
    else {
        return (false, Value::Null);
    };
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), v)
}

/// `sh -ec script` in `host`, in `cwd`, with this build's roamgate first
/// on PATH: (success, stdout, stderr).
pub fn run_in(
    topo: &Topology,
    host: &str,
    script: &str,
    cwd: &Path,
) -> anyhow::Result<(bool, String, String)> {
    let bin_dir = roamgate_bin()?
        .parent()
        .map(Path::to_owned)
        .unwrap_or_default();
    let path = format!(
        "{}:{}",
        bin_dir.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let out = topo
        .command(host, "sh")
        .arg("-ec")
        .arg(script)
        .current_dir(cwd)
        .env("PATH", path)
        .output()?;
    Ok((
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    ))
}

/// The provisioning commands the first run printed: from the `UNIT=` line
/// to the switch-on.
pub fn printed_commands(out: &str) -> Option<String> {
    let lines: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("UNIT="))
        .collect();
    let end = lines
        .iter()
        .position(|l| l.starts_with("roamgate unit switch-on"))?;
    Some(lines[..=end].join("\n"))
}

/// The printed commands with the unit's own choice of the variables on
/// their first line.
pub fn for_unit(script: &str, name: &str, home: &str, number: &str, spi: &str) -> String {
    let first = script.lines().next().unwrap_or_default();
    script.replacen(
        first,
        &format!("UNIT={name} HOME_ADDRESS={home} NUMBER={number} SPI={spi}"),
        1,
    )
}

/// `roamgate billing report --format json` of the gateway's ledger in
/// `state_dir`: every charge, open or closed.
pub fn billing_report(state_dir: &Path) -> anyhow::Result<Value> {
    let out = Command::new(roamgate_bin()?)
        .args([
            "billing",
            "report",
            "--format",
            "json",
            "--from",
            "0",
            "--to",
            "4102444800",
            "-c",
        ])
        .arg(state_dir.join("billing.toml"))
        .output()?;
    if !out.status.success() {
        anyhow::bail!(
            "roamgate billing report: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    Ok(serde_json::from_slice(&out.stdout)?)
}
