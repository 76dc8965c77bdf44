//! The mobile node's registration core (RFC 5944 §3.6). No I/O: the caller
//! sends [`Output::send`] to the home agent on UDP 434, applies
//! [`Output::actions`] to its data plane *before* sending, feeds replies to
//! [`MobileNode::handle_reply`] and calls [`MobileNode::poll`] at
//! [`MobileNode::next_wakeup`].
//!
//! - Every registration carries a fresh timestamp Identification, a
//!   Kerberos AP-REQ with a new subkey in roamgate's CVSE (when the node has
//!   a ticket) and the MN-HA authentication extension.
//! - The tunnel for a registration is derived and installed before the
//!   request is sent, so the home agent's first packet under the new key
//!   already verifies; the binding moves to it when the reply accepts it.
//!   Replaced tunnels are removed after a grace period.
//! - Retransmissions back off exponentially (RFC 5944 §3.6.3), each with a
//!   new Identification. A 133 reply resynchronises the clock offset and
//!   retries at once. A 131 reply stops the attempt.
//! - Re-registration happens at 80 % of the granted lifetime, measured from
//!   when the request was sent (§3.6.2.1); a care-of change (handover)
//!   registers at once; [`MobileNode::deregister`] sends lifetime 0.

use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use roamgate_krb::ap::ApError;
use roamgate_krb::client::Credential;

use crate::auth::SecurityAssociation;
use crate::identification;
use crate::kerberos::{self, CVSE_KRB_AP_REQ, ROAMGATE_VENDOR_ID};
use crate::tunnel_key::{self, MasterKey};
use crate::wire::{self, code, flags, ExtensionRepr, RequestRepr};
use crate::{Action, Role, TunnelInstall};

/// First retransmission timeout (RFC 5944 §3.6.3: at least 1 s).
pub const INITIAL_RETRANSMIT: Duration = Duration::from_secs(1);
/// Largest retransmission timeout.
pub const MAX_RETRANSMIT: Duration = Duration::from_secs(32);
/// Re-register when this fraction (per mille) of the lifetime has passed.
pub const REFRESH_PER_MILLE: u32 = 800;
/// Consecutive 133 replies after which the node stops resynchronising.
pub const MAX_RESYNC: u32 = 3;

/// Mobile node configuration.
#[derive(Debug, Clone)]
pub struct MobileNodeConfig {
    pub home_address: Ipv4Addr,
    pub home_agent: Ipv4Addr,
    pub security_association: SecurityAssociation,
    /// The service ticket for the home agent; `None` sends no AP-REQ (the
    /// home agent must allow that for this node).
    pub credential: Option<Credential>,
    /// Requested lifetime (seconds).
    pub lifetime: u16,
    /// Ask for reverse tunnelling (T bit).
    pub reverse_tunnel: bool,
    /// The care-of address is co-located (D bit).
    pub co_located: bool,
    /// How long a replaced tunnel stays installed.
    pub tunnel_grace: Duration,
}

/// Where the node stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// No binding, nothing pending.
    Idle,
    /// A registration is outstanding (there may be a binding too).
    Registering,
    /// Bound, nothing outstanding.
    Registered,
    /// A deregistration is outstanding.
    Deregistering,
}

/// The node's current binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentBinding {
    pub care_of: Ipv4Addr,
    pub spi: u32,
    pub lifetime: u16,
    pub expires: SystemTime,
    pub refresh_at: SystemTime,
}

/// Something the caller may want to log or act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Registered {
        care_of: Ipv4Addr,
        lifetime: u16,
    },
    Deregistered,
    /// A 133 reply moved our Identification clock by this many seconds.
    Resynchronised {
        offset_secs: i64,
    },
    /// The home agent refused the node's authentication (131).
    AuthenticationFailed,
    Rejected {
        code: u8,
    },
    /// The binding's lifetime ran out without a successful re-registration.
    Expired,
    /// A reply that does not answer our request, or fails authentication.
    Ignored(&'static str),
}

/// What to do after a call.
#[derive(Debug, Default)]
pub struct Output {
    /// Actions for the data plane, to apply before sending.
    pub actions: Vec<Action>,
    /// A Registration Request to send to the home agent.
    pub send: Option<Vec<u8>>,
    pub events: Vec<Event>,
}

