//! Where the directory keeps its records and its audit log:
//! [`DirectoryStore`], so that an operator's LDAP can take SQLite's place,
//! and [`SqliteStore`], the embedded store (WAL, file mode 0600).
//!
//! The MIP keys lie in the database file in clear, protected by its mode
//! (as a keytab is); docs/directory.md says so.

use std::net::Ipv4Addr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};
use zeroize::Zeroizing;

use crate::identity::IdentityCode;
use roamgate_krb::Principal;

use crate::record::{parse_principal, CallKey, DialledNumber, MipKey, RecordError, UnitRecord};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("directory database {path}: {source}")]
    Sqlite {
        path: String,
        source: rusqlite::Error,
    },
    #[error("directory database {path}: cannot create it with mode 0600: {source}")]
    Permissions {
        path: String,
        source: std::io::Error,
    },
    #[error("unit {0} is already in the directory; remove it first")]
    Exists(IdentityCode),
    #[error("dialled number {number} already belongs to unit {owner}; a number names one unit")]
    NumberTaken {
        number: DialledNumber,
        owner: String,
    },
    #[error("the stored record of unit {code} is invalid ({what}); fix it with remove-unit and add-unit")]
    Corrupt { code: String, what: String },
    #[error("invalid record: {0}")]
    Invalid(#[from] RecordError),
}

/// What happened to one request, as the audit log records it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEntry {
    pub time: SystemTime,
    /// The identity code asked for (a lookup), or the unit a dialled
    /// number resolved to (a resolution); `None` for a refused resolution.
    pub code: Option<IdentityCode>,
    /// The dialled number asked for (a resolution); `None` for a lookup.
    pub number: Option<DialledNumber>,
    /// The ticket's client principal, when the AP-REQ got that far.
    pub client: Option<String>,
    /// `served`, `resolved: <call principal>`, or `refused: <cause>`
    /// (docs/directory.md, "Store and audit log").
    pub outcome: String,
}

/// The directory's storage.
pub trait DirectoryStore: Send + Sync {
    fn get(&self, code: &IdentityCode) -> Result<Option<UnitRecord>, StoreError>;
    /// The unit a dialled number belongs to (numbers are unique).
    fn get_by_number(&self, number: &DialledNumber) -> Result<Option<UnitRecord>, StoreError> {
        Ok(self
            .list()?
            .into_iter()
            .find(|r| r.dialled_number.as_ref() == Some(number)))
    }
    /// Whether `principal` is some unit's subscriber principal.
    fn is_subscriber(&self, principal: &Principal) -> Result<bool, StoreError> {
        Ok(self.list()?.iter().any(|r| &r.principal == principal))
    }
    /// Adds a new unit; refuses a code already present.
    fn add(&self, record: &UnitRecord) -> Result<(), StoreError>;
    /// Adds or replaces a unit.
    fn put(&self, record: &UnitRecord) -> Result<(), StoreError>;
    /// Removes a unit; `false` if it was not there.
    fn remove(&self, code: &IdentityCode) -> Result<bool, StoreError>;
    /// Every unit, ordered by code.
    fn list(&self) -> Result<Vec<UnitRecord>, StoreError>;
    fn audit(&self, entry: &AuditEntry) -> Result<(), StoreError>;
    /// The newest `limit` audit entries, oldest first.
    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError>;
    /// Removes audit entries older than `before`; returns how many went.
    fn audit_prune(&self, before: SystemTime) -> Result<u64, StoreError>;
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS units (
    code TEXT PRIMARY KEY NOT NULL,
    principal TEXT NOT NULL,
    home_address TEXT NOT NULL,
    home_agent TEXT NOT NULL,
    mip_spi INTEGER NOT NULL,
    mip_key BLOB NOT NULL,
    account TEXT NOT NULL,
    dialled_number TEXT,
    call_key BLOB
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ms INTEGER NOT NULL,
    code TEXT NOT NULL,
    client TEXT,
    outcome TEXT NOT NULL,
    number TEXT
);
";

/// Columns added after the first schema: (table, column, type). A database
/// made before them gets them with `ALTER TABLE ... ADD COLUMN` on open.
const ADDED_COLUMNS: &[(&str, &str, &str)] =
    &[("units", "call_key", "BLOB"), ("audit", "number", "TEXT")];

/// Made after the migration (an old database has no such index yet).
const INDEXES: &str = "
CREATE UNIQUE INDEX IF NOT EXISTS units_dialled_number ON units (dialled_number);
CREATE INDEX IF NOT EXISTS units_principal ON units (principal);
";

/// Adds the columns of [`ADDED_COLUMNS`] that `conn`'s tables lack.
fn migrate(conn: &Connection) -> rusqlite::Result<()> {
    for (table, column, ty) in ADDED_COLUMNS {
        let mut st = conn.prepare(&format!("PRAGMA table_info({table})"))?;
        let have = st
            .query_map([], |r| r.get::<_, String>(1))?
            .collect::<Result<Vec<_>, _>>()?;
        if !have.iter().any(|c| c == column) {
            conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {ty}"))?;
        }
    }
    Ok(())
}

/// The embedded SQLite store.
pub struct SqliteStore {
    conn: Mutex<Connection>,
    path: String,
}

impl std::fmt::Debug for SqliteStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteStore")
            .field("path", &self.path)
            .finish()
    }
}

