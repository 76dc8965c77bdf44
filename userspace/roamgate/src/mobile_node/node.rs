//! The mobile node as a library: one [`Node`] per home address, run as a
//! tokio task, around the I/O-free core `roamgate_mip::mobile_node`.
//!
//! Everything a node depends on is injected through [`NodeSpec`]:
//!
//! - its identity (home address, home agent, MN-HA security association,
//!   lifetime, reverse tunnelling);
//! - where its ticket for the home agent comes from ([`Credentials`]): a
//!   keytab (`roamgate mobile-node`), or a TGT already obtained (the proxy
//!   manager holds a unit's forwarded TGT), from which the service ticket is
//!   fetched and renewed;
//! - where its care-of address comes from ([`CareOfSource`]): polled from
//!   interfaces, or fixed (a proxy co-located on the proxy manager's host);
//! - its data plane ([`Plane`]), created by the owner: the maps of an XDP
//!   data plane (many nodes share one), or the TUN forwarder.
//!
//! A node publishes its [`NodeStatus`] on a `watch` channel (and, when
//! asked, in a JSON status file). On shutdown it deregisters (lifetime 0),
//! waits briefly for the reply and removes whatever it still has in the
//! plane (its binding, its tunnels), confirmed or not: a shared plane keeps
//! no key of a node that is gone.

use std::{
    collections::BTreeSet,
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc, Mutex,
    },
    time::{Duration, Instant, SystemTime},
};

use anyhow::Context as _;
use roamgate_krb::{
    client::{self, Credential, KdcTransport},
    Principal,
};
use roamgate_mip::{
    auth::SecurityAssociation,
    mobile_node::{Event, MobileNode, MobileNodeConfig, Output},
    Action, Role,
};
use tokio::{net::UdpSocket, sync::watch};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::{
    current_care_of, keytab_secret, renew_at, tun::TunPlane, COUNTERS_INTERVAL,
    DEREGISTRATION_WAIT, TICKET_RETRY,
};
use crate::{dataplane::maps::Maps, home_agent::apply};

/// How long one ticket renewal may take.
pub const TICKET_FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// The first retry delay when the first ticket cannot be had; doubles up
/// to [`TICKET_FIRST_RETRY_MAX`].
pub const TICKET_FIRST_RETRY: Duration = Duration::from_millis(200);
pub const TICKET_FIRST_RETRY_MAX: Duration = Duration::from_secs(10);

/// Who the node is towards its home agent.
#[derive(Clone)]
pub struct Identity {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    /// The MN-HA security association (SPI and key).
    pub security_association: SecurityAssociation,
    /// Requested lifetime, seconds.
    pub lifetime: u16,
    pub reverse_tunnel: bool,
    /// Co-located care-of address (D bit).
    pub co_located: bool,
    /// How long a replaced tunnel stays installed.
    pub tunnel_grace: Duration,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity")
            .field("home_address", &self.home_address)
            .field("home_agent", &self.home_agent)
            .field("spi", &self.security_association.spi())
            .field("lifetime", &self.lifetime)
            .field("reverse_tunnel", &self.reverse_tunnel)
            .field("co_located", &self.co_located)
            .finish_non_exhaustive()
    }
}

/// Where the service ticket for the home agent comes from.
#[derive(Debug, Clone)]
pub enum Credentials {
    /// No Kerberos: registrations carry no AP-REQ (the home agent must allow
    /// that for this node).
    None,
    /// A TGT from the client's key in a keytab, then the service ticket
    /// (`roamgate mobile-node`); both fetched again at each renewal.
    Keytab {
        kdc: SocketAddr,
        principal: Principal,
        keytab: PathBuf,
        service: Principal,
    },
    /// A TGT obtained elsewhere (a unit's forwarded TGT); the service
    /// ticket is fetched with it and renewed while it lasts.
    Tgt {
        kdc: SocketAddr,
        tgt: Box<Credential>,
        service: Principal,
    },
}

