//! The ledger and its RADIUS outbox in SQLite (rusqlite, bundled), one
//! file, mode 0600.
//!
//! Durability: WAL with `synchronous = FULL`, so a transaction is on disk
//! when its COMMIT returns (the WAL is fsync'd at every commit). Every
//! [`LedgerStore`] method is one transaction; [`LedgerStore::apply_batch`]
//! runs many operations in one transaction, one fsync: group commit. Each
//! op inside runs under a SAVEPOINT, so an op refused by validation leaves
//! nothing behind while the rest of the batch commits.
//!
//! Double charging is impossible by construction as well as by logic: a
//! charge transaction carries its call id under a UNIQUE constraint, and
//! the outbox holds at most one Start and one Stop per call id.

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection, OptionalExtension, Transaction};

use crate::ledger::{
    check_account_name, Account, AccountKind, CallId, ChargeStatus, LedgerError, LedgerStore, Op,
    Outcome, Refusal, ReportRow, DEFAULT_MINIMUM_SECONDS, REVENUE, TOPUP,
};
use crate::outbox::{backoff, Outbox, OutboxRecord, RecordKind};
use crate::tariff::{check_amount, Tariff};

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS accounts (
    name TEXT PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('prepaid', 'postpaid', 'revenue', 'topup')),
    credit_limit INTEGER NOT NULL DEFAULT 0,
    balance INTEGER NOT NULL DEFAULT 0
);
-- One row per money movement; a charge's carries its call id, once.
CREATE TABLE IF NOT EXISTS txns (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (kind IN ('charge', 'topup')),
    call_id BLOB UNIQUE,
    at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS postings (
    txn INTEGER NOT NULL REFERENCES txns(id),
    account TEXT NOT NULL REFERENCES accounts(name),
    amount INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS postings_txn ON postings(txn);
CREATE TABLE IF NOT EXISTS charges (
    call_id BLOB PRIMARY KEY CHECK (length(call_id) = 16),
    account TEXT NOT NULL REFERENCES accounts(name),
    setup_fee INTEGER NOT NULL,
    per_second INTEGER NOT NULL,
    started_ms INTEGER NOT NULL,
    ended_ms INTEGER,
    seconds INTEGER,
    amount INTEGER,
    status TEXT NOT NULL CHECK (status IN ('open', 'closed', 'expired'))
);
CREATE INDEX IF NOT EXISTS charges_started ON charges(started_ms);
CREATE INDEX IF NOT EXISTS charges_open ON charges(started_ms) WHERE status = 'open';
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY,
    call_id BLOB NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('start', 'stop')),
    account TEXT NOT NULL,
    session_time INTEGER,
    amount INTEGER,
    event_ms INTEGER NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_ms INTEGER NOT NULL,
    sent_ms INTEGER,
    UNIQUE (call_id, kind)
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox(next_ms) WHERE sent_ms IS NULL;
-- The service's view of who may charge what (docs/billing.md, Account
-- mapping): a ticket's client principal names one account, and each
-- subscriber account has the tariff its calls are opened under.
CREATE TABLE IF NOT EXISTS principals (
    principal TEXT PRIMARY KEY,
    account TEXT NOT NULL REFERENCES accounts(name)
);
CREATE TABLE IF NOT EXISTS tariffs (
    account TEXT PRIMARY KEY REFERENCES accounts(name),
    setup_fee INTEGER NOT NULL,
    per_second INTEGER NOT NULL,
    currency TEXT NOT NULL
);
INSERT OR IGNORE INTO accounts (name, kind) VALUES ('revenue', 'revenue');
INSERT OR IGNORE INTO accounts (name, kind) VALUES ('topup', 'topup');
";

fn to_ms(t: SystemTime) -> Result<i64, LedgerError> {
    let d = t
        .duration_since(UNIX_EPOCH)
        .map_err(|_| LedgerError::BadTime)?;
    i64::try_from(d.as_millis()).map_err(|_| LedgerError::BadTime)
}

fn from_ms(v: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(v.max(0).unsigned_abs())
}

fn kind_str(kind: AccountKind) -> (&'static str, i64) {
    match kind {
        AccountKind::Prepaid => ("prepaid", 0),
        AccountKind::Postpaid { credit_limit } => ("postpaid", credit_limit),
        AccountKind::Revenue => ("revenue", 0),
        AccountKind::Topup => ("topup", 0),
    }
}

fn parse_kind(kind: &str, credit_limit: i64) -> Result<AccountKind, LedgerError> {
    Ok(match kind {
        "prepaid" => AccountKind::Prepaid,
        "postpaid" => AccountKind::Postpaid { credit_limit },
        "revenue" => AccountKind::Revenue,
        "topup" => AccountKind::Topup,
        other => return Err(LedgerError::Corrupt(format!("account kind {other:?}"))),
    })
}

