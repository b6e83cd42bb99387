//! Every account's book: what writing the balances-after costs transfers (this build against
//! `BENCH_BASELINE_LEDGER`, a build from before them, alternated in the same run), and what a statement page and
//! a balance `as_of` cost as an account and the ledger grow.
//!
//! Then holds: hold + capture pairs per second next to transfers, on this build.
//!
//! Options: `BENCH_BOOK_SIZES` (rows in the ledger, default `1000000,50000000`), `BENCH_BOOK_BIG` (rows of the
//! big account, default 1000000), `BENCH_BOOK_ROUNDS` (throughput rounds, default 3), `BENCH_SKIP_HOLDS=1`,
//! `BENCH_SKIP_LOOKUPS=1`.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::{alternate_builds, create_accounts, env_or, median, rate_rows, round_ratios, start_ledger};

/// Days the seeded rows spread over (all hot).
const DAYS: i64 = 30;
/// Requests per measured figure (the median is quoted).
const SAMPLES: usize = 25;

/// HTTP transfers at 64 clients against this build and the baseline, alternated; the medians and their ratio.
async fn throughput(report: &mut String, baseline: &Path) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_BOOK_ROUNDS", 3).max(1);
    let labels = ["with balances-after (this build)", "without (baseline build)"];
    let subjects = alternate_builds(baseline, labels, rounds, seconds).await?;
    writeln!(report, "## Every account's book: the cost of balances-after to transfers\n")?;
    writeln!(
        report,
        "HTTP transfers with `Idempotency-Key`, 64 clients, uniform pairs of 100 000 accounts, {seconds} s per run, \
         {rounds} runs each, alternated, each build on a fresh database. Baseline: `{}`.\n",
        baseline.display()
    )?;
    rate_rows(report, "service", &subjects)?;
    round_ratios(report, &subjects)
}

