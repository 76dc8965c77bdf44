//! The directory protocol end to end, without sockets: tickets from the
//! real KDC core of roamgate-krb (AS, then TGS for the directory service),
//! the directory core over a SQLite store in a tempdir, fake clocks.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_directory::client::{build_request, ClientError};
use roamgate_directory::record::DialledNumber;
use roamgate_directory::server::{Outcome, Refusal};
use roamgate_directory::store::{AuditEntry, DirectoryStore, StoreError};
use roamgate_directory::wire::{Reason, Reply, HEADER_LEN};
use roamgate_directory::{
    Directory, DirectoryConfig, IdentityCode, MipKey, SqliteStore, UnitRecord,
};
use roamgate_krb::ap::{ApError, KeySet};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

const REALM: &str = "EXAMPLE.COM";
const SERVICE: &str = "directory/dir.example.com@EXAMPLE.COM";
const T0: u64 = 1_800_000_000;

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

const CODE_A: IdentityCode = IdentityCode::from_bytes([0xa1; 16]);
const CODE_B: IdentityCode = IdentityCode::from_bytes([0xb2; 16]);

struct World {
    kdc: Kdc,
    db: Arc<MemoryStore>,
    dir: Directory<SqliteStore, KeySet>,
    _tmp: tempfile::TempDir,
}

fn record(code: IdentityCode, principal: &str, host: u8) -> UnitRecord {
    UnitRecord {
        code,
        principal: p(principal),
        home_address: Ipv4Addr::new(10, 1, 0, host),
        home_agent: Ipv4Addr::new(10, 1, 0, 1),
        mip_spi: 0x1000 + u32::from(host),
        mip_key: MipKey::new(&[host; 32]).unwrap(),
        account: format!("acct-{host}"),
        dialled_number: Some(DialledNumber::parse("+4930555").unwrap()),
    }
}

fn service_keys(db: &MemoryStore) -> KeySet {
    let entry = db.get(&p(SERVICE)).unwrap().unwrap();
    KeySet(
        entry
            .keys
            .iter()
            .map(|k| (p(SERVICE), k.kvno, k.key.clone()))
            .collect(),
    )
}

fn world() -> World {
    let db = Arc::new(MemoryStore::new(REALM));
    let etypes = [Etype::Aes256CtsHmacSha196];
    db.add_random(&Principal::krbtgt(REALM), &etypes, PrincipalFlags::DEFAULT);
    for u in ["unit-a@EXAMPLE.COM", "unit-b@EXAMPLE.COM", SERVICE] {
        db.add_random(&p(u), &etypes, PrincipalFlags::DEFAULT);
    }
    let kdc = Kdc::new(db.clone(), KdcConfig::default());
    let keys = service_keys(&db);
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join("directory.db")).unwrap();
    store
        .add(&record(CODE_A, "unit-a@EXAMPLE.COM", 10))
        .unwrap();
    store
        .add(&record(CODE_B, "unit-b@EXAMPLE.COM", 11))
        .unwrap();
    let dir = Directory::new(store, keys, DirectoryConfig::new(p(SERVICE)));
    World {
        kdc,
        db,
        dir,
        _tmp: tmp,
    }
}

impl World {
    /// A directory service ticket for `client`, through AS and TGS at the
    /// KDC core, valid for `life` from `now`.
    fn ticket(&self, client: &str, now: SystemTime, life: Duration) -> Credential {
        let keys = self.db.get(&p(client)).unwrap().unwrap();
        let secret = ClientSecret::Keys(keys.keys.iter().map(|k| k.key.clone()).collect());
        let mut as_ex = AsExchange::new(
            p(client),
            secret,
            AsOptions {
                lifetime: life,
                ..Default::default()
            },
        )
        .unwrap();
        let mut req = as_ex.first_request(now).unwrap();
        let tgt = loop {
            let rep = self.kdc.handle(&req, now).expect("KDC answers");
            match as_ex.handle_reply(&rep, now).unwrap() {
                AsStep::Send(next) => req = next,
                AsStep::Done(c) => break *c,
            }
        };
        let tgs = TgsExchange::new(&tgt, p(SERVICE), 0).unwrap();
        let rep = self.kdc.handle(&tgs.request(now).unwrap(), now).unwrap();
        let cred = tgs.handle_reply(&rep).unwrap();
        assert_eq!(cred.client, p(client));
        assert_eq!(cred.server, p(SERVICE));
        cred
    }

