//! The paged transaction report and its download, both reading one fixed snapshot.
//!
//! Page 1 (a request without a snapshot token) runs in a REPEATABLE READ transaction. One pass over the
//! window counts its rows and records every `stride`-th key as a checkpoint; the PostgreSQL snapshot of that
//! transaction is saved with them. Every later page seeks from its checkpoint through the report index and
//! keeps only rows whose inserting database transaction is visible in the saved snapshot
//! (`pg_visible_in_snapshot`), so rows that commit later, whatever their timestamp, never appear, and no page
//! costs an `OFFSET` from the top.

use chrono::{DateTime, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use ledger_contract::Transaction;

use super::ledger::{TransactionRow, TRANSACTION_COLUMNS as COLUMNS};
use super::{DbError, DbResult};

/// Checkpoints are never closer than this many rows, so a tiny page `limit` cannot make page 1 write one
/// checkpoint per row; a page then skips at most `stride - limit` rows from its checkpoint.
const MIN_STRIDE_ROWS: u32 = 100;

/// A saved report snapshot: what every page and the totals are computed from.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Snapshot {
    pub id: Uuid,
    /// The PostgreSQL snapshot, as text (`xmin:xmax:xip,…`).
    pub snapshot: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub page_limit: i32,
    pub stride: i32,
    pub total_rows: i64,
}

impl Snapshot {
    /// Pages of `page_limit` rows needed for all rows.
    pub fn total_pages(&self) -> i64 {
        (self.total_rows + i64::from(self.page_limit) - 1) / i64::from(self.page_limit)
    }
}

/// The stride for a page size: the smallest multiple of `limit` that is at least [`MIN_STRIDE_ROWS`].
pub fn stride_for(limit: u32) -> u32 {
    limit * MIN_STRIDE_ROWS.div_ceil(limit)
}

/// Where page `page` (1-based) starts: the checkpoint and how many rows after it to skip.
pub fn page_position(page: u64, limit: u32, stride: u32) -> (i64, i64) {
    let first_row = (page - 1) * u64::from(limit);
    ((first_row / u64::from(stride)) as i64, (first_row % u64::from(stride)) as i64)
}

/// Takes a snapshot of the window `[start, end]` and returns it with the rows of `page`.
pub async fn create_snapshot(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: u32,
    page: u64,
) -> DbResult<(Snapshot, Vec<Transaction>)> {
    let mut tx = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    // The first statement fixes the transaction's snapshot; it is also the one saved for later pages.
    let (snapshot_text,): (String,) = sqlx::query_as("SELECT pg_current_snapshot()::text").fetch_one(&mut *tx).await?;
    let id = Uuid::now_v7();
    let stride = stride_for(limit);
    sqlx::query(
        "INSERT INTO report_snapshots (id, snapshot, window_start, window_end, page_limit, stride, total_rows)
         VALUES ($1, $2::pg_snapshot, $3, $4, $5, $6, 0)",
    )
    .bind(id)
    .bind(&snapshot_text)
    .bind(start)
    .bind(end)
    .bind(limit as i32)
    .bind(stride as i32)
    .execute(&mut *tx)
    .await?;
    // One pass in report order: number the rows, keep every stride-th key and the last row's number.
    let (total_rows,): (i64,) = sqlx::query_as(
        "WITH numbered AS (
             SELECT created_at, id, row_number() OVER w AS rn, lead(id) OVER w IS NULL AS is_last
             FROM transactions
             WHERE created_at >= $2 AND created_at <= $3
             WINDOW w AS (ORDER BY created_at DESC, id DESC)
         ),
         marked AS MATERIALIZED (
             SELECT created_at, id, rn FROM numbered WHERE (rn - 1) % $4 = 0 OR is_last
         ),
         saved AS (
             INSERT INTO report_snapshot_checkpoints (snapshot_id, seq, created_at, id)
             SELECT $1, ((rn - 1) / $4)::integer, created_at, id FROM marked WHERE (rn - 1) % $4 = 0
         )
         SELECT coalesce(max(rn), 0) FROM marked",
    )
    .bind(id)
    .bind(start)
    .bind(end)
    .bind(i64::from(stride))
    .fetch_one(&mut *tx)
    .await?;
    let snapshot: Snapshot = sqlx::query_as(
        "UPDATE report_snapshots SET total_rows = $2 WHERE id = $1
         RETURNING id, snapshot::text AS snapshot, window_start, window_end, page_limit, stride, total_rows",
    )
    .bind(id)
    .bind(total_rows)
    .fetch_one(&mut *tx)
    .await?;
    let rows = read_page(&mut tx, &snapshot, page).await?;
    tx.commit().await?;
    Ok((snapshot, rows))
}

/// Loads a saved snapshot by its token.
pub async fn load_snapshot(pool: &PgPool, id: Uuid) -> DbResult<Snapshot> {
    sqlx::query_as(
        "SELECT id, snapshot::text AS snapshot, window_start, window_end, page_limit, stride, total_rows
         FROM report_snapshots WHERE id = $1",
    )
    .bind(id)
    .fetch_optional(pool)
    .await?
    .ok_or(DbError::SnapshotNotFound)
}

/// Reads page `page` of a saved snapshot.
pub async fn page(pool: &PgPool, snapshot: &Snapshot, page: u64) -> DbResult<Vec<Transaction>> {
    let mut conn = pool.acquire().await?;
    read_page(&mut conn, snapshot, page).await
}

