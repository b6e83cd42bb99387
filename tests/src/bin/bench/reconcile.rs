//! Reconciliation at bank scale: open advances with 6 paid payments each, seeded straight into both databases,
//! checked by the worker's own code (the ranges in parallel, as ReconcileWorkflow runs them), next to a raw SQL
//! join of the same keys.

use std::fmt::Write as _;
use std::time::{Duration, Instant};

use advances_activities::reconcile::PAGE_ADVANCES;
use advances_activities::{Activities, ActivityMetrics};
use advances_model::{IdRange, RangeProgress, ReconcileReport};
use advances_store::Store;
use advances_workflows::reconcile_workflow::RECONCILE_RANGES;
use sqlx::PgPool;
use system_tests::seed::{seed_open_advances, WORKER};
use system_tests::{TestDatabase, TestLedger};
use uuid::Uuid;

const ACCOUNTS: usize = 1000;

/// The worker's reconciliation of every open advance: the ranges in parallel, as ReconcileWorkflow runs them.
async fn reconcile(activities: &Activities) -> anyhow::Result<(ReconcileReport, Duration)> {
    let started = Instant::now();
    let ranges = IdRange::split(RECONCILE_RANGES).into_iter().map(|range| {
        let progress = RangeProgress { next: Some(range.first), ..Default::default() };
        activities.check_range(range, progress, None)
    });
    let mut report = ReconcileReport::default();
    for part in futures::future::join_all(ranges).await {
        report.merge(part?);
    }
    Ok((report, started.elapsed()))
}

/// The anchor: the same keys, read page by page from the advances database and joined with the ledger's
/// transactions in one SQL statement per page (no HTTP, no JSON, no checks), the ranges in parallel too.
async fn raw_join(advances: &PgPool, ledger: &PgPool) -> anyhow::Result<(u64, Duration)> {
    let started = Instant::now();
    let ranges = IdRange::split(RECONCILE_RANGES).into_iter().map(|range| async move {
        let (mut next, mut found) = (Some(range.first), 0u64);
        while let Some(first) = next {
            let page: Vec<(Uuid, Vec<String>)> = sqlx::query_as(
                "SELECT a.id, array_agg('payment-' || p.id) || ('advance-' || a.id || '-grant')
                 FROM (SELECT id FROM advances WHERE status IN ('granting', 'active') AND id >= $1 AND id <= $2
                       ORDER BY id LIMIT $3) a
                 JOIN payments p ON p.advance_id = a.id AND p.status IN ('paid', 'failed')
                 GROUP BY a.id ORDER BY a.id",
            )
            .bind(first)
            .bind(range.last)
            .bind(PAGE_ADVANCES)
            .fetch_all(advances)
            .await?;
            next = page.last().and_then(|(id, _)| id.as_u128().checked_add(1)).map(Uuid::from_u128);
            let keys: Vec<String> = page.into_iter().flat_map(|(_, keys)| keys).collect();
            let rows: Vec<(Uuid, String, rust_decimal::Decimal)> = sqlx::query_as(
                "SELECT t.id, t.idempotency_key, t.amount FROM unnest($1::text[]) AS k (key)
                 JOIN transactions t ON t.recorded_by = $2 AND t.idempotency_key = k.key",
            )
            .bind(&keys)
            .bind(WORKER)
            .fetch_all(ledger)
            .await?;
            found += rows.len() as u64;
        }
        anyhow::Ok(found)
    });
    let mut found = 0;
    for part in futures::future::join_all(ranges).await {
        found += part?;
    }
    Ok((found, started.elapsed()))
}

