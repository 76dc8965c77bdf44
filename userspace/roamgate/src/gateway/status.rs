//! The gateway's health, two halves: the running gateway keeps each role's
//! state and rewrites state_dir/status.json atomically; `roamgate status`
//! reads it with what the roles write themselves (the home agent's,
//! proxy manager's and base station's stats files), the pinned maps
//! (bindings, counters) and the ledger (charges open), and prints one page.

use std::{
    collections::BTreeMap,
    path::Path,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::Context as _;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use super::{
    config::GatewayConfig,
    roles::{BASE_STATION, BILLING, DATA_PLANE, DIRECTORY, HOME_AGENT, KDC, PROXY_MANAGER},
};
use crate::platform::fs::write_atomic;

/// The task that writes the status file.
pub const STATUS_WRITER: &str = "status";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "error")]
pub enum RoleState {
    Starting,
    Running,
    Failed(String),
    Stopped,
    Disabled,
    /// Run elsewhere; the gateway uses it.
    External,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RoleLine {
    #[serde(flatten)]
    pub state: RoleState,
    /// Its listening address (or the XDP interfaces).
    pub listen: String,
    pub detail: String,
}

/// The status file.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct StatusFile {
    pub pid: u32,
    pub updated_unix_ms: u64,
    pub interval_ms: u64,
    pub realm: String,
    pub roles: BTreeMap<String, RoleLine>,
}

/// The roles' states, shared by the gateway's tasks.
#[derive(Clone)]
pub struct Roles {
    inner: Arc<Mutex<StatusFile>>,
}

impl Roles {
    pub fn new(cfg: &GatewayConfig) -> Self {
        let line = |on: bool, external: &str| RoleLine {
            state: if !external.is_empty() {
                RoleState::External
            } else if on {
                RoleState::Starting
            } else {
                RoleState::Disabled
            },
            listen: external.to_owned(),
            detail: String::new(),
        };
        let mut r = BTreeMap::new();
        r.insert(
            DATA_PLANE.to_owned(),
            line(
                cfg.home_agent.enabled || !cfg.gateway.interfaces.is_empty(),
                "",
            ),
        );
        r.insert(KDC.to_owned(), line(cfg.kdc.enabled, &cfg.kdc.external));
        r.insert(
            DIRECTORY.to_owned(),
            line(cfg.directory.enabled, &cfg.directory.external),
        );
        r.insert(
            BILLING.to_owned(),
            line(cfg.billing.enabled, &cfg.billing.external),
        );
        r.insert(HOME_AGENT.to_owned(), line(cfg.home_agent.enabled, ""));
        r.insert(
            PROXY_MANAGER.to_owned(),
            line(cfg.proxy_manager.enabled, ""),
        );
        r.insert(BASE_STATION.to_owned(), line(cfg.base_station.enabled, ""));
        Self {
            inner: Arc::new(Mutex::new(StatusFile {
                pid: std::process::id(),
                updated_unix_ms: 0,
                interval_ms: cfg.gateway.status_interval_secs * 1000,
                realm: cfg.gateway.realm.clone(),
                roles: r,
            })),
        }
    }

    fn with(&self, f: impl FnOnce(&mut StatusFile)) {
        if let Ok(mut s) = self.inner.lock() {
            f(&mut s);
        }
    }

    pub fn set(&self, role: &str, state: RoleState, listen: String) {
        self.with(|s| {
            let l = s.roles.entry(role.to_owned()).or_insert(RoleLine {
                state: RoleState::Starting,
                listen: String::new(),
                detail: String::new(),
            });
            l.state = state;
            l.listen = listen;
        });
    }

    pub fn set_state(&self, role: &str, state: RoleState) {
        self.with(|s| {
            if let Some(l) = s.roles.get_mut(role) {
                l.state = state;
            }
        });
    }

    pub fn set_detail(&self, role: &str, detail: String) {
        self.with(|s| {
            if let Some(l) = s.roles.get_mut(role) {
                l.detail = detail;
            }
        });
    }

