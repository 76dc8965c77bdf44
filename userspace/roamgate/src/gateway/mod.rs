//! `roamgate gateway`: the home gateway in one process. It loads and
//! attaches the XDP data plane and runs the existing role runners as tokio
//! tasks on one configuration: the embedded KDC, directory and billing
//! (SQLite under one state directory), the home agent on that data plane,
//! a proxy manager and a base station for the home domain, the metrics
//! endpoint and a status file for `roamgate status`. A role that fails
//! stops the gateway with an error naming it; Ctrl-C or SIGTERM stops every
//! role; the pinned maps stay and the next start adopts them.

pub mod config;
pub mod provision;
pub mod roles;
pub mod status;

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context as _};
use roamgate_directory::{store::DirectoryStore as _, SqliteStore, UnitRecord};
use tokio::{io::unix::AsyncFd, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::config::GatewayConfig;
use self::{
    roles::{Layout, BASE_STATION, BILLING, DATA_PLANE, DIRECTORY, HOME_AGENT, KDC, PROXY_MANAGER},
    status::{RoleState, Roles},
};
use crate::{
    dataplane::{AttachMode, DataPlane},
    home_agent::config::HomeAgentFile,
    metrics,
};

/// A role that fails this soon after the start counts as a failed start:
/// maps this run pinned into an empty pin_dir are removed again.
const START_GRACE: Duration = Duration::from_secs(3);

type RoleTasks = JoinSet<(&'static str, anyhow::Result<()>)>;

/// Runs until `shutdown` is cancelled or a role fails.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let fresh_pins = [config.gateway.pin_dir.clone(), config.proxy_pin_dir()]
        .into_iter()
        .filter(|p| dir_is_empty(p))
        .collect::<Vec<_>>();
    let started = std::time::Instant::now();
    let res = run_inner(Arc::new(config), shutdown, started).await;
    if res.is_err() && started.elapsed() < START_GRACE * 2 {
        for p in &fresh_pins {
            remove_pins(p);
        }
    }
    res
}

async fn run_inner(
    config: Arc<GatewayConfig>,
    shutdown: CancellationToken,
    started: std::time::Instant,
) -> anyhow::Result<()> {
    let address = host_address(&config)?;
    let layout = Layout::new(&config, address);
    let realm = provision::ensure(&layout)?;
    print!("{}", provision::banner(&layout, &realm));
    use std::io::Write as _;
    let _ = std::io::stdout().flush();

    let roles = Roles::new(&config);
    // Every role's own stop token: cancelled on shutdown or on a failure.
    let stop = shutdown.child_token();
    let mut tasks: RoleTasks = JoinSet::new();

    let dp = start_data_plane(&config, &stop, &mut tasks, &roles).await?;
    // The proxies' maps, pinned here when no interface of theirs is
    // attached (the proxy manager then opens them).
    let _proxy_dp = if config.proxy_manager.enabled && config.proxy_manager.interfaces.is_empty() {
        Some(DataPlane::load(&config.proxy_pin_dir()).with_context(|| {
            format!(
                "{PROXY_MANAGER}: pinning the proxies' maps in {}",
                config.proxy_pin_dir().display()
            )
        })?)
    } else {
        None
    };

    if config.kdc.local() {
        let store = roamgate_krb::kdc::db::SqliteDb::open(&layout.kdc_db(), None)
            .with_context(|| format!("{KDC}: opening {}", layout.kdc_db().display()))?;
        let cfg = roamgate_krb::kdc::server::ServerConfig::new(config.kdc.listen);
        let (_, addr, serving) =
            roamgate_krb::cli::kdc::serve(store, cfg, stop.clone().cancelled_owned())
                .await
                .with_context(|| format!("{KDC}: binding {}", config.kdc.listen))?;
        roles.set(KDC, RoleState::Running, addr.to_string());
        tasks.spawn(async move {
            serving.await;
            (KDC, Ok(()))
        });
    }
    // Read (and on the first run create) the directory before it serves:
    // two first opens of one SQLite file race.
    let units = if config.home_agent.enabled {
        directory_units(&config)?
    } else {
        Vec::new()
    };
    if config.directory.local() {
        let cfg = layout.directory()?;
        let listen = cfg.directory.listen;
        spawn_role(&mut tasks, &roles, DIRECTORY, listen, &stop, |s| {
            crate::directory::serve(cfg, s)
        });
    }
    if config.billing.local() {
        let cfg = layout.billing()?;
        let listen = cfg.billing.listen;
        spawn_role(&mut tasks, &roles, BILLING, listen, &stop, |s| {
            crate::billing::serve(cfg, s)
        });
    }
    if config.home_agent.enabled {
        let cfg = layout.home_agent(&units)?;
        let listen = cfg.home_agent.listen;
        let c = config.clone();
        let ha = HomeAgentSupervisor {
            rebuild: Box::new(move |u: &[UnitRecord]| Layout::new(&c, address).home_agent(u)),
            dir_db: config
                .directory
                .local()
                .then(|| config.state_dir().join("directory.sqlite")),
            address,
            refresh: Duration::from_secs(config.home_agent.units_refresh_secs),
            roles: roles.clone(),
        };
        spawn_role(&mut tasks, &roles, HOME_AGENT, listen, &stop, |s| {
            ha.run(cfg, units, s)
        });
    }
    if config.proxy_manager.enabled {
        let cfg = layout.proxy_manager()?;
        let listen = cfg.proxy_manager.listen;
        spawn_role(&mut tasks, &roles, PROXY_MANAGER, listen, &stop, |s| {
            crate::proxy_manager::run(cfg, s)
        });
    }
    if config.base_station.enabled {
        let cfg = layout.base_station()?;
        let listen = cfg.base_station.listen;
        spawn_role(&mut tasks, &roles, BASE_STATION, listen, &stop, |s| {
            crate::base_station::run(cfg, s)
        });
    }
    {
        let (roles, path, s) = (roles.clone(), config.status_file(), stop.clone());
        let every = Duration::from_secs(config.gateway.status_interval_secs);
        tasks.spawn(async move {
            roles.write_loop(&path, every, s).await;
            (status::STATUS_WRITER, Ok(()))
        });
    }
    info!(address = %address, state_dir = %config.state_dir().display(), "home gateway up");

    // The first role to end before the shutdown ends the gateway.
    let failure = tokio::select! {
        biased;
        _ = shutdown.cancelled() => None,
        Some(r) = tasks.join_next() => {
            let (role, res) = r.unwrap_or_else(|e| ("a role", Err(anyhow::anyhow!("panicked: {e}"))));
            match res {
                // It ended because the shutdown began: not a failure.
                Ok(()) if shutdown.is_cancelled() => None,
                res => {
                    let err = res.err().unwrap_or_else(|| anyhow::anyhow!("stopped on its own"));
                    roles.set_state(role, RoleState::Failed(format!("{err:#}")));
                    if started.elapsed() < START_GRACE {
                        warn!(role, "failed during the start");
                    }
                    Some(err.context(format!("{role} failed; the gateway stops")))
                }
            }
        }
    };
    finish(&config, &roles, &stop, tasks, dp, failure).await
}

/// Stops every role, waits for them, writes the last status and detaches.
async fn finish(
    config: &GatewayConfig,
    roles: &Roles,
    stop: &CancellationToken,
    mut tasks: RoleTasks,
    dp: Option<Arc<Mutex<DataPlane>>>,
    failure: Option<anyhow::Error>,
) -> anyhow::Result<()> {
    stop.cancel();
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok((role, Err(e))) => {
                warn!(role, error = %format!("{e:#}"), "role stopped with an error")
            }
            Err(e) => warn!(error = %e, "role panicked"),
            Ok(_) => {}
        }
    }
    roles.stopped();
    let _ = roles.write(&config.status_file());
    if let Some(dp) = dp {
        log_counters(&dp);
        if let Ok(mut dp) = dp.lock() {
            detach(&mut dp);
        }
    }
    match failure {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Marks `role` running at `listen` and runs it as a task until `stop`.
fn spawn_role<F>(
    tasks: &mut RoleTasks,
    roles: &Roles,
    role: &'static str,
    listen: std::net::SocketAddr,
    stop: &CancellationToken,
    run: impl FnOnce(CancellationToken) -> F,
) where
    F: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    roles.set(role, RoleState::Running, listen.to_string());
    let fut = run(stop.clone());
    tasks.spawn(async move { (role, fut.await) });
}

