//! Registration Request handling (RFC 5944 §3.8), one step per function in
//! the order of the module documentation. Each step either passes what it
//! established to the next or stops with a [`Stop`]; [`HomeAgent::stop`]
//! turns that into the outcome.

use std::net::{IpAddr, Ipv4Addr};
use std::time::SystemTime;

use roamgate_krb::messages::same_principal;
use zeroize::Zeroizing;

use super::{lifetime_secs, Binding, DropReason, HomeAgent, Outcome, Rejection, ReverseTunnel};
use crate::auth::{self, AuthError};
use crate::identification;
use crate::journal::JournalOp;
use crate::kerberos::{self, CVSE_KRB_AP_REQ, ROAMGATE_VENDOR_ID};
use crate::tunnel_key::{self, MasterKey};
use crate::wire::{
    self, code, flags, ExtensionRepr, ReplyRepr, RequestRepr, WireError, MAX_MESSAGE_LEN,
    REQUEST_HEADER_LEN,
};
use crate::{Action, Role, TunnelInstall};

/// A request whose fixed part and extensions parsed.
struct Parsed<'a> {
    bytes: &'a [u8],
    repr: RequestRepr,
    extensions: Vec<(usize, ExtensionRepr<'a>)>,
}

/// A request that passed MN-HA authentication and the Identification
/// check: only the node can have sent it, and never before.
struct Verified<'a> {
    parsed: Parsed<'a>,
    /// The MN-HA SPI it was authenticated with (the reply's too).
    spi: u32,
    /// Index of the MHAE in `parsed.extensions`.
    mhae_index: usize,
}

/// A refusal with a reply.
pub(super) struct Refusal {
    repr: RequestRepr,
    /// The SPI to authenticate the reply with: `None` unless the request
    /// passed MN-HA authentication.
    spi: Option<u32>,
    code: u8,
    why: Rejection,
}

/// Why processing stopped.
pub(super) enum Stop {
    /// No reply.
    Drop(DropReason),
    /// Not proven authentic and fresh: answered only within the source's
    /// budget, since anyone can send it from any address.
    Unverified(Refusal),
    /// Authentic and fresh: always answered.
    Refused(Refusal),
}

impl Refusal {
    fn new(repr: &RequestRepr, spi: Option<u32>, code: u8, why: Rejection) -> Self {
        Self {
            repr: *repr,
            spi,
            code,
            why,
        }
    }
}

/// A verified request refused with `code`.
fn refused(v: &Verified<'_>, code: u8, why: Rejection) -> Stop {
    Stop::Refused(Refusal::new(&v.parsed.repr, Some(v.spi), code, why))
}

impl HomeAgent {
    /// Handles one Registration Request received from `src` at `now`.
    pub fn handle_request(&mut self, bytes: &[u8], src: IpAddr, now: SystemTime) -> Outcome {
        let mut out = Outcome::default();
        match self.process(bytes, now, &mut out) {
            Ok(()) => out,
            Err(stop) => self.stop(out, stop, src, now),
        }
    }

    fn process(&mut self, bytes: &[u8], now: SystemTime, out: &mut Outcome) -> Result<(), Stop> {
        let parsed = parse(bytes)?;
        let v = self.authenticate(parsed, now)?;
        self.charge_node(&v, now)?;
        self.record_identification(&v, out);
        self.check_home_agent(&v)?;
        if v.parsed.repr.is_deregistration() {
            self.deregister(&v, now, out);
            return Ok(());
        }
        let reverse = self.check_policy(&v)?;
        let ap_req = authenticated_ap_req(&v)?;
        let (ikm, client) = self.tunnel_ikm(&v, ap_req, now)?;
        let repr = &v.parsed.repr;
        let (master_key, tunnel_spi) = tunnel_key::derive_tunnel(
            &ikm,
            repr.identification,
            repr.home_address,
            repr.home_agent,
        );
        self.check_resources(&v, tunnel_spi)?;
        self.accept(&v, master_key, tunnel_spi, reverse, client, now, out);
        Ok(())
    }
}

