//! `roamgate mobile-node` configuration (TOML, unknown keys refused).

use std::{
    net::{Ipv4Addr, SocketAddr},
    path::PathBuf,
};

use anyhow::bail;
use roamgate_krb::Principal;
use serde::Deserialize;

use crate::{
    config::{valid_ifname, ConfigFile, LogSection},
    dataplane::AttachMode,
};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeFile {
    pub mobile_node: MobileNodeSection,
    #[serde(default)]
    pub kerberos: Option<KerberosSection>,
    #[serde(default)]
    pub dataplane: DataplaneSection,
    #[serde(default)]
    pub log: LogSection,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MobileNodeSection {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    /// MN-HA SPI and the file with its key (hex, mode 0600).
    pub spi: u32,
    pub key_file: PathBuf,
    /// Requested lifetime, seconds.
    #[serde(default = "default_lifetime")]
    pub lifetime: u16,
    #[serde(default = "default_true")]
    pub reverse_tunnel: bool,
    #[serde(default = "default_true")]
    pub co_located: bool,
    /// Interfaces that may carry the care-of address, most preferred
    /// first: the care-of address is the first IPv4 address of the first
    /// of them that is up and has one. A change is a handover.
    pub care_of_interfaces: Vec<String>,
    /// How often the interfaces are checked.
    #[serde(default = "default_poll_ms")]
    pub care_of_poll_ms: u64,
    #[serde(default = "default_grace")]
    pub tunnel_grace_secs: u64,
    /// JSON status (state, care-of, registration latencies) written on
    /// every change (unset: off).
    #[serde(default)]
    pub status_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KerberosSection {
    /// KDC `ADDR:PORT`.
    pub kdc: SocketAddr,
    /// The node's client principal and the keytab with its key.
    pub principal: String,
    pub keytab: PathBuf,
    /// The home agent's service principal.
    pub service: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DataplaneMode {
    /// This process loads the XDP program and attaches it to `interfaces`.
    Xdp,
    /// Another process owns the data plane; only its pinned maps are used.
    Pinned,
    /// The userspace forwarder over a TUN device (hosts without XDP): the
    /// home address sits on the device and `routes` lead into it.
    Tun,
}

impl DataplaneMode {
    pub fn name(self) -> &'static str {
        match self {
            DataplaneMode::Xdp => "xdp",
            DataplaneMode::Pinned => "pinned",
            DataplaneMode::Tun => "tun",
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataplaneSection {
    pub mode: DataplaneMode,
    pub interfaces: Vec<String>,
    /// XDP and pinned modes: the interfaces on the node's own side (the
    /// unit's LAN, a veth to its stack). Only frames from the home address
    /// that arrive on one of them are reverse-tunnelled; the same frames
    /// from anywhere else (an uplink, where any host on the hotspot can
    /// send them) are dropped and counted (`drop_spoofed_uplink`). Unset:
    /// `interfaces` less `mobile_node.care_of_interfaces`.
    pub inside_interfaces: Option<Vec<String>>,
    pub xdp_mode: AttachMode,
    pub pin_dir: PathBuf,
    /// Largest outer IPv4 packet of the tunnel (TUN mode: the device's MTU
    /// is 60 bytes less).
    pub tunnel_mtu: u16,
    /// TUN mode: the device to create.
    pub tun_name: String,
    /// TUN mode: the prefixes whose traffic goes through the tunnel, from
    /// the home address. `0.0.0.0/0` sends everything but the more specific
    /// routes of the main table (the local networks) and the home agent
    /// and KDC, which stay on the physical interfaces.
    pub routes: Vec<String>,
    /// TUN mode: the routing table that holds the TUN routes.
    pub route_table: u32,
    /// TUN mode: the policy rules' priorities (this one, +1, +2; below the
    /// main table's 32766).
    pub rule_priority: u32,
}

impl Default for DataplaneSection {
    fn default() -> Self {
        Self {
            mode: DataplaneMode::Xdp,
            interfaces: Vec::new(),
            inside_interfaces: None,
            xdp_mode: AttachMode::Auto,
            pin_dir: PathBuf::from("/sys/fs/bpf/roamgate-mn"),
            tunnel_mtu: 1500,
            tun_name: "rgmn0".to_owned(),
            routes: vec!["0.0.0.0/0".to_owned()],
            route_table: DEFAULT_ROUTE_TABLE,
            rule_priority: DEFAULT_RULE_PRIORITY,
        }
    }
}

/// TUN mode: the routing table of the TUN routes (434, after the port).
pub const DEFAULT_ROUTE_TABLE: u32 = 434;
/// TUN mode: the first policy rule's priority.
pub const DEFAULT_RULE_PRIORITY: u32 = 4340;
/// The main table's rule priority: ours must come first.
const MAIN_RULE_PRIORITY: u32 = 32766;

fn default_lifetime() -> u16 {
    300
}
fn default_true() -> bool {
    true
}
fn default_poll_ms() -> u64 {
    20
}
fn default_grace() -> u64 {
    roamgate_mip::home_agent::DEFAULT_TUNNEL_GRACE.as_secs()
}

impl MobileNodeFile {
    /// The interfaces marked as the node's inside (see
    /// [`DataplaneSection::inside_interfaces`]), with the default applied.
    pub fn inside_interfaces(&self) -> Vec<String> {
        let d = &self.dataplane;
        match &d.inside_interfaces {
            Some(list) => list.clone(),
            None => d
                .interfaces
                .iter()
                .filter(|i| !self.mobile_node.care_of_interfaces.contains(i))
                .cloned()
                .collect(),
        }
    }

    fn validate_inside(&self) -> anyhow::Result<()> {
        let d = &self.dataplane;
        let inside = self.inside_interfaces();
        for i in &inside {
            if !valid_ifname(i) {
                bail!("dataplane.inside_interfaces: {i:?} is not a valid interface name");
            }
            if self.mobile_node.care_of_interfaces.contains(i) {
                bail!(
                    "dataplane.inside_interfaces: {i:?} is also a care-of interface (an uplink); \
                     any host on that network could then send as the unit through the tunnel. \
                     List only the node's own side (its LAN, its stack's veth)"
                );
            }
            if d.mode == DataplaneMode::Xdp && !d.interfaces.contains(i) {
                bail!(
                    "dataplane.inside_interfaces: {i:?} is not in dataplane.interfaces, so XDP \
                     never sees its frames; add it there"
                );
            }
        }
        if d.mode == DataplaneMode::Xdp && inside.is_empty() {
            bail!(
                "dataplane.interfaces: XDP mode needs an inside interface (one that is not in \
                 mobile_node.care_of_interfaces) whose frames from the home address go into \
                 the tunnel; add the node's LAN or stack-side veth"
            );
        }
        Ok(())
    }

    fn validate_tun(&self) -> anyhow::Result<()> {
        let d = &self.dataplane;
        if d.inside_interfaces.is_some() {
            bail!(
                "dataplane.inside_interfaces: TUN mode has no XDP program to mark interfaces \
                 for; remove the key"
            );
        }
        if !d.interfaces.is_empty() {
            bail!(
                "dataplane.interfaces: TUN mode attaches to no interface; remove the key \
                 (the care-of address comes from mobile_node.care_of_interfaces)"
            );
        }
        if !valid_ifname(&d.tun_name) {
            bail!(
                "dataplane.tun_name: {:?} is not a valid interface name (1-15 characters, no '/' or spaces)",
                d.tun_name
            );
        }
        if self.mobile_node.care_of_interfaces.contains(&d.tun_name) {
            bail!(
                "dataplane.tun_name: {:?} is also listed in mobile_node.care_of_interfaces; \
                 the tunnel cannot carry its own care-of address",
                d.tun_name
            );
        }
        if d.routes.is_empty() {
            bail!(
                "dataplane.routes: TUN mode needs at least one prefix to send through the tunnel \
                 (\"0.0.0.0/0\" for everything)"
            );
        }
        for r in &d.routes {
            if let Err(e) = r.parse::<crate::tunnel::route::Prefix>() {
                bail!("dataplane.routes: {e} (write ADDR/LEN, e.g. \"10.1.0.0/16\")");
            }
        }
        // 0 is unspecified, 253-255 are the kernel's default, main and local.
        if d.route_table == 0 || (253..=255).contains(&d.route_table) || d.route_table == u32::MAX {
            bail!(
                "dataplane.route_table: {} is reserved (0, 253 default, 254 main, 255 local); \
                 pick an unused table such as {DEFAULT_ROUTE_TABLE}",
                d.route_table
            );
        }
        if d.rule_priority == 0 || d.rule_priority + 2 >= MAIN_RULE_PRIORITY {
            bail!(
                "dataplane.rule_priority: {} must be 1 to {} so that the three rules come \
                 before the main table's (32766)",
                d.rule_priority,
                MAIN_RULE_PRIORITY - 3
            );
        }
        Ok(())
    }
}

impl ConfigFile for MobileNodeFile {
    fn validate(&self) -> anyhow::Result<()> {
        let m = &self.mobile_node;
        if roamgate_mip::auth::Algorithm::for_spi(m.spi).is_none() {
            bail!("mobile_node.spi: {} is reserved (use 256 or above)", m.spi);
        }
        if m.lifetime == 0 {
            bail!("mobile_node.lifetime: must be at least 1 second");
        }
        if m.care_of_interfaces.is_empty() {
            bail!("mobile_node.care_of_interfaces: name at least one interface");
        }
        if m.care_of_poll_ms == 0 || m.care_of_poll_ms > 10_000 {
            bail!("mobile_node.care_of_poll_ms: must be 1..=10000");
        }
        for i in m
            .care_of_interfaces
            .iter()
            .chain(&self.dataplane.interfaces)
        {
            if !valid_ifname(i) {
                bail!("{i:?} is not a valid interface name");
            }
        }
        let d = &self.dataplane;
        if d.mode == DataplaneMode::Xdp && d.interfaces.is_empty() {
            bail!("dataplane.interfaces: XDP mode needs the interfaces to attach to");
        }
        if d.tunnel_mtu < crate::tunnel::config::MIN_MTU {
            bail!(
                "dataplane.tunnel_mtu: {} is below the IPv4 minimum of {}",
                d.tunnel_mtu,
                crate::tunnel::config::MIN_MTU
            );
        }
        if d.mode == DataplaneMode::Tun {
            self.validate_tun()?;
        } else {
            self.validate_inside()?;
        }
        if !self.dataplane.pin_dir.is_absolute() {
            bail!("dataplane.pin_dir: must be an absolute path on a bpffs");
        }
        if let Some(k) = &self.kerberos {
            Principal::parse(&k.principal)
                .map_err(|e| anyhow::anyhow!("kerberos.principal {:?}: {e}", k.principal))?;
            Principal::parse(&k.service)
                .map_err(|e| anyhow::anyhow!("kerberos.service {:?}: {e}", k.service))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_example_parses() {
        let text = include_str!("../../../../config/mobile-node.toml");
        let cfg = MobileNodeFile::from_toml(text).unwrap();
        assert_eq!(cfg.mobile_node.lifetime, 300);
        assert_eq!(cfg.mobile_node.care_of_interfaces, vec!["wlan0", "wwan0"]);
        assert_eq!(cfg.dataplane.mode, DataplaneMode::Xdp);
        assert_eq!(cfg.inside_interfaces(), vec!["lan0"]);
        assert!(cfg.kerberos.is_some());
    }

    #[test]
    fn inside_interfaces_default_and_refusals() {
        let base = "[mobile_node]\nhome_address = \"10.1.0.50\"\nhome_agent = \"192.0.2.1\"\nspi = 256\nkey_file = \"/k\"\ncare_of_interfaces = [\"wlan0\", \"wwan0\"]\n[dataplane]\nmode = \"xdp\"\n";
        let cfg = |extra: &str| MobileNodeFile::from_toml(&format!("{base}{extra}\n"));
        let err = |extra: &str| format!("{:#}", cfg(extra).unwrap_err());
        // Default: the attached interfaces that are not uplinks.
        let c = cfg("interfaces = [\"wlan0\", \"lan0\", \"wwan0\", \"veth1\"]").unwrap();
        assert_eq!(c.inside_interfaces(), vec!["lan0", "veth1"]);
        let c =
            cfg("interfaces = [\"wlan0\", \"lan0\", \"veth1\"]\ninside_interfaces = [\"veth1\"]")
                .unwrap();
        assert_eq!(c.inside_interfaces(), vec!["veth1"]);
        // An uplink can never be the inside.
        let e = err("interfaces = [\"wlan0\", \"lan0\"]\ninside_interfaces = [\"wlan0\"]");
        assert!(
            e.contains("inside_interfaces") && e.contains("care-of interface"),
            "{e}"
        );
        // XDP must be attached where the frames arrive.
        let e = err("interfaces = [\"wlan0\", \"lan0\"]\ninside_interfaces = [\"eth9\"]");
        assert!(e.contains("not in dataplane.interfaces"), "{e}");
        // Only uplinks: nothing could enter the tunnel.
        let e = err("interfaces = [\"wlan0\", \"wwan0\"]");
        assert!(e.contains("inside interface"), "{e}");
        let e = err("interfaces = [\"wlan0\", \"lan0\"]\ninside_interfaces = []");
        assert!(e.contains("inside interface"), "{e}");
        // TUN mode has nothing to mark.
        let e = format!(
            "{:#}",
            MobileNodeFile::from_toml(&format!(
                "{}inside_interfaces = [\"lan0\"]\n",
                base.replace("\"xdp\"", "\"tun\"")
            ))
            .unwrap_err()
        );
        assert!(e.contains("TUN mode"), "{e}");
    }

    #[test]
    fn shipped_tun_example_parses() {
        let text = include_str!("../../../../config/mobile-node-tun.toml");
        let cfg = MobileNodeFile::from_toml(text).unwrap();
        let d = &cfg.dataplane;
        assert_eq!(d.mode, DataplaneMode::Tun);
        assert_eq!((d.tun_name.as_str(), d.route_table), ("rgmn0", 434));
        assert_eq!(d.routes, vec!["0.0.0.0/0"]);
        assert!(d.interfaces.is_empty());
    }

    #[test]
    fn refuses_unknown_keys_and_bad_values() {
        let base = "[mobile_node]\nhome_address = \"10.1.0.50\"\nhome_agent = \"192.0.2.1\"\nspi = 256\nkey_file = \"/k\"\ncare_of_interfaces = [\"eth0\"]\n";
        let ok = format!("{base}[dataplane]\nmode = \"pinned\"\n");
        let cfg = MobileNodeFile::from_toml(&ok).unwrap();
        assert_eq!(cfg.mobile_node.care_of_poll_ms, 20);
        assert!(cfg.mobile_node.reverse_tunnel);
        let e = MobileNodeFile::from_toml(&format!("{ok}bogus = 1\n")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
        let e = MobileNodeFile::from_toml(base).unwrap_err();
        assert!(e.to_string().contains("dataplane.interfaces"), "{e}");
        let e = MobileNodeFile::from_toml(&ok.replace("spi = 256", "spi = 7")).unwrap_err();
        assert!(e.to_string().contains("reserved"), "{e}");
    }

    #[test]
    fn tun_mode_defaults_and_refusals() {
        let base = "[mobile_node]\nhome_address = \"10.1.0.50\"\nhome_agent = \"192.0.2.1\"\nspi = 256\nkey_file = \"/k\"\ncare_of_interfaces = [\"eth0\"]\n";
        let tun = format!("{base}[dataplane]\nmode = \"tun\"\n");
        let cfg = MobileNodeFile::from_toml(&tun).unwrap();
        let d = &cfg.dataplane;
        assert_eq!(d.mode, DataplaneMode::Tun);
        assert_eq!(d.tun_name, "rgmn0");
        assert_eq!(d.routes, vec!["0.0.0.0/0"]);
        assert_eq!((d.route_table, d.rule_priority), (434, 4340));
        let err = |extra: &str| {
            let e = MobileNodeFile::from_toml(&format!("{tun}{extra}\n")).unwrap_err();
            format!("{e:#}")
        };
        let e = err("interfaces = [\"eth0\"]");
        assert!(
            e.contains("dataplane.interfaces") && e.contains("remove"),
            "{e}"
        );
        let e = err("routes = [\"10.1.0.1/16\"]");
        assert!(
            e.contains("dataplane.routes") && e.contains("host bits"),
            "{e}"
        );
        let e = err("routes = [\"10.1/16\"]");
        assert!(
            e.contains("dataplane.routes") && e.contains("not an IPv4 address"),
            "{e}"
        );
        let e = err("routes = []");
        assert!(
            e.contains("dataplane.routes") && e.contains("0.0.0.0/0"),
            "{e}"
        );
        let e = err("route_table = 254");
        assert!(
            e.contains("dataplane.route_table") && e.contains("main"),
            "{e}"
        );
        let e = err("rule_priority = 32765");
        assert!(e.contains("dataplane.rule_priority"), "{e}");
        let e = err("tun_name = \"a/b\"");
        assert!(e.contains("dataplane.tun_name"), "{e}");
        let e = err("tun_name = \"eth0\"");
        assert!(e.contains("care_of_interfaces"), "{e}");
        let e = err("tunnel_mtu = 100");
        assert!(e.contains("dataplane.tunnel_mtu"), "{e}");
        let e = MobileNodeFile::from_toml(&tun.replace("\"tun\"", "\"ebpf\"")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown variant"), "{e:#}");
        let ok = MobileNodeFile::from_toml(&format!(
            "{tun}routes = [\"10.1.0.0/16\", \"192.0.2.128/25\"]\nroute_table = 1000\n"
        ))
        .unwrap();
        assert_eq!(ok.dataplane.routes.len(), 2);
    }
}
