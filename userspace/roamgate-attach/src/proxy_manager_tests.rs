//! The proxy manager core end to end in process: units and the base
//! station's relay in front, roamgate-krb's KDC core for the directory
//! ticket and roamgate-directory's core over a SQLite store in a tempdir
//! behind, all on a fake clock. The rig plays the I/O layer.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use roamgate_directory::record::DialledNumber;
use roamgate_directory::{
    Directory, DirectoryConfig, DirectoryStore, IdentityCode, MipKey, SqliteStore, UnitRecord,
};
use roamgate_krb::ap::KeySet;
use roamgate_krb::client::TgsExchange;
use roamgate_krb::kdc::db::PrincipalStore;

use crate::proxy_manager::{
    backoff, Command, Event, KdcFailure, ManagerConfig, Output, ProxyManager, RetryReason, Session,
    Step,
};
use crate::relay::BaseStation;
use crate::tests::{at, code, p, Realm, DIRECTORY, UNIT_ADDR};
use crate::unit::{Unit, UnitError, UnitEvent};
use crate::wire::{Cause, MessageType, ProxyState, Repr, MAX_FRAME_LEN};

const BS_ADDR: &str = "10.1.0.1:4340";
const BS2_ADDR: &str = "10.1.0.9:4340";

fn bs_addr() -> SocketAddr {
    BS_ADDR.parse().unwrap()
}

fn record(n: u8, principal: &str) -> UnitRecord {
    UnitRecord {
        code: code(n),
        principal: p(principal),
        home_address: Ipv4Addr::new(10, 9, 0, n),
        home_agent: Ipv4Addr::new(10, 9, 0, 254),
        mip_spi: 0x1000 + u32::from(n),
        mip_key: MipKey::new(&[n; 16]).unwrap(),
        account: format!("acct-{n:04}"),
        dialled_number: Some(DialledNumber::parse(&format!("+4930123456{n}")).unwrap()),
        call_key: None,
    }
}

#[derive(Debug, Default)]
struct Seen {
    commands: Vec<String>,
    started: Vec<(IdentityCode, Session, UnitRecord, String)>,
    stopped: Vec<(IdentityCode, Session, bool)>,
    sent: Vec<(SocketAddr, Vec<u8>)>,
    events: Vec<Event>,
    proxy_ops: Vec<(IdentityCode, u64, Box<crate::manager::ProxyRequest>)>,
}

struct Rig {
    realm: Realm,
    dir: Directory<SqliteStore, KeySet>,
    _tmp: tempfile::TempDir,
    pm: ProxyManager<KeySet>,
    bs: BaseStation,
    kdc_up: bool,
    dir_up: bool,
    /// Report "proxy started" for every StartProxy at once.
    auto_start: bool,
    seen: Seen,
}

