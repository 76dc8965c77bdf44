//! Tests of the KDC core, driven with a fake clock and an in-memory store.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_krb_crypto::{Etype, Key};

use super::db::{MemoryStore, PrincipalFlags, PrincipalStore};
use super::probe::{self, ProbeError, RequestSpec};
use super::*;
use crate::messages::{flags_value, kdc_options as opt, ticket_flags as tf};

const REALM: &str = "EXAMPLE.COM";
const T0: u64 = 1_800_000_000;

fn now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(T0)
}

fn p(s: &str) -> Principal {
    Principal::parse(s).unwrap()
}

struct Fixture {
    kdc: Kdc,
    store: Arc<MemoryStore>,
}

fn fixture() -> Fixture {
    let store = Arc::new(MemoryStore::new(REALM));
    store.add_random(
        &Principal::krbtgt(REALM),
        &Etype::ALL,
        PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
    );
    // Random keys keep the tests fast (PBKDF2 is slow in debug builds);
    // string-to-key is covered by the db tests and the MIT interop tests.
    store.add_random(
        &p("alice@EXAMPLE.COM"),
        &Etype::ALL,
        PrincipalFlags::DEFAULT,
    );
    store.add_random(
        &p("old@EXAMPLE.COM"),
        &[Etype::Aes128CtsHmacSha196],
        PrincipalFlags::DEFAULT,
    );
    store.add_random(
        &p("host/svc.example.com@EXAMPLE.COM"),
        &Etype::ALL,
        PrincipalFlags::DEFAULT,
    );
    store.add_random(
        &p("nofwd/svc@EXAMPLE.COM"),
        &Etype::ALL,
        PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::ALLOW_FORWARDABLE),
    );
    let kdc = Kdc::new(store.clone(), KdcConfig::default());
    Fixture { kdc, store }
}

fn spec(client: &str, server: &str, etypes: &[i32], options: u32) -> RequestSpec {
    RequestSpec {
        client: p(client),
        server: p(server),
        etypes: etypes.to_vec(),
        options,
        till: now() + Duration::from_secs(10 * 3600),
        rtime: None,
        nonce: 0x1234_5678,
    }
}

fn tgt_spec(etypes: &[i32], options: u32) -> RequestSpec {
    spec(
        "alice@EXAMPLE.COM",
        "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
        etypes,
        options,
    )
}

fn user_key(f: &Fixture, etype: Etype) -> Key {
    key_of(f, "alice@EXAMPLE.COM", etype)
}

fn key_of(f: &Fixture, name: &str, etype: Etype) -> Key {
    f.store
        .get(&p(name))
        .unwrap()
        .unwrap()
        .key(etype)
        .unwrap()
        .key
        .clone()
}

/// Runs the two-step AS exchange; returns the issued TGT.
fn get_tgt(f: &Fixture, etype: Etype, options: u32) -> probe::Issued {
    let s = tgt_spec(&[etype.to_i32()], options);
    let key = user_key(f, etype);
    let pa = probe::enc_timestamp(&key, now()).unwrap();
    let req = probe::as_req(&s, vec![pa]).unwrap();
    let rep = f.kdc.handle(&req, now()).unwrap();
    probe::read_as_rep(&rep, &key, s.nonce).unwrap()
}

fn error_of(reply: Option<Vec<u8>>) -> i32 {
    probe::error_code(&reply.expect("a reply")).expect("a KRB-ERROR")
}

