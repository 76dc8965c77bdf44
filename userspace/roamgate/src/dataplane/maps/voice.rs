//! Voice flows in the XDP voice path (docs/wire.md §7).

use roamgate_common::maps as m;

use super::*;

impl Maps {
    /// Authorises a voice flow: its destination becomes a voice port (whose
    /// other traffic is dropped), and the flow gets a fresh replay window.
    /// The flow is inserted before the port, so no authorised packet is
    /// dropped in between. Re-authorising an existing flow keeps its window.
    pub fn authorise_voice(&mut self, f: &VoiceFlow, expires: Expiry) -> Result<(), MapsError> {
        let key = f.key();
        let window = get_opt(&self.voice_flows, &key, m::VOICE_FLOWS)?
            .map(|v| v.window)
            .unwrap_or_default();
        self.voice_flows
            .insert(
                key,
                VoiceFlowValue {
                    expires_ns: expires.ns(),
                    window,
                },
                0,
            )
            .map_err(map_err(m::VOICE_FLOWS))?;
        self.voice_ports
            .insert(f.port_key(), 0, 0)
            .map_err(map_err(m::VOICE_PORTS))?;
        // Last: until its bit is set the data plane does not look the port up.
        self.set_port_bit(f.dst_port, true)
    }

    /// Sets or clears UDP `port`'s bit in the voice-port bitmap.
    fn set_port_bit(&mut self, port: u16, on: bool) -> Result<(), MapsError> {
        let (word, bit) = m::voice_port_bit(port);
        let old = self
            .voice_port_bits
            .get(&word, 0)
            .map_err(map_err(m::VOICE_PORT_BITS))?;
        let new = if on { old | bit } else { old & !bit };
        if new != old {
            self.voice_port_bits
                .set(word, new, 0)
                .map_err(map_err(m::VOICE_PORT_BITS))?;
        }
        Ok(())
    }

    /// Revokes a voice flow. The voice port stays a voice port while another
    /// flow to it is authorised; after the last one it is released.
    pub fn revoke_voice(&mut self, f: &VoiceFlow) -> Result<(), MapsError> {
        remove_opt(&mut self.voice_flows, &f.key(), m::VOICE_FLOWS)?;
        let port = f.port_key();
        let mut still_used = false;
        for item in self.voice_flows.keys() {
            let k = item.map_err(map_err(m::VOICE_FLOWS))?;
            if k.dst == port.addr && k.dst_port == port.port {
                still_used = true;
                break;
            }
        }
        if !still_used {
            remove_opt(&mut self.voice_ports, &port, m::VOICE_PORTS)?;
            // The bit is per port number: clear it only when no address
            // keeps that port as a voice port.
            let mut number_used = false;
            for item in self.voice_ports.keys() {
                let k = item.map_err(map_err(m::VOICE_PORTS))?;
                if k.port == port.port {
                    number_used = true;
                    break;
                }
            }
            if !number_used {
                self.set_port_bit(f.dst_port, false)?;
            }
        }
        Ok(())
    }

    /// Every authorised voice flow.
    pub fn voice_flows(&self) -> Result<Vec<(VoiceFlow, Expiry)>, MapsError> {
        let mut out = Vec::new();
        for item in self.voice_flows.iter() {
            let (k, v) = item.map_err(map_err(m::VOICE_FLOWS))?;
            out.push((
                VoiceFlow {
                    src: Ipv4Addr::from(k.src),
                    dst: Ipv4Addr::from(k.dst),
                    src_port: u16::from_be_bytes(k.src_port),
                    dst_port: u16::from_be_bytes(k.dst_port),
                    ssrc: u32::from_be_bytes(k.ssrc),
                },
                Expiry::from_ns(v.expires_ns),
            ));
        }
        Ok(out)
    }

    /// Whether `(addr, port)` is a voice port, as the data plane sees it:
    /// the port's bit is set and the (address, port) entry exists.
    pub fn is_voice_port(&self, addr: Ipv4Addr, port: u16) -> Result<bool, MapsError> {
        let k = VoicePortKey {
            addr: addr.octets(),
            port: port.to_be_bytes(),
            pad: [0; 2],
        };
        Ok(self.voice_port_bit(port)? && get_opt(&self.voice_ports, &k, m::VOICE_PORTS)?.is_some())
    }

    /// Whether UDP `port`'s bit is set in the voice-port bitmap.
    pub fn voice_port_bit(&self, port: u16) -> Result<bool, MapsError> {
        let (word, bit) = m::voice_port_bit(port);
        let w = self
            .voice_port_bits
            .get(&word, 0)
            .map_err(map_err(m::VOICE_PORT_BITS))?;
        Ok(w & bit != 0)
    }
}
