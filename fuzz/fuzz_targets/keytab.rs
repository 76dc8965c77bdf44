//! MIT keytab parser: any input either fails with a typed error or parses
//! to a keytab whose encoding parses back to the same keytab.
#![no_main]

use libfuzzer_sys::fuzz_target;
use roamgate_krb::keytab::Keytab;

fuzz_target!(|data: &[u8]| {
    if let Ok(kt) = Keytab::parse(data) {
        if let Ok(bytes) = kt.to_bytes() {
            let again = Keytab::parse(&bytes).expect("own encoding parses");
            assert_eq!(again, kt);
        }
    }
});
