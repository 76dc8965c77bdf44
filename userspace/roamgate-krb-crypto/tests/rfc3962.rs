//! RFC 3962 Appendix B: every PBKDF2 / string-to-key vector and every
//! AES-CTS vector, copied from the RFC text.
mod common;
use std::num::NonZeroU32;

use common::h;
use roamgate_krb_crypto::{cts, Etype, Key};

struct S2k {
    iterations: u32,
    pass: &'static [u8],
    salt: &'static [u8],
    pbkdf2_128: &'static str,
    key_128: &'static str,
    pbkdf2_256: &'static str,
    key_256: &'static str,
}

fn run_s2k(v: &S2k) {
    // The intermediate PBKDF2 output.
    let mut out = [0u8; 32];
    ring::pbkdf2::derive(
        ring::pbkdf2::PBKDF2_HMAC_SHA1,
        NonZeroU32::new(v.iterations).unwrap(),
        v.salt,
        v.pass,
        &mut out,
    );
    assert_eq!(out[..16].to_vec(), h(v.pbkdf2_128), "128-bit PBKDF2 output");
    assert_eq!(out.to_vec(), h(v.pbkdf2_256), "256-bit PBKDF2 output");
    // The final keys, through the public string-to-key.
    let params = v.iterations.to_be_bytes();
    let k128 =
        Key::from_password(Etype::Aes128CtsHmacSha196, v.pass, v.salt, Some(&params)).unwrap();
    assert_eq!(k128.as_bytes(), h(v.key_128).as_slice(), "128-bit AES key");
    let k256 =
        Key::from_password(Etype::Aes256CtsHmacSha196, v.pass, v.salt, Some(&params)).unwrap();
    assert_eq!(k256.as_bytes(), h(v.key_256).as_slice(), "256-bit AES key");
}

#[test]
fn s2k_iterations_1() {
    run_s2k(&S2k {
        iterations: 1,
        pass: b"password",
        salt: b"ATHENA.MIT.EDUraeburn",
        pbkdf2_128: "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15",
        key_128: "42 26 3c 6e 89 f4 fc 28 b8 df 68 ee 09 79 9f 15",
        pbkdf2_256: "cd ed b5 28 1b b2 f8 01 56 5a 11 22 b2 56 35 15
                     0a d1 f7 a0 4b b9 f3 a3 33 ec c0 e2 e1 f7 08 37",
        key_256: "fe 69 7b 52 bc 0d 3c e1 44 32 ba 03 6a 92 e6 5b
                  bb 52 28 09 90 a2 fa 27 88 39 98 d7 2a f3 01 61",
    });
}

#[test]
fn s2k_iterations_2() {
    run_s2k(&S2k {
        iterations: 2,
        pass: b"password",
        salt: b"ATHENA.MIT.EDUraeburn",
        pbkdf2_128: "01 db ee 7f 4a 9e 24 3e 98 8b 62 c7 3c da 93 5d",
        key_128: "c6 51 bf 29 e2 30 0a c2 7f a4 69 d6 93 bd da 13",
        pbkdf2_256: "01 db ee 7f 4a 9e 24 3e 98 8b 62 c7 3c da 93 5d
                     a0 53 78 b9 32 44 ec 8f 48 a9 9e 61 ad 79 9d 86",
        key_256: "a2 e1 6d 16 b3 60 69 c1 35 d5 e9 d2 e2 5f 89 61
                  02 68 56 18 b9 59 14 b4 67 c6 76 22 22 58 24 ff",
    });
}

#[test]
fn s2k_iterations_1200() {
    run_s2k(&S2k {
        iterations: 1200,
        pass: b"password",
        salt: b"ATHENA.MIT.EDUraeburn",
        pbkdf2_128: "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b",
        key_128: "4c 01 cd 46 d6 32 d0 1e 6d be 23 0a 01 ed 64 2a",
        pbkdf2_256: "5c 08 eb 61 fd f7 1e 4e 4e c3 cf 6b a1 f5 51 2b
                     a7 e5 2d db c5 e5 14 2f 70 8a 31 e2 e6 2b 1e 13",
        key_256: "55 a6 ac 74 0a d1 7b 48 46 94 10 51 e1 e8 b0 a7
                  54 8d 93 b0 ab 30 a8 bc 3f f1 62 80 38 2b 8c 2a",
    });
}

