//! The attach protocol end to end in process: the unit's KDC exchanges
//! against roamgate-krb's KDC core, the unit core, the base station's
//! relay and the proxy manager's verifier, all on a fake clock.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_directory::IdentityCode;
use roamgate_krb::ap::{build_ap_req, ApError, ApReqParams, KeySet};
use roamgate_krb::client::{AsExchange, AsOptions, AsStep, ClientError, ClientSecret, TgsExchange};
use roamgate_krb::cred::build_krb_cred;
use roamgate_krb::credential::Credential;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

use crate::manager::{SwitchOn, Verified, Verifier, VerifyError};
use crate::relay::{answer_relay, BaseStation, RelayError};
use crate::unit::{Unit, UnitCredentials, UnitError, UnitEvent};
use crate::wire::{
    bound_part, Cause, MessageType, ProxyState, RelayRepr, Repr, StatusBody, WireError,
    MAX_FRAME_LEN,
};

pub(crate) const REALM: &str = "HOME.TEST";
pub(crate) const T0: u64 = 1_800_000_000;
pub(crate) const MANAGER: &str = "attach/pm.home.test@HOME.TEST";
pub(crate) const DIRECTORY: &str = "directory/dir.home.test@HOME.TEST";

pub(crate) fn at(s: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0 + s)
}

pub(crate) fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

pub(crate) fn code(n: u8) -> IdentityCode {
    IdentityCode::from_bytes([n; 16])
}

pub(crate) const UNIT_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 2), 40000);

pub(crate) struct Realm {
    pub(crate) kdc: Kdc,
    pub(crate) store: Arc<MemoryStore>,
}

