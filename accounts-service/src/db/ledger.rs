//! Accounts and the money-moving commands, each in one database transaction.

use chrono::{DateTime, Utc};
use ledger_contract::{Account, Direction, Transaction, TransactionKind, TransactionStatus};
use money::Amount;
use rust_decimal::Decimal;
use serde::Serialize;
use service_kit::IdempotencyKey;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::idempotency::{self, Claim, StoredResponse};
use super::{DbError, DbResult};
use crate::domain::transfer::{settle, settle_with_bank, Settlement, INSUFFICIENT_FUNDS};

/// An `accounts` row, as the contract's [`Account`].
#[derive(sqlx::FromRow)]
struct AccountRow {
    id: Uuid,
    balance: Decimal,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
}

impl From<AccountRow> for Account {
    fn from(row: AccountRow) -> Self {
        Self { account_id: row.id, balance: row.balance, created_at: row.created_at, updated_at: row.updated_at }
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

/// A request to move money between two accounts.
#[derive(Debug, Clone)]
pub struct TransferCommand {
    pub src_account_id: Uuid,
    pub dst_account_id: Uuid,
    pub amount: Amount,
    pub direction: Direction,
}

/// A request to move money between the bank and one account.
#[derive(Debug, Clone)]
pub struct BankCommand {
    pub account_id: Uuid,
    pub amount: Amount,
    pub direction: Direction,
    pub description: Option<String>,
}

/// Everything that writes to the ledger. Each runs in one database transaction with its key.
#[derive(Debug, Clone)]
pub enum Command {
    CreateAccount,
    Transfer(TransferCommand),
    Bank(BankCommand),
}

impl Command {
    /// What the request asks for, normalized, so that `12.3` and `"12.30"` are the same request.
    pub(crate) fn fingerprint(&self) -> Vec<u8> {
        match self {
            Self::CreateAccount => idempotency::fingerprint(&["create_account"]),
            Self::Transfer(t) => idempotency::fingerprint(&[
                "transfer",
                &t.src_account_id.to_string(),
                &t.dst_account_id.to_string(),
                &t.amount.to_string(),
                t.direction.as_str(),
            ]),
            Self::Bank(b) => idempotency::fingerprint(&[
                "bank",
                &b.account_id.to_string(),
                &b.amount.to_string(),
                b.direction.as_str(),
                b.description.as_deref().unwrap_or("\u{0}none"),
            ]),
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

/// Who asks, and under which key: a key is unique per client.
#[derive(Debug, Clone, Copy)]
pub struct Requester<'a> {
    /// The client's name, recorded with the transaction.
    pub client: &'a str,
    pub key: Option<&'a IdempotencyKey>,
}

/// Runs `command` exactly once per client and idempotency key.
pub async fn execute(
    pool: &PgPool,
    command: &Command,
    requester: Requester<'_>,
    key_wait: std::time::Duration,
    reply_status: u16,
) -> DbResult<Reply> {
    let mut attempt = 1;
    loop {
        match execute_once(pool, command, requester, key_wait, reply_status).await {
            Err(DbError::Sqlx(error)) if attempt < super::MAX_ATTEMPTS && super::is_retryable(&error) => {
                tracing::info!(attempt, error = %error, "retrying the database transaction");
                attempt += 1;
            }
            result => return result,
        }
    }
}

async fn execute_once(
    pool: &PgPool,
    command: &Command,
    requester: Requester<'_>,
    key_wait: std::time::Duration,
    reply_status: u16,
) -> DbResult<Reply> {
    let mut tx = pool.begin().await?;
    let client = requester.client;
    if let Some(key) = requester.key {
        let claim = idempotency::claim(&mut tx, client, key, &command.fingerprint(), key_wait).await?;
        if let Claim::Replay(response) = claim {
            tx.rollback().await?;
            return Ok(Reply { response, outcome: None });
        }
    }
    let (outcome, body) = match command {
        Command::CreateAccount => (Outcome::AccountCreated, to_json(&create_account(&mut tx).await?)?),
        Command::Transfer(t) => {
            let transaction = transfer(&mut tx, t, requester).await?;
            (transaction.status.into(), to_json(&transaction)?)
        }
        Command::Bank(b) => {
            let transaction = bank_transaction(&mut tx, b, requester).await?;
            (transaction.status.into(), to_json(&transaction)?)
        }
    };
    let response = StoredResponse { status_code: reply_status, body };
    if let Some(key) = requester.key {
        idempotency::store(&mut tx, client, key, &response).await?;
    }
    tx.commit().await?;
    Ok(Reply { response, outcome: Some(outcome) })
}

pub(crate) fn to_json<T: Serialize>(value: &T) -> DbResult<String> {
    serde_json::to_string(value)
        .map_err(|error| DbError::Inconsistent(format!("a response did not serialize: {error}")))
}

async fn create_account(conn: &mut PgConnection) -> DbResult<Account> {
    let row = sqlx::query_as::<_, AccountRow>(
        "INSERT INTO accounts (id) VALUES ($1) RETURNING id, balance, created_at, updated_at",
    )
    .bind(Uuid::now_v7())
    .fetch_one(&mut *conn)
    .await?;
    Ok(row.into())
}

/// Every transaction `client` recorded under one of its idempotency keys, oldest first (at most one, since a
/// key is claimed before anything is recorded; a list so that a reconciler can see it if that ever failed).
pub async fn transactions_by_key(pool: &PgPool, client: &str, key: &IdempotencyKey) -> DbResult<Vec<Transaction>> {
    let sql = format!(
        "SELECT {TRANSACTION_COLUMNS} FROM transactions t WHERE t.recorded_by = $1 AND t.idempotency_key = $2
         ORDER BY t.created_at, t.id LIMIT 100"
    );
    let rows = sqlx::query_as::<_, TransactionRow>(&sql).bind(client).bind(key.as_str()).fetch_all(pool).await?;
    Ok(rows.into_iter().map(Transaction::from).collect())
}

/// Every transaction `client` recorded under any of `keys`, with its key, oldest first: one indexed query
/// (`recorded_by, idempotency_key`) for up to a thousand keys.
pub async fn transactions_by_keys(pool: &PgPool, client: &str, keys: &[&str]) -> DbResult<Vec<(String, Transaction)>> {
    #[derive(sqlx::FromRow)]
    struct Keyed {
        key: String,
        #[sqlx(flatten)]
        row: TransactionRow,
    }
    let sql = format!(
        "SELECT t.idempotency_key AS key, {TRANSACTION_COLUMNS} FROM transactions t
         WHERE t.recorded_by = $1 AND t.idempotency_key = ANY($2)
         ORDER BY t.created_at, t.id LIMIT 100000"
    );
    let rows = sqlx::query_as::<_, Keyed>(&sql).bind(client).bind(keys).fetch_all(pool).await?;
    Ok(rows.into_iter().map(|keyed| (keyed.key, keyed.row.into())).collect())
}

/// Reads one account.
pub async fn get_account(pool: &PgPool, id: Uuid) -> DbResult<Account> {
    sqlx::query_as::<_, AccountRow>("SELECT id, balance, created_at, updated_at FROM accounts WHERE id = $1")
        .bind(id)
        .fetch_optional(pool)
        .await?
        .map(Account::from)
        .ok_or(DbError::AccountNotFound(id))
}

/// Locks the given accounts in id order (the one order every writer uses, so two transfers can never wait
/// on each other in a cycle) and returns their balances in the order of `ids`. `NO KEY UPDATE` is enough to
/// serialize balance changes and does not wait on the key-share locks that inserting a transaction row takes
/// on its accounts (the foreign keys).
async fn lock_accounts(conn: &mut PgConnection, ids: &[Uuid]) -> DbResult<Vec<Decimal>> {
    #[derive(sqlx::FromRow)]
    struct Locked {
        id: Uuid,
        balance: Decimal,
    }
    let rows: Vec<Locked> =
        sqlx::query_as("SELECT id, balance FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(ids)
            .fetch_all(&mut *conn)
            .await?;
    ids.iter()
        .map(|id| rows.iter().find(|row| row.id == *id).map(|row| row.balance).ok_or(DbError::AccountNotFound(*id)))
        .collect()
}

async fn set_balance(conn: &mut PgConnection, id: Uuid, balance: Decimal) -> DbResult<()> {
    sqlx::query("UPDATE accounts SET balance = $2, updated_at = clock_timestamp() WHERE id = $1")
        .bind(id)
        .bind(balance)
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// The row to insert into `transactions`.
struct NewTransaction<'a> {
    kind: TransactionKind,
    src_account_id: Option<Uuid>,
    dst_account_id: Uuid,
    amount: Amount,
    direction: Direction,
    failure: Option<&'static str>,
    description: Option<&'a str>,
    requester: Requester<'a>,
}

async fn record(conn: &mut PgConnection, row: NewTransaction<'_>) -> DbResult<Transaction> {
    let status = if row.failure.is_some() { TransactionStatus::Fail } else { TransactionStatus::Success };
    let recorded = sqlx::query_as::<_, TransactionRow>(
        "INSERT INTO transactions
             (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
              idempotency_key, recorded_by)
         VALUES ($1, clock_timestamp(), $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)
         RETURNING id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
                   recorded_by",
    )
    .bind(Uuid::now_v7())
    .bind(row.kind.as_str())
    .bind(row.src_account_id)
    .bind(row.dst_account_id)
    .bind(row.amount.value())
    .bind(row.direction.as_str())
    .bind(status.as_str())
    .bind(row.failure)
    .bind(row.description)
    .bind(row.requester.key.map(IdempotencyKey::as_str))
    .bind(row.requester.client)
    .fetch_one(&mut *conn)
    .await?;
    Ok(recorded.into())
}

async fn transfer(conn: &mut PgConnection, t: &TransferCommand, requester: Requester<'_>) -> DbResult<Transaction> {
    let (payer, payee) = match t.direction {
        Direction::Debit => (t.src_account_id, t.dst_account_id),
        Direction::Credit => (t.dst_account_id, t.src_account_id),
    };
    let balances = lock_accounts(conn, &[payer, payee]).await?;
    let failure = match settle(balances[0], balances[1], t.amount) {
        Settlement::Moved { payer_after, payee_after } => {
            set_balance(conn, payer, payer_after).await?;
            set_balance(conn, payee, payee_after).await?;
            None
        }
        Settlement::InsufficientFunds => Some(INSUFFICIENT_FUNDS),
    };
    record(
        conn,
        NewTransaction {
            kind: TransactionKind::Transfer,
            src_account_id: Some(t.src_account_id),
            dst_account_id: t.dst_account_id,
            amount: t.amount,
            direction: t.direction,
            failure,
            description: None,
            requester,
        },
    )
    .await
}

async fn bank_transaction(conn: &mut PgConnection, b: &BankCommand, requester: Requester<'_>) -> DbResult<Transaction> {
    let balances = lock_accounts(conn, &[b.account_id]).await?;
    let failure = match settle_with_bank(balances[0], b.amount, b.direction) {
        Some(after) => {
            set_balance(conn, b.account_id, after).await?;
            None
        }
        None => Some(INSUFFICIENT_FUNDS),
    };
    record(
        conn,
        NewTransaction {
            kind: TransactionKind::Bank,
            src_account_id: None,
            dst_account_id: b.account_id,
            amount: b.amount,
            direction: b.direction,
            failure,
            description: b.description.as_deref(),
            requester,
        },
    )
    .await
}
