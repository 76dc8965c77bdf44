//! Crash safety: a child process (this test binary again, this test only,
//! as roamgate's nofile test does) opens and closes calls with client
//! retries, duplicates and batches, and delivers the RADIUS outbox to a
//! fake server that is down for the first half of the runs. It is
//! SIGKILLed 20 times, each time at a random step of new work (it reports
//! its steps on stdout) plus a random few hundred microseconds, and each
//! run restarts from the beginning of its script, as a client that does
//! not know what got through would retry. After each kill the ledger is
//! reopened: the total is 0, every closed call is charged exactly once
//! with its tariff's amount, and the outbox holds exactly one Start per
//! charge and one Stop per closed charge. At the end one run goes through
//! all 1,000 calls: every call is charged once and every record was
//! delivered, duplicates only under the same Acct-Session-Id and status.

use std::collections::{HashMap, HashSet};
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use roamgate_billing::radius::{self, AccountingRequest, AcctStatusType, Nas};
use roamgate_billing::{
    AccountKind, CallId, ChargeStatus, LedgerError, LedgerStore, Op, Outbox, Outcome, RecordKind,
    SqliteLedger, Tariff,
};

const CHILD: &str = "RG_BILLING_CRASH_CHILD";
const CHILD_RUN: &str = "RG_BILLING_CRASH_RUN";
const TEST: &str = "crash_at_random_points_loses_nothing_and_charges_once";
const CALLS: u32 = 1_000;
const KILLS: u32 = 20;
const SECRET: &[u8] = b"crash test secret";
const ACCOUNTS: [&str; 3] = ["pre", "post-a", "post-b"];

fn t(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(1_800_000_000_000 + ms)
}

