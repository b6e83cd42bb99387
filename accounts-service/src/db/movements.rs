//! The one path money moves through: transfers, bank transactions and holds (placed, captured, voided, expired),
//! applied as a group in one database transaction. A request on its own is a group of one; the committer
//! (`crate::committer`) gathers concurrent requests into bigger groups, so that they share one commit (one WAL
//! flush). Either way, in one transaction:
//!
//! 1. the keys are claimed in one statement ([`idempotency::claim_keys`]): a key used before answers its stored
//!    response (or `KeyReused`); a key in flight elsewhere makes a request on its own wait for it, and leaves a
//!    request of a batch to run on its own after the batch;
//! 2. the holds the group ends are locked in id order, then every account of the group (the holds' own
//!    included), in one statement each (the orders every writer uses, so groups, single requests, the expiry task
//!    and other instances never deadlock); a batch that ends no hold claims its keys and locks its accounts in
//!    one statement ([`claim_and_lock`]);
//! 3. the requests are applied in arrival order against the running balances and held amounts ([`Balances`]), so
//!    an insufficient available balance is recorded as `fail` exactly as for a request alone; a refusal (a
//!    missing account or hold, a hold already ended, a capture over the hold) is that request's error, and its
//!    key is released;
//! 4. the balances and the transaction rows, each with the balances after it of the accounts it touched (the
//!    running balances of step 3, which make every account's book: `db::statements`), and the rows' events are
//!    written in one statement, the new and ended holds in one each, their events in one, the responses of keys
//!    not answered by their row (holds) in another, and the transaction commits. A transfer's or bank
//!    transaction's key needs no response stored: its replay is rebuilt from the row written under it.
//!
//! An account's rows are dated after its lock is taken, and the lock is held until the commit: the next writer of
//! that account dates its rows later. So one account's rows commit in `(created_at, id)` order (ids are UUIDv7,
//! ordered within the process, given in arrival order), the order its balances-after follow.
//!
//! A retryable error (serialization, deadlock) runs the group again. What any other error means is the
//! caller's to decide ([`GroupError`]): before the commit nothing happened; at the commit it may have.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use events::outbox::Body;
use events::NewEvent;
use ledger_contract::{events as types, Direction, Hold, HoldStatus, Transaction, TransactionKind, TransactionStatus};
use money::Amount;
use rust_decimal::Decimal;
use service_kit::IdempotencyKey;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::holds::{self, EndedHold, NewHold};
use super::idempotency::{self, Answered, Claim, ClientKey, KeyLock, StoredResponse};
use super::ledger::{event_of, to_json, Outcome, Reply, TransactionRow, TRANSACTION_COLUMNS};
use super::{DbError, DbResult};
use crate::domain::book::Side;
use crate::domain::transfer::{Balances, Decision, Funds, HoldState, Movement};

/// A request that moves or reserves money, with who asks and under which key.
#[derive(Debug, Clone)]
pub struct MoneyRequest {
    pub movement: Movement,
    /// The client's name, recorded with the transaction; its keys are its own.
    pub client: Arc<str>,
    pub key: Option<IdempotencyKey>,
    /// The HTTP status a new outcome is answered (and stored) with.
    pub reply_status: u16,
}

impl MoneyRequest {
    fn client_key(&self) -> Option<ClientKey<'_>> {
        self.key.as_ref().map(|key| ClientKey { client: &self.client, key })
    }

    /// The key's text, as rows record it.
    fn key_text(&self) -> Option<&str> {
        self.key.as_ref().map(IdempotencyKey::as_str)
    }

    /// How its key is answered on a replay: by the one transaction row a transfer or a bank transaction writes
    /// under it, or by a response stored with the key (a hold's answer is the hold, which changes later).
    fn answered(&self) -> Answered {
        match self.movement {
            Movement::Transfer(_) | Movement::Bank(_) => Answered::ByRow(self.reply_status),
            Movement::Hold(_) | Movement::Capture(_) | Movement::Release { .. } => Answered::Stored,
        }
    }
}

/// What a group decided for one of its requests.
#[derive(Debug)]
pub enum Decided {
    Reply(DbResult<Reply>),
    /// Its key is in flight in another transaction (only when keys are claimed with [`KeyLock::Try`]).
    Elsewhere,
}

