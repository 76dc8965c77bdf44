//! The home link side of a binding: a proxy neighbour entry so the home
//! agent answers ARP for the bound home address, a /32 route that makes the
//! kernel proxy it, and a gratuitous ARP so hosts on the home link update
//! their caches at once (RFC 5944 §4.6).
//!
//! Proxy entries and routes are programmed over rtnetlink (`super::rtnl`:
//! a neighbour with the proxy flag, a static host route); the gratuitous ARP
//! goes out of a raw `AF_PACKET` socket.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _};
use netlink_packet_route::{
    neighbour::{
        NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
    },
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
    AddressFamily,
};

use super::rtnl::Rtnl;

/// Answers proxied ARP requests at once (`proxy_delay` 0) on the home
/// link: the kernel's default delays them by up to 0.8 s.
pub fn prepare_home_link(iface: &str) -> anyhow::Result<()> {
    let p = format!("/proc/sys/net/ipv4/neigh/{iface}/proxy_delay");
    std::fs::write(&p, "0").with_context(|| format!("writing {p}"))
}

/// The permanent proxy neighbour entry for `addr` on interface `ifindex`.
pub fn proxy_neighbour(ifindex: u32, addr: Ipv4Addr) -> NeighbourMessage {
    let mut m = NeighbourMessage::default();
    m.header.family = AddressFamily::Inet;
    m.header.ifindex = ifindex;
    m.header.state = NeighbourState::Permanent;
    m.header.flags = NeighbourFlags::Proxy;
    m.header.kind = RouteType::Unspec;
    m.attributes
        .push(NeighbourAttribute::Destination(NeighbourAddress::Inet(
            addr,
        )));
    m
}

/// The main-table route `dst/32 via gateway` (static, universe, unicast)
/// to add; without a gateway, the bare `dst/32` that a delete matches.
pub fn host_route(dst: Ipv4Addr, via: Option<Ipv4Addr>) -> RouteMessage {
    let mut m = RouteMessage::default();
    m.header.address_family = AddressFamily::Inet;
    m.header.destination_prefix_length = 32;
    m.header.table = RouteHeader::RT_TABLE_MAIN;
    m.header.scope = RouteScope::Universe;
    m.attributes
        .push(RouteAttribute::Destination(RouteAddress::Inet(dst)));
    if let Some(gw) = via {
        m.header.protocol = RouteProtocol::Static;
        m.header.kind = RouteType::Unicast;
        m.attributes
            .push(RouteAttribute::Gateway(RouteAddress::Inet(gw)));
    }
    m
}

/// Proxy ARP for `home` on `iface` (idempotent: both are replaced), and
/// the host route that makes the kernel use it.
pub fn add_proxy(
    rtnl: &Rtnl,
    iface: &str,
    home: Ipv4Addr,
    route_via: Option<Ipv4Addr>,
) -> anyhow::Result<()> {
    if let Some(via) = route_via {
        rtnl.replace_route(host_route(home, Some(via)))
            .with_context(|| format!("adding the route {home}/32 via {via}"))?;
    }
    let index = rtnl
        .link_index(iface)
        .with_context(|| format!("interface {iface}"))?;
    rtnl.replace_neighbour(proxy_neighbour(index, home))
        .with_context(|| format!("adding the proxy neighbour {home} on {iface}"))
}

/// Removes what [`add_proxy`] added; missing entries are not an error.
pub fn remove_proxy(rtnl: &Rtnl, iface: &str, home: Ipv4Addr, route_via: Option<Ipv4Addr>) {
    if let Ok(index) = rtnl.link_index(iface) {
        let _ = rtnl.delete_neighbour(proxy_neighbour(index, home));
    }
    if route_via.is_some() {
        let _ = rtnl.delete_route(host_route(home, None));
    }
}