#[test]
fn as_without_preauth_gets_preauth_required_with_etype_info2() {
    let f = fixture();
    for etype in Etype::ALL {
        let req = probe::as_req(&tgt_spec(&[etype.to_i32(), 17], 0), vec![]).unwrap();
        let rep = f.kdc.handle(&req, now()).unwrap();
        assert_eq!(probe::error_code(&rep), Some(25));
        let info = probe::etype_info2(&rep).unwrap();
        assert_eq!(info.etype, etype.to_i32());
        assert_eq!(info.salt.unwrap().as_bytes(), b"EXAMPLE.COMalice");
        assert_eq!(
            info.s2kparams.unwrap().as_ref(),
            etype.default_s2kparams().as_slice()
        );
        // The METHOD-DATA also advertises PA-ENC-TIMESTAMP.
        let err = crate::messages::recognise_error(&rep).unwrap().unwrap();
        let md = crate::messages::error_method_data(&err);
        assert!(md.iter().any(|pa| pa.r#type == 2));
        assert_eq!(err.cname.unwrap().string[0].as_bytes(), b"alice");
    }
}

#[test]
fn as_with_encrypted_timestamp_issues_tgt_for_each_etype() {
    let f = fixture();
    for etype in Etype::ALL {
        let tgt = get_tgt(&f, etype, opt::FORWARDABLE);
        assert_eq!(tgt.session.etype(), etype);
        let flags = flags_value(&tgt.enc.flags.0);
        assert_eq!(
            flags,
            tf::INITIAL | tf::PRE_AUTHENT | tf::FORWARDABLE,
            "{etype}"
        );
        assert_eq!(ktime_secs(&tgt.enc.end_time), T0 as i64 + 10 * 3600);
        assert_eq!(ktime_secs(&tgt.enc.auth_time), T0 as i64);
        // The ticket opens with the krbtgt key and carries the same session key.
        let krbtgt = key_of(
            &f,
            "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
            Etype::Aes256CtsHmacSha384192,
        );
        let etp = probe::open_ticket(&tgt.ticket, &krbtgt).unwrap();
        assert_eq!(etp.key.value.as_ref(), tgt.session.as_bytes());
        assert_eq!(etp.cname.string[0].as_bytes(), b"alice");
        assert_eq!(flags_value(&etp.flags.0), flags);
        // PA-ETYPE-INFO2 in the reply names the reply key's etype.
        assert!(tgt.padata.iter().any(|pa| pa.r#type == 19));
    }
}

#[test]
fn unknown_padata_is_ignored() {
    let f = fixture();
    let s = tgt_spec(&[18], 0);
    let key = user_key(&f, Etype::Aes256CtsHmacSha196);
    let pads = vec![
        crate::messages::padata(149, vec![]), // PA-REQ-ENC-PA-REP
        crate::messages::padata(136, vec![0x30, 0x00]), // PA-FX-FAST
        crate::messages::padata(128, vec![0xde, 0xad]), // PA-PAC-REQUEST
        crate::messages::padata(150, vec![]), // PA-AS-FRESHNESS
        probe::enc_timestamp(&key, now()).unwrap(),
    ];
    let req = probe::as_req(&s, pads.clone()).unwrap();
    let rep = f.kdc.handle(&req, now()).unwrap();
    probe::read_as_rep(&rep, &key, s.nonce).unwrap();
    // Without the timestamp they do not stand in for pre-authentication.
    let req = probe::as_req(&s, pads[..4].to_vec()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 25);
}

#[test]
fn as_error_codes() {
    let f = fixture();
    let wrong = Key::random(Etype::Aes256CtsHmacSha196);
    let s = tgt_spec(&[18], 0);
    // Wrong password: PREAUTH_FAILED.
    let req = probe::as_req(&s, vec![probe::enc_timestamp(&wrong, now()).unwrap()]).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 24);
    // Skewed clock: the timestamp is 301 s off.
    let key = user_key(&f, Etype::Aes256CtsHmacSha196);
    for off in [-301i64, 301] {
        let t = UNIX_EPOCH + Duration::from_secs((T0 as i64 + off) as u64);
        let req = probe::as_req(&s, vec![probe::enc_timestamp(&key, t).unwrap()]).unwrap();
        assert_eq!(error_of(f.kdc.handle(&req, now())), 37, "offset {off}");
    }
    let t = UNIX_EPOCH + Duration::from_secs(T0 + 299);
    let req = probe::as_req(&s, vec![probe::enc_timestamp(&key, t).unwrap()]).unwrap();
    assert!(probe::error_code(&f.kdc.handle(&req, now()).unwrap()).is_none());
    // Unknown client and unknown server.
    let req = probe::as_req(
        &spec(
            "nobody@EXAMPLE.COM",
            "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
            &[18],
            0,
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 6);
    let req = probe::as_req(
        &spec("alice@EXAMPLE.COM", "nosuch/svc@EXAMPLE.COM", &[18], 0),
        vec![],
    )
    .unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 7);
    // Another realm.
    let req = probe::as_req(
        &spec("alice@OTHER.ORG", "krbtgt/OTHER.ORG@OTHER.ORG", &[18], 0),
        vec![],
    )
    .unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 7);
    // Only etypes the KDC does not support (23 = rc4-hmac, 16 = des3).
    let req = probe::as_req(&tgt_spec(&[23, 16], 0), vec![]).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 14);
    // A principal with only an etype-17 key asked for 18 only.
    let req = probe::as_req(
        &spec(
            "old@EXAMPLE.COM",
            "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
            &[18],
            0,
        ),
        vec![],
    )
    .unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 14);
    // A timestamp that is no EncryptedData.
    let req = probe::as_req(&s, vec![crate::messages::padata(2, vec![1, 2, 3])]).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 24);
    // Options an AS-REQ may not carry.
    let req = probe::as_req(&tgt_spec(&[18], opt::RENEW), vec![]).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 13);
}

