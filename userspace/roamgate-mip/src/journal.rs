//! The home agent's binding journal: what a restarted home agent needs to
//! restore its binding cache (the pinned maps keep forwarding meanwhile).
//!
//! The core emits [`JournalOp`]s; a [`BindingJournal`] persists them. The
//! SQLite implementation ([`SqliteJournal`]) creates its file with mode 0600:
//! it holds tunnel master keys.

use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension};

use crate::tunnel_key::MasterKey;

/// One binding as journaled.
#[derive(Debug, Clone)]
pub struct BindingRecord {
    pub home: Ipv4Addr,
    pub care_of: Ipv4Addr,
    /// The home agent address the node registered with (tunnel local end).
    pub home_agent: Ipv4Addr,
    pub spi: u32,
    pub master_key: MasterKey,
    /// The Identification of the registration that created it.
    pub identification: u64,
    /// Granted lifetime in seconds.
    pub lifetime: u16,
    pub registered_at: SystemTime,
    pub expires: SystemTime,
    pub reverse_tunnel: bool,
    /// The Kerberos client principal, if the registration carried an AP-REQ.
    pub client: Option<String>,
}

// By hand: the master key has no `PartialEq`, only a constant-time `ct_eq`.
impl PartialEq for BindingRecord {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            home,
            care_of,
            home_agent,
            spi,
            master_key,
            identification,
            lifetime,
            registered_at,
            expires,
            reverse_tunnel,
            client,
        } = self;
        *home == other.home
            && *care_of == other.care_of
            && *home_agent == other.home_agent
            && *spi == other.spi
            && master_key.ct_eq(&other.master_key)
            && *identification == other.identification
            && *lifetime == other.lifetime
            && *registered_at == other.registered_at
            && *expires == other.expires
            && *reverse_tunnel == other.reverse_tunnel
            && *client == other.client
    }
}

impl Eq for BindingRecord {}

/// One change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JournalOp {
    /// Create or replace the binding of `record.home`.
    PutBinding(BindingRecord),
    /// The binding of this home address is gone.
    RemoveBinding(Ipv4Addr),
    /// The last Identification accepted from a node (replay protection
    /// across restarts).
    Identification { home: Ipv4Addr, id: u64 },
}

/// Everything a restarted home agent reads back.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JournalState {
    pub bindings: Vec<BindingRecord>,
    pub identifications: Vec<(Ipv4Addr, u64)>,
    /// Rows that could not be read (and are not in the lists above): one
    /// bad row must not keep the home agent from starting.
    pub skipped: Vec<SkippedRow>,
}

/// A journal row [`BindingJournal::load`] skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedRow {
    /// `bindings` or `identifications`.
    pub table: &'static str,
    /// The row's key (its home address, or the raw value if that is what
    /// is broken).
    pub key: String,
    /// What is wrong with it (never a key's bytes).
    pub reason: String,
}

#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("binding journal {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("binding journal {path}: cannot set mode 0600: {source}")]
    Permissions {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("binding journal: corrupt row for {0}")]
    Corrupt(String),
}

/// A store for the binding journal.
pub trait BindingJournal {
    /// Persists `ops` atomically, in order.
    fn apply(&mut self, ops: &[JournalOp]) -> Result<(), JournalError>;
    /// Reads everything back.
    fn load(&self) -> Result<JournalState, JournalError>;
}

/// An in-memory journal (tests, or a home agent without persistence).
#[derive(Debug, Default)]
pub struct MemoryJournal(JournalState);

impl BindingJournal for MemoryJournal {
    fn apply(&mut self, ops: &[JournalOp]) -> Result<(), JournalError> {
        for op in ops {
            match op {
                JournalOp::PutBinding(r) => {
                    self.0.bindings.retain(|b| b.home != r.home);
                    self.0.bindings.push(r.clone());
                }
                JournalOp::RemoveBinding(h) => self.0.bindings.retain(|b| b.home != *h),
                JournalOp::Identification { home, id } => {
                    self.0.identifications.retain(|(h, _)| h != home);
                    self.0.identifications.push((*home, *id));
                }
            }
        }
        Ok(())
    }

