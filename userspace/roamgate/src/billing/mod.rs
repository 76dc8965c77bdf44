//! `roamgate billing`: the debiting service (docs/billing.md). `serve`
//! runs the `roamgate-billing` core over UDP with group commit: every
//! datagram that is ready (up to `billing.batch_max`) is authenticated,
//! and their operations go to the ledger in ONE `apply_batch` (one
//! transaction, one fsync) before each is answered. The other
//! subcommands work on the SQLite ledger file directly.

pub mod config;
pub mod radius;

use std::collections::BTreeMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context as _};
use clap::Subcommand;
use roamgate_billing::server::{Batch, BillingServer, Stats};
use roamgate_billing::wire::{OpResult, MAX_MESSAGE};
use roamgate_billing::{AccountKind, LedgerStore, SqliteLedger, Tariff};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::ConfigFile as _;
use config::BillingFile;
use radius::RadiusStats;

/// How often the ledger total and the outbox backlog are re-read for the
/// gauges.
const GAUGES_EVERY: Duration = Duration::from_secs(1);

#[derive(Subcommand, Debug)]
pub enum BillingCommand {
    /// Serve charge requests over UDP (AP-REQ + KRB-PRIV in, AP-REP +
    /// KRB-PRIV out), committing the requests that arrive together in one
    /// transaction, and export RADIUS accounting records.
    Serve {
        /// TOML configuration (see config/billing.toml).
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Create a subscriber account with its tariff, and bind the Kerberos
    /// client principal whose tickets charge it.
    AddAccount {
        /// TOML configuration (see config/billing.toml); its database is used.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// The account name (as in the directory entry).
        account: String,
        /// The subscriber's Kerberos principal, e.g. unit-a@EXAMPLE.ORG:
        /// only tickets in this name charge the account.
        #[arg(long)]
        principal: String,
        /// A prepaid account: calls are refused or cut when the balance
        /// runs out.
        #[arg(
            long,
            conflicts_with = "postpaid",
            required_unless_present = "postpaid"
        )]
        prepaid: bool,
        /// Opening balance of a prepaid account, in minor units.
        #[arg(long, requires = "prepaid", default_value_t = 0)]
        balance: i64,
        /// A postpaid account, billed later.
        #[arg(long)]
        postpaid: bool,
        /// How far a postpaid account may go below zero, in minor units.
        #[arg(long, requires = "postpaid", default_value_t = 0)]
        credit_limit: i64,
        /// Setup fee per call, in minor units.
        #[arg(long)]
        setup_fee: i64,
        /// Rate per started second, in minor units.
        #[arg(long)]
        per_second: i64,
        /// ISO 4217 code (default: billing.currency of the config).
        #[arg(long)]
        currency: Option<String>,
    },
    /// List every account with its balance (minor units).
    Accounts {
        /// TOML configuration (see config/billing.toml); its database is used.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
    },
    /// Print one account's balance (minor units).
    Balance {
        /// TOML configuration (see config/billing.toml); its database is used.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        account: String,
    },
    /// Top up an account by AMOUNT minor units. Not idempotent: a repeated
    /// credit credits twice.
    Credit {
        /// TOML configuration (see config/billing.toml); its database is used.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        account: String,
        amount: i64,
    },
    /// The charges started between --from and --to (inclusive).
    Report {
        /// TOML configuration (see config/billing.toml); its database is used.
        #[arg(long, short, value_name = "FILE")]
        config: PathBuf,
        /// RFC 3339 (2026-12-06T00:00:00Z) or seconds since 1970.
        #[arg(long, value_parser = parse_time)]
        from: SystemTime,
        /// RFC 3339 or seconds since 1970.
        #[arg(long, value_parser = parse_time)]
        to: SystemTime,
        #[arg(long, value_enum, default_value_t = ReportFormat::Csv)]
        format: ReportFormat,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum ReportFormat {
    Csv,
    Json,
}

impl BillingCommand {
    pub fn config_path(&self) -> &Path {
        match self {
            BillingCommand::Serve { config }
            | BillingCommand::AddAccount { config, .. }
            | BillingCommand::Accounts { config }
            | BillingCommand::Balance { config, .. }
            | BillingCommand::Credit { config, .. }
            | BillingCommand::Report { config, .. } => config,
        }
    }
}

// ---------------------------------------------------------------------------
// Time as text.

/// Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Seconds since 1970, or RFC 3339 (`2026-12-06T04:00:00Z`,
/// `...T04:00:00.250+01:00`).
pub fn parse_time(s: &str) -> Result<SystemTime, String> {
    let bad = || format!("{s:?} is neither seconds since 1970 nor RFC 3339 (2026-12-06T04:00:00Z)");
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(UNIX_EPOCH + Duration::from_secs(secs));
    }
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return Err(bad());
    }
    let num = |r: std::ops::Range<usize>| -> Result<i64, String> {
        s.get(r)
            .filter(|t| t.bytes().all(|c| c.is_ascii_digit()))
            .and_then(|t| t.parse().ok())
            .ok_or_else(bad)
    };
    let (y, mo, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if b[13] != b':' || b[16] != b':' {
        return Err(bad());
    }
    let (h, mi, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&d) || h > 23 || mi > 59 || sec > 60 {
        return Err(bad());
    }
    let mut i = 19;
    let mut nanos = 0u32;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            i += 1;
        }
        let frac = &s[start..i];
        if frac.is_empty() {
            return Err(bad());
        }
        let mut digits = frac.chars().take(9).collect::<String>();
        while digits.len() < 9 {
            digits.push('0');
        }
        nanos = digits.parse().map_err(|_| bad())?;
    }
    let offset = match &s[i..] {
        "Z" | "z" => 0,
        o if o.len() == 6 && (o.starts_with('+') || o.starts_with('-')) && &o[3..4] == ":" => {
            let oh = num(i + 1..i + 3)?;
            let om = num(i + 4..i + 6)?;
            let v = oh * 3600 + om * 60;
            if o.starts_with('-') {
                -v
            } else {
                v
            }
        }
        _ => return Err(bad()),
    };
    let t = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
    let t = u64::try_from(t).map_err(|_| format!("{s:?} is before 1970"))?;
    Ok(UNIX_EPOCH + Duration::new(t, nanos))
}

