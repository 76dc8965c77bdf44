//! The directory protocol end to end, without sockets: tickets from the
//! real KDC core of roamgate-krb (AS, then TGS for the directory service),
//! the directory core over a SQLite store in a tempdir, fake clocks.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_directory::client::{build_request, build_resolve_request, ClientError};
use roamgate_directory::record::{CallKey, DialledNumber, Resolution};
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
        dialled_number: Some(number(host)),
        call_key: Some(CallKey::new(18, 2, &[host ^ 0xff; 32]).unwrap()),
    }
}

/// The dialled number of the unit at `host`.
fn number(host: u8) -> DialledNumber {
    DialledNumber::parse(&format!("+4930555{host:03}")).unwrap()
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
    // outsider: a principal of the realm that is no unit's subscriber.
    for u in [
        "unit-a@EXAMPLE.COM",
        "unit-b@EXAMPLE.COM",
        "outsider@EXAMPLE.COM",
        SERVICE,
    ] {
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
        self.ticket_for(client, SERVICE, now, life)
    }

    /// A ticket for `service` in `client`'s name.
    fn ticket_for(
        &self,
        client: &str,
        service: &str,
        now: SystemTime,
        life: Duration,
    ) -> Credential {
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
        let tgs = TgsExchange::new(&tgt, p(service), 0).unwrap();
        let rep = self.kdc.handle(&tgs.request(now).unwrap(), now).unwrap();
        let cred = tgs.handle_reply(&rep).unwrap();
        assert_eq!(cred.client, p(client));
        assert_eq!(cred.server, p(service));
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
            .map(|e| {
                let subject = match (e.code, e.number) {
                    (_, Some(n)) => n.to_string(),
                    (Some(c), None) => c.to_string(),
                    (None, None) => "-".into(),
                };
                (subject, e.client, e.outcome)
            })
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
        Err(StoreError::Corrupt {
            code: format!("{:?}", e.code),
            what: "audit log is read-only".into(),
        })
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
    // Nor a resolution.
    let (req, _) = build_resolve_request(&cred, &number(10), at(6)).unwrap();
    let h = dir.handle(&req, at(6));
    assert!(matches!(resolve_refusal(&h), Refusal::AuditFailed));
    assert_resolve_error(&h.reply.unwrap(), &number(10), Reason::Unavailable);
    assert_eq!(dir.stats().resolved, 0);
}

// ---------------------------------------------------------------------------
// Number resolution (docs/directory.md §2.4-2.5, §4.1)

fn resolve_refusal(h: &roamgate_directory::server::Handled) -> &Refusal {
    match &h.outcome {
        Outcome::ResolveRefused { refusal, .. } => refusal,
        other => panic!("not a refused resolve: {other:?}"),
    }
}

/// Asserts an error answer to a resolve: 01 03 n digits reason.
fn assert_resolve_error(reply: &[u8], number: &DialledNumber, reason: Reason) {
    use roamgate_directory::wire::ResolveReply;
    assert_eq!(reply.len(), 3 + number.digits().len() + 1);
    assert_eq!(
        ResolveReply::parse(reply).unwrap(),
        ResolveReply::Error {
            number: number.clone(),
            reason
        }
    );
}

#[test]
fn resolves_another_units_number_and_audits_it() {
    let mut w = world();
    // unit-a dials unit-b.
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_resolve_request(&cred, &number(11), at(5)).unwrap();
    let h = w.dir.handle(&req, at(6));
    match &h.outcome {
        Outcome::Resolved {
            number: n,
            client,
            callee,
            call_principal,
        } => {
            assert_eq!(n, &number(11));
            assert_eq!(client, &p("unit-a@EXAMPLE.COM"));
            assert_eq!(callee, &CODE_B);
            assert_eq!(call_principal, &p("call/unit-b@EXAMPLE.COM"));
        }
        other => panic!("{other:?}"),
    }
    let reply = h.reply.unwrap();
    let res = pending.open(&reply, at(7)).unwrap();
    assert_eq!(
        res,
        Resolution {
            number: number(11),
            call_principal: p("call/unit-b@EXAMPLE.COM"),
            home_address: Ipv4Addr::new(10, 1, 0, 11),
        }
    );
    // Nothing of the callee's secrets or account in the answer, sealed or
    // not (the KRB-PRIV is encrypted; its plaintext has none either).
    let win = |needle: &[u8]| reply.windows(needle.len()).any(|x| x == needle);
    assert!(!win(&[11; 32]) && !win(&[11 ^ 0xff; 32]) && !win(b"acct-11"));
    assert!(!win(b"call/unit-b"), "the callee's name travels sealed");
    assert_eq!(
        w.audit(),
        vec![(
            number(11).to_string(),
            Some("unit-a@EXAMPLE.COM".into()),
            "resolved: call/unit-b@EXAMPLE.COM".into()
        )]
    );
    let log = w.dir.store().audit_log(1).unwrap();
    assert_eq!(log[0].code, Some(CODE_B));
    assert_eq!(w.dir.stats().resolved, 1);
    // A unit may resolve its own number too.
    let (req, pending) = build_resolve_request(&cred, &number(10), at(8)).unwrap();
    let reply = w.dir.handle(&req, at(8)).reply.unwrap();
    assert_eq!(
        pending.open(&reply, at(8)).unwrap().call_principal,
        p("call/unit-a@EXAMPLE.COM")
    );
}

#[test]
fn unknown_number_is_refused_with_its_reason() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let unknown = DialledNumber::parse("+15550000").unwrap();
    let (req, pending) = build_resolve_request(&cred, &unknown, at(5)).unwrap();
    let h = w.dir.handle(&req, at(5));
    assert!(matches!(resolve_refusal(&h), Refusal::UnknownNumber));
    let reply = h.reply.unwrap();
    assert_resolve_error(&reply, &unknown, Reason::UnknownNumber);
    assert!(reply.len() < req.len(), "no amplification");
    assert!(matches!(
        pending.open(&reply, at(6)),
        Err(ClientError::ResolveRefused {
            reason: Reason::UnknownNumber,
            ..
        })
    ));
    assert_eq!(
        w.audit(),
        vec![(
            unknown.to_string(),
            Some("unit-a@EXAMPLE.COM".into()),
            "refused: unknown number: no unit has it".into()
        )]
    );
    assert_eq!(w.dir.stats().refused_unknown_number, 1);
}

