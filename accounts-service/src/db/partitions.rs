//! The daily partitions of `transactions` (`migrations/accounts/0003_partitions.sql`): created ahead by the
//! service itself, so an insert never finds its day missing.

use std::time::Duration;

use sqlx::PgPool;

/// Days after today whose partitions exist at any time (the service checks every few minutes).
pub const DAYS_AHEAD: i32 = 7;

/// Attaching a partition briefly locks `accounts` against writes (the foreign keys are checked on the new,
/// empty table); past this, it gives up and tries again at the next check rather than queue transfers behind it.
const LOCK_WAIT: Duration = Duration::from_secs(2);

/// Creates the partitions of today and the next [`DAYS_AHEAD`] UTC days that do not exist yet; returns how many
/// it created.
pub async fn create_ahead(pool: &PgPool) -> sqlx::Result<u32> {
    let mut created = 0;
    for day in 0..=DAYS_AHEAD {
        let mut tx = pool.begin().await?;
        sqlx::query(&format!("SET LOCAL lock_timeout = '{}ms'", LOCK_WAIT.as_millis())).execute(&mut *tx).await?;
        let (new,): (bool,) =
            sqlx::query_as("SELECT ledger_create_partition(((now() AT TIME ZONE 'UTC')::date + $1)::date)")
                .bind(day)
                .fetch_one(&mut *tx)
                .await?;
        tx.commit().await?;
        created += u32::from(new);
    }
    Ok(created)
}