#[test]
fn s2k_iterations_5_binary_salt() {
    run_s2k(&S2k {
        iterations: 5,
        pass: b"password",
        salt: &[0x12, 0x34, 0x56, 0x78, 0x78, 0x56, 0x34, 0x12],
        pbkdf2_128: "d1 da a7 86 15 f2 87 e6 a1 c8 b1 20 d7 06 2a 49",
        key_128: "e9 b2 3d 52 27 37 47 dd 5c 35 cb 55 be 61 9d 8e",
        pbkdf2_256: "d1 da a7 86 15 f2 87 e6 a1 c8 b1 20 d7 06 2a 49
                     3f 98 d2 03 e6 be 49 a6 ad f4 fa 57 4b 6e 64 ee",
        key_256: "97 a4 e7 86 be 20 d8 1a 38 2d 5e bc 96 d5 90 9c
                  ab cd ad c8 7c a4 8f 57 45 04 15 9f 16 c3 6e 31",
    });
}

#[test]
fn s2k_pass_phrase_equals_block_size() {
    run_s2k(&S2k {
        iterations: 1200,
        pass: b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        salt: b"pass phrase equals block size",
        pbkdf2_128: "13 9c 30 c0 96 6b c3 2b a5 5f db f2 12 53 0a c9",
        key_128: "59 d1 bb 78 9a 82 8b 1a a5 4e f9 c2 88 3f 69 ed",
        pbkdf2_256: "13 9c 30 c0 96 6b c3 2b a5 5f db f2 12 53 0a c9
                     c5 ec 59 f1 a4 52 f5 cc 9a d9 40 fe a0 59 8e d1",
        key_256: "89 ad ee 36 08 db 8b c7 1f 1b fb fe 45 94 86 b0
                  56 18 b7 0c ba e2 20 92 53 4e 56 c5 53 ba 4b 34",
    });
}

#[test]
fn s2k_pass_phrase_exceeds_block_size() {
    run_s2k(&S2k {
        iterations: 1200,
        pass: b"XXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXXX",
        salt: b"pass phrase exceeds block size",
        pbkdf2_128: "9c ca d6 d4 68 77 0c d5 1b 10 e6 a6 87 21 be 61",
        key_128: "cb 80 05 dc 5f 90 17 9a 7f 02 10 4c 00 18 75 1d",
        pbkdf2_256: "9c ca d6 d4 68 77 0c d5 1b 10 e6 a6 87 21 be 61
                     1a 8b 4d 28 26 01 db 3b 36 be 92 46 91 5e c8 2a",
        key_256: "d7 8c 5c 9c b8 72 a8 c9 da d4 69 7f 0b b5 b2 d2
                  14 96 c8 2b eb 2c ae da 21 12 fc ee a0 57 40 1b",
    });
}

#[test]
fn s2k_g_clef() {
    run_s2k(&S2k {
        iterations: 50,
        pass: &[0xf0, 0x9d, 0x84, 0x9e],
        salt: b"EXAMPLE.COMpianist",
        pbkdf2_128: "6b 9c f2 6d 45 45 5a 43 a5 b8 bb 27 6a 40 3b 39",
        key_128: "f1 49 c1 f2 e1 54 a7 34 52 d4 3e 7f e6 2a 56 e5",
        pbkdf2_256: "6b 9c f2 6d 45 45 5a 43 a5 b8 bb 27 6a 40 3b 39
                     e7 fe 37 a0 c4 1e 02 c2 81 ff 30 69 e1 e9 4f 52",
        key_256: "4b 6d 98 39 f8 44 06 df 1f 09 cc 16 6d b4 b8 3c
                  57 18 48 b7 84 a3 d6 bd c3 46 58 9a 3e 39 3f 9e",
    });
}

