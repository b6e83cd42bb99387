//! Idempotency keys: claimed inside the database transaction that does the work, for one request or a whole
//! batch in one statement each.
//!
//! A key is guarded by a transaction-scoped advisory lock named `client || ' ' || key`, which every writer takes
//! (the single request waiting for it, a batch not waiting), so whoever holds the lock works on the key. Its row
//! in `idempotency_keys` is inserted when claimed, and is then one of two kinds:
//!
//! - **answered by its row** (a transfer, a bank transaction): the request writes exactly one transaction row
//!   under the key, and that row, shown as `GET` shows it, is the answer. The claim is written whole at once
//!   (its status, no body), and a replay rebuilds the body from the row, byte for byte (a row never changes).
//! - **stored**: the claim's status and body are NULL until the request has its answer, then written before the
//!   commit (holds, accounts: their objects change after the answer).
//!
//! A committed stored claim without a response is a bug the lookups report.

use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use ledger_contract::Transaction;
use rust_decimal::Decimal;
use service_kit::IdempotencyKey;
use sqlx::PgConnection;
use uuid::Uuid;

use super::ledger::{to_json, TransactionRow, TRANSACTION_COLUMNS};
use super::{sqlstate, DbError, DbResult, LOCK_NOT_AVAILABLE};

/// A response kept for replay: the status and body the caller answered with, stored as they are.
#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub status_code: u16,
    pub body: String,
}

impl StoredResponse {
    /// The response stored with a committed key; a missing or non-HTTP status means the row is not what the
    /// service wrote.
    fn committed(status_code: Option<i16>, body: Option<String>) -> DbResult<Self> {
        let status = status_code.and_then(|code| u16::try_from(code).ok()).filter(|code| (100..600).contains(code));
        match (status, body) {
            (Some(status_code), Some(body)) => Ok(Self { status_code, body }),
            _ => Err(DbError::Inconsistent(format!("a committed key has no valid response (status {status_code:?})"))),
        }
    }
}

/// One client's key: keys of different clients never meet.
#[derive(Debug, Clone, Copy)]
pub struct ClientKey<'a> {
    pub client: &'a str,
    pub key: &'a IdempotencyKey,
}

/// How a claim treats a key whose advisory lock another transaction holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyLock {
    /// Wait for it at most this long, then [`DbError::KeyInFlight`] (a request on its own).
    Wait(Duration),
    /// Do not wait: the key is [`Claim::Elsewhere`] (a batch, which runs that request on its own afterwards).
    /// Lock waits of the rest of the transaction are then bounded by the duration given, so that a key row
    /// written without its advisory lock (by a version before group commit) never stalls a batch for long.
    Try(Duration),
}

/// What claiming one key found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claim {
    /// Its advisory lock is held by another transaction: the key is in flight elsewhere (only with
    /// [`KeyLock::Try`]).
    Elsewhere,
    /// The key was used before (its row is committed): see [`stored_answers`].
    Used,
    /// The key is new and now this transaction's.
    Fresh,
}

/// The clients and keys as two aligned columns for `unnest`.
fn columns<'a>(keys: &[ClientKey<'a>]) -> (Vec<&'a str>, Vec<&'a str>) {
    keys.iter().map(|k| (k.client, k.key.as_str())).unzip()
}

/// How a claimed key will be answered, and replayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answered {
    /// With this status and the one transaction row its request writes under the key.
    ByRow(u16),
    /// With a response stored before the commit ([`store_responses`]).
    Stored,
}

/// The common expressions of a claim: `requests` takes each key's advisory lock (waiting for it when `$5`, at
/// most `$4` milliseconds), `claimed` inserts the rows of the keys it got. `$1` clients, `$2` keys, `$3` the
/// requests' fingerprints, `$6` the statuses of keys answered by their row (NULL: answered by a stored response).
macro_rules! claim_expressions {
    () => {
        "settings AS (SELECT set_config('lock_timeout', $4, true)),
         requests AS (
             SELECT k.i, k.client, k.key, k.hash, k.status,
                    CASE WHEN $5 THEN pg_advisory_xact_lock(hashtextextended(k.client || ' ' || k.key, 0)) IS NOT NULL
                         ELSE pg_try_advisory_xact_lock(hashtextextended(k.client || ' ' || k.key, 0)) END AS locked
             FROM settings, unnest($1::text[], $2::text[], $3::bytea[], $6::int2[])
                  WITH ORDINALITY AS k (client, key, hash, status, i)),
         claimed AS (
             INSERT INTO idempotency_keys (client, key, request_hash, status_code, answered_by_row)
             SELECT client, key, hash, status, status IS NOT NULL FROM requests WHERE locked
             ON CONFLICT (client, key) DO NOTHING
             RETURNING client, key)"
    };
}

