//! The home link side of a binding: a proxy neighbour entry so the home
//! agent answers ARP for the bound home address, a /32 route that makes the
//! kernel proxy it, and a gratuitous ARP so hosts on the home link update
//! their caches at once (RFC 5944 §4.6).
//!
//! Proxy entries and routes are programmed over rtnetlink (`super::netlink`:
//! RTM_NEWNEIGH with NTF_PROXY, RTM_NEWROUTE); the gratuitous ARP goes out
//! of a raw `AF_PACKET` socket.

use std::net::Ipv4Addr;

use anyhow::{bail, Context as _};

use super::netlink;

/// Answers proxied ARP requests at once (`proxy_delay` 0) on the home
/// link: the kernel's default delays them by up to 0.8 s.
pub fn prepare_home_link(iface: &str) -> anyhow::Result<()> {
    let p = format!("/proc/sys/net/ipv4/neigh/{iface}/proxy_delay");
    std::fs::write(&p, "0").with_context(|| format!("writing {p}"))
}

/// Proxy ARP for `home` on `iface` (idempotent), and the host route that
/// makes the kernel use it.
pub fn add_proxy(iface: &str, home: Ipv4Addr, route_via: Option<Ipv4Addr>) -> anyhow::Result<()> {
    if let Some(via) = route_via {
        netlink::request(&netlink::host_route_message(true, home, via, 1))
            .with_context(|| format!("adding the route {home}/32 via {via}"))?;
    }
    let index = netlink::ifindex(iface).with_context(|| format!("interface {iface}"))?;
    netlink::request(&netlink::neigh_proxy_message(true, index, home, 2))
        .with_context(|| format!("adding the proxy neighbour {home} on {iface}"))
}

/// Removes what [`add_proxy`] added; missing entries are not an error.
pub fn remove_proxy(iface: &str, home: Ipv4Addr, route_via: Option<Ipv4Addr>) {
    if let Ok(index) = netlink::ifindex(iface) {
        let _ = netlink::request(&netlink::neigh_proxy_message(false, index, home, 3));
    }
    if route_via.is_some() {
        let _ = netlink::request(&netlink::host_route_message(
            false,
            home,
            Ipv4Addr::UNSPECIFIED,
            4,
        ));
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
fn link_info(iface: &str) -> anyhow::Result<([u8; 6], i32)> {
    let index = netlink::ifindex(iface).map_err(|e| anyhow::anyhow!("interface {iface}: {e}"))?;
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
pub fn gratuitous_arp(iface: &str, home: Ipv4Addr, count: usize) -> anyhow::Result<()> {
    let (mac, index) = link_info(iface)?;
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
    use super::*;

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
