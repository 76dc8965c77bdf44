//! The principal database: SQLite (rusqlite, bundled) behind the small
//! [`PrincipalStore`] trait, so that an operator's own KDC backend can take
//! its place.
//!
//! Long-term keys are stored encrypted under a master key kept in a
//! separate file of mode 0600. Each stored key is bound to its principal,
//! etype and kvno inside the encryption, so rows cannot be swapped between
//! principals. The database file itself is also created 0600.
//!
//! Modules:
//! - `record`: principal records ([`PrincipalEntry`], [`PrincipalFlags`],
//!   [`KeyEntry`]) and what a new principal is made of.
//! - `master_key`: the master key file and sealing keys under it.
//! - `sqlite`: the SQLite schema, create/open, and lookups for the KDC;
//!   `admin`: the operations `roamgate kdc` runs on it.
//! - `cached`: a bounded read-through cache; `memory`: an in-memory store.

mod admin;
mod cached;
mod master_key;
mod memory;
mod record;
mod sqlite;

use std::path::PathBuf;
use std::sync::Arc;

pub use cached::CachedStore;
pub use master_key::MasterKey;
pub use memory::MemoryStore;
pub use record::{KeyEntry, NewKeys, NewPrincipal, PrincipalEntry, PrincipalFlags};
pub use sqlite::SqliteDb;

use crate::principal::Principal;

/// Where the KDC looks principals up. Implementations must be cheap to
/// call concurrently; the KDC calls `get` on every request.
pub trait PrincipalStore: Send + Sync {
    /// The realm this store serves.
    fn realm(&self) -> &str;
    /// Looks up a principal of this realm, ignoring the name type.
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError>;
}

impl<T: PrincipalStore + ?Sized> PrincipalStore for Arc<T> {
    fn realm(&self) -> &str {
        (**self).realm()
    }
    fn get(&self, principal: &Principal) -> Result<Option<Arc<PrincipalEntry>>, DbError> {
        (**self).get(principal)
    }
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
    #[error("no {0:?} key among the given keys; export every etype asked for, or pass --etypes")]
    MissingKey(roamgate_krb_crypto::Etype),
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

#[cfg(test)]
mod tests;
