//! Group commit: concurrent transfers and bank transactions are applied in batches, one database transaction
//! (and one WAL flush) per batch.
//!
//! Requests queue for a few committer tasks. A free committer takes every request waiting, up to the batch
//! limit, with no fixed wait: one client alone gets a batch of one, as fast as before; many clients share each
//! commit. In one database transaction the committer:
//!
//! 1. takes a non-blocking advisory lock per idempotency key (named `client || ' ' || key`; the single-request
//!    path takes the same lock, waiting), so a key in flight elsewhere never blocks the batch: that request runs
//!    on its own afterwards; and claims the keys it locked, in the same statement. A key already used answers
//!    its stored response (or `KeyReused`). From here a batch with keys waits for any lock at most
//!    `IDEMPOTENCY_WAIT` (one without keys, the statement timeout); past it, the batch runs request by request;
//! 3. locks every account of the batch in id order in one statement (the order every writer uses, so batches,
//!    single requests and other instances never deadlock);
//! 4. applies the requests in arrival order in memory, each against the running balances, so an insufficient
//!    balance is recorded as `fail` exactly as before; a missing account is that request's 404 and its key is
//!    released;
//! 5. writes the balances and the transaction rows in one statement, the keys' responses in another, and
//!    commits: six round trips for a batch with keys, four without, however many requests it holds.
//!
//! A retryable error (serialization, deadlock) runs the batch again; any other error before the commit runs
//! each request of the batch on its own, so one bad request never fails its batch-mates. An error of the commit
//! itself is every request's error: the commit may have happened, and only a retry with the same key can tell.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ledger_contract::{Direction, Transaction, TransactionKind, TransactionStatus};
use money::Amount;
use prometheus::{Histogram, IntGauge};
use rust_decimal::Decimal;
use service_kit::IdempotencyKey;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::idempotency::StoredResponse;
use super::ledger::{
    self, to_json, BankCommand, Command, Outcome, Reply, Requester, TransactionRow, TransferCommand,
    TRANSACTION_COLUMNS,
};
use super::{DbError, DbResult};
use crate::domain::transfer::{settle, settle_with_bank, Settlement, INSUFFICIENT_FUNDS};

/// How batches are made.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Committer tasks, each holding at most one database connection at a time.
    pub committers: usize,
    /// The most requests in one batch.
    pub max_batch: usize,
    /// Requests that may wait for a committer; beyond, a request waits for room.
    pub queue: usize,
    /// How long a request run on its own waits for its key held by another (`IDEMPOTENCY_WAIT`).
    pub key_wait: Duration,
}

/// What a committer applies: the commands that move money. Accounts are created on their own.
#[derive(Debug, Clone)]
pub enum Queued {
    Transfer(TransferCommand),
    Bank(BankCommand),
}

impl Queued {
    fn command(&self) -> Command {
        match self {
            Self::Transfer(t) => Command::Transfer(t.clone()),
            Self::Bank(b) => Command::Bank(b.clone()),
        }
    }
}

/// One request waiting for a committer.
struct Job {
    command: Queued,
    client: Arc<str>,
    key: Option<IdempotencyKey>,
    reply_status: u16,
    reply: oneshot::Sender<DbResult<Reply>>,
}

impl Job {
    fn requester(&self) -> Requester<'_> {
        Requester { client: &self.client, key: self.key.as_ref() }
    }
}

/// What the committers report: the size of every batch, and how many requests wait for a committer.
#[derive(Clone)]
pub struct BatchMetrics {
    pub sizes: Histogram,
    pub waiting: IntGauge,
}

/// The queue in front of the committers.
#[derive(Clone)]
pub struct Committer {
    jobs: mpsc::Sender<Job>,
    metrics: BatchMetrics,
}

