//! The report over time: page 1 (a new snapshot) at 100 000 to 20 million rows in the window next to a bare
//! `count(*)` of the same rows, deep and random pages, the download against COPY, and what daily partitions
//! cost a transfer.

use std::fmt::Write as _;
use std::ops::RangeInclusive;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_contract::scopes;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use system_tests::db::migrate_accounts_up_to;
use system_tests::process::add_client;
use system_tests::{poll_until, Lcg, TestDatabase, TestLedger};
use uuid::Uuid;

use super::{create_accounts, env_or, peak_rss_kib, run_transfers, Via, POOL_SIZE};

/// The ledger's key lookup (`db::ledger::transactions_by_keys`), the very text it runs.
const BY_KEYS: &str = include_str!("../../../../accounts-service/src/db/by_keys.sql");

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// One window size's figures.
struct Sized {
    rows: u64,
    load_s: f64,
    seal_s: f64,
    page_one_ms: f64,
    deep_page: u64,
    deep_ms: f64,
    random_ms: f64,
    count_ms: f64,
}

/// A fresh accounts database, migrated by the service's own command line (it applies its migrations when it
/// adds a client), with two accounts and the partitions of the days `days_ago` before today.
async fn migrated_ledger(days_ago: RangeInclusive<i32>) -> anyhow::Result<(TestDatabase, PgPool, Vec<Uuid>)> {
    let database = TestDatabase::create().await?;
    // The build under test migrates the database: `BENCH_CANDIDATE_LEDGER`'s, when it names an older one.
    let binary = super::candidate().map_or_else(|| "accounts-service".to_owned(), |path| path.display().to_string());
    add_client(&binary, &database.url, "loader", &[scopes::REPORTS_READ]).await?;
    let pool = PgPoolOptions::new().max_connections(2).connect(&database.url).await?;
    let accounts = create_accounts(&pool, 2).await?;
    sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - g) FROM generate_series($1, $2) g")
        .bind(days_ago.start())
        .bind(days_ago.end())
        .execute(&pool)
        .await?;
    Ok((database, pool, accounts))
}

/// A ledger whose last 4 days hold `rows` transactions, loaded before the service first starts (as history
/// migrated from an older release is), then sealed by the service.
async fn loaded_ledger(rows: u64) -> anyhow::Result<(TestLedger, f64, f64)> {
    let (database, pool, accounts) = migrated_ledger(1..=5).await?;
    let loaded = Instant::now();
    // Ids rise with time (as the service's v7 ids do). The foreign-key and seal triggers are skipped for this bulk
    // load only: both accounts exist, and nothing is sealed yet.
    let mut conn = pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await?;
    let chunk = 5_000_000u64;
    for first in (0..rows).step_by(chunk as usize) {
        sqlx::query(
            "INSERT INTO transactions
                 (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, recorded_by,
                  src_balance_after, dst_balance_after)
             SELECT lpad(to_hex($1 - g), 32, '0')::uuid, now() - (g * interval '4 days' / $1), 'transfer', $2, $3,
                    1 + (g % 500) / 100.0, 'debit', 'success', 'bench', 0, 0
             FROM generate_series($4, $5) AS g",
        )
        .bind(rows as i64)
        .bind(accounts[0])
        .bind(accounts[1])
        .bind(first as i64 + 1)
        .bind((first + chunk).min(rows) as i64)
        .execute(&mut *conn)
        .await?;
    }
    drop(conn);
    sqlx::query("VACUUM ANALYZE transactions").execute(&pool).await?;
    let load_s = loaded.elapsed().as_secs_f64();
    let binary = match super::candidate() {
        Some(binary) => binary,
        None => system_tests::binary_path("accounts-service")?,
    };
    let ledger = TestLedger::start_binary_on(
        binary,
        database,
        &[("DB_POOL_SIZE", "16"), ("RUST_LOG", "warn"), ("REQUEST_TIMEOUT", "120s"), ("DB_STATEMENT_TIMEOUT", "120s")],
    )
    .await?;
    let sealing = Instant::now();
    poll_until(Duration::from_secs(3600), || {
        let pool = pool.clone();
        async move {
            let (sealed,): (i64,) = sqlx::query_as("SELECT next_num FROM report_seal").fetch_one(&pool).await?;
            Ok((sealed as u64 >= rows).then_some(()))
        }
    })
    .await?;
    let seal_s = sealing.elapsed().as_secs_f64();
    pool.close().await;
    Ok((ledger, load_s, seal_s))
}

