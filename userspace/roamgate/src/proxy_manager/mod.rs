//! `roamgate proxy-manager`: the IP managing unit (docs/attach.md §6.3).
//!
//! The I/O around the sans-IO core `roamgate_attach::ProxyManager`: relay
//! frames from base stations on one UDP socket; the core's commands run as
//! tokio tasks (a TGS request with the unit's forwarded TGT, a directory
//! request); each unit's **proxy** is a [`Node`] of the mobile-node library,
//! as a supervised task on the one XDP data plane all proxies share, with
//! the care-of address of this host. The core decides; completions come
//! back on a channel, tagged with their session, so a late one is stale.
//!
//! The forwarded TGTs and every ticket derived from them live in memory
//! only, inside the core and the proxies' tasks, and go when the proxy
//! stops (switch-off, silence, replacement).

mod calls;
mod charge;
pub mod config;
pub mod ticket;

use std::{
    collections::{BTreeMap, HashMap},
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
    sync::{atomic::Ordering, Arc, Mutex},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use roamgate_attach::{
    proxy_manager::{Command, Event, KdcFailure, Output, Session, Stats, STEP_TIMEOUT},
    proxy_op::{CallEventKind, ProxyOp, ProxyReply, Role},
    wire::{Cause, MAX_FRAME_LEN},
    ProxyManager, Verifier,
};
use roamgate_directory::{wire::MAX_MESSAGE, IdentityCode, UnitRecord};
use roamgate_krb::{
    client::{self, ClientError, Credential, KdcTransport},
    keytab::Keytab,
    Principal,
};
use roamgate_mip::auth::SecurityAssociation;
use serde::Serialize;
use tokio::{
    net::UdpSocket,
    sync::{mpsc, watch},
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::{
    dataplane::{maps::Maps, DataPlane},
    mobile_node::{CareOfSource, Credentials, Identity, Node, NodeSpec, NodeStatus, Plane},
};
use config::ProxyManagerFile;

/// What the I/O tasks report to the core's loop.
#[derive(Debug)]
enum Completion {
    Ticket(Session, Box<Result<Credential, KdcFailure>>),
    Directory(Session, Result<Vec<u8>, String>),
    /// The proxy's registration was accepted (`first`: its first).
    Registered {
        unit: IdentityCode,
        session: Session,
        first: bool,
        care_of: Ipv4Addr,
        expires: SystemTime,
    },
    /// A call-ticket op's answer, for the core (`issued`: a ticket, not
    /// a refusal).
    CallTicket {
        id: u64,
        answer: Result<Vec<u8>, String>,
        issued: bool,
    },
    /// A charge operation for a caller's call event is done; the event is
    /// served now (its voice flows), or refused if the charge was.
    Charged {
        unit: IdentityCode,
        session: Session,
        id: u64,
        /// `None`: the proxy's own close of a call it cut.
        request: Option<Box<roamgate_attach::manager::ProxyRequest>>,
        kind: CallEventKind,
        result: Result<roamgate_billing::wire::OpResult, (String, u8)>,
    },
    /// The prepaid credit of a caller's call ran out (plus a grace) and
    /// its release may not have come: its voice flows go, and the charge
    /// is closed.
    CreditExhausted {
        unit: IdentityCode,
        session: Session,
        call_id: [u8; 16],
    },
    /// The proxy's task ended without being told to.
    Failed {
        unit: IdentityCode,
        session: Session,
        reason: String,
    },
}

/// A running proxy.
struct Proxy {
    session: Session,
    stop: CancellationToken,
    deregister: Arc<std::sync::atomic::AtomicBool>,
    done: JoinHandle<()>,
    status: watch::Receiver<NodeStatus>,
    home_address: Ipv4Addr,
    principal: String,
    /// The unit's callee principal and its key, from the initiating
    /// information: the proxy accepts callers' AP-REQs with it.
    call: Option<(Principal, roamgate_krb::ap::KeySet)>,
    /// The subscriber's forwarded TGT: the proxy gets call tickets in the
    /// subscriber's name with it.
    tgt: Arc<Credential>,
    /// Service tickets got with `tgt`.
    tickets: ticket::TicketCache,
}

/// The I/O side's settings, shared by the tasks it spawns.
struct Io {
    kdc: SocketAddr,
    directory: SocketAddr,
    directory_service: Principal,
    home_agent_service: Principal,
    care_of: Ipv4Addr,
    plane: Plane,
    proxy: config::ProxySection,
    tunnel_mtu: u16,
    /// Where callers' proxies charge calls; `None`: calls are free.
    billing: Option<charge::Billing>,
    tx: mpsc::UnboundedSender<Completion>,
}

/// Counters of the I/O side (the core counts the protocol).
#[derive(Debug, Default, Clone, Serialize)]
pub struct IoStats {
    pub datagrams: u64,
    pub oversized: u64,
    pub send_errors: u64,
    pub proxies_started: u64,
    pub proxies_stopped: u64,
    pub proxy_failures: u64,
    pub deregistered_on_stop: u64,
    /// Charges opened (or found open) at a caller's CONNECT.
    pub charges_opened: u64,
    /// Charges closed (or found closed) at a caller's release.
    pub charges_closed: u64,
    /// Charge operations refused or unanswered: an open refused releases
    /// the call.
    pub charges_failed: u64,
    /// Calls whose prepaid credit ran out before their release came: the
    /// proxy revoked their voice flows and closed the charge itself.
    pub calls_cut_prepaid: u64,
    /// Call-ticket ops answered with a ticket.
    pub call_tickets_issued: u64,
    /// Call-ticket ops answered with a Q.850 cause (or not at all).
    pub call_tickets_refused: u64,
}

fn kdc_failure(e: ClientError) -> KdcFailure {
    match e {
        ClientError::Transport(t) => KdcFailure::Unreachable(t.to_string()),
        other => KdcFailure::Refused(other.to_string()),
    }
}

impl Io {
    fn directory_ticket(&self, session: Session, tgt: Box<Credential>) {
        let (kdc, service, tx) = (self.kdc, self.directory_service.clone(), self.tx.clone());
        tokio::spawn(async move {
            let transport = KdcTransport::new(kdc.to_string());
            let r = tokio::time::timeout(
                STEP_TIMEOUT,
                client::get_service_ticket(&transport, &tgt, service, SystemTime::now),
            )
            .await
            .unwrap_or_else(|_| {
                Err(ClientError::Transport(
                    roamgate_krb::client::TransportError::Timeout {
                        kdc: kdc.to_string(),
                        timeout: STEP_TIMEOUT,
                    },
                ))
            })
            .map_err(kdc_failure);
            let _ = tx.send(Completion::Ticket(session, Box::new(r)));
        });
    }

    fn directory_request(&self, session: Session, bytes: Vec<u8>) {
        let (dir, tx) = (self.directory, self.tx.clone());
        tokio::spawn(async move {
            let r = ask_directory(dir, &bytes).await;
            let _ = tx.send(Completion::Directory(session, r));
        });
    }

    /// Serves a call-ticket op in its own task; the answer comes back as
    /// [`Completion::CallTicket`].
    fn call_ticket(
        &self,
        unit: IdentityCode,
        id: u64,
        proxy: &Proxy,
        request: Box<roamgate_attach::manager::ProxyRequest>,
        number: String,
    ) {
        let servers = ticket::Servers {
            kdc: self.kdc,
            directory: self.directory,
            directory_service: self.directory_service.clone(),
        };
        let (tgt, cache, tx) = (proxy.tgt.clone(), proxy.tickets.clone(), self.tx.clone());
        let stop = proxy.stop.clone();
        tokio::spawn(async move {
            // A proxy that stops takes its TGT with it: the op ends too.
            let (answer, issued) = tokio::select! {
                s = ticket::serve(&servers, &tgt, &cache, unit, &request, &number) => (s.answer, s.issued),
                _ = stop.cancelled() => (Err("the unit's proxy stopped".to_owned()), false),
            };
            let _ = tx.send(Completion::CallTicket { id, answer, issued });
        });
    }

    /// Charges a caller's call event at the billing service in its own
    /// task; the event is served when it completes ([`Completion::Charged`]).
    #[allow(clippy::too_many_arguments)]
    fn charge(
        &self,
        billing: &charge::Billing,
        unit: IdentityCode,
        session: Session,
        id: u64,
        proxy: &Proxy,
        request: Option<Box<roamgate_attach::manager::ProxyRequest>>,
        call_id: [u8; 16],
        kind: CallEventKind,
    ) {
        let servers = ticket::Servers {
            kdc: self.kdc,
            directory: self.directory,
            directory_service: self.directory_service.clone(),
        };
        let billing = billing.clone();
        let (tgt, cache, tx) = (proxy.tgt.clone(), proxy.tickets.clone(), self.tx.clone());
        let now = SystemTime::now();
        let op = match kind {
            CallEventKind::Connected => roamgate_billing::wire::Op::OpenCharge {
                call_id,
                started_at: now,
            },
            CallEventKind::Released => roamgate_billing::wire::Op::CloseCharge {
                call_id,
                ended_at: now,
            },
        };
        tokio::spawn(async move {
            let result = charge::charge(&servers, &billing, &tgt, &cache, op)
                .await
                .map_err(|e| (e.to_string(), e.q850_cause()));
            let _ = tx.send(Completion::Charged {
                unit,
                session,
                id,
                request,
                kind,
                result,
            });
        });
    }

    fn start_proxy(
        &self,
        unit: IdentityCode,
        session: Session,
        record: &UnitRecord,
        tgt: Credential,
        previous: Option<JoinHandle<()>>,
    ) -> anyhow::Result<Proxy> {
        // Kept for call tickets; the Node takes its own copy.
        let proxy_tgt = Arc::new(tgt.clone());
        let sa = SecurityAssociation::new(record.mip_spi, record.mip_key.expose())
            .map_err(|e| anyhow::anyhow!("the directory's MIP SPI/key: {e}"))?;
        let node = Node::new(NodeSpec {
            identity: Identity {
                home_address: record.home_address,
                home_agent: record.home_agent,
                security_association: sa,
                lifetime: self.proxy.lifetime,
                reverse_tunnel: self.proxy.reverse_tunnel,
                co_located: true,
                tunnel_grace: Duration::from_secs(self.proxy.tunnel_grace_secs),
            },
            credentials: Credentials::Tgt {
                kdc: self.kdc,
                tgt: Box::new(tgt),
                service: self.home_agent_service.clone(),
            },
            care_of: CareOfSource::Fixed(self.care_of),
            plane: self.plane.clone(),
            tunnel_mtu: self.tunnel_mtu,
            dataplane_name: "xdp",
            status_file: None,
        });
        let stop = CancellationToken::new();
        let deregister = node.deregister_on_stop();
        let status = node.status();
        let tx = self.tx.clone();
        let (task_stop, mut watch_rx) = (stop.clone(), node.status());
        let principal = record.principal.to_string();
        let span = tracing::info_span!("proxy", code = %unit, session = session.0);
        let done = tokio::spawn(tracing::Instrument::instrument(
            async move {
                // A replaced proxy clears its entries from the shared plane
                // first: the new one installs the same home address.
                if let Some(old) = previous {
                    let _ = old.await;
                }
                let run = node.run(task_stop.clone());
                tokio::pin!(run);
                let mut seen = 0u64;
                let mut watching = true;
                loop {
                    tokio::select! {
                        r = &mut run => {
                            if !task_stop.is_cancelled() {
                                let reason = match r {
                                    Ok(_) => "the proxy stopped by itself".to_owned(),
                                    Err(e) => format!("{e:#}"),
                                };
                                let _ = tx.send(Completion::Failed { unit, session, reason });
                            }
                            break;
                        }
                        c = watch_rx.changed(), if watching => {
                            if c.is_err() { watching = false; continue; }
                            let s = watch_rx.borrow_and_update().clone();
                            if s.registrations > seen && s.state == "registered" {
                                let first = seen == 0;
                                seen = s.registrations;
                                let _ = tx.send(Completion::Registered {
                                    unit,
                                    session,
                                    first,
                                    care_of: s.care_of.unwrap_or(Ipv4Addr::UNSPECIFIED),
                                    expires: UNIX_EPOCH + Duration::from_secs_f64(s.registration_expires.max(0.0)),
                                });
                            }
                        }
                    }
                }
            },
            span,
        ));
        Ok(Proxy {
            session,
            stop,
            deregister,
            done,
            status,
            home_address: record.home_address,
            principal,
            call: match record.call_key_set() {
                Ok(Some(keys)) => Some((record.call_principal(), keys)),
                Ok(None) => None,
                Err(e) => {
                    warn!(%unit, error = %e, "the unit's call key is unusable: it cannot take calls");
                    None
                }
            },
            tgt: proxy_tgt,
            tickets: ticket::TicketCache::default(),
        })
    }
}

/// One directory request and its answer. The socket is connected, so only
/// the directory's datagrams arrive, and an ICMP port unreachable (the
/// directory is down) fails the step at once instead of at its timeout.
async fn ask_directory(dir: SocketAddr, bytes: &[u8]) -> Result<Vec<u8>, String> {
    let any: SocketAddr = (Ipv4Addr::UNSPECIFIED, 0).into();
    let sock = UdpSocket::bind(any)
        .await
        .map_err(|e| format!("binding a UDP socket: {e}"))?;
    sock.connect(dir)
        .await
        .map_err(|e| format!("the directory at {dir}: {e}"))?;
    sock.send(bytes)
        .await
        .map_err(|e| format!("sending to the directory at {dir}: {e}"))?;
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    match tokio::time::timeout(STEP_TIMEOUT, sock.recv(&mut buf)).await {
        Err(_) => Err(format!(
            "no answer from the directory at {dir} within {} s",
            STEP_TIMEOUT.as_secs()
        )),
        Ok(Err(e)) => Err(format!("the directory at {dir}: {e}")),
        Ok(Ok(n)) => Ok(buf[..n].to_vec()),
    }
}

/// The status file and `/metrics`: counters, and one line per proxy.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Report {
    pub pid: u32,
    pub proxies: usize,
    pub in_progress: usize,
    /// Voice flows programmed for units' calls.
    pub voice_flows: usize,
    pub proxy_ops_in_flight: usize,
    pub stats: serde_json::Value,
    pub io: IoStats,
    pub units: Vec<UnitLine>,
    /// Interfaces the shared data plane is attached to, and their modes.
    pub xdp_attached: crate::dataplane::AttachedLinks,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnitLine {
    pub identity_code: String,
    pub session: u64,
    pub principal: String,
    pub home_address: Ipv4Addr,
    pub state: String,
    pub care_of: Option<Ipv4Addr>,
    pub registrations: u64,
}

fn stats_json(s: &Stats) -> serde_json::Value {
    let mut refused = BTreeMap::new();
    for (i, n) in s.refused.iter().enumerate() {
        if *n > 0 {
            let name = format!("{:?}", Cause::from_u8(i as u8));
            refused.insert(name, *n);
        }
    }
    serde_json::json!({
        "switch_ons_ok": s.switch_ons_ok,
        "refused_by_cause": refused,
        "refused_busy_in_progress": s.refused_busy_in_progress,
        "refused_busy_base_station": s.refused_busy_base_station,
        "refused_busy_units": s.refused_busy_units,
        "dropped": s.dropped,
        "joined": s.joined,
        "replaced": s.replaced,
        "retries": s.retries,
        "gave_up": s.gave_up,
        "switched_off": s.switched_off,
        "silence_timeouts": s.silence_timeouts,
        "proxy_restarts": s.proxy_restarts,
        "stale": s.stale,
        "proxy_ops": s.proxy_ops,
        "proxy_ops_answered": s.proxy_ops_answered,
        "proxy_ops_expired": s.proxy_ops_expired,
    })
}

impl Report {
    pub fn prometheus(&self) -> String {
        let mut out = String::new();
        let mut c = |name: &str, v: u64| {
            out.push_str(&format!(
                "# TYPE roamgate_pm_{name}_total counter\nroamgate_pm_{name}_total {v}\n"
            ))
        };
        if let Some(m) = self.stats.as_object() {
            for (k, v) in m {
                if let Some(n) = v.as_u64() {
                    c(k, n);
                }
            }
        }
        let io = serde_json::to_value(&self.io).unwrap_or_default();
        if let Some(m) = io.as_object() {
            for (k, v) in m {
                c(k, v.as_u64().unwrap_or(0));
            }
        }
        out.push_str("# TYPE roamgate_pm_refused_total counter\n");
        if let Some(m) = self.stats["refused_by_cause"].as_object() {
            for (k, v) in m {
                out.push_str(&format!(
                    "roamgate_pm_refused_total{{cause=\"{k}\"}} {}\n",
                    v.as_u64().unwrap_or(0)
                ));
            }
        }
        out.push_str(&format!(
            "# TYPE roamgate_pm_proxies gauge\nroamgate_pm_proxies {}\n\
             # TYPE roamgate_pm_in_progress gauge\nroamgate_pm_in_progress {}\n\
             # TYPE roamgate_pm_voice_flows gauge\nroamgate_pm_voice_flows {}\n\
             # TYPE roamgate_pm_proxy_ops_in_flight gauge\nroamgate_pm_proxy_ops_in_flight {}\n",
            self.proxies, self.in_progress, self.voice_flows, self.proxy_ops_in_flight
        ));
        if !self.xdp_attached.is_empty() {
            out.push_str(&crate::metrics::xdp_attached(
                self.xdp_attached.iter().map(|(i, m)| (i.as_str(), *m)),
            ));
        }
        out
    }
}

/// The counters, and with `with_units` one line per proxy (only the status
/// file shows them: with 10,000 proxies building the lines takes the
/// event loop ~15 ms, so the metrics tick alone does not).
fn report(
    core: &ProxyManager<Keytab>,
    io: &IoStats,
    proxies: &HashMap<IdentityCode, Proxy>,
    calls: &calls::Calls,
    xdp_attached: &crate::dataplane::AttachedLinks,
    with_units: bool,
) -> Report {
    let lines = if with_units { proxies.len() } else { 0 };
    let mut units: Vec<UnitLine> = proxies
        .iter()
        .take(lines)
        .map(|(code, p)| {
            let s = p.status.borrow();
            UnitLine {
                identity_code: code.to_string(),
                session: p.session.0,
                principal: p.principal.clone(),
                home_address: p.home_address,
                state: s.state.clone(),
                care_of: s.care_of,
                registrations: s.registrations,
            }
        })
        .collect();
    units.sort_by(|a, b| a.identity_code.cmp(&b.identity_code));
    Report {
        pid: std::process::id(),
        proxies: core.proxies(),
        in_progress: core.in_progress(),
        voice_flows: calls.voice_flows(),
        proxy_ops_in_flight: core.proxy_ops_in_flight(),
        stats: stats_json(&core.stats()),
        io: io.clone(),
        units,
        xdp_attached: xdp_attached.clone(),
    }
}

fn log_event(ev: &Event) {
    match ev {
        Event::Dropped { from, error } => debug!(%from, %error, "dropped a datagram"),
        Event::Refused {
            from,
            unit,
            cause,
            error,
        } => {
            let unit = unit.map(|u| u.to_string());
            warn!(%from, unit = unit.as_deref().unwrap_or("-"), ?cause, %error, "refused")
        }
        Event::Joined { unit, session } => {
            debug!(%unit, session = session.0, "a resend joined the switch-on in progress")
        }
        Event::Retrying {
            unit,
            session,
            step,
            attempt,
            reason,
            ..
        } => warn!(%unit, session = session.0, ?step, attempt, %reason, "retrying"),
        Event::Attached {
            unit,
            session,
            principal,
        } => info!(%unit, session = session.0, %principal, "attached: proxy registered, ack sent"),
        Event::Replaced { unit, old, new } => {
            info!(%unit, old = old.0, new = new.0, "switched on again: the new proxy replaces the old")
        }
        Event::SwitchedOff { unit, session } => {
            info!(%unit, session = session.0, "switched off: proxy deregisters and stops")
        }
        Event::SilenceTimeout { unit, session } => {
            warn!(%unit, session = session.0, "unit silent past the timeout: proxy deregisters and stops")
        }
        Event::Stale { session } => debug!(session = session.0, "stale completion ignored"),
    }
}

/// The data plane all proxies share.
struct SharedPlane {
    dp: Option<DataPlane>,
    plane: Plane,
    inside: Vec<u32>,
}

fn open_plane(cfg: &ProxyManagerFile) -> anyhow::Result<SharedPlane> {
    let d = &cfg.dataplane;
    let dp = if d.interfaces.is_empty() {
        None
    } else {
        let mut dp = DataPlane::load(&d.pin_dir)?;
        for i in &d.interfaces {
            let mode = dp
                .attach(i, d.xdp_mode)
                .with_context(|| format!("attaching XDP to {i} (dataplane.interfaces)"))?;
            info!(interface = %i, mode = mode.as_str(), "XDP attached");
        }
        Some(dp)
    };
    let mut maps = Maps::open(&d.pin_dir).with_context(|| {
        format!(
            "opening the pinned maps in {} (dataplane.pin_dir); with dataplane.interfaces empty \
             another process must have loaded them",
            d.pin_dir.display()
        )
    })?;
    let inside = crate::mobile_node::mark_inside(&mut maps, &d.inside_interfaces)?;
    if inside.is_empty() {
        warn!("no inside interface (dataplane.inside_interfaces): units' traffic is not tunnelled");
    }
    Ok(SharedPlane {
        dp,
        plane: Plane::shared_maps(maps),
        inside,
    })
}

/// Raises the soft RLIMIT_NOFILE to the hard limit: every proxy holds a
/// UDP socket for its life, and each switch-on in progress a KDC and a
/// directory socket for a moment, so 10,000 units need well over the usual
/// soft limit of 1024. Returns the (soft, hard) limits now in force.
pub fn raise_nofile_limit() -> std::io::Result<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit with a valid rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return Err(std::io::Error::last_os_error());
        }
        if lim.rlim_cur < lim.rlim_max {
            let raised = libc::rlimit {
                rlim_cur: lim.rlim_max,
                rlim_max: lim.rlim_max,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            lim = raised;
        }
    }
    Ok((lim.rlim_cur, lim.rlim_max))
}

