//! Calls between two state machines, with a stand-in for the wire's
//! hashed token (an HMAC-SHA1 over the signal's fields), on a fixed clock.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use ring::hmac;
use roamgate_krb::replay::ReplayCache;

use super::*;
use crate::test_realm::*;

/// A signal on the "wire": its fields and a tag under the sender's key.
#[derive(Clone, Debug)]
struct Sent {
    signal: Signal,
    tag: Option<Vec<u8>>,
}

fn tag(sig: &Signal, key: &SignallingKey) -> Vec<u8> {
    let k = hmac::Key::new(hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key.as_bytes());
    hmac::sign(&k, format!("{sig:?}").as_bytes()).as_ref()[..12].to_vec()
}

fn send(out: Outgoing) -> Sent {
    Sent {
        tag: out.key.as_ref().map(|k| tag(&out.signal, k)),
        signal: out.signal,
    }
}

fn verifier(sent: &Sent) -> impl Fn(&SignallingKey) -> bool + '_ {
    move |k| sent.tag.as_deref() == Some(&tag(&sent.signal, k)[..])
}

fn ch(law: Law, last: u8, port: u16) -> Channel {
    Channel {
        law,
        rtp: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, last), port),
    }
}

fn offer() -> Vec<Channel> {
    vec![ch(Law::Mu, 1, 40000), ch(Law::A, 1, 40000)]
}

struct Ends {
    realm: Realm,
    replay: ReplayCache,
}

impl Ends {
    fn new() -> Self {
        Self {
            realm: Realm::new(),
            replay: ReplayCache::default(),
        }
    }

    fn dial(&self) -> (Call, Sent) {
        let ticket = self.realm.ticket(CALLEE, at(0));
        let (call, out) =
            Call::dial(&ticket, CALL, NUMBER, Some("4940111111"), offer(), at(1)).expect("dial");
        (call, send(out))
    }

    fn answer(
        &mut self,
        setup: &Sent,
        local: &[Channel],
    ) -> Result<(Call, Vec<Sent>), Box<Refused>> {
        Call::answer_setup(
            &setup.signal,
            &verifier(setup),
            &self.realm.keys(CALLEE),
            &p(CALLEE),
            NUMBER,
            local,
            &mut self.replay,
            at(1),
        )
        .map(|(c, out)| (c, out.into_iter().map(send).collect()))
    }
}

fn deliver(call: &mut Call, sent: &Sent) -> Result<Option<Event>, Dropped> {
    call.on_signal(&sent.signal, &verifier(sent), at(2))
}

/// SETUP → CALL PROCEEDING, ALERTING → CONNECT.
fn connected(ends: &mut Ends) -> (Call, Call) {
    let (mut caller, setup) = ends.dial();
    let (mut callee, answers) = ends.answer(&setup, &[ch(Law::A, 2, 50000)]).unwrap();
    assert_eq!(callee.peer, Some(p(CALLER)));
    assert!(deliver(&mut caller, &answers[0]).unwrap().is_none());
    assert_eq!(caller.state(), State::Proceeding);
    assert!(matches!(
        deliver(&mut caller, &answers[1]).unwrap(),
        Some(Event::Alerting)
    ));
    let (connect, ev) = callee.accept(at(2)).unwrap();
    assert!(matches!(ev, Event::Connected { channel, remote }
        if channel == ch(Law::A, 2, 50000) && remote == ch(Law::A, 1, 40000)));
    let ev = deliver(&mut caller, &send(connect)).unwrap();
    // The callee prefers A-law only: the caller's second choice.
    assert!(matches!(ev, Some(Event::Connected { channel, remote })
        if channel == ch(Law::A, 1, 40000) && remote == ch(Law::A, 2, 50000)));
    (caller, callee)
}

#[test]
fn a_call_connects_hangs_up_and_both_ends_hold_the_same_media_keys() {
    let mut ends = Ends::new();
    let (mut caller, mut callee) = connected(&mut ends);
    assert_eq!(
        (caller.state(), callee.state()),
        (State::Connected, State::Connected)
    );
    let (a, b) = (caller.keys().unwrap(), callee.keys().unwrap());
    assert_eq!(a.send_srtp(16, 14), b.recv_srtp(16, 14));
    assert_eq!(a.recv_srtp(16, 14), b.send_srtp(16, 14));

    let (release, ev) = caller.hang_up(cause::NORMAL_CLEARING, at(3)).unwrap();
    assert!(matches!(
        ev,
        Event::Released {
            cause: 16,
            by_peer: false,
            ..
        }
    ));
    let ev = deliver(&mut callee, &send(release)).unwrap();
    assert!(matches!(
        ev,
        Some(Event::Released {
            cause: 16,
            by_peer: true,
            authenticated: true
        })
    ));
    assert_eq!(
        (caller.state(), callee.state()),
        (State::Released, State::Released)
    );
    assert!(caller.hang_up(16, at(4)).is_none());
}