/// Adds `rows` rows of `account` (as the payer, to one of `others`) spread over the last [`DAYS`] days.
/// The connection skips triggers (`session_replication_role = replica`): the rows are dated in the past, behind the
/// report seal the running service keeps moving, and this benchmark reads no report.
async fn seed_account(conn: &mut PgConnection, account: Uuid, others: &[Uuid], rows: u64) -> anyhow::Result<()> {
    let chunk = 500_000u64;
    for first in (0..rows).step_by(chunk as usize) {
        let last = (first + chunk).min(rows);
        sqlx::query(
            "INSERT INTO transactions (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status,
                                       recorded_by, src_balance_after, dst_balance_after)
             SELECT gen_random_uuid(), now() - interval '1 minute' - ($1 * interval '1 day') * (g::float8 / $2),
                    'transfer', $3, ($4::uuid[])[1 + g % cardinality($4::uuid[])], 0.01, 'debit', 'success', 'bench',
                    1000000 - g * 0.01, 1000
             FROM generate_series($5, $6) AS g",
        )
        .bind(DAYS as f64)
        .bind(rows as f64)
        .bind(account)
        .bind(others)
        .bind(first as i64 + 1)
        .bind(last as i64)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The seeded rows bypassed the service, which widens each account's book bounds as it writes (migration 0015):
/// widen them here, as an operator would after writing rows by hand. Then a `CHECKPOINT`, so that the figures are
/// not taken while PostgreSQL flushes the seed's gigabytes of dirty pages.
async fn settle_seeded_rows(pool: &sqlx::PgPool) -> anyhow::Result<()> {
    sqlx::query("SELECT ledger_widen_book_bounds()").execute(pool).await?;
    sqlx::query("ANALYZE transactions").execute(pool).await?;
    sqlx::query("CHECKPOINT").execute(pool).await?;
    Ok(())
}

/// Median milliseconds of `SAMPLES` GETs of `path(n)`.
async fn timed(ledger: &system_tests::TestLedger, path: impl Fn(usize) -> String) -> anyhow::Result<f64> {
    let mut times = Vec::new();
    for n in 0..SAMPLES {
        let started = Instant::now();
        let reply = ledger.get(&path(n)).await?;
        anyhow::ensure!(reply.status == 200, "{}: {}", path(n), reply.text);
        times.push(started.elapsed().as_secs_f64() * 1000.0);
    }
    Ok(median(times))
}

/// A statement's first page, a page 50 pages deep, and a balance `as_of`, for an account of 100 rows and one of
/// `BENCH_BOOK_BIG` rows, in a ledger of each size of `BENCH_BOOK_SIZES`.
async fn lookups(report: &mut String) -> anyhow::Result<()> {
    let sizes: Vec<u64> = std::env::var("BENCH_BOOK_SIZES")
        .unwrap_or_else(|_| "1000000,50000000".into())
        .split(',')
        .filter_map(|size| size.trim().parse().ok())
        .collect();
    let big_rows = env_or("BENCH_BOOK_BIG", 1_000_000);
    let ledger = start_ledger().await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    for day in 0..=DAYS {
        sqlx::query("SELECT ledger_create_partition((now() AT TIME ZONE 'UTC')::date - $1::int)")
            .bind(day as i32)
            .execute(&pool)
            .await?;
    }
    let others = create_accounts(&pool, 1_000).await?;
    let (small, big) = (create_accounts(&pool, 1).await?[0], create_accounts(&pool, 1).await?[0]);
    eprintln!("bench: book, seeding the accounts");
    let mut seeder = pool.acquire().await?;
    sqlx::query("SET session_replication_role = replica").execute(&mut *seeder).await?;
    seed_account(&mut seeder, small, &others, 100).await?;
    seed_account(&mut seeder, big, &others, big_rows).await?;
    settle_seeded_rows(&pool).await?;
    let mut seeded = 100 + big_rows;
    writeln!(report, "## Every account's book: a statement page and a balance as of any time\n")?;
    writeln!(
        report,
        "Rows spread over the last {DAYS} days (one partition each); an account of 100 rows and one of {big_rows} \
         rows among 1 000 others that fill the ledger; median of {SAMPLES} HTTP requests (ms), each to another \
         point of the window.\n"
    )?;
    writeln!(report, "| ledger rows | account rows | statement page 1 | page 50 | `as_of` |")?;
    writeln!(report, "|---:|---:|---:|---:|---:|")?;
    let mut figures = Vec::new();
    for size in sizes {
        if size > seeded {
            eprintln!("bench: book, growing the ledger to {size} rows");
            let filler = size - seeded;
            let per_account = filler / others.len() as u64;
            for (n, other) in others.iter().enumerate() {
                let rows = per_account + u64::from((n as u64) < filler % others.len() as u64);
                let payees: Vec<Uuid> = others.iter().copied().filter(|payee| payee != other).collect();
                seed_account(&mut seeder, *other, &payees, rows).await?;
            }
            seeded = size;
            settle_seeded_rows(&pool).await?;
        }
        for (account, rows) in [(small, 100u64), (big, big_rows)] {
            let moment = |n: usize| {
                let at = chrono::Utc::now() - chrono::Duration::hours(1 + (n as i64 * 7919) % (DAYS * 24 - 2));
                at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            };
            let page1 =
                timed(&ledger, |n| format!("/api/v1/accounts/{account}/statement?from={}&limit=100", moment(n)))
                    .await?;
            // A cursor 50 pages in, taken once; every sample reads that page again.
            let mut cursor = None;
            let start = (chrono::Utc::now() - chrono::Duration::days(DAYS))
                .to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
            let statement = format!("/api/v1/accounts/{account}/statement?from={start}&limit=100");
            for _ in 0..50 {
                let path = match &cursor {
                    None => statement.clone(),
                    Some(cursor) => format!("/api/v1/accounts/{account}/statement?cursor={cursor}"),
                };
                let reply = ledger.get(&path).await?;
                match reply.json["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            let deep = match &cursor {
                Some(cursor) => {
                    let ms =
                        timed(&ledger, |_| format!("/api/v1/accounts/{account}/statement?cursor={cursor}")).await?;
                    format!("{ms:.2}")
                }
                None => "one page only".to_owned(),
            };
            let as_of = timed(&ledger, |n| format!("/api/v1/accounts/{account}?as_of={}", moment(n))).await?;
            writeln!(report, "| {size} | {rows} | {page1:.2} | {deep} | {as_of:.2} |")?;
            figures.push((page1, as_of));
        }
    }
    let spread = |pick: fn(&(f64, f64)) -> f64| {
        let values: Vec<f64> = figures.iter().map(pick).collect();
        values.iter().copied().fold(f64::MIN, f64::max) / values.iter().copied().fold(f64::MAX, f64::min)
    };
    writeln!(
        report,
        "\nLargest over smallest median: statement page 1 {:.2}×, `as_of` {:.2}×. The seeded rows carry synthetic \
         balances (the cost of reading them does not depend on their values).\n",
        spread(|f| f.0),
        spread(|f| f.1)
    )?;
    pool.close().await;
    ledger.stop().await
}

/// What a closed-loop client does, once per step.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Step {
    /// One keyed transfer between two random accounts.
    Transfer,
    /// A keyed hold of 0.01 on a random account, then its keyed capture to another.
    HoldAndCapture,
}

/// Steps per second that `clients` closed-loop clients complete in `seconds` on `ledger`.
async fn steps_per_second(
    ledger: &system_tests::TestLedger,
    accounts: &Arc<Vec<Uuid>>,
    step: Step,
    clients: u64,
    seconds: u64,
) -> anyhow::Result<f64> {
    use ledger_contract::{CaptureRequest, Direction, HoldRequest, HoldStatus, TransferRequest};
    let cent = money::Amount::parse("0.01")?;
    let deadline = Instant::now() + std::time::Duration::from_secs(seconds);
    let tasks = (0..clients).map(|client| {
        let (api, accounts) = (ledger.api.clone(), Arc::clone(accounts));
        tokio::spawn(async move {
            let mut random = system_tests::Lcg(client * 7_919 + 17);
            let mut done = 0u64;
            while Instant::now() < deadline {
                let a = accounts[random.next(accounts.len() as u64) as usize];
                let b = accounts[random.next(accounts.len() as u64) as usize];
                if a == b {
                    continue;
                }
                let key = Uuid::now_v7().to_string();
                match step {
                    Step::Transfer => {
                        api.transfer(&TransferRequest::new(a, b, cent, Direction::Debit), Some(&key)).await?;
                    }
                    Step::HoldAndCapture => {
                        let hold = api.place_hold(&HoldRequest::new(a, cent, None, "bench"), Some(&key)).await?;
                        anyhow::ensure!(hold.status == HoldStatus::Pending, "{hold:?}");
                        let capture = CaptureRequest::new(None, Some(b));
                        api.capture_hold(hold.hold_id, &capture, Some(&format!("{key}-c"))).await?;
                    }
                }
                done += 1;
            }
            Ok::<_, anyhow::Error>(done)
        })
    });
    let mut steps = 0;
    for task in futures::future::join_all(tasks).await {
        steps += task??;
    }
    Ok(steps as f64 / seconds as f64)
}

/// Hold + capture pairs per second next to keyed transfers, on one database, alternated.
async fn holds(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_BOOK_ROUNDS", 3).max(1);
    let clients = 64;
    let ledger = start_ledger().await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, 100_000).await?);
    let (mut transfers, mut pairs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        eprintln!("bench: holds, round {}", round + 1);
        transfers.push(steps_per_second(&ledger, &accounts, Step::Transfer, clients, seconds).await?);
        pairs.push(steps_per_second(&ledger, &accounts, Step::HoldAndCapture, clients, seconds).await?);
    }
    let (transfer, pair) = (median(transfers.clone()), median(pairs.clone()));
    let runs = |rates: &[f64]| rates.iter().map(|r| format!("{r:.0}")).collect::<Vec<_>>().join(" / ");
    writeln!(
        report,
        "## Holds: hold + capture pairs next to transfers
"
    )?;
    writeln!(
        report,
        "{clients} closed-loop HTTP clients (the ledger's typed client), each request with its own \
         `Idempotency-Key`, uniform random pairs of 100 000 accounts, {seconds} s per run, {rounds} runs each, \
         alternated on one database. A pair is two requests: the hold, then its capture to another account.\n"
    )?;
    writeln!(report, "| step | per run | median per second | requests per second |")?;
    writeln!(report, "|---|---|---:|---:|")?;
    writeln!(report, "| transfer | {} | {transfer:.0} | {transfer:.0} |", runs(&transfers))?;
    writeln!(report, "| hold + capture | {} | {pair:.0} | {:.0} |", runs(&pairs), 2.0 * pair)?;
    writeln!(
        report,
        "\nA pair costs {:.2}× a transfer; per request, {:.2}×.\n",
        transfer / pair,
        transfer / (2.0 * pair)
    )?;
    pool.close().await;
    ledger.stop().await
}

/// The section.
pub async fn book_benchmarks(report: &mut String) -> anyhow::Result<()> {
    if std::env::var("BENCH_SKIP_HOLDS").is_err() {
        holds(report).await?;
    }
    match std::env::var("BENCH_BASELINE_LEDGER").ok().filter(|path| !path.is_empty()) {
        Some(baseline) => throughput(report, &PathBuf::from(baseline)).await?,
        None => writeln!(report, "(No baseline build: set `BASELINE=<rev>` for the throughput comparison.)\n")?,
    }
    if std::env::var("BENCH_SKIP_LOOKUPS").is_err() {
        lookups(report).await?;
    }
    Ok(())
}
