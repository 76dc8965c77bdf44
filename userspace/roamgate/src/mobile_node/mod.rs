//! `roamgate mobile-node`: the RFC 5944 mobile node daemon (co-located
//! care-of address), around the I/O-free core `roamgate_mip::mobile_node`.
//!
//! - Kerberos first: a TGT from the node's keytab, then a service ticket for
//!   the home agent's principal; every registration carries an AP-REQ with
//!   a fresh subkey from which both ends derive the tunnel key.
//! - Its side of the tunnel is the XDP data plane (loaded and attached here,
//!   or pinned by another process), or where XDP is not available the
//!   userspace forwarder over a TUN device ([`tun`]). The core's actions are
//!   applied *before* its request is sent, so the home agent's first packet
//!   under a new key already verifies.
//! - The care-of address is polled from the configured interfaces (every
//!   `care_of_poll_ms`); a change registers at once (handover).
//! - SIGINT/SIGTERM: deregisters (lifetime 0), waits briefly for the reply,
//!   removes its bindings and detaches.
//!
//! The node itself is the library type [`node::Node`], whose inputs
//! (identity, credentials, care-of source, data plane) are injected; [`run`]
//! only builds them from the config file and owns the data plane. The proxy
//! manager runs one `Node` per unit as a tokio task.

pub mod config;
pub mod node;
pub mod tun;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use roamgate_krb::{
    client::{ClientSecret, Credential},
    Principal,
};
use roamgate_mip::auth::SecurityAssociation;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

pub use self::node::{
    CareOfSource, Credentials, Deregistration, Identity, Node, NodeReport, NodeSpec, NodeStatus,
    Plane, SharedMaps,
};
use self::{
    config::{DataplaneMode, KerberosSection, MobileNodeFile},
    tun::TunPlane,
};
use crate::{
    dataplane::{maps::Maps, DataPlane},
    platform::keyfile::read_hex_key,
};

/// How long a shutdown waits for the deregistration reply.
pub const DEREGISTRATION_WAIT: Duration = Duration::from_secs(2);
/// The service ticket is renewed this long before it expires.
pub const TICKET_RENEW_BEFORE: Duration = Duration::from_secs(600);
/// After a failed renewal, the next attempt comes this much later.
pub const TICKET_RETRY: Duration = Duration::from_secs(30);
/// TUN mode: how often the status file gets fresh forwarder counters.
pub const COUNTERS_INTERVAL: Duration = Duration::from_secs(1);

/// When to renew a ticket ending at `end`: `TICKET_RENEW_BEFORE` before
/// it, or at 80 % of what is left for short tickets.
pub fn renew_at(end: SystemTime, now: SystemTime) -> SystemTime {
    let left = end.duration_since(now).unwrap_or_default();
    let early = TICKET_RENEW_BEFORE.min(left / 5);
    end.checked_sub(early).unwrap_or(now)
}

/// The first IPv4 address of the first listed interface that is up and has
/// one.
pub fn current_care_of(interfaces: &[String]) -> Option<Ipv4Addr> {
    let mut found: Vec<(String, Ipv4Addr)> = Vec::new();
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `ifap` with a list we free below.
    if unsafe { libc::getifaddrs(&mut ifap) } != 0 {
        return None;
    }
    let mut p = ifap;
    while !p.is_null() {
        // SAFETY: `p` is a node of the list getifaddrs returned.
        let ifa = unsafe { &*p };
        p = ifa.ifa_next;
        if ifa.ifa_addr.is_null() || ifa.ifa_flags & (libc::IFF_UP as u32) == 0 {
            continue;
        }
        // SAFETY: ifa_addr is non-null and points at a sockaddr.
        if i32::from(unsafe { (*ifa.ifa_addr).sa_family }) != libc::AF_INET {
            continue;
        }
        // SAFETY: family AF_INET means the sockaddr is a sockaddr_in.
        let sin = unsafe { &*(ifa.ifa_addr as *const libc::sockaddr_in) };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        found.push((name, Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr))));
    }
    // SAFETY: `ifap` came from getifaddrs and is freed once.
    unsafe { libc::freeifaddrs(ifap) };
    interfaces
        .iter()
        .find_map(|want| found.iter().find(|(n, _)| n == want).map(|(_, a)| *a))
}

