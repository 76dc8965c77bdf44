//! The ledger and its outbox through the `LedgerStore` and `Outbox` traits,
//! on SQLite: idempotency, refusals, prepaid caps, expiry, bad input that
//! writes nothing, group commit, and random op sequences that keep the
//! books at zero.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use roamgate_billing::outbox::{backoff, INITIAL_RETRANSMIT};
use roamgate_billing::radius::{self, AccountingRequest, AcctStatusType, Nas, Packet};
use roamgate_billing::{
    Account, AccountKind, AmountError, CallId, ChargeStatus, LedgerError, LedgerStore, Op, Outbox,
    OutboxRecord, Outcome, RecordKind, Refusal, ReportRow, SqliteLedger, Tariff,
};

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000 + secs)
}

fn call(n: u32) -> CallId {
    let mut id = [0xc0; 16];
    id[12..].copy_from_slice(&n.to_be_bytes());
    CallId(id)
}

/// 100 + 2/s.
fn tariff() -> Tariff {
    Tariff::new(100, 2).unwrap()
}

/// A ledger with a prepaid "pre" holding `funds` and a postpaid "post"
/// with a credit limit of 10,000.
fn ledger(funds: i64) -> SqliteLedger {
    let mut l = SqliteLedger::in_memory().unwrap();
    l.create_account("pre", AccountKind::Prepaid).unwrap();
    l.create_account(
        "post",
        AccountKind::Postpaid {
            credit_limit: 10_000,
        },
    )
    .unwrap();
    if funds > 0 {
        l.credit("pre", funds).unwrap();
    }
    l
}

/// Everything the ledger holds, to show that something wrote nothing.
fn snapshot(l: &SqliteLedger) -> (Vec<Account>, Vec<ReportRow>, Vec<OutboxRecord>) {
    (
        l.accounts().unwrap(),
        l.report(UNIX_EPOCH, t(1_000_000_000)).unwrap(),
        l.outbox_records().unwrap(),
    )
}

fn books_balance(l: &SqliteLedger) {
    assert_eq!(l.total().unwrap(), 0);
    l.check_consistency().unwrap();
}

#[test]
fn open_twice_close_twice_charges_once() {
    let mut l = ledger(0);
    assert_eq!(
        l.open_charge(call(1), "post", tariff(), t(0)).unwrap(),
        Outcome::Opened {
            allowed_seconds: None
        }
    );
    assert_eq!(
        l.open_charge(call(1), "post", tariff(), t(0)).unwrap(),
        Outcome::AlreadyOpen {
            allowed_seconds: None
        }
    );
    // 10.5 s: 11 started seconds.
    let end = t(10) + Duration::from_millis(500);
    assert_eq!(
        l.close_charge(call(1), end).unwrap(),
        Outcome::Closed {
            amount: 122,
            seconds: 11
        }
    );
    let again = Outcome::AlreadyClosed {
        amount: 122,
        seconds: 11,
        expired: false,
    };
    assert_eq!(l.close_charge(call(1), end).unwrap(), again);
    // A late retry with another end time gets the first answer too.
    assert_eq!(l.close_charge(call(1), t(99)).unwrap(), again);
    // And a retried open after the close charges nothing either.
    assert_eq!(
        l.open_charge(call(1), "post", tariff(), t(0)).unwrap(),
        Outcome::AlreadyOpen {
            allowed_seconds: None
        }
    );
    assert_eq!(l.balance("post").unwrap(), -122);
    assert_eq!(l.balance("revenue").unwrap(), 122);
    books_balance(&l);
    let records = l.outbox_records().unwrap();
    assert_eq!(records.len(), 2);
    assert_eq!(records[0].kind, RecordKind::Start);
    assert_eq!(records[1].kind, RecordKind::Stop);
    assert_eq!(records[1].amount, Some(122));
    assert_eq!(records[1].session_time, Some(11));
    let rows = l.report(t(0), t(0)).unwrap();
    assert_eq!(
        rows,
        vec![ReportRow {
            call: call(1),
            account: "post".into(),
            started_at: t(0),
            ended_at: Some(end),
            seconds: Some(11),
            amount: Some(122),
            status: ChargeStatus::Closed,
        }]
    );
}

