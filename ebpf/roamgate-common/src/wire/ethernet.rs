//! Ethernet II header (IEEE 802.3, no VLAN tags).

use super::Header;

pub const ETHERTYPE_IPV4: u16 = 0x0800;
pub const ETHERTYPE_ARP: u16 = 0x0806;
pub const ETHERTYPE_IPV6: u16 = 0x86dd;

#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EthHdr {
    pub dst: [u8; 6],
    pub src: [u8; 6],
    pub ether_type: [u8; 2],
}

// SAFETY: repr(C), u8 arrays only.
unsafe impl Header for EthHdr {}

impl EthHdr {
    #[inline(always)]
    pub fn ether_type(&self) -> u16 {
        u16::from_be_bytes(self.ether_type)
    }

    #[inline(always)]
    pub fn set_ether_type(&mut self, t: u16) {
        self.ether_type = t.to_be_bytes();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deconstruct() {
        let frame = [
            1, 2, 3, 4, 5, 6, 0xa, 0xb, 0xc, 0xd, 0xe, 0xf, 0x08, 0x00, 0xff,
        ];
        let h = EthHdr::from_bytes(&frame).unwrap();
        assert_eq!(EthHdr::LEN, 14);
        assert_eq!(h.dst, [1, 2, 3, 4, 5, 6]);
        assert_eq!(h.src, [0xa, 0xb, 0xc, 0xd, 0xe, 0xf]);
        assert_eq!(h.ether_type(), ETHERTYPE_IPV4);
    }

    #[test]
    fn truncated() {
        assert!(EthHdr::from_bytes(&[0u8; 13]).is_none());
    }
}
