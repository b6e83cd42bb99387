//! The webhook tables: endpoints (each its client's own), the deliveries waiting for them, the fan-out's place
//! in the feed, and replays.
//!
//! **Fan-out.** One instance at a time (the others skip while `webhook_fanout` is locked) reads the feed after
//! its position, exactly as a consumer does (never past an event that may still commit), queues a delivery per
//! event and matching endpoint, and moves its position, in one transaction: each event is queued once. An
//! endpoint is made while holding the same lock, and starts at the fan-out's position: every later event is
//! queued for it, and no earlier one.
//!
//! **Deliveries** are leased, not locked, while their HTTP request runs, so no database transaction stays open
//! (and none holds the feed back) during a slow request; a lease that runs out (the instance died) makes the
//! delivery due again. A delivered event's row is deleted; a failed one waits for its next attempt, and after
//! the last one is kept as dead, until a replay revives it.

use chrono::{DateTime, Utc};
use serde_json::value::RawValue;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::feed::{position, NEWEST_VISIBLE};
use crate::outbox::{self, NewEvent};
use crate::position::Position;
use crate::subjects::{self, Subjects};
use crate::wire::Webhook;

/// An endpoint's columns, as `SELECT` lists them.
const ENDPOINT_COLUMNS: &str = "w.id, w.url, w.types, w.description, w.created_at, w.disabled_at, w.disabled_reason,
    w.failing_since, (SELECT count(*) FROM webhook_deliveries d WHERE d.endpoint_id = w.id AND d.dead_at IS NULL)";

type EndpointRow = (
    Uuid,
    String,
    Option<Vec<String>>,
    Option<String>,
    DateTime<Utc>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<DateTime<Utc>>,
    i64,
);

fn webhook(row: EndpointRow) -> Webhook {
    let (id, url, types, description, created_at, disabled_at, disabled_reason, failing_since, pending) = row;
    Webhook {
        id,
        url,
        types,
        description,
        created_at,
        disabled_at,
        disabled_reason,
        failing_since,
        pending_deliveries: pending,
        secret: None,
    }
}

/// A new endpoint, checked.
pub struct NewEndpoint<'a> {
    pub client: &'a str,
    pub url: &'a str,
    pub types: Option<&'a [String]>,
    pub description: Option<&'a str>,
    pub secret: &'a str,
}

/// Why an endpoint was not made.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("this client already has {0} webhook endpoints, the most allowed (WEBHOOKS_PER_CLIENT)")]
    TooMany(usize),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Makes an endpoint that receives every event after the fan-out's current position.
pub async fn create(pool: &PgPool, new: &NewEndpoint<'_>, most: usize) -> Result<Webhook, CreateError> {
    let mut tx = pool.begin().await?;
    // The fan-out's lock: endpoints are made one at a time (the count below cannot be raced past), and no
    // fan-out runs until this one commits.
    sqlx::query("SELECT FROM webhook_fanout FOR UPDATE").execute(&mut *tx).await?;
    // It starts after the newest event visible now: every later one is queued by a fan-out that runs after this
    // commits, and so sees the endpoint; no earlier one is.
    let (xid, seq): (String, i64) = sqlx::query_as(&format!(
        "SELECT xid::text, seq FROM (({NEWEST_VISIBLE}) UNION ALL (SELECT xid, seq FROM webhook_fanout)) p
         ORDER BY xid DESC, seq DESC LIMIT 1"
    ))
    .fetch_one(&mut *tx)
    .await?;
    let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM webhook_endpoints WHERE client = $1")
        .bind(new.client)
        .fetch_one(&mut *tx)
        .await?;
    if owned >= most as i64 {
        return Err(CreateError::TooMany(most));
    }
    let row: EndpointRow = sqlx::query_as(&format!(
        "INSERT INTO webhook_endpoints AS w (id, client, url, types, description, secret, start_xid, start_seq)
         VALUES ($1, $2, $3, $4, $5, $6, $7::text::xid8, $8)
         RETURNING {ENDPOINT_COLUMNS}"
    ))
    .bind(Uuid::now_v7())
    .bind(new.client)
    .bind(new.url)
    .bind(new.types)
    .bind(new.description)
    .bind(new.secret)
    .bind(xid)
    .bind(seq)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Webhook { secret: Some(new.secret.to_owned()), ..webhook(row) })
}

