//! MIT credential cache parser: any input either fails with a typed error
//! or parses to a cache whose encoding parses back to the same cache.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_krb::ccache::CCache;

fuzz_target!(|data: &[u8]| {
    if let Ok(cc) = CCache::parse(data) {
        if let Ok(bytes) = cc.to_bytes() {
            let again = CCache::parse(&bytes).expect("own encoding parses");
            assert_eq!(again, cc);
        }
    }
});
