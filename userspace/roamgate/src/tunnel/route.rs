//! Routes and policy rules for a TUN data plane, over rtnetlink
//! (RTM_NEWROUTE/RTM_DELROUTE, RTM_NEWRULE/RTM_DELRULE; rtnetlink(7),
//! linux/fib_rules.h). The messages are built by a small pure encoder,
//! unit-tested against the kernel's layout; they are sent through
//! `platform::netlink::request`, which waits for the kernel's ACK.

use std::net::Ipv4Addr;

use crate::platform::netlink::{request, NetlinkError};

// rtnetlink(7) values from libc; the fib_rules.h ones libc lacks below.
const NLM_F_REQUEST: u16 = libc::NLM_F_REQUEST as u16;
const NLM_F_ACK: u16 = libc::NLM_F_ACK as u16;
const NLM_F_REPLACE: u16 = libc::NLM_F_REPLACE as u16;
const NLM_F_CREATE: u16 = libc::NLM_F_CREATE as u16;
use libc::{
    RTA_DST, RTA_OIF, RTA_PREFSRC, RTA_TABLE, RTM_DELROUTE, RTM_DELRULE, RTM_NEWROUTE, RTM_NEWRULE,
    RTN_UNICAST, RTPROT_STATIC, RT_SCOPE_LINK,
};
const FRA_DST: u16 = 1;
const FRA_PRIORITY: u16 = 6;
const FRA_SUPPRESS_PREFIXLEN: u16 = 14;
const FRA_TABLE: u16 = 15;
const FR_ACT_TO_TBL: u8 = 1;
/// The kernel's main routing table.
pub const TABLE_MAIN: u32 = libc::RT_TABLE_MAIN as u32;

/// An IPv4 prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Prefix {
    pub addr: Ipv4Addr,
    pub len: u8,
}

impl Prefix {
    pub const fn host(addr: Ipv4Addr) -> Self {
        Self { addr, len: 32 }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrefixError {
    #[error("{0:?} is not an IPv4 address")]
    Address(String),
    #[error("{0:?}: the prefix length must be 0 to 32")]
    Length(String),
    #[error("{0:?} has host bits set behind its prefix length")]
    HostBits(String),
}

impl std::str::FromStr for Prefix {
    type Err = PrefixError;

    /// `A.B.C.D/LEN`, or a bare address (a /32).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, l) = s.split_once('/').unwrap_or((s, "32"));
        let addr: Ipv4Addr = a.parse().map_err(|_| PrefixError::Address(s.into()))?;
        let len: u8 = l
            .parse()
            .ok()
            .filter(|l| *l <= 32)
            .ok_or_else(|| PrefixError::Length(s.into()))?;
        let mask = u32::MAX.checked_shl(32 - u32::from(len)).unwrap_or(0);
        if u32::from(addr) & !mask != 0 {
            return Err(PrefixError::HostBits(s.into()));
        }
        Ok(Self { addr, len })
    }
}

impl std::fmt::Display for Prefix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// The 8-bit table field: the table if it fits, else RT_TABLE_UNSPEC (the
/// 32-bit attribute, always sent, then names it), as iproute2 does.
fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(0)
}

/// One netlink request under construction: header, fixed part, attributes.
struct Msg(Vec<u8>);

impl Msg {
    fn new(ty: u16, flags: u16, fixed: &[u8]) -> Self {
        let mut b = vec![0u8; 16];
        b[4..6].copy_from_slice(&ty.to_ne_bytes());
        b[6..8].copy_from_slice(&flags.to_ne_bytes());
        b[8..12].copy_from_slice(&1u32.to_ne_bytes());
        b.extend_from_slice(fixed);
        Self(b)
    }

    fn attr(mut self, ty: u16, data: &[u8]) -> Self {
        self.0
            .extend_from_slice(&((4 + data.len()) as u16).to_ne_bytes());
        self.0.extend_from_slice(&ty.to_ne_bytes());
        self.0.extend_from_slice(data);
        self.0.resize(self.0.len().next_multiple_of(4), 0);
        self
    }

    fn finish(mut self) -> Vec<u8> {
        let len = (self.0.len() as u32).to_ne_bytes();
        self.0[0..4].copy_from_slice(&len);
        self.0
    }
}

/// A route `dst dev oif [src prefsrc] table T`, link scope (a point-to-point
/// TUN device needs no gateway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DevRoute {
    pub dst: Prefix,
    pub oif: u32,
    pub prefsrc: Option<Ipv4Addr>,
    pub table: u32,
}