/// Why a group did not commit.
#[derive(Debug)]
pub enum GroupError {
    /// Before the commit: nothing happened; the requests may run again.
    Before(DbError),
    /// The commit itself failed: it may have happened, and only a retry with the same key can tell.
    AtCommit(DbError),
}

impl std::fmt::Display for GroupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Before(error) => write!(f, "{error}"),
            Self::AtCommit(error) => write!(f, "at the commit: {error}"),
        }
    }
}

impl From<DbError> for GroupError {
    fn from(error: DbError) -> Self {
        Self::Before(error)
    }
}

impl From<sqlx::Error> for GroupError {
    fn from(error: sqlx::Error) -> Self {
        Self::Before(error.into())
    }
}

/// Runs one request on its own: a group of one whose key, if another transaction holds it, is waited for (at
/// most `key_wait`, then [`DbError::KeyInFlight`]).
pub async fn apply_alone(pool: &PgPool, request: &MoneyRequest, key_wait: Duration) -> DbResult<Reply> {
    let mut conn = pool.acquire().await?;
    match apply_group(&mut conn, &[request], KeyLock::Wait(key_wait)).await {
        Ok(mut decided) => match (decided.pop(), decided.is_empty()) {
            (Some(Decided::Reply(reply)), true) => reply,
            (other, _) => Err(DbError::Inconsistent(format!("a group of one decided {other:?}"))),
        },
        Err(GroupError::Before(error)) => Err(error),
        Err(GroupError::AtCommit(error)) => Err(DbError::CommitUnknown(error.to_string())),
    }
}

/// Applies `requests` in one database transaction on `conn` (run again, a bounded number of times, when
/// PostgreSQL asks for a retry) and decides each of them, in order.
pub async fn apply_group(
    conn: &mut PgConnection,
    requests: &[&MoneyRequest],
    lock: KeyLock,
) -> Result<Vec<Decided>, GroupError> {
    let mut attempt = 1;
    loop {
        match apply_once(conn, requests, lock).await {
            Err(GroupError::Before(error)) if super::again(&mut attempt, &error, error.is_retryable()) => {}
            result => return result,
        }
    }
}