/// The client's endpoints, oldest first.
pub async fn list(pool: &PgPool, client: &str) -> sqlx::Result<Vec<Webhook>> {
    let rows: Vec<EndpointRow> = sqlx::query_as(&format!(
        "SELECT {ENDPOINT_COLUMNS} FROM webhook_endpoints w WHERE w.client = $1 ORDER BY w.created_at, w.id"
    ))
    .bind(client)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(webhook).collect())
}

/// Deletes the client's endpoint and everything waiting for it; false when the client has no such endpoint.
pub async fn delete(pool: &PgPool, client: &str, id: Uuid) -> sqlx::Result<bool> {
    let deleted = sqlx::query("DELETE FROM webhook_endpoints WHERE id = $1 AND client = $2")
        .bind(id)
        .bind(client)
        .execute(pool)
        .await?;
    Ok(deleted.rows_affected() == 1)
}

/// Why a replay was not started.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no webhook endpoint {0} of this client")]
    NotFound(Uuid),
    #[error("events after this cursor were deleted (EVENT_RETENTION); the oldest cursor still served is {0}")]
    Expired(Position),
    #[error(transparent)]
    Db(#[from] sqlx::Error),
}

/// Queues every retained event after `after` (and up to the fan-out's position; later ones arrive the usual
/// way) for the client's endpoint again, and enables it if it was disabled. Returns the position replayed
/// through. A replay already under way is widened, not replaced.
pub async fn replay(pool: &PgPool, client: &str, id: Uuid, after: Position) -> Result<Position, ReplayError> {
    let mut tx = pool.begin().await?;
    let (xid, seq): (String, i64) =
        sqlx::query_as("SELECT xid::text, seq FROM webhook_fanout FOR UPDATE").fetch_one(&mut *tx).await?;
    let through = position(&xid, seq)?;
    let (horizon_xid, horizon_seq): (String, i64) =
        sqlx::query_as("SELECT xid::text, seq FROM event_horizon").fetch_one(&mut *tx).await?;
    let horizon = position(&horizon_xid, horizon_seq)?;
    if after < horizon {
        return Err(ReplayError::Expired(horizon));
    }
    let enabled = sqlx::query(
        "UPDATE webhook_endpoints SET disabled_at = NULL, disabled_reason = NULL, failing_since = NULL,
                paused_until = '-infinity'
         WHERE id = $1 AND client = $2",
    )
    .bind(id)
    .bind(client)
    .execute(&mut *tx)
    .await?;
    if enabled.rows_affected() != 1 {
        return Err(ReplayError::NotFound(id));
    }
    sqlx::query(
        "INSERT INTO webhook_replays AS r (endpoint_id, after_xid, after_seq, through_xid, through_seq)
         VALUES ($1, $2::text::xid8, $3, $4::text::xid8, $5)
         ON CONFLICT (endpoint_id) DO UPDATE SET
             (after_xid, after_seq) = (SELECT x, s FROM (VALUES (r.after_xid, r.after_seq), (excluded.after_xid, excluded.after_seq)) v (x, s) ORDER BY x, s LIMIT 1),
             (through_xid, through_seq) = (excluded.through_xid, excluded.through_seq)",
    )
    .bind(id)
    .bind(after.xid_text())
    .bind(after.seq_column())
    .bind(through.xid_text())
    .bind(through.seq_column())
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(through)
}

