//! The H.245 subset that fastStart carries: an OpenLogicalChannel proposing
//! one G.711 audio channel over RTP (H2250LogicalChannelParameters), as the
//! MULTIMEDIA-SYSTEM-CONTROL module (H.245 v15) defines it.
//!
//! Every root component and every root alternative of the types below is
//! declared in schema order, so that the aligned PER preamble (optional bit
//! map, choice index) is the standard one; components and alternatives
//! roamgate never sends have the [`Unused`] placeholder type. A message that
//! uses one of them fails to decode with a typed error instead of being
//! misread. Extension additions are declared up to the last one used.

use std::net::{Ipv4Addr, SocketAddrV4};

use rasn::prelude::*;

use super::Error;

/// Placeholder for components and alternatives roamgate never sends (NULL).
pub type Unused = ();

/// OpenLogicalChannel ::= SEQUENCE { forwardLogicalChannelNumber,
/// forwardLogicalChannelParameters, reverseLogicalChannelParameters OPTIONAL,
/// ..., separateStack, encryptionSync, genericInformation }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct OpenLogicalChannel {
    /// LogicalChannelNumber ::= INTEGER (1..65535)
    #[rasn(value("1..=65535"))]
    pub forward_logical_channel_number: u16,
    pub forward_logical_channel_parameters: ForwardLogicalChannelParameters,
    pub reverse_logical_channel_parameters: Option<Unused>,
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct ForwardLogicalChannelParameters {
    pub port_number: Option<u16>,
    pub data_type: DataType,
    pub multiplex_parameters: ForwardMultiplexParameters,
}

/// DataType ::= CHOICE { nonStandard, nullData, videoData, audioData, data,
/// encryptionData, ..., h235Control, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum DataType {
    NonStandard(Unused),
    NullData(()),
    VideoData(Unused),
    AudioData(AudioCapability),
    Data(Unused),
    EncryptionData(Unused),
}

/// AudioCapability ::= CHOICE { nonStandard, g711Alaw64k INTEGER (1..256),
/// g711Alaw56k, g711Ulaw64k, g711Ulaw56k, g722-64k, g722-56k, g722-48k,
/// g7231, g728, g729, g729AnnexA, is11172AudioCapability,
/// is13818AudioCapability, ..., g729wAnnexB, ... }; the INTEGER is the
/// largest number of audio frames per packet (roamgate sends 20: 20 ms
/// packets).
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum AudioCapability {
    NonStandard(Unused),
    #[rasn(value("1..=256"))]
    G711Alaw64k(u16),
    #[rasn(value("1..=256"))]
    G711Alaw56k(u16),
    #[rasn(value("1..=256"))]
    G711Ulaw64k(u16),
    #[rasn(value("1..=256"))]
    G711Ulaw56k(u16),
    #[rasn(value("1..=256"))]
    G722_64k(u16),
    #[rasn(value("1..=256"))]
    G722_56k(u16),
    #[rasn(value("1..=256"))]
    G722_48k(u16),
    G7231(Unused),
    #[rasn(value("1..=256"))]
    G728(u16),
    #[rasn(value("1..=256"))]
    G729(u16),
    #[rasn(value("1..=256"))]
    G729AnnexA(u16),
    Is11172AudioCapability(Unused),
    Is13818AudioCapability(Unused),
}

/// multiplexParameters CHOICE { h222LogicalChannelParameters,
/// h223LogicalChannelParameters, v76LogicalChannelParameters, ...,
/// h2250LogicalChannelParameters, none }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum ForwardMultiplexParameters {
    H222LogicalChannelParameters(Unused),
    H223LogicalChannelParameters(Unused),
    V76LogicalChannelParameters(Unused),
    #[rasn(extension_addition)]
    H2250LogicalChannelParameters(H2250LogicalChannelParameters),
    #[rasn(extension_addition)]
    None(()),
}

#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct H2250LogicalChannelParameters {
    pub non_standard: Option<Unused>,
    pub session_id: u8,
    #[rasn(value("1..=255"))]
    pub associated_session_id: Option<u8>,
    pub media_channel: Option<TransportAddress>,
    pub media_guaranteed_delivery: Option<bool>,
    pub media_control_channel: Option<TransportAddress>,
    pub media_control_guaranteed_delivery: Option<bool>,
    pub silence_suppression: Option<bool>,
    pub destination: Option<Unused>,
    #[rasn(value("96..=127"))]
    pub dynamic_rtp_payload_type: Option<u8>,
    pub media_packetization: Option<Unused>,
}

/// TransportAddress ::= CHOICE { unicastAddress, multicastAddress, ...,
/// nonStandardAddress }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum TransportAddress {
    UnicastAddress(UnicastAddress),
    MulticastAddress(Unused),
}

/// UnicastAddress ::= CHOICE { iPAddress, iPXAddress, iP6Address, netBios,
/// iPSourceRouteAddress, ..., nsap, nonStandardAddress }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(choice, automatic_tags)]
#[non_exhaustive]
pub enum UnicastAddress {
    IpAddress(UnicastIpAddress),
    IpxAddress(Unused),
    Ip6Address(Unused),
    NetBios(Unused),
    IpSourceRouteAddress(Unused),
}

/// iPAddress SEQUENCE { network OCTET STRING (SIZE (4)), tsapIdentifier
/// TsapIdentifier, ... }
#[derive(AsnType, Encode, Decode, Debug, Clone, PartialEq, Eq)]
#[rasn(automatic_tags)]
#[non_exhaustive]
pub struct UnicastIpAddress {
    pub network: FixedOctetString<4>,
    pub tsap_identifier: u16,
}