// "Some test vectors for CBC with ciphertext stealing, using an initial
// vector of all-zero."  AES 128-bit key: "chicken teriyaki".
const CTS_KEY: &str = "63 68 69 63 6b 65 6e 20 74 65 72 69 79 61 6b 69";

fn run_cts(input: &str, output: &str, next_iv: &str) {
    let key = h(CTS_KEY);
    let iv = [0u8; 16];
    let (c, niv) = cts::encrypt(&key, &iv, &h(input)).unwrap();
    assert_eq!(hex::encode(&c), hex::encode(h(output)), "Output");
    assert_eq!(niv.to_vec(), h(next_iv), "Next IV");
    let (p, div) = cts::decrypt(&key, &iv, &c).unwrap();
    assert_eq!(p, h(input), "decryption");
    assert_eq!(div.to_vec(), h(next_iv), "Next IV after decryption");
}

#[test]
fn cts_17_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20",
        "c6 35 35 68 f2 bf 8c b4 d8 a5 80 36 2d a7 ff 7f
         97",
        "c6 35 35 68 f2 bf 8c b4 d8 a5 80 36 2d a7 ff 7f",
    );
}

#[test]
fn cts_31_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20",
        "fc 00 78 3e 0e fd b2 c1 d4 45 d4 c8 ef f7 ed 22
         97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5",
        "fc 00 78 3e 0e fd b2 c1 d4 45 d4 c8 ef f7 ed 22",
    );
}

#[test]
fn cts_32_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20 43",
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8
         97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84",
        "39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8",
    );
}

#[test]
fn cts_47_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20 43
         68 69 63 6b 65 6e 2c 20 70 6c 65 61 73 65 2c",
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84
         b3 ff fd 94 0c 16 a1 8c 1b 55 49 d2 f8 38 02 9e
         39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5",
        "b3 ff fd 94 0c 16 a1 8c 1b 55 49 d2 f8 38 02 9e",
    );
}

#[test]
fn cts_48_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20 43
         68 69 63 6b 65 6e 2c 20 70 6c 65 61 73 65 2c 20",
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84
         9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8
         39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8",
        "9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8",
    );
}

#[test]
fn cts_64_bytes() {
    run_cts(
        "49 20 77 6f 75 6c 64 20 6c 69 6b 65 20 74 68 65
         20 47 65 6e 65 72 61 6c 20 47 61 75 27 73 20 43
         68 69 63 6b 65 6e 2c 20 70 6c 65 61 73 65 2c 20
         61 6e 64 20 77 6f 6e 74 6f 6e 20 73 6f 75 70 2e",
        "97 68 72 68 d6 ec cc c0 c0 7b 25 e2 5e cf e5 84
         39 31 25 23 a7 86 62 d5 be 7f cb cc 98 eb f5 a8
         48 07 ef e8 36 ee 89 a5 26 73 0d bc 2f 7b c8 40
         9d ad 8b bb 96 c4 cd c0 3b c1 03 e1 a1 94 bb d8",
        "48 07 ef e8 36 ee 89 a5 26 73 0d bc 2f 7b c8 40",
    );
}

#[test]
fn cts_rejects_less_than_one_block() {
    let key = h(CTS_KEY);
    for n in 0..16 {
        assert_eq!(
            cts::encrypt(&key, &[0; 16], &vec![0u8; n]).unwrap_err(),
            roamgate_krb_crypto::CryptoError::CtsInputTooShort(n)
        );
        assert_eq!(
            cts::decrypt(&key, &[0; 16], &vec![0u8; n]).unwrap_err(),
            roamgate_krb_crypto::CryptoError::CtsInputTooShort(n)
        );
    }
    assert_eq!(
        cts::encrypt(&[0u8; 24], &[0; 16], &[0u8; 16]).unwrap_err(),
        roamgate_krb_crypto::CryptoError::BadAesKeyLength(24)
    );
}
