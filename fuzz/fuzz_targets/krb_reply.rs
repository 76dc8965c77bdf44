//! What a client receives from a KDC or a service: AS-REP, TGS-REP,
//! KRB-ERROR and AP-REP. Decoding never panics, anything that decodes
//! re-encodes to itself, and the client's reply handling returns an error
//! instead of panicking on forged or garbled replies.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::{
    client::{AsExchange, AsOptions, ClientSecret},
    messages::{asn, decode, encode, recognise_error},
    Principal,
};

macro_rules! round_trip {
    ($data:expr, $ty:ty) => {
        if let Ok(m) = decode::<$ty>($data) {
            let again: $ty = decode(&encode(&m)).expect("re-encoded message decodes");
            assert_eq!(again, m);
        }
    };
}

fuzz_target!(|data: &[u8]| {
    round_trip!(data, asn::AsRep);
    round_trip!(data, asn::TgsRep);
    round_trip!(data, asn::KrbError);
    round_trip!(data, asn::ApRep);
    let _ = recognise_error(data);

    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let client = Principal::parse("alice@FUZZ.TEST").expect("valid principal");
    if let Ok(mut exchange) = AsExchange::new(
        client,
        ClientSecret::password("fuzz"),
        AsOptions::default(),
    ) {
        if exchange.first_request(now).is_ok() {
            let _ = exchange.handle_reply(data, now);
        }
    }
});
