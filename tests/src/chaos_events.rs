//! The events beside the bank test: a consumer follows the ledger's feed through the faults, and a webhook
//! receiver (down for a minute in the middle) takes the transactions' events. At the end every committed
//! transaction must be in the feed exactly once, in an order no reader skipped, and at the receiver at least
//! once, with a valid signature.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use sqlx::PgPool;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::feed::{all_event_ids, FeedReader};
use crate::receiver::WebhookReceiver;

/// Follows the feed with long polls until `stop`, turning to the next instance when one does not answer.
pub fn follow(client: reqwest::Client, bases: Vec<String>, stop: Arc<AtomicBool>) -> JoinHandle<FeedReader> {
    tokio::spawn(async move {
        let mut reader = FeedReader::new(&client, &bases[0]);
        let mut turn = 0;
        while !stop.load(Ordering::Relaxed) {
            if reader.page(1000, 1).await.is_err() {
                turn += 1;
                reader.set_base(&bases[turn % bases.len()]);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        reader
    })
}

/// Takes the receiver down for `down` after `after`.
pub fn outage(receiver: Arc<WebhookReceiver>, after: Duration, down: Duration) -> JoinHandle<anyhow::Result<()>> {
    tokio::spawn(async move {
        tokio::time::sleep(after).await;
        receiver.set_down(true).await?;
        tokio::time::sleep(down).await;
        receiver.set_down(false).await
    })
}

/// What the feed and the receiver showed.
#[derive(Debug, Default)]
pub struct EventsVerdict {
    pub events: usize,
    pub transactions: usize,
    pub deliveries: usize,
    pub delivered_transactions: usize,
    /// Deliveries the receiver refused while it was down (retried later).
    pub refused: usize,
    pub problems: Vec<String>,
}

impl EventsVerdict {
    pub fn is_valid(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Reads the feed to its end, waits (up to `limit`) for the receiver to have every transaction's event, and
/// checks both against the database.
pub async fn check(
    pool: &PgPool,
    mut reader: FeedReader,
    receiver: &WebhookReceiver,
    limit: Duration,
) -> anyhow::Result<EventsVerdict> {
    let mut verdict = EventsVerdict::default();
    let table = all_event_ids(pool).await?;
    if let Err(error) = reader.read_until(table.len(), limit).await {
        verdict.problems.push(format!("the feed: {error:#}"));
    }
    if let Err(error) = reader.check_order() {
        verdict.problems.push(format!("the feed's order: {error:#}"));
    }
    verdict.events = reader.seen.len();
    let read = reader.ids();
    if read != table {
        let (mine, theirs): (HashSet<&Uuid>, HashSet<&Uuid>) = (read.iter().collect(), table.iter().collect());
        verdict.problems.push(format!(
            "the feed differs from the events table: {} missing, {} not in the table, {} read, {} written",
            theirs.difference(&mine).count(),
            mine.difference(&theirs).count(),
            read.len(),
            table.len()
        ));
    }
    // Every committed transaction, exactly once, as an event carrying it.
    let committed: Vec<Uuid> = sqlx::query_scalar("SELECT id FROM transactions").fetch_all(pool).await?;
    verdict.transactions = committed.len();
    let mut told: HashMap<Uuid, usize> = HashMap::new();
    let mut transaction_events = HashSet::new();
    for event in reader.seen.iter().filter(|e| e.kind.starts_with("transaction.")) {
        let data: Value = serde_json::from_str(event.data.get())?;
        let id: Uuid = data["transaction_id"].as_str().unwrap_or_default().parse()?;
        *told.entry(id).or_default() += 1;
        transaction_events.insert(event.id.to_string());
    }
    let missing = committed.iter().filter(|id| !told.contains_key(id)).count();
    let twice = told.values().filter(|n| **n > 1).count();
    let foreign = told.keys().filter(|id| !committed.contains(id)).count();
    if missing + twice + foreign > 0 {
        verdict.problems.push(format!(
            "transactions in the feed: {missing} committed without an event, {twice} told twice, {foreign} told but not committed"
        ));
    }
    // The receiver: every transaction's event, at least once, every signature valid.
    let deadline = tokio::time::Instant::now() + limit;
    let log = loop {
        let log = receiver.log().await?;
        let got: HashSet<&String> = log.received.iter().map(|r| &r.webhook_id).collect();
        if transaction_events.iter().all(|id| got.contains(id)) || tokio::time::Instant::now() >= deadline {
            break log;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let got: HashSet<&String> = log.received.iter().map(|r| &r.webhook_id).collect();
    verdict.deliveries = log.received.len();
    verdict.delivered_transactions = transaction_events.iter().filter(|id| got.contains(id)).count();
    verdict.refused = log.refused.len();
    if verdict.delivered_transactions != transaction_events.len() {
        verdict.problems.push(format!(
            "webhooks: {} of {} transaction events never reached the receiver",
            transaction_events.len() - verdict.delivered_transactions,
            transaction_events.len()
        ));
    }
    if log.rejected > 0 {
        verdict.problems.push(format!("webhooks: {} deliveries failed the signature check", log.rejected));
    }
    Ok(verdict)
}