    fn dir_keys(&self) -> KeySet {
        service_keys(&self.db)
    }

    fn audit(&self) -> Vec<(String, Option<String>, String)> {
        self.dir
            .store()
            .audit_log(100)
            .unwrap()
            .into_iter()
            .map(|e| (e.code.to_string(), e.client, e.outcome))
            .collect()
    }
}

const HOUR: Duration = Duration::from_secs(3600);

/// Asserts an error answer with `reason` and nothing else in it.
fn assert_error_answer(reply: &[u8], code: IdentityCode, reason: Reason) {
    assert_eq!(
        reply.len(),
        HEADER_LEN + 1,
        "an error answer carries no detail"
    );
    assert_eq!(Reply::parse(reply).unwrap(), Reply::Error { code, reason });
}

#[test]
fn authorised_fetch_returns_the_record_and_is_audited() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_request(&cred, CODE_A, at(5)).unwrap();
    let h = w.dir.handle(&req, at(6));
    assert!(matches!(h.outcome, Outcome::Served { code, .. } if code == CODE_A));
    let reply = h.reply.unwrap();
    let rec = pending.open(&reply, at(7)).unwrap();
    assert_eq!(rec, record(CODE_A, "unit-a@EXAMPLE.COM", 10));
    assert_eq!(rec.mip_key.expose(), &[10; 32]);
    // The MIP key and the account never cross in clear.
    let win = |needle: &[u8]| reply.windows(needle.len()).any(|x| x == needle);
    assert!(!win(&[10; 32]));
    assert!(!win(b"acct-10"));
    assert_eq!(
        w.audit(),
        vec![(
            CODE_A.to_string(),
            Some("unit-a@EXAMPLE.COM".into()),
            "served".into()
        )]
    );
    assert_eq!(w.dir.stats().served, 1);
}

#[test]
fn ticket_of_another_unit_is_refused_and_audited() {
    let mut w = world();
    // unit-b's own, valid ticket, asking for unit-a's code.
    let cred = w.ticket("unit-b@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_request(&cred, CODE_A, at(5)).unwrap();
    let h = w.dir.handle(&req, at(5));
    match &h.outcome {
        Outcome::Refused {
            refusal: Refusal::WrongPrincipal { client, subscriber },
            audit_failed: false,
            ..
        } => {
            assert_eq!(client, &p("unit-b@EXAMPLE.COM"));
            assert_eq!(subscriber, &p("unit-a@EXAMPLE.COM"));
        }
        other => panic!("{other:?}"),
    }
    let reply = h.reply.unwrap();
    assert_error_answer(&reply, CODE_A, Reason::NotAuthorised);
    assert!(matches!(
        pending.open(&reply, at(6)),
        Err(ClientError::Refused {
            reason: Reason::NotAuthorised,
            ..
        })
    ));
    let log = w.audit();
    assert_eq!(log.len(), 1);
    assert_eq!(log[0].0, CODE_A.to_string());
    assert_eq!(log[0].1.as_deref(), Some("unit-b@EXAMPLE.COM"));
    assert!(
        log[0]
            .2
            .starts_with("refused: ticket client unit-b@EXAMPLE.COM is not the unit's subscriber"),
        "{}",
        log[0].2
    );
}

#[test]
fn replayed_request_is_refused_and_audited() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, _) = build_request(&cred, CODE_A, at(5)).unwrap();
    assert!(matches!(
        w.dir.handle(&req, at(5)).outcome,
        Outcome::Served { .. }
    ));
    let h = w.dir.handle(&req, at(6));
    assert!(
        matches!(
            h.outcome,
            Outcome::Refused {
                refusal: Refusal::Ap(ApError::Replay(_)),
                ..
            }
        ),
        "{:?}",
        h.outcome
    );
    assert_error_answer(&h.reply.unwrap(), CODE_A, Reason::AuthenticationFailed);
    let log = w.audit();
    assert_eq!(log.len(), 2);
    assert_eq!(log[1].1.as_deref(), Some("unit-a@EXAMPLE.COM"));
    assert!(log[1].2.contains("replayed authenticator"), "{}", log[1].2);
}

