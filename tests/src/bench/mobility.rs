//! Mobility benchmark (`cargo xtask bench`, key `mobility`).
//!
//! - `registrations_per_s`: the home agent's full registration path, in
//!   process, on the daemon's own [`Engine`]: parse, MN-HA HMAC-MD5 check,
//!   Identification check, Kerberos AP-REQ verify (ticket and authenticator
//!   decryption, replay cache), HKDF tunnel key, SQLite journal write and the
//!   BPF map updates (tunnel + binding) on real pinned maps. Requests are
//!   built beforehand by the mobile-node core with real tickets (untimed).
//!   Baseline in the same run: the same requests with an in-memory journal
//!   (`registrations_per_s_memory_journal`).
//! - `handover_gap_ms` and the voice loss across a home-agent restart: from
//!   one run of the namespace scenario (`crate::mobility`).

use std::{
    net::{IpAddr, Ipv4Addr},
    sync::Arc,
    time::{Duration, Instant, SystemTime},
};

use anyhow::{bail, Context as _};
use roamgate::{
    dataplane::{maps::Maps, DataPlane},
    home_agent::{Engine, HomeLink},
};
use roamgate_krb_crypto::Etype;
use roamgate_mip::{
    auth::SecurityAssociation,
    home_agent::{HomeAgent, HomeAgentConfig, NodeConfig, RateLimit},
    journal::{BindingJournal, MemoryJournal, SqliteJournal},
    mobile_node::{MobileNode, MobileNodeConfig},
};
use serde_json::json;

const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const SERVICE: &str = "mip/ha@BENCH.TEST";
const NODES: u32 = 4000;

fn home(i: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 128, 0, 0)) + i)
}

/// Registration requests from `NODES` nodes (one each), and the HA side.
fn requests() -> anyhow::Result<(Vec<Vec<u8>>, Vec<NodeConfig>, roamgate_krb::ap::KeySet)> {
    let start = SystemTime::now() - Duration::from_secs(5);
    // One ticket for the home agent's service, as one subscriber's proxy
    // would hold; every registration carries a fresh authenticator and
    // subkey built from it.
    let (cred, keys) = roamgate_testkit::mip::issue_ticket(
        "mn@BENCH.TEST",
        SERVICE,
        Etype::Aes256CtsHmacSha196,
        start,
        Duration::from_secs(3600),
    );
    let mut reqs = Vec::new();
    let mut nodes = Vec::new();
    for i in 0..NODES {
        let cred = cred.clone();
        let key = [i as u8 ^ 0x5a; 16];
        let sa = SecurityAssociation::new(256, &key).map_err(|e| anyhow::anyhow!("{e}"))?;
        let mut mn = MobileNode::new(
            MobileNodeConfig {
                home_address: home(i),
                home_agent: HA,
                security_association: sa.clone(),
                credential: Some(cred),
                lifetime: 600,
                reverse_tunnel: true,
                co_located: true,
                tunnel_grace: Duration::from_secs(5),
            },
            Box::new(move || i.wrapping_mul(2_654_435_761)),
        );
        let coa = Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i);
        let out = mn
            .register(coa, SystemTime::now())
            .map_err(|e| anyhow::anyhow!("{e}"))?;
        reqs.push(out.send.context("no request built")?);
        nodes.push(NodeConfig {
            home_address: home(i),
            security_associations: vec![sa],
            principal: roamgate_krb::Principal::parse("mn@BENCH.TEST").ok(),
            require_kerberos: true,
        });
    }
    Ok((reqs, nodes, keys))
}

fn engine(
    pin: &std::path::Path,
    nodes: Vec<NodeConfig>,
    keys: roamgate_krb::ap::KeySet,
    journal: Box<dyn BindingJournal + Send>,
) -> anyhow::Result<Engine> {
    let mut cfg = HomeAgentConfig::new(HA);
    cfg.rate_limit = RateLimit {
        burst: u32::MAX,
        per_second: u32::MAX,
        max_sources: 1 << 20,
    };
    let core = HomeAgent::new(cfg, nodes, Arc::new(keys));
    Ok(Engine::new(
        core,
        journal,
        Maps::open(pin)?,
        1500,
        HomeLink::default(),
    ))
}

