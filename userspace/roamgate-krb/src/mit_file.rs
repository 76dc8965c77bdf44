//! What MIT's binary file formats (keytab, credential cache) share: a
//! bounds-checked big-endian [`Reader`], length-prefixed writers, the raw
//! [`KeyBlock`] both store keys as, and loading and atomic saving.
//!
//! The two formats differ in their length prefixes (a keytab counts in
//! `u16`, a credential cache in `u32`), so the readers and writers take
//! the [`Width`]. Each format's error enum implements [`FileError`] (with
//! [`file_error!`]), so that a short file or an oversized field is
//! reported in that format's terms. Nothing here panics on bad input.

use std::fmt;
use std::fs;
use std::io::{self, Write};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

use roamgate_krb_crypto::{CryptoError, Key};
use zeroize::Zeroizing;

/// The failures every MIT file format reports, built in its own error type.
pub(crate) trait FileError: Sized {
    /// `needed` more bytes were wanted at byte `offset` of the file.
    fn truncated(offset: usize, needed: usize) -> Self;
    /// A principal name at byte `offset` is not UTF-8.
    fn non_utf8_name(offset: usize) -> Self;
    /// A field (named `what`) is too long for its length prefix.
    fn too_long(what: &'static str) -> Self;
    /// Reading the file at `path` failed.
    fn read(path: PathBuf, source: io::Error) -> Self;
    /// Writing the file at `path` failed.
    fn write(path: PathBuf, source: io::Error) -> Self;
}

/// Implements [`FileError`] for a format's error enum, which has the
/// variants `Truncated { offset, needed }`, `NonUtf8Name { offset }`,
/// `TooLong(what)`, `Read { path, source }` and `Write { path, source }`.
macro_rules! file_error {
    ($error:ident) => {
        impl $crate::mit_file::FileError for $error {
            fn truncated(offset: usize, needed: usize) -> Self {
                $error::Truncated { offset, needed }
            }
            fn non_utf8_name(offset: usize) -> Self {
                $error::NonUtf8Name { offset }
            }
            fn too_long(what: &'static str) -> Self {
                $error::TooLong(what)
            }
            fn read(path: std::path::PathBuf, source: std::io::Error) -> Self {
                $error::Read { path, source }
            }
            fn write(path: std::path::PathBuf, source: std::io::Error) -> Self {
                $error::Write { path, source }
            }
        }
    };
}
pub(crate) use file_error;

/// The width of a format's length and count fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// `u16`, as in a keytab.
    U16,
    /// `u32`, as in a credential cache.
    U32,
}

/// Key bytes and their etype, as MIT's files store a key (its
/// `krb5_keyblock`): any etype, including those roamgate does not
/// implement and 0 for the empty key of cache configuration entries.
/// Zeroed on drop; Debug shows the etype and length only.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct KeyBlock {
    pub etype: i32,
    bytes: Zeroizing<Vec<u8>>,
}

impl KeyBlock {
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

impl From<&Key> for KeyBlock {
    fn from(k: &Key) -> Self {
        Self::new(k.etype().to_i32(), k.as_bytes())
    }
}

impl fmt::Debug for KeyBlock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyBlock")
            .field("etype", &self.etype)
            .field("len", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A bounds-checked big-endian reader; `base` is the offset of `data` in
/// the whole file, for error messages.
pub(crate) struct Reader<'a, E> {
    data: &'a [u8],
    pos: usize,
    base: usize,
    error: PhantomData<fn() -> E>,
}

impl<'a, E: FileError> Reader<'a, E> {
    pub(crate) fn new(data: &'a [u8]) -> Self {
        Self::at(data, 0)
    }

    /// A reader over `data`, which starts at byte `base` of the file.
    pub(crate) fn at(data: &'a [u8], base: usize) -> Self {
        Self {
            data,
            pos: 0,
            base,
            error: PhantomData,
        }
    }

    pub(crate) fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The file offset of the next byte.
    pub(crate) fn offset(&self) -> usize {
        self.base + self.pos
    }

