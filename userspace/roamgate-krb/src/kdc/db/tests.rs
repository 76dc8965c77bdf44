//! Tests of the principal database.

use std::time::Duration;

use roamgate_krb_crypto::{Etype, Key};

use super::*;
use crate::principal::Principal;

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn create_open_and_lookup() {
    let dir = tmp();
    let path = dir.path().join("kdc.sqlite");
    let db = SqliteDb::create(&path, "EXAMPLE.COM", None).unwrap();
    let alice = Principal::parse("alice@EXAMPLE.COM").unwrap();
    db.add_principal(&alice, NewKeys::Password(b"pw"), &NewPrincipal::default())
        .unwrap();
    drop(db);

    let db = SqliteDb::open(&path, None).unwrap();
    assert_eq!(db.realm(), "EXAMPLE.COM");
    let e = db.get(&alice).unwrap().unwrap();
    assert_eq!(e.kvno, 1);
    assert_eq!(e.keys.len(), 4);
    assert!(e.flags.has(PrincipalFlags::REQUIRES_PREAUTH));
    let k18 = e.key(Etype::Aes256CtsHmacSha196).unwrap();
    let expect =
        Key::from_password(Etype::Aes256CtsHmacSha196, b"pw", b"EXAMPLE.COMalice", None).unwrap();
    assert_eq!(k18.key, expect);
    assert_eq!(k18.salt, b"EXAMPLE.COMalice");
    assert_eq!(k18.s2kparams, [0, 0, 0x10, 0]);
    assert_eq!(
        e.strongest_key().unwrap().key.etype(),
        Etype::Aes256CtsHmacSha384192
    );
    let tgt = db.get(&Principal::krbtgt("EXAMPLE.COM")).unwrap().unwrap();
    assert_eq!(tgt.keys.len(), 4);
    assert!(db
        .get(&Principal::parse("bob@EXAMPLE.COM").unwrap())
        .unwrap()
        .is_none());
    assert!(db
        .get(&Principal::parse("alice@OTHER").unwrap())
        .unwrap()
        .is_none());
    assert!(matches!(
        db.add_principal(&alice, NewKeys::Random, &NewPrincipal::default()),
        Err(DbError::PrincipalExists(_))
    ));
}

#[cfg(unix)]
#[test]
fn files_are_mode_0600_and_master_key_is_checked() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tmp();
    let path = dir.path().join("kdc.sqlite");
    SqliteDb::create(&path, "R", None).unwrap();
    let mkey = MasterKey::default_path(&path);
    for p in [&path, &mkey] {
        let mode = std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{}", p.display());
    }
    // The stored keys are not in the clear: no 32-byte window of the
    // file equals the krbtgt key.
    let db = SqliteDb::open(&path, None).unwrap();
    let k = db.all_keys(&Principal::krbtgt("R")).unwrap();
    let raw = std::fs::read(&path).unwrap();
    for ke in &k {
        let kb = ke.key.as_bytes();
        assert!(!raw.windows(kb.len()).any(|w| w == kb));
    }
    drop(db);

    // Another database's master key is refused.
    let other = dir.path().join("other.sqlite");
    SqliteDb::create(&other, "R", None).unwrap();
    assert!(matches!(
        SqliteDb::open(&path, Some(&MasterKey::default_path(&other))),
        Err(DbError::WrongMasterKey(_))
    ));
    // A world-readable master key is refused.
    std::fs::set_permissions(&mkey, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(matches!(
        SqliteDb::open(&path, None),
        Err(DbError::MasterKeyPermissions(_))
    ));
    // Re-initialising is refused.
    assert!(matches!(
        SqliteDb::create(&path, "R", None),
        Err(DbError::AlreadyExists(_))
    ));
    // A file that is no database.
    let junk = dir.path().join("junk");
    std::fs::write(&junk, b"not sqlite").unwrap();
    assert!(SqliteDb::open(&junk, None).is_err());
}