async fn apply_once(
    conn: &mut PgConnection,
    requests: &[&MoneyRequest],
    lock: KeyLock,
) -> Result<Vec<Decided>, GroupError> {
    let mut decided: Vec<Option<Decided>> = requests.iter().map(|_| None).collect();
    let mut tx = sqlx::Connection::begin(conn).await?;
    let (answers, mut balances) = claim_and_lock(&mut tx, requests, lock).await?;
    for (i, answer) in answers {
        decided[i] = Some(answer);
    }
    let pending: Vec<usize> = (0..requests.len()).filter(|&i| decided[i].is_none()).collect();
    let mut work = Work::default();
    let mut released: Vec<ClientKey<'_>> = Vec::new();
    for &i in &pending {
        let request = requests[i];
        match balances.apply(&request.movement) {
            Err(refusal) => {
                decided[i] = Some(Decided::Reply(Err(refusal.into())));
                released.extend(request.client_key());
            }
            Ok(decision) => {
                if !work.add(i, request, decision, &balances)? {
                    let response = StoredResponse { status_code: 204, body: String::new() };
                    decided[i] = Some(Decided::Reply(Ok(Reply { response, outcome: None })));
                }
            }
        }
    }

    let mut transactions = write_rows(&mut tx, &work.rows, &balances).await?;
    let mut holds = holds::write(&mut tx, &work.placed, &work.ended).await?;
    let (mut news, event_of_hold) = work.hold_events(&holds)?;
    events::outbox::write(&mut tx, &news).await?;
    // A hold's answer is its view, which its event already holds, serialized the same way: taken, not
    // serialized again.
    let mut hold_view = |id: Uuid| -> DbResult<String> {
        let n = *event_of_hold.get(&id).ok_or_else(|| DbError::Inconsistent(format!("hold {id} has no event")))?;
        match std::mem::replace(&mut news[n].body, Body::Data(String::new())) {
            Body::Data(view) => Ok(view),
            Body::Subject(_) => Err(DbError::Inconsistent(format!("the event of hold {id} holds no view"))),
        }
    };
    let mut stored: Vec<(ClientKey<'_>, StoredResponse)> = Vec::new();
    for (i, answer) in work.answers {
        let missing =
            |what: &str, id: Uuid| DbError::Inconsistent(format!("{what} {id} was not returned by its write"));
        let (body, outcome, by_row) = match answer {
            Answer::Transaction(id) => {
                let transaction = transactions.remove(&id).ok_or_else(|| missing("transaction", id))?;
                (to_json(&transaction)?, Outcome::from(transaction.status), true)
            }
            Answer::Hold(id) => {
                let hold = holds.remove(&id).ok_or_else(|| missing("hold", id))?;
                let outcome =
                    if hold.status == HoldStatus::Fail { Outcome::InsufficientFunds } else { Outcome::Success };
                (hold_view(id)?, outcome, false)
            }
        };
        let response = StoredResponse { status_code: requests[i].reply_status, body };
        match (requests[i].client_key(), requests[i].answered()) {
            (Some(key), Answered::Stored) => stored.push((key, response.clone())),
            (Some(_), Answered::ByRow(_)) if !by_row => {
                return Err(DbError::Inconsistent("a key answered by its row was answered otherwise".into()).into())
            }
            _ => {}
        }
        decided[i] = Some(Decided::Reply(Ok(Reply { response, outcome: Some(outcome) })));
    }
    let (keys, responses): (Vec<ClientKey<'_>>, Vec<&StoredResponse>) = stored.iter().map(|(k, r)| (*k, r)).unzip();
    idempotency::store_responses(&mut tx, &keys, &responses).await?;
    idempotency::release_keys(&mut tx, &released).await?;
    tx.commit().await.map_err(|error| GroupError::AtCommit(error.into()))?;
    decided
        .into_iter()
        .map(|decided| decided.ok_or_else(|| DbError::Inconsistent("a request was left undecided".into()).into()))
        .collect()
}

/// What a request's response is made of, once written.
enum Answer {
    Transaction(Uuid),
    Hold(Uuid),
}

/// What a group writes: transaction rows, new holds, ended holds, and each request's answer.
#[derive(Default)]
struct Work<'a> {
    rows: Vec<NewRow>,
    placed: Vec<NewHold<'a>>,
    ended: Vec<EndedHold<'a>>,
    answers: Vec<(usize, Answer)>,
}

impl<'a> Work<'a> {
    /// Adds what `decision` writes for request `i` (just applied to `balances`), and what will answer it; `false`
    /// when there is nothing to write or answer (an expiry with nothing to do).
    fn add(&mut self, i: usize, request: &'a MoneyRequest, decision: Decision, balances: &Balances) -> DbResult<bool> {
        let key = request.key_text();
        let answer = match (decision, &request.movement) {
            (Decision::Recorded(failure), _) => {
                let row = NewRow::movement(request, failure, balances)?;
                let id = row.id;
                self.rows.push(row);
                Answer::Transaction(id)
            }
            (Decision::Held(failure), Movement::Hold(command)) => {
                let id = Uuid::now_v7();
                self.placed.push(NewHold { id, command, failure, key, client: &request.client });
                Answer::Hold(id)
            }
            (Decision::Ended { hold, status, captured, to, released }, _) => {
                let capture =
                    captured.map(|amount| NewRow::capture(request, &hold, amount, to, balances)).transpose()?;
                let release = released.map(|amount| NewRow::release(request, &hold, amount, balances)).transpose()?;
                self.ended.push(EndedHold {
                    id: hold.id,
                    settled_at: hold.locked_at,
                    status,
                    captured: captured.map(Amount::value),
                    capture_transaction_id: capture.as_ref().map(|row| row.id),
                    release_transaction_id: release.as_ref().map(|row| row.id),
                    client: &request.client,
                });
                self.rows.extend(capture.into_iter().chain(release));
                Answer::Hold(hold.id)
            }
            (Decision::Nothing, _) => return Ok(false),
            (decision @ Decision::Held(_), movement) => {
                return Err(DbError::Inconsistent(format!("{decision:?} decided for {movement:?}")))
            }
        };
        self.answers.push((i, answer));
        Ok(true)
    }

    /// The events of the holds placed or ended (each with the hold's view), in the order of their writes, and
    /// which event carries each hold. The rows' events are written with the rows ([`write_rows`]), before these.
    fn hold_events(&self, holds: &HashMap<Uuid, Hold>) -> DbResult<(Vec<NewEvent>, HashMap<Uuid, usize>)> {
        let mut news = Vec::with_capacity(self.placed.len() + self.ended.len());
        let mut of_hold = HashMap::with_capacity(self.placed.len() + self.ended.len());
        for id in self.placed.iter().map(|h| h.id).chain(self.ended.iter().map(|h| h.id)) {
            let hold = holds
                .get(&id)
                .ok_or_else(|| DbError::Inconsistent(format!("hold {id} was written without its view")))?;
            of_hold.insert(id, news.len());
            news.push(event_of(types::of_hold(hold.status), hold)?);
        }
        Ok((news, of_hold))
    }
}

/// Claims the keys of the keyed requests, answers those whose key was used before or is held elsewhere, and locks
/// what the others need ([`lock_money`]).
///
/// A group that claims its keys without waiting ([`KeyLock::Try`], a batch) and ends no hold (whose locks would
/// come first) claims and locks its accounts in one statement: a keyed request on its own makes one round trip
/// fewer. That statement locks the accounts of every request of the group, replays included, which only holds a
/// few more locks until the commit.
async fn claim_and_lock(
    conn: &mut PgConnection,
    requests: &[&MoneyRequest],
    lock: KeyLock,
) -> DbResult<(Vec<(usize, Decided)>, Balances)> {
    let keyed: Vec<usize> = (0..requests.len()).filter(|&i| requests[i].key.is_some()).collect();
    let keys: Vec<ClientKey<'_>> = keyed.iter().filter_map(|&i| requests[i].client_key()).collect();
    let hashes: Vec<Vec<u8>> = keyed.iter().map(|&i| requests[i].movement.fingerprint()).collect();
    let answered: Vec<Answered> = keyed.iter().map(|&i| requests[i].answered()).collect();
    let folded = matches!(lock, KeyLock::Try(_)) && requests.iter().all(|r| r.movement.hold_id().is_none());
    let accounts = if folded { account_ids(requests.iter().map(|r| &r.movement), []) } else { Vec::new() };
    let (claims, locked) = idempotency::claim_keys(conn, &keys, &hashes, &answered, lock, &accounts).await?;
    let mut answers = Vec::new();
    let mut used = Vec::new();
    for (n, claim) in claims.into_iter().enumerate() {
        match claim {
            Claim::Elsewhere => answers.push((keyed[n], Decided::Elsewhere)),
            Claim::Used => used.push(n),
            Claim::Fresh => {}
        }
    }
    let used_keys: Vec<ClientKey<'_>> = used.iter().map(|&n| keys[n]).collect();
    let used_hashes: Vec<Vec<u8>> = used.iter().map(|&n| hashes[n].clone()).collect();
    let stored = idempotency::stored_answers(conn, &used_keys, &used_hashes).await?;
    for (n, answer) in used.into_iter().zip(stored) {
        let reply = answer.map(|response| Reply { response, outcome: None });
        answers.push((keyed[n], Decided::Reply(reply)));
    }
    let balances = match locked {
        Some(locked) => Balances::new(locked.into_iter().map(|(id, balance, held)| (id, Funds { balance, held })), []),
        None => {
            let answered: std::collections::HashSet<usize> = answers.iter().map(|(i, _)| *i).collect();
            let pending = (0..requests.len()).filter(|i| !answered.contains(i)).map(|i| &requests[i].movement);
            lock_money(conn, pending).await?
        }
    };
    Ok((answers, balances))
}

/// Every account `movements` touch, and the accounts of `holds`, sorted (the order every writer locks them in),
/// each once.
fn account_ids<'a>(movements: impl Iterator<Item = &'a Movement>, holds: impl IntoIterator<Item = Uuid>) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = movements.flat_map(|m| m.accounts()).chain(holds).collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Locks the holds the requests end, then every account they touch, each in id order (the orders every writer
/// uses: holds before accounts, so two groups never wait on each other in a cycle), in one statement each.
/// `NO KEY UPDATE` is enough to serialize changes of money and does not wait on the key-share locks that
/// inserting a transaction row or a hold takes on its accounts.
async fn lock_money<'a>(conn: &mut PgConnection, movements: impl Iterator<Item = &'a Movement>) -> DbResult<Balances> {
    let movements: Vec<&Movement> = movements.collect();
    let mut hold_ids: Vec<Uuid> = movements.iter().filter_map(|m| m.hold_id()).collect();
    let holds = holds::lock(conn, &mut hold_ids).await?;
    let ids = account_ids(movements.into_iter(), holds.iter().map(|h| h.account_id));
    if ids.is_empty() {
        return Ok(Balances::new([], holds));
    }
    let locked: Vec<(Uuid, Decimal, Decimal)> =
        sqlx::query_as("SELECT id, balance, held FROM accounts WHERE id = ANY($1) ORDER BY id FOR NO KEY UPDATE")
            .bind(&ids)
            .fetch_all(&mut *conn)
            .await?;
    let funds = locked.into_iter().map(|(id, balance, held)| (id, Funds { balance, held }));
    Ok(Balances::new(funds, holds))
}

