//! The unit's state file (`roamgate unit init`, docs/attach.md §6.1): its
//! identity code, its principal and its long-term keys.
//!
//! [`init`] makes a fresh identity code (128 random bits) and one random
//! long-term key per supported etype, and writes them to a new file of
//! mode 0600. The file appears whole or not at all: it is written to a temp
//! file beside it (`O_CREAT | O_EXCL`, 0600), synced, then linked into place
//! with link(2), which fails if the target exists, so an existing state is
//! never overwritten; with `force`, rename(2) replaces it instead. The
//! directory is synced last. [`UnitState::keytab`] exports the keys for the
//! operator to provision the unit's principal at the KDC; the keys never
//! leave the unit otherwise.
//!
//! Format (TOML, every field required, unknown fields refused):
//!
//! ```toml
//! version = 1
//! identity = "00112233445566778899aabbccddeeff"
//! principal = "unit1@HOME.TEST"
//! [[keys]]
//! etype = 20
//! kvno = 1
//! key = "<hex>"
//! ```

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use ring::rand::{SecureRandom as _, SystemRandom};
use roamgate_directory::IdentityCode;
use roamgate_krb::keytab::{Keytab, KeytabEntry};
use roamgate_krb::Principal;
use roamgate_krb_crypto::{Etype, Key};
use zeroize::{Zeroize as _, Zeroizing};

/// The state file format version this code writes and reads.
pub const STATE_VERSION: u32 = 1;
/// The mode of the state file.
pub const STATE_MODE: u32 = 0o600;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(
        "{0} already exists: this unit already has an identity code and keys; \
         pass --force to replace them (the old identity is lost)"
    )]
    Exists(PathBuf),
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{path} has mode {mode:04o}: it holds the unit's long-term keys; `chmod 0600 {path}`")]
    Mode { path: PathBuf, mode: u32 },
    #[error("{path} is not a unit state file: {reason}")]
    Malformed { path: PathBuf, reason: String },
    #[error("{path} has state version {version}; this roamgate reads version {STATE_VERSION}")]
    Version { path: PathBuf, version: u32 },
    #[error("the system random source failed")]
    Random,
    #[error("the keytab has no key of a supported etype (17-20) for {0}")]
    NoKeys(Principal),
}

