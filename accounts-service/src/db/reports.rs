//! The paged transaction report and its download, both reading one fixed snapshot.
//!
//! Page 1 (a request without a snapshot token) runs in a REPEATABLE READ transaction whose PostgreSQL snapshot
//! is saved with the report. Its cost does not grow with the window: rows dated before the report seal's
//! frontier are final and numbered (`db::seal`), so the count of the window's sealed rows is two mark lookups,
//! and only the rows dated after the frontier (the last seconds) are counted live. Page 1 writes one row.
//!
//! A later page finds its first row the same way: in the live part by an offset into those few rows, in the
//! sealed part from the nearest mark (fewer than 100 rows away). Rows of the live part are kept only if their
//! inserting database transaction is visible in the saved snapshot (`pg_visible_in_snapshot`), so rows that
//! commit later, whatever their timestamp, never appear; sealed rows had all committed before the snapshot.

use bytes::{Bytes, BytesMut};
use chrono::{DateTime, SubsecRound, Utc};
use futures::stream::BoxStream;
use futures::StreamExt;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use ledger_contract::Transaction;

use super::ledger::{TransactionRow, TRANSACTION_COLUMNS as COLUMNS};
use super::{DbError, DbResult};

/// A saved report snapshot: what every page and the totals are computed from.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Snapshot {
    pub id: Uuid,
    /// The PostgreSQL snapshot, as text (`xmin:xmax:xip,…`).
    pub snapshot: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    pub page_limit: i32,
    pub total_rows: i64,
    /// The seal's frontier when the snapshot was taken.
    pub frontier: DateTime<Utc>,
    /// The sealed rows dated up to the window's end (in the marks' numbering).
    pub sealed_top: i64,
    /// The window's rows dated after the frontier, visible in the snapshot: the report's first rows.
    pub open_rows: i64,
    /// For a snapshot read on a standby: the primary's WAL position when it was taken, which the standby must
    /// have replayed before it serves any of the snapshot's rows.
    pub wal_lsn: Option<String>,
}

impl Snapshot {
    /// Pages of `page_limit` rows needed for all rows.
    pub fn total_pages(&self) -> i64 {
        (self.total_rows + i64::from(self.page_limit) - 1) / i64::from(self.page_limit)
    }

    /// Where the row at `offset` (0 = the newest) of the report is: in the live part at that offset, or the
    /// sealed row with that number.
    pub fn position(&self, offset: i64) -> Position {
        if offset < self.open_rows {
            Position::Live(offset)
        } else {
            Position::Sealed(self.sealed_top - 1 - (offset - self.open_rows))
        }
    }
}

/// Where a page starts: see [`Snapshot::position`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Position {
    Live(i64),
    Sealed(i64),
}

const SNAPSHOT_COLUMNS: &str = "id, snapshot::text AS snapshot, window_start, window_end, page_limit, total_rows, \
                                frontier, sealed_top, open_rows, wal_lsn::text AS wal_lsn";

/// Reads on a hot standby: the primary, where snapshots are taken and saved, and how long a read waits for the
/// standby to replay up to its snapshot before it answers [`DbError::ReplicaBehind`].
#[derive(Clone, Copy)]
pub struct Replica<'a> {
    pub primary: &'a PgPool,
    pub wait: std::time::Duration,
}