impl Realm {
    pub(crate) fn new() -> Self {
        let store = Arc::new(MemoryStore::new(REALM));
        store.add_random(
            &Principal::krbtgt(REALM),
            &Etype::ALL,
            PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
        );
        // Random keys keep the tests fast (no PBKDF2 in debug builds).
        for name in ["unit1@HOME.TEST", "unit2@HOME.TEST", MANAGER, DIRECTORY] {
            store.add_random(&p(name), &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        let kdc = Kdc::new(store.clone(), KdcConfig::default());
        Self { kdc, store }
    }

    pub(crate) fn keys_of(&self, name: &str) -> Vec<Key> {
        let e = self.store.get(&p(name)).unwrap().unwrap();
        e.keys.iter().map(|k| k.key.clone()).collect()
    }

    /// The proxy manager's keytab.
    pub(crate) fn manager_keys(&self) -> KeySet {
        let e = self.store.get(&p(MANAGER)).unwrap().unwrap();
        KeySet(
            e.keys
                .iter()
                .map(|k| (p(MANAGER), k.kvno, k.key.clone()))
                .collect(),
        )
    }

    pub(crate) fn verifier(&self) -> Verifier<KeySet> {
        Verifier::new(p(MANAGER), self.manager_keys())
    }

    /// An AS exchange with `keys`, driven against the KDC core.
    pub(crate) fn tgt(
        &self,
        unit: &str,
        keys: Vec<Key>,
        now: SystemTime,
    ) -> Result<Credential, ClientError> {
        let opts = AsOptions {
            forwardable: true,
            ..Default::default()
        };
        let mut ex = AsExchange::new(p(unit), ClientSecret::Keys(keys), opts)?;
        let mut req = ex.first_request(now)?;
        loop {
            let reply = self.kdc.handle(&req, now).expect("the KDC answers");
            match ex.handle_reply(&reply, now)? {
                AsStep::Send(next) => req = next,
                AsStep::Done(c) => return Ok(*c),
            }
        }
    }

    pub(crate) fn tgs(&self, ex: TgsExchange, now: SystemTime) -> Credential {
        let reply = self.kdc.handle(&ex.request(now).unwrap(), now).unwrap();
        ex.handle_reply(&reply).unwrap()
    }

    /// What `roamgate unit switch-on` fetches: the unit's TGT with its own
    /// key, then a ticket for the proxy manager and a forwarded TGT.
    pub(crate) fn unit_credentials(&self, unit: &str, now: SystemTime) -> UnitCredentials {
        let tgt = self.tgt(unit, self.keys_of(unit), now).unwrap();
        UnitCredentials {
            manager_ticket: self.tgs(TgsExchange::new(&tgt, p(MANAGER), 0).unwrap(), now),
            forwarded_tgt: self.tgs(TgsExchange::forwarded_tgt(&tgt).unwrap(), now),
        }
    }

    pub(crate) fn unit(&self, unit: &str, n: u8) -> Unit {
        Unit::new(code(n), self.unit_credentials(unit, at(0))).unwrap()
    }
}

fn switch_on(v: &mut Verifier<KeySet>, frame: &[u8], now: SystemTime) -> Box<SwitchOn> {
    match v.verify(frame, now) {
        Ok(Verified::SwitchOn(s)) => s,
        other => panic!("expected a verified switch-on, got {other:?}"),
    }
}

fn refusal(v: &mut Verifier<KeySet>, frame: &[u8], now: SystemTime) -> crate::Refusal {
    match v.verify(frame, now) {
        Err(r) => r,
        Ok(ok) => panic!("expected a refusal, got {ok:?}"),
    }
}

#[test]
fn genuine_switch_on_verifies_and_yields_a_tgt_usable_in_the_units_name() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let bs = BaseStation::new(7, "HOME.TEST").unwrap();
    let mut v = realm.verifier();

    // Unit -> base station -> proxy manager.
    let frame = unit.switch_on(at(10)).unwrap();
    assert!(
        frame.len() <= 1472,
        "a switch-on fits one UDP datagram: {}",
        frame.len()
    );
    let relayed = bs.from_unit(&frame, UNIT_ADDR).unwrap();
    let relay = RelayRepr::parse_bytes(&relayed).unwrap();
    assert_eq!((relay.base_station, relay.domain), (7, "HOME.TEST"));
    assert_eq!(relay.unit, UNIT_ADDR);
    let s = switch_on(&mut v, relay.inner, at(11));
    assert_eq!(s.identity, code(1));
    assert_eq!(s.client, p("unit1@HOME.TEST"));
    assert_eq!(s.tgt.client, p("unit1@HOME.TEST"));
    assert!(s.tgt.is_tgt());

    // Proxy manager -> base station -> unit: mutual authentication.
    let back = answer_relay(&relay, &s.ack().unwrap()).unwrap();
    let (to, ack) = bs.from_manager(&back).unwrap();
    assert_eq!(to, UNIT_ADDR);
    assert_eq!(
        unit.handle_input(ack, at(12)).unwrap(),
        UnitEvent::SwitchedOn
    );
    assert!(unit.is_switched_on());

    // The forwarded TGT gets a directory ticket in the unit's name.
    let dir = realm.tgs(TgsExchange::new(&s.tgt, p(DIRECTORY), 0).unwrap(), at(13));
    assert_eq!(dir.client, p("unit1@HOME.TEST"));
    assert_eq!(dir.server, p(DIRECTORY));
}

#[test]
fn status_and_switch_off_are_authenticated_both_ways() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let mut v = realm.verifier();
    let s = switch_on(&mut v, &unit.switch_on(at(10)).unwrap(), at(10));
    unit.handle_input(&s.ack().unwrap(), at(10)).unwrap();

    let body = StatusBody {
        state: ProxyState::Attached,
        home_address: Ipv4Addr::new(10, 9, 0, 5),
        care_of: Ipv4Addr::new(192, 0, 2, 7),
        tgt_expiry: 1_800_036_000,
        registration_expiry: 1_800_000_600,
    };
    let req = unit.status_request(at(20)).unwrap();
    let Ok(Verified::Status(r)) = v.verify(&req, at(20)) else {
        panic!("status request refused")
    };
    assert_eq!(r.client, p("unit1@HOME.TEST"));
    let answer = r.status_answer(&body, at(20)).unwrap();
    // The home address does not cross the link in clear.
    assert!(!answer.windows(4).any(|w| w == [10, 9, 0, 5]));
    assert_eq!(
        unit.handle_input(&answer, at(21)).unwrap(),
        UnitEvent::Status(body)
    );

