//! AP-REQ and AP-REP decoding and verification: any input is an error or a
//! value that re-encodes to itself; the service-side checks never panic.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::ap::{accept_ap_req, AcceptParams, KeySet};
use roamgate_krb::messages::{asn, decode, encode};
use roamgate_krb::replay::ReplayCache;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

fuzz_target!(|data: &[u8]| {
    if let Ok(req) = decode::<asn::ApReq>(data) {
        let again: asn::ApReq = decode(&encode(&req)).expect("re-encoded AP-REQ decodes");
        assert_eq!(again, req);
    }
    if let Ok(rep) = decode::<asn::ApRep>(data) {
        let again: asn::ApRep = decode(&encode(&rep)).expect("re-encoded AP-REP decodes");
        assert_eq!(again, rep);
    }
    let svc = Principal::parse("svc/host@FUZZ.TEST").expect("valid principal");
    let keys = KeySet(vec![(
        svc.clone(),
        1,
        Key::new(Etype::Aes128CtsHmacSha196, &[0x42; 16]).expect("valid key"),
    )]);
    let mut rc = ReplayCache::new(Duration::from_secs(300), 16);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = accept_ap_req(
        data,
        &keys,
        &AcceptParams {
            service: Some(&svc),
            app_data: Some(b"fuzz"),
            ..Default::default()
        },
        &mut rc,
        now,
    );
});