impl DevRoute {
    /// RTM_NEWROUTE (create or replace) or RTM_DELROUTE.
    pub fn message(&self, add: bool) -> Vec<u8> {
        let fixed = [
            libc::AF_INET as u8,
            self.dst.len,
            0, // src_len
            0, // tos
            table_byte(self.table),
            if add { RTPROT_STATIC } else { 0 },
            RT_SCOPE_LINK,
            RTN_UNICAST,
            0,
            0,
            0,
            0, // rtm_flags
        ];
        let (ty, flags) = if add {
            (
                RTM_NEWROUTE,
                NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_REPLACE,
            )
        } else {
            (RTM_DELROUTE, NLM_F_REQUEST | NLM_F_ACK)
        };
        let mut m = Msg::new(ty, flags, &fixed)
            .attr(RTA_TABLE, &self.table.to_ne_bytes())
            .attr(RTA_OIF, &self.oif.to_ne_bytes());
        if self.dst.len > 0 {
            m = m.attr(RTA_DST, &self.dst.addr.octets());
        }
        if let Some(src) = self.prefsrc {
            m = m.attr(RTA_PREFSRC, &src.octets());
        }
        m.finish()
    }
}

/// A policy rule `priority P [to DST] lookup T [suppress_prefixlength N]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub to: Option<Prefix>,
    pub table: u32,
    pub suppress_prefixlength: Option<u32>,
}

impl Rule {
    /// RTM_NEWRULE or RTM_DELRULE (a delete matches every field given).
    pub fn message(&self, add: bool) -> Vec<u8> {
        let fixed = [
            libc::AF_INET as u8,
            self.to.map_or(0, |p| p.len),
            0, // src_len
            0, // tos
            table_byte(self.table),
            0,
            0, // res1, res2
            FR_ACT_TO_TBL,
            0,
            0,
            0,
            0, // flags
        ];
        let (ty, flags) = if add {
            (RTM_NEWRULE, NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE)
        } else {
            (RTM_DELRULE, NLM_F_REQUEST | NLM_F_ACK)
        };
        let mut m = Msg::new(ty, flags, &fixed)
            .attr(FRA_PRIORITY, &self.priority.to_ne_bytes())
            .attr(FRA_TABLE, &self.table.to_ne_bytes());
        if let Some(p) = self.to {
            m = m.attr(FRA_DST, &p.addr.octets());
        }
        if let Some(n) = self.suppress_prefixlength {
            m = m.attr(FRA_SUPPRESS_PREFIXLEN, &n.to_ne_bytes());
        }
        m.finish()
    }
}

/// Whether a refusal means "it was not there" (for idempotent removal).
pub fn is_absent(e: &NetlinkError) -> bool {
    matches!(e, NetlinkError::Refused(io)
        if matches!(io.raw_os_error(), Some(libc::ENOENT | libc::ESRCH | libc::ENODEV)))
}

pub fn add_route(r: &DevRoute) -> Result<(), NetlinkError> {
    request(&r.message(true))
}

/// Removes a route; absent is fine.
pub fn remove_route(r: &DevRoute) -> Result<(), NetlinkError> {
    match request(&r.message(false)) {
        Err(e) if is_absent(&e) => Ok(()),
        r => r,
    }
}

/// Adds a rule after removing any copies left by an earlier run (the kernel
/// keeps duplicate rules).
pub fn add_rule(r: &Rule) -> Result<(), NetlinkError> {
    remove_rule(r)?;
    request(&r.message(true))
}