/// Moves the fan-out forward by at most `batch` events, then each replay by as many; returns the deliveries
/// queued, or `None` when another instance holds the fan-out.
pub async fn fan_out(pool: &PgPool, batch: i64) -> sqlx::Result<Option<u64>> {
    let mut tx = pool.begin().await?;
    let Some((xid, seq)): Option<(String, i64)> =
        sqlx::query_as("SELECT xid::text, seq FROM webhook_fanout FOR UPDATE SKIP LOCKED")
            .fetch_optional(&mut *tx)
            .await?
    else {
        return Ok(None);
    };
    // With no endpoint to queue for, the position jumps to the newest visible event: an idle fan-out reads
    // nothing, however fast events are written.
    let idle: bool = sqlx::query_scalar(
        "SELECT NOT EXISTS (SELECT 1 FROM webhook_endpoints WHERE disabled_at IS NULL)
            AND NOT EXISTS (SELECT 1 FROM webhook_replays)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if idle {
        sqlx::query(&format!(
            "UPDATE webhook_fanout f SET xid = h.xid, seq = h.seq FROM ({NEWEST_VISIBLE}) h
             WHERE (h.xid, h.seq) > (f.xid, f.seq)"
        ))
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        return Ok(Some(0));
    }
    let (last, mut queued) = queue(&mut tx, None, (&xid, seq), None, batch).await?;
    if let Some((xid, seq)) = last {
        sqlx::query("UPDATE webhook_fanout SET xid = $1::text::xid8, seq = $2")
            .bind(xid)
            .bind(seq)
            .execute(&mut *tx)
            .await?;
    }
    let replays: Vec<(Uuid, String, i64, String, i64)> = sqlx::query_as(
        "SELECT endpoint_id, after_xid::text, after_seq, through_xid::text, through_seq FROM webhook_replays
         ORDER BY endpoint_id FOR UPDATE",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (endpoint, after_xid, after_seq, through_xid, through_seq) in replays {
        let through = (through_xid.as_str(), through_seq);
        let (last, count) = queue(&mut tx, Some(endpoint), (&after_xid, after_seq), Some(through), batch).await?;
        queued += count;
        match last {
            Some((xid, seq)) if (xid.as_str(), seq) != through => {
                sqlx::query(
                    "UPDATE webhook_replays SET after_xid = $2::text::xid8, after_seq = $3 WHERE endpoint_id = $1",
                )
                .bind(endpoint)
                .bind(xid)
                .bind(seq)
                .execute(&mut *tx)
                .await?;
            }
            _ => {
                sqlx::query("DELETE FROM webhook_replays WHERE endpoint_id = $1")
                    .bind(endpoint)
                    .execute(&mut *tx)
                    .await?;
            }
        }
    }
    tx.commit().await?;
    Ok(Some(queued))
}

/// Queues deliveries for the events after `after` (at most `batch`, not past `through`, none that may still
/// commit): for every enabled endpoint that started before each event and wants its type, or for `endpoint`
/// alone (a replay, which also revives a dead or waiting delivery). Returns the last event looked at.
async fn queue(
    conn: &mut PgConnection,
    endpoint: Option<Uuid>,
    after: (&str, i64),
    through: Option<(&str, i64)>,
    batch: i64,
) -> sqlx::Result<(Option<(String, i64)>, u64)> {
    let (through_xid, through_seq) = through.map_or((None, None), |(x, s)| (Some(x), Some(s)));
    let row: (Option<String>, Option<i64>, i64) = sqlx::query_as(
        "WITH batch AS (
             SELECT xid, seq, type FROM events
             WHERE (xid, seq) > ($1::text::xid8, $2) AND xid < pg_snapshot_xmin(pg_current_snapshot())
               AND ($4::text IS NULL OR (xid, seq) <= ($4::text::xid8, $5))
             ORDER BY xid, seq LIMIT $3),
         queued AS (
             INSERT INTO webhook_deliveries (endpoint_id, xid, seq)
             SELECT w.id, b.xid, b.seq FROM batch b JOIN webhook_endpoints w
                 ON (w.types IS NULL OR b.type = ANY(w.types))
                AND CASE WHEN $6::uuid IS NULL THEN w.disabled_at IS NULL AND (b.xid, b.seq) > (w.start_xid, w.start_seq)
                         ELSE w.id = $6 END
             ORDER BY b.xid, b.seq, w.id
             ON CONFLICT (endpoint_id, xid, seq) DO UPDATE
                 SET dead_at = NULL, attempts = 0, next_attempt_at = now(), last_error = NULL
                 WHERE $6::uuid IS NOT NULL
             RETURNING 1),
         last AS (SELECT xid, seq FROM batch ORDER BY xid DESC, seq DESC LIMIT 1)
         SELECT (SELECT xid::text FROM last), (SELECT seq FROM last), (SELECT count(*) FROM queued)",
    )
    .bind(after.0)
    .bind(after.1)
    .bind(batch)
    .bind(through_xid)
    .bind(through_seq)
    .bind(endpoint)
    .fetch_one(&mut *conn)
    .await?;
    let (xid, seq, count) = row;
    Ok((xid.zip(seq), count as u64))
}