    fn load(&self) -> Result<JournalState, JournalError> {
        Ok(self.0.clone())
    }
}

/// The journal in SQLite (rusqlite, bundled).
pub struct SqliteJournal {
    conn: Connection,
    path: String,
}

impl std::fmt::Debug for SqliteJournal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteJournal")
            .field("path", &self.path)
            .finish()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS bindings (
    home INTEGER PRIMARY KEY,
    care_of INTEGER NOT NULL,
    home_agent INTEGER NOT NULL,
    spi INTEGER NOT NULL,
    master_key BLOB NOT NULL,
    identification INTEGER NOT NULL,
    lifetime INTEGER NOT NULL,
    registered_at_ms INTEGER NOT NULL,
    expires_ms INTEGER NOT NULL,
    reverse_tunnel INTEGER NOT NULL,
    client TEXT
);
CREATE TABLE IF NOT EXISTS identifications (
    home INTEGER PRIMARY KEY,
    id INTEGER NOT NULL
);
";

fn ms(t: SystemTime) -> i64 {
    i64::try_from(t.duration_since(UNIX_EPOCH).unwrap_or_default().as_millis()).unwrap_or(i64::MAX)
}

fn from_ms(v: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(v).unwrap_or(0))
}

impl SqliteJournal {
    /// Opens (or creates, mode 0600) the journal at `path`.
    pub fn open(path: &Path) -> Result<Self, JournalError> {
        let name = path.display().to_string();
        let sql = |source| JournalError::Sqlite {
            path: name.clone(),
            source,
        };
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(|source| JournalError::Permissions {
                    path: name.clone(),
                    source,
                })?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| JournalError::Permissions {
                    path: name.clone(),
                    source,
                },
            )?;
        }
        let conn = Connection::open(path).map_err(sql)?;
        conn.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL;")
            .map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self { conn, path: name })
    }

    /// A journal in memory (tests).
    pub fn in_memory() -> Result<Self, JournalError> {
        let sql = |source| JournalError::Sqlite {
            path: ":memory:".into(),
            source,
        };
        let conn = Connection::open_in_memory().map_err(sql)?;
        conn.execute_batch(SCHEMA).map_err(sql)?;
        Ok(Self {
            conn,
            path: ":memory:".into(),
        })
    }

    fn err(&self, source: rusqlite::Error) -> JournalError {
        JournalError::Sqlite {
            path: self.path.clone(),
            source,
        }
    }

    /// The last Identification journaled for `home`.
    pub fn identification(&self, home: Ipv4Addr) -> Result<Option<u64>, JournalError> {
        self.conn
            .query_row(
                "SELECT id FROM identifications WHERE home = ?1",
                params![u32::from(home)],
                |r| r.get::<_, i64>(0),
            )
            .optional()
            .map(|v| v.map(|i| i as u64))
            .map_err(|e| self.err(e))
    }
}

impl BindingJournal for SqliteJournal {
    fn apply(&mut self, ops: &[JournalOp]) -> Result<(), JournalError> {
        if ops.is_empty() {
            return Ok(());
        }
        let path = self.path.clone();
        let sql = |source| JournalError::Sqlite {
            path: path.clone(),
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        for op in ops {
            match op {
                JournalOp::PutBinding(r) => {
                    tx.execute(
                        "INSERT OR REPLACE INTO bindings (home, care_of, home_agent, spi, master_key,
                            identification, lifetime, registered_at_ms, expires_ms, reverse_tunnel, client)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
                        params![
                            u32::from(r.home),
                            u32::from(r.care_of),
                            u32::from(r.home_agent),
                            r.spi,
                            r.master_key.as_bytes(),
                            r.identification as i64,
                            r.lifetime,
                            ms(r.registered_at),
                            ms(r.expires),
                            r.reverse_tunnel,
                            r.client,
                        ],
                    )
                    .map_err(sql)?;
                }
                JournalOp::RemoveBinding(h) => {
                    tx.execute(
                        "DELETE FROM bindings WHERE home = ?1",
                        params![u32::from(*h)],
                    )
                    .map_err(sql)?;
                }
                JournalOp::Identification { home, id } => {
                    tx.execute(
                        "INSERT OR REPLACE INTO identifications (home, id) VALUES (?1, ?2)",
                        params![u32::from(*home), *id as i64],
                    )
                    .map_err(sql)?;
                }
            }
        }
        tx.commit().map_err(sql)
    }

