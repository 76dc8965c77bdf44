//! The Kerberized billing service core end to end, with an in-process
//! KDC (roamgate-krb's core over a MemoryStore) on a fixed clock: wire
//! round trips through the real client and server, forged, replayed and
//! expired requests, and the client principal → account mapping.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_billing::client::{build_request, ClientError};
use roamgate_billing::server::{Batch, BillingServer, Refusal, ServerConfig};
use roamgate_billing::wire::{Op, OpResult, Reason};
use roamgate_billing::{AccountKind, CallId, LedgerStore, SqliteLedger, Tariff};
use roamgate_krb::ap::{ApError, KeySet};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

const REALM: &str = "HOME.TEST";
const SERVICE: &str = "billing/bill.home.test@HOME.TEST";
const U1: &str = "u1@HOME.TEST";
const U2: &str = "u2@HOME.TEST";
const U3: &str = "u3@HOME.TEST";

fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + s)
}

fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

struct Realm {
    kdc: Kdc,
    store: Arc<MemoryStore>,
}

impl Realm {
    fn new() -> Self {
        let store = Arc::new(MemoryStore::new(REALM));
        store.add_random(
            &Principal::krbtgt(REALM),
            &Etype::ALL,
            PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
        );
        for name in [SERVICE, U1, U2, U3] {
            store.add_random(&p(name), &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        let mut cfg = KdcConfig::default();
        cfg.policy.max_life = Duration::from_secs(3600);
        Self {
            kdc: Kdc::new(store.clone(), cfg),
            store,
        }
    }

    fn keys(&self, name: &str) -> KeySet {
        let e = self.store.get(&p(name)).unwrap().unwrap();
        KeySet(
            e.keys
                .iter()
                .map(|k| (p(name), k.kvno, k.key.clone()))
                .collect(),
        )
    }

    /// A billing service ticket in `client`'s name.
    fn ticket(&self, client: &str, now: SystemTime) -> Credential {
        let keys = self.keys(client).0.into_iter().map(|(_, _, k)| k).collect();
        let mut ex =
            AsExchange::new(p(client), ClientSecret::Keys(keys), AsOptions::default()).unwrap();
        let mut req = ex.first_request(now).unwrap();
        let tgt = loop {
            let reply = self.kdc.handle(&req, now).unwrap();
            match ex.handle_reply(&reply, now).unwrap() {
                AsStep::Send(next) => req = next,
                AsStep::Done(c) => break *c,
            }
        };
        let tgs = TgsExchange::new(&tgt, p(SERVICE), 0).unwrap();
        let reply = self.kdc.handle(&tgs.request(now).unwrap(), now).unwrap();
        tgs.handle_reply(&reply).unwrap()
    }
}

struct Service {
    server: BillingServer<KeySet>,
    ledger: SqliteLedger,
}

impl Service {
    /// u1 → acct-1 (postpaid), u2 → acct-2 (postpaid); u3 is bound to none.
    fn new(realm: &Realm) -> Self {
        let mut ledger = SqliteLedger::in_memory().unwrap();
        for (acct, who) in [("acct-1", U1), ("acct-2", U2)] {
            ledger
                .create_account(
                    acct,
                    AccountKind::Postpaid {
                        credit_limit: 1_000_000,
                    },
                )
                .unwrap();
            ledger
                .set_tariff(acct, Tariff::new(10, 2).unwrap(), "EUR")
                .unwrap();
            ledger.bind_principal(who, acct).unwrap();
        }
        Self {
            server: BillingServer::new(realm.keys(SERVICE), ServerConfig::new(p(SERVICE))),
            ledger,
        }
    }

    /// Handles the datagrams as one group commit; the answers in order
    /// (`None`: no answer).
    fn handle(&mut self, reqs: &[Vec<u8>], now: SystemTime) -> Vec<Option<Vec<u8>>> {
        let mut out = vec![None; reqs.len()];
        let mut batch = Batch::new();
        let mut idx = Vec::new();
        for (i, r) in reqs.iter().enumerate() {
            match self.server.accept(r, now) {
                Ok(a) => {
                    batch.push(a, &self.ledger, self.server.config().skew, now);
                    idx.push(i);
                }
                Err(rej) => out[i] = rej.reply,
            }
        }
        let outcomes = self.ledger.apply_batch(batch.ops());
        for (i, a) in idx.into_iter().zip(batch.finish(outcomes, now)) {
            out[i] = a.reply;
        }
        out
    }

    #[allow(clippy::result_large_err)]
    fn one(&mut self, cred: &Credential, op: Op, now: SystemTime) -> Result<OpResult, ClientError> {
        let (req, pending) = build_request(cred, op, now).unwrap();
        let reply = self.handle(&[req], now).pop().unwrap().expect("an answer");
        pending.open(&reply, now)
    }
}

fn open(call: u8, t: SystemTime) -> Op {
    Op::OpenCharge {
        call_id: [call; 16],
        started_at: t,
    }
}

fn close(call: u8, t: SystemTime) -> Op {
    Op::CloseCharge {
        call_id: [call; 16],
        ended_at: t,
    }
}

#[test]
fn open_and_close_round_trip_and_retries_are_idempotent() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    assert_eq!(
        svc.one(&u1, open(1, at(1)), at(1)).unwrap(),
        OpResult::Opened {
            allowed_seconds: None
        }
    );
    assert_eq!(
        svc.one(&u1, open(1, at(1)), at(2)).unwrap(),
        OpResult::AlreadyOpen {
            allowed_seconds: None
        }
    );
    assert_eq!(svc.ledger.open_charges_count().unwrap(), 1);
    // 30 s at 2/s plus the setup fee of 10.
    let closed = OpResult::Closed {
        amount: 70,
        seconds: 30,
    };
    assert_eq!(svc.one(&u1, close(1, at(31)), at(31)).unwrap(), closed);
    assert_eq!(
        svc.one(&u1, close(1, at(40)), at(41)).unwrap(),
        OpResult::AlreadyClosed {
            amount: 70,
            seconds: 30
        }
    );
    assert_eq!(svc.ledger.balance("acct-1").unwrap(), -70);
    assert_eq!(svc.ledger.open_charges_count().unwrap(), 0);
    assert_eq!(
        svc.ledger.outbox_pending_count().unwrap(),
        2,
        "a Start and a Stop"
    );
    assert_eq!(svc.ledger.total().unwrap(), 0);
    svc.ledger.check_consistency().unwrap();
}

#[test]
fn group_commit_answers_each_request() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    let u2 = realm.ticket(U2, at(0));
    let now = at(5);
    let mut reqs = Vec::new();
    let mut pend = Vec::new();
    for (cred, op) in [
        (&u1, open(1, at(1))),
        (&u2, open(2, at(1))),
        (&u1, open(1, at(1))),
        // Opened earlier in the same batch, by the same account.
        (&u1, close(1, at(4))),
        // Opened earlier in the batch, but by another account.
        (&u2, close(1, at(4))),
    ] {
        let (r, pe) = build_request(cred, op, now).unwrap();
        reqs.push(r);
        pend.push(pe);
    }
    let replies = svc.handle(&reqs, now);
    let got: Vec<OpResult> = replies
        .iter()
        .zip(&pend)
        .map(|(r, pe)| pe.open(r.as_ref().unwrap(), now).unwrap())
        .collect();
    assert_eq!(
        got,
        [
            OpResult::Opened {
                allowed_seconds: None
            },
            OpResult::Opened {
                allowed_seconds: None
            },
            OpResult::AlreadyOpen {
                allowed_seconds: None
            },
            OpResult::Closed {
                amount: 16,
                seconds: 3
            },
            OpResult::Refused {
                reason: Reason::NotYourCall
            },
        ]
    );
    assert_eq!(svc.ledger.balance("acct-2").unwrap(), 0);
    svc.ledger.check_consistency().unwrap();
}

