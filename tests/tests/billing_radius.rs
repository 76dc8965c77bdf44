//! roamgate's RADIUS accounting sender (`roamgate::billing::radius`)
//! against a real FreeRADIUS (issue 13, "Real peer"): the ledger's outbox
//! is delivered, nothing is lost while the server is down, a wrong shared
//! secret delivers nothing, radclient checks the secret handling
//! independently, and tshark decodes the traffic with no malformed packet.
//!
//! Loopback only, no namespaces; root (FreeRADIUS runs with its own config
//! under a temp dir, dumpcap captures `lo`). Each test skips, saying why,
//! when Debian's `freeradius` is not installed (`cargo xtask setup`
//! installs it).

use std::collections::BTreeMap;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use roamgate::billing::radius::{run_sender, RadiusSection, RadiusStats};
use roamgate_billing::{
    AccountKind, CallId, LedgerStore as _, Outbox as _, Outcome, SqliteLedger, Tariff,
};
use roamgate_integration::freeradius::{self, DetailRecord, FreeRadius};
use roamgate_integration::mit::have;
use tokio_util::sync::CancellationToken;

const SECRET: &str = "s3cret-roamgate";
const CALLS: usize = 5;
/// Long enough for a loaded CI machine, short enough for the tests.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(20);

fn skip() -> bool {
    if freeradius::installed() {
        return false;
    }
    eprintln!(
        "skipping: freeradius not installed (Debian package freeradius; `cargo xtask setup`)"
    );
    true
}

/// One charged call, as the ledger closed it.
struct Call {
    id: CallId,
    account: &'static str,
    seconds: u64,
    amount: i64,
}

/// A ledger in a temp dir with `CALLS` calls opened and closed (so 2 *
/// CALLS outbox records), and a 0600 secret file.
struct Fixture {
    dir: tempfile::TempDir,
    ledger: Arc<Mutex<SqliteLedger>>,
    calls: Vec<Call>,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut l = SqliteLedger::open(&dir.path().join("ledger.db")).unwrap();
        for a in ["alice", "bob"] {
            l.create_account(
                a,
                AccountKind::Postpaid {
                    credit_limit: 1_000_000,
                },
            )
            .unwrap();
        }
        let tariff = Tariff::new(50, 3).unwrap();
        let now = SystemTime::now();
        let mut calls = Vec::new();
        for i in 0..CALLS {
            let mut id = [0u8; 16];
            id[0] = 0xca;
            id[15] = i as u8 + 1;
            let id = CallId(id);
            let account = if i % 2 == 0 { "alice" } else { "bob" };
            let started = now - Duration::from_secs(120);
            let ended = started + Duration::from_secs(10 + i as u64);
            assert!(matches!(
                l.open_charge(id, account, tariff, started).unwrap(),
                Outcome::Opened { .. }
            ));
            let Outcome::Closed { amount, seconds } = l.close_charge(id, ended).unwrap() else {
                panic!("call {i} not closed");
            };
            calls.push(Call {
                id,
                account,
                seconds,
                amount,
            });
        }
        assert_eq!(l.pending().unwrap().len(), 2 * CALLS);
        let secret = dir.path().join("radius.secret");
        std::fs::write(&secret, format!("{SECRET}\n")).unwrap();
        std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
        Self {
            dir,
            ledger: Arc::new(Mutex::new(l)),
            calls,
        }
    }

    /// Closes the ledger and opens it again from its file, as a restarted
    /// service would.
    fn reopen(&mut self) {
        let path = self.dir.path().join("ledger.db");
        // Only this fixture holds the ledger once the sender has stopped.
        self.ledger = Arc::new(Mutex::new(SqliteLedger::open(&path).unwrap()));
    }

    fn secret_file(&self) -> PathBuf {
        self.dir.path().join("radius.secret")
    }

    fn pending(&self) -> usize {
        self.ledger.lock().unwrap().pending().unwrap().len()
    }

    fn section(&self, server: String) -> RadiusSection {
        RadiusSection {
            server,
            secret_file: self.secret_file(),
            nas_identifier: "imu-test".into(),
            timeout_ms: 300,
        }
    }
}

