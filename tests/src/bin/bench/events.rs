//! Events out: what writing an event with every change costs transfers (this build against
//! `BENCH_BASELINE_LEDGER`, a build from before events, alternated in the same run), how far a consumer of the
//! feed trails the writes under a 64-client load, and how many webhook deliveries per second reach endpoints.
//!
//! Options: `BENCH_EVENT_ROUNDS` (throughput rounds, default 5), `BENCH_SECONDS`, `BENCH_WEBHOOK_ENDPOINTS`
//! (default 4).

use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::Router;
use sqlx::postgres::PgPoolOptions;
use system_tests::feed::FeedReader;
use system_tests::free_port;

use crate::{
    alternate_builds, create_accounts, env_or, rate_rows, round_ratios, run_transfers, start_ledger_with, Via,
};

/// A receiver that answers every delivery 204 at once and counts them (no signature check: this measures the
/// sender).
#[derive(Clone, Default)]
struct Counter {
    received: Arc<AtomicU64>,
    last: Arc<Mutex<Option<Instant>>>,
}

async fn receive(State(counter): State<Counter>) -> StatusCode {
    counter.received.fetch_add(1, Ordering::Relaxed);
    if let Ok(mut last) = counter.last.lock() {
        *last = Some(Instant::now());
    }
    StatusCode::NO_CONTENT
}

async fn start_receiver(counter: Counter) -> anyhow::Result<String> {
    let port = free_port()?;
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await?;
    let app = Router::new().route("/hook/{n}", post(receive)).with_state(counter);
    tokio::spawn(async move { axum::serve(listener, app).await });
    Ok(format!("http://127.0.0.1:{port}/hook"))
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted.get(index).copied().unwrap_or(f64::NAN)
}

/// Transfers at 64 clients while a consumer long-polls the feed and `endpoints` webhook endpoints take every
/// transaction's event.
async fn lag_and_deliveries(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let endpoints = env_or("BENCH_WEBHOOK_ENDPOINTS", 4);
    let ledger = start_ledger_with(&[("WEBHOOK_ALLOW_INSECURE", "on"), ("WEBHOOK_INTERVAL", "50ms")]).await?;
    let pool = PgPoolOptions::new().max_connections(4).connect(&ledger.database.url).await?;
    let accounts = Arc::new(create_accounts(&pool, 100_000).await?);
    let counter = Counter::default();
    let url = start_receiver(counter.clone()).await?;
    for n in 0..endpoints {
        let hook = serde_json::json!({"url": format!("{url}/{n}"), "types": ["transaction.succeeded"]});
        let made = ledger.post("/api/v1/webhooks", &hook, None).await?;
        anyhow::ensure!(made.status == 201, "{}", made.text);
    }
    let stop = Arc::new(AtomicBool::new(false));
    let consumer = {
        let (client, base, stop) = (ledger.client.clone(), ledger.base_url.clone(), Arc::clone(&stop));
        tokio::spawn(async move {
            let mut reader = FeedReader::new(&client, &base);
            let mut lags_ms = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                for event in reader.page(1000, 1).await? {
                    let lag = chrono::Utc::now() - event.created_at;
                    lags_ms.push(lag.num_microseconds().unwrap_or(i64::MAX) as f64 / 1000.0);
                }
            }
            anyhow::Ok(lags_ms)
        })
    };
    eprintln!("bench: events, {seconds} s of transfers with a feed consumer and {endpoints} webhook endpoints");
    let started = Instant::now();
    let target = (vec![ledger.base_url.clone()], ledger.client.clone());
    let run = run_transfers(Via::Http { keyed: true }, 64, seconds, Arc::clone(&accounts), false, pool.clone(), target)
        .await?;
    let load_ended = started.elapsed();
    let written: i64 =
        sqlx::query_scalar("SELECT count(*) FROM events WHERE type = 'transaction.succeeded'").fetch_one(&pool).await?;
    let expected = written as u64 * endpoints;
    let deadline = Instant::now() + Duration::from_secs(600);
    while counter.received.load(Ordering::Relaxed) < expected && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    let mut lags = consumer.await??;
    lags.sort_by(f64::total_cmp);
    let received = counter.received.load(Ordering::Relaxed);
    let last = counter.last.lock().ok().and_then(|last| *last).map_or(Duration::ZERO, |at| at - started);
    writeln!(report, "### Feed lag and webhook deliveries under load\n")?;
    writeln!(
        report,
        "64 clients, HTTP transfers with `Idempotency-Key` for {seconds} s ({:.0} TPS), while one consumer long-polls \
         `GET /events` (`wait=1`, 1 000 a page) and {endpoints} webhook endpoints (a local receiver answering 204) \
         take every `transaction.succeeded`. Lag: from the event's `created_at` (set inside its transaction, \
         before the commit) to the consumer holding it.\n",
        run.tps()
    )?;
    writeln!(report, "| | |\n|---|---:|")?;
    writeln!(report, "| events read by the consumer | {} |", lags.len())?;
    writeln!(
        report,
        "| feed lag p50 / p99 / max | {:.0} / {:.0} / {:.0} ms |",
        percentile(&lags, 0.5),
        percentile(&lags, 0.99),
        lags.last().copied().unwrap_or(f64::NAN)
    )?;
    writeln!(report, "| deliveries expected / received | {expected} / {received} |")?;
    writeln!(
        report,
        "| deliveries per second (from the load's start to the last delivery, {:.1} s; the load ran {:.1} s) | {:.0} |",
        last.as_secs_f64(),
        load_ended.as_secs_f64(),
        received as f64 / last.as_secs_f64().max(f64::EPSILON)
    )?;
    writeln!(report)?;
    pool.close().await;
    ledger.stop().await
}

/// The section.
pub async fn event_benchmarks(report: &mut String) -> anyhow::Result<()> {
    writeln!(report, "## Events out\n")?;
    match std::env::var("BENCH_BASELINE_LEDGER").ok().filter(|path| !path.is_empty()) {
        Some(baseline) => {
            let baseline = PathBuf::from(baseline);
            let (seconds, rounds) = (env_or("BENCH_SECONDS", 10), env_or("BENCH_EVENT_ROUNDS", 5).max(1));
            let labels = ["with events (this build)", "without (baseline build)"];
            let subjects = alternate_builds(&baseline, labels, rounds, seconds).await?;
            writeln!(
                report,
                "HTTP transfers with `Idempotency-Key`, 64 clients, uniform pairs of 100 000 accounts, {seconds} s per \
                 run, {rounds} runs each, alternated, each build on a fresh database. Baseline: `{}`.\n",
                baseline.display()
            )?;
            rate_rows(report, "service", &subjects)?;
            round_ratios(report, &subjects)?;
        }
        None => writeln!(report, "(No baseline build: set `BASELINE=<rev>` for the throughput comparison.)\n")?,
    }
    lag_and_deliveries(report).await
}