    let off = unit.switch_off(at(30)).unwrap();
    let Ok(Verified::SwitchOff(r)) = v.verify(&off, at(30)) else {
        panic!("switch-off refused")
    };
    assert_eq!(r.identity, code(1));
    let ack = r.switch_off_ack().unwrap();
    assert_eq!(
        unit.handle_input(&ack, at(30)).unwrap(),
        UnitEvent::SwitchedOff
    );
    assert!(!unit.is_switched_on());
    // The same switch-off again is a replay.
    assert_eq!(refusal(&mut v, &off, at(31)).cause(), Cause::Replayed);
}

#[test]
fn replayed_switch_on_is_refused() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let mut v = realm.verifier();
    let frame = unit.switch_on(at(10)).unwrap();
    switch_on(&mut v, &frame, at(10));
    let r = refusal(&mut v, &frame, at(11));
    assert!(
        matches!(*r.error, VerifyError::Ap(ApError::Replay(_))),
        "{:?}",
        r.error
    );
    assert_eq!(r.cause(), Cause::Replayed);
    // The refusal goes back to the unit, which reports it.
    let answer = r.frame().unwrap();
    match unit.handle_input(&answer, at(11)) {
        Err(UnitError::Refused {
            request: MessageType::SwitchOn,
            cause: Cause::Replayed,
            retry_after: 0,
        }) => {}
        other => panic!("{other:?}"),
    }
    // Past the skew window the replay cache has forgotten it, and the
    // skew check refuses it instead.
    let r = refusal(&mut realm.verifier(), &frame, at(10 + 301));
    assert_eq!(r.cause(), Cause::ClockSkew);
}

#[test]
fn wrong_keys_are_refused() {
    let realm = Realm::new();
    // A unit without its key gets no TGT at all.
    let wrong = vec![Key::random(Etype::Aes256CtsHmacSha196)];
    assert!(matches!(
        realm.tgt("unit1@HOME.TEST", wrong, at(0)),
        Err(ClientError::PreauthFailed(_))
    ));
    // A proxy manager with the wrong key cannot read the ticket.
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let frame = unit.switch_on(at(10)).unwrap();
    let other = KeySet(
        Etype::ALL
            .iter()
            .map(|e| (p(MANAGER), 1, Key::random(*e)))
            .collect(),
    );
    let r = refusal(&mut Verifier::new(p(MANAGER), other), &frame, at(10));
    assert!(matches!(
        *r.error,
        VerifyError::Ap(ApError::BadTicketIntegrity(_))
    ));
    assert_eq!(r.cause(), Cause::BadProof);
    // A ticket for another service (the directory's) is not ours.
    let mut dir_ticket = realm.unit_credentials("unit1@HOME.TEST", at(0));
    let tgt = realm
        .tgt("unit1@HOME.TEST", realm.keys_of("unit1@HOME.TEST"), at(0))
        .unwrap();
    dir_ticket.manager_ticket = realm.tgs(TgsExchange::new(&tgt, p(DIRECTORY), 0).unwrap(), at(0));
    let mut lost = Unit::new(code(1), dir_ticket).unwrap();
    let r = refusal(
        &mut realm.verifier(),
        &lost.switch_on(at(10)).unwrap(),
        at(10),
    );
    assert_eq!(r.cause(), Cause::WrongService);
}

