//! The bank test in small (the full one is `make chaos`): the accounts-service binary is SIGKILLed and
//! restarted, and its database connections are terminated, while clients move money with Idempotency-Keys.
//! Then the negative control: the same checker must catch a transfer that reads and writes without locks.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use system_tests::advances::{free_port, ChildProcess};
use system_tests::chaos::{self, pause_unless_stopped, terminate_backends, FaultLog, Target, Workload};
use system_tests::{server_url, wait_healthy, TestDatabase};
use tokio::sync::Mutex;

struct Ledger {
    database: TestDatabase,
    port: u16,
    log: std::path::PathBuf,
    process: Arc<Mutex<ChildProcess>>,
    target: Target,
}

impl Ledger {
    async fn start() -> anyhow::Result<Self> {
        let database = TestDatabase::create().await?;
        let port = free_port()?;
        let log = std::env::temp_dir().join(format!("chaos-{}.log", database.name));
        let process = ChildProcess::spawn("accounts-service", &Self::env(&database, port), &log)?;
        let client = reqwest::Client::builder().build()?;
        let base_url = format!("http://127.0.0.1:{port}");
        wait_healthy(&client, &base_url, Duration::from_secs(30)).await?;
        let options: PgConnectOptions = database.url.parse()?;
        let pool =
            PgPoolOptions::new().max_connections(8).connect_with(options.application_name("chaos-checker")).await?;
        let target = Target { base_url, client, pool };
        Ok(Self { database, port, log, process: Arc::new(Mutex::new(process)), target })
    }

    fn env(database: &TestDatabase, port: u16) -> Vec<(&'static str, String)> {
        vec![("DATABASE_URL", database.url.clone()), ("LISTEN_ADDR", format!("127.0.0.1:{port}"))]
    }

    async fn stop(self) -> anyhow::Result<()> {
        self.process.lock().await.kill()?;
        self.target.pool.close().await;
        let _ = std::fs::remove_file(&self.log);
        self.database.drop_database().await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn money_is_neither_created_nor_lost_while_the_service_is_killed_and_its_connections_cut() -> anyhow::Result<()> {
    let ledger = Ledger::start().await?;
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
        let (process, faults, env, log) = (
            Arc::clone(&ledger.process),
            faults.clone(),
            Ledger::env(&ledger.database, ledger.port),
            ledger.log.clone(),
        );
        let (database, admin) = (ledger.database.name.clone(), admin.clone());
        move |stop: Arc<AtomicBool>| async move {
            let mut round = 0;
            while pause_unless_stopped(&stop, Duration::from_millis(700)).await {
                round += 1;
                if round % 2 == 1 {
                    let mut service = process.lock().await;
                    service.kill()?;
                    faults.note("SIGKILL accounts-service");
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    *service = ChildProcess::spawn("accounts-service", &env, &log)?;
                } else {
                    let cut = terminate_backends(&admin, &database).await?;
                    faults.note(format!("pg_terminate_backend: {cut} connections"));
                }
            }
            Ok(())
        }
    };
    let history = chaos::run(&ledger.target, &workload, schedule).await?;
    let verdict = chaos::check(&ledger.target, &workload, &history).await?;
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
    ledger.stop().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_checker_reports_the_money_a_lockless_transfer_loses() -> anyhow::Result<()> {
    let ledger = Ledger::start().await?;
    let workload = Workload {
        accounts: 4,
        initial_balance: Decimal::from(100),
        clients: 8,
        readers: 1,
        operations_per_client: 100,
        broken_transfers: true,
        seed: 12,
    };
    let history = chaos::run(&ledger.target, &workload, |_stop| async { Ok(()) }).await?;
    let verdict = chaos::check(&ledger.target, &workload, &history).await?;
    assert!(!verdict.is_valid(), "lost updates must be caught: {verdict:?}");
    assert!(
        verdict.problems.iter().any(|p| p.starts_with("money created") || p.starts_with("money lost")),
        "{:#?}",
        verdict.problems
    );
    ledger.stop().await
}