#[test]
fn renewable_and_lifetime_policy() {
    let f = fixture();
    let mut s = tgt_spec(&[18], opt::RENEWABLE);
    s.till = UNIX_EPOCH; // "as long as allowed"
    s.rtime = Some(now() + Duration::from_secs(30 * 24 * 3600));
    let key = user_key(&f, Etype::Aes256CtsHmacSha196);
    let req = probe::as_req(&s, vec![probe::enc_timestamp(&key, now()).unwrap()]).unwrap();
    let tgt = probe::read_as_rep(&f.kdc.handle(&req, now()).unwrap(), &key, s.nonce).unwrap();
    assert_eq!(ktime_secs(&tgt.enc.end_time), T0 as i64 + 24 * 3600);
    assert_eq!(
        tgt.enc.renew_till.as_ref().map(ktime_secs),
        Some(T0 as i64 + 7 * 24 * 3600)
    );
    assert_ne!(flags_value(&tgt.enc.flags.0) & tf::RENEWABLE, 0);

    // Renew it an hour later.
    let later = now() + Duration::from_secs(3600);
    let mut rs = tgt_spec(&[18], opt::RENEW | opt::RENEWABLE);
    rs.nonce = 77;
    let req = probe::tgs_req(&rs, &tgt.ticket, &tgt.session, None, later).unwrap();
    let renewed =
        probe::read_tgs_rep(&f.kdc.handle(&req, later).unwrap(), &tgt.session, None, 77).unwrap();
    assert_eq!(ktime_secs(&renewed.enc.end_time), T0 as i64 + 25 * 3600);
    assert_eq!(renewed.enc.renew_till, tgt.enc.renew_till);

    // A non-renewable TGT cannot be renewed.
    let plain = get_tgt(&f, Etype::Aes256CtsHmacSha196, 0);
    let req = probe::tgs_req(&rs, &plain.ticket, &plain.session, None, later).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, later)), 13);
}

#[test]
fn tgs_issues_service_ticket_for_each_etype() {
    let f = fixture();
    for etype in Etype::ALL {
        let tgt = get_tgt(&f, etype, 0);
        let svc = "host/svc.example.com@EXAMPLE.COM";
        let mut s = spec("alice@EXAMPLE.COM", svc, &[etype.to_i32()], 0);
        s.nonce = 99;
        let subkey = Key::random(etype);
        for sub in [None, Some(&subkey)] {
            let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, sub, now()).unwrap();
            let rep = f.kdc.handle(&req, now()).unwrap();
            let st = probe::read_tgs_rep(&rep, &tgt.session, sub, 99).unwrap();
            assert_eq!(st.session.etype(), etype);
            let svc_key = key_of(&f, svc, Etype::Aes256CtsHmacSha384192);
            let etp = probe::open_ticket(&st.ticket, &svc_key).unwrap();
            assert_eq!(etp.cname.string[0].as_bytes(), b"alice");
            assert_eq!(etp.key.value.as_ref(), st.session.as_bytes());
            assert_eq!(flags_value(&etp.flags.0), tf::PRE_AUTHENT);
            assert_eq!(ktime_secs(&etp.auth_time), T0 as i64);
            assert!(ktime_secs(&etp.end_time) <= ktime_secs(&tgt.enc.end_time));
        }
    }
}