impl Rig {
    fn new(config: ManagerConfig) -> Self {
        let realm = Realm::new();
        let tmp = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&tmp.path().join("directory.db")).unwrap();
        store.add(&record(1, "unit1@HOME.TEST")).unwrap();
        store.add(&record(2, "unit2@HOME.TEST")).unwrap();
        let e = realm.store.get(&p(DIRECTORY)).unwrap().unwrap();
        let dir_keys = KeySet(
            e.keys
                .iter()
                .map(|k| (p(DIRECTORY), k.kvno, k.key.clone()))
                .collect(),
        );
        let dir = Directory::new(store, dir_keys, DirectoryConfig::new(p(DIRECTORY)));
        let pm = ProxyManager::new(realm.verifier(), config);
        Self {
            realm,
            dir,
            _tmp: tmp,
            pm,
            bs: BaseStation::new(7, "HOME.TEST").unwrap(),
            kdc_up: true,
            dir_up: true,
            auto_start: true,
            seen: Seen::default(),
        }
    }

    /// A unit frame relayed by the base station at `from`.
    fn relay(&mut self, frame: &[u8], from: SocketAddr, now: SystemTime) {
        let relayed = self.bs.from_unit(frame, UNIT_ADDR).unwrap();
        self.pm.handle_relay(&relayed, from, now);
        self.pump(now);
    }

    /// Plays the I/O layer: runs every command against the in-process KDC
    /// and directory, and feeds the completions back.
    fn pump(&mut self, now: SystemTime) {
        while let Some(out) = self.pm.poll_output() {
            match out {
                Output::Send { to, bytes } => self.seen.sent.push((to, bytes)),
                Output::Event(e) => self.seen.events.push(e),
                Output::Command(c) => self.run(c, now),
            }
        }
    }

    fn run(&mut self, c: Command, now: SystemTime) {
        match c {
            Command::GetDirectoryTicket { session, tgt, .. } => {
                self.seen.commands.push("GetDirectoryTicket".into());
                let result = if self.kdc_up {
                    let ex = TgsExchange::new(&tgt, p(DIRECTORY), 0).unwrap();
                    Ok(self.realm.tgs(ex, now))
                } else {
                    Err(KdcFailure::Unreachable(
                        "no answer from 10.0.0.88:88".into(),
                    ))
                };
                self.pm.handle_ticket(session, result, now);
            }
            Command::SendDirectoryRequest { session, bytes, .. } => {
                self.seen.commands.push("SendDirectoryRequest".into());
                if self.dir_up {
                    let reply = self.dir.handle(&bytes, now).reply.unwrap();
                    self.pm.handle_directory(session, Ok(&reply), now);
                } else {
                    self.pm
                        .handle_directory(session, Err("no answer in 1 s".into()), now);
                }
            }
            Command::StartProxy {
                unit,
                session,
                record,
                tgt,
                domain,
            } => {
                self.seen.commands.push("StartProxy".into());
                assert_eq!(
                    tgt.client, record.principal,
                    "the proxy gets the unit's TGT"
                );
                self.seen.started.push((unit, session, *record, domain));
                if self.auto_start {
                    self.pm.proxy_started(unit, session);
                }
            }
            Command::Proxy {
                unit, id, request, ..
            } => {
                self.seen.commands.push("Proxy".into());
                self.seen.proxy_ops.push((unit, id, request));
            }
            Command::StopProxy {
                unit,
                session,
                deregister,
            } => {
                self.seen.commands.push("StopProxy".into());
                self.seen.stopped.push((unit, session, deregister));
            }
        }
    }

    /// Runs the core's timers up to `until`, pumping after each.
    fn run_until(&mut self, until: SystemTime) {
        while let Some(t) = self.pm.poll_timeout() {
            if t > until {
                break;
            }
            self.pm.handle_timeout(t);
            self.pump(t);
        }
    }

    /// The last frame sent back, unwrapped from its relay envelope by the
    /// base station.
    fn last_answer(&self) -> Vec<u8> {
        let (to, bytes) = self.seen.sent.last().expect("an answer was sent");
        assert_eq!(*to, bs_addr());
        let (unit, inner) = self.bs.from_manager(bytes).unwrap();
        assert_eq!(unit, UNIT_ADDR);
        inner.to_vec()
    }

    fn refused_cause(&self) -> Cause {
        match Repr::parse_bytes(&self.last_answer()).unwrap() {
            Repr::Refused { cause, .. } => cause,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    /// A unit switches on through the base station and gets its ack.
    fn attach(&mut self, unit: &mut Unit, now: SystemTime) {
        let frame = unit.switch_on(now).unwrap();
        self.relay(&frame, bs_addr(), now);
        let ack = self.last_answer();
        assert_eq!(unit.handle_input(&ack, now).unwrap(), UnitEvent::SwitchedOn);
    }
}

#[test]
fn genuine_switch_on_fetches_the_record_starts_the_proxy_then_acks() {
    let mut rig = Rig::new(ManagerConfig::default());
    rig.auto_start = false;
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    let frame = unit.switch_on(at(10)).unwrap();
    rig.relay(&frame, bs_addr(), at(10));

    assert_eq!(
        rig.seen.commands,
        ["GetDirectoryTicket", "SendDirectoryRequest", "StartProxy"]
    );
    let (c, session, rec, domain) = rig.seen.started[0].clone();
    assert_eq!(c, code(1));
    assert_eq!(rec, record(1, "unit1@HOME.TEST"));
    assert_eq!(domain, "HOME.TEST");
    // The ack waits for the proxy.
    assert!(rig.seen.sent.is_empty());
    assert_eq!(rig.pm.in_progress(), 1);

    rig.pm.proxy_started(code(1), session);
    rig.pump(at(10));
    let ack = rig.last_answer();
    assert_eq!(
        unit.handle_input(&ack, at(10)).unwrap(),
        UnitEvent::SwitchedOn
    );
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 1));
    assert_eq!(rig.pm.stats().switch_ons_ok, 1);
    assert!(rig.seen.events.iter().any(|e| matches!(
        e,
        Event::Attached { unit, principal, .. } if *unit == code(1) && *principal == p("unit1@HOME.TEST")
    )));

    // Status comes from the table, sealed in a KRB-PRIV.
    rig.pm
        .proxy_registered(code(1), session, Ipv4Addr::new(192, 0, 2, 7), at(610));
    let req = unit.status_request(at(20)).unwrap();
    rig.relay(&req, bs_addr(), at(20));
    let answer = rig.last_answer();
    assert!(!answer.windows(4).any(|w| w == [10, 9, 0, 1]));
    let UnitEvent::Status(body) = unit.handle_input(&answer, at(20)).unwrap() else {
        panic!("not a status")
    };
    assert_eq!(body.state, ProxyState::Attached);
    assert_eq!(body.home_address, Ipv4Addr::new(10, 9, 0, 1));
    assert_eq!(body.care_of, Ipv4Addr::new(192, 0, 2, 7));
    assert_eq!(body.registration_expiry, 1_800_000_610);
    assert!(body.tgt_expiry > 1_800_000_610);
}