/// The claims alone.
const CLAIM: &str = concat!(
    "WITH ",
    claim_expressions!(),
    "
     SELECT r.i, r.locked, c.key IS NOT NULL,
            -- A request on its own then waits for its accounts as long as the statement timeout allows. Run
            -- per output row, once the claims it joins have been made (a later claim of the same statement
            -- could only wait longer, never less: still bounded by the statement timeout).
            CASE WHEN $5 THEN set_config('lock_timeout', '0', true) END,
            NULL::uuid, NULL::numeric, NULL::numeric
     FROM requests r LEFT JOIN claimed c ON c.client = r.client AND c.key = r.key"
);

/// The claims, not waiting for any key (`$5` false), and the lock of the accounts `$7` (in id order, as
/// `movements::lock_money` takes them, after the lock timeout is set): one row per claim, then one per account.
const CLAIM_AND_LOCK: &str = concat!(
    "WITH ",
    claim_expressions!(),
    ",
         locked AS (
             SELECT a.id, a.balance, a.held FROM accounts a, settings
             WHERE a.id = ANY($7) ORDER BY a.id FOR NO KEY UPDATE OF a)
     SELECT r.i, r.locked, c.key IS NOT NULL, NULL, NULL::uuid, NULL::numeric, NULL::numeric
     FROM requests r LEFT JOIN claimed c ON c.client = r.client AND c.key = r.key
     UNION ALL
     SELECT NULL, NULL, NULL, NULL, id, balance, held FROM locked"
);

/// An account locked with the claims: its id, balance and held amount.
pub type LockedAccount = (Uuid, Decimal, Decimal);