    /// Every running role is stopped (the gateway's exit).
    pub fn stopped(&self) {
        self.with(|s| {
            for l in s.roles.values_mut() {
                if matches!(l.state, RoleState::Running | RoleState::Starting) {
                    l.state = RoleState::Stopped;
                }
            }
        });
    }

    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        let text = {
            let mut s = self
                .inner
                .lock()
                .map_err(|_| anyhow::anyhow!("status lock poisoned"))?;
            s.updated_unix_ms = unix_ms(SystemTime::now());
            serde_json::to_string_pretty(&*s)?
        };
        write_atomic(path, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", path.display()))
    }

    pub async fn write_loop(&self, path: &Path, every: Duration, stop: CancellationToken) {
        let mut tick = tokio::time::interval(every);
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tick.tick() => {}
            }
            if let Err(e) = self.write(path) {
                tracing::warn!(error = %format!("{e:#}"), "status file");
            }
        }
    }
}

fn unix_ms(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

fn pid_alive(pid: u32) -> bool {
    Path::new(&format!("/proc/{pid}")).exists()
}

fn read_json(path: &Path) -> Option<Value> {
    serde_json::from_str(&std::fs::read_to_string(path).ok()?).ok()
}

/// The page of `roamgate status`, as JSON; `healthy` is false when a role
/// that should run does not (or the gateway is not running).
pub fn collect(cfg: &GatewayConfig) -> anyhow::Result<Value> {
    let path = cfg.status_file();
    let file: Option<StatusFile> = std::fs::read_to_string(&path)
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok());
    let now = unix_ms(SystemTime::now());
    let mut problems = Vec::new();
    let mut roles_json = serde_json::Map::new();
    match &file {
        None => problems.push(format!(
            "no status file {} (is `roamgate gateway` running with this state_dir?)",
            path.display()
        )),
        Some(f) => {
            let stale = now.saturating_sub(f.updated_unix_ms) > f.interval_ms * 3 + 2000;
            let running = pid_alive(f.pid) && !stale;
            if !running {
                problems.push(format!(
                    "the gateway (pid {}) is not running: its status is {} s old",
                    f.pid,
                    now.saturating_sub(f.updated_unix_ms) / 1000
                ));
            }
            for (name, l) in &f.roles {
                let mut l = l.clone();
                if !running && l.state == RoleState::Running {
                    l.state = RoleState::Stopped;
                }
                match &l.state {
                    RoleState::Running | RoleState::Disabled | RoleState::External => {}
                    other => problems.push(format!("{name} is {}", state_name(other))),
                }
                roles_json.insert(name.clone(), serde_json::to_value(&l)?);
            }
        }
    }
    let ha = read_json(&cfg.state_dir().join(format!("{HOME_AGENT}.json")));
    let pm = read_json(&cfg.state_dir().join(format!("{PROXY_MANAGER}.json")));
    let bs = read_json(&cfg.state_dir().join(format!("{BASE_STATION}.json")));
    let journal = cfg.state_dir().join("bindings.sqlite");
    let bindings = crate::home_agent::bindings::list(
        &cfg.gateway.pin_dir,
        journal.exists().then_some(journal.as_path()),
    )
    .map(|rows| serde_json::to_value(rows).unwrap_or_default())
    .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    let counters = crate::counters_cmd::read(&cfg.gateway.pin_dir)
        .map(|c| {
            Value::Object(
                c.into_iter()
                    .map(|(k, v)| (k.to_owned(), json!(v)))
                    .collect(),
            )
        })
        .unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
    let ledger = cfg.state_dir().join("billing.sqlite");
    let charges_open = if cfg.billing.local() && ledger.exists() {
        roamgate_billing::SqliteLedger::open(&ledger)
            .and_then(|l| l.open_charges_count())
            .map(|n| json!(n))
            .unwrap_or_else(|e| json!({ "error": e.to_string() }))
    } else {
        Value::Null
    };
    let units = pm
        .as_ref()
        .and_then(|p| p.get("units").cloned())
        .unwrap_or(json!([]));
    let calls = pm
        .as_ref()
        .and_then(|p| p.get("voice_flows").cloned())
        .unwrap_or(Value::Null);
    Ok(json!({
        "healthy": problems.is_empty(),
        "problems": problems,
        "realm": file.as_ref().map(|f| f.realm.clone()),
        "pid": file.as_ref().map(|f| f.pid),
        "roles": roles_json,
        "home_agent": ha,
        "proxy_manager": pm.as_ref().map(|p| json!({ "stats": p.get("stats"), "io": p.get("io"), "proxies": p.get("proxies") })),
        "base_station": bs,
        "units": units,
        "bindings": bindings,
        "calls_in_progress": calls,
        "charges_open": charges_open,
        "counters": counters,
    }))
}