#[test]
fn forwardable_and_forwarded_tickets() {
    let f = fixture();
    let tgt = get_tgt(&f, Etype::Aes256CtsHmacSha384192, opt::FORWARDABLE);
    // A forwarded TGT, as a client makes for KRB-CRED delegation.
    let mut s = tgt_spec(&[20], opt::FORWARDED | opt::FORWARDABLE);
    s.nonce = 5;
    let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
    let fwd =
        probe::read_tgs_rep(&f.kdc.handle(&req, now()).unwrap(), &tgt.session, None, 5).unwrap();
    let fl = flags_value(&fwd.enc.flags.0);
    assert_ne!(fl & tf::FORWARDED, 0);
    assert_ne!(fl & tf::FORWARDABLE, 0);
    assert_eq!(fl & tf::INITIAL, 0);
    // A service ticket from the forwarded TGT is marked forwarded too.
    let mut s2 = spec(
        "alice@EXAMPLE.COM",
        "host/svc.example.com@EXAMPLE.COM",
        &[20],
        0,
    );
    s2.nonce = 6;
    let req = probe::tgs_req(&s2, &fwd.ticket, &fwd.session, None, now()).unwrap();
    let st =
        probe::read_tgs_rep(&f.kdc.handle(&req, now()).unwrap(), &fwd.session, None, 6).unwrap();
    assert_ne!(flags_value(&st.enc.flags.0) & tf::FORWARDED, 0);
    // A service that disallows forwardable tickets gets a plain one.
    let mut s3 = spec(
        "alice@EXAMPLE.COM",
        "nofwd/svc@EXAMPLE.COM",
        &[20],
        opt::FORWARDABLE,
    );
    s3.nonce = 7;
    let req = probe::tgs_req(&s3, &tgt.ticket, &tgt.session, None, now()).unwrap();
    let st =
        probe::read_tgs_rep(&f.kdc.handle(&req, now()).unwrap(), &tgt.session, None, 7).unwrap();
    assert_eq!(flags_value(&st.enc.flags.0) & tf::FORWARDABLE, 0);

    // A TGT that is not forwardable cannot be forwarded.
    let plain = get_tgt(&f, Etype::Aes256CtsHmacSha384192, 0);
    let req = probe::tgs_req(&s, &plain.ticket, &plain.session, None, now()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 13);
}

#[test]
fn tgs_error_codes() {
    let f = fixture();
    let tgt = get_tgt(&f, Etype::Aes256CtsHmacSha196, 0);
    let svc = spec(
        "alice@EXAMPLE.COM",
        "host/svc.example.com@EXAMPLE.COM",
        &[18],
        0,
    );

    // Unknown service.
    let s = spec("alice@EXAMPLE.COM", "nosuch/x@EXAMPLE.COM", &[18], 0);
    let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 7);

    // Expired TGT (the clock moved 25 hours on).
    let later = now() + Duration::from_secs(25 * 3600);
    let req = probe::tgs_req(&svc, &tgt.ticket, &tgt.session, None, later).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, later)), 32);

    // Authenticator from a skewed clock.
    let skewed = now() - Duration::from_secs(600);
    let req = probe::tgs_req(&svc, &tgt.ticket, &tgt.session, None, skewed).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 37);

    // Body modified after the checksum was computed: change the nonce
    // bytes inside the encoded request.
    let mut s = svc.clone();
    s.nonce = 0x0101_0101;
    let mut req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
    let pos = req.windows(4).rposition(|w| w == [1, 1, 1, 1]).unwrap();
    req[pos] = 2;
    assert_eq!(error_of(f.kdc.handle(&req, now())), 41);

    // Authenticator under the wrong session key.
    let bad = Key::random(Etype::Aes256CtsHmacSha196);
    let req = probe::tgs_req(&svc, &tgt.ticket, &bad, None, now()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 31);

    // A service ticket is not a TGT.
    let st = {
        let mut s = svc.clone();
        s.nonce = 3;
        let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
        probe::read_tgs_rep(&f.kdc.handle(&req, now()).unwrap(), &tgt.session, None, 3).unwrap()
    };
    let req = probe::tgs_req(&svc, &st.ticket, &st.session, None, now()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 35);

    // Session key etype the service lacks.
    f.store.add_random(
        &p("only17/x@EXAMPLE.COM"),
        &[Etype::Aes128CtsHmacSha196],
        PrincipalFlags::DEFAULT,
    );
    let s = spec("alice@EXAMPLE.COM", "only17/x@EXAMPLE.COM", &[18, 20], 0);
    let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 14);

    // No PA-TGS-REQ at all.
    let req = probe::as_req(&svc, vec![]).unwrap();
    let mut tgs = req.clone();
    tgs[0] = 0x6c; // relabel as TGS-REQ: msg-type still says 10
    assert_eq!(error_of(f.kdc.handle(&tgs, now())), 40);
}