/// Takes a snapshot of the window `[start, end]` on `reads` and returns it with the rows of `page`. The
/// snapshot's row is saved in the same transaction, or, when `reads` is a hot standby (which takes no writes),
/// on the primary once the page is read.
pub async fn create_snapshot(
    reads: &PgPool,
    replica: Option<Replica<'_>>,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    limit: u32,
    page: u64,
) -> DbResult<(Snapshot, Vec<Transaction>)> {
    // The precision PostgreSQL keeps, so that page 1 and the saved window bound the same rows.
    let (start, end) = (start.trunc_subsecs(6), end.trunc_subsecs(6));
    // With a standby, the snapshot is the primary's: a standby's `pg_current_snapshot()` lists no running
    // transaction (in recovery they are all kept as subtransactions, which it leaves out), so rows committed
    // later would pass its visibility test. The standby is read once it has replayed past that snapshot, with
    // the snapshot applied explicitly.
    let mut conn = reads.acquire().await?;
    let primary = match replica {
        Some(replica) => {
            let (snapshot, lsn, frontier): (String, String, DateTime<Utc>) = sqlx::query_as(
                "SELECT pg_current_snapshot()::text, pg_current_wal_insert_lsn()::text, frontier FROM report_seal",
            )
            .fetch_one(replica.primary)
            .await?;
            wait_for_replay(&mut conn, &lsn, replica.wait).await?;
            Some((snapshot, frontier, lsn))
        }
        None => None,
    };
    let mut tx = sqlx::Connection::begin(&mut *conn).await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ").execute(&mut *tx).await?;
    // Without a standby, the first statement fixes the transaction's snapshot (the one saved for later pages),
    // and reads the seal as of that snapshot: every row before its frontier had committed.
    let (snapshot_text, frontier, wal_lsn): (String, DateTime<Utc>, Option<String>) = match primary {
        Some((snapshot, frontier, lsn)) => (snapshot, frontier, Some(lsn)),
        None => {
            sqlx::query_as("SELECT pg_current_snapshot()::text, frontier, NULL::text FROM report_seal")
                .fetch_one(&mut *tx)
                .await?
        }
    };
    // Sealed rows dated in the window: those before its end's next microsecond, minus those before its start.
    // Then the rows dated after the frontier and visible in the snapshot, counted live.
    let (sealed_top, sealed_bottom, open_rows): (i64, i64, i64) = sqlx::query_as(
        "SELECT report_rows_before(least($2 + interval '1 microsecond', $3)),
                report_rows_before(least($1, $3)),
                (SELECT count(*) FROM transactions
                 WHERE created_at >= greatest($1, $3) AND created_at <= $2
                   AND pg_visible_in_snapshot(created_xid, $4::pg_snapshot))",
    )
    .bind(start)
    .bind(end)
    .bind(frontier)
    .bind(&snapshot_text)
    .fetch_one(&mut *tx)
    .await?;
    let snapshot = Snapshot {
        id: Uuid::now_v7(),
        snapshot: snapshot_text,
        window_start: start,
        window_end: end,
        page_limit: limit as i32,
        total_rows: open_rows + (sealed_top - sealed_bottom).max(0),
        frontier,
        sealed_top,
        open_rows,
        wal_lsn,
    };
    if replica.is_none() {
        save(&mut tx, &snapshot).await?;
    }
    let rows = read_page(&mut tx, &snapshot, page).await?;
    tx.commit().await?;
    if let Some(replica) = replica {
        save(&mut *replica.primary.acquire().await?, &snapshot).await?;
    }
    Ok((snapshot, rows))
}

/// Waits, up to `wait`, until the standby `conn` is on has replayed the primary's WAL up to `lsn`.
async fn wait_for_replay(conn: &mut PgConnection, lsn: &str, wait: std::time::Duration) -> DbResult<()> {
    let started = std::time::Instant::now();
    loop {
        let (replayed,): (Option<bool>,) =
            sqlx::query_as("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn").bind(lsn).fetch_one(&mut *conn).await?;
        match replayed {
            Some(true) => return Ok(()),
            // Not a standby at all (REPORT_DATABASE_URL names a primary): it holds every commit.
            None => return Ok(()),
            Some(false) if started.elapsed() < wait => tokio::time::sleep(std::time::Duration::from_millis(5)).await,
            Some(false) => return Err(DbError::ReplicaBehind),
        }
    }
}

/// A connection of `pool` that holds every row of `snapshot`: for a snapshot taken for a standby, once the
/// standby has replayed past it.
async fn connection_for(
    pool: &PgPool,
    snapshot: &Snapshot,
    wait: std::time::Duration,
) -> DbResult<sqlx::pool::PoolConnection<sqlx::Postgres>> {
    let mut conn = pool.acquire().await?;
    if let Some(lsn) = &snapshot.wal_lsn {
        wait_for_replay(&mut conn, lsn, wait).await?;
    }
    Ok(conn)
}