/// Loads the data plane, attaches it (`auto`: native, else skb with one
/// warning) and starts its log reader, counters log and metrics endpoint.
async fn start_data_plane(
    config: &GatewayConfig,
    stop: &CancellationToken,
    tasks: &mut RoleTasks,
    roles: &Roles,
) -> anyhow::Result<Option<Arc<Mutex<DataPlane>>>> {
    if !config.home_agent.enabled && config.gateway.interfaces.is_empty() {
        return Ok(None);
    }
    let interfaces = if config.gateway.interfaces.is_empty() {
        let i = default_route_interface()?;
        info!(interface = %i, "no interfaces configured; using the default-route interface");
        vec![i]
    } else {
        config.gateway.interfaces.clone()
    };
    let mut dp = DataPlane::load(&config.gateway.pin_dir)
        .with_context(|| format!("{DATA_PLANE}: loading"))?;
    info!(pin_dir = %config.gateway.pin_dir.display(), "data plane loaded, maps pinned");
    spawn_log_reader(&mut dp, stop, tasks)?;
    for iface in &interfaces {
        if let Err(e) = attach(&mut dp, iface, config.gateway.xdp_mode) {
            detach(&mut dp);
            return Err(e.context(DATA_PLANE));
        }
    }
    roles.set(DATA_PLANE, RoleState::Running, interfaces.join(","));
    let dp = Arc::new(Mutex::new(dp));

    if let Some(addr) = config.metrics_addr()? {
        let listener = metrics::bind(addr)
            .await
            .with_context(|| format!("{}: binding {addr}", roles::METRICS))?;
        info!(%addr, "metrics at http://{addr}/metrics");
        roles.set(roles::METRICS, RoleState::Running, addr.to_string());
        let dp = dp.clone();
        let render: metrics::Render = Arc::new(move || {
            let Ok(d) = dp.lock() else {
                return String::new();
            };
            let mut out = match d.counters() {
                Ok(c) => metrics::exposition(c.0.iter().map(|(k, v)| (*k, *v))),
                Err(_) => String::new(),
            };
            out.push_str(&metrics::xdp_attached(d.attached()));
            out
        });
        let s = stop.clone();
        tasks.spawn(async move {
            let r = metrics::serve(listener, render, s).await.context("serving");
            (roles::METRICS, r)
        });
    }
    if config.gateway.counters_interval_secs > 0 {
        let period = Duration::from_secs(config.gateway.counters_interval_secs);
        let (dp, s) = (dp.clone(), stop.clone());
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = s.cancelled() => break,
                    _ = tick.tick() => log_counters(&dp),
                }
            }
            (DATA_PLANE, Ok(()))
        });
    }
    Ok(Some(dp))
}

