//! The persisted sequence state of a tunnel with a static key
//! (`roamgate tunnel`, docs/wire.md §3 "Restarts"): the end of the block of
//! sequence numbers the sender has reserved, and the floor at or below which
//! the receiver refuses everything. Both only grow, and each is written to
//! disk before a sequence number it covers is sent or accepted, so neither
//! a restarted sender nor a restarted receiver can reuse or re-accept a
//! sequence number under the same key.
//!
//! Sequence numbers are grouped in blocks of [`SEQ_BLOCK`]: the state is
//! written once per block (and at most about once per [`BLOCK_LIFETIME`]),
//! not per packet.
//!
//! The file is small text, written whole through a fresh `O_EXCL |
//! O_NOFOLLOW` 0600 temporary file in the same directory, fsync'd, renamed
//! over the old one, and the directory fsync'd.

use std::{
    io::Write as _,
    os::unix::fs::{DirBuilderExt as _, MetadataExt as _, OpenOptionsExt as _},
    path::{Path, PathBuf},
    sync::{
        atomic::{AtomicU32, Ordering},
        Mutex, PoisonError,
    },
    time::Duration,
};

/// Sequence numbers per block. A restarted sender skips at most the rest of
/// one block, and a block lasts at least as long as [`BLOCK_LIFETIME`]
/// only when traffic is below `SEQ_BLOCK` packets a second; 2^63 / 2^20
/// blocks at one a second last 2^43 s.
pub const SEQ_BLOCK: u64 = 1 << 20;
/// A sender moves to its next block when the current one is this old, so a
/// restarted receiver (whose floor is the end of the sender's current
/// block) loses at most about this much of a live sender's traffic.
pub const BLOCK_LIFETIME: Duration = Duration::from_secs(1);

/// The block a sequence number lies in.
pub const fn block_of(seq: u64) -> u64 {
    seq / SEQ_BLOCK
}

/// The last sequence number of `block`.
pub const fn block_end(block: u64) -> u64 {
    block
        .saturating_mul(SEQ_BLOCK)
        .saturating_add(SEQ_BLOCK - 1)
}

/// Where each direction stands after a (re)start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqState {
    /// Sequence numbers up to this one may have been sent: the sender
    /// continues after it (0: none).
    pub tx_reserved: u64,
    /// Sequence numbers up to this one may have been accepted: the
    /// receiver refuses them (0: none).
    pub rx_floor: u64,
}

/// Where the core writes its reservations before it relies on them.
pub trait SeqStore: Send + Sync + std::fmt::Debug {
    /// Durably records that sequence numbers up to `end` may be sent.
    fn reserve_tx(&self, end: u64) -> std::io::Result<()>;
    /// Durably records that sequence numbers up to `floor` may have been
    /// accepted.
    fn raise_rx_floor(&self, floor: u64) -> std::io::Result<()>;
}

#[derive(Debug, thiserror::Error)]
pub enum StateFileError {
    #[error("reading tunnel state file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "tunnel state file {path} has mode {mode:o} or another owner; it must be the \
         forwarder's own, mode 0600 (chown root, chmod 600)"
    )]
    Permissions { path: PathBuf, mode: u32 },
    #[error(
        "tunnel state file {path} is not a regular file (a symlink or a directory); \
         point tunnel.state_file at a file of its own"
    )]
    NotAFile { path: PathBuf },
    #[error(
        "tunnel state file {path} is corrupt ({what}); the forwarder will not guess its \
         sequence numbers: restore the file, or install a new master key on both ends and \
         move the file away"
    )]
    Corrupt { path: PathBuf, what: &'static str },
}

const MAGIC: &str = "roamgate tunnel sequence state v1";

/// One tunnel's state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    spi: u32,
    key_id: u64,
    state: Mutex<SeqState>,
}

impl StateFile {
    /// Opens (or starts) the state of tunnel `spi` whose keys have
    /// fingerprint `key_id`. A file for another SPI or key counts as no
    /// state: those sequence numbers were used under other keys. Returns
    /// the file and the state to start from.
    pub fn open(path: &Path, spi: u32, key_id: u64) -> Result<(Self, SeqState), StateFileError> {
        let io = |source| StateFileError::Io {
            path: path.to_owned(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(io)?;
        }
        let start = match std::fs::symlink_metadata(path) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => SeqState::default(),
            Err(e) => return Err(io(e)),
            Ok(meta) => {
                // SAFETY: geteuid has no preconditions.
                let me = unsafe { libc::geteuid() };
                if !meta.file_type().is_file() {
                    return Err(StateFileError::NotAFile {
                        path: path.to_owned(),
                    });
                }
                if meta.mode() & 0o077 != 0 || meta.uid() != me {
                    return Err(StateFileError::Permissions {
                        path: path.to_owned(),
                        mode: meta.mode() & 0o7777,
                    });
                }
                let text = std::fs::read_to_string(path).map_err(io)?;
                let (f_spi, f_key, state) =
                    parse(&text).map_err(|what| StateFileError::Corrupt {
                        path: path.to_owned(),
                        what,
                    })?;
                if f_spi == spi && f_key == key_id {
                    state
                } else {
                    tracing::info!(
                        path = %path.display(),
                        "tunnel state file is for another SPI or key: starting at sequence 1"
                    );
                    SeqState::default()
                }
            }
        };
        let file = Self {
            path: path.to_owned(),
            spi,
            key_id,
            state: Mutex::new(start),
        };
        Ok((file, start))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    fn update(&self, f: impl FnOnce(&mut SeqState)) -> std::io::Result<()> {
        let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut next = *st;
        f(&mut next);
        if next == *st {
            return Ok(());
        }
        write_atomic(&self.path, emit(self.spi, self.key_id, &next).as_bytes())?;
        *st = next;
        Ok(())
    }
}

impl SeqStore for StateFile {
    fn reserve_tx(&self, end: u64) -> std::io::Result<()> {
        self.update(|s| s.tx_reserved = s.tx_reserved.max(end))
    }

