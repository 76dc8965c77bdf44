//! `roamgate home-agent`: the RFC 5944 home agent daemon.
//!
//! A thin tokio layer around the I/O-free core of `roamgate_mip::home_agent`:
//! - UDP 434 in, Registration Replies out;
//! - each outcome is applied in the order the core's contract names:
//!   journal (SQLite, 0600) first, then the data-plane actions through
//!   `dataplane::maps` (tunnel before binding, binding removal before tunnel
//!   removal), then the proxy ARP entry and gratuitous ARP on the home
//!   link, and only then the reply is sent;
//! - if the journal write or a map update fails, the accepted request is
//!   rolled back (`HomeAgent::rollback`): the part the maps did apply is
//!   undone (binding restored or removed before its new tunnel goes), the
//!   journal is set back, the node gets 130 instead of "accepted", and
//!   `apply_failed` counts it;
//! - if that undo fails in turn (a map action or the journal write), what is
//!   left is kept ([`pending`]) and retried on the engine's tick with a
//!   doubling backoff: `rollback_failed` counts such rollbacks and the
//!   `rollbacks_pending` gauge shows the home addresses still waiting;
//! - expiry and tunnel retirement run at the core's `next_wakeup`;
//! - the [`Engine`] (core, journal, maps, home link) lives on a thread of its
//!   own ([`engine_thread`]): the tokio loop sends it each batch over a
//!   channel and awaits the replies, and the metrics server and the stats
//!   file read the snapshot it publishes, so no SQLite commit, map syscall
//!   or netlink round-trip runs on the runtime or under a lock.
//!
//! **Forwarding survives the daemon.** The XDP links are *pinned* next to
//! the maps (`<pin_dir>/xdp_link_<iface>`), so the program stays attached
//! and the maps stay populated while the daemon is stopped, killed or
//! restarting. A restarted daemon finds the pinned links and does not
//! attach again, reloads its bindings from the journal, adopts those still
//! in the maps, drops those whose tunnel the maps lost (a reboot: they are
//! never re-installed under their old key, see [`Engine::restore`]) and
//! removes the ones that expired meanwhile. `roamgate home-agent --detach` (or removing the pin
//! files) takes the data plane down on purpose.

pub mod apply;
pub mod bindings;
pub mod config;
pub mod engine_thread;
pub mod pending;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::Arc,
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use bytes::BytesMut;
use roamgate_krb::ap::{KeySet, ServiceKeys};
use roamgate_mip::{
    home_agent::{HomeAgent, Outcome},
    journal::{BindingJournal, JournalOp, SqliteJournal},
    Action, TunnelInstall,
};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::{
    apply::Applied, config::HomeAgentFile, engine_thread::EngineThread, pending::PendingRollbacks,
};
use crate::dataplane::{
    maps::{Maps, Role},
    AttachMode, AttachedLinks, DataPlane,
};
use crate::platform::{neigh, rtnl::Rtnl};

/// Datagrams handled (and journaled) together at most.
pub const MAX_BATCH: usize = 64;

/// The largest UDP datagram: each receive has this much room, so none is
/// truncated.
const MAX_DATAGRAM: usize = 65_536;
/// The receive block the datagrams are split from: registrations are ~100
/// bytes, so one block serves thousands.
const RECV_BLOCK: usize = 4 * MAX_DATAGRAM;

/// Gratuitous ARPs sent per new binding (RFC 5944 §4.6 suggests a few).
pub const GRATUITOUS_ARP_COUNT: usize = 2;

/// The pin file of the XDP link on `iface`.
pub fn link_pin(pin_dir: &Path, iface: &str) -> PathBuf {
    pin_dir.join(format!("xdp_link_{iface}"))
}

/// Makes sure XDP is attached to every interface with a pinned link, so it
/// outlives this process. Returns the data plane if this call loaded it
/// (nothing to do when every link was pinned by an earlier run), and the
/// interfaces it attached with the mode each one got.
pub fn ensure_pinned_xdp(
    pin_dir: &Path,
    interfaces: &[String],
    mode: AttachMode,
) -> anyhow::Result<(Option<DataPlane>, AttachedLinks)> {
    let missing: Vec<&String> = interfaces
        .iter()
        .filter(|i| aya::programs::links::PinnedLink::from_pin(link_pin(pin_dir, i)).is_err())
        .collect();
    if missing.is_empty() {
        if !interfaces.is_empty() {
            info!(pin_dir = %pin_dir.display(), "XDP links already pinned: data plane kept as it is");
        }
        return Ok((None, Vec::new()));
    }
    let mut dp = DataPlane::load(pin_dir)?;
    let mut attached = Vec::new();
    for iface in missing {
        let _ = std::fs::remove_file(link_pin(pin_dir, iface));
        let xdp = dp.xdp_mut()?;
        let (id, used) = crate::dataplane::attach_xdp(xdp, iface, mode)?;
        let link = xdp.take_link(id).context("taking the XDP link")?;
        let fd: aya::programs::links::FdLink = link
            .try_into()
            .context("the kernel attached XDP without a bpf_link (kernel < 5.9?)")?;
        fd.pin(link_pin(pin_dir, iface))
            .with_context(|| format!("pinning the XDP link of {iface}"))?;
        info!(interface = %iface, mode = used.as_str(), "XDP attached, link pinned");
        attached.push((iface.clone(), used));
    }
    Ok((Some(dp), attached))
}

/// Removes the pinned XDP links: the programs detach.
pub fn unpin_xdp(pin_dir: &Path, interfaces: &[String]) {
    for i in interfaces {
        let p = link_pin(pin_dir, i);
        if std::fs::remove_file(&p).is_ok() {
            info!(interface = %i, "XDP link unpinned (detached)");
        }
    }
}