#[derive(Debug, thiserror::Error)]
pub enum MobileNodeError {
    #[error("cannot build the Kerberos AP-REQ for the home agent: {0}")]
    ApReq(#[from] ApError),
    #[error("cannot encode the registration: {0}")]
    Wire(#[from] wire::WireError),
}

#[derive(Debug)]
struct Pending {
    identification: u64,
    care_of: Ipv4Addr,
    deregister: bool,
    sent_at: SystemTime,
    retransmit_at: SystemTime,
    backoff: Duration,
    /// The tunnel installed for this attempt (not for deregistrations).
    tunnel_spi: Option<u32>,
}

/// The mobile node core.
pub struct MobileNode {
    config: MobileNodeConfig,
    rng: Box<dyn FnMut() -> u32 + Send>,
    /// HA clock minus ours, seconds (from 133 replies).
    offset: i64,
    last_id: Option<u64>,
    /// Replies discarded (forged, stale, unauthenticated or malformed).
    ignored: u64,
    resyncs: u32,
    care_of: Option<Ipv4Addr>,
    pending: Option<Pending>,
    binding: Option<CurrentBinding>,
    retiring: Vec<(SystemTime, u32)>,
}

impl std::fmt::Debug for MobileNode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MobileNode")
            .field("home_address", &self.config.home_address)
            .field("state", &self.state())
            .field("binding", &self.binding)
            .finish()
    }
}

impl MobileNode {
    /// A node; `rng` supplies the random low bits of Identifications.
    pub fn new(config: MobileNodeConfig, rng: Box<dyn FnMut() -> u32 + Send>) -> Self {
        Self {
            config,
            rng,
            offset: 0,
            last_id: None,
            ignored: 0,
            resyncs: 0,
            care_of: None,
            pending: None,
            binding: None,
            retiring: Vec::new(),
        }
    }

    pub fn state(&self) -> State {
        match (&self.pending, &self.binding) {
            (Some(p), _) if p.deregister => State::Deregistering,
            (Some(_), _) => State::Registering,
            (None, Some(_)) => State::Registered,
            (None, None) => State::Idle,
        }
    }

    pub fn binding(&self) -> Option<&CurrentBinding> {
        self.binding.as_ref()
    }

    /// The clock offset learnt from the home agent (seconds).
    pub fn clock_offset(&self) -> i64 {
        self.offset
    }

    /// The Identification of the outstanding request.
    pub fn pending_identification(&self) -> Option<u64> {
        self.pending.as_ref().map(|p| p.identification)
    }

    /// Replaces the service ticket for the home agent (renewed before it
    /// expires); the next registration uses it.
    pub fn set_credential(&mut self, credential: Option<Credential>) {
        self.config.credential = credential;
    }

    /// When the current service ticket expires, if there is one.
    pub fn credential_end_time(&self) -> Option<SystemTime> {
        self.config.credential.as_ref().map(|c| c.end_time)
    }

    /// Registers from `care_of` (first registration, or a handover when the
    /// care-of address changed).
    pub fn register(
        &mut self,
        care_of: Ipv4Addr,
        now: SystemTime,
    ) -> Result<Output, MobileNodeError> {
        self.care_of = Some(care_of);
        self.resyncs = 0;
        let mut out = Output::default();
        self.send_request(false, INITIAL_RETRANSMIT, now, &mut out)?;
        Ok(out)
    }

    /// Handover: the care-of address changed. Registers the new one unless
    /// it is already the registered or pending one.
    pub fn set_care_of(
        &mut self,
        care_of: Ipv4Addr,
        now: SystemTime,
    ) -> Result<Output, MobileNodeError> {
        let same_bound = self.binding.as_ref().map(|b| b.care_of) == Some(care_of);
        let same_pending = self
            .pending
            .as_ref()
            .is_some_and(|p| !p.deregister && p.care_of == care_of);
        if same_pending || (same_bound && self.pending.is_none()) {
            self.care_of = Some(care_of);
            return Ok(Output::default());
        }
        self.register(care_of, now)
    }

    /// Deregisters (lifetime 0).
    pub fn deregister(&mut self, now: SystemTime) -> Result<Output, MobileNodeError> {
        let mut out = Output::default();
        if self.care_of.is_none() {
            return Ok(out);
        }
        self.resyncs = 0;
        self.send_request(true, INITIAL_RETRANSMIT, now, &mut out)?;
        Ok(out)
    }

    fn next_identification(&mut self, now: SystemTime) -> u64 {
        let t = identification::shifted(now, self.offset);
        let mut id = identification::timestamp(t, (self.rng)());
        if let Some(last) = self.last_id {
            if !identification::is_later(id, last) {
                id = last.wrapping_add(1);
            }
        }
        self.last_id = Some(id);
        id
    }