/// `run_sender` on a runtime of its own.
struct Sender {
    rt: tokio::runtime::Runtime,
    stats: Arc<RadiusStats>,
    shutdown: CancellationToken,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl Sender {
    fn start(ledger: &Arc<Mutex<SqliteLedger>>, cfg: RadiusSection) -> Self {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let stats = Arc::new(RadiusStats::default());
        let shutdown = CancellationToken::new();
        let task = rt.spawn(run_sender(
            Arc::clone(ledger),
            cfg,
            Arc::clone(&stats),
            shutdown.clone(),
        ));
        Self {
            rt,
            stats,
            shutdown,
            task: Some(task),
        }
    }

    fn stop(&mut self) {
        self.shutdown.cancel();
        if let Some(t) = self.task.take() {
            self.rt
                .block_on(t)
                .unwrap()
                .expect("run_sender returned an error");
        }
    }

    fn stat(&self, which: &str) -> u64 {
        let s = &self.stats;
        match which {
            "sent" => &s.sent,
            "delivered" => &s.delivered,
            "retransmitted" => &s.retransmitted,
            "failed" => &s.failed,
            _ => unreachable!(),
        }
        .load(Ordering::Relaxed)
    }

    fn stats_line(&self) -> String {
        ["sent", "delivered", "retransmitted", "failed"]
            .map(|w| format!("{w}={}", self.stat(w)))
            .join(" ")
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

fn wait_until(what: &str, timeout: Duration, mut done: impl FnMut() -> bool) {
    let start = Instant::now();
    while !done() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?}: {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn status_of(r: &DetailRecord) -> &str {
    r.get("Acct-Status-Type").unwrap_or("")
}

/// Every call has its Start and Stop in `records` with the right
/// attributes; returns the records grouped by (session id, status).
fn check_records(
    calls: &[Call],
    records: &[DetailRecord],
) -> BTreeMap<(String, String), Vec<DetailRecord>> {
    let mut groups: BTreeMap<(String, String), Vec<DetailRecord>> = BTreeMap::new();
    for r in records {
        let sid = r
            .get("Acct-Session-Id")
            .expect("Acct-Session-Id")
            .to_owned();
        groups
            .entry((sid, status_of(r).to_owned()))
            .or_default()
            .push(r.clone());
    }
    assert_eq!(groups.len(), 2 * calls.len(), "{records:#?}");
    for c in calls {
        let sid = c.id.to_hex();
        for status in ["Start", "Stop"] {
            let g = groups
                .get(&(sid.clone(), status.to_owned()))
                .unwrap_or_else(|| panic!("no {status} for {sid}: {records:#?}"));
            let r = &g[0];
            assert_eq!(r.get("User-Name"), Some(c.account), "{r:?}");
            assert_eq!(r.get("NAS-Identifier"), Some("imu-test"), "{r:?}");
            assert!(r.get("Event-Timestamp").is_some(), "{r:?}");
            assert!(r.get("Acct-Delay-Time").is_some(), "{r:?}");
            if status == "Stop" {
                assert_eq!(
                    r.get("Acct-Session-Time"),
                    Some(c.seconds.to_string().as_str()),
                    "{r:?}"
                );
                assert_eq!(
                    r.get("roamgate-charge-minor-units"),
                    Some(c.amount.to_string().as_str()),
                    "{r:?}"
                );
                assert_eq!(r.get("roamgate-currency"), Some("EUR"), "{r:?}");
            } else {
                assert_eq!(r.get("Acct-Session-Time"), None, "{r:?}");
                assert_eq!(r.get("roamgate-charge-minor-units"), None, "{r:?}");
            }
        }
    }
    groups
}

/// RFC 2866 duplicates only: within one (Acct-Session-Id, status type)
/// every record is the same but for Acct-Delay-Time (and FreeRADIUS's own
/// Timestamp), and each resend has a later Acct-Delay-Time.
fn check_duplicates(groups: &BTreeMap<(String, String), Vec<DetailRecord>>) -> usize {
    let mut dups = 0;
    for (key, g) in groups {
        let strip = |r: &DetailRecord| {
            let mut a = r.attributes.clone();
            a.remove("Acct-Delay-Time");
            a.remove("Timestamp");
            a
        };
        let delay =
            |r: &DetailRecord| -> u64 { r.get("Acct-Delay-Time").unwrap().parse().unwrap() };
        for w in g.windows(2) {
            assert_eq!(strip(&w[0]), strip(&w[1]), "duplicate {key:?} differs");
            assert!(
                delay(&w[1]) > delay(&w[0]),
                "duplicate {key:?} without a later Acct-Delay-Time: {g:#?}"
            );
        }
        dups += g.len() - 1;
    }
    dups
}

/// Runs the sender against `fr` until the outbox is empty.
fn deliver_all(fx: &Fixture, fr: &FreeRadius) -> Sender {
    let mut s = Sender::start(&fx.ledger, fx.section(fr.server()));
    wait_until("the outbox to empty", DELIVERY_TIMEOUT, || {
        fx.pending() == 0
    });
    s.stop();
    s
}

#[test]
fn sender_delivers_start_and_stop_of_each_call_to_freeradius() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let fr = FreeRadius::start(SECRET).unwrap();
    eprintln!("FreeRADIUS ready in {:?}", fr.started_in());
    let s = deliver_all(&fx, &fr);
    eprintln!("{}", s.stats_line());
    assert_eq!(fx.pending(), 0);
    assert_eq!(s.stat("delivered"), 2 * CALLS as u64, "{}", s.stats_line());
    assert_eq!(s.stat("failed"), 0, "{}", s.stats_line());
    let records = fr.records().unwrap();
    assert_eq!(records.len(), 2 * CALLS, "{records:#?}\n{}", fr.log());
    let groups = check_records(&fx.calls, &records);
    assert_eq!(check_duplicates(&groups), 0);
}

#[test]
fn records_survive_a_radius_server_that_is_down_then_all_arrive() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let port = freeradius::free_udp_port().unwrap();
    let mut s = Sender::start(&fx.ledger, fx.section(format!("127.0.0.1:{port}")));
    // Nothing listens: ICMP port unreachable. The first attempt (at 0 s)
    // times out, the second comes after the outbox's 2 s backoff.
    wait_until(
        "two unanswered attempts of every record",
        DELIVERY_TIMEOUT,
        || s.stat("retransmitted") >= 2 * 2 * CALLS as u64,
    );
    assert_eq!(s.stat("delivered"), 0, "{}", s.stats_line());
    assert_eq!(
        fx.pending(),
        2 * CALLS,
        "records lost while the server is down"
    );
    let attempts: Vec<u32> = fx
        .ledger
        .lock()
        .unwrap()
        .pending()
        .unwrap()
        .iter()
        .map(|r| r.attempts)
        .collect();
    assert!(attempts.iter().all(|&a| a >= 2), "{attempts:?}");

    let fr = FreeRadius::start_on(port, SECRET).unwrap();
    wait_until("the outbox to empty", DELIVERY_TIMEOUT, || {
        fx.pending() == 0
    });
    s.stop();
    eprintln!("{}", s.stats_line());
    assert_eq!(s.stat("delivered"), 2 * CALLS as u64, "{}", s.stats_line());
    let records = fr.records().unwrap();
    let groups = check_records(&fx.calls, &records);
    let dups = check_duplicates(&groups);
    eprintln!("{} records, {dups} RFC 2866 duplicates", records.len());
    // Every delivered record waited at least for the second backoff.
    for r in &records {
        let delay: u64 = r.get("Acct-Delay-Time").unwrap().parse().unwrap();
        assert!(delay >= 2, "{r:?}");
    }
}

#[test]
fn records_survive_a_sender_restart_while_the_server_is_down() {
    if skip() {
        return;
    }
    let mut fx = Fixture::new();
    let port = freeradius::free_udp_port().unwrap();
    let mut s = Sender::start(&fx.ledger, fx.section(format!("127.0.0.1:{port}")));
    wait_until(
        "one unanswered attempt of every record",
        DELIVERY_TIMEOUT,
        || s.stat("retransmitted") >= 2 * CALLS as u64,
    );
    s.stop();
    drop(s);
    fx.reopen();
    assert_eq!(fx.pending(), 2 * CALLS, "records lost across the restart");

    let fr = FreeRadius::start_on(port, SECRET).unwrap();
    let s = deliver_all(&fx, &fr);
    eprintln!("{}", s.stats_line());
    assert_eq!(s.stat("delivered"), 2 * CALLS as u64, "{}", s.stats_line());
    let records = fr.records().unwrap();
    check_duplicates(&check_records(&fx.calls, &records));
}

/// A fake server that answers every request with a response signed with
/// `secret`; returns how many it answered when `stop` is set.
fn fake_server(
    secret: &'static [u8],
    stop: Arc<std::sync::atomic::AtomicBool>,
) -> (u16, std::thread::JoinHandle<usize>) {
    use roamgate_billing::radius;
    let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = sock.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        let mut answered = 0;
        let mut buf = [0u8; 4096];
        while !stop.load(Ordering::Relaxed) {
            let Ok((n, from)) = sock.recv_from(&mut buf) else {
                continue;
            };
            let req = &buf[..n];
            let mut resp = vec![0u8; 20];
            resp[0] = radius::CODE_ACCOUNTING_RESPONSE;
            resp[1] = req[1];
            resp[3] = 20;
            let auth =
                radius::response_authenticator(&resp, &req[4..20].try_into().unwrap(), secret)
                    .unwrap();
            resp[4..20].copy_from_slice(&auth);
            sock.send_to(&resp, from).unwrap();
            answered += 1;
        }
        answered
    });
    (port, h)
}

