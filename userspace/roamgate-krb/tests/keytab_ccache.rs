//! Keytab and credential cache files against MIT krb5: fixtures made by
//! MIT's ktutil and kinit (tests/data/make-fixtures.sh) parse to the exact
//! fields MIT's klist shows, rewrite to the same bytes, and MIT's klist
//! reads the files roamgate writes. Truncated and corrupt files give typed
//! errors.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use roamgate_krb::ccache::{CCache, CCacheError, Credential, KdcOffset, KeyBlock, Times, Typed};
use roamgate_krb::keytab::{Keytab, KeytabEntry, KeytabError, RawKey, UnsupportedEntry};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};

const MIT_KEYTAB: &[u8] = include_bytes!("data/mit.keytab");
const MIT_CCACHE: &[u8] = include_bytes!("data/mit.ccache");

/// When make-fixtures.sh ran: 2026-11-28 01:57:31 UTC.
const T0: u32 = 1_795_831_051;
const DAY: u32 = 86_400;

fn alice() -> Principal {
    Principal::parse("alice@TEST.REALM").unwrap()
}

fn h(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("roamgate-ktcc-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

/// MIT's klist, if installed. Tests that need it say so and pass without it.
fn klist() -> Option<&'static str> {
    let p = "/usr/bin/klist";
    if Path::new(p).exists() {
        Some(p)
    } else {
        eprintln!("SKIPPED: {p} not installed (apt-get install krb5-user)");
        None
    }
}

fn run_klist(args: &[&str]) -> String {
    let out = Command::new("/usr/bin/klist")
        .args(args)
        .env("KRB5_CONFIG", "/dev/null")
        // The expected dates below are in C-locale format, in UTC.
        .env("LC_ALL", "C")
        .env("TZ", "UTC")
        .output()
        .unwrap();
    assert!(out.status.success(), "klist {args:?} failed: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

// ---------------------------------------------------------------- keytab

/// What `klist -k -t -e -K` printed for the fixture (mit.keytab.klist).
const MIT_KEYTAB_KEYS: [(u32, Etype, &str); 5] = [
    (
        1,
        Etype::Aes128CtsHmacSha196,
        "3a6c36607b4d6f0bb1ef07e042ff9994",
    ),
    (
        1,
        Etype::Aes256CtsHmacSha196,
        "752146cb0abc943115225c995fd643ee6a5504300d799e894b4e82ef017369a3",
    ),
    (
        1,
        Etype::Aes128CtsHmacSha256128,
        "1b2a9f67ff83261f98241b2701343527",
    ),
    (
        1,
        Etype::Aes256CtsHmacSha384192,
        "67a46162303a9c1242eff664d6f3ec144e89aa5f82b07389b8eea98de77906db",
    ),
    (
        2,
        Etype::Aes256CtsHmacSha196,
        "752146cb0abc943115225c995fd643ee6a5504300d799e894b4e82ef017369a3",
    ),
];

#[test]
fn keytab_parse_mit_fixture_exact_fields() {
    let kt = Keytab::parse(MIT_KEYTAB).unwrap();
    assert!(kt.unsupported.is_empty());
    assert_eq!(kt.entries.len(), 5);
    for (e, (kvno, etype, key)) in kt.entries.iter().zip(MIT_KEYTAB_KEYS) {
        assert_eq!(e.principal, alice());
        assert_eq!(e.principal.name_type, 1);
        assert_eq!(e.timestamp, T0);
        assert_eq!(e.kvno, kvno);
        assert_eq!(e.key.etype(), etype);
        assert_eq!(e.key.as_bytes(), h(key).as_slice());
    }
}

#[test]
fn keytab_mit_keys_equal_roamgate_string_to_key() {
    // ktutil addent -password used the default salt and parameters.
    let kt = Keytab::parse(MIT_KEYTAB).unwrap();
    for e in &kt.entries {
        let ours =
            Key::from_password(e.key.etype(), b"alice-pw", b"TEST.REALMalice", None).unwrap();
        assert_eq!(ours, e.key, "{}", e.key.etype());
        let entry =
            KeytabEntry::from_password(alice(), e.kvno, e.key.etype(), b"alice-pw", T0).unwrap();
        assert_eq!(&entry, e);
    }
}

#[test]
fn keytab_rewrite_is_byte_identical() {
    let kt = Keytab::parse(MIT_KEYTAB).unwrap();
    assert_eq!(kt.to_bytes().unwrap(), MIT_KEYTAB);
}

#[test]
fn keytab_lookup() {
    let kt = Keytab::parse(MIT_KEYTAB).unwrap();
    let e = kt
        .find(&alice(), Some(Etype::Aes256CtsHmacSha196), None)
        .unwrap();
    assert_eq!(e.kvno, 2, "highest kvno wins");
    let e = kt.find(&alice(), None, Some(1)).unwrap();
    assert_eq!(
        e.key.etype(),
        Etype::Aes128CtsHmacSha196,
        "first of equal kvnos"
    );
    assert!(kt
        .find(&alice(), Some(Etype::Aes128CtsHmacSha256128), Some(2))
        .is_none());
    let mut other_type = alice();
    other_type.name_type = 0;
    assert!(
        kt.find(&other_type, None, None).is_some(),
        "name type ignored"
    );
    assert!(kt
        .find(&Principal::parse("bob@TEST.REALM").unwrap(), None, None)
        .is_none());
    assert_eq!(kt.keys_for(&alice()).count(), 5);
    assert_eq!(kt.principals(), vec![&alice()]);
}

fn entry_bytes(kvno8: u8, kvno32: Option<u32>, etype: u16, key: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1u16.to_be_bytes());
    for s in [&b"R"[..], b"svc"] {
        b.extend_from_slice(&(s.len() as u16).to_be_bytes());
        b.extend_from_slice(s);
    }
    b.extend_from_slice(&1u32.to_be_bytes());
    b.extend_from_slice(&7u32.to_be_bytes());
    b.push(kvno8);
    b.extend_from_slice(&etype.to_be_bytes());
    b.extend_from_slice(&(key.len() as u16).to_be_bytes());
    b.extend_from_slice(key);
    if let Some(v) = kvno32 {
        b.extend_from_slice(&v.to_be_bytes());
    }
    let mut out = (b.len() as i32).to_be_bytes().to_vec();
    out.extend_from_slice(&b);
    out
}

#[test]
fn keytab_holes_and_kvno_forms() {
    let mut f = vec![5, 2];
    f.extend(entry_bytes(3, None, 17, &[1; 16])); // 8-bit kvno only
    f.extend_from_slice(&(-10i32).to_be_bytes()); // a deleted entry's hole
    f.extend_from_slice(&[0xEE; 10]);
    f.extend(entry_bytes(4, Some(0), 17, &[2; 16])); // zero kvno32: use kvno8
    f.extend(entry_bytes(44, Some(300), 18, &[3; 32])); // kvno32 overrides
    f.extend(entry_bytes(5, None, 23, &[4; 16])); // rc4: not implemented, kept
    let kt = Keytab::parse(&f).unwrap();
    let kvnos: Vec<u32> = kt.entries.iter().map(|e| e.kvno).collect();
    assert_eq!(kvnos, [3, 4, 300]);
    assert_eq!(kt.entries[2].key.as_bytes(), &[3; 32]);
    assert_eq!(kt.unsupported.len(), 1);
    assert_eq!(kt.unsupported[0].kvno, 5);
    assert_eq!(kt.unsupported[0].key.etype, 23);
    assert_eq!(kt.unsupported[0].key.as_bytes(), &[4; 16]);
    assert!(
        !format!("{:?}", kt.unsupported[0]).contains("4, 4"),
        "key bytes redacted"
    );
    // A rewrite keeps every key (holes are compacted away).
    let again = Keytab::parse(&kt.to_bytes().unwrap()).unwrap();
    assert_eq!(again, kt);
    // A zero size ends the entries, as in MIT.
    let mut g = vec![5, 2];
    g.extend(entry_bytes(3, None, 17, &[1; 16]));
    g.extend_from_slice(&[0, 0, 0, 0, 0xFF, 0xFF]);
    assert_eq!(Keytab::parse(&g).unwrap().entries.len(), 1);
}

#[test]
fn keytab_every_truncation_is_typed_error_or_entry_boundary() {
    let boundaries: Vec<usize> = {
        // 2-byte version, then entries of 4 + 0x36 or 4 + 0x46 bytes.
        let mut b = vec![2];
        let mut pos = 2;
        while pos < MIT_KEYTAB.len() {
            let size = i32::from_be_bytes(MIT_KEYTAB[pos..pos + 4].try_into().unwrap());
            pos += 4 + size as usize;
            b.push(pos);
        }
        b
    };
    for len in 0..MIT_KEYTAB.len() {
        match Keytab::parse(&MIT_KEYTAB[..len]) {
            Ok(kt) => {
                let i = boundaries
                    .iter()
                    .position(|&b| b == len)
                    .expect("Ok only at a boundary");
                assert_eq!(kt.entries.len(), i);
            }
            Err(KeytabError::Truncated { .. }) | Err(KeytabError::EntryOverrun { .. }) => {
                assert!(!boundaries.contains(&len));
            }
            Err(e) => panic!("unexpected error at {len}: {e}"),
        }
    }
    assert!(matches!(
        Keytab::parse(&[]),
        Err(KeytabError::Truncated {
            offset: 0,
            needed: 2
        })
    ));
    assert!(matches!(
        Keytab::parse(&MIT_KEYTAB[..4]),
        Err(KeytabError::Truncated {
            offset: 2,
            needed: 2
        })
    ));
    assert!(matches!(
        Keytab::parse(&MIT_KEYTAB[..10]),
        Err(KeytabError::EntryOverrun {
            offset: 2,
            size: 0x36,
            remaining: 4
        })
    ));
}

#[test]
fn keytab_corrupt_files_are_typed_errors() {
    // Wrong version.
    let mut f = MIT_KEYTAB.to_vec();
    f[1] = 1;
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::UnsupportedVersion(0x0501))
    ));
    // A component count larger than the entry: runs off the entry's end.
    let mut f = MIT_KEYTAB.to_vec();
    f[6] = 0xFF;
    f[7] = 0xFF;
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::Truncated { .. })
    ));
    // Key length that does not fit the etype: etype 18 with a 16-byte key.
    let mut f = vec![5, 2];
    f.extend(entry_bytes(1, Some(1), 18, &[0; 16]));
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::BadKey {
            offset: 2,
            etype: 18,
            len: 16
        })
    ));
    // A principal that is not UTF-8.
    let mut f = MIT_KEYTAB.to_vec();
    f[10] = 0xFF; // first byte of "TEST.REALM"
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::NonUtf8Name { offset: 2 })
    ));
    // A hole larger than the file.
    let mut f = vec![5, 2];
    f.extend_from_slice(&(-100i32).to_be_bytes());
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::HoleOverrun {
            offset: 2,
            size: 100,
            remaining: 0
        })
    ));
    // i32::MIN as a size.
    let mut f = vec![5, 2];
    f.extend_from_slice(&i32::MIN.to_be_bytes());
    assert!(matches!(
        Keytab::parse(&f),
        Err(KeytabError::HoleOverrun { .. })
    ));
    // A missing file.
    assert!(matches!(
        Keytab::load(Path::new("/nonexistent/roamgate.keytab")),
        Err(KeytabError::Read { .. })
    ));
}

