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

use crate::{create_accounts, env_or, median, run_transfers, start_ledger, Via};

/// One statement's share of a run.
struct Statement {
    query: String,
    calls: f64,
    exec_ms: f64,
    wal_bytes: f64,
}

/// One kind's runs.
struct Kind {
    label: &'static str,
    keyed: bool,
    tps: Vec<f64>,
    wal_per_transfer: Vec<f64>,
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

async fn run(kind: &mut Kind, admin: &PgPool, seconds: u64, profile: bool) -> anyhow::Result<()> {
    let ledger = start_ledger().await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, 100_000).await?);
    if profile {
        sqlx::query("CREATE EXTENSION IF NOT EXISTS pg_stat_statements").execute(&pool).await?;
    }
    sqlx::query("CHECKPOINT").execute(admin).await?;
    if profile {
        sqlx::query("SELECT pg_stat_statements_reset()").execute(&pool).await?;
    }
    let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text").fetch_one(admin).await?;
    let target = (vec![ledger.base_url.clone()], ledger.client.clone());
    let done =
        run_transfers(Via::Http { keyed: kind.keyed }, 64, seconds, accounts, false, pool.clone(), target).await?;
    let (wal,): (f64,) = sqlx::query_as("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::float8")
        .bind(&lsn)
        .fetch_one(admin)
        .await?;
    kind.tps.push(done.tps());
    kind.wal_per_transfer.push(wal / done.ops.max(1) as f64);
    if profile {
        kind.statements = statements(&pool).await?;
        kind.transfers = done.ops.max(1) as f64;
    }
    pool.close().await;
    ledger.stop().await
}

/// The section.
pub async fn key_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_KEY_ROUNDS", 3).max(1);
    let admin = PgPoolOptions::new().max_connections(1).connect(&system_tests::server_url()).await?;
    let profile = statements_loaded(&admin).await?;
    let new_kind = |label, keyed| Kind {
        label,
        keyed,
        tps: Vec::new(),
        wal_per_transfer: Vec::new(),
        statements: Vec::new(),
        transfers: 0.0,
    };
    let mut kinds = [new_kind("without keys", false), new_kind("with `Idempotency-Key`", true)];
    for round in 0..rounds {
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for n in order {
            eprintln!("bench: keys, {}, round {}", kinds[n].label, round + 1);
            run(&mut kinds[n], &admin, seconds, profile && round + 1 == rounds).await?;
        }
    }
    admin.close().await;
    writeln!(report, "## Keys: where a keyed transfer's time goes\n")?;
    writeln!(
        report,
        "HTTP transfers, 64 clients, uniform pairs of 100 000 accounts, {seconds} s per run, {rounds} runs each, \
         alternated, each on a fresh service and database after a `CHECKPOINT`.\n"
    )?;
    writeln!(report, "| requests | TPS per run | median TPS | vs without keys | median WAL bytes per transfer |")?;
    writeln!(report, "|---|---|---:|---:|---:|")?;
    let unkeyed = median(kinds[0].tps.clone());
    for kind in &kinds {
        let each: Vec<String> = kind.tps.iter().map(|tps| format!("{tps:.0}")).collect();
        let tps = median(kind.tps.clone());
        let wal = median(kind.wal_per_transfer.clone());
        writeln!(report, "| {} | {} | {tps:.0} | {:.2} | {wal:.0} |", kind.label, each.join(" / "), tps / unkeyed)?;
    }
    if !profile {
        writeln!(report, "\n(The server does not load `pg_stat_statements`: no per-statement figures.)\n")?;
        return Ok(());
    }
    for kind in &kinds {
        writeln!(
            report,
            "\nStatements of the last run {} ({:.0} transfers), per transfer:\n",
            kind.label, kind.transfers
        )?;
        writeln!(report, "| statement | calls | exec µs | WAL bytes |")?;
        writeln!(report, "|---|---:|---:|---:|")?;
        for s in &kind.statements {
            let per = |value: f64| value / kind.transfers;
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