/// The row a request writes into `transactions`.
struct NewRow {
    id: Uuid,
    kind: TransactionKind,
    src_account_id: Option<Uuid>,
    dst_account_id: Uuid,
    amount: Decimal,
    direction: &'static str,
    status: TransactionStatus,
    reason: Option<&'static str>,
    description: Option<String>,
    key: Option<String>,
    client: String,
    /// The balances of `src_account_id` and `dst_account_id` after this row (unchanged by a failed one).
    src_balance_after: Option<Decimal>,
    dst_balance_after: Decimal,
}

impl NewRow {
    /// The row of a transfer or bank transaction just applied to `balances`.
    fn movement(request: &MoneyRequest, failure: Option<&'static str>, balances: &Balances) -> DbResult<Self> {
        let (kind, src, dst, amount, direction, description) = match &request.movement {
            Movement::Transfer(t) => {
                (TransactionKind::Transfer, Some(t.src_account_id), t.dst_account_id, t.amount, t.direction, None)
            }
            Movement::Bank(b) => {
                (TransactionKind::Bank, None, b.account_id, b.amount, b.direction, b.description.clone())
            }
            other => return Err(DbError::Inconsistent(format!("{other:?} recorded as a transaction"))),
        };
        let key = request.key_text().map(str::to_owned);
        Self::dated(request, (kind, src, dst, amount, direction), failure, description, key, balances)
    }