/// The gratuitous ARP frame: an ARP request from and for `ip` with
/// `mac` as the sender hardware address, broadcast (RFC 5944 §4.6 and
/// RFC 5227 §3: target hardware address zero).
pub fn gratuitous_arp_frame(mac: [u8; 6], ip: Ipv4Addr) -> [u8; 42] {
    let mut f = [0u8; 42];
    f[0..6].copy_from_slice(&[0xff; 6]);
    f[6..12].copy_from_slice(&mac);
    f[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
    f[14..16].copy_from_slice(&1u16.to_be_bytes()); // Ethernet
    f[16..18].copy_from_slice(&0x0800u16.to_be_bytes()); // IPv4
    f[18] = 6;
    f[19] = 4;
    f[20..22].copy_from_slice(&1u16.to_be_bytes()); // request
    f[22..28].copy_from_slice(&mac);
    f[28..32].copy_from_slice(&ip.octets());
    // target hardware address stays zero
    f[38..42].copy_from_slice(&ip.octets());
    f
}

/// The MAC address and index of `iface`.
fn link_info(rtnl: &Rtnl, iface: &str) -> anyhow::Result<([u8; 6], i32)> {
    let index = rtnl
        .link_index(iface)
        .with_context(|| format!("interface {iface}"))?;
    // The MAC from sysfs is the host's view under `nsenter --net`; ask the
    // kernel with SIOCGIFHWADDR instead.
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM, 0) };
    if fd < 0 {
        bail!("socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: ifreq is plain old data; zero is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (d, s) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: SIOCGIFHWADDR reads ifr_name and writes ifr_hwaddr of a
    // valid, writable ifreq.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCGIFHWADDR, &mut req) };
    let err = std::io::Error::last_os_error();
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    if rc != 0 {
        bail!("SIOCGIFHWADDR {iface}: {err}");
    }
    // SAFETY: the ioctl succeeded, so the union holds the hardware address.
    let sa = unsafe { req.ifr_ifru.ifru_hwaddr };
    let mut mac = [0u8; 6];
    for (m, b) in mac.iter_mut().zip(sa.sa_data.iter()) {
        *m = *b as u8;
    }
    Ok((mac, index as i32))
}

/// Sends `count` gratuitous ARPs for `home` on `iface`.
pub fn gratuitous_arp(
    rtnl: &Rtnl,
    iface: &str,
    home: Ipv4Addr,
    count: usize,
) -> anyhow::Result<()> {
    let (mac, index) = link_info(rtnl, iface)?;
    let frame = gratuitous_arp_frame(mac, home);
    // SAFETY: plain socket(2) call; the fd is closed below.
    let fd = unsafe {
        libc::socket(
            libc::AF_PACKET,
            libc::SOCK_RAW,
            i32::from((libc::ETH_P_ARP as u16).to_be()),
        )
    };
    if fd < 0 {
        bail!("AF_PACKET socket: {}", std::io::Error::last_os_error());
    }
    // SAFETY: sockaddr_ll is plain old data; zero is a valid value.
    let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
    addr.sll_family = libc::AF_PACKET as u16;
    addr.sll_protocol = (libc::ETH_P_ARP as u16).to_be();
    addr.sll_ifindex = index;
    addr.sll_halen = 6;
    addr.sll_addr[..6].copy_from_slice(&[0xff; 6]);
    let mut result = Ok(());
    for _ in 0..count {
        // SAFETY: `frame` is valid for its length; `addr` is a valid
        // sockaddr_ll of the size passed.
        let n = unsafe {
            libc::sendto(
                fd,
                frame.as_ptr().cast(),
                frame.len(),
                0,
                (&addr as *const libc::sockaddr_ll).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        if n < 0 {
            result = Err(anyhow::anyhow!(
                "sending gratuitous ARP on {iface}: {}",
                std::io::Error::last_os_error()
            ));
            break;
        }
    }
    // SAFETY: fd is ours and open.
    unsafe { libc::close(fd) };
    result
}

#[cfg(test)]
mod tests {
    use rtnetlink::packet_core::Emitable;

    use super::*;

    fn emit(m: &impl Emitable) -> Vec<u8> {
        let mut b = vec![0u8; m.buffer_len()];
        m.emit(&mut b);
        b
    }

    /// The same bytes as the hand-built message it replaces (ndmsg, then
    /// the destination attribute).
    #[test]
    fn construct_proxy_neighbour() {
        let m = emit(&proxy_neighbour(7, Ipv4Addr::new(10, 1, 0, 50)));
        assert_eq!(m.len(), 12 + 8);
        assert_eq!(m[0], libc::AF_INET as u8);
        assert_eq!(i32::from_ne_bytes(m[4..8].try_into().unwrap()), 7);
        assert_eq!(u16::from_ne_bytes([m[8], m[9]]), 0x80); // permanent
        assert_eq!(m[10], 0x08); // proxy
        assert_eq!(m[11], 0);
        assert_eq!(u16::from_ne_bytes([m[12], m[13]]), 8);
        assert_eq!(u16::from_ne_bytes([m[14], m[15]]), 1); // destination
        assert_eq!(&m[16..20], &[10, 1, 0, 50]);
    }

    #[test]
    fn construct_host_route() {
        let m = emit(&host_route(
            Ipv4Addr::new(10, 1, 0, 50),
            Some(Ipv4Addr::new(192, 0, 2, 2)),
        ));
        assert_eq!(m.len(), 12 + 8 + 8);
        // family, /32, src_len, tos, main, static, universe, unicast
        assert_eq!(&m[0..8], &[2, 32, 0, 0, 254, 4, 0, 1]);
        assert_eq!(u16::from_ne_bytes([m[14], m[15]]), 1); // destination
        assert_eq!(&m[16..20], &[10, 1, 0, 50]);
        assert_eq!(u16::from_ne_bytes([m[22], m[23]]), 5); // gateway
        assert_eq!(&m[24..28], &[192, 0, 2, 2]);
        // A delete names the destination only.
        let d = emit(&host_route(Ipv4Addr::new(10, 1, 0, 50), None));
        assert_eq!(d.len(), 12 + 8);
        assert_eq!(&d[0..8], &[2, 32, 0, 0, 254, 0, 0, 0]);
    }

    #[test]
    fn gratuitous_arp_layout() {
        let mac = [2, 0, 0, 0, 0, 1];
        let f = gratuitous_arp_frame(mac, Ipv4Addr::new(10, 1, 0, 50));
        assert_eq!(&f[..6], &[0xff; 6]);
        assert_eq!(&f[6..12], &mac);
        assert_eq!(&f[12..22], &[0x08, 0x06, 0, 1, 0x08, 0, 6, 4, 0, 1]);
        assert_eq!(&f[22..28], &mac);
        assert_eq!(&f[28..32], &[10, 1, 0, 50]);
        assert_eq!(&f[32..38], &[0; 6]);
        assert_eq!(&f[38..42], &[10, 1, 0, 50]);
    }
}