fn attach(dp: &mut DataPlane, iface: &str, mode: AttachMode) -> anyhow::Result<()> {
    // `auto` falls back to skb itself, with the one warning naming the driver.
    let used = dp.attach(iface, mode)?;
    info!(interface = %iface, mode = used.as_str(), "XDP attached");
    Ok(())
}

fn spawn_log_reader(
    dp: &mut DataPlane,
    stop: &CancellationToken,
    tasks: &mut RoleTasks,
) -> anyhow::Result<()> {
    match aya_log::EbpfLogger::init(dp.ebpf_mut()) {
        Ok(logger) => {
            // The logger must stay alive (its map fd), and be flushed when
            // its ring buffer becomes readable.
            // SAFETY: the logger owns its ring-buffer fd and keeps it open for
            // as long as the AsyncFd (which owns the logger) lives.
            let mut fd =
                unsafe { AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE) }
                    .map_err(|e| e.into_parts().1)
                    .context("registering the eBPF log ring buffer with tokio")?;
            let s = stop.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = s.cancelled() => break,
                        guard = fd.readable_mut() => match guard {
                            Ok(mut g) => { g.get_inner_mut().flush(); g.clear_ready(); }
                            Err(e) => { warn!(error = %e, "eBPF log reader failed"); break; }
                        },
                    }
                }
                (DATA_PLANE, Ok(()))
            });
        }
        Err(e) => {
            warn!(error = %e, "eBPF logging unavailable (the program logs nothing at this level)")
        }
    }
    Ok(())
}

