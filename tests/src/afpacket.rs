//! A packet generator for the veth benchmarks on kernels that refuse
//! BPF_PROG_TEST_RUN's live-frames mode: an AF_PACKET socket bound to one
//! interface, with `PACKET_QDISC_BYPASS` (frames go straight to the driver's
//! transmit), fed prepared frames by `sendmmsg`.
//!
//! Unlike the live-frames generator it pays for the syscall, an skb per
//! frame, and (on a veth whose peer runs XDP) the copy of that skb into an
//! XDP buffer; and the peer's NAPI runs once per frame, in the softirq at
//! the end of each frame's transmit, on the sending CPU. Its Mpps therefore
//! include the generator; the receiving programs' own time comes from the
//! kernel's bpf_stats beside them.

use std::{
    os::fd::{AsRawFd as _, FromRawFd as _, OwnedFd},
    time::{Duration, Instant},
};

use anyhow::bail;

/// `SOL_PACKET` / `PACKET_QDISC_BYPASS` (linux/if_packet.h).
const PACKET_QDISC_BYPASS: libc::c_int = 20;

pub struct PacketGen {
    fd: OwnedFd,
}

impl PacketGen {
    /// A raw packet socket sending out of `ifindex` (of the calling
    /// thread's network namespace). It receives nothing (protocol 0).
    pub fn new(ifindex: u32) -> anyhow::Result<Self> {
        // SAFETY: plain syscall; the fd is owned below.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            bail!(
                "socket(AF_PACKET): {} (needs CAP_NET_RAW)",
                std::io::Error::last_os_error()
            );
        }
        // SAFETY: a fresh descriptor nobody else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let one: libc::c_int = 1;
        // SAFETY: a c_int option of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                PACKET_QDISC_BYPASS,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!("PACKET_QDISC_BYPASS: {}", std::io::Error::last_os_error());
        }
        // SAFETY: all-zero is a valid sockaddr_ll; the fields are set below.
        let mut sll: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        sll.sll_family = libc::AF_PACKET as u16;
        sll.sll_ifindex = ifindex as i32;
        // SAFETY: a sockaddr_ll of the size passed.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&sll as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            bail!(
                "binding the packet socket to ifindex {ifindex}: {}",
                std::io::Error::last_os_error()
            );
        }
        Ok(Self { fd })
    }

    /// Sends every frame once, in order, `batch` per `sendmmsg`; returns
    /// the wall time. A full device queue (ENOBUFS) is retried, so every
    /// frame is handed to the driver.
    pub fn send(&self, frames: &[Vec<u8>], batch: usize) -> anyhow::Result<Duration> {
        let mut iov: Vec<libc::iovec> = frames
            .iter()
            .map(|f| libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            })
            .collect();
        let mut msgs: Vec<libc::mmsghdr> = iov
            .iter_mut()
            .map(|v| {
                // SAFETY: all-zero is a valid mmsghdr (no name, no control).
                let mut m: libc::mmsghdr = unsafe { std::mem::zeroed() };
                m.msg_hdr.msg_iov = v;
                m.msg_hdr.msg_iovlen = 1;
                m
            })
            .collect();
        let batch = batch.max(1);
        let started = Instant::now();
        let mut i = 0;
        while i < msgs.len() {
            let n = batch.min(msgs.len() - i);
            // SAFETY: `n` initialised headers from index `i`, each pointing
            // at one iovec over a frame that outlives the call.
            let r = unsafe {
                libc::sendmmsg(self.fd.as_raw_fd(), msgs.as_mut_ptr().add(i), n as u32, 0)
            };
            if r < 0 {
                let e = std::io::Error::last_os_error();
                if matches!(
                    e.raw_os_error(),
                    Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR)
                ) {
                    continue;
                }
                bail!("sendmmsg: {e}");
            }
            i += r as usize;
        }
        Ok(started.elapsed())
    }
}
