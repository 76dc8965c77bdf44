//! A small frame builder for fixtures and benchmarks, and a one-line decoder
//! for readable failure output. Lengths and checksums are always computed,
//! never typed by hand.

use std::{fmt::Write as _, net::Ipv4Addr};

use roamgate_common::wire::{
    ethernet::{EthHdr, ETHERTYPE_ARP, ETHERTYPE_IPV4},
    ipv4::{checksum, Ipv4Hdr, PROTO_ICMP, PROTO_UDP},
    Header,
};

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

#[derive(Clone, Debug)]
enum L4 {
    None,
    Udp { sport: u16, dport: u16 },
    IcmpEcho { id: u16, seq: u16 },
}

/// Builds Ethernet / IPv4 / (UDP | ICMP echo | raw) frames.
#[derive(Clone, Debug)]
pub struct FrameBuilder {
    src_mac: [u8; 6],
    dst_mac: [u8; 6],
    ether_type: u16,
    ip: Option<IpSpec>,
    l4: L4,
    payload: Vec<u8>,
}

#[derive(Clone, Debug)]
struct IpSpec {
    src: Ipv4Addr,
    dst: Ipv4Addr,
    proto: u8,
    ttl: u8,
    tos: u8,
    id: u16,
    frag_off: u16,
}

impl Default for FrameBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl FrameBuilder {
    pub fn new() -> Self {
        Self {
            src_mac: MAC_A,
            dst_mac: MAC_B,
            ether_type: ETHERTYPE_IPV4,
            ip: None,
            l4: L4::None,
            payload: Vec::new(),
        }
    }

    pub fn macs(mut self, src: [u8; 6], dst: [u8; 6]) -> Self {
        self.src_mac = src;
        self.dst_mac = dst;
        self
    }

    /// An Ethernet frame of another type; the payload follows the header.
    pub fn ether_type(mut self, t: u16) -> Self {
        self.ether_type = t;
        self
    }

    /// A minimal ARP request body (who-has `target` tell `sender`).
    pub fn arp_request(self, sender: Ipv4Addr, target: Ipv4Addr) -> Self {
        let mut body = vec![0, 1, 0x08, 0, 6, 4, 0, 1];
        body.extend_from_slice(&self.src_mac);
        body.extend_from_slice(&sender.octets());
        body.extend_from_slice(&[0; 6]);
        body.extend_from_slice(&target.octets());
        let mut b = self.ether_type(ETHERTYPE_ARP);
        b.dst_mac = [0xff; 6];
        b.payload = body;
        b
    }

    pub fn ipv4(mut self, src: Ipv4Addr, dst: Ipv4Addr) -> Self {
        self.ether_type = ETHERTYPE_IPV4;
        self.ip = Some(IpSpec {
            src,
            dst,
            proto: 0,
            ttl: 64,
            tos: 0,
            id: 0x1234,
            frag_off: 0x4000,
        });
        self
    }

    fn ip_mut(&mut self) -> &mut IpSpec {
        self.ip.as_mut().expect("call .ipv4() first")
    }

    pub fn ttl(mut self, ttl: u8) -> Self {
        self.ip_mut().ttl = ttl;
        self
    }

    pub fn tos(mut self, tos: u8) -> Self {
        self.ip_mut().tos = tos;
        self
    }

    pub fn ip_id(mut self, id: u16) -> Self {
        self.ip_mut().id = id;
        self
    }

    /// Raw flags+offset field (default DF).
    pub fn frag_off(mut self, f: u16) -> Self {
        self.ip_mut().frag_off = f;
        self
    }

    /// IP protocol for a raw payload.
    pub fn proto(mut self, p: u8) -> Self {
        self.ip_mut().proto = p;
        self.l4 = L4::None;
        self
    }

    pub fn udp(mut self, sport: u16, dport: u16) -> Self {
        self.ip_mut().proto = PROTO_UDP;
        self.l4 = L4::Udp { sport, dport };
        self
    }

    pub fn icmp_echo(mut self, id: u16, seq: u16) -> Self {
        self.ip_mut().proto = PROTO_ICMP;
        self.l4 = L4::IcmpEcho { id, seq };
        self
    }

    pub fn payload(mut self, p: &[u8]) -> Self {
        self.payload = p.to_vec();
        self
    }

    /// A deterministic payload of `n` bytes.
    pub fn payload_len(mut self, n: usize) -> Self {
        self.payload = (0..n).map(|i| (i * 7 + 3) as u8).collect();
        self
    }