async fn get(ledger: &TestLedger, path: &str) -> anyhow::Result<(f64, serde_json::Value)> {
    let started = Instant::now();
    let response = ledger.client.get(ledger.url(path)).send().await?;
    anyhow::ensure!(response.status() == 200, "{path} answered {}", response.status());
    let body: serde_json::Value = response.json().await?;
    Ok((started.elapsed().as_secs_f64() * 1000.0, body))
}

async fn measure(rows: u64, report: &mut String, export: bool) -> anyhow::Result<Sized> {
    eprintln!("bench: report over {rows} rows");
    let (ledger, load_s, seal_s) = loaded_ledger(rows).await?;
    let pool = PgPoolOptions::new().max_connections(2).connect(&ledger.database.url).await?;
    let mut page_one = Vec::new();
    let mut token = String::new();
    let mut total_pages = 0;
    for _ in 0..21 {
        let (ms, body) = get(&ledger, "/api/v1/transactions?limit=100").await?;
        anyhow::ensure!(body["total_amount"].as_u64() == Some(rows), "window holds {}", body["total_amount"]);
        token = body["snapshot"].as_str().context("no snapshot")?.to_owned();
        total_pages = body["total_pages"].as_u64().unwrap_or_default();
        page_one.push(ms);
    }
    let mut count = Vec::new();
    for _ in 0..3 {
        let started = Instant::now();
        sqlx::query(
            "SELECT count(*) FROM transactions WHERE created_at >= now() - interval '5 days' AND created_at <= now()",
        )
        .fetch_one(&pool)
        .await?;
        count.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    let deep_page = 20_000.min(total_pages);
    let mut deep = Vec::new();
    for _ in 0..21 {
        deep.push(get(&ledger, &format!("/api/v1/transactions?limit=100&page={deep_page}&snapshot={token}")).await?.0);
    }
    let mut rng = Lcg(rows);
    let mut random = Vec::new();
    for _ in 0..101 {
        let page = 1 + rng.next(total_pages);
        random.push(get(&ledger, &format!("/api/v1/transactions?limit=100&page={page}&snapshot={token}")).await?.0);
    }
    if export {
        export_figures(&ledger, &token, report).await?;
    }
    pool.close().await;
    ledger.stop().await?;
    Ok(Sized {
        rows,
        load_s,
        seal_s,
        page_one_ms: median(page_one),
        deep_page,
        deep_ms: median(deep),
        random_ms: median(random),
        count_ms: median(count),
    })
}

/// The download of a whole snapshot against COPY of the same rows (medians of 5 rounds, alternated), and the
/// service's peak memory around it.
async fn export_figures(ledger: &TestLedger, token: &str, report: &mut String) -> anyhow::Result<()> {
    let peak_before_kib = peak_rss_kib(ledger.pid().await)?;
    let (mut export_times, mut copy_times) = (Vec::new(), Vec::new());
    let (mut export_rows, mut copy_lines) = (0, 0);
    for _ in 0..5 {
        let started = Instant::now();
        let csv = ledger
            .client
            .get(ledger.url(&format!("/api/v1/transactions/export?format=csv&snapshot={token}")))
            .send()
            .await?
            .error_for_status()?;
        let mut stream = csv.bytes_stream();
        let mut lines = 0usize;
        while let Some(chunk) = futures::StreamExt::next(&mut stream).await {
            lines += chunk?.iter().filter(|b| **b == b'\n').count();
        }
        export_times.push(started.elapsed().as_secs_f64());
        export_rows = lines.saturating_sub(1);
        let started = Instant::now();
        let copy = Command::new("psql")
            .arg(&ledger.database.url)
            .arg("-qAtc")
            .arg("COPY (SELECT * FROM transactions ORDER BY created_at DESC, id DESC) TO STDOUT WITH CSV")
            .stdout(Stdio::piped())
            .output()?;
        copy_times.push(started.elapsed().as_secs_f64());
        anyhow::ensure!(copy.status.success(), "COPY failed");
        copy_lines = copy.stdout.iter().filter(|b| **b == b'\n').count();
    }
    let peak_after_kib = peak_rss_kib(ledger.pid().await)?;
    let (export_s, copy_s) = (median(export_times), median(copy_times));
    writeln!(report, "## Export\n")?;
    writeln!(report, "Medians of 5 rounds, the download and COPY alternated.\n")?;
    writeln!(report, "| path | rows | seconds | rows/s | vs COPY |")?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    writeln!(report, "| `GET /api/v1/transactions/export?format=csv` (HTTP, snapshot) | {export_rows} | {export_s:.2} | {:.0} | {:.2} |", export_rows as f64 / export_s, (export_rows as f64 / export_s) / (copy_lines as f64 / copy_s))?;
    writeln!(report, "| `psql -c \"COPY (… ORDER BY created_at DESC, id DESC) TO STDOUT CSV\"` | {copy_lines} | {copy_s:.2} | {:.0} | 1.00 |", copy_lines as f64 / copy_s)?;
    writeln!(
        report,
        "\nPeak resident memory of the accounts-service process (VmHWM): {:.1} MiB before the export, {:.1} MiB after \
         streaming all {export_rows} rows five times.\n",
        peak_before_kib as f64 / 1024.0,
        peak_after_kib as f64 / 1024.0
    )?;
    Ok(())
}

pub async fn report_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let sizes: Vec<u64> = std::env::var("BENCH_REPORT_SIZES")
        .unwrap_or_else(|_| "100000,1000000,5000000,20000000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let export_at = sizes.iter().copied().filter(|&rows| rows <= 5_000_000).max();
    let mut figures = Vec::new();
    let mut export = String::new();
    for &rows in &sizes {
        figures.push(measure(rows, &mut export, Some(rows) == export_at).await?);
    }
    writeln!(report, "## Report page 1 at any size\n")?;
    writeln!(
        report,
        "Each size is a fresh ledger whose last 4 days hold that many transactions, loaded before the service starts \
         and then sealed by it. `limit=100`; latency over HTTP; medians of 21 new snapshots (page 1 without a \
         token), 21 deep pages and 101 random pages through one token, and 3 bare `count(*)` of the window in SQL.\n"
    )?;
    writeln!(
        report,
        "| rows in the window | load s | seal s | page 1, new snapshot, ms | bare count(*) ms | page 1 vs count | deep page | deep ms | deep vs page 1 | random ms | random vs page 1 |"
    )?;
    writeln!(report, "|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|---:|")?;
    for f in &figures {
        writeln!(
            report,
            "| {} | {:.0} | {:.1} | {:.2} | {:.1} | {:.3} | {} | {:.2} | {:.2} | {:.2} | {:.2} |",
            f.rows,
            f.load_s,
            f.seal_s,
            f.page_one_ms,
            f.count_ms,
            f.page_one_ms / f.count_ms,
            f.deep_page,
            f.deep_ms,
            f.deep_ms / f.page_one_ms,
            f.random_ms,
            f.random_ms / f.page_one_ms
        )?;
    }
    if let (Some(smallest), Some(largest)) = (figures.first(), figures.last()) {
        writeln!(
            report,
            "\nPage 1 at {} rows vs {} rows: {:.2}×.\n",
            largest.rows,
            smallest.rows,
            largest.page_one_ms / smallest.page_one_ms
        )?;
    }
    report.push_str(&export);
    if std::env::var("BENCH_SKIP_PARTITION_COST").is_err() {
        partition_cost(report).await?;
    }
    if std::env::var("BENCH_SKIP_ARCHIVE").is_err() {
        archive_cost(report).await?;
    }
    // The key lookups read this build's schema (`idempotency_key_uses`): not run for an older candidate.
    if std::env::var("BENCH_SKIP_KEY_LOOKUPS").is_err() && super::candidate().is_none() {
        key_lookup_cost(report).await?;
    }
    Ok(())
}

/// Idempotency-key lookups (`transactions_by_key`'s and `transactions_by_keys`' statements) over 90 hot days of
/// partitions (plus today and 7 ahead: 98), next to the same rows in one table with the same index. A key holds no
/// date, so a lookup probes every partition's index.
async fn key_lookup_cost(report: &mut String) -> anyhow::Result<()> {
    let rows = env_or("BENCH_KEY_ROWS", 1_800_000) as i64;
    let (database, pool, accounts) = migrated_ledger(1..=90).await?;
    let mut conn = pool.acquire().await?;
    // Loaded in bulk, before any seal: the seal's guard is skipped for the load only.
    sqlx::query("SET session_replication_role = replica").execute(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO transactions
             (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, idempotency_key,
              recorded_by, src_balance_after, dst_balance_after)
         SELECT gen_random_uuid(),
                date_trunc('day', now(), 'UTC') - (g % 90 + 1) * interval '1 day' + (g / 90) * interval '1 second',
                'transfer', $2, $3, 1, 'debit', 'success', 'key-' || g, 'advances-worker', 0, 0
         FROM generate_series(1, $1) AS g",
    )
    .bind(rows)
    .bind(accounts[0])
    .bind(accounts[1])
    .execute(&mut *conn)
    .await?;
    // Each row's use, as the service leaves it: a claim a moment before the row, kept in `idempotency_keys` for
    // the 8 days of IDEMPOTENCY_KEY_TTL and moved to `idempotency_key_uses` by the purge after that.
    sqlx::query(
        "INSERT INTO idempotency_keys (client, key, request_hash, status_code, answered_by_row, created_at)
         SELECT recorded_by, idempotency_key, '\\x00', 201, true, created_at - interval '1 millisecond'
         FROM transactions WHERE created_at >= now() - interval '8 days'",
    )
    .execute(&mut *conn)
    .await?;
    sqlx::query(
        "INSERT INTO idempotency_key_uses (client, key, claimed_at)
         SELECT recorded_by, idempotency_key, created_at - interval '1 millisecond'
         FROM transactions WHERE created_at < now() - interval '8 days'",
    )
    .execute(&mut *conn)
    .await?;
    drop(conn);
    for statement in [
        "CREATE TABLE flat AS SELECT * FROM transactions",
        "CREATE INDEX ON flat (recorded_by, idempotency_key) WHERE idempotency_key IS NOT NULL",
        "VACUUM ANALYZE transactions",
        "VACUUM ANALYZE flat",
        "VACUUM ANALYZE idempotency_keys",
        "VACUUM ANALYZE idempotency_key_uses",
    ] {
        sqlx::query(statement).execute(&pool).await?;
    }
    let (partitions,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM pg_inherits WHERE inhparent = 'transactions'::regclass")
            .fetch_one(&pool)
            .await?;
    let mut rng = Lcg(7);
    // The statement `by_keys` ran before issue 23 (every partition probed), against the partitioned table and
    // against one table of the same rows; both fetch the rows, as the service does.
    let every_partition = |table: &str| {
        format!(
            "SELECT t.idempotency_key, t.id, t.created_at, t.kind, t.src_account_id, t.dst_account_id, t.amount,
                    t.direction, t.status, t.reason, t.description, t.recorded_by
             FROM {table} t WHERE t.recorded_by = 'advances-worker' AND t.idempotency_key = ANY($1)
             ORDER BY t.created_at, t.id"
        )
    };
    let mut figures = Vec::new();
    for keys in [1, 1000] {
        let mut times = [Vec::new(), Vec::new(), Vec::new()];
        for _ in 0..21 {
            let first = 1 + rng.next((rows - keys) as u64) as i64;
            let asked: Vec<String> = (first..first + keys).map(|n| format!("key-{n}")).collect();
            for (i, table) in ["by uses", "transactions", "flat"].iter().enumerate() {
                let started = Instant::now();
                let found = match i {
                    // Every key here has a use and a row in the hour after it: nothing is left to seek in every
                    // partition (a row without an id would be).
                    0 => {
                        let rows = sqlx::query(BY_KEYS).bind("advances-worker").bind(&asked).fetch_all(&pool).await?;
                        let ids: Vec<Option<Uuid>> =
                            rows.iter().map(|row| sqlx::Row::try_get(row, "id")).collect::<Result<_, _>>()?;
                        ids.iter().filter(|id| id.is_some()).count()
                    }
                    _ => sqlx::query(&every_partition(table)).bind(&asked).fetch_all(&pool).await?.len(),
                };
                times[i].push(started.elapsed().as_secs_f64() * 1000.0);
                anyhow::ensure!(found == keys as usize, "{table}: {found} of {keys} keys found");
            }
        }
        let [by_uses, partitioned, flat] = times;
        figures.push((keys, median(by_uses), median(partitioned), median(flat)));
    }
    writeln!(report, "## Idempotency-key lookups over 90 hot days\n")?;
    writeln!(
        report,
        "{rows} keyed rows spread over 90 past days; {partitions} partitions (with today and 7 ahead); each row's \
         use a millisecond before it, in `idempotency_keys` for the last 8 days and in `idempotency_key_uses` \
         before. `POST /api/v1/transactions/by_keys`'s statement (`accounts-service/src/db/by_keys.sql`: each row \
         sought in the hour after its use), and the statement it replaced (every partition probed) against the \
         partitioned table and against a copy of the same rows in one table with the same index; all fetch the \
         rows; medians of 21, alternated.\n"
    )?;
    writeln!(report, "| keys per lookup | by uses ms | every partition ms | one table ms | by uses vs one table | every partition vs one table |")?;
    writeln!(report, "|---:|---:|---:|---:|---:|---:|")?;
    for (keys, by_uses, partitioned, flat) in figures {
        writeln!(
            report,
            "| {keys} | {by_uses:.2} | {partitioned:.2} | {flat:.2} | {:.1}× | {:.1}× |",
            by_uses / flat,
            partitioned / flat
        )?;
    }
    writeln!(report)?;
    pool.close().await;
    database.drop_database().await
}

/// Archiving one day of `BENCH_ARCHIVE_ROWS` (default 1 000 000) rows with `accounts-service archive` (export,
/// upload to a directory, read back and verify, detach, drop) next to `COPY … TO STDOUT` of the same partition.
async fn archive_cost(report: &mut String) -> anyhow::Result<()> {
    let rows = env_or("BENCH_ARCHIVE_ROWS", 1_000_000);
    let (database, pool, accounts) = migrated_ledger(100..=100).await?;
    let (table,): (String,) =
        sqlx::query_as("SELECT 'transactions_' || to_char((now() AT TIME ZONE 'UTC')::date - 100, 'YYYYMMDD')")
            .fetch_one(&pool)
            .await?;
    // Varied rows (bank rows with descriptions, keys, failures), spread over the day.
    sqlx::query(
        "INSERT INTO transactions
             (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
              idempotency_key, recorded_by, src_balance_after, dst_balance_after)
         SELECT gen_random_uuid(), date_trunc('day', now(), 'UTC') - interval '100 days' + g * interval '1 day' / ($1 + 1),
                CASE WHEN g % 4 = 0 THEN 'bank' ELSE 'transfer' END, CASE WHEN g % 4 = 0 THEN NULL ELSE $2::uuid END,
                $3, (g % 100000) / 100.0 + 0.01, CASE WHEN g % 2 = 0 THEN 'debit' ELSE 'credit' END,
                CASE WHEN g % 17 = 0 THEN 'fail' ELSE 'success' END, CASE WHEN g % 17 = 0 THEN 'Insufficient funds' END,
                CASE WHEN g % 4 = 0 THEN 'payment ' || g END, 'payment-' || gen_random_uuid(), 'advances-worker',
                CASE WHEN g % 4 = 0 THEN NULL ELSE 0 END, 0
         FROM generate_series(1, $1) AS g",
    )
    .bind(rows as i64)
    .bind(accounts[0])
    .bind(accounts[1])
    .execute(&pool)
    .await?;
    sqlx::query("VACUUM ANALYZE transactions").execute(&pool).await?;
    let started = Instant::now();
    let copy = Command::new("psql")
        .arg(&database.url)
        .arg("-qAtc")
        .arg(format!("COPY (SELECT * FROM {table} ORDER BY created_at, id) TO STDOUT"))
        .stdout(Stdio::piped())
        .output()?;
    let copy_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(copy.status.success(), "COPY failed");
    let directory = std::env::temp_dir().join(format!("bench-archive-{}", database.name));
    let started = Instant::now();
    let archived = Command::new(system_tests::binary_path("accounts-service")?)
        .arg("archive")
        .env("DATABASE_URL", &database.url)
        .env("ARCHIVE_URL", &directory)
        .env("RUST_LOG", "warn")
        .output()?;
    let archive_s = started.elapsed().as_secs_f64();
    anyhow::ensure!(archived.status.success(), "archive failed: {}", String::from_utf8_lossy(&archived.stderr));
    let day: serde_json::Value =
        serde_json::from_str(String::from_utf8(archived.stdout)?.lines().next().context("nothing archived")?)?;
    let (file_bytes, partition_bytes) =
        (day["file_bytes"].as_f64().unwrap_or_default(), day["partition_bytes"].as_f64().unwrap_or_default());
    writeln!(report, "## Archiving a day\n")?;
    writeln!(
        report,
        "One day of {rows} rows, 100 days old. `accounts-service archive` (release) writes the Parquet file (zstd), \
         uploads it to a directory, reads it back and verifies every row, detaches and drops the partition; next to \
         `psql -c \"COPY (SELECT * FROM <day> ORDER BY created_at, id) TO STDOUT\"` of the same partition.\n"
    )?;
    writeln!(report, "| path | seconds | rows/s | vs COPY |")?;
    writeln!(report, "|---|---:|---:|---:|")?;
    writeln!(
        report,
        "| `accounts-service archive` (export, verify, drop) | {archive_s:.1} | {:.0} | {:.2} |",
        rows as f64 / archive_s,
        copy_s / archive_s
    )?;
    writeln!(report, "| `COPY … TO STDOUT` (text) | {copy_s:.1} | {:.0} | 1.00 |", rows as f64 / copy_s)?;
    writeln!(
        report,
        "\nThe file is {:.1} MiB; the partition was {:.1} MiB with its indexes ({:.1}× smaller); COPY's text was {:.1} MiB.\n",
        file_bytes / 1_048_576.0,
        partition_bytes / 1_048_576.0,
        partition_bytes / file_bytes,
        copy.stdout.len() as f64 / 1_048_576.0
    )?;
    let _ = std::fs::remove_dir_all(&directory);
    pool.close().await;
    database.drop_database().await
}

/// Raw SQL transfers (the service's statements, no HTTP) on the partitioned table with its seal trigger and on
/// the single table of migration 0002, alternated, in the same run.
async fn partition_cost(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let mut schemas = Vec::new();
    for last in [2, i64::MAX] {
        let database = TestDatabase::create().await?;
        let pool = PgPoolOptions::new().max_connections(POOL_SIZE).connect(&database.url).await?;
        migrate_accounts_up_to(&pool, last).await?;
        let accounts = Arc::new(create_accounts(&pool, 10_000).await?);
        schemas.push((if last == 2 { "single table (0002)" } else { "daily partitions" }, database, pool, accounts));
    }
    let rounds = env_or("BENCH_PARTITION_ROUNDS", 5);
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (i, (label, _, pool, accounts)) in schemas.iter().enumerate() {
            eprintln!("bench: raw SQL transfers, 64 clients, {label}, round {}", round + 1);
            let run = run_transfers(
                Via::Sql,
                64,
                seconds,
                Arc::clone(accounts),
                false,
                pool.clone(),
                (vec![String::new()], reqwest::Client::new()),
            )
            .await?;
            rates[i].push(run.tps());
        }
    }
    writeln!(report, "## What daily partitions cost a transfer\n")?;
    writeln!(
        report,
        "Raw SQL transfers (lock both accounts, two updates, one insert; no HTTP), 64 clients, 10 000 accounts, \
         {seconds} s per run, the two schemas alternated {rounds} times in the same run; medians.\n"
    )?;
    writeln!(report, "| schema | runs (TPS) | median TPS | vs single table |")?;
    writeln!(report, "|---|---|---:|---:|")?;
    let baseline = median(rates[0].clone());
    for ((label, ..), rates) in schemas.iter().zip(&rates) {
        let runs: Vec<String> = rates.iter().map(|r| format!("{r:.0}")).collect();
        let m = median(rates.clone());
        writeln!(report, "| {label} | {} | {m:.0} | {:.2} |", runs.join(", "), m / baseline)?;
    }
    writeln!(report)?;
    for (_, database, pool, _) in schemas {
        pool.close().await;
        database.drop_database().await?;
    }
    Ok(())
}