fn call(n: u32) -> CallId {
    let mut id = [0x5a; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    CallId(id)
}

fn call_number(c: &CallId) -> u32 {
    u32::from_be_bytes([c.0[12], c.0[13], c.0[14], c.0[15]])
}

/// Call `n`: its account, tariff, start and end (ms).
fn script(n: u32) -> (&'static str, Tariff, u64, u64) {
    let n64 = u64::from(n);
    let account = ACCOUNTS[(n % 3) as usize];
    let tariff = Tariff::new(i64::from(n % 7) * 10, i64::from(n % 5) + 1).unwrap();
    let start = n64 * 1_000;
    let end = start + 1 + (n64 * 7_919) % 600_000;
    (account, tariff, start, end)
}

fn expected_amount(n: u32) -> i64 {
    let (_, tariff, start, end) = script(n);
    tariff.charge(Duration::from_millis(end - start)).unwrap()
}

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn setup(path: &Path) {
    let mut l = SqliteLedger::open(path).unwrap();
    l.create_account("pre", AccountKind::Prepaid).unwrap();
    for a in ["post-a", "post-b"] {
        l.create_account(
            a,
            AccountKind::Postpaid {
                credit_limit: 1_000_000_000,
            },
        )
        .unwrap();
    }
    // Enough that no prepaid call is capped: the amounts stay the script's.
    l.credit("pre", 1_000_000_000).unwrap();
}

/// The fake RADIUS server's log: one line per verified request it
/// answered, "session-id status delay".
fn server_log(dir: &Path) -> PathBuf {
    dir.join("radius-server.log")
}

/// Hands what is due to the fake server, if it is up, and marks what it
/// answered.
fn deliver(l: &mut SqliteLedger, now: SystemTime, server_up: bool, log: &Path, ident: &mut u8) {
    let due = l.due(now, 64).unwrap();
    for rec in due {
        if !server_up {
            continue;
        }
        let sid = rec.call.to_hex();
        let req = rec
            .accounting_request(sid.as_bytes(), now, Nas::Identifier(b"crash-imu"), *b"EUR")
            .to_bytes(*ident, SECRET)
            .unwrap();
        *ident = ident.wrapping_add(1);
        // The server: verifies, records, answers.
        let p = radius::verify_request(&req, SECRET).unwrap();
        let r = AccountingRequest::parse(&p).unwrap();
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .unwrap();
        // One write(2) per line, so a kill cannot leave half a line.
        let line = format!(
            "{} {} {}\n",
            String::from_utf8_lossy(r.session_id),
            r.status.value(),
            r.delay_time.unwrap_or(0)
        );
        f.write_all(line.as_bytes()).unwrap();
        drop(f);
        let resp = radius::build_response(&req, SECRET).unwrap();
        radius::verify_response(&resp, &req, SECRET).unwrap();
        l.mark_sent(rec.id, now).unwrap();
    }
}

/// The child: the client's whole script, from the start.
fn child(path: &Path, run: u64, upto: u32) {
    let dir = path.parent().unwrap();
    let log = server_log(dir);
    let mut l = SqliteLedger::open(path).unwrap();
    l.set_minimum_seconds(1);
    let mut rng = Rng(run.wrapping_mul(0x1234_5678) ^ 0xc4a5);
    let server_up = run >= u64::from(KILLS) / 2;
    let mut ident = (run as u8).wrapping_mul(37);
    let check = |op: &Op, a: &Result<Outcome, LedgerError>| match (op, a) {
        (Op::Open { .. }, Ok(Outcome::Opened { .. } | Outcome::AlreadyOpen { .. })) => {}
        (Op::Close { call, .. }, Ok(Outcome::Closed { amount, .. }))
        | (Op::Close { call, .. }, Ok(Outcome::AlreadyClosed { amount, .. })) => {
            assert_eq!(*amount, expected_amount(call_number(call)), "{call}");
        }
        (op, a) => panic!("{op:?} answered {a:?}"),
    };
    let mut pending: Vec<Op> = Vec::new();
    // Call n opens at step n and closes at step n + 5: several are open
    // at once.
    let steps = upto + 5;
    let mut progress = std::io::stdout();
    for step in 0..steps {
        if step < upto {
            let (account, tariff, start, _) = script(step);
            pending.push(Op::Open {
                call: call(step),
                account: account.into(),
                tariff,
                started_at: t(start),
            });
        }
        if (5..upto + 5).contains(&step) {
            let n = step - 5;
            pending.push(Op::Close {
                call: call(n),
                ended_at: t(script(n).3),
            });
        }
        // Send alone, or gather a batch; sometimes twice (a retry after
        // a lost answer), sometimes one op again on its own (a duplicate).
        if pending.len() < 2 + rng.below(12) as usize && step + 1 < steps {
            continue;
        }
        let ops = std::mem::take(&mut pending);
        let rounds = 1 + usize::from(rng.below(4) == 0);
        for _ in 0..rounds {
            if rng.below(3) == 0 {
                for a in l.apply_batch(&ops).unwrap().iter().zip(&ops) {
                    check(a.1, a.0);
                }
            } else {
                for op in &ops {
                    let a = l.apply_one(op.clone());
                    check(op, &a);
                    if rng.below(10) == 0 {
                        check(op, &l.apply_one(op.clone()));
                    }
                }
            }
        }
        // Where it is, for the parent to choose its moment (stdout
        // directly: libtest does not capture it).
        writeln!(progress, "at {step}").unwrap();
        progress.flush().unwrap();
        if step % 10 == 0 {
            deliver(
                &mut l,
                t(u64::from(step) * 1_000 + 700_000),
                server_up,
                &log,
                &mut ident,
            );
        }
    }
    // Drain: far in the future, everything is due. Each run's drain
    // clock starts after the last one's, whose attempts it scheduled.
    if server_up {
        for i in 0..100 {
            if l.pending().unwrap().is_empty() {
                break;
            }
            let now = t(1_000_000_000_000 + run * 100_000_000 + i * 600_000);
            deliver(&mut l, now, true, &log, &mut ident);
        }
    }
}

/// The books after a run (killed or not); the closed calls.
fn check_books(path: &Path) -> HashSet<u32> {
    let l = SqliteLedger::open(path).unwrap();
    assert_eq!(l.total().unwrap(), 0);
    l.check_consistency().unwrap();
    let rows = l.report(UNIX_EPOCH, t(10_000_000_000)).unwrap();
    let mut closed = HashSet::new();
    for r in &rows {
        let n = call_number(&r.call);
        assert!(n < CALLS);
        assert_eq!(r.account, script(n).0);
        match r.status {
            ChargeStatus::Open => assert_eq!(r.amount, None),
            ChargeStatus::Closed => {
                assert_eq!(r.amount, Some(expected_amount(n)), "call {n}");
                closed.insert(n);
            }
            ChargeStatus::Expired => panic!("call {n} expired"),
        }
    }
    let charged: i64 = closed.iter().map(|n| expected_amount(*n)).sum();
    assert_eq!(l.balance("revenue").unwrap(), charged);
    let records = l.outbox_records().unwrap();
    let mut kinds: HashMap<(u32, RecordKind), usize> = HashMap::new();
    for r in &records {
        *kinds.entry((call_number(&r.call), r.kind)).or_default() += 1;
    }
    for r in &rows {
        let n = call_number(&r.call);
        assert_eq!(kinds.get(&(n, RecordKind::Start)), Some(&1), "start of {n}");
        let stops = kinds.get(&(n, RecordKind::Stop)).copied().unwrap_or(0);
        assert_eq!(stops, usize::from(closed.contains(&n)), "stop of {n}");
    }
    assert_eq!(records.len(), rows.len() + closed.len());
    closed
}

/// Run `run` of the child: calls `0..upto`.
fn spawn_child(path: &Path, run: u32, upto: u32) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args([TEST, "--exact", "--nocapture", "--test-threads=1"])
        .env(CHILD, path)
        .env(CHILD_RUN, format!("{run} {upto}"))
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn crash_at_random_points_loses_nothing_and_charges_once() {
    if let Some(path) = std::env::var_os(CHILD) {
        let arg = std::env::var(CHILD_RUN).unwrap();
        let (run, upto) = arg.split_once(' ').unwrap();
        child(
            Path::new(&path),
            run.parse().unwrap(),
            upto.parse().unwrap(),
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    setup(&path);
    let mut rng = Rng(0xdead_beef);
    let mut closed_before = 0;
    // Run r (killed) replays calls 0..r*50 and goes on into
    // r*50..(r+1)*50; it is killed at a random step of that new part, a
    // random few hundred microseconds after it reported the step.
    for run in 0..KILLS {
        let segment = CALLS / KILLS;
        let upto = (run + 1) * segment;
        let target = run * segment + rng.below(u64::from(segment) + 5) as u32;
        let mut child = spawn_child(&path, run, upto);
        let stdout = child.stdout.take().unwrap();
        let mut reached = false;
        for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
            let line = line.unwrap();
            let Some(step) = line.strip_prefix("at ") else {
                continue;
            };
            if step.parse::<u32>().unwrap() >= target {
                reached = true;
                break;
            }
        }
        let spin = Instant::now();
        let delay = Duration::from_micros(rng.below(800));
        while spin.elapsed() < delay {
            std::hint::spin_loop();
        }
        // std's kill is SIGKILL.
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert!(
            reached && out.status.signal() == Some(9),
            "run {run}: the child ended by itself ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let closed = check_books(&path).len();
        eprintln!("run {run}: killed at step {target}+, {closed} calls closed");
        assert!(closed >= closed_before, "closed calls went back");
        closed_before = closed;
    }
    // The last run, to the end, with the server up.
    let child = spawn_child(&path, KILLS, CALLS);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "final child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let closed = check_books(&path);
    assert_eq!(closed.len(), CALLS as usize);
    let l = SqliteLedger::open(&path).unwrap();
    assert_eq!(l.pending().unwrap(), vec![]);
    // Every Start and Stop reached the server; a duplicate is only a
    // retransmission of the same Acct-Session-Id and status.
    let log = std::fs::read_to_string(server_log(dir.path())).unwrap();
    let mut seen: HashMap<(String, u32), usize> = HashMap::new();
    for line in log.lines() {
        let mut f = line.split(' ');
        let sid = f.next().unwrap().to_owned();
        let status: u32 = f.next().unwrap().parse().unwrap();
        assert!(status == AcctStatusType::Start.value() || status == AcctStatusType::Stop.value());
        *seen.entry((sid, status)).or_default() += 1;
    }
    for n in 0..CALLS {
        let sid = call(n).to_hex();
        for s in [1, 2] {
            assert!(
                seen.contains_key(&(sid.clone(), s)),
                "call {n} status {s} lost"
            );
        }
    }
    assert_eq!(seen.len(), 2 * CALLS as usize);
    eprintln!(
        "{KILLS} kills; {} deliveries for {} records",
        log.lines().count(),
        seen.len()
    );
}
