//! A minimal rtnetlink client (NETLINK_ROUTE) for the home link: proxy
//! neighbour entries (RTM_NEWNEIGH/RTM_DELNEIGH with NTF_PROXY) and /32 host
//! routes (RTM_NEWROUTE/RTM_DELROUTE). Each request asks for an ACK and the
//! kernel's errno comes back as a typed error. Messages are built by hand
//! (rtnetlink(7)); the encoders are pure and unit-tested.

use std::net::Ipv4Addr;

const NLMSG_HDR_LEN: usize = 16;
const NLMSG_ERROR: u16 = 2;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_ACK: u16 = 0x4;
const NLM_F_REPLACE: u16 = 0x100;
const NLM_F_CREATE: u16 = 0x400;
const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_NEWNEIGH: u16 = 28;
const RTM_DELNEIGH: u16 = 29;
const NDA_DST: u16 = 1;
const NUD_PERMANENT: u16 = 0x80;
const NTF_PROXY: u8 = 0x08;
const RTA_DST: u16 = 1;
const RTA_GATEWAY: u16 = 5;
const RT_TABLE_MAIN: u8 = 254;
const RTPROT_STATIC: u8 = 4;
const RT_SCOPE_UNIVERSE: u8 = 0;
const RTN_UNICAST: u8 = 1;

#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    #[error("netlink socket: {0}")]
    Socket(std::io::Error),
    #[error("netlink send: {0}")]
    Send(std::io::Error),
    #[error("netlink receive: {0}")]
    Receive(std::io::Error),
    #[error("the kernel refused the request: {0}")]
    Refused(std::io::Error),
    #[error("netlink reply is malformed")]
    Malformed,
}

