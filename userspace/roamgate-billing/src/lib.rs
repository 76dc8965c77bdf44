//! Debiting (ARCHITECTURE.md flow 8): the ledger that charges the right
//! account the right sum, once, durably, and the RADIUS accounting records
//! it exports.
//!
//! Sans-IO, in the style of `roamgate-mip`: no sockets and no runtime; time
//! is passed in.
//! - [`tariff`]: setup fee + per-second rate in integer minor units,
//!   billed per started second, checked arithmetic.
//! - [`ledger`]: the model (accounts, charges keyed by call id, the
//!   idempotent operations and their answers) and the [`LedgerStore`]
//!   trait.
//! - [`store`]: [`SqliteLedger`], the ledger and the outbox in one SQLite
//!   file (WAL, `synchronous = FULL`), with group commit.
//! - [`outbox`]: the durable RADIUS outbox, written in the ledger's own
//!   transactions.
//! - [`radius`]: RFC 2866 Accounting-Request/Response encoding and
//!   authenticators.
//! - [`wire`], [`server`], [`client`]: the Kerberized charging service's
//!   datagrams, its core (AP-REQ + KRB-PRIV in, AP-REP + KRB-PRIV out, the
//!   account from the ticket's client principal) and the caller's side.
//!
//! docs/billing.md describes the model, the records and crash safety.

pub mod client;
pub mod ledger;
pub mod outbox;
pub mod radius;
pub mod server;
pub mod store;
pub mod tariff;
pub mod wire;

pub use ledger::{
    Account, AccountKind, CallId, ChargeStatus, LedgerError, LedgerStore, Op, Outcome, Refusal,
    ReportRow,
};
pub use outbox::{Outbox, OutboxRecord, RecordKind};
pub use store::SqliteLedger;
pub use tariff::{AmountError, Tariff};
