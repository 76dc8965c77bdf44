//! The principal database: SQLite (rusqlite, bundled) behind the small
//! [`PrincipalStore`] trait, so that an operator's own KDC backend can take
//! its place.
//!
//! Long-term keys are stored encrypted under a master key kept in a
//! separate file of mode 0600. Each stored key is bound to its principal,
//! etype and kvno inside the encryption, so rows cannot be swapped between
//! principals. The database file itself is also created 0600.

use std::collections::HashMap;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use roamgate_krb_crypto::{Etype, Key};
use rusqlite::{params, Connection, OptionalExtension};

use crate::principal::Principal;

/// Key usage for long-term keys encrypted under the master key. Private to
/// this database (RFC 4120 §7.5.1 leaves 1024 and up for local use).
const USAGE_DB_KEY: u32 = 1024;
/// Key usage for the master key verifier stored in the database.
const USAGE_MKEY_CHECK: u32 = 1025;
const MKEY_MAGIC: &[u8; 6] = b"RGMK1\n";
const MKEY_CHECK_PLAINTEXT: &[u8] = b"roamgate kdc master key check";
const SCHEMA_VERSION: i64 = 1;

/// Per-principal flags, stored as an integer bit set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrincipalFlags(pub u32);

impl PrincipalFlags {
    /// The AS exchange demands PA-ENC-TIMESTAMP.
    pub const REQUIRES_PREAUTH: u32 = 1 << 0;
    /// Tickets for or to this principal may be forwardable.
    pub const ALLOW_FORWARDABLE: u32 = 1 << 1;
    /// Tickets may be renewable.
    pub const ALLOW_RENEWABLE: u32 = 1 << 2;
    /// The principal may get no tickets at all and no tickets for it.
    pub const DISABLED: u32 = 1 << 3;
    /// The principal may be a service (tickets may be issued for it).
    pub const ALLOW_SERVICE: u32 = 1 << 4;

    pub const DEFAULT: PrincipalFlags = PrincipalFlags(
        Self::REQUIRES_PREAUTH
            | Self::ALLOW_FORWARDABLE
            | Self::ALLOW_RENEWABLE
            | Self::ALLOW_SERVICE,
    );

    pub fn has(self, bit: u32) -> bool {
        self.0 & bit != 0
    }
}

/// One long-term key of a principal.
#[derive(Clone, Debug)]
pub struct KeyEntry {
    pub kvno: u32,
    pub key: Key,
    /// The salt the key was made with (for ETYPE-INFO2). Random keys carry
    /// the default salt too, as MIT does.
    pub salt: Vec<u8>,
    /// The string-to-key parameters (4-byte iteration count).
    pub s2kparams: Vec<u8>,
}

/// A principal with its current keys, as the KDC core sees it.
#[derive(Clone, Debug)]
pub struct PrincipalEntry {
    pub principal: Principal,
    pub kvno: u32,
    pub flags: PrincipalFlags,
    /// 0 means "the realm's limit".
    pub max_life: Duration,
    pub max_renew: Duration,
    /// The current keys, one per etype, strongest first.
    pub keys: Vec<KeyEntry>,
}

impl PrincipalEntry {
    /// The current key of `etype`, if the principal has one.
    pub fn key(&self, etype: Etype) -> Option<&KeyEntry> {
        self.keys.iter().find(|k| k.key.etype() == etype)
    }

    /// The key of `etype` and `kvno` (`None` kvno: the current one).
    pub fn key_version(&self, etype: Etype, kvno: Option<u32>) -> Option<&KeyEntry> {
        self.keys
            .iter()
            .find(|k| k.key.etype() == etype && kvno.is_none_or(|v| v == k.kvno))
    }

    /// The principal's preferred (strongest) key.
    pub fn strongest_key(&self) -> Option<&KeyEntry> {
        Etype::ALL.iter().find_map(|e| self.key(*e))
    }
}

/// Where the KDC looks principals up. Implementations must be cheap to
/// call concurrently; the KDC calls `get` on every request.
pub trait PrincipalStore: Send + Sync {
    /// The realm this store serves.
    fn realm(&self) -> &str;
    /// Looks up a principal of this realm, ignoring the name type.
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError>;
}