    /// The IP packet (without Ethernet), or the bare payload for non-IP.
    pub fn build_l3(&self) -> Vec<u8> {
        let Some(ip) = &self.ip else {
            return self.payload.clone();
        };
        let mut l4 = match self.l4 {
            L4::None => Vec::new(),
            L4::Udp { sport, dport } => {
                let len = (8 + self.payload.len()) as u16;
                let mut h = Vec::with_capacity(8);
                h.extend_from_slice(&sport.to_be_bytes());
                h.extend_from_slice(&dport.to_be_bytes());
                h.extend_from_slice(&len.to_be_bytes());
                h.extend_from_slice(&[0, 0]);
                h
            }
            L4::IcmpEcho { id, seq } => {
                let mut h = vec![8, 0, 0, 0];
                h.extend_from_slice(&id.to_be_bytes());
                h.extend_from_slice(&seq.to_be_bytes());
                h
            }
        };
        l4.extend_from_slice(&self.payload);
        match self.l4 {
            L4::Udp { .. } => {
                let c = udp_checksum(ip.src, ip.dst, &l4);
                l4[6..8].copy_from_slice(&c.to_be_bytes());
            }
            L4::IcmpEcho { .. } => {
                let c = checksum(&l4);
                l4[2..4].copy_from_slice(&c.to_be_bytes());
            }
            L4::None => {}
        }
        let mut out = vec![0u8; Ipv4Hdr::LEN];
        {
            let h = Ipv4Hdr::from_bytes_mut(&mut out).expect("sized above");
            h.version_ihl = 0x45;
            h.tos = ip.tos;
            h.set_total_len((Ipv4Hdr::LEN + l4.len()) as u16);
            h.id = ip.id.to_be_bytes();
            h.frag_off = ip.frag_off.to_be_bytes();
            h.ttl = ip.ttl;
            h.proto = ip.proto;
            h.src = ip.src.octets();
            h.dst = ip.dst.octets();
            h.fill_checksum();
        }
        out.extend_from_slice(&l4);
        out
    }

    /// The whole Ethernet frame.
    pub fn build(&self) -> Vec<u8> {
        let mut out = vec![0u8; EthHdr::LEN];
        {
            let e = EthHdr::from_bytes_mut(&mut out).expect("sized above");
            e.dst = self.dst_mac;
            e.src = self.src_mac;
            e.set_ether_type(self.ether_type);
        }
        out.extend_from_slice(&self.build_l3());
        out
    }
}

/// UDP checksum over the IPv4 pseudo-header; 0 is sent as 0xffff (RFC 768).
pub fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut buf = Vec::with_capacity(12 + udp.len());
    buf.extend_from_slice(&src.octets());
    buf.extend_from_slice(&dst.octets());
    buf.extend_from_slice(&[0, PROTO_UDP]);
    buf.extend_from_slice(&(udp.len() as u16).to_be_bytes());
    buf.extend_from_slice(udp);
    match checksum(&buf) {
        0 => 0xffff,
        c => c,
    }
}

/// One line that says what a frame is, for failure output.
pub fn describe(frame: &[u8]) -> String {
    let mut s = String::new();
    let Some(eth) = EthHdr::from_bytes(frame) else {
        return format!("{} bytes, shorter than Ethernet", frame.len());
    };
    let _ = write!(
        s,
        "{} bytes eth {} > {} type {:#06x}",
        frame.len(),
        mac(&eth.src),
        mac(&eth.dst),
        eth.ether_type()
    );
    if eth.ether_type() != ETHERTYPE_IPV4 {
        return s;
    }
    let rest = &frame[EthHdr::LEN..];
    let Some(ip) = Ipv4Hdr::from_bytes(rest) else {
        s.push_str(" | truncated IPv4");
        return s;
    };
    let _ = write!(
        s,
        " | ipv4 {} > {} proto {} ttl {} tos {:#04x} len {} csum {:#06x}{}",
        Ipv4Addr::from(ip.src),
        Ipv4Addr::from(ip.dst),
        ip.proto,
        ip.ttl,
        ip.tos,
        ip.total_len(),
        u16::from_be_bytes(ip.check),
        if ip.header_len() >= 20
            && rest.len() >= ip.header_len()
            && checksum(&rest[..ip.header_len()]) == 0
        {
            " ok"
        } else {
            " BAD"
        }
    );
    if ip.proto == PROTO_UDP && rest.len() >= ip.header_len() + 8 {
        let u = &rest[ip.header_len()..];
        let _ = write!(
            s,
            " | udp {} > {} len {}",
            u16::from_be_bytes([u[0], u[1]]),
            u16::from_be_bytes([u[2], u[3]]),
            u16::from_be_bytes([u[4], u[5]])
        );
    }
    s
}

fn mac(m: &[u8; 6]) -> String {
    m.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_frame_has_valid_checksums() {
        let f = FrameBuilder::new()
            .ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
            .udp(5000, 6000)
            .payload_len(33)
            .build();
        assert_eq!(f.len(), 14 + 20 + 8 + 33);
        assert_eq!(checksum(&f[14..34]), 0);
        // Verifying over pseudo-header + segment gives 0 with the stored sum.
        let mut pseudo = vec![10, 0, 0, 1, 10, 0, 0, 2, 0, 17, 0, 41];
        pseudo.extend_from_slice(&f[34..]);
        assert_eq!(checksum(&pseudo), 0);
        assert!(describe(&f).contains("udp 5000 > 6000 len 41"));
        assert!(describe(&f).contains(" ok"));
    }

    #[test]
    fn icmp_checksum_verifies() {
        let f = FrameBuilder::new()
            .ipv4(Ipv4Addr::new(10, 0, 0, 1), Ipv4Addr::new(10, 0, 0, 2))
            .icmp_echo(7, 1)
            .payload_len(56)
            .build();
        assert_eq!(checksum(&f[34..]), 0);
    }
}