fn to_ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

type Row = (
    String,
    String,
    String,
    String,
    i64,
    Zeroizing<Vec<u8>>,
    String,
    Option<String>,
    Option<Zeroizing<Vec<u8>>>,
);

fn row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        Zeroizing::new(r.get(5)?),
        r.get(6)?,
        r.get(7)?,
        r.get::<_, Option<Vec<u8>>>(8)?.map(Zeroizing::new),
    ))
}

fn record_of(row: Row) -> Result<UnitRecord, StoreError> {
    let (code, principal, ha, agent, spi, key, account, dialled, call_key) = row;
    let corrupt = |what: String| StoreError::Corrupt {
        code: code.clone(),
        what,
    };
    let addr = |field: &str, s: &str| {
        s.parse::<Ipv4Addr>()
            .map_err(|_| corrupt(format!("{field} {s:?} is not an IPv4 address")))
    };
    let rec = UnitRecord {
        code: code
            .parse()
            .map_err(|e: crate::identity::IdentityCodeError| corrupt(e.to_string()))?,
        principal: parse_principal(&principal).map_err(|e| corrupt(e.to_string()))?,
        home_address: addr("home_address", &ha)?,
        home_agent: addr("home_agent", &agent)?,
        mip_spi: u32::try_from(spi).map_err(|_| corrupt(format!("mip_spi {spi} is not a u32")))?,
        mip_key: MipKey::new(&key).map_err(|e| corrupt(e.to_string()))?,
        account,
        dialled_number: dialled
            .as_deref()
            .map(DialledNumber::parse)
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
        call_key: call_key
            .as_deref()
            .map(|b| CallKey::from_bytes(b))
            .transpose()
            .map_err(|e| corrupt(e.to_string()))?,
    };
    rec.validate().map_err(|e| corrupt(e.to_string()))?;
    Ok(rec)
}

const SELECT: &str = "SELECT code, principal, home_address, home_agent, mip_spi, mip_key, account, dialled_number, call_key FROM units";

impl SqliteStore {
    /// Opens (or creates, mode 0600) the database at `path`, in WAL mode.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
        let name = path.display().to_string();
        let perm = |source| StoreError::Permissions {
            path: name.clone(),
            source,
        };
        if !path.exists() {
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(perm)?;
        }
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(perm)?;
        let sql = |source| StoreError::Sqlite {
            path: name.clone(),
            source,
        };
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        migrate(&conn).map_err(sql)?;
        conn.execute_batch(INDEXES).map_err(sql)?;
        Ok(Self {
            conn: Mutex::new(conn),
            path: name,
        })
    }

    pub fn path(&self) -> &str {
        &self.path
    }

    fn with<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        // A panic while holding the lock leaves a usable connection.
        let conn = self.conn.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn)
    }

    fn sql(&self) -> impl Fn(rusqlite::Error) -> StoreError + '_ {
        |source| StoreError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    fn write(&self, record: &UnitRecord, replace: bool) -> Result<(), StoreError> {
        record.validate()?;
        let verb = if replace {
            "INSERT OR REPLACE"
        } else {
            "INSERT"
        };
        let sql = self.sql();
        let call_key = record.call_key.as_ref().map(CallKey::to_bytes);
        self.with(|c| {
            // One write transaction for the check and the insert, so that
            // another process (add-unit beside serve) cannot slip between.
            let tx = rusqlite::Transaction::new_unchecked(
                c,
                rusqlite::TransactionBehavior::Immediate,
            )
            .map_err(&sql)?;
            // A number names one unit. Checked here, not left to the
            // unique index, since INSERT OR REPLACE would delete the
            // other unit's row.
            if let Some(number) = &record.dialled_number {
                let owner: Option<String> = c
                    .query_row(
                        "SELECT code FROM units WHERE dialled_number = ?1 AND code != ?2",
                        params![number.digits(), record.code.to_string()],
                        |r| r.get(0),
                    )
                    .optional()
                    .map_err(&sql)?;
                if let Some(owner) = owner {
                    return Err(StoreError::NumberTaken {
                        number: number.clone(),
                        owner,
                    });
                }
            }
            let r = c.execute(
                &format!("{verb} INTO units (code, principal, home_address, home_agent, mip_spi, mip_key, account, dialled_number, call_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"),
                params![
                    record.code.to_string(),
                    record.principal.to_string(),
                    record.home_address.to_string(),
                    record.home_agent.to_string(),
                    i64::from(record.mip_spi),
                    record.mip_key.expose(),
                    record.account,
                    record.dialled_number.as_ref().map(|d| d.digits().to_owned()),
                    call_key.as_ref().map(|k| &k[..]),
                ],
            );
            match r {
                Err(rusqlite::Error::SqliteFailure(e, _))
                    if e.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    Err(StoreError::Exists(record.code))
                }
                other => other.map(drop).map_err(&sql),
            }?;
            tx.commit().map_err(sql)
        })
    }
}