#[test]
fn forged_and_replayed_signalling_is_dropped_and_the_call_goes_on() {
    let mut ends = Ends::new();
    let (mut caller, mut callee) = connected(&mut ends);
    // A RELEASE COMPLETE under a wrong key, or with no token.
    let mut forged = send(callee.next(Kind::ReleaseComplete, at(3)));
    forged.tag = Some(vec![0; 12]);
    assert!(matches!(
        deliver(&mut caller, &forged),
        Err(Dropped::Integrity)
    ));
    forged.tag = None;
    assert!(matches!(
        deliver(&mut caller, &forged),
        Err(Dropped::Integrity)
    ));
    // A genuine message with its fields altered after signing.
    let mut altered = send(callee.hang_up(cause::NORMAL_CLEARING, at(3)).unwrap().0);
    let genuine = altered.clone();
    altered.signal.cause = Some(cause::USER_BUSY);
    assert!(matches!(
        deliver(&mut caller, &altered),
        Err(Dropped::Integrity)
    ));
    assert_eq!(caller.state(), State::Connected);
    assert_eq!(caller.dropped, 3);
    // The genuine one ends the call; sent again, it is a replay.
    assert!(deliver(&mut caller, &genuine).unwrap().is_some());
    assert!(matches!(
        deliver(&mut caller, &genuine),
        Err(Dropped::Unexpected(Kind::ReleaseComplete, State::Released))
    ));
}

#[test]
fn an_old_message_sent_again_is_a_replay() {
    let mut ends = Ends::new();
    let (mut caller, setup) = ends.dial();
    let (_callee, answers) = ends.answer(&setup, &offer()).unwrap();
    deliver(&mut caller, &answers[0]).unwrap();
    deliver(&mut caller, &answers[1]).unwrap();
    // CALL PROCEEDING again: its AP-REP was used, its sequence is old.
    let err = deliver(&mut caller, &answers[1]).unwrap_err();
    assert!(
        matches!(err, Dropped::Replayed { got: 2, last: 2 }),
        "{err}"
    );
}

#[test]
fn a_stale_message_is_dropped() {
    let mut ends = Ends::new();
    let (mut caller, setup) = ends.dial();
    let (_callee, answers) = ends.answer(&setup, &offer()).unwrap();
    let err = caller
        .on_signal(
            &answers[0].signal,
            &verifier(&answers[0]),
            at(2) + SKEW + Duration::from_secs(5),
        )
        .unwrap_err();
    assert!(matches!(err, Dropped::Stale { .. }), "{err}");
}

#[test]
fn a_replayed_setup_is_refused_with_call_rejected() {
    let mut ends = Ends::new();
    let (_caller, setup) = ends.dial();
    ends.answer(&setup, &offer()).unwrap();
    let refused = ends.answer(&setup, &offer()).unwrap_err();
    assert!(
        matches!(refused.error, RefuseError::Handshake(_)),
        "{}",
        refused.error
    );
    assert_eq!(refused.release.signal.cause, Some(cause::CALL_REJECTED));
    assert_eq!(refused.release.signal.kind, Kind::ReleaseComplete);
    assert!(refused.release.key.is_none());
}

#[test]
fn a_setup_altered_in_flight_is_refused_under_the_setup_key() {
    let mut ends = Ends::new();
    let (mut caller, mut setup) = ends.dial();
    setup.signal.calling_number = Some("4940666666".into());
    let refused = ends.answer(&setup, &offer()).unwrap_err();
    assert!(matches!(refused.error, RefuseError::Integrity));
    // The refusal is authenticated under the setup key, and the caller
    // sees the cause.
    assert!(refused.release.key.is_some());
    let ev = deliver(&mut caller, &send(refused.release)).unwrap();
    assert!(matches!(
        ev,
        Some(Event::Released {
            cause: cause::CALL_REJECTED,
            by_peer: true,
            authenticated: true
        })
    ));
}

#[test]
fn wrong_number_no_codec_and_missing_ap_req_get_their_causes() {
    let mut ends = Ends::new();
    let (_c, setup) = ends.dial();
    let mut wrong = setup.clone();
    wrong.signal.called_number = Some("4940999999".into());
    let r = ends.answer(&wrong, &offer()).unwrap_err();
    assert_eq!(r.release.signal.cause, Some(cause::UNALLOCATED_NUMBER));

    let mut no_krb = setup.clone();
    no_krb.signal.kerberos = None;
    let r = ends.answer(&no_krb, &offer()).unwrap_err();
    assert_eq!(r.release.signal.cause, Some(cause::INVALID_MESSAGE));

    // An offer with no channel, signed by the caller: only the codec is wrong.
    let ticket = ends.realm.ticket(CALLEE, at(0));
    let (_c2, out) = Call::dial(
        &ticket,
        CALL,
        NUMBER,
        None,
        vec![],
        at(1) + Duration::from_micros(9),
    )
    .unwrap();
    let r = ends.answer(&send(out), &offer()).unwrap_err();
    assert_eq!(
        r.release.signal.cause,
        Some(cause::INCOMPATIBLE_DESTINATION)
    );
}