#[test]
fn retransmission_gets_same_reply_and_replay_is_refused() {
    let f = fixture();
    let tgt = get_tgt(&f, Etype::Aes256CtsHmacSha196, 0);
    let svc = spec(
        "alice@EXAMPLE.COM",
        "host/svc.example.com@EXAMPLE.COM",
        &[18],
        0,
    );
    let req = probe::tgs_req(&svc, &tgt.ticket, &tgt.session, None, now()).unwrap();
    let a = f.kdc.handle(&req, now()).unwrap();
    let b = f.kdc.handle(&req, now() + Duration::from_secs(1)).unwrap();
    assert_eq!(
        a, b,
        "a retransmission is answered from the lookaside cache"
    );
    assert!(probe::error_code(&a).is_none());

    // The same authenticator inside a different request: replay. Build a
    // request, then splice its PA-TGS-REQ onto another body by swapping
    // the nonce (the checksum then fails first, so instead reuse the
    // authenticator with an identical body but a different padata order).
    let mut reordered = rasn::der::decode::<rasn_kerberos::TgsReq>(&req).unwrap();
    reordered
        .0
        .padata
        .as_mut()
        .unwrap()
        .push(crate::messages::padata(149, vec![]));
    let replayed = crate::messages::encode(&reordered);
    assert_ne!(replayed, req);
    assert_eq!(error_of(f.kdc.handle(&replayed, now())), 34);
}

#[test]
fn garbage_and_truncation_never_panic() {
    let f = fixture();
    assert!(f.kdc.handle(&[], now()).is_none());
    assert!(f.kdc.handle(b"hello world", now()).is_none());
    assert!(f.kdc.handle(&[0x6a], now()).is_some());
    let key = user_key(&f, Etype::Aes256CtsHmacSha196);
    let as_req = probe::as_req(
        &tgt_spec(&[18], 0),
        vec![probe::enc_timestamp(&key, now()).unwrap()],
    )
    .unwrap();
    let tgt = get_tgt(&f, Etype::Aes256CtsHmacSha196, 0);
    let tgs_req = probe::tgs_req(
        &spec(
            "alice@EXAMPLE.COM",
            "host/svc.example.com@EXAMPLE.COM",
            &[18],
            0,
        ),
        &tgt.ticket,
        &tgt.session,
        None,
        now(),
    )
    .unwrap();
    for req in [&as_req, &tgs_req] {
        for n in 1..req.len() {
            // Every truncation gets a KRB-ERROR (generic), never a ticket.
            let rep = f.kdc.handle(&req[..n], now()).unwrap();
            assert_eq!(probe::error_code(&rep), Some(60), "length {n}");
        }
        // Single-byte corruptions: an error or (for bytes that do not
        // matter) a valid reply, but never a panic.
        for i in 0..req.len() {
            let mut r = req.clone();
            r[i] ^= 0x5a;
            let _ = f.kdc.handle(&r, now());
        }
    }
}

