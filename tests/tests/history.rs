//! Transactions over time: the daily partitions (and the migration to them from a populated ledger), and the
//! report seal that makes a new snapshot cost the same at any size while it keeps every snapshot exact.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use accounts_service::db::seal::{self, Sealing};
use ledger_contract::{Direction, ReportPage, ReportQuery};
use sqlx::PgPool;
use system_tests::db::{migrate_accounts_up_to, TestDatabase};
use system_tests::replica::Replicated;
use system_tests::{poll_until, TestLedger};
use uuid::Uuid;

/// Every row of `transactions`, all columns, in one digest; and the count.
async fn fingerprint(pool: &PgPool) -> anyhow::Result<(i64, String)> {
    Ok(sqlx::query_as(
        "SELECT count(*), coalesce(md5(string_agg(r::text, '|' ORDER BY r.created_at, r.id)), '')
         FROM (SELECT id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                      description, idempotency_key, created_xid, recorded_by FROM transactions) r",
    )
    .fetch_one(pool)
    .await?)
}

/// Writes `per_day` rows on each of the `days` UTC days before today (and today up to now), in one database
/// transaction per day, straight into the table; with `book`, into a schema with balances-after (placeholders).
async fn write_history(pool: &PgPool, days: i32, per_day: i32, book: bool) -> anyhow::Result<(Uuid, Uuid)> {
    let (a, b) = (Uuid::now_v7(), Uuid::now_v7());
    sqlx::query("INSERT INTO accounts (id, balance) VALUES ($1, 1000000), ($2, 1000000)")
        .bind(a)
        .bind(b)
        .execute(pool)
        .await?;
    for day in (0..=days).rev() {
        // Spread over the day (today: over the hours already past), with failures and bank rows.
        let (columns, values) = match book {
            true => (", src_balance_after, dst_balance_after", ", CASE k WHEN 'transfer' THEN 0 END, 0"),
            false => ("", ""),
        };
        sqlx::query(&format!(
            "INSERT INTO transactions
                 (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                  description, idempotency_key, recorded_by{columns})
             SELECT gen_random_uuid(), t, k, CASE k WHEN 'transfer' THEN $2 END, $3, (1 + g % 5000) / 100.0,
                    CASE WHEN g % 2 = 0 THEN 'debit' ELSE 'credit' END,
                    CASE WHEN g % 17 = 0 THEN 'fail' ELSE 'success' END,
                    CASE WHEN g % 17 = 0 THEN 'insufficient_funds' END,
                    CASE k WHEN 'bank' THEN 'history ' || g END,
                    CASE WHEN g % 3 = 0 THEN 'key-' || $4 || '-' || g END,
                    'history'{values}
             FROM generate_series(1, $1) AS g,
                  LATERAL (SELECT CASE WHEN g % 4 = 0 THEN 'bank' ELSE 'transfer' END AS k) AS kinds,
                  LATERAL (SELECT least(date_trunc('day', now(), 'UTC') - make_interval(days => $4)
                                        + (g::float8 / ($1 + 1)) * interval '1 day',
                                        now() - interval '1 minute' + (g::float8 / ($1 + 1)) * interval '1 minute')
                           AS t) AS times"
        ))
        .bind(per_day)
        .bind(a)
        .bind(b)
        .bind(day)
        .execute(pool)
        .await?;
    }
    Ok((a, b))
}

/// Every page of a snapshot, read in a scrambled order, put back in page order.
async fn all_pages(app: &TestLedger, first: &ReportPage) -> anyhow::Result<Vec<Uuid>> {
    let pages = first.total_pages;
    let mut order: Vec<i64> = (1..=pages).collect();
    // Deep pages first, then the rest: a page's rows must not depend on which pages were read before it.
    order.reverse();
    order.rotate_left((pages / 3) as usize);
    let mut read = std::collections::BTreeMap::new();
    for page in order {
        let query = ReportQuery { page: Some(page), snapshot: Some(first.snapshot.clone()), ..Default::default() };
        let reply = app.api.report(&query).await?;
        anyhow::ensure!(reply.total_amount == first.total_amount, "page {page} changed the total");
        read.insert(page, reply.transactions.iter().map(|row| row.transaction_id).collect::<Vec<_>>());
    }
    Ok(read.into_values().flatten().collect())
}

