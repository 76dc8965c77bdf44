//! Proxy ops (docs/attach.md §5.1): any input either fails with a typed
//! error or parses to an op or answer whose re-encoding is the input.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_attach::proxy_op::{ProxyOp, ProxyReply};

fuzz_target!(|data: &[u8]| {
    if let Ok(op) = ProxyOp::parse(data) {
        assert_eq!(op.to_bytes().expect("a parsed op re-encodes"), data);
    }
    for want in 1..=3 {
        if let Ok(reply) = ProxyReply::parse(data, want) {
            assert_eq!(reply.op(), want);
            assert_eq!(
                &reply.to_bytes().expect("a parsed answer re-encodes")[..],
                data
            );
        }
    }
});
