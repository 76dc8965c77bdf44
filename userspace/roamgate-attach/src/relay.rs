//! The base station's core (docs/attach.md §3): it relays unit frames to
//! its proxy manager inside a relay frame that names the base station, its
//! domain and the unit's link address, and hands answers back to the unit
//! that address names. It checks framing only; the proxy manager checks
//! the proof. No I/O.

use std::net::SocketAddrV4;

use crate::wire::{Frame, RelayRepr, Repr, WireError, MAX_DOMAIN_LEN};

/// Why a datagram was not relayed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RelayError {
    #[error("attach frame: {0}")]
    Wire(#[from] WireError),
    #[error("a {0} from a unit is not relayed (units send requests only)")]
    NotARequest(crate::wire::MessageType),
    #[error("a {0} from the proxy manager is not relayed (it sends answers only)")]
    NotAnAnswer(crate::wire::MessageType),
    #[error("the relay frame names base station {got}, this is {we_are}")]
    NotOurs { got: u32, we_are: u32 },
    #[error("base station domain {0:?} must be 1 to {MAX_DOMAIN_LEN} printable ASCII bytes")]
    BadDomain(String),
}

/// One base station.
#[derive(Debug, Clone)]
pub struct BaseStation {
    id: u32,
    domain: String,
}

impl BaseStation {
    pub fn new(id: u32, domain: &str) -> Result<Self, RelayError> {
        if domain.is_empty()
            || domain.len() > MAX_DOMAIN_LEN
            || !domain.bytes().all(|c| c.is_ascii_graphic())
        {
            return Err(RelayError::BadDomain(domain.to_owned()));
        }
        Ok(Self {
            id,
            domain: domain.to_owned(),
        })
    }

    /// A datagram from the unit at `unit`: the relay frame to send to the
    /// proxy manager.
    pub fn from_unit(&self, bytes: &[u8], unit: SocketAddrV4) -> Result<Vec<u8>, RelayError> {
        let ty = Repr::parse_bytes(bytes)?.msg_type();
        if !ty.is_request() {
            return Err(RelayError::NotARequest(ty));
        }
        Ok(RelayRepr {
            base_station: self.id,
            domain: &self.domain,
            unit,
            inner: bytes,
        }
        .to_bytes()?)
    }

    /// A datagram from the proxy manager: the unit's address and the frame
    /// to send it.
    pub fn from_manager<'a>(
        &self,
        bytes: &'a [u8],
    ) -> Result<(SocketAddrV4, &'a [u8]), RelayError> {
        let relay = RelayRepr::parse_bytes(bytes)?;
        if relay.base_station != self.id {
            return Err(RelayError::NotOurs {
                got: relay.base_station,
                we_are: self.id,
            });
        }
        let ty = Frame::new_unchecked(relay.inner).msg_type()?;
        if !ty.is_answer() {
            return Err(RelayError::NotAnAnswer(ty));
        }
        Ok((relay.unit, relay.inner))
    }
}

/// The proxy manager's side of the envelope: the answer to `request` (a
/// relay frame it received) carrying `answer` back to the same unit.
pub fn answer_relay(request: &RelayRepr<'_>, answer: &[u8]) -> Result<Vec<u8>, WireError> {
    RelayRepr {
        inner: answer,
        ..*request
    }
    .to_bytes()
}