async fn save(conn: &mut PgConnection, snapshot: &Snapshot) -> DbResult<()> {
    sqlx::query(
        "INSERT INTO report_snapshots
             (id, snapshot, window_start, window_end, page_limit, total_rows, frontier, sealed_top, open_rows, wal_lsn)
         VALUES ($1, $2::pg_snapshot, $3, $4, $5, $6, $7, $8, $9, $10::pg_lsn)",
    )
    .bind(snapshot.id)
    .bind(&snapshot.snapshot)
    .bind(snapshot.window_start)
    .bind(snapshot.window_end)
    .bind(snapshot.page_limit)
    .bind(snapshot.total_rows)
    .bind(snapshot.frontier)
    .bind(snapshot.sealed_top)
    .bind(snapshot.open_rows)
    .bind(&snapshot.wal_lsn)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Loads a saved snapshot by its token.
pub async fn load_snapshot(pool: &PgPool, id: Uuid) -> DbResult<Snapshot> {
    sqlx::query_as(&format!("SELECT {SNAPSHOT_COLUMNS} FROM report_snapshots WHERE id = $1"))
        .bind(id)
        .fetch_optional(pool)
        .await?
        .ok_or(DbError::SnapshotNotFound)
}

/// Reads page `page` of a saved snapshot; on a standby, once it holds the snapshot (up to `replica_wait`).
pub async fn page(
    pool: &PgPool,
    snapshot: &Snapshot,
    page: u64,
    replica_wait: std::time::Duration,
) -> DbResult<Vec<Transaction>> {
    let mut conn = connection_for(pool, snapshot, replica_wait).await?;
    read_page(&mut conn, snapshot, page).await
}

async fn read_page(conn: &mut PgConnection, snapshot: &Snapshot, page: u64) -> DbResult<Vec<Transaction>> {
    let limit = i64::from(snapshot.page_limit);
    let offset = (page as i64 - 1).saturating_mul(limit);
    if page > snapshot.total_pages() as u64 || offset >= snapshot.total_rows {
        return Ok(Vec::new());
    }
    let rows = match snapshot.position(offset) {
        // The live rows come first; a page that starts among them may run on into sealed rows, which are all
        // visible.
        Position::Live(skip) => {
            let sql = format!(
                "SELECT {COLUMNS} FROM transactions t
                 WHERE t.created_at >= $1 AND t.created_at <= $2
                   AND pg_visible_in_snapshot(t.created_xid, $3::pg_snapshot)
                 ORDER BY t.created_at DESC, t.id DESC
                 OFFSET $4 LIMIT $5"
            );
            sqlx::query_as::<_, TransactionRow>(&sql)
                .bind(snapshot.window_start)
                .bind(snapshot.window_end)
                .bind(&snapshot.snapshot)
                .bind(skip)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
        // From the nearest mark at or above the first row's number (marks made after the snapshot are ignored);
        // without one, from the top of the sealed rows in the window.
        Position::Sealed(first) => {
            let mark: Option<(DateTime<Utc>, Uuid, i64)> = sqlx::query_as(
                "SELECT created_at, id, num FROM report_marks WHERE num >= $1 AND num < $2 ORDER BY num LIMIT 1",
            )
            .bind(first)
            .bind(snapshot.sealed_top)
            .fetch_optional(&mut *conn)
            .await?;
            // Seeking down from a key (a mark) or from a time (the window's sealed top); the offset is under
            // a mark's spacing either way.
            let (from, skip) = match mark {
                Some((created_at, id, num)) => (Some((created_at, id)), num - first),
                None => (None, snapshot.sealed_top - 1 - first),
            };
            let top = match from {
                Some(_) => "t.created_at <= $2 AND (t.created_at, t.id) <= ($2, $3)",
                None => "t.created_at < least($2 + interval '1 microsecond', $4)",
            };
            let sql = format!(
                "SELECT {COLUMNS} FROM transactions t
                 WHERE t.created_at >= $1 AND {top}
                 ORDER BY t.created_at DESC, t.id DESC
                 OFFSET $5 LIMIT $6"
            );
            sqlx::query_as::<_, TransactionRow>(&sql)
                .bind(snapshot.window_start)
                .bind(from.map_or(snapshot.window_end, |(created_at, _)| created_at))
                .bind(from.map(|(_, id)| id))
                .bind(snapshot.frontier)
                .bind(skip)
                .bind(limit)
                .fetch_all(&mut *conn)
                .await?
        }
    };
    Ok(rows.into_iter().map(Transaction::from).collect())
}

/// What the download's reader receives: rows (or CSV text), then an explicit end. A stream that stops without
/// [`Export::End`] was cut short (a database error or a stall), and the response must say so by failing, not end
/// as if complete.
pub enum Export {
    Row(Transaction),
    /// Whole CSV lines, about [`CHUNK_BYTES`] at a time.
    Csv(Bytes),
    End,
}

/// How a download is read: decoded rows (for NDJSON), or CSV lines that PostgreSQL writes itself (`COPY`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    Rows,
    Csv,
}

/// A download is sent in chunks of about this many bytes: small enough to keep memory flat, large enough to
/// keep per-chunk overhead low.
pub const CHUNK_BYTES: usize = 64 * 1024;

/// The rows of a window for a download, newest first, streamed from one connection of `pool` (the reports'
/// own). The connection is taken before this returns, so a download that cannot start is an error, never a
/// response with a truncated body. A reader that takes nothing for `stall` is abandoned: the query stops and
/// its connection is closed (not returned mid-result).
///
/// With a snapshot, exactly its rows (on a standby, once it holds them: up to `replica_wait`); without one,
/// the rows committed when the query starts (one statement reads one MVCC snapshot).
pub async fn export(
    pool: &PgPool,
    window: (DateTime<Utc>, DateTime<Utc>),
    snapshot: Option<&Snapshot>,
    replica_wait: std::time::Duration,
    stall: std::time::Duration,
    shape: Shape,
) -> DbResult<BoxStream<'static, sqlx::Result<Export>>> {
    let mut conn = match snapshot {
        Some(snapshot) => connection_for(pool, snapshot, replica_wait).await?,
        None => pool.acquire().await?,
    };
    let seen = snapshot.map(|snapshot| (snapshot.snapshot.clone(), snapshot.frontier));
    // A task owns the connection and feeds a bounded channel: the body stream is 'static, and a slow client
    // holds back the query instead of letting rows pile up in memory (at most 256 rows, or 4 chunks of CSV).
    let depth = match shape {
        Shape::Rows => 256,
        Shape::Csv => 4,
    };
    let (tx, rx) = tokio::sync::mpsc::channel::<sqlx::Result<Export>>(depth);
    tokio::spawn(async move {
        let feed = Feed { window, seen: seen.as_ref(), tx: &tx, stall };
        // A download may legitimately outlast the per-statement timeout of the API's short queries; the stall
        // timeout bounds it instead. Both settings are local to the download's transaction, which only reads;
        // it is begun here, in the task, which nothing cancels: a connection is never given back to the pool
        // inside it.
        let begun = begin_download(&mut conn).await;
        let sent = match (begun, shape) {
            (Err(error), _) => Err(error),
            (Ok(_), Shape::Rows) => send_rows(&mut conn, &feed).await,
            (Ok(_), Shape::Csv) => send_csv(&mut conn, &feed).await,
        };
        let ended = match sent {
            Ok(true) => sqlx::query("COMMIT").execute(&mut *conn).await.map(|_| ()),
            // The reader went away or stalled: there is no one left to tell.
            Ok(false) => {
                let _ = conn.close().await;
                return;
            }
            Err(error) => Err(error),
        };
        match ended {
            // The connection goes back to the pool as it came, outside any transaction.
            Ok(()) => {
                feed.hand_over(Ok(Export::End)).await;
            }
            // Mid-result, or in a failed transaction, the connection is closed rather than returned:
            // PostgreSQL stops the query when its client goes, and the pool opens a fresh connection when it
            // needs one.
            Err(error) => {
                feed.hand_over(Err(error)).await;
                let _ = conn.close().await;
            }
        }
    });
    Ok(tokio_stream::wrappers::ReceiverStream::new(rx).boxed())
}

