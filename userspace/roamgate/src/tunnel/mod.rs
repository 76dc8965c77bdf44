//! The userspace tunnel forwarder (`roamgate tunnel`): the fallback for hosts
//! without XDP and the baseline the XDP data plane is measured against.
//!
//! It speaks the tunnel format of docs/wire.md through `roamgate_common`,
//! the code the XDP program runs. Inner packets read from a TUN device are
//! encapsulated, MACed and sent from UDP port 434 of `local` to port 434 of
//! `remote`; datagrams received on `local:434` are verified (SPI, MAC in
//! constant time, replay window, home address) and written to TUN. Every drop
//! is counted by reason ([`core::DropReason`]).
//!
//! Two threads, one per direction, each with blocking I/O: one syscall to
//! receive and one to send per packet. Shutdown is a flag the threads see
//! within [`POLL_INTERVAL`].
//!
//! The UDP socket hands over only the UDP payload, so the receiver rebuilds
//! the outer IPv4 and UDP headers from the sender's address and `local`
//! before it checks the MAC (which covers the outer addresses).

pub mod config;
pub mod core;

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use tracing::{info, warn};

use self::{
    config::TunnelConfig,
    core::{halves, DropReason, ForwarderCounters, UDP_PAYLOAD_OFFSET},
};
use crate::dataplane::maps::derive_keys;
use roamgate_common::wire::tunnel::{MIP_PORT, OVERHEAD};

/// How often a blocked thread looks at the shutdown flag.
pub const POLL_INTERVAL: Duration = Duration::from_millis(200);
/// Receive buffer: the largest UDP datagram plus the rebuilt headers.
const BUF_LEN: usize = 65_536 + UDP_PAYLOAD_OFFSET;

/// Waits until `fd` is readable or `timeout` passes.
fn wait_readable(fd: RawFd, timeout: Duration) {
    let mut p = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: `p` is one valid pollfd for the duration of the call.
    unsafe { libc::poll(&mut p, 1, timeout.as_millis() as libc::c_int) };
}

/// The result of a non-blocking receive: `Some` with data; `None` after
/// waiting up to [`POLL_INTERVAL`] for more (nothing there), after a signal,
/// or after logging an error (then it also backs off).
fn received<T>(r: std::io::Result<T>, fd: RawFd, what: &str) -> Option<T> {
    match r {
        Ok(x) => Some(x),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            wait_readable(fd, POLL_INTERVAL);
            None
        }
        Err(e) if e.kind() == std::io::ErrorKind::Interrupted => None,
        Err(e) => {
            warn!("{what}: {e}");
            std::thread::sleep(POLL_INTERVAL);
            None
        }
    }
}

