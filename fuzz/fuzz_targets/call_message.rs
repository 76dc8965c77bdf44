//! H.225.0 call signalling parser (TPKT, Q.931, the PER
//! H323-UserInformation, the H.235 hashed token): any input either fails
//! with a typed error or parses to a message whose re-encoding parses back
//! the same; verifying never panics, and a message verifies only if its
//! hash is the HMAC of its bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_call::wire::{h235, q931, tpkt, CallMessage, Error};

/// The key the seeds are signed with (fuzz/seedgen: CALL_KEY).
const KEY: &[u8] = b"roamgate call fuzz key";

fuzz_target!(|data: &[u8]| {
    let _ = tpkt::frame_len(data);
    let _ = q931::Repr::parse(data);
    if let Ok(m) = CallMessage::parse(data) {
        // The canonical encoding adds what roamgate always sends (the
        // SETUP's bearer capability, both places of the called number), so
        // a message near the size cap may not fit again.
        match m.to_bytes() {
            Ok(again) => {
                let m2 = CallMessage::parse(&again).expect("own encoding parses");
                assert_eq!(m2, m);
            }
            Err(e) => assert!(matches!(e, Error::Oversized(_)), "{e}"),
        }
    }
    if let Ok((m, fields)) = h235::verify_message(data, KEY) {
        let i = m
            .integrity
            .as_ref()
            .expect("a verified message has a token");
        assert_eq!(i.fields, fields);
    }
});