#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("principal database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("master key file {path}: {source}")]
    MasterKeyIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("master key file {0} is not a roamgate master key")]
    MasterKeyFormat(PathBuf),
    #[error("master key file {0} does not belong to this database (wrong master key)")]
    WrongMasterKey(PathBuf),
    #[error("master key file {0} is readable by group or others; it must be mode 0600")]
    MasterKeyPermissions(PathBuf),
    #[error("{0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    #[error("{0} is not a roamgate principal database (run `roamgate kdc init` first)")]
    NotInitialized(PathBuf),
    #[error("principal {0} already exists")]
    PrincipalExists(String),
    #[error("principal {0} not found")]
    PrincipalNotFound(String),
    #[error("principal {principal} belongs to realm {found}, the database serves {expected}")]
    WrongRealm {
        principal: String,
        found: String,
        expected: String,
    },
    #[error("stored key of {principal} (etype {etype}, kvno {kvno}) fails to decrypt under the master key")]
    CorruptKey {
        principal: String,
        etype: i32,
        kvno: u32,
    },
    #[error("deriving a key from the password failed: {0}")]
    StringToKey(roamgate_krb_crypto::CryptoError),
}

/// The master key: an AES-256 key that encrypts every long-term key.
pub struct MasterKey(Key);

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl MasterKey {
    const ETYPE: Etype = Etype::Aes256CtsHmacSha384192;

    pub fn generate() -> Self {
        MasterKey(Key::random(Self::ETYPE))
    }

    /// The conventional master key file next to a database: `PATH.mkey`.
    pub fn default_path(db: &Path) -> PathBuf {
        let mut s = db.as_os_str().to_owned();
        s.push(".mkey");
        PathBuf::from(s)
    }

    /// Writes the key to a new file created with mode 0600.
    pub fn create_file(&self, path: &Path) -> Result<(), DbError> {
        let io = |source| DbError::MasterKeyIo {
            path: path.to_owned(),
            source,
        };
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            opts.mode(0o600);
        }
        let mut f = opts.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                DbError::AlreadyExists(path.to_owned())
            } else {
                io(e)
            }
        })?;
        let mut buf = MKEY_MAGIC.to_vec();
        buf.extend_from_slice(&Self::ETYPE.to_i32().to_be_bytes());
        buf.extend_from_slice(self.0.as_bytes());
        f.write_all(&buf).map_err(io)?;
        f.sync_all().map_err(io)
    }

    /// Reads a master key file, refusing one that others may read.
    pub fn load_file(path: &Path) -> Result<Self, DbError> {
        let io = |source| DbError::MasterKeyIo {
            path: path.to_owned(),
            source,
        };
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let meta = std::fs::metadata(path).map_err(io)?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(DbError::MasterKeyPermissions(path.to_owned()));
            }
        }
        let data = zeroize::Zeroizing::new(std::fs::read(path).map_err(io)?);
        let bad = || DbError::MasterKeyFormat(path.to_owned());
        let rest = data.strip_prefix(MKEY_MAGIC.as_slice()).ok_or_else(bad)?;
        let (et, key) = rest.split_first_chunk::<4>().ok_or_else(bad)?;
        let etype = Etype::from_i32(i32::from_be_bytes(*et)).ok_or_else(bad)?;
        Key::new(etype, key).map(MasterKey).map_err(|_| bad())
    }
}

/// Binds a key to its owner inside the encryption.
fn key_binding(name: &str, etype: i32, kvno: u32) -> Vec<u8> {
    let mut v = Vec::with_capacity(name.len() + 12);
    v.extend_from_slice(&u32::try_from(name.len()).unwrap_or(u32::MAX).to_be_bytes());
    v.extend_from_slice(name.as_bytes());
    v.extend_from_slice(&etype.to_be_bytes());
    v.extend_from_slice(&kvno.to_be_bytes());
    v
}

/// How a new principal gets its keys.
pub enum NewKeys<'a> {
    /// String-to-key from a password, for each etype.
    Password(&'a [u8]),
    /// Random keys.
    Random,
}

