//! `make bench`: transfers per second over HTTP next to the same transfers as raw SQL on the same database in
//! the same run, and the report's page 1 and deep pages over windows of 100 000 to 20 million rows.
//!
//! Prints a Markdown report (also written to `target/bench-report.md`). Figures from one run on a shared
//! machine are noisy: compare the ratios within a run, not absolute numbers across runs.
//!
//! Options (environment): `BENCH_SECONDS` per transfer scenario (default 10), `BENCH_ACCOUNTS` (default
//! 100000), `BENCH_REPORT_SIZES` (rows in the report's window, default
//! `100000,1000000,5000000,20000000`), `BENCH_ADVANCES` (default 500), `BENCH_SKIP_TRANSFERS=1`,
//! `BENCH_SKIP_LONE=1` (one keyed client, against `BENCH_BASELINE_LEDGER` too when it names an older build),
//! `BENCH_SKIP_SCALING=1` (group commit's settings and instances), `BENCH_SKIP_REPORT=1` (and within it
//! `BENCH_SKIP_PARTITION_COST=1`, `BENCH_SKIP_ARCHIVE=1`, `BENCH_PARTITION_ROUNDS` (default 5),
//! `BENCH_SKIP_KEY_LOOKUPS=1`, `BENCH_KEY_ROWS` (default 1800000)), `BENCH_SKIP_ADVANCES=1`,
//! `BENCH_SKIP_RECONCILE=1`, `BENCH_RECONCILE_SIZES` (default
//! `10000,100000,1000000`), `BENCH_SKIP_BOOK=1` (statements and `as_of`; see `book.rs` for its sizes), `BENCH_CANDIDATE_LEDGER` (a build
//! run in this build's place, in every section),
//! `BENCH_SKIP_EVENTS=1` (events and webhooks; see `events.rs`), `BENCH_SKIP_KEYS=1` (where a keyed transfer's
//! time goes; see `keys.rs`).

mod advances;
mod book;
mod events;
mod keys;
mod lean;
mod lone;
mod reconcile;
mod report;

use std::fmt::Write as _;

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use rust_decimal::Decimal;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use system_tests::{binary_path, Lcg, TestLedger};
use uuid::Uuid;

const POOL_SIZE: u32 = 16;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Latencies of one scenario.
struct Run {
    label: String,
    clients: usize,
    ops: usize,
    elapsed: Duration,
    latencies_us: Vec<u64>,
}

impl Run {
    fn tps(&self) -> f64 {
        self.ops as f64 / self.elapsed.as_secs_f64()
    }

    /// A Markdown table row: label, clients, operations, rate, p50, p99, rate against `baseline`.
    fn row(&self, baseline: f64) -> String {
        format!(
            "| {} | {} | {} | {:.1} | {:.2} | {:.2} | {:.2} |",
            self.label,
            self.clients,
            self.ops,
            self.tps(),
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.tps() / baseline
        )
    }

    fn percentile_ms(&self, p: f64) -> f64 {
        let mut sorted = self.latencies_us.clone();
        sorted.sort_unstable();
        let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
        sorted.get(index).copied().unwrap_or_default() as f64 / 1000.0
    }
}

/// The accounts-service binary as the benchmark runs it: a pool of [`POOL_SIZE`], quiet logs, long limits.
async fn start_ledger() -> anyhow::Result<TestLedger> {
    start_ledger_with(&[]).await
}

/// [`start_ledger`] with more settings. `BENCH_CANDIDATE_LEDGER` names another build to run in this build's
/// place (to measure an older revision with this bench).
async fn start_ledger_with(more: &[(&str, &str)]) -> anyhow::Result<TestLedger> {
    let binary = match candidate() {
        Some(binary) => binary,
        None => binary_path("accounts-service")?,
    };
    start_ledger_built(binary, more).await
}

/// `BENCH_CANDIDATE_LEDGER`, when set.
pub(crate) fn candidate() -> Option<std::path::PathBuf> {
    std::env::var("BENCH_CANDIDATE_LEDGER").ok().filter(|path| !path.is_empty()).map(Into::into)
}