/// Marks `names` as the node's inside in the data plane (only their frames
/// from the home address are reverse-tunnelled); returns their ifindexes.
pub fn mark_inside(maps: &mut Maps, names: &[String]) -> anyhow::Result<Vec<u32>> {
    let mut out = Vec::new();
    for name in names {
        let c = std::ffi::CString::new(name.as_str())
            .with_context(|| format!("inside interface {name:?}"))?;
        // SAFETY: a valid NUL-terminated name.
        let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
        if i == 0 {
            anyhow::bail!(
                "inside interface {name}: {} (dataplane.inside_interfaces, or \
                 dataplane.interfaces less the care-of interfaces, names it)",
                std::io::Error::last_os_error()
            );
        }
        maps.mark_inside(i)
            .with_context(|| format!("marking {name} as an inside interface"))?;
        info!(interface = %name, ifindex = i, "inside interface: its frames from the home address are reverse-tunnelled");
        out.push(i);
    }
    Ok(out)
}

/// The newest key per etype of `client` in the keytab at `path`.
fn keytab_secret(path: &Path, client: &Principal) -> anyhow::Result<ClientSecret> {
    let kt = roamgate_krb::keytab::Keytab::load(path)
        .with_context(|| format!("reading keytab {}", path.display()))?;
    let keys = kt.newest_keys(client);
    if keys.is_empty() {
        anyhow::bail!("keytab {} has no key for {client}", path.display());
    }
    Ok(ClientSecret::Keys(keys))
}

/// The credential source `[kerberos]` describes (a keytab).
pub fn keytab_credentials(k: &KerberosSection) -> anyhow::Result<Credentials> {
    Ok(Credentials::Keytab {
        kdc: k.kdc,
        principal: Principal::parse(&k.principal).map_err(|e| anyhow::anyhow!("{e}"))?,
        keytab: k.keytab.clone(),
        service: Principal::parse(&k.service).map_err(|e| anyhow::anyhow!("{e}"))?,
    })
}

/// A service ticket for the home agent.
pub async fn fetch_ticket(k: &KerberosSection) -> anyhow::Result<Credential> {
    keytab_credentials(k)?
        .fetch()
        .await?
        .context("a keytab always yields a ticket")
}

