//! `roamgate base-station`: the access point of a domain (docs/attach.md
//! §4). It relays unit requests to its proxy manager inside a relay frame,
//! and the proxy manager's answers back to the unit the frame names. It
//! checks framing only; the proxy manager checks the proof. Each unit
//! source address has a token bucket, so one flooding source cannot take
//! the proxy manager's capacity from the others.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::PathBuf,
    sync::{Arc, Mutex},
    time::{Duration, SystemTime},
};

use anyhow::{bail, Context as _};
use roamgate_attach::{wire::MAX_FRAME_LEN, BaseStation};
use roamgate_mip::rate_limit::{RateLimit, SourceLimiter};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::{ConfigFile, LogSection, OptionalMetrics};

pub const DEFAULT_LISTEN: &str = "0.0.0.0:4340";
pub const DEFAULT_MANAGER: &str = "127.0.0.1:4341";

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BaseStationFile {
    pub base_station: Section,
    pub limits: Limits,
    pub metrics: OptionalMetrics,
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Section {
    /// Unique within the domain; names this base station to the manager.
    pub id: u32,
    /// The domain (realm name) relay frames carry.
    pub domain: String,
    /// UDP address units send to; also where the manager's answers arrive.
    pub listen: SocketAddr,
    /// The domain's proxy manager.
    pub manager: SocketAddr,
    /// JSON counters rewritten every `stats_interval_ms`; empty: none.
    pub stats_file: String,
    pub stats_interval_ms: u64,
}

impl Default for Section {
    fn default() -> Self {
        Self {
            id: 1,
            domain: "EXAMPLE.ORG".to_owned(),
            listen: DEFAULT_LISTEN.parse().expect("valid default"),
            manager: DEFAULT_MANAGER.parse().expect("valid default"),
            stats_file: String::new(),
            stats_interval_ms: 1000,
        }
    }
}

/// Per unit source address.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub burst: u32,
    pub per_second: u32,
    /// Sources tracked at most (memory bound); beyond, new sources wait.
    pub max_sources: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            burst: 10,
            per_second: 5,
            max_sources: 65_536,
        }
    }
}

impl ConfigFile for BaseStationFile {
    fn validate(&self) -> anyhow::Result<()> {
        BaseStation::new(self.base_station.id, &self.base_station.domain)
            .map_err(|e| anyhow::anyhow!("base_station.domain: {e}"))?;
        if !self.base_station.manager.is_ipv4() || !self.base_station.listen.is_ipv4() {
            bail!("base_station.listen and base_station.manager must be IPv4 (relay frames carry IPv4 unit addresses)");
        }
        let l = &self.limits;
        if l.burst == 0 || l.per_second == 0 || l.max_sources == 0 {
            bail!("limits.burst, limits.per_second and limits.max_sources must be at least 1");
        }
        self.metrics.addr()?;
        if self.base_station.stats_interval_ms == 0 {
            bail!("base_station.stats_interval_ms must be at least 1");
        }
        Ok(())
    }
}

/// The base station's counters.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub from_units: u64,
    pub relayed_to_manager: u64,
    pub from_manager: u64,
    pub relayed_to_units: u64,
    /// Unit datagrams dropped: not a request frame (junk, truncated,
    /// oversized, an answer type).
    pub dropped_malformed: u64,
    /// Unit datagrams over their source's rate limit.
    pub dropped_rate_limited: u64,
    /// From the manager's address but not a relay answer for us.
    pub dropped_from_manager: u64,
    pub send_errors: u64,
}

impl Stats {
    pub fn prometheus(&self) -> String {
        let v = serde_json::to_value(self).unwrap_or_default();
        let counters: BTreeMap<String, u64> = serde_json::from_value(v).unwrap_or_default();
        let mut s = String::new();
        for (k, v) in counters {
            s.push_str(&format!(
                "# TYPE roamgate_bs_{k}_total counter\nroamgate_bs_{k}_total {v}\n"
            ));
        }
        s
    }
}