/// Counters of the daemon (never a key or a principal's secret).
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct Metrics {
    pub requests: u64,
    pub accepted: u64,
    pub deregistered: u64,
    /// Deregistrations of a care-of address the binding no longer has.
    pub deregistered_stale: u64,
    pub rejected: u64,
    pub dropped: u64,
    pub expired: u64,
    pub replies_by_code: BTreeMap<u8, u64>,
    pub dataplane_errors: u64,
    pub journal_errors: u64,
    /// Accepted requests rolled back and answered 130 because the journal
    /// or the data plane could not take them.
    pub apply_failed: u64,
    /// Rollbacks whose own undo failed (a map action or the journal
    /// write): kept pending and retried.
    pub rollback_failed: u64,
    /// Home addresses whose rollback is still pending: until it completes
    /// the maps or the journal disagree with the binding cache.
    pub rollbacks_pending: usize,
    pub bindings: usize,
    pub restored_bindings: usize,
    pub reinstalled_bindings: usize,
    /// Journaled bindings dropped at restore because their tunnel was gone
    /// from the pinned maps (a reboot): the node must register again.
    pub restore_tunnel_lost: u64,
    /// Journal rows skipped at restore because they could not be read.
    pub journal_corrupt_rows: u64,
    /// Interfaces this process attached XDP to, with the mode in use
    /// (empty when the links were pinned by an earlier run).
    pub xdp_attached: AttachedLinks,
}

impl Metrics {
    /// The counters in Prometheus text format.
    pub fn prometheus(&self) -> String {
        let mut s = String::new();
        let mut c = |name: &str, v: u64| {
            s.push_str(&format!(
                "# TYPE roamgate_ha_{name}_total counter\nroamgate_ha_{name}_total {v}\n"
            ))
        };
        c("requests", self.requests);
        c("accepted", self.accepted);
        c("deregistered", self.deregistered);
        c("deregistered_stale", self.deregistered_stale);
        c("rejected", self.rejected);
        c("dropped", self.dropped);
        c("expired", self.expired);
        c("dataplane_errors", self.dataplane_errors);
        c("journal_errors", self.journal_errors);
        c("apply_failed", self.apply_failed);
        c("rollback_failed", self.rollback_failed);
        c("restore_tunnel_lost", self.restore_tunnel_lost);
        c("journal_corrupt_rows", self.journal_corrupt_rows);
        s.push_str("# TYPE roamgate_ha_replies_total counter\n");
        for (code, v) in &self.replies_by_code {
            s.push_str(&format!(
                "roamgate_ha_replies_total{{code=\"{code}\"}} {v}\n"
            ));
        }
        s.push_str(&format!(
            "# TYPE roamgate_ha_bindings gauge\nroamgate_ha_bindings {}\n",
            self.bindings
        ));
        s.push_str(&format!(
            "# TYPE roamgate_ha_rollbacks_pending gauge\nroamgate_ha_rollbacks_pending {}\n",
            self.rollbacks_pending
        ));
        if !self.xdp_attached.is_empty() {
            s.push_str(&crate::metrics::xdp_attached(
                self.xdp_attached.iter().map(|(i, m)| (i.as_str(), *m)),
            ));
        }
        s
    }
}

/// The home-link settings of proxy ARP.
#[derive(Debug, Clone, Default)]
pub struct HomeLink {
    pub interface: Option<String>,
    pub route_via: Option<Ipv4Addr>,
}

/// The home agent without sockets: core, journal, maps and home link.
/// The daemon and the benchmark drive it the same way.
pub struct Engine {
    pub core: HomeAgent,
    pub journal: Box<dyn BindingJournal + Send>,
    pub maps: Maps,
    pub mtu: u16,
    pub home_link: HomeLink,
    pub metrics: Metrics,
    proxied: HashSet<Ipv4Addr>,
    /// Rollbacks whose undo did not complete, to retry.
    pending: PendingRollbacks,
    /// The rtnetlink thread, started at the first home-link change.
    rtnl: Option<Rtnl>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("core", &self.core)
            .field("metrics", &self.metrics)
            .finish()
    }
}

impl Engine {
    pub fn new(
        core: HomeAgent,
        journal: Box<dyn BindingJournal + Send>,
        maps: Maps,
        mtu: u16,
        home_link: HomeLink,
    ) -> Self {
        Self {
            core,
            journal,
            maps,
            mtu,
            home_link,
            metrics: Metrics::default(),
            proxied: HashSet::new(),
            pending: PendingRollbacks::default(),
            rtnl: None,
        }
    }

    /// The home link's interface and the rtnetlink handle to program it
    /// with (None without a home link, or if rtnetlink cannot start).
    fn home_link_rtnl(&mut self) -> Option<(String, &Rtnl)> {
        let iface = self.home_link.interface.clone()?;
        if self.rtnl.is_none() {
            match Rtnl::new() {
                Ok(r) => self.rtnl = Some(r),
                Err(e) => {
                    warn!(error = %e, "rtnetlink: proxy ARP entries are not programmed");
                    return None;
                }
            }
        }
        self.rtnl.as_ref().map(|r| (iface, r))
    }

    /// Whether a care-of address is one of this home agent's own: the
    /// node's proxy runs beside the home agent (the home gateway's home
    /// domain), so the node is at home on the home link and answers ARP
    /// for itself.
    fn at_home(&self, care_of: Ipv4Addr) -> bool {
        self.core.config().addresses.contains(&care_of)
    }