fn roamgate_keytab() -> Keytab {
    let mut kt = Keytab::new();
    let bob = Principal::parse("bob@TEST.REALM").unwrap();
    let svc = Principal::parse("host/gw.test.realm@TEST.REALM").unwrap();
    for etype in [
        Etype::Aes256CtsHmacSha384192,
        Etype::Aes128CtsHmacSha256128,
        Etype::Aes256CtsHmacSha196,
        Etype::Aes128CtsHmacSha196,
    ] {
        kt.push(KeytabEntry::from_password(bob.clone(), 3, etype, b"bob-pw", T0 + 60).unwrap());
    }
    kt.push(KeytabEntry {
        principal: svc,
        timestamp: T0 + 120,
        kvno: 300,
        key: Key::new(Etype::Aes256CtsHmacSha196, &[0x5A; 32]).unwrap(),
    });
    kt
}

#[test]
fn keytab_save_is_0600_and_reloads() {
    let d = tmpdir("kt-save");
    let p = d.join("roamgate.keytab");
    let kt = roamgate_keytab();
    kt.save(&p).unwrap();
    assert_eq!(mode(&p), 0o600);
    assert_eq!(Keytab::load(&p).unwrap(), kt);
    // Overwriting an existing, wider-mode file leaves it 0600 too.
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
    kt.save(&p).unwrap();
    assert_eq!(mode(&p), 0o600);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn keytab_written_by_roamgate_is_read_by_mit_klist() {
    if klist().is_none() {
        return;
    }
    let d = tmpdir("kt-klist");
    let p = d.join("roamgate.keytab");
    let kt = roamgate_keytab();
    kt.save(&p).unwrap();
    let out = run_klist(&["-k", "-t", "-e", "-K", p.to_str().unwrap()]);
    // "   3 11/28/26 01:58:31 bob@TEST.REALM (aes256-cts-hmac-sha384-192)  (0x...)"
    let lines: Vec<&str> = out.lines().filter(|l| l.contains("@TEST.REALM")).collect();
    assert_eq!(lines.len(), kt.entries.len(), "{out}");
    for (line, e) in lines.iter().zip(&kt.entries) {
        let f: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(f[0], e.kvno.to_string(), "{line}");
        assert_eq!(f[3], e.principal.to_string(), "{line}");
        assert_eq!(f[4], format!("({})", e.key.etype().name()), "{line}");
        let key = hex_of(e.key.as_bytes());
        assert_eq!(f[5], format!("(0x{key})"), "{line}");
    }
    assert!(lines[0].contains("11/28/26 01:58:31"), "{}", lines[0]);
    std::fs::remove_dir_all(&d).unwrap();
}

fn hex_of(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---------------------------------------------------------------- ccache

// klist shows "RIA"; the TGT also has enc-pa-rep (bit 15, RFC 6806), which
// klist does not print.
const TGT_FLAGS: u32 = 0x00e1_0000; // renewable, initial, pre-authent, enc-pa-rep
                                    // klist: "RAT" (renewable, pre-authent, transited-policy-checked), + enc-pa-rep.
const SVC_FLAGS: u32 = 0x00a9_0000;

#[test]
fn ccache_parse_mit_fixture_exact_fields() {
    let cc = CCache::parse(MIT_CCACHE).unwrap();
    assert_eq!(
        cc.kdc_offset,
        Some(KdcOffset {
            seconds: 0,
            microseconds: 0
        })
    );
    assert!(cc.other_tags.is_empty());
    assert_eq!(cc.default_principal, alice());
    assert_eq!(cc.default_principal.name_type, 1);

    let tickets: Vec<&Credential> = cc.tickets().collect();
    let expected = [
        ("krbtgt/TEST.REALM@TEST.REALM", 18, TGT_FLAGS),
        ("host/sha1.test.realm@TEST.REALM", 18, SVC_FLAGS),
        ("host/sha256.test.realm@TEST.REALM", 19, SVC_FLAGS),
        ("host/sha384.test.realm@TEST.REALM", 20, SVC_FLAGS),
    ];
    assert_eq!(tickets.len(), expected.len());
    for (t, (server, skey_etype, flags)) in tickets.iter().zip(expected) {
        assert_eq!(t.client, alice());
        assert_eq!(t.server.to_string(), server);
        assert_eq!(t.key.etype, skey_etype, "{server}");
        assert_eq!(
            t.key.as_bytes().len(),
            Etype::from_i32(skey_etype).unwrap().key_len()
        );
        assert_eq!(
            t.times,
            Times {
                authtime: T0,
                starttime: T0,
                endtime: T0 + DAY,
                renew_till: T0 + 2 * DAY,
            },
            "{server}"
        );
        assert!(!t.is_skey);
        assert_eq!(t.ticket_flags, flags, "{server}: {:#x}", t.ticket_flags);
        assert!(t.addresses.is_empty());
        assert!(t.authdata.is_empty());
        assert_eq!(t.ticket[0], 0x61, "Ticket is [APPLICATION 1]");
        assert!(t.second_ticket.is_empty());
        assert!(!t.is_config());
    }

    // MIT's configuration entries are there, apart from the tickets.
    let conf: Vec<&Credential> = cc.config_entries().collect();
    assert_eq!(conf.len(), 2);
    assert_eq!(cc.credentials.len(), 6);
    let tgs = "krbtgt/TEST.REALM@TEST.REALM";
    assert_eq!(cc.config_value("fast_avail", Some(tgs)), Some(&b"yes"[..]));
    assert_eq!(cc.config_value("pa_type", Some(tgs)), Some(&b"2"[..]));
    assert_eq!(cc.config_value("pa_type", None), None);
    assert_eq!(conf[0].server.realm, "X-CACHECONF:");
    assert_eq!(conf[0].key, KeyBlock::default());

    let tgt = cc.find_ticket(&Principal::krbtgt("TEST.REALM")).unwrap();
    assert_eq!(tgt.key.etype, 18);
}

#[test]
fn ccache_rewrite_is_byte_identical() {
    let cc = CCache::parse(MIT_CCACHE).unwrap();
    assert_eq!(cc.to_bytes().unwrap(), MIT_CCACHE);
}

/// The tickets MIT's KDC issued decrypt under the service keys roamgate
/// derives from the same passwords, and hold the session keys the cache
/// stores: an interoperability check of string-to-key and decryption for
/// etypes 17, 18, 19 and 20 against MIT.
#[test]
fn ccache_mit_tickets_decrypt_with_roamgate_crypto() {
    let cc = CCache::parse(MIT_CCACHE).unwrap();
    let services = [
        (
            "krbtgt/TEST.REALM@TEST.REALM",
            &b"krbtgt-pw"[..],
            Etype::Aes256CtsHmacSha196,
        ),
        (
            "host/sha1.test.realm@TEST.REALM",
            b"svc17-pw",
            Etype::Aes128CtsHmacSha196,
        ),
        (
            "host/sha256.test.realm@TEST.REALM",
            b"svc19-pw",
            Etype::Aes128CtsHmacSha256128,
        ),
        (
            "host/sha384.test.realm@TEST.REALM",
            b"svc20-pw",
            Etype::Aes256CtsHmacSha384192,
        ),
    ];
    for (name, pw, etype) in services {
        let server = Principal::parse(name).unwrap();
        let cred = cc.find_ticket(&server).unwrap();
        let ticket: rasn_kerberos::Ticket = rasn::der::decode(&cred.ticket).unwrap();
        assert_eq!(ticket.enc_part.etype, etype.to_i32(), "{name}");
        let key = Key::from_password(etype, pw, &server.default_salt(), None).unwrap();
        let plain = key.decrypt(2, &ticket.enc_part.cipher).unwrap();
        let part: rasn_kerberos::EncTicketPart = rasn::der::decode(&plain).unwrap();
        assert_eq!(part.key.r#type, cred.key.etype, "{name}");
        assert_eq!(part.key.value.as_ref(), cred.key.as_bytes(), "{name}");
        assert_eq!(part.auth_time.0.timestamp(), i64::from(T0), "{name}");
        // And a wrong key is refused.
        let wrong = Key::from_password(etype, b"not-it", &server.default_salt(), None).unwrap();
        assert!(wrong.decrypt(2, &ticket.enc_part.cipher).is_err());
    }
}

#[test]
fn ccache_store_replaces_and_keeps_config() {
    let mut cc = CCache::parse(MIT_CCACHE).unwrap();
    let server = Principal::parse("host/sha1.test.realm@TEST.REALM").unwrap();
    let mut cred = cc.find_ticket(&server).unwrap().clone();
    cred.times.endtime += 1;
    cc.store(cred.clone());
    assert_eq!(cc.credentials.len(), 6);
    assert_eq!(cc.find_ticket(&server).unwrap().times.endtime, T0 + DAY + 1);
    let mut other = cred.clone();
    other.server = Principal::parse("host/new.test.realm@TEST.REALM").unwrap();
    cc.store(other);
    assert_eq!(cc.credentials.len(), 7);
    assert_eq!(cc.config_entries().count(), 2);
    let again = CCache::parse(&cc.to_bytes().unwrap()).unwrap();
    assert_eq!(again, cc);
}

#[test]
fn ccache_every_truncation_is_typed_error_or_credential_boundary() {
    let cc = CCache::parse(MIT_CCACHE).unwrap();
    // Boundaries: after the default principal and after each credential.
    let mut boundaries = Vec::new();
    let mut partial = CCache {
        credentials: Vec::new(),
        ..cc.clone()
    };
    boundaries.push(partial.to_bytes().unwrap().len());
    for c in &cc.credentials {
        partial.credentials.push(c.clone());
        boundaries.push(partial.to_bytes().unwrap().len());
    }
    for len in 0..MIT_CCACHE.len() {
        match CCache::parse(&MIT_CCACHE[..len]) {
            Ok(p) => {
                let i = boundaries
                    .iter()
                    .position(|&b| b == len)
                    .expect("Ok only at a boundary");
                assert_eq!(p.credentials.len(), i);
            }
            Err(CCacheError::Truncated { .. }) => assert!(!boundaries.contains(&len)),
            Err(e) => panic!("unexpected error at {len}: {e}"),
        }
    }
    assert!(matches!(
        CCache::parse(&MIT_CCACHE[..3]),
        Err(CCacheError::Truncated {
            offset: 2,
            needed: 1
        })
    ));
    // Header claims 12 bytes, only 2 present.
    assert!(matches!(
        CCache::parse(&MIT_CCACHE[..6]),
        Err(CCacheError::Truncated {
            offset: 4,
            needed: 10
        })
    ));
}

#[test]
fn ccache_corrupt_files_are_typed_errors() {
    let mut f = MIT_CCACHE.to_vec();
    f[1] = 3;
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::UnsupportedVersion(0x0503))
    ));
    // KDC offset tag with a length of 4: header_len 8, tag 1, len 4.
    let f = [5, 4, 0, 8, 0, 1, 0, 4, 0, 0, 0, 0];
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::BadHeaderTag {
            offset: 4,
            tag: 1,
            len: 4,
            expected: 8
        })
    ));
    // A tag running past the header.
    let f = [5, 4, 0, 4, 0, 9, 0, 9];
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::Truncated { .. })
    ));
    // A huge component count in the default principal.
    let mut f = MIT_CCACHE.to_vec();
    f[20..24].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::Truncated { .. })
    ));
    // A huge ticket length in the last credential.
    let mut f = MIT_CCACHE.to_vec();
    let n = f.len();
    f[n - 4..].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::Truncated { .. })
    ));
    // Non-UTF-8 realm in the default principal (bytes 24..28 are its length).
    let mut f = MIT_CCACHE.to_vec();
    f[28] = 0xC3;
    f[29] = 0x28;
    assert!(matches!(
        CCache::parse(&f),
        Err(CCacheError::NonUtf8Name { offset: 16 })
    ));
    assert!(matches!(
        CCache::load(Path::new("/nonexistent/roamgate.ccache")),
        Err(CCacheError::Read { .. })
    ));
}

