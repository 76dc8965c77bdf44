//! A whole call through the wire bytes: both state machines, the real
//! H.225.0 encoding and the H.235.1 hashed token.

use std::net::{Ipv4Addr, SocketAddrV4};

use roamgate_krb::replay::ReplayCache;

use super::*;
use crate::call::{Call, Event, Outgoing, RefuseError, State};
use crate::test_realm::*;

fn ends(from: &str, to: &str) -> Ends {
    Ends {
        sender: from.into(),
        receiver: to.into(),
    }
}

fn ch(law: Law, last: u8) -> Channel {
    Channel {
        law,
        rtp: SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, last), 40000),
    }
}

fn caller_bytes(o: &Outgoing) -> Vec<u8> {
    encode(&o.signal, 7, false, o.key.as_ref(), &ends(CALLER, CALLEE)).unwrap()
}

fn callee_bytes(o: &Outgoing) -> Vec<u8> {
    encode(&o.signal, 7, true, o.key.as_ref(), &ends(CALLEE, CALLER)).unwrap()
}

#[test]
fn a_call_over_the_wire_bytes_connects_and_releases() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let offer = vec![ch(Law::Mu, 51), ch(Law::A, 51)];
    let (mut caller, setup) =
        Call::dial(&ticket, CALL, NUMBER, Some("4940111"), offer, at(1)).unwrap();
    let setup_bytes = caller_bytes(&setup);
    assert!(setup_bytes.len() < 2048, "{}", setup_bytes.len());

    let got = decode(&setup_bytes).unwrap();
    assert_eq!(got.signal.kind, Kind::Setup);
    assert_eq!(got.signal.called_number.as_deref(), Some(NUMBER));
    assert_eq!(got.signal.channels.len(), 2);
    assert_eq!(got.sender.as_deref(), Some(CALLER));
    let mut replay = ReplayCache::default();
    let (mut callee, answers) = Call::answer_setup(
        &got.signal,
        &|k| got.verify(k),
        &realm.keys(CALLEE),
        &p(CALLEE),
        NUMBER,
        &[ch(Law::Mu, 52)],
        &mut replay,
        at(1),
    )
    .unwrap();
    for a in &answers {
        let r = decode(&callee_bytes(a)).unwrap();
        assert!(r.from_callee);
        caller
            .on_signal(&r.signal, &|k| r.verify(k), at(2))
            .unwrap();
    }
    assert_eq!(caller.state(), State::Alerting);
    let (connect, _) = callee.accept(at(2)).unwrap();
    let r = decode(&callee_bytes(&connect)).unwrap();
    let ev = caller
        .on_signal(&r.signal, &|k| r.verify(k), at(2))
        .unwrap();
    assert!(matches!(ev, Some(Event::Connected { remote, .. }) if remote == ch(Law::Mu, 52)));

    // A forged RELEASE COMPLETE: the right shape, the wrong key.
    let (release, _) = callee.hang_up(cause::NORMAL_CLEARING, at(3)).unwrap();
    let forged = encode(
        &release.signal,
        7,
        true,
        Some(&caller.keys().unwrap().send_signalling()),
        &ends(CALLEE, CALLER),
    )
    .unwrap();
    let f = decode(&forged).unwrap();
    assert!(caller
        .on_signal(&f.signal, &|k| f.verify(k), at(3))
        .is_err());
    // A byte flipped in the genuine one.
    let genuine = callee_bytes(&release);
    let mut flipped = genuine.clone();
    let n = flipped.len();
    flipped[n - 20] ^= 0x10;
    if let Ok(f) = decode(&flipped) {
        assert!(caller
            .on_signal(&f.signal, &|k| f.verify(k), at(3))
            .is_err());
    }
    assert_eq!(caller.state(), State::Connected);
    let r = decode(&genuine).unwrap();
    let ev = caller
        .on_signal(&r.signal, &|k| r.verify(k), at(3))
        .unwrap();
    assert!(matches!(ev, Some(Event::Released { cause: 16, .. })));
}

#[test]
fn a_setup_altered_on_the_wire_is_refused_with_call_rejected() {
    let realm = Realm::new();
    let ticket = realm.ticket(CALLEE, at(0));
    let (_caller, setup) = Call::dial(
        &ticket,
        CALL,
        NUMBER,
        Some("4940111"),
        vec![ch(Law::Mu, 51)],
        at(1),
    )
    .unwrap();
    // Another calling number, the rest as signed.
    let mut altered = setup.signal.clone();
    altered.calling_number = Some("4940666".into());
    let good = caller_bytes(&setup);
    let sig_field = decode(&good).unwrap();
    let bad = decode(&encode(&altered, 7, false, None, &ends(CALLER, CALLEE)).unwrap()).unwrap();
    let refused = Call::answer_setup(
        &bad.signal,
        &|k| sig_field.verify(k) && bad.verify(k),
        &realm.keys(CALLEE),
        &p(CALLEE),
        NUMBER,
        &[ch(Law::Mu, 52)],
        &mut ReplayCache::default(),
        at(1),
    )
    .unwrap_err();
    assert!(matches!(refused.error, RefuseError::Integrity));
    let out = decode(&callee_bytes(&refused.release)).unwrap();
    assert_eq!(out.signal.cause, Some(cause::CALL_REJECTED));
}