/// `roamgate mobile-node`: builds a [`Node`] from the config file (key
/// file, keytab, care-of interfaces, its own data plane), runs it, and
/// tears the data plane down after it.
pub async fn run(cfg: MobileNodeFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let m = &cfg.mobile_node;
    let key = read_hex_key(&m.key_file)?;
    let sa = SecurityAssociation::new(m.spi, &key).map_err(|e| anyhow::anyhow!("{e}"))?;
    let credentials = match &cfg.kerberos {
        Some(k) => keytab_credentials(k)?,
        None => Credentials::None,
    };

    let mut dp = match cfg.dataplane.mode {
        DataplaneMode::Xdp => {
            let mut dp = DataPlane::load(&cfg.dataplane.pin_dir)?;
            for i in &cfg.dataplane.interfaces {
                let mode = dp.attach(i, cfg.dataplane.xdp_mode)?;
                info!(interface = %i, mode = mode.as_str(), "XDP attached");
            }
            Some(dp)
        }
        DataplaneMode::Pinned | DataplaneMode::Tun => None,
    };
    let mut inside: Vec<u32> = Vec::new();
    let plane = match cfg.dataplane.mode {
        DataplaneMode::Tun => {
            // The home agent and the KDC stay reachable outside the tunnel.
            let mut bypass = vec![m.home_agent];
            if let Some(SocketAddr::V4(kdc)) = credentials.kdc() {
                bypass.push(*kdc.ip());
            }
            // It blocks (rtnetlink, device setup): off the runtime's workers.
            let (d, home) = (cfg.dataplane.clone(), m.home_address);
            let t = tokio::task::spawn_blocking(move || TunPlane::start(&d, home, &bypass))
                .await
                .context("the TUN data plane's setup task")??;
            info!(
                tun = %cfg.dataplane.tun_name, home = %m.home_address,
                routes = ?cfg.dataplane.routes, table = cfg.dataplane.route_table,
                "TUN data plane running"
            );
            Plane::Tun(Arc::new(t))
        }
        DataplaneMode::Xdp | DataplaneMode::Pinned => {
            let mut maps = Maps::open(&cfg.dataplane.pin_dir)?;
            inside = mark_inside(&mut maps, &cfg.inside_interfaces())?;
            if inside.is_empty() {
                warn!(
                    "no inside interface marked (dataplane.inside_interfaces): the data plane \
                     drops frames from the home address as spoofed unless the process that \
                     owns it marks its inside interfaces"
                );
            }
            Plane::shared_maps(maps)
        }
    };

    let node = Node::new(NodeSpec {
        identity: Identity {
            home_address: m.home_address,
            home_agent: m.home_agent,
            security_association: sa,
            lifetime: m.lifetime,
            reverse_tunnel: m.reverse_tunnel,
            co_located: m.co_located,
            tunnel_grace: Duration::from_secs(m.tunnel_grace_secs),
        },
        credentials,
        care_of: CareOfSource::Interfaces {
            names: m.care_of_interfaces.clone(),
            poll: Duration::from_millis(m.care_of_poll_ms),
        },
        plane: plane.clone(),
        tunnel_mtu: cfg.dataplane.tunnel_mtu,
        dataplane_name: cfg.dataplane.mode.name(),
        status_file: m.status_file.clone(),
    });
    let result = node.run(shutdown).await;

    match plane {
        Plane::Tun(t) => match Arc::try_unwrap(t) {
            Ok(t) => {
                let counters = tokio::task::spawn_blocking(move || t.stop())
                    .await
                    .unwrap_or_default();
                info!(%counters, "TUN data plane stopped; device, routes and rules removed");
            }
            // Dropping the last reference tears it down too.
            Err(_) => warn!("TUN data plane still referenced; it stops when released"),
        },
        Plane::Maps(maps) => {
            let mut maps = maps.lock().unwrap_or_else(|p| p.into_inner());
            for i in inside {
                if let Err(e) = maps.unmark_inside(i) {
                    warn!(ifindex = i, error = %e, "unmarking an inside interface");
                }
            }
        }
    }
    if let Some(dp) = dp.as_mut() {
        for (i, r) in dp.detach_all() {
            if let Err(e) = r {
                warn!(interface = %i, error = %e, "detaching XDP");
            }
        }
    }
    result.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tickets_are_renewed_before_they_end() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let day = now + Duration::from_secs(86_400);
        assert_eq!(renew_at(day, now), day - TICKET_RENEW_BEFORE);
        let short = now + Duration::from_secs(100);
        assert_eq!(renew_at(short, now), now + Duration::from_secs(80));
        assert_eq!(renew_at(now, now), now);
        assert_eq!(
            renew_at(now - Duration::from_secs(5), now),
            now - Duration::from_secs(5)
        );
    }

    #[test]
    fn care_of_from_the_first_listed_interface_with_an_address() {
        // Loopback always has 127.0.0.1 and is up.
        assert_eq!(
            current_care_of(&["no-such-if0".into(), "lo".into()]),
            Some(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(current_care_of(&["no-such-if0".into()]), None);
    }

    #[test]
    fn status_file_is_never_written_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's file").unwrap();
        let p = dir.path().join("status.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("status.tmp")).unwrap();
        node::write_status(Some(&p), &NodeStatus::default());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
        assert!(std::fs::read_to_string(&p).unwrap().starts_with('{'));
    }
}
