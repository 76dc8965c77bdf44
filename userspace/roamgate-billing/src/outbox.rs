//! The durable RADIUS outbox: one Accounting-Request Start per opened
//! charge and one Stop per closed (or expired) charge, written in the SAME
//! SQLite transaction as the ledger operation that caused it, so a crash
//! can lose neither and a retried operation (which writes nothing) cannot
//! enqueue a second one (`UNIQUE(call_id, kind)`).
//!
//! Sans-IO: the sender asks [`Outbox::due`] what to send now, sends it, and
//! calls [`Outbox::mark_sent`] once the server's Accounting-Response has
//! verified. `due` also schedules the next attempt of what it returns
//! (exponential backoff from [`INITIAL_RETRANSMIT`] up to
//! [`MAX_RETRANSMIT`]), so a server that is down sees each record again
//! later, forever, until it answers.
//!
//! Every (re)transmission is built at send time by
//! [`OutboxRecord::accounting_request`]: the same Acct-Session-Id and
//! attributes, with Acct-Delay-Time = now − event time. RFC 2866 §5.2:
//! when Acct-Delay-Time changes the packet is a new one, so it gets a new
//! Identifier and therefore a new Request Authenticator; a server detects
//! the duplicate by its Acct-Session-Id and Acct-Status-Type. A retransmit
//! within one attempt (same Identifier, same bytes) is the sender's
//! business, not the outbox's.

use std::time::{Duration, SystemTime};

use crate::ledger::{CallId, LedgerError};
use crate::radius::{AccountingRequest, AcctStatusType, Charge, Nas};

/// The wait after a first unanswered attempt.
pub const INITIAL_RETRANSMIT: Duration = Duration::from_secs(2);
/// The longest wait between two attempts.
pub const MAX_RETRANSMIT: Duration = Duration::from_secs(600);

/// The wait after the `attempts`-th attempt: 2 s, 4 s, 8 s, ... up to
/// [`MAX_RETRANSMIT`].
pub fn backoff(attempts: u32) -> Duration {
    let shift = attempts.saturating_sub(1).min(20);
    INITIAL_RETRANSMIT
        .saturating_mul(1u32 << shift)
        .min(MAX_RETRANSMIT)
}

/// Start or Stop.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Start,
    Stop,
}

impl RecordKind {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Start => "start",
            Self::Stop => "stop",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "start" => Some(Self::Start),
            "stop" => Some(Self::Stop),
            _ => None,
        }
    }
}

/// One outbox record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRecord {
    pub id: i64,
    pub call: CallId,
    pub kind: RecordKind,
    /// The account charged: the RADIUS User-Name.
    pub account: String,
    /// Stop: the billed seconds.
    pub session_time: Option<u64>,
    /// Stop: the amount charged, in minor units.
    pub amount: Option<i64>,
    /// When the call started (Start) or ended (Stop); the record was
    /// enqueued in the same transaction.
    pub event_at: SystemTime,
    /// Attempts so far (counting the one `due` just handed out).
    pub attempts: u32,
    pub next_attempt_at: SystemTime,
    pub sent_at: Option<SystemTime>,
    /// The ISO 4217 currency of the account's tariff, which its amounts
    /// count minor units of; `None` for an account without a tariff.
    pub currency: Option<[u8; 3]>,
}

impl OutboxRecord {
    /// Acct-Delay-Time at `now`: whole seconds since the event (0 if the
    /// clock is behind it).
    pub fn delay_time(&self, now: SystemTime) -> u32 {
        let secs = now
            .duration_since(self.event_at)
            .unwrap_or_default()
            .as_secs();
        u32::try_from(secs).unwrap_or(u32::MAX)
    }

    /// The Accounting-Request to send at `now` (see the module doc).
    pub fn accounting_request<'a>(
        &'a self,
        session_id: &'a [u8],
        now: SystemTime,
        nas: Nas<'a>,
        default_currency: [u8; 3],
    ) -> AccountingRequest<'a> {
        let event = self
            .event_at
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        AccountingRequest {
            status: match self.kind {
                RecordKind::Start => AcctStatusType::Start,
                RecordKind::Stop => AcctStatusType::Stop,
            },
            session_id,
            user_name: self.account.as_bytes(),
            session_time: self
                .session_time
                .map(|s| u32::try_from(s).unwrap_or(u32::MAX)),
            delay_time: Some(self.delay_time(now)),
            nas,
            event_timestamp: Some(u32::try_from(event).unwrap_or(u32::MAX)),
            charge: self.amount.map(|a| Charge {
                minor_units: a.unsigned_abs(),
                currency: self.currency.unwrap_or(default_currency),
            }),
        }
    }
}

/// The RADIUS outbox, in the ledger's store.
pub trait Outbox {
    /// Up to `limit` unsent records whose next attempt is due at `now`,
    /// oldest first. Each one's attempt count goes up by one and its next
    /// attempt is scheduled `backoff(attempts)` after `now`, durably,
    /// before this returns.
    fn due(&mut self, now: SystemTime, limit: usize) -> Result<Vec<OutboxRecord>, LedgerError>;

    /// Marks a record delivered (its Accounting-Response verified). `false`
    /// if it was already marked or does not exist.
    fn mark_sent(&mut self, id: i64, now: SystemTime) -> Result<bool, LedgerError>;

    /// Every record not yet delivered.
    fn pending(&self) -> Result<Vec<OutboxRecord>, LedgerError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap() {
        assert_eq!(backoff(0), Duration::from_secs(2));
        assert_eq!(backoff(1), Duration::from_secs(2));
        assert_eq!(backoff(2), Duration::from_secs(4));
        assert_eq!(backoff(3), Duration::from_secs(8));
        assert_eq!(backoff(9), Duration::from_secs(512));
        assert_eq!(backoff(10), MAX_RETRANSMIT);
        assert_eq!(backoff(u32::MAX), MAX_RETRANSMIT);
    }
}
