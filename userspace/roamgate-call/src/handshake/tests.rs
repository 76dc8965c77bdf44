//! The call handshake against roamgate-krb's KDC core, on a fixed clock.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb::ap::{accept_ap_req, AcceptParams, ApError, KeySet};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientSecret, TgsExchange};
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

use super::*;

const REALM: &str = "HOME.TEST";
const CALLER: &str = "unit1@HOME.TEST";
const CALLEE: &str = "call/unit2@HOME.TEST";
const OTHER_CALLEE: &str = "call/unit3@HOME.TEST";
const CALL: CallId = [7; 16];
const NUMBER: &str = "4940123456";

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
        for name in [CALLER, CALLEE, OTHER_CALLEE] {
            store.add_random(&p(name), &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        let kdc = Kdc::new(store.clone(), KdcConfig::default());
        Self { kdc, store }
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

    /// The caller's proxy: a TGT as the subscriber, then a ticket for the
    /// callee's call principal.
    fn ticket(&self, callee: &str, now: SystemTime) -> Credential {
        let keys = self.keys(CALLER).0.into_iter().map(|(_, _, k)| k).collect();
        let mut ex =
            AsExchange::new(p(CALLER), ClientSecret::Keys(keys), AsOptions::default()).unwrap();
        let mut req = ex.first_request(now).unwrap();
        let tgt = loop {
            let reply = self.kdc.handle(&req, now).unwrap();
            match ex.handle_reply(&reply, now).unwrap() {
                AsStep::Send(next) => req = next,
                AsStep::Done(c) => break *c,
            }
        };
        let tgs = TgsExchange::new(&tgt, p(callee), 0).unwrap();
        let reply = self.kdc.handle(&tgs.request(now).unwrap(), now).unwrap();
        tgs.handle_reply(&reply).unwrap()
    }
}

fn answer_at(
    realm: &Realm,
    ap_req: &[u8],
    call_id: CallId,
    number: &str,
    replay: &mut ReplayCache,
) -> Result<Answered, HandshakeError> {
    answer(
        ap_req,
        &realm.keys(CALLEE),
        &p(CALLEE),
        call_id,
        number,
        replay,
        at(1),
    )
}

#[test]
fn both_ends_derive_the_same_keys_and_each_direction_its_own() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, caller) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    let answered = answer_at(&realm, &ap_req, CALL, NUMBER, &mut ReplayCache::default()).unwrap();
    assert_eq!(answered.caller, p(CALLER));
    assert_eq!(caller.setup_key(), &answered.setup_key);
    let setup_key = caller.setup_key().clone();
    let ours = caller.finish(&answered.ap_rep).unwrap();
    let theirs = answered.keys;
    assert_eq!(ours.role(), Role::Caller);
    assert_eq!(theirs.role(), Role::Callee);

    assert_eq!(ours.send_signalling(), theirs.recv_signalling());
    assert_eq!(ours.recv_signalling(), theirs.send_signalling());
    assert_ne!(ours.send_signalling(), ours.recv_signalling());
    assert_ne!(ours.send_signalling(), setup_key);
    for (k, s) in [(16, 14), (16, 12)] {
        let (a, b) = (ours.send_srtp(k, s), theirs.recv_srtp(k, s));
        assert_eq!(a, b);
        assert_eq!((a.key.len(), a.salt.len()), (k, s));
        assert_eq!(ours.recv_srtp(k, s), theirs.send_srtp(k, s));
        assert_ne!(ours.send_srtp(k, s).key, ours.recv_srtp(k, s).key);
    }
}

#[test]
fn every_call_gets_fresh_keys() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let mut replay = ReplayCache::default();
    let mut keys = Vec::new();
    for n in 0..2u8 {
        let call = [n; 16];
        let (ap_req, caller) = Caller::start(
            &ticket,
            call,
            NUMBER,
            at(1) + Duration::from_micros(n.into()),
        )
        .unwrap();
        let answered = answer_at(&realm, &ap_req, call, NUMBER, &mut replay).unwrap();
        keys.push(caller.finish(&answered.ap_rep).unwrap().send_srtp(16, 14));
    }
    assert_ne!(keys[0], keys[1]);
}