#[test]
fn ccache_unknown_header_tags_and_lists_round_trip() {
    let mut cc = CCache::new(alice());
    cc.other_tags.push(Typed {
        kind: 7,
        data: vec![1, 2, 3],
    });
    cc.store(Credential {
        client: alice(),
        server: Principal::parse("host/x.test.realm@TEST.REALM").unwrap(),
        key: KeyBlock::from(&Key::new(Etype::Aes128CtsHmacSha196, &[9; 16]).unwrap()),
        times: Times {
            authtime: 1,
            starttime: 2,
            endtime: 3,
            renew_till: 0,
        },
        is_skey: true,
        ticket_flags: 0x4000_0000,
        addresses: vec![Typed {
            kind: 2,
            data: vec![127, 0, 0, 1],
        }],
        authdata: vec![Typed {
            kind: 1,
            data: vec![0x30, 0x00],
        }],
        ticket: vec![0x61, 0x00],
        second_ticket: vec![0x61, 0x01, 0x00],
    });
    let again = CCache::parse(&cc.to_bytes().unwrap()).unwrap();
    assert_eq!(again, cc);
    assert_eq!(
        again.credentials[0].key.to_key().unwrap().as_bytes(),
        &[9; 16]
    );
    assert!(
        !format!("{:?}", again.credentials[0].key).contains("9, 9"),
        "key redacted"
    );
}

