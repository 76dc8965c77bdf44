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
//! the outer IPv4 and UDP headers from the sender's address and the
//! tunnel's `local` before it checks the MAC (which covers the outer
//! addresses).
//!
//! The threads read their keys, SPIs, addresses and binding from a
//! [`table::TunnelTable`] that the control plane may change while they run:
//! `roamgate tunnel` fills it once from its config, the mobile node's TUN
//! data plane (`mobile_node::tun`) rekeys it on every registration and
//! moves it to the new care-of address on a handover. Each packet is sent
//! with its tunnel's local address as source (IP_PKTINFO) and the outer TOS
//! of docs/wire.md §1, the inner one (IP_TOS); the socket sets DF (never
//! fragments, IP_PMTUDISC_DO) and TTL 64, and reports datagrams the kernel
//! reassembled from fragments (IP_RECVFRAGSIZE), which are dropped. The
//! outer ID and the UDP checksum check are the kernel's: docs/wire.md §12
//! lists the rules that bind only the XDP data plane.
//!
//! `roamgate tunnel` runs with a static key, so its sequence state persists
//! in a state file ([`seqstate`]) across restarts.

pub mod config;
pub mod core;
pub mod route;
pub mod seqstate;
pub mod table;

use std::{
    net::{Ipv4Addr, SocketAddrV4, UdpSocket},
    os::fd::{AsRawFd as _, RawFd},
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::Context as _;
use tracing::{info, warn};

use self::{
    config::TunnelConfig,
    core::{ForwarderCounters, UDP_PAYLOAD_OFFSET},
    route::{DevRoute, Prefix},
    seqstate::StateFile,
    table::{SharedTable, TableBinding, TableTunnel, TunnelTable},
};
use roamgate_common::wire::tunnel::{MIP_PORT, OUTER_TTL, OVERHEAD};
use roamgate_mip::tunnel_key::derive_keys;

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

fn set_int_opt(
    sock: &UdpSocket,
    level: libc::c_int,
    opt: libc::c_int,
    v: libc::c_int,
) -> std::io::Result<()> {
    // SAFETY: setsockopt on a socket we own with a valid c_int option value.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            opt,
            &v as *const libc::c_int as *const libc::c_void,
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

/// Sends a tunnel packet's UDP payload to `remote` with outer source
/// `local` (IP_PKTINFO), whatever address the socket is bound to (a mobile
/// node's tunnel follows its care-of address without a new socket), and
/// outer TOS `tos` (IP_TOS: docs/wire.md §1 copies the inner TOS, so voice
/// keeps DSCP EF outside the tunnel).
fn send_from(
    fd: RawFd,
    payload: &[u8],
    local: Ipv4Addr,
    remote: SocketAddrV4,
    tos: u8,
) -> std::io::Result<usize> {
    // SAFETY: sockaddr_in, msghdr and in_pktinfo are plain old data; zero
    // is a valid value of each.
    let (mut dst, mut msg): (libc::sockaddr_in, libc::msghdr) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    dst.sin_family = libc::AF_INET as libc::sa_family_t;
    dst.sin_port = remote.port().to_be();
    dst.sin_addr.s_addr = u32::from(*remote.ip()).to_be();
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    let mut control = [0u64; 8];
    let info_len = std::mem::size_of::<libc::in_pktinfo>() as u32;
    let tos_len = std::mem::size_of::<libc::c_int>() as u32;
    msg.msg_name = (&mut dst as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    // SAFETY: CMSG_SPACE is arithmetic only.
    msg.msg_controllen = unsafe { libc::CMSG_SPACE(info_len) + libc::CMSG_SPACE(tos_len) } as usize;
    // SAFETY: the control buffer (64 bytes, 8-aligned) holds a cmsghdr with
    // an in_pktinfo (CMSG_SPACE = 32) and one with an int (CMSG_SPACE =
    // 24); CMSG_FIRSTHDR and CMSG_NXTHDR are non-null within
    // msg_controllen. `msg` points at live `dst`, `iov` and `control` for
    // the sendmsg call, and `payload` is only read.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_PKTINFO;
        (*c).cmsg_len = libc::CMSG_LEN(info_len) as usize;
        let info = libc::in_pktinfo {
            ipi_ifindex: 0,
            ipi_spec_dst: libc::in_addr {
                s_addr: u32::from(local).to_be(),
            },
            ipi_addr: libc::in_addr { s_addr: 0 },
        };
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
        let c = libc::CMSG_NXTHDR(&msg, c);
        (*c).cmsg_level = libc::IPPROTO_IP;
        (*c).cmsg_type = libc::IP_TOS;
        (*c).cmsg_len = libc::CMSG_LEN(tos_len) as usize;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), libc::c_int::from(tos));
        let n = libc::sendmsg(fd, &msg, 0);
        if n < 0 {
            return Err(std::io::Error::last_os_error());
        }
        Ok(n as usize)
    }
}

