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

pub mod config;
pub mod tun;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::Path,
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use roamgate_krb::{
    client::{self, ClientSecret, Credential, KdcTransport},
    Principal,
};
use roamgate_mip::{
    auth::SecurityAssociation,
    mobile_node::{Event, MobileNode, MobileNodeConfig, Output},
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::{
    config::{DataplaneMode, KerberosSection, MobileNodeFile},
    tun::TunPlane,
};
use crate::{
    dataplane::{maps::Maps, DataPlane},
    home_agent::apply,
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
fn mark_inside(maps: &mut Maps, names: &[String]) -> anyhow::Result<Vec<u32>> {
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
    let mut best: Vec<(u32, roamgate_krb_crypto::Key)> = Vec::new();
    for e in &kt.entries {
        if !roamgate_krb::keytab::same_principal(&e.principal, client) {
            continue;
        }
        match best.iter_mut().find(|(_, k)| k.etype() == e.key.etype()) {
            Some(slot) if slot.0 < e.kvno => *slot = (e.kvno, e.key.clone()),
            Some(_) => {}
            None => best.push((e.kvno, e.key.clone())),
        }
    }
    if best.is_empty() {
        anyhow::bail!("keytab {} has no key for {client}", path.display());
    }
    Ok(ClientSecret::Keys(
        best.into_iter().map(|(_, k)| k).collect(),
    ))
}

/// A service ticket for the home agent.
pub async fn fetch_ticket(k: &KerberosSection) -> anyhow::Result<Credential> {
    let client = Principal::parse(&k.principal).map_err(|e| anyhow::anyhow!("{e}"))?;
    let service = Principal::parse(&k.service).map_err(|e| anyhow::anyhow!("{e}"))?;
    let secret = keytab_secret(&k.keytab, &client)?;
    let transport = KdcTransport::new(k.kdc.to_string());
    let tgt = client::get_tgt(
        &transport,
        client.clone(),
        secret,
        client::AsOptions::default(),
        SystemTime::now,
    )
    .await
    .with_context(|| format!("getting a TGT for {client} from {}", k.kdc))?;
    client::get_service_ticket(&transport, &tgt, service.clone(), SystemTime::now)
        .await
        .with_context(|| format!("getting a ticket for {service}"))
}

#[derive(Debug, Default, serde::Serialize)]
struct Status {
    state: String,
    care_of: Option<Ipv4Addr>,
    spi: Option<u32>,
    registrations: u64,
    handovers: u64,
    deregistered: bool,
    /// Request sent → accepting reply handled, per registration (last 256).
    registration_ms: Vec<f64>,
    rejections: Vec<String>,
    /// When the care-of address last changed, and when a registration was
    /// last accepted (seconds since the epoch).
    care_of_changed_at: f64,
    registered_at: f64,
    pid: u32,
    /// `xdp`, `pinned` or `tun`.
    dataplane: &'static str,
    /// TUN mode: the forwarder's counters (packets, bytes, drops by
    /// reason), and the SPIs it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    forwarder: Option<std::collections::BTreeMap<&'static str, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tunnel_spis: Option<Vec<u32>>,
}

fn epoch_secs() -> f64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn write_status(path: Option<&Path>, s: &Status) {
    let Some(path) = path else { return };
    if let Ok(text) = serde_json::to_string(s) {
        if let Err(e) = crate::platform::fs::write_atomic(path, text.as_bytes(), 0o644) {
            tracing::debug!(error = %e, "status file");
        }
    }
}

/// Where the core's actions go.
enum Plane {
    Maps(Box<Maps>),
    Tun(TunPlane),
    /// After shutdown.
    Stopped,
}

struct Daemon {
    core: MobileNode,
    plane: Plane,
    mtu: u16,
    sock: UdpSocket,
    ha: SocketAddr,
    status: Status,
    status_path: Option<std::path::PathBuf>,
    /// When the current registration attempt was first sent.
    attempt: Option<Instant>,
}

impl Daemon {
    async fn run_output(&mut self, out: Output, new_attempt: bool) {
        let now = SystemTime::now();
        if !out.actions.is_empty() {
            let r = match &mut self.plane {
                Plane::Maps(maps) => apply::apply(maps, &out.actions, self.mtu, now)
                    .map(|_| ())
                    .map_err(anyhow::Error::from),
                Plane::Tun(t) => t.apply(&out.actions, now).map_err(anyhow::Error::from),
                Plane::Stopped => Ok(()),
            };
            if let Err(e) = r {
                warn!(error = %e, "applying data-plane actions");
            }
        }
        if let Some(msg) = out.send {
            if new_attempt || self.attempt.is_none() {
                self.attempt = Some(Instant::now());
            }
            if let Err(e) = self.sock.send_to(&msg, self.ha).await {
                warn!(ha = %self.ha, error = %e, "sending the registration");
            }
        }
        let mut changed = false;
        for ev in out.events {
            changed = true;
            match ev {
                Event::Registered { care_of, lifetime } => {
                    let ms = self
                        .attempt
                        .take()
                        .map(|t| t.elapsed().as_secs_f64() * 1000.0)
                        .unwrap_or(0.0);
                    self.status.registrations += 1;
                    self.status.registered_at = epoch_secs();
                    self.status.deregistered = false;
                    self.status.registration_ms.push(ms);
                    if self.status.registration_ms.len() > 256 {
                        self.status.registration_ms.remove(0);
                    }
                    info!(%care_of, lifetime, ms = format!("{ms:.2}"), "registered");
                }
                Event::Deregistered => {
                    self.attempt = None;
                    self.status.deregistered = true;
                    info!("deregistered");
                }
                Event::Ignored(why) => {
                    changed = false;
                    warn!(why, "reply ignored")
                }
                other => {
                    warn!(event = ?other, "registration not accepted");
                    self.status.rejections.push(format!("{other:?}"));
                }
            }
        }
        if changed || new_attempt {
            self.refresh_status();
        }
    }

    fn refresh_status(&mut self) {
        self.status.state = format!("{:?}", self.core.state()).to_lowercase();
        self.status.care_of = self.core.binding().map(|b| b.care_of);
        self.status.spi = self.core.binding().map(|b| b.spi);
        if let Plane::Tun(t) = &self.plane {
            self.status.forwarder = Some(t.counters());
            self.status.tunnel_spis = Some(t.state().1);
        }
        write_status(self.status_path.as_deref(), &self.status);
    }
}

pub async fn run(cfg: MobileNodeFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let m = &cfg.mobile_node;
    let key = read_hex_key(&m.key_file)?;
    let sa = SecurityAssociation::new(m.spi, &key).map_err(|e| anyhow::anyhow!("{e}"))?;

    let credential = match &cfg.kerberos {
        Some(k) => {
            let mut delay = Duration::from_millis(200);
            loop {
                match fetch_ticket(k).await {
                    Ok(c) => {
                        info!(service = %k.service, "service ticket for the home agent");
                        break Some(c);
                    }
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "Kerberos; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => return Ok(()),
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(Duration::from_secs(10));
                    }
                }
            }
        }
        None => None,
    };

    let mut dp = match cfg.dataplane.mode {
        DataplaneMode::Xdp => {
            let mut dp = DataPlane::load(&cfg.dataplane.pin_dir)?;
            for i in &cfg.dataplane.interfaces {
                dp.attach(i, cfg.dataplane.xdp_mode)?;
                info!(interface = %i, "XDP attached");
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
            if let Some(SocketAddr::V4(kdc)) = cfg.kerberos.as_ref().map(|k| k.kdc) {
                bypass.push(*kdc.ip());
            }
            let t = TunPlane::start(&cfg.dataplane, m.home_address, &bypass)?;
            info!(
                tun = %cfg.dataplane.tun_name, home = %m.home_address,
                routes = ?cfg.dataplane.routes, table = cfg.dataplane.route_table,
                "TUN data plane running"
            );
            Plane::Tun(t)
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
            Plane::Maps(Box::new(maps))
        }
    };

    let rng = ring::rand::SystemRandom::new();
    let core = MobileNode::new(
        MobileNodeConfig {
            home_address: m.home_address,
            home_agent: m.home_agent,
            security_association: sa,
            credential,
            lifetime: m.lifetime,
            reverse_tunnel: m.reverse_tunnel,
            co_located: m.co_located,
            tunnel_grace: Duration::from_secs(m.tunnel_grace_secs),
        },
        Box::new(move || {
            let mut b = [0u8; 4];
            let _ = ring::rand::SecureRandom::fill(&rng, &mut b);
            u32::from_ne_bytes(b)
        }),
    );
    let sock = UdpSocket::bind("0.0.0.0:0")
        .await
        .context("binding a UDP socket")?;
    let mut d = Daemon {
        core,
        plane,
        mtu: cfg.dataplane.tunnel_mtu,
        sock,
        ha: SocketAddr::new(m.home_agent.into(), roamgate_mip::wire::MIP_PORT),
        status: Status {
            pid: std::process::id(),
            dataplane: cfg.dataplane.mode.name(),
            ..Status::default()
        },
        status_path: m.status_file.clone(),
        attempt: None,
    };
    d.refresh_status();

    let mut care_of: Option<Ipv4Addr> = None;
    let mut renew: Option<SystemTime> = d
        .core
        .credential_end_time()
        .map(|end| renew_at(end, SystemTime::now()));
    let mut tick = tokio::time::interval(Duration::from_millis(m.care_of_poll_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut counters_tick = tokio::time::interval(COUNTERS_INTERVAL);
    let tun_mode = matches!(d.plane, Plane::Tun(_));
    let mut buf = vec![0u8; 65_536];
    loop {
        let sleep = d
            .core
            .next_wakeup()
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(Duration::from_secs(3600));
        let renew_in = renew
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = counters_tick.tick(), if tun_mode => d.refresh_status(),
            _ = tokio::time::sleep(renew_in), if renew.is_some() => {
                let Some(k) = &cfg.kerberos else { renew = None; continue };
                match tokio::time::timeout(Duration::from_secs(10), fetch_ticket(k)).await {
                    Ok(Ok(c)) => {
                        let end = c.end_time;
                        d.core.set_credential(Some(c));
                        renew = Some(renew_at(end, SystemTime::now()));
                        info!(service = %k.service, "service ticket renewed");
                    }
                    Ok(Err(e)) => {
                        warn!(error = %format!("{e:#}"), "renewing the service ticket");
                        renew = Some(SystemTime::now() + TICKET_RETRY);
                    }
                    Err(_) => {
                        warn!("renewing the service ticket: the KDC did not answer in 10 s");
                        renew = Some(SystemTime::now() + TICKET_RETRY);
                    }
                }
            }
            _ = tick.tick() => {
                let now_coa = current_care_of(&m.care_of_interfaces);
                if now_coa != care_of {
                    match now_coa {
                        Some(c) => {
                            if care_of.is_some() {
                                d.status.handovers += 1;
                            }
                            d.status.care_of_changed_at = epoch_secs();
                            info!(from = ?care_of, to = %c, "care-of address changed: registering");
                            match d.core.set_care_of(c, SystemTime::now()) {
                                Ok(out) => d.run_output(out, true).await,
                                Err(e) => warn!(error = %e, "building the registration"),
                            }
                        }
                        None => warn!("no care-of address on any of {:?}", m.care_of_interfaces),
                    }
                    care_of = now_coa;
                }
            }
            r = d.sock.recv_from(&mut buf) => {
                let Ok((n, _src)) = r else { continue };
                match d.core.handle_reply(&buf[..n], SystemTime::now()) {
                    Ok(out) => d.run_output(out, false).await,
                    Err(e) => warn!(error = %e, "handling the reply"),
                }
            }
            _ = tokio::time::sleep(sleep) => {
                match d.core.poll(SystemTime::now()) {
                    Ok(out) => d.run_output(out, false).await,
                    Err(e) => warn!(error = %e, "re-registering"),
                }
            }
        }
    }

    // Deregister and wait briefly for the reply.
    if care_of.is_some() {
        match d.core.deregister(SystemTime::now()) {
            Ok(out) => d.run_output(out, true).await,
            Err(e) => warn!(error = %e, "building the deregistration"),
        }
        let deadline = tokio::time::Instant::now() + DEREGISTRATION_WAIT;
        while !d.status.deregistered {
            tokio::select! {
                _ = tokio::time::sleep_until(deadline) => {
                    warn!("no deregistration reply; leaving anyway");
                    break;
                }
                r = d.sock.recv_from(&mut buf) => {
                    let Ok((n, _)) = r else { continue };
                    if let Ok(out) = d.core.handle_reply(&buf[..n], SystemTime::now()) {
                        d.run_output(out, false).await;
                    }
                }
            }
        }
    }
    d.refresh_status();
    match std::mem::replace(&mut d.plane, Plane::Stopped) {
        Plane::Tun(t) => {
            let counters = t.stop();
            info!(%counters, "TUN data plane stopped; device, routes and rules removed");
        }
        Plane::Maps(mut maps) => {
            for i in inside {
                if let Err(e) = maps.unmark_inside(i) {
                    warn!(ifindex = i, error = %e, "unmarking an inside interface");
                }
            }
        }
        Plane::Stopped => {}
    }
    if let Some(dp) = dp.as_mut() {
        for (i, r) in dp.detach_all() {
            if let Err(e) = r {
                warn!(interface = %i, error = %e, "detaching XDP");
            }
        }
    }
    Ok(())
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
        write_status(Some(&p), &Status::default());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
        assert!(std::fs::read_to_string(&p).unwrap().starts_with('{'));
    }
}
