//! Key files: hex digits in a file only its owner may read. One reader for
//! every role: the home agent's and mobile node's MN-HA keys, the TUN
//! forwarder's tunnel master key.

use std::path::Path;

use anyhow::{bail, Context as _};
use roamgate_mip::MasterKey;

/// Reads a key file: hex digits (whitespace ignored). Refuses files that
/// others can read.
pub fn read_hex_key(path: &Path) -> anyhow::Result<zeroize::Zeroizing<Vec<u8>>> {
    use std::os::unix::fs::PermissionsExt as _;
    let meta = std::fs::metadata(path).with_context(|| format!("key file {}", path.display()))?;
    if meta.permissions().mode() & 0o077 != 0 {
        bail!(
            "key file {} is readable by others (mode {:o}); chmod 600 it",
            path.display(),
            meta.permissions().mode() & 0o777
        );
    }
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?,
    );
    let digits: zeroize::Zeroizing<String> =
        zeroize::Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        bail!(
            "key file {}: not an even number of hex digits",
            path.display()
        );
    }
    let mut out = zeroize::Zeroizing::new(Vec::with_capacity(digits.len() / 2));
    for i in (0..digits.len()).step_by(2) {
        let b = u8::from_str_radix(&digits[i..i + 2], 16)
            .map_err(|_| anyhow::anyhow!("key file {}: not hex", path.display()))?;
        out.push(b);
    }
    Ok(out)
}

/// Reads a tunnel master key file ([`read_hex_key`]): 16 to 64 bytes.
pub fn read_master_key(path: &Path) -> anyhow::Result<MasterKey> {
    let bytes = read_hex_key(path)?;
    MasterKey::from_slice(&bytes).with_context(|| format!("in key file {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_files_must_be_private_hex() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "00 11 aa\nff\n").unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(read_hex_key(&p)
            .unwrap_err()
            .to_string()
            .contains("chmod 600"));
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert_eq!(&read_hex_key(&p).unwrap()[..], &[0x00, 0x11, 0xaa, 0xff]);
        std::fs::write(&p, "abc").unwrap();
        assert!(read_hex_key(&p).is_err());
    }

    #[test]
    fn key_file_mode_is_enforced() {
        use std::os::unix::fs::PermissionsExt as _;
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        std::fs::write(&p, "11".repeat(32)).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644)).unwrap();
        let e = read_master_key(&p).unwrap_err();
        assert!(e.to_string().contains("chmod 600"), "{e}");
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o600)).unwrap();
        assert!(read_master_key(&p)
            .unwrap()
            .ct_eq(&MasterKey::new([0x11; 32])));
    }
}