impl Credentials {
    fn service(&self) -> Option<&Principal> {
        match self {
            Credentials::None => None,
            Credentials::Keytab { service, .. } | Credentials::Tgt { service, .. } => Some(service),
        }
    }

    /// The KDC, which a TUN data plane must keep outside the tunnel.
    pub fn kdc(&self) -> Option<SocketAddr> {
        match self {
            Credentials::None => None,
            Credentials::Keytab { kdc, .. } | Credentials::Tgt { kdc, .. } => Some(*kdc),
        }
    }

    /// A service ticket for the home agent (`None` without Kerberos).
    pub async fn fetch(&self) -> anyhow::Result<Option<Credential>> {
        match self {
            Credentials::None => Ok(None),
            Credentials::Keytab {
                kdc,
                principal,
                keytab,
                service,
            } => {
                let secret = keytab_secret(keytab, principal)?;
                let transport = KdcTransport::new(kdc.to_string());
                let tgt = client::get_tgt(
                    &transport,
                    principal.clone(),
                    secret,
                    client::AsOptions::default(),
                    SystemTime::now,
                )
                .await
                .with_context(|| format!("getting a TGT for {principal} from {kdc}"))?;
                service_ticket(&transport, &tgt, service).await.map(Some)
            }
            Credentials::Tgt { kdc, tgt, service } => {
                let transport = KdcTransport::new(kdc.to_string());
                service_ticket(&transport, tgt, service).await.map(Some)
            }
        }
    }
}

async fn service_ticket(
    transport: &KdcTransport,
    tgt: &Credential,
    service: &Principal,
) -> anyhow::Result<Credential> {
    client::get_service_ticket(transport, tgt, service.clone(), SystemTime::now)
        .await
        .with_context(|| format!("getting a ticket for {service}"))
}

/// Where the care-of address comes from.
#[derive(Debug, Clone)]
pub enum CareOfSource {
    /// The first IPv4 address of the first listed interface that is up and
    /// has one, checked every `poll`; a change is a handover.
    Interfaces { names: Vec<String>, poll: Duration },
    /// A fixed address (a proxy co-located on its manager's host).
    Fixed(Ipv4Addr),
}

impl CareOfSource {
    fn poll_interval(&self) -> Duration {
        match self {
            CareOfSource::Interfaces { poll, .. } => *poll,
            // Read once at start; nothing to poll for afterwards.
            CareOfSource::Fixed(_) => Duration::from_secs(3600),
        }
    }

    fn current(&self) -> Option<Ipv4Addr> {
        match self {
            CareOfSource::Interfaces { names, .. } => current_care_of(names),
            CareOfSource::Fixed(a) => Some(*a),
        }
    }
}

/// The maps of an XDP data plane, shared by every node of a process.
pub type SharedMaps = Arc<Mutex<Maps>>;

/// The data plane the node's actions go to; created (and torn down) by its
/// owner.
#[derive(Clone)]
pub enum Plane {
    /// The pinned maps of an XDP data plane (loaded here or by another
    /// process). Nodes sharing it must have distinct home addresses.
    Maps(SharedMaps),
    /// The userspace forwarder over TUN (one node per host).
    Tun(Arc<TunPlane>),
}

impl Plane {
    pub fn shared_maps(maps: Maps) -> Self {
        Plane::Maps(Arc::new(Mutex::new(maps)))
    }

    /// Applies `actions`; returns how many of them took effect (a prefix)
    /// and the first error.
    fn apply(
        &self,
        actions: &[Action],
        mtu: u16,
        now: SystemTime,
    ) -> (usize, Option<anyhow::Error>) {
        match self {
            Plane::Maps(maps) => {
                let mut maps = maps.lock().unwrap_or_else(|p| p.into_inner());
                let (done, err) = apply::apply_prefix(&mut maps, actions, mtu, now);
                (done.len(), err.map(anyhow::Error::from))
            }
            Plane::Tun(t) => match t.apply(actions, now) {
                Ok(()) => (actions.len(), None),
                Err(e) => (0, Some(e.into())),
            },
        }
    }
}