impl fmt::Debug for NewKeys<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NewKeys::Password(_) => f.write_str("Password(<redacted>)"),
            NewKeys::Random => f.write_str("Random"),
        }
    }
}

/// Options for a new principal.
#[derive(Clone, Debug)]
pub struct NewPrincipal {
    pub etypes: Vec<Etype>,
    pub flags: PrincipalFlags,
    pub max_life: Duration,
    pub max_renew: Duration,
}

impl Default for NewPrincipal {
    fn default() -> Self {
        Self {
            etypes: Etype::ALL.to_vec(),
            flags: PrincipalFlags::DEFAULT,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
        }
    }
}

/// The SQLite principal database.
pub struct SqliteDb {
    path: PathBuf,
    realm: String,
    conn: Mutex<Connection>,
    master: MasterKey,
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
    fn sql(&self) -> impl Fn(rusqlite::Error) -> DbError + '_ {
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
        let check = master.0.encrypt(USAGE_MKEY_CHECK, MKEY_CHECK_PLAINTEXT);
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
        match master.0.decrypt(USAGE_MKEY_CHECK, &check) {
            Ok(p) if p.as_slice() == MKEY_CHECK_PLAINTEXT => {}
            _ => return Err(DbError::WrongMasterKey(mkey_path)),
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

    fn check_realm(&self, p: &Principal) -> Result<(), DbError> {
        if p.realm != self.realm {
            return Err(DbError::WrongRealm {
                principal: p.to_string(),
                found: p.realm.clone(),
                expected: self.realm.clone(),
            });
        }
        Ok(())
    }

    fn conn(&self) -> std::sync::MutexGuard<'_, Connection> {
        // A panic while holding the lock cannot leave SQLite inconsistent
        // (statements are atomic), so a poisoned lock is still usable.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn make_keys(
        &self,
        principal: &Principal,
        keys: &NewKeys<'_>,
        etypes: &[Etype],
        kvno: u32,
    ) -> Result<Vec<KeyEntry>, DbError> {
        let salt = principal.default_salt();
        etypes
            .iter()
            .map(|&etype| {
                let s2kparams = etype.default_s2kparams();
                let key = match keys {
                    NewKeys::Password(pw) => Key::from_password(etype, pw, &salt, Some(&s2kparams))
                        .map_err(DbError::StringToKey)?,
                    NewKeys::Random => Key::random(etype),
                };
                Ok(KeyEntry {
                    kvno,
                    key,
                    salt: salt.clone(),
                    s2kparams,
                })
            })
            .collect()
    }

    fn store_keys(&self, conn: &Connection, name: &str, keys: &[KeyEntry]) -> Result<(), DbError> {
        for k in keys {
            let etype = k.key.etype().to_i32();
            let mut pt = zeroize::Zeroizing::new(key_binding(name, etype, k.kvno));
            pt.extend_from_slice(k.key.as_bytes());
            let enc = self.master.0.encrypt(USAGE_DB_KEY, &pt);
            conn.execute(
                "INSERT INTO keys (name, etype, kvno, salt, s2kparams, enc_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![name, etype, k.kvno, k.salt, k.s2kparams, enc],
            )
            .map_err(self.sql())?;
        }
        Ok(())
    }