#[test]
fn another_accounts_call_id_is_a_conflict_and_writes_nothing() {
    let mut l = ledger(100_000);
    l.open_charge(call(1), "post", tariff(), t(0)).unwrap();
    let before = snapshot(&l);
    assert_eq!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::Refused(Refusal::Conflict {
            account: "post".into()
        })
    );
    assert_eq!(snapshot(&l), before);
}

#[test]
fn refusals_write_nothing() {
    let mut l = ledger(0);
    l.set_minimum_seconds(60);
    let before = snapshot(&l);
    // Prepaid with nothing: 100 + 60 * 2 needed.
    assert_eq!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::Refused(Refusal::InsufficientFunds {
            balance: 0,
            needed: 220
        })
    );
    assert_eq!(
        l.open_charge(call(2), "nobody", tariff(), t(0)).unwrap(),
        Outcome::Refused(Refusal::UnknownAccount)
    );
    for internal in ["revenue", "topup"] {
        assert_eq!(
            l.open_charge(call(3), internal, tariff(), t(0)).unwrap(),
            Outcome::Refused(Refusal::UnknownAccount)
        );
    }
    // Postpaid beyond its credit limit.
    let dear = Tariff::new(10_001, 0).unwrap();
    assert_eq!(
        l.open_charge(call(4), "post", dear, t(0)).unwrap(),
        Outcome::Refused(Refusal::CreditLimit {
            balance: 0,
            credit_limit: 10_000
        })
    );
    assert_eq!(snapshot(&l), before);
    // 219 is one short; 220 opens.
    l.credit("pre", 219).unwrap();
    assert!(matches!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::Refused(Refusal::InsufficientFunds { .. })
    ));
    l.credit("pre", 1).unwrap();
    // (220 - 100) / 2: the balance pays for 60 s.
    assert_eq!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::Opened {
            allowed_seconds: Some(60)
        }
    );
    books_balance(&l);
}

#[test]
fn bad_input_gets_typed_errors_and_writes_nothing() {
    let mut l = ledger(1_000);
    l.open_charge(call(1), "post", tariff(), t(0)).unwrap();
    let before = snapshot(&l);
    assert!(matches!(
        l.credit("pre", -5),
        Err(LedgerError::Amount(AmountError::Negative(-5)))
    ));
    assert!(matches!(
        l.credit("pre", i64::MAX),
        Err(LedgerError::Amount(AmountError::Overflow))
    ));
    assert!(matches!(
        l.credit("nobody", 5),
        Err(LedgerError::UnknownAccount(_))
    ));
    assert!(matches!(
        l.credit("revenue", 5),
        Err(LedgerError::NotSubscriber(_))
    ));
    assert!(matches!(
        l.credit("bad name", 5),
        Err(LedgerError::InvalidAccountName(_))
    ));
    assert_eq!(
        l.close_charge(call(77), t(5)).unwrap(),
        Outcome::UnknownCall
    );
    // A tariff whose minimum charge overflows.
    let huge = Tariff::new(0, roamgate_billing::tariff::MAX_AMOUNT).unwrap();
    assert!(matches!(
        l.open_charge(call(2), "post", huge, t(0)),
        Err(LedgerError::Amount(AmountError::Overflow))
    ));
    // A time before 1970.
    assert!(matches!(
        l.open_charge(
            call(3),
            "post",
            tariff(),
            UNIX_EPOCH - Duration::from_secs(1)
        ),
        Err(LedgerError::BadTime)
    ));
    assert!(matches!(
        l.create_account("post", AccountKind::Prepaid),
        Err(LedgerError::AccountExists(_))
    ));
    assert!(matches!(
        l.create_account("neg", AccountKind::Postpaid { credit_limit: -1 }),
        Err(LedgerError::Amount(AmountError::Negative(-1)))
    ));
    assert!(matches!(
        l.create_account("r2", AccountKind::Revenue),
        Err(LedgerError::NotSubscriber(_))
    ));
    assert_eq!(snapshot(&l), before);
    // A top-up that would overflow the balance.
    let max = roamgate_billing::tariff::MAX_AMOUNT;
    l.credit("pre", max).unwrap();
    l.credit("pre", max).unwrap();
    l.credit("pre", max).unwrap();
    let before = snapshot(&l);
    assert!(matches!(
        l.credit("pre", max),
        Err(LedgerError::BalanceOverflow(_))
    ));
    assert_eq!(snapshot(&l), before);
    books_balance(&l);
}