#[test]
fn another_principal_can_never_touch_the_account() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    let u2 = realm.ticket(U2, at(0));
    let u3 = realm.ticket(U3, at(0));
    assert_eq!(
        svc.one(&u1, open(1, at(1)), at(1)).unwrap(),
        OpResult::Opened {
            allowed_seconds: None
        }
    );
    // u2 closing u1's call: refused, nothing charged, u1's charge open.
    assert_eq!(
        svc.one(&u2, close(1, at(100)), at(100)).unwrap(),
        OpResult::Refused {
            reason: Reason::NotYourCall
        }
    );
    // u2 opening u1's call id: the ledger's conflict.
    assert_eq!(
        svc.one(&u2, open(1, at(100)), at(100)).unwrap(),
        OpResult::Refused {
            reason: Reason::NotYourCall
        }
    );
    assert_eq!(svc.ledger.balance("acct-1").unwrap(), 0);
    assert_eq!(svc.ledger.balance("acct-2").unwrap(), 0);
    let rows = svc.ledger.report(at(0), at(1000)).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].account, "acct-1");
    assert_eq!(rows[0].amount, None, "still open");
    // u3 is bound to no account.
    assert_eq!(
        svc.one(&u3, open(3, at(100)), at(100)).unwrap(),
        OpResult::Refused {
            reason: Reason::NoAccount
        }
    );
    // u1 closes its own call.
    assert_eq!(
        svc.one(&u1, close(1, at(11)), at(101)).unwrap(),
        OpResult::Closed {
            amount: 30,
            seconds: 10
        }
    );
    assert_eq!(svc.ledger.balance("acct-1").unwrap(), -30);
    assert_eq!(svc.ledger.balance("acct-2").unwrap(), 0);
    assert_eq!(svc.ledger.total().unwrap(), 0);
    svc.ledger.check_consistency().unwrap();
}

