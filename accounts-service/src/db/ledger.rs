//! Accounts, and the transactions as the ledger records and answers them. Money moves in `movements.rs`.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use events::subjects::{Rendering, Subject, Subjects};
use ledger_contract::{Account, Direction, Transaction, TransactionKind, TransactionStatus};
use money::Amount;
use rust_decimal::Decimal;
use serde::Serialize;
use service_kit::IdempotencyKey;
use sqlx::PgPool;
use uuid::Uuid;

use super::idempotency::{self, ClientKey, StoredResponse};
use super::{DbError, DbResult};

/// An `accounts` row, as the contract's [`Account`].
#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    balance: Decimal,
    held: Decimal,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Self {
            account_id: row.id,
            balance: row.balance,
            created_at: row.created_at,
            updated_at: row.updated_at,
            as_of: None,
            held_balance: Some(row.held),
            available_balance: Some(row.balance - row.held),
        }
    }
}

/// The columns of a `transactions` row that make a [`TransactionRow`], for queries that alias the table `t`.
pub(crate) const TRANSACTION_COLUMNS: &str = "t.id, t.created_at, t.kind, t.src_account_id, t.dst_account_id, \
     t.amount, t.direction, t.status, t.reason, t.description, t.recorded_by";

/// A `transactions` row with its kinds and statuses decoded (the schema's CHECKs allow no other text).
#[derive(sqlx::FromRow)]
pub(crate) struct TransactionRow {
    id: Uuid,
    created_at: DateTime<Utc>,
    #[sqlx(try_from = "String")]
    kind: TransactionKind,
    src_account_id: Option<Uuid>,
    dst_account_id: Uuid,
    #[sqlx(try_from = "Decimal")]
    amount: Amount,
    #[sqlx(try_from = "String")]
    direction: Direction,
    #[sqlx(try_from = "String")]
    status: TransactionStatus,
    reason: Option<String>,
    description: Option<String>,
    recorded_by: Option<String>,
}

impl From<TransactionRow> for Transaction {
    fn from(row: TransactionRow) -> Self {
        Self {
            transaction_id: row.id,
            transaction_timestamp: row.created_at,
            kind: row.kind,
            src_account_id: row.src_account_id,
            dst_account_id: row.dst_account_id,
            amount: row.amount,
            direction: row.direction,
            status: row.status,
            reason: row.reason,
            description: row.description,
            recorded_by: row.recorded_by,
        }
    }
}

/// What a command did, for the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    AccountCreated,
    Success,
    InsufficientFunds,
}

impl From<TransactionStatus> for Outcome {
    fn from(status: TransactionStatus) -> Self {
        match status {
            TransactionStatus::Success => Self::Success,
            TransactionStatus::Fail => Self::InsufficientFunds,
        }
    }
}

/// A command's response, ready to send.
#[derive(Debug, Clone)]
pub struct Reply {
    pub response: StoredResponse,
    /// `None` when the response is a replay of an earlier request with the same key.
    pub outcome: Option<Outcome>,
}

/// Opens an account, exactly once per client and idempotency key when `key` is given.
pub async fn create_account(
    pool: &PgPool,
    key: Option<ClientKey<'_>>,
    key_wait: std::time::Duration,
    reply_status: u16,
) -> DbResult<Reply> {
    super::with_retries(|| create_account_once(pool, key, key_wait, reply_status), DbError::is_retryable).await
}

async fn create_account_once(
    pool: &PgPool,
    key: Option<ClientKey<'_>>,
    key_wait: std::time::Duration,
    reply_status: u16,
) -> DbResult<Reply> {
    let mut tx = pool.begin().await?;
    if let Some(key) = key {
        let fingerprint = crate::domain::fingerprint(&["create_account"]);
        if let Some(response) = idempotency::claim_one(&mut tx, key, fingerprint, key_wait).await? {
            tx.rollback().await?;
            return Ok(Reply { response, outcome: None });
        }
    }
    let row = sqlx::query_as::<_, AccountRow>(
        "INSERT INTO accounts (id) VALUES ($1) RETURNING id, balance, held, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .fetch_one(&mut *tx)
    .await?;
    let account = Account::from(row);
    events::outbox::write(&mut tx, &[event_of(ledger_contract::events::ACCOUNT_CREATED, &account)?]).await?;
    let response = StoredResponse { status_code: reply_status, body: to_json(&account)? };
    if let Some(key) = key {
        idempotency::store_responses(&mut tx, &[key], &[&response]).await?;
    }
    tx.commit().await?;
    Ok(Reply { response, outcome: Some(Outcome::AccountCreated) })
}

/// An event carrying `object` as the API shows it.
pub(crate) fn event_of<T: Serialize>(kind: &'static str, object: &T) -> DbResult<events::NewEvent> {
    events::NewEvent::of(kind, object)
        .map_err(|error| DbError::Inconsistent(format!("an event did not serialize: {error}")))
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> DbResult<String> {
    serde_json::to_string(value)
        .map_err(|error| DbError::Inconsistent(format!("a response did not serialize: {error}")))
}

/// Renders the data of `transaction.*` events, which store only their row's id and time: the row is read back
/// and shown as `GET` and the original answer showed it (a row never changes, so the bytes are the same).
pub struct TransactionSubjects;

impl Subjects for TransactionSubjects {
    fn render<'a>(&'a self, pool: &'a PgPool, subjects: &'a [Subject]) -> Rendering<'a> {
        Box::pin(async move {
            let times: Vec<DateTime<Utc>> = subjects.iter().map(|s| s.at).collect();
            let ids: Vec<Uuid> = subjects.iter().map(|s| s.id).collect();
            let (Some(first), Some(last)) = (times.iter().min(), times.iter().max()) else { return Ok(Vec::new()) };
            // The range prunes the day partitions before the join looks anything up by its primary key.
            let sql = format!(
                "SELECT {TRANSACTION_COLUMNS} FROM unnest($1::timestamptz[], $2::uuid[]) AS s (at, id)
                 JOIN transactions t ON t.created_at = s.at AND t.id = s.id
                 WHERE t.created_at BETWEEN $3 AND $4"
            );
            let rows: Vec<TransactionRow> =
                sqlx::query_as(&sql).bind(&times).bind(&ids).bind(first).bind(last).fetch_all(pool).await?;
            rows.into_iter()
                .map(|row| {
                    let id = row.id;
                    let view = serde_json::to_string(&Transaction::from(row))
                        .map_err(|error| sqlx::Error::Decode(error.into()))?;
                    Ok((id, view))
                })
                .collect()
        })
    }
}

