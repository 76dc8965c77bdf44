//! Routes and policy rules for a TUN data plane, over rtnetlink
//! (`platform::rtnl`; rtnetlink(7), linux/fib_rules.h). The messages are
//! built by small pure functions with `netlink-packet-route` types,
//! unit-tested against the kernel's layout.
//!
//! Every rule roamgate installs carries its own protocol value
//! ([`RULE_PROTOCOL`]), so a start can find and remove the rules a killed
//! run left behind, and never touches anyone else's.

use std::net::Ipv4Addr;

use netlink_packet_route::{
    route::{
        RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope,
        RouteType,
    },
    rule::{RuleAction, RuleAttribute, RuleMessage},
    AddressFamily,
};

use crate::platform::rtnl::{NetlinkError, Rtnl};

/// The kernel's main routing table.
pub const TABLE_MAIN: u32 = RouteHeader::RT_TABLE_MAIN as u32;

/// The protocol value (rt_protos) of roamgate's policy rules: unassigned in
/// iproute2's rt_protos, so `ip rule` shows `proto 167`.
pub const RULE_PROTOCOL: u8 = 167;
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

/// The 8-bit table field: the table if it fits, else unspecified (the
/// 32-bit attribute, always sent, then names it), as iproute2 does.
fn table_byte(table: u32) -> u8 {
    u8::try_from(table).unwrap_or(RouteHeader::RT_TABLE_UNSPEC)
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
    /// The route to add (static, link scope, unicast) or, with `add`
    /// false, the one a delete matches.
    pub fn message(&self, add: bool) -> RouteMessage {
        let mut m = RouteMessage::default();
        let h = &mut m.header;
        h.address_family = AddressFamily::Inet;
        h.destination_prefix_length = self.dst.len;
        h.table = table_byte(self.table);
        h.protocol = if add {
            RouteProtocol::Static
        } else {
            RouteProtocol::Unspec
        };
        h.scope = RouteScope::Link;
        h.kind = RouteType::Unicast;
        m.attributes.push(RouteAttribute::Table(self.table));
        m.attributes.push(RouteAttribute::Oif(self.oif));
        if self.dst.len > 0 {
            m.attributes
                .push(RouteAttribute::Destination(RouteAddress::Inet(
                    self.dst.addr,
                )));
        }
        if let Some(src) = self.prefsrc {
            m.attributes
                .push(RouteAttribute::PrefSource(RouteAddress::Inet(src)));
        }
        m
    }
}

/// A policy rule `priority P [from SRC] [to DST] lookup T
/// [suppress_prefixlength N] proto 167`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub priority: u32,
    pub from: Option<Prefix>,
    pub to: Option<Prefix>,
    pub table: u32,
    pub suppress_prefixlength: Option<u32>,
}

impl Rule {
    /// The rule to add, or the one a delete matches (every field given,
    /// roamgate's protocol included).
    pub fn message(&self) -> RuleMessage {
        let mut m = RuleMessage::default();
        let h = &mut m.header;
        h.family = AddressFamily::Inet;
        h.src_len = self.from.map_or(0, |p| p.len);
        h.dst_len = self.to.map_or(0, |p| p.len);
        h.table = table_byte(self.table);
        h.action = RuleAction::ToTable;
        let a = &mut m.attributes;
        a.push(RuleAttribute::Priority(self.priority));
        a.push(RuleAttribute::Table(self.table));
        if let Some(p) = self.from {
            a.push(RuleAttribute::Source(p.addr.into()));
        }
        if let Some(p) = self.to {
            a.push(RuleAttribute::Destination(p.addr.into()));
        }
        if let Some(n) = self.suppress_prefixlength {
            a.push(RuleAttribute::SuppressPrefixLen(n));
        }
        a.push(RuleAttribute::Protocol(RouteProtocol::from(RULE_PROTOCOL)));
        m
    }
}

/// Adds (or replaces) a route.
pub fn add_route(rtnl: &Rtnl, r: &DevRoute) -> Result<(), NetlinkError> {
    rtnl.replace_route(r.message(true))
}

/// Removes a route; absent is fine.
pub fn remove_route(rtnl: &Rtnl, r: &DevRoute) -> Result<(), NetlinkError> {
    match rtnl.delete_route(r.message(false)) {
        Err(e) if e.is_absent() => Ok(()),
        r => r,
    }
}

/// Adds a rule after removing any copies left by an earlier run (the kernel
/// keeps duplicate rules); one already there is fine.
pub fn add_rule(rtnl: &Rtnl, r: &Rule) -> Result<(), NetlinkError> {
    remove_rule(rtnl, r)?;
    match rtnl.add_rule(r.message()) {
        Err(e) if e.is_exists() => Ok(()),
        r => r,
    }
}