    /// The data-plane form of a core's actions: a binding to one of our own
    /// addresses (a unit at home) is no tunnel binding, and setting one
    /// removes the one a foreign care-of address left; so neither the XDP
    /// program nor proxy ARP takes the unit's traffic off the home link.
    /// One action per action, so prefixes line up with the core's.
    fn for_the_plane(&self, actions: &[Action]) -> Vec<Action> {
        actions
            .iter()
            .map(|a| match *a {
                Action::SetBinding {
                    home, role, remote, ..
                } if role == Role::HomeAgent && self.at_home(remote) => {
                    Action::RemoveBinding { home, role }
                }
                ref a => a.clone(),
            })
            .collect()
    }

    /// [`apply::apply_prefix`] of [`Self::for_the_plane`].
    fn apply_prefix(
        &mut self,
        actions: &[Action],
        now: SystemTime,
    ) -> (
        Vec<apply::Applied>,
        Option<crate::dataplane::maps::MapsError>,
    ) {
        let plane = self.for_the_plane(actions);
        apply::apply_prefix(&mut self.maps, &plane, self.mtu, now)
    }

    /// Restores the bindings from the journal, in one walk of the maps:
    /// - a live binding whose tunnel is in the pinned maps (a restart of
    ///   the daemon) is adopted; its binding entry is set again if missing,
    ///   which keeps the tunnel's sequence counter and replay window;
    /// - a live binding whose tunnel is gone (a reboot) is dropped: under
    ///   its journaled key a new tunnel would restart at sequence 1 with an
    ///   empty window, so captured frames would pass again and sequence
    ///   numbers would repeat. The node gets a new key at its next
    ///   registration (`restore_tunnel_lost` counts these);
    /// - expired ones are removed.
    pub fn restore(&mut self, now: SystemTime) -> anyhow::Result<()> {
        let mut state = self.journal.load().context("reading the binding journal")?;
        for row in &state.skipped {
            warn!(table = row.table, key = %row.key, reason = %row.reason,
                "binding journal: unreadable row skipped (left in place; the node's next registration replaces it)");
        }
        self.metrics.journal_corrupt_rows = state.skipped.len() as u64;
        // One walk: home address -> (SPI, tunnel present) of the home
        // agent's bindings in the maps.
        let in_maps: HashMap<Ipv4Addr, (u32, bool)> = self
            .maps
            .list()
            .context("listing the pinned bindings")?
            .into_iter()
            .filter(|s| s.binding.role == Role::HomeAgent)
            .map(|s| (s.binding.home, (s.binding.spi, s.tunnel_present)))
            .collect();
        let tunnel_present = |maps: &Maps, home: Ipv4Addr, spi: u32| -> anyhow::Result<bool> {
            Ok(match in_maps.get(&home) {
                Some(&(s, present)) if s == spi => present,
                _ => maps
                    .tunnel(spi)
                    .with_context(|| format!("looking up tunnel {spi:#x}"))?
                    .is_some(),
            })
        };
        let mut lost = Vec::new();
        let mut kept = Vec::with_capacity(state.bindings.len());
        for r in std::mem::take(&mut state.bindings) {
            if r.expires > now && !tunnel_present(&self.maps, r.home, r.spi)? {
                lost.push(r);
            } else {
                kept.push(r);
            }
        }
        state.bindings = kept;
        let mut ids: HashMap<Ipv4Addr, u64> = state.identifications.iter().copied().collect();
        let mut ops = Vec::with_capacity(2 * lost.len());
        for r in &lost {
            // The registration's Identification stays the node's last
            // accepted one: a replay of it is still refused.
            let id = ids.entry(r.home).or_insert(r.identification);
            *id = (*id).max(r.identification);
            ops.push(JournalOp::Identification {
                home: r.home,
                id: *id,
            });
            ops.push(JournalOp::RemoveBinding(r.home));
        }
        state.identifications = ids.into_iter().collect();
        if !ops.is_empty() {
            // Journal first: a crash now leaves no binding to reinstall.
            self.journal
                .apply(&ops)
                .context("dropping the bindings whose tunnels are gone")?;
        }
        for r in &lost {
            // A proxy entry left by the previous run (the kernel keeps it
            // across a daemon restart) would attract the node's traffic.
            let via = self.home_link.route_via;
            if let Some((iface, rtnl)) = self.home_link_rtnl() {
                neigh::remove_proxy(rtnl, &iface, r.home, via);
            }
            warn!(home = %r.home, care_of = %r.care_of, spi = r.spi,
                "binding dropped at restore: its tunnel is gone from the pinned maps (reboot?), and reinstalling it under the journaled key would repeat sequence numbers; the node gets a new key when it registers again");
        }
        self.metrics.restore_tunnel_lost = lost.len() as u64;
        let lost_in_maps: Vec<(Ipv4Addr, Role)> = lost
            .iter()
            .filter(|r| in_maps.contains_key(&r.home))
            .map(|r| (r.home, Role::HomeAgent))
            .collect();

        let mut out = self.core.restore(state, now);
        // The core only removes (expired bindings): journal first, then
        // all of it, and the lost bindings' entries, in one map walk.
        let n_lost = lost_in_maps.len();
        let (mut which, mut spis) = (lost_in_maps, Vec::new());
        let only_removals = out.actions.iter().all(|a| match *a {
            Action::RemoveBinding { home, role } => {
                which.push((home, role));
                true
            }
            Action::RemoveTunnel { spi } => {
                spis.push(spi);
                true
            }
            _ => false,
        });
        if only_removals {
            if let Err(e) = self.journal.apply(&out.journal) {
                self.metrics.journal_errors += 1;
                warn!(error = %e, "writing the binding journal (expired bindings)");
            }
            if let Err(e) = self.maps.remove_many(&which, &spis) {
                self.metrics.dataplane_errors += 1;
                warn!(error = %e, "removing expired and lost bindings from the maps");
            }
        } else {
            self.commit(&mut out, now);
            if let Err(e) = self.maps.remove_many(&which[..n_lost], &[]) {
                self.metrics.dataplane_errors += 1;
                warn!(error = %e, "removing lost bindings from the maps");
            }
        }
        let restored: Vec<_> = self.core.bindings().cloned().collect();
        self.metrics.restored_bindings = restored.len();
        for b in restored {
            if self.at_home(b.care_of) {
                // Nothing of it in the maps or on the home link (see
                // `for_the_plane`); a foreign binding it replaced is gone.
                let _ = self.maps.remove(b.home, Role::HomeAgent);
                continue;
            }
            let bound = in_maps.get(&b.home) == Some(&(b.spi, true));
            if !bound {
                // Its tunnel is there (checked above): setting the binding
                // again keeps the tunnel's counter and window.
                let actions = [
                    Action::InstallTunnel(TunnelInstall {
                        spi: b.spi,
                        role: Role::HomeAgent,
                        local: b.home_agent,
                        remote: b.care_of,
                        home: b.home,
                        master_key: b.master_key.clone(),
                        expires: b.expires + self.core.config().tunnel_grace,
                    }),
                    Action::SetBinding {
                        home: b.home,
                        role: Role::HomeAgent,
                        remote: b.care_of,
                        spi: b.spi,
                        expires: b.expires,
                        reverse_tunnel: b.reverse_tunnel,
                    },
                ];
                match apply::apply(&mut self.maps, &actions, self.mtu, now) {
                    Ok(_) => self.metrics.reinstalled_bindings += 1,
                    Err(e) => {
                        self.metrics.dataplane_errors += 1;
                        warn!(home = %b.home, error = %e, "re-installing a journaled binding");
                    }
                }
            }
            self.ensure_proxy(b.home, false);
            debug!(home = %b.home, care_of = %b.care_of, spi = b.spi, rebound = !bound, "binding restored");
        }
        self.metrics.bindings = self.core.binding_count();
        Ok(())
    }