/// One datagram received on the tunnel socket: its length, sender, and
/// whether the kernel reassembled it from fragments (an IP_RECVFRAGSIZE
/// control message is present only then).
fn recv_datagram(fd: RawFd, buf: &mut [u8]) -> std::io::Result<(usize, SocketAddrV4, bool)> {
    // SAFETY: sockaddr_in and msghdr are plain old data; zero is valid.
    let (mut from, mut msg): (libc::sockaddr_in, libc::msghdr) =
        unsafe { (std::mem::zeroed(), std::mem::zeroed()) };
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: buf.len(),
    };
    let mut control = [0u64; 8];
    msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
    msg.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = std::mem::size_of_val(&control);
    // SAFETY: `msg` points at live `from`, `iov` (over `buf`, writable) and
    // `control` for the call.
    let n = unsafe { libc::recvmsg(fd, &mut msg, 0) };
    if n < 0 {
        return Err(std::io::Error::last_os_error());
    }
    let mut reassembled = false;
    // SAFETY: the kernel filled msg_controllen bytes of `control`; the
    // CMSG_* macros walk only within it and return null at its end.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_RECVFRAGSIZE {
                reassembled = true;
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let from = SocketAddrV4::new(
        Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
        u16::from_be(from.sin_port),
    );
    Ok((n as usize, from, reassembled))
}

/// Creates a TUN device whose MTU leaves room for the tunnel overhead
/// under `outer_mtu`, with an optional address, up.
pub fn create_tun(
    name: &str,
    outer_mtu: u16,
    address: Option<(Ipv4Addr, u8)>,
) -> anyhow::Result<tun::Device> {
    let mut tc = tun::Configuration::default();
    tc.tun_name(name)
        .mtu(outer_mtu.saturating_sub(OVERHEAD as u16))
        .up();
    if let Some((addr, len)) = address {
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        tc.address(addr).netmask(Ipv4Addr::from(mask));
    }
    tun::create(&tc).with_context(|| format!("creating TUN device {name}"))
}

/// Binds the tunnel's UDP socket (port 434 of `local`, or of every address
/// for a mobile node), non-blocking, sending as docs/wire.md §1 says where
/// a socket can: UDP checksum 0 (SO_NO_CHECK), DF and never fragmented
/// (IP_PMTUDISC_DO), TTL 64; reporting reassembled datagrams
/// (IP_RECVFRAGSIZE).
pub fn bind_tunnel_socket(local: Ipv4Addr) -> anyhow::Result<UdpSocket> {
    let sock = UdpSocket::bind(SocketAddrV4::new(local, MIP_PORT))
        .with_context(|| format!("binding UDP {local}:{MIP_PORT}"))?;
    sock.set_nonblocking(true)?;
    for (level, opt, v, what) in [
        (libc::SOL_SOCKET, libc::SO_NO_CHECK, 1, "SO_NO_CHECK"),
        (
            libc::IPPROTO_IP,
            libc::IP_MTU_DISCOVER,
            libc::IP_PMTUDISC_DO,
            "IP_MTU_DISCOVER",
        ),
        (
            libc::IPPROTO_IP,
            libc::IP_TTL,
            libc::c_int::from(OUTER_TTL),
            "IP_TTL",
        ),
        (
            libc::IPPROTO_IP,
            libc::IP_RECVFRAGSIZE,
            1,
            "IP_RECVFRAGSIZE (Linux 4.10 or later)",
        ),
    ] {
        set_int_opt(&sock, level, opt, v)
            .with_context(|| format!("setting {what} on the tunnel socket"))?;
    }
    Ok(sock)
}

/// The two forwarding threads over one TUN device, one UDP socket and a
/// tunnel table the control plane may change at any time.
pub struct Forwarder {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
    counters: Arc<ForwarderCounters>,
    dev: Arc<tun::Device>,
}