/// Everything a [`Node`] needs.
#[derive(Clone)]
pub struct NodeSpec {
    pub identity: Identity,
    pub credentials: Credentials,
    pub care_of: CareOfSource,
    pub plane: Plane,
    /// Largest outer IPv4 packet of the tunnel.
    pub tunnel_mtu: u16,
    /// The data plane's name in the status (`xdp`, `pinned`, `tun`).
    pub dataplane_name: &'static str,
    /// JSON status file written on every change (`None`: only the channel).
    pub status_file: Option<PathBuf>,
}

/// What the node publishes on every change (and writes to its status file).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct NodeStatus {
    /// The core's state: `idle`, `registering`, `registered`,
    /// `deregistering`.
    pub state: String,
    pub care_of: Option<Ipv4Addr>,
    /// The tunnel SPI of the current binding.
    pub spi: Option<u32>,
    pub registrations: u64,
    pub handovers: u64,
    /// The home agent confirmed the last deregistration.
    pub deregistered: bool,
    /// Request sent → accepting reply handled, per registration (last 256).
    pub registration_ms: Vec<f64>,
    pub rejections: Vec<String>,
    /// When the care-of address last changed, and when a registration was
    /// last accepted (seconds since the epoch).
    pub care_of_changed_at: f64,
    pub registered_at: f64,
    /// When the accepted registration's granted lifetime ends (seconds
    /// since the epoch; 0 before the first).
    pub registration_expires: f64,
    /// When the service ticket for the home agent expires (seconds since
    /// the epoch).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ticket_expires: Option<f64>,
    pub pid: u32,
    /// `xdp`, `pinned` or `tun`.
    pub dataplane: &'static str,
    /// TUN mode: the forwarder's counters (packets, bytes, drops by
    /// reason), and the SPIs it holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forwarder: Option<std::collections::BTreeMap<&'static str, u64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tunnel_spis: Option<Vec<u32>>,
}

/// How a node's shutdown went with its home agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Deregistration {
    /// The home agent accepted the lifetime-0 request.
    Confirmed,
    /// No accepting reply within [`DEREGISTRATION_WAIT`]; the node's
    /// entries were removed from the plane anyway.
    Unconfirmed,
    /// The node never had a care-of address (nothing was registered).
    NotNeeded,
}

/// What [`Node::run`] returns.
#[derive(Debug, Clone)]
pub struct NodeReport {
    pub deregistration: Deregistration,
    /// The last status published.
    pub status: NodeStatus,
}