impl Committer {
    /// Starts `settings.committers` committer tasks on `pool`.
    pub fn start(pool: PgPool, settings: BatchSettings, metrics: BatchMetrics) -> Self {
        let (jobs, queue) = mpsc::channel(settings.queue.max(1));
        let queue = Arc::new(Mutex::new(queue));
        for _ in 0..settings.committers.max(1) {
            tokio::spawn(commit_loop(pool.clone(), Arc::clone(&queue), settings, metrics.clone()));
        }
        Self { jobs, metrics }
    }

    /// Runs a transfer or a bank transaction in the next batch and answers as [`ledger::execute`] would.
    pub async fn submit(&self, command: Queued, requester: Requester<'_>, reply_status: u16) -> DbResult<Reply> {
        let (reply, answer) = oneshot::channel();
        let job =
            Job { command, client: Arc::from(requester.client), key: requester.key.cloned(), reply_status, reply };
        let stopped = || DbError::Inconsistent("the committers have stopped".into());
        self.metrics.waiting.inc();
        if self.jobs.send(job).await.is_err() {
            self.metrics.waiting.dec();
            return Err(stopped());
        }
        answer.await.map_err(|_| stopped())?
    }
}

async fn commit_loop(
    pool: PgPool,
    queue: Arc<Mutex<mpsc::Receiver<Job>>>,
    settings: BatchSettings,
    metrics: BatchMetrics,
) {
    loop {
        let batch = {
            let mut queue = queue.lock().await;
            let Some(first) = queue.recv().await else { return };
            let mut batch = vec![first];
            while batch.len() < settings.max_batch {
                match queue.try_recv() {
                    Ok(job) => batch.push(job),
                    Err(_) => break,
                }
            }
            batch
        };
        metrics.waiting.sub(batch.len() as i64);
        metrics.sizes.observe(batch.len() as f64);
        run_batch(&pool, batch, settings).await;
    }
}

/// What the batch decided for one request.
enum Decided {
    Reply(DbResult<Reply>),
    /// Its key is held elsewhere: it runs on its own after the batch, waiting for the key as usual.
    Alone,
}

/// Why a batch did not commit.
enum BatchError {
    /// Before the commit: nothing happened, the batch can run again or request by request.
    Before(DbError),
    /// The commit itself failed: it may have happened.
    AtCommit(DbError),
}

impl From<sqlx::Error> for BatchError {
    fn from(error: sqlx::Error) -> Self {
        Self::Before(error.into())
    }
}

impl From<DbError> for BatchError {
    fn from(error: DbError) -> Self {
        Self::Before(error)
    }
}

async fn run_batch(pool: &PgPool, batch: Vec<Job>, settings: BatchSettings) {
    // A second request with a key already in this batch runs after it, and so replays the first's response.
    let mut keys = HashSet::new();
    let (mut work, mut alone): (Vec<Job>, Vec<Job>) = (Vec::new(), Vec::new());
    for job in batch {
        let first_use = job.key.as_ref().is_none_or(|key| keys.insert((job.client.clone(), key.as_str().to_owned())));
        if first_use {
            work.push(job);
        } else {
            alone.push(job);
        }
    }
    let mut attempt = 1;
    let applied = loop {
        match apply(pool, &work, settings.key_wait).await {
            Err(BatchError::Before(DbError::Sqlx(error)))
                if attempt < super::MAX_ATTEMPTS && super::is_retryable(&error) =>
            {
                tracing::info!(attempt, %error, size = work.len(), "retrying the batch");
                attempt += 1;
            }
            result => break result,
        }
    };
    match applied {
        Ok(decided) => {
            for (job, decided) in work.into_iter().zip(decided) {
                match decided {
                    Decided::Reply(result) => {
                        let _ = job.reply.send(result);
                    }
                    Decided::Alone => alone.push(job),
                }
            }
        }
        Err(BatchError::Before(error)) => {
            tracing::warn!(%error, size = work.len(), "the batch failed before its commit; running its requests one by one");
            alone.splice(0..0, work);
        }
        Err(BatchError::AtCommit(error)) => {
            tracing::warn!(%error, size = work.len(), "the batch's commit failed; it may have happened");
            let message = error.to_string();
            for job in work {
                let _ = job.reply.send(Err(DbError::CommitUnknown(message.clone())));
            }
        }
    }
    for job in alone {
        let command = job.command.command();
        let result = ledger::execute(pool, &command, job.requester(), settings.key_wait, job.reply_status).await;
        let _ = job.reply.send(result);
    }
}