    /// Adds a principal with keys for `opts.etypes` at kvno 1.
    pub fn add_principal(
        &self,
        principal: &Principal,
        keys: NewKeys<'_>,
        opts: &NewPrincipal,
    ) -> Result<(), DbError> {
        self.check_realm(principal)?;
        let name = principal.name();
        let new_keys = self.make_keys(principal, &keys, &opts.etypes, 1)?;
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.sql())?;
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO principals (name, kvno, flags, max_life, max_renew) VALUES (?1, 1, ?2, ?3, ?4)",
                params![
                    name,
                    opts.flags.0,
                    opts.max_life.as_secs(),
                    opts.max_renew.as_secs()
                ],
            )
            .map_err(self.sql())?;
        if inserted == 0 {
            return Err(DbError::PrincipalExists(principal.to_string()));
        }
        self.store_keys(&tx, &name, &new_keys)?;
        tx.commit().map_err(self.sql())
    }

    /// Replaces a principal's keys with new ones at the next kvno. Old keys
    /// are kept so that tickets issued under them stay valid.
    pub fn change_keys(
        &self,
        principal: &Principal,
        keys: NewKeys<'_>,
        etypes: &[Etype],
    ) -> Result<u32, DbError> {
        self.check_realm(principal)?;
        let name = principal.name();
        let mut conn = self.conn();
        let tx = conn.transaction().map_err(self.sql())?;
        let kvno: Option<u32> = tx
            .query_row(
                "SELECT kvno FROM principals WHERE name = ?1",
                [&name],
                |r| r.get(0),
            )
            .optional()
            .map_err(self.sql())?;
        let kvno = kvno
            .ok_or_else(|| DbError::PrincipalNotFound(principal.to_string()))?
            .wrapping_add(1)
            .max(1);
        let new_keys = self.make_keys(principal, &keys, etypes, kvno)?;
        tx.execute(
            "UPDATE principals SET kvno = ?2 WHERE name = ?1",
            params![name, kvno],
        )
        .map_err(self.sql())?;
        self.store_keys(&tx, &name, &new_keys)?;
        tx.commit().map_err(self.sql())?;
        Ok(kvno)
    }

    /// Removes a principal and its keys.
    pub fn delete_principal(&self, principal: &Principal) -> Result<(), DbError> {
        self.check_realm(principal)?;
        let conn = self.conn();
        conn.execute("DELETE FROM keys WHERE name = ?1", [principal.name()])
            .map_err(self.sql())?;
        let n = conn
            .execute("DELETE FROM principals WHERE name = ?1", [principal.name()])
            .map_err(self.sql())?;
        if n == 0 {
            return Err(DbError::PrincipalNotFound(principal.to_string()));
        }
        Ok(())
    }

    /// Every principal name, sorted.
    pub fn list(&self) -> Result<Vec<Principal>, DbError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare("SELECT name FROM principals ORDER BY name")
            .map_err(self.sql())?;
        let names = stmt
            .query_map([], |r| r.get::<_, String>(0))
            .map_err(self.sql())?
            .collect::<Result<Vec<_>, _>>()
            .map_err(self.sql())?;
        Ok(names
            .into_iter()
            .filter_map(|n| Principal::parse_with_realm(&n, &self.realm).ok())
            .collect())
    }

    /// Every stored key of a principal, all kvnos, for keytab export.
    pub fn all_keys(&self, principal: &Principal) -> Result<Vec<KeyEntry>, DbError> {
        self.check_realm(principal)?;
        self.load(principal, false)?
            .map(|e| e.keys)
            .ok_or_else(|| DbError::PrincipalNotFound(principal.to_string()))
    }

    /// Loads a principal. With `current_only`, keys of older kvnos are left
    /// out except where the current kvno has no key of that etype.
    fn load(
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
            let pt = zeroize::Zeroizing::new(
                self.master
                    .0
                    .decrypt(USAGE_DB_KEY, &enc)
                    .map_err(|_| corrupt())?,
            );
            let binding = key_binding(&name, etype_num, key_kvno);
            let raw = pt.strip_prefix(binding.as_slice()).ok_or_else(corrupt)?;
            let key = Key::new(etype, raw).map_err(|_| corrupt())?;
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

/// When an entry was loaded, and what was found.
type CacheSlot = (Instant, Option<Arc<PrincipalEntry>>);

/// A read-through cache in front of another store: entries (present and
/// absent) are reused for `ttl`, and the cache holds at most `capacity`
/// names, so a flood of unknown names cannot grow memory without bound.
pub struct CachedStore<S> {
    inner: S,
    ttl: Duration,
    capacity: usize,
    map: RwLock<HashMap<String, CacheSlot>>,
}

impl<S: PrincipalStore> CachedStore<S> {
    pub const DEFAULT_TTL: Duration = Duration::from_secs(5);
    pub const DEFAULT_CAPACITY: usize = 65_536;

    pub fn new(inner: S) -> Self {
        Self::with_limits(inner, Self::DEFAULT_TTL, Self::DEFAULT_CAPACITY)
    }

    pub fn with_limits(inner: S, ttl: Duration, capacity: usize) -> Self {
        Self {
            inner,
            ttl,
            capacity: capacity.max(1),
            map: RwLock::new(HashMap::new()),
        }
    }

    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// Number of cached names (present and absent).
    pub fn cached(&self) -> usize {
        self.map.read().map(|m| m.len()).unwrap_or(0)
    }
}

impl<S: PrincipalStore> PrincipalStore for CachedStore<S> {
    fn realm(&self) -> &str {
        self.inner.realm()
    }

    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        if principal.realm != self.inner.realm() {
            return Ok(None);
        }
        let name = principal.name();
        let now = Instant::now();
        if let Ok(map) = self.map.read() {
            if let Some((at, e)) = map.get(&name) {
                if now.duration_since(*at) < self.ttl {
                    return Ok(e.clone());
                }
            }
        }
        let e = self.inner.get(principal)?;
        if let Ok(mut map) = self.map.write() {
            if map.len() >= self.capacity {
                map.retain(|_, (at, _)| now.duration_since(*at) < self.ttl);
                if map.len() >= self.capacity {
                    map.clear();
                }
            }
            map.insert(name, (now, e.clone()));
        }
        Ok(e)
    }
}