/// Descriptors kept free beyond one per unit (listening sockets, metrics,
/// switch-ons in progress).
const FD_HEADROOM: u64 = 256;

/// How long after a call's prepaid credit ends the proxy waits for the
/// unit's release before it cuts the call itself.
const CREDIT_GRACE: Duration = Duration::from_secs(2);

/// Serves until `shutdown`; then every proxy deregisters and stops.
pub async fn run(cfg: ProxyManagerFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    match raise_nofile_limit() {
        Ok((soft, hard)) => {
            let want = cfg.proxy_manager.max_units as u64 + FD_HEADROOM;
            if soft < want {
                warn!(
                    soft, hard, max_units = cfg.proxy_manager.max_units,
                    "RLIMIT_NOFILE is below proxy_manager.max_units: proxies past the limit \
                     cannot open their sockets (raise the hard limit, e.g. LimitNOFILE= in systemd)"
                );
            } else {
                debug!(soft, hard, "RLIMIT_NOFILE");
            }
        }
        Err(e) => warn!(error = %e, "could not raise RLIMIT_NOFILE"),
    }
    let keytab = Keytab::load(&cfg.kerberos.keytab)
        .with_context(|| format!("reading keytab {}", cfg.kerberos.keytab.display()))?;
    let service = cfg.service()?;
    if keytab.find(&service, None, None).is_none() {
        bail!(
            "keytab {} has no key for {service}; export it with `roamgate kdc export-keytab {service} --out {}`",
            cfg.kerberos.keytab.display(),
            cfg.kerberos.keytab.display()
        );
    }
    let mut core = ProxyManager::new(Verifier::new(service.clone(), keytab), cfg.core());
    let mut shared = open_plane(&cfg)?;
    let xdp_attached: crate::dataplane::AttachedLinks = shared
        .dp
        .iter()
        .flat_map(|dp| dp.attached())
        .map(|(i, m)| (i.to_owned(), m))
        .collect();
    let sock = UdpSocket::bind(cfg.proxy_manager.listen)
        .await
        .with_context(|| format!("binding proxy_manager.listen {}", cfg.proxy_manager.listen))?;
    let (tx, mut rx) = mpsc::unbounded_channel();
    let io = Io {
        kdc: cfg.kerberos.kdc,
        directory: cfg.directory.address,
        directory_service: cfg.directory_service()?,
        home_agent_service: cfg.home_agent_service()?,
        care_of: cfg.proxy_manager.care_of,
        plane: shared.plane.clone(),
        proxy: config::ProxySection {
            lifetime: cfg.proxy.lifetime,
            reverse_tunnel: cfg.proxy.reverse_tunnel,
            tunnel_grace_secs: cfg.proxy.tunnel_grace_secs,
        },
        tunnel_mtu: cfg.dataplane.tunnel_mtu,
        billing: cfg.billing.billing()?,
        tx,
    };
    info!(listen = %sock.local_addr()?, %service, care_of = %io.care_of, kdc = %io.kdc, directory = %io.directory, "proxy manager ready");

    let published = Arc::new(Mutex::new(Report::default()));
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics.addr()? {
        let listener = crate::metrics::bind(addr).await?;
        let p = published.clone();
        let render: crate::metrics::Render =
            Arc::new(move || p.lock().unwrap_or_else(|e| e.into_inner()).prometheus());
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::metrics::serve(listener, render, stop).await });
    }
    let status_file = (!cfg.proxy_manager.status_file.is_empty())
        .then(|| PathBuf::from(&cfg.proxy_manager.status_file));

    let mut proxies: HashMap<IdentityCode, Proxy> = HashMap::new();
    // Proxies told to stop, until they have: a successor waits for them.
    let mut stopping: HashMap<IdentityCode, JoinHandle<()>> = HashMap::new();
    let mut calls = calls::Calls::default();
    let mut stats = IoStats::default();
    let mut tick =
        tokio::time::interval(Duration::from_millis(cfg.proxy_manager.stats_interval_ms));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
    loop {
        let wake = core
            .poll_timeout()
            .map(|t| t.duration_since(SystemTime::now()).unwrap_or_default())
            .unwrap_or(Duration::from_secs(3600));
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sock.recv_from(&mut buf) => match r {
                Ok((n, from)) => {
                    stats.datagrams += 1;
                    if n > MAX_FRAME_LEN {
                        stats.oversized += 1;
                    } else {
                        core.handle_relay(&buf[..n], from, SystemTime::now());
                    }
                }
                Err(e) => warn!(error = %e, "receive failed"),
            },
            Some(c) = rx.recv() => complete(&io, &mut core, &mut proxies, &mut calls, &mut stats, c),
            _ = tokio::time::sleep(wake) => core.handle_timeout(SystemTime::now()),
            _ = tick.tick() => {
                stopping.retain(|_, h| !h.is_finished());
                let r = report(
                    &core,
                    &stats,
                    &proxies,
                    &calls,
                    &xdp_attached,
                    status_file.is_some(),
                );
                if let Some(p) = &status_file {
                    if let Ok(text) = serde_json::to_string(&r) {
                        if let Err(e) = crate::platform::fs::write_atomic(p, text.as_bytes(), 0o600) {
                            debug!(error = %e, "status file");
                        }
                    }
                }
                *published.lock().unwrap_or_else(|e| e.into_inner()) = r;
                continue;
            }
        }
        while let Some(out) = core.poll_output() {
            match out {
                Output::Send { to, bytes } => {
                    if let Err(e) = sock.try_send_to(&bytes, to) {
                        stats.send_errors += 1;
                        warn!(%to, error = %e, "sending to a base station failed");
                    }
                }
                Output::Event(ev) => log_event(&ev),
                Output::Command(cmd) => run_command(
                    &io,
                    &mut proxies,
                    &mut stopping,
                    &mut calls,
                    &mut stats,
                    &mut core,
                    cmd,
                ),
            }
        }
    }

    info!(proxies = proxies.len(), "stopping: every proxy deregisters");
    for p in proxies.values() {
        p.stop.cancel();
    }
    for (_, p) in proxies.drain() {
        let _ = p.done.await;
    }
    for (_, h) in stopping.drain() {
        let _ = h.await;
    }
    if let Plane::Maps(maps) = &shared.plane {
        let mut maps = maps.lock().unwrap_or_else(|p| p.into_inner());
        for i in &shared.inside {
            if let Err(e) = maps.unmark_inside(*i) {
                warn!(ifindex = i, error = %e, "unmarking an inside interface");
            }
        }
    }
    if let Some(dp) = shared.dp.as_mut() {
        for (i, r) in dp.detach_all() {
            if let Err(e) = r {
                warn!(interface = %i, error = %e, "detaching XDP");
            }
        }
    }
    if let Some(p) = &status_file {
        let r = report(&core, &stats, &proxies, &calls, &xdp_attached, true);
        if let Ok(text) = serde_json::to_string(&r) {
            let _ = crate::platform::fs::write_atomic(p, text.as_bytes(), 0o600);
        }
    }
    tasks.shutdown().await;
    Ok(())
}

