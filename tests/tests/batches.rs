//! Group commit's edge cases, with one committer whose batches the test stops inside their database transaction
//! (a row the test holds locked), so that it knows exactly which requests share a batch.

use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use serde_json::{json, Value};
use system_tests::{dec, poll_until, Reply, TestLedger};
use uuid::Uuid;

const PATIENCE: Duration = Duration::from_secs(20);

/// The ledger with a single committer.
async fn ledger() -> anyhow::Result<Arc<TestLedger>> {
    Ok(Arc::new(TestLedger::start_with(&[("BATCH_COMMITTERS", "1")]).await?))
}

/// Requests waiting for a committer, from `/metrics`.
async fn waiting(app: &TestLedger) -> anyhow::Result<i64> {
    let metrics = app.get("/metrics").await?.text;
    let line = metrics.lines().find(|line| line.starts_with("ledger_batch_waiting "));
    Ok(line.and_then(|line| line.split_whitespace().nth(1)?.parse().ok()).unwrap_or(-1))
}

/// The service's database sessions waiting for a row lock.
async fn blocked(app: &TestLedger) -> anyhow::Result<Vec<i32>> {
    let pids: Vec<(i32,)> = sqlx::query_as(
        "SELECT pid FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'accounts-service' AND wait_event_type = 'Lock'",
    )
    .fetch_all(&app.pool)
    .await?;
    Ok(pids.into_iter().map(|(pid,)| pid).collect())
}

/// Holds an account's row locked in an open transaction, as a slow writer would.
async fn hold(app: &TestLedger, account: Uuid) -> anyhow::Result<sqlx::Transaction<'static, sqlx::Postgres>> {
    let mut holder = app.pool.begin().await?;
    sqlx::query("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE").bind(account).execute(&mut *holder).await?;
    Ok(holder)
}

type Pending = tokio::task::JoinHandle<anyhow::Result<Reply>>;

/// Sends a request in the background.
fn send(app: &Arc<TestLedger>, path: &'static str, body: Value, key: Option<&str>) -> Pending {
    let (sender, key) = (Arc::clone(app), key.map(str::to_owned));
    tokio::spawn(async move { sender.post(path, &body, key.as_deref()).await })
}

/// Sends a bank credit of 1 to `plug`, whose row the test holds, and waits until the committer is stuck on it.
async fn plug(app: &Arc<TestLedger>, plug: Uuid) -> anyhow::Result<Pending> {
    let plugged = send(app, "/api/v1/bank_transactions", bank(plug, "1", "credit"), None);
    poll_until(PATIENCE, || async { Ok((blocked(app).await?.len() == 1).then_some(())) }).await?;
    Ok(plugged)
}

/// Sends a request in the background and waits until it is queued behind the busy committer.
async fn enqueue(app: &Arc<TestLedger>, path: &'static str, body: Value, key: Option<&str>) -> anyhow::Result<Pending> {
    let before = waiting(app).await?;
    let pending = send(app, path, body, key);
    poll_until(PATIENCE, || async { Ok((waiting(app).await? > before).then_some(())) }).await?;
    Ok(pending)
}

fn transfer(src: Uuid, dst: Uuid, amount: &str) -> Value {
    json!({"src_account_id": src, "dst_account_id": dst, "amount": amount, "direction": "debit"})
}

fn bank(account: Uuid, amount: &str, direction: &str) -> Value {
    json!({"dst_account_id": account, "amount": amount, "direction": direction})
}

/// The database transactions that wrote these ledger rows.
async fn writers(app: &TestLedger, replies: &[&Reply]) -> anyhow::Result<i64> {
    let ids: Vec<Uuid> = replies.iter().filter_map(|reply| reply.str("transaction_id").parse().ok()).collect();
    let (count,): (i64,) =
        sqlx::query_as("SELECT count(DISTINCT created_xid::text) FROM transactions WHERE id = ANY($1)")
            .bind(&ids)
            .fetch_one(&app.pool)
            .await?;
    Ok(count)
}

