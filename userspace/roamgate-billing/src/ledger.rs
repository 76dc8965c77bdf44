//! The ledger model: accounts, charges keyed by the call's unique id, the
//! operations on them and their answers, and the [`LedgerStore`] trait an
//! operator's own database (PostgreSQL, say) can implement in place of
//! [`crate::store::SqliteLedger`].
//!
//! Double entry: money only moves in transactions of two postings that
//! sum to zero. A charge posts `-amount` to the subscriber and `+amount`
//! to the [`REVENUE`] account; a top-up posts `-amount` to [`TOPUP`] and
//! `+amount` to the subscriber. So the sum over all accounts is always 0
//! ([`LedgerStore::total`]).
//!
//! Every charge operation is keyed by the call id and idempotent: a retried
//! open or close (after a timeout, a crash, a duplicate datagram) answers
//! as the first one did and moves no money a second time.

use std::fmt;
use std::time::{Duration, SystemTime};

use crate::tariff::{AmountError, Tariff};

/// The revenue account every charge is paid to.
pub const REVENUE: &str = "revenue";
/// The source account every top-up ([`LedgerStore::credit`]) comes from.
pub const TOPUP: &str = "topup";

/// Seconds a prepaid balance must cover (beyond the setup fee) for a call
/// to be opened, by default.
pub const DEFAULT_MINIMUM_SECONDS: u64 = 60;

/// Longest account name (directory accounts are short strings).
pub const MAX_ACCOUNT_LEN: usize = 128;

/// A call's unique id (the H.225.0 CallIdentifier GUID).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CallId(pub [u8; 16]);

impl CallId {
    /// Lower-case hex, 32 characters: the RADIUS Acct-Session-Id.
    pub fn to_hex(&self) -> String {
        let mut s = String::with_capacity(32);
        for b in self.0 {
            s.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
            s.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
        }
        s
    }
}

impl fmt::Debug for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CallId({})", self.to_hex())
    }
}

impl fmt::Display for CallId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

/// What kind of account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccountKind {
    /// Pays from its balance, which never goes below zero: a call is
    /// refused when the balance does not cover the setup fee and the
    /// minimum seconds, and capped at what it covers.
    Prepaid,
    /// Pays later; the balance may go down to `-credit_limit`.
    Postpaid { credit_limit: i64 },
    /// The one [`REVENUE`] account.
    Revenue,
    /// The one [`TOPUP`] source account.
    Topup,
}

impl AccountKind {
    pub fn is_subscriber(&self) -> bool {
        matches!(self, Self::Prepaid | Self::Postpaid { .. })
    }
}

/// One account as [`LedgerStore::accounts`] lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    pub name: String,
    pub kind: AccountKind,
    /// The sum of its postings, in minor units.
    pub balance: i64,
}

/// Why an open was refused. Nothing is written for a refusal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Prepaid: the balance does not cover the setup fee plus the minimum
    /// seconds.
    InsufficientFunds { balance: i64, needed: i64 },
    /// Postpaid: the minimum charge would take the balance below
    /// `-credit_limit`.
    CreditLimit { balance: i64, credit_limit: i64 },
    /// No such subscriber account (revenue and topup cannot be charged).
    UnknownAccount,
    /// This call id is already charged to another account.
    Conflict { account: String },
}

/// A charge's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChargeStatus {
    Open,
    Closed,
    /// Closed by [`LedgerStore::expire_open`]: its close never came.
    Expired,
}

impl ChargeStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
            Self::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "open" => Some(Self::Open),
            "closed" => Some(Self::Closed),
            "expired" => Some(Self::Expired),
            _ => None,
        }
    }
}

/// One ledger operation, for [`LedgerStore::apply_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Open {
        call: CallId,
        account: String,
        tariff: Tariff,
        started_at: SystemTime,
    },
    Close {
        call: CallId,
        ended_at: SystemTime,
    },
    Credit {
        account: String,
        amount: i64,
    },
}

/// The answer to one [`Op`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The charge is open; a Start record is in the outbox.
    /// `allowed_seconds`: for a prepaid account, the seconds from the
    /// call's start that its balance pays for (the call is cut then);
    /// `None` when nothing limits the call.
    Opened {
        allowed_seconds: Option<u64>,
    },
    /// The same call id was already opened for the same account (it may be
    /// closed since): nothing written. `allowed_seconds` as for `Opened`,
    /// at today's balance (`None` once closed).
    AlreadyOpen {
        allowed_seconds: Option<u64>,
    },
    Refused(Refusal),
    /// The charge is closed and `amount` moved; a Stop record is in the
    /// outbox. `seconds` is what was billed (capped for prepaid).
    Closed {
        amount: i64,
        seconds: u64,
    },
    /// The charge was already closed (or expired): the same answer again,
    /// nothing moved.
    AlreadyClosed {
        amount: i64,
        seconds: u64,
        expired: bool,
    },
    /// No charge was opened for this call id: nothing written.
    UnknownCall,
    /// A top-up went through; the account's new balance.
    Credited {
        balance: i64,
    },
}