/// The rows a snapshot must show, newest first, straight from the database.
async fn expected_rows(pool: &PgPool, token: &str) -> anyhow::Result<Vec<Uuid>> {
    let rows: Vec<(Uuid,)> = sqlx::query_as(
        "SELECT t.id FROM transactions t, report_snapshots s
         WHERE s.id = $1 AND t.created_at BETWEEN s.window_start AND s.window_end
           AND pg_visible_in_snapshot(t.created_xid, s.snapshot)
         ORDER BY t.created_at DESC, t.id DESC",
    )
    .bind(Uuid::parse_str(token)?)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

async fn frontier(pool: &PgPool) -> anyhow::Result<chrono::DateTime<chrono::Utc>> {
    Ok(seal::state(pool).await?.frontier)
}

/// A ledger of twenty days of history, written under the schema before partitions, is migrated by the new
/// service: every row keeps every column (its id and inserting transaction included), each lands in its own
/// day's partition, and the report over the last five days (crossing day boundaries, read through the marks
/// sealed over the migrated rows) is exactly the rows the database holds for it.
#[tokio::test]
async fn a_populated_ledger_migrates_to_daily_partitions_with_every_row_unchanged() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    let pool = PgPool::connect(&database.url).await?;
    migrate_accounts_up_to(&pool, 2).await?;
    let (a, b) = write_history(&pool, 20, 1_500, false).await?;
    // Rows from before clients existed name no client (0002 keeps them, NOT VALID).
    sqlx::raw_sql(
        "ALTER TABLE transactions DROP CONSTRAINT transactions_recorded_by_present;
         UPDATE transactions SET recorded_by = NULL WHERE amount < 1;
         ALTER TABLE transactions ADD CONSTRAINT transactions_recorded_by_present CHECK (recorded_by IS NOT NULL) NOT VALID",
    )
    .execute(&pool)
    .await?;
    let before = fingerprint(&pool).await?;
    assert!(before.0 > 30_000, "{before:?}");

    let started = Instant::now();
    let app = TestLedger::start_on(database, &[("REPORT_SEAL_INTERVAL", "50ms")]).await?;
    eprintln!("migrated {} rows and started in {:?}", before.0, started.elapsed());
    assert_eq!(fingerprint(&pool).await?, before, "every row, every column");
    let (kind,): (String,) =
        sqlx::query_as("SELECT relkind::text FROM pg_class WHERE relname = 'transactions'").fetch_one(&pool).await?;
    assert_eq!(kind, "p", "transactions is partitioned");
    let (misplaced,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM transactions
         WHERE tableoid::regclass::text <> 'transactions_' || to_char(created_at AT TIME ZONE 'UTC', 'YYYYMMDD')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(misplaced, 0, "every row is in its UTC day's partition");
    let (ahead,): (i64,) = sqlx::query_as(
        "SELECT count(*) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
         WHERE i.inhparent = 'transactions'::regclass
           AND c.relname > 'transactions_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')",
    )
    .fetch_one(&pool)
    .await?;
    assert_eq!(ahead, 7, "the next seven days' partitions exist");

    // The service moves money into today's partition, and the seal passes the whole history.
    let moved = app
        .api
        .transfer(&ledger_contract::TransferRequest::new(a, b, money::Amount::parse("1.00")?, Direction::Debit), None)
        .await?;
    let (partition,): (String,) = sqlx::query_as("SELECT tableoid::regclass::text FROM transactions WHERE id = $1")
        .bind(moved.transaction_id)
        .fetch_one(&pool)
        .await?;
    assert!(partition.starts_with("transactions_2"), "{partition}");
    poll_until(Duration::from_secs(60), || {
        let pool = pool.clone();
        async move { Ok((frontier(&pool).await? > moved.transaction_timestamp).then_some(())) }
    })
    .await?;

    let first = app.api.report(&ReportQuery { limit: Some(997), ..Default::default() }).await?;
    let expected = expected_rows(&pool, &first.snapshot).await?;
    assert!(expected.len() > 7_000, "five days and more of history are in the window ({})", expected.len());
    assert_eq!(first.total_amount as usize, expected.len(), "the snapshot's total is exact");
    assert_eq!(all_pages(&app, &first).await?, expected, "every page, in order, is the database's answer");
    pool.close().await;
    app.stop().await
}