#[test]
fn an_unauthenticated_refusal_before_keys_only_ends_an_unconnected_call() {
    let ends = Ends::new();
    let (mut caller, _setup) = ends.dial();
    let refusal = Sent {
        signal: Signal::release(CALL, cause::CALL_REJECTED, 1, at(1)),
        tag: None,
    };
    let ev = deliver(&mut caller, &refusal).unwrap();
    assert!(matches!(
        ev,
        Some(Event::Released {
            cause: 21,
            by_peer: true,
            authenticated: false
        })
    ));
    // Once connected, only the call's keys end it.
    let (mut caller, _callee) = connected(&mut Ends::new());
    assert!(matches!(
        deliver(&mut caller, &refusal),
        Err(Dropped::Integrity)
    ));
    assert_eq!(caller.state(), State::Connected);
}

#[test]
fn a_forged_ap_rep_does_not_make_keys() {
    let mut ends = Ends::new();
    let (mut caller, setup) = ends.dial();
    let (_callee, answers) = ends.answer(&setup, &offer()).unwrap();
    let mut forged = answers[0].clone();
    if let Some(k) = forged.signal.kerberos.as_mut() {
        let n = k.len();
        k[n - 2] ^= 0x40;
    }
    assert!(matches!(
        deliver(&mut caller, &forged),
        Err(Dropped::Handshake(_))
    ));
    assert!(caller.keys().is_none());
}

#[test]
fn timers_end_a_call_nobody_answers() {
    let mut ends = Ends::new();
    let (mut caller, _setup) = ends.dial();
    assert!(caller
        .poll(at(1) + T303 - Duration::from_millis(1))
        .is_none());
    let (release, ev) = caller.poll(at(1) + T303).unwrap();
    assert!(matches!(
        ev,
        Event::Released {
            cause: cause::TIMER_EXPIRY,
            ..
        }
    ));
    assert_eq!(release.signal.kind, Kind::ReleaseComplete);
    assert!(caller.deadline().is_none());

    let (mut caller, setup) = ends.dial();
    let (_callee, answers) = ends.answer(&setup, &offer()).unwrap();
    deliver(&mut caller, &answers[0]).unwrap();
    deliver(&mut caller, &answers[1]).unwrap();
    let (_, ev) = caller.poll(at(2) + T301).unwrap();
    assert!(matches!(
        ev,
        Event::Released {
            cause: cause::NO_ANSWER,
            ..
        }
    ));
}

#[test]
fn a_setup_accepted_by_the_proxy_connects_with_keys_rebuilt_from_its_subkeys() {
    // The unit's side (docs/call.md, "Where a call runs"): the proxy
    // accepts the AP-REQ and returns the caller's principal, both subkeys
    // and the AP-REP; the unit rebuilds the keys and answers.
    let mut ends = Ends::new();
    let (mut caller, setup) = ends.dial();
    let ap_req = Call::setup_ap_req(&setup.signal, NUMBER, at(1)).unwrap();
    let by_proxy = handshake::answer(
        ap_req,
        &ends.realm.keys(CALLEE),
        &p(CALLEE),
        CALL,
        NUMBER,
        &mut ends.replay,
        at(1),
    )
    .unwrap();
    let (ck, ek) = (
        by_proxy.caller_subkey.clone(),
        by_proxy.callee_subkey.clone(),
    );
    let rebuilt = Answered {
        caller: by_proxy.caller.clone(),
        ap_rep: by_proxy.ap_rep.clone(),
        setup_key: handshake::setup_key(&ck, &CALL),
        keys: CallKeys::new(handshake::Role::Callee, CALL, &ck, &ek),
        caller_subkey: ck,
        callee_subkey: ek,
    };
    let (mut callee, answers) =
        Call::answer_accepted(&setup.signal, &verifier(&setup), rebuilt, &offer(), at(1)).unwrap();
    for a in answers {
        deliver(&mut caller, &send(a)).unwrap();
    }
    let (connect, _) = callee.accept(at(2)).unwrap();
    assert!(matches!(
        deliver(&mut caller, &send(connect)).unwrap(),
        Some(Event::Connected { .. })
    ));
    let (a, b) = (caller.keys().unwrap(), callee.keys().unwrap());
    assert_eq!(a.send_srtp(16, 14), b.recv_srtp(16, 14));
    assert_eq!(a.send_signalling(), b.recv_signalling());

    // A SETUP for another number is refused before the proxy sees it, and
    // the proxy's own refusal carries its cause.
    let r = Call::setup_ap_req(&setup.signal, "4940999999", at(1)).unwrap_err();
    assert_eq!(r.error.cause(), cause::UNALLOCATED_NUMBER);
    let r = Call::refuse(
        &setup.signal,
        RefuseError::Proxy(cause::CALL_REJECTED),
        None,
        at(1),
    );
    assert_eq!(r.release.signal.cause, Some(cause::CALL_REJECTED));
    assert_eq!(r.release.signal.kind, Kind::ReleaseComplete);
}
