//! `roamgate unit call` and `answer` (docs/call.md, "Where a call runs").
//!
//! The unit is the call's endpoint at its home address: the H.225.0 TCP
//! connection and the SRTP streams are its own, so they live through a
//! handover, because the home address does. Its proxy does the call's
//! Kerberos in the subscriber's name, through the base station (proxy
//! ops, docs/attach.md §5.1): a call ticket for a number, the acceptance
//! of a caller's AP-REQ, and the call events that install and remove the
//! call's voice flows in the XDP voice path.

use std::{
    collections::BTreeMap,
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use roamgate_attach::{
    proxy_op::{CallEventKind, Media, ProxyOp, ProxyReply, Role},
    state::UnitState,
    unit::{Unit, UnitCredentials, UnitError, UnitEvent},
};
use roamgate_call::{
    call::{cause, Call, Channel, Event, Kind, Outgoing, RefuseError},
    handshake::{self, Answered, CallId, CallKeys},
    media::{
        g711::Law,
        session::{ntp, CallStats, MediaSession},
    },
    signalling::{self, Ends},
};
use roamgate_krb::{cred::open_krb_cred, replay::ReplayCache, Principal};
use roamgate_krb_crypto::{Etype, Key};
use serde::Serialize;
use tokio::{
    io::{AsyncReadExt as _, AsyncWriteExt as _},
    net::{tcp::OwnedWriteHalf, TcpListener, TcpSocket, TcpStream, UdpSocket},
};
use tracing::{info, warn};
use zeroize::Zeroizing;

use super::{config::UnitFile, exchange, load_session, socket_for, Session};

/// 20 ms of G.711 at 8 kHz.
pub const FRAME: usize = 160;
/// A whole H.225.0 message is at most this long (docs/call.md).
const MAX_MESSAGE: usize = roamgate_call::wire::MAX_MESSAGE_LEN;
/// Call statistics files kept in `call.calls_dir`.
const KEEP_CALLS: usize = 64;
/// Longest call `answer` keeps up (its release never came).
const MAX_CALL: Duration = Duration::from_secs(4 * 3600);
/// Seconds between 1900 (NTP) and 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// What the unit needs for a call: who and where it is, and credentials
/// for its proxy manager (fetched once per command; each proxy op is a
/// fresh AP-REQ from them).
pub struct Ctx {
    pub cfg: UnitFile,
    pub st: UnitState,
    pub session: Session,
    /// For the proxy manager the unit is attached at; replaced after a
    /// move, and before the ticket ends.
    creds: Mutex<UnitCredentials>,
    pub home: Ipv4Addr,
}

/// Credentials are fetched again this long before their ticket ends.
const CREDS_MARGIN: Duration = Duration::from_secs(300);

impl Ctx {
    /// Loads the unit, checks that it is switched on and learns its home
    /// address from its proxy.
    pub async fn load(cfg: UnitFile) -> anyhow::Result<Self> {
        let st = UnitState::load(&cfg.unit.state_file)?;
        let session =
            load_session(&cfg.unit.session_file)?.ok_or_else(|| super::not_switched_on(&cfg))?;
        let manager = super::parse_principal(&session.manager, "session file manager")?;
        let creds = super::fetch_creds(&cfg, &st, &manager).await?;
        let mut ctx = Self {
            cfg,
            st,
            session,
            creds: Mutex::new(creds),
            home: Ipv4Addr::UNSPECIFIED,
        };
        let status = super::keepalive(&ctx.cfg, &ctx.st, &ctx.session)
            .await
            .with_context(|| format!("status at {}", ctx.session.base_station))?;
        if status.home_address.is_unspecified() {
            bail!("the unit's proxy has no home address yet; wait for the switch-on to finish");
        }
        ctx.home = status.home_address;
        Ok(ctx)
    }

    /// One proxy op through the base station the unit is attached at now
    /// (the session file: a move changes it mid-call).
    async fn proxy(&self, op: &ProxyOp<'_>) -> Result<(Zeroizing<Vec<u8>>, Key), ProxyOpError> {
        let session = load_session(&self.cfg.unit.session_file)
            .ok()
            .flatten()
            .unwrap_or_else(|| self.session.clone());
        let creds = self
            .creds_for(&session.manager)
            .await
            .map_err(|e| ProxyOpError::Other(format!("{e:#}")))?;
        let mut unit =
            Unit::new(self.st.identity, creds).map_err(|e| ProxyOpError::Other(e.to_string()))?;
        let body = op
            .to_bytes()
            .map_err(|e| ProxyOpError::Other(e.to_string()))?;
        let sock = socket_for(session.base_station)
            .await
            .map_err(|e| ProxyOpError::Other(format!("{e:#}")))?;
        let frame = unit
            .proxy_request(&body, SystemTime::now())
            .map_err(|e| ProxyOpError::Other(e.to_string()))?;
        match exchange(&mut unit, &sock, session.base_station, frame).await {
            Ok(UnitEvent::Proxy(plain)) => {
                let key = unit
                    .take_proxy_key()
                    .ok_or_else(|| ProxyOpError::Other("no key for the proxy answer".into()))?;
                Ok((plain, key))
            }
            Ok(ev) => Err(ProxyOpError::Other(format!("unexpected answer {ev:?}"))),
            Err(UnitError::Refused { cause, .. }) => {
                Err(ProxyOpError::Refused(format!("{cause:?}")))
            }
            Err(e) => Err(ProxyOpError::Other(e.to_string())),
        }
    }

    /// Credentials for `manager`: the ones held, unless the unit has moved
    /// to another proxy manager since or their ticket is about to end.
    async fn creds_for(&self, manager: &str) -> anyhow::Result<UnitCredentials> {
        let manager = super::parse_principal(manager, "session file manager")?;
        let fresh_until = SystemTime::now() + CREDS_MARGIN;
        {
            let held = self.creds.lock().unwrap_or_else(|e| e.into_inner());
            if roamgate_krb::messages::same_principal(&held.manager_ticket.server, &manager)
                && held.manager_ticket.end_time > fresh_until
            {
                return Ok(held.clone());
            }
        }
        let creds = super::fetch_creds(&self.cfg, &self.st, &manager).await?;
        *self.creds.lock().unwrap_or_else(|e| e.into_inner()) = creds.clone();
        Ok(creds)
    }

    /// Tells the proxy of a call event; `Ok` carries how many seconds the
    /// caller's prepaid balance pays for (`None`: no limit), `Err` the
    /// Q.850 cause of a refusal (41 when the proxy could not be reached).
    async fn event(
        &self,
        call_id: CallId,
        kind: CallEventKind,
        q850: u8,
        role: Role,
        media: Media,
    ) -> Result<Option<u32>, u8> {
        let op = ProxyOp::CallEvent {
            call_id,
            kind,
            cause: q850,
            role,
            media,
        };
        match self.proxy(&op).await {
            Ok((plain, _)) => match ProxyReply::parse(&plain, op.op()) {
                Ok(ProxyReply::EventNoted { max_seconds }) => Ok(max_seconds),
                Ok(ProxyReply::Failed { cause, .. }) => {
                    warn!(call = %hex(&call_id), ?kind, cause, "the proxy refused the call event");
                    Err(cause)
                }
                Ok(other) => {
                    warn!(?other, "unexpected proxy reply to a call event");
                    Err(41)
                }
                Err(e) => {
                    warn!(error = %e, "malformed proxy reply to a call event");
                    Err(41)
                }
            },
            Err(e) => {
                warn!(call = %hex(&call_id), ?kind, error = %e, "call event not delivered to the proxy");
                Err(41)
            }
        }
    }

    fn ends(&self, peer: &str) -> Ends {
        Ends {
            sender: self.own_name(),
            receiver: peer.to_owned(),
        }
    }

    fn own_name(&self) -> String {
        if self.cfg.call.number.is_empty() {
            self.st.principal.to_string()
        } else {
            self.cfg.call.number.clone()
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum ProxyOpError {
    #[error("the proxy manager refused the request ({0})")]
    Refused(String),
    #[error("{0}")]
    Other(String),
}

/// One call's outcome and statistics: printed by `call` and `answer`,
/// kept in `call.calls_dir` for `unit status`.
#[derive(Debug, Clone, Serialize, serde::Deserialize, PartialEq)]
pub struct CallReport {
    pub call_id: String,
    pub role: String,
    /// The number dialled (for the callee: its own).
    pub number: String,
    /// The peer's principal, once authenticated.
    pub peer: Option<String>,
    pub state: String,
    pub connected: bool,
    /// Q.850 cause of the release (16: normal clearing).
    pub cause: Option<u8>,
    pub cause_text: Option<String>,
    /// SETUP sent (or received) → CONNECT received (or sent).
    pub setup_ms: Option<f64>,
    pub duration_s: f64,
    pub codec: Option<String>,
    pub srtp_profile: String,
    pub local_media: Option<SocketAddrV4>,
    pub remote_media: Option<SocketAddrV4>,
    pub packets_sent: u64,
    pub packets_received: u64,
    pub packets_expected: u64,
    pub packets_lost: i64,
    pub jitter_ms: f64,
    pub jitter_ms_max: f64,
    pub rtt_ms: Option<f64>,
    pub srtp_forged: u64,
    pub srtp_replayed: u64,
    pub rtcp_received: u64,
    /// Signalling messages dropped by the integrity and replay checks.
    pub signalling_dropped: u64,
    /// Whether the proxy installed the call's voice flows.
    pub voice_flows: bool,
    /// Largest gap between two received media packets, ms (a handover's
    /// interruption).
    pub max_gap_ms: f64,
    /// Seconds since the epoch of the last update.
    pub updated: u64,
    /// The caller's prepaid balance paid for this many seconds: the call
    /// was (or will be) released then.
    #[serde(default)]
    pub credit_limit_s: Option<u32>,
}

impl CallReport {
    fn new(call_id: &CallId, role: Role, number: &str, profile: &str) -> Self {
        Self {
            call_id: hex(call_id),
            role: match role {
                Role::Caller => "caller",
                Role::Callee => "callee",
            }
            .to_owned(),
            number: number.to_owned(),
            peer: None,
            state: "setup".into(),
            connected: false,
            cause: None,
            cause_text: None,
            setup_ms: None,
            duration_s: 0.0,
            codec: None,
            srtp_profile: profile.to_owned(),
            local_media: None,
            remote_media: None,
            packets_sent: 0,
            packets_received: 0,
            packets_expected: 0,
            packets_lost: 0,
            jitter_ms: 0.0,
            jitter_ms_max: 0.0,
            rtt_ms: None,
            srtp_forged: 0,
            srtp_replayed: 0,
            credit_limit_s: None,
            rtcp_received: 0,
            signalling_dropped: 0,
            voice_flows: false,
            max_gap_ms: 0.0,
            updated: epoch_secs(),
        }
    }

    fn set_stats(&mut self, s: &CallStats) {
        self.packets_sent = s.packets_sent;
        self.packets_received = s.packets_received;
        self.packets_expected = s.packets_expected;
        self.packets_lost = s.packets_lost;
        self.jitter_ms = s.jitter_ms;
        self.jitter_ms_max = s.jitter_ms_max;
        self.rtt_ms = s.rtt_ms;
        self.srtp_forged = s.srtp_forged;
        self.srtp_replayed = s.srtp_replayed;
        self.rtcp_received = s.rtcp_received;
    }

    fn released(&mut self, q850: u8) {
        self.state = "released".into();
        self.cause = Some(q850);
        self.cause_text = Some(cause_text(q850).to_owned());
    }

    /// One line for `unit status`.
    pub fn line(&self) -> String {
        format!(
            "{} {} {} {} sent {} received {} lost {} jitter {:.2} ms rtt {} forged {} replayed {}{}",
            &self.call_id[..8],
            self.role,
            self.number,
            self.state,
            self.packets_sent,
            self.packets_received,
            self.packets_lost,
            self.jitter_ms,
            self.rtt_ms.map_or("-".into(), |r| format!("{r:.1} ms")),
            self.srtp_forged,
            self.srtp_replayed,
            self.cause
                .map_or(String::new(), |c| format!(" cause {c} ({})", cause_text(c))),
        )
    }
}

/// The Q.850 cause's name.
pub fn cause_text(c: u8) -> &'static str {
    match c {
        cause::UNALLOCATED_NUMBER => "unallocated number",
        3 => "no route to destination",
        cause::NORMAL_CLEARING => "normal clearing",
        cause::USER_BUSY => "user busy",
        18 => "no user responding",
        cause::NO_ANSWER => "no answer",
        cause::SUBSCRIBER_ABSENT => "subscriber absent",
        cause::CALL_REJECTED => "call rejected",
        28 => "invalid number format",
        34 => "no circuit available",
        41 => "temporary failure",
        cause::NOT_AUTHORISED => "bearer capability not authorised",
        cause::INCOMPATIBLE_DESTINATION => "incompatible destination",
        cause::INVALID_MESSAGE => "invalid message",
        cause::TIMER_EXPIRY => "recovery on timer expiry",
        cause::PROTOCOL_ERROR => "protocol error",
        _ => "other",
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn epoch_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A random nonzero SSRC (RFC 3550 §8).
fn random_ssrc() -> anyhow::Result<u32> {
    Ok(u32::from_be_bytes(random()?) | 1)
}

fn random<const N: usize>() -> anyhow::Result<[u8; N]> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; N];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| anyhow::anyhow!("the system random source failed"))?;
    Ok(b)
}

/// The calls' statistics files: one per call, newest kept.
pub struct CallsDir(pub PathBuf);

impl CallsDir {
    pub fn save(&self, r: &CallReport) {
        let write = || -> anyhow::Result<()> {
            crate::platform::fs::private_dir(&self.0)?;
            let path = self.0.join(format!("{}.json", r.call_id));
            crate::platform::fs::write_atomic(&path, serde_json::to_string(r)?.as_bytes(), 0o600)?;
            Ok(())
        };
        if let Err(e) = write() {
            warn!(dir = %self.0.display(), error = %format!("{e:#}"), "saving the call's statistics");
        }
    }

    /// The newest calls first; prunes beyond [`KEEP_CALLS`].
    pub fn load(&self) -> Vec<CallReport> {
        let Ok(dir) = std::fs::read_dir(&self.0) else {
            return Vec::new();
        };
        let mut files: Vec<(SystemTime, PathBuf)> = dir
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .filter_map(|e| Some((e.metadata().ok()?.modified().ok()?, e.path())))
            .collect();
        files.sort_by_key(|f| std::cmp::Reverse(f.0));
        for (_, p) in files.iter().skip(KEEP_CALLS) {
            let _ = std::fs::remove_file(p);
        }
        files
            .iter()
            .take(KEEP_CALLS)
            .filter_map(|(_, p)| serde_json::from_slice(&std::fs::read(p).ok()?).ok())
            .collect()
    }
}

/// A WAV file's samples: 8 kHz mono 16-bit PCM, G.711's format.
pub fn read_wav(path: &Path) -> anyhow::Result<Vec<i16>> {
    let mut r =
        hound::WavReader::open(path).with_context(|| format!("reading {}", path.display()))?;
    let s = r.spec();
    if s.sample_rate != 8000
        || s.channels != 1
        || s.bits_per_sample != 16
        || s.sample_format != hound::SampleFormat::Int
    {
        bail!(
            "{}: {} Hz, {} channel(s), {}-bit; G.711 needs 8000 Hz mono 16-bit PCM \
             (convert with `sox IN -r 8000 -c 1 -b 16 OUT.wav`)",
            path.display(),
            s.sample_rate,
            s.channels,
            s.bits_per_sample
        );
    }
    r.samples::<i16>()
        .collect::<Result<_, _>>()
        .with_context(|| format!("reading the samples of {}", path.display()))
}

pub fn write_wav(path: &Path, samples: &[i16]) -> anyhow::Result<()> {
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: 8000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec)
        .with_context(|| format!("writing {}", path.display()))?;
    for s in samples {
        w.write_sample(*s)?;
    }
    w.finalize()
        .with_context(|| format!("writing {}", path.display()))
}

/// One whole TPKT-framed message from the signalling connection; `None`
/// at the end of the stream.
async fn read_message(r: &mut tokio::net::tcp::OwnedReadHalf) -> anyhow::Result<Option<Vec<u8>>> {
    let mut head = [0u8; 4];
    match r.read_exact(&mut head).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    if head[0] != 3 {
        bail!("not TPKT (version {})", head[0]);
    }
    let len = usize::from(u16::from_be_bytes([head[2], head[3]]));
    if !(4..=MAX_MESSAGE).contains(&len) {
        bail!("TPKT length {len}");
    }
    let mut msg = head.to_vec();
    msg.resize(len, 0);
    r.read_exact(&mut msg[4..]).await?;
    Ok(Some(msg))
}

/// The signalling connection's sending side.
struct Signaller {
    w: OwnedWriteHalf,
    call_reference: u16,
    from_callee: bool,
    ends: Ends,
}

impl Signaller {
    async fn send(&mut self, out: &Outgoing) -> anyhow::Result<Vec<u8>> {
        let bytes = signalling::encode(
            &out.signal,
            self.call_reference,
            self.from_callee,
            out.key.as_ref(),
            &self.ends,
        )?;
        self.w.write_all(&bytes).await?;
        Ok(bytes)
    }
}

/// How a call's media runs.
pub struct MediaPlan {
    /// Samples to send, then silence.
    pub play: Vec<i16>,
    /// Hang up after this long connected (`None`: when the peer does).
    pub hang_up_after: Option<Duration>,
}

/// The connected call: media both ways until a release, the peer's or
/// ours; then RELEASE COMPLETE and the voice flows go.
#[allow(clippy::too_many_arguments)]
async fn connected(
    ctx: &Arc<Ctx>,
    call: &mut Call,
    sig: &mut Signaller,
    rd: &mut tokio::net::tcp::OwnedReadHalf,
    sock: UdpSocket,
    (ours, remote): (Channel, Channel),
    ssrc: u32,
    plan: &MediaPlan,
    credit_until: Option<Instant>,
    report: &mut CallReport,
    calls: &CallsDir,
) -> anyhow::Result<(MediaSession, u8)> {
    let keys: &CallKeys = call.keys().context("a connected call without keys")?;
    let profile = ctx.cfg.call.profile()?;
    let [q1, q2]: [u8; 2] = random()?;
    let ts: [u8; 4] = random()?;
    let mut media = MediaSession::new(
        keys,
        profile,
        ours.law,
        remote.rtp,
        ssrc,
        u16::from_be_bytes([q1, q2]) & 0x7fff,
        u32::from_be_bytes(ts),
    )
    .map_err(|e| anyhow::anyhow!("the call's SRTP: {e}"))?;
    let role = if report.role == "caller" {
        Role::Caller
    } else {
        Role::Callee
    };
    // The peer's SSRC is not known until its first packet: the flows are
    // installed with the peer's first SSRC seen, so the event waits for it
    // (a call's media starts at once, from both ends).
    let started = Instant::now();
    let mut frames = tokio::time::interval(Duration::from_millis(20));
    frames.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
    let mut rtcp = tokio::time::interval(Duration::from_millis(ctx.cfg.call.rtcp_interval_ms));
    rtcp.tick().await;
    let mut buf = vec![0u8; 2048];
    let mut played = 0usize;
    let mut peer_ssrc: Option<u32> = None;
    let mut last_rx: Option<Instant> = None;
    let mut flows_for: Option<SocketAddr> = None;
    let mut pending_event: Option<tokio::task::JoinHandle<bool>> = None;
    let hang_up_at = plan.hang_up_after.map(|d| started + d);
    let mut session_seen = ctx.session.base_station;
    // The earlier of our own hang-up and the end of the caller's credit.
    let release_at = match (hang_up_at, credit_until) {
        (Some(h), Some(c)) => Some(h.min(c)),
        (h, c) => h.or(c),
    };
    let q850 = loop {
        let until_hang =
            release_at.map_or(MAX_CALL, |t| t.saturating_duration_since(Instant::now()));
        tokio::select! {
            _ = frames.tick() => {
                let mut frame = [0i16; FRAME];
                if played < plan.play.len() {
                    let n = (plan.play.len() - played).min(FRAME);
                    frame[..n].copy_from_slice(&plan.play[played..played + n]);
                    played += n;
                }
                match media.send_frame(&frame) {
                    Ok(pkt) => {
                        // Lost while the home address moves (a handover):
                        // RTP is not retransmitted.
                        let _ = sock.send_to(&pkt, media.remote()).await;
                    }
                    Err(e) => warn!(error = %e, "protecting a frame"),
                }
            }
            r = sock.recv_from(&mut buf) => {
                let Ok((n, from)) = r else { continue };
                let now = Instant::now();
                let arrival = (now.duration_since(started).as_nanos() * 8000 / 1_000_000_000) as u32;
                let got_ssrc = (n >= 12).then(|| u32::from_be_bytes([buf[8], buf[9], buf[10], buf[11]]));
                match media.receive(buf[..n].to_vec(), arrival, now_ntp()) {
                    Ok(Some(_)) => {
                        if let Some(prev) = last_rx {
                            let gap = now.duration_since(prev).as_secs_f64() * 1e3;
                            report.max_gap_ms = report.max_gap_ms.max(gap);
                        }
                        last_rx = Some(now);
                        if peer_ssrc.is_none() {
                            peer_ssrc = got_ssrc;
                        }
                        if flows_for.is_none() {
                            if let (Some(peer), SocketAddr::V4(local)) = (peer_ssrc, sock.local_addr()?) {
                                flows_for = Some(from);
                                pending_event = Some(spawn_event(ctx, call.call_id(), CallEventKind::Connected, 0, role, Media {
                                    local,
                                    remote: media.remote(),
                                    ssrc_out: media.ssrc(),
                                    ssrc_in: peer,
                                }));
                            }
                        }
                    }
                    Ok(None) => {}
                    Err(e) => tracing::debug!(error = %e, "media datagram dropped"),
                }
            }
            _ = rtcp.tick() => {
                match media.report(now_ntp()) {
                    Ok(pkt) => { let _ = sock.send_to(&pkt, media.remote()).await; }
                    Err(e) => warn!(error = %e, "SRTCP report"),
                }
                if let Some(h) = pending_event.take_if(|h| h.is_finished()) {
                    report.voice_flows = h.await.unwrap_or(false);
                }
                // A handover: the new proxy installs the flows too.
                if let Ok(Some(s)) = load_session(&ctx.cfg.unit.session_file) {
                    if s.base_station != session_seen {
                        session_seen = s.base_station;
                        if let (Some(peer), SocketAddr::V4(local)) = (peer_ssrc, sock.local_addr()?) {
                            info!(base_station = %s.base_station, "moved mid-call: the new proxy installs the call's voice flows");
                            pending_event = Some(spawn_event(ctx, call.call_id(), CallEventKind::Connected, 0, role, Media {
                                local,
                                remote: media.remote(),
                                ssrc_out: media.ssrc(),
                                ssrc_in: peer,
                            }));
                        }
                    }
                }
                report.set_stats(&media.stats());
                report.duration_s = started.elapsed().as_secs_f64();
                report.signalling_dropped = call.dropped;
                report.updated = epoch_secs();
                calls.save(report);
            }
            m = read_message(rd) => match m {
                Ok(Some(bytes)) => match signalling::decode(&bytes) {
                    Ok(rx) => match call.on_signal(&rx.signal, &|k| rx.verify(k), SystemTime::now()) {
                        Ok(Some(Event::Released { cause, .. })) => break cause,
                        Ok(_) => {}
                        Err(e) => warn!(error = %e, "signalling message dropped"),
                    },
                    Err(e) => warn!(error = %e, "malformed signalling message dropped"),
                },
                Ok(None) | Err(_) => {
                    // The connection is gone without a release: the call
                    // cannot be cleared in band.
                    warn!("the signalling connection closed without RELEASE COMPLETE");
                    let _ = call.hang_up(41, SystemTime::now());
                    break 41;
                }
            },
            _ = tokio::time::sleep(until_hang) => {
                // Cut at the end of the caller's prepaid credit: the same
                // cause as a call refused for want of funds.
                let q850 = match credit_until {
                    Some(c) if Instant::now() >= c => {
                        info!(limit_s = ?report.credit_limit_s, "the prepaid balance is used up: releasing the call");
                        cause::NOT_AUTHORISED
                    }
                    _ => cause::NORMAL_CLEARING,
                };
                if let Some((out, _)) = call.hang_up(q850, SystemTime::now()) {
                    if let Err(e) = sig.send(&out).await {
                        warn!(error = %e, "sending RELEASE COMPLETE");
                    }
                }
                break q850;
            }
        }
    };
    if let Some(h) = pending_event.take() {
        report.voice_flows = h.await.unwrap_or(false) || report.voice_flows;
    }
    // The caller's proxy closes the charge at release, media or not.
    let told = peer_ssrc.is_some() || role == Role::Caller;
    if let (true, SocketAddr::V4(local)) = (told, sock.local_addr()?) {
        let _ = ctx
            .event(
                *call.call_id(),
                CallEventKind::Released,
                q850,
                role,
                Media {
                    local,
                    remote: media.remote(),
                    ssrc_out: media.ssrc(),
                    ssrc_in: peer_ssrc.unwrap_or(0),
                },
            )
            .await;
    }
    report.set_stats(&media.stats());
    report.duration_s = started.elapsed().as_secs_f64();
    report.signalling_dropped = call.dropped;
    report.released(q850);
    Ok((media, q850))
}

fn spawn_event(
    ctx: &Arc<Ctx>,
    call_id: &CallId,
    kind: CallEventKind,
    q850: u8,
    role: Role,
    media: Media,
) -> tokio::task::JoinHandle<bool> {
    // The proxy op runs beside the media (an AP exchange through the
    // base station), so no frame waits for it.
    let ctx = ctx.clone();
    let call_id = *call_id;
    tokio::spawn(async move { ctx.event(call_id, kind, q850, role, media).await.is_ok() })
}

fn now_ntp() -> u64 {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    ntp(d + Duration::from_secs(NTP_UNIX_OFFSET))
}

fn offer(ctx: &Ctx, rtp: SocketAddrV4) -> anyhow::Result<Vec<Channel>> {
    let first = ctx.cfg.call.law()?;
    let second = match first {
        Law::Mu => Law::A,
        Law::A => Law::Mu,
    };
    Ok(vec![
        Channel { law: first, rtp },
        Channel { law: second, rtp },
    ])
}

async fn media_socket(home: Ipv4Addr) -> anyhow::Result<(UdpSocket, SocketAddrV4)> {
    let sock = UdpSocket::bind((home, 0)).await.with_context(|| {
        format!("binding the media socket at the home address {home} (is it on an interface?)")
    })?;
    let SocketAddr::V4(a) = sock.local_addr()? else {
        bail!("the media socket is not IPv4");
    };
    Ok((sock, a))
}

fn law_name(l: Law) -> &'static str {
    match l {
        Law::Mu => "pcmu",
        Law::A => "pcma",
    }
}

