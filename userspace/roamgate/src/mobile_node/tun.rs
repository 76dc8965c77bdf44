//! The mobile node's userspace data plane (`dataplane.mode = "tun"`), for
//! hosts without XDP: the `roamgate tunnel` forwarder over a TUN device,
//! keyed at runtime by the mobile-node core's actions.
//!
//! - The TUN device carries the home address (/32), so applications on this
//!   host use it unchanged.
//! - Routing: the configured prefixes (default `0.0.0.0/0`) lead into the
//!   device in their own table, with the home address as preferred source.
//!   Policy rules, in order: the home agent and the KDC look up the main
//!   table (registrations and tunnel packets leave over the physical
//!   interface of the moment, so a handover needs no route change); for a
//!   default route, the main table minus its default routes
//!   (`suppress_prefixlength 0`: the local networks stay local); then the
//!   TUN table, but only for traffic from the home address or from no
//!   address yet (`from 0.0.0.0/32` matches the lookup of a socket whose
//!   source the kernel has still to choose). Traffic from the care-of
//!   address (an application bound to it) goes on to the main table and
//!   leaves directly: in the tunnel the home agent would drop it, as its
//!   source is not the home address. No rule names the care-of address, so
//!   a handover changes no rule.
//! - The rules carry roamgate's protocol (`route::RULE_PROTOCOL`): a start
//!   first removes every rule so tagged, which a run killed with -9 left.
//! - Keys: each `InstallTunnel` derives the per-direction keys from the
//!   registration's master key (`derive_keys`, docs/wire.md §3) exactly as
//!   the XDP path does, so either end may be XDP. Actions are applied under
//!   one write lock, before the registration is sent.
//! - The tunnel socket is bound to `0.0.0.0:434`; every packet leaves with
//!   its tunnel's care-of address as source, so a handover (a new tunnel
//!   for the new care-of address, then the binding moved to it) needs no new
//!   socket.
//! - Stopping removes the rules and routes and closes the device (which
//!   removes it).

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Instant, SystemTime},
};

use anyhow::Context as _;
use roamgate_mip::{tunnel_key::derive_keys, Action};
use tracing::{info, warn};

use super::config::DataplaneSection;
use crate::platform::rtnl::Rtnl;
use crate::tunnel::{
    self,
    route::{self, DevRoute, Prefix, Rule, TABLE_MAIN},
    table::{self, SharedTable, TableBinding, TableError, TableTunnel, TunnelTable},
    Forwarder,
};

/// A core's wall-clock deadline on the forwarder's monotonic clock.
fn deadline(at: SystemTime, now: SystemTime, mono_now: Instant) -> Instant {
    mono_now + at.duration_since(now).unwrap_or_default()
}

/// The routes into the TUN device and the policy rules in front of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Routing {
    pub routes: Vec<DevRoute>,
    pub rules: Vec<Rule>,
}

/// What TUN mode installs: routes for `prefixes` into `oif` (table
/// `table`, source `home`); rules at `priority` sending `bypass` (home
/// agent, KDC) to the main table, at `priority + 1` the main table without
/// its default routes (only when a prefix is a default route), at
/// `priority + 2` the TUN table for traffic from `home` or from no address
/// yet.
pub fn routing(
    prefixes: &[Prefix],
    oif: u32,
    home: Ipv4Addr,
    table: u32,
    priority: u32,
    bypass: &[Ipv4Addr],
) -> Routing {
    let routes = prefixes
        .iter()
        .map(|&dst| DevRoute {
            dst,
            oif,
            prefsrc: Some(home),
            table,
        })
        .collect();
    let mut rules: Vec<Rule> = bypass
        .iter()
        .map(|&a| Rule {
            priority,
            from: None,
            to: Some(Prefix::host(a)),
            table: TABLE_MAIN,
            suppress_prefixlength: None,
        })
        .collect();
    if prefixes.iter().any(|p| p.len == 0) {
        rules.push(Rule {
            priority: priority + 1,
            from: None,
            to: None,
            table: TABLE_MAIN,
            suppress_prefixlength: Some(0),
        });
    }
    for from in [Ipv4Addr::UNSPECIFIED, home] {
        rules.push(Rule {
            priority: priority + 2,
            from: Some(Prefix::host(from)),
            to: None,
            table,
            suppress_prefixlength: None,
        });
    }
    Routing { routes, rules }
}