fn call_id(v: Vec<u8>) -> Result<CallId, LedgerError> {
    <[u8; 16]>::try_from(v.as_slice())
        .map(CallId)
        .map_err(|_| LedgerError::Corrupt("call id is not 16 bytes".into()))
}

/// A charge as stored.
struct ChargeRow {
    account: String,
    setup_fee: i64,
    per_second: i64,
    started_ms: i64,
    seconds: Option<i64>,
    amount: Option<i64>,
    status: String,
}

impl ChargeRow {
    fn tariff(&self) -> Result<Tariff, LedgerError> {
        Tariff::new(self.setup_fee, self.per_second)
            .map_err(|e| LedgerError::Corrupt(format!("tariff of a charge: {e}")))
    }

    fn status(&self) -> Result<ChargeStatus, LedgerError> {
        ChargeStatus::parse(&self.status)
            .ok_or_else(|| LedgerError::Corrupt(format!("charge status {:?}", self.status)))
    }
}

/// The SQLite ledger. See the module doc.
pub struct SqliteLedger {
    conn: Connection,
    path: String,
    minimum_seconds: u64,
}

impl std::fmt::Debug for SqliteLedger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SqliteLedger")
            .field("path", &self.path)
            .field("minimum_seconds", &self.minimum_seconds)
            .finish()
    }
}

/// A rusqlite error of this ledger.
fn sql(path: &str) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
    move |source| LedgerError::Sqlite {
        path: path.to_owned(),
        source,
    }
}