    fn ensure_proxy(&mut self, home: Ipv4Addr, announce: bool) {
        if self.home_link.interface.is_none() || self.proxied.contains(&home) {
            return;
        }
        let via = self.home_link.route_via;
        let Some((iface, rtnl)) = self.home_link_rtnl() else {
            return;
        };
        match neigh::add_proxy(rtnl, &iface, home, via) {
            Ok(()) => {
                if announce {
                    if let Err(e) = neigh::gratuitous_arp(rtnl, &iface, home, GRATUITOUS_ARP_COUNT)
                    {
                        warn!(%home, error = %e, "gratuitous ARP");
                    }
                }
                self.proxied.insert(home);
            }
            Err(e) => warn!(%home, error = %format!("{e:#}"), "adding the proxy ARP entry"),
        }
    }

    fn drop_proxy(&mut self, home: Ipv4Addr) {
        if !self.proxied.remove(&home) {
            return;
        }
        let via = self.home_link.route_via;
        if let Some((iface, rtnl)) = self.home_link_rtnl() {
            neigh::remove_proxy(rtnl, &iface, home, via);
        }
    }

    /// Journal, then data plane, then home link: the order of the core's
    /// contract.
    fn commit(&mut self, out: &mut Outcome, now: SystemTime) {
        self.commit_all(std::slice::from_mut(out), now);
    }

    /// The home-link side effects of what the maps did.
    fn follow_home_link(&mut self, done: &[Applied]) {
        for d in done {
            match *d {
                Applied::BindingSet {
                    home,
                    role: Role::HomeAgent,
                } => self.ensure_proxy(home, true),
                Applied::BindingRemoved {
                    home,
                    role: Role::HomeAgent,
                } => self.drop_proxy(home),
                _ => {}
            }
        }
    }

