//! Crash safety of `roamgate billing serve` (issue 13, "Crash safety"):
//! the built binary serves on 127.0.0.1 with a temp config and a keytab
//! for its service principal, made by an in-process KDC that also issues
//! the subscriber's ticket. A client opens and closes 1,000 calls, each
//! operation retried with a FRESH request after a timeout (the same call
//! id), while the test SIGKILLs the service at random points (at least
//! ten times) and restarts it. Afterwards every call is charged exactly
//! once with its tariff's amount, the ledger totals 0 and passes
//! `check_consistency`, and the outbox holds one Start and one Stop per
//! call.

use std::collections::HashMap;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use roamgate_billing::client::{build_request, ClientError};
use roamgate_billing::outbox::RecordKind;
use roamgate_billing::wire::{Op, OpResult, MAX_MESSAGE};
use roamgate_billing::{CallId, ChargeStatus, LedgerStore, SqliteLedger, Tariff};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::keytab::{Keytab, KeytabEntry};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

const REALM: &str = "CRASH.TEST";
const SERVICE: &str = "billing/bill.crash.test@CRASH.TEST";
const U1: &str = "u1@CRASH.TEST";
const CALLS: usize = 1000;
const MIN_KILLS: u32 = 10;
const SETUP_FEE: i64 = 10;
const PER_SECOND: i64 = 3;

fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

/// The service keytab in `dir`, and a billing ticket in U1's name.
fn realm(dir: &Path) -> (PathBuf, Credential) {
    let store = Arc::new(MemoryStore::new(REALM));
    store.add_random(
        &Principal::krbtgt(REALM),
        &Etype::ALL,
        PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
    );
    for name in [SERVICE, U1] {
        store.add_random(&p(name), &Etype::ALL, PrincipalFlags::DEFAULT);
    }
    let kdc = Kdc::new(store.clone(), KdcConfig::default());
    let mut kt = Keytab::new();
    for k in &store.get(&p(SERVICE)).unwrap().unwrap().keys {
        kt.push(KeytabEntry {
            principal: p(SERVICE),
            timestamp: 0,
            kvno: k.kvno,
            key: k.key.clone(),
        });
    }
    let keytab = dir.join("billing.keytab");
    kt.save(&keytab).unwrap();
    let now = SystemTime::now();
    let keys = store.get(&p(U1)).unwrap().unwrap();
    let secret = ClientSecret::Keys(keys.keys.iter().map(|k| k.key.clone()).collect());
    let mut ex = AsExchange::new(p(U1), secret, AsOptions::default()).unwrap();
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
    let cred = tgs
        .handle_reply(&kdc.handle(&tgs.request(now).unwrap(), now).unwrap())
        .unwrap();
    (keytab, cred)
}