/// Applies core actions to a tunnel table, in order, all under one lock (the
/// forwarding threads see all of them or none). Stops at the first failure.
pub fn apply_actions(
    table: &SharedTable,
    actions: &[Action],
    mtu: u16,
    now: SystemTime,
) -> Result<(), TableError> {
    let mono = Instant::now();
    let mut t = table::write(table);
    for a in actions {
        match a {
            Action::InstallTunnel(x) => {
                let keys = derive_keys(&x.master_key, x.spi, x.home, x.role);
                t.install(&TableTunnel {
                    spi: x.spi,
                    role: x.role,
                    local: x.local,
                    remote: x.remote,
                    home: x.home,
                    keys: &keys,
                    mtu,
                    expires: Some(deadline(x.expires, now, mono)),
                })?;
            }
            Action::SetBinding {
                home,
                remote,
                spi,
                expires,
                ..
            } => t.set_binding(TableBinding {
                home: *home,
                remote: *remote,
                spi: *spi,
                expires: Some(deadline(*expires, now, mono)),
            })?,
            Action::RemoveBinding { .. } => t.remove_binding(),
            Action::RemoveTunnel { spi } => match t.remove_tunnel(*spi) {
                Err(TableError::TunnelInUse { .. }) | Ok(()) => {}
                Err(e) => return Err(e),
            },
        }
    }
    Ok(())
}

/// The running TUN data plane.
pub struct TunPlane {
    rtnl: Rtnl,
    table: SharedTable,
    mtu: u16,
    fwd: Option<Forwarder>,
    /// What was installed, to remove on stop.
    installed: Routing,
}

impl TunPlane {
    /// Removes the rules a killed run left, creates the device with `home`,
    /// binds the tunnel socket, starts the forwarder and installs routes and
    /// rules. On failure, what was set up is removed again. It blocks
    /// (rtnetlink, device setup): async callers run it on `spawn_blocking`.
    pub fn start(
        d: &DataplaneSection,
        home: Ipv4Addr,
        bypass: &[Ipv4Addr],
    ) -> anyhow::Result<Self> {
        let prefixes = d
            .routes
            .iter()
            .map(|r| r.parse::<Prefix>())
            .collect::<Result<Vec<_>, _>>()
            .context("dataplane.routes")?;
        let rtnl = Rtnl::new().context("starting rtnetlink")?;
        // The TUN device, and with it its routes, died with a killed run;
        // its rules did not.
        match route::remove_stale_rules(&rtnl) {
            Ok(0) => {}
            Ok(n) => info!(rules = n, "removed the policy rules an earlier run left"),
            Err(e) => warn!(error = %e, "looking for policy rules an earlier run left"),
        }
        let dev = tunnel::create_tun(&d.tun_name, d.tunnel_mtu, Some((home, 32)))?;
        // The tunnel is IPv4 only: without IPv6 on the device, IPv6
        // applications fail at once instead of being dropped in the tunnel.
        let v6 = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", d.tun_name);
        if let Err(e) = std::fs::write(&v6, "1") {
            warn!(error = %e, path = %v6, "could not disable IPv6 on the TUN device");
        }
        let sock = tunnel::bind_tunnel_socket(Ipv4Addr::UNSPECIFIED)?;
        let table = TunnelTable::default().shared();
        let fwd = Forwarder::spawn(dev, sock, table.clone())?;
        let oif = fwd.tun_index()?;
        let want = routing(&prefixes, oif, home, d.route_table, d.rule_priority, bypass);
        let mut plane = Self {
            rtnl,
            table,
            mtu: d.tunnel_mtu,
            fwd: Some(fwd),
            installed: Routing {
                routes: Vec::new(),
                rules: Vec::new(),
            },
        };
        for r in &want.routes {
            route::add_route(&plane.rtnl, r).with_context(|| {
                format!(
                    "adding route {} dev {} table {}",
                    r.dst, d.tun_name, r.table
                )
            })?;
            plane.installed.routes.push(*r);
        }
        for r in &want.rules {
            route::add_rule(&plane.rtnl, r).with_context(|| format!("adding policy rule {r:?}"))?;
            plane.installed.rules.push(*r);
        }
        Ok(plane)
    }