/// [`start_ledger_with`] of another build of the accounts-service (an older revision, to compare with).
async fn start_ledger_built(binary: std::path::PathBuf, more: &[(&str, &str)]) -> anyhow::Result<TestLedger> {
    let pool_size = POOL_SIZE.to_string();
    let mut settings = vec![
        ("DB_POOL_SIZE", pool_size.as_str()),
        ("RUST_LOG", "warn"),
        ("REQUEST_TIMEOUT", "120s"),
        ("DB_STATEMENT_TIMEOUT", "120s"),
    ];
    settings.extend_from_slice(more);
    TestLedger::start_binary(binary, &settings).await
}

/// The service's `ledger_batch_size` histogram: (batches, requests) so far.
async fn batches(ledger: &TestLedger) -> anyhow::Result<(f64, f64)> {
    let text = ledger.get("/metrics").await?.text;
    let value = |name: &str| {
        text.lines().find_map(|line| line.strip_prefix(name)?.trim().parse::<f64>().ok()).unwrap_or_default()
    };
    Ok((value("ledger_batch_size_count"), value("ledger_batch_size_sum")))
}

#[derive(Clone, Copy, PartialEq)]
enum Via {
    Http {
        keyed: bool,
    },
    Sql,
    /// Raw SQL that also records an idempotency key: the key's row inserted in the transfer's transaction, and
    /// the key on the transaction row (the anchor of one keyed client).
    SqlKeyed,
}

