//! Attach frames (docs/attach.md): any input either fails with a typed
//! error or parses to a frame whose re-encoding is the input, byte for
//! byte; the base station relays only what parses; the proxy manager's
//! verifier never panics and never accepts a frame without the key.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use roamgate_attach::wire::{Frame, RelayFrame, RelayRepr, Repr, StatusBody};
use roamgate_attach::{BaseStation, Verifier};
use roamgate_krb::ap::KeySet;
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

fn verifier() -> &'static Mutex<Verifier<KeySet>> {
    static V: OnceLock<Mutex<Verifier<KeySet>>> = OnceLock::new();
    V.get_or_init(|| {
        let service = Principal::parse("attach/pm@FUZZ.TEST").expect("valid principal");
        let key = Key::new(Etype::Aes128CtsHmacSha196, &[0x42; 16]).expect("valid key");
        Mutex::new(Verifier::new(
            service.clone(),
            KeySet(vec![(service, 1, key)]),
        ))
    })
}

fuzz_target!(|data: &[u8]| {
    if let Ok(repr) = Repr::parse_bytes(data) {
        assert_eq!(repr.buffer_len(), data.len());
        assert_eq!(repr.to_bytes().expect("a parsed frame re-encodes"), data);
        let view = Frame::new_checked(data).expect("a parsed frame checks");
        let _ = (view.first(), view.second(), view.cause(), view.bound_part());
    }
    if let Ok(relay) = RelayRepr::parse_bytes(data) {
        assert_eq!(relay.to_bytes().expect("a parsed relay re-encodes"), data);
        let view = RelayFrame::new_checked(data).expect("a parsed relay checks");
        let _ = (view.domain(), view.unit(), view.inner());
    }
    if let Ok(body) = StatusBody::parse(data) {
        assert_eq!(&body.to_bytes()[..], data);
    }
    let bs = BaseStation::new(1, "FUZZ.TEST").expect("valid domain");
    let unit = SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 1), 4000);
    if let Ok(relayed) = bs.from_unit(data, unit) {
        let relay = RelayRepr::parse_bytes(&relayed).expect("own relay frame parses");
        assert_eq!(relay.inner, data);
    }
    let _ = bs.from_manager(data);
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let mut v = verifier().lock().expect("not poisoned");
    assert!(v.verify(data, now).is_err(), "nothing random verifies");
});