#[test]
fn request_bound_to_its_code() {
    // An AP-REQ lifted from a request for unit-a's code and put under
    // another code fails the authenticator checksum.
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (mut req, _) = build_request(&cred, CODE_A, at(5)).unwrap();
    req[2..HEADER_LEN].copy_from_slice(CODE_B.as_bytes());
    let h = w.dir.handle(&req, at(5));
    assert!(
        matches!(
            h.outcome,
            Outcome::Refused {
                refusal: Refusal::Ap(ApError::ChecksumMismatch),
                ..
            }
        ),
        "{:?}",
        h.outcome
    );
    assert_error_answer(&h.reply.unwrap(), CODE_B, Reason::AuthenticationFailed);
}

#[test]
fn tampered_answer_is_detected_by_the_client() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_request(&cred, CODE_A, at(5)).unwrap();
    let reply = w.dir.handle(&req, at(5)).reply.unwrap();
    let Reply::Answer(a) = Reply::parse(&reply).unwrap() else {
        panic!("not an answer")
    };
    let rep_at = HEADER_LEN + 2;
    let priv_at = rep_at + a.ap_rep.len() + 2;
    // A flipped bit in the AP-REP's ciphertext (its last byte) or in the
    // KRB-PRIV's ciphertext: each a typed error, never a record.
    let mut t = reply.clone();
    t[priv_at - 3] ^= 1;
    assert!(
        matches!(pending.open(&t, at(6)), Err(ClientError::MutualAuth(_))),
        "{:?}",
        pending.open(&t, at(6))
    );
    let mut t = reply.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert!(
        matches!(pending.open(&t, at(6)), Err(ClientError::Sealed(_))),
        "{:?}",
        pending.open(&t, at(6))
    );
    // Every single-byte change is refused.
    for i in 0..reply.len() {
        let mut t = reply.clone();
        t[i] ^= 0x80;
        assert!(
            pending.open(&t, at(6)).is_err(),
            "byte {i} changed, still opened"
        );
    }
    // An answer to another request (same ticket) fails mutual auth.
    let (_, other) = build_request(&cred, CODE_A, at(9)).unwrap();
    assert!(matches!(
        other.open(&reply, at(9)),
        Err(ClientError::MutualAuth(ApError::MutualFailed))
    ));
    // The untouched answer still opens.
    pending.open(&reply, at(6)).unwrap();
}

#[test]
fn unknown_code_is_refused_like_another_units_code() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let unknown = IdentityCode::from_bytes([0xee; 16]);
    let (req, _) = build_request(&cred, unknown, at(5)).unwrap();
    let h = w.dir.handle(&req, at(5));
    assert!(
        matches!(
            h.outcome,
            Outcome::Refused {
                refusal: Refusal::UnknownCode,
                ..
            }
        ),
        "{:?}",
        h.outcome
    );
    // The same answer as for a code that exists but is not the caller's.
    assert_error_answer(&h.reply.unwrap(), unknown, Reason::NotAuthorised);
    let log = w.audit();
    assert_eq!(
        log,
        vec![(
            unknown.to_string(),
            Some("unit-a@EXAMPLE.COM".into()),
            "refused: unknown identity code".into()
        )]
    );
}

#[test]
fn expired_ticket_is_refused() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    // Past the end time plus the 300 s skew allowance, both clocks agreeing.
    let late = at(3600 + 301);
    let (req, _) = build_request(&cred, CODE_A, late).unwrap();
    let h = w.dir.handle(&req, late);
    assert!(
        matches!(
            h.outcome,
            Outcome::Refused {
                refusal: Refusal::Ap(ApError::TicketExpired),
                ..
            }
        ),
        "{:?}",
        h.outcome
    );
    assert_error_answer(&h.reply.unwrap(), CODE_A, Reason::AuthenticationFailed);
    assert!(w.audit()[0].2.contains("ticket expired"));
}