    pub fn apply(&self, actions: &[Action], now: SystemTime) -> Result<(), TableError> {
        apply_actions(&self.table, actions, self.mtu, now)
    }

    /// The forwarder's counters by name.
    pub fn counters(&self) -> BTreeMap<&'static str, u64> {
        self.fwd
            .as_ref()
            .map(|f| f.counters().snapshot().into_iter().collect())
            .unwrap_or_default()
    }

    /// The binding the forwarder sends with, and the installed SPIs.
    pub fn state(&self) -> (Option<TableBinding>, Vec<u32>) {
        let t = table::read(&self.table);
        (t.binding(), t.spis())
    }

    fn teardown(&mut self) {
        for r in self.installed.rules.drain(..).rev() {
            if let Err(e) = route::remove_rule(&self.rtnl, &r) {
                warn!(error = %e, rule = ?r, "removing a policy rule");
            }
        }
        for r in self.installed.routes.drain(..) {
            if let Err(e) = route::remove_route(&self.rtnl, &r) {
                warn!(error = %e, dst = %r.dst, "removing a TUN route");
            }
        }
        if let Some(f) = self.fwd.take() {
            f.stop();
        }
    }

    /// Removes rules and routes, stops the forwarder and closes the device.
    /// Returns the final counters as JSON.
    pub fn stop(mut self) -> String {
        let json = self
            .fwd
            .as_ref()
            .map(|f| f.counters().to_json())
            .unwrap_or_default();
        self.teardown();
        json
    }
}

impl Drop for TunPlane {
    fn drop(&mut self) {
        self.teardown();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use roamgate_mip::{MasterKey, Role, TunnelInstall};
    use roamgate_testkit::frame::FrameBuilder;

    use super::*;
    use crate::tunnel::core::UDP_PAYLOAD_OFFSET;

    const HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
    const KDC: Ipv4Addr = Ipv4Addr::new(10, 1, 1, 2);
    const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 50);
    const COA: Ipv4Addr = Ipv4Addr::new(10, 2, 0, 2);
    const CN: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

    #[test]
    fn routing_for_a_default_route_and_for_prefixes() {
        let all: Vec<Prefix> = vec!["0.0.0.0/0".parse().unwrap()];
        let r = routing(&all, 7, HOME, 434, 4340, &[HA, KDC]);
        assert_eq!(
            r.routes,
            vec![DevRoute {
                dst: all[0],
                oif: 7,
                prefsrc: Some(HOME),
                table: 434
            }]
        );
        type Summary = (u32, Option<Prefix>, Option<Prefix>, u32, Option<u32>);
        let summary: Vec<Summary> = r
            .rules
            .iter()
            .map(|x| (x.priority, x.from, x.to, x.table, x.suppress_prefixlength))
            .collect();
        let any = Some(Prefix::host(Ipv4Addr::UNSPECIFIED));
        assert_eq!(
            summary,
            vec![
                (4340, None, Some(Prefix::host(HA)), 254, None),
                (4340, None, Some(Prefix::host(KDC)), 254, None),
                (4341, None, None, 254, Some(0)),
                // Not from the care-of address: that goes out directly.
                (4342, any, None, 434, None),
                (4342, Some(Prefix::host(HOME)), None, 434, None),
            ]
        );
        // Specific prefixes: no suppression rule, the TUN table wins for
        // them.
        let some: Vec<Prefix> = vec!["10.1.0.0/16".parse().unwrap()];
        let r = routing(&some, 7, HOME, 1000, 100, &[HA]);
        assert_eq!(r.rules.len(), 3);
        assert_eq!(r.rules[1].table, 1000);
        assert_eq!(r.routes[0].dst.len, 16);
    }