#[test]
fn a_replayed_ap_req_is_refused_with_call_rejected() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, _) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    let mut replay = ReplayCache::default();
    answer_at(&realm, &ap_req, CALL, NUMBER, &mut replay).unwrap();
    let err = answer_at(&realm, &ap_req, CALL, NUMBER, &mut replay).unwrap_err();
    assert!(
        matches!(err, HandshakeError::Refused(ref e) if matches!(**e, ApError::Replay(ref c) if *c == p(CALLER))),
        "{err}"
    );
    assert_eq!(err.q850_cause(), 21);
}

#[test]
fn a_ticket_for_another_callee_is_refused() {
    let realm = Realm::new();
    let ticket = realm.ticket(OTHER_CALLEE, at(0));
    let (ap_req, _) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    let err = answer_at(&realm, &ap_req, CALL, NUMBER, &mut ReplayCache::default()).unwrap_err();
    assert!(
        matches!(err, HandshakeError::Refused(ref e) if matches!(**e, ApError::NotUs { .. })),
        "{err}"
    );
    assert_eq!(err.q850_cause(), 21);
}

#[test]
fn a_ticket_under_a_key_the_callee_does_not_hold_is_refused() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, _) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    // The callee's keys as another realm would have them: same name, other keys.
    let forged = Realm::new();
    let err = answer(
        &ap_req,
        &forged.keys(CALLEE),
        &p(CALLEE),
        CALL,
        NUMBER,
        &mut ReplayCache::default(),
        at(1),
    )
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::Refused(ref e) if matches!(**e, ApError::BadTicketIntegrity(_))),
        "{err}"
    );
}

#[test]
fn an_ap_req_is_good_for_its_own_call_and_number_only() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, _) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    for (call, number) in [([8; 16], NUMBER), (CALL, "4940999999")] {
        let err =
            answer_at(&realm, &ap_req, call, number, &mut ReplayCache::default()).unwrap_err();
        assert!(
            matches!(err, HandshakeError::Refused(ref e) if matches!(**e, ApError::ChecksumMismatch)),
            "{err}"
        );
    }
}

#[test]
fn an_expired_ticket_is_refused() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let late = ticket.end_time + Duration::from_secs(3600);
    let (ap_req, _) = Caller::start(&ticket, CALL, NUMBER, late).unwrap();
    let err = answer(
        &ap_req,
        &realm.keys(CALLEE),
        &p(CALLEE),
        CALL,
        NUMBER,
        &mut ReplayCache::default(),
        late,
    )
    .unwrap_err();
    assert!(
        matches!(err, HandshakeError::Refused(ref e) if matches!(**e, ApError::TicketExpired)),
        "{err}"
    );
}

#[test]
fn a_tampered_or_foreign_ap_rep_fails_mutual_authentication() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, caller) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    let answered = answer_at(&realm, &ap_req, CALL, NUMBER, &mut ReplayCache::default()).unwrap();
    let mut bad = answered.ap_rep.clone();
    let n = bad.len();
    bad[n - 3] ^= 1;
    assert!(matches!(
        caller.finish(&bad),
        Err(HandshakeError::MutualFailed(_))
    ));

    // An AP-REP of another call, correct in itself, does not answer ours.
    let (ap_req2, caller2) =
        Caller::start(&ticket, CALL, NUMBER, at(1) + Duration::from_micros(5)).unwrap();
    let _ = answer_at(&realm, &ap_req2, CALL, NUMBER, &mut ReplayCache::default()).unwrap();
    assert!(matches!(
        caller2.finish(&answered.ap_rep),
        Err(HandshakeError::MutualFailed(_))
    ));
    assert!(matches!(
        Caller::start(&ticket, CALL, NUMBER, at(1))
            .unwrap()
            .1
            .finish(b"\x30\x03garbage"),
        Err(HandshakeError::MutualFailed(_))
    ));
}

#[test]
fn an_ap_rep_without_the_callees_subkey_is_refused() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (ap_req, caller) = Caller::start(&ticket, CALL, NUMBER, at(1)).unwrap();
    let bound = bound_data(&CALL, NUMBER);
    let accepted = accept_ap_req(
        &ap_req,
        &realm.keys(CALLEE),
        &AcceptParams {
            app_data: Some(&bound),
            ..AcceptParams::default()
        },
        &mut ReplayCache::default(),
        at(1),
    )
    .unwrap();
    let rep = accepted.ap_rep(None, None);
    assert!(matches!(
        caller.finish(&rep),
        Err(HandshakeError::NoCalleeSubkey)
    ));
}
