//! KRB-CRED decoding and opening never panic, and any message that decodes
//! re-encodes to itself.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::cred::open_krb_cred;
use roamgate_krb::messages::{asn, decode, encode};
use roamgate_krb::replay::ReplayCache;
use roamgate_krb_crypto::{Etype, Key};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<asn::KrbCred>(data) {
        let again: asn::KrbCred = decode(&encode(&m)).expect("re-encoded KRB-CRED decodes");
        assert_eq!(again, m);
    }
    let key = Key::new(Etype::Aes128CtsHmacSha256128, &[0x33; 16]).expect("valid key");
    let mut rc = ReplayCache::new(Duration::from_secs(300), 16);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = open_krb_cred(data, &key, Duration::from_secs(300), &mut rc, now);
});