/// The row a request writes into `transactions`.
struct NewRow {
    id: Uuid,
    kind: TransactionKind,
    src_account_id: Option<Uuid>,
    dst_account_id: Uuid,
    amount: Amount,
    direction: Direction,
    status: TransactionStatus,
    reason: Option<&'static str>,
    description: Option<String>,
    key: Option<String>,
    client: String,
}

async fn apply(pool: &PgPool, work: &[Job], key_wait: Duration) -> Result<Vec<Decided>, BatchError> {
    let mut decided: Vec<Option<Decided>> = work.iter().map(|_| None).collect();
    let mut tx = pool.begin().await?;

    // 1. The keys: held elsewhere → alone; used before → replay or KeyReused; new → claimed.
    let keyed: Vec<usize> = (0..work.len()).filter(|&i| work[i].key.is_some()).collect();
    let mut used: Vec<usize> = Vec::new();
    for (i, claim) in keyed.iter().copied().zip(claim_keys(&mut tx, work, &keyed, key_wait).await?) {
        match claim {
            Claim::Elsewhere => decided[i] = Some(Decided::Alone),
            Claim::Used => used.push(i),
            Claim::Fresh => {}
        }
    }
    for (i, answer) in stored_answers(&mut tx, work, &used).await? {
        decided[i] = Some(Decided::Reply(answer));
    }

    // 2. Lock every account of the requests still to apply, in id order, in one statement.
    let pending: Vec<usize> = (0..work.len()).filter(|&i| decided[i].is_none()).collect();
    let mut ids: Vec<Uuid> = pending.iter().flat_map(|&i| accounts_of(&work[i].command)).collect();
    ids.sort_unstable();
    ids.dedup();
    let locked: Vec<(Uuid, Decimal)> =
        sqlx::query_as("SELECT id, balance FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .fetch_all(&mut *tx)
            .await?;
    let mut balances: HashMap<Uuid, Decimal> = locked.into_iter().collect();
    let mut changed: HashSet<Uuid> = HashSet::new();

    // 3. Apply in arrival order against the running balances.
    let mut rows: Vec<(usize, NewRow)> = Vec::new();
    let mut released: Vec<usize> = Vec::new();
    for &i in &pending {
        let job = &work[i];
        match settle_in_memory(&job.command, &mut balances, &mut changed) {
            Err(missing) => {
                decided[i] = Some(Decided::Reply(Err(DbError::AccountNotFound(missing))));
                if job.key.is_some() {
                    released.push(i);
                }
            }
            Ok(failure) => rows.push((i, new_row(job, failure))),
        }
    }

    // 4. Write balances and rows in one statement, the keys' responses in another, and release the keys of 404s.
    let recorded = write_rows(&mut tx, &rows, &balances, &changed).await?;
    let mut responses: Vec<(usize, StoredResponse)> = Vec::new();
    for (i, row) in &rows {
        let transaction = recorded
            .get(&row.id)
            .cloned()
            .ok_or_else(|| DbError::Inconsistent(format!("transaction {} was not returned by its insert", row.id)))?;
        let response = StoredResponse { status_code: work[*i].reply_status, body: to_json(&transaction)? };
        responses.push((*i, response.clone()));
        decided[*i] = Some(Decided::Reply(Ok(Reply { response, outcome: Some(Outcome::from(transaction.status)) })));
    }
    store_responses(&mut tx, work, &responses).await?;
    release_keys(&mut tx, work, &released).await?;
    tx.commit().await.map_err(|error| BatchError::AtCommit(error.into()))?;
    decided
        .into_iter()
        .map(|decided| {
            decided.ok_or_else(|| BatchError::Before(DbError::Inconsistent("a request was left undecided".into())))
        })
        .collect()
}

fn accounts_of(command: &Queued) -> Vec<Uuid> {
    match command {
        Queued::Transfer(t) => vec![t.src_account_id, t.dst_account_id],
        Queued::Bank(b) => vec![b.account_id],
    }
}

/// Applies one request to the running balances: `Err(account)` when an account does not exist (the first
/// missing one, payer before payee, as the single path reports it), else the failure reason, if any.
fn settle_in_memory(
    command: &Queued,
    balances: &mut HashMap<Uuid, Decimal>,
    changed: &mut HashSet<Uuid>,
) -> Result<Option<&'static str>, Uuid> {
    match command {
        Queued::Transfer(t) => {
            let (payer, payee) = match t.direction {
                Direction::Debit => (t.src_account_id, t.dst_account_id),
                Direction::Credit => (t.dst_account_id, t.src_account_id),
            };
            let payer_balance = *balances.get(&payer).ok_or(payer)?;
            let payee_balance = *balances.get(&payee).ok_or(payee)?;
            match settle(payer_balance, payee_balance, t.amount) {
                Settlement::Moved { payer_after, payee_after } => {
                    balances.insert(payer, payer_after);
                    balances.insert(payee, payee_after);
                    changed.extend([payer, payee]);
                    Ok(None)
                }
                Settlement::InsufficientFunds => Ok(Some(INSUFFICIENT_FUNDS)),
            }
        }
        Queued::Bank(b) => {
            let balance = *balances.get(&b.account_id).ok_or(b.account_id)?;
            match settle_with_bank(balance, b.amount, b.direction) {
                Some(after) => {
                    balances.insert(b.account_id, after);
                    changed.insert(b.account_id);
                    Ok(None)
                }
                None => Ok(Some(INSUFFICIENT_FUNDS)),
            }
        }
    }
}