/// Takes the keys' advisory locks and inserts the rows of those it got, in one statement; `hashes[i]` is the
/// fingerprint of the request under `keys[i]`, `answered[i]` how it will be answered. Answers one [`Claim`] per
/// key, in order.
///
/// With [`KeyLock::Try`], keys to claim and `accounts` to lock (sorted, each once), the same statement also locks
/// those accounts `FOR NO KEY UPDATE` and answers them too (a round trip saved): `None` when it did not.
pub async fn claim_keys(
    conn: &mut PgConnection,
    keys: &[ClientKey<'_>],
    hashes: &[Vec<u8>],
    answered: &[Answered],
    lock: KeyLock,
    accounts: &[Uuid],
) -> DbResult<(Vec<Claim>, Option<Vec<LockedAccount>>)> {
    assert_eq!(keys.len(), hashes.len(), "one fingerprint per key");
    assert_eq!(keys.len(), answered.len(), "one way of answering per key");
    if keys.is_empty() {
        return Ok((Vec::new(), None));
    }
    let (wait, timeout) = match lock {
        KeyLock::Wait(timeout) => (true, timeout),
        KeyLock::Try(timeout) => (false, timeout),
    };
    let with_accounts = !wait && !accounts.is_empty();
    let (clients, texts) = columns(keys);
    let statuses: Vec<Option<i16>> = answered
        .iter()
        .map(|answer| match answer {
            Answered::ByRow(status) => Some(*status as i16),
            Answered::Stored => None,
        })
        .collect();
    type Row =
        (Option<i64>, Option<bool>, Option<bool>, Option<String>, Option<Uuid>, Option<Decimal>, Option<Decimal>);
    let query = sqlx::query_as::<_, Row>(if with_accounts { CLAIM_AND_LOCK } else { CLAIM })
        .bind(&clients)
        .bind(&texts)
        .bind(hashes)
        .bind(timeout.as_millis().to_string())
        .bind(wait)
        .bind(&statuses);
    let query = if with_accounts { query.bind(accounts) } else { query };
    let rows = query.fetch_all(&mut *conn).await.map_err(|error| match sqlstate(&error).as_deref() {
        Some(LOCK_NOT_AVAILABLE) if wait => DbError::KeyInFlight,
        _ => error.into(),
    })?;
    let mut claims: Vec<(i64, Claim)> = Vec::with_capacity(keys.len());
    let mut locked = Vec::new();
    for row in rows {
        match row {
            (Some(i), Some(locked), Some(fresh), _, None, None, None) => claims.push((
                i,
                match (locked, fresh) {
                    (false, _) => Claim::Elsewhere,
                    (true, false) => Claim::Used,
                    (true, true) => Claim::Fresh,
                },
            )),
            (None, None, None, None, Some(id), Some(balance), Some(held)) => locked.push((id, balance, held)),
            other => return Err(DbError::Inconsistent(format!("a claim answered {other:?}"))),
        }
    }
    if claims.len() != keys.len() {
        return Err(DbError::Inconsistent(format!("{} keys claimed, {} answered", keys.len(), claims.len())));
    }
    claims.sort_unstable_by_key(|(i, _)| *i);
    Ok((claims.into_iter().map(|(_, claim)| claim).collect(), with_accounts.then_some(locked)))
}

/// The answers under keys found [`Claim::Used`]: the stored response, or the one rebuilt from the key's row,
/// when `hashes[i]` is the fingerprint it was claimed with, else [`DbError::KeyReused`].
pub async fn stored_answers(
    conn: &mut PgConnection,
    keys: &[ClientKey<'_>],
    hashes: &[Vec<u8>],
) -> DbResult<Vec<DbResult<StoredResponse>>> {
    assert_eq!(keys.len(), hashes.len(), "one fingerprint per key");
    if keys.is_empty() {
        return Ok(Vec::new());
    }
    let (clients, texts) = columns(keys);
    #[derive(sqlx::FromRow)]
    struct Stored {
        client: String,
        key: String,
        request_hash: Vec<u8>,
        status_code: Option<i16>,
        response_body: Option<String>,
        answered_by_row: bool,
        created_at: DateTime<Utc>,
    }
    let stored: Vec<Stored> = sqlx::query_as(
        "SELECT s.client, s.key, s.request_hash, s.status_code, s.response_body, s.answered_by_row, s.created_at
         FROM idempotency_keys s JOIN unnest($1::text[], $2::text[]) AS k (client, key)
           ON s.client = k.client AND s.key = k.key",
    )
    .bind(&clients)
    .bind(&texts)
    .fetch_all(&mut *conn)
    .await?;
    let by_row: Vec<(&str, &str, DateTime<Utc>)> = stored
        .iter()
        .filter(|row| row.answered_by_row)
        .map(|row| (row.client.as_str(), row.key.as_str(), row.created_at))
        .collect();
    let mut bodies = rows_of_keys(conn, &by_row).await?;
    let mut stored: HashMap<(String, String), Stored> =
        stored.into_iter().map(|row| ((row.client.clone(), row.key.clone()), row)).collect();
    Ok(keys
        .iter()
        .zip(hashes)
        .map(|(k, hash)| {
            let id = (k.client.to_owned(), k.key.as_str().to_owned());
            match stored.remove(&id) {
                None => Err(DbError::Inconsistent("a key that was taken has no row".into())),
                Some(row) if row.request_hash != *hash => Err(DbError::KeyReused),
                Some(row) if row.answered_by_row => {
                    let body = bodies.remove(&id).ok_or_else(|| {
                        DbError::Inconsistent(format!("the key {:?} has no transaction row to answer with", k.key))
                    })?;
                    StoredResponse::committed(row.status_code, Some(body))
                }
                Some(row) => StoredResponse::committed(row.status_code, row.response_body),
            }
        })
        .collect())
}

/// The JSON of the one transaction row each key's request wrote (`client`, `key`, the claim's time: the row is
/// dated after its claim, which prunes the day partitions and leaves out a row of the same key claimed before),
/// by client and key.
async fn rows_of_keys(
    conn: &mut PgConnection,
    keys: &[(&str, &str, DateTime<Utc>)],
) -> DbResult<HashMap<(String, String), String>> {
    if keys.is_empty() {
        return Ok(HashMap::new());
    }
    #[derive(sqlx::FromRow)]
    struct Keyed {
        client: String,
        key: String,
        #[sqlx(flatten)]
        row: TransactionRow,
    }
    let clients: Vec<&str> = keys.iter().map(|k| k.0).collect();
    let texts: Vec<&str> = keys.iter().map(|k| k.1).collect();
    let times: Vec<DateTime<Utc>> = keys.iter().map(|k| k.2).collect();
    let sql = format!(
        "SELECT k.client, k.key, {TRANSACTION_COLUMNS}
         FROM unnest($1::text[], $2::text[], $3::timestamptz[]) AS k (client, key, claimed_at)
         JOIN LATERAL (
             SELECT * FROM transactions t
             WHERE t.recorded_by = k.client AND t.idempotency_key = k.key AND t.created_at >= k.claimed_at
             LIMIT 2) t ON true"
    );
    let rows: Vec<Keyed> = sqlx::query_as(&sql).bind(&clients).bind(&texts).bind(&times).fetch_all(&mut *conn).await?;
    let mut bodies = HashMap::with_capacity(rows.len());
    for keyed in rows {
        let body = to_json(&Transaction::from(keyed.row))?;
        if bodies.insert((keyed.client, keyed.key), body).is_some() {
            return Err(DbError::Inconsistent("a key answered by its row has two transaction rows".into()));
        }
    }
    Ok(bodies)
}

/// Records the responses of claimed keys (`responses[i]` under `keys[i]`); commits with the work.
pub async fn store_responses(
    conn: &mut PgConnection,
    keys: &[ClientKey<'_>],
    responses: &[&StoredResponse],
) -> DbResult<()> {
    assert_eq!(keys.len(), responses.len(), "one response per key");
    if keys.is_empty() {
        return Ok(());
    }
    let (clients, texts) = columns(keys);
    let statuses: Vec<i16> = responses.iter().map(|response| response.status_code as i16).collect();
    let bodies: Vec<&str> = responses.iter().map(|response| response.body.as_str()).collect();
    let updated = sqlx::query(
        "UPDATE idempotency_keys s SET status_code = v.status, response_body = v.body
         FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[]) AS v (client, key, status, body)
         WHERE s.client = v.client AND s.key = v.key",
    )
    .bind(&clients)
    .bind(&texts)
    .bind(&statuses)
    .bind(&bodies)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    if updated != keys.len() as u64 {
        return Err(DbError::Inconsistent(format!("{} keys were claimed but {updated} responses stored", keys.len())));
    }
    Ok(())
}

/// Releases claimed keys whose requests recorded nothing (an account does not exist), as a rolled-back request
/// would.
pub async fn release_keys(conn: &mut PgConnection, keys: &[ClientKey<'_>]) -> DbResult<()> {
    if keys.is_empty() {
        return Ok(());
    }
    let (clients, texts) = columns(keys);
    sqlx::query(
        "DELETE FROM idempotency_keys s USING unnest($1::text[], $2::text[]) AS v (client, key)
         WHERE s.client = v.client AND s.key = v.key",
    )
    .bind(&clients)
    .bind(&texts)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Claims one key for a request on its own: `Ok(None)` when it is new and now this transaction's, `Ok(Some)`
/// with the stored response when the same request used it before.
pub async fn claim_one(
    conn: &mut PgConnection,
    key: ClientKey<'_>,
    hash: Vec<u8>,
    wait: Duration,
) -> DbResult<Option<StoredResponse>> {
    let hashes = [hash];
    match claim_keys(conn, &[key], &hashes, &[Answered::Stored], KeyLock::Wait(wait), &[]).await?.0.as_slice() {
        [Claim::Fresh] => Ok(None),
        [Claim::Used] => {
            let mut answers = stored_answers(conn, &[key], &hashes).await?;
            answers.pop().unwrap_or_else(|| Err(DbError::Inconsistent("no answer for a used key".into()))).map(Some)
        }
        other => Err(DbError::Inconsistent(format!("a waiting claim found {other:?}"))),
    }
}
