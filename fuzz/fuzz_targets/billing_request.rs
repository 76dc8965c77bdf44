//! The billing service's parsers and core (docs/billing.md, "The
//! service"): any input is an error or a message that re-encodes to
//! itself; the core never panics, answers exactly the well-framed
//! requests, and its error answers are smaller than the request (no
//! amplification). The sealed bodies (operation, result) and the
//! client-side answer framing get the same bytes.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_billing::server::{BillingServer, ServerConfig};
use roamgate_billing::wire::{OpBody, Reply, Request, ResultBody};
use roamgate_krb::ap::KeySet;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

/// The service and key of fuzz/seedgen (AP_SERVICE, AP_SERVICE_KEY).
const SERVICE: &str = "svc/host@FUZZ.TEST";

fuzz_target!(|data: &[u8]| {
    let req = Request::parse(data);
    if let Ok(r) = &req {
        assert_eq!(r.encode(), data, "a parsed request re-encodes to itself");
    }
    if let Ok(Reply::Answer(a)) = Reply::parse(data) {
        assert_eq!(a.encode(), data, "a parsed answer re-encodes to itself");
    }
    if let Ok(b) = OpBody::parse(data) {
        let again = b.encode();
        assert_eq!(OpBody::parse(&again).expect("own encoding parses"), b);
    }
    if let Ok(b) = ResultBody::parse(data) {
        assert_eq!(b.encode(), data, "a parsed result re-encodes to itself");
    }

    let service = Principal::parse(SERVICE).expect("valid principal");
    let keys = KeySet(vec![(
        service.clone(),
        1,
        Key::new(Etype::Aes128CtsHmacSha196, &[0x42; 16]).expect("valid key"),
    )]);
    let mut server = BillingServer::new(keys, ServerConfig::new(service));
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    match server.accept(data, now) {
        Ok(_) => {}
        Err(rej) => {
            assert_eq!(rej.reply.is_some(), req.is_ok());
            if let Some(reply) = rej.reply {
                assert!(reply.len() < data.len(), "error answers never amplify");
            }
        }
    }
});
