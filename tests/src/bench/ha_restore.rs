//! Home-agent restore benchmark (`cargo xtask bench`, key `ha_restore`).
//!
//! `Engine::restore` after a restart, on real pinned maps (the data plane's
//! capacities) and a SQLite journal holding `N` live bindings:
//! - `restore_ms` (N = 100,000): the maps kept every tunnel and binding (a
//!   daemon restart): journal read, one walk of the maps, every binding
//!   adopted;
//! - `restore_ms_10k`: the same at N = 10,000, to show the growth is
//!   linear (`growth_100k_over_10k` near 10; it was quadratic, a full map
//!   walk per binding);
//! - `restore_ms_maps_lost` (N = 100,000): the maps are empty (a reboot):
//!   every binding is dropped, in one journal transaction;
//! - `restore_ms_expired` (N = 100,000): every binding expired while the
//!   daemon was stopped, maps intact: all are removed with their tunnels
//!   (one journal transaction, one walk of the map).
//!
//! Setup (journal rows, map entries, key derivation) is untimed.

use std::{
    net::Ipv4Addr,
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use roamgate::{
    dataplane::maps::{Binding, Capacity, Expiry, Maps, Role, TunnelSpec},
    home_agent::{Engine, HomeLink},
};
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig},
    journal::{BindingJournal, BindingRecord, JournalOp, SqliteJournal},
    MasterKey,
};
use serde_json::json;

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
pub const BINDINGS: u32 = 100_000;

fn home(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 64, 0, 0)) + i)
}

fn spi(i: u32) -> u32 {
    0x1000_0000 + i
}

fn key(i: u32) -> [u8; 32] {
    let mut k = [0x5a; 32];
    k[..4].copy_from_slice(&i.to_be_bytes());
    k
}

struct PinDir(PathBuf);

impl Drop for PinDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn pin_dir(tag: &str) -> PinDir {
    let p = PathBuf::from(format!(
        "/sys/fs/bpf/rg-bench-restore-{}-{tag}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&p);
    PinDir(p)
}

/// A journal with `n` live bindings; with `maps`, the same bindings and
/// their tunnels in the maps (what a stopped daemon leaves behind).
fn populate(n: u32, journal: &Path, maps: Option<&mut Maps>, expired: bool) -> anyhow::Result<()> {
    let now = SystemTime::now();
    let expires = if expired {
        now - Duration::from_secs(1)
    } else {
        now + Duration::from_secs(1800)
    };
    let ops: Vec<JournalOp> = (0..n)
        .map(|i| {
            JournalOp::PutBinding(BindingRecord {
                home: home(i),
                care_of: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i),
                home_agent: HA,
                spi: spi(i),
                master_key: MasterKey::new(key(i)),
                identification: 0xeb00_0000_0000_0000 | u64::from(i),
                lifetime: 1800,
                registered_at: now,
                expires,
                reverse_tunnel: true,
                client: None,
            })
        })
        .collect();
    SqliteJournal::open(journal)?.apply(&ops)?;
    if let Some(maps) = maps {
        for i in 0..n {
            let mut t = TunnelSpec::new(
                spi(i),
                Role::HomeAgent,
                HA,
                home(i),
                &MasterKey::new(key(i)),
            );
            t.expires = Expiry::after(Duration::from_secs(1805));
            maps.install(
                &Binding {
                    home: home(i),
                    role: Role::HomeAgent,
                    remote: Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i),
                    spi: spi(i),
                    expires: Expiry::after(Duration::from_secs(1800)),
                },
                &t,
            )
            .with_context(|| format!("installing binding {i}"))?;
        }
    }
    Ok(())
}

fn engine(n: u32, pin: &Path, journal: &Path) -> anyhow::Result<Engine> {
    let nodes = (0..n)
        .map(|i| {
            Ok(NodeConfig {
                home_address: home(i),
                security_associations: vec![SecurityAssociation::new(256, &key(i)[..16])
                    .map_err(|e| anyhow::anyhow!("{e}"))?],
                principal: None,
                require_kerberos: false,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut cfg = HomeAgentConfig::new(HA);
    cfg.max_bindings = cfg.max_bindings.max(n as usize);
    let core = HomeAgent::new(cfg, nodes, Arc::new(roamgate_krb::ap::KeySet::default()));
    Ok(Engine::new(
        core,
        Box::new(SqliteJournal::open(journal)?),
        Maps::open(pin)?,
        1500,
        HomeLink::default(),
    ))
}

/// One restore of `n` bindings; returns (milliseconds, the engine after).
fn restore(n: u32, maps_kept: bool, expired: bool) -> anyhow::Result<(f64, Engine)> {
    let pin = pin_dir(&format!("{n}-{maps_kept}-{expired}"));
    let mut maps = Maps::create_pinned(&pin.0, Capacity::default())
        .context("creating pinned maps (root, bpffs)")?;
    let dir = tempfile::tempdir()?;
    let journal = dir.path().join("bindings.sqlite");
    populate(n, &journal, maps_kept.then_some(&mut maps), expired)?;
    let mut e = engine(n, &pin.0, &journal)?;
    let t = Instant::now();
    e.restore(SystemTime::now())?;
    let ms = t.elapsed().as_secs_f64() * 1000.0;
    Ok((ms, e))
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    let (ms_10k, e) = restore(BINDINGS / 10, true, false)?;
    if e.metrics.restored_bindings != (BINDINGS / 10) as usize {
        bail!("10k: restored {:?}", e.metrics);
    }
    drop(e);
    let (ms, e) = restore(BINDINGS, true, false)?;
    let m = &e.metrics;
    if m.restored_bindings != BINDINGS as usize
        || m.reinstalled_bindings != 0
        || m.restore_tunnel_lost != 0
    {
        bail!("100k, maps kept: {m:?}");
    }
    drop(e);
    let (ms_lost, e) = restore(BINDINGS, false, false)?;
    if e.metrics.restore_tunnel_lost != u64::from(BINDINGS) || e.core.binding_count() != 0 {
        bail!("100k, maps lost: {:?}", e.metrics);
    }
    drop(e);
    let (ms_expired, e) = restore(BINDINGS, true, true)?;
    if e.core.stats().expired != u64::from(BINDINGS)
        || !e.maps.list()?.is_empty()
        || e.maps.tunnel_count() != 0
    {
        bail!("100k, expired: {:?}", e.metrics);
    }
    Ok(json!({
        "bindings": BINDINGS,
        "restore_ms": ms,
        "restore_ms_10k": ms_10k,
        "growth_100k_over_10k": ms / ms_10k,
        "restore_ms_maps_lost": ms_lost,
        "restore_ms_expired": ms_expired,
        "path": "SQLite journal read + one walk of the pinned bindings map (a tunnel lookup each) + core restore; maps lost: one journal transaction dropping every binding",
    }))
}
