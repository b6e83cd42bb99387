//! Per-client concurrency limits: one client's expensive requests cannot take a service's whole capacity.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::ApiError;

/// How many requests of one kind each client has in flight, capped at `per_client`.
#[derive(Clone)]
pub struct ClientLimiter {
    what: &'static str,
    per_client: usize,
    retry_after_secs: u64,
    running: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

/// One request's place under its client's limit, given back when dropped (also when a download's stream ends
/// or its client goes away).
pub struct Slot {
    client: Arc<str>,
    running: Arc<Mutex<HashMap<Arc<str>, usize>>>,
}

impl ClientLimiter {
    /// At most `per_client` requests of `what` (e.g. "downloads") per client; beyond it 429 with `Retry-After`.
    pub fn new(what: &'static str, per_client: usize, retry_after_secs: u64) -> Self {
        Self { what, per_client, retry_after_secs, running: Arc::default() }
    }

    /// A slot for `client`, or 429 `too_many_requests` when it already runs `per_client` of them.
    pub fn enter(&self, client: &Arc<str>) -> Result<Slot, ApiError> {
        let too_many = || ApiError::TooManyRequests { what: self.what, retry_after_secs: self.retry_after_secs };
        let mut running = self.running.lock().map_err(|_| too_many())?;
        let count = running.entry(Arc::clone(client)).or_insert(0);
        if *count >= self.per_client {
            return Err(too_many());
        }
        *count += 1;
        Ok(Slot { client: Arc::clone(client), running: Arc::clone(&self.running) })
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        if let Ok(mut running) = self.running.lock() {
            if let Some(count) = running.get_mut(&self.client) {
                *count -= 1;
                if *count == 0 {
                    running.remove(&self.client);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_client_gets_its_own_limit_and_a_dropped_slot_frees_its_place() {
        let limiter = ClientLimiter::new("downloads", 2, 1);
        let (alice, bob): (Arc<str>, Arc<str>) = ("alice".into(), "bob".into());
        let first = limiter.enter(&alice).ok();
        let second = limiter.enter(&alice).ok();
        assert!(first.is_some() && second.is_some());
        assert_eq!(limiter.enter(&alice).err().map(|e| e.code()), Some("too_many_requests"));
        assert!(limiter.enter(&bob).is_ok(), "another client is not limited by alice");
        drop(first);
        assert!(limiter.enter(&alice).is_ok());
    }
}
