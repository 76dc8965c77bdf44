//! `roamgate gateway`: the all-in-one role. For now it loads and attaches the
//! data plane, pins its maps, reports counters (logs and Prometheus) and
//! detaches cleanly on Ctrl-C or SIGTERM.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::{io::unix::AsyncFd, task::JoinSet};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::{config::GatewayConfig, dataplane::DataPlane, metrics};

/// Runs until `shutdown` is cancelled.
pub async fn run(config: GatewayConfig, shutdown: CancellationToken) -> anyhow::Result<()> {
    let interfaces = if config.gateway.interfaces.is_empty() {
        let i = default_route_interface()?;
        info!(interface = %i, "no interfaces configured; using the default-route interface");
        vec![i]
    } else {
        config.gateway.interfaces.clone()
    };

    let mut dp = DataPlane::load(&config.gateway.pin_dir)?;
    info!(pin_dir = %config.gateway.pin_dir.display(), "data plane loaded, maps pinned");

    let mut tasks = JoinSet::new();
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
            let stop = shutdown.clone();
            tasks.spawn(async move {
                loop {
                    tokio::select! {
                        _ = stop.cancelled() => break,
                        guard = fd.readable_mut() => match guard {
                            Ok(mut g) => { g.get_inner_mut().flush(); g.clear_ready(); }
                            Err(e) => { warn!(error = %e, "eBPF log reader failed"); break; }
                        },
                    }
                }
                Ok(())
            });
        }
        Err(e) => {
            warn!(error = %e, "eBPF logging unavailable (the program logs nothing at this level)")
        }
    }

    for iface in &interfaces {
        if let Err(e) = dp.attach(iface, config.gateway.xdp_mode) {
            detach(&mut dp);
            return Err(e.into());
        }
        info!(interface = %iface, mode = config.gateway.xdp_mode.as_str(), "XDP attached");
    }

    let dp = Arc::new(Mutex::new(dp));

    if let Some(addr) = config.metrics_addr()? {
        let listener = metrics::bind(addr).await?;
        info!(%addr, "metrics at http://{addr}/metrics");
        let dp = dp.clone();
        let render: metrics::Render = Arc::new(move || {
            let c = dp.lock().map(|d| d.counters());
            match c {
                Ok(Ok(c)) => metrics::exposition(c.0.iter().map(|(k, v)| (*k, *v))),
                _ => String::new(),
            }
        });
        let stop = shutdown.clone();
        tasks.spawn(async move {
            metrics::serve(listener, render, stop)
                .await
                .context("metrics endpoint")
        });
    }

    if config.gateway.counters_interval_secs > 0 {
        let period = Duration::from_secs(config.gateway.counters_interval_secs);
        let dp = dp.clone();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(period);
            tick.tick().await;
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => log_counters(&dp),
                }
            }
            Ok(())
        });
    }

    shutdown.cancelled().await;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Err(e)) => warn!(error = %format!("{e:#}"), "task failed"),
            Err(e) => warn!(error = %e, "task panicked"),
            Ok(Ok(())) => {}
        }
    }
    log_counters(&dp);
    let mut dp = dp
        .lock()
        .map_err(|_| anyhow::anyhow!("data plane lock poisoned"))?;
    detach(&mut dp);
    Ok(())
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
}