impl DirectoryStore for SqliteStore {
    fn get(&self, code: &IdentityCode) -> Result<Option<UnitRecord>, StoreError> {
        let sql = self.sql();
        let r = self.with(|c| {
            c.query_row(
                &format!("{SELECT} WHERE code = ?1"),
                [code.to_string()],
                row,
            )
            .optional()
            .map_err(sql)
        })?;
        r.map(record_of).transpose()
    }

    fn get_by_number(&self, number: &DialledNumber) -> Result<Option<UnitRecord>, StoreError> {
        let sql = self.sql();
        let r = self.with(|c| {
            c.query_row(
                &format!("{SELECT} WHERE dialled_number = ?1"),
                [number.digits()],
                row,
            )
            .optional()
            .map_err(sql)
        })?;
        r.map(record_of).transpose()
    }

    fn is_subscriber(&self, principal: &Principal) -> Result<bool, StoreError> {
        let sql = self.sql();
        self.with(|c| {
            c.query_row(
                "SELECT EXISTS (SELECT 1 FROM units WHERE principal = ?1)",
                [principal.to_string()],
                |r| r.get::<_, bool>(0),
            )
            .map_err(sql)
        })
    }

    fn add(&self, record: &UnitRecord) -> Result<(), StoreError> {
        self.write(record, false)
    }

    fn put(&self, record: &UnitRecord) -> Result<(), StoreError> {
        self.write(record, true)
    }

    fn remove(&self, code: &IdentityCode) -> Result<bool, StoreError> {
        let sql = self.sql();
        self.with(|c| {
            c.execute("DELETE FROM units WHERE code = ?1", [code.to_string()])
                .map(|n| n > 0)
                .map_err(sql)
        })
    }

    fn list(&self) -> Result<Vec<UnitRecord>, StoreError> {
        let sql = self.sql();
        let rows = self.with(|c| {
            let mut st = c
                .prepare(&format!("{SELECT} ORDER BY code"))
                .map_err(&sql)?;
            let rows = st
                .query_map([], row)
                .map_err(&sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sql)?;
            Ok(rows)
        })?;
        rows.into_iter().map(record_of).collect()
    }