pub async fn reconcile_benchmarks(report: &mut String) -> anyhow::Result<()> {
    let sizes: Vec<u64> = std::env::var("BENCH_RECONCILE_SIZES")
        .unwrap_or_else(|_| "10000,100000,1000000".to_owned())
        .split(',')
        .map(|size| size.trim().parse())
        .collect::<Result<_, _>>()?;
    let ledger = TestLedger::start().await?;
    let (_, client) = ledger.client_with(WORKER, &["accounts:read"]).await?;
    let database = TestDatabase::create().await?;
    let pool = advances_store::connect(&database.url, 16).await?;
    let accounts: Vec<Uuid> = (0..ACCOUNTS).map(|_| Uuid::now_v7()).collect();
    sqlx::query("INSERT INTO accounts (id, balance) SELECT unnest($1::uuid[]), 0")
        .bind(&accounts[..])
        .execute(&ledger.pool)
        .await?;
    let activities = Activities { ledger: client, store: Store::new(pool.clone()), metrics: ActivityMetrics::new()? };

    let mut rows = Vec::new();
    let mut seeded = 0;
    for (batch, &size) in sizes.iter().enumerate() {
        eprintln!("bench: seeding {} open advances", size - seeded);
        let at = Instant::now();
        seed_open_advances(&pool, &ledger.pool, &accounts, size - seeded, batch as u32).await?;
        eprintln!("bench: seeded in {:.0} s; reconciling {size}", at.elapsed().as_secs_f64());
        seeded = size;
        // Every check forgotten: a pass over advances none of whose keys was checked yet (what each key costs
        // once, soon after it settles), comparable with the raw join of every key.
        sqlx::query("UPDATE payments SET ledger_checked_at = NULL WHERE ledger_checked_at IS NOT NULL")
            .execute(&pool)
            .await?;
        sqlx::query("UPDATE advances SET grant_checked_at = NULL WHERE grant_checked_at IS NOT NULL")
            .execute(&pool)
            .await?;
        let (checked, elapsed) = reconcile(&activities).await?;
        anyhow::ensure!(checked.advances_checked == size, "checked {} of {size}", checked.advances_checked);
        anyhow::ensure!(checked.mismatch_count == 0, "the seeded advances reconcile: {checked:?}");
        let keys = checked.advances_checked + checked.payments_checked;
        eprintln!("bench: {keys} keys in {:.1} s; the raw join", elapsed.as_secs_f64());
        let (found, raw_elapsed) = raw_join(&pool, &ledger.pool).await?;
        anyhow::ensure!(found == keys, "the raw join found {found} of {keys} keys");
        // The steady state: the same advances again, every key remembered as checked, so none is looked up.
        let (again, again_elapsed) = reconcile(&activities).await?;
        anyhow::ensure!(
            again.advances_checked == size && again.payments_checked == 0 && again.mismatch_count == 0,
            "a second pass looks nothing up: {again:?}"
        );
        rows.push((size, keys, elapsed, raw_elapsed, again_elapsed));
    }
    let alerts = activities.store.alerts(1).await?;
    anyhow::ensure!(alerts.is_empty(), "no alert was raised: {alerts:?}");
    pool.close().await;
    database.drop_database().await?;
    ledger.stop().await?;

    writeln!(report, "## Reconciliation at scale\n")?;
    writeln!(
        report,
        "Open advances of 120 in 12 payments, the first 6 paid, seeded straight into the advances database and \
         their 7 ledger rows each (the grant and 6 debits) into the ledger's, under the worker's client. The \
         worker's own reconciliation code checks them as ReconcileWorkflow's activities do: {RECONCILE_RANGES} id \
         ranges in parallel, pages of {PAGE_ADVANCES} advances (two queries), `POST /api/v1/transactions/by_keys` \
         with up to 1 000 keys, {} lookups in flight per range while the next page is read; every key is checked \
         (amount, account, transaction id, exactly one success). The Temporal half of reconciliation (one visibility \
         listing of the running workflows) is not in these figures: the seeded advances have no workflows. \
         The anchor reads the same keys page by page and joins them with the ledger's `transactions` in one SQL \
         statement per page, in the same {RECONCILE_RANGES} ranges: no HTTP, no JSON, no checks. Each size is \
         reconciled twice: first with every check forgotten (each key is looked up), then again with every key \
         remembered as checked (the steady state: the formula of each advance, no lookup).\n",
        advances_activities::reconcile::LOOKUPS_IN_FLIGHT
    )?;
    writeln!(
        report,
        "| open advances | keys | reconciliation | keys per second | raw SQL join | join keys per second | vs join | again, all checked |"
    )?;
    writeln!(report, "|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for (size, keys, elapsed, raw, again) in &rows {
        let (rate, raw_rate) = (*keys as f64 / elapsed.as_secs_f64(), *keys as f64 / raw.as_secs_f64());
        writeln!(
            report,
            "| {size} | {keys} | {:.1} s | {rate:.0} | {:.1} s | {raw_rate:.0} | {:.2} | {:.1} s |",
            elapsed.as_secs_f64(),
            raw.as_secs_f64(),
            rate / raw_rate,
            again.as_secs_f64()
        )?;
    }
    writeln!(report)?;
    Ok(())
}
