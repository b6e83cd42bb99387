//! Holds in PostgreSQL (`migrations/accounts/0010_holds.sql`): locked, placed and ended inside group commit
//! (`movements`), read by `GET /holds/{id}`, and expired by the service's own task.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_contract::{Hold, HoldStatus};
use money::Amount;
use rust_decimal::Decimal;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::idempotency::KeyLock;
use super::ledger::Reply;
use super::movements::{self, Decided, MoneyRequest};
use super::{DbError, DbResult};
use crate::domain::transfer::{HoldCommand, HoldState, Movement, Release};

/// The client named as the one who ended a hold that expired.
pub const EXPIRY_CLIENT: &str = "accounts-service";

const HOLD_COLUMNS: &str = "h.id, h.account_id, h.amount, h.status, h.reason, h.description, h.created_at, \
     h.expires_at, h.settled_at, h.captured_amount, h.capture_transaction_id, h.release_transaction_id, h.recorded_by";

/// A `holds` row.
#[derive(sqlx::FromRow)]
struct HoldRow {
    id: Uuid,
    account_id: Uuid,
    #[sqlx(try_from = "Decimal")]
    amount: Amount,
    #[sqlx(try_from = "String")]
    status: HoldStatus,
    reason: Option<String>,
    description: String,
    created_at: DateTime<Utc>,
    expires_at: DateTime<Utc>,
    settled_at: Option<DateTime<Utc>>,
    captured_amount: Option<Decimal>,
    capture_transaction_id: Option<Uuid>,
    release_transaction_id: Option<Uuid>,
    recorded_by: String,
}

impl From<HoldRow> for Hold {
    fn from(row: HoldRow) -> Self {
        let released = match row.status {
            HoldStatus::Captured => row.captured_amount.map(|captured| row.amount.value() - captured),
            HoldStatus::Voided | HoldStatus::Expired => Some(row.amount.value()),
            HoldStatus::Pending | HoldStatus::Fail => None,
        };
        Self {
            hold_id: row.id,
            account_id: row.account_id,
            amount: row.amount,
            status: row.status,
            reason: row.reason,
            description: row.description,
            created_at: row.created_at,
            expires_at: row.expires_at,
            settled_at: row.settled_at,
            captured_amount: row.captured_amount,
            released_amount: released,
            capture_transaction_id: row.capture_transaction_id,
            release_transaction_id: row.release_transaction_id,
            recorded_by: row.recorded_by,
        }
    }
}

/// Reads one hold.
pub async fn get(pool: &PgPool, id: Uuid) -> DbResult<Hold> {
    let sql = format!("SELECT {HOLD_COLUMNS} FROM holds h WHERE h.id = $1");
    let row: Option<HoldRow> = sqlx::query_as(&sql).bind(id).fetch_optional(pool).await?;
    row.map(Hold::from).ok_or(DbError::HoldNotFound(id))
}

/// Locks the holds `ids` (those that exist) in id order, the order every writer uses, before any account: a
/// capture and an expiry of one hold wait for each other, and the second finds it ended. Whether each is past its
/// time is read by the database's clock under the lock.
pub(crate) async fn lock(conn: &mut PgConnection, ids: &mut Vec<Uuid>) -> DbResult<Vec<HoldState>> {
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    #[derive(sqlx::FromRow)]
    struct Locked {
        id: Uuid,
        account_id: Uuid,
        #[sqlx(try_from = "Decimal")]
        amount: Amount,
        #[sqlx(try_from = "String")]
        status: HoldStatus,
        expired: bool,
        locked_at: DateTime<Utc>,
        description: String,
    }
    // The clock is read once, after the locks are granted (the outer query runs once they are).
    let locked: Vec<Locked> = sqlx::query_as(
        "WITH locked AS (SELECT id, account_id, amount, status, expires_at, description
                         FROM holds WHERE id = ANY($1) ORDER BY id FOR UPDATE),
              now AS (SELECT clock_timestamp() AS at FROM (SELECT count(*) FROM locked) AS granted)
         SELECT l.id, l.account_id, l.amount, l.status, l.expires_at <= now.at AS expired, now.at AS locked_at,
                l.description
         FROM locked l, now ORDER BY l.id",
    )
    .bind(&*ids)
    .fetch_all(&mut *conn)
    .await?;
    Ok(locked
        .into_iter()
        .map(|h| HoldState {
            id: h.id,
            account_id: h.account_id,
            amount: h.amount,
            status: h.status,
            expired: h.expired,
            locked_at: h.locked_at,
            description: h.description,
        })
        .collect())
}

