//! RFC 3519 tunnel parser: any input either is refused with a typed error
//! or yields ranges inside the input; a parsed packet re-emits to the same
//! bytes (for the canonical layout) and its MAC check never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_common::wire::tunnel::{emit, parse, TunnelError, OVERHEAD};

const KEY: [u8; 16] = *b"fuzzing key 16 B";

fuzz_target!(|data: &[u8]| {
    if let Ok(t) = parse(data) {
        let hl = t.outer_header_len;
        assert!(hl >= 20 && hl <= 60);
        assert!(hl + 12 + t.inner.len() + 28 <= data.len());
        assert!(matches!(t.verify(&KEY), Ok(()) | Err(TunnelError::BadMac)));
        // Emitting the parsed contents gives a packet that parses back
        // to the same inner packet and repr, and verifies.
        let mut buf = vec![0u8; t.inner.len() + OVERHEAD];
        if let Ok(n) = emit(&t.repr, &KEY, t.inner, &mut buf) {
            let again = parse(&buf[..n]).expect("emitted packet parses");
            assert_eq!(again.inner, t.inner);
            assert_eq!(again.repr, t.repr);
            assert_eq!(again.verify(&KEY), Ok(()));
        }
    }
});