/// Serves until `shutdown`.
pub async fn run(cfg: BaseStationFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let b = &cfg.base_station;
    let core = BaseStation::new(b.id, &b.domain)?;
    let sock = UdpSocket::bind(b.listen)
        .await
        .with_context(|| format!("binding base_station.listen {}", b.listen))?;
    info!(listen = %sock.local_addr()?, manager = %b.manager, id = b.id, domain = %b.domain, "base station ready");
    let stats = Arc::new(Mutex::new(Stats::default()));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics.addr()? {
        let listener = crate::metrics::bind(addr).await?;
        let s = stats.clone();
        let render: crate::metrics::Render =
            Arc::new(move || s.lock().unwrap_or_else(|p| p.into_inner()).prometheus());
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::metrics::serve(listener, render, stop).await });
    }
    if !b.stats_file.is_empty() {
        let (s, path, every) = (
            stats.clone(),
            PathBuf::from(&b.stats_file),
            Duration::from_millis(b.stats_interval_ms),
        );
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let mut v = serde_json::to_value(&*s.lock().unwrap_or_else(|p| p.into_inner()))
                    .unwrap_or_default();
                v["pid"] = std::process::id().into();
                if let Err(e) =
                    crate::platform::fs::write_atomic(&path, v.to_string().as_bytes(), 0o644)
                {
                    debug!(error = %e, "stats file");
                }
            }
            Ok(())
        });
    }
    let mut limiter = SourceLimiter::new(RateLimit {
        burst: cfg.limits.burst,
        per_second: cfg.limits.per_second,
        max_sources: cfg.limits.max_sources,
    });
    let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
    loop {
        let (n, from) = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => { warn!(error = %e, "receive failed"); continue; }
            },
        };
        let mut st = stats.lock().unwrap_or_else(|p| p.into_inner());
        if from == b.manager {
            st.from_manager += 1;
            match core.from_manager(&buf[..n]) {
                Ok((unit, frame)) => match sock.try_send_to(frame, unit.into()) {
                    Ok(_) => st.relayed_to_units += 1,
                    Err(e) => {
                        st.send_errors += 1;
                        debug!(%unit, error = %e, "sending to a unit failed");
                    }
                },
                Err(e) => {
                    st.dropped_from_manager += 1;
                    debug!(error = %e, "dropped a datagram from the manager");
                }
            }
            continue;
        }
        st.from_units += 1;
        let SocketAddr::V4(unit) = from else {
            st.dropped_malformed += 1;
            continue;
        };
        // Oversized datagrams are dropped unread (docs/attach.md §2).
        if n > MAX_FRAME_LEN {
            st.dropped_malformed += 1;
            continue;
        }
        if !limiter.allow(from.ip(), SystemTime::now()) {
            st.dropped_rate_limited += 1;
            continue;
        }
        match core.from_unit(&buf[..n], unit) {
            Ok(frame) => match sock.try_send_to(&frame, b.manager) {
                Ok(_) => st.relayed_to_manager += 1,
                Err(e) => {
                    st.send_errors += 1;
                    warn!(manager = %b.manager, error = %e, "sending to the proxy manager failed");
                }
            },
            Err(e) => {
                st.dropped_malformed += 1;
                debug!(%unit, error = %e, "dropped a unit datagram");
            }
        }
    }
    tasks.shutdown().await;
    info!(stats = ?*stats.lock().unwrap_or_else(|p| p.into_inner()), "base station stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_config_is_the_defaults() {
        let cfg =
            BaseStationFile::from_toml(include_str!("../../../config/base-station.toml")).unwrap();
        let d = BaseStationFile::default();
        assert_eq!(cfg.base_station.listen, d.base_station.listen);
        assert_eq!(cfg.base_station.manager, d.base_station.manager);
        assert_eq!(cfg.base_station.id, d.base_station.id);
        assert_eq!(cfg.base_station.domain, d.base_station.domain);
        assert_eq!(cfg.limits.burst, d.limits.burst);
        assert_eq!(cfg.limits.per_second, d.limits.per_second);
        assert_eq!(cfg.limits.max_sources, d.limits.max_sources);
    }

    #[test]
    fn bad_values_name_their_key() {
        let e = BaseStationFile::from_toml("[base_station]\ndomain = \"\"\n").unwrap_err();
        assert!(format!("{e:#}").contains("base_station.domain"), "{e:#}");
        let e = BaseStationFile::from_toml("[limits]\nburst = 0\n").unwrap_err();
        assert!(format!("{e:#}").contains("limits.burst"), "{e:#}");
    }

    #[test]
    fn metrics_name_every_counter() {
        let text = Stats::default().prometheus();
        for k in ["from_units", "dropped_rate_limited", "relayed_to_manager"] {
            assert!(text.contains(&format!("roamgate_bs_{k}_total 0")), "{text}");
        }
    }
}