/// Registrations per second through the engine, `batch` datagrams at a
/// time (the daemon batches what is already queued), and how many were
/// accepted.
fn measure(e: &mut Engine, reqs: &[Vec<u8>], batch: usize) -> (f64, u64) {
    let src = |i: usize| {
        IpAddr::V4(Ipv4Addr::from(
            u32::from(Ipv4Addr::new(198, 18, 0, 0)) + i as u32,
        ))
    };
    let start = Instant::now();
    for (k, chunk) in reqs.chunks(batch).enumerate() {
        let b: Vec<(&[u8], IpAddr)> = chunk
            .iter()
            .enumerate()
            .map(|(j, r)| (&r[..], src(k * batch + j)))
            .collect();
        let _ = e.handle_batch(&b, SystemTime::now());
    }
    let secs = start.elapsed().as_secs_f64();
    (reqs.len() as f64 / secs, e.metrics.accepted)
}

pub fn registrations() -> anyhow::Result<serde_json::Value> {
    let pin = std::path::PathBuf::from(format!(
        "/sys/fs/bpf/rg-bench-mobility-{}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&pin);
    let _dp = DataPlane::load(&pin).context("loading the data plane (root, bpffs)")?;
    let res = (|| {
        let t = Instant::now();
        let _ = requests()?;
        let build_s = t.elapsed().as_secs_f64();
        let dir = tempfile::tempdir()?;
        let run = |name: &str, batch: usize, sqlite: bool| -> anyhow::Result<f64> {
            let (reqs, nodes, keys) = requests()?;
            let journal: Box<dyn BindingJournal + Send> = if sqlite {
                Box::new(SqliteJournal::open(
                    &dir.path().join(format!("{name}.sqlite")),
                )?)
            } else {
                Box::new(MemoryJournal::default())
            };
            let mut e = engine(&pin, nodes, keys, journal)?;
            let (rps, accepted) = measure(&mut e, &reqs, batch);
            if accepted != reqs.len() as u64 {
                bail!(
                    "{name}: only {accepted} of {} registrations accepted: {:?}",
                    reqs.len(),
                    e.metrics
                );
            }
            Ok(rps)
        };
        let unbatched = run("unbatched", 1, true)?;
        let batched = run("batched", 32, true)?;
        let memory = run("memory", 1, false)?;
        let bindings = Maps::open(&pin)?.list()?.len();
        Ok(json!({
            "registrations_per_s": batched,
            "registrations_per_s_unbatched": unbatched,
            "registrations_per_s_memory_journal": memory,
            "batch": 32,
            "registrations": NODES,
            "bindings_in_map": bindings,
            "request_build_s": build_s,
            "path": "parse + HMAC-MD5 + Identification + AP-REQ verify (aes256-cts) + HKDF + SQLite journal (one transaction per batch) + tunnel and binding map updates",
        }))
    })();
    let _ = std::fs::remove_dir_all(&pin);
    res
}

pub fn run() -> anyhow::Result<serde_json::Value> {
    let mut out = registrations()?;
    match crate::mobility::run() {
        Ok((r, failures)) => {
            for k in [
                "handover_gap_ms",
                "handover_registration_ms",
                "registration_ms_p50",
                "voice_loss_pct_handover",
                "voice_loss_pct_ha_restart",
            ] {
                out[k] = r[k].clone();
            }
            out["scenario_failures"] = json!(failures);
        }
        Err(e) => out["scenario_error"] = json!(format!("{e:#}")),
    }
    out["goals"] = json!({
        "registrations_per_s": ">= 5000",
        "handover_gap_ms": "<= 50",
        "voice_loss_pct_ha_restart": "0",
    });
    Ok(out)
}