/// `roamgate unit call NUMBER`.
pub async fn call(
    ctx: &Arc<Ctx>,
    number: &str,
    plan: &MediaPlan,
    record: Option<&Path>,
    write_setup: Option<&Path>,
) -> anyhow::Result<CallReport> {
    let calls = CallsDir(ctx.cfg.call.calls_dir.clone());
    let call_id: CallId = random()?;
    let mut report = CallReport::new(&call_id, Role::Caller, number, &ctx.cfg.call.srtp_profile);
    let refused = |mut report: CallReport, q850: u8, why: String| {
        warn!(%number, cause = q850, reason = %why, "call refused");
        report.released(q850);
        calls.save(&report);
        report
    };
    // 1. The ticket for the callee, from our proxy.
    let op = ProxyOp::CallTicket { number };
    let (reply, key) = match ctx.proxy(&op).await {
        Ok(r) => r,
        Err(e) => return Ok(refused(report, 41, format!("call ticket: {e}"))),
    };
    let (home_address, krb_cred) = match ProxyReply::parse(&reply, op.op()) {
        Ok(ProxyReply::CallTicket {
            home_address,
            krb_cred,
        }) => (home_address, krb_cred.to_vec()),
        Ok(ProxyReply::Failed { cause, .. }) => {
            return Ok(refused(
                report,
                cause,
                "the proxy refused the call ticket".into(),
            ))
        }
        Ok(other) => bail!("unexpected proxy reply {other:?}"),
        Err(e) => bail!("malformed proxy reply: {e}"),
    };
    let mut replay = ReplayCache::default();
    let ticket = open_krb_cred(
        &krb_cred,
        &key,
        Duration::from_secs(300),
        &mut replay,
        SystemTime::now(),
    )
    .context("opening the call ticket's KRB-CRED")?
    .into_iter()
    .next()
    .context("the KRB-CRED holds no ticket")?;
    report.peer = Some(ticket.server.to_string());
    // 2. The signalling connection, from the home address.
    let to = SocketAddr::from((home_address, ctx.cfg.call.signalling_port));
    let connect = async {
        let s = TcpSocket::new_v4()?;
        s.bind(SocketAddr::from((ctx.home, 0)))?;
        s.connect(to).await
    };
    let stream = match tokio::time::timeout(
        Duration::from_millis(ctx.cfg.call.connect_timeout_ms),
        connect,
    )
    .await
    {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => {
            return Ok(refused(
                report,
                cause::SUBSCRIBER_ABSENT,
                format!("the callee at {to}: {e} (switched off, or not answering calls)"),
            ))
        }
        Err(_) => {
            return Ok(refused(
                report,
                cause::SUBSCRIBER_ABSENT,
                format!(
                    "the callee at {to} did not answer within {} ms (switched off?)",
                    ctx.cfg.call.connect_timeout_ms
                ),
            ))
        }
    };
    stream.set_nodelay(true)?;
    let (mut rd, w) = stream.into_split();
    let (sock, local) = media_socket(ctx.home).await?;
    report.local_media = Some(local);
    let [r1, r2]: [u8; 2] = random()?;
    let mut sig = Signaller {
        w,
        call_reference: u16::from_be_bytes([r1, r2]) & 0x7fff,
        from_callee: false,
        ends: ctx.ends(number),
    };
    let own = (!ctx.cfg.call.number.is_empty()).then_some(ctx.cfg.call.number.as_str());
    let (mut call, setup) = Call::dial(
        &ticket,
        call_id,
        number,
        own,
        offer(ctx, local)?,
        SystemTime::now(),
    )
    .context("building the SETUP")?;
    let t0 = Instant::now();
    let bytes = sig.send(&setup).await.context("sending SETUP")?;
    if let Some(p) = write_setup {
        std::fs::write(p, &bytes).with_context(|| format!("writing {}", p.display()))?;
    }
    info!(%number, callee = %ticket.server, %to, "SETUP sent");
    // 3. Until CONNECT (or a release, or the timers).
    let channels = loop {
        let wait = call
            .deadline()
            .and_then(|d| d.duration_since(SystemTime::now()).ok())
            .unwrap_or(Duration::from_secs(1));
        tokio::select! {
            m = read_message(&mut rd) => {
                let bytes = match m {
                    Ok(Some(b)) => b,
                    Ok(None) | Err(_) => return Ok(refused(report, 41, "the signalling connection closed before CONNECT".into())),
                };
                let rx = match signalling::decode(&bytes) {
                    Ok(rx) => rx,
                    Err(e) => { warn!(error = %e, "malformed signalling message dropped"); continue; }
                };
                match call.on_signal(&rx.signal, &|k| rx.verify(k), SystemTime::now()) {
                    Ok(Some(Event::Connected { channel, remote })) => break (channel, remote),
                    Ok(Some(Event::Released { cause: c, authenticated, .. })) => {
                        report.signalling_dropped = call.dropped;
                        return Ok(refused(report, c, format!("the callee released the call ({}authenticated)", if authenticated { "" } else { "un" })));
                    }
                    Ok(Some(Event::Alerting)) => info!("the callee is alerted"),
                    Ok(None) => {}
                    Err(e) => warn!(error = %e, "signalling message dropped"),
                }
            }
            _ = tokio::time::sleep(wait) => {
                if let Some((out, Event::Released { cause: c, .. })) = call.poll(SystemTime::now()) {
                    let _ = sig.send(&out).await;
                    return Ok(refused(report, c, "the callee did not answer in time".into()));
                }
            }
        }
    };
    let setup_ms = t0.elapsed().as_secs_f64() * 1e3;
    report.setup_ms = Some(setup_ms);
    report.connected = true;
    report.state = "connected".into();
    report.codec = Some(law_name(channels.0.law).into());
    report.remote_media = Some(channels.1.rtp);
    if let Some(p) = &call.peer {
        report.peer = Some(p.to_string());
    }
    info!(%number, setup_ms, codec = law_name(channels.0.law), "connected");
    // The proxy notes the connect (and opens the charge) before any media:
    // a call that cannot be charged is released at once.
    let ssrc = random_ssrc()?;
    let early = Media {
        local,
        remote: channels.1.rtp,
        ssrc_out: ssrc,
        ssrc_in: 0,
    };
    let limit = match ctx
        .event(call_id, CallEventKind::Connected, 0, Role::Caller, early)
        .await
    {
        Ok(limit) => limit,
        Err(q850) => {
            if let Some((out, _)) = call.hang_up(q850, SystemTime::now()) {
                let _ = sig.send(&out).await;
            }
            report.connected = false;
            return Ok(refused(
                report,
                q850,
                "the proxy did not take the connect (charge)".into(),
            ));
        }
    };
    // The charge opened as the proxy answered: the credit runs from now.
    let credit_until = limit.map(|s| Instant::now() + Duration::from_secs(u64::from(s)));
    if let Some(s) = limit {
        info!(
            seconds = s,
            "the prepaid balance pays for this call's first seconds"
        );
    }
    report.credit_limit_s = limit;
    sig.ends.receiver = number.to_owned();
    let (media, _) = connected(
        ctx,
        &mut call,
        &mut sig,
        &mut rd,
        sock,
        channels,
        ssrc,
        plan,
        credit_until,
        &mut report,
        &calls,
    )
    .await?;
    if let Some(p) = record {
        write_wav(p, &media.samples().0)?;
    }
    calls.save(&report);
    Ok(report)
}