/// Opens the download's transaction: it only reads, and has no statement timeout.
async fn begin_download(conn: &mut PgConnection) -> sqlx::Result<()> {
    sqlx::query("BEGIN READ ONLY").execute(&mut *conn).await?;
    sqlx::query("SET LOCAL statement_timeout = 0").execute(&mut *conn).await?;
    Ok(())
}

type ExportSender = tokio::sync::mpsc::Sender<sqlx::Result<Export>>;

/// What a download's task reads, and where it sends it.
struct Feed<'a> {
    window: (DateTime<Utc>, DateTime<Utc>),
    seen: Option<&'a Seen>,
    tx: &'a ExportSender,
    /// How long the reader may take nothing before the download is cut.
    stall: std::time::Duration,
}

impl Feed<'_> {
    /// Gives `item` to the download's reader: false when the reader went away or took nothing for `stall`.
    async fn hand_over(&self, item: sqlx::Result<Export>) -> bool {
        match tokio::time::timeout(self.stall, self.tx.send(item)).await {
            Ok(Ok(())) => true,
            Ok(Err(_)) => false,
            Err(_) => {
                tracing::warn!(stall_ms = self.stall.as_millis() as u64, "a download made no progress; cut");
                false
            }
        }
    }
}

/// The download's view of a saved snapshot: its PostgreSQL snapshot, and the seal's frontier then (every row
/// dated before it was committed and visible in the snapshot).
type Seen = (String, DateTime<Utc>);