#[test]
fn replayed_switch_on_is_refused_and_starts_nothing() {
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    let frame = unit.switch_on(at(10)).unwrap();
    rig.relay(&frame, bs_addr(), at(10));
    assert_eq!(rig.seen.started.len(), 1);
    let commands = rig.seen.commands.len();

    rig.relay(&frame, bs_addr(), at(11));
    assert_eq!(rig.refused_cause(), Cause::Replayed);
    assert_eq!(rig.seen.commands.len(), commands, "no new work");
    assert_eq!(rig.pm.stats().refused(Cause::Replayed), 1);
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 1));
}

#[test]
fn unknown_identity_code_and_another_units_code_are_refused_unknown_unit() {
    let mut rig = Rig::new(ManagerConfig::default());
    // unit2's principal with a code the directory does not hold.
    let mut stranger = rig.realm.unit("unit2@HOME.TEST", 9);
    rig.relay(&stranger.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    assert_eq!(rig.refused_cause(), Cause::UnknownUnit);
    match stranger.handle_input(&rig.last_answer(), at(10)) {
        Err(UnitError::Refused {
            request: MessageType::SwitchOn,
            cause: Cause::UnknownUnit,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }

    // unit1 is attached; unit2 claims unit1's code: refused, and unit1's
    // proxy is untouched.
    let mut unit1 = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit1, at(20));
    let mut thief = rig.realm.unit("unit2@HOME.TEST", 1);
    rig.relay(&thief.switch_on(at(21)).unwrap(), bs_addr(), at(21));
    assert_eq!(rig.refused_cause(), Cause::UnknownUnit);
    assert_eq!(rig.seen.started.len(), 1);
    assert!(rig.seen.stopped.is_empty());
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 1));
    // Nor may it switch unit1 off.
    rig.relay(&thief.switch_off(at(22)).unwrap(), bs_addr(), at(22));
    assert_eq!(rig.refused_cause(), Cause::NotAttached);
    assert_eq!(rig.pm.proxies(), 1);
}