    /// The capture of `hold`: a transfer of `amount` from its account to `to`, or a bank debit of it; under the
    /// capture's key, so that `transactions/by_key` finds it.
    fn capture(
        request: &MoneyRequest,
        hold: &HoldState,
        amount: Amount,
        to: Option<Uuid>,
        balances: &Balances,
    ) -> DbResult<Self> {
        let parts = match to {
            Some(to) => (TransactionKind::Transfer, Some(hold.account_id), to, amount, Direction::Debit),
            None => (TransactionKind::Bank, None, hold.account_id, amount, Direction::Debit),
        };
        let key = request.key_text().map(str::to_owned);
        Self::dated(request, parts, None, Some(hold.description.clone()), key, balances)
    }

    /// The release of `amount` of `hold`: it moves nothing, and carries no key (the request's answer is the hold).
    fn release(request: &MoneyRequest, hold: &HoldState, amount: Amount, balances: &Balances) -> DbResult<Self> {
        let parts = (TransactionKind::HoldRelease, None, hold.account_id, amount, Direction::Credit);
        Self::dated(request, parts, None, Some(hold.description.clone()), None, balances)
    }

    fn dated(
        request: &MoneyRequest,
        (kind, src_account_id, dst_account_id, amount, direction): (
            TransactionKind,
            Option<Uuid>,
            Uuid,
            Amount,
            Direction,
        ),
        failure: Option<&'static str>,
        description: Option<String>,
        key: Option<String>,
        balances: &Balances,
    ) -> DbResult<Self> {
        let after = |id: Uuid| {
            balances.after(id).ok_or_else(|| DbError::Inconsistent(format!("account {id} was applied but not read")))
        };
        Ok(Self {
            src_balance_after: src_account_id.map(after).transpose()?,
            dst_balance_after: after(dst_account_id)?,
            id: Uuid::now_v7(),
            kind,
            src_account_id,
            dst_account_id,
            amount: amount.value(),
            direction: direction.as_str(),
            status: if failure.is_some() { TransactionStatus::Fail } else { TransactionStatus::Success },
            reason: failure,
            description,
            key,
            client: request.client.to_string(),
        })
    }
}