fn epoch_secs_of(t: SystemTime) -> f64 {
    t.duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

fn epoch_secs() -> f64 {
    epoch_secs_of(SystemTime::now())
}

pub(super) fn write_status(path: Option<&Path>, s: &NodeStatus) {
    let Some(path) = path else { return };
    if let Ok(text) = serde_json::to_string(s) {
        if let Err(e) = crate::platform::fs::write_atomic(path, text.as_bytes(), 0o644) {
            tracing::debug!(error = %e, "status file");
        }
    }
}

/// One mobile node; see the module doc.
pub struct Node {
    spec: NodeSpec,
    status: watch::Sender<NodeStatus>,
    deregister_on_stop: Arc<AtomicBool>,
}

impl Node {
    pub fn new(spec: NodeSpec) -> Self {
        let (status, _) = watch::channel(NodeStatus {
            pid: std::process::id(),
            dataplane: spec.dataplane_name,
            ..NodeStatus::default()
        });
        Self {
            spec,
            status,
            deregister_on_stop: Arc::new(AtomicBool::new(true)),
        }
    }

    /// Cleared before the shutdown token is cancelled, the node stops
    /// without deregistering: its binding was (or is about to be) replaced
    /// by a newer registration, which a deregistration could race. It still
    /// removes its own entries from the plane.
    pub fn deregister_on_stop(&self) -> Arc<AtomicBool> {
        self.deregister_on_stop.clone()
    }

    /// The node's status, updated on every change while it runs.
    pub fn status(&self) -> watch::Receiver<NodeStatus> {
        self.status.subscribe()
    }

    /// Gets the first ticket, registers, follows the care-of address,
    /// renews, and on `shutdown` deregisters and removes its entries from
    /// the plane.
    pub async fn run(self, shutdown: CancellationToken) -> anyhow::Result<NodeReport> {
        let Node {
            spec,
            status,
            deregister_on_stop,
        } = self;
        let id = &spec.identity;
        let credential = {
            let mut delay = TICKET_FIRST_RETRY;
            loop {
                // Boxed: a fetch's state is large and lives only while it
                // runs; inline it would be part of every node's task for
                // the node's whole life.
                match Box::pin(spec.credentials.fetch()).await {
                    Ok(c) => {
                        if let Some(service) = spec.credentials.service() {
                            info!(service = %service, "service ticket for the home agent");
                        }
                        break c;
                    }
                    Err(e) => {
                        warn!(error = %format!("{e:#}"), "Kerberos; retrying");
                        tokio::select! {
                            _ = shutdown.cancelled() => {
                                return Ok(NodeReport {
                                    deregistration: Deregistration::NotNeeded,
                                    status: status.borrow().clone(),
                                });
                            }
                            _ = tokio::time::sleep(delay) => {}
                        }
                        delay = (delay * 2).min(TICKET_FIRST_RETRY_MAX);
                    }
                }
            }
        };

        let rng = ring::rand::SystemRandom::new();
        let core = MobileNode::new(
            MobileNodeConfig {
                home_address: id.home_address,
                home_agent: id.home_agent,
                security_association: id.security_association.clone(),
                credential,
                lifetime: id.lifetime,
                reverse_tunnel: id.reverse_tunnel,
                co_located: id.co_located,
                tunnel_grace: id.tunnel_grace,
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
        let mut d = Running {
            core,
            plane: spec.plane.clone(),
            mtu: spec.tunnel_mtu,
            sock,
            ha: SocketAddr::new(id.home_agent.into(), roamgate_mip::wire::MIP_PORT),
            status,
            status_path: spec.status_file.clone(),
            attempt: None,
            tunnels: BTreeSet::new(),
            bound: false,
            home: id.home_address,
        };
        d.refresh_status();

        let mut care_of: Option<Ipv4Addr> = None;
        let mut renew: Option<SystemTime> = d
            .core
            .credential_end_time()
            .map(|end| renew_at(end, SystemTime::now()));
        let mut tick = tokio::time::interval(spec.care_of.poll_interval());
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counters_tick = tokio::time::interval(COUNTERS_INTERVAL);
        let tun_mode = matches!(d.plane, Plane::Tun(_));
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
                    let Some(service) = spec.credentials.service() else { renew = None; continue };
                    match tokio::time::timeout(TICKET_FETCH_TIMEOUT, Box::pin(spec.credentials.fetch())).await {
                        Ok(Ok(Some(c))) => {
                            let end = c.end_time;
                            d.core.set_credential(Some(c));
                            renew = Some(renew_at(end, SystemTime::now()));
                            d.refresh_status();
                            info!(service = %service, "service ticket renewed");
                        }
                        Ok(Ok(None)) => renew = None,
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
                    let now_coa = spec.care_of.current();
                    if now_coa != care_of {
                        match now_coa {
                            Some(c) => {
                                if care_of.is_some() {
                                    d.status.send_modify(|s| s.handovers += 1);
                                }
                                d.status.send_modify(|s| s.care_of_changed_at = epoch_secs());
                                info!(from = ?care_of, to = %c, "care-of address changed: registering");
                                match d.core.set_care_of(c, SystemTime::now()) {
                                    Ok(out) => d.run_output(out, true).await,
                                    Err(e) => warn!(error = %e, "building the registration"),
                                }
                            }
                            None => {
                                if let CareOfSource::Interfaces { names, .. } = &spec.care_of {
                                    warn!("no care-of address on any of {names:?}");
                                }
                            }
                        }
                        care_of = now_coa;
                    }
                }
                r = d.sock.readable() => {
                    if r.is_err() { continue }
                    match d.read_reply() {
                        Some(Ok(out)) => d.run_output(out, false).await,
                        Some(Err(e)) => warn!(error = %e, "handling the reply"),
                        None => {}
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
        let mut deregistration = Deregistration::NotNeeded;
        if care_of.is_some() && deregister_on_stop.load(Ordering::Relaxed) {
            match d.core.deregister(SystemTime::now()) {
                Ok(out) => d.run_output(out, true).await,
                Err(e) => warn!(error = %e, "building the deregistration"),
            }
            let deadline = tokio::time::Instant::now() + DEREGISTRATION_WAIT;
            while !d.status.borrow().deregistered {
                tokio::select! {
                    _ = tokio::time::sleep_until(deadline) => {
                        warn!("no deregistration reply; leaving anyway");
                        break;
                    }
                    r = d.sock.readable() => {
                        if r.is_err() { continue }
                        if let Some(Ok(out)) = d.read_reply() {
                            d.run_output(out, false).await;
                        }
                    }
                }
            }
            deregistration = if d.status.borrow().deregistered {
                Deregistration::Confirmed
            } else {
                Deregistration::Unconfirmed
            };
        }
        d.clear_plane();
        d.refresh_status();
        let status = d.status.borrow().clone();
        Ok(NodeReport {
            deregistration,
            status,
        })
    }
}

/// A running node's state.
struct Running {
    core: MobileNode,
    plane: Plane,
    mtu: u16,
    sock: UdpSocket,
    ha: SocketAddr,
    status: watch::Sender<NodeStatus>,
    status_path: Option<PathBuf>,
    /// When the current registration attempt was first sent.
    attempt: Option<Instant>,
    /// What this node has in the plane, to remove when it stops.
    tunnels: BTreeSet<u32>,
    bound: bool,
    home: Ipv4Addr,
}

/// The largest Registration Reply read (they are a few hundred bytes).
const REPLY_BUF: usize = 4096;

impl Running {
    /// Reads one waiting reply, if any, and hands it to the core. The
    /// buffer is on the stack for this call only: a proxy manager runs
    /// thousands of nodes, and a buffer kept per node would cost each of
    /// them its size for its whole life.
    fn read_reply(&mut self) -> Option<Result<Output, roamgate_mip::mobile_node::MobileNodeError>> {
        let mut buf = [0u8; REPLY_BUF];
        match self.sock.try_recv_from(&mut buf) {
            Ok((n, _)) => Some(self.core.handle_reply(&buf[..n], SystemTime::now())),
            // WouldBlock (a spurious readiness; try_recv_from cleared it),
            // or an ICMP error reported on the socket: nothing to handle.
            Err(_) => None,
        }
    }

    /// Applies `actions` and records what took effect.
    fn apply(&mut self, actions: &[Action]) {
        let (done, err) = self.plane.apply(actions, self.mtu, SystemTime::now());
        for a in &actions[..done] {
            match a {
                Action::InstallTunnel(t) => {
                    self.tunnels.insert(t.spi);
                }
                Action::RemoveTunnel { spi } => {
                    self.tunnels.remove(spi);
                }
                Action::SetBinding { .. } => self.bound = true,
                Action::RemoveBinding { .. } => self.bound = false,
            }
        }
        if let Some(e) = err {
            warn!(error = %e, "applying data-plane actions");
        }
    }

    /// Removes the binding and tunnels the core left in the plane (all of
    /// them when the home agent did not confirm the deregistration).
    fn clear_plane(&mut self) {
        let mut actions = Vec::new();
        if self.bound {
            actions.push(Action::RemoveBinding {
                home: self.home,
                role: Role::CareOf,
            });
        }
        actions.extend(self.tunnels.iter().map(|&spi| Action::RemoveTunnel { spi }));
        if !actions.is_empty() {
            self.apply(&actions);
        }
    }

    async fn run_output(&mut self, out: Output, new_attempt: bool) {
        if !out.actions.is_empty() {
            self.apply(&out.actions);
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
                    self.status.send_modify(|s| {
                        s.registrations += 1;
                        s.registered_at = epoch_secs();
                        s.registration_expires = s.registered_at + f64::from(lifetime);
                        s.deregistered = false;
                        s.registration_ms.push(ms);
                        if s.registration_ms.len() > 256 {
                            s.registration_ms.remove(0);
                        }
                    });
                    info!(%care_of, lifetime, ms = format!("{ms:.2}"), "registered");
                }
                Event::Deregistered => {
                    self.attempt = None;
                    self.status.send_modify(|s| s.deregistered = true);
                    info!("deregistered");
                }
                Event::Ignored(why) => {
                    changed = false;
                    warn!(why, "reply ignored")
                }
                other => {
                    warn!(event = ?other, "registration not accepted");
                    self.status
                        .send_modify(|s| s.rejections.push(format!("{other:?}")));
                }
            }
        }
        if changed || new_attempt {
            self.refresh_status();
        }
    }

    fn refresh_status(&mut self) {
        let state = format!("{:?}", self.core.state()).to_lowercase();
        let binding = self.core.binding().map(|b| (b.care_of, b.spi));
        let ticket = self.core.credential_end_time().map(epoch_secs_of);
        let tun = match &self.plane {
            Plane::Tun(t) => Some((t.counters(), t.state().1)),
            Plane::Maps(_) => None,
        };
        self.status.send_modify(|s| {
            s.state = state;
            s.care_of = binding.map(|b| b.0);
            s.spi = binding.map(|b| b.1);
            s.ticket_expires = ticket;
            if let Some((counters, spis)) = tun {
                s.forwarder = Some(counters);
                s.tunnel_spis = Some(spis);
            }
        });
        write_status(self.status_path.as_deref(), &self.status.borrow());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The proxy manager spawns nodes on a multi-threaded runtime.
    #[test]
    fn a_node_is_a_spawnable_task() {
        fn spawnable<T: Send + 'static>(_: &T) {}
        fn check(node: Node, stop: CancellationToken) {
            let fut = node.run(stop);
            spawnable(&fut);
        }
        let _ = check;
    }

    fn output_size<A, B, R>(_: impl FnOnce(A, B) -> R) -> usize {
        std::mem::size_of::<R>()
    }

    /// A proxy manager runs one node per unit (10,000 and more): the task
    /// of a node must stay small. A credential fetch inline made it
    /// 4.9 KiB (now 2.7), beside a 4 KiB reply buffer each node kept.
    #[test]
    fn a_node_task_is_small() {
        let run = output_size(Node::run);
        assert!(run <= 4096, "Node::run's future is {run} bytes");
    }

    #[test]
    fn fixed_care_of_is_read_once() {
        let c = CareOfSource::Fixed(Ipv4Addr::new(192, 0, 2, 9));
        assert_eq!(c.current(), Some(Ipv4Addr::new(192, 0, 2, 9)));
        assert!(c.poll_interval() >= Duration::from_secs(60));
        let i = CareOfSource::Interfaces {
            names: vec!["lo".into()],
            poll: Duration::from_millis(20),
        };
        assert_eq!(i.current(), Some(Ipv4Addr::LOCALHOST));
        assert_eq!(i.poll_interval(), Duration::from_millis(20));
    }
}