impl SqliteLedger {
    /// Opens (or creates, mode 0600) the ledger at `path`.
    pub fn open(path: &Path) -> Result<Self, LedgerError> {
        let name = path.display().to_string();
        let perm = |source| LedgerError::Permissions {
            path: name.clone(),
            source,
        };
        if !path.exists() {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)
                .map_err(perm)?;
        }
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(perm)?;
        }
        let conn = Connection::open(path).map_err(sql(&name))?;
        // FULL: the WAL is fsync'd at every commit, so a committed charge
        // survives a power cut, not only a crash of this process.
        conn.execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
        )
        .map_err(sql(&name))?;
        Self::init(conn, name)
    }

    /// A ledger in memory (tests).
    pub fn in_memory() -> Result<Self, LedgerError> {
        let name = ":memory:".to_owned();
        let conn = Connection::open_in_memory().map_err(sql(&name))?;
        conn.execute_batch("PRAGMA foreign_keys = ON;")
            .map_err(sql(&name))?;
        Self::init(conn, name)
    }

    fn init(conn: Connection, path: String) -> Result<Self, LedgerError> {
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(sql(&path))?;
        conn.execute_batch(SCHEMA).map_err(sql(&path))?;
        conn.set_prepared_statement_cache_capacity(64);
        Ok(Self {
            conn,
            path,
            minimum_seconds: DEFAULT_MINIMUM_SECONDS,
        })
    }

    /// The seconds a prepaid balance must cover, beyond the setup fee, for
    /// a call to open (default [`DEFAULT_MINIMUM_SECONDS`]).
    pub fn set_minimum_seconds(&mut self, seconds: u64) {
        self.minimum_seconds = seconds;
    }

    fn err(&self) -> impl Fn(rusqlite::Error) -> LedgerError + '_ {
        sql(&self.path)
    }

    /// Checks the books: every balance is the sum of its postings, every
    /// transaction's postings sum to zero, every closed charge has exactly
    /// one charge transaction moving its amount and every open one none,
    /// and the outbox has one Start per charge and one Stop per closed one.
    pub fn check_consistency(&self) -> Result<(), LedgerError> {
        let e = self.err();
        let bad: Option<String> = self
            .conn
            .query_row(
                "SELECT a.name FROM accounts a
                 WHERE a.balance != (SELECT COALESCE(SUM(p.amount), 0) FROM postings p
                                     WHERE p.account = a.name)
                 LIMIT 1",
                [],
                |r| r.get(0),
            )
            .optional()
            .map_err(&e)?;
        if let Some(a) = bad {
            return Err(LedgerError::Corrupt(format!(
                "balance of {a:?} != its postings"
            )));
        }
        let unbalanced: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM (SELECT txn FROM postings GROUP BY txn
                 HAVING SUM(amount) != 0 OR COUNT(*) != 2)",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if unbalanced != 0 {
            return Err(LedgerError::Corrupt(format!(
                "{unbalanced} transactions do not balance"
            )));
        }
        let wrong: i64 = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM charges c WHERE
                   (c.status = 'open' AND EXISTS (SELECT 1 FROM txns t WHERE t.call_id = c.call_id))
                OR (c.status != 'open' AND (
                     (SELECT COUNT(*) FROM txns t WHERE t.call_id = c.call_id) != 1
                  OR (SELECT p.amount FROM txns t JOIN postings p ON p.txn = t.id
                      WHERE t.call_id = c.call_id AND p.account = c.account) IS NOT -c.amount
                  OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.call_id = c.call_id
                                 AND o.kind = 'stop' AND o.amount = c.amount)))
                OR NOT EXISTS (SELECT 1 FROM outbox o WHERE o.call_id = c.call_id
                               AND o.kind = 'start')",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if wrong != 0 {
            return Err(LedgerError::Corrupt(format!(
                "{wrong} charges disagree with their transactions or records"
            )));
        }
        let orphans: i64 = self
            .conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM txns t WHERE t.kind = 'charge' AND NOT EXISTS
                           (SELECT 1 FROM charges c WHERE c.call_id = t.call_id))
                      + (SELECT COUNT(*) FROM outbox o WHERE NOT EXISTS
                           (SELECT 1 FROM charges c WHERE c.call_id = o.call_id))
                      + (SELECT COUNT(*) FROM txns t WHERE NOT EXISTS
                           (SELECT 1 FROM postings p WHERE p.txn = t.id))
                      + (SELECT COUNT(*) FROM outbox o WHERE o.kind = 'stop' AND EXISTS
                           (SELECT 1 FROM charges c WHERE c.call_id = o.call_id
                            AND c.status = 'open'))",
                [],
                |r| r.get(0),
            )
            .map_err(&e)?;
        if orphans != 0 {
            return Err(LedgerError::Corrupt(format!(
                "{orphans} transactions or records without their charge"
            )));
        }
        Ok(())
    }

    /// The journal mode and the `synchronous` level of this connection
    /// (`("wal", 2)`, FULL, for a file).
    pub fn durability(&self) -> Result<(String, i64), LedgerError> {
        let e = self.err();
        let mode = self
            .conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .map_err(&e)?;
        let sync = self
            .conn
            .query_row("PRAGMA synchronous", [], |r| r.get(0))
            .map_err(&e)?;
        Ok((mode, sync))
    }

    /// Every outbox record, delivered or not, in order (tests, audits).
    pub fn outbox_records(&self) -> Result<Vec<OutboxRecord>, LedgerError> {
        read_records(&self.conn, "1 = 1", &[], &self.path)
    }

    /// Binds the Kerberos client principal `principal` to the subscriber
    /// account `account` (replacing an earlier binding of that principal).
    /// The billing service charges a request to the account of its
    /// ticket's client principal, and to no other.
    pub fn bind_principal(&mut self, principal: &str, account: &str) -> Result<(), LedgerError> {
        if principal.is_empty() || principal.len() > 512 {
            return Err(LedgerError::Corrupt(format!(
                "principal {principal:?}: 1 to 512 bytes"
            )));
        }
        match account_row(&self.conn, account).map_err(self.err())? {
            Some((kind, limit, _)) if parse_kind(&kind, limit)?.is_subscriber() => {}
            Some(_) => return Err(LedgerError::NotSubscriber(account.to_owned())),
            None => return Err(LedgerError::UnknownAccount(account.to_owned())),
        }
        self.conn
            .execute(
                "INSERT INTO principals (principal, account) VALUES (?1, ?2)
                 ON CONFLICT (principal) DO UPDATE SET account = excluded.account",
                params![principal, account],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The account `principal` is bound to, if any.
    pub fn account_for(&self, principal: &str) -> Result<Option<String>, LedgerError> {
        self.conn
            .prepare_cached("SELECT account FROM principals WHERE principal = ?1")
            .and_then(|mut st| st.query_row([principal], |r| r.get(0)).optional())
            .map_err(self.err())
    }

    /// Sets the tariff (and its ISO 4217 currency) new calls of `account`
    /// are opened under.
    pub fn set_tariff(
        &mut self,
        account: &str,
        tariff: Tariff,
        currency: &str,
    ) -> Result<(), LedgerError> {
        if currency.len() != 3 || !currency.bytes().all(|b| b.is_ascii_uppercase()) {
            return Err(LedgerError::Corrupt(format!(
                "currency {currency:?}: three upper-case letters (ISO 4217)"
            )));
        }
        if account_row(&self.conn, account)
            .map_err(self.err())?
            .is_none()
        {
            return Err(LedgerError::UnknownAccount(account.to_owned()));
        }
        self.conn
            .execute(
                "INSERT INTO tariffs (account, setup_fee, per_second, currency) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (account) DO UPDATE SET setup_fee = excluded.setup_fee,
                     per_second = excluded.per_second, currency = excluded.currency",
                params![account, tariff.setup_fee(), tariff.per_second(), currency],
            )
            .map_err(self.err())?;
        Ok(())
    }

    /// The tariff and currency of `account`, if one is set.
    pub fn tariff_for(&self, account: &str) -> Result<Option<(Tariff, String)>, LedgerError> {
        let row: Option<(i64, i64, String)> = self
            .conn
            .prepare_cached(
                "SELECT setup_fee, per_second, currency FROM tariffs WHERE account = ?1",
            )
            .and_then(|mut st| {
                st.query_row([account], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
                    .optional()
            })
            .map_err(self.err())?;
        row.map(|(fee, rate, cur)| {
            Tariff::new(fee, rate)
                .map(|t| (t, cur))
                .map_err(|e| LedgerError::Corrupt(format!("tariff of {account}: {e}")))
        })
        .transpose()
    }

    /// How many outbox records are not yet delivered (a metrics gauge;
    /// cheaper than listing them with `pending`).
    pub fn outbox_pending_count(&self) -> Result<u64, LedgerError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM outbox WHERE sent_ms IS NULL")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(self.err())?;
        Ok(n.unsigned_abs())
    }

    /// How many charges are open (calls in progress being charged).
    pub fn open_charges_count(&self) -> Result<u64, LedgerError> {
        let n: i64 = self
            .conn
            .prepare_cached("SELECT count(*) FROM charges WHERE status = 'open'")
            .and_then(|mut st| st.query_row([], |r| r.get(0)))
            .map_err(self.err())?;
        Ok(n.unsigned_abs())
    }

    /// The account the charge of `call` is on, if it was opened.
    pub fn charge_account(&self, call: CallId) -> Result<Option<String>, LedgerError> {
        charge_row(&self.conn, &call)
            .map(|r| r.map(|r| r.account))
            .map_err(self.err())
    }
}

// ---------------------------------------------------------------------------
// The operations, inside a transaction.

fn charge_row(tx: &Connection, call: &CallId) -> rusqlite::Result<Option<ChargeRow>> {
    tx.prepare_cached(
        "SELECT account, setup_fee, per_second, started_ms, seconds, amount, status
         FROM charges WHERE call_id = ?1",
    )?
    .query_row([&call.0[..]], |r| {
        Ok(ChargeRow {
            account: r.get(0)?,
            setup_fee: r.get(1)?,
            per_second: r.get(2)?,
            started_ms: r.get(3)?,
            seconds: r.get(4)?,
            amount: r.get(5)?,
            status: r.get(6)?,
        })
    })
    .optional()
}

fn account_row(tx: &Connection, name: &str) -> rusqlite::Result<Option<(String, i64, i64)>> {
    tx.prepare_cached("SELECT kind, credit_limit, balance FROM accounts WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()
}

/// Moves `amount` from `from` to `to` in a new transaction of two
/// postings. The new balances are computed (checked) before anything is
/// written.
fn transfer(
    tx: &Connection,
    kind: &str,
    call: Option<&CallId>,
    at_ms: i64,
    from: (&str, i64),
    to: (&str, i64),
    amount: i64,
) -> Result<(i64, i64), LedgerError> {
    let from_new = from
        .1
        .checked_sub(amount)
        .ok_or_else(|| LedgerError::BalanceOverflow(from.0.to_owned()))?;
    let to_new =
        to.1.checked_add(amount)
            .ok_or_else(|| LedgerError::BalanceOverflow(to.0.to_owned()))?;
    let inner = || -> rusqlite::Result<()> {
        tx.prepare_cached("INSERT INTO txns (kind, call_id, at_ms) VALUES (?1, ?2, ?3)")?
            .execute(params![kind, call.map(|c| &c.0[..]), at_ms])?;
        let txn = tx.last_insert_rowid();
        let mut post =
            tx.prepare_cached("INSERT INTO postings (txn, account, amount) VALUES (?1, ?2, ?3)")?;
        post.execute(params![txn, from.0, -amount])?;
        post.execute(params![txn, to.0, amount])?;
        let mut bal = tx.prepare_cached("UPDATE accounts SET balance = ?2 WHERE name = ?1")?;
        bal.execute(params![from.0, from_new])?;
        bal.execute(params![to.0, to_new])?;
        Ok(())
    };
    inner().map_err(|source| LedgerError::Sqlite {
        path: String::new(),
        source,
    })?;
    Ok((from_new, to_new))
}

fn open_op(
    tx: &Connection,
    minimum_seconds: u64,
    call: &CallId,
    account: &str,
    tariff: &Tariff,
    started_at: SystemTime,
) -> Result<Outcome, LedgerError> {
    let started_ms = to_ms(started_at)?;
    let s = |source| LedgerError::Sqlite {
        path: String::new(),
        source,
    };
    if let Some(row) = charge_row(tx, call).map_err(s)? {
        return Ok(if row.account == account {
            Outcome::AlreadyOpen {
                allowed_seconds: allowed_for(tx, call)?,
            }
        } else {
            Outcome::Refused(Refusal::Conflict {
                account: row.account,
            })
        });
    }
    check_account_name(account)?;
    let Some((kind, credit_limit, balance)) = account_row(tx, account).map_err(s)? else {
        return Ok(Outcome::Refused(Refusal::UnknownAccount));
    };
    let needed = tariff.charge_seconds(minimum_seconds)?;
    match parse_kind(&kind, credit_limit)? {
        AccountKind::Prepaid => {
            if balance < needed {
                return Ok(Outcome::Refused(Refusal::InsufficientFunds {
                    balance,
                    needed,
                }));
            }
        }
        AccountKind::Postpaid { credit_limit } => {
            let after = i128::from(balance) - i128::from(needed);
            if after < -i128::from(credit_limit) {
                return Ok(Outcome::Refused(Refusal::CreditLimit {
                    balance,
                    credit_limit,
                }));
            }
        }
        AccountKind::Revenue | AccountKind::Topup => {
            return Ok(Outcome::Refused(Refusal::UnknownAccount))
        }
    }
    let inner = || -> rusqlite::Result<()> {
        tx.prepare_cached(
            "INSERT INTO charges (call_id, account, setup_fee, per_second, started_ms, status)
             VALUES (?1, ?2, ?3, ?4, ?5, 'open')",
        )?
        .execute(params![
            &call.0[..],
            account,
            tariff.setup_fee(),
            tariff.per_second(),
            started_ms
        ])?;
        tx.prepare_cached(
            "INSERT INTO outbox (call_id, kind, account, event_ms, next_ms)
             VALUES (?1, 'start', ?2, ?3, ?3)",
        )?
        .execute(params![&call.0[..], account, started_ms])?;
        Ok(())
    };
    inner().map_err(s)?;
    Ok(Outcome::Opened {
        allowed_seconds: allowed_for(tx, call)?,
    })
}

/// For an open prepaid charge: the seconds from its start that the
/// balance pays for now. `None` for postpaid, a zero rate, or a charge
/// that is not open.
fn allowed_for(tx: &Connection, call: &CallId) -> Result<Option<u64>, LedgerError> {
    let s = |source| LedgerError::Sqlite {
        path: String::new(),
        source,
    };
    let Some(row) = charge_row(tx, call).map_err(s)? else {
        return Ok(None);
    };
    if row.status()? != ChargeStatus::Open {
        return Ok(None);
    }
    let Some((kind, credit_limit, balance)) = account_row(tx, &row.account).map_err(s)? else {
        return Ok(None);
    };
    if parse_kind(&kind, credit_limit)? != AccountKind::Prepaid {
        return Ok(None);
    }
    Ok(row.tariff()?.affordable_seconds(balance))
}

/// What closing `row` at `ended_ms` charges: (billed seconds, amount).
/// Prepaid charges are capped at the balance.
fn settle_amount(
    row: &ChargeRow,
    kind: AccountKind,
    balance: i64,
    ended_ms: i64,
) -> Result<(u64, i64), LedgerError> {
    let tariff = row.tariff()?;
    let elapsed = ended_ms
        .saturating_sub(row.started_ms)
        .max(0)
        .unsigned_abs();
    let seconds = Tariff::billed_seconds(Duration::from_millis(elapsed));
    let full = tariff.charge_seconds(seconds);
    match kind {
        AccountKind::Prepaid => {
            let budget = balance.max(0);
            match full {
                Ok(a) if a <= budget => Ok((seconds, a)),
                _ => {
                    let capped = tariff
                        .affordable_seconds(budget)
                        .unwrap_or(seconds)
                        .min(seconds);
                    let amount = tariff
                        .charge_seconds(capped)
                        .map_or(budget, |a| a.min(budget));
                    Ok((capped, amount))
                }
            }
        }
        _ => Ok((seconds, full?)),
    }
}

fn close_op(
    tx: &Connection,
    call: &CallId,
    ended_at: SystemTime,
    status: ChargeStatus,
) -> Result<Outcome, LedgerError> {
    let ended_ms = to_ms(ended_at)?;
    let s = |source| LedgerError::Sqlite {
        path: String::new(),
        source,
    };
    let Some(row) = charge_row(tx, call).map_err(s)? else {
        return Ok(Outcome::UnknownCall);
    };
    match row.status()? {
        ChargeStatus::Open => {}
        done => {
            let (Some(amount), Some(seconds)) = (row.amount, row.seconds) else {
                return Err(LedgerError::Corrupt(format!(
                    "closed charge {call} lacks its sum"
                )));
            };
            return Ok(Outcome::AlreadyClosed {
                amount,
                seconds: seconds.max(0).unsigned_abs(),
                expired: done == ChargeStatus::Expired,
            });
        }
    }
    let Some((kind, credit_limit, balance)) = account_row(tx, &row.account).map_err(s)? else {
        return Err(LedgerError::Corrupt(format!(
            "charge {call} of a missing account"
        )));
    };
    let kind = parse_kind(&kind, credit_limit)?;
    let (seconds, amount) = settle_amount(&row, kind, balance, ended_ms)?;
    let Some((_, revenue)) = account_row(tx, REVENUE).map_err(s)?.map(|(k, _, b)| (k, b)) else {
        return Err(LedgerError::Corrupt("no revenue account".into()));
    };
    transfer(
        tx,
        "charge",
        Some(call),
        ended_ms,
        (&row.account, balance),
        (REVENUE, revenue),
        amount,
    )?;
    let secs_i = i64::try_from(seconds).map_err(|_| LedgerError::Corrupt("seconds".into()))?;
    let inner = || -> rusqlite::Result<()> {
        tx.prepare_cached(
            "UPDATE charges SET ended_ms = ?2, seconds = ?3, amount = ?4, status = ?5
             WHERE call_id = ?1",
        )?
        .execute(params![
            &call.0[..],
            ended_ms,
            secs_i,
            amount,
            status.as_str()
        ])?;
        tx.prepare_cached(
            "INSERT INTO outbox (call_id, kind, account, session_time, amount, event_ms, next_ms)
             VALUES (?1, 'stop', ?2, ?3, ?4, ?5, ?5)",
        )?
        .execute(params![&call.0[..], row.account, secs_i, amount, ended_ms])?;
        Ok(())
    };
    inner().map_err(s)?;
    Ok(Outcome::Closed { amount, seconds })
}

fn credit_op(tx: &Connection, account: &str, amount: i64) -> Result<Outcome, LedgerError> {
    check_amount(amount)?;
    check_account_name(account)?;
    let s = |source| LedgerError::Sqlite {
        path: String::new(),
        source,
    };
    let Some((kind, credit_limit, balance)) = account_row(tx, account).map_err(s)? else {
        return Err(LedgerError::UnknownAccount(account.to_owned()));
    };
    if !parse_kind(&kind, credit_limit)?.is_subscriber() {
        return Err(LedgerError::NotSubscriber(account.to_owned()));
    }
    let Some((_, _, topup)) = account_row(tx, TOPUP).map_err(s)? else {
        return Err(LedgerError::Corrupt("no topup account".into()));
    };
    let now_ms = to_ms(SystemTime::now()).unwrap_or(0);
    let (_, balance) = transfer(
        tx,
        "topup",
        None,
        now_ms,
        (TOPUP, topup),
        (account, balance),
        amount,
    )?;
    Ok(Outcome::Credited { balance })
}

fn read_records(
    conn: &Connection,
    filter: &str,
    args: &[&dyn rusqlite::ToSql],
    path: &str,
) -> Result<Vec<OutboxRecord>, LedgerError> {
    let e = sql(path);
    let mut st = conn
        .prepare_cached(&format!(
            "SELECT id, call_id, kind, account, session_time, amount, event_ms, attempts,
                    next_ms, sent_ms,
                    (SELECT currency FROM tariffs t WHERE t.account = outbox.account)
             FROM outbox WHERE {filter} ORDER BY id"
        ))
        .map_err(&e)?;
    let rows = st
        .query_map(args, |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
                r.get::<_, Option<i64>>(4)?,
                r.get::<_, Option<i64>>(5)?,
                r.get::<_, i64>(6)?,
                r.get::<_, i64>(7)?,
                r.get::<_, i64>(8)?,
                r.get::<_, Option<i64>>(9)?,
                r.get::<_, Option<String>>(10)?,
            ))
        })
        .map_err(&e)?;
    let mut out = Vec::new();
    for row in rows {
        let (id, call, kind, account, session_time, amount, event, attempts, next, sent, cur) =
            row.map_err(&e)?;
        out.push(OutboxRecord {
            id,
            call: call_id(call)?,
            kind: RecordKind::parse(&kind)
                .ok_or_else(|| LedgerError::Corrupt(format!("outbox kind {kind:?}")))?,
            account,
            session_time: session_time.map(|s| s.max(0).unsigned_abs()),
            amount,
            event_at: from_ms(event),
            attempts: u32::try_from(attempts).unwrap_or(u32::MAX),
            next_attempt_at: from_ms(next),
            sent_at: sent.map(from_ms),
            // set_tariff admits only three upper-case letters.
            currency: cur.and_then(|c| <[u8; 3]>::try_from(c.as_bytes()).ok()),
        });
    }
    Ok(out)
}

