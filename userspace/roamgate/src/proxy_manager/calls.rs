//! A proxy's part in its unit's calls (docs/attach.md §5.1): the unit's
//! proxy requests, served with the proxy's credentials and the shared
//! data plane: it accepts a caller's AP-REQ with the unit's call key, and
//! programs the voice flows of a call in the XDP voice path. The call
//! ticket (number resolution and TGS in the subscriber's name) does network
//! I/O, so it runs in its own task ([`super::ticket`]).

use std::collections::HashMap;
use std::net::Ipv4Addr;
use std::time::{Duration, SystemTime};

use roamgate_directory::IdentityCode;

use roamgate_attach::manager::ProxyRequest;
use roamgate_attach::proxy_op::{CallEventKind, Media, ProxyOp, ProxyReply};

use roamgate_call::handshake;
use roamgate_krb::replay::ReplayCache;
use zeroize::Zeroizing;

use crate::dataplane::maps::{Expiry, VoiceFlow};
use crate::mobile_node::Plane;

/// How long a call's voice flows stay authorised if its release never
/// comes (a unit that vanished mid-call): the data plane drops them after.
pub const MAX_CALL: Duration = Duration::from_secs(4 * 3600);

/// Calls in progress one unit may have voice flows for: a gateway, a
/// softphone with held and conference calls; bounded so that one unit
/// cannot fill the voice-flow map.
pub const MAX_CALLS_PER_UNIT: usize = 32;

/// Q.850 causes of a failed proxy op.
const CAUSE_NO_CIRCUIT: u8 = 34;
const CAUSE_TEMPORARY_FAILURE: u8 = 41;
const CAUSE_NOT_AUTHORISED: u8 = 57;

/// Why a call's media cannot become voice flows.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FlowError {
    #[error("the call's local address {got} is not the unit's home address {home}")]
    NotHome { got: Ipv4Addr, home: Ipv4Addr },
    #[error("a voice flow needs nonzero ports, a unicast remote and nonzero SSRCs")]
    Invalid,
}

/// The call's two voice flows: in (remote → the unit's home address) and
/// out. A unit may only open flows to and from its own home address.
pub fn voice_flows(home: Ipv4Addr, media: &Media) -> Result<[VoiceFlow; 2], FlowError> {
    let (l, r) = (media.local, media.remote);
    if *l.ip() != home {
        return Err(FlowError::NotHome { got: *l.ip(), home });
    }
    let rip = *r.ip();
    if l.port() == 0
        || r.port() == 0
        || media.ssrc_in == 0
        || media.ssrc_out == 0
        || rip.is_unspecified()
        || rip.is_broadcast()
        || rip.is_multicast()
        || rip == home
    {
        return Err(FlowError::Invalid);
    }
    Ok([
        VoiceFlow {
            src: rip,
            dst: home,
            src_port: r.port(),
            dst_port: l.port(),
            ssrc: media.ssrc_in,
        },
        VoiceFlow {
            src: home,
            dst: rip,
            src_port: l.port(),
            dst_port: r.port(),
            ssrc: media.ssrc_out,
        },
    ])
}

/// The voice flows this proxy manager programmed, per unit and call. They
/// outlive a proxy that is replaced (a unit switching on again mid-call),
/// and go when the unit switches off, moves away or falls silent, or when
/// the call is released.
#[derive(Debug, Default)]
pub struct Calls {
    flows: HashMap<IdentityCode, HashMap<[u8; 16], [VoiceFlow; 2]>>,
    /// Callers' authenticators, for every unit this proxy manager answers
    /// calls for.
    replay: ReplayCache,
}