/// A delivery taken for an attempt: the endpoint, the event's body and where it stands.
#[derive(Debug, Clone)]
pub struct Due {
    pub endpoint_id: Uuid,
    pub url: String,
    pub secret: String,
    pub xid: String,
    pub seq: i64,
    /// Attempts made before this one.
    pub attempts: i32,
    /// The event (`None` when it was deleted by retention before it could be delivered).
    pub event: Option<DueEvent>,
}

#[derive(Debug, Clone)]
pub struct DueEvent {
    pub id: Uuid,
    pub kind: String,
    pub created_at: DateTime<Utc>,
    pub data: Box<RawValue>,
}

/// A row of [`claim`]: the delivery, then its event (absent when it was deleted) and the event's body.
type DueRow = (
    Uuid,
    String,
    String,
    String,
    i64,
    i32,
    Option<Uuid>,
    Option<String>,
    Option<DateTime<Utc>>,
    Option<String>,
    Option<Uuid>,
    Option<DateTime<Utc>>,
);

/// Leases up to `per_endpoint` due deliveries of every enabled, unpaused endpoint not in `busy` (oldest event
/// first) for `lease`; the data of events that refer to their object is rendered by `subjects`.
pub async fn claim(
    pool: &PgPool,
    subjects: &dyn Subjects,
    per_endpoint: i64,
    lease: std::time::Duration,
    busy: &[Uuid],
    only: Option<Uuid>,
) -> sqlx::Result<Vec<Due>> {
    let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
    let rows: Vec<DueRow> = sqlx::query_as(
        "WITH due AS (
             SELECT d.endpoint_id, d.xid, d.seq FROM webhook_endpoints w
             CROSS JOIN LATERAL (
                 SELECT endpoint_id, xid, seq FROM webhook_deliveries d
                 WHERE d.endpoint_id = w.id AND d.dead_at IS NULL AND d.next_attempt_at <= now()
                   AND (d.leased_until IS NULL OR d.leased_until < now())
                 ORDER BY d.xid, d.seq LIMIT $1
                 FOR UPDATE SKIP LOCKED) d
             WHERE w.disabled_at IS NULL AND w.paused_until <= now() AND w.id <> ALL($3)
               AND ($4::uuid IS NULL OR w.id = $4))
         UPDATE webhook_deliveries d SET leased_until = now() + make_interval(secs => $2 / 1000.0)
         FROM due JOIN webhook_endpoints w ON w.id = due.endpoint_id
              LEFT JOIN events e ON e.xid = due.xid AND e.seq = due.seq
         WHERE d.endpoint_id = due.endpoint_id AND d.xid = due.xid AND d.seq = due.seq
         RETURNING d.endpoint_id, w.url, w.secret, d.xid::text, d.seq, d.attempts, e.id, e.type, e.created_at,
                   e.data::text, e.subject, e.subject_at",
    )
    .bind(per_endpoint)
    .bind(lease_ms as f64)
    .bind(busy)
    .bind(only)
    .fetch_all(pool)
    .await?;
    let mut due = Vec::with_capacity(rows.len());
    let mut bodies = Vec::new();
    for (endpoint_id, url, secret, xid, seq, attempts, id, kind, created_at, data, subject, subject_at) in rows {
        let event = match (id, kind, created_at) {
            (Some(id), Some(kind), Some(created_at)) => {
                bodies.push(subjects::stored(data, subject, subject_at)?);
                Some(DueEvent { id, kind, created_at, data: RawValue::NULL.to_owned() })
            }
            _ => None,
        };
        due.push(Due { endpoint_id, url, secret, xid, seq, attempts, event });
    }
    let datas = subjects::data_of(subjects, pool, bodies).await?;
    for (event, data) in due.iter_mut().filter_map(|d| d.event.as_mut()).zip(datas) {
        event.data = data;
    }
    // RETURNING promises no order: each endpoint's deliveries go out in the feed's.
    due.sort_by(|a, b| {
        let key = |d: &Due| (d.endpoint_id, Position::from_columns(&d.xid, d.seq).unwrap_or_default());
        key(a).cmp(&key(b))
    });
    Ok(due)
}

