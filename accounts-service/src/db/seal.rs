//! Moves the report seal forward: numbers the rows that can no longer change and keeps every
//! [`MARK_EVERY`]-th one (and the first of each UTC day) as a mark. See `migrations/accounts/0004_report_seal.sql`.
//!
//! A candidate frontier is the database clock read before the sealer takes a transaction id of its own. Rows
//! are dated by `clock_timestamp()` after their database transaction has taken its id, so any transaction that
//! could still date a row before the candidate has an id below the sealer's. Once the oldest running
//! transaction is past that id (a later snapshot's `xmin`), every such transaction has ended and the rows
//! before the candidate are final: they are sealed. A transaction that stays open (a slow batch, a forgotten `BEGIN`) holds
//! the frontier back; it never lets a row in under it.

#[cfg(feature = "test-hooks")]
use std::time::Duration;

use chrono::{DateTime, Utc};
use sqlx::{Connection, PgConnection, PgPool};

use super::DbResult;

/// One sealed row in this many is a mark (the migration's SQL assumes 100 too: a count between marks is short).
pub const MARK_EVERY: i64 = 100;

/// How often [`seal`] looks again whether older transactions have ended.
#[cfg(feature = "test-hooks")]
const POLL: Duration = Duration::from_millis(10);

/// What one [`seal`] did.
#[cfg(feature = "test-hooks")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealing {
    /// The frontier moved to the candidate; this many rows were numbered.
    Sealed { rows: i64 },
    /// A transaction older than the candidate was still running after the wait.
    Waiting,
}

/// A frontier to seal up to once every transaction with an id up to `xid` has ended.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub at: DateTime<Utc>,
    xid: String,
}

/// Reads a candidate: the clock, then a new transaction id of its own, in two statements and in that order.
/// Ids are handed out in order, so every transaction that took its id before this one has a smaller id, and
/// every transaction that takes one later does so after the clock was read and dates its rows after `at`.
/// (A snapshot's `xmax` would not do: it is one past the newest *completed* id, and a transaction still
/// running may already hold a larger one.)
pub async fn candidate(conn: &mut PgConnection) -> DbResult<Candidate> {
    let mut tx = conn.begin().await?;
    let (at,): (DateTime<Utc>,) = sqlx::query_as("SELECT clock_timestamp()").fetch_one(&mut *tx).await?;
    let (xid,): (String,) = sqlx::query_as("SELECT pg_current_xact_id()::text").fetch_one(&mut *tx).await?;
    tx.commit().await?;
    Ok(Candidate { at, xid })
}

/// Whether every transaction that could still date a row before the candidate has ended: the oldest one
/// running is past the candidate's id.
pub async fn ready(conn: &mut PgConnection, candidate: &Candidate) -> DbResult<bool> {
    let (ended,): (bool,) = sqlx::query_as("SELECT pg_snapshot_xmin(pg_current_snapshot()) > $1::xid8")
        .bind(&candidate.xid)
        .fetch_one(&mut *conn)
        .await?;
    Ok(ended)
}

/// Seals up to a candidate that is [`ready`]; returns the rows numbered.
pub async fn seal_to(conn: &mut PgConnection, candidate: &Candidate) -> DbResult<i64> {
    seal_until(conn, candidate.at).await
}

/// Picks a candidate now, waits at most `wait` for it to be ready (looking every 10 ms), and seals up to it.
/// A test hook (feature `test-hooks`):
/// The service's own loop does not wait: it keeps its candidate until a later tick finds it ready.
#[cfg(feature = "test-hooks")]
pub async fn seal(pool: &PgPool, wait: Duration) -> DbResult<Sealing> {
    let mut conn = pool.acquire().await?;
    let candidate = candidate(&mut conn).await?;
    let started = std::time::Instant::now();
    while !ready(&mut conn, &candidate).await? {
        if started.elapsed() >= wait {
            return Ok(Sealing::Waiting);
        }
        tokio::time::sleep(POLL).await;
    }
    let rows = seal_to(&mut conn, &candidate).await?;
    Ok(Sealing::Sealed { rows })
}

/// Seals every row dated before `candidate`, one UTC day per database transaction (so that a first seal over
/// a long history commits as it goes). The caller has made sure no transaction can still date a row before it.
async fn seal_until(conn: &mut PgConnection, candidate: DateTime<Utc>) -> DbResult<i64> {
    let mut sealed = 0;
    loop {
        let mut tx = conn.begin().await?;
        // A day of rows may take longer than the API's statement limit.
        sqlx::query("SET LOCAL statement_timeout = '10min'").execute(&mut *tx).await?;
        // Instances seal in turn; each continues from where the last one stopped.
        let (frontier, next_num, last): (DateTime<Utc>, i64, Option<DateTime<Utc>>) =
            sqlx::query_as("SELECT frontier, next_num, last_created_at FROM report_seal FOR UPDATE")
                .fetch_one(&mut *tx)
                .await?;
        if frontier >= candidate {
            tx.commit().await?;
            return Ok(sealed);
        }
        // Up to the end of the first day with rows, or the candidate if that comes first.
        let (until,): (DateTime<Utc>,) = sqlx::query_as(
            "SELECT coalesce(least($2, date_trunc('day', min(created_at), 'UTC') + interval '1 day'), $2)
             FROM transactions WHERE created_at >= $1 AND created_at < $2",
        )
        .bind(frontier)
        .bind(candidate)
        .fetch_one(&mut *tx)
        .await?;
        let (rows, newest): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
            "WITH numbered AS (
                 SELECT created_at, id, $3 + row_number() OVER w - 1 AS num,
                        coalesce(lag(created_at) OVER w, $4) AS previous
                 FROM transactions WHERE created_at >= $1 AND created_at < $2
                 WINDOW w AS (ORDER BY created_at, id)
             ),
             marked AS (
                 INSERT INTO report_marks (num, created_at, id)
                 SELECT num, created_at, id FROM numbered
                 WHERE num % $5 = 0 OR previous IS NULL
                    OR date_trunc('day', previous, 'UTC') <> date_trunc('day', created_at, 'UTC')
             )
             SELECT count(*), max(created_at) FROM numbered",
        )
        .bind(frontier)
        .bind(until)
        .bind(next_num)
        .bind(last)
        .bind(MARK_EVERY)
        .fetch_one(&mut *tx)
        .await?;
        sqlx::query(
            "UPDATE report_seal SET frontier = $1, next_num = next_num + $2,
                 last_created_at = coalesce($3, last_created_at), sealed_at = clock_timestamp()",
        )
        .bind(until)
        .bind(rows)
        .bind(newest)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        sealed += rows;
        if until >= candidate {
            return Ok(sealed);
        }
    }
}

/// The seal's state, for `/metrics` and tests.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct SealState {
    pub frontier: DateTime<Utc>,
    pub next_num: i64,
}

/// Reads the seal's state.
pub async fn state(pool: &PgPool) -> DbResult<SealState> {
    Ok(sqlx::query_as("SELECT frontier, next_num FROM report_seal").fetch_one(pool).await?)
}