fn run_command(
    io: &Io,
    proxies: &mut HashMap<IdentityCode, Proxy>,
    stopping: &mut HashMap<IdentityCode, JoinHandle<()>>,
    calls: &mut calls::Calls,
    stats: &mut IoStats,
    core: &mut ProxyManager<Keytab>,
    cmd: Command,
) {
    match cmd {
        Command::GetDirectoryTicket { session, tgt, .. } => io.directory_ticket(session, tgt),
        Command::SendDirectoryRequest { session, bytes, .. } => {
            io.directory_request(session, bytes)
        }
        Command::StartProxy {
            unit,
            session,
            record,
            tgt,
            domain,
        } => {
            // A restart of the same unit's proxy replaces the old task
            // without deregistering (the new one re-registers).
            // The core stops a replaced proxy first (StopProxy); a restart
            // replaces a running one here. Either way the new proxy starts
            // once the old one has cleared its entries from the plane.
            let previous = match proxies.remove(&unit) {
                Some(old) => {
                    old.deregister.store(false, Ordering::Relaxed);
                    old.stop.cancel();
                    Some(old.done)
                }
                None => stopping.remove(&unit),
            };
            info!(%unit, session = session.0, home = %record.home_address, %domain, "starting the proxy");
            match io.start_proxy(unit, session, &record, *tgt, previous) {
                Ok(p) => {
                    stats.proxies_started += 1;
                    proxies.insert(unit, p);
                }
                Err(e) => {
                    stats.proxy_failures += 1;
                    core.proxy_failed(unit, session, format!("{e:#}"), SystemTime::now());
                }
            }
        }
        Command::Proxy {
            unit,
            session,
            id,
            request,
        } => {
            let proxy = proxies.get(&unit).filter(|p| p.session == session);
            // The caller's CONNECT (before media) and release are charged
            // first: a call that cannot be charged is not connected.
            let charged = match (request.op(), &io.billing, proxy) {
                (
                    Ok(ProxyOp::CallEvent {
                        call_id,
                        kind,
                        role: Role::Caller,
                        media,
                        ..
                    }),
                    Some(b),
                    Some(p),
                ) if kind == CallEventKind::Released || media.ssrc_in == 0 => {
                    Some((b.clone(), p, call_id, kind))
                }
                _ => None,
            };
            if let Some((b, p, call_id, kind)) = charged {
                io.charge(&b, unit, session, id, p, Some(request), call_id, kind);
                return;
            }
            let number = match request.op() {
                Ok(ProxyOp::CallTicket { number }) => Some(number.to_owned()),
                _ => None,
            };
            let answer = match (proxy, number) {
                (Some(p), Some(number)) => {
                    // Network I/O: answered when its task completes.
                    io.call_ticket(unit, id, p, request, number);
                    return;
                }
                (Some(p), None) => {
                    calls.serve(&io.plane, unit, p, &request, None, SystemTime::now())
                }
                (None, _) => Err("the unit's proxy stopped".into()),
            };
            if let Err(e) = &answer {
                warn!(%unit, error = %e, "proxy request not served");
            }
            core.proxy_answered(id, answer);
        }
        Command::StopProxy {
            unit,
            session,
            deregister,
        } => {
            if proxies.get(&unit).is_some_and(|p| p.session == session) {
                if let Some(p) = proxies.remove(&unit) {
                    p.deregister.store(deregister, Ordering::Relaxed);
                    p.stop.cancel();
                    stopping.insert(unit, p.done);
                    stats.proxies_stopped += 1;
                    if deregister {
                        // Switched off, moved away or silent: its calls'
                        // flows go too (a replacement keeps them).
                        calls.revoke_unit(&io.plane, &unit);
                        stats.deregistered_on_stop += 1;
                    }
                }
            }
        }
    }
}