    fn audit(&self, e: &AuditEntry) -> Result<(), StoreError> {
        let sql = self.sql();
        self.with(|c| {
            c.execute(
                "INSERT INTO audit (time_ms, code, client, outcome, number) VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    to_ms(e.time),
                    // NOT NULL since the first schema: '' for no code.
                    e.code.map(|c| c.to_string()).unwrap_or_default(),
                    e.client,
                    e.outcome,
                    e.number.as_ref().map(|n| n.digits().to_owned()),
                ],
            )
            .map(drop)
            .map_err(sql)
        })
    }

    fn audit_prune(&self, before: SystemTime) -> Result<u64, StoreError> {
        let sql = self.sql();
        self.with(|c| {
            c.execute(
                "DELETE FROM audit WHERE time_ms < ?1",
                params![to_ms(before)],
            )
            .map(|n| n as u64)
            .map_err(sql)
        })
    }

    fn audit_log(&self, limit: usize) -> Result<Vec<AuditEntry>, StoreError> {
        let sql = self.sql();
        let rows = self.with(|c| {
            let mut st = c
                .prepare(
                    "SELECT time_ms, code, client, outcome, number FROM audit ORDER BY id DESC LIMIT ?1",
                )
                .map_err(&sql)?;
            let rows = st
                .query_map([i64::try_from(limit).unwrap_or(i64::MAX)], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, Option<String>>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Option<String>>(4)?,
                    ))
                })
                .map_err(&sql)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(&sql)?;
            Ok(rows)
        })?;
        rows.into_iter()
            .rev()
            .map(|(t, code, client, outcome, number)| {
                let corrupt = |what: String| StoreError::Corrupt {
                    code: code.clone(),
                    what: format!("audit entry: {what}"),
                };
                Ok(AuditEntry {
                    time: from_ms(t),
                    code: (!code.is_empty())
                        .then(|| code.parse())
                        .transpose()
                        .map_err(|e: crate::identity::IdentityCodeError| corrupt(e.to_string()))?,
                    number: number
                        .as_deref()
                        .map(DialledNumber::parse)
                        .transpose()
                        .map_err(|e| corrupt(e.to_string()))?,
                    client,
                    outcome,
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::tests::sample;

    fn code(b: u8) -> IdentityCode {
        IdentityCode::from_bytes([b; 16])
    }

    #[test]
    fn sqlite_store_round_trip_mode_0600_and_wal() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("directory.db");
        let s = SqliteStore::open(&path).unwrap();
        let a = sample(code(1), "unit-a@EXAMPLE.COM");
        s.add(&a).unwrap();
        assert!(matches!(s.add(&a), Err(StoreError::Exists(_))));
        let mut a2 = a.clone();
        a2.account = "acct-2".into();
        s.put(&a2).unwrap();
        let mut b = sample(code(2), "unit-b@EXAMPLE.COM");
        b.dialled_number = Some(DialledNumber::parse("+4930999").unwrap());
        b.call_key = Some(crate::record::tests::call_key());
        s.add(&b).unwrap();
        assert_eq!(s.get(&code(1)).unwrap(), Some(a2.clone()));
        assert_eq!(s.get(&code(2)).unwrap(), Some(b.clone()));
        assert_eq!(s.list().unwrap(), vec![a2, b]);
        assert!(s.remove(&code(1)).unwrap());
        assert!(!s.remove(&code(1)).unwrap());
        assert_eq!(s.get(&code(1)).unwrap(), None);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let wal: String = s
            .with(|c| {
                Ok(c.query_row("PRAGMA journal_mode", [], |r| r.get(0))
                    .unwrap())
            })
            .unwrap();
        assert_eq!(wal, "wal");
        // Reopening keeps the data.
        drop(s);
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.list().unwrap().len(), 1);
    }

    #[test]
    fn invalid_records_are_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let mut r = sample(code(1), "u@R");
        r.mip_spi = 7;
        assert!(matches!(
            s.add(&r),
            Err(StoreError::Invalid(RecordError::ReservedSpi(7)))
        ));
        assert!(s.list().unwrap().is_empty());
    }

    #[test]
    fn a_corrupt_row_is_a_typed_error_naming_the_unit() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        s.add(&sample(code(1), "u@R")).unwrap();
        s.with(|c| {
            c.execute("UPDATE units SET home_agent = 'nowhere'", [])
                .unwrap();
            Ok(())
        })
        .unwrap();
        let err = s.get(&code(1)).unwrap_err();
        assert!(
            err.to_string().contains(&format!("unit {}", code(1)))
                && err.to_string().contains("home_agent \"nowhere\""),
            "{err}"
        );
        assert!(s.list().is_err());
    }

    #[test]
    fn audit_prune_removes_only_older_entries() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.sqlite")).unwrap();
        let t0 = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000);
        for i in 0..4u64 {
            s.audit(&AuditEntry {
                time: t0 + std::time::Duration::from_secs(i * 100),
                code: Some(code(1)),
                number: None,
                client: None,
                outcome: format!("served {i}"),
            })
            .unwrap();
        }
        assert_eq!(
            s.audit_prune(t0 + std::time::Duration::from_secs(150))
                .unwrap(),
            2
        );
        let left: Vec<String> = s
            .audit_log(10)
            .unwrap()
            .into_iter()
            .map(|e| e.outcome)
            .collect();
        assert_eq!(left, ["served 2", "served 3"]);
    }

    #[test]
    fn audit_log_keeps_order() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        for i in 0..5u8 {
            s.audit(&AuditEntry {
                time: UNIX_EPOCH + Duration::from_secs(u64::from(i)),
                code: (i != 3).then(|| code(i)),
                number: (i == 3).then(|| DialledNumber::parse("+4930").unwrap()),
                client: (i % 2 == 0).then(|| format!("u{i}@R")),
                outcome: format!("o{i}"),
            })
            .unwrap();
        }
        let log = s.audit_log(3).unwrap();
        let outcomes: Vec<_> = log.iter().map(|e| e.outcome.as_str()).collect();
        assert_eq!(outcomes, ["o2", "o3", "o4"]);
        assert_eq!(log[0].client.as_deref(), Some("u2@R"));
        assert_eq!(log[1].client, None);
        assert_eq!(log[2].time, UNIX_EPOCH + Duration::from_secs(4));
        assert_eq!(log[1].code, None);
        assert_eq!(log[1].number.as_ref().map(|n| n.digits()), Some("4930"));
        assert_eq!(log[2].code, Some(code(4)));
        assert_eq!(log[2].number, None);
    }

    #[test]
    fn numbers_are_unique_and_resolve() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("d.db")).unwrap();
        let a = sample(code(1), "unit-a@R");
        s.add(&a).unwrap();
        let mut b = sample(code(2), "unit-b@R");
        let err = s.add(&b).unwrap_err();
        assert!(
            matches!(&err, StoreError::NumberTaken { owner, .. } if *owner == code(1).to_string()),
            "{err}"
        );
        assert!(err.to_string().contains("+4930123456"), "{err}");
        // put must not replace the other unit's row either.
        assert!(matches!(s.put(&b), Err(StoreError::NumberTaken { .. })));
        assert_eq!(s.get(&code(1)).unwrap(), Some(a.clone()));
        b.dialled_number = None;
        s.add(&b).unwrap();
        let mut c = sample(code(3), "unit-c@R");
        c.dialled_number = None;
        s.add(&c).unwrap(); // many units without a number
                            // Re-putting a unit with its own number is fine.
        s.put(&a).unwrap();
        let n = DialledNumber::parse("+4930123456").unwrap();
        assert_eq!(s.get_by_number(&n).unwrap(), Some(a));
        let other = DialledNumber::parse("+4930000").unwrap();
        assert_eq!(s.get_by_number(&other).unwrap(), None);
        assert!(s
            .is_subscriber(&Principal::parse("unit-b@R").unwrap())
            .unwrap());
        assert!(!s
            .is_subscriber(&Principal::parse("nobody@R").unwrap())
            .unwrap());
    }

    #[test]
    fn an_old_database_gains_the_new_columns() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        {
            // The schema before call keys and resolutions.
            let c = Connection::open(&path).unwrap();
            c.execute_batch(
                "CREATE TABLE units (
                    code TEXT PRIMARY KEY NOT NULL, principal TEXT NOT NULL,
                    home_address TEXT NOT NULL, home_agent TEXT NOT NULL,
                    mip_spi INTEGER NOT NULL, mip_key BLOB NOT NULL,
                    account TEXT NOT NULL, dialled_number TEXT);
                 CREATE TABLE audit (
                    id INTEGER PRIMARY KEY AUTOINCREMENT, time_ms INTEGER NOT NULL,
                    code TEXT NOT NULL, client TEXT, outcome TEXT NOT NULL);",
            )
            .unwrap();
            c.execute(
                "INSERT INTO units VALUES (?1, 'unit-a@R', '10.1.0.10', '10.1.0.1', 4096, ?2, 'acct', '4930123456')",
                params![code(1).to_string(), vec![0x5au8; 16]],
            )
            .unwrap();
            c.execute(
                "INSERT INTO audit (time_ms, code, client, outcome) VALUES (5, ?1, NULL, 'served')",
                [code(1).to_string()],
            )
            .unwrap();
        }
        let s = SqliteStore::open(&path).unwrap();
        let mut a = s.get(&code(1)).unwrap().unwrap();
        assert_eq!(a.call_key, None);
        assert_eq!(a.account, "acct");
        let log = s.audit_log(10).unwrap();
        assert_eq!(log.len(), 1);
        assert_eq!((log[0].code, log[0].number.as_ref()), (Some(code(1)), None));
        a.call_key = Some(crate::record::tests::call_key());
        s.put(&a).unwrap();
        drop(s);
        // Opening again (the columns now exist) keeps everything.
        let s = SqliteStore::open(&path).unwrap();
        assert_eq!(s.get(&code(1)).unwrap(), Some(a.clone()));
        let n = DialledNumber::parse("4930123456").unwrap();
        assert_eq!(s.get_by_number(&n).unwrap(), Some(a));
    }
}