/// The same statements the service runs for a transfer (without the idempotency key, unless `key` is given:
/// then its row is inserted first, in the same transaction).
async fn sql_transfer(pool: &PgPool, src: Uuid, dst: Uuid, amount: Decimal, key: Option<&str>) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    if let Some(key) = key {
        sqlx::query("INSERT INTO idempotency_keys (client, key, request_hash) VALUES ('bench', $1, $2)")
            .bind(key)
            .bind(&[0u8; 32][..])
            .execute(&mut *tx)
            .await?;
    }
    let ids = if src < dst { [src, dst] } else { [dst, src] };
    let rows: Vec<(Uuid, Decimal)> =
        sqlx::query_as("SELECT id, balance FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids[..])
            .fetch_all(&mut *tx)
            .await?;
    let balance = |id: Uuid| rows.iter().find(|(row, _)| *row == id).map(|(_, b)| *b).unwrap_or_default();
    let ok = balance(src) >= amount;
    if ok {
        for (id, value) in [(src, balance(src) - amount), (dst, balance(dst) + amount)] {
            sqlx::query("UPDATE accounts SET balance = $2, updated_at = clock_timestamp() WHERE id = $1")
                .bind(id)
                .bind(value)
                .execute(&mut *tx)
                .await?;
        }
    }
    sqlx::query(
        "INSERT INTO transactions
             (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, recorded_by,
              src_balance_after, dst_balance_after, idempotency_key)
         VALUES ($1, clock_timestamp(), 'transfer', $2, $3, $4, 'debit', $5, $6, 'bench', $7, $8, $9)",
    )
    .bind(Uuid::now_v7())
    .bind(src)
    .bind(dst)
    .bind(amount)
    .bind(if ok { "success" } else { "fail" })
    .bind(if ok { None } else { Some("Insufficient funds") })
    .bind(if ok { balance(src) - amount } else { balance(src) })
    .bind(if ok { balance(dst) + amount } else { balance(dst) })
    .bind(key)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// The next transfer a bench client sends: a random payer among `accounts` (the first one when `hot`), another
/// account as payee, and 0.01 to 5.00.
fn next_transfer(rng: &mut Lcg, accounts: &[Uuid], hot: bool) -> (Uuid, Uuid, Decimal) {
    let n = accounts.len() as u64;
    let src = if hot { 0 } else { rng.next(n) as usize };
    let dst = (src + 1 + rng.next(n - 1) as usize) % accounts.len();
    (accounts[src], accounts[dst], Decimal::new(1 + rng.next(500) as i64, 2))
}

/// The body of `POST /api/v1/transaction` for a transfer.
fn transfer_body(src: Uuid, dst: Uuid, amount: Decimal) -> serde_json::Value {
    serde_json::json!({"src_account_id": src, "dst_account_id": dst, "amount": amount.to_string(), "direction": "debit"})
}

async fn run_transfers(
    via: Via,
    clients: usize,
    seconds: u64,
    accounts: Arc<Vec<Uuid>>,
    hot: bool,
    pool: PgPool,
    (bases, http): (Vec<String>, reqwest::Client),
) -> anyhow::Result<Run> {
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|client| {
            let base = bases[client % bases.len()].clone();
            let (accounts, pool, http) = (Arc::clone(&accounts), pool.clone(), http.clone());
            tokio::spawn(async move {
                let mut rng = Lcg(client as u64 * 7919 + 17);
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let (src, dst, amount) = next_transfer(&mut rng, &accounts, hot);
                    let t0 = Instant::now();
                    match via {
                        Via::Sql => sql_transfer(&pool, src, dst, amount, None).await?,
                        Via::SqlKeyed => {
                            let key = Uuid::new_v4().to_string();
                            sql_transfer(&pool, src, dst, amount, Some(&key)).await?
                        }
                        Via::Http { keyed } => {
                            let body = transfer_body(src, dst, amount);
                            let mut request = http.post(format!("{base}/api/v1/transaction")).json(&body);
                            if keyed {
                                request = request.header("Idempotency-Key", Uuid::new_v4().to_string());
                            }
                            let response = request.send().await?;
                            anyhow::ensure!(response.status() == 201, "transfer answered {}", response.status());
                            response.bytes().await?;
                        }
                    }
                    latencies.push(t0.elapsed().as_micros() as u64);
                }
                anyhow::Ok(latencies)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.extend(task.await??);
    }
    let elapsed = started.elapsed();
    let label = match via {
        Via::Http { keyed: false } => "HTTP",
        Via::Http { keyed: true } => "HTTP + Idempotency-Key",
        Via::Sql => "raw SQL",
        Via::SqlKeyed => "raw SQL + the key's row",
    };
    let label = if hot { format!("{label}, hot account") } else { label.to_owned() };
    Ok(Run { label, clients, ops: latencies_us.len(), elapsed, latencies_us })
}

/// The median of some figures.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values.get(values.len() / 2).copied().unwrap_or(f64::NAN)
}

/// HTTP transfers with keys, 64 clients, uniform pairs of 100 000 accounts, against this build and `baseline`
/// (an older build), alternated `rounds` times (A B, B A, …): the TPS of every run, this build's first, under
/// `labels`. Each run starts its service on a fresh database and after a `CHECKPOINT`, and stops it afterwards:
/// no run pays for another's bloat, its WAL, or a background task of a service that is not being measured.
async fn alternate_builds(
    baseline: &std::path::Path,
    labels: [&'static str; 2],
    rounds: u64,
    seconds: u64,
) -> anyhow::Result<Vec<BuildRuns>> {
    let mut results: Vec<BuildRuns> = labels.iter().map(|label| BuildRuns::new(label)).collect();
    let admin = PgPoolOptions::new().max_connections(1).connect(&system_tests::server_url()).await?;
    for round in 0..rounds {
        // A B, then B A: whichever goes first in a round, each build goes first as often.
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for n in order {
            let binary = [None, Some(baseline)][n];
            eprintln!("bench: {}, round {}", labels[n], round + 1);
            let ledger = match binary {
                None => start_ledger().await?,
                Some(binary) => start_ledger_built(binary.to_path_buf(), &[]).await?,
            };
            let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
            let accounts = Arc::new(create_accounts(&pool, 100_000).await?);
            measured_run(&mut results[n], &ledger, &pool, &admin, true, (accounts, seconds)).await?;
            pool.close().await;
            ledger.stop().await?;
        }
    }
    admin.close().await;
    Ok(results)
}

/// One subject's runs: a build in [`alternate_builds`], a kind of request in `keys.rs`.
struct BuildRuns {
    label: &'static str,
    tps: Vec<f64>,
    /// WAL bytes the server wrote during the run, per transfer (the whole server's: nothing else runs).
    wal_per_transfer: Vec<f64>,
}

impl BuildRuns {
    fn new(label: &'static str) -> Self {
        Self { label, tps: Vec::new(), wal_per_transfer: Vec::new() }
    }
}

/// One run of HTTP transfers (`keyed` or not) by 64 clients for `seconds` on `ledger`, whose database `pool`
/// holds `accounts`, after a `CHECKPOINT` (through `admin`): its TPS and the WAL it wrote per transfer go to
/// `runs`, and the run is returned.
async fn measured_run(
    runs: &mut BuildRuns,
    ledger: &TestLedger,
    pool: &PgPool,
    admin: &PgPool,
    keyed: bool,
    (accounts, seconds): (Arc<Vec<Uuid>>, u64),
) -> anyhow::Result<Run> {
    sqlx::query("CHECKPOINT").execute(admin).await?;
    let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text").fetch_one(admin).await?;
    let target = (vec![ledger.base_url.clone()], ledger.client.clone());
    let run = run_transfers(Via::Http { keyed }, 64, seconds, accounts, false, pool.clone(), target).await?;
    let (wal,): (f64,) = sqlx::query_as("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
        .bind(&lsn)
        .fetch_one(admin)
        .await?;
    runs.tps.push(run.tps());
    runs.wal_per_transfer.push(wal / run.ops.max(1) as f64);
    Ok(run)
}

/// The rows of [`BuildRuns`]' figures (header included, its first column named `what`): each run, the median,
/// the ratio to the last subject's median, and the WAL each transfer cost.
fn rate_rows(report: &mut String, what: &str, subjects: &[BuildRuns]) -> anyhow::Result<()> {
    writeln!(report, "| {what} | TPS per run | median TPS | vs the last | median WAL bytes per transfer |")?;
    writeln!(report, "|---|---|---:|---:|---:|")?;
    let reference = subjects.last().map_or(f64::NAN, |runs| median(runs.tps.clone()));
    for runs in subjects {
        let each: Vec<String> = runs.tps.iter().map(|tps| format!("{tps:.0}")).collect();
        let tps = median(runs.tps.clone());
        let wal = median(runs.wal_per_transfer.clone());
        writeln!(report, "| {} | {} | {tps:.0} | {:.2} | {wal:.0} |", runs.label, each.join(" / "), tps / reference)?;
    }
    Ok(())
}

/// The ratio of the first subject to the second in each round of [`alternate_builds`], and their median: a round
/// runs both builds one after the other, within a minute, so its ratio is not moved by the machine's drift between
/// rounds, which the ratio of the medians ([`rate_rows`]) is.
fn round_ratios(report: &mut String, subjects: &[BuildRuns]) -> anyhow::Result<()> {
    let ratios: Vec<f64> = subjects[0].tps.iter().zip(&subjects[1].tps).map(|(this, other)| this / other).collect();
    let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    writeln!(report, "\nRatio of each round: {} (median {:.2}).\n", shown.join(", "), median(ratios.clone()))?;
    Ok(())
}

async fn create_accounts(pool: &PgPool, count: u64) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    sqlx::query("INSERT INTO accounts (id, balance) SELECT unnest($1::uuid[]), 1000000")
        .bind(&ids[..])
        .execute(pool)
        .await?;
    Ok(ids)
}

async fn transfer_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let account_count = env_or("BENCH_ACCOUNTS", 100_000);
    let ledger = start_ledger().await?;
    let pool = PgPoolOptions::new().max_connections(POOL_SIZE).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, account_count).await?);
    let total_before = ledger.total_balance().await?;
    writeln!(report, "## Transfers: HTTP vs raw SQL\n")?;
    writeln!(
        report,
        "{account_count} accounts, uniform random pairs (or a hot payer), {seconds} s per row; the service and the raw-SQL client each use \
         a pool of {POOL_SIZE} connections to the same database. Raw SQL runs the service's statements (lock both \
         rows in id order, two updates, one insert) without HTTP, JSON or idempotency.\n"
    )?;
    writeln!(report, "| path | clients | transfers | TPS | p50 ms | p99 ms | TPS vs raw SQL | requests per commit |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    // The anchor of one keyed client: raw SQL on connections that are not pinged before each transaction (sqlx's
    // default, which the service's committers no longer pay either): its best.
    let anchor_pool = PgPoolOptions::new()
        .max_connections(POOL_SIZE)
        .test_before_acquire(false)
        .connect(&ledger.database.url)
        .await?;
    let mut one_client = None;
    for clients in [1usize, 16, 64, 256] {
        let mut scenarios =
            vec![(Via::Sql, false), (Via::Http { keyed: false }, false), (Via::Http { keyed: true }, false)];
        if clients == 1 {
            scenarios.push((Via::SqlKeyed, false));
        }
        if clients > 1 {
            scenarios.extend([(Via::Sql, true), (Via::Http { keyed: false }, true), (Via::Http { keyed: true }, true)]);
        }
        let mut runs = Vec::new();
        for (via, hot) in scenarios {
            eprintln!(
                "bench: {clients} clients via {}{}",
                if matches!(via, Via::Sql | Via::SqlKeyed) { "SQL" } else { "HTTP" },
                if hot { ", hot" } else { "" }
            );
            let before = batches(&ledger).await?;
            let run = run_transfers(
                via,
                clients,
                seconds,
                Arc::clone(&accounts),
                hot,
                if via == Via::SqlKeyed { anchor_pool.clone() } else { pool.clone() },
                (vec![ledger.base_url.clone()], ledger.client.clone()),
            )
            .await?;
            let per_commit = per_commit(before, batches(&ledger).await?);
            runs.push((via, hot, run, per_commit));
        }
        let lean = if clients == 1 {
            eprintln!("bench: 1 client via HTTP, lean client");
            Some(lean::keyed_transfers(&ledger.base_url, ledger.token.as_deref(), seconds, &accounts).await?)
        } else {
            None
        };
        for (via, hot, run, per_commit) in &runs {
            // Each row against raw SQL in the same pattern (uniform or hot).
            let baseline =
                runs.iter().find(|(via, h, _, _)| *via == Via::Sql && h == hot).map_or(1.0, |(_, _, r, _)| r.tps());
            let per_commit =
                if matches!(via, Via::Sql | Via::SqlKeyed) { "1".to_owned() } else { format!("{per_commit:.1}") };
            writeln!(report, "{} {per_commit} |", run.row(baseline))?;
        }
        if let (Some(lean), Some((_, _, sql, _))) = (&lean, runs.iter().find(|(via, ..)| *via == Via::Sql)) {
            writeln!(report, "{} 1.0 |", lean.row(sql.tps()))?;
        }
        let p50 =
            |wanted: Via| runs.iter().find(|(via, ..)| *via == wanted).map(|(_, _, run, _)| run.percentile_ms(0.5));
        if let (Some(http), Some(sql), Some(lean)) = (p50(Via::Http { keyed: true }), p50(Via::SqlKeyed), &lean) {
            let lean = lean.percentile_ms(0.5);
            one_client = Some(format!(
                "One client with keys: p50 {lean:.2} ms over HTTP from a lean client (one socket, no HTTP library) \
                 against {sql:.2} ms for raw SQL that also inserts the key's row (on connections not pinged before \
                 each transaction), **{:.2}×**; from reqwest, {http:.2} ms, {:.2}×.",
                lean / sql,
                http / sql
            ));
        }
    }
    if let Some(line) = one_client {
        writeln!(report, "\n{line}")?;
    }
    writeln!(
        report,
        "\nHot account: every transfer is paid by the same account, so they all queue on its row lock; the ratio is \
         against raw SQL with the same hot account. Peak resident memory of the accounts-service (VmHWM) after \
         these runs: {:.1} MiB.",
        peak_rss_kib(ledger.pid().await)? as f64 / 1024.0
    )?;
    let total_after = ledger.total_balance().await?;
    anyhow::ensure!(total_before == total_after, "money was created or destroyed: {total_before} -> {total_after}");
    writeln!(report, "\nChecked after the run: the sum of all balances is unchanged ({total_after}).\n")?;
    pool.close().await;
    anchor_pool.close().await;
    ledger.stop().await
}