/// The sender's own check, independent of FreeRADIUS (which stays silent
/// on a wrong secret): a response signed with another secret marks
/// nothing, and is counted as failed. Needs no FreeRADIUS.
#[test]
fn responses_that_do_not_verify_mark_nothing() {
    let fx = Fixture::new();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (port, server) = fake_server(b"another-secret", Arc::clone(&stop));
    let mut s = Sender::start(&fx.ledger, fx.section(format!("127.0.0.1:{port}")));
    wait_until(
        "every record answered and timed out once",
        DELIVERY_TIMEOUT,
        || s.stat("retransmitted") >= 2 * CALLS as u64,
    );
    s.stop();
    stop.store(true, Ordering::Relaxed);
    let answered = server.join().unwrap();
    eprintln!("{} answered={answered}", s.stats_line());
    assert!(answered >= 2 * CALLS, "{answered}");
    assert_eq!(s.stat("delivered"), 0);
    assert!(s.stat("failed") >= 2 * CALLS as u64, "{}", s.stats_line());
    assert_eq!(fx.pending(), 2 * CALLS);
}

#[test]
fn wrong_shared_secret_delivers_nothing_and_keeps_the_records() {
    if skip() {
        return;
    }
    let fx = Fixture::new();
    let fr = FreeRadius::start("not-the-same-secret").unwrap();
    let mut s = Sender::start(&fx.ledger, fx.section(fr.server()));
    wait_until(
        "every record sent and unanswered once",
        DELIVERY_TIMEOUT,
        || s.stat("retransmitted") >= 2 * CALLS as u64,
    );
    s.stop();
    eprintln!("{}", s.stats_line());
    assert!(s.stat("sent") >= 2 * CALLS as u64, "{}", s.stats_line());
    assert_eq!(s.stat("delivered"), 0, "{}", s.stats_line());
    assert_eq!(fx.pending(), 2 * CALLS);
    assert!(
        fr.records().unwrap().is_empty(),
        "FreeRADIUS recorded requests signed with another secret"
    );
    let log = fr.log();
    assert!(
        log.to_lowercase().contains("shared secret"),
        "FreeRADIUS did not say why it dropped them:\n{log}"
    );
}