/// The units of the embedded directory (none when it runs elsewhere).
fn directory_units(config: &GatewayConfig) -> anyhow::Result<Vec<UnitRecord>> {
    if !config.directory.local() {
        return Ok(Vec::new());
    }
    let db = config.state_dir().join("directory.sqlite");
    let store = SqliteStore::open(&db)
        .with_context(|| format!("{HOME_AGENT}: reading the units in {}", db.display()))?;
    Ok(store.list()?)
}

/// What of a unit the home agent's node depends on.
fn node_fingerprint(units: &[UnitRecord], ha: Ipv4Addr) -> Vec<(Ipv4Addr, u32, String, String)> {
    units
        .iter()
        .filter(|u| u.home_agent == ha)
        .map(|u| {
            (
                u.home_address,
                u.mip_spi,
                u.mip_key.expose_hex().to_string(),
                u.principal.to_string(),
            )
        })
        .collect()
}

/// The home agent's configuration for the directory's units.
type NodesToConfig = dyn Fn(&[UnitRecord]) -> anyhow::Result<HomeAgentFile> + Send;

/// Runs the home agent with one node per unit of the directory; when the
/// directory's units change it restarts the home agent with the new nodes
/// (the binding journal and the pinned maps carry the bindings across).
struct HomeAgentSupervisor {
    rebuild: Box<NodesToConfig>,
    dir_db: Option<PathBuf>,
    address: Ipv4Addr,
    refresh: Duration,
    roles: Roles,
}

impl HomeAgentSupervisor {
    async fn run(
        self,
        mut cfg: HomeAgentFile,
        mut units: Vec<UnitRecord>,
        stop: CancellationToken,
    ) -> anyhow::Result<()> {
        loop {
            self.roles
                .set_detail(HOME_AGENT, format!("{} units", cfg.nodes.len()));
            let child = stop.child_token();
            let mut ha = tokio::spawn(crate::home_agent::run(cfg, false, child.clone()));
            let mut tick = tokio::time::interval(self.refresh);
            tick.tick().await;
            let new_units = loop {
                tokio::select! {
                    r = &mut ha => {
                        r.context("the home agent panicked")??;
                        if stop.is_cancelled() {
                            return Ok(());
                        }
                        bail!("stopped on its own");
                    }
                    _ = tick.tick() => {}
                }
                if let Some(u) = self.changed(&units) {
                    break u;
                }
            };
            info!("the directory's units changed: restarting the home agent with their nodes");
            child.cancel();
            ha.await.context("the home agent panicked")??;
            units = new_units;
            cfg = (self.rebuild)(&units)?;
        }
    }

    /// The directory's units, if this home agent's nodes among them changed.
    fn changed(&self, units: &[UnitRecord]) -> Option<Vec<UnitRecord>> {
        let db = self.dir_db.as_ref()?;
        let fresh = match SqliteStore::open(db).map(|s| s.list()) {
            Ok(Ok(u)) => u,
            Ok(Err(e)) => {
                warn!(error = %e, "reading the directory's units");
                return None;
            }
            Err(e) => {
                warn!(error = %e, "opening the directory");
                return None;
            }
        };
        (node_fingerprint(&fresh, self.address) != node_fingerprint(units, self.address))
            .then_some(fresh)
    }
}

fn log_counters(dp: &Arc<Mutex<DataPlane>>) {
    let Ok(dp) = dp.lock() else { return };
    match dp.counters() {
        Ok(c) => {
            let line: Vec<String> = c.0.iter().map(|(k, v)| format!("{k}={v}")).collect();
            info!(counters = %line.join(" "), "data plane counters");
        }
        Err(e) => warn!(error = %e, "reading counters"),
    }
}