#[test]
fn prepaid_calls_are_capped_at_the_balance() {
    let mut l = ledger(300);
    l.set_minimum_seconds(10);
    assert_eq!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::Opened {
            allowed_seconds: Some(100)
        }
    );
    // A retried open tells the same limit.
    assert_eq!(
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap(),
        Outcome::AlreadyOpen {
            allowed_seconds: Some(100)
        }
    );
    // (300 - 100) / 2 = 100 s.
    assert_eq!(l.allowed_seconds(call(1)).unwrap(), Some(100));
    assert_eq!(
        l.close_charge(call(1), t(500)).unwrap(),
        Outcome::Closed {
            amount: 300,
            seconds: 100
        }
    );
    assert_eq!(l.balance("pre").unwrap(), 0);
    assert_eq!(l.allowed_seconds(call(1)).unwrap(), None);
    // Two concurrent calls share the balance: the second close gets the rest.
    l.credit("pre", 250).unwrap();
    l.open_charge(call(2), "pre", tariff(), t(0)).unwrap();
    l.open_charge(call(3), "pre", tariff(), t(0)).unwrap();
    assert_eq!(
        l.close_charge(call(2), t(20)).unwrap(),
        Outcome::Closed {
            amount: 140,
            seconds: 20
        }
    );
    // 110 left: 100 + 5 s, and 1 minor unit that cannot buy a second
    // stays in the account.
    assert_eq!(
        l.close_charge(call(3), t(20)).unwrap(),
        Outcome::Closed {
            amount: 110,
            seconds: 5
        }
    );
    assert_eq!(l.balance("pre").unwrap(), 0);
    // Postpaid has no cap.
    assert_eq!(
        l.open_charge(call(4), "post", tariff(), t(0)).unwrap(),
        Outcome::Opened {
            allowed_seconds: None
        }
    );
    assert_eq!(l.allowed_seconds(call(4)).unwrap(), None);
    assert_eq!(
        l.close_charge(call(4), t(1000)).unwrap(),
        Outcome::Closed {
            amount: 2100,
            seconds: 1000
        }
    );
    books_balance(&l);
}

#[test]
fn charges_whose_close_never_comes_expire() {
    let mut l = ledger(0);
    l.open_charge(call(1), "post", tariff(), t(0)).unwrap();
    l.open_charge(call(2), "post", tariff(), t(3000)).unwrap();
    let max = Duration::from_secs(3600);
    assert_eq!(l.expire_open(t(3599), max).unwrap(), vec![]);
    assert_eq!(
        l.expire_open(t(3600), max).unwrap(),
        vec![(call(1), 100 + 2 * 3600)]
    );
    // Idempotent: nothing more to expire.
    assert_eq!(l.expire_open(t(3600), max).unwrap(), vec![]);
    assert_eq!(
        l.close_charge(call(1), t(4000)).unwrap(),
        Outcome::AlreadyClosed {
            amount: 7300,
            seconds: 3600,
            expired: true
        }
    );
    let rows = l.report(t(0), t(3000)).unwrap();
    assert_eq!(rows[0].status, ChargeStatus::Expired);
    assert_eq!(rows[0].ended_at, Some(t(3600)));
    assert_eq!(rows[1].status, ChargeStatus::Open);
    assert_eq!(l.report(t(1), t(2999)).unwrap(), vec![]);
    books_balance(&l);
    // A charge that cannot be settled does not hold up the others.
    l.create_account(
        "big",
        AccountKind::Postpaid {
            credit_limit: roamgate_billing::tariff::MAX_AMOUNT,
        },
    )
    .unwrap();
    let absurd = Tariff::new(0, roamgate_billing::tariff::MAX_AMOUNT / 100).unwrap();
    assert_eq!(
        l.open_charge(call(3), "big", absurd, t(0)).unwrap(),
        Outcome::Opened {
            allowed_seconds: None
        }
    );
    assert!(matches!(
        l.close_charge(call(3), t(3600)),
        Err(LedgerError::Amount(AmountError::Overflow))
    ));
    assert_eq!(
        l.expire_open(t(10_000), max).unwrap(),
        vec![(call(2), 7300)]
    );
    assert_eq!(l.report(t(0), t(0)).unwrap()[1].status, ChargeStatus::Open);
    books_balance(&l);
}

