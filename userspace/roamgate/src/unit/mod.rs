//! `roamgate unit`: a handset or a laptop (docs/attach.md §6.1).
//!
//! `init` makes the identity code and long-term keys; `switch-on`,
//! `switch-off` and `status` each fetch fresh credentials from the KDC with
//! those keys (AS, then a ticket for the proxy manager and a forwarded TGT)
//! and run one request of the attach protocol through a base station, with
//! the core's retransmissions. The session file (no secret) remembers where
//! the unit is attached: a switch-on at another base station is a move, and
//! after its ack the unit switches off at the previous one, so that the old
//! proxy stops.

pub mod call;
pub mod config;

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::{Instant, SystemTime, UNIX_EPOCH},
};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use roamgate_attach::{
    state::{self, UnitState},
    unit::{fetch_credentials, Unit, UnitError, UnitEvent},
    wire::{StatusBody, MAX_FRAME_LEN},
};
use roamgate_krb::{client::KdcTransport, keytab::Keytab, Principal};
use serde::{Deserialize, Serialize};
use tokio::net::UdpSocket;
use tracing::{info, warn};

use crate::config::ConfigFile as _;
use config::UnitFile;

#[derive(Subcommand, Debug)]
pub enum UnitCommand {
    /// Create the unit's identity code (128 random bits) and long-term keys
    /// in its state file (mode 0600). Refuses to replace them without --force.
    Init {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The unit's Kerberos principal, e.g. unit1@EXAMPLE.ORG.
        #[arg(long)]
        principal: String,
        /// Take the keys from this keytab (made by the KDC, e.g. MIT's
        /// `kadmin ktadd -norandkey`) instead of generating them.
        #[arg(long, value_name = "FILE")]
        keytab: Option<PathBuf>,
        /// Replace an existing state file (the old identity is lost).
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Write the unit's long-term keys to an MIT keytab, for provisioning
    /// them at the KDC (`roamgate kdc add-principal NAME --keytab FILE`).
    ExportKeytab {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
    /// Switch on through a base station: the proxy manager behind it starts
    /// a proxy in the unit's name. Prints the outcome; exits 1 if refused.
    SwitchOn {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The base station's UDP address, e.g. 10.21.0.1:4340.
        #[arg(long, value_name = "ADDR")]
        base_station: SocketAddr,
        /// The proxy manager's principal (default: unit.manager).
        #[arg(long)]
        manager: Option<String>,
        #[arg(long)]
        json: bool,
        /// Stay in the foreground, as a handset does while it is on: a
        /// status request every unit.keepalive_secs (so the proxy manager's
        /// silence timeout does not stop the proxy), a new switch-on with a
        /// fresh TGT before the forwarded one ends, and a switch-off on
        /// SIGINT/SIGTERM.
        #[arg(long)]
        stay: bool,
        /// Testing: write the first switch-on frame sent to this file.
        #[arg(long, value_name = "FILE", hide = true)]
        write_frame: Option<PathBuf>,
    },
    /// Switch off: the proxy deregisters and stops, its tickets destroyed.
    SwitchOff {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Call a number: the proxy gets the callee's ticket, then H.225.0
    /// Fast Connect to the callee's home address and SRTP voice
    /// (docs/call.md). Prints the call's statistics; exits 1 if refused.
    Call {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The callee's E.164 number.
        number: String,
        /// Speech to send: 8000 Hz mono 16-bit WAV (then silence).
        #[arg(long, value_name = "FILE.wav")]
        play: Option<PathBuf>,
        /// Write what the callee sent (lost frames as silence).
        #[arg(long, value_name = "FILE.wav")]
        record: Option<PathBuf>,
        /// Hang up after this many seconds connected (default: when --play
        /// ends plus 0.5 s, else 10 s).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        #[arg(long)]
        json: bool,
        /// Testing: write the SETUP sent to this file.
        #[arg(long, value_name = "FILE", hide = true)]
        write_setup: Option<PathBuf>,
    },
    /// Answer calls for the unit's number (call.number) at its home
    /// address, one line (or JSON object) per call as it ends.
    Answer {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// Speech to send in each call (8000 Hz mono 16-bit WAV), then silence.
        #[arg(long, value_name = "FILE.wav")]
        play: Option<PathBuf>,
        /// Write what each caller sent: FILE.wav, FILE-2.wav, ...
        #[arg(long, value_name = "FILE.wav")]
        record: Option<PathBuf>,
        /// Exit after this many calls have ended (default: until SIGINT/SIGTERM).
        #[arg(long, value_name = "N")]
        calls: Option<usize>,
        /// Hang up each call after this many seconds (default: the caller does).
        #[arg(long, value_name = "SECS")]
        duration: Option<f64>,
        #[arg(long)]
        json: bool,
    },
    /// The proxy's state: attached, home address, care-of address, expiries.
    Status {
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        #[arg(long)]
        json: bool,
    },
}

impl UnitCommand {
    fn config_path(&self) -> &Path {
        match self {
            UnitCommand::Init { config, .. }
            | UnitCommand::ExportKeytab { config, .. }
            | UnitCommand::SwitchOn { config, .. }
            | UnitCommand::SwitchOff { config, .. }
            | UnitCommand::Call { config, .. }
            | UnitCommand::Answer { config, .. }
            | UnitCommand::Status { config, .. } => config,
        }
    }
}

/// Where the unit is attached (the session file).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Session {
    pub base_station: SocketAddr,
    pub manager: String,
    /// Seconds since the epoch.
    pub since: u64,
}

fn epoch(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn load_session(path: &Path) -> anyhow::Result<Option<Session>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(Some(serde_json::from_str(&text).with_context(|| {
            format!("session file {} is corrupt; remove it", path.display())
        })?)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

fn save_session(path: &Path, s: Option<&Session>) -> anyhow::Result<()> {
    match s {
        Some(s) => {
            if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                crate::platform::fs::private_dir(dir)?;
            }
            crate::platform::fs::write_atomic(path, serde_json::to_string(s)?.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", path.display()))
        }
        None => match std::fs::remove_file(path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(e).with_context(|| format!("removing {}", path.display()))
            }
            _ => Ok(()),
        },
    }
}

/// One request of the attach protocol, with the core's retransmissions.
/// Answers that do not match, or fail mutual authentication, are ignored
/// (logged): the genuine answer may still come.
async fn exchange(
    unit: &mut Unit,
    sock: &UdpSocket,
    to: SocketAddr,
    first: Vec<u8>,
) -> Result<UnitEvent, UnitError> {
    if let Err(e) = sock.send_to(&first, to).await {
        warn!(%to, error = %e, "sending to the base station failed");
    }
    let mut buf = vec![0u8; MAX_FRAME_LEN + 1];
    loop {
        let wait = unit
            .poll_timeout()
            .and_then(|t| t.duration_since(SystemTime::now()).ok())
            .unwrap_or_default();
        match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
            Ok(Ok((n, from))) => {
                if from != to {
                    warn!(%from, "ignoring a datagram that is not from the base station");
                    continue;
                }
                match unit.handle_input(&buf[..n], SystemTime::now()) {
                    Ok(ev) => return Ok(ev),
                    Err(e @ (UnitError::Unsolicited { .. } | UnitError::Mutual(..))) => {
                        warn!(error = %e, "ignoring an answer");
                    }
                    Err(UnitError::Wire(e)) => warn!(error = %e, "ignoring a malformed datagram"),
                    Err(e) => return Err(e),
                }
            }
            Ok(Err(e)) => warn!(error = %e, "receiving from the base station failed"),
            Err(_) => {
                if let Some(frame) = unit.handle_timeout(SystemTime::now())? {
                    info!("no answer yet: sending a fresh request");
                    if let Err(e) = sock.send_to(&frame, to).await {
                        warn!(%to, error = %e, "sending to the base station failed");
                    }
                }
            }
        }
    }
}

/// A unit core with fresh credentials for `manager`.
async fn unit_for(cfg: &UnitFile, st: &UnitState, manager: &Principal) -> anyhow::Result<Unit> {
    Ok(unit_and_expiry(cfg, st, manager).await?.0)
}

/// A unit core with fresh credentials, and when its forwarded TGT ends.
async fn unit_and_expiry(
    cfg: &UnitFile,
    st: &UnitState,
    manager: &Principal,
) -> anyhow::Result<(Unit, SystemTime)> {
    let creds = fetch_creds(cfg, st, manager).await?;
    let end = creds.forwarded_tgt.end_time;
    Ok((Unit::new(st.identity, creds)?, end))
}

/// Fresh credentials for `manager` from the KDC.
async fn fetch_creds(
    cfg: &UnitFile,
    st: &UnitState,
    manager: &Principal,
) -> anyhow::Result<roamgate_attach::unit::UnitCredentials> {
    let transport = KdcTransport::new(cfg.kerberos.kdc.to_string());
    let creds = fetch_credentials(
        &transport,
        st.principal.clone(),
        st.long_term_keys(),
        manager.clone(),
        SystemTime::now,
    )
    .await
    .with_context(|| {
        format!(
            "getting credentials for {} from the KDC at {} (a TGT, a ticket for {manager}, \
             a forwarded TGT)",
            st.principal, cfg.kerberos.kdc
        )
    })?;
    Ok(creds)
}

async fn socket_for(to: SocketAddr) -> anyhow::Result<UdpSocket> {
    let any: SocketAddr = if to.is_ipv4() {
        (Ipv4Addr::UNSPECIFIED, 0).into()
    } else {
        (std::net::Ipv6Addr::UNSPECIFIED, 0).into()
    };
    UdpSocket::bind(any).await.context("binding a UDP socket")
}

fn parse_principal(s: &str, what: &str) -> anyhow::Result<Principal> {
    Principal::parse(s).map_err(|e| anyhow::anyhow!("{what}: {e}"))
}

/// The outcome of `switch-on`, printed as JSON with `--json`.
#[derive(Debug, Serialize)]
pub struct SwitchOnReport {
    pub switched_on: bool,
    pub identity_code: String,
    pub base_station: SocketAddr,
    pub manager: String,
    /// First switch-on frame sent → ack verified (credentials excluded).
    pub switch_on_ms: f64,
    /// Fetching the credentials from the KDC.
    pub credentials_ms: f64,
    pub previous: Option<PreviousReport>,
    #[serde(skip)]
    pub tgt_end: SystemTime,
}

#[derive(Debug, Serialize)]
pub struct PreviousReport {
    pub base_station: SocketAddr,
    pub switched_off: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

async fn switch_on(
    cfg: &UnitFile,
    base_station: SocketAddr,
    manager: Option<String>,
    write_frame: Option<&Path>,
) -> anyhow::Result<SwitchOnReport> {
    let st = UnitState::load(&cfg.unit.state_file)?;
    let manager = match manager {
        Some(m) => parse_principal(&m, "--manager")?,
        None => cfg.manager()?,
    };
    let previous = load_session(&cfg.unit.session_file)?;
    let t0 = Instant::now();
    let (mut unit, tgt_end) = unit_and_expiry(cfg, &st, &manager).await?;
    let credentials_ms = t0.elapsed().as_secs_f64() * 1e3;
    let sock = socket_for(base_station).await?;
    let frame = unit.switch_on(SystemTime::now())?;
    if let Some(p) = write_frame {
        std::fs::write(p, &frame).with_context(|| format!("writing {}", p.display()))?;
    }
    let t1 = Instant::now();
    let ev = exchange(&mut unit, &sock, base_station, frame)
        .await
        .map_err(|e| anyhow::anyhow!("switch-on at {base_station}: {e}"))?;
    let switch_on_ms = t1.elapsed().as_secs_f64() * 1e3;
    if ev != UnitEvent::SwitchedOn {
        bail!("switch-on at {base_station}: unexpected answer {ev:?}");
    }
    info!(code = %st.identity, %base_station, %manager, switch_on_ms, "switched on");
    save_session(
        &cfg.unit.session_file,
        Some(&Session {
            base_station,
            manager: manager.to_string(),
            since: epoch(SystemTime::now()),
        }),
    )?;
    // A move: the proxy at the previous base station's manager must stop,
    // or it would renew the old binding. Best effort: out of its range,
    // its silence timeout stops it.
    let previous = match previous.filter(|p| p.base_station != base_station) {
        None => None,
        Some(p) => {
            let r = switch_off_at(cfg, &st, &p).await;
            if let Err(e) = &r {
                warn!(base_station = %p.base_station, error = %e, "switch-off at the previous base station failed; its proxy stops at its silence timeout");
            } else {
                info!(base_station = %p.base_station, "switched off at the previous base station");
            }
            Some(PreviousReport {
                base_station: p.base_station,
                switched_off: r.is_ok(),
                error: r.err().map(|e| format!("{e:#}")),
            })
        }
    };
    Ok(SwitchOnReport {
        switched_on: true,
        identity_code: st.identity.to_string(),
        base_station,
        manager: manager.to_string(),
        switch_on_ms,
        credentials_ms,
        previous,
        tgt_end,
    })
}

async fn switch_off_at(cfg: &UnitFile, st: &UnitState, s: &Session) -> anyhow::Result<()> {
    let manager = parse_principal(&s.manager, "session file manager")?;
    let mut unit = unit_for(cfg, st, &manager).await?;
    let sock = socket_for(s.base_station).await?;
    let frame = unit.switch_off(SystemTime::now())?;
    match exchange(&mut unit, &sock, s.base_station, frame).await? {
        UnitEvent::SwitchedOff => Ok(()),
        ev => bail!("unexpected answer {ev:?}"),
    }
}

/// `switch-on --stay`: keepalives, re-switch-on before the TGT ends,
/// switch-off on a signal.
async fn stay_on(
    cfg: &UnitFile,
    base_station: SocketAddr,
    manager: Option<String>,
    mut tgt_end: SystemTime,
) -> anyhow::Result<()> {
    let shutdown = tokio_util::sync::CancellationToken::new();
    crate::gateway::cancel_on_signals(shutdown.clone())?;
    let st = UnitState::load(&cfg.unit.state_file)?;
    let every = std::time::Duration::from_secs(cfg.unit.keepalive_secs);
    loop {
        let renew = crate::mobile_node::renew_at(tgt_end, SystemTime::now());
        let until_renew = renew.duration_since(SystemTime::now()).unwrap_or_default();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = tokio::time::sleep(until_renew) => {
                match switch_on(cfg, base_station, manager.clone(), None).await {
                    Ok(r) => {
                        tgt_end = r.tgt_end;
                        info!("switched on again with a fresh TGT: the proxy manager replaced the proxy");
                    }
                    Err(e) => warn!(error = %format!("{e:#}"), "renewing the switch-on"),
                }
            }
            _ = tokio::time::sleep(every) => {
                let Some(s) = load_session(&cfg.unit.session_file)? else { break };
                if let Err(e) = keepalive(cfg, &st, &s).await {
                    warn!(error = %format!("{e:#}"), "keepalive (status request)");
                }
            }
        }
    }
    if let Some(s) = load_session(&cfg.unit.session_file)? {
        switch_off_at(cfg, &st, &s)
            .await
            .with_context(|| format!("switch-off at {}", s.base_station))?;
        save_session(&cfg.unit.session_file, None)?;
        info!(base_station = %s.base_station, "switched off");
    }
    Ok(())
}

async fn keepalive(cfg: &UnitFile, st: &UnitState, s: &Session) -> anyhow::Result<StatusBody> {
    let manager = parse_principal(&s.manager, "session file manager")?;
    let mut unit = unit_for(cfg, st, &manager).await?;
    let sock = socket_for(s.base_station).await?;
    let frame = unit.status_request(SystemTime::now())?;
    match exchange(&mut unit, &sock, s.base_station, frame).await? {
        UnitEvent::Status(b) => Ok(b),
        ev => bail!("unexpected answer {ev:?}"),
    }
}

/// The proxy's state as `status --json` prints it.
#[derive(Debug, Serialize)]
pub struct StatusReport {
    pub state: String,
    pub identity_code: String,
    pub base_station: SocketAddr,
    pub home_address: Option<Ipv4Addr>,
    pub care_of: Option<Ipv4Addr>,
    /// Seconds since the epoch.
    pub tgt_expires: Option<u64>,
    pub registration_expires: Option<u64>,
    /// The newest calls with their statistics, in progress or ended.
    pub calls: Vec<call::CallReport>,
}

fn status_report(st: &UnitState, s: &Session, b: &StatusBody) -> StatusReport {
    let some_addr = |a: Ipv4Addr| (!a.is_unspecified()).then_some(a);
    let some_time = |t: u64| (t != 0).then_some(t);
    StatusReport {
        state: format!("{:?}", b.state).to_lowercase(),
        identity_code: st.identity.to_string(),
        base_station: s.base_station,
        home_address: some_addr(b.home_address),
        care_of: some_addr(b.care_of),
        tgt_expires: some_time(b.tgt_expiry),
        registration_expires: some_time(b.registration_expiry),
        calls: Vec::new(),
    }
}

fn print(json: bool, value: &impl Serialize, text: impl FnOnce() -> String) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string(value)?);
    } else {
        println!("{}", text());
    }
    Ok(())
}