#[test]
fn sender_refuses_a_secret_file_others_can_read() {
    let fx = Fixture::new();
    std::fs::set_permissions(fx.secret_file(), std::fs::Permissions::from_mode(0o640)).unwrap();
    let mut s = Sender::start(&fx.ledger, fx.section("127.0.0.1:9".into()));
    let e =
        s.rt.block_on(s.task.take().unwrap())
            .unwrap()
            .expect_err("started with a group-readable secret");
    assert!(format!("{e:#}").contains("chmod 600"), "{e:#}");
    assert_eq!(fx.pending(), 2 * CALLS);
}

/// radclient's Accounting-Request to FreeRADIUS with `secret`; whether an
/// Accounting-Response came back.
fn radclient(fr: &FreeRadius, secret: &str, session: &str) -> bool {
    let mut child = Command::new("radclient")
        .args(["-x", "-r", "1", "-t", "1", "-d"])
        .arg(fr.dir())
        .args([&fr.server(), "acct", secret])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(
            format!(
                "Acct-Status-Type = Stop\n\
                 Acct-Session-Id = \"{session}\"\n\
                 User-Name = \"carol\"\n\
                 NAS-Identifier = \"radclient\"\n\
                 Acct-Session-Time = 30\n\
                 roamgate-charge-minor-units = 160\n\
                 roamgate-currency = \"EUR\"\n"
            )
            .as_bytes(),
        )
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    eprintln!(
        "radclient ({}):\n{stdout}{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out.status.success() && stdout.contains("Received Accounting-Response")
}

#[test]
fn radclient_is_accepted_with_the_shared_secret_and_not_without() {
    if skip() {
        return;
    }
    if !have("radclient") {
        eprintln!("skipping: radclient not installed (freeradius-utils)");
        return;
    }
    let fr = FreeRadius::start(SECRET).unwrap();
    assert!(radclient(&fr, SECRET, "0000000000000000000000000000c0de"));
    let records = fr.records().unwrap();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].get("roamgate-charge-minor-units"), Some("160"));
    assert_eq!(records[0].get("User-Name"), Some("carol"));

    assert!(
        !radclient(&fr, "wrong-secret", "0000000000000000000000000000bad0"),
        "FreeRADIUS answered a request signed with another secret"
    );
    assert_eq!(fr.records().unwrap().len(), 1, "{:#?}", fr.records());
}