#[test]
fn a_batch_is_one_transaction_with_one_answer_per_op() {
    let mut l = ledger(0);
    let ops = vec![
        Op::Credit {
            account: "pre".into(),
            amount: 1_000,
        },
        Op::Open {
            call: call(1),
            account: "pre".into(),
            tariff: tariff(),
            started_at: t(0),
        },
        Op::Open {
            call: call(1),
            account: "pre".into(),
            tariff: tariff(),
            started_at: t(0),
        },
        Op::Credit {
            account: "pre".into(),
            amount: -1,
        },
        Op::Open {
            call: call(1),
            account: "post".into(),
            tariff: tariff(),
            started_at: t(0),
        },
        Op::Close {
            call: call(1),
            ended_at: t(10),
        },
        Op::Close {
            call: call(1),
            ended_at: t(10),
        },
        Op::Close {
            call: call(2),
            ended_at: t(10),
        },
    ];
    let out = l.apply_batch(&ops).unwrap();
    assert_eq!(out.len(), ops.len());
    assert!(matches!(out[0], Ok(Outcome::Credited { balance: 1_000 })));
    // (1000 - 100) / 2 s; the same again for the retried open.
    assert!(matches!(
        out[1],
        Ok(Outcome::Opened {
            allowed_seconds: Some(450)
        })
    ));
    assert!(matches!(
        out[2],
        Ok(Outcome::AlreadyOpen {
            allowed_seconds: Some(450)
        })
    ));
    assert!(matches!(
        out[3],
        Err(LedgerError::Amount(AmountError::Negative(-1)))
    ));
    assert!(matches!(
        out[4],
        Ok(Outcome::Refused(Refusal::Conflict { .. }))
    ));
    assert!(matches!(
        out[5],
        Ok(Outcome::Closed {
            amount: 120,
            seconds: 10
        })
    ));
    assert!(matches!(
        out[6],
        Ok(Outcome::AlreadyClosed { amount: 120, .. })
    ));
    assert!(matches!(out[7], Ok(Outcome::UnknownCall)));
    assert_eq!(l.balance("pre").unwrap(), 880);
    books_balance(&l);
    assert_eq!(l.apply_batch(&[]).unwrap().len(), 0);
}

