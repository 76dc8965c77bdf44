//! Which driver runs a network interface, for the one warning that explains
//! why XDP fell back to generic (skb) mode.

use std::path::Path;

/// `ETHTOOL_GDRVINFO` (linux/ethtool.h).
const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;

/// `struct ethtool_drvinfo` (linux/ethtool.h); only `driver` is read.
#[repr(C)]
struct EthtoolDrvinfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

/// The driver of `iface`: the `device/driver` link in sysfs for a device on
/// a bus (virtio_net, mlx5_core, ...), otherwise what ethtool reports, which
/// for a virtual device without a driver link (dummy, ifb, veth) is its
/// link kind. `"unknown"` when neither answers.
pub fn driver_name(iface: &str) -> String {
    sysfs_driver(&Path::new("/sys/class/net").join(iface))
        .or_else(|| ethtool_driver(iface))
        .unwrap_or_else(|| "unknown".to_owned())
}

fn sysfs_driver(dev: &Path) -> Option<String> {
    let target = std::fs::read_link(dev.join("device/driver")).ok()?;
    Some(target.file_name()?.to_string_lossy().into_owned())
}

fn ethtool_driver(iface: &str) -> Option<String> {
    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    let mut info = EthtoolDrvinfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: ifreq is plain old data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    req.ifr_ifru.ifru_data = (&mut info as *mut EthtoolDrvinfo).cast();
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: SIOCETHTOOL with ETHTOOL_GDRVINFO reads ifr_name and writes
    // one ethtool_drvinfo through ifr_data, which points at `info`, alive
    // and writable for the whole call.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    let name = String::from_utf8_lossy(&info.driver[..len]).into_owned();
    (!name.is_empty()).then_some(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_reports_a_name_and_missing_interfaces_are_unknown() {
        // `lo` has no device link; ethtool may or may not answer for it, but
        // the function never fails.
        assert!(!driver_name("lo").is_empty());
        assert_eq!(driver_name("rg-no-such-if0"), "unknown");
    }

    #[test]
    fn sysfs_driver_reads_the_link_name() {
        let dir = std::env::temp_dir().join(format!("rg-driver-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("device")).unwrap();
        let _ = std::fs::remove_file(dir.join("device/driver"));
        std::os::unix::fs::symlink(
            "../../bus/virtio/drivers/virtio_net",
            dir.join("device/driver"),
        )
        .unwrap();
        assert_eq!(sysfs_driver(&dir).as_deref(), Some("virtio_net"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