/// dumpcap on `lo`, one UDP port, into `pcap`; SIGINT stops it.
struct Capture(Child);

impl Capture {
    fn start(port: u16, pcap: &Path) -> Self {
        use std::io::Read as _;
        let mut child = Command::new("dumpcap")
            .args(["-q", "-i", "lo", "-f", &format!("udp port {port}"), "-w"])
            .arg(pcap)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = child.stderr.take().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut acc = Vec::new();
            let mut b = [0u8; 256];
            while let Ok(n) = err.read(&mut b) {
                if n == 0 {
                    break;
                }
                acc.extend_from_slice(&b[..n]);
                if String::from_utf8_lossy(&acc).contains("Capturing on") {
                    let _ = tx.send(());
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(20))
            .expect("dumpcap did not start capturing");
        std::thread::sleep(Duration::from_millis(200));
        Self(child)
    }

    fn stop(mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let pid = libc::pid_t::try_from(self.0.id()).unwrap();
        // SAFETY: kill(2) on our own unwaited child.
        unsafe { libc::kill(pid, libc::SIGINT) };
        self.0.wait().unwrap();
    }
}

#[test]
fn tshark_decodes_the_sender_and_freeradius_traffic_without_malformed_packets() {
    if skip() {
        return;
    }
    if !have("dumpcap") || !have("tshark") {
        eprintln!("skipping: dumpcap/tshark not installed (tshark)");
        return;
    }
    let fx = Fixture::new();
    let fr = FreeRadius::start(SECRET).unwrap();
    let pcap = fx.dir.path().join("radius.pcapng");
    let cap = Capture::start(fr.port(), &pcap);
    let s = deliver_all(&fx, &fr);
    cap.stop();
    assert_eq!(s.stat("delivered"), 2 * CALLS as u64);
    let out = Command::new("tshark")
        .arg("-r")
        .arg(&pcap)
        .args(["-d", &format!("udp.port=={},radius", fr.port())])
        .args([
            "-T",
            "fields",
            "-E",
            "separator=|",
            "-e",
            "radius.code",
            "-e",
            "radius.Acct_Status_Type",
            "-e",
            "radius.Acct_Session_Id",
            "-e",
            "radius.User_Name",
            "-e",
            "radius.avp.vendor_id",
            "-e",
            "_ws.malformed",
            "-e",
            "_ws.expert",
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('|').collect()).collect();
    let requests = lines.iter().filter(|f| f[0] == "4").count();
    let responses = lines.iter().filter(|f| f[0] == "5").count();
    assert_eq!(requests, s.stat("sent") as usize, "{text}");
    assert_eq!(responses, 2 * CALLS, "{text}");
    for f in &lines {
        assert!(
            f[5].is_empty() && f[6].is_empty(),
            "malformed or expert: {f:?}\n{text}"
        );
        if f[0] == "4" {
            assert!(f[2].len() == 32 && !f[3].is_empty(), "{f:?}");
        }
    }
    let stops_with_vsa = lines
        .iter()
        .filter(|f| f[0] == "4" && f[1] == "2" && f[4].contains("32473"))
        .count();
    assert!(stops_with_vsa >= CALLS, "{text}");
}