fn new_row(job: &Job, failure: Option<&'static str>) -> NewRow {
    let status = if failure.is_some() { TransactionStatus::Fail } else { TransactionStatus::Success };
    let (kind, src, dst, amount, direction, description) = match &job.command {
        Queued::Transfer(t) => {
            (TransactionKind::Transfer, Some(t.src_account_id), t.dst_account_id, t.amount, t.direction, None)
        }
        Queued::Bank(b) => (TransactionKind::Bank, None, b.account_id, b.amount, b.direction, b.description.clone()),
    };
    NewRow {
        id: Uuid::now_v7(),
        kind,
        src_account_id: src,
        dst_account_id: dst,
        amount,
        direction,
        status,
        reason: failure,
        description,
        key: job.key.as_ref().map(|key| key.as_str().to_owned()),
        client: job.client.to_string(),
    }
}

/// The clients and keys of the requests at `indexes` (each with a key), as two aligned columns for `unnest`.
fn key_columns(work: &[Job], indexes: impl Iterator<Item = usize>) -> (Vec<&str>, Vec<&str>) {
    indexes.filter_map(|i| Some((&*work[i].client, work[i].key.as_ref()?.as_str()))).unzip()
}

/// What claiming one key in a batch found.
enum Claim {
    /// Its advisory lock is held by another transaction: the key is in flight elsewhere.
    Elsewhere,
    /// The key was used before (its row is committed).
    Used,
    /// The key is new and now this batch's.
    Fresh,
}