/// A slow database transaction dates a row and stays open. The seal cannot pass it; a snapshot taken meanwhile
/// does not show the row, before or after it commits, on any page; a snapshot taken after it commits and after
/// the seal has passed it shows it. Both snapshots are exactly what the database says they saw.
#[tokio::test]
async fn the_seal_waits_for_a_slow_transaction_and_every_snapshot_stays_exact() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("REPORT_SEAL_INTERVAL", "50ms")]).await?;
    let a = app.funded_account("1000").await?;
    for _ in 0..250 {
        app.bank(a, "0.01", Direction::Credit).await?;
    }
    // Sealed: the 251 rows so far go through the marks.
    let written = app.transaction_count().await?;
    poll_until(Duration::from_secs(30), || {
        let pool = app.pool.clone();
        async move {
            let sealed = seal::state(&pool).await?.next_num;
            Ok((sealed >= written).then_some(()))
        }
    })
    .await?;

    // The slow transaction: its id first, then its row dated by the clock, as the service does.
    let mut slow = app.pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *slow).await?;
    let slow_id = Uuid::now_v7();
    let (slow_at,): (chrono::DateTime<chrono::Utc>,) = sqlx::query_as(
        "INSERT INTO transactions
             (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by, dst_balance_after)
         VALUES ($1, clock_timestamp(), 'bank', $2, 5, 'credit', 'success', 'test', 5) RETURNING created_at",
    )
    .bind(slow_id)
    .bind(a)
    .fetch_one(&mut *slow)
    .await?;
    // At once, while no newer transaction may have ended yet (a snapshot's xmax would not count it as running),
    // and again after newer ones have.
    assert_eq!(seal::seal(&app.pool, Duration::from_millis(300)).await?, Sealing::Waiting);
    for _ in 0..150 {
        app.bank(a, "0.01", Direction::Credit).await?;
    }
    assert_eq!(seal::seal(&app.pool, Duration::from_millis(300)).await?, Sealing::Waiting);
    assert!(frontier(&app.pool).await? <= slow_at, "the seal stays below the open transaction's row");

    let during = app.api.report(&ReportQuery { limit: Some(7), ..Default::default() }).await?;
    slow.commit().await?;
    poll_until(Duration::from_secs(30), || {
        let pool = app.pool.clone();
        async move { Ok((frontier(&pool).await? > slow_at).then_some(())) }
    })
    .await?;
    let after = app.api.report(&ReportQuery { limit: Some(7), ..Default::default() }).await?;

    let during_rows = all_pages(&app, &during).await?;
    assert_eq!(during_rows, expected_rows(&app.pool, &during.snapshot).await?);
    assert_eq!(during_rows.len(), 401, "the funding credit and 400 credits");
    assert!(!during_rows.contains(&slow_id), "the row committed after page 1 is not in its snapshot");
    let after_rows = all_pages(&app, &after).await?;
    assert_eq!(after_rows, expected_rows(&app.pool, &after.snapshot).await?);
    assert!(after_rows.contains(&slow_id));
    assert_eq!(after_rows.len(), 402);
    assert_eq!(after_rows.iter().collect::<HashSet<_>>().len(), 402, "no row twice");
    app.stop().await
}