    /// Journal (every outcome's ops in one transaction: a group commit),
    /// then each outcome's data-plane actions in order, then the home link.
    ///
    /// An accepted outcome whose journal write or actions failed is rolled
    /// back in the core: what its actions did apply is undone in the safe
    /// order, the journal is set back, and its reply becomes the core's 130.
    /// A later outcome of the same batch for the same home address is not
    /// applied but rolled back too (it built on the failed one); rollbacks
    /// run newest first, so each restores what the one before it left.
    fn commit_all(&mut self, outs: &mut [Outcome], now: SystemTime) {
        let mut ops: Vec<_> = outs
            .iter()
            .flat_map(|o| o.journal.iter().cloned())
            .collect();
        // Pending rollbacks' ops go first in the same transaction, so a
        // newer op of this batch for the same home address wins.
        let n_pending_ops = if ops.is_empty() {
            0
        } else {
            let p = self.pending.journal_ops();
            let n = p.len();
            ops.splice(0..0, p);
            n
        };
        let journaled = ops.is_empty()
            || match self.journal.apply(&ops) {
                Ok(()) => {
                    if n_pending_ops > 0 {
                        let done = self.pending.journal_written();
                        log_completed(&done, "journal written with the next batch");
                    }
                    true
                }
                Err(e) => {
                    self.metrics.journal_errors += 1;
                    warn!(error = %e, "writing the binding journal");
                    false
                }
            };
        // (outcome index, how many of its actions the maps applied)
        let mut failed: Vec<(usize, usize)> = Vec::new();
        let mut failed_homes: HashSet<Ipv4Addr> = HashSet::new();
        for (i, out) in outs.iter().enumerate() {
            let undo_home = out.undo.as_ref().map(|u| u.home());
            if let Some(home) = undo_home {
                if !journaled || failed_homes.contains(&home) {
                    failed.push((i, 0));
                    failed_homes.insert(home);
                    continue;
                }
            }
            if out.actions.is_empty() {
                continue;
            }
            let (done, err) = self.apply_prefix(&out.actions, now);
            let applied = &out.actions[..done.len().min(out.actions.len())];
            let completed = self.pending.superseded_by(applied);
            log_completed(&completed, "superseded by a later change");
            match (err, undo_home) {
                (None, _) => self.follow_home_link(&done),
                (Some(e), Some(home)) => {
                    self.metrics.dataplane_errors += 1;
                    warn!(%home, error = %e, applied = done.len(), "applying a registration to the data plane");
                    failed.push((i, done.len()));
                    failed_homes.insert(home);
                }
                (Some(e), None) => {
                    self.metrics.dataplane_errors += 1;
                    warn!(error = %e, "applying data-plane actions");
                    self.follow_home_link(&done);
                }
            }
        }
        let mut undo_ops = Vec::new();
        // Per rollback, in the order they ran: its home address, its
        // journal op, and whether its data-plane undo was left pending.
        let mut undone: Vec<(Ipv4Addr, Option<JournalOp>, bool)> = Vec::new();
        for (i, n) in failed.into_iter().rev() {
            let out = &mut outs[i];
            let Some(undo) = out.undo.take() else {
                continue;
            };
            let home = undo.home();
            let rb = self.core.rollback(undo, &out.actions[..n], now);
            out.reply = rb.reply;
            out.code = rb.code;
            out.rejection = rb.rejection;
            // The batch's journal transaction failed: nothing of it was
            // written, so the journal already holds what the rollback
            // would record.
            let rb_journal = if journaled { rb.journal } else { Vec::new() };
            undo_ops.extend(rb_journal.iter().cloned());
            let op = rb_journal.into_iter().last();
            let (done, err) = self.apply_prefix(&rb.actions, now);
            let n_done = done.len().min(rb.actions.len());
            let completed = self.pending.superseded_by(&rb.actions[..n_done]);
            log_completed(&completed, "superseded by a rollback");
            // Recorded now, not after the loop: the older rollbacks that
            // run next supersede it where they set the same binding.
            let left = &rb.actions[n_done..];
            if let Some(e) = err {
                self.metrics.dataplane_errors += 1;
                warn!(%home, error = %e, "undoing a failed registration in the data plane: kept pending, retried");
                self.pending.record(home, left, None, now);
            }
            self.follow_home_link(&done);
            undone.push((home, op, !left.is_empty()));
            warn!(%home, code = ?out.code, "registration not committed: rolled back");
        }
        let mut undo_journal_failed = false;
        if !undo_ops.is_empty() {
            if let Err(e) = self.journal.apply(&undo_ops) {
                self.metrics.journal_errors += 1;
                undo_journal_failed = true;
                warn!(error = %e, "writing the binding journal after a rollback: kept pending, retried");
            }
        }
        // In the order they ran: the last op recorded for a home address
        // is the one the failed write would have left in the journal.
        for (home, op, dp_left) in undone {
            let op = op.filter(|_| undo_journal_failed);
            if op.is_none() && !dp_left {
                continue;
            }
            self.metrics.rollback_failed += 1;
            if op.is_some() {
                self.pending.record(home, &[], op, now);
            }
        }
        self.metrics.rollbacks_pending = self.pending.len();
    }

    /// Retries the pending rollbacks: their journal ops in one write, then
    /// each home address's data-plane actions. What still fails waits for
    /// the next retry (a longer wait each time).
    fn retry_rollbacks(&mut self, now: SystemTime) {
        let ops = self.pending.journal_ops();
        if !ops.is_empty() {
            match self.journal.apply(&ops) {
                Ok(()) => {
                    let done = self.pending.journal_written();
                    log_completed(&done, "journal write retried");
                }
                Err(e) => {
                    self.metrics.journal_errors += 1;
                    warn!(error = %e, pending = ops.len(), "retrying a rollback's journal write");
                }
            }
        }
        for (home, actions) in self.pending.data_plane_work() {
            let (done, err) = self.apply_prefix(&actions, now);
            if let Some(e) = err {
                self.metrics.dataplane_errors += 1;
                warn!(%home, error = %e, "retrying a rollback in the data plane");
            }
            self.follow_home_link(&done);
            self.pending
                .data_plane_retried(home, &actions[done.len().min(actions.len())..]);
        }
        let done = self.pending.retry_done(now);
        log_completed(&done, "retried");
        if let Some(at) = self.pending.retry_at() {
            let wait = at.duration_since(now).unwrap_or_default();
            warn!(
                pending = self.pending.len(),
                next_retry_s = wait.as_secs(),
                "rollbacks still pending"
            );
        }
        self.metrics.rollbacks_pending = self.pending.len();
    }

    /// The rollbacks whose undo is still to be retried.
    pub fn pending_rollbacks(&self) -> &PendingRollbacks {
        &self.pending
    }