impl Forwarder {
    /// Starts forwarding between `dev` and `sock` under `table`.
    pub fn spawn(dev: tun::Device, sock: UdpSocket, table: SharedTable) -> anyhow::Result<Self> {
        let tun_fd = dev.as_raw_fd();
        set_nonblocking(tun_fd).context("making the TUN device non-blocking")?;
        let stop = Arc::new(AtomicBool::new(false));
        let counters = Arc::new(ForwarderCounters::default());
        let dev = Arc::new(dev);
        let tx = {
            let (dev, sock, counters, stop, table) = (
                dev.clone(),
                sock.try_clone()?,
                counters.clone(),
                stop.clone(),
                table.clone(),
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
                        let r = table::read(&table).encap(&inner[..n], &mut out, Instant::now());
                        match r {
                            Ok((len, route)) => {
                                let to = SocketAddrV4::new(route.remote, MIP_PORT);
                                let payload = &out[UDP_PAYLOAD_OFFSET..len];
                                let tos = out[1];
                                match send_from(sock.as_raw_fd(), payload, route.local, to, tos) {
                                    Ok(_) => {
                                        counters.encap.fetch_add(1, Ordering::Relaxed);
                                        counters.encap_bytes.fetch_add(n as u64, Ordering::Relaxed);
                                    }
                                    Err(_) => counters.count_send_error(),
                                }
                            }
                            Err(r) => counters.count_drop(r),
                        }
                    }
                })?
        };
        let rx = {
            let (dev, counters, stop) = (dev.clone(), counters.clone(), stop.clone());
            std::thread::Builder::new()
                .name("udp-to-tun".into())
                .spawn(move || {
                    // The thread owns the socket: it lives as long as the
                    // thread reads from its descriptor.
                    let sock_fd = sock.as_raw_fd();
                    let mut buf = vec![0u8; BUF_LEN];
                    while !stop.load(Ordering::Relaxed) {
                        let r = recv_datagram(sock_fd, &mut buf[UDP_PAYLOAD_OFFSET..]);
                        let Some((n, from, reassembled)) =
                            received(r, sock_fd, "receiving on UDP 434")
                        else {
                            continue;
                        };
                        let r = table::read(&table).decap_datagram(
                            *from.ip(),
                            from.port(),
                            &mut buf,
                            n,
                            reassembled,
                            Instant::now(),
                        );
                        match r {
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
        Ok(Self {
            stop,
            threads: vec![tx, rx],
            counters,
            dev,
        })
    }

    pub fn counters(&self) -> &Arc<ForwarderCounters> {
        &self.counters
    }

    /// The TUN device's interface index.
    pub fn tun_index(&self) -> anyhow::Result<u32> {
        use tun::AbstractDevice as _;
        let i = self.dev.tun_index().context("TUN interface index")?;
        u32::try_from(i).context("TUN interface index")
    }

    /// Stops both threads (within [`POLL_INTERVAL`]) and closes the TUN
    /// device, which removes it with its routes.
    pub fn stop(mut self) -> Arc<ForwarderCounters> {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        self.counters.clone()
    }
}

/// Creates the TUN device and routes, opens the socket, and forwards until
/// `stop` is set. Returns the final counters.
pub fn run(cfg: &TunnelConfig, stop: Arc<AtomicBool>) -> anyhow::Result<Arc<ForwarderCounters>> {
    let t = &cfg.tunnel;
    let master = cfg.master_key()?;
    let keys = derive_keys(&master, t.spi, t.home, t.role);
    drop(master);
    let state_path = cfg.state_path();
    let (state, start) = StateFile::open(&state_path, t.spi, core::key_id(&keys))?;
    info!(
        path = %state_path.display(), tx_reserved = start.tx_reserved, rx_floor = start.rx_floor,
        "tunnel sequence state"
    );
    let mut table = TunnelTable::default();
    table.install_persistent(
        &TableTunnel {
            spi: t.spi,
            role: t.role,
            local: t.local,
            remote: t.remote,
            home: t.home,
            keys: &keys,
            mtu: t.mtu,
            expires: None,
        },
        Arc::new(state),
        start,
    )?;
    table.set_binding(TableBinding {
        home: t.home,
        remote: t.remote,
        spi: t.spi,
        expires: None,
    })?;
    drop(keys);

    let address = match &t.tun_address {
        Some(cidr) => {
            let (addr, len) = cidr.split_once('/').context("tun_address")?;
            Some((
                addr.parse().context("tun_address")?,
                len.parse().context("tun_address")?,
            ))
        }
        None => None,
    };
    let dev = create_tun(&t.tun_name, t.mtu, address)?;
    let sock = bind_tunnel_socket(t.local)?;
    let fwd = Forwarder::spawn(dev, sock, table.shared())?;
    let oif = fwd.tun_index()?;
    let rtnl = crate::platform::rtnl::Rtnl::new().context("starting rtnetlink")?;
    for r in &t.routes {
        let dst: Prefix = r.parse().with_context(|| format!("tunnel.routes {r:?}"))?;
        let route = DevRoute {
            dst,
            oif,
            prefsrc: None,
            table: route::TABLE_MAIN,
        };
        route::add_route(&rtnl, &route)
            .with_context(|| format!("adding route {dst} dev {}", t.tun_name))?;
    }
    info!(
        tun = %t.tun_name, tun_mtu = t.mtu - OVERHEAD as u16, local = %t.local,
        remote = %t.remote, home = %t.home,
        spi = format_args!("{:#010x}", t.spi), role = ?t.role,
        "tunnel forwarder running"
    );
    let counters = fwd.counters().clone();
    let interval = Duration::from_millis(t.stats_interval_ms.max(50));
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(POLL_INTERVAL.min(interval));
        write_stats(cfg, &counters);
    }
    fwd.stop();
    write_stats(cfg, &counters);
    info!(counters = %counters.to_json(), "tunnel forwarder stopped");
    Ok(counters)
}

fn write_stats(cfg: &TunnelConfig, counters: &ForwarderCounters) {
    if let Some(path) = &cfg.tunnel.stats_file {
        if let Err(e) =
            crate::platform::fs::write_atomic(path, counters.to_json().as_bytes(), 0o644)
        {
            tracing::debug!(error = %e, "stats file");
        }
    }
}