/// Steps 2-3: the fixed part (silent drop) and the extensions (134).
fn parse(bytes: &[u8]) -> Result<Parsed<'_>, Stop> {
    if bytes.len() > MAX_MESSAGE_LEN {
        // Oversized: nothing roamgate's nodes send; do no work for it.
        return Err(Stop::Drop(DropReason::Malformed(WireError::Oversized(
            bytes.len(),
        ))));
    }
    let packet = wire::RequestPacket::new_checked(bytes)
        .map_err(|e| Stop::Drop(DropReason::Malformed(e)))?;
    let repr = RequestRepr::parse(&packet).map_err(|e| Stop::Drop(DropReason::Malformed(e)))?;
    let extensions = wire::Extensions::new(&bytes[REQUEST_HEADER_LEN..], REQUEST_HEADER_LEN)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            Stop::Unverified(Refusal::new(
                &repr,
                None,
                code::POORLY_FORMED_REQUEST,
                Rejection::PoorlyFormed(e),
            ))
        })?;
    Ok(Parsed {
        bytes,
        repr,
        extensions,
    })
}

/// The CVSEs the MHAE covers: roamgate's Kerberos AP-REQ, or 140.
fn authenticated_ap_req<'a>(v: &Verified<'a>) -> Result<Option<&'a [u8]>, Stop> {
    let mut ap_req = None;
    for (_, e) in &v.parsed.extensions[..v.mhae_index] {
        if let ExtensionRepr::Cvse {
            vendor_id,
            cvse_type,
            data,
        } = *e
        {
            if vendor_id == ROAMGATE_VENDOR_ID && cvse_type == CVSE_KRB_AP_REQ {
                ap_req = Some(data);
            } else {
                let why = Rejection::UnsupportedCvse {
                    vendor_id,
                    cvse_type,
                };
                return Err(refused(v, code::UNSUPPORTED_CVSE_FROM_MN, why));
            }
        }
    }
    Ok(ap_req)
}