/// Writes the changed balances (and held amounts) and inserts the rows with their events, in one statement,
/// which also widens the book's bounds of every account the rows touch; returns the rows as recorded, by id. Each
/// row is dated inside the statement (`clock_timestamp()`), in the order given, which the report seal and every
/// account's book rely on. Each row's event (`transaction.succeeded` or `transaction.failed`) refers to the row
/// (a row never changes: the feed renders its data from it) and takes its position in the rows' order, before
/// any hold's event of the group; it is the one event insert not made by `events::outbox::write`, folded in here
/// to spare each group a round trip.
async fn write_rows(
    conn: &mut PgConnection,
    rows: &[NewRow],
    balances: &Balances,
) -> DbResult<HashMap<Uuid, Transaction>> {
    let (mut changed, values, held) = balances.changed();
    if rows.is_empty() && changed.is_empty() {
        return Ok(HashMap::new());
    }
    // Every account a row touches has its book's bounds widened on the row's side, a failed row's too (its balance
    // unchanged).
    let mut values: Vec<Option<Decimal>> = values.into_iter().map(Some).collect();
    let mut held: Vec<Option<Decimal>> = held.into_iter().map(Some).collect();
    let mut listed: HashMap<Uuid, usize> = changed.iter().enumerate().map(|(n, id)| (*id, n)).collect();
    let (mut paid, mut received) = (vec![false; changed.len()], vec![false; changed.len()]);
    let sides = rows.iter().flat_map(|r| {
        let src = r.src_account_id.map(|src| (src, Side::Src));
        src.into_iter().chain([(r.dst_account_id, Side::Dst)])
    });
    for (account, side) in sides {
        let n = *listed.entry(account).or_insert_with(|| {
            changed.push(account);
            values.push(None);
            held.push(None);
            paid.push(false);
            received.push(false);
            changed.len() - 1
        });
        match side {
            Side::Src => paid[n] = true,
            Side::Dst => received[n] = true,
        }
    }
    let text = |f: fn(&NewRow) -> Option<String>| -> Vec<Option<String>> { rows.iter().map(f).collect() };
    let ids: Vec<Uuid> = rows.iter().map(|r| r.id).collect();
    let sources: Vec<Option<Uuid>> = rows.iter().map(|r| r.src_account_id).collect();
    let targets: Vec<Uuid> = rows.iter().map(|r| r.dst_account_id).collect();
    let amounts: Vec<Decimal> = rows.iter().map(|r| r.amount).collect();
    let src_after: Vec<Option<Decimal>> = rows.iter().map(|r| r.src_balance_after).collect();
    let dst_after: Vec<Decimal> = rows.iter().map(|r| r.dst_balance_after).collect();
    let event_ids: Vec<Uuid> = rows.iter().map(|_| Uuid::now_v7()).collect();
    let event_types: Vec<&str> = rows.iter().map(|r| types::of_transaction(r.status)).collect();
    // The book's bounds (migrations 0015, 0017) are days: from the start of the day this transaction began (no row
    // of it is older) to the end of the day after (none is newer: a batch lasts far less than a day). They change
    // once a day at most, so an account whose balance did not move (a failed row's) is written only then. The two
    // days are computed once (`MATERIALIZED`): inlined, `date_trunc` ran for every account and every reference,
    // 2 % of the statement's instructions (BENCHMARKS.md, "Every account's book, lighter to write").
    let sql = format!(
        "WITH day AS MATERIALIZED (
             SELECT date_trunc('day', now(), 'UTC') AS first,
                    date_trunc('day', now(), 'UTC') + interval '2 days' AS last),
         written AS (
             INSERT INTO transactions AS t
                 (id, created_at, kind, src_account_id, dst_account_id, amount, direction, status, reason,
                  description, idempotency_key, recorded_by, src_balance_after, dst_balance_after)
             SELECT id, clock_timestamp(), kind, src, dst, amount, direction, status, reason, description, key,
                    client, src_after, dst_after
             FROM unnest($1::uuid[], $2::text[], $3::uuid[], $4::uuid[], $5::numeric[], $6::text[], $7::text[],
                         $8::text[], $9::text[], $10::text[], $11::text[], $14::numeric[], $15::numeric[])
                  WITH ORDINALITY AS r (id, kind, src, dst, amount, direction, status, reason, description, key,
                                        client, src_after, dst_after, i)
             ORDER BY i
             RETURNING {TRANSACTION_COLUMNS}),
         moved AS (
             UPDATE accounts a
             SET balance = coalesce(v.balance, a.balance), held = coalesce(v.held, a.held),
                 updated_at = CASE WHEN v.balance IS NULL THEN a.updated_at ELSE clock_timestamp() END,
                 src_first_at = CASE WHEN v.paid THEN least(a.src_first_at, d.first) ELSE a.src_first_at END,
                 src_last_at = CASE WHEN v.paid THEN greatest(a.src_last_at, d.last) ELSE a.src_last_at END,
                 dst_first_at = CASE WHEN v.received THEN least(a.dst_first_at, d.first) ELSE a.dst_first_at END,
                 dst_last_at = CASE WHEN v.received THEN greatest(a.dst_last_at, d.last) ELSE a.dst_last_at END
             FROM unnest($12::uuid[], $13::numeric[], $16::numeric[], $19::bool[], $20::bool[])
                      AS v (id, balance, held, paid, received),
                  day AS d
             WHERE a.id = v.id
               AND (v.balance IS NOT NULL
                    OR v.paid AND (a.src_first_at IS NULL OR a.src_first_at > d.first OR a.src_last_at < d.last)
                    OR v.received AND (a.dst_first_at IS NULL OR a.dst_first_at > d.first OR a.dst_last_at < d.last))),
         noted AS (
             INSERT INTO events (id, type, subject, subject_at)
             SELECT e.id, e.type, w.id, w.created_at
             FROM unnest($1::uuid[], $17::uuid[], $18::text[]) WITH ORDINALITY AS e (row_id, id, type, i)
                  JOIN written w ON w.id = e.row_id
             ORDER BY e.i)
         SELECT * FROM written"
    );
    let recorded: Vec<TransactionRow> = sqlx::query_as(&sql)
        .bind(&ids)
        .bind(text(|r| Some(r.kind.as_str().to_owned())))
        .bind(&sources)
        .bind(&targets)
        .bind(&amounts)
        .bind(text(|r| Some(r.direction.to_owned())))
        .bind(text(|r| Some(r.status.as_str().to_owned())))
        .bind(text(|r| r.reason.map(str::to_owned)))
        .bind(text(|r| r.description.clone()))
        .bind(text(|r| r.key.clone()))
        .bind(text(|r| Some(r.client.clone())))
        .bind(&changed)
        .bind(&values)
        .bind(&src_after)
        .bind(&dst_after)
        .bind(&held)
        .bind(&event_ids)
        .bind(&event_types)
        .bind(&paid)
        .bind(&received)
        .fetch_all(&mut *conn)
        .await?;
    // Matched by id: the order of RETURNING is not something PostgreSQL promises.
    let recorded: HashMap<Uuid, Transaction> =
        recorded.into_iter().map(Transaction::from).map(|t| (t.transaction_id, t)).collect();
    if recorded.len() != rows.len() {
        return Err(DbError::Inconsistent(format!(
            "{} rows were inserted but {} returned",
            rows.len(),
            recorded.len()
        )));
    }
    Ok(recorded)
}
