//! UDP answers from the address the request was sent to (`IP_PKTINFO`).
//!
//! A KDC bound to the wildcard on a host with several addresses (a home
//! gateway: uplink and access side) would otherwise answer from whichever
//! address the route back picks, and a client that sent to another one
//! drops the answer (its socket is connected, or it checks the source):
//! it then waits for its UDP timeout and falls back to TCP. MIT krb5kdc
//! avoids this the same way (`IP_PKTINFO`, kdc/net-server.c).

use std::{
    io,
    mem::{size_of, zeroed},
    net::{Ipv4Addr, SocketAddr, SocketAddrV4},
    os::fd::AsRawFd as _,
};

use tokio::{io::Interest, net::UdpSocket};

/// Asks the kernel for each datagram's destination address (IPv4 sockets;
/// an IPv6 socket keeps plain `recv_from`/`send_to`).
pub fn enable(sock: &UdpSocket) -> io::Result<bool> {
    if !sock.local_addr()?.is_ipv4() {
        return Ok(false);
    }
    let on: libc::c_int = 1;
    // SAFETY: setsockopt on an open socket with a c_int option value.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_PKTINFO,
            (&on as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(true)
}

/// Room for one `IP_PKTINFO` control message.
#[repr(C, align(8))]
struct Control([u8; 64]);

/// Receives a datagram: its length, sender, and the local address it was
/// sent to (None if the kernel did not say).
pub async fn recv(
    sock: &UdpSocket,
    buf: &mut [u8],
) -> io::Result<(usize, SocketAddr, Option<Ipv4Addr>)> {
    sock.async_io(Interest::READABLE, || {
        // SAFETY: recvmsg into buffers that outlive the call; all-zero is
        // a valid value of these C structs.
        unsafe {
            let mut from: libc::sockaddr_in = zeroed();
            let mut iov = libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: buf.len(),
            };
            let mut control = Control([0; 64]);
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut from as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = control.0.len() as _;
            let n = libc::recvmsg(sock.as_raw_fd(), &mut msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            if from.sin_family != libc::AF_INET as libc::sa_family_t {
                return Err(io::Error::other("not an IPv4 sender"));
            }
            let peer = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(from.sin_addr.s_addr)),
                u16::from_be(from.sin_port),
            );
            let mut local = None;
            let mut c = libc::CMSG_FIRSTHDR(&msg);
            while !c.is_null() {
                if (*c).cmsg_level == libc::IPPROTO_IP && (*c).cmsg_type == libc::IP_PKTINFO {
                    let info: libc::in_pktinfo =
                        std::ptr::read_unaligned(libc::CMSG_DATA(c).cast());
                    local = Some(Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)));
                }
                c = libc::CMSG_NXTHDR(&msg, c);
            }
            Ok((n as usize, SocketAddr::V4(peer), local))
        }
    })
    .await
}

/// Sends `buf` to `peer` from `local` (the address its request came to).
pub async fn send(
    sock: &UdpSocket,
    buf: &[u8],
    peer: SocketAddr,
    local: Option<Ipv4Addr>,
) -> io::Result<usize> {
    let (Some(local), SocketAddr::V4(peer)) = (local, peer) else {
        return sock.send_to(buf, peer).await;
    };
    sock.async_io(Interest::WRITABLE, || {
        // SAFETY: sendmsg from buffers that outlive the call; the control
        // buffer holds one IP_PKTINFO message, built with the CMSG macros.
        unsafe {
            let mut to: libc::sockaddr_in = zeroed();
            to.sin_family = libc::AF_INET as libc::sa_family_t;
            to.sin_port = peer.port().to_be();
            to.sin_addr.s_addr = u32::from(*peer.ip()).to_be();
            let mut iov = libc::iovec {
                iov_base: buf.as_ptr() as *mut libc::c_void,
                iov_len: buf.len(),
            };
            let mut control = Control([0; 64]);
            let space = libc::CMSG_SPACE(size_of::<libc::in_pktinfo>() as u32) as usize;
            let mut msg: libc::msghdr = zeroed();
            msg.msg_name = (&mut to as *mut libc::sockaddr_in).cast();
            msg.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            msg.msg_iov = &mut iov;
            msg.msg_iovlen = 1;
            msg.msg_control = control.0.as_mut_ptr().cast();
            msg.msg_controllen = space as _;
            let c = libc::CMSG_FIRSTHDR(&msg);
            (*c).cmsg_level = libc::IPPROTO_IP;
            (*c).cmsg_type = libc::IP_PKTINFO;
            (*c).cmsg_len = libc::CMSG_LEN(size_of::<libc::in_pktinfo>() as u32) as _;
            let mut info: libc::in_pktinfo = zeroed();
            info.ipi_spec_dst.s_addr = u32::from(local).to_be();
            std::ptr::write_unaligned(libc::CMSG_DATA(c).cast(), info);
            let n = libc::sendmsg(sock.as_raw_fd(), &msg, 0);
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(n as usize)
        }
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_answer_comes_from_the_address_the_request_was_sent_to() {
        let server = UdpSocket::bind("0.0.0.0:0").await.unwrap();
        assert!(enable(&server).unwrap());
        let port = server.local_addr().unwrap().port();
        // 127.0.0.2 is this host's too (all of 127/8 is loopback); the
        // route back to the client would pick 127.0.0.1.
        let client = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        client.connect(("127.0.0.2", port)).await.unwrap();
        client.send(b"ping").await.unwrap();
        let mut buf = [0u8; 16];
        let (n, peer, local) = recv(&server, &mut buf).await.unwrap();
        assert_eq!(
            (&buf[..n], peer),
            (&b"ping"[..], client.local_addr().unwrap())
        );
        assert_eq!(local, Some(Ipv4Addr::new(127, 0, 0, 2)));
        send(&server, b"pong", peer, local).await.unwrap();
        // A connected socket takes only what comes from 127.0.0.2.
        let n = tokio::time::timeout(std::time::Duration::from_secs(2), client.recv(&mut buf))
            .await
            .expect("the answer came from another address")
            .unwrap();
        assert_eq!(&buf[..n], b"pong");
    }
}
