//! Rollbacks that did not complete, kept as work to retry.
//!
//! When the home agent takes back a registration it could not commit
//! (`HomeAgent::rollback`), the undo itself has two parts that can fail: the
//! data-plane actions (restore or remove the binding, then remove the
//! tunnels the request installed) and the journal op that records the
//! binding as the core now has it. Until both are done the maps or the
//! journal disagree with the binding cache, so what is left is kept here,
//! per home address, and retried on the engine's tick with a doubling
//! backoff. Pending work is in memory only: after a restart the journal is
//! the truth and `Engine::restore` reconciles the maps with it.
//!
//! Ordering with later work for the same home address:
//! - journal: every journal write of the engine puts the pending ops first
//!   in its transaction, so a newer op for the same home address lands
//!   after (and wins over) the pending one, and a successful write clears
//!   them all;
//! - data plane: a later outcome whose binding action for that home address
//!   was applied supersedes the pending binding action (which would clobber
//!   it); the pending tunnel removals stay, since the core no longer knows
//!   those tunnels and nothing else would remove them.

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, SystemTime},
};

use roamgate_mip::{journal::JournalOp, Action};

/// The first retry comes this long after the failure.
pub const ROLLBACK_RETRY_FIRST: Duration = Duration::from_secs(1);
/// The retry interval doubles up to this.
pub const ROLLBACK_RETRY_MAX: Duration = Duration::from_secs(60);

/// What is left of the rollbacks of one home address.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PendingUndo {
    /// The binding as the core has it (`SetBinding`) or its removal
    /// (`RemoveBinding`), not yet in the maps.
    pub binding: Option<Action>,
    /// Tunnels the failed requests installed, not yet removed.
    pub tunnels: Vec<u32>,
    /// The journal op recording the core's binding, not yet written.
    pub journal: Option<JournalOp>,
    /// Failed attempts so far (the rollback's own included).
    pub attempts: u32,
}

impl PendingUndo {
    /// The data-plane actions left, in the safe order (binding first, so
    /// no tunnel is removed while a binding still points at it).
    pub fn actions(&self) -> Vec<Action> {
        self.binding
            .iter()
            .cloned()
            .chain(self.tunnels.iter().map(|&spi| Action::RemoveTunnel { spi }))
            .collect()
    }

    /// Keeps only `left`, the suffix of [`PendingUndo::actions`] that was
    /// not applied.
    pub fn set_actions_left(&mut self, left: &[Action]) {
        self.binding = None;
        self.tunnels.clear();
        for a in left {
            match a {
                Action::RemoveTunnel { spi } => self.tunnels.push(*spi),
                other => self.binding = Some(other.clone()),
            }
        }
    }

    fn is_done(&self) -> bool {
        self.binding.is_none() && self.tunnels.is_empty() && self.journal.is_none()
    }
}

/// The pending rollbacks of the engine, and when to retry them.
#[derive(Debug, Default)]
pub struct PendingRollbacks {
    by_home: BTreeMap<Ipv4Addr, PendingUndo>,
    backoff: Duration,
    retry_at: Option<SystemTime>,
}

impl PendingRollbacks {
    /// Home addresses with work left (the `rollbacks_pending` gauge).
    pub fn len(&self) -> usize {
        self.by_home.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_home.is_empty()
    }

    pub fn get(&self, home: Ipv4Addr) -> Option<&PendingUndo> {
        self.by_home.get(&home)
    }

    /// When the next retry is due (None: nothing pending).
    pub fn retry_at(&self) -> Option<SystemTime> {
        self.retry_at
    }

    pub fn due(&self, now: SystemTime) -> bool {
        self.retry_at.is_some_and(|t| t <= now)
    }

    /// Records what a rollback of `home` left undone: `actions` (the
    /// rollback's actions the maps did not apply) and `journal` (its op,
    /// if the write failed). A newer rollback's binding action and journal
    /// op replace older ones: each records the core's binding as it is
    /// now. Tunnel removals accumulate.
    pub fn record(
        &mut self,
        home: Ipv4Addr,
        actions: &[Action],
        journal: Option<JournalOp>,
        now: SystemTime,
    ) {
        let p = self.by_home.entry(home).or_default();
        p.attempts += 1;
        for a in actions {
            match a {
                Action::RemoveTunnel { spi } => {
                    if !p.tunnels.contains(spi) {
                        p.tunnels.push(*spi);
                    }
                }
                other => p.binding = Some(other.clone()),
            }
        }
        if journal.is_some() {
            p.journal = journal;
        }
        if p.is_done() {
            self.by_home.remove(&home);
        }
        if self.retry_at.is_none() && !self.by_home.is_empty() {
            self.backoff = ROLLBACK_RETRY_FIRST;
            self.retry_at = Some(now + self.backoff);
        }
    }

    /// The pending journal ops, to go first in the next journal write.
    pub fn journal_ops(&self) -> Vec<JournalOp> {
        self.by_home
            .values()
            .filter_map(|p| p.journal.clone())
            .collect()
    }

    /// A journal write that began with [`PendingRollbacks::journal_ops`]
    /// committed. Returns the home addresses whose rollback is now
    /// complete, with their attempt counts.
    pub fn journal_written(&mut self) -> Vec<(Ipv4Addr, u32)> {
        for p in self.by_home.values_mut() {
            p.journal = None;
        }
        self.take_done()
    }