#[test]
fn ccache_save_is_0600_and_reloads() {
    let d = tmpdir("cc-save");
    let p = d.join("cc");
    let cc = CCache::parse(MIT_CCACHE).unwrap();
    cc.save(&p).unwrap();
    assert_eq!(mode(&p), 0o600);
    assert_eq!(CCache::load(&p).unwrap(), cc);
    std::fs::remove_dir_all(&d).unwrap();
}

#[test]
fn ccache_written_by_roamgate_is_read_by_mit_klist() {
    if klist().is_none() {
        return;
    }
    let d = tmpdir("cc-klist");
    let p = d.join("cc");
    // Keep the TGT, the sha384 ticket and the config entries; move the
    // TGT's end time a day on; drop the other two tickets.
    let mit = CCache::parse(MIT_CCACHE).unwrap();
    let mut cc = CCache::new(alice());
    for c in &mit.credentials {
        let s = c.server.to_string();
        if c.is_config() || s.starts_with("krbtgt/") || s.starts_with("host/sha384") {
            let mut c = c.clone();
            if s.starts_with("krbtgt/") {
                c.times.endtime += DAY;
            }
            cc.credentials.push(c);
        }
    }
    cc.save(&p).unwrap();
    let out = run_klist(&["-e", "-f", "-c", &format!("FILE:{}", p.display())]);
    assert!(out.contains("Default principal: alice@TEST.REALM"), "{out}");
    let lines: Vec<&str> = out.lines().collect();
    let tgt = lines
        .iter()
        .position(|l| l.ends_with("krbtgt/TEST.REALM@TEST.REALM"))
        .expect(&out);
    assert!(
        lines[tgt].starts_with("11/28/26 01:57:31  11/30/26 01:57:31"),
        "{out}"
    );
    assert!(
        lines[tgt + 1].contains("renew until 11/30/26 01:57:31, Flags: RIA"),
        "{out}"
    );
    assert!(
        lines[tgt + 2].contains("aes256-cts-hmac-sha1-96, aes256-cts-hmac-sha1-96"),
        "{out}"
    );
    let svc = lines
        .iter()
        .position(|l| l.ends_with("host/sha384.test.realm@TEST.REALM"))
        .expect(&out);
    assert!(lines[svc + 1].contains("Flags: RAT"), "{out}");
    assert!(
        lines[svc + 2].contains("aes256-cts-hmac-sha384-192, aes256-cts-hmac-sha384-192"),
        "{out}"
    );
    assert!(!out.contains("sha1.test.realm"), "{out}");
    assert!(
        !out.contains("X-CACHECONF"),
        "klist hides config entries: {out}"
    );
    let listed = lines
        .iter()
        .filter(|l| l.contains(":") && l.ends_with("@TEST.REALM") && !l.starts_with("Default"))
        .count();
    assert_eq!(listed, 2, "{out}");
    std::fs::remove_dir_all(&d).unwrap();
}