fn complete(
    io: &Io,
    core: &mut ProxyManager<Keytab>,
    proxies: &mut HashMap<IdentityCode, Proxy>,
    calls: &mut calls::Calls,
    stats: &mut IoStats,
    c: Completion,
) {
    let now = SystemTime::now();
    match c {
        Completion::Charged {
            unit,
            session,
            id,
            request,
            kind,
            result,
        } => {
            let who = request.as_ref().map(|r| r.client.to_string());
            match (&result, kind) {
                (Ok(_), CallEventKind::Connected) => stats.charges_opened += 1,
                (Ok(_), CallEventKind::Released) => stats.charges_closed += 1,
                (Err((e, cause)), _) => {
                    stats.charges_failed += 1;
                    warn!(%unit, client = ?who, error = %e, cause, ?kind, "call not charged");
                }
            }
            // The proxy's own close of a call it cut: nobody to answer.
            let Some(request) = request else { return };
            let credit = match &result {
                Ok(
                    roamgate_billing::wire::OpResult::Opened { allowed_seconds }
                    | roamgate_billing::wire::OpResult::AlreadyOpen { allowed_seconds },
                ) => allowed_seconds.map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
                _ => None,
            };
            let answer = match (result, kind) {
                (Err((_, cause)), CallEventKind::Connected) => request
                    .answer(
                        &ProxyReply::Failed {
                            op: request.op().map(|o| o.op()).unwrap_or(3),
                            cause,
                        },
                        now,
                    )
                    .map_err(|e| e.to_string()),
                _ => match proxies.get(&unit).filter(|p| p.session == session) {
                    Some(p) => {
                        if let (Some(secs), Ok(ProxyOp::CallEvent { call_id, .. })) =
                            (credit, request.op())
                        {
                            // The unit releases the call when its credit
                            // ends; if no release comes, the proxy cuts it.
                            let tx = io.tx.clone();
                            let stop = p.stop.clone();
                            tokio::spawn(async move {
                                let after = Duration::from_secs(u64::from(secs)) + CREDIT_GRACE;
                                tokio::select! {
                                    _ = tokio::time::sleep(after) => {
                                        let _ = tx.send(Completion::CreditExhausted { unit, session, call_id });
                                    }
                                    _ = stop.cancelled() => {}
                                }
                            });
                        }
                        calls.serve(&io.plane, unit, p, &request, credit, now)
                    }
                    None => Err("the unit's proxy stopped".into()),
                },
            };
            core.proxy_answered(id, answer);
        }
        Completion::CreditExhausted {
            unit,
            session,
            call_id,
        } => {
            // Its voice flows still in place: the release never came.
            if calls.cut(&io.plane, &unit, &call_id) {
                stats.calls_cut_prepaid += 1;
                warn!(%unit, call = %roamgate_billing::CallId(call_id), "the prepaid credit ran out and the unit did not release the call: voice flows revoked, charge closed");
                if let (Some(b), Some(p)) = (
                    &io.billing,
                    proxies.get(&unit).filter(|p| p.session == session),
                ) {
                    io.charge(
                        b,
                        unit,
                        session,
                        0,
                        p,
                        None,
                        call_id,
                        CallEventKind::Released,
                    );
                }
            }
        }
        Completion::Ticket(session, r) => core.handle_ticket(session, *r, now),
        Completion::Directory(session, r) => {
            core.handle_directory(session, r.as_deref().map_err(Clone::clone), now)
        }
        Completion::CallTicket { id, answer, issued } => {
            if issued {
                stats.call_tickets_issued += 1;
            } else {
                stats.call_tickets_refused += 1;
            }
            if let Err(e) = &answer {
                warn!(error = %e, "call ticket not answered");
            }
            core.proxy_answered(id, answer);
        }
        Completion::Registered {
            unit,
            session,
            first,
            care_of,
            expires,
        } => {
            if first {
                core.proxy_started(unit, session);
            }
            core.proxy_registered(unit, session, care_of, expires);
        }
        Completion::Failed {
            unit,
            session,
            reason,
        } => {
            if proxies.get(&unit).is_some_and(|p| p.session == session) {
                proxies.remove(&unit);
                stats.proxy_failures += 1;
                warn!(%unit, session = session.0, %reason, "proxy failed");
                core.proxy_failed(unit, session, reason, now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_tickets_are_published_as_counters() {
        let r = Report {
            io: IoStats {
                call_tickets_issued: 3,
                call_tickets_refused: 2,
                ..IoStats::default()
            },
            ..Report::default()
        };
        let text = r.prometheus();
        for line in [
            "# TYPE roamgate_pm_call_tickets_issued_total counter",
            "roamgate_pm_call_tickets_issued_total 3",
            "# TYPE roamgate_pm_call_tickets_refused_total counter",
            "roamgate_pm_call_tickets_refused_total 2",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing:\n{text}");
        }
    }

    /// Runs in a child process (the test binary again, this test only),
    /// because it changes RLIMIT_NOFILE for the whole process.
    #[test]
    fn raises_the_soft_nofile_limit_to_the_hard_one() {
        const CHILD: &str = "RG_PM_NOFILE_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let mut lim = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            // SAFETY: getrlimit/setrlimit with a valid rlimit; this child
            // process exists only for this test.
            unsafe {
                assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim), 0);
                let low = libc::rlimit {
                    rlim_cur: lim.rlim_max.min(256),
                    rlim_max: lim.rlim_max,
                };
                assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &low), 0);
            }
            let (soft, hard) = raise_nofile_limit().unwrap();
            assert_eq!((soft, hard), (lim.rlim_max, lim.rlim_max));
            return;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "proxy_manager::tests::raises_the_soft_nofile_limit_to_the_hard_one",
                "--exact",
                "--nocapture",
                "--test-threads=1",
            ])
            .env(CHILD, "1")
            .output()
            .unwrap();
        assert!(
            out.status.success() && String::from_utf8_lossy(&out.stdout).contains("1 passed"),
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