#[test]
fn flood_keeps_memory_bounded() {
    let base = fixture();
    let f = Fixture {
        kdc: Kdc::new(
            base.store.clone(),
            KdcConfig {
                lookaside_capacity: 256,
                replay_capacity: 512,
                ..KdcConfig::default()
            },
        ),
        store: base.store.clone(),
    };
    for i in 0..5000u32 {
        let mut s = tgt_spec(&[18], 0);
        s.nonce = i;
        let req = probe::as_req(&s, vec![]).unwrap();
        assert_eq!(error_of(f.kdc.handle(&req, now())), 25);
    }
    assert!(f.kdc.lookaside.lock().unwrap().len() <= 256);
    // Unknown principals in bulk.
    for i in 0..2000u32 {
        let req = probe::as_req(
            &spec(
                &format!("u{i}@EXAMPLE.COM"),
                "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
                &[18],
                0,
            ),
            vec![],
        )
        .unwrap();
        assert_eq!(error_of(f.kdc.handle(&req, now())), 6);
    }
    assert!(f.kdc.lookaside.lock().unwrap().len() <= 256);
    // The replay cache fails closed when full of live entries.
    let tgt = {
        let s = tgt_spec(&[18], 0);
        let key = user_key(&f, Etype::Aes256CtsHmacSha196);
        let req = probe::as_req(&s, vec![probe::enc_timestamp(&key, now()).unwrap()]).unwrap();
        probe::read_as_rep(&f.kdc.handle(&req, now()).unwrap(), &key, s.nonce).unwrap()
    };
    let mut codes = std::collections::HashMap::new();
    for i in 0..600u32 {
        let mut s = spec(
            "alice@EXAMPLE.COM",
            "host/svc.example.com@EXAMPLE.COM",
            &[18],
            0,
        );
        s.nonce = i;
        let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, now()).unwrap();
        let rep = f.kdc.handle(&req, now()).unwrap();
        *codes.entry(probe::error_code(&rep)).or_insert(0) += 1;
    }
    assert_eq!(codes.get(&None), Some(&512));
    assert_eq!(codes.get(&Some(29)), Some(&88));
    assert!(f.kdc.replay.lock().unwrap().len() <= 512);
    // Ten minutes later the window has passed and service resumes.
    let later = now() + Duration::from_secs(601);
    let mut s = spec(
        "alice@EXAMPLE.COM",
        "host/svc.example.com@EXAMPLE.COM",
        &[18],
        0,
    );
    s.nonce = 9999;
    let req = probe::tgs_req(&s, &tgt.ticket, &tgt.session, None, later).unwrap();
    assert!(probe::read_tgs_rep(
        &f.kdc.handle(&req, later).unwrap(),
        &tgt.session,
        None,
        9999
    )
    .is_ok());
}

#[test]
fn raw_req_body_matches_der_of_body() {
    let f = fixture();
    let tgt = get_tgt(&f, Etype::Aes256CtsHmacSha196, 0);
    let req = probe::tgs_req(
        &spec(
            "alice@EXAMPLE.COM",
            "host/svc.example.com@EXAMPLE.COM",
            &[18],
            0,
        ),
        &tgt.ticket,
        &tgt.session,
        None,
        now(),
    )
    .unwrap();
    let decoded = rasn::der::decode::<rasn_kerberos::TgsReq>(&req).unwrap();
    assert_eq!(
        raw_req_body(&req).unwrap(),
        crate::messages::encode(&decoded.0.req_body).as_slice()
    );
    assert!(raw_req_body(&req[..req.len() - 1]).is_none());
    assert!(raw_req_body(&[0x6c, 0x00]).is_none());
}

#[test]
fn error_reply_probe_error_display() {
    // The probe's error type names the code.
    assert_eq!(
        ProbeError::KrbError(25).to_string(),
        "the KDC answered with error 25 (KDC_ERR_PREAUTH_REQUIRED)"
    );
}

/// The AS exchange for `name` (random keys, etype 18); returns its TGT.
fn tgt_for(f: &Fixture, name: &str) -> probe::Issued {
    let mut s = tgt_spec(&[18], 0);
    s.client = p(name);
    let key = key_of(f, name, Etype::Aes256CtsHmacSha196);
    let req = probe::as_req(&s, vec![probe::enc_timestamp(&key, now()).unwrap()]).unwrap();
    probe::read_as_rep(&f.kdc.handle(&req, now()).unwrap(), &key, s.nonce).unwrap()
}