/// A unit's identity and long-term keys. Debug shows the keys' etypes only
/// (`Key`'s Debug), and the keys are zeroized on drop.
#[derive(Debug, Clone)]
pub struct UnitState {
    pub identity: IdentityCode,
    pub principal: Principal,
    /// (kvno, key), one key per etype.
    pub keys: Vec<(u32, Key)>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct StateFile {
    version: u32,
    identity: String,
    principal: String,
    keys: Vec<KeyRecord>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct KeyRecord {
    etype: i32,
    kvno: u32,
    key: String,
}

impl Drop for KeyRecord {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn from_hex(s: &str) -> Option<Zeroizing<Vec<u8>>> {
    if !s.len().is_multiple_of(2) || !s.is_ascii() {
        return None;
    }
    let mut out = Zeroizing::new(Vec::with_capacity(s.len() / 2));
    for i in (0..s.len()).step_by(2) {
        out.push(u8::from_str_radix(s.get(i..i + 2)?, 16).ok()?);
    }
    Some(out)
}

impl UnitState {
    /// A fresh identity code and one random key (kvno 1) per etype.
    pub fn generate(principal: Principal) -> Result<Self, StateError> {
        let rng = SystemRandom::new();
        let identity = IdentityCode::generate(&rng).map_err(|_| StateError::Random)?;
        // Key::random draws from the same source; check that it works
        // first rather than panic inside it.
        rng.fill(&mut [0u8; 1]).map_err(|_| StateError::Random)?;
        let keys = Etype::ALL.iter().map(|&e| (1, Key::random(e))).collect();
        Ok(Self {
            identity,
            principal,
            keys,
        })
    }

    /// A fresh identity code with keys the KDC made (an MIT realm, whose
    /// `kadmin ktadd -norandkey` exports them): the newest key per etype of
    /// `principal` in `keytab`.
    pub fn from_keytab(principal: Principal, keytab: &Keytab) -> Result<Self, StateError> {
        let rng = SystemRandom::new();
        let identity = IdentityCode::generate(&rng).map_err(|_| StateError::Random)?;
        let keys: Vec<(u32, Key)> = Etype::ALL
            .iter()
            .filter_map(|&e| keytab.find(&principal, Some(e), None))
            .map(|e| (e.kvno, e.key.clone()))
            .collect();
        if keys.is_empty() {
            return Err(StateError::NoKeys(principal));
        }
        Ok(Self {
            identity,
            principal,
            keys,
        })
    }

    /// The long-term keys alone (for the AS exchange).
    pub fn long_term_keys(&self) -> Vec<Key> {
        self.keys.iter().map(|(_, k)| k.clone()).collect()
    }

    /// The keys as a keytab, for provisioning the principal at the KDC.
    pub fn keytab(&self) -> Keytab {
        let mut kt = Keytab::new();
        for (kvno, key) in &self.keys {
            kt.push(KeytabEntry {
                principal: self.principal.clone(),
                timestamp: 0,
                kvno: *kvno,
                key: key.clone(),
            });
        }
        kt
    }

    fn to_toml(&self) -> Result<Zeroizing<String>, StateError> {
        let file = StateFile {
            version: STATE_VERSION,
            identity: self.identity.to_string(),
            principal: self.principal.to_string(),
            keys: self
                .keys
                .iter()
                .map(|(kvno, k)| KeyRecord {
                    etype: k.etype().to_i32(),
                    kvno: *kvno,
                    key: to_hex(k.as_bytes()),
                })
                .collect(),
        };
        let body = Zeroizing::new(toml::to_string(&file).map_err(|e| StateError::Malformed {
            path: PathBuf::new(),
            reason: e.to_string(),
        })?);
        Ok(Zeroizing::new(format!(
            "# roamgate unit state: identity code and long-term keys (mode 0600).\n\
             # Never copy it off the unit; provision the KDC from a keytab export.\n{}",
            body.as_str()
        )))
    }

    fn from_toml(path: &Path, text: &str) -> Result<Self, StateError> {
        let bad = |reason: String| StateError::Malformed {
            path: path.to_owned(),
            reason,
        };
        let file: StateFile = toml::from_str(text).map_err(|e| bad(e.message().to_owned()))?;
        if file.version != STATE_VERSION {
            return Err(StateError::Version {
                path: path.to_owned(),
                version: file.version,
            });
        }
        let identity = file
            .identity
            .parse()
            .map_err(|e| bad(format!("identity: {e}")))?;
        let principal =
            Principal::parse(&file.principal).map_err(|e| bad(format!("principal: {e}")))?;
        let mut keys = Vec::with_capacity(file.keys.len());
        for r in &file.keys {
            let bytes = from_hex(&r.key).ok_or_else(|| bad("a key is not hex".to_owned()))?;
            let key = Key::from_raw(r.etype, &bytes)
                .map_err(|e| bad(format!("key of etype {}: {e}", r.etype)))?;
            keys.push((r.kvno, key));
        }
        if keys.is_empty() {
            return Err(bad("no keys".to_owned()));
        }
        Ok(Self {
            identity,
            principal,
            keys,
        })
    }

    /// Writes the state to a new file at `path` (mode 0600), atomically;
    /// refuses an existing `path` unless `force`.
    pub fn create(&self, path: &Path, force: bool) -> Result<(), StateError> {
        let io_err = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let text = self.to_toml()?;
        let name = path
            .file_name()
            .ok_or_else(|| io_err(io::Error::from(io::ErrorKind::InvalidInput)))?;
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !force && fs::symlink_metadata(path).is_ok() {
            return Err(StateError::Exists(path.to_owned()));
        }
        let mut r = [0u8; 8];
        SystemRandom::new()
            .fill(&mut r)
            .map_err(|_| StateError::Random)?;
        let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), to_hex(&r)));
        let result = (|| {
            let mut f = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(STATE_MODE)
                .open(&tmp)?;
            f.write_all(text.as_bytes())?;
            f.sync_all()?;
            drop(f);
            if force {
                fs::rename(&tmp, path)
            } else {
                // link(2) never replaces: a state created meanwhile wins.
                let linked = fs::hard_link(&tmp, path);
                fs::remove_file(&tmp)?;
                linked
            }
        })();
        if result.is_err() {
            let _ = fs::remove_file(&tmp);
        }
        match result {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(StateError::Exists(path.to_owned()))
            }
            r => r.map_err(io_err)?,
        }
        File::open(&dir).and_then(|d| d.sync_all()).map_err(io_err)
    }

    /// Reads a state file; refuses one that group or others may read.
    pub fn load(path: &Path) -> Result<Self, StateError> {
        let io_err = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let f = File::open(path).map_err(io_err)?;
        let mode = f.metadata().map_err(io_err)?.mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(StateError::Mode {
                path: path.to_owned(),
                mode,
            });
        }
        let text =
            Zeroizing::new(io::read_to_string(io::Read::take(f, 64 * 1024)).map_err(io_err)?);
        Self::from_toml(path, &text)
    }
}