    pub(crate) fn take(&mut self, n: usize) -> Result<&'a [u8], E> {
        if n > self.remaining() {
            return Err(E::truncated(self.offset(), n - self.remaining()));
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub(crate) fn skip(&mut self, n: usize) -> Result<(), E> {
        self.take(n).map(|_| ())
    }

    pub(crate) fn u8(&mut self) -> Result<u8, E> {
        Ok(self.take(1)?[0])
    }

    pub(crate) fn u16(&mut self) -> Result<u16, E> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u32(&mut self) -> Result<u32, E> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }

    pub(crate) fn i32(&mut self) -> Result<i32, E> {
        Ok(self.u32()? as i32)
    }

    /// A length or count field of `width`.
    pub(crate) fn len(&mut self, width: Width) -> Result<usize, E> {
        Ok(match width {
            Width::U16 => usize::from(self.u16()?),
            Width::U32 => self.u32()? as usize,
        })
    }

    /// Bytes after a length of `width` (the formats' `data`).
    pub(crate) fn data(&mut self, width: Width) -> Result<&'a [u8], E> {
        let len = self.len(width)?;
        self.take(len)
    }
}

/// A name read from the file, which must be UTF-8; `offset` is where the
/// principal it belongs to starts, for the error.
pub(crate) fn name<E: FileError>(bytes: &[u8], offset: usize) -> Result<String, E> {
    String::from_utf8(bytes.to_vec()).map_err(|_| E::non_utf8_name(offset))
}

/// Writes a length or count field of `width`; `what` names the field
/// for the error if `len` does not fit.
pub(crate) fn put_len<E: FileError>(
    out: &mut Vec<u8>,
    len: usize,
    width: Width,
    what: &'static str,
) -> Result<(), E> {
    let too_long = |_| E::too_long(what);
    match width {
        Width::U16 => out.extend_from_slice(&u16::try_from(len).map_err(too_long)?.to_be_bytes()),
        Width::U32 => out.extend_from_slice(&u32::try_from(len).map_err(too_long)?.to_be_bytes()),
    }
    Ok(())
}

/// Writes `data` after a length of `width`.
pub(crate) fn put_data<E: FileError>(
    out: &mut Vec<u8>,
    data: &[u8],
    width: Width,
    what: &'static str,
) -> Result<(), E> {
    put_len::<E>(out, data.len(), width, what)?;
    out.extend_from_slice(data);
    Ok(())
}

/// Reads the file at `path` (into memory that is zeroed afterwards) and
/// parses it with `parse`.
pub(crate) fn load<T, E: FileError>(
    path: &Path,
    parse: impl FnOnce(&[u8]) -> Result<T, E>,
) -> Result<T, E> {
    let data = Zeroizing::new(fs::read(path).map_err(|source| E::read(path.to_owned(), source))?);
    parse(&data)
}