impl Calls {
    /// Revokes the voice flows of `call_id` (a call whose prepaid credit
    /// ran out without its release): whether there were any.
    pub fn cut(&mut self, plane: &Plane, unit: &IdentityCode, call_id: &[u8; 16]) -> bool {
        let Some(flows) = self.flows.get_mut(unit).and_then(|c| c.remove(call_id)) else {
            return false;
        };
        if let Err(e) = apply(plane, CallEventKind::Released, &flows) {
            tracing::warn!(%unit, error = %e, "voice flows not revoked");
        }
        true
    }

    /// Voice flows programmed now.
    pub fn voice_flows(&self) -> usize {
        self.flows.values().map(|c| 2 * c.len()).sum()
    }

    /// Serves a unit's proxy request; `home` is the unit's home address
    /// from its initiating information. `credit` is what the caller's
    /// prepaid balance pays for, told with the caller's CONNECT. `Err`
    /// tells the unit the service is unavailable (with the reason, for
    /// the log).
    pub fn serve(
        &mut self,
        plane: &Plane,
        unit: IdentityCode,
        proxy: &super::Proxy,
        request: &ProxyRequest,
        credit: Option<u32>,
        now: SystemTime,
    ) -> Result<Vec<u8>, String> {
        let home = proxy.home_address;
        let op = request.op().map_err(|e| e.to_string())?;
        let reply = match op {
            ProxyOp::CallEvent {
                call_id,
                kind,
                media,
                ..
            } => {
                let failed = |cause| ProxyReply::Failed { op: op.op(), cause };
                match (kind, voice_flows(home, &media)) {
                    (CallEventKind::Released, _) => {
                        // What this proxy manager programmed for the call,
                        // whatever the event says.
                        let flows = self.flows.get_mut(&unit).and_then(|c| c.remove(&call_id));
                        if let Some(flows) = flows {
                            if let Err(e) = apply(plane, CallEventKind::Released, &flows) {
                                tracing::warn!(unit = %request.client, error = %e, "voice flows not revoked");
                            }
                        }
                        ProxyReply::EventNoted { max_seconds: None }
                    }
                    // The caller's CONNECT, before any media: noted (the
                    // charge opens here); the flows follow with the
                    // callee's SSRC.
                    (CallEventKind::Connected, Err(FlowError::Invalid))
                        if media.ssrc_in == 0 && *media.local.ip() == home =>
                    {
                        ProxyReply::EventNoted {
                            max_seconds: credit,
                        }
                    }
                    (_, Err(e)) => {
                        tracing::warn!(unit = %request.client, error = %e, "call event refused");
                        failed(CAUSE_NOT_AUTHORISED)
                    }
                    (CallEventKind::Connected, Ok(flows)) => {
                        let calls = self.flows.entry(unit).or_default();
                        if !calls.contains_key(&call_id) && calls.len() >= MAX_CALLS_PER_UNIT {
                            failed(CAUSE_NO_CIRCUIT)
                        } else {
                            match apply(plane, CallEventKind::Connected, &flows) {
                                Ok(()) => {
                                    calls.insert(call_id, flows);
                                    ProxyReply::EventNoted { max_seconds: None }
                                }
                                Err(e) => {
                                    tracing::warn!(unit = %request.client, error = %e, "voice flows not programmed");
                                    failed(CAUSE_TEMPORARY_FAILURE)
                                }
                            }
                        }
                    }
                }
            }
            ProxyOp::AcceptCall {
                call_id,
                number,
                ap_req,
            } => {
                let Some((principal, keys)) = &proxy.call else {
                    tracing::warn!(unit = %request.client, "a call for a unit without a call key");
                    return request
                        .answer(
                            &ProxyReply::Failed {
                                op: op.op(),
                                cause: CAUSE_NOT_AUTHORISED,
                            },
                            now,
                        )
                        .map_err(|e| e.to_string());
                };
                match handshake::answer(
                    ap_req,
                    keys,
                    principal,
                    call_id,
                    number,
                    &mut self.replay,
                    now,
                ) {
                    Ok(a) => {
                        let caller = a.caller.to_string();
                        tracing::info!(unit = %request.client, %caller, "call accepted");
                        let reply = ProxyReply::CallAccepted {
                            caller: &caller,
                            etype: a.caller_subkey.etype().to_i32(),
                            caller_subkey: Zeroizing::new(a.caller_subkey.as_bytes().to_vec()),
                            callee_subkey: Zeroizing::new(a.callee_subkey.as_bytes().to_vec()),
                            ap_rep: &a.ap_rep,
                        };
                        return request.answer(&reply, now).map_err(|e| e.to_string());
                    }
                    Err(e) => {
                        tracing::warn!(unit = %request.client, error = %e, "caller refused");
                        ProxyReply::Failed {
                            op: op.op(),
                            cause: e.q850_cause(),
                        }
                    }
                }
            }
            ProxyOp::CallTicket { .. } => {
                // The runner hands these to `super::ticket` instead.
                return Err("a call ticket is served by its own task, not here".into());
            }
        };
        request.answer(&reply, now).map_err(|e| e.to_string())
    }

