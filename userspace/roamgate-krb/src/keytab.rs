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

use std::io;
use std::path::{Path, PathBuf};

use roamgate_krb_crypto::{CryptoError, Etype, Key};
use zeroize::Zeroizing;

/// Principals match on realm and components; MIT ignores the name type
/// when it looks keys up, and so do we.
pub use crate::messages::same_principal;
/// Key bytes of an etype roamgate does not implement, kept so that a
/// rewrite loses nothing.
pub use crate::mit_file::KeyBlock as RawKey;
use crate::mit_file::{self, Reader, Width};
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

impl Keytab {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses a whole keytab file.
    pub fn parse(data: &[u8]) -> Result<Self, KeytabError> {
        let mut r = Reader::<KeytabError>::new(data);
        let version = r.u16()?;
        if version != VERSION {
            return Err(KeytabError::UnsupportedVersion(version));
        }
        let mut kt = Keytab::new();
        while r.remaining() > 0 {
            let offset = r.offset();
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
            let body_start = r.offset();
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
        mit_file::load(path, Self::parse)
    }

    /// Writes the keytab to `path` atomically with mode 0600.
    pub fn save(&self, path: &Path) -> Result<(), KeytabError> {
        mit_file::save(path, self.to_bytes()?)
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

    /// The newest key (highest kvno) per supported etype of `principal`,
    /// strongest etype first: a client's long-term secret.
    pub fn newest_keys(&self, principal: &Principal) -> Vec<Key> {
        Etype::ALL
            .into_iter()
            .filter_map(|e| self.find(principal, Some(e), None).map(|k| k.key.clone()))
            .collect()
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
    let mut r = Reader::<KeytabError>::at(body, body_start);
    let count = r.u16()?;
    let realm = mit_file::name(r.data(Width::U16)?, offset)?;
    let mut components = Vec::new();
    for _ in 0..count {
        components.push(mit_file::name(r.data(Width::U16)?, offset)?);
    }
    let name_type = r.u32()? as i32;
    let timestamp = r.u32()?;
    let kvno8 = r.u8()?;
    let etype = i32::from(r.u16()?);
    let key_bytes = r.data(Width::U16)?;
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
                len: key_bytes.len(),
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

fn emit_entry(
    out: &mut Vec<u8>,
    principal: &Principal,
    timestamp: u32,
    kvno: u32,
    etype: i32,
    key: &[u8],
) -> Result<(), KeytabError> {
    let mut body = Zeroizing::new(Vec::new());
    let count = principal.components.len();
    mit_file::put_len::<KeytabError>(&mut body, count, Width::U16, "principal components")?;
    mit_file::put_data::<KeytabError>(&mut body, principal.realm.as_bytes(), Width::U16, "realm")?;
    for c in &principal.components {
        mit_file::put_data::<KeytabError>(
            &mut body,
            c.as_bytes(),
            Width::U16,
            "principal component",
        )?;
    }
    body.extend_from_slice(&(principal.name_type as u32).to_be_bytes());
    body.extend_from_slice(&timestamp.to_be_bytes());
    body.push(kvno as u8);
    let etype = u16::try_from(etype).map_err(|_| KeytabError::TooLong("etype"))?;
    body.extend_from_slice(&etype.to_be_bytes());
    mit_file::put_data::<KeytabError>(&mut body, key, Width::U16, "key")?;
    body.extend_from_slice(&kvno.to_be_bytes());
    let size = i32::try_from(body.len()).map_err(|_| KeytabError::TooLong("entry"))?;
    out.extend_from_slice(&size.to_be_bytes());
    out.extend_from_slice(&body);
    Ok(())
}

mit_file::file_error!(KeytabError);