    /// Builds and "sends" a request, replacing any outstanding one (whose
    /// tunnel is retired after the grace: the home agent may have accepted
    /// it and the reply been lost).
    fn send_request(
        &mut self,
        deregister: bool,
        backoff: Duration,
        now: SystemTime,
        out: &mut Output,
    ) -> Result<(), MobileNodeError> {
        let Some(care_of) = self.care_of else {
            return Ok(());
        };
        let id = self.next_identification(now);
        let mut fl = 0;
        if self.config.reverse_tunnel {
            fl |= flags::T;
        }
        if self.config.co_located {
            fl |= flags::D;
        }
        let repr = RequestRepr {
            flags: fl,
            lifetime: if deregister { 0 } else { self.config.lifetime },
            home_address: self.config.home_address,
            home_agent: self.config.home_agent,
            care_of_address: care_of,
            identification: id,
        };
        let header = repr.to_bytes();
        let mut msg = header.to_vec();
        let mut tunnel: Option<(MasterKey, u32)> = None;
        if !deregister {
            let ikm = match &self.config.credential {
                Some(cred) => {
                    // Stamped on the home agent's clock as learnt from 133.
                    let ha_now = identification::shifted(now, self.offset);
                    let (ap_req, client) =
                        kerberos::build_registration_ap_req(cred, &header, ha_now)?;
                    ExtensionRepr::Cvse {
                        vendor_id: ROAMGATE_VENDOR_ID,
                        cvse_type: CVSE_KRB_AP_REQ,
                        data: &ap_req,
                    }
                    .emit(&mut msg)?;
                    zeroize::Zeroizing::new(
                        client
                            .subkey()
                            .map(|k| k.as_bytes().to_vec())
                            .unwrap_or_default(),
                    )
                }
                None => zeroize::Zeroizing::new(self.config.security_association.tunnel_ikm()),
            };
            tunnel = Some(tunnel_key::derive_tunnel(
                &ikm,
                id,
                self.config.home_address,
                self.config.home_agent,
            ));
        }
        let msg = self.config.security_association.append_mn_ha_auth(msg);
        if let Some(old) = self.pending.take() {
            if let Some(spi) = old.tunnel_spi {
                self.retiring.push((now + self.config.tunnel_grace, spi));
            }
        }
        let tunnel_spi = tunnel.as_ref().map(|(_, s)| *s);
        if let Some((master_key, spi)) = tunnel {
            // Ready to receive under the new key before the home agent can
            // start sending with it.
            let lifetime = Duration::from_secs(u64::from(self.config.lifetime));
            out.actions.push(Action::InstallTunnel(TunnelInstall {
                spi,
                role: Role::CareOf,
                local: care_of,
                remote: self.config.home_agent,
                home: self.config.home_address,
                master_key,
                expires: now + lifetime + self.config.tunnel_grace,
            }));
        }
        self.pending = Some(Pending {
            identification: id,
            care_of,
            deregister,
            sent_at: now,
            retransmit_at: now + backoff,
            backoff,
            tunnel_spi,
        });
        out.send = Some(msg);
        Ok(())
    }

    /// Replies discarded so far: malformed, unmatched, or without a valid
    /// MN-HA authenticator for the node's SA (each also reported as
    /// [`Event::Ignored`]).
    pub fn ignored_replies(&self) -> u64 {
        self.ignored
    }

    /// Handles a Registration Reply.
    pub fn handle_reply(
        &mut self,
        bytes: &[u8],
        now: SystemTime,
    ) -> Result<Output, MobileNodeError> {
        let out = self.handle_reply_inner(bytes, now)?;
        if out.events.iter().any(|e| matches!(e, Event::Ignored(_))) {
            self.ignored += 1;
        }
        Ok(out)
    }

