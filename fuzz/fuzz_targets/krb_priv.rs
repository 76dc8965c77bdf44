//! KRB-PRIV and KRB-SAFE decoding and verification never panic, and any
//! message that decodes re-encodes to itself.
#![no_main]

use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::messages::{asn, decode, encode};
use roamgate_krb::priv_safe::{Direction, ReplayMode, SecureChannel};
use roamgate_krb_crypto::{Etype, Key};

fuzz_target!(|data: &[u8]| {
    if let Ok(m) = decode::<asn::KrbPriv>(data) {
        let again: asn::KrbPriv = decode(&encode(&m)).expect("re-encoded KRB-PRIV decodes");
        assert_eq!(again, m);
    }
    if let Ok(m) = decode::<asn::KrbSafe>(data) {
        let again: asn::KrbSafe = decode(&encode(&m)).expect("re-encoded KRB-SAFE decodes");
        assert_eq!(again, m);
    }
    let key = Key::new(Etype::Aes256CtsHmacSha196, &[0x17; 32]).expect("valid key");
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut seq = SecureChannel::new(
        key.clone(),
        Direction::Acceptor,
        ReplayMode::Sequence {
            local: 0,
            remote: 0,
        },
    );
    let _ = seq.open_priv(data, now);
    let _ = seq.open_safe(data, now);
    let mut ts = SecureChannel::new(key, Direction::Initiator, ReplayMode::Timestamp);
    let _ = ts.open_priv(data, now);
    let _ = ts.open_safe(data, now);
});