    /// A later outcome's actions `applied` took effect in the maps: a
    /// binding action for a pending home address replaces the pending one,
    /// and a tunnel it installed is no longer one to remove (the core
    /// reused its SPI). Returns the rollbacks now complete.
    pub fn superseded_by(&mut self, applied: &[Action]) -> Vec<(Ipv4Addr, u32)> {
        if self.by_home.is_empty() {
            return Vec::new();
        }
        for a in applied {
            match a {
                Action::SetBinding { home, .. } | Action::RemoveBinding { home, .. } => {
                    if let Some(p) = self.by_home.get_mut(home) {
                        p.binding = None;
                    }
                }
                Action::InstallTunnel(t) => {
                    for p in self.by_home.values_mut() {
                        p.tunnels.retain(|&s| s != t.spi);
                    }
                }
                Action::RemoveTunnel { .. } => {}
            }
        }
        self.take_done()
    }

    /// The home addresses with data-plane work left, and that work.
    pub fn data_plane_work(&self) -> Vec<(Ipv4Addr, Vec<Action>)> {
        self.by_home
            .iter()
            .map(|(h, p)| (*h, p.actions()))
            .filter(|(_, a)| !a.is_empty())
            .collect()
    }

    /// After a retry of `home`'s data-plane work: `left` is what is still
    /// not applied.
    pub fn data_plane_retried(&mut self, home: Ipv4Addr, left: &[Action]) {
        if let Some(p) = self.by_home.get_mut(&home) {
            p.set_actions_left(left);
        }
    }

    /// Ends a retry at `now`: the rollbacks now complete are returned; if
    /// work is left, the next retry waits twice as long as the last one
    /// (at most [`ROLLBACK_RETRY_MAX`]) and every pending home's attempt
    /// count goes up.
    pub fn retry_done(&mut self, now: SystemTime) -> Vec<(Ipv4Addr, u32)> {
        let done = self.take_done();
        if !self.by_home.is_empty() {
            for p in self.by_home.values_mut() {
                p.attempts += 1;
            }
            self.backoff = (self.backoff * 2).clamp(ROLLBACK_RETRY_FIRST, ROLLBACK_RETRY_MAX);
            self.retry_at = Some(now + self.backoff);
        }
        done
    }

    fn take_done(&mut self) -> Vec<(Ipv4Addr, u32)> {
        let done: Vec<(Ipv4Addr, u32)> = self
            .by_home
            .iter()
            .filter(|(_, p)| p.is_done())
            .map(|(h, p)| (*h, p.attempts))
            .collect();
        for (h, _) in &done {
            self.by_home.remove(h);
        }
        if self.by_home.is_empty() {
            self.retry_at = None;
            self.backoff = Duration::ZERO;
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use roamgate_mip::Role;

    const H: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
    const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);

    fn set(spi: u32) -> Action {
        Action::SetBinding {
            home: H,
            role: Role::HomeAgent,
            remote: COA,
            spi,
            expires: SystemTime::UNIX_EPOCH,
            reverse_tunnel: true,
        }
    }

    #[test]
    fn a_newer_rollback_replaces_the_binding_action_and_adds_tunnels() {
        let now = SystemTime::now();
        let mut p = PendingRollbacks::default();
        p.record(H, &[set(1), Action::RemoveTunnel { spi: 2 }], None, now);
        assert_eq!(p.len(), 1);
        assert_eq!(p.retry_at(), Some(now + ROLLBACK_RETRY_FIRST));
        p.record(H, &[set(1), Action::RemoveTunnel { spi: 3 }], None, now);
        assert_eq!(p.len(), 1);
        assert_eq!(
            p.get(H).unwrap().actions(),
            vec![
                set(1),
                Action::RemoveTunnel { spi: 2 },
                Action::RemoveTunnel { spi: 3 }
            ]
        );
        assert_eq!(p.get(H).unwrap().attempts, 2);
    }

    #[test]
    fn a_later_binding_supersedes_the_pending_one_but_not_its_tunnel_removals() {
        let now = SystemTime::now();
        let mut p = PendingRollbacks::default();
        p.record(H, &[set(1), Action::RemoveTunnel { spi: 2 }], None, now);
        assert!(p.superseded_by(&[set(4)]).is_empty());
        assert_eq!(
            p.get(H).unwrap().actions(),
            vec![Action::RemoveTunnel { spi: 2 }]
        );
        p.data_plane_retried(H, &[]);
        assert_eq!(p.retry_done(now), vec![(H, 1)]);
        assert!(p.is_empty());
        assert_eq!(p.retry_at(), None);
    }

    #[test]
    fn retries_back_off_and_a_journal_write_completes_the_rollback() {
        let t0 = SystemTime::now();
        let mut p = PendingRollbacks::default();
        let op = JournalOp::RemoveBinding(H);
        p.record(H, &[], Some(op.clone()), t0);
        assert_eq!(p.journal_ops(), vec![op]);
        let mut at = t0 + ROLLBACK_RETRY_FIRST;
        let mut waits = Vec::new();
        for _ in 0..8 {
            assert!(p.due(at));
            assert!(p.retry_done(at).is_empty());
            let next = p.retry_at().unwrap();
            waits.push(next.duration_since(at).unwrap().as_secs());
            at = next;
        }
        assert_eq!(waits, vec![2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(p.journal_written(), vec![(H, 9)]);
        assert!(p.is_empty());
        assert_eq!(p.retry_at(), None);
    }
}