/// RFC 3339 in UTC, to the millisecond.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX / 2);
    let (y, m, day) = civil_from_days(secs.div_euclid(86_400));
    let r = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        r / 3600,
        r / 60 % 60,
        r % 60,
        d.subsec_millis()
    )
}

// ---------------------------------------------------------------------------
// The CLI on the ledger file.

pub fn open_ledger(cfg: &BillingFile) -> anyhow::Result<SqliteLedger> {
    let db = &cfg.billing.database;
    if let Some(dir) = db.parent().filter(|d| !d.as_os_str().is_empty()) {
        crate::platform::fs::private_dir(dir)
            .with_context(|| format!("creating {}", dir.display()))?;
    }
    let mut l = SqliteLedger::open(db).with_context(|| {
        format!(
            "opening the ledger {} (billing.database); check that its directory exists and is writable",
            db.display()
        )
    })?;
    l.set_minimum_seconds(cfg.billing.minimum_seconds);
    Ok(l)
}

fn kind_name(k: AccountKind) -> String {
    match k {
        AccountKind::Prepaid => "prepaid".into(),
        AccountKind::Postpaid { credit_limit } => format!("postpaid credit_limit={credit_limit}"),
        AccountKind::Revenue => "revenue".into(),
        AccountKind::Topup => "topup".into(),
    }
}

fn csv_opt<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(String::new, |v| v.to_string())
}

