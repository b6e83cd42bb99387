//! Open advances seeded straight into both databases, for reconciliation's benchmark and tests: what
//! reconciliation reads, without a workflow behind each.

use futures::TryStreamExt;
use sqlx::PgPool;
use uuid::Uuid;

/// The ledger client the worker uses: its name is what the seeded ledger rows say recorded them.
pub const WORKER: &str = "advances-worker";

/// Adds `count` active advances (random ids, spread over the whole id space) of 120 in 12 payments of 10, the
/// first 6 paid, on `accounts` in turn, and their ledger rows (the grant and the 6 debits, under the worker's
/// keys). `batch` (below 60) marks the rows of this call.
pub async fn seed_open_advances(
    advances: &PgPool,
    ledger: &PgPool,
    accounts: &[Uuid],
    count: u64,
    batch: u32,
) -> anyhow::Result<()> {
    let marker = format!("2026-01-01 00:00:{:02}+00", batch % 60);
    sqlx::query(&format!(
        "WITH new AS (
            INSERT INTO advances (id, account_id, amount, status, revision, state, created_at)
            SELECT gen_random_uuid(), ($1::uuid[])[1 + i % cardinality($1::uuid[])], 120, 'active', 13, '{{}}'::jsonb,
                   '{marker}'::timestamptz
            FROM generate_series(0, $2 - 1) AS i
            RETURNING id)
         INSERT INTO payments (id, advance_id, number, amount, due_at, status, transaction_id)
         SELECT gen_random_uuid(), new.id, n, 10, now(), CASE WHEN n <= 6 THEN 'paid' ELSE 'scheduled' END,
                CASE WHEN n <= 6 THEN gen_random_uuid() END
         FROM new CROSS JOIN generate_series(1, 12) AS n"
    ))
    .bind(accounts)
    .bind(count as i64)
    .execute(advances)
    .await?;
    let rows = format!(
        "COPY (
            SELECT gen_random_uuid(), now(), 'bank', a.account_id, a.amount, 'credit', 'success',
                   'advance-' || a.id || '-grant', '{WORKER}'
            FROM advances a WHERE a.created_at = '{marker}'::timestamptz
            UNION ALL
            SELECT p.transaction_id, now(), 'bank', a.account_id, p.amount, 'debit', 'success',
                   'payment-' || p.id, '{WORKER}'
            FROM advances a JOIN payments p ON p.advance_id = a.id
            WHERE a.created_at = '{marker}'::timestamptz AND p.status = 'paid'
         ) TO STDOUT"
    );
    let mut source = advances.acquire().await?;
    // Rows are dated as the service dates them (the report seal relies on it): staged, then inserted by a
    // transaction that takes its id first and dates them by the clock.
    let mut target = ledger.begin().await?;
    sqlx::query("SELECT pg_current_xact_id()").execute(&mut *target).await?;
    sqlx::query("CREATE TEMPORARY TABLE seeded (LIKE transactions INCLUDING DEFAULTS) ON COMMIT DROP")
        .execute(&mut *target)
        .await?;
    let mut copy_in = target
        .copy_in_raw(
            "COPY seeded (id, created_at, kind, dst_account_id, amount, direction, status, idempotency_key,
                          recorded_by) FROM STDIN",
        )
        .await?;
    let mut copy_out = source.copy_out_raw(&rows).await?;
    while let Some(chunk) = copy_out.try_next().await? {
        copy_in.send(chunk).await?;
    }
    copy_in.finish().await?;
    sqlx::query(
        "INSERT INTO transactions (id, created_at, kind, dst_account_id, amount, direction, status, idempotency_key,
                                   recorded_by, dst_balance_after)
         SELECT id, clock_timestamp(), kind, dst_account_id, amount, direction, status, idempotency_key, recorded_by, 0
         FROM seeded",
    )
    .execute(&mut *target)
    .await?;
    target.commit().await?;
    sqlx::query("ANALYZE").execute(advances).await?;
    sqlx::query("ANALYZE transactions").execute(ledger).await?;
    Ok(())
}