    /// The core's actions key the table with the same keys as the XDP maps:
    /// a home agent keyed through `derive_keys` verifies what it sends.
    #[test]
    fn actions_key_the_table_like_the_maps() {
        let now = SystemTime::now();
        let table = TunnelTable::default().shared();
        let master = [9u8; 32];
        let spi = 0x4242;
        let install = Action::InstallTunnel(TunnelInstall {
            spi,
            role: Role::CareOf,
            local: COA,
            remote: HA,
            home: HOME,
            master_key: MasterKey::new(master),
            expires: now + Duration::from_secs(60),
        });
        let bind = Action::SetBinding {
            home: HOME,
            role: Role::CareOf,
            remote: HA,
            spi,
            expires: now + Duration::from_secs(30),
            reverse_tunnel: true,
        };
        apply_actions(&table, std::slice::from_ref(&install), 1500, now).unwrap();
        let inner = FrameBuilder::new()
            .ipv4(HOME, CN)
            .udp(1, 2)
            .payload_len(20)
            .build_l3();
        let mut out = vec![0u8; 2048];
        let mono = Instant::now();
        // Installed but not bound: the receive side only.
        assert_eq!(
            table::read(&table).encap(&inner, &mut out, mono),
            Err(crate::tunnel::core::DropReason::NoBinding)
        );
        apply_actions(&table, std::slice::from_ref(&bind), 1500, now).unwrap();
        let (n, r) = table::read(&table).encap(&inner, &mut out, mono).unwrap();
        assert_eq!((r.local, r.remote), (COA, HA));
        // The home agent's side as the XDP path keys it.
        let mut ha = TunnelTable::default();
        let hk = derive_keys(&MasterKey::new(master), spi, HOME, Role::HomeAgent);
        ha.install(&TableTunnel {
            spi,
            role: Role::HomeAgent,
            local: HA,
            remote: COA,
            home: HOME,
            keys: &hk,
            mtu: 1500,
            expires: None,
        })
        .unwrap();
        let mut rx = vec![0u8; 2048];
        rx[UDP_PAYLOAD_OFFSET..n].copy_from_slice(&out[UDP_PAYLOAD_OFFSET..n]);
        let got = ha
            .decap_udp(COA, 434, &mut rx, n - UDP_PAYLOAD_OFFSET, mono)
            .unwrap();
        assert_eq!(&rx[got], &inner[..]);
        // Expiry follows the core's wall-clock deadline.
        assert_eq!(
            table::read(&table).encap(&inner, &mut out, mono + Duration::from_secs(31)),
            Err(crate::tunnel::core::DropReason::Expired)
        );
        // A second install of the same SPI is refused; removal of the bound
        // tunnel is deferred, the binding first.
        assert_eq!(
            apply_actions(&table, &[install], 1500, now),
            Err(TableError::SpiInUse { spi })
        );
        apply_actions(&table, &[Action::RemoveTunnel { spi }], 1500, now).unwrap();
        assert_eq!(table::read(&table).spis(), vec![spi]);
        apply_actions(
            &table,
            &[
                Action::RemoveBinding {
                    home: HOME,
                    role: Role::CareOf,
                },
                Action::RemoveTunnel { spi },
            ],
            1500,
            now,
        )
        .unwrap();
        assert!(table::read(&table).spis().is_empty());
        assert_eq!(table::read(&table).binding(), None);
    }
}