/// What `answer` shares between its calls: the metrics.
pub struct Book {
    pub totals: BTreeMap<&'static str, u64>,
    /// Where every call's statistics are rewritten each RTCP interval:
    /// the gauges read the calls in progress from there.
    pub calls_dir: PathBuf,
}

/// A call file not rewritten for this long is of a process that ended
/// without its release (killed): not in progress.
const LIVE_SECS: u64 = 10;

impl Book {
    pub fn new(calls_dir: PathBuf) -> Self {
        Self {
            totals: BTreeMap::new(),
            calls_dir,
        }
    }

    fn count(&mut self, what: &'static str) {
        *self.totals.entry(what).or_default() += 1;
    }

    /// Prometheus text: the totals, and gauges of the calls in progress.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        for (k, v) in &self.totals {
            s.push_str(&format!(
                "# TYPE roamgate_unit_{k}_total counter\nroamgate_unit_{k}_total {v}\n"
            ));
        }
        let now = epoch_secs();
        let calls = CallsDir(self.calls_dir.clone()).load();
        let live: Vec<&CallReport> = calls
            .iter()
            .filter(|c| c.state == "connected" && c.updated + LIVE_SECS >= now)
            .collect();
        s.push_str(&format!(
            "# TYPE roamgate_unit_calls_in_progress gauge\nroamgate_unit_calls_in_progress {}\n",
            live.len()
        ));
        for (name, f) in [
            ("call_packets_received", |c: &CallReport| {
                c.packets_received as f64
            }),
            ("call_packets_lost", |c: &CallReport| c.packets_lost as f64),
            ("call_jitter_ms", |c: &CallReport| c.jitter_ms),
            ("call_rtt_ms", |c: &CallReport| c.rtt_ms.unwrap_or(0.0)),
            ("call_srtp_forged", |c: &CallReport| c.srtp_forged as f64),
            ("call_srtp_replayed", |c: &CallReport| {
                c.srtp_replayed as f64
            }),
        ] as [(&str, fn(&CallReport) -> f64); 6]
        {
            s.push_str(&format!("# TYPE roamgate_unit_{name} gauge\n"));
            for c in &live {
                s.push_str(&format!(
                    "roamgate_unit_{name}{{call=\"{}\"}} {}\n",
                    c.call_id,
                    f(c)
                ));
            }
        }
        s
    }
}

