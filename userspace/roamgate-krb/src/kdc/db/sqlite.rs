//! The SQLite store: schema, creating and opening a database, and loading
//! principals for the KDC. The administrative operations are in
//! `admin.rs`.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use roamgate_krb_crypto::Etype;
use rusqlite::{params, Connection, OptionalExtension};

use super::{
    DbError, KeyEntry, MasterKey, NewKeys, NewPrincipal, PrincipalEntry, PrincipalFlags,
    PrincipalStore,
};
use crate::principal::Principal;

const SCHEMA_VERSION: i64 = 1;

/// The SQLite principal database.
pub struct SqliteDb {
    pub(super) path: PathBuf,
    pub(super) realm: String,
    conn: Mutex<Connection>,
    pub(super) master: MasterKey,
}

impl fmt::Debug for SqliteDb {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqliteDb")
            .field("path", &self.path)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

const SCHEMA: &str = "
CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
CREATE TABLE principals (
    name TEXT PRIMARY KEY,
    kvno INTEGER NOT NULL,
    flags INTEGER NOT NULL,
    max_life INTEGER NOT NULL,
    max_renew INTEGER NOT NULL
);
CREATE TABLE keys (
    name TEXT NOT NULL REFERENCES principals(name) ON DELETE CASCADE,
    etype INTEGER NOT NULL,
    kvno INTEGER NOT NULL,
    salt BLOB NOT NULL,
    s2kparams BLOB NOT NULL,
    enc_key BLOB NOT NULL,
    PRIMARY KEY (name, etype, kvno)
);
";

impl SqliteDb {
    pub(super) fn sql(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
        |source| DbError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// Creates a new realm database and its master key file (`mkey`, or
    /// `PATH.mkey`), and the realm's `krbtgt/REALM` principal with random
    /// keys. Both files are created with mode 0600 and must not exist.
    pub fn create(path: &Path, realm: &str, mkey: Option<&Path>) -> Result<Self, DbError> {
        let mkey_path = mkey
            .map(Path::to_owned)
            .unwrap_or_else(|| MasterKey::default_path(path));
        if path.exists() {
            return Err(DbError::AlreadyExists(path.to_owned()));
        }
        if mkey_path.exists() {
            return Err(DbError::AlreadyExists(mkey_path));
        }
        let master = MasterKey::generate();
        // Create the database file 0600 before SQLite opens it.
        {
            let mut opts = std::fs::OpenOptions::new();
            opts.write(true).create_new(true);
            #[cfg(unix)]
            {
                use std::os::unix::fs::OpenOptionsExt as _;
                opts.mode(0o600);
            }
            opts.open(path).map_err(|source| DbError::MasterKeyIo {
                path: path.to_owned(),
                source,
            })?;
        }
        let sql = |source| DbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        let check = master.check_value();
        conn.execute(
            "INSERT INTO meta (k, v) VALUES ('realm', ?1), ('schema', ?2), ('mkey_check', ?3)",
            params![
                realm.as_bytes(),
                SCHEMA_VERSION.to_string().as_bytes(),
                check
            ],
        )
        .map_err(sql)?;
        master.create_file(&mkey_path)?;
        let db = SqliteDb {
            path: path.to_owned(),
            realm: realm.to_owned(),
            conn: Mutex::new(conn),
            master,
        };
        db.add_principal(
            &Principal::krbtgt(realm),
            NewKeys::Random,
            &NewPrincipal {
                flags: PrincipalFlags(
                    PrincipalFlags::DEFAULT.0 & !PrincipalFlags::REQUIRES_PREAUTH,
                ),
                ..NewPrincipal::default()
            },
        )?;
        Ok(db)
    }

    /// Opens an existing database with its master key file.
    pub fn open(path: &Path, mkey: Option<&Path>) -> Result<Self, DbError> {
        let mkey_path = mkey
            .map(Path::to_owned)
            .unwrap_or_else(|| MasterKey::default_path(path));
        if !path.is_file() {
            return Err(DbError::NotInitialized(path.to_owned()));
        }
        let sql = |source| DbError::Sqlite {
            path: path.to_owned(),
            source,
        };
        let conn = Connection::open_with_flags(
            path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(sql)?;
        let meta = |k: &str| -> Result<Option<Vec<u8>>, DbError> {
            conn.query_row("SELECT v FROM meta WHERE k = ?1", [k], |r| r.get(0))
                .optional()
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(..) => DbError::NotInitialized(path.to_owned()),
                    other => sql(other),
                })
        };
        let realm = meta("realm")
            .ok()
            .flatten()
            .and_then(|r| String::from_utf8(r).ok())
            .ok_or_else(|| DbError::NotInitialized(path.to_owned()))?;
        let check = meta("mkey_check")?.ok_or_else(|| DbError::NotInitialized(path.to_owned()))?;
        let master = MasterKey::load_file(&mkey_path)?;
        if !master.verifies(&check) {
            return Err(DbError::WrongMasterKey(mkey_path));
        }
        Ok(SqliteDb {
            path: path.to_owned(),
            realm,
            conn: Mutex::new(conn),
            master,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub(super) fn check_realm(&self, p: &Principal) -> Result<(), DbError> {
        if p.realm != self.realm {
            return Err(DbError::WrongRealm {
                principal: p.to_string(),
                found: p.realm.clone(),
                expected: self.realm.clone(),
            });
        }
        Ok(())
    }

    pub(super) fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads a principal. With `current_only`, keys of older kvnos are left
    /// out except where the current kvno has no key of that etype.
    pub(super) fn load(
        &self,
        principal: &Principal,
        current_only: bool,
    ) -> Result<Option<PrincipalEntry>, DbError> {
        let name = principal.name();
        let conn = self.conn();
        let row: Option<(u32, u32, u64, u64)> = conn
            .prepare_cached(
                "SELECT kvno, flags, max_life, max_renew FROM principals WHERE name = ?1",
            )
            .and_then(|mut s| {
                s.query_row([&name], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            })
            .map_err(self.sql())?;
        let Some((kvno, flags, max_life, max_renew)) = row else {
            return Ok(None);
        };
        let mut stmt = conn
            .prepare_cached(
                "SELECT etype, kvno, salt, s2kparams, enc_key FROM keys WHERE name = ?1 ORDER BY kvno DESC",
            )
            .map_err(self.sql())?;
        let rows = stmt
            .query_map([&name], |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, u32>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, Vec<u8>>(4)?,
                ))
            })
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        let mut keys: Vec<KeyEntry> = Vec::new();
        for (etype_num, key_kvno, salt, s2kparams, enc) in rows {
            let Some(etype) = Etype::from_i32(etype_num) else {
                continue;
            };
            if current_only && keys.iter().any(|k| k.key.etype() == etype) {
                continue;
            }
            let corrupt = || DbError::CorruptKey {
                principal: principal.to_string(),
                etype: etype_num,
                kvno: key_kvno,
            };
            let key = self
                .master
                .unwrap(&name, etype, key_kvno, &enc)
                .ok_or_else(corrupt)?;
            keys.push(KeyEntry {
                kvno: key_kvno,
                key,
                salt,
                s2kparams,
            });
        }
        // Strongest etype first; within an etype, newest kvno first.
        keys.sort_by_key(|k| {
            (
                Etype::ALL
                    .iter()
                    .position(|e| *e == k.key.etype())
                    .unwrap_or(usize::MAX),
                std::cmp::Reverse(k.kvno),
            )
        });
        let mut p = principal.clone();
        p.realm = self.realm.clone();
        Ok(Some(PrincipalEntry {
            principal: p,
            kvno,
            flags: PrincipalFlags(flags),
            max_life: Duration::from_secs(max_life),
            max_renew: Duration::from_secs(max_renew),
            keys,
        }))
    }
}

impl PrincipalStore for SqliteDb {
    fn realm(&self) -> &str {
        &self.realm
    }

    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        if principal.realm != self.realm {
            return Ok(None);
        }
        Ok(self.load(principal, false)?.map(Arc::new))
    }
}