impl HomeAgent {
    /// Steps 4-6: a configured node (131), its MN-HA authenticator (134 when
    /// missing, 131) and a fresh Identification (133).
    fn authenticate<'a>(&self, parsed: Parsed<'a>, now: SystemTime) -> Result<Verified<'a>, Stop> {
        let repr = parsed.repr;
        let unverified = |c, why| Stop::Unverified(Refusal::new(&repr, None, c, why));
        let Some(node) = self.nodes.get(&repr.home_address) else {
            return Err(unverified(
                code::MN_FAILED_AUTHENTICATION,
                Rejection::UnknownNode,
            ));
        };
        let sas = &node.config.security_associations;
        let (spi, mhae_index) = auth::verify_mn_ha(parsed.bytes, &parsed.extensions, |spi| {
            sas.iter().find(|s| s.spi() == spi)
        })
        .map_err(|e| match e {
            AuthError::Missing => unverified(code::POORLY_FORMED_REQUEST, Rejection::MissingAuth),
            e => unverified(code::MN_FAILED_AUTHENTICATION, Rejection::Auth(e)),
        })?;
        // Authentic, but possibly a replay: still unverified, though the
        // 133 is authenticated so the node can resynchronise from it.
        identification::check(
            repr.identification,
            node.last_id,
            now,
            self.config.identification_skew,
        )
        .map_err(|e| {
            Stop::Unverified(Refusal::new(
                &repr,
                Some(spi),
                code::IDENTIFICATION_MISMATCH,
                Rejection::Identification(e),
            ))
        })?;
        Ok(Verified {
            parsed,
            spi,
            mhae_index,
        })
    }

    /// The node's own rate limit: only the node can spend it.
    fn charge_node(&mut self, v: &Verified<'_>, now: SystemTime) -> Result<(), Stop> {
        let cfg = self.config.rate_limit;
        let allowed = self
            .nodes
            .get_mut(&v.parsed.repr.home_address)
            .is_none_or(|n| n.bucket.take(&cfg, now));
        if allowed {
            Ok(())
        } else {
            Err(Stop::Drop(DropReason::RateLimited))
        }
    }

    /// Authentic and fresh: its Identification may never be used again.
    fn record_identification(&mut self, v: &Verified<'_>, out: &mut Outcome) {
        let repr = &v.parsed.repr;
        if let Some(n) = self.nodes.get_mut(&repr.home_address) {
            n.last_id = Some(repr.identification);
        }
        out.journal.push(JournalOp::Identification {
            home: repr.home_address,
            id: repr.identification,
        });
    }

    /// Step 7: the Home Agent field names one of our addresses (136).
    fn check_home_agent(&self, v: &Verified<'_>) -> Result<(), Stop> {
        let ha = v.parsed.repr.home_agent;
        if self.config.addresses.contains(&ha) {
            Ok(())
        } else {
            Err(refused(
                v,
                code::UNKNOWN_HOME_AGENT,
                Rejection::UnknownHomeAgent(ha),
            ))
        }
    }

    /// Step 8: deregistration.
    fn deregister(&mut self, v: &Verified<'_>, now: SystemTime, out: &mut Outcome) {
        let repr = &v.parsed.repr;
        out.undo = Some(self.undo_point(repr, v.spi, true));
        // RFC 5944 §3.8.3.1: lifetime 0 with a care-of address deletes the
        // binding *for that care-of address*; the home address as care-of
        // deletes them all. A node's old proxy deregistering its old care-of
        // after the node moved must not remove the new binding.
        let stale = repr.care_of_address != repr.home_address
            && self
                .bindings
                .get(&repr.home_address)
                .is_some_and(|b| b.care_of != repr.care_of_address);
        if stale {
            self.stats.deregistered_stale += 1;
        } else {
            self.remove_binding(repr.home_address, out);
        }
        self.stats.deregistered += 1;
        self.reply(out, repr, Some(v.spi), code::ACCEPTED, 0, now);
    }

    /// Step 9: encapsulation (139) and reverse tunnelling (137/138). Returns
    /// whether reverse tunnelling is granted.
    fn check_policy(&self, v: &Verified<'_>) -> Result<bool, Stop> {
        let repr = &v.parsed.repr;
        if repr.has(flags::M) || repr.has(flags::G) {
            return Err(refused(
                v,
                code::ENCAPSULATION_UNAVAILABLE,
                Rejection::Encapsulation,
            ));
        }
        let reverse = repr.has(flags::T);
        match (self.config.reverse_tunnel, reverse) {
            (ReverseTunnel::Unavailable, true) => Err(refused(
                v,
                code::REVERSE_TUNNEL_UNAVAILABLE,
                Rejection::ReverseTunnelUnavailable,
            )),
            (ReverseTunnel::Mandatory, false) => Err(refused(
                v,
                code::REVERSE_TUNNEL_MANDATORY,
                Rejection::ReverseTunnelMandatory,
            )),
            _ => Ok(reverse),
        }
    }

    /// Step 11: the key material of the tunnel, from the Kerberos AP-REQ
    /// (131 on any failure) or, for a node allowed without Kerberos, from
    /// the MN-HA key.
    fn tunnel_ikm(
        &mut self,
        v: &Verified<'_>,
        ap_req: Option<&[u8]>,
        now: SystemTime,
    ) -> Result<(Zeroizing<Vec<u8>>, Option<String>), Stop> {
        let failed = |why| refused(v, code::MN_FAILED_AUTHENTICATION, why);
        let node = &self.nodes[&v.parsed.repr.home_address];
        let Some(ap) = ap_req else {
            if node.config.require_kerberos {
                return Err(failed(Rejection::KerberosMissing));
            }
            let sa = node
                .config
                .security_associations
                .iter()
                .find(|s| s.spi() == v.spi)
                .expect("verified SPI is configured");
            return Ok((Zeroizing::new(sa.tunnel_ikm()), None));
        };
        let principal = node.config.principal.clone();
        let header = &v.parsed.bytes[..REQUEST_HEADER_LEN];
        let accepted = kerberos::verify_registration_ap_req(
            ap,
            self.keys.as_ref(),
            self.config.service.as_ref(),
            header,
            &mut self.replay,
            now,
        )
        .map_err(|e| failed(Rejection::Kerberos(e.to_string())))?;
        if let Some(want) = &principal {
            if !same_principal(want, &accepted.client) {
                return Err(failed(Rejection::KerberosWrongClient(
                    accepted.client.to_string(),
                )));
            }
        }
        let subkey = accepted
            .subkey
            .as_ref()
            .ok_or_else(|| failed(Rejection::KerberosNoSubkey))?;
        Ok((
            Zeroizing::new(subkey.as_bytes().to_vec()),
            Some(accepted.client.to_string()),
        ))
    }

    /// Step 12: a free tunnel SPI and, for a new node, room in the binding
    /// table (130).
    fn check_resources(&self, v: &Verified<'_>, tunnel_spi: u32) -> Result<(), Stop> {
        if self.spis.contains(&tunnel_spi) {
            return Err(refused(
                v,
                code::INSUFFICIENT_RESOURCES,
                Rejection::SpiCollision(tunnel_spi),
            ));
        }
        let new_node = !self.bindings.contains_key(&v.parsed.repr.home_address);
        if new_node && self.bindings.len() >= self.config.max_bindings {
            return Err(refused(
                v,
                code::INSUFFICIENT_RESOURCES,
                Rejection::TooManyBindings,
            ));
        }
        Ok(())
    }

    /// Step 13: the binding, its data-plane actions and journal op, 0 (or 1).
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        v: &Verified<'_>,
        master_key: MasterKey,
        tunnel_spi: u32,
        reverse: bool,
        client: Option<String>,
        now: SystemTime,
        out: &mut Outcome,
    ) {
        let repr = &v.parsed.repr;
        let lifetime = repr.lifetime.min(self.config.max_lifetime);
        let expires = now + lifetime_secs(lifetime);
        let binding = Binding {
            home: repr.home_address,
            care_of: repr.care_of_address,
            home_agent: repr.home_agent,
            spi: tunnel_spi,
            master_key: master_key.clone(),
            identification: repr.identification,
            lifetime,
            registered_at: now,
            expires,
            reverse_tunnel: reverse,
            client,
        };
        out.undo = Some(self.undo_point(repr, v.spi, false));
        // Install the new tunnel (receive side ready), then point the
        // binding at it; the replaced tunnel stays for the grace period.
        out.actions.push(Action::InstallTunnel(TunnelInstall {
            spi: tunnel_spi,
            role: Role::HomeAgent,
            local: repr.home_agent,
            remote: repr.care_of_address,
            home: repr.home_address,
            master_key,
            expires: expires + self.config.tunnel_grace,
        }));
        out.actions.push(Action::SetBinding {
            home: repr.home_address,
            role: Role::HomeAgent,
            remote: repr.care_of_address,
            spi: tunnel_spi,
            expires,
            reverse_tunnel: reverse,
        });
        if let Some(old) = self.bindings.get(&repr.home_address).map(|b| b.spi) {
            self.retire(now, repr.home_address, old, out);
        }
        out.journal.push(JournalOp::PutBinding(binding.clone()));
        self.spis.insert(tunnel_spi);
        self.bindings.insert(repr.home_address, binding);
        self.stats.accepted += 1;
        let c = if repr.has(flags::S) {
            code::ACCEPTED_NO_SIMULTANEOUS
        } else {
            code::ACCEPTED
        };
        self.reply(out, repr, Some(v.spi), c, lifetime, now);
    }

    /// Turns a stop into the outcome. An unverified refusal is answered
    /// only while its source has tokens: replies are the one thing forged
    /// input can make the home agent produce, and a source address proves
    /// nothing, so this budget is never the node's own.
    fn stop(&mut self, mut out: Outcome, stop: Stop, src: IpAddr, now: SystemTime) -> Outcome {
        debug_assert!(out.actions.is_empty());
        let refusal = match stop {
            Stop::Drop(why) => {
                self.stats.dropped += 1;
                out.dropped = Some(why);
                return out;
            }
            Stop::Unverified(r) => {
                if !self.sources.allow(src, now) {
                    self.stats.dropped += 1;
                    out.dropped = Some(DropReason::RateLimited);
                    return out;
                }
                r
            }
            Stop::Refused(r) => r,
        };
        self.stats.rejected += 1;
        out.rejection = Some(refusal.why);
        self.reply(&mut out, &refusal.repr, refusal.spi, refusal.code, 0, now);
        out
    }

    /// Builds the reply, authenticated with the SA the request was
    /// authenticated with. `spi` is `None` when the request failed (or
    /// skipped) MN-HA authentication: then the reply carries no MHAE (RFC
    /// 5944 §3.8.3.1), since the home agent does not know who sent it and
    /// a signed answer would let a forger speak for the home agent.
    pub(super) fn reply(
        &self,
        out: &mut Outcome,
        repr: &RequestRepr,
        spi: Option<u32>,
        c: u8,
        lifetime: u16,
        now: SystemTime,
    ) {
        let identification = if c == code::IDENTIFICATION_MISMATCH {
            identification::mismatch_reply(now, repr.identification)
        } else {
            repr.identification
        };
        let home_agent: Ipv4Addr = if c == code::UNKNOWN_HOME_AGENT {
            self.config
                .addresses
                .first()
                .copied()
                .unwrap_or(repr.home_agent)
        } else {
            repr.home_agent
        };
        let bytes = ReplyRepr {
            code: c,
            lifetime,
            home_address: repr.home_address,
            home_agent,
            identification,
        }
        .to_bytes()
        .to_vec();
        let sa = spi.and_then(|s| {
            self.nodes
                .get(&repr.home_address)?
                .config
                .security_associations
                .iter()
                .find(|a| a.spi() == s)
        });
        out.reply = Some(match sa {
            Some(sa) => sa.append_mn_ha_auth(bytes),
            None => bytes,
        });
        out.code = Some(c);
    }
}
