//! Taking back an accepted request that the daemon could not journal or
//! apply ([`HomeAgent::rollback`]).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::time::SystemTime;

use super::{Binding, HomeAgent, Outcome, Rejection};
use crate::journal::JournalOp;
use crate::wire::{code, RequestRepr};
use crate::{Action, Role};

/// What an accepted registration or deregistration changed in the binding
/// cache, so that [`HomeAgent::rollback`] can take it back. Opaque; its
/// `Debug` never shows a key (the binding's master key redacts itself).
#[derive(Debug)]
pub struct Undo {
    repr: RequestRepr,
    /// The MN-HA SPI the request was authenticated with (for the reply).
    auth_spi: u32,
    deregistration: bool,
    /// The node's binding before the request.
    previous: Option<Binding>,
    /// The node's tunnels in their grace period before the request.
    retiring: Vec<(SystemTime, Ipv4Addr, u32)>,
}

impl Undo {
    /// The home address whose binding the request changed.
    pub fn home(&self) -> Ipv4Addr {
        self.repr.home_address
    }
}

impl HomeAgent {
    /// The node's binding state before an accepted request changes it.
    pub(super) fn undo_point(
        &self,
        repr: &RequestRepr,
        auth_spi: u32,
        deregistration: bool,
    ) -> Undo {
        let home = repr.home_address;
        Undo {
            repr: *repr,
            auth_spi,
            deregistration,
            previous: self.bindings.get(&home).cloned(),
            retiring: self
                .retiring
                .iter()
                .filter(|(_, h, _)| *h == home)
                .copied()
                .collect(),
        }
    }

    /// Takes back an accepted registration or deregistration whose journal
    /// write or data-plane actions failed. `applied` is the prefix of that
    /// outcome's actions the data plane did apply (empty when the journal
    /// failed, since the journal comes first).
    ///
    /// The node's binding and grace-period tunnels return to what they were
    /// before the request, except tunnels the data plane already removed
    /// (they cannot come back with their sequence numbers). The returned
    /// outcome holds:
    /// - the actions that undo `applied` in the safe order: the binding is
    ///   restored (or removed) first, then the tunnels the request installed
    ///   are removed, so nothing is ever sent into a missing tunnel;
    /// - one journal op that records the node's binding as it is now;
    /// - the reply, 130 (insufficient resources, RFC 5944 §3.4): the home
    ///   agent could not commit the binding for a reason of its own (a full
    ///   map, a failed disk write), not because of anything in the request,
    ///   and the node may try again later. 128 (reason unspecified) would
    ///   tell the node less; the other codes name faults of the request.
    pub fn rollback(&mut self, undo: Undo, applied: &[Action], now: SystemTime) -> Outcome {
        let home = undo.repr.home_address;
        let mut out = Outcome::default();
        let removed: HashSet<u32> = applied
            .iter()
            .filter_map(|a| match a {
                Action::RemoveTunnel { spi } => Some(*spi),
                _ => None,
            })
            .collect();
        let binding_touched = applied.iter().any(|a| {
            matches!(a, Action::SetBinding { home: h, .. } | Action::RemoveBinding { home: h, .. } if *h == home)
        });
        let restorable = undo.previous.filter(|b| !removed.contains(&b.spi));
        if binding_touched {
            out.actions.push(match &restorable {
                Some(b) => Action::SetBinding {
                    home,
                    role: Role::HomeAgent,
                    remote: b.care_of,
                    spi: b.spi,
                    expires: b.expires,
                    reverse_tunnel: b.reverse_tunnel,
                },
                None => Action::RemoveBinding {
                    home,
                    role: Role::HomeAgent,
                },
            });
        }
        for a in applied.iter().rev() {
            if let Action::InstallTunnel(t) = a {
                if restorable.as_ref().map(|b| b.spi) != Some(t.spi) {
                    out.actions.push(Action::RemoveTunnel { spi: t.spi });
                }
            }
        }
        // The binding cache as the request found it.
        if let Some(cur) = self.bindings.remove(&home) {
            self.spis.remove(&cur.spi);
        }
        let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut self.retiring)
            .into_iter()
            .partition(|(_, h, _)| *h == home);
        self.retiring = others;
        for (_, _, spi) in mine {
            self.spis.remove(&spi);
        }
        for r in undo.retiring {
            if !removed.contains(&r.2) {
                self.spis.insert(r.2);
                self.retiring.push(r);
            }
        }
        match restorable {
            Some(b) => {
                self.spis.insert(b.spi);
                out.journal.push(JournalOp::PutBinding(b.clone()));
                self.bindings.insert(home, b);
            }
            None => out.journal.push(JournalOp::RemoveBinding(home)),
        }
        if undo.deregistration {
            self.stats.deregistered = self.stats.deregistered.saturating_sub(1);
        } else {
            self.stats.accepted = self.stats.accepted.saturating_sub(1);
        }
        self.stats.apply_failed += 1;
        self.stats.rejected += 1;
        out.rejection = Some(Rejection::ApplyFailed);
        self.reply(
            &mut out,
            &undo.repr,
            Some(undo.auth_spi),
            code::INSUFFICIENT_RESOURCES,
            0,
            now,
        );
        out
    }
}
