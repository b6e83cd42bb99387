//! Advances: starts per second through the API next to raw `start_workflow` on the same server, and payments
//! collected per second by the real worker next to the same workflow whose activities do nothing.

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::{Duration, Instant};

use advances_model::{AdvanceStatus, AdvanceTerms};
use advances_workflows::temporal::{connect, TemporalSettings};
use advances_workflows::{workflow_id, AdvanceInput, AdvanceWorkflow, ReconcileWorkflow};
use rust_decimal::Decimal;
use serde_json::json;
use system_tests::Stack;
use temporalio_client::{Client, WorkflowIdConflictPolicy, WorkflowStartOptions, WorkflowUpdateWithStartOptions};
use temporalio_sdk::{Runtime, Worker, WorkerOptions};
use uuid::Uuid;

use super::{current_rss_kib, env_or, peak_rss_kib, Run};

// The macro also makes marker constants for calling these activities from workflow code; only the worker
// uses them here.
#[allow(dead_code)]
mod noop {
    use advances_model::{Advance, Mirror};
    use advances_model::{Alert, ReconcileReport};
    use advances_workflows::activities::{MoneyMove, MoneyOutcome};
    use temporalio_macros::activities;
    use temporalio_sdk::activities::{ActivityContext, ActivityError};
    use uuid::Uuid;

    /// The advance's activities, doing nothing: the workflow's own cost, with Temporal, and nothing else.
    pub struct NoopActivities;

    #[activities]
    impl NoopActivities {
        #[activity(definition = advances_workflows::activities::definitions::Grant)]
        async fn grant(_ctx: ActivityContext, _request: MoneyMove) -> Result<MoneyOutcome, ActivityError> {
            Ok(MoneyOutcome::Done { transaction_id: Uuid::now_v7() })
        }

        #[activity(definition = advances_workflows::activities::definitions::Collect)]
        async fn collect(_ctx: ActivityContext, _request: MoneyMove) -> Result<MoneyOutcome, ActivityError> {
            Ok(MoneyOutcome::Done { transaction_id: Uuid::now_v7() })
        }

        #[activity(definition = advances_workflows::activities::definitions::RecordAdvance)]
        async fn record_advance(_ctx: ActivityContext, _advance: Advance) -> Result<(), ActivityError> {
            Ok(())
        }

        #[activity(definition = advances_workflows::activities::definitions::MirrorAdvance)]
        async fn mirror_advance(_ctx: ActivityContext, _mirror: Mirror) -> Result<(), ActivityError> {
            Ok(())
        }

        #[activity(definition = advances_workflows::activities::definitions::RaiseAlert)]
        async fn raise_alert(_ctx: ActivityContext, _alert: Alert) -> Result<(), ActivityError> {
            Ok(())
        }

        #[activity(definition = advances_workflows::activities::definitions::Reconcile)]
        async fn reconcile(_ctx: ActivityContext) -> Result<ReconcileReport, ActivityError> {
            Ok(ReconcileReport::default())
        }
    }
}
use noop::NoopActivities;

fn terms(account_id: Uuid, interval_ms: u64) -> AdvanceTerms {
    AdvanceTerms {
        advance_id: Uuid::new_v4(),
        account_id,
        amount: Decimal::from(120),
        payments: 12,
        interval_ms,
        max_failed_extra_payments: 12,
        product: None,
        first_due_at: None,
    }
}

/// Starts the workflow and waits for its grant directly with the SDK (update-with-start, as the API does).
async fn start_and_await_grant(client: &Client, task_queue: &str, terms: &AdvanceTerms) -> anyhow::Result<()> {
    let options = WorkflowUpdateWithStartOptions::new(
        task_queue.to_owned(),
        workflow_id(terms.advance_id),
        WorkflowIdConflictPolicy::UseExisting,
    )
    .build();
    let input = AdvanceInput::from(terms.clone());
    let granted = client.execute_update_with_start_workflow(
        AdvanceWorkflow::run,
        input,
        AdvanceWorkflow::await_grant,
        (),
        options,
    );
    let advance = granted.await?.ok_or_else(|| anyhow::anyhow!("no grant"))?;
    anyhow::ensure!(advance.status == AdvanceStatus::Active, "{}", advance.describe());
    Ok(())
}

async fn start_raw(client: &Client, task_queue: &str, terms: &AdvanceTerms) -> anyhow::Result<()> {
    let options = WorkflowStartOptions::new(task_queue.to_owned(), workflow_id(terms.advance_id)).build();
    client.start_workflow(AdvanceWorkflow::run, AdvanceInput::from(terms.clone()), options).await?;
    Ok(())
}

