//! Files and directories the roles create, as root, in places others may
//! reach:
//! - [`write_atomic`]: every status, stats or key file is replaced through a
//!   fresh temp file (random name, `O_CREAT | O_EXCL | O_NOFOLLOW`) in a
//!   private 0700 directory beside it, synced, renamed over the target, and
//!   the directory synced: a reader sees the old or the new file, a crash
//!   loses neither, and a symlink planted under a predictable name is never
//!   followed;
//! - [`private_dir`]: a directory (the bpffs pin directory) created 0700 and
//!   refused when another user owns it or may write to it.

use std::{
    ffi::{CString, OsStr},
    fs::File,
    io::{self, Write as _},
    os::{
        fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
        unix::{ffi::OsStrExt as _, fs::DirBuilderExt as _, fs::MetadataExt as _},
    },
    path::{Path, PathBuf},
};

/// The private directory [`write_atomic`] keeps its temp files in, beside
/// the target.
pub const TEMP_DIR: &str = ".roamgate-tmp";

fn cstr(s: &OsStr) -> io::Result<CString> {
    CString::new(s.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "NUL in path"))
}

fn check(rc: libc::c_int) -> io::Result<libc::c_int> {
    if rc < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(rc)
    }
}

/// Opens the directory `name` under `at` (or the path `name` when `at` is
/// None) without following a final symlink.
fn open_dir(at: Option<&OwnedFd>, name: &OsStr) -> io::Result<OwnedFd> {
    let c = cstr(name)?;
    let dirfd = at.map_or(libc::AT_FDCWD, |f| f.as_raw_fd());
    // SAFETY: valid NUL-terminated path; the fd is owned below.
    let fd = check(unsafe {
        libc::openat(
            dirfd,
            c.as_ptr(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC,
        )
    })?;
    // SAFETY: a fresh fd we own.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Why `dir` (owner `uid`, `mode`) may not be used, if it may not. `deny`:
/// the mode bits nobody but the owner may have.
fn refusal(dir: &Path, uid: u32, mode: u32, deny: u32) -> Option<io::Error> {
    // SAFETY: geteuid cannot fail.
    let me = unsafe { libc::geteuid() };
    let msg = if uid != me {
        format!(
            "{} is owned by uid {uid}, not by this process (uid {me}): another user could replace what is in it; remove it or `chown {me} {}`",
            dir.display(),
            dir.display()
        )
    } else if mode & deny != 0 {
        format!(
            "{} has mode {:04o}: others could replace what is in it; `chmod 0700 {}`",
            dir.display(),
            mode & 0o7777,
            dir.display()
        )
    } else {
        return None;
    };
    Some(io::Error::new(io::ErrorKind::PermissionDenied, msg))
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: `st` is plain old data, filled by fstat.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: our fd, a valid out pointer.
    check(unsafe { libc::fstat(fd.as_raw_fd(), &mut st) })?;
    Ok(st)
}

/// Creates `dir` (and missing parents) with mode 0700, or accepts it as it
/// is when this process's user owns it and neither group nor others may
/// write to it. A symlink, another owner or a group/other-writable mode is
/// refused with an error that names the fix.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("creating {}: {e}", dir.display())))?;
    let md = std::fs::symlink_metadata(dir)?;
    if !md.file_type().is_dir() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "{} is not a directory (a symlink?): give the real path",
                dir.display()
            ),
        ));
    }
    match refusal(dir, md.uid(), md.mode(), 0o022) {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Random 64 bits for a temp file name.
fn nonce() -> io::Result<u64> {
    use ring::rand::SecureRandom as _;
    let mut b = [0u8; 8];
    ring::rand::SystemRandom::new()
        .fill(&mut b)
        .map_err(|_| io::Error::other("the system random source failed"))?;
    Ok(u64::from_ne_bytes(b))
}

/// Replaces `path` with `data` (file mode `mode`), atomically and durably,
/// through a temp file in `<dir of path>/.roamgate-tmp` (0700, owned by this
/// user, refused otherwise). Every step works on directory descriptors, so
/// nothing another user renames or links meanwhile redirects the write.
pub fn write_atomic(path: &Path, data: &[u8], mode: u32) -> io::Result<()> {
    let ctx = |e: io::Error| io::Error::new(e.kind(), format!("writing {}: {e}", path.display()));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))
        .map_err(ctx)?;
    let parent: PathBuf = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => PathBuf::from("."),
    };
    let dir = open_dir(None, parent.as_os_str()).map_err(ctx)?;
    let tmp_dir = {
        let c = cstr(OsStr::new(TEMP_DIR))?;
        // SAFETY: our dir fd, a valid name. EEXIST is checked below.
        let rc = unsafe { libc::mkdirat(dir.as_raw_fd(), c.as_ptr(), 0o700) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EEXIST) {
                return Err(ctx(e));
            }
        }
        let fd = open_dir(Some(&dir), OsStr::new(TEMP_DIR)).map_err(ctx)?;
        let st = fstat(&fd).map_err(ctx)?;
        if let Some(e) = refusal(&parent.join(TEMP_DIR), st.st_uid, st.st_mode, 0o077) {
            return Err(ctx(e));
        }
        fd
    };
    let mut tmp_name = name.as_bytes().to_vec();
    tmp_name.extend_from_slice(format!(".{:016x}", nonce()?).as_bytes());
    let tmp_c = CString::new(tmp_name).map_err(|_| ctx(io::ErrorKind::InvalidInput.into()))?;
    let result = (|| {
        // SAFETY: our dir fd, a valid name; the fd is owned below.
        let fd = check(unsafe {
            libc::openat(
                tmp_dir.as_raw_fd(),
                tmp_c.as_ptr(),
                libc::O_WRONLY | libc::O_CREAT | libc::O_EXCL | libc::O_NOFOLLOW | libc::O_CLOEXEC,
                mode as libc::c_uint,
            )
        })?;
        // SAFETY: a fresh fd we own.
        let mut f = unsafe { File::from_raw_fd(fd) };
        // The umask may have taken bits the caller asked for.
        // SAFETY: our fd.
        check(unsafe { libc::fchmod(f.as_raw_fd(), mode as libc::mode_t) })?;
        f.write_all(data)?;
        f.sync_all()?;
        let target = cstr(name)?;
        // SAFETY: our dir fds, valid names.
        check(unsafe {
            libc::renameat(
                tmp_dir.as_raw_fd(),
                tmp_c.as_ptr(),
                dir.as_raw_fd(),
                target.as_ptr(),
            )
        })?;
        // The rename is durable once the directory is.
        // SAFETY: our fd.
        check(unsafe { libc::fsync(dir.as_raw_fd()) })?;
        Ok(())
    })();
    if result.is_err() {
        // SAFETY: our dir fd, a valid name; a missing file is fine.
        unsafe { libc::unlinkat(tmp_dir.as_raw_fd(), tmp_c.as_ptr(), 0) };
    }
    result.map_err(ctx)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    fn mode(p: &Path) -> u32 {
        std::fs::symlink_metadata(p).unwrap().mode() & 0o7777
    }

    #[test]
    fn write_atomic_replaces_the_file_with_the_mode_asked() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stats.json");
        write_atomic(&p, b"one", 0o644).unwrap();
        write_atomic(&p, b"two", 0o600).unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"two");
        assert_eq!(mode(&p), 0o600);
        assert_eq!(mode(&d.path().join(TEMP_DIR)), 0o700);
        // No temp file is left behind.
        assert_eq!(
            std::fs::read_dir(d.path().join(TEMP_DIR)).unwrap().count(),
            0
        );
    }

    #[test]
    fn write_atomic_never_follows_a_planted_symlink() {
        let d = tempfile::tempdir().unwrap();
        let victim = d.path().join("shadow");
        std::fs::write(&victim, b"secret").unwrap();
        let p = d.path().join("stats.json");
        // The names the old writers used, and the target itself.
        std::os::unix::fs::symlink(&victim, d.path().join("stats.tmp")).unwrap();
        std::os::unix::fs::symlink(&victim, &p).unwrap();
        write_atomic(&p, b"{}", 0o644).unwrap();
        assert_eq!(std::fs::read(&victim).unwrap(), b"secret");
        assert!(!std::fs::symlink_metadata(&p)
            .unwrap()
            .file_type()
            .is_symlink());
        assert_eq!(std::fs::read(&p).unwrap(), b"{}");
    }

    #[test]
    fn write_atomic_refuses_a_temp_dir_others_control() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("stats.json");
        let t = d.path().join(TEMP_DIR);
        // Planted as a symlink to a directory of the attacker's choosing.
        let elsewhere = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(elsewhere.path(), &t).unwrap();
        assert!(write_atomic(&p, b"{}", 0o644).is_err());
        assert_eq!(std::fs::read_dir(elsewhere.path()).unwrap().count(), 0);
        std::fs::remove_file(&t).unwrap();
        // Created world-writable.
        std::fs::create_dir(&t).unwrap();
        std::fs::set_permissions(&t, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = write_atomic(&p, b"{}", 0o644).unwrap_err().to_string();
        assert!(e.contains("chmod 0700"), "{e}");
        assert!(!p.exists());
    }

    /// The write is followed by an fsync of the target's directory: seen by
    /// strace on a child run of [`strace_child_writes`].
    #[test]
    fn write_atomic_syncs_the_directory_after_the_rename() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("key");
        let log = d.path().join("strace.log");
        let exe = std::env::current_exe().unwrap();
        let st = std::process::Command::new("strace")
            .args([
                "-f",
                "-y",
                "-e",
                "trace=renameat,renameat2,rename,fsync,fdatasync",
                "-o",
            ])
            .arg(&log)
            .arg(&exe)
            .args([
                "--exact",
                "platform::fs::tests::strace_child_writes",
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
            .position(|l| l.contains("rename") && l.contains("\"key\""))
            .unwrap_or_else(|| panic!("no rename onto the target: {lines:#?}"));
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
    fn strace_child_writes() {
        if let Some(p) = std::env::var_os("ROAMGATE_STRACE_CHILD") {
            write_atomic(Path::new(&p), b"k", 0o600).unwrap();
        }
    }

    #[test]
    fn private_dir_is_created_0700() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("a/pins");
        private_dir(&p).unwrap();
        assert_eq!(mode(&p), 0o700);
        // Reused as it is.
        private_dir(&p).unwrap();
    }

    #[test]
    fn private_dir_refuses_a_writable_or_foreign_directory() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("pins");
        std::fs::create_dir(&p).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&p).unwrap_err().to_string();
        assert!(e.contains("mode 0777") && e.contains("chmod 0700"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
        private_dir(&p).unwrap();
        // SAFETY: geteuid cannot fail.
        if unsafe { libc::geteuid() } == 0 {
            std::os::unix::fs::chown(&p, Some(65534), None).unwrap();
            let e = private_dir(&p).unwrap_err().to_string();
            assert!(e.contains("owned by uid 65534"), "{e}");
        }
        let link = d.path().join("link");
        let other = d.path().join("other");
        std::fs::create_dir(&other).unwrap();
        std::os::unix::fs::symlink(&other, &link).unwrap();
        assert!(private_dir(&link).is_err());
    }
}