fn not_switched_on(cfg: &UnitFile) -> anyhow::Error {
    anyhow::anyhow!(
        "the unit is not switched on (no session file {}); run `roamgate unit switch-on`",
        cfg.unit.session_file.display()
    )
}

/// Entry point of `roamgate unit`.
pub async fn run(cmd: UnitCommand) -> anyhow::Result<()> {
    let cfg = UnitFile::load(cmd.config_path())?;
    crate::logging::init(cfg.log.format, &cfg.log.level);
    match cmd {
        UnitCommand::Init {
            principal,
            keytab,
            force,
            json,
            ..
        } => {
            let principal = parse_principal(&principal, "--principal")?;
            let st = match keytab {
                Some(kt) => {
                    let kt = Keytab::load(&kt)
                        .with_context(|| format!("reading keytab {}", kt.display()))?;
                    let st = UnitState::from_keytab(principal, &kt)?;
                    st.create(&cfg.unit.state_file, force)?;
                    st
                }
                None => state::init(&cfg.unit.state_file, principal, force)?,
            };
            let out = serde_json::json!({
                "identity_code": st.identity.to_string(),
                "principal": st.principal.to_string(),
                "state_file": cfg.unit.state_file,
            });
            print(json, &out, || {
                format!(
                    "identity code {} for {} in {}\nprovision it: `roamgate unit export-keytab`, \
                     `roamgate kdc add-principal {} --keytab FILE`, `roamgate directory add-unit --code {} ...`",
                    st.identity,
                    st.principal,
                    cfg.unit.state_file.display(),
                    st.principal,
                    st.identity
                )
            })
        }
        UnitCommand::ExportKeytab { out, .. } => {
            let st = UnitState::load(&cfg.unit.state_file)?;
            st.keytab()
                .save(&out)
                .with_context(|| format!("writing keytab {}", out.display()))?;
            println!("wrote the keys of {} to {}", st.principal, out.display());
            Ok(())
        }
        UnitCommand::SwitchOn {
            base_station,
            manager,
            json,
            write_frame,
            stay,
            ..
        } => {
            let r = switch_on(&cfg, base_station, manager.clone(), write_frame.as_deref()).await?;
            print(json, &r, || {
                format!(
                    "switched on at {} ({}) in {:.1} ms",
                    r.base_station, r.manager, r.switch_on_ms
                )
            })?;
            if stay {
                stay_on(&cfg, base_station, manager, r.tgt_end).await?;
            }
            Ok(())
        }
        UnitCommand::SwitchOff { json, .. } => {
            let st = UnitState::load(&cfg.unit.state_file)?;
            let s = load_session(&cfg.unit.session_file)?.ok_or_else(|| not_switched_on(&cfg))?;
            switch_off_at(&cfg, &st, &s)
                .await
                .with_context(|| format!("switch-off at {}", s.base_station))?;
            save_session(&cfg.unit.session_file, None)?;
            let out = serde_json::json!({"switched_off": true, "base_station": s.base_station});
            print(json, &out, || format!("switched off at {}", s.base_station))
        }
        UnitCommand::Call {
            number,
            play,
            record,
            duration,
            json,
            write_setup,
            ..
        } => {
            let play = play
                .as_deref()
                .map(call::read_wav)
                .transpose()?
                .unwrap_or_default();
            let secs = duration.unwrap_or(if play.is_empty() {
                10.0
            } else {
                play.len() as f64 / 8000.0 + 0.5
            });
            if !(secs.is_finite() && secs > 0.0) {
                bail!("--duration must be a positive number of seconds");
            }
            let plan = call::MediaPlan {
                play,
                hang_up_after: Some(std::time::Duration::from_secs_f64(secs)),
            };
            let ctx = std::sync::Arc::new(call::Ctx::load(cfg).await?);
            let r = call::call(
                &ctx,
                &number,
                &plan,
                record.as_deref(),
                write_setup.as_deref(),
            )
            .await?;
            print(json, &r, || r.line())?;
            if !r.connected {
                std::process::exit(1);
            }
            Ok(())
        }
        UnitCommand::Answer {
            play,
            record,
            calls,
            duration,
            json,
            ..
        } => {
            let play = play
                .as_deref()
                .map(call::read_wav)
                .transpose()?
                .unwrap_or_default();
            if duration.is_some_and(|d| !(d.is_finite() && d > 0.0)) {
                bail!("--duration must be a positive number of seconds");
            }
            let plan = std::sync::Arc::new(call::MediaPlan {
                play,
                hang_up_after: duration.map(std::time::Duration::from_secs_f64),
            });
            let metrics = cfg.call.metrics()?;
            let ctx = std::sync::Arc::new(call::Ctx::load(cfg).await?);
            let shutdown = tokio_util::sync::CancellationToken::new();
            crate::gateway::cancel_on_signals(shutdown.clone())?;
            let book = std::sync::Arc::new(std::sync::Mutex::new(call::Book::new(
                ctx.cfg.call.calls_dir.clone(),
            )));
            if let Some(addr) = metrics {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("call.metrics: binding {addr}"))?;
                let b = book.clone();
                let render: crate::metrics::Render = std::sync::Arc::new(move || {
                    b.lock().unwrap_or_else(|e| e.into_inner()).prometheus()
                });
                tokio::spawn(crate::metrics::serve(listener, render, shutdown.clone()));
            }
            call::answer(ctx, plan, record, calls, book, shutdown, json).await
        }
        UnitCommand::Status { json, .. } => {
            let st = UnitState::load(&cfg.unit.state_file)?;
            let s = load_session(&cfg.unit.session_file)?.ok_or_else(|| not_switched_on(&cfg))?;
            let body = keepalive(&cfg, &st, &s)
                .await
                .with_context(|| format!("status at {}", s.base_station))?;
            let mut r = status_report(&st, &s, &body);
            r.calls = call::CallsDir(cfg.call.calls_dir.clone()).load();
            print(json, &r, || {
                let opt = |a: Option<Ipv4Addr>| a.map_or("-".to_owned(), |a| a.to_string());
                let t = |x: Option<u64>| x.map_or("-".to_owned(), |x| x.to_string());
                format!(
                    "state {}\nidentity code {}\nbase station {}\nhome address {}\ncare-of address {}\n\
                     TGT expires {}\nregistration expires {}\ncalls {}{}",
                    r.state,
                    r.identity_code,
                    r.base_station,
                    opt(r.home_address),
                    opt(r.care_of),
                    t(r.tgt_expires),
                    t(r.registration_expires),
                    r.calls.len(),
                    r.calls.iter().map(|c| format!("\n  {}", c.line())).collect::<String>()
                )
            })
        }
    }
}