#[test]
fn switch_on_again_replaces_the_proxy_without_deregistering() {
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    let first = rig.seen.started[0].1;

    let mut again = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.seen.commands.clear();
    rig.attach(&mut again, at(100));
    assert_eq!(
        rig.seen.commands,
        [
            "GetDirectoryTicket",
            "SendDirectoryRequest",
            "StopProxy",
            "StartProxy"
        ]
    );
    let second = rig.seen.started[1].1;
    assert_ne!(first, second);
    assert_eq!(rig.seen.stopped, [(code(1), first, false)]);
    assert_eq!(rig.pm.proxies(), 1);
    assert_eq!(rig.pm.proxy_session(&code(1)), Some(second));
    assert_eq!(rig.pm.stats().replaced, 1);
    // A late completion for the old session is ignored.
    rig.pm.proxy_started(code(1), first);
    rig.pm.proxy_failed(code(1), first, "late".into(), at(101));
    rig.pump(at(101));
    assert_eq!(rig.pm.stats().stale, 2);
    assert_eq!(rig.seen.started.len(), 2);
}

#[test]
fn silent_unit_is_stopped_and_deregistered_and_status_keeps_it_alive() {
    let silence = Duration::from_secs(60);
    let mut rig = Rig::new(ManagerConfig {
        silence_timeout: silence,
        ..ManagerConfig::default()
    });
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    let session = rig.seen.started[0].1;

    // A status request at 50 s keeps it until 110 s.
    rig.relay(&unit.status_request(at(50)).unwrap(), bs_addr(), at(50));
    rig.run_until(at(109));
    assert!(rig.seen.stopped.is_empty());
    assert_eq!(rig.pm.proxies(), 1);
    rig.run_until(at(111));
    assert_eq!(rig.seen.stopped, [(code(1), session, true)]);
    assert_eq!(rig.pm.proxies(), 0);
    assert_eq!(rig.pm.stats().silence_timeouts, 1);
    assert_eq!(rig.pm.poll_timeout(), None);
}

#[test]
fn switch_off_stops_and_deregisters() {
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    let session = rig.seen.started[0].1;
    rig.relay(&unit.switch_off(at(20)).unwrap(), bs_addr(), at(20));
    assert_eq!(
        unit.handle_input(&rig.last_answer(), at(20)).unwrap(),
        UnitEvent::SwitchedOff
    );
    assert_eq!(rig.seen.stopped, [(code(1), session, true)]);
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 0));
    // Status and switch-off now find nothing.
    rig.relay(&unit.status_request(at(21)).unwrap(), bs_addr(), at(21));
    assert_eq!(rig.refused_cause(), Cause::NotAttached);
    rig.relay(&unit.switch_off(at(22)).unwrap(), bs_addr(), at(22));
    assert_eq!(rig.refused_cause(), Cause::NotAttached);
    assert_eq!(rig.seen.stopped.len(), 1);
}