impl<T: PrincipalStore + ?Sized> PrincipalStore for Arc<T> {
    fn realm(&self) -> &str {
        (**self).realm()
    }
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        (**self).get(principal)
    }
}

/// An in-memory store, for tests and embedding.
#[derive(Default)]
pub struct MemoryStore {
    realm: String,
    entries: RwLock<HashMap<String, Arc<PrincipalEntry>>>,
}

impl MemoryStore {
    pub fn new(realm: &str) -> Self {
        Self {
            realm: realm.to_owned(),
            entries: RwLock::new(HashMap::new()),
        }
    }

    /// Adds or replaces a principal.
    pub fn insert(&self, entry: PrincipalEntry) {
        if let Ok(mut m) = self.entries.write() {
            m.insert(entry.principal.name(), Arc::new(entry));
        }
    }

    /// A principal with password-derived keys of `etypes` at kvno 1.
    pub fn add_password(
        &self,
        principal: &Principal,
        password: &[u8],
        etypes: &[Etype],
        flags: PrincipalFlags,
    ) -> Result<(), DbError> {
        let salt = principal.default_salt();
        let keys = etypes
            .iter()
            .map(|&e| {
                let s2k = e.default_s2kparams();
                Ok(KeyEntry {
                    kvno: 1,
                    key: Key::from_password(e, password, &salt, Some(&s2k))
                        .map_err(DbError::StringToKey)?,
                    salt: salt.clone(),
                    s2kparams: s2k,
                })
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        self.insert(PrincipalEntry {
            principal: principal.clone(),
            kvno: 1,
            flags,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
            keys,
        });
        Ok(())
    }

    /// A principal with random keys of `etypes` at kvno 1.
    pub fn add_random(&self, principal: &Principal, etypes: &[Etype], flags: PrincipalFlags) {
        let salt = principal.default_salt();
        self.insert(PrincipalEntry {
            principal: principal.clone(),
            kvno: 1,
            flags,
            max_life: Duration::ZERO,
            max_renew: Duration::ZERO,
            keys: etypes
                .iter()
                .map(|&e| KeyEntry {
                    kvno: 1,
                    key: Key::random(e),
                    salt: salt.clone(),
                    s2kparams: e.default_s2kparams(),
                })
                .collect(),
        });
    }
}

impl PrincipalStore for MemoryStore {
    fn realm(&self) -> &str {
        &self.realm
    }
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        if principal.realm != self.realm {
            return Ok(None);
        }
        Ok(self
            .entries
            .read()
            .ok()
            .and_then(|m| m.get(&principal.name()).cloned()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
            Key::from_password(Etype::Aes256CtsHmacSha196, b"pw", b"EXAMPLE.COMalice", None)
                .unwrap();
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
}
