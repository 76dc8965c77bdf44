//! Native (driver-mode) XDP on a veth: the program attaches in native mode,
//! sees real frames the peer sends, and detaches cleanly. Runs on the host
//! and, through `cargo xtask kernel`, under Linux 6.1. Needs root.

use std::{
    process::Command,
    time::{Duration, Instant},
};

use roamgate::dataplane::{AttachMode, DataPlane};
use roamgate_testkit::{fixture::TestPinDir, frame::FrameBuilder};

fn sh(cmd: &str) {
    let st = Command::new("sh").arg("-c").arg(cmd).status().expect("sh");
    assert!(st.success(), "{cmd}");
}

/// Sends `frame` `n` times out of `iface` through an AF_PACKET socket.
fn send_raw(iface: &str, frame: &[u8], n: usize) {
    let name = std::ffi::CString::new(iface).unwrap();
    // SAFETY: a NUL-terminated interface name.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    assert_ne!(ifindex, 0, "no interface {iface}");
    let proto = (libc::ETH_P_ALL as u16).to_be();
    // SAFETY: plain syscall; the descriptor is closed below.
    let fd = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW, proto as i32) };
    assert!(
        fd >= 0,
        "AF_PACKET socket: {}",
        std::io::Error::last_os_error()
    );
    // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = proto;
    addr.sll_ifindex = ifindex as i32;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&frame[..6]);
    for _ in 0..n {
        // SAFETY: `frame` and `addr` outlive the call; sizes are theirs.
        let sent = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::addr_of!(addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            sent,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
    // SAFETY: our descriptor, closed once.
    unsafe { libc::close(fd) };
}

#[test]
fn attaches_natively_to_a_veth_and_sees_real_frames() {
    // SAFETY: plain syscall; affects only this test thread.
    let rc = unsafe { libc::unshare(libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "unshare(CLONE_NEWNET): are you root?");
    // No IPv6 on the new links: their router and multicast-listener
    // solicitations would be frames the exact counts below do not expect.
    sh(
        "f=/proc/sys/net/ipv6/conf/default/disable_ipv6; if [ -w $f ]; then echo 1 > $f; fi \
        && ip link add rgnat0 type veth peer name rgnat1 \
        && ip link set rgnat0 up && ip link set rgnat1 up",
    );

    let pin = TestPinDir::new("native-attach");
    let mut dp = DataPlane::load(pin.path()).expect("load data plane");
    dp.attach("rgnat0", AttachMode::Native)
        .expect("native XDP on a veth");
    let out = Command::new("ip")
        .args(["link", "show", "dev", "rgnat0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    // `xdp` (driver mode), not `xdpgeneric`.
    assert!(
        shown.split_whitespace().any(|t| t == "xdp"),
        "not in driver mode: {shown}"
    );

    // Traffic that is not roamgate's: every frame is seen and passed.
    let frame = FrameBuilder::new()
        .ipv4([10, 7, 0, 1].into(), [10, 7, 0, 2].into())
        .udp(5000, 6000)
        .payload_len(100)
        .build();
    let before = dp.counters().unwrap();
    send_raw("rgnat1", &frame, 20);
    let deadline = Instant::now() + Duration::from_secs(10);
    let d = loop {
        let d = dp.counters().unwrap().delta(&before);
        if d.get("rx_packets") >= 20 || Instant::now() > deadline {
            break d;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(d.get("rx_packets"), 20, "{d:?}");
    assert_eq!(d.get("rx_ipv4"), 20, "{d:?}");
    assert_eq!(d.get("action_pass"), 20, "{d:?}");
    assert_eq!(d.get("rx_bytes"), 20 * frame.len() as u64, "{d:?}");

    for (iface, res) in dp.detach_all() {
        res.unwrap_or_else(|e| panic!("detaching from {iface}: {e}"));
    }
    let out = Command::new("ip")
        .args(["link", "show", "dev", "rgnat0"])
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(!shown.contains("xdp"), "still attached: {shown}");
}
