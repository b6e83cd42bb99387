//! Long polling without a connection per waiter: one task per instance asks the database for the feed's head
//! every `EVENT_POLL_INTERVAL`, only while some request waits, and wakes the requests it has passed.

use std::sync::Arc;
use std::time::Duration;

use sqlx::PgPool;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::feed;
use crate::position::Position;

/// The feed's head as last seen, shared by the requests waiting for it to move.
#[derive(Clone)]
pub struct FeedWatch {
    head: Arc<watch::Sender<Position>>,
}

impl FeedWatch {
    /// Starts the polling task on the current runtime; it ends when the last clone of the watch is dropped.
    pub fn start(pool: PgPool, interval: Duration) -> Self {
        let (head, _) = watch::channel(Position::START);
        let head = Arc::new(head);
        let weak = Arc::downgrade(&head);
        tokio::spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                ticks.tick().await;
                let Some(head) = weak.upgrade() else { return };
                if head.receiver_count() == 0 {
                    continue;
                }
                match feed::head(&pool).await {
                    Ok(Some(now)) => {
                        head.send_if_modified(|seen| std::mem::replace(seen, now) != now);
                    }
                    Ok(None) => {}
                    Err(error) => tracing::warn!(error = %error, "reading the event feed's head failed; will retry"),
                }
            }
        });
        Self { head }
    }

    /// Waits until the feed has an event after `after`, or `deadline`; true when it has.
    pub async fn wait_past(&self, after: Position, deadline: Instant) -> bool {
        let mut seen = self.head.subscribe();
        loop {
            if *seen.borrow_and_update() > after {
                return true;
            }
            match tokio::time::timeout_at(deadline, seen.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) | Err(_) => return false,
            }
        }
    }
}