    fn raise_rx_floor(&self, floor: u64) -> std::io::Result<()> {
        self.update(|s| s.rx_floor = s.rx_floor.max(floor))
    }
}

fn emit(spi: u32, key_id: u64, s: &SeqState) -> String {
    format!(
        "{MAGIC}\nspi {spi:#010x}\nkey_id {key_id:016x}\ntx_reserved {}\nrx_floor {}\n",
        s.tx_reserved, s.rx_floor
    )
}

fn parse(text: &str) -> Result<(u32, u64, SeqState), &'static str> {
    let mut lines = text.lines();
    if lines.next() != Some(MAGIC) {
        return Err("not a roamgate tunnel state file");
    }
    let mut field = |name: &str| -> Result<&str, &'static str> {
        let line = lines.next().ok_or("truncated")?;
        match line.split_once(' ') {
            Some((k, v)) if k == name => Ok(v),
            _ => Err("unexpected line"),
        }
    };
    let spi = field("spi")?;
    let spi =
        u32::from_str_radix(spi.strip_prefix("0x").ok_or("bad spi")?, 16).map_err(|_| "bad spi")?;
    let key_id = u64::from_str_radix(field("key_id")?, 16).map_err(|_| "bad key_id")?;
    let tx_reserved = field("tx_reserved")?
        .parse()
        .map_err(|_| "bad tx_reserved")?;
    let rx_floor = field("rx_floor")?.parse().map_err(|_| "bad rx_floor")?;
    Ok((
        spi,
        key_id,
        SeqState {
            tx_reserved,
            rx_floor,
        },
    ))
}

/// Replaces `path` with `data` atomically and durably: a fresh 0600
/// temporary file (never an existing one, never through a symlink), fsync,
/// rename, fsync of the directory.
fn write_atomic(path: &Path, data: &[u8]) -> std::io::Result<()> {
    static N: AtomicU32 = AtomicU32::new(0);
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::other("state file path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.{}.{}.tmp",
        name.to_string_lossy(),
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(&tmp)?;
    let r = f
        .write_all(data)
        .and_then(|()| f.sync_all())
        .and_then(|()| std::fs::rename(&tmp, path));
    if r.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    r?;
    std::fs::File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks() {
        assert_eq!(block_of(1), 0);
        assert_eq!(block_end(0), SEQ_BLOCK - 1);
        assert_eq!(block_of(SEQ_BLOCK), 1);
        assert_eq!(block_end(block_of(SEQ_BLOCK + 5)), 2 * SEQ_BLOCK - 1);
        assert_eq!(block_end(u64::MAX), u64::MAX);
    }

    #[test]
    fn round_trip_mode_and_other_key() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("sub/t.state");
        let (f, s) = StateFile::open(&p, 7, 0xabc).unwrap();
        assert_eq!(s, SeqState::default());
        f.reserve_tx(SEQ_BLOCK - 1).unwrap();
        f.raise_rx_floor(3 * SEQ_BLOCK - 1).unwrap();
        // Lower values never move it back.
        f.reserve_tx(5).unwrap();
        let meta = std::fs::metadata(&p).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(
            std::fs::metadata(p.parent().unwrap())
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o700
        );
        let (_, s) = StateFile::open(&p, 7, 0xabc).unwrap();
        assert_eq!(
            s,
            SeqState {
                tx_reserved: SEQ_BLOCK - 1,
                rx_floor: 3 * SEQ_BLOCK - 1
            }
        );
        // Another key or SPI: nothing was used under it.
        assert_eq!(
            StateFile::open(&p, 7, 0xabd).unwrap().1,
            SeqState::default()
        );
        assert_eq!(
            StateFile::open(&p, 8, 0xabc).unwrap().1,
            SeqState::default()
        );
        // No temporary files left behind.
        assert_eq!(std::fs::read_dir(p.parent().unwrap()).unwrap().count(), 1);
    }

    #[test]
    fn corrupt_and_loose_files_are_refused() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.state");
        std::fs::write(&p, format!("{MAGIC}\nspi 0x00000007\nkey_id zz\n")).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        let e = StateFile::open(&p, 7, 1).unwrap_err();
        assert!(
            matches!(
                e,
                StateFileError::Corrupt {
                    what: "bad key_id",
                    ..
                }
            ),
            "{e}"
        );
        assert!(e.to_string().contains("new master key"), "{e}");
        std::fs::write(&p, "").unwrap();
        assert!(matches!(
            StateFile::open(&p, 7, 1),
            Err(StateFileError::Corrupt { .. })
        ));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = StateFile::open(&p, 7, 1).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        // A symlink is not followed.
        let q = dir.path().join("link.state");
        std::os::unix::fs::symlink(&p, &q).unwrap();
        assert!(matches!(
            StateFile::open(&q, 7, 1),
            Err(StateFileError::NotAFile { .. })
        ));
    }
}