/// Runs a CLI subcommand other than `serve`, writing to `out`.
pub fn provision(
    cmd: BillingCommand,
    cfg: &BillingFile,
    out: &mut dyn std::io::Write,
) -> anyhow::Result<()> {
    let mut ledger = open_ledger(cfg)?;
    match cmd {
        BillingCommand::Serve { .. } => bail!("serve is not a ledger command"),
        BillingCommand::AddAccount {
            account,
            principal,
            prepaid,
            balance,
            postpaid: _,
            credit_limit,
            setup_fee,
            per_second,
            currency,
            ..
        } => {
            let principal = roamgate_krb::Principal::parse(&principal)
                .map_err(|e| {
                    anyhow::anyhow!("--principal {principal:?}: {e} (e.g. unit-a@EXAMPLE.ORG)")
                })?
                .to_string();
            let tariff = Tariff::new(setup_fee, per_second)
                .context("--setup-fee and --per-second must be 0 or more minor units")?;
            let currency = currency.unwrap_or_else(|| cfg.billing.currency.clone());
            let kind = if prepaid {
                AccountKind::Prepaid
            } else {
                AccountKind::Postpaid { credit_limit }
            };
            if balance < 0 {
                bail!("--balance must be 0 or more minor units");
            }
            ledger
                .create_account(&account, kind)
                .with_context(|| format!("creating account {account}"))?;
            ledger
                .set_tariff(&account, tariff, &currency)
                .with_context(|| format!("setting the tariff of {account}"))?;
            ledger
                .bind_principal(&principal, &account)
                .with_context(|| format!("binding {principal} to {account}"))?;
            if balance > 0 {
                ledger.credit(&account, balance)?;
            }
            writeln!(
                out,
                "added {account} {} principal={principal} setup_fee={setup_fee} per_second={per_second} currency={currency} balance={balance}",
                kind_name(kind)
            )?;
        }
        BillingCommand::Accounts { .. } => {
            for a in ledger.accounts()? {
                let tariff = ledger
                    .tariff_for(&a.name)?
                    .map(|(t, c)| {
                        format!(
                            " setup_fee={} per_second={} currency={c}",
                            t.setup_fee(),
                            t.per_second()
                        )
                    })
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{} {} balance={}{tariff}",
                    a.name,
                    kind_name(a.kind),
                    a.balance
                )?;
            }
        }
        BillingCommand::Balance { account, .. } => {
            writeln!(out, "{}", ledger.balance(&account)?)?;
        }
        BillingCommand::Credit {
            account, amount, ..
        } => {
            let b = ledger
                .credit(&account, amount)
                .with_context(|| format!("crediting {account} with {amount}"))?;
            writeln!(out, "{account} balance={b}")?;
        }
        BillingCommand::Report {
            from, to, format, ..
        } => {
            let rows = ledger.report(from, to)?;
            match format {
                ReportFormat::Csv => {
                    writeln!(out, "call_id,account,started,ended,seconds,amount,status")?;
                    for r in rows {
                        writeln!(
                            out,
                            "{},{},{},{},{},{},{}",
                            r.call,
                            r.account,
                            rfc3339(r.started_at),
                            csv_opt(r.ended_at.map(rfc3339)),
                            csv_opt(r.seconds),
                            csv_opt(r.amount),
                            r.status.as_str()
                        )?;
                    }
                }
                ReportFormat::Json => {
                    let v: Vec<serde_json::Value> = rows
                        .into_iter()
                        .map(|r| {
                            serde_json::json!({
                                "call_id": r.call.to_hex(),
                                "account": r.account,
                                "started": rfc3339(r.started_at),
                                "ended": r.ended_at.map(rfc3339),
                                "seconds": r.seconds,
                                "amount": r.amount,
                                "status": r.status.as_str(),
                            })
                        })
                        .collect();
                    writeln!(out, "{}", serde_json::to_string_pretty(&v)?)?;
                }
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------
// Metrics.

/// What the service counts.
#[derive(Debug, Default, Clone)]
pub struct Metrics {
    pub core: Stats,
    pub opened: u64,
    pub already_open: u64,
    pub closed: u64,
    pub already_closed: u64,
    pub refused: BTreeMap<&'static str, u64>,
    pub batches: u64,
    pub batch_ops: u64,
    pub batch_failures: u64,
    pub last_batch_ops: u64,
    pub expired: u64,
    pub ledger_total: i128,
    pub outbox_pending: u64,
}

/// The Prometheus text of the service's counters and gauges.
pub fn prometheus(m: &Metrics, r: &RadiusStats) -> String {
    let mut t = String::new();
    let mut counter = |name: &str, v: u64| {
        let n = format!("roamgate_billing_{name}_total");
        t.push_str(&format!("# TYPE {n} counter\n{n} {v}\n"));
    };
    counter("requests", m.core.requests);
    counter("requests_dropped", m.core.dropped);
    counter("requests_refused_auth", m.core.refused_auth);
    counter("charges_opened", m.opened);
    counter("charges_already_open", m.already_open);
    counter("charges_closed", m.closed);
    counter("charges_already_closed", m.already_closed);
    counter("charges_expired", m.expired);
    counter("batches", m.batches);
    counter("batch_ops", m.batch_ops);
    counter("batch_failures", m.batch_failures);
    counter("radius_sent", r.sent.load(Ordering::Relaxed));
    counter("radius_delivered", r.delivered.load(Ordering::Relaxed));
    counter(
        "radius_retransmitted",
        r.retransmitted.load(Ordering::Relaxed),
    );
    counter("radius_failed", r.failed.load(Ordering::Relaxed));
    let n = "roamgate_billing_charges_refused_total";
    t.push_str(&format!("# TYPE {n} counter\n"));
    for reason in roamgate_billing::wire::Reason::ALL {
        let v = m.refused.get(reason.label()).copied().unwrap_or(0);
        t.push_str(&format!("{n}{{reason=\"{}\"}} {v}\n", reason.label()));
    }
    for (name, v) in [
        ("last_batch_ops", m.last_batch_ops.to_string()),
        ("ledger_total", m.ledger_total.to_string()),
        ("outbox_pending", m.outbox_pending.to_string()),
    ] {
        let n = format!("roamgate_billing_{name}");
        t.push_str(&format!("# TYPE {n} gauge\n{n} {v}\n"));
    }
    t
}

// ---------------------------------------------------------------------------
// serve.

/// Serves until `shutdown`: a blocking thread owns the core and the UDP
/// socket; the RADIUS sender shares the ledger.
pub async fn serve(cfg: BillingFile, shutdown: CancellationToken) -> anyhow::Result<()> {
    let keytab = roamgate_krb::keytab::Keytab::load(&cfg.kerberos.keytab)
        .with_context(|| format!("reading keytab {}", cfg.kerberos.keytab.display()))?;
    let core_cfg = cfg.core()?;
    if keytab.find(&core_cfg.service, None, None).is_none() {
        bail!(
            "keytab {} has no key for {}; export it with `roamgate kdc export-keytab {} --out {}`",
            cfg.kerberos.keytab.display(),
            core_cfg.service,
            core_cfg.service,
            cfg.kerberos.keytab.display()
        );
    }
    let ledger = Arc::new(Mutex::new(open_ledger(&cfg)?));
    let sock = UdpSocket::bind(cfg.billing.listen).with_context(|| {
        format!(
            "binding {} (billing.listen); is another service on that port?",
            cfg.billing.listen
        )
    })?;
    sock.set_read_timeout(Some(Duration::from_millis(200)))?;
    info!(listen = %sock.local_addr()?, service = %core_cfg.service, database = %cfg.billing.database.display(), "billing ready");
    let metrics = Arc::new(Mutex::new(Metrics::default()));
    let radius_stats = Arc::new(RadiusStats::default());
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics.addr()? {
        let listener = crate::metrics::bind(addr).await?;
        let (m, r) = (metrics.clone(), radius_stats.clone());
        let render: crate::metrics::Render = Arc::new(move || {
            let m = m.lock().unwrap_or_else(|p| p.into_inner()).clone();
            prometheus(&m, &r)
        });
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::metrics::serve(listener, render, stop).await });
    }
    {
        let (l, c, s, stop) = (
            ledger.clone(),
            cfg.radius.clone(),
            radius_stats.clone(),
            shutdown.clone(),
        );
        tasks.spawn(async move {
            if let Err(e) = radius::run_sender(l, c, s, stop).await {
                warn!(error = %format!("{e:#}"), "billing: the RADIUS sender stopped; records wait in the outbox until the service restarts (check [radius] and the secret file)");
            }
            Ok(())
        });
    }
    let stop = Arc::new(AtomicBool::new(false));
    let worker = {
        let stop = stop.clone();
        let server = BillingServer::new(keytab, core_cfg);
        let opts = LoopOptions {
            batch_max: cfg.billing.batch_max,
            max_call: Duration::from_secs(cfg.billing.max_call_secs),
            expire_every: Duration::from_secs(cfg.billing.expire_every_secs),
        };
        tokio::task::spawn_blocking(move || {
            serve_loop(server, &sock, &ledger, &stop, &metrics, opts)
        })
    };
    shutdown.cancelled().await;
    stop.store(true, Ordering::Relaxed);
    let res = worker.await.context("billing thread")?;
    tasks.shutdown().await;
    res
}

struct LoopOptions {
    batch_max: usize,
    max_call: Duration,
    expire_every: Duration,
}

fn is_timeout(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// Every datagram ready now, up to `max`: the first waits (up to the
/// socket's read timeout), the others do not.
fn drain(
    sock: &UdpSocket,
    bufs: &mut [Vec<u8>],
    max: usize,
) -> std::io::Result<Vec<(usize, std::net::SocketAddr)>> {
    let mut got = Vec::new();
    match sock.recv_from(&mut bufs[0]) {
        Ok(r) => got.push(r),
        Err(e) if is_timeout(&e) => return Ok(got),
        Err(e) => return Err(e),
    }
    sock.set_nonblocking(true)?;
    while got.len() < max {
        match sock.recv_from(&mut bufs[got.len()]) {
            Ok(r) => got.push(r),
            Err(e) if is_timeout(&e) => break,
            Err(e) => {
                warn!(error = %e, "billing: receive failed");
                break;
            }
        }
    }
    sock.set_nonblocking(false)?;
    Ok(got)
}

fn serve_loop<K: roamgate_krb::ap::ServiceKeys>(
    mut server: BillingServer<K>,
    sock: &UdpSocket,
    ledger: &Mutex<SqliteLedger>,
    stop: &AtomicBool,
    metrics: &Mutex<Metrics>,
    opts: LoopOptions,
) -> anyhow::Result<()> {
    let mut bufs = vec![vec![0u8; MAX_MESSAGE + 1]; opts.batch_max];
    let mut next_expire = SystemTime::now();
    let mut next_gauges = SystemTime::now();
    let skew = server.config().skew;
    while !stop.load(Ordering::Relaxed) {
        let now = SystemTime::now();
        if now >= next_expire {
            next_expire = now + opts.expire_every;
            let r = ledger
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .expire_open(now, opts.max_call);
            match r {
                Ok(v) if v.is_empty() => {}
                Ok(v) => {
                    for (call, amount) in &v {
                        info!(%call, amount, max_call_secs = opts.max_call.as_secs(), "billing: charge closed as expired: its close never came (the caller's proxy crashed or lost the release)");
                    }
                    metrics.lock().unwrap_or_else(|p| p.into_inner()).expired += v.len() as u64;
                }
                Err(e) => {
                    warn!(error = %e, "billing: expiring stale charges failed; retried at the next check (check the ledger's disk)")
                }
            }
        }
        if now >= next_gauges {
            next_gauges = now + GAUGES_EVERY;
            let l = ledger.lock().unwrap_or_else(|p| p.into_inner());
            let total = l.total();
            let pending = l.outbox_pending_count();
            drop(l);
            let mut m = metrics.lock().unwrap_or_else(|p| p.into_inner());
            match total {
                Ok(t) => {
                    if t != 0 {
                        warn!(total = %t, "billing: the ledger does not balance to 0; stop charging and run check_consistency on a copy of the database");
                    }
                    m.ledger_total = t;
                }
                Err(e) => warn!(error = %e, "billing: reading the ledger total failed"),
            }
            if let Ok(p) = pending {
                m.outbox_pending = p;
            }
        }
        let got = match drain(sock, &mut bufs, opts.batch_max) {
            Ok(g) => g,
            Err(e) => {
                warn!(error = %e, "billing: receive failed");
                continue;
            }
        };
        if got.is_empty() {
            continue;
        }
        let now = SystemTime::now();
        let mut batch = Batch::new();
        let mut peers = Vec::new();
        let mut l = ledger.lock().unwrap_or_else(|p| p.into_inner());
        for (i, (n, peer)) in got.iter().enumerate() {
            match server.accept(&bufs[i][..*n], now) {
                Ok(a) => {
                    batch.push(a, &*l, skew, now);
                    peers.push(*peer);
                }
                Err(rej) => {
                    if rej.reply.is_some() {
                        let client = rej.client.as_ref().map(ToString::to_string);
                        warn!(%peer, client = client.as_deref().unwrap_or("-"), cause = %rej.refusal, "billing: request refused before the ledger (check the caller's ticket, its service principal and the clocks)");
                    } else {
                        debug!(%peer, cause = %rej.refusal, "billing: dropped");
                    }
                    if let Some(reply) = rej.reply {
                        if let Err(e) = sock.send_to(&reply, peer) {
                            warn!(%peer, error = %e, "billing: send failed");
                        }
                    }
                }
            }
        }
        let n_ops = batch.ops().len() as u64;
        let outcomes = if batch.ops().is_empty() {
            Ok(Vec::new())
        } else {
            l.apply_batch(batch.ops())
        };
        drop(l);
        let failed = outcomes.is_err();
        if let Err(e) = &outcomes {
            warn!(error = %e, ops = n_ops, "billing: the ledger could not commit the batch; every request in it is answered Unavailable and nothing was charged (check the disk and the database file)");
        }
        let answered = batch.finish(outcomes, now);
        let mut m = metrics.lock().unwrap_or_else(|p| p.into_inner());
        m.core = server.stats();
        if n_ops > 0 {
            m.batches += 1;
            m.batch_ops += n_ops;
            m.last_batch_ops = n_ops;
        }
        m.batch_failures += u64::from(failed);
        for (a, peer) in answered.into_iter().zip(peers) {
            match a.result {
                OpResult::Opened { .. } => m.opened += 1,
                OpResult::AlreadyOpen { .. } => m.already_open += 1,
                OpResult::Closed { .. } => m.closed += 1,
                OpResult::AlreadyClosed { .. } => m.already_closed += 1,
                OpResult::Refused { reason } => {
                    *m.refused.entry(reason.label()).or_default() += 1;
                    let account = a.account.as_deref().unwrap_or("-");
                    info!(%peer, client = %a.client, account, call = %a.op.call(), %reason, detail = a.error.as_deref().unwrap_or(""), "billing: charge refused");
                }
            }
            debug!(%peer, client = %a.client, call = %a.op.call(), result = ?a.result, "billing: answered");
            match a.reply {
                Some(reply) => {
                    if let Err(e) = sock.send_to(&reply, peer) {
                        warn!(%peer, error = %e, "billing: send failed");
                    }
                }
                None => warn!(%peer, "billing: sealing the answer failed; the caller will retry"),
            }
        }
    }
    Ok(())
}

/// Entry point of `roamgate billing`.
pub async fn run(cmd: BillingCommand) -> anyhow::Result<()> {
    let cfg = BillingFile::load(cmd.config_path())?;
    if let BillingCommand::Serve { .. } = cmd {
        crate::logging::init(cfg.log.format, &cfg.log.level);
        let shutdown = CancellationToken::new();
        crate::gateway::cancel_on_signals(shutdown.clone())?;
        return serve(cfg, shutdown).await;
    }
    provision(cmd, &cfg, &mut std::io::stdout().lock())
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser as _;

    fn cfg(dir: &Path) -> BillingFile {
        let mut c = BillingFile::default();
        c.billing.database = dir.join("state/billing.sqlite");
        c
    }

    fn run(c: &BillingFile, args: &[&str]) -> anyhow::Result<String> {
        let mut argv = vec!["roamgate", "billing"];
        argv.extend_from_slice(args);
        let cli = crate::cli::Cli::try_parse_from(argv)?;
        let crate::cli::Command::Billing { command } = cli.command else {
            panic!("not a billing command")
        };
        let mut out = Vec::new();
        provision(command, c, &mut out)?;
        Ok(String::from_utf8(out).unwrap())
    }

    #[test]
    fn times_parse_and_print() {
        let t = parse_time("2026-12-06T04:25:00Z").unwrap();
        assert_eq!(t, UNIX_EPOCH + Duration::from_secs(1_796_531_100));
        assert_eq!(rfc3339(t), "2026-12-06T04:25:00.000Z");
        assert_eq!(
            parse_time("2026-12-06T05:25:00.5+01:00").unwrap(),
            t + Duration::from_millis(500)
        );
        assert_eq!(parse_time("1796531100").unwrap(), t);
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            rfc3339(parse_time("2000-02-29T23:59:59Z").unwrap()),
            "2000-02-29T23:59:59.000Z"
        );
        for bad in [
            "",
            "yesterday",
            "2026-13-01T00:00:00Z",
            "2026-12-06T04:25:00",
            "-5",
        ] {
            assert!(parse_time(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn cli_adds_accounts_credits_and_reports() {
        let tmp = tempfile::tempdir().unwrap();
        let c = cfg(tmp.path());
        let out = run(
            &c,
            &[
                "add-account",
                "-c",
                "x",
                "acct-1",
                "--principal",
                "u1@EXAMPLE.ORG",
                "--prepaid",
                "--balance",
                "500",
                "--setup-fee",
                "10",
                "--per-second",
                "2",
            ],
        )
        .unwrap();
        assert!(out.starts_with("added acct-1 prepaid"), "{out}");
        run(
            &c,
            &[
                "add-account",
                "-c",
                "x",
                "acct-2",
                "--principal",
                "u2@EXAMPLE.ORG",
                "--postpaid",
                "--credit-limit",
                "1000",
                "--setup-fee",
                "0",
                "--per-second",
                "1",
                "--currency",
                "USD",
            ],
        )
        .unwrap();
        // Exactly one of --prepaid and --postpaid.
        assert!(run(
            &c,
            &[
                "add-account",
                "-c",
                "x",
                "a3",
                "--principal",
                "u3@E",
                "--setup-fee",
                "0",
                "--per-second",
                "0"
            ]
        )
        .is_err());
        assert!(run(
            &c,
            &[
                "add-account",
                "-c",
                "x",
                "acct-1",
                "--principal",
                "u1@EXAMPLE.ORG",
                "--prepaid",
                "--setup-fee",
                "0",
                "--per-second",
                "0"
            ]
        )
        .is_err());
        assert_eq!(run(&c, &["balance", "-c", "x", "acct-1"]).unwrap(), "500\n");
        assert_eq!(
            run(&c, &["credit", "-c", "x", "acct-1", "25"]).unwrap(),
            "acct-1 balance=525\n"
        );
        assert!(run(&c, &["credit", "-c", "x", "acct-1", "-5"]).is_err());
        let accounts = run(&c, &["accounts", "-c", "x"]).unwrap();
        assert!(
            accounts.contains("acct-1 prepaid balance=525 setup_fee=10 per_second=2 currency=EUR"),
            "{accounts}"
        );
        assert!(
            accounts.contains(
                "acct-2 postpaid credit_limit=1000 balance=0 setup_fee=0 per_second=1 currency=USD"
            ),
            "{accounts}"
        );
        assert!(accounts.contains("topup topup balance=-525"), "{accounts}");
        {
            let mut l = open_ledger(&c).unwrap();
            assert_eq!(
                l.account_for("u1@EXAMPLE.ORG").unwrap().as_deref(),
                Some("acct-1")
            );
            let t0 = parse_time("2026-12-06T00:00:00Z").unwrap();
            let call = roamgate_billing::CallId([0xab; 16]);
            l.open_charge(call, "acct-1", Tariff::new(10, 2).unwrap(), t0)
                .unwrap();
            l.close_charge(call, t0 + Duration::from_secs(30)).unwrap();
        }
        let csv = run(
            &c,
            &[
                "report",
                "-c",
                "x",
                "--from",
                "2026-12-06T00:00:00Z",
                "--to",
                "1796601600",
            ],
        )
        .unwrap();
        assert_eq!(
            csv,
            format!(
                "call_id,account,started,ended,seconds,amount,status\n{},acct-1,2026-12-06T00:00:00.000Z,2026-12-06T00:00:30.000Z,30,70,closed\n",
                "ab".repeat(16)
            )
        );
        let json = run(
            &c,
            &[
                "report",
                "-c",
                "x",
                "--from",
                "0",
                "--to",
                "1796601600",
                "--format",
                "json",
            ],
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v[0]["amount"], 70);
        assert_eq!(v[0]["status"], "closed");
        assert!(run(&c, &["report", "-c", "x", "--from", "soon", "--to", "0"]).is_err());
    }

    #[test]
    fn metrics_name_every_series() {
        let mut m = Metrics::default();
        m.refused.insert("not_your_call", 2);
        m.batches = 3;
        let t = prometheus(&m, &RadiusStats::default());
        assert!(
            t.contains("roamgate_billing_charges_refused_total{reason=\"not_your_call\"} 2\n"),
            "{t}"
        );
        assert!(t.contains("roamgate_billing_batches_total 3\n"));
        assert!(t.contains("roamgate_billing_ledger_total 0\n"));
        assert!(t.contains("roamgate_billing_outbox_pending 0\n"));
        assert!(t.contains("roamgate_billing_radius_delivered_total 0\n"));
    }

    /// `serve` in process: a charge over UDP, another principal's close
    /// refused, and the metrics endpoint telling both.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn serve_answers_and_counts() {
        use roamgate_billing::client::build_request;
        use roamgate_billing::wire::{Op, Reason};
        use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
        use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
        use roamgate_krb::kdc::{Kdc, KdcConfig};
        use roamgate_krb::keytab::{Keytab, KeytabEntry};
        use roamgate_krb::Principal;
        use roamgate_krb_crypto::Etype;

        const SERVICE: &str = "billing/bill.example.org@EXAMPLE.ORG";
        let p = |s: &str| Principal::parse(s).unwrap();
        let store = Arc::new(MemoryStore::new("EXAMPLE.ORG"));
        store.add_random(
            &Principal::krbtgt("EXAMPLE.ORG"),
            &Etype::ALL,
            PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
        );
        for n in [SERVICE, "u1@EXAMPLE.ORG", "u2@EXAMPLE.ORG"] {
            store.add_random(&p(n), &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        let kdc = Kdc::new(store.clone(), KdcConfig::default());
        let ticket = |client: &str| {
            let now = SystemTime::now();
            let e = store.get(&p(client)).unwrap().unwrap();
            let secret = ClientSecret::Keys(e.keys.iter().map(|k| k.key.clone()).collect());
            let mut ex = AsExchange::new(p(client), secret, AsOptions::default()).unwrap();
            let mut req = ex.first_request(now).unwrap();
            let tgt = loop {
                match ex
                    .handle_reply(&kdc.handle(&req, now).unwrap(), now)
                    .unwrap()
                {
                    AsStep::Send(r) => req = r,
                    AsStep::Done(c) => break *c,
                }
            };
            let tgs = TgsExchange::new(&tgt, p(SERVICE), 0).unwrap();
            tgs.handle_reply(&kdc.handle(&tgs.request(now).unwrap(), now).unwrap())
                .unwrap()
        };
        let (u1, u2) = (ticket("u1@EXAMPLE.ORG"), ticket("u2@EXAMPLE.ORG"));

        let tmp = tempfile::tempdir().unwrap();
        let mut c = cfg(tmp.path());
        let mut kt = Keytab::new();
        for k in &store.get(&p(SERVICE)).unwrap().unwrap().keys {
            kt.push(KeytabEntry {
                principal: p(SERVICE),
                timestamp: 0,
                kvno: k.kvno,
                key: k.key.clone(),
            });
        }
        c.kerberos.keytab = tmp.path().join("billing.keytab");
        kt.save(&c.kerberos.keytab).unwrap();
        let free = || {
            UdpSocket::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        };
        c.billing.listen = std::net::SocketAddr::from(([127, 0, 0, 1], free()));
        let metrics_addr = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        c.metrics.listen = metrics_addr.to_string();
        for (acct, who) in [("acct-1", "u1@EXAMPLE.ORG"), ("acct-2", "u2@EXAMPLE.ORG")] {
            run(
                &c,
                &[
                    "add-account",
                    "-c",
                    "x",
                    acct,
                    "--principal",
                    who,
                    "--postpaid",
                    "--credit-limit",
                    "100000",
                    "--setup-fee",
                    "10",
                    "--per-second",
                    "2",
                ],
            )
            .unwrap();
        }
        let listen = c.billing.listen;
        let shutdown = CancellationToken::new();
        let server = tokio::spawn(serve(c, shutdown.clone()));
        let results = tokio::task::spawn_blocking(move || {
            let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            let mut buf = vec![0u8; MAX_MESSAGE];
            let t0 = SystemTime::now() - Duration::from_secs(60);
            let mut ask = |cred: &roamgate_krb::credential::Credential, op: Op| {
                for _ in 0..30 {
                    let (req, pending) = build_request(cred, op, SystemTime::now()).unwrap();
                    sock.send_to(&req, listen).unwrap();
                    if let Ok((n, _)) = sock.recv_from(&mut buf) {
                        return pending.open(&buf[..n], SystemTime::now()).unwrap();
                    }
                }
                panic!("no answer");
            };
            let id = [5u8; 16];
            vec![
                ask(
                    &u1,
                    Op::OpenCharge {
                        call_id: id,
                        started_at: t0,
                    },
                ),
                ask(
                    &u2,
                    Op::CloseCharge {
                        call_id: id,
                        ended_at: t0 + Duration::from_secs(5),
                    },
                ),
                ask(
                    &u1,
                    Op::CloseCharge {
                        call_id: id,
                        ended_at: t0 + Duration::from_secs(5),
                    },
                ),
            ]
        })
        .await
        .unwrap();
        assert_eq!(
            results,
            [
                OpResult::Opened {
                    allowed_seconds: None
                },
                OpResult::Refused {
                    reason: Reason::NotYourCall
                },
                OpResult::Closed {
                    amount: 20,
                    seconds: 5
                },
            ]
        );
        // The gauges are re-read every second.
        tokio::time::sleep(Duration::from_millis(1200)).await;
        let text = tokio::task::spawn_blocking(move || {
            use std::io::{Read as _, Write as _};
            let mut s = std::net::TcpStream::connect(metrics_addr).unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
                .unwrap();
            let mut t = String::new();
            s.read_to_string(&mut t).unwrap();
            t
        })
        .await
        .unwrap();
        for line in [
            "roamgate_billing_charges_opened_total 1\n",
            "roamgate_billing_charges_closed_total 1\n",
            "roamgate_billing_charges_refused_total{reason=\"not_your_call\"} 1\n",
            "roamgate_billing_ledger_total 0\n",
            "roamgate_billing_outbox_pending 2\n",
        ] {
            assert!(text.contains(line), "{line} in {text}");
        }
        shutdown.cancel();
        server.await.unwrap().unwrap();
    }
}