/// The window's rows in the report's order (the SQL expressions of its bounds given), those of a snapshot
/// only when there is one. Rows dated before the snapshot's seal frontier are visible in it by the seal's
/// rule, so `pg_visible_in_snapshot` runs only for the live rows of its last seconds (`OR` stops at the first
/// true), as a report page does.
fn export_filter(start: &str, end: &str, snapshot: &str, frontier: &str) -> String {
    format!(
        "t.created_at >= {start} AND t.created_at <= {end}
           AND ({snapshot} IS NULL OR t.created_at < {frontier} OR pg_visible_in_snapshot(t.created_xid, {snapshot}))
         ORDER BY t.created_at DESC, t.id DESC"
    )
}

/// Sends the rows one by one: Ok(false) when the reader stopped taking them.
async fn send_rows(conn: &mut PgConnection, feed: &Feed<'_>) -> sqlx::Result<bool> {
    let ((start, end), seen) = (feed.window, feed.seen);
    let filter = export_filter("$1", "$2", "$3::pg_snapshot", "$4");
    let sql = format!("SELECT {COLUMNS} FROM transactions t WHERE {filter}");
    let mut rows = sqlx::query_as::<_, TransactionRow>(&sql)
        .bind(start)
        .bind(end)
        .bind(seen.map(|(snapshot, _)| snapshot))
        .bind(seen.map(|(_, frontier)| *frontier))
        .fetch(conn);
    while let Some(row) = rows.next().await {
        if !feed.hand_over(Ok(Export::Row(row?.into()))).await {
            return Ok(false);
        }
    }
    Ok(true)
}