/// The `at` of every retry of `step`, in seconds after `t0`.
fn retry_times(events: &[Event], step: Step, t0: SystemTime) -> Vec<f64> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Retrying { step: s, at, .. } if *s == step => {
                Some(at.duration_since(t0).unwrap().as_secs_f64())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn directory_down_is_retried_with_backoff_then_refused_unavailable() {
    let mut rig = Rig::new(ManagerConfig::default());
    rig.dir_up = false;
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.relay(&unit.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    assert!(rig.seen.sent.is_empty(), "no answer while retrying");
    rig.run_until(at(60));
    // 0.5 s, doubled, capped at 8 s, until the 20 s deadline.
    assert_eq!(
        retry_times(&rig.seen.events, Step::DirectoryRequest, at(10)),
        [0.5, 1.5, 3.5, 7.5, 15.5]
    );
    assert!(rig.seen.events.iter().any(|e| matches!(
        e,
        Event::Retrying {
            reason: RetryReason::DirectoryUnreachable(_),
            ..
        }
    )));
    // One ticket, six directory requests (each a fresh AP-REQ).
    let n = |c: &str| rig.seen.commands.iter().filter(|x| *x == c).count();
    assert_eq!((n("GetDirectoryTicket"), n("SendDirectoryRequest")), (1, 6));
    assert_eq!(rig.refused_cause(), Cause::Unavailable);
    assert_eq!(rig.pm.stats().gave_up, 1);
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 0));
    assert_eq!(
        backoff(Duration::from_millis(500), Duration::from_secs(8), 40),
        Duration::from_secs(8)
    );
}

#[test]
fn kdc_down_then_back_and_a_resend_joins_the_switch_on_in_progress() {
    let mut rig = Rig::new(ManagerConfig::default());
    rig.kdc_up = false;
    let mut first = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.relay(&first.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    rig.run_until(at(12));
    assert_eq!(
        retry_times(&rig.seen.events, Step::DirectoryTicket, at(10)),
        [0.5, 1.5, 3.5]
    );
    assert!(rig.seen.events.iter().any(|e| matches!(
        e,
        Event::Retrying {
            reason: RetryReason::Kdc(KdcFailure::Unreachable(_)),
            ..
        }
    )));
    // The unit resends (a fresh frame): it joins, no second session.
    let mut resend = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.relay(&resend.switch_on(at(12)).unwrap(), bs_addr(), at(12));
    assert_eq!(rig.pm.in_progress(), 1);
    assert_eq!(rig.pm.stats().joined, 1);
    rig.kdc_up = true;
    rig.run_until(at(14));
    assert_eq!(rig.seen.started.len(), 1);
    // The ack answers the newest frame.
    let ack = rig.last_answer();
    assert_eq!(
        resend.handle_input(&ack, at(14)).unwrap(),
        UnitEvent::SwitchedOn
    );
    assert!(first.handle_input(&ack, at(14)).is_err());
}

#[test]
fn flood_of_junk_oversized_and_replayed_frames_stays_bounded_and_a_genuine_unit_gets_through() {
    let mut rig = Rig::new(ManagerConfig {
        max_in_progress_per_base_station: 2,
        ..ManagerConfig::default()
    });
    rig.auto_start = false;
    let from = bs_addr();
    let mut seed = 0x1234_5678_u32;
    let mut rand = move || {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        seed
    };
    // Junk and oversized datagrams: dropped, no answer.
    for i in 0..2000 {
        let len = if i % 10 == 0 {
            MAX_FRAME_LEN + 1 + i
        } else {
            1 + (rand() as usize % 1500)
        };
        let junk: Vec<u8> = (0..len).map(|_| rand() as u8).collect();
        rig.pm.handle_relay(&junk, from, at(10));
    }
    // Relay frames carrying a junk unit frame (half of them with a valid
    // switch-on header): dropped too. The envelope is a real one's.
    let mut template = rig.realm.unit("unit1@HOME.TEST", 1);
    let genuine = rig
        .bs
        .from_unit(&template.switch_on(at(10)).unwrap(), UNIT_ADDR)
        .unwrap();
    let envelope = &genuine[..16 + "HOME.TEST".len()];
    for i in 0..500 {
        let mut relayed = envelope.to_vec();
        if i % 2 == 0 {
            relayed.extend_from_slice(&[1, 1, 0, 0]);
        }
        relayed.extend((0..64).map(|_| rand() as u8));
        rig.pm.handle_relay(&relayed, from, at(10));
    }
    rig.pump(at(10));
    assert!(rig.seen.sent.is_empty(), "junk gets no answer");
    assert_eq!(rig.pm.stats().dropped, 2500);

    // One genuine switch-on, then its frame replayed 500 times.
    let mut unit1 = rig.realm.unit("unit1@HOME.TEST", 1);
    let frame = unit1.switch_on(at(11)).unwrap();
    for _ in 0..501 {
        rig.relay(&frame, from, at(11));
    }
    assert_eq!(rig.pm.stats().refused(Cause::Replayed), 500);
    assert!(rig
        .seen
        .sent
        .iter()
        .all(|(_, b)| b.len() <= frame.len() + 64));
    assert_eq!(rig.pm.in_progress(), 1);
    assert_eq!(rig.seen.started.len(), 1);

    // The per-base-station limit: a third unit's switch-on from the same
    // base station is refused Busy and counted; from another it goes on.
    let mut unit2 = rig.realm.unit("unit2@HOME.TEST", 2);
    rig.relay(&unit2.switch_on(at(12)).unwrap(), from, at(12));
    assert_eq!(rig.pm.in_progress(), 2);
    let mut extra = rig.realm.unit("unit2@HOME.TEST", 3);
    rig.relay(&extra.switch_on(at(12)).unwrap(), from, at(12));
    assert_eq!(rig.refused_cause(), Cause::Busy);
    assert_eq!(rig.pm.stats().refused_busy_base_station, 1);
    assert_eq!(rig.pm.in_progress(), 2);
    let other: SocketAddr = BS2_ADDR.parse().unwrap();
    let mut extra = rig.realm.unit("unit2@HOME.TEST", 3);
    rig.relay(&extra.switch_on(at(13)).unwrap(), other, at(13));
    // (code 3 is not in the directory: refused by it, not by the limit.)
    let (to, _) = rig.seen.sent.last().unwrap();
    assert_eq!(*to, other);
    assert_eq!(rig.pm.stats().refused(Cause::UnknownUnit), 1);

    // The genuine units get through.
    for (unit, session, _, _) in rig.seen.started.clone() {
        rig.pm.proxy_started(unit, session);
    }
    rig.pump(at(13));
    assert_eq!(rig.pm.stats().switch_ons_ok, 2);
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 2));
    let acks: Vec<_> = rig
        .seen
        .sent
        .iter()
        .filter_map(|(_, b)| rig.bs.from_manager(b).ok())
        .filter(|(_, f)| matches!(Repr::parse_bytes(f), Ok(Repr::SwitchOnAck { .. })))
        .map(|(_, f)| f.to_vec())
        .collect();
    assert_eq!(acks.len(), 2);
    assert!(acks.iter().any(|a| unit1
        .handle_input(a, at(13))
        .is_ok_and(|e| e == UnitEvent::SwitchedOn)));
    assert!(acks.iter().any(|a| unit2
        .handle_input(a, at(13))
        .is_ok_and(|e| e == UnitEvent::SwitchedOn)));
}

