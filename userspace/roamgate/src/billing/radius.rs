//! The RADIUS accounting sender (RFC 2866): delivers the billing ledger's
//! durable outbox (`roamgate_billing::outbox`) to the configured RADIUS
//! server.
//!
//! The outbox decides WHAT is due and WHEN (its exponential backoff); this
//! task only does the I/O:
//! 1. `due(now)` under the ledger lock, briefly (the lock is never held
//!    across an await);
//! 2. each record becomes an Accounting-Request, built at send time
//!    (Acct-Delay-Time = now − the record's event time) with a fresh
//!    Identifier, and goes out over ONE UDP socket connected to the server;
//! 3. an Accounting-Response is matched to its request by Identifier and
//!    its Response Authenticator is verified with the shared secret; only
//!    then is the record `mark_sent`.
//!
//! A request unanswered after `timeout_ms` is forgotten here and counted
//! as a retransmission: the record is still unsent in the outbox, which
//! hands it out again after its backoff. A server that is down (ICMP port
//! unreachable, or silence) therefore never loses a record; it only delays
//! it. Duplicates at the server are the ones RFC 2866 allows: a response
//! lost (or a crash between the response and `mark_sent`) makes the server
//! see the same Acct-Session-Id and Acct-Status-Type again, with a later
//! Acct-Delay-Time.
//!
//! The shared secret is read from `secret_file`, which must be non-empty
//! and readable by its owner only; it never reaches a log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context as _};
use roamgate_billing::radius::{self, Nas, CODE_ACCOUNTING_RESPONSE, MAX_PACKET_LEN};
use roamgate_billing::{Outbox as _, OutboxRecord, SqliteLedger};
use tokio::net::UdpSocket;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};
use zeroize::Zeroizing;

/// The currency of the charge VSA (`roamgate-currency`) for a record whose
/// account has no tariff (and so no currency) any more; otherwise the
/// VSA carries the currency of the account's tariff.
pub const DEFAULT_CURRENCY: [u8; 3] = *b"EUR";

/// How often the outbox is asked for due records when nothing else wakes
/// the sender: new records appear in the ledger's own transactions, and
/// the outbox has no notification, so this bounds their latency.
const OUTBOX_POLL: Duration = Duration::from_millis(200);

/// At most this many records are taken from the outbox at once (and so at
/// most this many requests are outstanding): well below the 256
/// Identifiers of RFC 2865 §3, so a fresh one is always free.
const MAX_IN_FLIGHT: usize = 128;

/// The `[radius]` section of the billing config.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RadiusSection {
    /// The accounting server, `host:port` (usually port 1813); empty turns
    /// RADIUS accounting off (the outbox keeps the records).
    pub server: String,
    /// The shared secret, alone in a file of mode 0600 (or 0400).
    pub secret_file: PathBuf,
    /// NAS-Identifier of every request (RFC 2866 §4.1 wants it or a
    /// NAS-IP-Address).
    pub nas_identifier: String,
    /// How long to wait for an Accounting-Response before the request is
    /// left to the outbox's retransmission.
    pub timeout_ms: u64,
}

impl Default for RadiusSection {
    fn default() -> Self {
        Self {
            server: String::new(),
            secret_file: PathBuf::from("/etc/roamgate/radius.secret"),
            nas_identifier: "roamgate".into(),
            timeout_ms: 1000,
        }
    }
}

impl RadiusSection {
    /// Checks what serde cannot.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.server.is_empty() {
            return Ok(());
        }
        if self.nas_identifier.is_empty() || self.nas_identifier.len() > radius::MAX_VALUE_LEN {
            bail!(
                "radius.nas_identifier must be 1..={} bytes",
                radius::MAX_VALUE_LEN
            );
        }
        if self.timeout_ms == 0 {
            bail!("radius.timeout_ms must be above 0");
        }
        Ok(())
    }
}

/// The sender's counters (Prometheus: `roamgate_billing_radius_*`).
#[derive(Debug, Default)]
pub struct RadiusStats {
    /// Accounting-Requests sent (every attempt).
    pub sent: AtomicU64,
    /// Records marked sent after their Accounting-Response verified.
    pub delivered: AtomicU64,
    /// Requests unanswered within the timeout: their records stay in the
    /// outbox and go out again after its backoff.
    pub retransmitted: AtomicU64,
    /// Responses that did not verify (wrong secret, unknown Identifier,
    /// malformed), requests that could not be built, and send errors.
    pub failed: AtomicU64,
}

