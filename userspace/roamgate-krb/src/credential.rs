//! [`Credential`]: a ticket with its session key and what the KDC told us
//! about it. Its own module, so that the client (which obtains
//! credentials) and the AP exchange and KRB-CRED (which use them) depend on
//! it and not on each other.

use std::time::SystemTime;

use rasn_kerberos::Ticket;
use roamgate_krb_crypto::Key;

use crate::messages::{self, encode};
use crate::principal::Principal;

/// A ticket and what the KDC told us about it.
#[derive(Clone, Debug)]
pub struct Credential {
    pub client: Principal,
    pub server: Principal,
    pub session_key: Key,
    pub auth_time: SystemTime,
    pub start_time: Option<SystemTime>,
    pub end_time: SystemTime,
    pub renew_till: Option<SystemTime>,
    /// Ticket flags as a mask (see [`messages::ticket_flags`]).
    pub flags: u32,
    pub ticket: Ticket,
}

impl Credential {
    /// The ticket, DER-encoded (as a ccache stores it).
    pub fn ticket_der(&self) -> Vec<u8> {
        encode(&self.ticket)
    }

    pub fn is_forwardable(&self) -> bool {
        self.flags & messages::ticket_flags::FORWARDABLE != 0
    }

    /// Whether the ticket is a TGT for its client's realm.
    pub fn is_tgt(&self) -> bool {
        self.server.components.first().map(String::as_str) == Some("krbtgt")
    }

    /// Valid at `now` (between start and end).
    pub fn is_valid_at(&self, now: SystemTime) -> bool {
        self.start_time.unwrap_or(self.auth_time) <= now && now < self.end_time
    }
}