/// One row of [`LedgerStore::report`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReportRow {
    pub call: CallId,
    pub account: String,
    pub started_at: SystemTime,
    pub ended_at: Option<SystemTime>,
    pub seconds: Option<u64>,
    pub amount: Option<i64>,
    pub status: ChargeStatus,
}

/// What failed in the ledger. An operation that fails writes nothing.
#[derive(Debug, thiserror::Error)]
pub enum LedgerError {
    #[error("ledger {path}: {source}")]
    Sqlite {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("ledger {path}: cannot set mode 0600: {source}")]
    Permissions {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("amount: {0}")]
    Amount(#[from] AmountError),
    #[error("unknown account {0:?}")]
    UnknownAccount(String),
    #[error("account {0:?} exists already")]
    AccountExists(String),
    #[error("invalid account name {0:?} (1 to {MAX_ACCOUNT_LEN} printable ASCII characters)")]
    InvalidAccountName(String),
    #[error("account {0:?} cannot take this operation (not a subscriber account)")]
    NotSubscriber(String),
    #[error("ledger: {0} would overflow")]
    BalanceOverflow(String),
    #[error("ledger: time before 1970 or after 292 million years")]
    BadTime,
    #[error("ledger: corrupt row: {0}")]
    Corrupt(String),
}

/// Checks an account name: 1 to [`MAX_ACCOUNT_LEN`] printable ASCII
/// characters, no spaces (it becomes a RADIUS User-Name and a CSV cell).
pub fn check_account_name(name: &str) -> Result<(), LedgerError> {
    if name.is_empty()
        || name.len() > MAX_ACCOUNT_LEN
        || !name
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b',' && b != b'"')
    {
        return Err(LedgerError::InvalidAccountName(name.to_owned()));
    }
    Ok(())
}

/// The debiting ledger. Implementations make each method (and each
/// [`LedgerStore::apply_batch`]) atomic and durable at return.
pub trait LedgerStore {
    /// Creates a subscriber account (Prepaid or Postpaid) with balance 0.
    fn create_account(&mut self, name: &str, kind: AccountKind) -> Result<(), LedgerError>;

    /// Opens the charge of `call` to `account` under `tariff`.
    fn open_charge(
        &mut self,
        call: CallId,
        account: &str,
        tariff: Tariff,
        started_at: SystemTime,
    ) -> Result<Outcome, LedgerError> {
        self.apply_one(Op::Open {
            call,
            account: account.to_owned(),
            tariff,
            started_at,
        })
    }

    /// Closes the charge of `call`, moving its amount.
    fn close_charge(&mut self, call: CallId, ended_at: SystemTime) -> Result<Outcome, LedgerError> {
        self.apply_one(Op::Close { call, ended_at })
    }

    /// Tops up `account` by `amount` (> 0) from [`TOPUP`]; its new balance.
    fn credit(&mut self, account: &str, amount: i64) -> Result<i64, LedgerError> {
        match self.apply_one(Op::Credit {
            account: account.to_owned(),
            amount,
        })? {
            Outcome::Credited { balance } => Ok(balance),
            other => Err(LedgerError::Corrupt(format!("credit answered {other:?}"))),
        }
    }

    /// Runs `ops` in ONE transaction (one fsync: group commit), in order,
    /// each with its own answer and each exactly as idempotent as alone.
    /// An op that fails validation gets its `Err` and writes nothing; the
    /// others still commit. The outer `Err` is a storage failure, and then
    /// nothing of the batch is committed.
    fn apply_batch(&mut self, ops: &[Op])
        -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError>;

    /// One op (a batch of one).
    fn apply_one(&mut self, op: Op) -> Result<Outcome, LedgerError> {
        self.apply_batch(std::slice::from_ref(&op))?
            .pop()
            .unwrap_or_else(|| Err(LedgerError::Corrupt("empty batch answer".into())))
    }

    /// For an open prepaid charge: how many seconds from its start the
    /// balance pays for now (the proxy cuts the call then). `None` for a
    /// postpaid charge, a zero rate, or a charge that is not open.
    fn allowed_seconds(&self, call: CallId) -> Result<Option<u64>, LedgerError>;

    /// Closes every charge still open at `started_at + max_duration <= now`
    /// as if it ended then, marked [`ChargeStatus::Expired`]. Returns the
    /// expired calls and their amounts. A charge whose amount would
    /// overflow (an absurd tariff) is left open rather than holding up the
    /// others.
    fn expire_open(
        &mut self,
        now: SystemTime,
        max_duration: Duration,
    ) -> Result<Vec<(CallId, i64)>, LedgerError>;

    fn balance(&self, account: &str) -> Result<i64, LedgerError>;

    fn accounts(&self) -> Result<Vec<Account>, LedgerError>;

    /// The charges started in `from ..= to`, oldest first.
    fn report(&self, from: SystemTime, to: SystemTime) -> Result<Vec<ReportRow>, LedgerError>;

    /// The sum of all balances: 0, always (i128: no overflow in the sum).
    fn total(&self) -> Result<i128, LedgerError>;
}