/// Takes the keys' advisory locks without waiting and claims those it got, in one statement, with the batch's
/// lock timeout set first (`key_wait`): a key row written without its advisory lock (by a version before group
/// commit, during a rolling deploy) makes the claim wait at most that long, and then the batch runs request by
/// request.
async fn claim_keys(
    conn: &mut PgConnection,
    work: &[Job],
    keyed: &[usize],
    key_wait: Duration,
) -> sqlx::Result<Vec<Claim>> {
    if keyed.is_empty() {
        return Ok(Vec::new());
    }
    let (clients, keys) = key_columns(work, keyed.iter().copied());
    let hashes: Vec<Vec<u8>> = keyed.iter().map(|&i| work[i].command.command().fingerprint()).collect();
    let claims: Vec<(bool, bool)> = sqlx::query_as(
        "WITH settings AS (SELECT set_config('lock_timeout', $4, true)),
              requests AS (
                 SELECT k.i, k.client, k.key, k.hash,
                        pg_try_advisory_xact_lock(hashtextextended(k.client || ' ' || k.key, 0)) AS locked
                 FROM settings, unnest($1::text[], $2::text[], $3::bytea[]) WITH ORDINALITY AS k (client, key, hash, i)),
              claimed AS (
                 INSERT INTO idempotency_keys (client, key, request_hash, status_code, response_body)
                 SELECT client, key, hash, 0, '' FROM requests WHERE locked
                 ON CONFLICT (client, key) DO NOTHING
                 RETURNING client, key)
         SELECT r.locked, c.key IS NOT NULL
         FROM requests r LEFT JOIN claimed c ON c.client = r.client AND c.key = r.key
         ORDER BY r.i",
    )
    .bind(&clients)
    .bind(&keys)
    .bind(&hashes)
    .bind(key_wait.as_millis().to_string())
    .fetch_all(&mut *conn)
    .await?;
    Ok(claims
        .into_iter()
        .map(|(locked, fresh)| match (locked, fresh) {
            (false, _) => Claim::Elsewhere,
            (true, false) => Claim::Used,
            (true, true) => Claim::Fresh,
        })
        .collect())
}

/// The answers of requests whose key was used before: the stored response, or `KeyReused`.
async fn stored_answers(
    conn: &mut PgConnection,
    work: &[Job],
    used: &[usize],
) -> sqlx::Result<Vec<(usize, DbResult<Reply>)>> {
    if used.is_empty() {
        return Ok(Vec::new());
    }
    let (clients, keys) = key_columns(work, used.iter().copied());
    let stored: Vec<(String, String, Vec<u8>, i16, String)> = sqlx::query_as(
        "SELECT s.client, s.key, s.request_hash, s.status_code, s.response_body
         FROM idempotency_keys s JOIN unnest($1::text[], $2::text[]) AS k (client, key)
           ON s.client = k.client AND s.key = k.key",
    )
    .bind(&clients)
    .bind(&keys)
    .fetch_all(&mut *conn)
    .await?;
    let stored: HashMap<(String, String), (Vec<u8>, i16, String)> =
        stored.into_iter().map(|(client, key, hash, status, body)| ((client, key), (hash, status, body))).collect();
    Ok(used
        .iter()
        .map(|&i| {
            let job = &work[i];
            let key = job.key.as_ref().map(|key| key.as_str().to_owned()).unwrap_or_default();
            let answer = match stored.get(&(job.client.to_string(), key)) {
                None => Err(DbError::Inconsistent("a key that was taken has no row".into())),
                Some((hash, _, _)) if *hash != job.command.command().fingerprint() => Err(DbError::KeyReused),
                Some((_, status, body)) => {
                    StoredResponse::committed(*status, body.clone()).map(|response| Reply { response, outcome: None })
                }
            };
            (i, answer)
        })
        .collect())
}