/// Writes the encoded file `data` to `path` atomically with mode 0600
/// (see [`write_private_file`]), and zeroes `data` afterwards.
pub(crate) fn save<E: FileError>(path: &Path, data: Vec<u8>) -> Result<(), E> {
    let data = Zeroizing::new(data);
    write_private_file(path, &data).map_err(|source| E::write(path.to_owned(), source))
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
        fs::rename(&tmp, path)?;
        // The rename is durable once the directory is: without this a
        // crash can bring back the old key file.
        fs::File::open(&dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The rename onto a key file is followed by an fsync of its directory:
    /// seen by strace on a child run of [`strace_child_writes_a_key_file`].
    #[test]
    fn key_file_rename_is_followed_by_a_directory_fsync() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("krb5.keytab");
        let log = d.path().join("strace.log");
        let st = std::process::Command::new("strace")
            .args([
                "-f",
                "-y",
                "-e",
                "trace=rename,renameat,renameat2,fsync",
                "-o",
            ])
            .arg(&log)
            .arg(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "mit_file::tests::strace_child_writes_a_key_file",
                "--test-threads=1",
            ])
            .env("ROAMGATE_STRACE_CHILD", &p)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("strace (apt install strace)");
        assert!(st.success());
        let text = std::fs::read_to_string(&log).unwrap();
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains(d.path().to_str().unwrap()))
            .collect();
        let renamed = lines
            .iter()
            .position(|l| l.contains("rename") && l.contains("krb5.keytab\""))
            .unwrap_or_else(|| panic!("no rename onto the key file: {lines:#?}"));
        let dir = format!("<{}>", d.path().display());
        assert!(
            lines[renamed..]
                .iter()
                .any(|l| l.contains("fsync(") && l.contains(&dir)),
            "no fsync of {} after the rename: {lines:#?}",
            d.path().display()
        );
    }

    #[test]
    fn strace_child_writes_a_key_file() {
        if let Some(p) = std::env::var_os("ROAMGATE_STRACE_CHILD") {
            write_private_file(Path::new(&p), b"key").unwrap();
        }
    }

    #[derive(Debug)]
    enum TestError {
        Truncated { offset: usize, needed: usize },
        NonUtf8Name { offset: usize },
        TooLong(&'static str),
        Read { path: PathBuf, source: io::Error },
        Write { path: PathBuf, source: io::Error },
    }
    file_error!(TestError);

    #[test]
    fn data_round_trips_in_both_widths() {
        for width in [Width::U16, Width::U32] {
            let mut out = Vec::new();
            put_data::<TestError>(&mut out, b"EXAMPLE.COM", width, "realm").unwrap();
            put_len::<TestError>(&mut out, 7, width, "count").unwrap();
            let prefix = if width == Width::U16 { 2 } else { 4 };
            assert_eq!(out.len(), 2 * prefix + 11);
            let mut r = Reader::<TestError>::new(&out);
            assert_eq!(r.data(width).unwrap(), b"EXAMPLE.COM");
            assert_eq!(r.len(width).unwrap(), 7);
            assert_eq!(r.remaining(), 0);
        }
    }

    #[test]
    fn truncation_names_the_file_offset() {
        // A u16 length of 3 with one byte behind it, 10 bytes into a file.
        let mut r = Reader::<TestError>::at(&[0, 3, b'a'], 10);
        match r.data(Width::U16) {
            Err(TestError::Truncated { offset, needed }) => assert_eq!((offset, needed), (12, 2)),
            other => panic!("{other:?}"),
        }
        let mut r = Reader::<TestError>::new(&[1, 2, 3]);
        assert!(matches!(
            r.u32(),
            Err(TestError::Truncated {
                offset: 0,
                needed: 1
            })
        ));
    }

    #[test]
    fn oversized_fields_and_bad_names_are_refused() {
        let mut out = Vec::new();
        assert!(matches!(
            put_len::<TestError>(&mut out, 70_000, Width::U16, "key"),
            Err(TestError::TooLong("key"))
        ));
        assert!(out.is_empty());
        put_len::<TestError>(&mut out, 70_000, Width::U32, "key").unwrap();
        assert_eq!(out, 70_000u32.to_be_bytes());
        assert!(matches!(
            name::<TestError>(&[0xff], 4),
            Err(TestError::NonUtf8Name { offset: 4 })
        ));
    }

    #[test]
    fn load_and_save_name_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        match load(&path, |_| Ok::<_, TestError>(())) {
            Err(TestError::Read { path: p, source }) => {
                assert_eq!(p, path);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
        save::<TestError>(&path, b"secret".to_vec()).unwrap();
        let got = load(&path, |d| Ok::<_, TestError>(d.to_vec())).unwrap();
        assert_eq!(got, b"secret");
        let missing = dir.path().join("no/such/dir/f");
        match save::<TestError>(&missing, Vec::new()) {
            Err(TestError::Write { path: p, source }) => {
                assert_eq!(p, missing);
                assert_eq!(source.kind(), io::ErrorKind::NotFound);
            }
            other => panic!("{other:?}"),
        }
    }
}
