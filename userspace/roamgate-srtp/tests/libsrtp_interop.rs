//! Interop with libsrtp (Debian's python3-pylibsrtp, run by
//! tests/libsrtp_peer.py), both profiles, both ways: libsrtp unprotects what
//! we protect and we unprotect what it protects, RTP and RTCP, across a
//! sequence-number wrap; a tampered and a replayed packet are refused by
//! both. No libsrtp is a failure, not a skip: `cargo xtask setup` installs it.

use std::io::Write;
use std::process::{Command, Stdio};

use roamgate_srtp::{Context, Error, MasterKey, MasterSalt, Profile};

const PYTHON: &str = "/usr/bin/python3";
const SSRC: u32 = 0x1234_5678;
const PROFILES: [(Profile, &str); 2] = [
    (Profile::AesCm128HmacSha1_80, "aes128_cm_sha1_80"),
    (Profile::AeadAes128Gcm, "aead_aes_128_gcm"),
];

fn require_pylibsrtp() {
    let ok = Command::new(PYTHON)
        .args(["-c", "import pylibsrtp"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{PYTHON} cannot import pylibsrtp: run `cargo xtask setup` (it installs the \
         Debian package python3-pylibsrtp)"
    );
}

/// Runs the libsrtp peer on `ops` and returns its answers, one per op.
fn libsrtp(
    profile: &str,
    key_and_salt: &[u8],
    ops: &[(&str, Vec<u8>)],
) -> Vec<Result<Vec<u8>, String>> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/libsrtp_peer.py");
    let mut child = Command::new(PYTHON)
        .args([script, profile, &hex::encode(key_and_salt)])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the libsrtp peer");
    let mut input = String::new();
    for (op, data) in ops {
        input.push_str(&format!("{op} {}\n", hex::encode(data)));
    }
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write to the libsrtp peer");
    let out = child.wait_with_output().expect("libsrtp peer output");
    assert!(
        out.status.success(),
        "libsrtp peer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answers: Vec<_> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| match l.split_once(' ') {
            Some(("ok", h)) => Ok(hex::decode(h).expect("peer hex")),
            Some(("err", e)) => Err(e.to_owned()),
            _ => panic!("libsrtp peer said {l:?}"),
        })
        .collect();
    assert_eq!(answers.len(), ops.len(), "one answer per op");
    answers
}

fn rtp(seq: u16) -> Vec<u8> {
    let mut p = vec![0x80, 0x00];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&SSRC.to_be_bytes());
    // 20 ms of G.711: 160 octets.
    p.extend((0..160u16).map(|i| (i as u8) ^ (seq as u8)));
    p
}

/// A receiver report (RFC 3550 §6.4.2) with no report blocks, then an
/// SDES CNAME: a compound packet.
fn rtcp(n: u8) -> Vec<u8> {
    let mut p = vec![0x80, 201, 0x00, 0x01];
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[0x81, 202, 0x00, 0x03]);
    p.extend_from_slice(&SSRC.to_be_bytes());
    p.extend_from_slice(&[1, 5, b'u', b'n', b'i', b't', b'0' + n % 10, 0, 0, 0]);
    p.truncate(24);
    p
}

/// Sequence numbers across a wrap (ROC 0 -> 1).
fn seqs() -> Vec<u16> {
    (65530..=65535).chain(0..6).collect()
}

fn keys(profile: Profile) -> (Vec<u8>, MasterKey, MasterSalt) {
    let key: [u8; 16] = *b"roamgate-srtp-k!";
    let salt = &b"interop-salt-14"[..profile.master_salt_len()];
    let mut both = key.to_vec();
    both.extend_from_slice(salt);
    (
        both,
        MasterKey::new(key),
        MasterSalt::from_slice(salt).expect("salt"),
    )
}