#[test]
fn in_progress_cap_refuses_busy_and_frees_on_completion() {
    let mut rig = Rig::new(ManagerConfig {
        max_in_progress: 1,
        ..ManagerConfig::default()
    });
    rig.auto_start = false;
    let mut unit1 = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.relay(&unit1.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    let mut unit2 = rig.realm.unit("unit2@HOME.TEST", 2);
    rig.relay(&unit2.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    assert_eq!(rig.refused_cause(), Cause::Busy);
    assert_eq!(rig.pm.stats().refused_busy_in_progress, 1);
    let session = rig.seen.started[0].1;
    rig.pm.proxy_started(code(1), session);
    rig.pump(at(10));
    rig.auto_start = true;
    rig.attach(&mut unit2, at(11));
    assert_eq!(rig.pm.proxies(), 2);
}

#[test]
fn failed_proxy_is_restarted_with_backoff() {
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    let session = rig.seen.started[0].1;
    rig.pm
        .proxy_failed(code(1), session, "home agent unreachable".into(), at(20));
    rig.pump(at(20));
    rig.run_until(at(20) + Duration::from_millis(499));
    assert_eq!(rig.seen.started.len(), 1);
    rig.run_until(at(20) + Duration::from_millis(500));
    assert_eq!(rig.seen.started.len(), 2);
    assert_eq!(rig.seen.started[1].1, session, "same session, same unit");
    assert_eq!(rig.pm.stats().proxy_restarts, 1);
    // A status during the restart says so.
    rig.pm
        .proxy_failed(code(1), session, "again".into(), at(21));
    rig.pump(at(21));
    rig.relay(&unit.status_request(at(21)).unwrap(), bs_addr(), at(21));
    let UnitEvent::Status(body) = unit.handle_input(&rig.last_answer(), at(21)).unwrap() else {
        panic!()
    };
    assert_eq!(body.state, ProxyState::Retrying);
}

#[test]
fn chatty_and_churning_units_keep_the_timer_heap_bounded() {
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    // (Under the verifier's 64-per-unit replay share.)
    for i in 0..50 {
        let t = at(11) + Duration::from_millis(i * 100);
        rig.relay(&unit.status_request(t).unwrap(), bs_addr(), t);
    }
    assert!(rig.pm.timers() < 10, "{} timers", rig.pm.timers());
    for i in 0..150 {
        let t = at(400 + 10 * i);
        let mut u = rig.realm.unit("unit1@HOME.TEST", 1);
        rig.attach(&mut u, t);
        rig.relay(&u.switch_off(t).unwrap(), bs_addr(), t);
    }
    assert_eq!((rig.pm.in_progress(), rig.pm.proxies()), (0, 0));
    assert!(rig.pm.timers() <= 64 + 1, "{} timers", rig.pm.timers());
}

#[test]
fn another_principal_claiming_a_code_in_progress_does_not_join_or_disturb_it() {
    let mut rig = Rig::new(ManagerConfig::default());
    rig.auto_start = false;
    let mut unit1 = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.relay(&unit1.switch_on(at(10)).unwrap(), bs_addr(), at(10));
    let session = rig.seen.started[0].1;
    // unit2 claims code 1 while unit1's proxy is starting.
    let mut thief = rig.realm.unit("unit2@HOME.TEST", 1);
    rig.relay(&thief.switch_on(at(11)).unwrap(), bs_addr(), at(11));
    assert_eq!(rig.refused_cause(), Cause::UnknownUnit);
    assert_eq!(rig.pm.stats().joined, 0);
    assert!(rig.seen.stopped.is_empty());
    assert_eq!(rig.seen.started.len(), 1);
    // unit1's switch-on completes, and its ack goes to unit1.
    rig.pm.proxy_started(code(1), session);
    rig.pump(at(11));
    let ack = rig.last_answer();
    assert_eq!(
        unit1.handle_input(&ack, at(11)).unwrap(),
        UnitEvent::SwitchedOn
    );
    assert_eq!(rig.pm.proxy_session(&code(1)), Some(session));
}

#[test]
fn a_proxy_request_reaches_the_units_proxy_sealed_and_its_answer_comes_back_sealed() {
    use crate::proxy_op::{ProxyOp, ProxyReply};
    let mut rig = Rig::new(ManagerConfig::default());
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(10));
    let body = ProxyOp::CallTicket {
        number: "4930999888",
    }
    .to_bytes()
    .unwrap();
    let frame = unit.proxy_request(&body, at(11)).unwrap();
    // The number crosses the access link only inside the KRB-PRIV.
    assert!(!frame.windows(10).any(|w| w == b"4930999888"));
    rig.relay(&frame, bs_addr(), at(11));
    let (u, id, request) = rig.seen.proxy_ops.pop().expect("a Proxy command");
    assert_eq!(u, code(1));
    assert_eq!(request.client, p("unit1@HOME.TEST"));
    assert_eq!(
        request.op().unwrap(),
        ProxyOp::CallTicket {
            number: "4930999888"
        }
    );
    assert_eq!(rig.pm.proxy_ops_in_flight(), 1);
    let reply = ProxyReply::CallTicket {
        home_address: Ipv4Addr::new(10, 9, 0, 2),
        krb_cred: b"\x76\x00",
    };
    let answer = request.answer(&reply, at(11)).unwrap();
    rig.pm.proxy_answered(id, Ok(answer));
    rig.pump(at(11));
    let answer = rig.last_answer();
    assert!(!answer.windows(4).any(|w| w == [10, 9, 0, 2]));
    let UnitEvent::Proxy(plain) = unit.handle_input(&answer, at(11)).unwrap() else {
        panic!("not a proxy answer")
    };
    assert_eq!(ProxyReply::parse(&plain, 1).unwrap(), reply);
    // The unit holds the key a call ticket's KRB-CRED is sealed under.
    assert_eq!(
        unit.take_proxy_key().unwrap().as_bytes(),
        request.subkey().as_bytes()
    );
    assert!(unit.take_proxy_key().is_none());
    assert_eq!(rig.pm.proxy_ops_in_flight(), 0);
    assert_eq!(rig.pm.stats().proxy_ops_answered, 1);

    // A late second answer for the same id is stale, not sent.
    let sent = rig.seen.sent.len();
    rig.pm.proxy_answered(id, Err("late".into()));
    rig.pump(at(12));
    assert_eq!(rig.seen.sent.len(), sent);
}

#[test]
fn proxy_requests_without_a_proxy_tampered_or_unanswered_get_no_service() {
    use crate::proxy_op::ProxyOp;
    let mut rig = Rig::new(ManagerConfig::default());
    let body = ProxyOp::CallTicket { number: "49" }.to_bytes().unwrap();
    // No proxy yet: refused NotAttached, nothing handed on.
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    let frame = unit.proxy_request(&body, at(10)).unwrap();
    rig.relay(&frame, bs_addr(), at(10));
    assert_eq!(rig.refused_cause(), Cause::NotAttached);
    assert!(rig.seen.proxy_ops.is_empty());

    // Attached; a KRB-PRIV altered in flight is refused Tampered.
    let mut unit = rig.realm.unit("unit1@HOME.TEST", 1);
    rig.attach(&mut unit, at(20));
    let mut frame = unit.proxy_request(&body, at(21)).unwrap();
    let n = frame.len();
    frame[n - 5] ^= 1;
    rig.relay(&frame, bs_addr(), at(21));
    assert_eq!(rig.refused_cause(), Cause::Tampered);
    assert!(rig.seen.proxy_ops.is_empty());

    // Resent as is: the AP-REQ is a replay.
    let frame = unit.proxy_request(&body, at(22)).unwrap();
    rig.relay(&frame, bs_addr(), at(22));
    rig.relay(&frame, bs_addr(), at(22));
    assert_eq!(rig.refused_cause(), Cause::Replayed);
    assert_eq!(rig.seen.proxy_ops.len(), 1);

    // A proxy that never answers: the op expires, bounded.
    rig.run_until(at(22) + super::proxy_manager::PROXY_OP_TIMEOUT);
    assert_eq!(rig.pm.proxy_ops_in_flight(), 0);
    assert_eq!(rig.pm.stats().proxy_ops_expired, 1);
    // And an error from the proxy is "unavailable" to the unit.
    let frame = unit.proxy_request(&body, at(40)).unwrap();
    rig.relay(&frame, bs_addr(), at(40));
    let (_, id, _) = rig.seen.proxy_ops.pop().unwrap();
    rig.pm.proxy_answered(id, Err("directory down".into()));
    rig.pump(at(40));
    assert_eq!(rig.refused_cause(), Cause::Unavailable);
}
