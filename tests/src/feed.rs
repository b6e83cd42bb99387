//! A consumer of a service's event feed, as a customer's would be written: it follows `next_cursor`, and
//! remembers every event it was given, so a test can check that nothing was skipped, repeated or reordered.

use std::collections::HashSet;

use events::wire::{Event, EventPage};
use uuid::Uuid;

use crate::http::Reply;

/// Follows `GET {base}/api/v1/events` from the start.
pub struct FeedReader {
    client: reqwest::Client,
    base_url: String,
    pub cursor: String,
    /// Every event read, in the order read.
    pub seen: Vec<Event>,
}

impl FeedReader {
    pub fn new(client: &reqwest::Client, base_url: &str) -> Self {
        Self { client: client.clone(), base_url: base_url.to_owned(), cursor: "0".repeat(32), seen: Vec::new() }
    }

    /// Reads from another instance of the same service from now on (the cursor stays good: it is the
    /// database's, not the instance's).
    pub fn set_base(&mut self, base_url: &str) {
        base_url.clone_into(&mut self.base_url);
    }

    /// One page after the cursor (waiting up to `wait_s` for one), remembered; returns the events it held.
    pub async fn page(&mut self, limit: usize, wait_s: u64) -> anyhow::Result<Vec<Event>> {
        let url = format!("{}/api/v1/events?after={}&limit={limit}&wait={wait_s}", self.base_url, self.cursor);
        let reply = Reply::read(self.client.get(url).send().await?).await?;
        anyhow::ensure!(reply.status == 200, "the feed answered {}: {}", reply.status, reply.text);
        let page: EventPage = serde_json::from_str(&reply.text)?;
        anyhow::ensure!(
            page.next_cursor >= self.cursor,
            "the cursor went back: {} after {}",
            page.next_cursor,
            self.cursor
        );
        self.cursor = page.next_cursor;
        self.seen.extend(page.events.iter().cloned());
        Ok(page.events)
    }

    /// Reads pages until one comes back empty (without waiting); returns what it read.
    pub async fn drain(&mut self) -> anyhow::Result<Vec<Event>> {
        let mut read = Vec::new();
        loop {
            let page = self.page(1000, 0).await?;
            if page.is_empty() {
                return Ok(read);
            }
            read.extend(page);
        }
    }

    /// Reads (long-polling) until `count` events were seen in all, or `limit` passes. Events become visible
    /// when every older writing transaction of the PostgreSQL server has ended, other tests' included, so a
    /// test waits for them rather than expecting them at once.
    pub async fn read_until(&mut self, count: usize, limit: std::time::Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + limit;
        while self.seen.len() < count {
            anyhow::ensure!(
                tokio::time::Instant::now() < deadline,
                "only {} of {count} events within {limit:?}",
                self.seen.len()
            );
            self.page(1000, 1).await?;
        }
        Ok(())
    }

    /// Reads (long-polling) until an event of `kind` was seen, or `limit` passes; returns the first such.
    pub async fn read_until_kind(&mut self, kind: &str, limit: std::time::Duration) -> anyhow::Result<Event> {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            if let Some(event) = self.seen.iter().find(|e| e.kind == kind) {
                return Ok(event.clone());
            }
            anyhow::ensure!(tokio::time::Instant::now() < deadline, "no {kind} event within {limit:?}");
            self.page(1000, 1).await?;
        }
    }

    /// Checks what was read: positions strictly increasing, no event twice.
    pub fn check_order(&self) -> anyhow::Result<()> {
        for pair in self.seen.windows(2) {
            anyhow::ensure!(
                pair[0].position < pair[1].position,
                "{} came before {}",
                pair[0].position,
                pair[1].position
            );
        }
        let ids: HashSet<Uuid> = self.seen.iter().map(|e| e.id).collect();
        anyhow::ensure!(ids.len() == self.seen.len(), "an event was read twice");
        Ok(())
    }

    /// The ids read, in order.
    pub fn ids(&self) -> Vec<Uuid> {
        self.seen.iter().map(|e| e.id).collect()
    }
}

/// Every event id in the service's table, in position order.
pub async fn all_event_ids(pool: &sqlx::PgPool) -> anyhow::Result<Vec<Uuid>> {
    Ok(sqlx::query_scalar("SELECT id FROM events ORDER BY xid, seq").fetch_all(pool).await?)
}