    fn load(&self) -> Result<JournalState, JournalError> {
        let mut st = self
            .conn
            .prepare(
                "SELECT home, care_of, home_agent, spi, master_key, identification, lifetime,
                        registered_at_ms, expires_ms, reverse_tunnel, client
                 FROM bindings ORDER BY home",
            )
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| Ok((row_key(r), binding_row(r))))
            .map_err(|e| self.err(e))?;
        let mut state = JournalState::default();
        for row in rows {
            match row.map_err(|e| self.err(e))? {
                (_, Ok(b)) => state.bindings.push(b),
                (key, Err(reason)) => state.skipped.push(SkippedRow {
                    table: "bindings",
                    key,
                    reason,
                }),
            }
        }
        let mut st = self
            .conn
            .prepare("SELECT home, id FROM identifications ORDER BY home")
            .map_err(|e| self.err(e))?;
        let rows = st
            .query_map([], |r| {
                let id =
                    (|| Ok::<_, rusqlite::Error>((r.get::<_, u32>(0)?, r.get::<_, i64>(1)?)))();
                Ok((row_key(r), id))
            })
            .map_err(|e| self.err(e))?;
        for row in rows {
            match row.map_err(|e| self.err(e))? {
                (_, Ok((h, id))) => state.identifications.push((Ipv4Addr::from(h), id as u64)),
                (key, Err(e)) => state.skipped.push(SkippedRow {
                    table: "identifications",
                    key,
                    reason: e.to_string(),
                }),
            }
        }
        Ok(state)
    }
}

/// The key (column 0, the home address) of a row, for the log: as an
/// address when it is one, else the raw value.
fn row_key(r: &rusqlite::Row<'_>) -> String {
    use rusqlite::types::ValueRef;
    match r.get_ref(0) {
        Ok(ValueRef::Integer(v)) => match u32::try_from(v) {
            Ok(h) => Ipv4Addr::from(h).to_string(),
            Err(_) => format!("home = {v}"),
        },
        Ok(ValueRef::Text(t)) => format!("home = {:?}", String::from_utf8_lossy(t)),
        Ok(v) => format!("home of type {:?}", v.data_type()),
        Err(e) => format!("unreadable key: {e}"),
    }
}