/// `clients` loops doing `op` for `seconds`; latencies in µs.
async fn closed_loop<F, Fut>(label: &str, clients: usize, seconds: u64, op: F) -> anyhow::Result<Run>
where
    F: Fn() -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let op = op.clone();
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                while Instant::now() < deadline {
                    let at = Instant::now();
                    op().await?;
                    latencies.push(at.elapsed().as_micros() as u64);
                }
                Ok::<_, anyhow::Error>(latencies)
            })
        })
        .collect();
    let mut latencies_us = Vec::new();
    for task in tasks {
        latencies_us.append(&mut task.await??);
    }
    Ok(Run { label: label.to_owned(), clients, ops: latencies_us.len(), elapsed: started.elapsed(), latencies_us })
}

/// Accounts straight in the ledger's table (the benchmark is about advances, not account creation).
async fn bulk_accounts(stack: &Stack, count: usize) -> anyhow::Result<Vec<Uuid>> {
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    sqlx::query("INSERT INTO accounts (id, balance) SELECT unnest($1::uuid[]), 0")
        .bind(&ids[..])
        .execute(&stack.ledger.pool)
        .await?;
    Ok(ids)
}

/// Starts `count` advances on a 1-second interval with raw starts and waits until all have completed, as
/// seen by `completed`; returns payments per second.
async fn collect_all<F, Fut>(
    client: &Client,
    task_queue: &str,
    accounts: &[Uuid],
    completed: F,
) -> anyhow::Result<(f64, Duration)>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<usize>>,
{
    let started = Instant::now();
    for account in accounts {
        start_raw(client, task_queue, &terms(*account, 1000)).await?;
    }
    system_tests::poll_until(Duration::from_secs(1800), || async {
        Ok((completed().await? >= accounts.len()).then_some(()))
    })
    .await?;
    let elapsed = started.elapsed();
    Ok(((accounts.len() * 12) as f64 / elapsed.as_secs_f64(), elapsed))
}

