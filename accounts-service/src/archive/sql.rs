//! The archive's SQL: which day tables are due, what was verified, and detaching and dropping a day.

use chrono::NaiveDate;
use futures::TryStreamExt;
use sqlx::PgConnection;

use super::format::{select_list, ArchivedRow, Manifest};

/// The lock key only one archiving session holds.
const LOCK: &str = "ledger-archive";

/// Takes the session's archiving lock without waiting, and lifts its statement timeout (a day's export
/// streams for as long as it takes). Both go with the connection, which is closed afterwards.
pub async fn lock_session(conn: &mut PgConnection) -> anyhow::Result<bool> {
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    let (locked,): (bool,) =
        sqlx::query_as("SELECT pg_try_advisory_lock(hashtextextended($1, 0))").bind(LOCK).fetch_one(&mut *conn).await?;
    Ok(locked)
}

/// Every day table, attached, pending a detach, or detached, whose day ended `hot_days` ago, oldest first.
pub async fn due_days(conn: &mut PgConnection, hot_days: u32) -> anyhow::Result<Vec<(String, NaiveDate)>> {
    Ok(sqlx::query_as(
        "SELECT c.relname::text, to_date(substr(c.relname, 14), 'YYYYMMDD')
         FROM pg_class c
         WHERE c.relname ~ '^transactions_[0-9]{8}$' AND c.relkind = 'r'
           AND c.relnamespace = current_schema()::regnamespace
           AND to_date(substr(c.relname, 14), 'YYYYMMDD') < (now() AT TIME ZONE 'UTC')::date - $1
         ORDER BY 2",
    )
    .bind(hot_days as i32)
    .fetch_all(&mut *conn)
    .await?)
}

/// A day already verified: its object, row count and the file's SHA-256.
pub async fn verified(conn: &mut PgConnection, day: NaiveDate) -> anyhow::Result<Option<(String, i64, String)>> {
    Ok(sqlx::query_as("SELECT object, row_count, file_sha256 FROM archived_days WHERE day = $1")
        .bind(day)
        .fetch_optional(&mut *conn)
        .await?)
}

/// The rows a day table holds, and its size (table, indexes and TOAST).
pub async fn count(conn: &mut PgConnection, table: &str) -> anyhow::Result<(i64, i64)> {
    Ok(sqlx::query_as(&format!("SELECT count(*), pg_total_relation_size('{table}') FROM {table}"))
        .fetch_one(&mut *conn)
        .await?)
}

/// Streams a day table's rows in `(created_at, id)` order to `each`.
pub async fn each_row(
    conn: &mut PgConnection,
    table: &str,
    mut each: impl FnMut(ArchivedRow) -> anyhow::Result<()>,
) -> anyhow::Result<()> {
    let sql = format!("SELECT {} FROM {table} ORDER BY created_at, id", select_list());
    let mut rows = sqlx::query_as::<_, ArchivedRow>(&sql).fetch(&mut *conn);
    while let Some(row) = rows.try_next().await? {
        each(row)?;
    }
    Ok(())
}

/// Records the day as verified, with every account's place in it (`archived_account_days`, read from the day's
/// table, which holds exactly the rows verified), in one transaction.
pub async fn record_verified(conn: &mut PgConnection, table: &str, manifest: &Manifest) -> anyhow::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "INSERT INTO archived_days
             (day, object, row_count, rows_sha256, file_sha256, file_bytes, min_created_at, max_created_at, has_book)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, true)",
    )
    .bind(manifest.day)
    .bind(&manifest.object)
    .bind(manifest.rows)
    .bind(&manifest.rows_sha256)
    .bind(&manifest.file_sha256)
    .bind(manifest.file_bytes)
    .bind(manifest.min_created_at)
    .bind(manifest.max_created_at)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "INSERT INTO archived_account_days
             (account_id, day, row_count, first_created_at, last_created_at, last_id, closing_balance)
         SELECT account_id, $1, count(*), min(created_at), max(created_at),
                (array_agg(id ORDER BY created_at DESC, id DESC))[1],
                (array_agg(balance ORDER BY created_at DESC, id DESC))[1]
         FROM (SELECT src_account_id AS account_id, created_at, id, src_balance_after AS balance
               FROM {table} WHERE src_account_id IS NOT NULL
               UNION ALL
               SELECT dst_account_id, created_at, id, dst_balance_after FROM {table}) AS sides
         GROUP BY account_id"
    ))
    .bind(manifest.day)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Detaches the day's partition without stopping inserts; finishes a detach a crash left pending; does
/// nothing for a table already detached.
pub async fn detach(conn: &mut PgConnection, table: &str) -> anyhow::Result<()> {
    let state: Option<(bool,)> = sqlx::query_as(
        "SELECT i.inhdetachpending FROM pg_inherits i
         WHERE i.inhrelid = $1::regclass AND i.inhparent = 'transactions'::regclass",
    )
    .bind(table)
    .fetch_optional(&mut *conn)
    .await?;
    match state {
        None => {}
        Some((true,)) => {
            sqlx::query(&format!("ALTER TABLE transactions DETACH PARTITION {table} FINALIZE"))
                .execute(&mut *conn)
                .await?;
        }
        Some((false,)) => {
            sqlx::query(&format!("ALTER TABLE transactions DETACH PARTITION {table} CONCURRENTLY"))
                .execute(&mut *conn)
                .await?;
        }
    }
    Ok(())
}

/// Drops a detached day table and its report marks, and records the drop, in one transaction.
pub async fn drop_day(conn: &mut PgConnection, table: &str, day: NaiveDate) -> anyhow::Result<()> {
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query(
        "DELETE FROM report_marks
         WHERE created_at >= $1::date::timestamp AT TIME ZONE 'UTC'
           AND created_at < ($1::date + 1)::timestamp AT TIME ZONE 'UTC'",
    )
    .bind(day)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!("DROP TABLE {table}")).execute(&mut *tx).await?;
    sqlx::query("UPDATE archived_days SET dropped_at = clock_timestamp() WHERE day = $1")
        .bind(day)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(())
}
