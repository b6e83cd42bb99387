//! The ledger under concurrent clients: duplicate keys, the bank invariant, and a report snapshot that holds
//! still while other connections keep writing.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use ledger_contract::{Direction, ReportPage, ReportQuery, Transaction, TransactionStatus, TransferRequest};
use money::Amount;
use rust_decimal::Decimal;
use serde_json::json;
use system_tests::{Lcg, TestLedger};
use uuid::Uuid;

/// `BATCH_COMMITTERS=0`: every request is applied on its own task, as a group of one, with no committer.
const NO_COMMITTERS: &[(&str, &str)] = &[("BATCH_COMMITTERS", "0")];

#[tokio::test]
async fn twenty_concurrent_requests_with_one_key_make_exactly_one_transaction() -> anyhow::Result<()> {
    twenty_requests_with_one_key(&[]).await
}

#[tokio::test]
async fn without_committers_twenty_requests_with_one_key_make_exactly_one_transaction() -> anyhow::Result<()> {
    twenty_requests_with_one_key(NO_COMMITTERS).await
}

async fn twenty_requests_with_one_key(settings: &[(&str, &str)]) -> anyhow::Result<()> {
    let app = Arc::new(TestLedger::start_with(settings).await?);
    let a = app.funded_account("100").await?;
    let b = app.open_account().await?;
    let body = json!({"src_account_id": a, "dst_account_id": b, "amount": "10", "direction": "debit"});
    let replies = join_all((0..20).map(|_| {
        let app = Arc::clone(&app);
        let body = body.clone();
        async move { app.post("/api/v1/transaction", &body, Some("one-key")).await }
    }))
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;

    let first = replies.iter().find(|r| r.status == 201).map(|r| r.text.clone()).unwrap_or_default();
    for reply in &replies {
        assert_eq!(reply.status, 201, "every duplicate waits, then replays: {}", reply.text);
        assert_eq!(reply.text, first, "every duplicate gets the same response");
    }
    let replayed = replies.iter().filter(|r| r.headers.contains_key("idempotent-replayed")).count();
    assert_eq!(replayed, 19, "one original, nineteen replays");
    let (transfers,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM transactions WHERE kind = 'transfer'").fetch_one(&app.pool).await?;
    assert_eq!(transfers, 1);
    assert_eq!(app.balance(a).await?, Decimal::from(90));
    assert_eq!(app.balance(b).await?, Decimal::from(10));
    TestLedger::stop_shared(app).await
}

#[tokio::test]
async fn a_duplicate_gets_a_409_when_the_first_request_holds_its_key_too_long() -> anyhow::Result<()> {
    a_duplicate_of_a_held_key(&[]).await
}

#[tokio::test]
async fn without_committers_a_duplicate_gets_a_409_when_the_first_request_holds_its_key_too_long() -> anyhow::Result<()>
{
    a_duplicate_of_a_held_key(NO_COMMITTERS).await
}

async fn a_duplicate_of_a_held_key(settings: &[(&str, &str)]) -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[&[("IDEMPOTENCY_WAIT", "300ms")], settings].concat()).await?;
    let a = app.funded_account("100").await?;
    // Hold the key in an open database transaction, as a slow first request would.
    let mut holder = app.pool.begin().await?;
    sqlx::query("INSERT INTO idempotency_keys (client, key, request_hash) VALUES ('test', 'slow', ''::bytea)")
        .execute(&mut *holder)
        .await?;
    let body = json!({"dst_account_id": a, "amount": 1, "direction": "debit"});
    let reply = app.post("/api/v1/bank_transactions", &body, Some("slow")).await?;
    assert_eq!((reply.status, reply.error_code()), (409, "idempotency_key_in_flight"), "{}", reply.text);
    holder.rollback().await?;
    // Once the holder is gone (rolled back), the key is free again.
    let reply = app.post("/api/v1/bank_transactions", &body, Some("slow")).await?;
    assert_eq!((reply.status, reply.str("status")), (201, "success"));
    assert_eq!(app.balance(a).await?, Decimal::from(99));
    app.stop().await
}

/// A request on its own waits for its key at most IDEMPOTENCY_WAIT, but for its accounts as long as the
/// statement timeout allows: an account held a little longer than the key wait is waited for, not refused.
#[tokio::test]
async fn without_committers_a_keyed_request_waits_for_its_accounts_beyond_the_key_wait() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("IDEMPOTENCY_WAIT", "300ms"), ("BATCH_COMMITTERS", "0")]).await?;
    let a = app.funded_account("100").await?;
    let mut holder = app.pool.begin().await?;
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE").bind(a).execute(&mut *holder).await?;
    let body = json!({"dst_account_id": a, "amount": 1, "direction": "debit"});
    let request = app.post("/api/v1/bank_transactions", &body, Some("patient"));
    let release = async {
        // Once the request waits for the account, it is held twice the key wait longer, then let go.
        system_tests::poll_until(Duration::from_secs(10), || async {
            let (waiting,): (i64,) = sqlx::query_as(
                "SELECT count(*) FROM pg_stat_activity
                 WHERE datname = current_database() AND application_name = 'accounts-service'
                   AND wait_event_type = 'Lock'",
            )
            .fetch_one(&app.pool)
            .await?;
            Ok((waiting > 0).then_some(()))
        })
        .await?;
        tokio::time::sleep(Duration::from_millis(600)).await;
        holder.rollback().await?;
        anyhow::Ok(())
    };
    let (reply, released) = tokio::join!(request, release);
    released?;
    let reply = reply?;
    assert_eq!((reply.status, reply.str("status")), (201, "success"), "{}", reply.text);
    assert_eq!(app.balance(a).await?, Decimal::from(99));
    app.stop().await
}