/// Finding 8: one client flooding TGS requests fills only its own share of
/// the authenticator replay cache; everyone else is still served, and the
/// flooder is told why it is refused.
#[test]
fn one_client_flooding_tgs_does_not_deny_others() {
    let base = fixture();
    for name in ["mallory@EXAMPLE.COM", "bob@EXAMPLE.COM"] {
        base.store.add_random(
            &p(name),
            &[Etype::Aes256CtsHmacSha196],
            PrincipalFlags::DEFAULT,
        );
    }
    let f = Fixture {
        kdc: Kdc::new(
            base.store.clone(),
            KdcConfig {
                replay_capacity: 512,
                replay_per_client: 128,
                ..KdcConfig::default()
            },
        ),
        store: base.store.clone(),
    };
    let svc = |client: &str, nonce: u32| {
        let mut s = spec(client, "host/svc.example.com@EXAMPLE.COM", &[18], 0);
        s.nonce = nonce;
        s
    };
    let mallory = tgt_for(&f, "mallory@EXAMPLE.COM");
    let mut refused = None;
    for i in 0..600u32 {
        let req = probe::tgs_req(
            &svc("mallory@EXAMPLE.COM", i),
            &mallory.ticket,
            &mallory.session,
            None,
            now(),
        )
        .unwrap();
        let rep = f.kdc.handle(&req, now()).unwrap();
        if probe::error_code(&rep).is_some() {
            refused = Some(rep);
        }
    }
    let refused = refused.expect("the flood is refused at some point");
    let err = rasn::der::decode::<rasn_kerberos::KrbError>(&refused).unwrap();
    assert_eq!(err.error_code, 29);
    let text = err
        .e_text
        .map(|t| String::from_utf8_lossy(&t).into_owned())
        .unwrap_or_default();
    assert!(text.contains("this client"), "{text}");
    let refusals = f.kdc.stats().replay_cache_refusals.load(Ordering::Relaxed);
    // Free until the cache is half full (256), then held to its share.
    assert_eq!(refusals, 600 - 256);

    let bob = tgt_for(&f, "bob@EXAMPLE.COM");
    let req = probe::tgs_req(
        &svc("bob@EXAMPLE.COM", 7),
        &bob.ticket,
        &bob.session,
        None,
        now(),
    )
    .unwrap();
    let rep = f.kdc.handle(&req, now()).unwrap();
    assert_eq!(
        probe::error_code(&rep),
        None,
        "another client's TGS request is served during the flood"
    );
}

#[test]
fn preauth_under_an_older_client_key_fails_even_when_it_names_that_kvno() {
    use super::db::{KeyEntry, PrincipalEntry};
    let f = fixture();
    let name = p("rotated@EXAMPLE.COM");
    let etype = Etype::Aes256CtsHmacSha196;
    let (old, new) = (Key::random(etype), Key::random(etype));
    let entry = |kvno: u32, key: &Key| KeyEntry {
        kvno,
        key: key.clone(),
        salt: name.default_salt(),
        s2kparams: etype.default_s2kparams(),
    };
    f.store.insert(PrincipalEntry {
        principal: name.clone(),
        kvno: 2,
        flags: PrincipalFlags::DEFAULT,
        max_life: Duration::ZERO,
        max_renew: Duration::ZERO,
        // Newest first, as the database loads them.
        keys: vec![entry(2, &new), entry(1, &old)],
    });
    let s = spec(
        "rotated@EXAMPLE.COM",
        "krbtgt/EXAMPLE.COM@EXAMPLE.COM",
        &[etype.to_i32()],
        0,
    );
    // The timestamp under the old key, naming kvno 1.
    let pa = probe::enc_timestamp(&old, now()).unwrap();
    let mut ed: rasn_kerberos::EncryptedData = crate::messages::decode(&pa.value).unwrap();
    ed.kvno = Some(1);
    let pa = crate::messages::padata(2, crate::messages::encode(&ed));
    let req = probe::as_req(&s, vec![pa]).unwrap();
    assert_eq!(error_of(f.kdc.handle(&req, now())), 24);
    // The current key works, with or without its kvno named.
    let pa = probe::enc_timestamp(&new, now()).unwrap();
    let req = probe::as_req(&s, vec![pa]).unwrap();
    let rep = f.kdc.handle(&req, now()).unwrap();
    probe::read_as_rep(&rep, &new, s.nonce).unwrap();
}
