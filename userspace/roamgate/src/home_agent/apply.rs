//! Applies the protocol cores' [`Action`]s to the pinned data-plane maps
//! through `dataplane::maps` (shared by the home agent and the mobile node).
//!
//! The cores already emit actions in the safe order (tunnel before binding,
//! binding removal before tunnel removal); this layer keeps that order and
//! only translates types and clocks: the cores speak `SystemTime`, the XDP
//! program compares `CLOCK_BOOTTIME` nanoseconds.

use std::time::SystemTime;

use roamgate_mip::Action;

use crate::dataplane::maps::{Binding, Expiry, Maps, MapsError, Role, TunnelSpec};

/// What one applied action changed, for the caller's side effects (proxy
/// ARP on the home link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    BindingSet {
        home: std::net::Ipv4Addr,
        role: Role,
    },
    BindingRemoved {
        home: std::net::Ipv4Addr,
        role: Role,
    },
    Other,
}

/// A wall-clock instant as a data-plane expiry (`CLOCK_BOOTTIME`).
pub fn expiry(at: SystemTime, now: SystemTime) -> Expiry {
    Expiry::after(at.duration_since(now).unwrap_or_default())
}

/// Applies `actions` in order. Stops at the first failure: a later action
/// may depend on an earlier one (a binding on its tunnel).
pub fn apply(
    maps: &mut Maps,
    actions: &[Action],
    mtu: u16,
    now: SystemTime,
) -> Result<Vec<Applied>, MapsError> {
    match apply_prefix(maps, actions, mtu, now) {
        (done, None) => Ok(done),
        (_, Some(e)) => Err(e),
    }
}

/// Like [`apply`], but also says how far it got: one [`Applied`] per action
/// that took effect (so `done.len()` actions are the applied prefix), and
/// the error of the first one that did not.
pub fn apply_prefix(
    maps: &mut Maps,
    actions: &[Action],
    mtu: u16,
    now: SystemTime,
) -> (Vec<Applied>, Option<MapsError>) {
    let mut done = Vec::with_capacity(actions.len());
    for a in actions {
        match a {
            Action::InstallTunnel(t) => {
                let mut spec = TunnelSpec::new(t.spi, t.role, t.local, t.home, &t.master_key);
                spec.mtu = mtu;
                spec.expires = expiry(t.expires, now);
                if let Err(e) = maps.install_tunnel(&spec) {
                    return (done, Some(e));
                }
                done.push(Applied::Other);
            }
            Action::SetBinding {
                home,
                role: r,
                remote,
                spi,
                expires,
                ..
            } => {
                if let Err(e) = maps.set_binding(&Binding {
                    home: *home,
                    role: *r,
                    remote: *remote,
                    spi: *spi,
                    expires: expiry(*expires, now),
                }) {
                    return (done, Some(e));
                }
                done.push(Applied::BindingSet {
                    home: *home,
                    role: *r,
                });
            }
            Action::RemoveBinding { home, role: r } => {
                if let Err(e) = maps.remove(*home, *r) {
                    // `remove` takes the binding out before its tunnel: when
                    // only the tunnel part failed, the binding is gone.
                    let still_bound = maps.list().map_or(true, |l| {
                        l.iter()
                            .any(|s| s.binding.home == *home && s.binding.role == *r)
                    });
                    if !still_bound {
                        done.push(Applied::BindingRemoved {
                            home: *home,
                            role: *r,
                        });
                    }
                    return (done, Some(e));
                }
                done.push(Applied::BindingRemoved {
                    home: *home,
                    role: *r,
                });
            }
            Action::RemoveTunnel { spi } => {
                match maps.remove_tunnel(*spi) {
                    // Still referenced (a newer binding reuses it): keep it.
                    Ok(()) | Err(MapsError::TunnelInUse { .. }) => {}
                    Err(e) => return (done, Some(e)),
                }
                done.push(Applied::Other);
            }
        }
    }
    (done, None)
}