fn state_name(s: &RoleState) -> String {
    match s {
        RoleState::Starting => "starting".into(),
        RoleState::Running => "running".into(),
        RoleState::Failed(e) => format!("failed: {e}"),
        RoleState::Stopped => "stopped".into(),
        RoleState::Disabled => "disabled".into(),
        RoleState::External => "external".into(),
    }
}

/// `roamgate status`: prints the page; an error (non-zero exit) when the
/// gateway is not healthy.
pub fn print(cfg: &GatewayConfig, json_out: bool) -> anyhow::Result<()> {
    let v = collect(cfg)?;
    if json_out {
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        print!("{}", render(&v));
    }
    if v["healthy"] == json!(true) {
        Ok(())
    } else {
        let problems: Vec<String> = v["problems"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|p| p.as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        anyhow::bail!("not healthy: {}", problems.join("; "))
    }
}

fn render(v: &Value) -> String {
    use std::fmt::Write as _;
    let mut t = String::new();
    let health = if v["healthy"] == json!(true) {
        "healthy"
    } else {
        "NOT HEALTHY"
    };
    let _ = writeln!(
        t,
        "roamgate home gateway: {health} (realm {}, pid {})",
        v["realm"].as_str().unwrap_or("?"),
        v["pid"]
    );
    let _ = writeln!(t, "\nroles");
    if let Some(roles) = v["roles"].as_object() {
        for (name, l) in roles {
            let state = match l["state"].as_str() {
                Some("failed") => format!("failed: {}", l["error"].as_str().unwrap_or("")),
                Some(s) => s.to_owned(),
                None => "?".into(),
            };
            let _ = writeln!(
                t,
                "  {name:<14} {state:<10} {:<22} {}",
                l["listen"].as_str().unwrap_or(""),
                l["detail"].as_str().unwrap_or("")
            );
        }
    }
    let ha = &v["home_agent"];
    if ha.is_object() {
        let _ = writeln!(
            t,
            "  home agent: {} registrations accepted, {} rejected, {} bindings",
            ha["accepted"], ha["rejected"], ha["bindings"]
        );
        // Until they complete, the maps or the journal disagree with the
        // binding cache (home_agent::pending).
        if ha["rollbacks_pending"].as_u64().is_some_and(|n| n > 0) {
            let _ = writeln!(
                t,
                "  home agent: {} rollbacks pending (a failed undo, retried; {} rollback failures)",
                ha["rollbacks_pending"], ha["rollback_failed"]
            );
        }
    }
    let pm = &v["proxy_manager"]["stats"];
    if pm.is_object() {
        let _ = writeln!(
            t,
            "  proxy manager: {} switch-ons, refused {}",
            pm["switch_ons_ok"], pm["refused_by_cause"]
        );
    }
    let units = v["units"].as_array().map_or(&[][..], Vec::as_slice);
    let _ = writeln!(t, "\nunits attached: {}", units.len());
    for u in units {
        let _ = writeln!(
            t,
            "  {} {:<20} home {} care-of {} {}",
            u["identity_code"].as_str().unwrap_or(""),
            u["principal"].as_str().unwrap_or(""),
            u["home_address"].as_str().unwrap_or(""),
            u["care_of"].as_str().unwrap_or("-"),
            u["state"].as_str().unwrap_or("")
        );
    }
    match v["bindings"].as_array() {
        Some(rows) => {
            let _ = writeln!(t, "\nbindings: {}", rows.len());
            for r in rows {
                let _ = writeln!(
                    t,
                    "  {} -> {} spi {} expires in {} s, {} packets out",
                    r["home"].as_str().unwrap_or(""),
                    r["remote"].as_str().unwrap_or(""),
                    r["spi"],
                    r["expires_in_s"],
                    r["tx_packets"]
                );
            }
        }
        None => {
            let _ = writeln!(
                t,
                "\nbindings: {}",
                v["bindings"]["error"].as_str().unwrap_or("?")
            );
        }
    }
    let _ = writeln!(t, "calls in progress: {}", v["calls_in_progress"]);
    let _ = writeln!(t, "charges open: {}", v["charges_open"]);
    let _ = writeln!(t, "\ndata-plane counters");
    if let Some(c) = v["counters"].as_object() {
        for (k, n) in c {
            let _ = writeln!(t, "  {k:<24} {n}");
        }
    }
    if let Some(p) = v["problems"].as_array().filter(|p| !p.is_empty()) {
        let _ = writeln!(t, "\nproblems");
        for x in p {
            let _ = writeln!(t, "  {}", x.as_str().unwrap_or(""));
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ConfigFile as _;

    #[test]
    fn a_running_gateway_is_healthy_and_a_failed_role_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GatewayConfig::from_toml(&format!(
            "[gateway]\nstate_dir = \"{}\"\npin_dir = \"{}/pins\"\n[billing]\nenabled = false\n",
            dir.path().display(),
            dir.path().display()
        ))
        .unwrap();
        let roles = Roles::new(&cfg);
        for r in [
            DATA_PLANE,
            KDC,
            DIRECTORY,
            HOME_AGENT,
            PROXY_MANAGER,
            BASE_STATION,
        ] {
            roles.set(r, RoleState::Running, "x".into());
        }
        roles.write(&cfg.status_file()).unwrap();
        let v = collect(&cfg).unwrap();
        assert_eq!(v["healthy"], json!(true), "{v:#}");
        assert_eq!(v["roles"][BILLING]["state"], "disabled");
        assert!(render(&v).contains("healthy"));

        roles.set_state(PROXY_MANAGER, RoleState::Failed("binding: in use".into()));
        roles.write(&cfg.status_file()).unwrap();
        let v = collect(&cfg).unwrap();
        assert_eq!(v["healthy"], json!(false));
        assert!(
            render(&v).contains("failed: binding: in use"),
            "{}",
            render(&v)
        );
        assert!(print(&cfg, true).is_err());
    }

    #[test]
    fn pending_rollbacks_of_the_home_agent_show_on_the_page() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GatewayConfig::from_toml(&format!(
            "[gateway]\nstate_dir = \"{}\"\npin_dir = \"{}/pins\"\n",
            dir.path().display(),
            dir.path().display()
        ))
        .unwrap();
        let stats = |pending: u64| {
            json!({ "accepted": 3, "rejected": 0, "bindings": 1,
                    "rollback_failed": 1, "rollbacks_pending": pending })
            .to_string()
        };
        let path = cfg.state_dir().join(format!("{HOME_AGENT}.json"));
        std::fs::write(&path, stats(1)).unwrap();
        let page = render(&collect(&cfg).unwrap());
        assert!(
            page.contains("1 rollbacks pending (a failed undo, retried; 1 rollback failures)"),
            "{page}"
        );
        std::fs::write(&path, stats(0)).unwrap();
        let page = render(&collect(&cfg).unwrap());
        assert!(!page.contains("rollbacks pending"), "{page}");
    }

    #[test]
    fn no_status_file_is_not_healthy() {
        let dir = tempfile::tempdir().unwrap();
        let cfg = GatewayConfig::from_toml(&format!(
            "[gateway]\nstate_dir = \"{}\"\n",
            dir.path().display()
        ))
        .unwrap();
        let v = collect(&cfg).unwrap();
        assert_eq!(v["healthy"], json!(false));
        assert!(v["problems"][0]
            .as_str()
            .unwrap()
            .contains("no status file"));
    }
}
