//! One client with `Idempotency-Key`, on fresh services of the same size in the same run: batched (the
//! default) and `BATCH_COMMITTERS=0`, of this build and, when `BENCH_BASELINE_LEDGER` names one, of an older
//! build (`scripts/bench-baseline.sh REV` builds one), so that a change of the money path shows its cost to a
//! lone client next to what it replaced. Runs alternate, `BENCH_LONE_ROUNDS` (default 3) of each.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;

use sqlx::postgres::PgPoolOptions;
use system_tests::TestLedger;

use crate::{create_accounts, env_or, run_transfers, start_ledger_built, start_ledger_with, Via};

/// One service the lone client runs against.
struct Subject {
    label: String,
    ledger: TestLedger,
    accounts: Arc<Vec<uuid::Uuid>>,
    p50_ms: Vec<f64>,
}

async fn subject(label: &str, binary: Option<&PathBuf>, settings: &[(&str, &str)]) -> anyhow::Result<Subject> {
    let ledger = match binary {
        None => start_ledger_with(settings).await?,
        Some(binary) => start_ledger_built(binary.clone(), settings).await?,
    };
    let pool = PgPoolOptions::new().max_connections(2).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, 10_000).await?);
    pool.close().await;
    Ok(Subject { label: label.to_owned(), ledger, accounts, p50_ms: Vec::new() })
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN)
}

/// The section: p50 of every run, the medians, and each against this build's batched median.
pub async fn lone_client_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let rounds = env_or("BENCH_LONE_ROUNDS", 3).max(1);
    let baseline = std::env::var("BENCH_BASELINE_LEDGER").ok().filter(|path| !path.is_empty()).map(PathBuf::from);
    let unbatched = [("BATCH_COMMITTERS", "0")];
    let mut subjects = vec![
        subject("this build, batched", None, &[]).await?,
        subject("this build, `BATCH_COMMITTERS=0`", None, &unbatched).await?,
    ];
    if let Some(binary) = &baseline {
        subjects.push(subject("baseline build, batched", Some(binary), &[]).await?);
        subjects.push(subject("baseline build, `BATCH_COMMITTERS=0`", Some(binary), &unbatched).await?);
    }
    for round in 0..rounds {
        for subject in &mut subjects {
            eprintln!("bench: 1 keyed client, {} (round {})", subject.label, round + 1);
            let ledger = &subject.ledger;
            let pool = PgPoolOptions::new().max_connections(1).connect(&ledger.database.url).await?;
            let target = (vec![ledger.base_url.clone()], ledger.client.clone());
            let accounts = Arc::clone(&subject.accounts);
            let run = run_transfers(Via::Http { keyed: true }, 1, seconds, accounts, false, pool, target).await?;
            subject.p50_ms.push(run.percentile_ms(0.5));
        }
    }
    writeln!(report, "## One client with `Idempotency-Key`\n")?;
    writeln!(
        report,
        "Each on a fresh service with 10 000 accounts, {seconds} s per run, {rounds} runs each, alternated. \
         Baseline build: {}.\n",
        baseline.as_ref().map_or("none (set BENCH_BASELINE_LEDGER)".to_owned(), |path| format!("`{}`", path.display()))
    )?;
    writeln!(report, "| service | p50 ms per run | median p50 ms | vs this build, batched |")?;
    writeln!(report, "|---|---|---:|---:|")?;
    let reference = median(&subjects[0].p50_ms);
    for subject in &subjects {
        let runs: Vec<String> = subject.p50_ms.iter().map(|p50| format!("{p50:.2}")).collect();
        let median = median(&subject.p50_ms);
        writeln!(report, "| {} | {} | {median:.2} | {:.2} |", subject.label, runs.join(" / "), median / reference)?;
    }
    writeln!(report)?;
    for subject in subjects {
        subject.ledger.stop().await?;
    }
    Ok(())
}