/// The export's CSV lines as PostgreSQL writes them (`COPY … TO STDOUT`): the columns of
/// [`CSV_COLUMNS`](ledger_contract::CSV_COLUMNS) in the API's formats (the seed's timestamps, amounts without
/// trailing zeros), a field with a comma, quote or line break quoted as RFC 4180 says (and a lone `\.`, by
/// PostgreSQL's own rule), a missing value as nothing. Client text that a spreadsheet would run as a formula
/// (a leading `=`, `+`, `-`, `@`, tab or carriage return: CSV injection) gets a leading `'`, which spreadsheets
/// show as text, and an empty text is written as nothing, like a missing one: `routes::reports::push_csv_field`
/// follows the same rules. `recorded_by` needs no such care: it is a client's name, which starts with a letter
/// or digit and holds no separator (`api_clients_name`), or `anonymous`.
fn csv_copy(with_snapshot: bool) -> String {
    let text = |column: &str| {
        // `^@` (starts with) on a present value: a regular expression on every row costs a third more.
        let formula = ["=", "+", "-", "@", "\\t", "\\r"].map(|c| format!("t.{column} ^@ E'{c}'")).join(" OR ");
        format!(
            "CASE WHEN t.{column} IS NOT NULL AND ({formula}) THEN '''' || t.{column} ELSE nullif(t.{column}, '') END"
        )
    };
    // COPY takes no parameters: the window and the snapshot are settings of the download's transaction, set by
    // a statement that binds them (`set_config`), never text spliced into this one. Each is read once (a
    // subquery), not cast again on every row.
    let setting = |name: &str, of: &str| format!("(SELECT current_setting('ledger.export_{name}')::{of})");
    let (snapshot, frontier) = match with_snapshot {
        true => (setting("snapshot", "pg_snapshot"), setting("frontier", "timestamptz")),
        false => ("NULL::pg_snapshot".to_owned(), "NULL::timestamptz".to_owned()),
    };
    let filter = export_filter(&setting("start", "timestamptz"), &setting("end", "timestamptz"), &snapshot, &frontier);
    format!(
        "COPY (SELECT t.id, to_char(t.created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS.MS'), t.kind,
                      t.src_account_id, t.dst_account_id, trim_scale(t.amount), t.direction, t.status, {}, {},
                      t.recorded_by
               FROM transactions t WHERE {filter}) TO STDOUT (FORMAT csv)",
        text("reason"),
        text("description"),
    )
}

/// Sends the rows as CSV text in chunks of about [`CHUNK_BYTES`]: Ok(false) when the reader stopped taking them.
async fn send_csv(conn: &mut PgConnection, feed: &Feed<'_>) -> sqlx::Result<bool> {
    let ((start, end), seen) = (feed.window, feed.seen);
    let at = |time: DateTime<Utc>| time.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    sqlx::query(
        "SELECT set_config('ledger.export_start', $1, true), set_config('ledger.export_end', $2, true),
                set_config('ledger.export_snapshot', coalesce($3, ''), true),
                set_config('ledger.export_frontier', coalesce($4, ''), true)",
    )
    .bind(at(start))
    .bind(at(end))
    .bind(seen.map(|(snapshot, _)| snapshot))
    .bind(seen.map(|(_, frontier)| at(*frontier)))
    .execute(&mut *conn)
    .await?;
    let mut copy = conn.copy_out_raw(&csv_copy(seen.is_some())).await?;
    let fresh = || BytesMut::with_capacity(CHUNK_BYTES + 4096);
    let mut chunk = fresh();
    // PostgreSQL sends a message per row; they are joined into chunks here.
    while let Some(line) = copy.next().await {
        chunk.extend_from_slice(&line?);
        if chunk.len() >= CHUNK_BYTES
            && !feed.hand_over(Ok(Export::Csv(std::mem::replace(&mut chunk, fresh()).freeze()))).await
        {
            return Ok(false);
        }
    }
    Ok(chunk.is_empty() || feed.hand_over(Ok(Export::Csv(chunk.freeze()))).await)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snapshot(open_rows: i64, sealed_top: i64, total_rows: i64) -> Snapshot {
        Snapshot {
            id: Uuid::nil(),
            snapshot: String::new(),
            window_start: Utc::now(),
            window_end: Utc::now(),
            page_limit: 10,
            total_rows,
            frontier: Utc::now(),
            sealed_top,
            open_rows,
            wal_lsn: None,
        }
    }

    #[test]
    fn the_live_rows_come_first_then_the_sealed_ones_newest_first() {
        let s = snapshot(3, 1000, 53);
        assert_eq!(s.position(0), Position::Live(0));
        assert_eq!(s.position(2), Position::Live(2));
        assert_eq!(s.position(3), Position::Sealed(999));
        assert_eq!(s.position(52), Position::Sealed(950));
        assert_eq!(s.total_pages(), 6);
    }
}