/// The `ledger_batch_size` histogram's cumulative buckets: (upper bound, batches so far).
async fn batch_buckets(ledger: &TestLedger) -> anyhow::Result<Vec<(String, f64)>> {
    let text = ledger.get("/metrics").await?.text;
    Ok(text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix("ledger_batch_size_bucket{le=\"")?;
            let (bound, count) = rest.split_once("\"} ")?;
            Some((bound.to_owned(), count.trim().parse().ok()?))
        })
        .collect())
}

/// Requests per commit between two readings of [`batches`].
fn per_commit(before: (f64, f64), after: (f64, f64)) -> f64 {
    (after.1 - before.1) / (after.0 - before.0).max(1.0)
}

/// One group-commit setting on a fresh service: HTTP transfers without keys by `clients`, uniform then on a hot
/// account, a table row each starting with `label`. With `distribution`, the uniform row's batch sizes (the share
/// of batches per histogram bucket) are written into it.
async fn sweep_setting(
    report: &mut String,
    label: &str,
    settings: &[(&str, &str)],
    clients: usize,
    (seconds, account_count): (u64, u64),
    mut distribution: Option<&mut String>,
) -> anyhow::Result<()> {
    let ledger = start_ledger_with(settings).await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, account_count).await?);
    for hot in [false, true] {
        let pattern = if hot { "hot account" } else { "uniform" };
        eprintln!("bench: {label}, {pattern}");
        let (before, buckets_before) = (batches(&ledger).await?, batch_buckets(&ledger).await?);
        let target = (vec![ledger.base_url.clone()], ledger.client.clone());
        let run = run_transfers(
            Via::Http { keyed: false },
            clients,
            seconds,
            Arc::clone(&accounts),
            hot,
            pool.clone(),
            target,
        )
        .await?;
        let after = batches(&ledger).await?;
        writeln!(
            report,
            "| {label} | {pattern} | {:.0} | {:.2} | {:.2} | {:.1} |",
            run.tps(),
            run.percentile_ms(0.5),
            run.percentile_ms(0.99),
            per_commit(before, after)
        )?;
        if let Some(distribution) = distribution.as_deref_mut().filter(|_| !hot) {
            let buckets_after = batch_buckets(&ledger).await?;
            let batches = after.0 - before.0;
            let mut previous = 0.0;
            let mut cells = Vec::new();
            for ((bound, after), (_, before)) in buckets_after.iter().zip(&buckets_before) {
                let cumulative = after - before;
                cells.push(format!("≤ {bound}: {:.0} %", 100.0 * (cumulative - previous) / batches.max(1.0)));
                previous = cumulative;
            }
            *distribution = format!(
                "Batch sizes of the {label}-committer uniform row ({batches:.0} batches), share of batches per \
                 histogram bucket: {}.",
                cells.join(", ")
            );
        }
    }
    pool.close().await;
    ledger.stop().await
}

