//! A Jepsen-style bank test of the ledger: clients move money between accounts and in and out of the bank
//! with Idempotency-Keys over HTTP while faults hit the service and its database; readers take consistent
//! snapshots of every balance; a checker then decides whether money was created, lost or moved twice.
//!
//! - Transfers keep the total; bank credits and debits change it by their amount, if they succeed.
//! - A read must sum to the starting total plus every bank movement acknowledged before the read began, give
//!   or take the movements in flight during the read (either outcome is allowed for those), and show no
//!   negative balance.
//! - A client whose call failed or timed out retries with the same key and body until it gets an answer, so at
//!   the end every operation's outcome is known; the final balances must then equal the starting balances
//!   plus exactly the successful operations, and the ledger must hold exactly one row per key.
//!
//! - Holds: a client places a hold with its key, then captures part of it to another account (a transfer, with
//!   its own key), voids it (with its key), or leaves it to expire (in a second). At the end no hold is pending,
//!   each has one row with the outcome the client was told (or `expired`), its capture and release rows add up to
//!   its amount, and a capture moved exactly what the client was told.
//!
//! The negative control replaces the service's transfer by a read-check-write without locks, done straight in
//! SQL (as a careless implementation would): the checker must then report money created or lost.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ledger_contract::{
    BankTransactionRequest, CaptureRequest, Direction, HoldRequest, HoldStatus, LedgerClient, LedgerError,
    TransactionStatus, TransferRequest,
};
use money::Amount;
use rust_decimal::Decimal;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Lcg;

/// What a run does.
#[derive(Debug, Clone)]
pub struct Workload {
    pub accounts: usize,
    pub initial_balance: Decimal,
    pub clients: usize,
    pub readers: usize,
    /// Operations per client.
    pub operations_per_client: usize,
    /// Transfers are done by the broken SQL path instead of the service (the negative control).
    pub broken_transfers: bool,
    pub seed: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// `src` pays `dst`.
    Transfer,
    /// The bank gives to `dst`.
    Credit,
    /// The bank takes from `dst`.
    Debit,
    /// A hold on `src`, then captured to `dst`, voided, or left to expire.
    Hold(Ending),
}

/// How a client ends a hold it placed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Captures this much of it to `dst` (what the client was told it moved).
    Capture(Decimal),
    Void,
    /// Leaves it to the service's expiry (it lasts one second).
    Expire,
}

/// One operation and what became of it.
#[derive(Debug, Clone)]
pub struct Operation {
    pub key: String,
    pub kind: Kind,
    pub src: usize,
    pub dst: usize,
    pub amount: Decimal,
    pub started: Instant,
    pub finished: Instant,
    /// The money moved (`false`: refused for insufficient funds).
    pub succeeded: bool,
    /// Attempts it took to get a definite answer.
    pub attempts: u32,
}

impl Operation {
    /// What it does to the bank's total if it succeeded.
    fn net(&self) -> Decimal {
        match self.kind {
            Kind::Transfer | Kind::Hold(_) => Decimal::ZERO,
            Kind::Credit => self.amount,
            Kind::Debit => -self.amount,
        }
    }
}

/// One consistent snapshot of every balance.
#[derive(Debug, Clone)]
pub struct Read {
    pub started: Instant,
    pub finished: Instant,
    pub balances: Vec<Decimal>,
}

/// What the checker found.
#[derive(Debug, Default)]
pub struct Verdict {
    pub operations: usize,
    pub transfers: usize,
    /// Holds placed or refused (each then captured, voided or left to expire).
    pub holds: usize,
    pub succeeded: usize,
    pub retried_operations: usize,
    pub attempts: u64,
    pub reads: usize,
    pub problems: Vec<String>,
}

impl Verdict {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// How a client reaches the ledger.
#[derive(Clone)]
pub struct Target {
    /// The ledger's typed client; one attempt gives up after 5 s (the caller retries with the same key).
    pub api: LedgerClient,
    /// Typed clients of further instances of the service on the same database: client n uses instance
    /// n mod (1 + their number).
    pub others: Vec<LedgerClient>,
    /// The ledger's database (for readers, the final check and the broken transfer).
    pub pool: PgPool,
}

impl Target {
    pub fn of(ledger: &crate::TestLedger) -> anyhow::Result<Self> {
        Self::of_instances(ledger, &[])
    }

