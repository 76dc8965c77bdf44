//! Behaviour the RFCs pin only implicitly: round trips for every etype and
//! length, tampering, truncation, wrong keys and usages, bad parameters.
mod common;
use common::h;
use roamgate_krb_crypto::{cf2, CryptoError, Etype, Key, MAX_S2K_ITERATIONS};

#[test]
fn etype_table() {
    for (e, n, kl, ct, cl, name) in [
        (
            Etype::Aes128CtsHmacSha196,
            17,
            16,
            15,
            12,
            "aes128-cts-hmac-sha1-96",
        ),
        (
            Etype::Aes256CtsHmacSha196,
            18,
            32,
            16,
            12,
            "aes256-cts-hmac-sha1-96",
        ),
        (
            Etype::Aes128CtsHmacSha256128,
            19,
            16,
            19,
            16,
            "aes128-cts-hmac-sha256-128",
        ),
        (
            Etype::Aes256CtsHmacSha384192,
            20,
            32,
            20,
            24,
            "aes256-cts-hmac-sha384-192",
        ),
    ] {
        assert_eq!(e.to_i32(), n);
        assert_eq!(Etype::from_i32(n), Some(e));
        assert_eq!(e.key_len(), kl);
        assert_eq!(e.checksum_type(), ct);
        assert_eq!(Etype::from_checksum_type(ct), Some(e));
        assert_eq!(e.checksum_len(), cl);
        assert_eq!(e.name(), name);
        assert_eq!(Etype::from_name(name), Some(e));
    }
    assert_eq!(Etype::from_i32(23), None);
    assert_eq!(Etype::try_from(16), Err(CryptoError::UnsupportedEtype(16)));
    assert_eq!(
        Etype::Aes128CtsHmacSha196.default_s2kparams(),
        vec![0, 0, 0x10, 0]
    );
    assert_eq!(
        Etype::Aes256CtsHmacSha384192.default_s2kparams(),
        vec![0, 0, 0x80, 0]
    );
    assert_eq!(
        Etype::ALL.map(Etype::to_i32),
        [20, 18, 19, 17],
        "strongest first"
    );
}

#[test]
fn round_trip_every_etype_and_length() {
    for e in Etype::ALL {
        let k = Key::random(e);
        for len in 0..70 {
            let p: Vec<u8> = (0..len as u8).collect();
            let c = k.encrypt(7, &p);
            assert_eq!(c.len(), e.ciphertext_len(len));
            assert_eq!(*k.decrypt(7, &c).unwrap(), p, "{e} len {len}");
        }
    }
}

#[test]
fn confounder_makes_each_encryption_differ() {
    let k = Key::random(Etype::Aes256CtsHmacSha196);
    assert_ne!(k.encrypt(1, b"same"), k.encrypt(1, b"same"));
}

#[test]
fn every_single_bit_flip_fails_integrity() {
    for e in Etype::ALL {
        let k = Key::random(e);
        let c = k.encrypt(3, b"forty-two bytes of plaintext for the test!");
        for i in 0..c.len() * 8 {
            let mut t = c.clone();
            t[i / 8] ^= 1 << (i % 8);
            assert_eq!(
                k.decrypt(3, &t),
                Err(CryptoError::IntegrityCheckFailed),
                "{e} bit {i}"
            );
        }
    }
}

#[test]
fn truncation_gives_typed_errors_never_panics() {
    for e in Etype::ALL {
        let k = Key::random(e);
        let c = k.encrypt(3, b"some plaintext");
        let min = e.min_ciphertext_len();
        for len in 0..c.len() {
            let got = k.decrypt(3, &c[..len]);
            if len < min {
                assert_eq!(got, Err(CryptoError::CiphertextTooShort { len, min }));
            } else {
                assert_eq!(got, Err(CryptoError::IntegrityCheckFailed), "{e} len {len}");
            }
        }
        // Extending also fails.
        let mut longer = c.clone();
        longer.push(0);
        assert_eq!(
            k.decrypt(3, &longer),
            Err(CryptoError::IntegrityCheckFailed)
        );
    }
}

#[test]
fn wrong_usage_and_wrong_key_fail() {
    for e in Etype::ALL {
        let k = Key::random(e);
        let c = k.encrypt(3, b"secret");
        assert_eq!(k.decrypt(4, &c), Err(CryptoError::IntegrityCheckFailed));
        assert_eq!(
            Key::random(e).decrypt(3, &c),
            Err(CryptoError::IntegrityCheckFailed)
        );
    }
}