    fn handle_reply_inner(
        &mut self,
        bytes: &[u8],
        now: SystemTime,
    ) -> Result<Output, MobileNodeError> {
        let mut out = Output::default();
        let reply = match wire::parse_reply(bytes) {
            Ok(r) => r,
            Err(_) => {
                // Includes unrecognised extensions 0-127: silently discarded.
                out.events.push(Event::Ignored("malformed reply"));
                return Ok(out);
            }
        };
        let Some(pending) = self.pending.as_ref() else {
            out.events
                .push(Event::Ignored("no registration outstanding"));
            return Ok(out);
        };
        // RFC 5944 §3.6.2.1, §5.7: a reply echoes the whole Identification,
        // except 133, which carries the home agent's seconds.
        let mask = if reply.repr.code == code::IDENTIFICATION_MISMATCH {
            0xffff_ffff
        } else {
            u64::MAX
        };
        if reply.repr.home_address != self.config.home_address
            || reply.repr.identification & mask != pending.identification & mask
        {
            out.events.push(Event::Ignored(
                "reply does not match the outstanding request",
            ));
            return Ok(out);
        }
        // Only the home agent holds the SA: a reply without a valid
        // authenticator (the home agent's answer to a request that failed
        // authentication, or a forgery) says nothing about our request.
        let sa = &self.config.security_association;
        if crate::auth::verify_mn_ha(bytes, &reply.extensions, |spi| {
            (spi == sa.spi()).then_some(sa)
        })
        .is_err()
        {
            out.events
                .push(Event::Ignored("reply fails MN-HA authentication"));
            return Ok(out);
        }
        let Some(pending) = self.pending.take() else {
            return Ok(out);
        };
        let c = reply.repr.code;
        if code::is_accepted(c) {
            self.resyncs = 0;
            if pending.deregister {
                if let Some(b) = self.binding.take() {
                    out.actions.push(Action::RemoveBinding {
                        home: self.config.home_address,
                        role: Role::CareOf,
                    });
                    out.actions.push(Action::RemoveTunnel { spi: b.spi });
                }
                for (_, spi) in self.retiring.drain(..) {
                    out.actions.push(Action::RemoveTunnel { spi });
                }
                self.care_of = None;
                out.events.push(Event::Deregistered);
                return Ok(out);
            }
            let Some(spi) = pending.tunnel_spi else {
                return Ok(out);
            };
            let lifetime = reply.repr.lifetime.min(self.config.lifetime);
            let life = Duration::from_secs(u64::from(lifetime));
            let expires = pending.sent_at + life;
            let refresh = pending.sent_at + life * REFRESH_PER_MILLE / 1000;
            out.actions.push(Action::SetBinding {
                home: self.config.home_address,
                role: Role::CareOf,
                remote: self.config.home_agent,
                spi,
                expires,
                reverse_tunnel: self.config.reverse_tunnel,
            });
            if let Some(old) = self.binding.take() {
                if old.spi != spi {
                    self.retiring
                        .push((now + self.config.tunnel_grace, old.spi));
                }
            }
            self.binding = Some(CurrentBinding {
                care_of: pending.care_of,
                spi,
                lifetime,
                expires,
                refresh_at: refresh,
            });
            out.events.push(Event::Registered {
                care_of: pending.care_of,
                lifetime,
            });
            return Ok(out);
        }
        // Refused: the attempt's tunnel is not going to be used.
        if let Some(spi) = pending.tunnel_spi {
            out.actions.push(Action::RemoveTunnel { spi });
        }
        match c {
            code::IDENTIFICATION_MISMATCH if self.resyncs < MAX_RESYNC => {
                self.resyncs += 1;
                self.offset = identification::resync_offset(reply.repr.identification, now);
                out.events.push(Event::Resynchronised {
                    offset_secs: self.offset,
                });
                self.send_request(pending.deregister, INITIAL_RETRANSMIT, now, &mut out)?;
            }
            code::MN_FAILED_AUTHENTICATION => out.events.push(Event::AuthenticationFailed),
            other => out.events.push(Event::Rejected { code: other }),
        }
        Ok(out)
    }

    /// When [`MobileNode::poll`] next has something to do.
    pub fn next_wakeup(&self) -> Option<SystemTime> {
        let mut t: Option<SystemTime> = None;
        let mut consider = |x: SystemTime| t = Some(t.map_or(x, |y| y.min(x)));
        if let Some(p) = &self.pending {
            consider(p.retransmit_at);
        }
        if let Some(b) = &self.binding {
            if self.pending.is_none() {
                consider(b.refresh_at);
            }
            consider(b.expires);
        }
        for (at, _) in &self.retiring {
            consider(*at);
        }
        t
    }

    /// Retransmits, re-registers, expires and retires as time requires.
    pub fn poll(&mut self, now: SystemTime) -> Result<Output, MobileNodeError> {
        let mut out = Output::default();
        let mut keep = Vec::with_capacity(self.retiring.len());
        for (at, spi) in std::mem::take(&mut self.retiring) {
            if at <= now {
                out.actions.push(Action::RemoveTunnel { spi });
            } else {
                keep.push((at, spi));
            }
        }
        self.retiring = keep;
        if let Some(b) = &self.binding {
            if b.expires <= now {
                let spi = b.spi;
                self.binding = None;
                out.actions.push(Action::RemoveBinding {
                    home: self.config.home_address,
                    role: Role::CareOf,
                });
                out.actions.push(Action::RemoveTunnel { spi });
                out.events.push(Event::Expired);
            }
        }
        if let Some(p) = &self.pending {
            if p.retransmit_at <= now {
                let backoff = (p.backoff * 2).min(MAX_RETRANSMIT);
                let dereg = p.deregister;
                self.send_request(dereg, backoff, now, &mut out)?;
            }
        } else if let Some(b) = &self.binding {
            if b.refresh_at <= now {
                self.send_request(false, INITIAL_RETRANSMIT, now, &mut out)?;
            }
        }
        Ok(out)
    }
}