    /// The ledger and more instances of it, the clients spread over all of them.
    pub fn of_instances(
        ledger: &crate::TestLedger,
        others: &[&crate::ledger::ServiceInstance],
    ) -> anyhow::Result<Self> {
        let client = |base_url: &str| LedgerClient::new(base_url, ledger.token.clone(), Duration::from_secs(5));
        Ok(Self {
            api: client(&ledger.base_url)?,
            others: others.iter().map(|instance| client(&instance.base_url)).collect::<Result<_, _>>()?,
            pool: ledger.pool.clone(),
        })
    }

    /// The instance client `n` talks to.
    fn api_for(&self, n: usize) -> &LedgerClient {
        match n % (1 + self.others.len()) {
            0 => &self.api,
            other => &self.others[other - 1],
        }
    }
}

/// Opens the accounts and funds them, returning their ids.
pub async fn open_accounts(target: &Target, workload: &Workload) -> anyhow::Result<Vec<Uuid>> {
    let patience = Duration::from_secs(120);
    let initial = Amount::try_from(workload.initial_balance)?;
    let mut ids = Vec::with_capacity(workload.accounts);
    for n in 0..workload.accounts {
        let key = format!("chaos-{}-open-{n}", workload.seed);
        let (account, _) = call(&key, patience, || target.api.create_account(Some(&key))).await?;
        let fund = BankTransactionRequest::new(account.account_id, initial, Direction::Credit, None);
        let key = format!("chaos-{}-fund-{n}", workload.seed);
        call(&key, patience, || target.api.bank_transaction(&fund, Some(&key))).await?;
        ids.push(account.account_id);
    }
    Ok(ids)
}

/// Sends one request with its key until it gets a definite answer, retrying whatever the client says may
/// succeed on a retry (no answer, a cut-off body, 409 in flight, 5xx). Returns the answer and the attempts.
async fn call<T, F, Fut>(key: &str, patience: Duration, mut send: F) -> anyhow::Result<(T, u32)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, LedgerError>>,
{
    let deadline = Instant::now() + patience;
    let mut attempts = 0;
    let mut pause = Duration::from_millis(50);
    loop {
        attempts += 1;
        let last = match send().await {
            Ok(answer) => return Ok((answer, attempts)),
            Err(error) if error.is_retryable() => error.to_string(),
            Err(error) => anyhow::bail!("the request with key {key} was refused: {error}"),
        };
        if Instant::now() > deadline {
            anyhow::bail!("the request with key {key}: no answer after {attempts} attempts: {last}");
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(Duration::from_secs(1));
    }
}

/// The transfer a careless implementation would write: read both balances, check, write the new values, each
/// statement on its own, no lock held between the read and the write. Concurrent transfers overwrite each
/// other's updates.
async fn broken_transfer(pool: &PgPool, src: Uuid, dst: Uuid, amount: Decimal) -> anyhow::Result<bool> {
    let read = "SELECT balance FROM accounts WHERE id = $1";
    let (src_balance,): (Decimal,) = sqlx::query_as(read).bind(src).fetch_one(pool).await?;
    let (dst_balance,): (Decimal,) = sqlx::query_as(read).bind(dst).fetch_one(pool).await?;
    if src_balance < amount {
        return Ok(false);
    }
    let write = "UPDATE accounts SET balance = $2 WHERE id = $1";
    sqlx::query(write).bind(src).bind(src_balance - amount).execute(pool).await?;
    sqlx::query(write).bind(dst).bind(dst_balance + amount).execute(pool).await?;
    Ok(true)
}

async fn run_client(
    target: Target,
    workload: Workload,
    ids: Arc<Vec<Uuid>>,
    client: usize,
    done: Arc<AtomicU64>,
) -> anyhow::Result<Vec<Operation>> {
    let mut random = Lcg(workload.seed ^ (client as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
    let mut operations = Vec::with_capacity(workload.operations_per_client);
    let api = target.api_for(client);
    for n in 0..workload.operations_per_client {
        let roll = random.next(100);
        let kind = if roll < 70 {
            Kind::Transfer
        } else if roll < 80 {
            Kind::Hold(Ending::Expire)
        } else if roll < 90 {
            Kind::Credit
        } else {
            Kind::Debit
        };
        let src = random.next(ids.len() as u64) as usize;
        let mut dst = random.next(ids.len() as u64) as usize;
        if matches!(kind, Kind::Transfer | Kind::Hold(_)) && dst == src {
            dst = (src + 1) % ids.len();
        }
        let amount = Decimal::new(random.next(5_000) as i64 + 1, 2);
        let key = format!("chaos-{}-{client}-{n}", workload.seed);
        let started = Instant::now();
        let patience = Duration::from_secs(300);
        let mut kind = kind;
        let (succeeded, attempts) = match kind {
            Kind::Transfer if workload.broken_transfers => (
                loop {
                    match broken_transfer(&target.pool, ids[src], ids[dst], amount).await {
                        Ok(moved) => break moved,
                        Err(error) if started.elapsed() > patience => {
                            anyhow::bail!("the broken transfer {key}: no answer within {patience:?}: {error:#}")
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                },
                1,
            ),
            Kind::Transfer => {
                let request = TransferRequest::new(ids[src], ids[dst], Amount::try_from(amount)?, Direction::Debit);
                let (recorded, attempts) = call(&key, patience, || api.transfer(&request, Some(&key))).await?;
                (recorded.status == TransactionStatus::Success, attempts)
            }
            Kind::Hold(_) => {
                let (placed, ended, attempts) =
                    hold_then_end(api, &key, ids[src], ids[dst], amount, &mut random).await?;
                kind = Kind::Hold(ended);
                (placed, attempts)
            }
            Kind::Credit | Kind::Debit => {
                let direction = if kind == Kind::Credit { Direction::Credit } else { Direction::Debit };
                let request = BankTransactionRequest::new(ids[dst], Amount::try_from(amount)?, direction, None);
                let (recorded, attempts) = call(&key, patience, || api.bank_transaction(&request, Some(&key))).await?;
                (recorded.status == TransactionStatus::Success, attempts)
            }
        };
        operations.push(Operation {
            key,
            kind,
            src,
            dst,
            amount,
            started,
            finished: Instant::now(),
            succeeded,
            attempts,
        });
        done.fetch_add(1, Ordering::Relaxed);
    }
    Ok(operations)
}

/// Places a hold of `amount` on `src` under `key`, then captures part of it to `dst`, voids it, or leaves it to
/// expire, each with its own key, retrying as [`call`] does. Returns whether it was placed (`false`: refused for
/// insufficient funds), how it was ended, and the attempts of both requests.
async fn hold_then_end(
    api: &LedgerClient,
    key: &str,
    src: Uuid,
    dst: Uuid,
    amount: Decimal,
    random: &mut Lcg,
) -> anyhow::Result<(bool, Ending, u32)> {
    let patience = Duration::from_secs(300);
    let ending = match random.next(3) {
        0 => Ending::Capture(Decimal::new(random.next(amount.mantissa() as u64) as i64 + 1, 2)),
        1 => Ending::Void,
        _ => Ending::Expire,
    };
    // A hold to capture or void outlives every retry; one left to expire lasts a second.
    let expires_in = if ending == Ending::Expire { 1 } else { 600 };
    let request = HoldRequest::new(src, Amount::try_from(amount)?, Some(expires_in), "chaos");
    let (hold, mut attempts) = call(key, patience, || api.place_hold(&request, Some(key))).await?;
    if hold.status != HoldStatus::Pending {
        return Ok((false, ending, attempts));
    }
    let (ended, more) = match ending {
        Ending::Capture(part) => {
            let capture_key = format!("{key}-capture");
            let request = CaptureRequest::new(Some(Amount::try_from(part)?), Some(dst));
            call(&capture_key, patience, || api.capture_hold(hold.hold_id, &request, Some(&capture_key))).await?
        }
        Ending::Void => {
            let void_key = format!("{key}-void");
            call(&void_key, patience, || api.void_hold(hold.hold_id, Some(&void_key))).await?
        }
        Ending::Expire => return Ok((true, ending, attempts)),
    };
    // One operation of two requests: its retries are both requests' (a clean run is one attempt).
    attempts += more - 1;
    let told = match ended.status {
        HoldStatus::Captured => ended.captured_amount.map(Ending::Capture),
        HoldStatus::Voided => Some(Ending::Void),
        _ => None,
    };
    anyhow::ensure!(told == Some(ending), "hold {key}: asked {ending:?}, told {ended:?}");
    Ok((true, ending, attempts))
}

/// Reads every balance in one statement (one MVCC snapshot), retrying while the database is unreachable.
async fn read_all(pool: &PgPool, ids: &[Uuid]) -> Option<Vec<Decimal>> {
    let rows: Vec<(Uuid, Decimal)> =
        sqlx::query_as("SELECT id, balance FROM accounts WHERE id = ANY($1)").bind(ids).fetch_all(pool).await.ok()?;
    let by_id: HashMap<Uuid, Decimal> = rows.into_iter().collect();
    ids.iter().map(|id| by_id.get(id).copied()).collect()
}

async fn run_reader(pool: PgPool, ids: Arc<Vec<Uuid>>, stop: Arc<AtomicBool>) -> Vec<Read> {
    let mut reads = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        match read_all(&pool, &ids).await {
            Some(balances) => reads.push(Read { started, finished: Instant::now(), balances }),
            None => tokio::time::sleep(Duration::from_millis(100)).await,
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    reads
}

/// Everything a run recorded.
pub struct History {
    pub ids: Vec<Uuid>,
    pub operations: Vec<Operation>,
    pub reads: Vec<Read>,
    pub elapsed: Duration,
}

/// Runs the workload to the end; `faults` runs beside it until the clients are done (it is told by `stop`).
pub async fn run<F, Fut>(target: &Target, workload: &Workload, faults: F) -> anyhow::Result<History>
where
    F: FnOnce(Arc<AtomicBool>) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send + 'static,
{
    let ids = Arc::new(open_accounts(target, workload).await?);
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let fault_task = tokio::spawn(faults(Arc::clone(&stop)));
    let readers: Vec<_> = (0..workload.readers)
        .map(|_| tokio::spawn(run_reader(target.pool.clone(), Arc::clone(&ids), Arc::clone(&stop))))
        .collect();
    let clients: Vec<_> = (0..workload.clients)
        .map(|client| {
            tokio::spawn(run_client(target.clone(), workload.clone(), Arc::clone(&ids), client, Arc::clone(&done)))
        })
        .collect();
    let progress = {
        let (done, stop) = (Arc::clone(&done), Arc::clone(&stop));
        let total = (workload.clients * workload.operations_per_client) as u64;
        tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(Duration::from_secs(10)).await;
                eprintln!("chaos: {} / {total} operations", done.load(Ordering::Relaxed));
            }
        })
    };
    let mut operations = Vec::new();
    let mut failure = None;
    for client in clients {
        match client.await? {
            Ok(mut ops) => operations.append(&mut ops),
            Err(error) => failure = Some(error),
        }
    }
    stop.store(true, Ordering::Relaxed);
    progress.abort();
    let fault_result = fault_task.await?;
    let mut reads = Vec::new();
    for reader in readers {
        reads.append(&mut reader.await?);
    }
    if let Some(error) = failure {
        return Err(error);
    }
    fault_result?;
    Ok(History { ids: Arc::try_unwrap(ids).unwrap_or_default(), operations, reads, elapsed: started.elapsed() })
}

/// Decides whether the history is that of a correct bank.
pub async fn check(target: &Target, workload: &Workload, history: &History) -> anyhow::Result<Verdict> {
    let n = history.ids.len();
    let initial_total = workload.initial_balance * Decimal::from(n as u64);
    let mut verdict = Verdict {
        operations: history.operations.len(),
        transfers: history.operations.iter().filter(|op| op.kind == Kind::Transfer).count(),
        holds: history.operations.iter().filter(|op| matches!(op.kind, Kind::Hold(_))).count(),
        succeeded: history.operations.iter().filter(|op| op.succeeded).count(),
        retried_operations: history.operations.iter().filter(|op| op.attempts > 1).count(),
        attempts: history.operations.iter().map(|op| u64::from(op.attempts)).sum(),
        reads: history.reads.len(),
        problems: Vec::new(),
    };

    // Every read: no negative balance, and a total that some order of the operations in flight explains.
    let mut by_end: Vec<&Operation> = history.operations.iter().filter(|op| op.succeeded).collect();
    by_end.sort_by_key(|op| op.finished);
    let mut bad_reads = 0;
    for read in &history.reads {
        let total: Decimal = read.balances.iter().copied().sum();
        let settled: Decimal = by_end.iter().take_while(|op| op.finished < read.started).map(|op| op.net()).sum();
        let (mut low, mut high) = (initial_total + settled, initial_total + settled);
        for op in by_end.iter().filter(|op| op.finished >= read.started && op.started <= read.finished) {
            let net = op.net();
            if net > Decimal::ZERO {
                high += net;
            } else {
                low += net;
            }
        }
        let negative = read.balances.iter().any(|balance| *balance < Decimal::ZERO);
        if total < low || total > high || negative {
            bad_reads += 1;
            if bad_reads <= 5 {
                verdict.problems.push(format!(
                    "a read summed to {total}, outside [{low}, {high}]{}",
                    if negative { ", with a negative balance" } else { "" }
                ));
            }
        }
    }
    if bad_reads > 5 {
        verdict.problems.push(format!("{bad_reads} reads in all were inconsistent"));
    }

    // The end: every balance is its start plus exactly the successful operations.
    let mut expected = vec![workload.initial_balance; n];
    for op in history.operations.iter().filter(|op| op.succeeded) {
        match op.kind {
            Kind::Transfer => {
                expected[op.src] -= op.amount;
                expected[op.dst] += op.amount;
            }
            Kind::Credit => expected[op.dst] += op.amount,
            Kind::Debit => expected[op.dst] -= op.amount,
            Kind::Hold(Ending::Capture(part)) => {
                expected[op.src] -= part;
                expected[op.dst] += part;
            }
            Kind::Hold(_) => {}
        }
    }
    let holds = check_holds(target, workload, history).await?;
    verdict.problems.extend(holds);
    let finals = read_all(&target.pool, &history.ids).await.context("reading the final balances")?;
    for (index, (actual, wanted)) in finals.iter().zip(&expected).enumerate() {
        if actual != wanted {
            verdict.problems.push(format!("account {index} ends at {actual}, the operations say {wanted}"));
        }
    }
    let (final_total, expected_total): (Decimal, Decimal) =
        (finals.iter().copied().sum(), expected.iter().copied().sum());
    if final_total != expected_total {
        verdict.problems.push(format!(
            "money {}: the accounts hold {final_total}, the operations say {expected_total}",
            if final_total > expected_total { "created" } else { "lost" }
        ));
    }

    // The ledger: exactly one row per key sent to the service, with the outcome the client was told.
    let rows: Vec<(String, i64, i64)> = sqlx::query_as(
        "SELECT idempotency_key, count(*), count(*) FILTER (WHERE status = 'success')
         FROM transactions WHERE idempotency_key LIKE $1 GROUP BY idempotency_key",
    )
    .bind(format!("chaos-{}-%", workload.seed))
    .fetch_all(&target.pool)
    .await?;
    let recorded: HashMap<String, (i64, i64)> = rows.into_iter().map(|(key, all, ok)| (key, (all, ok))).collect();
    let mut row_problems = 0;
    let keyed = history.operations.iter().filter_map(|op| match op.kind {
        Kind::Transfer if workload.broken_transfers => None,
        Kind::Hold(Ending::Capture(_)) if op.succeeded => Some((format!("{}-capture", op.key), true)),
        Kind::Hold(_) => None,
        _ => Some((op.key.clone(), op.succeeded)),
    });
    for (key, succeeded) in keyed {
        let found = recorded.get(&key).copied().unwrap_or((0, 0));
        if found != (1, i64::from(succeeded)) {
            row_problems += 1;
            if row_problems <= 5 {
                verdict.problems.push(format!(
                    "key {key} has {} rows ({} successful); the client was told {}",
                    found.0,
                    found.1,
                    if succeeded { "success" } else { "fail" }
                ));
            }
        }
    }
    Ok(verdict)
}

/// The holds: once every one has ended (the last expiries come within seconds), each has one row with the outcome
/// its client was told, or `expired` when left to expire; what its capture and release rows moved adds up to its
/// amount; and no account holds anything any more.
async fn check_holds(target: &Target, workload: &Workload, history: &History) -> anyhow::Result<Vec<String>> {
    let pattern = format!("chaos-{}-%", workload.seed);
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (pending,): (i64,) =
            sqlx::query_as("SELECT count(*) FROM holds WHERE idempotency_key LIKE $1 AND status = 'pending'")
                .bind(&pattern)
                .fetch_one(&target.pool)
                .await?;
        if pending == 0 {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "{pending} holds still pending two minutes after the run");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rows: Vec<(String, i64, String, Option<Decimal>, bool)> = sqlx::query_as(
        "SELECT h.idempotency_key, count(*) OVER (PARTITION BY h.idempotency_key), h.status, h.captured_amount,
                h.status = 'fail' OR (coalesce(c.amount, 0) + coalesce(r.amount, 0) = h.amount
                                      AND coalesce(c.amount, 0) = coalesce(h.captured_amount, 0)
                                      AND (h.release_transaction_id IS NULL) = (r.id IS NULL)
                                      AND (h.capture_transaction_id IS NULL) = (c.id IS NULL))
         FROM holds h
         LEFT JOIN transactions c ON c.id = h.capture_transaction_id
         LEFT JOIN transactions r ON r.id = h.release_transaction_id AND r.kind = 'hold_release'
         WHERE h.idempotency_key LIKE $1",
    )
    .bind(&pattern)
    .fetch_all(&target.pool)
    .await?;
    let found: HashMap<String, (i64, String, Option<Decimal>, bool)> =
        rows.into_iter().map(|(key, n, status, captured, adds_up)| (key, (n, status, captured, adds_up))).collect();
    let mut problems = Vec::new();
    for op in &history.operations {
        let Kind::Hold(ending) = op.kind else { continue };
        let wanted = match (op.succeeded, ending) {
            (false, _) => ("fail", None),
            (true, Ending::Capture(part)) => ("captured", Some(part)),
            (true, Ending::Void) => ("voided", None),
            (true, Ending::Expire) => ("expired", None),
        };
        let row = found.get(&op.key);
        let seen = row.map(|(n, status, captured, adds_up)| (*n, status.as_str(), *captured, *adds_up));
        if seen != Some((1, wanted.0, wanted.1, true)) && problems.len() < 5 {
            problems.push(format!("hold {}: {seen:?} in the ledger; the client was told {wanted:?}", op.key));
        }
    }
    let (held,): (Option<Decimal>,) = sqlx::query_as("SELECT sum(held) FROM accounts WHERE id = ANY($1)")
        .bind(&history.ids)
        .fetch_one(&target.pool)
        .await?;
    if held.unwrap_or_default() != Decimal::ZERO {
        problems.push(format!("the accounts still hold {held:?} with no hold pending"));
    }
    Ok(problems)
}

/// A fault schedule's shared clock: sleeps up to `duration`, waking early when the run stops.
pub async fn pause_unless_stopped(stop: &AtomicBool, duration: Duration) -> bool {
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        if stop.load(Ordering::Relaxed) {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    !stop.load(Ordering::Relaxed)
}

/// Terminates the service's connections to `database` (as an operator or a failover would).
pub async fn terminate_backends(admin: &PgPool, database: &str) -> anyhow::Result<u64> {
    let (count,): (i64,) = sqlx::query_as(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = $1 AND pid <> pg_backend_pid() AND application_name <> $2",
    )
    .bind(database)
    .bind(crate::ledger::CHECKER_APPLICATION)
    .fetch_one(admin)
    .await?;
    Ok(count as u64)
}

/// Records what the fault schedule did, for the report.
#[derive(Debug, Default, Clone)]
pub struct FaultLog(pub Arc<Mutex<Vec<String>>>);

impl FaultLog {
    pub fn note(&self, what: impl Into<String>) {
        if let Ok(mut log) = self.0.lock() {
            log.push(what.into());
        }
    }

    pub fn entries(&self) -> Vec<String> {
        self.0.lock().map(|log| log.clone()).unwrap_or_default()
    }
}