#[test]
fn unknown_call_on_close_and_future_times_are_refused() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    assert_eq!(
        svc.one(&u1, close(9, at(5)), at(5)).unwrap(),
        OpResult::Refused {
            reason: Reason::UnknownCall
        }
    );
    assert_eq!(
        svc.one(&u1, open(9, at(5000)), at(5)).unwrap(),
        OpResult::Refused {
            reason: Reason::BadTime
        }
    );
    assert!(svc.ledger.report(at(0), at(10_000)).unwrap().is_empty());
    assert!(svc.ledger.outbox_records().unwrap().is_empty());
    // An open backdated beyond the clock skew (5 min) would bill time
    // never asked for; within it, it opens.
    assert_eq!(
        svc.one(&u1, open(9, at(0)), at(301)).unwrap(),
        OpResult::Refused {
            reason: Reason::BadTime
        }
    );
    assert!(svc.ledger.report(at(0), at(10_000)).unwrap().is_empty());
    assert!(matches!(
        svc.one(&u1, open(9, at(2)), at(301)).unwrap(),
        OpResult::Opened { .. }
    ));
    svc.ledger.check_consistency().unwrap();
}

#[test]
fn overflowing_amount_is_refused_and_nothing_charged() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let max = roamgate_billing::tariff::MAX_AMOUNT;
    svc.ledger
        .set_tariff("acct-1", Tariff::new(max, max).unwrap(), "EUR")
        .unwrap();
    svc.ledger
        .create_account("big", AccountKind::Postpaid { credit_limit: max })
        .unwrap();
    let u1 = realm.ticket(U1, at(0));
    let r = svc.one(&u1, open(4, at(1)), at(1)).unwrap();
    assert!(
        matches!(r, OpResult::Refused { .. }),
        "an absurd tariff cannot open: {r:?}"
    );
    assert_eq!(svc.ledger.balance("acct-1").unwrap(), 0);
    assert_eq!(svc.ledger.total().unwrap(), 0);
}

#[test]
fn forged_requests_are_refused() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    let (req, pending) = build_request(&u1, open(5, at(1)), at(1)).unwrap();
    let parsed = roamgate_billing::wire::Request::parse(&req).unwrap();
    let priv_at = req.len() - parsed.krb_priv.len();
    // Every single altered byte: an error answer or silence, never a
    // charge. Kerberos leaves a few bytes of the AP-REQ outside every
    // checksum (its DER framing, the ap-options): a flip there may still
    // authenticate, but it carries the sealed operation unchanged, so it
    // can only do what the original asked for.
    for i in 0..req.len() {
        let mut f = req.clone();
        f[i] ^= 0x01;
        let reply = svc.handle(&[f], at(1)).pop().unwrap();
        match reply.as_deref().map(roamgate_billing::wire::Reply::parse) {
            None | Some(Ok(roamgate_billing::wire::Reply::Error { .. })) => {}
            Some(Ok(roamgate_billing::wire::Reply::Answer(_))) => {
                assert!(
                    (12..priv_at).contains(&i),
                    "byte {i}: header or KRB-PRIV altered, yet answered"
                );
                assert_eq!(
                    pending.open(reply.as_ref().unwrap(), at(1)).unwrap(),
                    OpResult::Opened {
                        allowed_seconds: None
                    },
                    "byte {i}"
                );
            }
            Some(Err(e)) => panic!("byte {i}: unparsable answer {e}"),
        }
    }
    let rows = svc.ledger.report(at(0), at(100)).unwrap();
    assert!(rows.len() <= 1 && rows.iter().all(|r| r.call == CallId([5; 16])));
    let before = rows.len();
    // The KRB-PRIV of one request under the header and AP-REQ of another.
    let (a, _) = build_request(&u1, open(6, at(1)), at(1)).unwrap();
    let (b, pb) = build_request(&u1, open(7, at(1)), at(1)).unwrap();
    let ra = roamgate_billing::wire::Request::parse(&a).unwrap();
    let rb = roamgate_billing::wire::Request::parse(&b).unwrap();
    let spliced = roamgate_billing::wire::Request {
        nonce: rb.nonce,
        ap_req: rb.ap_req,
        krb_priv: ra.krb_priv,
    }
    .encode();
    let reply = svc.handle(&[spliced], at(1)).pop().unwrap().unwrap();
    assert!(matches!(
        pb.open(&reply, at(1)),
        Err(ClientError::Refused(Reason::AuthenticationFailed))
    ));
    assert_eq!(svc.ledger.report(at(0), at(100)).unwrap().len(), before);
    // Junk gets no answer at all.
    assert_eq!(svc.handle(&[vec![0xff; 40]], at(1)), vec![None]);
}