/// A SplitMix64: the seeded randomness of these tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// 10,000 random ops (opens, closes, their retries and duplicates,
/// conflicting opens, unknown closes, top-ups, bad amounts, expiries),
/// alone and in batches: the books stay at zero and every closed call is
/// charged exactly once, with the amount its first close answered.
#[test]
fn random_op_sequences_keep_the_total_at_zero() {
    let mut l = ledger(0);
    let accounts = ["pre", "post", "pre2", "post2"];
    l.create_account("pre2", AccountKind::Prepaid).unwrap();
    l.create_account(
        "post2",
        AccountKind::Postpaid {
            credit_limit: 1_000_000_000,
        },
    )
    .unwrap();
    l.set_minimum_seconds(5);
    let mut rng = Rng(0x5eed_b111);
    // call -> (account, first close answer)
    let mut opened: HashMap<CallId, String> = HashMap::new();
    let mut closed: HashMap<CallId, i64> = HashMap::new();
    let mut next_call = 0u32;
    let mut clock = 0u64;
    let mut ops_done = 0;
    while ops_done < 10_000 {
        let batch_len = if rng.below(4) == 0 {
            1 + rng.below(20) as usize
        } else {
            1
        };
        let mut ops = Vec::new();
        for _ in 0..batch_len {
            clock += rng.below(30);
            let op = match rng.below(10) {
                0..=2 => {
                    next_call += 1;
                    Op::Open {
                        call: call(next_call),
                        account: accounts[rng.below(4) as usize].into(),
                        tariff: Tariff::new(rng.below(200) as i64, rng.below(5) as i64).unwrap(),
                        started_at: t(clock),
                    }
                }
                // A retry or a conflicting open of a known call.
                3 => {
                    let c = call(1 + rng.below(u64::from(next_call.max(1))) as u32);
                    Op::Open {
                        call: c,
                        account: accounts[rng.below(4) as usize].into(),
                        tariff: tariff(),
                        started_at: t(clock),
                    }
                }
                4..=7 => Op::Close {
                    call: call(1 + rng.below(u64::from(next_call.max(1)) + 3) as u32),
                    ended_at: t(clock),
                },
                8 => Op::Credit {
                    account: accounts[rng.below(4) as usize].into(),
                    amount: rng.below(5_000) as i64 - 500,
                },
                _ => {
                    let expired = l.expire_open(t(clock), Duration::from_secs(600)).unwrap();
                    for (c, amount) in expired {
                        assert!(opened.contains_key(&c));
                        assert!(closed.insert(c, amount).is_none(), "{c} expired twice");
                    }
                    ops_done += 1;
                    continue;
                }
            };
            ops.push(op);
        }
        // Sometimes the whole batch is sent twice (a retry after a lost
        // answer).
        let rounds = if rng.below(5) == 0 { 2 } else { 1 };
        for _ in 0..rounds {
            let answers = l.apply_batch(&ops).unwrap();
            for (op, a) in ops.iter().zip(answers) {
                ops_done += 1;
                match (op, a) {
                    (Op::Open { call, account, .. }, Ok(Outcome::Opened { .. })) => {
                        assert!(opened.insert(*call, account.clone()).is_none());
                    }
                    (Op::Open { call, account, .. }, Ok(Outcome::AlreadyOpen { .. })) => {
                        assert_eq!(opened.get(call), Some(account));
                    }
                    (Op::Open { call, account, .. }, Ok(Outcome::Refused(r))) => match r {
                        Refusal::Conflict { account: other } => {
                            assert_ne!(&other, account);
                            assert_eq!(opened.get(call), Some(&other));
                        }
                        _ => assert!(!opened.contains_key(call)),
                    },
                    (Op::Close { call, .. }, Ok(Outcome::Closed { amount, .. })) => {
                        assert!(opened.contains_key(call));
                        assert!(
                            closed.insert(*call, amount).is_none(),
                            "{call} closed twice"
                        );
                    }
                    (Op::Close { call, .. }, Ok(Outcome::AlreadyClosed { amount, .. })) => {
                        assert_eq!(closed.get(call), Some(&amount));
                    }
                    (Op::Close { call, .. }, Ok(Outcome::UnknownCall)) => {
                        assert!(!opened.contains_key(call));
                    }
                    (Op::Credit { amount, .. }, Ok(Outcome::Credited { .. })) => {
                        assert!(*amount >= 0);
                    }
                    (Op::Credit { amount, .. }, Err(LedgerError::Amount(_))) => {
                        assert!(*amount < 0);
                    }
                    (op, a) => panic!("{op:?} answered {a:?}"),
                }
            }
        }
        assert_eq!(l.total().unwrap(), 0);
        if rng.below(50) == 0 {
            l.check_consistency().unwrap();
        }
        // Prepaid balances never go below zero.
        for a in l.accounts().unwrap() {
            if a.kind == AccountKind::Prepaid {
                assert!(a.balance >= 0, "{a:?}");
            }
        }
    }
    books_balance(&l);
    let charged: i64 = closed.values().sum();
    assert_eq!(l.balance("revenue").unwrap(), charged);
    assert!(closed.len() > 500, "only {} calls closed", closed.len());
    let records = l.outbox_records().unwrap();
    let starts = records
        .iter()
        .filter(|r| r.kind == RecordKind::Start)
        .count();
    let stops = records
        .iter()
        .filter(|r| r.kind == RecordKind::Stop)
        .count();
    assert_eq!((starts, stops), (opened.len(), closed.len()));
}