fn detach(dp: &mut DataPlane) {
    for (iface, res) in dp.detach_all() {
        match res {
            Ok(()) => info!(interface = %iface, "XDP detached"),
            Err(e) => warn!(interface = %iface, error = %e, "detaching XDP"),
        }
    }
}

fn dir_is_empty(p: &Path) -> bool {
    std::fs::read_dir(p).map_or(true, |mut d| d.next().is_none())
}

/// Removes what a failed start pinned into a pin_dir that was empty.
fn remove_pins(p: &Path) {
    let Ok(entries) = std::fs::read_dir(p) else {
        return;
    };
    for e in entries.flatten() {
        let _ = std::fs::remove_file(e.path());
    }
    if std::fs::remove_dir(p).is_ok() {
        info!(pin_dir = %p.display(), "the start failed: the maps it pinned are removed");
    }
}

/// This host's address on the IP network: `gateway.address`, or the
/// source address of the default route.
fn host_address(config: &GatewayConfig) -> anyhow::Result<Ipv4Addr> {
    if !config.gateway.address.is_empty() {
        let a: Ipv4Addr = config.gateway.address.parse().with_context(|| {
            format!(
                "gateway.address {:?} is not an IPv4 address",
                config.gateway.address
            )
        })?;
        // The base station and the home agent answer from it: it must be
        // one of this host's.
        std::net::UdpSocket::bind((a, 0)).with_context(|| {
            format!(
                "gateway.address {a} is not an address of this host: set it to the address of                  the interface towards the IP network (`ip -4 addr`), or leave it empty for the                  default route's source"
            )
        })?;
        return Ok(a);
    }
    // Connecting a UDP socket sends nothing; it only picks the route.
    let s = std::net::UdpSocket::bind("0.0.0.0:0").context("opening a UDP socket")?;
    let routed = s
        .connect("192.0.2.1:9")
        .and_then(|()| s.local_addr())
        .ok()
        .and_then(|a| match a.ip() {
            std::net::IpAddr::V4(v4) if !v4.is_unspecified() => Some(v4),
            _ => None,
        });
    routed.context(
        "gateway.address is empty and there is no default IPv4 route: set gateway.address to this host's address",
    )
}

/// The interface of the default IPv4 route, from /proc/net/route.
pub fn default_route_interface() -> anyhow::Result<String> {
    let table = std::fs::read_to_string("/proc/net/route").context("reading /proc/net/route")?;
    parse_default_route(&table).ok_or_else(|| {
        anyhow::anyhow!("no default IPv4 route; name the interfaces in gateway.interfaces")
    })
}

fn parse_default_route(table: &str) -> Option<String> {
    table.lines().skip(1).find_map(|l| {
        let f: Vec<&str> = l.split_whitespace().collect();
        (f.len() > 2 && f[1] == "00000000").then(|| f[0].to_owned())
    })
}

/// Cancels `token` on SIGINT or SIGTERM.
pub fn cancel_on_signals(token: CancellationToken) -> anyhow::Result<()> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => info!("SIGTERM: shutting down"),
            _ = int.recv() => info!("SIGINT: shutting down"),
        }
        token.cancel();
    });
    Ok(())
}

/// Refuses to run without the privileges XDP needs, naming the fix.
pub fn require_root() -> anyhow::Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("roamgate gateway must run as root (it loads XDP programs and pins BPF maps)");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_route_from_proc() {
        let t = "Iface\tDestination\tGateway \tFlags\n\
                 eth1\t0002000A\t00000000\t0001\n\
                 eth0\t00000000\t010200C0\t0003\n";
        assert_eq!(parse_default_route(t).as_deref(), Some("eth0"));
        assert_eq!(parse_default_route("Iface\tDestination\n"), None);
    }

    #[test]
    fn a_pin_dir_is_fresh_when_missing_or_empty() {
        let d = tempfile::tempdir().unwrap();
        assert!(dir_is_empty(&d.path().join("absent")));
        assert!(dir_is_empty(d.path()));
        std::fs::write(d.path().join("counters"), "").unwrap();
        assert!(!dir_is_empty(d.path()));
        remove_pins(d.path());
        assert!(!d.path().exists());
    }
}