#[test]
fn skewed_and_foreign_service_tickets_are_refused() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, _) = build_request(&cred, CODE_A, at(5)).unwrap();
    let h = w.dir.handle(&req, at(5 + 301));
    assert!(matches!(
        h.outcome,
        Outcome::Refused {
            refusal: Refusal::Ap(ApError::Skew { .. }),
            ..
        }
    ));
    // A ticket for another service (the TGT itself) is not ours.
    let mut tgt_like = cred.clone();
    tgt_like.ticket.sname = roamgate_krb::messages::to_principal_name(&Principal::krbtgt(REALM))
        .unwrap()
        .0;
    let (req, _) = build_request(&tgt_like, CODE_A, at(10)).unwrap();
    let h = w.dir.handle(&req, at(10));
    assert!(matches!(
        h.outcome,
        Outcome::Refused {
            refusal: Refusal::Ap(ApError::NotUs { .. }),
            ..
        }
    ));
}

#[test]
fn junk_is_dropped_without_answer_or_audit() {
    let mut w = world();
    for junk in [&[][..], &[1, 1], &[2; 40], &[1, 1, 0, 0][..]] {
        let h = w.dir.handle(junk, at(0));
        assert!(h.reply.is_none());
        assert!(matches!(h.outcome, Outcome::Dropped(_)));
    }
    // A well-framed request with a garbage AP-REQ names a code: refused
    // and audited.
    let mut req = vec![1, 1];
    req.extend_from_slice(CODE_A.as_bytes());
    req.extend_from_slice(&[0, 3, 0x6e, 0x01, 0x00]);
    let h = w.dir.handle(&req, at(0));
    assert_error_answer(&h.reply.unwrap(), CODE_A, Reason::AuthenticationFailed);
    assert_eq!(w.audit().len(), 1);
    assert_eq!(w.audit()[0].1, None);
    assert_eq!(w.dir.stats().dropped, 4);
}

/// A store whose audit log cannot be written.
struct NoAudit(SqliteStore);

impl DirectoryStore for NoAudit {
    fn get(&self, c: &IdentityCode) -> Result<Option<UnitRecord>, StoreError> {
        self.0.get(c)
    }
    fn add(&self, r: &UnitRecord) -> Result<(), StoreError> {
        self.0.add(r)
    }
    fn put(&self, r: &UnitRecord) -> Result<(), StoreError> {
        self.0.put(r)
    }
    fn remove(&self, c: &IdentityCode) -> Result<bool, StoreError> {
        self.0.remove(c)
    }
    fn list(&self) -> Result<Vec<UnitRecord>, StoreError> {
        self.0.list()
    }
    fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        Err(StoreError::Exists(e.code))
    }
    fn audit_log(&self, n: usize) -> Result<Vec<AuditEntry>, StoreError> {
        self.0.audit_log(n)
    }
    fn audit_prune(&self, before: std::time::SystemTime) -> Result<u64, StoreError> {
        self.0.audit_prune(before)
    }
}

#[test]
fn no_read_leaves_without_its_audit_entry() {
    let w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let tmp = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&tmp.path().join("d.db")).unwrap();
    store
        .add(&record(CODE_A, "unit-a@EXAMPLE.COM", 10))
        .unwrap();
    let keys = w.dir_keys();
    let mut dir = Directory::new(NoAudit(store), keys, DirectoryConfig::new(p(SERVICE)));
    let (req, _) = build_request(&cred, CODE_A, at(5)).unwrap();
    let h = dir.handle(&req, at(5));
    assert!(
        matches!(
            h.outcome,
            Outcome::Refused {
                refusal: Refusal::AuditFailed,
                audit_failed: true,
                ..
            }
        ),
        "{:?}",
        h.outcome
    );
    assert_error_answer(&h.reply.unwrap(), CODE_A, Reason::Unavailable);
    assert_eq!(dir.stats().served, 0);
    assert_eq!(dir.stats().audit_failures, 2);
}