#[test]
fn a_principal_that_is_no_subscriber_may_not_resolve() {
    let mut w = world();
    let cred = w.ticket("outsider@EXAMPLE.COM", at(0), HOUR);
    // Refused alike for a known and an unknown number.
    for n in [number(11), DialledNumber::parse("+1555").unwrap()] {
        let (req, _) = build_resolve_request(&cred, &n, at(5)).unwrap();
        let h = w.dir.handle(&req, at(5));
        assert!(
            matches!(resolve_refusal(&h), Refusal::NotASubscriber(c) if *c == p("outsider@EXAMPLE.COM"))
        );
        assert_resolve_error(&h.reply.unwrap(), &n, Reason::NotAuthorised);
    }
    let log = w.audit();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].1.as_deref(), Some("outsider@EXAMPLE.COM"));
    assert!(
        log[0]
            .2
            .contains("outsider@EXAMPLE.COM is no unit's subscriber"),
        "{}",
        log[0].2
    );
}

#[test]
fn replayed_resolve_is_refused() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, _) = build_resolve_request(&cred, &number(11), at(5)).unwrap();
    assert!(matches!(
        w.dir.handle(&req, at(5)).outcome,
        Outcome::Resolved { .. }
    ));
    let h = w.dir.handle(&req, at(6));
    assert!(matches!(
        resolve_refusal(&h),
        Refusal::Ap(ApError::Replay(_))
    ));
    assert_resolve_error(&h.reply.unwrap(), &number(11), Reason::AuthenticationFailed);
    assert!(w.audit()[1].2.contains("replayed authenticator"));
    // A lookup's AP-REQ replayed as a resolve is refused too (checksum over
    // other bytes), and vice versa.
    let (look, _) = build_request(&cred, CODE_A, at(7)).unwrap();
    let ap_req = &look[HEADER_LEN + 2..];
    let forged = roamgate_directory::wire::ResolveRequest {
        number: number(11),
        ap_req,
    }
    .encode();
    let h = w.dir.handle(&forged, at(7));
    assert!(matches!(
        resolve_refusal(&h),
        Refusal::Ap(ApError::ChecksumMismatch)
    ));
}

#[test]
fn resolve_bound_to_its_number() {
    // The AP-REQ of a resolve of unit-b's number, moved under unit-a's
    // number: the authenticator checksum fails.
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, _) = build_resolve_request(&cred, &number(11), at(5)).unwrap();
    let n = number(11).digits().len();
    let ap_req = &req[3 + n + 2..];
    let moved = roamgate_directory::wire::ResolveRequest {
        number: number(10),
        ap_req,
    }
    .encode();
    let h = w.dir.handle(&moved, at(5));
    assert!(
        matches!(resolve_refusal(&h), Refusal::Ap(ApError::ChecksumMismatch)),
        "{:?}",
        h.outcome
    );
    assert_resolve_error(&h.reply.unwrap(), &number(10), Reason::AuthenticationFailed);
    // A shorter number too (the length byte is covered).
    let short = DialledNumber::parse("+4930555").unwrap();
    let moved = roamgate_directory::wire::ResolveRequest {
        number: short,
        ap_req,
    }
    .encode();
    let h = w.dir.handle(&moved, at(5));
    assert!(matches!(
        resolve_refusal(&h),
        Refusal::Ap(ApError::ChecksumMismatch)
    ));
}