    /// When [`Engine::poll`] next has something to do: the core's timers
    /// and the retry of pending rollbacks.
    pub fn next_wakeup(&self) -> Option<SystemTime> {
        match (self.core.next_wakeup(), self.pending.retry_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Handles one datagram; returns the reply to send to `src`.
    pub fn handle(&mut self, bytes: &[u8], src: IpAddr, now: SystemTime) -> Option<Vec<u8>> {
        self.handle_batch(&[(bytes, src)], now).pop().flatten()
    }

    /// Handles datagrams received together: each through the core in
    /// arrival order, then one journal transaction for all of them, then
    /// their data-plane actions; the replies (in order) may only be sent
    /// after this returns.
    pub fn handle_batch(
        &mut self,
        reqs: &[(&[u8], IpAddr)],
        now: SystemTime,
    ) -> Vec<Option<Vec<u8>>> {
        let before = self.core.stats();
        let mut outs: Vec<Outcome> = reqs
            .iter()
            .map(|(bytes, src)| self.core.handle_request(bytes, *src, now))
            .collect();
        self.metrics.requests += reqs.len() as u64;
        self.commit_all(&mut outs, now);
        let after = self.core.stats();
        self.metrics.accepted = after.accepted;
        self.metrics.deregistered = after.deregistered;
        self.metrics.deregistered_stale = after.deregistered_stale;
        self.metrics.rejected = after.rejected;
        self.metrics.dropped = after.dropped;
        self.metrics.expired = after.expired;
        self.metrics.apply_failed = after.apply_failed;
        self.metrics.bindings = self.core.binding_count();
        if after.deregistered > before.deregistered {
            info!(n = after.deregistered - before.deregistered, "deregistered");
        }
        outs.into_iter()
            .zip(reqs)
            .map(|(out, (_, src))| {
                if let Some(c) = out.code {
                    *self.metrics.replies_by_code.entry(c).or_default() += 1;
                }
                if let Some(r) = &out.rejection {
                    info!(%src, code = ?out.code, reason = ?r, "registration rejected");
                } else if let Some(d) = &out.dropped {
                    debug!(%src, reason = ?d, "request dropped");
                }
                out.reply
            })
            .collect()
    }

    /// Retries pending rollbacks that are due, then expires bindings and
    /// retires tunnels whose time has come.
    pub fn poll(&mut self, now: SystemTime) {
        if self.pending.due(now) {
            self.retry_rollbacks(now);
        }
        let mut out = self.core.poll(now);
        self.commit(&mut out, now);
        let s = self.core.stats();
        if s.expired > self.metrics.expired {
            info!(
                expired = s.expired - self.metrics.expired,
                "bindings expired"
            );
        }
        self.metrics.expired = s.expired;
        self.metrics.bindings = self.core.binding_count();
    }

    /// Removes every proxy entry (clean shutdown with --detach).
    pub fn clear_home_link(&mut self) {
        for h in self.proxied.clone() {
            self.drop_proxy(h);
        }
    }
}

/// Logs the pending rollbacks that just completed.
fn log_completed(done: &[(Ipv4Addr, u32)], how: &str) {
    for (home, attempts) in done {
        info!(%home, attempts, how, "pending rollback completed: maps and journal match the binding cache again");
    }
}

/// Keys of the home agent's service principal.
pub fn load_service_keys(
    cfg: &HomeAgentFile,
) -> anyhow::Result<Arc<dyn ServiceKeys + Send + Sync>> {
    Ok(match &cfg.kerberos.keytab {
        Some(p) => Arc::new(
            roamgate_krb::keytab::Keytab::load(p)
                .with_context(|| format!("reading keytab {}", p.display()))?,
        ),
        None => Arc::new(KeySet::default()),
    })
}

/// Builds the engine of a configuration (data plane attached if asked).
pub fn build_engine(cfg: &HomeAgentFile) -> anyhow::Result<(Engine, Option<DataPlane>)> {
    let (dp, xdp_attached) = ensure_pinned_xdp(
        &cfg.dataplane.pin_dir,
        &cfg.dataplane.interfaces,
        cfg.dataplane.xdp_mode,
    )?;
    let maps = Maps::open(&cfg.dataplane.pin_dir).with_context(|| {
        format!(
            "opening the pinned maps under {} (is a data plane loaded? set dataplane.interfaces)",
            cfg.dataplane.pin_dir.display()
        )
    })?;
    let keys = load_service_keys(cfg)?;
    let (core_cfg, nodes) = (cfg.core_config()?, cfg.node_configs()?);
    core_cfg
        .validate(&nodes)
        .map_err(|e| anyhow::anyhow!("home agent configuration: {e}"))?;
    let core = HomeAgent::new(core_cfg, nodes, keys);
    crate::platform::fs::private_dir(&cfg.home_agent.state_dir)
        .with_context(|| format!("state directory {}", cfg.home_agent.state_dir.display()))?;
    let journal = SqliteJournal::open(&cfg.journal_path())
        .with_context(|| format!("opening {}", cfg.journal_path().display()))?;
    if !cfg.home_agent.home_interface.is_empty() {
        if let Err(e) = neigh::prepare_home_link(&cfg.home_agent.home_interface) {
            warn!(error = %format!("{e:#}"), "home link: proxy ARP replies may be delayed");
        }
    }
    let home_link = HomeLink {
        interface: (!cfg.home_agent.home_interface.is_empty())
            .then(|| cfg.home_agent.home_interface.clone()),
        route_via: cfg.home_agent.home_route_via,
    };
    let mut engine = Engine::new(
        core,
        Box::new(journal),
        maps,
        cfg.dataplane.tunnel_mtu,
        home_link,
    );
    engine.metrics.xdp_attached = xdp_attached;
    Ok((engine, dp))
}

fn write_stats(path: &Path, m: &Metrics) {
    let mut v = serde_json::to_value(m).unwrap_or_default();
    v["pid"] = serde_json::json!(std::process::id());
    if let Err(e) = crate::platform::fs::write_atomic(path, v.to_string().as_bytes(), 0o644) {
        debug!(error = %e, "stats file");
    }
}

/// Runs the home agent until `shutdown`. With `detach`, the XDP links are
/// unpinned and proxy entries removed on the way out (the data plane
/// stops); otherwise forwarding continues without the daemon.
pub async fn run(
    cfg: HomeAgentFile,
    detach: bool,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    // Loading the data plane and restoring the bindings block (BPF and
    // rtnetlink syscalls): off the runtime's workers.
    let (engine, _dp, cfg) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let (mut engine, dp) = build_engine(&cfg)?;
        engine.restore(SystemTime::now())?;
        Ok((engine, dp, cfg))
    })
    .await
    .context("the home agent's setup task")??;
    info!(bindings = engine.core.binding_count(), "journal restored");
    let engine = EngineThread::spawn(engine).context("starting the engine thread")?;
    let sock = UdpSocket::bind(cfg.home_agent.listen)
        .await
        .with_context(|| format!("binding {} (port 434 needs root)", cfg.home_agent.listen))?;
    info!(listen = %cfg.home_agent.listen, addresses = ?cfg.home_agent.addresses, "home agent ready");