#[tokio::test]
async fn the_bank_invariant_holds_under_sixteen_concurrent_clients() -> anyhow::Result<()> {
    the_bank_invariant_under_sixteen_clients(&[]).await
}

#[tokio::test]
async fn without_committers_the_bank_invariant_holds_under_sixteen_concurrent_clients() -> anyhow::Result<()> {
    the_bank_invariant_under_sixteen_clients(NO_COMMITTERS).await
}

async fn the_bank_invariant_under_sixteen_clients(settings: &[(&str, &str)]) -> anyhow::Result<()> {
    const CLIENTS: u64 = 16;
    const TRANSFERS_PER_CLIENT: u64 = 150;
    const ACCOUNTS: usize = 8;
    let app = Arc::new(TestLedger::start_with(settings).await?);
    let mut accounts = Vec::new();
    for _ in 0..ACCOUNTS {
        accounts.push(app.funded_account("100.00").await?);
    }
    let start_total = Decimal::from(100 * ACCOUNTS as i64);
    let accounts = Arc::new(accounts);

    let clients = (0..CLIENTS).map(|client| {
        let app = Arc::clone(&app);
        let accounts = Arc::clone(&accounts);
        async move {
            let mut rng = Lcg(client + 1);
            let mut outcomes = Vec::new();
            for _ in 0..TRANSFERS_PER_CLIENT {
                let src = rng.next(ACCOUNTS as u64) as usize;
                let dst = (src + 1 + rng.next(ACCOUNTS as u64 - 1) as usize) % ACCOUNTS;
                let cents = 1 + rng.next(6_000);
                let amount = Decimal::new(cents as i64, 2);
                let direction = if rng.next(2) == 0 { Direction::Debit } else { Direction::Credit };
                let request = TransferRequest::new(accounts[src], accounts[dst], Amount::try_from(amount)?, direction);
                outcomes.push(app.api.transfer(&request, None).await?);
            }
            anyhow::Ok(outcomes)
        }
    });
    let outcomes: Vec<Transaction> = join_all(clients).await.into_iter().collect::<anyhow::Result<Vec<_>>>()?.concat();
    assert_eq!(outcomes.len() as u64, CLIENTS * TRANSFERS_PER_CLIENT);

    // Expected balances from the successful responses alone.
    let mut expected: HashMap<Uuid, Decimal> = accounts.iter().map(|id| (*id, Decimal::from(100))).collect();
    let mut successes = 0;
    for outcome in &outcomes {
        if outcome.status != TransactionStatus::Success {
            assert_eq!(outcome.reason.as_deref(), Some("Insufficient funds"));
            continue;
        }
        successes += 1;
        let amount = outcome.amount.value();
        let src = outcome.src_account_id.ok_or_else(|| anyhow::anyhow!("a transfer without src: {outcome:?}"))?;
        let dst = outcome.dst_account_id;
        let (payer, payee) = if outcome.direction == Direction::Debit { (src, dst) } else { (dst, src) };
        *expected.entry(payer).or_default() -= amount;
        *expected.entry(payee).or_default() += amount;
    }
    assert!(successes > 100, "the workload must actually move money ({successes} successes)");

    let mut total = Decimal::ZERO;
    for id in accounts.iter() {
        let balance = app.balance(*id).await?;
        assert!(balance >= Decimal::ZERO, "{id} went negative: {balance}");
        assert_eq!(balance, expected[id], "{id} equals its start plus its successful movements");
        total += balance;
    }
    assert_eq!(total, start_total, "no money created or destroyed");
    let (rows,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM transactions WHERE kind = 'transfer'").fetch_one(&app.pool).await?;
    assert_eq!(rows as u64, CLIENTS * TRANSFERS_PER_CLIENT, "every attempt, failed or not, is recorded once");
    TestLedger::stop_shared(app).await
}

/// Pages through a report snapshot while writers keep committing, including a row whose timestamp falls
/// inside the window but whose database transaction commits only after page 1 was served.
#[tokio::test]
async fn a_report_snapshot_holds_still_while_other_connections_keep_writing() -> anyhow::Result<()> {
    let app = Arc::new(TestLedger::start().await?);
    let a = app.funded_account("1000000").await?;
    let b = app.funded_account("1000000").await?;
    for i in 0..150 {
        let body = json!({"src_account_id": a, "dst_account_id": b, "amount": format!("0.{:02}", 1 + i % 99), "direction": "debit"});
        app.post("/api/v1/transaction", &body, None).await?;
    }

    // A late commit: the row is written (its timestamp taken) now, but its transaction commits after page 1.
    let mut late = app.pool.begin().await?;
    let late_id = uuid::Uuid::now_v7();
    // As the service does: the transaction's id first, then the row dated by the clock.
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *late).await?;
    sqlx::query(
        "INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, description,
                                   recorded_by, dst_balance_after)
         VALUES ($1, clock_timestamp(), 'bank', $2, 1, 'credit', 'success', 'late commit', 'test', 1)",
    )
    .bind(late_id)
    .bind(a)
    .execute(&mut *late)
    .await?;

    // Writers over HTTP, on other connections, for the whole paging run.
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (app, stop, a, b) = (Arc::clone(&app), Arc::clone(&stop), a, b);
            tokio::spawn(async move {
                let mut written = Vec::new();
                let deadline = Instant::now() + Duration::from_secs(60);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && Instant::now() < deadline {
                    let direction = if w % 2 == 0 { Direction::Debit } else { Direction::Credit };
                    let request = TransferRequest::new(a, b, Amount::parse("0.01")?, direction);
                    let sent_at = Instant::now();
                    let recorded = app.api.transfer(&request, None).await?;
                    written.push((sent_at, Instant::now(), recorded.transaction_id));
                }
                anyhow::Ok(written)
            })
        })
        .collect();
    // Let the writers get going, then serve page 1.
    system_tests::poll_until(Duration::from_secs(10), || {
        let app = Arc::clone(&app);
        async move { Ok((app.transaction_count().await? > 170).then_some(())) }
    })
    .await?;
    let page_one_sent = Instant::now();
    let first = app.api.report(&ReportQuery { limit: Some(25), ..Default::default() }).await?;
    let page_one_received = Instant::now();
    late.commit().await?;
    let token = first.snapshot.clone();
    let (total, total_pages) = (first.total_amount, first.total_pages);
    assert!(total >= 170, "the snapshot holds the rows written before it ({total})");

    let page_of = |page: i64| ReportQuery { page: Some(page), snapshot: Some(token.clone()), ..Default::default() };
    let mut ids: Vec<Uuid> = rows_of(&first);
    for page in 2..=total_pages + 1 {
        let reply = app.api.report(&page_of(page)).await?;
        assert_eq!((reply.total_amount, reply.total_pages), (total, total_pages), "the totals never move");
        ids.extend(rows_of(&reply));
        // Keep writing between pages.
        tokio::task::yield_now().await;
    }
    // Re-read page 1 through the token, after everything else committed.
    let again = app.api.report(&page_of(1)).await?;
    assert_eq!(rows_of(&again), rows_of(&first), "page 1 read again is the same page");
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await??);
    }

    let unique: HashSet<&Uuid> = ids.iter().collect();
    assert_eq!(unique.len(), ids.len(), "no row appears on two pages");
    assert_eq!(ids.len() as i64, total, "the pages hold exactly total_amount rows");
    assert!(!unique.contains(&late_id), "a row committed after page 1 is not in the snapshot");
    let after: Vec<&Uuid> =
        written.iter().filter(|(sent, _, _)| *sent > page_one_received).map(|(_, _, id)| id).collect();
    assert!(!after.is_empty(), "writers kept writing while we paged");
    for id in after {
        assert!(!unique.contains(id), "{id} was written after page 1 and must not appear");
    }
    // A write whose response arrived before page 1 was asked for had committed: it must be in the snapshot.
    let before: Vec<&Uuid> =
        written.iter().filter(|(_, received, _)| *received < page_one_sent).map(|(_, _, id)| id).collect();
    assert!(!before.is_empty(), "writers wrote before page 1");
    for id in before {
        assert!(unique.contains(id), "{id} committed before page 1 and must appear");
    }

    // The database agrees: the snapshot's rows are exactly those its PostgreSQL snapshot saw.
    let (expected,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM transactions t, report_snapshots s
         WHERE s.id = $1 AND t.created_at BETWEEN s.window_start AND s.window_end
           AND pg_visible_in_snapshot(t.created_xid, s.snapshot)",
    )
    .bind(Uuid::parse_str(&token)?)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!(expected, total);
    let (now_in_window,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM transactions t, report_snapshots s WHERE s.id = $1 AND t.created_at BETWEEN s.window_start AND s.window_end",
    )
    .bind(Uuid::parse_str(&token)?)
    .fetch_one(&app.pool)
    .await?;
    assert!(now_in_window > total, "rows committed later do fall inside the window ({now_in_window} > {total})");

    // The download of the same snapshot has the same rows in the same order.
    let csv =
        app.client.get(app.url(&format!("/api/v1/transactions/export?snapshot={token}"))).send().await?.text().await?;
    let csv_ids: Vec<Uuid> = csv.lines().skip(1).map(|line| line[..36].parse()).collect::<Result<_, _>>()?;
    assert_eq!(csv_ids, ids);
    TestLedger::stop_shared(app).await
}

fn rows_of(page: &ReportPage) -> Vec<Uuid> {
    page.transactions.iter().map(|row| row.transaction_id).collect()
}