/// Reads the shared secret, refusing a file others can read or an empty
/// one. A trailing newline (as `echo` leaves) is not part of it.
pub fn read_secret(path: &Path) -> anyhow::Result<Zeroizing<Vec<u8>>> {
    let meta = std::fs::metadata(path)
        .with_context(|| format!("RADIUS secret file {}", path.display()))?;
    let mode = meta.permissions().mode();
    if mode & 0o077 != 0 {
        bail!(
            "RADIUS secret file {} has mode {:04o}: group or others may read it; \
             fix with `chmod 600 {}`",
            path.display(),
            mode & 0o7777,
            path.display()
        );
    }
    let mut secret = Zeroizing::new(
        std::fs::read(path).with_context(|| format!("RADIUS secret file {}", path.display()))?,
    );
    while secret.last().is_some_and(|b| matches!(b, b'\n' | b'\r')) {
        secret.pop();
    }
    if secret.is_empty() {
        bail!(
            "RADIUS secret file {} is empty: write the shared secret configured \
             for this client on the RADIUS server into it",
            path.display()
        );
    }
    Ok(secret)
}

/// One request waiting for its response.
struct InFlight {
    record: i64,
    request: Vec<u8>,
    deadline: Instant,
}

/// Runs until `shutdown`: delivers the outbox to `cfg.server`. Returns an
/// error only when it cannot start (bad secret file, unresolvable server,
/// no socket) or the ledger fails.
pub async fn run_sender(
    ledger: Arc<Mutex<SqliteLedger>>,
    cfg: RadiusSection,
    stats: Arc<RadiusStats>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if cfg.server.is_empty() {
        info!("RADIUS accounting off (radius.server is empty); records stay in the outbox");
        shutdown.cancelled().await;
        return Ok(());
    }
    cfg.validate()?;
    let secret = read_secret(&cfg.secret_file)?;
    let server: SocketAddr = tokio::net::lookup_host(&cfg.server)
        .await
        .with_context(|| format!("RADIUS server {}", cfg.server))?
        .next()
        .with_context(|| format!("RADIUS server {}: no address", cfg.server))?;
    let local: SocketAddr = if server.is_ipv4() {
        "0.0.0.0:0".parse()?
    } else {
        "[::]:0".parse()?
    };
    // One connected socket: the kernel drops datagrams from anyone but the
    // server, and reports its ICMP port unreachable to us.
    let sock = UdpSocket::bind(local)
        .await
        .context("RADIUS client socket")?;
    sock.connect(server)
        .await
        .with_context(|| format!("RADIUS server {server}"))?;
    info!(%server, nas = %cfg.nas_identifier, "RADIUS accounting sender started");

    let timeout = Duration::from_millis(cfg.timeout_ms);
    let mut in_flight: HashMap<u8, InFlight> = HashMap::new();
    // Start from a random Identifier so a restarted sender does not reuse
    // the previous run's sequence against a server's duplicate cache.
    let mut next_id: u8 = (SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .subsec_nanos()
        & 0xff) as u8;
    let mut buf = vec![0u8; MAX_PACKET_LEN];
    let mut poll = tokio::time::interval(OUTBOX_POLL);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let next_deadline = in_flight.values().map(|f| f.deadline).min();
        tokio::select! {
            _ = shutdown.cancelled() => break,
            _ = poll.tick() => {
                let room = MAX_IN_FLIGHT.saturating_sub(in_flight.len());
                if room == 0 {
                    continue;
                }
                let records = with_ledger(&ledger, move |l| l.due(SystemTime::now(), room))
                    .await
                    .context("RADIUS outbox: due")?;
                for rec in records {
                    // The outbox handed this record out again while an
                    // older attempt is still outstanding (timeout_ms above
                    // the backoff): the new attempt replaces it.
                    in_flight.retain(|_, f| f.record != rec.id);
                    let Some(id) = free_identifier(&in_flight, &mut next_id) else {
                        break;
                    };
                    let request = match build_request(&rec, &cfg.nas_identifier, id, &secret) {
                        Ok(r) => r,
                        Err(e) => {
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            warn!(record = rec.id, call = %rec.call, "RADIUS request not built: {e}");
                            continue;
                        }
                    };
                    match sock.send(&request).await {
                        Ok(_) => {
                            stats.sent.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            // ECONNREFUSED from an earlier ICMP port
                            // unreachable, or no route: the request still
                            // waits for its timeout, so the record is
                            // retried like any unanswered one.
                            stats.failed.fetch_add(1, Ordering::Relaxed);
                            debug!(%server, "RADIUS send: {e}");
                        }
                    }
                    debug!(record = rec.id, call = %rec.call, kind = rec.kind.as_str(),
                           attempt = rec.attempts, identifier = id, "Accounting-Request");
                    in_flight.insert(id, InFlight { record: rec.id, request, deadline: Instant::now() + timeout });
                }
            }
            _ = sleep_until_opt(next_deadline) => {
                let now = Instant::now();
                let before = in_flight.len();
                in_flight.retain(|_, f| f.deadline > now);
                let expired = (before - in_flight.len()) as u64;
                stats.retransmitted.fetch_add(expired, Ordering::Relaxed);
                debug!(%server, expired, "RADIUS requests unanswered; the outbox retries them");
            }
            r = sock.recv(&mut buf) => {
                let n = match r {
                    Ok(n) => n,
                    Err(e) => {
                        // ICMP port unreachable surfaces here on a
                        // connected socket: the server is down. Records
                        // stay in the outbox.
                        debug!(%server, "RADIUS receive: {e}");
                        continue;
                    }
                };
                let resp = &buf[..n];
                let Some(f) = resp.get(1).and_then(|id| in_flight.get(id)) else {
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    debug!(%server, "RADIUS response for no outstanding request: ignored");
                    continue;
                };
                if let Err(e) = radius::verify_response(resp, &f.request, &secret) {
                    // A response that does not verify (another secret, a
                    // forgery) leaves the request outstanding: the real
                    // answer may still come.
                    stats.failed.fetch_add(1, Ordering::Relaxed);
                    warn!(%server, code = resp[0], expected = CODE_ACCOUNTING_RESPONSE,
                          "RADIUS response does not verify (shared secret?): {e}");
                    continue;
                }
                let Some(f) = in_flight.remove(&resp[1]) else { continue };
                let record = f.record;
                let marked = with_ledger(&ledger, move |l| l.mark_sent(record, SystemTime::now()))
                    .await
                    .context("RADIUS outbox: mark_sent")?;
                if marked {
                    stats.delivered.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
    if !in_flight.is_empty() {
        info!(
            outstanding = in_flight.len(),
            "RADIUS sender stopping; unanswered records stay in the outbox"
        );
    }
    Ok(())
}

/// Runs `f` on the ledger in a blocking thread: outbox writes are fsync'd
/// SQLite transactions, which must not stall the runtime.
async fn with_ledger<T: Send + 'static>(
    ledger: &Arc<Mutex<SqliteLedger>>,
    f: impl FnOnce(&mut SqliteLedger) -> Result<T, roamgate_billing::LedgerError> + Send + 'static,
) -> anyhow::Result<T> {
    let ledger = Arc::clone(ledger);
    let r = tokio::task::spawn_blocking(move || {
        let mut l = ledger
            .lock()
            .map_err(|_| anyhow::anyhow!("ledger lock poisoned"))?;
        f(&mut l).map_err(anyhow::Error::from)
    })
    .await
    .context("ledger task")??;
    Ok(r)
}

/// The next Identifier not outstanding (RFC 2865 §3: it tells requests
/// apart; a new one per send, since a changed Acct-Delay-Time makes a new
/// request, RFC 2866 §5.2).
fn free_identifier(in_flight: &HashMap<u8, InFlight>, next: &mut u8) -> Option<u8> {
    for _ in 0..=u8::MAX {
        let id = *next;
        *next = next.wrapping_add(1);
        if !in_flight.contains_key(&id) {
            return Some(id);
        }
    }
    None
}

/// The signed Accounting-Request for `rec` at this moment.
fn build_request(
    rec: &OutboxRecord,
    nas_identifier: &str,
    identifier: u8,
    secret: &[u8],
) -> Result<Vec<u8>, radius::RadiusError> {
    let session_id = rec.call.to_hex();
    rec.accounting_request(
        session_id.as_bytes(),
        SystemTime::now(),
        Nas::Identifier(nas_identifier.as_bytes()),
        DEFAULT_CURRENCY,
    )
    .to_bytes(identifier, secret)
}

async fn sleep_until_opt(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_section_is_off_and_valid() {
        let s = RadiusSection::default();
        assert!(s.server.is_empty());
        s.validate().unwrap();
        let parsed: RadiusSection = toml::from_str("server = \"127.0.0.1:1813\"").unwrap();
        assert_eq!(parsed.timeout_ms, 1000);
        parsed.validate().unwrap();
        assert!(toml::from_str::<RadiusSection>("serverr = \"x\"").is_err());
    }

    #[test]
    fn secret_file_must_be_private_and_non_empty() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("secret");
        std::fs::write(&p, "s3cret\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(e.contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_secret(&p).unwrap()[..], b"s3cret");
        std::fs::write(&p, "\n").unwrap();
        let e = read_secret(&p).unwrap_err().to_string();
        assert!(e.contains("empty"), "{e}");
    }

    #[test]
    fn identifiers_skip_outstanding_ones() {
        let mut m = HashMap::new();
        let f = || InFlight {
            record: 0,
            request: vec![],
            deadline: Instant::now(),
        };
        m.insert(7, f());
        m.insert(8, f());
        let mut next = 7;
        assert_eq!(free_identifier(&m, &mut next), Some(9));
        for i in 0..=255u8 {
            m.insert(i, f());
        }
        assert_eq!(free_identifier(&m, &mut next), None);
    }
}