    let mut tasks = tokio::task::JoinSet::new();
    if let Some(addr) = cfg.metrics.addr()? {
        let listener = crate::metrics::bind(addr).await?;
        let snapshot = engine.subscribe();
        let render: crate::metrics::Render = Arc::new(move || snapshot.borrow().prometheus());
        let stop = shutdown.clone();
        tasks.spawn(async move { crate::metrics::serve(listener, render, stop).await });
    }
    if let Some(path) = cfg.home_agent.stats_file.clone() {
        // Its own task: the file is synced (platform::fs), off the loop.
        let every = Duration::from_millis(cfg.home_agent.stats_interval_ms.max(10));
        let snapshot = engine.subscribe();
        let stop = shutdown.clone();
        tasks.spawn(async move {
            let mut tick = tokio::time::interval(every);
            loop {
                tokio::select! {
                    _ = stop.cancelled() => break,
                    _ = tick.tick() => {}
                }
                let m = snapshot.borrow().clone();
                let p = path.clone();
                let _ = tokio::task::spawn_blocking(move || write_stats(&p, &m)).await;
            }
            Ok(())
        });
    }
    // Datagrams are received into one block and split off as `Bytes` that
    // share it: a batch crosses to the engine thread with no copy and no
    // allocation per datagram, and the block is reused once the engine has
    // dropped them.
    let mut buf = BytesMut::with_capacity(RECV_BLOCK);
    loop {
        buf.reserve(MAX_DATAGRAM);
        tokio::select! {
            _ = shutdown.cancelled() => break,
            r = sock.recv_buf_from(&mut buf) => {
                let src = match r {
                    Ok((_, src)) => src,
                    Err(e) => { warn!(error = %e, "receiving"); continue; }
                };
                // Whatever else is already queued joins this batch (one
                // journal transaction for all of it).
                let mut batch = vec![(buf.split().freeze(), src)];
                while batch.len() < MAX_BATCH {
                    buf.reserve(MAX_DATAGRAM);
                    match sock.try_recv_buf_from(&mut buf) {
                        Ok((_, src)) => batch.push((buf.split().freeze(), src)),
                        Err(_) => break,
                    }
                }
                let srcs: Vec<SocketAddr> = batch.iter().map(|(_, s)| *s).collect();
                let reqs = batch.into_iter().map(|(b, s)| (b, s.ip())).collect();
                let replies = engine.handle_batch(reqs).await?;
                for (reply, src) in replies.into_iter().zip(&srcs) {
                    if let Some(reply) = reply {
                        if let Err(e) = sock.send_to(&reply, *src).await {
                            warn!(%src, error = %e, "sending the reply");
                        }
                    }
                }
            }
        }
    }
    tasks.shutdown().await;
    let m = engine.stop(detach).await;
    if let Some(p) = &cfg.home_agent.stats_file {
        write_stats(p, &m);
    }
    if detach {
        unpin_xdp(&cfg.dataplane.pin_dir, &cfg.dataplane.interfaces);
    } else {
        info!("XDP links stay pinned: forwarding continues without the daemon");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apply_failed_is_exported_in_prometheus_and_the_stats_file() {
        let m = Metrics {
            apply_failed: 3,
            ..Metrics::default()
        };
        let text = m.prometheus();
        assert!(
            text.contains(
                "# TYPE roamgate_ha_apply_failed_total counter\nroamgate_ha_apply_failed_total 3\n"
            ),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.json");
        write_stats(&p, &m);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["apply_failed"], 3);
    }

    #[test]
    fn rollback_failures_and_pending_rollbacks_are_exported() {
        let m = Metrics {
            rollback_failed: 2,
            rollbacks_pending: 1,
            ..Metrics::default()
        };
        let text = m.prometheus();
        assert!(
            text.contains(
                "# TYPE roamgate_ha_rollback_failed_total counter\nroamgate_ha_rollback_failed_total 2\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "# TYPE roamgate_ha_rollbacks_pending gauge\nroamgate_ha_rollbacks_pending 1\n"
            ),
            "{text}"
        );
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("stats.json");
        write_stats(&p, &m);
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["rollback_failed"], 2);
        assert_eq!(v["rollbacks_pending"], 1);
    }

    const TEST_HA: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

