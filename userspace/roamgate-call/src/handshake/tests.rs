//! The call handshake against roamgate-krb's KDC core, on a fixed clock.

use std::time::Duration;

use roamgate_krb::ap::{accept_ap_req, AcceptParams, ApError};
use roamgate_krb::replay::ReplayCache;

use super::*;
use crate::test_realm::*;

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
