//! Arbitrary bytes into the KDC core, as a UDP datagram or TCP payload
//! would deliver them. The core must never panic; it answers with a reply
//! or drops the input.
#![no_main]

use std::sync::{Arc, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_krb::kdc::db::{MemoryStore, PrincipalFlags};
use roamgate_krb::kdc::{Kdc, KdcConfig};
use roamgate_krb::Principal;
use roamgate_krb_crypto::Etype;

fn kdc() -> &'static Kdc {
    static KDC: OnceLock<Kdc> = OnceLock::new();
    KDC.get_or_init(|| {
        let store = Arc::new(MemoryStore::new("EXAMPLE.COM"));
        store.add_random(
            &Principal::krbtgt("EXAMPLE.COM"),
            &Etype::ALL,
            PrincipalFlags(PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH),
        );
        if let Ok(alice) = Principal::parse("alice@EXAMPLE.COM") {
            store.add_random(&alice, &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        if let Ok(svc) = Principal::parse("host/svc@EXAMPLE.COM") {
            store.add_random(&svc, &Etype::ALL, PrincipalFlags::DEFAULT);
        }
        // No lookaside, so that every input reaches the decoders.
        Kdc::new(
            store,
            KdcConfig {
                lookaside_capacity: 0,
                ..KdcConfig::default()
            },
        )
    })
}

fuzz_target!(|data: &[u8]| {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let _ = kdc().handle(data, now);
});