/// `roamgate unit answer`: takes calls for the unit's number at its home
/// address until `max_calls` have ended (`None`: until a signal).
pub async fn answer(
    ctx: Arc<Ctx>,
    plan: Arc<MediaPlan>,
    record: Option<PathBuf>,
    max_calls: Option<usize>,
    book: Arc<Mutex<Book>>,
    shutdown: tokio_util::sync::CancellationToken,
    json: bool,
) -> anyhow::Result<()> {
    if ctx.cfg.call.number.is_empty() {
        bail!("call.number is empty in the unit's config: set the unit's own number to answer calls for it");
    }
    let at = SocketAddr::from((ctx.home, ctx.cfg.call.signalling_port));
    let listener = TcpListener::bind(at)
        .await
        .with_context(|| format!("listening for calls at {at} (is the home address on an interface? is another `answer` running?)"))?;
    info!(%at, number = %ctx.cfg.call.number, "answering calls");
    let mut tasks = tokio::task::JoinSet::new();
    let mut accepted = 0usize;
    let mut done = 0usize;
    loop {
        if max_calls.is_some_and(|m| done >= m) {
            break;
        }
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept(), if max_calls.is_none_or(|m| accepted < m) => {
                let (stream, from) = match r {
                    Ok(x) => x,
                    Err(e) => { warn!(error = %e, "accepting a call's connection"); continue; }
                };
                accepted += 1;
                let (ctx, plan, book) = (ctx.clone(), plan.clone(), book.clone());
                let record = record.as_ref().map(|p| numbered(p, accepted));
                tasks.spawn(async move {
                    let r = take_call(&ctx, stream, from, &plan, record.as_deref(), &book).await;
                    match r {
                        Ok(report) => Some(report),
                        Err(e) => { warn!(%from, error = %format!("{e:#}"), "call failed"); None }
                    }
                });
            }
            Some(r) = tasks.join_next() => {
                done += 1;
                if let Ok(Some(report)) = r {
                    if json {
                        println!("{}", serde_json::to_string(&report)?);
                    } else {
                        println!("{}", report.line());
                    }
                }
            }
        }
    }
    tasks.shutdown().await;
    Ok(())
}