/// Removes every copy of a rule; absent is fine.
pub fn remove_rule(rtnl: &Rtnl, r: &Rule) -> Result<(), NetlinkError> {
    for _ in 0..64 {
        match rtnl.delete_rule(r.message()) {
            Ok(()) => {}
            Err(e) if e.is_absent() => return Ok(()),
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Removes every IPv4 rule tagged with roamgate's protocol: what a run
/// that was killed (-9) left behind. Returns how many went.
pub fn remove_stale_rules(rtnl: &Rtnl) -> Result<usize, NetlinkError> {
    let stale = rtnl.rules_of(RouteProtocol::from(RULE_PROTOCOL))?;
    let n = stale.len();
    for m in stale {
        match rtnl.delete_rule(m) {
            Err(e) if !e.is_absent() => return Err(e),
            _ => {}
        }
    }
    Ok(n)
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
        let m = emit(&r.message(true));
        // rtmsg 12, table 8, oif 8, dst 8, prefsrc 8
        assert_eq!(m.len(), 12 + 32);
        // family, /16, src_len, tos, table unspec (434 > 255), static, link, unicast
        assert_eq!(&m[0..8], &[2, 16, 0, 0, 0, 4, 253, 1]);
        assert_eq!((u16_at(&m, 12), u16_at(&m, 14)), (8, 15)); // table
        assert_eq!(u32_at(&m, 16), 434);
        assert_eq!((u16_at(&m, 20), u16_at(&m, 22)), (8, 4)); // oif
        assert_eq!(u32_at(&m, 24), 9);
        assert_eq!(u16_at(&m, 30), 1); // dst
        assert_eq!(&m[32..36], &[10, 1, 0, 0]);
        assert_eq!(u16_at(&m, 38), 7); // prefsrc
        assert_eq!(&m[40..44], &[10, 1, 0, 50]);
        // A default route has no destination; a delete names no protocol.
        let d = emit(
            &DevRoute {
                dst: "0.0.0.0/0".parse().unwrap(),
                prefsrc: None,
                table: TABLE_MAIN,
                ..r
            }
            .message(false),
        );
        assert_eq!(d.len(), 12 + 16);
        assert_eq!(&d[0..8], &[2, 0, 0, 0, 254, 0, 253, 1]);
    }

    #[test]
    fn construct_rules() {
        let bypass = Rule {
            priority: 434,
            from: None,
            to: Some(Prefix::host(Ipv4Addr::new(192, 0, 2, 1))),
            table: TABLE_MAIN,
            suppress_prefixlength: None,
        };
        let m = emit(&bypass.message());
        // fib_rule_hdr 12, priority 8, table 8, dst 8, protocol 8 (1 + pad)
        assert_eq!(m.len(), 12 + 32);
        // family, dst_len, src_len, tos, main, res1, res2, to-table
        assert_eq!(&m[0..8], &[2, 32, 0, 0, 254, 0, 0, 1]);
        assert_eq!((u16_at(&m, 14), u32_at(&m, 16)), (6, 434)); // priority
        assert_eq!((u16_at(&m, 22), u32_at(&m, 24)), (15, 254)); // table
        assert_eq!(u16_at(&m, 30), 1); // dst
        assert_eq!(&m[32..36], &[192, 0, 2, 1]);
        assert_eq!((u16_at(&m, 36), u16_at(&m, 38)), (5, 21)); // protocol
        assert_eq!(m[40], RULE_PROTOCOL);
        let suppress = emit(
            &Rule {
                priority: 435,
                from: None,
                to: None,
                table: TABLE_MAIN,
                suppress_prefixlength: Some(0),
            }
            .message(),
        );
        assert_eq!(suppress[1], 0);
        assert_eq!(u16_at(&suppress, 30), 14); // suppress_prefixlength
        assert_eq!(u32_at(&suppress, 32), 0);
        // A source prefix: `from 0.0.0.0/32` matches only lookups made
        // before a source is chosen.
        let from = emit(
            &Rule {
                priority: 436,
                from: Some(Prefix::host(Ipv4Addr::UNSPECIFIED)),
                to: None,
                table: 1000,
                suppress_prefixlength: None,
            }
            .message(),
        );
        assert_eq!(from[2], 32);
        assert_eq!(u16_at(&from, 30), 2); // src
        assert_eq!(&from[32..36], &[0, 0, 0, 0]);
        // Tables above 255 travel in the attribute only.
        assert_eq!(from[4], 0);
        assert_eq!(u32_at(&from, 24), 1000);
    }
}