/// Group commit's settings and instances: committers swept at 64 clients, the batch sizes of one run, and one
/// against two service instances on the same database.
async fn scaling_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let account_count = env_or("BENCH_ACCOUNTS", 100_000);
    writeln!(report, "## Group commit: settings and instances\n")?;
    writeln!(
        report,
        "HTTP transfers without keys, 64 clients, {seconds} s per row, a fresh service with {account_count} accounts per \
         setting (`DB_POOL_SIZE=16`).\n"
    )?;
    writeln!(report, "| `BATCH_COMMITTERS` | pattern | TPS | p50 ms | p99 ms | requests per commit |")?;
    writeln!(report, "|---:|---|---:|---:|---:|---:|")?;
    let mut distribution = String::new();
    for committers in [1u32, 2, 4, 8] {
        let count = committers.to_string();
        let describe = (committers == 4).then_some(&mut distribution);
        let settings = [("BATCH_COMMITTERS", count.as_str())];
        sweep_setting(report, &count, &settings, 64, (seconds, account_count), describe).await?;
    }
    writeln!(report, "\n{distribution}\n")?;

    writeln!(
        report,
        "`BATCH_MAX` and `DB_POOL_SIZE` at 256 clients, HTTP without keys, `BATCH_COMMITTERS=2`, a fresh service per \
         setting:\n"
    )?;
    writeln!(report, "| setting | pattern | TPS | p50 ms | p99 ms | requests per commit |")?;
    writeln!(report, "|---|---|---:|---:|---:|---:|")?;
    let sweeps: [(&str, &str); 7] = [
        ("BATCH_MAX", "16"),
        ("BATCH_MAX", "64"),
        ("BATCH_MAX", "128"),
        ("BATCH_MAX", "512"),
        ("DB_POOL_SIZE", "4"),
        ("DB_POOL_SIZE", "8"),
        ("DB_POOL_SIZE", "32"),
    ];
    for (name, value) in sweeps {
        let settings = [(name, value), ("BATCH_COMMITTERS", "2")];
        sweep_setting(report, &format!("`{name}={value}`"), &settings, 256, (seconds, account_count), None).await?;
    }
    writeln!(report)?;

    writeln!(
        report,
        "One and two service instances on the same database (clients spread over both), HTTP without keys, \
         uniform:\n"
    )?;
    writeln!(report, "| instances | clients | TPS | p50 ms | p99 ms |")?;
    writeln!(report, "|---:|---:|---:|---:|---:|")?;
    let ledger = start_ledger().await?;
    let second = ledger.add_instance().await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, account_count).await?);
    for clients in [64usize, 256] {
        for bases in [vec![ledger.base_url.clone()], vec![ledger.base_url.clone(), second.base_url.clone()]] {
            eprintln!("bench: {} instances, {clients} clients", bases.len());
            let instances = bases.len();
            let target = (bases, ledger.client.clone());
            let run = run_transfers(
                Via::Http { keyed: false },
                clients,
                seconds,
                Arc::clone(&accounts),
                false,
                pool.clone(),
                target,
            )
            .await?;
            writeln!(
                report,
                "| {instances} | {clients} | {:.0} | {:.2} | {:.2} |",
                run.tps(),
                run.percentile_ms(0.5),
                run.percentile_ms(0.99)
            )?;
        }
    }
    writeln!(report)?;
    pool.close().await;
    second.stop().await;
    ledger.stop().await
}