// Unused-import guard for types only some tests name.
#[allow(dead_code)]
fn _types(_: RawKey, _: UnsupportedEntry) {}

// ------------------------------------------------------- mutation smoke

/// xorshift64: a deterministic stand-in for the fuzzer in `cargo test`.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn mutate(rng: &mut Rng, base: &[u8]) -> Vec<u8> {
    let mut f = base.to_vec();
    for _ in 0..1 + rng.below(4) {
        match rng.below(4) {
            0 => {
                let i = rng.below(f.len());
                f[i] = rng.next() as u8;
            }
            1 => {
                let i = rng.below(f.len());
                f[i] = [0, 0xFF, 0x7F, 0x80][rng.below(4)];
            }
            2 => {
                let n = rng.below(f.len());
                f.truncate(n.max(2));
            }
            _ => {
                let i = rng.below(f.len());
                f.insert(i, rng.next() as u8);
            }
        }
    }
    f
}

#[test]
fn mutated_fixtures_never_panic_and_round_trip() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let (mut kt_ok, mut cc_ok) = (0, 0);
    for _ in 0..20_000 {
        let f = mutate(&mut rng, MIT_KEYTAB);
        if let Ok(kt) = Keytab::parse(&f) {
            kt_ok += 1;
            let again = Keytab::parse(&kt.to_bytes().unwrap()).unwrap();
            assert_eq!(again, kt);
        }
        let f = mutate(&mut rng, MIT_CCACHE);
        if let Ok(cc) = CCache::parse(&f) {
            cc_ok += 1;
            let again = CCache::parse(&cc.to_bytes().unwrap()).unwrap();
            assert_eq!(again, cc);
        }
    }
    // Some mutations (key bytes, times, ticket bytes) still parse.
    assert!(kt_ok > 100 && cc_ok > 100, "{kt_ok} {cc_ok}");
}