/// Runs one op under a savepoint of `tx`: a validation error rolls the op
/// back and is its answer; a storage error aborts the whole batch.
fn run_op(
    tx: &mut Transaction<'_>,
    minimum_seconds: u64,
    op: &Op,
) -> Result<Result<Outcome, LedgerError>, rusqlite::Error> {
    let sp = tx.savepoint()?;
    let res = match op {
        Op::Open {
            call,
            account,
            tariff,
            started_at,
        } => open_op(&sp, minimum_seconds, call, account, tariff, *started_at),
        Op::Close { call, ended_at } => close_op(&sp, call, *ended_at, ChargeStatus::Closed),
        Op::Credit { account, amount } => credit_op(&sp, account, *amount),
    };
    match res {
        Ok(outcome) => {
            sp.commit()?;
            Ok(Ok(outcome))
        }
        Err(LedgerError::Sqlite { source, .. }) => Err(source),
        Err(other) => {
            // Dropping the savepoint rolls it back.
            drop(sp);
            Ok(Err(other))
        }
    }
}

impl LedgerStore for SqliteLedger {
    fn create_account(&mut self, name: &str, kind: AccountKind) -> Result<(), LedgerError> {
        check_account_name(name)?;
        if !kind.is_subscriber() {
            return Err(LedgerError::NotSubscriber(name.to_owned()));
        }
        let (kind, credit_limit) = kind_str(kind);
        check_amount(credit_limit)?;
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO accounts (name, kind, credit_limit) VALUES (?1, ?2, ?3)",
                params![name, kind, credit_limit],
            )
            .map_err(sql(&self.path))?;
        if n == 0 {
            return Err(LedgerError::AccountExists(name.to_owned()));
        }
        Ok(())
    }

    fn apply_batch(
        &mut self,
        ops: &[Op],
    ) -> Result<Vec<Result<Outcome, LedgerError>>, LedgerError> {
        let e = sql(&self.path);
        let minimum_seconds = self.minimum_seconds;
        let mut tx = self.conn.transaction().map_err(&e)?;
        let mut out = Vec::with_capacity(ops.len());
        for op in ops {
            out.push(run_op(&mut tx, minimum_seconds, op).map_err(&e)?);
        }
        tx.commit().map_err(&e)?;
        Ok(out)
    }

    fn allowed_seconds(&self, call: CallId) -> Result<Option<u64>, LedgerError> {
        allowed_for(&self.conn, &call).map_err(|e| match e {
            LedgerError::Sqlite { source, .. } => (self.err())(source),
            e => e,
        })
    }

    fn expire_open(
        &mut self,
        now: SystemTime,
        max_duration: Duration,
    ) -> Result<Vec<(CallId, i64)>, LedgerError> {
        let e = sql(&self.path);
        let now_ms = to_ms(now)?;
        let max_ms = i64::try_from(max_duration.as_millis()).unwrap_or(i64::MAX);
        let mut tx = self.conn.transaction().map_err(&e)?;
        let stale: Vec<(Vec<u8>, i64)> = {
            let mut st = tx
                .prepare_cached(
                    "SELECT call_id, started_ms FROM charges
                     WHERE status = 'open' AND started_ms <= ?1 ORDER BY started_ms",
                )
                .map_err(&e)?;
            let rows = st
                .query_map([now_ms.saturating_sub(max_ms)], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .map_err(&e)?;
            rows.collect::<Result<_, _>>().map_err(&e)?
        };
        let mut out = Vec::with_capacity(stale.len());
        for (call, started_ms) in stale {
            let call = call_id(call)?;
            let ended = from_ms(started_ms.saturating_add(max_ms));
            // One charge that cannot be settled (its amount would
            // overflow) stays open and does not hold up the others.
            let sp = tx.savepoint().map_err(&e)?;
            match close_op(&sp, &call, ended, ChargeStatus::Expired) {
                Ok(outcome) => {
                    sp.commit().map_err(&e)?;
                    if let Outcome::Closed { amount, .. } = outcome {
                        out.push((call, amount));
                    }
                }
                Err(LedgerError::Sqlite { source, .. }) => return Err(e(source)),
                Err(_) => drop(sp),
            }
        }
        tx.commit().map_err(&e)?;
        Ok(out)
    }

    fn balance(&self, account: &str) -> Result<i64, LedgerError> {
        account_row(&self.conn, account)
            .map_err(self.err())?
            .map(|(_, _, b)| b)
            .ok_or_else(|| LedgerError::UnknownAccount(account.to_owned()))
    }

    fn accounts(&self) -> Result<Vec<Account>, LedgerError> {
        let e = self.err();
        let mut st = self
            .conn
            .prepare_cached("SELECT name, kind, credit_limit, balance FROM accounts ORDER BY name")
            .map_err(&e)?;
        let rows = st
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(&e)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, kind, credit_limit, balance) = row.map_err(&e)?;
            out.push(Account {
                name,
                kind: parse_kind(&kind, credit_limit)?,
                balance,
            });
        }
        Ok(out)
    }

    fn report(&self, from: SystemTime, to: SystemTime) -> Result<Vec<ReportRow>, LedgerError> {
        let e = self.err();
        let mut st = self
            .conn
            .prepare_cached(
                "SELECT call_id, account, started_ms, ended_ms, seconds, amount, status
                 FROM charges WHERE started_ms BETWEEN ?1 AND ?2 ORDER BY started_ms, call_id",
            )
            .map_err(&e)?;
        let rows = st
            .query_map(params![to_ms(from)?, to_ms(to)?], |r| {
                Ok((
                    r.get::<_, Vec<u8>>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, Option<i64>>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<i64>>(5)?,
                    r.get::<_, String>(6)?,
                ))
            })
            .map_err(&e)?;
        let mut out = Vec::new();
        for row in rows {
            let (call, account, started, ended, seconds, amount, status) = row.map_err(&e)?;
            out.push(ReportRow {
                call: call_id(call)?,
                account,
                started_at: from_ms(started),
                ended_at: ended.map(from_ms),
                seconds: seconds.map(|s| s.max(0).unsigned_abs()),
                amount,
                status: ChargeStatus::parse(&status)
                    .ok_or_else(|| LedgerError::Corrupt(format!("charge status {status:?}")))?,
            });
        }
        Ok(out)
    }

    fn total(&self) -> Result<i128, LedgerError> {
        let e = self.err();
        let mut st = self
            .conn
            .prepare_cached("SELECT balance FROM accounts")
            .map_err(&e)?;
        let rows = st.query_map([], |r| r.get::<_, i64>(0)).map_err(&e)?;
        let mut total = 0i128;
        for b in rows {
            total += i128::from(b.map_err(&e)?);
        }
        Ok(total)
    }
}