/// `roamgate unit init`: a new identity code and keys for `principal`,
/// written to `path`; refuses to replace an existing state unless `force`.
pub fn init(path: &Path, principal: Principal, force: bool) -> Result<UnitState, StateError> {
    let state = UnitState::generate(principal)?;
    state.create(path, force)?;
    Ok(state)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit1() -> Principal {
        Principal::parse("unit1@HOME.TEST").unwrap()
    }

    fn same(a: &UnitState, b: &UnitState) {
        assert_eq!(a.identity, b.identity);
        assert_eq!(a.principal, b.principal);
        assert_eq!(a.keys.len(), b.keys.len());
        for ((va, ka), (vb, kb)) in a.keys.iter().zip(&b.keys) {
            assert_eq!(va, vb);
            assert_eq!(ka, kb);
        }
    }

    #[test]
    fn init_creates_a_0600_state_that_loads_back() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.state");
        let s = init(&path, unit1(), false).unwrap();
        let md = fs::metadata(&path).unwrap();
        assert_eq!(md.mode() & 0o7777, 0o600);
        same(&UnitState::load(&path).unwrap(), &s);
        assert_eq!(s.keys.len(), Etype::ALL.len());
        // No temp file is left behind.
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1);
        // The keys never show in Debug.
        let dbg = format!("{s:?}");
        assert!(!dbg.contains(&to_hex(s.keys[0].1.as_bytes())), "{dbg}");
        // The keytab export holds the same keys for the principal.
        let kt = s.keytab();
        for (kvno, k) in &s.keys {
            let e = kt.find(&s.principal, Some(k.etype()), Some(*kvno)).unwrap();
            assert_eq!(&e.key, k);
        }
    }

    #[test]
    fn second_init_refuses_without_force() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.state");
        let first = init(&path, unit1(), false).unwrap();
        let before = fs::read(&path).unwrap();
        let err = init(&path, unit1(), false).unwrap_err();
        assert!(matches!(err, StateError::Exists(_)), "{err}");
        assert!(err.to_string().contains("--force"));
        assert_eq!(fs::read(&path).unwrap(), before, "unchanged");
        same(&UnitState::load(&path).unwrap(), &first);
        // With --force: a new identity, still 0600, no temp file left.
        let second = init(&path, unit1(), true).unwrap();
        assert_ne!(second.identity, first.identity);
        same(&UnitState::load(&path).unwrap(), &second);
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o7777, 0o600);
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_planted_symlink_is_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        fs::write(&victim, b"keep").unwrap();
        let path = dir.path().join("unit.state");
        std::os::unix::fs::symlink(&victim, &path).unwrap();
        assert!(matches!(
            init(&path, unit1(), false),
            Err(StateError::Exists(_))
        ));
        // --force replaces the link itself, never writes through it.
        init(&path, unit1(), true).unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"keep");
        assert!(!fs::symlink_metadata(&path)
            .unwrap()
            .file_type()
            .is_symlink());
    }

    #[test]
    fn readable_or_malformed_state_is_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.state");
        init(&path, unit1(), false).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = UnitState::load(&path).unwrap_err();
        assert!(matches!(err, StateError::Mode { mode: 0o644, .. }), "{err}");
        assert!(err.to_string().contains("chmod 0600"));

        let bad = dir.path().join("bad.state");
        let cases = [
            "version = 1\n",
            "version = 2\nidentity = \"00\"\nprincipal = \"a@B\"\nkeys = []\n",
            "version = 1\nidentity = \"zz\"\nprincipal = \"a@B\"\nkeys = []\n",
            "version = 1\nidentity = \"00112233445566778899aabbccddeeff\"\nprincipal = \"a@B\"\nkeys = []\n",
            "version = 1\nidentity = \"00112233445566778899aabbccddeeff\"\nprincipal = \"a@B\"\n\
             [[keys]]\netype = 18\nkvno = 1\nkey = \"abc\"\n",
            "version = 1\nidentity = \"00112233445566778899aabbccddeeff\"\nprincipal = \"a@B\"\n\
             extra = 1\nkeys = []\n",
        ];
        for text in cases {
            let _ = fs::remove_file(&bad);
            OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&bad)
                .unwrap()
                .write_all(text.as_bytes())
                .unwrap();
            let err = UnitState::load(&bad).unwrap_err();
            assert!(
                matches!(
                    err,
                    StateError::Malformed { .. } | StateError::Version { .. }
                ),
                "{text}: {err}"
            );
        }
    }
}