// ------------------------------------------------- live MIT KDC interop

/// Kills the KDC this test started, by its own child handle.
struct KdcGuard(std::process::Child);
impl Drop for KdcGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn run_ok(
    cmd: &str,
    args: &[&str],
    env: &[(&str, &Path)],
    stdin: Option<&str>,
) -> std::process::Output {
    use std::io::Write;
    let mut c = Command::new(cmd);
    c.args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    for (k, v) in env {
        c.env(k, v);
    }
    let mut child = c.spawn().unwrap();
    if let Some(s) = stdin {
        child.stdin.take().unwrap().write_all(s.as_bytes()).unwrap();
    }
    child.wait_with_output().unwrap()
}

/// A keytab written by roamgate (keys from `Key::from_password`) gets a TGT
/// from MIT's KDC with `kinit -k -t`; a ccache rewritten by roamgate is
/// then used by MIT's `kvno` to get a service ticket, which MIT appends to
/// roamgate's file and roamgate reads back.
#[test]
fn roamgate_keytab_and_ccache_work_with_live_mit_kdc() {
    let tools = [
        "/usr/sbin/krb5kdc",
        "/usr/sbin/kdb5_util",
        "/usr/sbin/kadmin.local",
        "/usr/bin/kinit",
        "/usr/bin/kvno",
    ];
    if let Some(missing) = tools.iter().find(|t| !Path::new(t).exists()) {
        eprintln!("SKIPPED: {missing} not installed (apt-get install krb5-kdc krb5-user)");
        return;
    }
    let d = tmpdir("live-kdc");
    let port = std::net::UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let krb5_conf = d.join("krb5.conf");
    let kdc_conf = d.join("kdc.conf");
    std::fs::write(
        &krb5_conf,
        format!(
            "[libdefaults]\n default_realm = TEST.REALM\n dns_lookup_kdc = false\n rdns = false\n\
             [realms]\n TEST.REALM = {{\n  kdc = 127.0.0.1:{port}\n }}\n"
        ),
    )
    .unwrap();
    std::fs::write(
        &kdc_conf,
        format!(
            "[kdcdefaults]\n kdc_listen = 127.0.0.1:{port}\n kdc_tcp_listen = 127.0.0.1:{port}\n\
             [realms]\n TEST.REALM = {{\n  database_name = {db}\n  key_stash_file = {stash}\n  \
             acl_file = {acl}\n  supported_enctypes = aes256-cts-hmac-sha384-192:normal \
             aes128-cts-hmac-sha256-128:normal aes256-cts-hmac-sha1-96:normal \
             aes128-cts-hmac-sha1-96:normal\n }}\n[logging]\n kdc = FILE:{log}\n",
            db = d.join("principal").display(),
            stash = d.join("stash").display(),
            acl = d.join("kadm5.acl").display(),
            log = d.join("kdc.log").display(),
        ),
    )
    .unwrap();
    std::fs::write(d.join("kadm5.acl"), "").unwrap();
    let env: [(&str, &Path); 2] = [("KRB5_CONFIG", &krb5_conf), ("KRB5_KDC_PROFILE", &kdc_conf)];
    let out = run_ok(
        "/usr/sbin/kdb5_util",
        &["create", "-s", "-P", "master-pw", "-r", "TEST.REALM"],
        &env,
        None,
    );
    assert!(out.status.success(), "kdb5_util: {out:?}");
    for q in [
        "addprinc -pw bob-pw +requires_preauth bob",
        "addprinc -randkey host/svc.test.realm",
    ] {
        let out = run_ok("/usr/sbin/kadmin.local", &["-q", q], &env, None);
        assert!(out.status.success(), "kadmin.local {q}: {out:?}");
    }
    let mut kdc = Command::new("/usr/sbin/krb5kdc");
    kdc.arg("-n")
        .env("KRB5_CONFIG", &krb5_conf)
        .env("KRB5_KDC_PROFILE", &kdc_conf)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    let _kdc = KdcGuard(kdc.spawn().unwrap());

    // roamgate's keytab for bob, kvno 1 as kadmin made it.
    let bob = Principal::parse("bob@TEST.REALM").unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as u32;
    let mut kt = Keytab::new();
    for etype in Etype::ALL {
        kt.push(KeytabEntry::from_password(bob.clone(), 1, etype, b"bob-pw", now).unwrap());
    }
    let kt_path = d.join("bob.keytab");
    kt.save(&kt_path).unwrap();
    let cc1 = d.join("cc1");
    let cc1_name = format!("FILE:{}", cc1.display());
    let kt_name = format!("FILE:{}", kt_path.display());
    // The KDC may take a moment to bind: retry briefly.
    let mut last = None;
    for _ in 0..50 {
        let out = run_ok(
            "/usr/bin/kinit",
            &["-k", "-t", &kt_name, "-c", &cc1_name, "bob@TEST.REALM"],
            &env,
            None,
        );
        if out.status.success() {
            last = None;
            break;
        }
        last = Some(out);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert!(
        last.is_none(),
        "kinit -k -t with roamgate's keytab: {last:?}"
    );

    // A keytab with the wrong password is refused by the KDC.
    let mut bad = Keytab::new();
    bad.push(
        KeytabEntry::from_password(bob.clone(), 1, Etype::Aes256CtsHmacSha196, b"wrong", now)
            .unwrap(),
    );
    let bad_path = d.join("bad.keytab");
    bad.save(&bad_path).unwrap();
    let out = run_ok(
        "/usr/bin/kinit",
        &[
            "-k",
            "-t",
            &format!("FILE:{}", bad_path.display()),
            "-c",
            &format!("FILE:{}", d.join("cc-bad").display()),
            "bob@TEST.REALM",
        ],
        &env,
        None,
    );
    assert!(!out.status.success(), "a wrong key must not get a TGT");

    // roamgate reads MIT's fresh cache and writes it to a new file.
    let cc = CCache::load(&cc1).unwrap();
    assert_eq!(cc.default_principal, bob);
    let tgt = cc.find_ticket(&Principal::krbtgt("TEST.REALM")).unwrap();
    assert!(tgt.times.endtime > now);
    let cc2 = d.join("cc2");
    cc.save(&cc2).unwrap();
    assert_eq!(mode(&cc2), 0o600);

    // MIT's kvno uses roamgate's file to get a service ticket.
    let out = run_ok(
        "/usr/bin/kvno",
        &[
            "-c",
            &format!("FILE:{}", cc2.display()),
            "host/svc.test.realm@TEST.REALM",
        ],
        &env,
        None,
    );
    assert!(out.status.success(), "kvno with roamgate's ccache: {out:?}");
    let after = CCache::load(&cc2).unwrap();
    let svc = after
        .find_ticket(&Principal::parse("host/svc.test.realm@TEST.REALM").unwrap())
        .expect("MIT stored the service ticket in roamgate's cache");
    assert_eq!(svc.client, bob);
    assert!(svc.key.to_key().is_ok());
    std::fs::remove_dir_all(&d).unwrap();
}

/// roamgate's *encryption* against MIT's decryption, for etypes 17-20:
/// each MIT-issued ticket's EncTicketPart is re-encrypted by roamgate under
/// the service key (fresh confounder), stored in a ccache roamgate writes,
/// and MIT's `kvno -k KEYTAB` (keytab also written by roamgate) takes the
/// ticket from that cache and decrypts it. No KDC is involved.
#[test]
fn roamgate_encryption_is_decrypted_by_mit_kvno() {
    let kvno_bin = "/usr/bin/kvno";
    if !Path::new(kvno_bin).exists() {
        eprintln!("SKIPPED: {kvno_bin} not installed (apt-get install krb5-user)");
        return;
    }
    let d = tmpdir("kvno-k");
    let conf = d.join("krb5.conf");
    std::fs::write(
        &conf,
        "[libdefaults]\n default_realm = TEST.REALM\n dns_lookup_kdc = false\n\
         [realms]\n TEST.REALM = {\n  kdc = 127.0.0.1:9\n }\n",
    )
    .unwrap();
    let env: [(&str, &Path); 1] = [("KRB5_CONFIG", &conf)];
    let services = [
        (
            "krbtgt/TEST.REALM@TEST.REALM",
            &b"krbtgt-pw"[..],
            Etype::Aes256CtsHmacSha196,
        ),
        (
            "host/sha1.test.realm@TEST.REALM",
            b"svc17-pw",
            Etype::Aes128CtsHmacSha196,
        ),
        (
            "host/sha256.test.realm@TEST.REALM",
            b"svc19-pw",
            Etype::Aes128CtsHmacSha256128,
        ),
        (
            "host/sha384.test.realm@TEST.REALM",
            b"svc20-pw",
            Etype::Aes256CtsHmacSha384192,
        ),
    ];
    let mit = CCache::parse(MIT_CCACHE).unwrap();
    // Far enough ahead that the cached tickets are never expired.
    const LATER: u32 = 2_100_000_000;
    for wrong_key in [false, true] {
        let mut cc = CCache::new(alice());
        let mut kt = Keytab::new();
        for (name, pw, etype) in services {
            let server = Principal::parse(name).unwrap();
            let mut cred = mit.find_ticket(&server).unwrap().clone();
            let mut ticket: rasn_kerberos::Ticket = rasn::der::decode(&cred.ticket).unwrap();
            let key = Key::from_password(etype, pw, &server.default_salt(), None).unwrap();
            let plain = key.decrypt(2, &ticket.enc_part.cipher).unwrap();
            let seal = if wrong_key {
                Key::random(etype)
            } else {
                key.clone()
            };
            let sealed = seal.encrypt(2, &plain);
            assert_ne!(sealed, ticket.enc_part.cipher.to_vec(), "fresh confounder");
            ticket.enc_part.cipher = sealed.into();
            cred.ticket = rasn::der::encode(&ticket).unwrap();
            cred.times.endtime = LATER;
            cred.times.renew_till = LATER;
            cc.store(cred);
            kt.push(KeytabEntry {
                principal: server,
                timestamp: T0,
                kvno: ticket.enc_part.kvno.unwrap_or(0),
                key,
            });
        }
        let cc_path = d.join("cc");
        let kt_path = d.join("kt");
        cc.save(&cc_path).unwrap();
        kt.save(&kt_path).unwrap();
        for (name, _, _) in services {
            let out = run_ok(
                kvno_bin,
                &[
                    "-c",
                    &format!("FILE:{}", cc_path.display()),
                    "-k",
                    &format!("FILE:{}", kt_path.display()),
                    name,
                ],
                &env,
                None,
            );
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            if wrong_key {
                assert!(
                    !out.status.success(),
                    "{name} sealed under a wrong key: {text}"
                );
            } else {
                assert!(out.status.success(), "{name}: {text}");
                assert!(text.contains("keytab entry valid"), "{name}: {text}");
            }
        }
    }
    std::fs::remove_dir_all(&d).unwrap();
}