fn attr(out: &mut Vec<u8>, ty: u16, data: &[u8]) {
    let len = 4 + data.len();
    out.extend_from_slice(&(len as u16).to_ne_bytes());
    out.extend_from_slice(&ty.to_ne_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn message(ty: u16, flags: u16, seq: u32, body: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(NLMSG_HDR_LEN + body.len());
    m.extend_from_slice(&((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes());
    m.extend_from_slice(&ty.to_ne_bytes());
    m.extend_from_slice(&flags.to_ne_bytes());
    m.extend_from_slice(&seq.to_ne_bytes());
    m.extend_from_slice(&0u32.to_ne_bytes());
    m.extend_from_slice(body);
    m
}

/// RTM_NEWNEIGH (replace) or RTM_DELNEIGH for a proxy entry.
pub fn neigh_proxy_message(add: bool, ifindex: u32, addr: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut body = Vec::with_capacity(20);
    body.push(libc::AF_INET as u8); // ndm_family
    body.extend_from_slice(&[0, 0, 0]); // pad
    body.extend_from_slice(&(ifindex as i32).to_ne_bytes());
    body.extend_from_slice(&NUD_PERMANENT.to_ne_bytes());
    body.push(NTF_PROXY);
    body.push(0); // ndm_type
    attr(&mut body, NDA_DST, &addr.octets());
    let (ty, flags) = if add {
        (
            RTM_NEWNEIGH,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
    } else {
        (RTM_DELNEIGH, NLM_F_REQUEST | NLM_F_ACK)
    };
    message(ty, flags, seq, &body)
}

/// RTM_NEWROUTE (replace) `dst/32 via gateway`, or RTM_DELROUTE `dst/32`.
pub fn host_route_message(add: bool, dst: Ipv4Addr, via: Ipv4Addr, seq: u32) -> Vec<u8> {
    let mut body = vec![
        libc::AF_INET as u8,
        32, // dst_len
        0,  // src_len
        0,  // tos
        RT_TABLE_MAIN,
        if add { RTPROT_STATIC } else { 0 },
        if add { RT_SCOPE_UNIVERSE } else { 0 },
        if add { RTN_UNICAST } else { 0 },
    ];
    body.extend_from_slice(&0u32.to_ne_bytes()); // rtm_flags
    attr(&mut body, RTA_DST, &dst.octets());
    if add {
        attr(&mut body, RTA_GATEWAY, &via.octets());
    }
    let (ty, flags) = if add {
        (
            RTM_NEWROUTE,
            NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
        )
    } else {
        (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK)
    };
    message(ty, flags, seq, &body)
}

/// The errno of an ACK/error reply (0: success).
pub fn parse_ack(reply: &[u8]) -> Result<i32, NetlinkError> {
    if reply.len() < NLMSG_HDR_LEN + 4 {
        return Err(NetlinkError::Malformed);
    }
    let ty = u16::from_ne_bytes([reply[4], reply[5]]);
    if ty != NLMSG_ERROR {
        return Err(NetlinkError::Malformed);
    }
    let err = i32::from_ne_bytes([reply[16], reply[17], reply[18], reply[19]]);
    Ok(-err)
}

/// Sends one request and waits for its ACK.
pub fn request(msg: &[u8]) -> Result<(), NetlinkError> {
    // SAFETY: plain socket(2) call; the fd is closed below on every path.
    let fd = unsafe {
        libc::socket(
            libc::AF_NETLINK,
            libc::SOCK_RAW | libc::SOCK_CLOEXEC,
            libc::NETLINK_ROUTE,
        )
    };
    if fd < 0 {
        return Err(NetlinkError::Socket(std::io::Error::last_os_error()));
    }
    let res = (|| {
        // SAFETY: sockaddr_nl is plain old data; zero is a valid value
        // (pid 0 = the kernel).
        let mut sa: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
        sa.nl_family = libc::AF_NETLINK as u16;
        // SAFETY: `msg` is valid for its length; `sa` is a valid
        // sockaddr_nl of the size passed.
        let n = unsafe {
            libc::sendto(
                fd,
                msg.as_ptr().cast(),
                msg.len(),
                0,
                (&sa as *const libc::sockaddr_nl).cast(),
                std::mem::size_of::<libc::sockaddr_nl>() as u32,
            )
        };
        if n < 0 {
            return Err(NetlinkError::Send(std::io::Error::last_os_error()));
        }
        let mut buf = [0u8; 8192];
        // SAFETY: `buf` is valid and writable for its length.
        let n = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            return Err(NetlinkError::Receive(std::io::Error::last_os_error()));
        }
        match parse_ack(&buf[..n as usize])? {
            0 => Ok(()),
            errno => Err(NetlinkError::Refused(std::io::Error::from_raw_os_error(
                errno,
            ))),
        }
    })();
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    res
}

/// The index of interface `name`.
pub fn ifindex(name: &str) -> std::io::Result<u32> {
    let c = std::ffi::CString::new(name)
        .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    // SAFETY: `c` is a valid NUL-terminated string.
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    if i == 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(i)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn construct_proxy_neighbour() {
        let m = neigh_proxy_message(true, 7, Ipv4Addr::new(10, 1, 0, 50), 9);
        assert_eq!(m.len(), 16 + 12 + 8);
        assert_eq!(u32::from_ne_bytes(m[0..4].try_into().unwrap()), 36);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWNEIGH);
        assert_eq!(u16::from_ne_bytes([m[6], m[7]]), 0x0505);
        assert_eq!(u32::from_ne_bytes(m[8..12].try_into().unwrap()), 9);
        assert_eq!(m[16], libc::AF_INET as u8);
        assert_eq!(i32::from_ne_bytes(m[20..24].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes([m[24], m[25]]), NUD_PERMANENT);
        assert_eq!(m[26], NTF_PROXY);
        assert_eq!(u16::from_ne_bytes([m[28], m[29]]), 8);
        assert_eq!(u16::from_ne_bytes([m[30], m[31]]), NDA_DST);
        assert_eq!(&m[32..36], &[10, 1, 0, 50]);
        let d = neigh_proxy_message(false, 7, Ipv4Addr::new(10, 1, 0, 50), 1);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELNEIGH);
        assert_eq!(u16::from_ne_bytes([d[6], d[7]]), NLM_F_REQUEST | NLM_F_ACK);
    }

    #[test]
    fn construct_host_route() {
        let m = host_route_message(
            true,
            Ipv4Addr::new(10, 1, 0, 50),
            Ipv4Addr::new(192, 0, 2, 2),
            1,
        );
        assert_eq!(m.len(), 16 + 12 + 8 + 8);
        assert_eq!(u16::from_ne_bytes([m[4], m[5]]), RTM_NEWROUTE);
        assert_eq!(
            &m[16..24],
            &[2, 32, 0, 0, 254, RTPROT_STATIC, 0, RTN_UNICAST]
        );
        assert_eq!(u16::from_ne_bytes([m[28], m[29]]), 8);
        assert_eq!(u16::from_ne_bytes([m[30], m[31]]), RTA_DST);
        assert_eq!(&m[32..36], &[10, 1, 0, 50]);
        assert_eq!(u16::from_ne_bytes([m[38], m[39]]), RTA_GATEWAY);
        assert_eq!(&m[40..44], &[192, 0, 2, 2]);
        let d = host_route_message(false, Ipv4Addr::new(10, 1, 0, 50), Ipv4Addr::UNSPECIFIED, 2);
        assert_eq!(d.len(), 16 + 12 + 8);
        assert_eq!(u16::from_ne_bytes([d[4], d[5]]), RTM_DELROUTE);
    }

    #[test]
    fn parse_acks() {
        let mut ack = message(NLMSG_ERROR, 0, 1, &0i32.to_ne_bytes());
        ack.extend_from_slice(&[0; 16]);
        assert_eq!(parse_ack(&ack).unwrap(), 0);
        let nack = message(NLMSG_ERROR, 0, 1, &(-libc::EEXIST).to_ne_bytes());
        assert_eq!(parse_ack(&nack).unwrap(), libc::EEXIST);
        assert!(matches!(
            parse_ack(&ack[..10]),
            Err(NetlinkError::Malformed)
        ));
        let other = message(16, 0, 1, &[0; 4]);
        assert!(matches!(parse_ack(&other), Err(NetlinkError::Malformed)));
    }
}