#[test]
fn tampered_resolution_is_refused_by_the_client() {
    let mut w = world();
    let cred = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_resolve_request(&cred, &number(11), at(5)).unwrap();
    let reply = w.dir.handle(&req, at(5)).reply.unwrap();
    let mut t = reply.clone();
    let last = t.len() - 1;
    t[last] ^= 1;
    assert!(
        matches!(pending.open(&t, at(6)), Err(ClientError::Sealed(_))),
        "{:?}",
        pending.open(&t, at(6))
    );
    for i in 0..reply.len() {
        let mut t = reply.clone();
        t[i] ^= 0x80;
        assert!(
            pending.open(&t, at(6)).is_err(),
            "byte {i} changed, still opened"
        );
    }
    // The answer of another resolve (same ticket) fails mutual auth.
    let (_, other) = build_resolve_request(&cred, &number(11), at(9)).unwrap();
    assert!(matches!(
        other.open(&reply, at(9)),
        Err(ClientError::MutualAuth(ApError::MutualFailed))
    ));
    // An answer under another number is refused before any crypto.
    let (_, for_a) = build_resolve_request(&cred, &number(10), at(9)).unwrap();
    assert!(matches!(
        for_a.open(&reply, at(9)),
        Err(ClientError::WrongNumber { .. })
    ));
    pending.open(&reply, at(6)).unwrap();
}

#[test]
fn the_record_carries_the_call_key_for_the_callee_proxy() {
    // What the callee's proxy gets from its own lookup: the call key, as
    // service keys of its call principal.
    let mut w = world();
    let cred = w.ticket("unit-b@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_request(&cred, CODE_B, at(5)).unwrap();
    let rec = pending
        .open(&w.dir.handle(&req, at(5)).reply.unwrap(), at(5))
        .unwrap();
    let ks = rec.call_key_set().unwrap().unwrap();
    use roamgate_krb::ap::ServiceKeys as _;
    let key = ks
        .service_key(&p("call/unit-b@EXAMPLE.COM"), 18, Some(2))
        .unwrap();
    assert_eq!(key.as_bytes(), &[11 ^ 0xff; 32]);
    assert!(format!("{rec:?}").contains("CallKey(etype 18, kvno 2, <redacted 32 bytes>)"));
}

#[test]
fn junk_resolves_are_dropped() {
    let mut w = world();
    for junk in [
        &[1, 4][..],
        &[1, 4, 0],
        &[1, 4, 3, b'1', b'2'],
        &[1, 4, 1, b'x', 0, 1, 0],
    ] {
        let h = w.dir.handle(junk, at(0));
        assert!(h.reply.is_none(), "{junk:?}");
        assert!(matches!(h.outcome, Outcome::Dropped(_)));
    }
    assert!(w.audit().is_empty());
}

#[test]
fn a_resolved_callee_answers_the_call_handshake_with_its_call_key() {
    // The whole addressing + authentication path of issue 12: unit-a
    // resolves unit-b's number, gets a ticket for the call principal it
    // learnt, and opens the call; unit-b's proxy accepts it with the call
    // key from unit-b's own directory record.
    use roamgate_call::handshake::{answer, Caller};
    use roamgate_krb::replay::ReplayCache;
    let w = world();
    let call_b = "call/unit-b@EXAMPLE.COM";
    w.db.add_random(
        &p(call_b),
        &[Etype::Aes256CtsHmacSha196],
        PrincipalFlags::DEFAULT,
    );
    let k = w.db.get(&p(call_b)).unwrap().unwrap().keys[0].clone();
    let mut rec_b = record(CODE_B, "unit-b@EXAMPLE.COM", 11);
    rec_b.call_key = Some(CallKey::from_key(k.kvno, &k.key));
    w.dir.store().put(&rec_b).unwrap();
    let mut w = w;

    let cred_a = w.ticket("unit-a@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_resolve_request(&cred_a, &number(11), at(5)).unwrap();
    let res = pending
        .open(&w.dir.handle(&req, at(5)).reply.unwrap(), at(5))
        .unwrap();
    let call_ticket = w.ticket_for(
        "unit-a@EXAMPLE.COM",
        &res.call_principal.to_string(),
        at(6),
        HOUR,
    );

    let cred_b = w.ticket("unit-b@EXAMPLE.COM", at(0), HOUR);
    let (req, pending) = build_request(&cred_b, CODE_B, at(6)).unwrap();
    let own = pending
        .open(&w.dir.handle(&req, at(6)).reply.unwrap(), at(6))
        .unwrap();
    let keys_b = own.call_key_set().unwrap().unwrap();

    let call_id = [7u8; 16];
    let digits = number(11).digits().to_owned();
    let (ap_req, caller) = Caller::start(&call_ticket, call_id, &digits, at(7)).unwrap();
    let mut replay = ReplayCache::new(Duration::from_secs(300), 1024);
    let answered = answer(
        &ap_req,
        &keys_b,
        &own.call_principal(),
        call_id,
        &digits,
        &mut replay,
        at(7),
    )
    .unwrap();
    assert_eq!(answered.caller, p("unit-a@EXAMPLE.COM"));
    let keys_a = caller.finish(&answered.ap_rep).unwrap();
    assert_eq!(
        keys_a.send_signalling(),
        answered.keys.recv_signalling(),
        "both ends derive the same call keys"
    );
}