/// The n-th call's recording: FILE.wav, then FILE-2.wav, ...
fn numbered(p: &Path, n: usize) -> PathBuf {
    if n == 1 {
        return p.to_owned();
    }
    let stem = p
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = p
        .extension()
        .map(|s| format!(".{}", s.to_string_lossy()))
        .unwrap_or_default();
    p.with_file_name(format!("{stem}-{n}{ext}"))
}

async fn take_call(
    ctx: &Arc<Ctx>,
    stream: TcpStream,
    from: SocketAddr,
    plan: &MediaPlan,
    record: Option<&Path>,
    book: &Mutex<Book>,
) -> anyhow::Result<CallReport> {
    let calls = CallsDir(ctx.cfg.call.calls_dir.clone());
    stream.set_nodelay(true)?;
    let (mut rd, w) = stream.into_split();
    let first = tokio::time::timeout(Duration::from_secs(10), read_message(&mut rd))
        .await
        .context("no SETUP within 10 s")??
        .context("the connection closed before SETUP")?;
    let rx = signalling::decode(&first).context("the first message")?;
    if rx.signal.kind != Kind::Setup {
        bail!("the first message is {:?}, not SETUP", rx.signal.kind);
    }
    let t0 = Instant::now();
    let setup = rx.signal.clone();
    let own = ctx.cfg.call.number.clone();
    let mut report = CallReport::new(
        &setup.call_id,
        Role::Callee,
        &own,
        &ctx.cfg.call.srtp_profile,
    );
    let peer_name = rx
        .sender
        .clone()
        .or(setup.calling_number.clone())
        .unwrap_or_default();
    let mut sig = Signaller {
        w,
        call_reference: rx.call_reference,
        from_callee: true,
        ends: ctx.ends(&peer_name),
    };
    book.lock()
        .unwrap_or_else(|e| e.into_inner())
        .count("calls_offered");
    let (sock, local) = media_socket(ctx.home).await?;
    let refuse = |error: RefuseError, key| Call::refuse(&setup, error, key, SystemTime::now());
    let answered: Result<Answered, Box<roamgate_call::call::Refused>> = async {
        let ap_req = Call::setup_ap_req(&setup, &own, SystemTime::now())?;
        let op = ProxyOp::AcceptCall {
            call_id: setup.call_id,
            number: &own,
            ap_req,
        };
        let (reply, _) = ctx.proxy(&op).await.map_err(|e| {
            warn!(%from, error = %e, "the proxy did not answer the accept");
            refuse(RefuseError::Proxy(41), None)
        })?;
        match ProxyReply::parse(&reply, op.op()) {
            Ok(ProxyReply::CallAccepted {
                caller,
                etype,
                caller_subkey,
                callee_subkey,
                ap_rep,
            }) => {
                let bad = |_| refuse(RefuseError::Proxy(41), None);
                let etype = Etype::from_i32(etype).ok_or(()).map_err(bad)?;
                let ck = Key::new(etype, &caller_subkey)
                    .map_err(|_| refuse(RefuseError::Proxy(41), None))?;
                let ek = Key::new(etype, &callee_subkey)
                    .map_err(|_| refuse(RefuseError::Proxy(41), None))?;
                let caller =
                    Principal::parse(caller).map_err(|_| refuse(RefuseError::Proxy(41), None))?;
                Ok(Answered {
                    caller,
                    ap_rep: ap_rep.to_vec(),
                    setup_key: handshake::setup_key(&ck, &setup.call_id),
                    keys: CallKeys::new(handshake::Role::Callee, setup.call_id, &ck, &ek),
                    caller_subkey: ck,
                    callee_subkey: ek,
                })
            }
            Ok(ProxyReply::Failed { cause: c, .. }) => Err(refuse(RefuseError::Proxy(c), None)),
            _ => Err(refuse(RefuseError::Proxy(41), None)),
        }
    }
    .await;
    let accepted = answered.and_then(|a| {
        Call::answer_accepted(
            &setup,
            &|k| rx.verify(k),
            a,
            &[
                Channel {
                    law: Law::Mu,
                    rtp: local,
                },
                Channel {
                    law: Law::A,
                    rtp: local,
                },
            ],
            SystemTime::now(),
        )
    });
    let (mut call, outs) = match accepted {
        Ok(x) => x,
        Err(refused) => {
            warn!(%from, cause = refused.error.cause(), reason = %refused.error, "call refused");
            let _ = sig.send(&refused.release).await;
            book.lock()
                .unwrap_or_else(|e| e.into_inner())
                .count("calls_refused");
            report.released(refused.error.cause());
            calls.save(&report);
            return Ok(report);
        }
    };
    report.peer = call.peer.as_ref().map(|p| p.to_string());
    for o in &outs {
        sig.send(o).await?;
    }
    if ctx.cfg.call.answer_after_ms > 0 {
        tokio::time::sleep(Duration::from_millis(ctx.cfg.call.answer_after_ms)).await;
    }
    let (out, ev) = call
        .accept(SystemTime::now())
        .context("accepting the call")?;
    sig.send(&out).await?;
    let Event::Connected { channel, remote } = ev else {
        bail!("accepting did not connect");
    };
    report.setup_ms = Some(t0.elapsed().as_secs_f64() * 1e3);
    report.connected = true;
    report.state = "connected".into();
    report.codec = Some(law_name(channel.law).into());
    report.local_media = Some(channel.rtp);
    report.remote_media = Some(remote.rtp);
    info!(%from, caller = ?report.peer, codec = law_name(channel.law), "connected");
    book.lock()
        .unwrap_or_else(|e| e.into_inner())
        .count("calls_connected");
    let (media, _) = connected(
        ctx,
        &mut call,
        &mut sig,
        &mut rd,
        sock,
        (channel, remote),
        random_ssrc()?,
        plan,
        None,
        &mut report,
        &calls,
    )
    .await?;
    if let Some(p) = record {
        write_wav(p, &media.samples().0)?;
    }
    calls.save(&report);
    book.lock()
        .unwrap_or_else(|e| e.into_inner())
        .count("calls_released");
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_wav_round_trips_and_other_formats_are_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.wav");
        let samples: Vec<i16> = (0..800).map(|i| (i * 37 % 3000) as i16 - 1500).collect();
        write_wav(&p, &samples).unwrap();
        assert_eq!(read_wav(&p).unwrap(), samples);

        let q = dir.path().join("b.wav");
        let spec = hound::WavSpec {
            channels: 2,
            sample_rate: 44_100,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(&q, spec).unwrap();
        w.write_sample(0i16).unwrap();
        w.write_sample(0i16).unwrap();
        w.finalize().unwrap();
        let e = format!("{:#}", read_wav(&q).unwrap_err());
        assert!(e.contains("44100 Hz") && e.contains("sox"), "{e}");
        assert!(read_wav(&dir.path().join("missing.wav")).is_err());
    }

    #[test]
    fn the_calls_directory_keeps_the_newest_calls() {
        let dir = tempfile::tempdir().unwrap();
        let calls = CallsDir(dir.path().join("calls"));
        assert!(calls.load().is_empty());
        for i in 0..(KEEP_CALLS + 3) {
            let mut r = CallReport::new(&[i as u8; 16], Role::Caller, "4930", "aead_aes_128_gcm");
            r.packets_received = i as u64;
            calls.save(&r);
        }
        let listed = calls.load();
        assert_eq!(listed.len(), KEEP_CALLS);
        let json = std::fs::read_dir(&calls.0)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
            .count();
        assert_eq!(json, KEEP_CALLS, "the oldest files are pruned");
        // Rewriting a call replaces its file.
        let mut r = listed[0].clone();
        r.released(cause::NORMAL_CLEARING);
        calls.save(&r);
        let again = calls.load();
        assert_eq!(again.len(), KEEP_CALLS);
        assert!(again
            .iter()
            .any(|c| c.call_id == r.call_id && c.cause == Some(16)));
        assert!(
            r.line().contains("cause 16 (normal clearing)"),
            "{}",
            r.line()
        );
    }

    #[test]
    fn recordings_of_later_calls_are_numbered() {
        let p = Path::new("/tmp/in.wav");
        assert_eq!(numbered(p, 1), PathBuf::from("/tmp/in.wav"));
        assert_eq!(numbered(p, 3), PathBuf::from("/tmp/in-3.wav"));
    }

    #[test]
    fn answer_metrics_name_the_calls_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = Book::new(dir.path().to_owned());
        b.count("calls_connected");
        let calls = CallsDir(dir.path().to_owned());
        let mut r = CallReport::new(&[1; 16], Role::Callee, "4930", "aes_cm_128_hmac_sha1_80");
        r.state = "connected".into();
        r.jitter_ms = 1.5;
        calls.save(&r);
        // A call of a killed process: connected, but not rewritten since.
        let mut stale = CallReport::new(&[2; 16], Role::Caller, "4930", "aes_cm_128_hmac_sha1_80");
        stale.state = "connected".into();
        stale.updated -= 60;
        calls.save(&stale);
        let text = b.prometheus();
        assert!(
            text.contains("roamgate_unit_calls_connected_total 1"),
            "{text}"
        );
        assert!(text.contains("roamgate_unit_calls_in_progress 1"), "{text}");
        assert!(
            text.contains(&format!(
                "roamgate_unit_call_jitter_ms{{call=\"{}\"}} 1.5",
                hex(&[1; 16])
            )),
            "{text}"
        );
        // The statistics the call rewrites are what the gauges show.
        r.jitter_ms = 2.25;
        calls.save(&r);
        assert!(b.prometheus().contains("} 2.25"), "{}", b.prometheus());
    }
}