/// docs/wire.md §1: tunnel packets carry UDP checksum 0 (the tag covers
/// more than the checksum would); SO_NO_CHECK makes the kernel send 0.
fn no_udp_checksum(sock: &UdpSocket) -> std::io::Result<()> {
    let one: libc::c_int = 1;
    // SAFETY: setsockopt on a socket we own with a valid c_int option value.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            &one as *const libc::c_int as *const libc::c_void,
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if r != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

fn set_nonblocking(fd: RawFd) -> std::io::Result<()> {
    // SAFETY: fcntl on an fd we own, with integer arguments only.
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    if flags < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: as above.
    if unsafe { libc::fcntl(fd, libc::F_SETFL, flags | libc::O_NONBLOCK) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Creates the TUN device and routes, opens the socket, and forwards until
/// `stop` is set. Returns the final counters.
pub fn run(cfg: &TunnelConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<ForwarderCounters>> {
    let t = &cfg.tunnel;
    let master = cfg.master_key()?;
    let keys = derive_keys(&master, t.spi, t.home, t.role);
    drop(master);
    let (mut enc, mut dec) = halves(t.spi, t.role, t.local, t.remote, t.home, &keys, t.mtu);
    drop(keys);

    let tun_mtu = t.mtu - OVERHEAD as u16;
    let mut tc = tun::Configuration::default();
    tc.tun_name(&t.tun_name).mtu(tun_mtu).up();
    if let Some(cidr) = &t.tun_address {
        let (addr, len) = cidr.split_once('/').context("tun_address")?;
        let addr: Ipv4Addr = addr.parse().context("tun_address")?;
        let len: u32 = len.parse().context("tun_address")?;
        let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
        tc.address(addr).netmask(Ipv4Addr::from(mask));
    }
    let dev = tun::create(&tc).with_context(|| format!("creating TUN device {}", t.tun_name))?;
    for r in &t.routes {
        let out = std::process::Command::new("ip")
            .args(["route", "replace", r, "dev", &t.tun_name])
            .output()
            .context("running ip route")?;
        if !out.status.success() {
            bail!(
                "ip route replace {r} dev {}: {}",
                t.tun_name,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
    }
    let sock = UdpSocket::bind(SocketAddrV4::new(t.local, MIP_PORT))
        .with_context(|| format!("binding UDP {}:{MIP_PORT}", t.local))?;
    sock.set_nonblocking(true)?;
    no_udp_checksum(&sock).context("setting SO_NO_CHECK on the tunnel socket")?;
    let tun_fd = dev.as_raw_fd();
    set_nonblocking(tun_fd).context("making the TUN device non-blocking")?;
    info!(
        tun = %t.tun_name, tun_mtu, local = %t.local, remote = %t.remote, home = %t.home,
        spi = format_args!("{:#010x}", t.spi), role = ?t.role,
        "tunnel forwarder running"
    );

    let counters = Arc::new(ForwarderCounters::default());
    let dev = Arc::new(dev);
    let remote = SocketAddrV4::new(t.remote, MIP_PORT);

    let tx = {
        let (dev, sock, counters, stop) = (
            dev.clone(),
            sock.try_clone()?,
            counters.clone(),
            stop.clone(),
        );
        std::thread::Builder::new()
            .name("tun-to-udp".into())
            .spawn(move || {
                let mut inner = vec![0u8; BUF_LEN];
                let mut out = vec![0u8; BUF_LEN + OVERHEAD];
                while !stop.load(Ordering::Relaxed) {
                    let Some(n) = received(dev.recv(&mut inner), tun_fd, "reading TUN") else {
                        continue;
                    };
                    match enc.encap(&inner[..n], &mut out) {
                        Ok(len) => match sock.send_to(&out[UDP_PAYLOAD_OFFSET..len], remote) {
                            Ok(_) => {
                                counters.encap.fetch_add(1, Ordering::Relaxed);
                                counters.encap_bytes.fetch_add(n as u64, Ordering::Relaxed);
                            }
                            Err(_) => counters.count_send_error(),
                        },
                        Err(r) => counters.count_drop(r),
                    }
                }
            })?
    };
    let rx = {
        let (dev, counters, stop) = (dev.clone(), counters.clone(), stop.clone());
        let sock_fd = sock.as_raw_fd();
        std::thread::Builder::new()
            .name("udp-to-tun".into())
            .spawn(move || {
                let mut buf = vec![0u8; BUF_LEN];
                while !stop.load(Ordering::Relaxed) {
                    let r = sock.recv_from(&mut buf[UDP_PAYLOAD_OFFSET..]);
                    let Some((n, from)) = received(r, sock_fd, "receiving on UDP 434") else {
                        continue;
                    };
                    let std::net::SocketAddr::V4(from) = from else {
                        counters.count_drop(DropReason::NotTunnel);
                        continue;
                    };
                    match dec.decap_udp(*from.ip(), from.port(), &mut buf, n) {
                        Ok(r) => {
                            let len = r.len();
                            match dev.send(&buf[r]) {
                                Ok(_) => {
                                    counters.decap.fetch_add(1, Ordering::Relaxed);
                                    counters
                                        .decap_bytes
                                        .fetch_add(len as u64, Ordering::Relaxed);
                                }
                                Err(_) => counters.count_send_error(),
                            }
                        }
                        Err(r) => counters.count_drop(r),
                    }
                }
            })?
    };

    let interval = Duration::from_millis(t.stats_interval_ms.max(50));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_INTERVAL.min(interval));
        write_stats(cfg, &counters);
    }
    let _ = tx.join();
    let _ = rx.join();
    write_stats(cfg, &counters);
    info!(counters = %counters.to_json(), "tunnel forwarder stopped");
    Ok(counters)
}

fn write_stats(cfg: &TunnelConfig, counters: &ForwarderCounters) {
    if let Some(path) = &cfg.tunnel.stats_file {
        let tmp = path.with_extension("tmp");
        if std::fs::write(&tmp, counters.to_json()).is_ok() {
            let _ = std::fs::rename(&tmp, path);
        }
    }
}
