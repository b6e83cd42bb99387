//! Keys for free (issue 23): where a keyed transfer's time and WAL go, next to an unkeyed one, on this build.
//!
//! Each run starts a fresh service and database (100 000 accounts), checkpoints, and sends HTTP transfers from 64
//! clients for `BENCH_SECONDS`, with keys or without, alternated `BENCH_KEY_ROUNDS` times (default 3). Each run
//! gives its TPS and the WAL it wrote per transfer; when the server loads `pg_stat_statements`
//! (`shared_preload_libraries`), the last run of each kind also gives its statements: calls, execution time and
//! WAL per transfer.

use std::fmt::Write as _;
use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;

use crate::{create_accounts, env_or, measured_run, rate_rows, start_ledger, BuildRuns};

/// One statement's share of a run.
struct Statement {
    query: String,
    calls: f64,
    exec_ms: f64,
    wal_bytes: f64,
}

/// The statements of the last profiled run of one kind of request, and its transfers.
#[derive(Default)]
struct Profile {
    statements: Vec<Statement>,
    transfers: f64,
}

/// Whether the server collects `pg_stat_statements`.
async fn statements_loaded(admin: &PgPool) -> anyhow::Result<bool> {
    let loaded: bool =
        sqlx::query_scalar("SELECT current_setting('shared_preload_libraries') LIKE '%pg_stat_statements%'")
            .fetch_one(admin)
            .await?;
    Ok(loaded)
}

/// The statements of database `pool` since the last reset, most time first.
async fn statements(pool: &PgPool) -> anyhow::Result<Vec<Statement>> {
    let rows: Vec<(String, i64, f64, f64)> = sqlx::query_as(
        "SELECT regexp_replace(left(query, 110), '\\s+', ' ', 'g'), calls, total_exec_time, wal_bytes::float8
         FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
         ORDER BY total_exec_time DESC LIMIT 12",
    )
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(query, calls, exec_ms, wal_bytes)| Statement { query, calls: calls as f64, exec_ms, wal_bytes })
        .collect())
}

/// One run of `keyed` transfers or not on a fresh service and database, into `runs`; with a `profile`, its
/// statements too.
async fn run(
    runs: &mut BuildRuns,
    keyed: bool,
    admin: &PgPool,
    seconds: u64,
    profile: Option<&mut Profile>,
) -> anyhow::Result<()> {
    let ledger = start_ledger().await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, 100_000).await?);
    if profile.is_some() {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await?;
    }
    let done = measured_run(runs, &ledger, &pool, admin, keyed, (accounts, seconds)).await?;
    if let Some(profile) = profile {
        *profile = Profile { statements: statements(&pool).await?, transfers: done.ops.max(1) as f64 };
    }
    pool.close().await;
    ledger.stop().await
}

/// The section.
pub async fn key_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_KEY_ROUNDS", 3).max(1);
    let admin = PgPoolOptions::new().max_connections(1).connect(&system_tests::server_url()).await?;
    let profiled = statements_loaded(&admin).await?;
    // Unkeyed last: the table gives each kind against the last.
    let keyed = [true, false];
    let mut runs = [BuildRuns::new("with `Idempotency-Key`"), BuildRuns::new("without keys")];
    let mut profiles: [Profile; 2] = Default::default();
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for n in order {
            eprintln!("bench: keys, {}, round {}", runs[n].label, round + 1);
            let profile = (profiled && round + 1 == rounds).then_some(&mut profiles[n]);
            run(&mut runs[n], keyed[n], &admin, seconds, profile).await?;
        }
    }
    admin.close().await;
    writeln!(report, "## Keys: where a keyed transfer's time goes\n")?;
    writeln!(
        report,
        "HTTP transfers, 64 clients, uniform pairs of 100 000 accounts, {seconds} s per run, {rounds} runs each, \
         alternated, each on a fresh service and database after a `CHECKPOINT`.\n"
    )?;
    rate_rows(report, "requests", &runs)?;
    if !profiled {
        writeln!(report, "\n(The server does not load `pg_stat_statements`: no per-statement figures.)\n")?;
        return Ok(());
    }
    for (runs, profile) in runs.iter().zip(&profiles) {
        writeln!(
            report,
            "\nStatements of the last run {} ({:.0} transfers), per transfer:\n",
            runs.label, profile.transfers
        )?;
        writeln!(report, "| statement | calls | exec µs | WAL bytes |")?;
        writeln!(report, "|---|---:|---:|---:|")?;
        for s in &profile.statements {
            let per = |value: f64| value / profile.transfers;
            let query = s.query.replace('|', "\\|");
            writeln!(
                report,
                "| `{query}` | {:.3} | {:.1} | {:.0} |",
                per(s.calls),
                per(s.exec_ms) * 1000.0,
                per(s.wal_bytes)
            )?;
        }
    }
    writeln!(report)?;
    Ok(())
}