#[test]
fn the_outbox_hands_out_due_records_with_backoff_until_sent() {
    let mut l = ledger(0);
    l.open_charge(call(1), "post", tariff(), t(0)).unwrap();
    l.close_charge(call(1), t(30)).unwrap();
    // Nothing is due before its event.
    assert_eq!(l.due(t(0) - Duration::from_secs(1), 10).unwrap(), vec![]);
    let first = l.due(t(0), 10).unwrap();
    assert_eq!(first.len(), 1);
    assert_eq!(first[0].kind, RecordKind::Start);
    assert_eq!(first[0].attempts, 1);
    assert_eq!(first[0].next_attempt_at, t(0) + INITIAL_RETRANSMIT);
    // The server is down: nothing answers. At t=30 both are due.
    let both = l.due(t(30), 10).unwrap();
    assert_eq!(both.len(), 2);
    assert_eq!(both[0].attempts, 2);
    assert_eq!(both[0].next_attempt_at, t(30) + backoff(2));
    assert_eq!(both[1].kind, RecordKind::Stop);
    // Only as many as asked.
    assert_eq!(l.due(t(1000), 1).unwrap().len(), 1);
    assert_eq!(l.pending().unwrap().len(), 2);
    // Each (re)transmission is built at send time: same Acct-Session-Id,
    // Acct-Delay-Time from the event, a new identifier and authenticator.
    let stop = &both[1];
    let sid = stop.call.to_hex();
    let secret = b"s3cret";
    let nas = Nas::Identifier(b"imu-1");
    let a = stop
        .accounting_request(sid.as_bytes(), t(30), nas, *b"EUR")
        .to_bytes(1, secret)
        .unwrap();
    let b = stop
        .accounting_request(sid.as_bytes(), t(94), nas, *b"EUR")
        .to_bytes(2, secret)
        .unwrap();
    let pa = AccountingRequest::parse(&radius::verify_request(&a, secret).unwrap()).unwrap();
    let pb = AccountingRequest::parse(&radius::verify_request(&b, secret).unwrap()).unwrap();
    assert_eq!(pa.session_id, pb.session_id);
    assert_eq!(pa.status, AcctStatusType::Stop);
    assert_eq!((pa.delay_time, pb.delay_time), (Some(0), Some(64)));
    assert_eq!(pa.session_time, Some(30));
    assert_eq!(pa.charge.unwrap().minor_units, 160);
    assert_eq!(pa.user_name, b"post");
    assert_eq!(pa.event_timestamp, Some(1_800_000_030));
    assert_ne!(
        Packet::new_checked(&a[..]).unwrap().authenticator(),
        Packet::new_checked(&b[..]).unwrap().authenticator()
    );
    // No tariff on the account: the sender's default currency.
    assert_eq!(stop.currency, None);
    assert_eq!(pa.charge.unwrap().currency, *b"EUR");
    // The server answers the second: delivered, once.
    let resp = radius::build_response(&b, secret).unwrap();
    radius::verify_response(&resp, &b, secret).unwrap();
    assert!(l.mark_sent(stop.id, t(94)).unwrap());
    assert!(!l.mark_sent(stop.id, t(95)).unwrap());
    assert!(!l.mark_sent(9999, t(95)).unwrap());
    let pending = l.pending().unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].kind, RecordKind::Start);
    assert_eq!(l.due(t(100_000), 10).unwrap().len(), 1);
    let all = l.outbox_records().unwrap();
    assert_eq!(all[1].sent_at, Some(t(94)));
}

#[test]
fn the_file_is_0600_wal_synchronous_full_and_survives_a_reopen() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let mut l = SqliteLedger::open(&path).unwrap();
        l.create_account("post", AccountKind::Postpaid { credit_limit: 0 })
            .unwrap();
        l.create_account("pre", AccountKind::Prepaid).unwrap();
        l.credit("pre", 5_000).unwrap();
        l.open_charge(call(1), "pre", tariff(), t(0)).unwrap();
        l.close_charge(call(1), t(10)).unwrap();
        l.open_charge(call(2), "pre", tariff(), t(5)).unwrap();
    }
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let mut l = SqliteLedger::open(&path).unwrap();
    // synchronous = FULL is 2.
    assert_eq!(l.durability().unwrap(), ("wal".to_owned(), 2));
    assert_eq!(l.balance("pre").unwrap(), 5_000 - 120);
    assert_eq!(
        l.close_charge(call(1), t(10)).unwrap(),
        Outcome::AlreadyClosed {
            amount: 120,
            seconds: 10,
            expired: false
        }
    );
    assert_eq!(
        l.close_charge(call(2), t(15)).unwrap(),
        Outcome::Closed {
            amount: 120,
            seconds: 10
        }
    );
    books_balance(&l);
}