fn roamgate(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_roamgate"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "roamgate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn start(config: &Path, log: &Path) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .unwrap();
    Command::new(env!("CARGO_BIN_EXE_roamgate"))
        .args(["billing", "serve", "-c", config.to_str().unwrap()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap()
}

/// xorshift64: the kill schedule, reproducible from the printed seed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

/// Sends `op` until the service answers it (fresh request each time);
/// returns the authenticated result.
fn until_answered(
    sock: &UdpSocket,
    cred: &Credential,
    op: Op,
    to: std::net::SocketAddr,
) -> OpResult {
    let mut buf = vec![0u8; MAX_MESSAGE];
    let deadline = Instant::now() + Duration::from_secs(120);
    while Instant::now() < deadline {
        let (req, pending) = build_request(cred, op, SystemTime::now()).unwrap();
        // The service may be down (ECONNREFUSED from an earlier send): retry.
        let _ = sock.send_to(&req, to);
        let wait = Instant::now() + Duration::from_millis(400);
        while Instant::now() < wait {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => match pending.open(&buf[..n], SystemTime::now()) {
                    Ok(r) => return r,
                    // An answer to an earlier attempt: keep waiting.
                    Err(ClientError::WrongNonce { .. }) => continue,
                    Err(ClientError::Refused(reason)) => {
                        panic!("{op:?} refused: {reason}")
                    }
                    Err(e) => panic!("{op:?}: {e}"),
                },
                Err(_) => break,
            }
        }
    }
    panic!("no answer for {op:?} in 120 s");
}

#[test]
fn sigkill_during_1000_calls_charges_each_exactly_once() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let (keytab, cred) = realm(dir);
    let port = UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let db = dir.join("state/billing.sqlite");
    let config = dir.join("billing.toml");
    std::fs::write(
        &config,
        format!(
            "[billing]\nlisten = \"127.0.0.1:{port}\"\ndatabase = \"{}\"\nexpire_every_secs = 3600\n\
             [kerberos]\nkeytab = \"{}\"\nservice = \"{SERVICE}\"\n[log]\nlevel = \"warn\"\n",
            db.display(),
            keytab.display()
        ),
    )
    .unwrap();
    let c = config.to_str().unwrap();
    roamgate(&[
        "billing",
        "add-account",
        "-c",
        c,
        "acct-1",
        "--principal",
        U1,
        "--postpaid",
        "--credit-limit",
        "1000000000",
        "--setup-fee",
        &SETUP_FEE.to_string(),
        "--per-second",
        &PER_SECOND.to_string(),
    ]);

    let log = dir.join("serve.log");
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    eprintln!("kill schedule seed {seed:#x}");
    let done = Arc::new(AtomicBool::new(false));
    let kills = Arc::new(AtomicU32::new(0));
    let killer = {
        let (done, kills, config, log) = (done.clone(), kills.clone(), config.clone(), log.clone());
        std::thread::spawn(move || {
            let mut rng = Rng(seed);
            let mut child = start(&config, &log);
            while !done.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(30 + rng.below(300)));
                if done.load(Ordering::Relaxed) {
                    break;
                }
                // SIGKILL: no shutdown path runs.
                child.kill().unwrap();
                child.wait().unwrap();
                kills.fetch_add(1, Ordering::Relaxed);
                child = start(&config, &log);
            }
            child.kill().unwrap();
            child.wait().unwrap();
        })
    };

    let to = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let sock = UdpSocket::bind("127.0.0.1:0").unwrap();
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Opens are dated now: the service refuses one backdated beyond the
    // clock skew.
    let base = SystemTime::now();
    let tariff = Tariff::new(SETUP_FEE, PER_SECOND).unwrap();
    let mut want = HashMap::new();
    for i in 0..CALLS {
        // Spread the kills over the whole run.
        while kills.load(Ordering::Relaxed) < (i as u32 * (MIN_KILLS + 2)) / CALLS as u32 {
            std::thread::sleep(Duration::from_millis(5));
        }
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        id[8..].copy_from_slice(&seed.to_be_bytes());
        let started = base + Duration::from_millis(i as u64);
        let secs = Duration::from_millis(((i % 90) * 1000 + i % 7) as u64);
        let r = until_answered(
            &sock,
            &cred,
            Op::OpenCharge {
                call_id: id,
                started_at: started,
            },
            to,
        );
        assert!(
            matches!(r, OpResult::Opened { .. } | OpResult::AlreadyOpen { .. }),
            "call {i}: {r:?}"
        );
        let r = until_answered(
            &sock,
            &cred,
            Op::CloseCharge {
                call_id: id,
                ended_at: started + secs,
            },
            to,
        );
        let amount = tariff.charge(secs).unwrap();
        match r {
            OpResult::Closed { amount: a, .. } | OpResult::AlreadyClosed { amount: a, .. } => {
                assert_eq!(a, amount, "call {i}")
            }
            other => panic!("call {i}: close answered {other:?}"),
        }
        want.insert(CallId(id), amount);
    }
    done.store(true, Ordering::Relaxed);
    killer.join().unwrap();
    let kills = kills.load(Ordering::Relaxed);
    assert!(kills >= MIN_KILLS, "only {kills} kills");
    eprintln!("{kills} SIGKILLs during {CALLS} calls");

    let ledger = SqliteLedger::open(&db).unwrap();
    assert_eq!(ledger.total().unwrap(), 0);
    ledger.check_consistency().unwrap();
    let rows = ledger
        .report(base - Duration::from_secs(1), SystemTime::now())
        .unwrap();
    assert_eq!(rows.len(), CALLS, "one charge per call");
    let mut sum = 0i64;
    for r in &rows {
        assert_eq!(r.status, ChargeStatus::Closed, "{:?}", r.call);
        assert_eq!(r.account, "acct-1");
        assert_eq!(Some(want[&r.call]), r.amount, "{:?}", r.call);
        sum += r.amount.unwrap();
    }
    assert_eq!(ledger.balance("acct-1").unwrap(), -sum);
    assert_eq!(ledger.balance("revenue").unwrap(), sum);
    let mut records: HashMap<(CallId, RecordKind), usize> = HashMap::new();
    for rec in ledger.outbox_records().unwrap() {
        *records.entry((rec.call, rec.kind)).or_default() += 1;
    }
    assert_eq!(records.len(), 2 * CALLS);
    for call in want.keys() {
        assert_eq!(records.get(&(*call, RecordKind::Start)), Some(&1));
        assert_eq!(records.get(&(*call, RecordKind::Stop)), Some(&1));
    }
    // The CLI reads the same file: a header and one row per call.
    let csv = roamgate(&[
        "billing",
        "report",
        "-c",
        c,
        "--from",
        "0",
        "--to",
        "4000000000",
    ]);
    assert_eq!(csv.lines().count(), CALLS + 1);
}
