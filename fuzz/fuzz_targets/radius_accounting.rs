//! RADIUS accounting (RFC 2866, roamgate-billing's radius module): any input
//! either fails with a typed error or parses to an Accounting-Request whose
//! re-encoding parses back the same; no authenticator check panics, and
//! none passes without the secret.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_billing::radius::{self, AccountingRequest, Packet};

/// The secret the committed seeds are signed with.
const SECRET: &[u8] = b"fuzz radius secret";

fuzz_target!(|data: &[u8]| {
    if let Ok(p) = Packet::new_checked(data) {
        // Every attribute walk ends.
        let _ = p.attributes().count();
        if let Ok(req) = AccountingRequest::parse(&p) {
            let again = req
                .to_bytes(p.identifier(), SECRET)
                .expect("a parsed request re-encodes");
            let p2 = Packet::new_checked(&again[..]).expect("own encoding is well-formed");
            assert_eq!(
                AccountingRequest::parse(&p2).expect("own encoding parses"),
                req
            );
            radius::verify_request(&again, SECRET).expect("own signature verifies");
        }
    }
    let _ = radius::verify_request(data, SECRET);
    // As a response to a fixed request, and as the request of a response.
    let request = [
        4u8, 1, 0, 20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    ];
    let _ = radius::verify_response(data, &request, SECRET);
    if let Ok(resp) = radius::build_response(data, SECRET) {
        radius::verify_response(&resp, data, SECRET).expect("own answer verifies");
    }
});