/// Removes every copy of a rule; absent is fine.
pub fn remove_rule(r: &Rule) -> Result<(), NetlinkError> {
    for _ in 0..64 {
        match request(&r.message(false)) {
            Ok(()) => {}
            Err(e) if is_absent(&e) => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(m: &[u8], i: usize) -> u16 {
        u16::from_ne_bytes([m[i], m[i + 1]])
    }
    fn u32_at(m: &[u8], i: usize) -> u32 {
        u32::from_ne_bytes(m[i..i + 4].try_into().unwrap())
    }

    #[test]
    fn parse_prefixes() {
        let p: Prefix = "10.1.0.0/16".parse().unwrap();
        assert_eq!((p.addr, p.len), (Ipv4Addr::new(10, 1, 0, 0), 16));
        assert_eq!("0.0.0.0/0".parse::<Prefix>().unwrap().len, 0);
        assert_eq!(
            "192.0.2.1".parse::<Prefix>().unwrap(),
            Prefix::host(Ipv4Addr::new(192, 0, 2, 1))
        );
        assert_eq!(p.to_string(), "10.1.0.0/16");
        assert_eq!(
            "10.1.0.1/16".parse::<Prefix>(),
            Err(PrefixError::HostBits("10.1.0.1/16".into()))
        );
        assert_eq!(
            "10.1.0.0/33".parse::<Prefix>(),
            Err(PrefixError::Length("10.1.0.0/33".into()))
        );
        assert_eq!(
            "10.1/8".parse::<Prefix>(),
            Err(PrefixError::Address("10.1/8".into()))
        );
        assert!("".parse::<Prefix>().is_err());
        assert!("1.2.3.4/".parse::<Prefix>().is_err());
    }

    #[test]
    fn construct_dev_route() {
        let r = DevRoute {
            dst: "10.1.0.0/16".parse().unwrap(),
            oif: 9,
            prefsrc: Some(Ipv4Addr::new(10, 1, 0, 50)),
            table: 434,
        };
        let m = r.message(true);
        // header 16, rtmsg 12, RTA_TABLE 8, RTA_OIF 8, RTA_DST 8, RTA_PREFSRC 8
        assert_eq!(m.len(), 16 + 12 + 32);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWROUTE);
        assert_eq!(u16_at(&m, 6), 0x0505);
        assert_eq!(
            &m[16..24],
            &[2, 16, 0, 0, 0, RTPROT_STATIC, RT_SCOPE_LINK, RTN_UNICAST]
        );
        assert_eq!((u16_at(&m, 28), u16_at(&m, 30)), (8, RTA_TABLE));
        assert_eq!(u32_at(&m, 32), 434);
        assert_eq!((u16_at(&m, 36), u16_at(&m, 38)), (8, RTA_OIF));
        assert_eq!(u32_at(&m, 40), 9);
        assert_eq!(u16_at(&m, 46), RTA_DST);
        assert_eq!(&m[48..52], &[10, 1, 0, 0]);
        assert_eq!(u16_at(&m, 54), RTA_PREFSRC);
        assert_eq!(&m[56..60], &[10, 1, 0, 50]);
        // A default route has no RTA_DST; a delete is not a replace.
        let d = DevRoute {
            dst: "0.0.0.0/0".parse().unwrap(),
            prefsrc: None,
            table: TABLE_MAIN,
            ..r
        }
        .message(false);
        assert_eq!(d.len(), 16 + 12 + 16);
        assert_eq!(u16_at(&d, 4), RTM_DELROUTE);
        assert_eq!(u16_at(&d, 6), NLM_F_REQUEST | NLM_F_ACK);
        assert_eq!(d[20], 254);
    }

    #[test]
    fn construct_rules() {
        let bypass = Rule {
            priority: 434,
            to: Some(Prefix::host(Ipv4Addr::new(192, 0, 2, 1))),
            table: TABLE_MAIN,
            suppress_prefixlength: None,
        };
        let m = bypass.message(true);
        assert_eq!(m.len(), 16 + 12 + 24);
        assert_eq!(u32_at(&m, 0) as usize, m.len());
        assert_eq!(u16_at(&m, 4), RTM_NEWRULE);
        assert_eq!(u16_at(&m, 6), NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE);
        assert_eq!(&m[16..24], &[2, 32, 0, 0, 254, 0, 0, FR_ACT_TO_TBL]);
        assert_eq!((u16_at(&m, 30), u32_at(&m, 32)), (FRA_PRIORITY, 434));
        assert_eq!((u16_at(&m, 38), u32_at(&m, 40)), (FRA_TABLE, 254));
        assert_eq!(u16_at(&m, 46), FRA_DST);
        assert_eq!(&m[48..52], &[192, 0, 2, 1]);
        let suppress = Rule {
            priority: 435,
            to: None,
            table: TABLE_MAIN,
            suppress_prefixlength: Some(0),
        }
        .message(false);
        assert_eq!(u16_at(&suppress, 4), RTM_DELRULE);
        assert_eq!(suppress[17], 0);
        assert_eq!(u16_at(&suppress, 46), FRA_SUPPRESS_PREFIXLEN);
        assert_eq!(u32_at(&suppress, 48), 0);
        // Tables above 255 travel in the attribute only.
        let t = Rule {
            priority: 436,
            to: None,
            table: 1000,
            suppress_prefixlength: None,
        }
        .message(true);
        assert_eq!(t[20], 0);
        assert_eq!(u32_at(&t, 40), 1000);
    }
}