impl Outbox for SqliteLedger {
    fn due(&mut self, now: SystemTime, limit: usize) -> Result<Vec<OutboxRecord>, LedgerError> {
        let e = sql(&self.path);
        let now_ms = to_ms(now)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let tx = self.conn.transaction().map_err(&e)?;
        let ids: Vec<i64> = {
            let mut st = tx
                .prepare_cached(
                    "SELECT id FROM outbox WHERE sent_ms IS NULL AND next_ms <= ?1
                     ORDER BY next_ms, id LIMIT ?2",
                )
                .map_err(&e)?;
            let rows = st
                .query_map(params![now_ms, limit], |r| r.get(0))
                .map_err(&e)?;
            rows.collect::<Result<_, _>>().map_err(&e)?
        };
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            let attempts: i64 = tx
                .prepare_cached("SELECT attempts FROM outbox WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)))
                .map_err(&e)?;
            let attempts = attempts.saturating_add(1);
            let wait = backoff(u32::try_from(attempts).unwrap_or(u32::MAX));
            let next = now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX));
            tx.prepare_cached("UPDATE outbox SET attempts = ?2, next_ms = ?3 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![id, attempts, next]))
                .map_err(&e)?;
            out.extend(read_records(&tx, "id = ?1", &[&id], &self.path)?);
        }
        tx.commit().map_err(&e)?;
        Ok(out)
    }

    fn mark_sent(&mut self, id: i64, now: SystemTime) -> Result<bool, LedgerError> {
        let n = self
            .conn
            .prepare_cached("UPDATE outbox SET sent_ms = ?2 WHERE id = ?1 AND sent_ms IS NULL")
            .and_then(|mut s| s.execute(params![id, to_ms(now).unwrap_or(0)]))
            .map_err(self.err())?;
        Ok(n == 1)
    }

    fn pending(&self) -> Result<Vec<OutboxRecord>, LedgerError> {
        read_records(&self.conn, "sent_ms IS NULL", &[], &self.path)
    }
}