/// The sealed count before any time equals a plain count, across days and after the oldest day is dropped
/// (as archiving drops it): the marks keep the first row of every day.
#[tokio::test]
async fn sealed_counts_equal_plain_counts_at_any_time_and_after_a_day_is_dropped() -> anyhow::Result<()> {
    let database = TestDatabase::create().await?;
    let pool = PgPool::connect(&database.url).await?;
    accounts_service::db::MIGRATOR.run(&pool).await?;
    sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - g) FROM generate_series(1, 3) g")
        .execute(&pool)
        .await?;
    write_history(&pool, 3, 1_234, true).await?;
    assert!(matches!(seal::seal(&pool, Duration::from_secs(5)).await?, Sealing::Sealed { rows } if rows > 4_000));
    let (marks, gaps_over, day_firsts_unmarked): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM report_marks),
                (SELECT count(*) FROM (SELECT num - lag(num) OVER (ORDER BY num) AS gap FROM report_marks) g
                 WHERE gap > 100),
                (SELECT count(*) FROM (SELECT DISTINCT ON (date_trunc('day', created_at, 'UTC')) created_at, id
                                       FROM transactions ORDER BY date_trunc('day', created_at, 'UTC'), created_at, id) f
                 WHERE NOT EXISTS (SELECT 1 FROM report_marks m WHERE m.created_at = f.created_at AND m.id = f.id))",
    )
    .fetch_one(&pool)
    .await?;
    assert!(marks > 40, "{marks}");
    assert_eq!((gaps_over, day_firsts_unmarked), (0, 0));

    let check = |pool: PgPool| async move {
        // Random times across the history, and the exact times of rows (ties on a timestamp).
        let (mismatches,): (i64,) = sqlx::query_as(
            "WITH times AS (
                 SELECT (SELECT min(created_at) FROM transactions)
                        + random() * ((SELECT max(created_at) FROM transactions)
                                      - (SELECT min(created_at) FROM transactions)) AS t
                 FROM generate_series(1, 150)
                 UNION ALL
                 (SELECT created_at FROM transactions ORDER BY random() LIMIT 50)
             )
             SELECT count(*) FROM times
             WHERE report_rows_before(t) - (SELECT min(num) FROM report_marks)
                   <> (SELECT count(*) FROM transactions WHERE created_at < t)",
        )
        .fetch_one(&pool)
        .await?;
        anyhow::ensure!(mismatches == 0, "{mismatches} of 200 counts differ");
        anyhow::Ok(())
    };
    check(pool.clone()).await?;
    // Drop the oldest day as archiving does: its partition and its marks.
    let (oldest,): (String,) = sqlx::query_as(
        "SELECT 'transactions_' || to_char(min(created_at) AT TIME ZONE 'UTC', 'YYYYMMDD') FROM transactions",
    )
    .fetch_one(&pool)
    .await?;
    let mut tx = pool.begin().await?;
    sqlx::query(&format!(
        "DELETE FROM report_marks m USING {oldest} o WHERE m.created_at = o.created_at AND m.id = o.id"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP TABLE {oldest}")).execute(&mut *tx).await?;
    tx.commit().await?;
    check(pool.clone()).await?;

    // A row dated before the frontier is refused, through the partitioned table and straight into its day.
    let (today,): (String,) = sqlx::query_as("SELECT 'transactions_' || to_char(now() AT TIME ZONE 'UTC', 'YYYYMMDD')")
        .fetch_one(&pool)
        .await?;
    for (table, dated) in
        [("transactions", "now() - interval '1 hour'"), (today.as_str(), "date_trunc('day', now(), 'UTC')")]
    {
        let refused = sqlx::query(&format!(
            "INSERT INTO {table} (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by)
             SELECT gen_random_uuid(), {dated}, 'bank', dst_account_id, 1, 'credit', 'success', 'x'
             FROM transactions LIMIT 1"
        ))
        .execute(&pool)
        .await;
        let message = refused.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(message.contains("before the report seal"), "{table}: {message}");
    }
    pool.close().await;
    database.drop_database().await
}

/// Reports read from a real streaming hot standby (made from a private primary with `pg_basebackup`) while
/// writers keep committing on the primary. Every page of a token taken on the standby is exactly what the
/// primary says the standby's snapshot saw, so no page shows a row that page 1 did not count, and nothing
/// written after page 1 appears.
#[tokio::test]
async fn reports_from_a_streaming_replica_keep_every_snapshot_guarantee() -> anyhow::Result<()> {
    // A name no database of the shared server has: stopping the ledger drops its database by name there too.
    let name = format!("replicated_{}", Uuid::new_v4().simple());
    let cluster = Replicated::start(&name).await?;
    let database = TestDatabase { name: name.clone(), url: cluster.primary_url(&name) };
    let standby = cluster.standby_url(&name);
    let app = std::sync::Arc::new(
        TestLedger::start_on(
            database,
            &[
                ("REPORT_DATABASE_URL", standby.as_str()),
                ("REPORT_SEAL_INTERVAL", "50ms"),
                ("REPORT_REPLICA_WAIT", "1s"),
            ],
        )
        .await?,
    );
    let (a, b) = (app.funded_account("100000").await?, app.funded_account("100000").await?);
    for _ in 0..150 {
        app.bank(a, "0.01", Direction::Credit).await?;
    }
    cluster.caught_up(Duration::from_secs(30)).await?;

    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|w| {
            let (app, stop) = (std::sync::Arc::clone(&app), std::sync::Arc::clone(&stop));
            tokio::spawn(async move {
                let mut written = Vec::new();
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (from, to) = if w == 0 { (a, b) } else { (b, a) };
                    let request = ledger_contract::TransferRequest::new(
                        from,
                        to,
                        money::Amount::parse("0.01")?,
                        Direction::Debit,
                    );
                    written.push((app.api.transfer(&request, None).await?.transaction_id, Instant::now()));
                }
                anyhow::Ok(written)
            })
        })
        .collect();
    poll_until(Duration::from_secs(30), || {
        let app = std::sync::Arc::clone(&app);
        async move { Ok((app.transaction_count().await? > 250).then_some(())) }
    })
    .await?;
    // A late commit on the primary: dated now, committed only after page 1.
    let mut late = app.pool.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *late).await?;
    let late_id = Uuid::now_v7();
    sqlx::query(
        "INSERT INTO transactions
             (id, created_at, kind, dst_account_id, amount, direction, status, recorded_by, dst_balance_after)
         VALUES ($1, clock_timestamp(), 'bank', $2, 5, 'credit', 'success', 'test', 5)",
    )
    .bind(late_id)
    .bind(a)
    .execute(&mut *late)
    .await?;
    let started = Instant::now();
    let first = app.api.report(&ReportQuery { limit: Some(25), ..Default::default() }).await?;
    let page_one_received = Instant::now();
    late.commit().await?;
    // Let the standby replay more commits, the late one included, then read every page while the writers go on.
    cluster.caught_up(Duration::from_secs(30)).await?;
    let rows = all_pages(&app, &first).await?;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await??);
    }

    assert_eq!(
        rows,
        expected_rows(&app.pool, &first.snapshot).await?,
        "the primary agrees with the standby's snapshot"
    );
    assert_eq!(rows.len() as i64, first.total_amount);
    assert_eq!(rows.iter().collect::<HashSet<_>>().len(), rows.len(), "no row twice");
    let after: Vec<&Uuid> = written.iter().filter(|(_, at)| *at > page_one_received).map(|(id, _)| id).collect();
    assert!(!after.is_empty(), "writers kept writing while the pages were read");
    assert!(after.iter().all(|id| !rows.contains(id)), "nothing written after page 1 appears");
    assert!(!rows.contains(&late_id), "the row committed after page 1 does not appear");
    eprintln!("{} rows paged in {:?}", rows.len(), started.elapsed());
    // The reports' connections are on the standby.
    let mut on_standby: sqlx::PgConnection = sqlx::Connection::connect(&standby).await?;
    let (readers, in_recovery): (i64, bool) = sqlx::query_as(
        "SELECT count(*), pg_is_in_recovery() FROM pg_stat_activity WHERE application_name = 'accounts-service-reports'",
    )
    .fetch_one(&mut on_standby)
    .await?;
    assert!(in_recovery && readers > 0, "{readers} report connections on the standby");

    // A standby behind the token. Its replay is paused, and the token's WAL position is moved past what it has
    // replayed, as if page 1 had been served by another standby behind the same address, further ahead (or by
    // this one before it restarted from an older restartpoint). A later page and the token's download wait for
    // it instead of serving a view with rows missing, and answer 503 once REPORT_REPLICA_WAIT is up; a new page 1
    // too. Once replay resumes, the same page answers with the same rows.
    sqlx::query("SELECT pg_wal_replay_pause()").execute(&mut on_standby).await?;
    app.bank(a, "0.01", Direction::Credit).await?;
    let (ahead,): (String,) = sqlx::query_as("SELECT pg_current_wal_insert_lsn()::text").fetch_one(&app.pool).await?;
    sqlx::query("UPDATE report_snapshots SET wal_lsn = $1::pg_lsn WHERE id = $2")
        .bind(&ahead)
        .bind(Uuid::parse_str(&first.snapshot)?)
        .execute(&app.pool)
        .await?;
    let token = &first.snapshot;
    for path in [
        format!("/api/v1/transactions?page=2&snapshot={token}"),
        format!("/api/v1/transactions/export?snapshot={token}"),
        "/api/v1/transactions?limit=25".to_owned(),
    ] {
        let response = app.client.get(app.url(&path)).send().await?;
        assert_eq!(response.status(), 503, "{path} on a standby behind the snapshot");
    }
    sqlx::query("SELECT pg_wal_replay_resume()").execute(&mut on_standby).await?;
    let query = ReportQuery { page: Some(2), snapshot: Some(first.snapshot.clone()), ..Default::default() };
    let second = app.api.report(&query).await?;
    let second: Vec<Uuid> = second.transactions.iter().map(|row| row.transaction_id).collect();
    assert_eq!(second, rows[25..50], "the same rows once the standby caught up");
    TestLedger::stop_shared(app).await?;
    drop(cluster);
    Ok(())
}
