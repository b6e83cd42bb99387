//! Group commit: concurrent transfers and bank transactions wait in one queue for a few committer tasks, and
//! each committer applies everything waiting as one group ([`movements::apply_group`]), in one database
//! transaction (one WAL flush).
//!
//! A free committer takes every request waiting, up to the batch limit, with no fixed wait: one client alone
//! gets a group of one, as fast as on its own; many clients share each commit. Within a batch:
//!
//! - a second request with a key already in the batch runs after it, on its own, and so replays the first's
//!   response (or gets `KeyReused`);
//! - keys are claimed without waiting ([`KeyLock::Try`]), so a key in flight elsewhere never blocks the batch:
//!   that request runs on its own afterwards and waits for its key as usual; the rest of a batch with keys waits
//!   for any lock at most `IDEMPOTENCY_WAIT`;
//! - an error before the commit (after the retries [`movements::apply_group`] makes) runs each request of the
//!   batch on its own, so one bad request never fails its batch-mates; an error of the commit itself is every
//!   request's error ([`DbError::CommitUnknown`]): the commit may have happened, and only a retry with the same
//!   key can tell.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use prometheus::{Histogram, IntGauge};
use sqlx::pool::PoolConnection;
use sqlx::{PgConnection, PgPool, Postgres};
use tokio::sync::{mpsc, oneshot, Mutex};

use crate::db::idempotency::KeyLock;
use crate::db::ledger::Reply;
use crate::db::movements::{self, Decided, GroupError, MoneyRequest};
use crate::db::{DbError, DbResult};

/// How batches are made.
#[derive(Debug, Clone, Copy)]
pub struct BatchSettings {
    /// Committer tasks, each holding one database connection of the pool (kept between batches).
    pub committers: usize,
    /// The most requests in one batch.
    pub max_batch: usize,
    /// Requests that may wait for a committer; beyond, a request waits for room.
    pub queue: usize,
    /// How long a request waits for its key held by another, and a batch with keys for any lock
    /// (`IDEMPOTENCY_WAIT`).
    pub key_wait: Duration,
}

/// One request waiting for a committer.
struct Job {
    request: MoneyRequest,
    reply: oneshot::Sender<DbResult<Reply>>,
}

impl Job {
    fn answer(self, result: DbResult<Reply>) {
        // The caller may have gone (its request timed out); the outcome stands and is kept under its key.
        let _ = self.reply.send(result);
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

    /// Applies `request` in the next batch and answers as [`movements::apply_alone`] would.
    pub async fn submit(&self, request: MoneyRequest) -> DbResult<Reply> {
        let (reply, answer) = oneshot::channel();
        let stopped = || DbError::Inconsistent("the committers have stopped".into());
        self.metrics.waiting.inc();
        if self.jobs.send(Job { request, reply }).await.is_err() {
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
    // The connection this committer keeps between batches: taken from the pool (which tests it) when it has none,
    // and given back after any batch that failed, so that a broken one is never used twice. Kept, it spares each
    // batch the pool's two pings (before the acquire and after the release), one of them a round trip before
    // the batch's first statement.
    let mut held: Option<PoolConnection<Postgres>> = None;
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
        run_batch(&pool, &mut held, batch, settings.key_wait).await;
    }
}

async fn run_batch(pool: &PgPool, held: &mut Option<PoolConnection<Postgres>>, batch: Vec<Job>, key_wait: Duration) {
    // A second request with a key already in this batch runs after it, and so replays the first's response.
    let mut keys = HashSet::new();
    let (work, mut alone): (Vec<Job>, Vec<Job>) = batch.into_iter().partition(|job| {
        let request = &job.request;
        request.key.as_ref().is_none_or(|key| keys.insert((request.client.clone(), key.clone())))
    });
    let requests: Vec<&MoneyRequest> = work.iter().map(|job| &job.request).collect();
    let result = match connection(pool, held).await {
        Ok(conn) => movements::apply_group(conn, &requests, KeyLock::Try(key_wait)).await,
        Err(error) => Err(GroupError::Before(error.into())),
    };
    if result.is_err() {
        *held = None;
    }
    match result {
        Ok(decided) => {
            assert_eq!(decided.len(), work.len(), "one decision per request");
            for (job, decided) in work.into_iter().zip(decided) {
                match decided {
                    Decided::Reply(result) => job.answer(result),
                    Decided::Elsewhere => alone.push(job),
                }
            }
        }
        Err(GroupError::Before(error)) => {
            tracing::warn!(%error, size = work.len(), "the batch failed before its commit; running its requests one by one");
            alone.splice(0..0, work);
        }
        Err(GroupError::AtCommit(error)) => {
            tracing::warn!(%error, size = work.len(), "the batch's commit failed; it may have happened");
            let message = error.to_string();
            for job in work {
                job.answer(Err(DbError::CommitUnknown(message.clone())));
            }
        }
    }
    for job in alone {
        let result = movements::apply_alone(pool, &job.request, key_wait).await;
        job.answer(result);
    }
}

/// The committer's connection: the one it holds, or a new one from the pool.
async fn connection<'a>(
    pool: &PgPool,
    held: &'a mut Option<PoolConnection<Postgres>>,
) -> sqlx::Result<&'a mut PgConnection> {
    let conn = match held.take() {
        Some(conn) => conn,
        None => pool.acquire().await?,
    };
    Ok(&mut **held.insert(conn))
}