/// These deliveries (of one endpoint) arrived: they are done, and the endpoint is healthy. One transaction
/// for a batch.
pub async fn delivered(pool: &PgPool, dues: &[Due]) -> sqlx::Result<()> {
    let Some(first) = dues.first() else { return Ok(()) };
    let mut tx = pool.begin().await?;
    let xids: Vec<&str> = dues.iter().map(|d| d.xid.as_str()).collect();
    let seqs: Vec<i64> = dues.iter().map(|d| d.seq).collect();
    sqlx::query(
        "DELETE FROM webhook_deliveries d USING unnest($2::text[], $3::bigint[]) AS r (xid, seq)
         WHERE d.endpoint_id = $1 AND d.xid = r.xid::xid8 AND d.seq = r.seq",
    )
    .bind(first.endpoint_id)
    .bind(&xids)
    .bind(&seqs)
    .execute(&mut *tx)
    .await?;
    sqlx::query("UPDATE webhook_endpoints SET failing_since = NULL WHERE id = $1 AND failing_since IS NOT NULL")
        .bind(first.endpoint_id)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// What became of an endpoint after a failed attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterFailure {
    /// It will be tried again.
    Retrying,
    /// It had been failing for longer than the whole retry schedule: it is disabled now, and an alert says so.
    Disabled,
}

