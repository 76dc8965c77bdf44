//! IPv4 header view: any input either fails the checks or yields accessors
//! that stay in bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_common::wire::{ipv4::Ipv4Hdr, Header};

fuzz_target!(|data: &[u8]| {
    if let Some(h) = Ipv4Hdr::from_bytes(data) {
        if h.check(data.len()).is_ok() {
            assert!(h.header_len() <= data.len());
            assert!(h.total_len() as usize <= data.len());
        }
        let _ = h.is_fragment();
    }
});