/// A hold to insert: placed (`failure` `None`) or refused.
pub(crate) struct NewHold<'a> {
    pub id: Uuid,
    pub command: &'a HoldCommand,
    pub failure: Option<&'static str>,
    pub key: Option<&'a str>,
    pub client: &'a str,
}

/// A pending hold that ended.
pub(crate) struct EndedHold<'a> {
    pub id: Uuid,
    /// When it was decided (the time its lock was granted, by which it was due or not).
    pub settled_at: DateTime<Utc>,
    pub status: HoldStatus,
    pub captured: Option<Decimal>,
    pub capture_transaction_id: Option<Uuid>,
    pub release_transaction_id: Option<Uuid>,
    pub client: &'a str,
}

/// Inserts the new holds and ends the ended ones, one statement each; returns every hold written, by id. Each
/// is dated by the database's clock (`expires_at` too).
pub(crate) async fn write(
    conn: &mut PgConnection,
    placed: &[NewHold<'_>],
    ended: &[EndedHold<'_>],
) -> DbResult<HashMap<Uuid, Hold>> {
    let mut written: Vec<HoldRow> = Vec::new();
    if !placed.is_empty() {
        let sql = format!(
            "INSERT INTO holds AS h (id, account_id, amount, status, reason, description, created_at, expires_at,
                                     idempotency_key, recorded_by)
             SELECT id, account, amount, CASE WHEN reason IS NULL THEN 'pending' ELSE 'fail' END, reason, description,
                    clock_timestamp(), clock_timestamp() + make_interval(secs => expires_in), key, client
             FROM unnest($1::uuid[], $2::uuid[], $3::numeric[], $4::text[], $5::text[], $6::float8[], $7::text[],
                         $8::text[]) AS v (id, account, amount, reason, description, expires_in, key, client)
             RETURNING {HOLD_COLUMNS}"
        );
        written.extend(
            sqlx::query_as::<_, HoldRow>(&sql)
                .bind(placed.iter().map(|h| h.id).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.command.account_id).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.command.amount.value()).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.failure).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.command.description.as_str()).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.command.expires_in_secs as f64).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.key).collect::<Vec<_>>())
                .bind(placed.iter().map(|h| h.client).collect::<Vec<_>>())
                .fetch_all(&mut *conn)
                .await?,
        );
    }
    if !ended.is_empty() {
        let sql = format!(
            "UPDATE holds h SET status = v.status, settled_at = v.settled_at, settled_by = v.client,
                 captured_amount = v.captured, capture_transaction_id = v.capture_id, release_transaction_id = v.release_id
             FROM unnest($1::uuid[], $2::text[], $3::numeric[], $4::uuid[], $5::uuid[], $6::text[], $7::timestamptz[])
                  AS v (id, status, captured, capture_id, release_id, client, settled_at)
             WHERE h.id = v.id AND h.status = 'pending'
             RETURNING {HOLD_COLUMNS}"
        );
        let rows = sqlx::query_as::<_, HoldRow>(&sql)
            .bind(ended.iter().map(|h| h.id).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.status.as_str()).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.captured).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.capture_transaction_id).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.release_transaction_id).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.client).collect::<Vec<_>>())
            .bind(ended.iter().map(|h| h.settled_at).collect::<Vec<_>>())
            .fetch_all(&mut *conn)
            .await?;
        if rows.len() != ended.len() {
            return Err(DbError::Inconsistent(format!("{} holds ended but {} were pending", ended.len(), rows.len())));
        }
        written.extend(rows);
    }
    Ok(written.into_iter().map(|row| (row.id, Hold::from(row))).collect())
}