#[test]
fn replayed_request_is_refused() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    let (req, pending) = build_request(&u1, open(8, at(1)), at(1)).unwrap();
    let first = svc.handle(std::slice::from_ref(&req), at(1)).pop().unwrap();
    assert_eq!(
        pending.open(&first.unwrap(), at(1)).unwrap(),
        OpResult::Opened {
            allowed_seconds: None
        }
    );
    let again = svc
        .handle(std::slice::from_ref(&req), at(2))
        .pop()
        .unwrap()
        .unwrap();
    assert!(matches!(
        pending.open(&again, at(2)),
        Err(ClientError::Refused(Reason::AuthenticationFailed))
    ));
    // The cause, as the service logs it.
    let rej = svc.server.accept(&req, at(3)).unwrap_err();
    assert!(
        matches!(rej.refusal, Refusal::Ap(ApError::Replay(_))),
        "{:?}",
        rej.refusal
    );
    assert_eq!(svc.ledger.report(at(0), at(100)).unwrap().len(), 1);
}

#[test]
fn expired_ticket_is_refused() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    // The realm's tickets live one hour; two hours on, it is expired.
    let late = at(7200);
    let (req, pending) = build_request(&u1, open(9, late), late).unwrap();
    let reply = svc.handle(std::slice::from_ref(&req), late).pop().unwrap();
    assert!(matches!(
        pending.open(&reply.unwrap(), late),
        Err(ClientError::Refused(Reason::AuthenticationFailed))
    ));
    let (req, _) = build_request(&u1, open(9, late), late).unwrap();
    let rej = svc.server.accept(&req, late).unwrap_err();
    assert!(
        matches!(rej.refusal, Refusal::Ap(ApError::TicketExpired)),
        "{:?}",
        rej.refusal
    );
    assert!(svc.ledger.report(at(0), at(10_000)).unwrap().is_empty());
}

#[test]
fn answer_for_another_request_is_not_accepted() {
    let realm = Realm::new();
    let mut svc = Service::new(&realm);
    let u1 = realm.ticket(U1, at(0));
    let (a, pa) = build_request(&u1, open(10, at(1)), at(1)).unwrap();
    let (_, pb) = build_request(&u1, open(11, at(1)), at(1)).unwrap();
    let reply = svc.handle(&[a], at(1)).pop().unwrap().unwrap();
    assert!(matches!(
        pb.open(&reply, at(1)),
        Err(ClientError::WrongNonce { .. })
    ));
    let mut bad = reply.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    assert!(pa.open(&bad, at(1)).is_err());
    assert_eq!(
        pa.open(&reply, at(1)).unwrap(),
        OpResult::Opened {
            allowed_seconds: None
        }
    );
}

#[test]
fn principal_bindings_name_subscriber_accounts_only() {
    let mut l = SqliteLedger::in_memory().unwrap();
    l.create_account("a", AccountKind::Prepaid).unwrap();
    assert!(l.bind_principal(U1, "revenue").is_err());
    assert!(l.bind_principal(U1, "nope").is_err());
    assert!(l
        .set_tariff("a", Tariff::new(1, 1).unwrap(), "eur")
        .is_err());
    assert_eq!(l.account_for(U1).unwrap(), None);
    l.bind_principal(U1, "a").unwrap();
    assert_eq!(l.account_for(U1).unwrap().as_deref(), Some("a"));
    assert_eq!(l.tariff_for("a").unwrap(), None);
    l.set_tariff("a", Tariff::new(5, 1).unwrap(), "EUR")
        .unwrap();
    assert_eq!(
        l.tariff_for("a").unwrap(),
        Some((Tariff::new(5, 1).unwrap(), "EUR".to_owned()))
    );
    assert_eq!(l.charge_account(CallId([1; 16])).unwrap(), None);
}