#[tokio::test]
async fn requests_that_waited_together_commit_together_and_each_gets_its_own_answer() -> anyhow::Result<()> {
    let app = ledger().await?;
    let plug_account = app.funded_account("1").await?;
    let (hot, other) = (app.funded_account("100").await?, app.open_account().await?);
    let missing = Uuid::now_v7();
    let holder = hold(&app, plug_account).await?;
    let plugged = plug(&app, plug_account).await?;

    // Queued in this order while the committer waits: they become one batch, applied in this order.
    let mut pending = Vec::new();
    for (path, body, key) in [
        ("/api/v1/transaction", transfer(hot, other, "30"), Some("k1")),
        ("/api/v1/transaction", transfer(hot, other, "30"), Some("k1")), // the same key twice in one batch
        ("/api/v1/transaction", transfer(hot, other, "50"), None),
        ("/api/v1/transaction", transfer(hot, other, "40"), None), // 20 left: recorded as failed
        ("/api/v1/transaction", transfer(hot, missing, "10"), Some("k404")), // nothing recorded, key released
        ("/api/v1/bank_transactions", bank(other, "80", "debit"), None),
        ("/api/v1/transaction", transfer(hot, other, "31"), Some("k1")), // the key again, another request
    ] {
        pending.push(enqueue(&app, path, body, key).await?);
    }
    holder.rollback().await?;
    assert_eq!(plugged.await??.status, 201);
    let mut replies = Vec::new();
    for reply in pending {
        replies.push(reply.await??);
    }
    let statuses: Vec<(u16, String)> = replies
        .iter()
        .map(|r| (r.status, if r.status == 201 { r.str("status").to_owned() } else { r.error_code().to_owned() }))
        .collect();
    let expected = [
        (201, "success"),
        (201, "success"),
        (201, "success"),
        (201, "fail"),
        (404, "not_found"),
        (201, "success"),
        (422, "idempotency_key_reused"),
    ];
    let expected: Vec<(u16, String)> = expected.iter().map(|(status, what)| (*status, (*what).to_owned())).collect();
    assert_eq!(statuses, expected, "{replies:?}");
    assert_eq!(replies[1].text, replies[0].text, "the second use of the key replays the first");
    assert!(replies[1].headers.contains_key("idempotent-replayed"));
    assert_eq!(replies[3].str("reason"), "Insufficient funds");
    let committed = [&replies[0], &replies[2], &replies[3], &replies[5]];
    assert_eq!(writers(&app, &committed).await?, 1, "one database transaction wrote the batch");
    assert_eq!((app.balance(hot).await?, app.balance(other).await?), (dec("20"), Decimal::ZERO));

    // The 404 recorded nothing, so its key is free for a good request.
    let again = app.post("/api/v1/transaction", &transfer(hot, other, "10"), Some("k404")).await?;
    assert_eq!((again.status, again.str("status")), (201, "success"), "{}", again.text);
    let metrics = app.get("/metrics").await?.text;
    assert!(metrics.contains("ledger_batch_size_bucket"), "{metrics}");
    TestLedger::stop_shared(app).await
}

#[tokio::test]
async fn a_batch_whose_connection_is_killed_before_its_commit_runs_again_request_by_request() -> anyhow::Result<()> {
    let app = ledger().await?;
    let plug_account = app.funded_account("1").await?;
    let [b, c, d] = [app.open_account().await?, app.open_account().await?, app.open_account().await?];
    let plug_holder = hold(&app, plug_account).await?;
    let plugged = plug(&app, plug_account).await?;
    let d_holder = hold(&app, d).await?;
    let mut pending = Vec::new();
    for (account, key) in [(c, Some("r1")), (b, None), (d, Some("r3"))] {
        pending.push(enqueue(&app, "/api/v1/bank_transactions", bank(account, "5", "credit"), key).await?);
    }
    // The plug's batch commits; the next batch (all three) then waits for d inside its transaction: kill it there.
    plug_holder.rollback().await?;
    assert_eq!(plugged.await??.status, 201);
    let victim = poll_until(PATIENCE, || async { Ok(blocked(&app).await?.first().copied()) }).await?;
    let (killed,): (bool,) =
        sqlx::query_as("SELECT pg_terminate_backend($1)").bind(victim).fetch_one(&app.pool).await?;
    assert!(killed);
    // Run one by one, c and b go through; d waits for its holder again, then goes too.
    poll_until(PATIENCE, || async {
        let free = app.balance(c).await? == dec("5") && app.balance(b).await? == dec("5");
        Ok((free && blocked(&app).await?.len() == 1).then_some(()))
    })
    .await?;
    d_holder.rollback().await?;
    let mut replies = Vec::new();
    for reply in pending {
        replies.push(reply.await??);
    }
    assert!(replies.iter().all(|r| r.status == 201 && r.str("status") == "success"), "{replies:?}");
    for account in [b, c, d] {
        assert_eq!(app.balance(account).await?, dec("5"), "applied exactly once");
    }
    let (keyed,): (i64,) = sqlx::query_as("SELECT count(*) FROM transactions WHERE idempotency_key IN ('r1', 'r3')")
        .fetch_one(&app.pool)
        .await?;
    assert_eq!(keyed, 2);
    let all: Vec<&Reply> = replies.iter().collect();
    assert_eq!(writers(&app, &all).await?, 3, "after the kill each ran in a transaction of its own");
    TestLedger::stop_shared(app).await
}

#[tokio::test]
async fn a_committers_connection_killed_between_batches_fails_one_batch_and_is_replaced() -> anyhow::Result<()> {
    let app = ledger().await?;
    let (payer, payee) = (app.funded_account("10").await?, app.open_account().await?);
    let first = app.post("/api/v1/transaction", &transfer(payer, payee, "1"), Some("before")).await?;
    assert_eq!(first.status, 201);
    // The committer keeps its connection between batches: killed while idle, like a connection a restart of
    // PostgreSQL or a network cut leaves behind.
    let (killed,): (i64,) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name = 'accounts-service' AND state = 'idle'",
    )
    .fetch_one(&app.pool)
    .await?;
    assert!(killed >= 1, "the service keeps connections between requests");
    let failed_batches =
        |log: &str| log.matches("the batch failed before its commit; running its requests one by one").count();
    let before = failed_batches(&app.log_text());
    for key in ["after-1", "after-2", "after-3"] {
        let reply = app.post("/api/v1/transaction", &transfer(payer, payee, "1"), Some(key)).await?;
        assert_eq!((reply.status, reply.str("status")), (201, "success"), "{reply:?}");
    }
    assert_eq!(app.balance(payee).await?, dec("4"), "each applied exactly once");
    // The first batch found the dead connection and its request ran on its own; the committer then took a new
    // connection instead of failing every batch on the dead one.
    assert_eq!(failed_batches(&app.log_text()) - before, 1, "{}", app.log_text());
    TestLedger::stop_shared(app).await
}