    /// Revokes every voice flow of `unit` (it switched off, moved away or
    /// fell silent).
    pub fn revoke_unit(&mut self, plane: &Plane, unit: &IdentityCode) {
        for (_, flows) in self.flows.remove(unit).unwrap_or_default() {
            if let Err(e) = apply(plane, CallEventKind::Released, &flows) {
                tracing::warn!(%unit, error = %e, "voice flows not revoked");
            }
        }
    }
}

fn apply(plane: &Plane, kind: CallEventKind, flows: &[VoiceFlow; 2]) -> anyhow::Result<()> {
    let Plane::Maps(maps) = plane else {
        // The TUN forwarder has no voice path: nothing to program.
        return Ok(());
    };
    let mut maps = maps
        .lock()
        .map_err(|_| anyhow::anyhow!("the shared maps' lock is poisoned"))?;
    for f in flows {
        match kind {
            CallEventKind::Connected => maps.authorise_voice(f, Expiry::after(MAX_CALL))?,
            CallEventKind::Released => maps.revoke_voice(f)?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOME: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 51);

    fn media() -> Media {
        Media {
            local: "10.1.0.51:40000".parse().unwrap(),
            remote: "10.1.0.52:40002".parse().unwrap(),
            ssrc_out: 0x1111,
            ssrc_in: 0x2222,
        }
    }

    #[test]
    fn a_call_becomes_two_flows_to_and_from_the_home_address() {
        let [inbound, outbound] = voice_flows(HOME, &media()).unwrap();
        assert_eq!(
            inbound,
            VoiceFlow {
                src: Ipv4Addr::new(10, 1, 0, 52),
                dst: HOME,
                src_port: 40002,
                dst_port: 40000,
                ssrc: 0x2222,
            }
        );
        assert_eq!(
            outbound,
            VoiceFlow {
                src: HOME,
                dst: Ipv4Addr::new(10, 1, 0, 52),
                src_port: 40000,
                dst_port: 40002,
                ssrc: 0x1111,
            }
        );
    }

    #[test]
    fn a_unit_cannot_open_flows_for_another_address_or_nonsense() {
        let mut m = media();
        m.local = "10.1.0.99:40000".parse().unwrap();
        assert_eq!(
            voice_flows(HOME, &m),
            Err(FlowError::NotHome {
                got: Ipv4Addr::new(10, 1, 0, 99),
                home: HOME
            })
        );
        for bad in [
            Media {
                ssrc_in: 0,
                ..media()
            },
            Media {
                remote: "224.0.0.1:5000".parse().unwrap(),
                ..media()
            },
            Media {
                remote: "10.1.0.51:5000".parse().unwrap(),
                ..media()
            },
            Media {
                local: "10.1.0.51:0".parse().unwrap(),
                ..media()
            },
        ] {
            assert_eq!(voice_flows(HOME, &bad), Err(FlowError::Invalid));
        }
    }
}