/// How long the oldest pending hold has been past its `expires_at` (zero when none).
pub async fn overdue(pool: &PgPool) -> DbResult<Duration> {
    let (seconds,): (f64,) = sqlx::query_as(
        "SELECT coalesce(extract(epoch FROM clock_timestamp() - min(expires_at)), 0)::float8
         FROM holds WHERE status = 'pending' AND expires_at <= clock_timestamp()",
    )
    .fetch_one(pool)
    .await?;
    Ok(Duration::from_secs_f64(seconds.max(0.0)))
}

/// The most holds one expiry group ends.
const EXPIRY_GROUP: i64 = 200;

/// Ends every pending hold past its time, in groups through the one money path ([`movements::apply_group`]):
/// the expiry of a hold that a capture or void ended first finds it ended and does nothing. Returns how many
/// expired.
pub async fn expire_due(pool: &PgPool, key_wait: Duration) -> DbResult<usize> {
    let client: Arc<str> = Arc::from(EXPIRY_CLIENT);
    let mut expired = 0;
    loop {
        let due: Vec<(Uuid,)> = sqlx::query_as(
            "SELECT id FROM holds WHERE status = 'pending' AND expires_at <= clock_timestamp()
             ORDER BY expires_at LIMIT $1",
        )
        .bind(EXPIRY_GROUP)
        .fetch_all(pool)
        .await?;
        let requests: Vec<MoneyRequest> = due
            .iter()
            .map(|(hold_id,)| MoneyRequest {
                movement: Movement::Release { hold_id: *hold_id, why: Release::Expire },
                client: Arc::clone(&client),
                key: None,
                reply_status: 200,
            })
            .collect();
        let group: Vec<&MoneyRequest> = requests.iter().collect();
        let before = expired;
        let mut conn = pool.acquire().await?;
        let result = movements::apply_group(&mut conn, &group, KeyLock::Wait(key_wait)).await;
        drop(conn);
        let decided: Vec<DbResult<Reply>> = match result {
            Ok(decided) => decided
                .into_iter()
                .map(|decision| match decision {
                    Decided::Reply(reply) => reply,
                    Decided::Elsewhere => Err(DbError::Inconsistent("an unkeyed expiry was claimed elsewhere".into())),
                })
                .collect(),
            Err(movements::GroupError::AtCommit(error)) => return Err(DbError::CommitUnknown(error.to_string())),
            // One hold the database refuses to end must not keep every other from expiring: each on its own.
            Err(movements::GroupError::Before(error)) => {
                tracing::warn!(%error, size = group.len(), "an expiry group failed; expiring its holds one by one");
                let mut one_by_one = Vec::with_capacity(group.len());
                for request in &group {
                    one_by_one.push(movements::apply_alone(pool, request, key_wait).await);
                }
                one_by_one
            }
        };
        let mut failure = None;
        for (reply, (hold_id,)) in decided.into_iter().zip(&due) {
            match reply {
                Ok(reply) if reply.outcome.is_some() => expired += 1,
                Ok(_) => {}
                Err(error) => {
                    tracing::error!(%error, %hold_id, "a hold past its time could not be expired");
                    failure = Some(error);
                }
            }
        }
        if let (Some(error), true) = (failure, expired == before) {
            return Err(error);
        }
        // A full group that expired nothing (each was ended by a capture or void meanwhile) would be read again.
        if due.len() < EXPIRY_GROUP as usize || expired == before {
            return Ok(expired);
        }
    }
}
