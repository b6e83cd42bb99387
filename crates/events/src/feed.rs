//! The feed: events in position order, never past one that may still commit.
//!
//! **Why no reader skips.** Every event carries the id of the transaction that wrote it (`xid`), and the feed
//! is ordered by `(xid, seq)`. A read returns only events whose `xid` is below the `xmin` of its own snapshot:
//! every transaction below `xmin` has ended (committed, and so visible to the read, or rolled back), and every
//! transaction that has not ended, or not begun, has an `xid` at or above it. So an event that commits after a
//! read sorts after everything that read returned, whatever the order in which transactions commit, on one
//! instance or several. The price: one long transaction that has written anything holds the feed back until it
//! ends (the report seal's reasoning, `accounts-service/src/db/seal.rs`; the metric
//! `events_feed_held_back_seconds` shows it).
//!
//! **Retention.** Events older than `EVENT_RETENTION` are deleted oldest position first, and `event_horizon`
//! keeps the last position deleted, in the same transaction: a cursor before it would miss events, so it is
//! refused ([`ReadError::Expired`]) rather than served with a gap.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::PgPool;
use uuid::Uuid;

use crate::position::Position;
use crate::subjects::{self, Subjects};
use crate::wire::Event;

/// The most events a page returns.
pub const MAX_LIMIT: usize = 1000;
/// The most events one read looks at when a `types` filter skips some: a consumer filtering for a rare type
/// still gets an answer (and a cursor past what was looked at) in bounded time.
pub const MAX_SCAN: i64 = 10_000;

/// Why a page could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the cursor is older than the events kept (EVENT_RETENTION): events after it were deleted; the oldest cursor still served is {0}")]
    Expired(Position),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// One page: the events (those matching the filter) and where the next read starts.
#[derive(Debug, Default)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Position,
}

/// A row of [`read`]: the horizon, then an event's position, id, type, time, whether the filter takes it, and its
/// body (its data, or the object it refers to).
type Row = (
    String,
    i64,
    Option<String>,
    Option<i64>,
    Option<Uuid>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<bool>,
    Option<String>,
    Option<Uuid>,
    Option<DateTime<Utc>>,
);

/// Reads up to `limit` events after `after` (of `types` only, when given), in position order, as of now; the
/// data of events that refer to their object is rendered by `subjects`.
pub async fn read(
    pool: &PgPool,
    subjects: &dyn Subjects,
    after: Position,
    limit: usize,
    types: Option<&[String]>,
) -> Result<Page, ReadError> {
    let limit = limit.clamp(1, MAX_LIMIT);
    let scan = if types.is_some() { MAX_SCAN } else { limit as i64 };
    // One statement, one snapshot: the horizon and the events are read together, so a prune between the two
    // cannot open a gap.
    let rows: Vec<Row> = sqlx::query_as(
        "SELECT h.xid::text, h.seq, e.xid::text, e.seq, e.id, e.type, e.created_at, e.taken,
                CASE WHEN e.taken THEN e.data::text END, e.subject, e.subject_at
         FROM event_horizon h
         LEFT JOIN LATERAL (
             SELECT xid, seq, id, type, created_at, data, subject, subject_at,
                    $4::text[] IS NULL OR type = ANY($4) AS taken
             FROM events
             WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot())
             ORDER BY xid, seq
             LIMIT $3
         ) e ON true",
    )
    .bind(after.xid_text())
    .bind(after.seq_column())
    .bind(scan)
    .bind(types)
    .fetch_all(pool)
    .await?;
    let Some((horizon_xid, horizon_seq, ..)) = rows.first() else {
        return Err(sqlx::Error::Protocol("event_horizon has no row".into()).into());
    };
    let horizon = position(horizon_xid, *horizon_seq)?;
    if after < horizon {
        return Err(ReadError::Expired(horizon));
    }
    let mut page = Page { events: Vec::new(), next: after };
    let mut bodies = Vec::new();
    for (_, _, xid, seq, id, kind, created_at, taken, data, subject, subject_at) in rows {
        let (Some(xid), Some(seq), Some(id), Some(kind), Some(created_at)) = (xid, seq, id, kind, created_at) else {
            break; // no event after the cursor: the one row holds the horizon alone
        };
        let at = position(&xid, seq)?;
        page.next = at;
        if taken != Some(true) {
            continue;
        }
        bodies.push(subjects::stored(data, subject, subject_at)?);
        page.events.push(Event { id, kind, created_at, position: at.to_string(), data: RawValue::NULL.to_owned() });
        if page.events.len() == limit {
            break;
        }
    }
    let datas = subjects::data_of(subjects, pool, bodies).await?;
    for (event, data) in page.events.iter_mut().zip(datas) {
        event.data = data;
    }
    Ok(page)
}