#[test]
fn tampered_frames_are_refused() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    // Another unit's identity code, the nonce: all bound.
    for offset in [4, 19, 20, 27] {
        let mut v = realm.verifier();
        let mut frame = unit.switch_on(at(10)).unwrap();
        frame[offset] ^= 1;
        let r = refusal(&mut v, &frame, at(10));
        assert_eq!(
            *r.error,
            VerifyError::Ap(ApError::ChecksumMismatch),
            "{offset}"
        );
        assert_eq!(r.cause(), Cause::Tampered);
        // The refusal echoes what was sent (it is not authenticated).
        assert!(r.frame().is_some());
    }
    // A flipped bit in the KRB-CRED's ciphertext (its last byte).
    let mut frame = unit.switch_on(at(10)).unwrap();
    *frame.last_mut().unwrap() ^= 1;
    let r = refusal(&mut realm.verifier(), &frame, at(10));
    assert!(matches!(*r.error, VerifyError::Cred(_)), "{:?}", r.error);
    assert_eq!(r.cause(), Cause::Tampered);
    // Reserved bytes must be zero: dropped unread, no answer.
    let mut frame = unit.switch_on(at(10)).unwrap();
    frame[2] = 1;
    let r = refusal(&mut realm.verifier(), &frame, at(10));
    assert_eq!(
        *r.error,
        VerifyError::Wire(WireError::Reserved { offset: 2 })
    );
    assert_eq!(r.frame(), None);
    // The type byte turned into a switch-off: the layout no longer holds.
    let mut frame = unit.switch_on(at(10)).unwrap();
    frame[1] = MessageType::SwitchOff as u8;
    let r = refusal(&mut realm.verifier(), &frame, at(10));
    assert!(matches!(
        *r.error,
        VerifyError::Wire(WireError::UnexpectedPart(..))
    ));
    assert_eq!(r.frame(), None);
}

#[test]
fn forwarded_tgt_of_another_client_is_refused() {
    let realm = Realm::new();
    let a = realm.unit_credentials("unit1@HOME.TEST", at(0));
    let b = realm.unit_credentials("unit2@HOME.TEST", at(0));
    // The unit core will not build it...
    let mixed = UnitCredentials {
        manager_ticket: a.manager_ticket.clone(),
        forwarded_tgt: b.forwarded_tgt.clone(),
    };
    assert!(matches!(
        Unit::new(code(1), mixed),
        Err(UnitError::CredentialMismatch { .. })
    ));
    // ...and the proxy manager refuses it when someone does.
    let nonce = 99;
    let bound = bound_part(MessageType::SwitchOn, &code(1), nonce);
    let params = ApReqParams {
        mutual: true,
        subkey: true,
        seq_number: None,
        app_data: Some(&bound),
    };
    let (ap_req, client) = build_ap_req(&a.manager_ticket, &params, at(10)).unwrap();
    let krb_cred = build_krb_cred(
        std::slice::from_ref(&b.forwarded_tgt),
        client.subkey().unwrap(),
        at(10),
    )
    .unwrap();
    let frame = Repr::SwitchOn {
        identity: code(1),
        nonce,
        ap_req: &ap_req,
        krb_cred: &krb_cred,
    }
    .to_bytes()
    .unwrap();
    let r = refusal(&mut realm.verifier(), &frame, at(10));
    assert_eq!(
        *r.error,
        VerifyError::ClientMismatch {
            ap: p("unit1@HOME.TEST"),
            tgt: p("unit2@HOME.TEST"),
        }
    );
    assert_eq!(r.cause(), Cause::ClientMismatch);
}

/// A switch-on frame built by hand from `ticket` and `forwarded`.
fn hand_built(
    ticket: &Credential,
    forwarded: &[Credential],
    params: ApReqParams<'_>,
    now: SystemTime,
) -> Vec<u8> {
    let (ap_req, client) = build_ap_req(ticket, &params, now).unwrap();
    let key = client.key_without_ap_rep();
    let krb_cred = build_krb_cred(forwarded, &key, now).unwrap();
    Repr::SwitchOn {
        identity: code(1),
        nonce: 5,
        ap_req: &ap_req,
        krb_cred: &krb_cred,
    }
    .to_bytes()
    .unwrap()
}