async fn read_page(conn: &mut PgConnection, snapshot: &Snapshot, page: u64) -> DbResult<Vec<Transaction>> {
    let limit = snapshot.page_limit as u32;
    if page > snapshot.total_pages() as u64 {
        return Ok(Vec::new());
    }
    let (seq, skip) = page_position(page, limit, snapshot.stride as u32);
    let sql = format!(
        "SELECT {COLUMNS}
         FROM report_snapshot_checkpoints c
         CROSS JOIN LATERAL (
             SELECT {COLUMNS} FROM transactions t
             WHERE (t.created_at, t.id) <= (c.created_at, c.id)
               AND t.created_at >= $3
               AND pg_visible_in_snapshot(t.created_xid, $4::pg_snapshot)
             ORDER BY t.created_at DESC, t.id DESC
             OFFSET $5 LIMIT $6
         ) t
         WHERE c.snapshot_id = $1 AND c.seq = $2
         ORDER BY t.created_at DESC, t.id DESC"
    );
    let rows = sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(snapshot.id)
        .bind(seq as i32)
        .bind(snapshot.window_start)
        .bind(&snapshot.snapshot)
        .bind(skip)
        .bind(i64::from(limit))
        .fetch_all(&mut *conn)
        .await?;
    Ok(rows.into_iter().map(Transaction::from).collect())
}

/// What the download's reader receives: rows, then an explicit end. A stream that stops without [`Export::End`]
/// was cut short (a database error or a stall), and the response must say so by failing, not end as if
/// complete.
pub enum Export {
    Row(Transaction),
    End,
}

/// The rows of a window for a download, newest first, streamed from one connection of `pool` (the reports'
/// own). The connection is taken before this returns, so a download that cannot start is an error, never a
/// response with a truncated body. A reader that takes nothing for `stall` is abandoned: the query stops and
/// its connection is closed (not returned mid-result).
///
/// With a snapshot, exactly its rows; without one, the rows committed when the query starts (one statement
/// reads one MVCC snapshot).
pub async fn export(
    pool: &PgPool,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    snapshot: Option<String>,
    stall: std::time::Duration,
) -> DbResult<BoxStream<'static, sqlx::Result<Export>>> {
    let mut conn = pool.acquire().await?;
    // A download may legitimately outlast the per-statement timeout of the API's short queries; the stall
    // timeout bounds it instead.
    sqlx::query("SET statement_timeout = 0").execute(&mut *conn).await?;
    // A task owns the connection and feeds a bounded channel: the body stream is 'static, and a slow client
    // holds back the query instead of letting rows pile up in memory.
    let (tx, rx) = tokio::sync::mpsc::channel::<sqlx::Result<Export>>(256);
    tokio::spawn(async move {
        let sql = format!(
            "SELECT {COLUMNS} FROM transactions t
             WHERE t.created_at >= $1 AND t.created_at <= $2
               AND ($3::pg_snapshot IS NULL OR pg_visible_in_snapshot(t.created_xid, $3::pg_snapshot))
             ORDER BY t.created_at DESC, t.id DESC"
        );
        let mut finished = false;
        {
            let mut rows =
                sqlx::query_as::<_, TransactionRow>(&sql).bind(start).bind(end).bind(&snapshot).fetch(&mut *conn);
            loop {
                let item = match rows.next().await {
                    Some(row) => row.map(|row| Export::Row(row.into())),
                    None => Ok(Export::End),
                };
                let (last, complete) = (!matches!(item, Ok(Export::Row(_))), matches!(item, Ok(Export::End)));
                match tokio::time::timeout(stall, tx.send(item)).await {
                    Ok(Ok(())) if last => {
                        finished = complete;
                        break;
                    }
                    Ok(Ok(())) => {}
                    // The reader went away, or took nothing for `stall`: stop reading.
                    Ok(Err(_)) => break,
                    Err(_) => {
                        tracing::warn!(stall_ms = stall.as_millis() as u64, "a download made no progress; cut");
                        break;
                    }
                }
            }
        }
        if finished {
            // Give the pooled connection back with the service's usual statement timeout.
            if sqlx::query("RESET statement_timeout").execute(&mut *conn).await.is_ok() {
                return;
            }
        }
        // Mid-result (or unable to reset), the connection is closed rather than returned: PostgreSQL stops the
        // query when its client goes, and the pool opens a fresh connection when it needs one.
        let _ = conn.close().await;
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn the_stride_is_the_page_size_for_pages_of_a_hundred_or_more() {
        assert_eq!(stride_for(100), 100);
        assert_eq!(stride_for(1000), 1000);
        assert_eq!(stride_for(1), 100);
        assert_eq!(stride_for(7), 105);
    }

    #[test]
    fn page_twenty_thousand_starts_at_its_own_checkpoint() {
        assert_eq!(page_position(1, 100, 100), (0, 0));
        assert_eq!(page_position(20_000, 100, 100), (19_999, 0));
        assert_eq!(page_position(3, 7, 105), (0, 14));
        assert_eq!(page_position(16, 7, 105), (1, 0));
    }

    proptest! {
        #[test]
        fn a_page_starts_at_row_checkpoint_times_stride_plus_skip(page in 1u64..1_000_000, limit in 1u32..=1000) {
            let stride = stride_for(limit);
            prop_assert_eq!(stride % limit, 0);
            let (seq, skip) = page_position(page, limit, stride);
            prop_assert_eq!(seq as u64 * u64::from(stride) + skip as u64, (page - 1) * u64::from(limit));
            prop_assert!((skip as u64) + u64::from(limit) <= u64::from(stride));
        }
    }
}