#[test]
fn checksum_verification() {
    for e in Etype::ALL {
        let k = Key::random(e);
        let c = k.checksum(6, b"data");
        assert_eq!(c.len(), e.checksum_len());
        k.verify_checksum(6, b"data", &c).unwrap();
        assert_eq!(
            k.verify_checksum(6, b"datA", &c),
            Err(CryptoError::IntegrityCheckFailed)
        );
        assert_eq!(
            k.verify_checksum(7, b"data", &c),
            Err(CryptoError::IntegrityCheckFailed)
        );
        let mut t = c.clone();
        t[0] ^= 0x80;
        assert_eq!(
            k.verify_checksum(6, b"data", &t),
            Err(CryptoError::IntegrityCheckFailed)
        );
        assert_eq!(
            k.verify_checksum(6, b"data", &c[..c.len() - 1]),
            Err(CryptoError::BadChecksumLength {
                len: c.len() - 1,
                expected: c.len()
            })
        );
        assert!(matches!(
            k.verify_checksum(6, b"data", &[]),
            Err(CryptoError::BadChecksumLength { len: 0, .. })
        ));
    }
}

#[test]
fn key_constructors_check_lengths() {
    assert_eq!(
        Key::new(Etype::Aes256CtsHmacSha196, &[0; 16]).unwrap_err(),
        CryptoError::BadKeyLength { etype: 18, len: 16 }
    );
    assert_eq!(
        Key::new(Etype::Aes128CtsHmacSha256128, &[]).unwrap_err(),
        CryptoError::BadKeyLength { etype: 19, len: 0 }
    );
    assert_eq!(
        Key::from_raw(23, &[0; 16]).unwrap_err(),
        CryptoError::UnsupportedEtype(23)
    );
    let k = Key::from_raw(17, &[7; 16]).unwrap();
    assert_eq!(k.etype(), Etype::Aes128CtsHmacSha196);
    assert_eq!(k.as_bytes(), &[7; 16]);
}

#[test]
fn bad_s2kparams_are_refused() {
    let e = Etype::Aes128CtsHmacSha196;
    for p in [
        &[][..],
        &[0, 0, 1][..],
        &[0, 0, 0, 1, 0][..],
        &[0, 0, 0, 0][..],
    ] {
        assert_eq!(
            Key::from_password(e, b"pw", b"salt", Some(p)).unwrap_err(),
            CryptoError::BadS2kParams,
            "{p:?}"
        );
    }
    let too_many = (MAX_S2K_ITERATIONS + 1).to_be_bytes();
    assert_eq!(
        Key::from_password(e, b"pw", b"salt", Some(&too_many)).unwrap_err(),
        CryptoError::BadS2kParams
    );
    // None means the etype's default (4096 here).
    assert_eq!(
        Key::from_password(e, b"pw", b"salt", None).unwrap(),
        Key::from_password(e, b"pw", b"salt", Some(&e.default_s2kparams())).unwrap()
    );
}

#[test]
fn debug_never_shows_key_bytes() {
    let k = Key::new(Etype::Aes128CtsHmacSha196, &[0xAB; 16]).unwrap();
    let d = format!("{k:?}");
    assert!(d.contains("Aes128CtsHmacSha196"), "{d}");
    assert!(!d.to_lowercase().contains("ab"), "{d}");
    assert!(!d.contains("171"), "{d}");
}

#[test]
fn random_keys_differ() {
    for e in Etype::ALL {
        let a = Key::random(e);
        assert_eq!(a.as_bytes().len(), e.key_len());
        assert_ne!(a, Key::random(e));
    }
}

#[test]
fn prf_lengths_and_determinism() {
    for (e, n) in [
        (Etype::Aes128CtsHmacSha196, 16),
        (Etype::Aes256CtsHmacSha196, 16),
        (Etype::Aes128CtsHmacSha256128, 32),
        (Etype::Aes256CtsHmacSha384192, 48),
    ] {
        let k = Key::random(e);
        assert_eq!(k.prf(b"x").len(), n);
        assert_eq!(k.prf(b"x"), k.prf(b"x"));
        assert_ne!(k.prf(b"x"), k.prf(b"y"));
        assert_eq!(k.prf_plus(b"x", 100).len(), 100);
    }
}

#[test]
fn derive_depends_on_constant_and_keeps_etype() {
    for e in Etype::ALL {
        let k = Key::random(e);
        let a = k.derive(b"one");
        assert_eq!(a.etype(), e);
        assert_eq!(a.as_bytes().len(), e.key_len());
        assert_ne!(a, k.derive(b"two"));
        assert_eq!(a, k.derive(b"one"));
    }
}

#[test]
fn cf2_is_symmetric_in_its_pairs_and_takes_k1_etype() {
    let k1 = Key::random(Etype::Aes256CtsHmacSha196);
    let k2 = Key::random(Etype::Aes256CtsHmacSha196);
    let a = cf2(&k1, &k2, b"a", b"b");
    assert_eq!(a, cf2(&k2, &k1, b"b", b"a"));
    assert_ne!(a, cf2(&k1, &k2, b"b", b"a"));
    let k3 = Key::random(Etype::Aes128CtsHmacSha256128);
    let b = cf2(&k3, &k1, b"a", b"b");
    assert_eq!(b.etype(), Etype::Aes128CtsHmacSha256128);
    assert_eq!(b.as_bytes().len(), 16);
    let _ = h("");
}