pub async fn advance_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let seconds = env_or("BENCH_SECONDS", 10);
    let count = env_or("BENCH_ADVANCES", 500) as usize;
    let clients = 16;
    // Every advance started below stays in the worker's cache, so its memory can be measured per workflow.
    let stack = Stack::start(&[("ADVANCE_PAYMENT_INTERVAL", "1h"), ("MAX_CACHED_WORKFLOWS", "100000")]).await?;
    let client = connect(&TemporalSettings::at(&stack.temporal.address)?, "bench", Duration::from_secs(30)).await?;

    let worker_pid = stack.pids().await[2];
    let idle_kib = current_rss_kib(worker_pid)?;

    // 1. Starts per second.
    eprintln!("bench: advances started through the API");
    let account = stack.account("0").await?;
    let api = {
        let (http, url) = (stack.client.clone(), format!("{}/api/v1/advances", stack.api_url));
        closed_loop("POST /api/v1/advances (answers after the grant)", clients, seconds, move || {
            let (http, url) = (http.clone(), url.clone());
            async move {
                let reply = http.post(url).json(&json!({"account_id": account, "amount": 120})).send().await?;
                anyhow::ensure!(reply.status() == 201, "{}", reply.text().await.unwrap_or_default());
                Ok(())
            }
        })
        .await?
    };
    eprintln!("bench: SDK start and await the grant");
    let sdk = {
        let client = client.clone();
        closed_loop("SDK update-with-start, awaiting the grant", clients, seconds, move || {
            let client = client.clone();
            async move {
                start_and_await_grant(&client, advances_workflows::TASK_QUEUE, &terms(account, 3_600_000)).await
            }
        })
        .await?
    };
    eprintln!("bench: raw start_workflow");
    let raw = {
        let client = client.clone();
        closed_loop("raw SDK start_workflow", clients, seconds, move || {
            let client = client.clone();
            async move { start_raw(&client, advances_workflows::TASK_QUEUE, &terms(account, 3_600_000)).await }
        })
        .await?
    };

    // The worker grants what was just started before the next measurement begins.
    let started_total = (api.ops + sdk.ops + raw.ops) as i64;
    let advances = stack.advances.clone();
    system_tests::poll_until(Duration::from_secs(600), || async {
        let (active,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM advances WHERE status = 'active'").fetch_one(&advances).await?;
        Ok((active >= started_total).then_some(()))
    })
    .await?;
    let cached_kib = current_rss_kib(worker_pid)?;
    let per_workflow_kib = cached_kib.saturating_sub(idle_kib) as f64 / started_total as f64;

    // 2. Payments per second, real worker: every advance on its own account, 1 s between payments.
    eprintln!("bench: {count} advances collected by the real worker");
    let accounts = bulk_accounts(&stack, count).await?;
    let (real_rate, real_elapsed) = collect_all(&client, advances_workflows::TASK_QUEUE, &accounts, || async {
        let (done,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM advances WHERE status = 'completed' AND account_id = ANY($1)")
                .bind(&accounts[..])
                .fetch_one(&advances)
                .await?;
        Ok(done as usize)
    })
    .await?;
    let [accounts_pid, api_pid, worker_pid] = stack.pids().await;
    let rss = [peak_rss_kib(accounts_pid)?, peak_rss_kib(api_pid)?, peak_rss_kib(worker_pid)?];

    // 3. The same shape with no-op activities, on a queue of its own polled by an in-process worker.
    eprintln!("bench: {count} advances with no-op activities");
    let queue = format!("bench-noop-{}", Uuid::new_v4().simple());
    let runtime = Runtime::from_current_tokio(Default::default())?;
    let options = WorkerOptions::new(queue.clone())
        .register_workflow::<AdvanceWorkflow>()?
        .register_workflow::<ReconcileWorkflow>()?
        .register_activities(NoopActivities)
        .build();
    let mut worker = Worker::new(&runtime, client.clone(), options)?;
    let stop = worker.shutdown_handle();
    let noop_accounts: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let closed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let measure = async {
        let result = collect_all(&client, &queue, &noop_accounts, || {
            let (client, closed) = (client.clone(), Arc::clone(&closed));
            let query = format!("TaskQueue = '{queue}' AND ExecutionStatus = 'Completed'");
            async move {
                let count = client.count_workflows(query, Default::default()).await?.count();
                closed.store(count, std::sync::atomic::Ordering::Relaxed);
                Ok(count)
            }
        })
        .await;
        stop();
        result
    };
    let (ran, noop) = tokio::join!(worker.run(), measure);
    ran?;
    let (noop_rate, noop_elapsed) = noop?;
    stack.stop().await?;

    writeln!(report, "## Advances\n")?;
    writeln!(
        report,
        "One Temporal dev server (`temporal server start-dev`, SQLite in memory) and the three release binaries. \
         {clients} clients, {seconds} s per row. `POST /api/v1/advances` checks the account, records the advance, \
         and starts the workflow together with the update `await_grant` (update-with-start), which answers when the \
         grant (a ledger credit through the worker) is made. The SDK row is the same update-with-start called \
         directly, the goal's baseline; the raw start only asks Temporal to start the workflow and waits for \
         nothing.\n"
    )?;
    writeln!(report, "| path | clients | started | per second | p50 ms | p99 ms | vs SDK |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|")?;
    for run in [&raw, &sdk, &api] {
        writeln!(report, "{}", run.row(sdk.tps()))?;
    }
    writeln!(
        report,
        "\nAPI p50 / SDK p50: {:.2}; API rate / SDK rate: {:.2}.\n",
        api.percentile_ms(0.5) / sdk.percentile_ms(0.5),
        api.tps() / sdk.tps()
    )?;
    writeln!(
        report,
        "Memory per cached workflow: the worker's resident memory (VmRSS) went from {:.1} MiB idle to {:.1} MiB with \
         the {started_total} advances above granted and waiting for their first payment, all in its workflow cache \
         (`MAX_CACHED_WORKFLOWS=100000`): {per_workflow_kib:.1} KiB per cached advance of 12 payments. The default \
         cache of 1 000 thus holds about {:.0} MiB; an advance evicted from it is replayed from its history at its \
         next task (a week later in production), so a worker with many more open advances than its cache stays \
         within it.\n",
        idle_kib as f64 / 1024.0,
        cached_kib as f64 / 1024.0,
        per_workflow_kib * 1000.0 / 1024.0
    )?;
    writeln!(
        report,
        "\nPayments collected: {count} advances of 12 payments, 1 s apart, all started at once (raw starts), each on \
         its own account; the time runs from the first start until the last advance has completed. Per payment the \
         workflow runs three activities (mirror the change to processing, the ledger debit, mirror the change to paid).\n"
    )?;
    writeln!(report, "| worker | payments | time | payments per second | vs no-op activities |")?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    writeln!(
        report,
        "| no-op activities (the workflow and Temporal alone) | {} | {:.1} s | {noop_rate:.0} | 1.00 |",
        count * 12,
        noop_elapsed.as_secs_f64()
    )?;
    writeln!(
        report,
        "| advances-worker (ledger over HTTP, mirror in PostgreSQL) | {} | {:.1} s | {real_rate:.0} | {:.2} |",
        count * 12,
        real_elapsed.as_secs_f64(),
        real_rate / noop_rate
    )?;
    writeln!(
        report,
        "\nA 1-second interval bounds both from above at {count} × 12 payments over at least 12 s = {:.0} per second.\n",
        (count * 12) as f64 / 12.0
    )?;
    writeln!(
        report,
        "Peak resident memory (VmHWM) after these runs: accounts-service {:.1} MiB, advances-api {:.1} MiB, \
         advances-worker {:.1} MiB.\n",
        rss[0] as f64 / 1024.0,
        rss[1] as f64 / 1024.0,
        rss[2] as f64 / 1024.0
    )?;
    Ok(())
}
