//! The bank test in small (the full one is `make chaos`): the accounts-service binary is SIGKILLed and
//! restarted, and its database connections are terminated, while clients move money with Idempotency-Keys.
//! Then the negative control: the same checker must catch a transfer that reads and writes without locks.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::PgPoolOptions;
use system_tests::chaos::{self, pause_unless_stopped, terminate_backends, FaultLog, Target, Workload};
use system_tests::{server_url, TestLedger};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_neither_created_nor_lost_while_the_service_is_killed_and_its_connections_cut() -> anyhow::Result<()> {
    let ledger = Arc::new(TestLedger::start().await?);
    let target = Target::of(&ledger)?;
    let workload = Workload {
        accounts: 8,
        initial_balance: Decimal::from(100),
        clients: 8,
        readers: 2,
        operations_per_client: 250,
        broken_transfers: false,
        seed: 11,
    };
    let faults = FaultLog::default();
    let admin = PgPoolOptions::new().max_connections(1).connect(&server_url()).await?;
    let schedule = {
        let (restarter, faults) = (Arc::clone(&ledger), faults.clone());
        let (database, admin) = (ledger.database.name.clone(), admin.clone());
        move |stop: Arc<AtomicBool>| async move {
            let mut round = 0;
            while pause_unless_stopped(&stop, Duration::from_millis(700)).await {
                round += 1;
                if round % 2 == 1 {
                    restarter.restart(Duration::from_millis(300)).await?;
                    faults.note("SIGKILL accounts-service");
                } else {
                    let cut = terminate_backends(&admin, &database).await?;
                    faults.note(format!("pg_terminate_backend: {cut} connections"));
                }
            }
            Ok(())
        }
    };
    let history = chaos::run(&target, &workload, schedule).await?;
    let verdict = chaos::check(&target, &workload, &history).await?;
    let log = faults.entries();
    assert!(verdict.is_valid(), "{:#?}\nfaults: {log:?}", verdict.problems);
    assert_eq!(verdict.operations, 2000);
    eprintln!("chaos (small): {verdict:?} in {:?}; faults: {log:?}", history.elapsed);
    assert!(
        log.iter().any(|f| f.starts_with("SIGKILL")) && log.iter().any(|f| f.starts_with("pg_terminate")),
        "{log:?}"
    );
    assert!(verdict.retried_operations > 0, "the faults hit requests in flight: {verdict:?}");
    assert!(verdict.reads > 10, "{verdict:?}");
    admin.close().await;
    TestLedger::stop_shared(ledger).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_reports_the_money_a_lockless_transfer_loses() -> anyhow::Result<()> {
    let ledger = TestLedger::start().await?;
    let target = Target::of(&ledger)?;
    let workload = Workload {
        accounts: 4,
        initial_balance: Decimal::from(100),
        clients: 8,
        readers: 1,
        operations_per_client: 100,
        broken_transfers: true,
        seed: 12,
    };
    let history = chaos::run(&target, &workload, |_stop| async { Ok(()) }).await?;
    let verdict = chaos::check(&target, &workload, &history).await?;
    assert!(!verdict.is_valid(), "lost updates must be caught: {verdict:?}");
    assert!(
        verdict.problems.iter().any(|p| p.starts_with("money created") || p.starts_with("money lost")),
        "{:#?}",
        verdict.problems
    );
    ledger.stop().await
}