/// The newest event a read would return now, as a query of `(xid, seq)`: at most one row, none with no events.
/// The feed's head, where a new endpoint starts, and where an idle fan-out jumps to.
pub(crate) const NEWEST_VISIBLE: &str =
    "SELECT xid, seq FROM events WHERE xid < pg_snapshot_xmin(pg_current_snapshot())
     ORDER BY xid DESC, seq DESC LIMIT 1";

/// The position of the newest event a read would return now (`None` with none).
pub async fn head(pool: &PgPool) -> sqlx::Result<Option<Position>> {
    let row: Option<(String, i64)> =
        sqlx::query_as(&format!("SELECT xid::text, seq FROM ({NEWEST_VISIBLE}) h")).fetch_optional(pool).await?;
    row.map(|(xid, seq)| position(&xid, seq)).transpose()
}

/// How long the oldest running transaction that has written anything has been open: the feed cannot pass it.
pub async fn held_back(pool: &PgPool) -> sqlx::Result<Duration> {
    let seconds: Option<f64> = sqlx::query_scalar(
        "SELECT extract(epoch FROM max(clock_timestamp() - xact_start))::float8
         FROM pg_stat_activity WHERE backend_xid IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    Ok(Duration::from_secs_f64(seconds.unwrap_or(0.0).max(0.0)))
}

/// Deletes the events older than `retention`, oldest position first, in groups of `group` (at most `groups`
/// of them a pass), moving `event_horizon` in the same transaction; returns how many were deleted. It stops
/// at the first event young enough to keep, even where a later position is older: the deleted events are
/// always a prefix of the order, so the horizon describes exactly what is gone.
pub async fn prune(pool: &PgPool, retention: Duration, group: i64, groups: usize) -> sqlx::Result<u64> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let cutoff = Utc::now().checked_sub_signed(retention).unwrap_or(DateTime::<Utc>::MIN_UTC);
    let mut deleted = 0;
    for _ in 0..groups {
        let mut tx = pool.begin().await?;
        let last: Option<(String, i64, i64)> = sqlx::query_as(
            "WITH head AS (SELECT xid, seq, created_at FROM events ORDER BY xid, seq LIMIT $2),
                  keep AS (SELECT xid, seq FROM head WHERE created_at >= $1 ORDER BY xid, seq LIMIT 1),
                  gone AS (
                      DELETE FROM events e USING head h
                      WHERE e.xid = h.xid AND e.seq = h.seq
                        AND NOT EXISTS (SELECT 1 FROM keep k WHERE (h.xid, h.seq) >= (k.xid, k.seq))
                      RETURNING e.xid, e.seq)
             SELECT xid::text, seq, (SELECT count(*) FROM gone) FROM gone ORDER BY xid DESC, seq DESC LIMIT 1",
        )
        .bind(cutoff)
        .bind(group)
        .fetch_optional(&mut *tx)
        .await?;
        let Some((xid, seq, count)) = last else {
            tx.rollback().await?;
            break;
        };
        sqlx::query("UPDATE event_horizon SET xid = $1::text::xid8, seq = $2, moved_at = now()")
            .bind(&xid)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        deleted += count as u64;
        if count < group {
            break;
        }
    }
    Ok(deleted)
}

/// A position read from the database (`xid8` as text, `bigint`).
pub(crate) fn position(xid: &str, seq: i64) -> sqlx::Result<Position> {
    Position::from_columns(xid, seq).map_err(|error| sqlx::Error::Decode(error.into()))
}