/// The peak resident set size of a process so far, from /proc (Linux).
fn peak_rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status_kib(pid, "VmHWM:")
}

/// A process's resident memory now (VmRSS), in KiB.
fn current_rss_kib(pid: u32) -> anyhow::Result<u64> {
    proc_status_kib(pid, "VmRSS:")
}

fn proc_status_kib(pid: u32, field: &str) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .with_context(|| format!("no {field} in /proc status"))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut report = String::new();
    writeln!(report, "# Benchmark run {}\n", chrono::Utc::now().format("%Y-%m-%d %H:%M UTC"))?;
    writeln!(
        report,
        "Command: `make bench` (release build). Machine: {} cores.\n",
        std::thread::available_parallelism()?
    )?;
    if std::env::var("BENCH_SKIP_TRANSFERS").is_err() {
        transfer_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_LONE").is_err() {
        lone::lone_client_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_SCALING").is_err() {
        scaling_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_REPORT").is_err() {
        report::report_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_ADVANCES").is_err() {
        advances::advance_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_RECONCILE").is_err() {
        reconcile::reconcile_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_BOOK").is_err() {
        book::book_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_EVENTS").is_err() {
        events::event_benchmarks(&mut report).await?;
    }
    if std::env::var("BENCH_SKIP_KEYS").is_err() {
        keys::key_benchmarks(&mut report).await?;
    }
    println!("{report}");
    let out = binary_path("accounts-service")?.with_file_name("bench-report.md");
    std::fs::write(&out, &report)?;
    eprintln!("bench: report written to {}", out.display());
    Ok(())
}