#[test]
fn delegation_must_be_one_forwarded_tgt_under_a_mutual_subkey() {
    let realm = Realm::new();
    let c = realm.unit_credentials("unit1@HOME.TEST", at(0));
    let tgt = realm
        .tgt("unit1@HOME.TEST", realm.keys_of("unit1@HOME.TEST"), at(0))
        .unwrap();
    let bound = bound_part(MessageType::SwitchOn, &code(1), 5);
    let good = ApReqParams {
        mutual: true,
        subkey: true,
        seq_number: None,
        app_data: Some(&bound),
    };
    let cases: [(ApReqParams<'_>, Vec<Credential>, VerifyError); 4] = [
        (
            ApReqParams {
                mutual: false,
                ..good.clone()
            },
            vec![c.forwarded_tgt.clone()],
            VerifyError::MutualRequired,
        ),
        (
            ApReqParams {
                subkey: false,
                ..good.clone()
            },
            vec![c.forwarded_tgt.clone()],
            VerifyError::MutualRequired,
        ),
        // The initial TGT itself, not a forwarded one.
        (
            good.clone(),
            vec![tgt.clone()],
            VerifyError::NotForwarded(p("unit1@HOME.TEST")),
        ),
        (
            good.clone(),
            vec![c.forwarded_tgt.clone(), c.manager_ticket.clone()],
            VerifyError::CredCount(2),
        ),
    ];
    for (params, creds, want) in cases {
        let frame = hand_built(&c.manager_ticket, &creds, params, at(10));
        let r = refusal(&mut realm.verifier(), &frame, at(10));
        assert_eq!(*r.error, want);
        assert_ne!(r.cause(), Cause::Other(0));
    }
    // A service ticket forwarded in place of a TGT.
    let frame = hand_built(
        &c.manager_ticket,
        std::slice::from_ref(&c.manager_ticket),
        good,
        at(10),
    );
    let r = refusal(&mut realm.verifier(), &frame, at(10));
    assert_eq!(*r.error, VerifyError::NotATgt(p(MANAGER)));
    assert_eq!(r.cause(), Cause::NoDelegation);
}

#[test]
fn truncated_and_oversized_frames_are_refused_without_an_answer() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let frame = unit.switch_on(at(10)).unwrap();
    let mut v = realm.verifier();
    for n in [0, 1, 27, 31, 32, 100, frame.len() - 1] {
        let r = refusal(&mut v, &frame[..n], at(10));
        assert!(
            matches!(*r.error, VerifyError::Wire(_)),
            "{n}: {:?}",
            r.error
        );
        assert_eq!(r.cause(), Cause::Malformed);
        assert_eq!(r.frame(), None, "junk gets no answer");
    }
    let mut big = frame.clone();
    big.resize(MAX_FRAME_LEN + 1, 0);
    let r = refusal(&mut v, &big, at(10));
    assert_eq!(
        *r.error,
        VerifyError::Wire(WireError::Oversized(MAX_FRAME_LEN + 1))
    );
    // The genuine frame still goes through after all that.
    switch_on(&mut v, &frame, at(10));
    // The base station does not relay junk either, nor answers from units.
    let bs = BaseStation::new(7, "HOME.TEST").unwrap();
    assert!(matches!(
        bs.from_unit(&frame[..40], UNIT_ADDR),
        Err(RelayError::Wire(_))
    ));
    let s = switch_on(
        &mut realm.verifier(),
        &unit.switch_on(at(20)).unwrap(),
        at(20),
    );
    assert_eq!(
        bs.from_unit(&s.ack().unwrap(), UNIT_ADDR),
        Err(RelayError::NotARequest(MessageType::SwitchOnAck))
    );
}

#[test]
fn unit_refuses_forged_and_unsolicited_answers() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let mut v = realm.verifier();
    // An ack from an earlier exchange does not answer this one.
    let old = switch_on(&mut v, &unit.switch_on(at(10)).unwrap(), at(10));
    let frame = unit.switch_on(at(20)).unwrap();
    assert!(matches!(
        unit.handle_input(&old.ack().unwrap(), at(20)),
        Err(UnitError::Unsolicited { .. })
    ));
    // Same nonce, but an AP-REP the proxy manager did not make.
    let fresh = switch_on(&mut v, &frame, at(20));
    let old_ack = old.ack().unwrap();
    let Repr::SwitchOnAck {
        ap_rep: old_rep, ..
    } = Repr::parse_bytes(&old_ack).unwrap()
    else {
        unreachable!()
    };
    let forged = Repr::SwitchOnAck {
        identity: code(1),
        nonce: fresh.nonce,
        ap_rep: old_rep,
    }
    .to_bytes()
    .unwrap();
    assert!(matches!(
        unit.handle_input(&forged, at(20)),
        Err(UnitError::Mutual(
            MessageType::SwitchOnAck,
            ApError::MutualFailed
        ))
    ));
    assert!(!unit.is_switched_on());
    // The genuine ack still completes the switch-on.
    assert_eq!(
        unit.handle_input(&fresh.ack().unwrap(), at(20)).unwrap(),
        UnitEvent::SwitchedOn
    );
    // Nothing is outstanding any more.
    assert!(matches!(
        unit.handle_input(&fresh.ack().unwrap(), at(20)),
        Err(UnitError::Unsolicited { .. })
    ));
}