impl From<SocketAddrV4> for TransportAddress {
    fn from(a: SocketAddrV4) -> Self {
        Self::UnicastAddress(UnicastAddress::IpAddress(UnicastIpAddress {
            network: FixedOctetString::new(a.ip().octets()),
            tsap_identifier: a.port(),
        }))
    }
}

impl TransportAddress {
    /// The IPv4 unicast address, if it is one.
    pub fn ipv4(&self) -> Option<SocketAddrV4> {
        match self {
            Self::UnicastAddress(UnicastAddress::IpAddress(a)) => {
                let n: [u8; 4] = *a.network;
                Some(SocketAddrV4::new(Ipv4Addr::from(n), a.tsap_identifier))
            }
            _ => None,
        }
    }
}

/// The codecs roamgate proposes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// G.711 µ-law, 64 kbit/s (the first choice).
    G711Ulaw,
    /// G.711 A-law, 64 kbit/s (the second choice).
    G711Alaw,
}

/// One fastStart proposal: a forward logical channel of G.711 audio over
/// RTP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Channel {
    pub logical_channel: u16,
    pub codec: Codec,
    /// Frames (of 1 ms for G.711) per packet: 20 for 20 ms packets.
    pub frames_per_packet: u16,
    /// RTP session id (1 for audio).
    pub session_id: u8,
    /// Where RTP goes.
    pub media: Option<SocketAddrV4>,
    /// Where RTCP goes.
    pub media_control: Option<SocketAddrV4>,
}

impl Channel {
    /// The OpenLogicalChannel, APER encoded: one fastStart OCTET STRING.
    pub fn to_olc_bytes(&self) -> Result<Vec<u8>, Error> {
        if self.logical_channel == 0 {
            return Err(Error::InvalidField("logical channel number"));
        }
        if !(1..=256).contains(&self.frames_per_packet) {
            return Err(Error::InvalidField("frames per packet"));
        }
        let audio = match self.codec {
            Codec::G711Ulaw => AudioCapability::G711Ulaw64k(self.frames_per_packet),
            Codec::G711Alaw => AudioCapability::G711Alaw64k(self.frames_per_packet),
        };
        let olc = OpenLogicalChannel {
            forward_logical_channel_number: self.logical_channel,
            forward_logical_channel_parameters: ForwardLogicalChannelParameters {
                port_number: None,
                data_type: DataType::AudioData(audio),
                multiplex_parameters: ForwardMultiplexParameters::H2250LogicalChannelParameters(
                    H2250LogicalChannelParameters {
                        non_standard: None,
                        session_id: self.session_id,
                        associated_session_id: None,
                        media_channel: self.media.map(TransportAddress::from),
                        media_guaranteed_delivery: Some(false),
                        media_control_channel: self.media_control.map(TransportAddress::from),
                        media_control_guaranteed_delivery: None,
                        silence_suppression: Some(false),
                        destination: None,
                        dynamic_rtp_payload_type: None,
                        media_packetization: None,
                    },
                ),
            },
            reverse_logical_channel_parameters: None,
        };
        rasn::aper::encode(&olc).map_err(|e| Error::Encode(e.to_string()))
    }

    /// Reads one fastStart OCTET STRING.
    pub fn from_olc_bytes(b: &[u8]) -> Result<Self, Error> {
        let olc: OpenLogicalChannel =
            rasn::aper::decode(b).map_err(|e| Error::Decode(e.to_string()))?;
        let p = olc.forward_logical_channel_parameters;
        let (codec, frames_per_packet) = match p.data_type {
            DataType::AudioData(AudioCapability::G711Ulaw64k(n)) => (Codec::G711Ulaw, n),
            DataType::AudioData(AudioCapability::G711Alaw64k(n)) => (Codec::G711Alaw, n),
            _ => return Err(Error::InvalidField("fastStart data type")),
        };
        let ForwardMultiplexParameters::H2250LogicalChannelParameters(h) = p.multiplex_parameters
        else {
            return Err(Error::InvalidField("fastStart multiplex parameters"));
        };
        Ok(Self {
            logical_channel: olc.forward_logical_channel_number,
            codec,
            frames_per_packet,
            session_id: h.session_id,
            media: h.media_channel.as_ref().and_then(TransportAddress::ipv4),
            media_control: h
                .media_control_channel
                .as_ref()
                .and_then(TransportAddress::ipv4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulaw() -> Channel {
        Channel {
            logical_channel: 1,
            codec: Codec::G711Ulaw,
            frames_per_packet: 20,
            session_id: 1,
            media: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), 40000)),
            media_control: Some(SocketAddrV4::new(Ipv4Addr::new(10, 1, 0, 10), 40001)),
        }
    }

    #[test]
    fn olc_round_trip() {
        for c in [
            ulaw(),
            Channel {
                codec: Codec::G711Alaw,
                media: None,
                ..ulaw()
            },
        ] {
            let b = c.to_olc_bytes().unwrap();
            assert_eq!(Channel::from_olc_bytes(&b).unwrap(), c);
        }
    }

    #[test]
    fn olc_errors() {
        let c = Channel {
            frames_per_packet: 0,
            ..ulaw()
        };
        assert_eq!(
            c.to_olc_bytes(),
            Err(Error::InvalidField("frames per packet"))
        );
        let c = Channel {
            logical_channel: 0,
            ..ulaw()
        };
        assert!(c.to_olc_bytes().is_err());
        assert!(matches!(
            Channel::from_olc_bytes(&[0xff]),
            Err(Error::Decode(_))
        ));
        let b = ulaw().to_olc_bytes().unwrap();
        for n in 0..b.len() {
            assert!(Channel::from_olc_bytes(&b[..n]).is_err(), "prefix {n}");
        }
    }
}
