//! Mobile IPv4 registration (RFC 5944) for roamgate: the wire format, the
//! MN-HA authentication, timestamp Identification, the Kerberos AP-REQ
//! carried in a CVSE, and the home-agent and mobile-node protocol cores.
//!
//! The cores do no I/O. They take bytes and the time, and return the bytes
//! to send, the data-plane [`Action`]s to apply and (home agent) the
//! [`journal::JournalOp`]s to persist. A daemon applies, for each outcome,
//! in this order: journal, actions, then sends the reply. That order keeps
//! the rule of docs/mobile-ip.md: no packet is sent under a key the peer
//! lacks.

use std::net::Ipv4Addr;
use std::time::SystemTime;

pub mod auth;
pub mod home_agent;
pub mod identification;
pub mod journal;
pub mod kerberos;
pub mod mobile_node;
pub mod rate_limit;
pub mod tunnel_key;
pub mod wire;

pub use tunnel_key::MasterKey;

/// Which end of a tunnel an action is for (owned by `roamgate-common`, whose
/// map encodings the data plane uses).
pub use roamgate_common::maps::Role;

/// One tunnel to install in the data plane (through the map API of
/// `roamgate::dataplane::maps`: `TunnelSpec::new(spi, role, local, home,
/// &master_key)`).
#[derive(Debug, Clone)]
pub struct TunnelInstall {
    /// The tunnel SPI (derived with the key, docs/mobile-ip.md).
    pub spi: u32,
    pub role: Role,
    /// This end's tunnel address (outer source of what it sends).
    pub local: Ipv4Addr,
    /// The other end's tunnel address.
    pub remote: Ipv4Addr,
    /// The mobile node's home address carried by the tunnel.
    pub home: Ipv4Addr,
    pub master_key: MasterKey,
    /// When the tunnel stops being valid (binding expiry plus the grace).
    pub expires: SystemTime,
}

// By hand: the master key has no `PartialEq`, only a constant-time `ct_eq`.
impl PartialEq for TunnelInstall {
    fn eq(&self, other: &Self) -> bool {
        let Self {
            spi,
            role,
            local,
            remote,
            home,
            master_key,
            expires,
        } = self;
        *spi == other.spi
            && *role == other.role
            && *local == other.local
            && *remote == other.remote
            && *home == other.home
            && master_key.ct_eq(&other.master_key)
            && *expires == other.expires
    }
}

impl Eq for TunnelInstall {}

/// What a core asks the data plane to do, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Install a tunnel (receive side ready) before any binding uses it.
    InstallTunnel(TunnelInstall),
    /// Point the binding of `home` at tunnel `spi` towards `remote`
    /// (create or replace atomically).
    SetBinding {
        home: Ipv4Addr,
        role: Role,
        remote: Ipv4Addr,
        spi: u32,
        expires: SystemTime,
        /// Reverse tunnelling (RFC 3024) was requested and granted.
        reverse_tunnel: bool,
    },
    /// Stop sending for `home`.
    RemoveBinding { home: Ipv4Addr, role: Role },
    /// Remove a tunnel no binding points at any more.
    RemoveTunnel { spi: u32 },
}

#[cfg(test)]
mod tests {
    /// The cores move into tokio tasks.
    #[test]
    fn cores_are_send() {
        fn send<T: Send>() {}
        send::<crate::home_agent::HomeAgent>();
        send::<crate::mobile_node::MobileNode>();
        send::<crate::journal::SqliteJournal>();
        send::<crate::Action>();
    }
}
