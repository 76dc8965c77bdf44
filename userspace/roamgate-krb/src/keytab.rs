//! MIT keytab files, format version 0x0502 (the one MIT, Heimdal and
//! Samba write), read and written.
//!
//! ```text
//! keytab  = 05 02, then entries until end of file
//! entry   = i32 size, then `size` bytes of:
//!           u16 count, data realm, data component[count], u32 name_type,
//!           u32 timestamp, u8 kvno8, u16 etype, data key,
//!           [u32 kvno32]  (present if 4 bytes remain; non-zero overrides kvno8)
//! data    = u16 length, bytes
//! ```
//! All integers are big-endian. A negative size marks a hole of that many
//! bytes left by a deleted entry; a zero size ends the entries, as in MIT.
//! Bytes after the 32-bit kvno inside an entry (Heimdal's flags) are
//! ignored.
//!
//! Parsing never panics: every length is checked against what remains and
//! a short or corrupt file gives a [`KeytabError`]. Keys of etypes that
//! `roamgate-krb-crypto` does not implement are kept apart, in
//! [`Keytab::unsupported`], and written back after the supported ones.
//! Files are written atomically (temp file and rename) with mode 0600.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use roamgate_krb_crypto::{CryptoError, Etype, Key};
use zeroize::Zeroizing;

use crate::principal::Principal;

/// The file format version this module reads and writes.
pub const VERSION: u16 = 0x0502;