/// The checks the other tests rely on can fail: each tampering with the
/// file is caught by `total` or `check_consistency`.
#[test]
fn the_consistency_check_catches_a_tampered_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ledger.sqlite");
    {
        let mut l = SqliteLedger::open(&path).unwrap();
        l.create_account(
            "post",
            AccountKind::Postpaid {
                credit_limit: 100_000,
            },
        )
        .unwrap();
        assert_eq!(
            l.open_charge(call(1), "post", tariff(), t(0)).unwrap(),
            Outcome::Opened {
                allowed_seconds: None
            }
        );
        assert!(matches!(
            l.close_charge(call(1), t(10)).unwrap(),
            Outcome::Closed { .. }
        ));
        assert_eq!(
            l.open_charge(call(2), "post", tariff(), t(0)).unwrap(),
            Outcome::Opened {
                allowed_seconds: None
            }
        );
        books_balance(&l);
    }
    let tampers = [
        // A balance off by one.
        "UPDATE accounts SET balance = balance + 1 WHERE name = 'revenue'",
        // A one-sided posting, with the balance kept in step.
        "INSERT INTO postings (txn, account, amount) VALUES (1, 'revenue', 5);
         UPDATE accounts SET balance = balance + 5 WHERE name = 'revenue'",
        // A charge whose amount disagrees with its postings.
        "UPDATE charges SET amount = amount + 1 WHERE status = 'closed'",
        // A closed call's Stop record lost.
        "DELETE FROM outbox WHERE kind = 'stop'",
        // A Start record lost.
        "DELETE FROM outbox WHERE kind = 'start' AND call_id = (SELECT call_id FROM charges WHERE status = 'open')",
        // An open call with a Stop.
        "INSERT INTO outbox (call_id, kind, account, event_ms, next_ms)
         SELECT call_id, 'stop', account, 0, 0 FROM charges WHERE status = 'open'",
        // A charge transaction without its postings.
        "INSERT INTO txns (kind, call_id, at_ms) SELECT 'charge', call_id, 0 FROM charges WHERE status = 'open'",
    ];
    for (i, sql) in tampers.iter().enumerate() {
        let copy = dir.path().join(format!("copy-{i}.sqlite"));
        let src = rusqlite::Connection::open(&path).unwrap();
        src.execute("VACUUM INTO ?1", [copy.to_str().unwrap()])
            .unwrap();
        drop(src);
        rusqlite::Connection::open(&copy)
            .unwrap()
            .execute_batch(&format!("PRAGMA foreign_keys = OFF; {sql}"))
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        let l = SqliteLedger::open(&copy).unwrap();
        assert!(
            l.total().unwrap() != 0 || l.check_consistency().is_err(),
            "not caught: {sql}"
        );
    }
}

#[test]
fn the_charge_vsa_carries_the_currency_of_the_accounts_tariff() {
    let mut l = ledger(0);
    l.set_tariff("post", tariff(), "SEK").unwrap();
    l.open_charge(call(1), "post", tariff(), t(0)).unwrap();
    l.close_charge(call(1), t(30)).unwrap();
    let stop = l
        .outbox_records()
        .unwrap()
        .into_iter()
        .find(|r| r.kind == RecordKind::Stop)
        .unwrap();
    assert_eq!(stop.currency, Some(*b"SEK"));
    let sid = stop.call.to_hex();
    let req = stop
        .accounting_request(sid.as_bytes(), t(30), Nas::Identifier(b"imu-1"), *b"EUR")
        .to_bytes(1, b"s")
        .unwrap();
    let p = AccountingRequest::parse(&radius::verify_request(&req, b"s").unwrap()).unwrap();
    assert_eq!(p.charge.unwrap().currency, *b"SEK");
}
