//! Key material at rest: the master key file, and how each long-term key
//! is sealed under the master key, bound to its principal, etype and kvno
//! so that rows cannot be swapped between principals.

use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};

use roamgate_krb_crypto::{Etype, Key};

use super::DbError;

/// Key usage for long-term keys encrypted under the master key. Private to
/// this database (RFC 4120 §7.5.1 leaves 1024 and up for local use).
const USAGE_DB_KEY: u32 = 1024;
/// Key usage for the master key verifier stored in the database.
const USAGE_MKEY_CHECK: u32 = 1025;
const MKEY_MAGIC: &[u8; 6] = b"RGMK1\n";
const MKEY_CHECK_PLAINTEXT: &[u8] = b"roamgate kdc master key check";

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

impl MasterKey {
    /// The verifier stored beside the keys, to tell the right master key
    /// from a wrong one before any key is read.
    pub(super) fn check_value(&self) -> Vec<u8> {
        self.0.encrypt(USAGE_MKEY_CHECK, MKEY_CHECK_PLAINTEXT)
    }

    /// Whether `check` is this key's verifier.
    pub(super) fn verifies(&self, check: &[u8]) -> bool {
        self.0
            .decrypt(USAGE_MKEY_CHECK, check)
            .is_ok_and(|p| p.as_slice() == MKEY_CHECK_PLAINTEXT)
    }

    /// Seals `key`, bound to the principal `name` and `kvno`.
    pub(super) fn wrap(&self, name: &str, kvno: u32, key: &Key) -> Vec<u8> {
        let mut pt = zeroize::Zeroizing::new(key_binding(name, key.etype().to_i32(), kvno));
        pt.extend_from_slice(key.as_bytes());
        self.0.encrypt(USAGE_DB_KEY, &pt)
    }

    /// Opens a sealed key; `None` if it fails to decrypt or was sealed for
    /// another principal, etype or kvno.
    pub(super) fn unwrap(&self, name: &str, etype: Etype, kvno: u32, sealed: &[u8]) -> Option<Key> {
        let pt = self.0.decrypt(USAGE_DB_KEY, sealed).ok()?;
        let binding = key_binding(name, etype.to_i32(), kvno);
        let raw = pt.strip_prefix(binding.as_slice())?;
        Key::new(etype, raw).ok()
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