#[test]
fn swapped_key_rows_are_detected() {
    let dir = tmp();
    let path = dir.path().join("kdc.sqlite");
    let db = SqliteDb::create(&path, "R", None).unwrap();
    let a = Principal::parse("a@R").unwrap();
    let b = Principal::parse("b@R").unwrap();
    db.add_principal(&a, NewKeys::Random, &NewPrincipal::default())
        .unwrap();
    db.add_principal(&b, NewKeys::Random, &NewPrincipal::default())
        .unwrap();
    db.conn()
        .execute(
            "UPDATE keys SET enc_key = (SELECT enc_key FROM keys WHERE name = 'a' AND etype = 18) WHERE name = 'b' AND etype = 18",
            [],
        )
        .unwrap();
    assert!(matches!(db.get(&b), Err(DbError::CorruptKey { .. })));
    assert!(db.get(&a).is_ok());
}

#[test]
fn change_keys_bumps_kvno_and_keeps_old() {
    let dir = tmp();
    let path = dir.path().join("kdc.sqlite");
    let db = SqliteDb::create(&path, "R", None).unwrap();
    let s = Principal::parse("host/x@R").unwrap();
    db.add_principal(&s, NewKeys::Random, &NewPrincipal::default())
        .unwrap();
    let v = db
        .change_keys(&s, NewKeys::Random, &[Etype::Aes256CtsHmacSha196])
        .unwrap();
    assert_eq!(v, 2);
    let e = db.get(&s).unwrap().unwrap();
    assert_eq!(e.kvno, 2);
    assert_eq!(e.key(Etype::Aes256CtsHmacSha196).unwrap().kvno, 2);
    assert_eq!(
        e.key_version(Etype::Aes256CtsHmacSha196, Some(1))
            .unwrap()
            .kvno,
        1
    );
    assert_eq!(db.all_keys(&s).unwrap().len(), 5);
    db.delete_principal(&s).unwrap();
    assert!(db.get(&s).unwrap().is_none());
    assert_eq!(db.list().unwrap(), vec![Principal::krbtgt("R")]);
}

#[test]
fn cache_is_bounded() {
    let mem = MemoryStore::new("R");
    let c = CachedStore::with_limits(mem, Duration::from_secs(60), 100);
    for i in 0..1000 {
        let p = Principal::parse(&format!("u{i}@R")).unwrap();
        assert!(c.get(&p).unwrap().is_none());
        assert!(c.cached() <= 100);
    }
}

/// A unit's own keys (made on the unit, exported as a keytab) are stored
/// as given; an etype asked for but not given is refused, not invented.
#[test]
fn given_keys_are_stored_as_they_are() {
    let dir = tmp();
    let db = SqliteDb::create(&dir.path().join("kdc.sqlite"), "EXAMPLE.COM", None).unwrap();
    let unit = Principal::parse("unit1@EXAMPLE.COM").unwrap();
    let keys = vec![
        Key::random(Etype::Aes256CtsHmacSha384192),
        Key::random(Etype::Aes128CtsHmacSha196),
    ];
    let opts = NewPrincipal {
        etypes: keys.iter().map(|k| k.etype()).collect(),
        ..NewPrincipal::default()
    };
    db.add_principal(&unit, NewKeys::Given(&keys), &opts)
        .unwrap();
    let e = db.get(&unit).unwrap().unwrap();
    assert_eq!(e.keys.len(), 2);
    for k in &keys {
        assert_eq!(&e.key(k.etype()).unwrap().key, k);
    }
    let other = Principal::parse("unit2@EXAMPLE.COM").unwrap();
    let opts = NewPrincipal {
        etypes: vec![Etype::Aes256CtsHmacSha196],
        ..NewPrincipal::default()
    };
    assert!(matches!(
        db.add_principal(&other, NewKeys::Given(&keys), &opts),
        Err(DbError::MissingKey(Etype::Aes256CtsHmacSha196))
    ));
    assert!(db.get(&other).unwrap().is_none());
}