#[test]
fn libsrtp_unprotects_what_we_protect() {
    require_pylibsrtp();
    for (profile, name) in PROFILES {
        let (both, key, salt) = keys(profile);
        let mut ours = Context::new(profile, &key, &salt).expect("context");
        let mut ops = Vec::new();
        let mut plain = Vec::new();
        for s in seqs() {
            let mut p = rtp(s);
            plain.push(p.clone());
            ours.protect_rtp(&mut p).expect("protect");
            ops.push(("unprotect", p));
        }
        for n in 0..3 {
            let mut p = rtcp(n);
            plain.push(p.clone());
            ours.protect_rtcp(&mut p).expect("protect rtcp");
            ops.push(("unprotect_rtcp", p));
        }
        let answers = libsrtp(name, &both, &ops);
        for (i, (a, p)) in answers.iter().zip(&plain).enumerate() {
            assert_eq!(a.as_ref(), Ok(p), "{name}: libsrtp on our packet {i}");
        }

        // Tampered (one payload bit), then replayed: libsrtp refuses both.
        let mut next = rtp(6);
        ours.protect_rtp(&mut next).expect("protect");
        let mut tampered = next.clone();
        tampered[20] ^= 0x04;
        let mut rtcp_next = rtcp(3);
        ours.protect_rtcp(&mut rtcp_next).expect("protect rtcp");
        let mut rtcp_tampered = rtcp_next.clone();
        rtcp_tampered[10] ^= 0x01;
        let ops = vec![
            ("unprotect", ops[0].1.clone()),
            ("unprotect", tampered),
            ("unprotect", next.clone()),
            ("unprotect", next),
            ("unprotect_rtcp", rtcp_tampered),
            ("unprotect_rtcp", rtcp_next.clone()),
            ("unprotect_rtcp", rtcp_next),
        ];
        let a = libsrtp(name, &both, &ops);
        assert!(a[0].is_ok(), "{name}: {:?}", a[0]);
        assert!(
            matches!(&a[1], Err(e) if e == "authentication_failure"),
            "{name}: tampered RTP {:?}",
            a[1]
        );
        assert!(
            a[2].is_ok(),
            "{name}: genuine RTP after a forgery {:?}",
            a[2]
        );
        assert!(
            matches!(&a[3], Err(e) if e.starts_with("replay_check_failed")),
            "{name}: replayed RTP {:?}",
            a[3]
        );
        assert!(
            matches!(&a[4], Err(e) if e == "authentication_failure"),
            "{name}: tampered RTCP {:?}",
            a[4]
        );
        assert!(a[5].is_ok(), "{name}: genuine RTCP {:?}", a[5]);
        assert!(
            matches!(&a[6], Err(e) if e.starts_with("replay_check_failed")),
            "{name}: replayed RTCP {:?}",
            a[6]
        );
    }
}

#[test]
fn we_unprotect_what_libsrtp_protects() {
    require_pylibsrtp();
    for (profile, name) in PROFILES {
        let (both, key, salt) = keys(profile);
        let mut ops: Vec<(&str, Vec<u8>)> =
            seqs().into_iter().map(|s| ("protect", rtp(s))).collect();
        ops.extend((0..3).map(|n| ("protect_rtcp", rtcp(n))));
        let answers = libsrtp(name, &both, &ops);
        let mut ours = Context::new(profile, &key, &salt).expect("context");
        for (i, (a, (op, plain))) in answers.into_iter().zip(&ops).enumerate() {
            let mut p = a.unwrap_or_else(|e| panic!("{name}: libsrtp {op} {i}: {e}"));
            let wire = p.clone();
            if *op == "protect" {
                assert_eq!(p.len(), plain.len() + profile.rtp_trailer_len());
                if i == 0 {
                    // A tampered copy is refused and leaves no state.
                    let mut t = p.clone();
                    t[13] ^= 0x10;
                    assert_eq!(ours.unprotect_rtp(&mut t), Err(Error::AuthFailed), "{name}");
                }
                ours.unprotect_rtp(&mut p)
                    .unwrap_or_else(|e| panic!("{name}: packet {i}: {e}"));
                assert_eq!(&p, plain, "{name}: libsrtp's packet {i}");
                let mut again = wire;
                assert_eq!(
                    ours.unprotect_rtp(&mut again),
                    Err(Error::Replayed),
                    "{name}"
                );
            } else {
                assert_eq!(p.len(), plain.len() + profile.rtcp_trailer_len());
                let mut t = p.clone();
                t[9] ^= 0x20;
                assert_eq!(
                    ours.unprotect_rtcp(&mut t),
                    Err(Error::AuthFailed),
                    "{name}"
                );
                ours.unprotect_rtcp(&mut p)
                    .unwrap_or_else(|e| panic!("{name}: rtcp {i}: {e}"));
                assert_eq!(&p, plain, "{name}: libsrtp's RTCP {i}");
                let mut again = wire;
                assert_eq!(
                    ours.unprotect_rtcp(&mut again),
                    Err(Error::Replayed),
                    "{name}"
                );
            }
        }
        assert_eq!(ours.rx_roc(SSRC), Some(1), "{name}: the wrap was followed");
    }
}