    /// An engine of a home agent at [`TEST_HA`] over fresh pinned maps
    /// (needs root) and an in-memory journal.
    fn test_engine(pin: &roamgate_testkit::fixture::TestPinDir) -> Engine {
        let maps = Maps::create_pinned(pin.path(), crate::dataplane::maps::Capacity::default())
            .expect("creating maps (are you root?)");
        let core = HomeAgent::new(
            roamgate_mip::home_agent::HomeAgentConfig::new(TEST_HA),
            Vec::new(),
            Arc::new(KeySet::default()),
        );
        let journal = SqliteJournal::in_memory().unwrap();
        Engine::new(core, Box::new(journal), maps, 1500, HomeLink::default())
    }

    #[test]
    fn a_binding_to_our_own_address_is_a_unit_at_home_and_leaves_the_plane() {
        use roamgate_mip::MasterKey;

        const HA: Ipv4Addr = TEST_HA;
        const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
        const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
        let pin = roamgate_testkit::fixture::TestPinDir::new("ha-at-home");
        let mut e = test_engine(&pin);
        let now = SystemTime::now();
        let bind = |spi, remote| {
            [
                Action::InstallTunnel(TunnelInstall {
                    spi,
                    role: Role::HomeAgent,
                    local: HA,
                    remote,
                    home: HOME,
                    master_key: MasterKey::new([7; 32]),
                    expires: now + Duration::from_secs(60),
                }),
                Action::SetBinding {
                    home: HOME,
                    role: Role::HomeAgent,
                    remote,
                    spi,
                    expires: now + Duration::from_secs(60),
                    reverse_tunnel: true,
                },
            ]
        };
        // Away: the binding is in the maps.
        let (done, err) = e.apply_prefix(&bind(0x100, COA), now);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(done.len(), 2);
        assert_eq!(e.maps.list().unwrap().len(), 1);
        // Back at home (care-of = the home agent): no binding is left, and
        // the home link is told it went (proxy ARP follows it).
        let (done, err) = e.apply_prefix(&bind(0x101, HA), now);
        assert!(err.is_none(), "{err:?}");
        assert_eq!(
            done[1],
            Applied::BindingRemoved {
                home: HOME,
                role: Role::HomeAgent
            }
        );
        assert!(e.maps.list().unwrap().is_empty());
        // At home from the start: nothing is bound either.
        let (_, err) = e.apply_prefix(&bind(0x102, HA), now);
        assert!(err.is_none(), "{err:?}");
        assert!(e.maps.list().unwrap().is_empty());
    }

    /// The data-plane half of a pending rollback, over real pinned maps
    /// (needs root). No map update of a real undo can be made to fail on
    /// demand, so the pending work is recorded as a failed undo leaves it:
    /// the binding back to a tunnel the maps lack, then the removal of the
    /// failed request's tunnel.
    #[test]
    fn a_pending_data_plane_undo_is_retried_until_the_maps_take_it() {
        use crate::dataplane::maps::TunnelSpec;
        use roamgate_mip::MasterKey;

        use self::pending::ROLLBACK_RETRY_FIRST;

        const HA: Ipv4Addr = TEST_HA;
        const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 10);
        const COA: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 20);
        const OLD_SPI: u32 = 0x4242;
        const NEW_SPI: u32 = 0x5151;
        let pin = roamgate_testkit::fixture::TestPinDir::new("ha-pending-undo");
        let mut e = test_engine(&pin);
        let tunnel =
            |spi| TunnelSpec::new(spi, Role::HomeAgent, HA, HOME, &MasterKey::new([7; 32]));
        // The failed request's tunnel is in the maps; the one the binding
        // goes back to is not (yet).
        e.maps.install_tunnel(&tunnel(NEW_SPI)).unwrap();
        let now = SystemTime::now();
        let undo = [
            Action::SetBinding {
                home: HOME,
                role: Role::HomeAgent,
                remote: COA,
                spi: OLD_SPI,
                expires: now + Duration::from_secs(60),
                reverse_tunnel: true,
            },
            Action::RemoveTunnel { spi: NEW_SPI },
        ];
        e.pending.record(HOME, &undo, None, now);

        let first = now + ROLLBACK_RETRY_FIRST;
        assert_eq!(e.next_wakeup(), Some(first));
        e.poll(first);
        assert_eq!(e.metrics.rollbacks_pending, 1);
        assert_eq!(e.metrics.dataplane_errors, 1);
        assert_eq!(e.next_wakeup(), Some(first + 2 * ROLLBACK_RETRY_FIRST));
        assert!(e.maps.list().unwrap().is_empty());
        assert!(
            e.maps.tunnel(NEW_SPI).unwrap().is_some(),
            "no tunnel is removed while the binding is not back"
        );

        e.maps.install_tunnel(&tunnel(OLD_SPI)).unwrap();
        let second = e.next_wakeup().unwrap();
        e.poll(second);
        assert_eq!(e.metrics.rollbacks_pending, 0);
        assert!(e.pending_rollbacks().is_empty());
        let bound: Vec<_> = e
            .maps
            .list()
            .unwrap()
            .into_iter()
            .map(|s| {
                (
                    s.binding.home,
                    s.binding.remote,
                    s.binding.spi,
                    s.tunnel_present,
                )
            })
            .collect();
        assert_eq!(bound, vec![(HOME, COA, OLD_SPI, true)]);
        assert!(e.maps.tunnel(NEW_SPI).unwrap().is_none());
        assert_eq!(e.next_wakeup(), None);
    }

    #[test]
    fn stats_file_is_never_written_through_a_planted_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "root's file").unwrap();
        let p = dir.path().join("stats.json");
        std::os::unix::fs::symlink(&victim, dir.path().join("stats.tmp")).unwrap();
        write_stats(&p, &Metrics::default());
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "root's file");
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(&p).unwrap()).unwrap();
        assert_eq!(v["pid"], std::process::id());
    }
}