/// Writes the changed balances and inserts the rows, in one statement; returns the rows as recorded.
async fn write_rows(
    conn: &mut PgConnection,
    rows: &[(usize, NewRow)],
    balances: &HashMap<Uuid, Decimal>,
    changed: &HashSet<Uuid>,
) -> sqlx::Result<HashMap<Uuid, Transaction>> {
    if rows.is_empty() {
        return Ok(HashMap::new());
    }
    let mut changed: Vec<Uuid> = changed.iter().copied().collect();
    changed.sort_unstable();
    let values: Vec<Decimal> = changed.iter().map(|id| balances.get(id).copied().unwrap_or_default()).collect();
    let column = |f: fn(&NewRow) -> Option<String>| -> Vec<Option<String>> { rows.iter().map(|(_, r)| f(r)).collect() };
    let ids: Vec<Uuid> = rows.iter().map(|(_, r)| r.id).collect();
    let kinds = column(|r| Some(r.kind.as_str().to_owned()));
    let sources: Vec<Option<Uuid>> = rows.iter().map(|(_, r)| r.src_account_id).collect();
    let targets: Vec<Uuid> = rows.iter().map(|(_, r)| r.dst_account_id).collect();
    let amounts: Vec<Decimal> = rows.iter().map(|(_, r)| r.amount.value()).collect();
    let directions = column(|r| Some(r.direction.as_str().to_owned()));
    let statuses = column(|r| Some(r.status.as_str().to_owned()));
    let reasons = column(|r| r.reason.map(str::to_owned));
    let descriptions = column(|r| r.description.clone());
    let keys = column(|r| r.key.clone());
    let clients = column(|r| Some(r.client.clone()));
    let sql = format!(
        "WITH moved AS (
             UPDATE accounts a SET balance = v.balance, updated_at = clock_timestamp()
             FROM unnest($12::uuid[], $13::numeric[]) AS v (id, balance) WHERE a.id = v.id)
         INSERT INTO transactions AS t
             (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason, description,
              idempotency_key, recorded_by)
         SELECT id, clock_timestamp(), kind, src, dst, amount, direction, status, reason, description, key, client
         FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::numeric[], $6::text[], $7::text[],
                     $8::text[], $9::text[], $10::text[], $11::text[])
              WITH ORDINALITY AS r (id, kind, src, dst, amount, direction, status, reason, description, key, client, i)
         ORDER BY i
         RETURNING {TRANSACTION_COLUMNS}"
    );
    let recorded: Vec<TransactionRow> = sqlx::query_as(&sql)
        .bind(&ids)
        .bind(&kinds)
        .bind(&sources)
        .bind(&targets)
        .bind(&amounts)
        .bind(&directions)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&descriptions)
        .bind(&keys)
        .bind(&clients)
        .bind(&changed)
        .bind(&values)
        .fetch_all(&mut *conn)
        .await?;
    Ok(recorded
        .into_iter()
        .map(Transaction::from)
        .map(|transaction| (transaction.transaction_id, transaction))
        .collect())
}

async fn store_responses(
    conn: &mut PgConnection,
    work: &[Job],
    responses: &[(usize, StoredResponse)],
) -> sqlx::Result<()> {
    let keyed: Vec<&(usize, StoredResponse)> = responses.iter().filter(|(i, _)| work[*i].key.is_some()).collect();
    if keyed.is_empty() {
        return Ok(());
    }
    let (clients, keys) = key_columns(work, keyed.iter().map(|(i, _)| *i));
    let statuses: Vec<i16> = keyed.iter().map(|(_, response)| response.status_code as i16).collect();
    let bodies: Vec<&str> = keyed.iter().map(|(_, response)| response.body.as_str()).collect();
    sqlx::query(
        "UPDATE idempotency_keys s SET status_code = v.status, response_body = v.body
         FROM unnest($1::text[], $2::text[], $3::int2[], $4::text[]) AS v (client, key, status, body)
         WHERE s.client = v.client AND s.key = v.key",
    )
    .bind(&clients)
    .bind(&keys)
    .bind(&statuses)
    .bind(&bodies)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Releases the keys of requests that recorded nothing (an account does not exist), as a rolled-back single
/// request would.
async fn release_keys(conn: &mut PgConnection, work: &[Job], released: &[usize]) -> sqlx::Result<()> {
    if released.is_empty() {
        return Ok(());
    }
    let (clients, keys) = key_columns(work, released.iter().copied());
    sqlx::query(
        "DELETE FROM idempotency_keys s USING unnest($1::text[], $2::text[]) AS v (client, key)
         WHERE s.client = v.client AND s.key = v.key",
    )
    .bind(&clients)
    .bind(&keys)
    .execute(&mut *conn)
    .await?;
    Ok(())
}