/// Every transaction `client` recorded under one of its idempotency keys, oldest first (at most one per use of
/// the key, since a key is claimed before anything is recorded; a list so that a reconciler can see it if that
/// ever failed).
pub async fn transactions_by_key(pool: &PgPool, client: &str, key: &IdempotencyKey) -> DbResult<Vec<Transaction>> {
    let found = transactions_by_keys(pool, client, &[key.as_str()]).await?;
    Ok(found.into_iter().map(|(_, transaction)| transaction).take(100).collect())
}

/// The statement of [`transactions_by_keys`], in a file of its own so that the benchmark runs the very same text.
pub const BY_KEYS: &str = include_str!("by_keys.sql");

/// Every transaction `client` recorded under any of `keys`, with its key, oldest first, for up to a thousand
/// keys.
///
/// A key holds no date, but each of its uses does: a claim (`idempotency_keys`, while the key is kept) or a
/// past one (`idempotency_key_uses`, until its day is archived; migration `0014`). A use writes at most one row
/// under the key, in its own database transaction, dated just after it; and the next use of the key comes at
/// least `IDEMPOTENCY_KEY_TTL` (7 days or more) later. So each use's row is sought in the hour after it
/// ([`BY_KEYS`]), which prunes the day partitions to one: a row found there is that use's row, and a use whose
/// row is not there (its request wrote none, such as an account's; or the row came over an hour late) is
/// noticed. The keys of such uses, and keys with no use at all, are then sought in every partition, as every key
/// used to be: the answer is the same, only slower.
pub async fn transactions_by_keys(pool: &PgPool, client: &str, keys: &[&str]) -> DbResult<Vec<(String, Transaction)>> {
    let mut sought: Vec<Sought> = sqlx::query_as(BY_KEYS).bind(client).bind(keys).fetch_all(pool).await?;
    let unsure: Vec<String> = sought.iter().filter(|s| s.row.is_none()).map(|s| s.key.clone()).collect();
    if !unsure.is_empty() {
        let sql = format!(
            "SELECT t.idempotency_key AS key, {TRANSACTION_COLUMNS} FROM transactions t
             WHERE t.recorded_by = $1 AND t.idempotency_key = ANY($2)"
        );
        sought.extend(sqlx::query_as::<_, Sought>(&sql).bind(client).bind(&unsure).fetch_all(pool).await?);
    }
    // A row found twice (by a use, and by the search of every partition) is one row.
    let found: HashMap<Uuid, (String, Transaction)> = sought
        .into_iter()
        .filter_map(|Sought { key, row }| row.map(Transaction::from).map(|t| (t.transaction_id, (key, t))))
        .collect();
    let mut found: Vec<(String, Transaction)> = found.into_values().collect();
    found.sort_by_key(|(_, t)| (t.transaction_timestamp, t.transaction_id));
    Ok(found)
}

/// A key, and a row found under it (none: the key is still to be sought in every partition).
struct Sought {
    key: String,
    row: Option<TransactionRow>,
}

impl<'r> sqlx::FromRow<'r, sqlx::postgres::PgRow> for Sought {
    fn from_row(row: &'r sqlx::postgres::PgRow) -> sqlx::Result<Self> {
        use sqlx::Row as _;
        let id: Option<Uuid> = row.try_get("id")?;
        let found = match id {
            Some(_) => Some(TransactionRow::from_row(row)?),
            None => None,
        };
        Ok(Self { key: row.try_get("key")?, row: found })
    }
}

/// Reads one account.
pub async fn get_account(pool: &PgPool, id: Uuid) -> DbResult<Account> {
    sqlx::query_as::<_, AccountRow>("SELECT id, balance, held, created_at, updated_at FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(Account::from)
        .ok_or(DbError::AccountNotFound(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_lookup_statement_reads_the_columns_a_transaction_row_decodes() {
        assert!(BY_KEYS.contains(&TRANSACTION_COLUMNS.replace("t.id,", "a.key, t.id,")), "in the same order");
    }
}