#[derive(Debug, thiserror::Error)]
pub enum KeytabError {
    #[error("keytab format version {0:#06x} is not supported (only 0x0502)")]
    UnsupportedVersion(u16),
    #[error("keytab truncated at byte {offset}: {needed} more bytes needed")]
    Truncated { offset: usize, needed: usize },
    #[error("keytab entry at byte {offset} claims {size} bytes but only {remaining} remain")]
    EntryOverrun {
        offset: usize,
        size: usize,
        remaining: usize,
    },
    #[error("keytab hole at byte {offset} claims {size} bytes but only {remaining} remain")]
    HoleOverrun {
        offset: usize,
        size: usize,
        remaining: usize,
    },
    #[error("keytab entry at byte {offset} has a principal name that is not UTF-8")]
    NonUtf8Name { offset: usize },
    #[error("keytab entry at byte {offset} has a key of {len} bytes for etype {etype}")]
    BadKey {
        offset: usize,
        etype: i32,
        len: usize,
    },
    #[error("keytab field too long to encode: {0}")]
    TooLong(&'static str),
    #[error("reading keytab {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("writing keytab {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

/// One key of a supported etype.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeytabEntry {
    pub principal: Principal,
    /// Seconds since the Unix epoch when the key was written.
    pub timestamp: u32,
    /// The key version number (the 32-bit one where present).
    pub kvno: u32,
    pub key: Key,
}

impl KeytabEntry {
    /// A key made from a password with the principal's default salt
    /// (realm followed by the components) and default string-to-key
    /// parameters, as `ktutil addent -password` makes it.
    pub fn from_password(
        principal: Principal,
        kvno: u32,
        etype: Etype,
        password: &[u8],
        timestamp: u32,
    ) -> Result<Self, CryptoError> {
        let key = Key::from_password(etype, password, &principal.default_salt(), None)?;
        Ok(Self {
            principal,
            timestamp,
            kvno,
            key,
        })
    }
}

/// Key bytes of an etype roamgate does not implement, kept so that a
/// rewrite loses nothing. Debug shows the etype and length only.
#[derive(Clone, PartialEq, Eq)]
pub struct RawKey {
    pub etype: i32,
    bytes: Zeroizing<Vec<u8>>,
}

impl RawKey {
    pub fn new(etype: i32, bytes: &[u8]) -> Self {
        Self {
            etype,
            bytes: Zeroizing::new(bytes.to_vec()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The key as a protocol key, if roamgate implements its etype.
    pub fn to_key(&self) -> Result<Key, CryptoError> {
        Key::from_raw(self.etype, &self.bytes)
    }
}

impl fmt::Debug for RawKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawKey")
            .field("etype", &self.etype)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// An entry whose etype roamgate does not implement.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UnsupportedEntry {
    pub principal: Principal,
    pub timestamp: u32,
    pub kvno: u32,
    pub key: RawKey,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Keytab {
    pub entries: Vec<KeytabEntry>,
    pub unsupported: Vec<UnsupportedEntry>,
}

/// Principals match on realm and components; MIT ignores the name type
/// when it looks keys up, and so do we.
pub fn same_principal(a: &Principal, b: &Principal) -> bool {
    a.realm == b.realm && a.components == b.components
}

impl Keytab {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a whole keytab file.
    pub fn parse(data: &[u8]) -> Result<Self, KeytabError> {
        let mut r = Reader::new(data);
        let version = r.u16()?;
        if version != VERSION {
            return Err(KeytabError::UnsupportedVersion(version));
        }
        let mut kt = Keytab::new();
        while r.remaining() > 0 {
            let offset = r.pos;
            let size = r.i32()?;
            if size == 0 {
                break;
            }
            let len = size.unsigned_abs() as usize;
            if size < 0 {
                if len > r.remaining() {
                    return Err(KeytabError::HoleOverrun {
                        offset,
                        size: len,
                        remaining: r.remaining(),
                    });
                }
                r.skip(len)?;
                continue;
            }
            if len > r.remaining() {
                return Err(KeytabError::EntryOverrun {
                    offset,
                    size: len,
                    remaining: r.remaining(),
                });
            }
            let body_start = r.pos;
            let body = r.take(len)?;
            parse_entry(&mut kt, body, body_start, offset)?;
        }
        Ok(kt)
    }

    /// Encodes the keytab: supported entries first, then the unsupported
    /// ones, each with the 8-bit and the 32-bit kvno.
    pub fn to_bytes(&self) -> Result<Vec<u8>, KeytabError> {
        let mut out = VERSION.to_be_bytes().to_vec();
        for e in &self.entries {
            emit_entry(
                &mut out,
                &e.principal,
                e.timestamp,
                e.kvno,
                e.key.etype().to_i32(),
                e.key.as_bytes(),
            )?;
        }
        for e in &self.unsupported {
            emit_entry(
                &mut out,
                &e.principal,
                e.timestamp,
                e.kvno,
                e.key.etype,
                e.key.as_bytes(),
            )?;
        }
        Ok(out)
    }

    /// Reads and parses the keytab at `path`.
    pub fn load(path: &Path) -> Result<Self, KeytabError> {
        let data = Zeroizing::new(fs::read(path).map_err(|source| KeytabError::Read {
            path: path.to_owned(),
            source,
        })?);
        Self::parse(&data)
    }

    /// Writes the keytab to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeytabError> {
        let data = Zeroizing::new(self.to_bytes()?);
        write_private_file(path, &data).map_err(|source| KeytabError::Write {
            path: path.to_owned(),
            source,
        })
    }

    pub fn push(&mut self, entry: KeytabEntry) {
        self.entries.push(entry);
    }

    /// The key for `principal`, of `etype` if given, of `kvno` if given,
    /// otherwise of the highest kvno present. Among equal kvnos the first
    /// entry wins, as in MIT.
    pub fn find(
        &self,
        principal: &Principal,
        etype: Option<Etype>,
        kvno: Option<u32>,
    ) -> Option<&KeytabEntry> {
        let mut best: Option<&KeytabEntry> = None;
        for e in self.entries.iter().filter(|e| {
            same_principal(&e.principal, principal)
                && etype.is_none_or(|t| e.key.etype() == t)
                && kvno.is_none_or(|v| e.kvno == v)
        }) {
            if best.is_none_or(|b| e.kvno > b.kvno) {
                best = Some(e);
            }
        }
        best
    }

    /// Every supported key of `principal`, in file order.
    pub fn keys_for<'a>(
        &'a self,
        principal: &'a Principal,
    ) -> impl Iterator<Item = &'a KeytabEntry> + 'a {
        self.entries
            .iter()
            .filter(move |e| same_principal(&e.principal, principal))
    }

    /// The distinct principals with supported keys, in file order.
    pub fn principals(&self) -> Vec<&Principal> {
        let mut out: Vec<&Principal> = Vec::new();
        for e in &self.entries {
            if !out.iter().any(|p| same_principal(p, &e.principal)) {
                out.push(&e.principal);
            }
        }
        out
    }

    /// Removes every entry (supported or not) of `principal`; returns how
    /// many went.
    pub fn remove_principal(&mut self, principal: &Principal) -> usize {
        let before = self.entries.len() + self.unsupported.len();
        self.entries
            .retain(|e| !same_principal(&e.principal, principal));
        self.unsupported
            .retain(|e| !same_principal(&e.principal, principal));
        before - self.entries.len() - self.unsupported.len()
    }
}

fn parse_entry(
    kt: &mut Keytab,
    body: &[u8],
    body_start: usize,
    offset: usize,
) -> Result<(), KeytabError> {
    let mut r = Reader::at(body, body_start);
    let count = r.u16()?;
    let realm = r.string(offset)?;
    let mut components = Vec::new();
    for _ in 0..count {
        components.push(r.string(offset)?);
    }
    let name_type = r.u32()? as i32;
    let timestamp = r.u32()?;
    let kvno8 = r.u8()?;
    let etype = i32::from(r.u16()?);
    let key_len = usize::from(r.u16()?);
    let key_bytes = r.take(key_len)?;
    let mut kvno = u32::from(kvno8);
    if r.remaining() >= 4 {
        let kvno32 = r.u32()?;
        if kvno32 != 0 {
            kvno = kvno32;
        }
    }
    let principal = Principal {
        realm,
        name_type,
        components,
    };
    match Etype::from_i32(etype) {
        Some(e) => {
            let key = Key::new(e, key_bytes).map_err(|_| KeytabError::BadKey {
                offset,
                etype,
                len: key_len,
            })?;
            kt.entries.push(KeytabEntry {
                principal,
                timestamp,
                kvno,
                key,
            });
        }
        None => kt.unsupported.push(UnsupportedEntry {
            principal,
            timestamp,
            kvno,
            key: RawKey::new(etype, key_bytes),
        }),
    }
    Ok(())
}

fn put_data(out: &mut Vec<u8>, data: &[u8], what: &'static str) -> Result<(), KeytabError> {
    let len = u16::try_from(data.len()).map_err(|_| KeytabError::TooLong(what))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(data);
    Ok(())
}

fn emit_entry(
    out: &mut Vec<u8>,
    principal: &Principal,
    timestamp: u32,
    kvno: u32,
    etype: i32,
    key: &[u8],
) -> Result<(), KeytabError> {
    let mut body = Zeroizing::new(Vec::new());
    let count = u16::try_from(principal.components.len())
        .map_err(|_| KeytabError::TooLong("principal components"))?;
    body.extend_from_slice(&count.to_be_bytes());
    put_data(&mut body, principal.realm.as_bytes(), "realm")?;
    for c in &principal.components {
        put_data(&mut body, c.as_bytes(), "principal component")?;
    }
    body.extend_from_slice(&(principal.name_type as u32).to_be_bytes());
    body.extend_from_slice(&timestamp.to_be_bytes());
    body.push(kvno as u8);
    let etype = u16::try_from(etype).map_err(|_| KeytabError::TooLong("etype"))?;
    body.extend_from_slice(&etype.to_be_bytes());
    put_data(&mut body, key, "key")?;
    body.extend_from_slice(&kvno.to_be_bytes());
    let size = i32::try_from(body.len()).map_err(|_| KeytabError::TooLong("entry"))?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

/// Writes `data` to `path` through a temporary file in the same directory
/// created with mode 0600, then renames it into place, so a reader never
/// sees a half-written file and the secret is never world-readable. (MIT
/// takes fcntl locks instead and may append to the file it has open; a
/// ticket MIT appends while roamgate replaces the file is lost, not torn.)
pub(crate) fn write_private_file(path: &Path, data: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_owned(),
        _ => PathBuf::from("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let mut tmp_name = std::ffi::OsString::from(".");
    tmp_name.push(name);
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    tmp_name.push(format!(".tmp{}.{seq}", std::process::id()));
    let tmp = dir.join(tmp_name);
    let result = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.set_permissions(fs::Permissions::from_mode(0o600))?;
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// A bounds-checked big-endian reader; `base` is the offset of `data` in
/// the whole file, for error messages.
struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    base: usize,
}

impl<'a> Reader<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self::at(data, 0)
    }

    fn at(data: &'a [u8], base: usize) -> Self {
        Self { data, pos: 0, base }
    }

    fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], KeytabError> {
        if n > self.remaining() {
            return Err(KeytabError::Truncated {
                offset: self.base + self.pos,
                needed: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    fn skip(&mut self, n: usize) -> Result<(), KeytabError> {
        self.take(n).map(|_| ())
    }

    fn u8(&mut self) -> Result<u8, KeytabError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, KeytabError> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    fn u32(&mut self) -> Result<u32, KeytabError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn i32(&mut self) -> Result<i32, KeytabError> {
        Ok(self.u32()? as i32)
    }

    fn string(&mut self, entry_offset: usize) -> Result<String, KeytabError> {
        let len = usize::from(self.u16()?);
        let b = self.take(len)?;
        String::from_utf8(b.to_vec()).map_err(|_| KeytabError::NonUtf8Name {
            offset: entry_offset,
        })
    }
}