/// One `bindings` row, or why it cannot be used.
fn binding_row(r: &rusqlite::Row<'_>) -> Result<BindingRecord, String> {
    let e = |e: rusqlite::Error| e.to_string();
    let key: Vec<u8> = r.get(4).map_err(e)?;
    let key: [u8; 32] = key
        .try_into()
        .map_err(|k: Vec<u8>| format!("master key is {} bytes, not 32", k.len()))?;
    Ok(BindingRecord {
        home: Ipv4Addr::from(r.get::<_, u32>(0).map_err(e)?),
        care_of: Ipv4Addr::from(r.get::<_, u32>(1).map_err(e)?),
        home_agent: Ipv4Addr::from(r.get::<_, u32>(2).map_err(e)?),
        spi: r.get(3).map_err(e)?,
        master_key: MasterKey::new(key),
        identification: r.get::<_, i64>(5).map_err(e)? as u64,
        lifetime: r.get(6).map_err(e)?,
        registered_at: from_ms(r.get(7).map_err(e)?),
        expires: from_ms(r.get(8).map_err(e)?),
        reverse_tunnel: r.get(9).map_err(e)?,
        client: r.get(10).map_err(e)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(home: u8, spi: u32) -> BindingRecord {
        BindingRecord {
            home: Ipv4Addr::new(10, 0, 0, home),
            care_of: Ipv4Addr::new(192, 0, 2, home),
            home_agent: Ipv4Addr::new(10, 0, 0, 1),
            spi,
            master_key: MasterKey::new([home; 32]),
            identification: 0xeb00_0000_0000_0000 | u64::from(spi),
            lifetime: 600,
            registered_at: UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            expires: UNIX_EPOCH + Duration::from_millis(1_700_000_600_123),
            reverse_tunnel: home.is_multiple_of(2),
            client: Some(format!("mn{home}@EXAMPLE.COM")),
        }
    }

    fn exercise(j: &mut dyn BindingJournal) {
        j.apply(&[
            JournalOp::PutBinding(record(5, 1000)),
            JournalOp::PutBinding(record(6, 1001)),
            JournalOp::Identification {
                home: Ipv4Addr::new(10, 0, 0, 5),
                id: u64::MAX - 1,
            },
        ])
        .unwrap();
        // Replace (handover) and remove.
        let mut moved = record(5, 2000);
        moved.care_of = Ipv4Addr::new(203, 0, 113, 9);
        j.apply(&[
            JournalOp::PutBinding(moved.clone()),
            JournalOp::RemoveBinding(Ipv4Addr::new(10, 0, 0, 6)),
        ])
        .unwrap();
        let st = j.load().unwrap();
        assert_eq!(st.bindings, vec![moved]);
        assert_eq!(
            st.identifications,
            vec![(Ipv4Addr::new(10, 0, 0, 5), u64::MAX - 1)]
        );
    }

    #[test]
    fn memory_journal() {
        exercise(&mut MemoryJournal::default());
    }

    #[test]
    fn sqlite_journal_survives_reopen_with_mode_0600() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.sqlite");
        {
            let mut j = SqliteJournal::open(&path).unwrap();
            exercise(&mut j);
        }
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let j = SqliteJournal::open(&path).unwrap();
        let st = j.load().unwrap();
        assert_eq!(st.bindings.len(), 1);
        assert_eq!(st.bindings[0].spi, 2000);
        assert!(st.bindings[0].master_key.ct_eq(&MasterKey::new([5; 32])));
        assert_eq!(
            j.identification(Ipv4Addr::new(10, 0, 0, 5)).unwrap(),
            Some(u64::MAX - 1)
        );
        assert_eq!(j.identification(Ipv4Addr::new(10, 0, 0, 6)).unwrap(), None);
    }

    #[test]
    fn sqlite_journal_skips_unreadable_rows_and_names_their_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bindings.sqlite");
        let mut j = SqliteJournal::open(&path).unwrap();
        j.apply(&[
            JournalOp::PutBinding(record(5, 1000)),
            JournalOp::PutBinding(record(6, 1001)),
            JournalOp::PutBinding(record(7, 1002)),
            JournalOp::Identification {
                home: Ipv4Addr::new(10, 0, 0, 5),
                id: 42,
            },
            JournalOp::Identification {
                home: Ipv4Addr::new(10, 0, 0, 8),
                id: 43,
            },
        ])
        .unwrap();
        // What a torn write, a bad migration or a hand edit leaves behind.
        j.conn
            .execute_batch(
                "UPDATE bindings SET master_key = x'0102' WHERE home = 167772166;
                 UPDATE bindings SET care_of = 'not an address' WHERE home = 167772167;
                 UPDATE identifications SET id = 'x' WHERE home = 167772168;",
            )
            .unwrap();
        drop(j);
        let st = SqliteJournal::open(&path).unwrap().load().unwrap();
        assert_eq!(st.bindings, vec![record(5, 1000)]);
        assert_eq!(st.identifications, vec![(Ipv4Addr::new(10, 0, 0, 5), 42)]);
        let skipped: Vec<(&str, &str)> = st
            .skipped
            .iter()
            .map(|s| (s.table, s.key.as_str()))
            .collect();
        assert_eq!(
            skipped,
            vec![
                ("bindings", "10.0.0.6"),
                ("bindings", "10.0.0.7"),
                ("identifications", "10.0.0.8"),
            ]
        );
        assert_eq!(st.skipped[0].reason, "master key is 2 bytes, not 32");
    }
}
