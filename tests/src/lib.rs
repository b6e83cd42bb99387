//! Helpers for the system tests, the bank test and the benchmark: one way to start each service, a fresh
//! database per test, child processes that die with the test, and small HTTP conveniences.
//!
//! - [`TestLedger`]: the accounts-service binary on a database and port of its own.
//! - [`Stack`]: the ledger, a Temporal dev server, the advances-api and the advances-worker.
//! - [`chaos`]: the bank test's workload and checker.

pub mod book;
pub mod chaos;
pub mod chaos_events;
pub mod db;
pub mod feed;
pub mod http;
pub mod ledger;
pub mod process;
pub mod receiver;
pub mod replica;
pub mod seed;
pub mod stack;
pub mod temporal;
pub mod tls;

pub use db::{server_url, TestDatabase};
pub use http::{dec, decimal_of, poll_until, wait_healthy, Reply};
pub use ledger::TestLedger;
pub use process::{binary_path, free_port, ChildProcess};
pub use stack::Stack;

/// A tiny deterministic generator (an LCG), so a workload can be replayed from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value in `0..bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}