/// The attempt failed: the delivery waits `retry_in` (or, with `None`, is dead: the schedule is over), the
/// endpoint rests for `pause`, and an endpoint failing since longer than `disable_after` is disabled, with an
/// alert row and an `alert.raised` event, in the same transaction.
pub async fn failed(
    pool: &PgPool,
    due: &Due,
    error: &str,
    retry_in: Option<std::time::Duration>,
    pause: std::time::Duration,
    disable_after: std::time::Duration,
) -> sqlx::Result<AfterFailure> {
    let ms = |d: std::time::Duration| i64::try_from(d.as_millis()).unwrap_or(i64::MAX) as f64;
    let mut tx = pool.begin().await?;
    sqlx::query(
        "UPDATE webhook_deliveries SET attempts = attempts + 1, leased_until = NULL, last_error = left($4, 500),
             next_attempt_at = CASE WHEN $5::float8 IS NULL THEN next_attempt_at ELSE now() + make_interval(secs => $5 / 1000.0) END,
             dead_at = CASE WHEN $5::float8 IS NULL THEN now() END
         WHERE endpoint_id = $1 AND xid = $2::text::xid8 AND seq = $3",
    )
    .bind(due.endpoint_id)
    .bind(&due.xid)
    .bind(due.seq)
    .bind(error)
    .bind(retry_in.map(ms))
    .execute(&mut *tx)
    .await?;
    let disable: Option<(String, Option<String>)> = sqlx::query_as(
        "UPDATE webhook_endpoints SET failing_since = coalesce(failing_since, now()),
             paused_until = now() + make_interval(secs => $2 / 1000.0),
             disabled_at = CASE WHEN failing_since <= now() - make_interval(secs => $3 / 1000.0) THEN now() END,
             disabled_reason = CASE WHEN failing_since <= now() - make_interval(secs => $3 / 1000.0)
                 THEN 'every delivery failed for longer than the retry schedule; last error: ' || left($4, 300) END
         WHERE id = $1 AND disabled_at IS NULL
         RETURNING url, disabled_reason",
    )
    .bind(due.endpoint_id)
    .bind(ms(pause))
    .bind(ms(disable_after))
    .bind(error)
    .fetch_optional(&mut *tx)
    .await?;
    let outcome = match disable {
        Some((url, Some(reason))) => {
            raise_alert(&mut tx, due.endpoint_id, &url, &reason).await?;
            AfterFailure::Disabled
        }
        _ => AfterFailure::Retrying,
    };
    tx.commit().await?;
    Ok(outcome)
}

/// The alert row and its `alert.raised` event, for a disabled endpoint.
async fn raise_alert(conn: &mut PgConnection, endpoint: Uuid, url: &str, reason: &str) -> sqlx::Result<()> {
    let message = format!("webhook endpoint {endpoint} ({url}) was disabled: {reason}");
    tracing::error!(webhook_id = %endpoint, %url, reason, "a webhook endpoint was disabled");
    let created_at: DateTime<Utc> =
        sqlx::query_scalar("INSERT INTO alerts (kind, message) VALUES ('webhook_disabled', $1) RETURNING created_at")
            .bind(&message)
            .fetch_one(&mut *conn)
            .await?;
    let data = serde_json::json!({
        "kind": "webhook_disabled",
        "message": message,
        "webhook_id": endpoint,
        "created_at": money::timestamp::format_timestamp(created_at),
    });
    let event = NewEvent::of(crate::ALERT_RAISED, &data).map_err(|error| sqlx::Error::Encode(error.into()))?;
    outbox::write(conn, &[event]).await
}

/// Gives back leases of deliveries that were not attempted (their endpoint failed first).
pub async fn release(pool: &PgPool, dues: &[Due]) -> sqlx::Result<()> {
    if dues.is_empty() {
        return Ok(());
    }
    let endpoints: Vec<Uuid> = dues.iter().map(|d| d.endpoint_id).collect();
    let xids: Vec<&str> = dues.iter().map(|d| d.xid.as_str()).collect();
    let seqs: Vec<i64> = dues.iter().map(|d| d.seq).collect();
    sqlx::query(
        "UPDATE webhook_deliveries d SET leased_until = NULL
         FROM unnest($1::uuid[], $2::text[], $3::bigint[]) AS r (endpoint_id, xid, seq)
         WHERE d.endpoint_id = r.endpoint_id AND d.xid = r.xid::xid8 AND d.seq = r.seq",
    )
    .bind(&endpoints)
    .bind(&xids)
    .bind(&seqs)
    .execute(pool)
    .await?;
    Ok(())
}

/// Deliveries waiting (not dead), and how long the oldest of them has waited.
pub async fn backlog(pool: &PgPool) -> sqlx::Result<(i64, f64)> {
    sqlx::query_as(
        "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0)::float8
         FROM webhook_deliveries WHERE dead_at IS NULL",
    )
    .fetch_one(pool)
    .await
}