#[test]
fn expired_credentials_are_not_used() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    // The KDC's default lifetime is 10 h.
    assert!(matches!(
        unit.switch_on(at(11 * 3600)),
        Err(UnitError::Expired(_))
    ));
}

#[test]
fn a_unit_from_its_state_file_switches_on_once_provisioned() {
    use roamgate_krb::kdc::db::{KeyEntry, PrincipalEntry};
    let realm = Realm::new();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("unit.state");
    let state = crate::state::init(&path, p("unit3@HOME.TEST"), false).unwrap();
    // The operator provisions the principal from the unit's keytab export.
    let kt = state.keytab();
    let principal = state.principal.clone();
    realm.store.insert(PrincipalEntry {
        principal: principal.clone(),
        kvno: 1,
        flags: PrincipalFlags::DEFAULT,
        max_life: Duration::ZERO,
        max_renew: Duration::ZERO,
        keys: kt
            .keys_for(&principal)
            .map(|e| KeyEntry {
                kvno: e.kvno,
                key: e.key.clone(),
                salt: principal.default_salt(),
                s2kparams: e.key.etype().default_s2kparams(),
            })
            .collect(),
    });
    let loaded = crate::state::UnitState::load(&path).unwrap();
    let tgt = realm
        .tgt("unit3@HOME.TEST", loaded.long_term_keys(), at(0))
        .unwrap();
    let creds = UnitCredentials {
        manager_ticket: realm.tgs(TgsExchange::new(&tgt, p(MANAGER), 0).unwrap(), at(0)),
        forwarded_tgt: realm.tgs(TgsExchange::forwarded_tgt(&tgt).unwrap(), at(0)),
    };
    let mut unit = Unit::new(loaded.identity, creds).unwrap();
    let s = switch_on(
        &mut realm.verifier(),
        &unit.switch_on(at(5)).unwrap(),
        at(5),
    );
    assert_eq!(s.identity, state.identity);
    assert_eq!(s.client, principal);
}

#[test]
fn unanswered_requests_are_resent_fresh_with_backoff_then_given_up() {
    let realm = Realm::new();
    let mut unit = realm.unit("unit1@HOME.TEST", 1);
    let mut v = realm.verifier();
    assert_eq!(unit.poll_timeout(), None);
    let first = unit.switch_on(at(10)).unwrap();
    assert_eq!(unit.poll_timeout(), Some(at(11)));
    assert!(unit.handle_timeout(at(10)).unwrap().is_none());
    // Each resend is a fresh request: it verifies, the first is not a
    // duplicate of it, and only the newest one's ack is taken.
    let mut sent = vec![first];
    for (due, next) in [(11, 13), (13, 17), (17, 25), (25, 33)] {
        assert_eq!(unit.poll_timeout(), Some(at(due)));
        let again = unit.handle_timeout(at(due)).unwrap().expect("a resend");
        assert_ne!(again[20..28], sent.last().unwrap()[20..28], "new nonce");
        sent.push(again);
        assert_eq!(unit.poll_timeout(), Some(at(next)));
    }
    let old = switch_on(&mut v, &sent[0], at(30));
    assert!(matches!(
        unit.handle_input(&old.ack().unwrap(), at(30)),
        Err(UnitError::Unsolicited { .. })
    ));
    match unit.handle_timeout(at(33)) {
        Err(UnitError::NoAnswer {
            request: MessageType::SwitchOn,
            attempts: 5,
        }) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(unit.poll_timeout(), None);
    let last = switch_on(&mut v, &sent[4], at(33));
    assert!(matches!(
        unit.handle_input(&last.ack().unwrap(), at(33)),
        Err(UnitError::Unsolicited { .. })
    ));
}
