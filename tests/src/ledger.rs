//! The one way tests, the bank test and the benchmark start the ledger: the `accounts-service` binary on a
//! database and a port of its own, restartable on that port, killed with the test.

use std::path::PathBuf;
use std::time::Duration;

use ledger_contract::{
    scopes, Account, BankTransactionRequest, Direction, LedgerClient, Transaction, TransactionStatus,
};
use money::Amount;
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::PgPool;
use uuid::Uuid;

use crate::db::TestDatabase;
use crate::http::{post_json, wait_healthy, Reply};
use crate::process::{add_client, client_with_token, free_port, ChildProcess};

/// The `application_name` of the tests' own connections, which fault injection spares.
pub const CHECKER_APPLICATION: &str = "test-checker";

/// A running accounts-service with its own database.
pub struct TestLedger {
    pub base_url: String,
    /// Plain HTTP with [`TestLedger::token`], for requests the typed client would never send (bad input, raw
    /// checks).
    pub client: reqwest::Client,
    /// The ledger's typed client (`ledger-contract`), with [`TestLedger::token`].
    pub api: LedgerClient,
    /// The token of the client `test`, which holds every scope (`None` when the service runs with AUTH=off).
    pub token: Option<String>,
    /// A direct pool to the service's database, for checks behind the API's back.
    pub pool: PgPool,
    pub database: TestDatabase,
    /// The first service process; [`TestLedger::add_instance`] starts more on the same database.
    instance: ServiceInstance,
}

/// One accounts-service process: restartable on its port, killed with the test.
pub struct ServiceInstance {
    pub base_url: String,
    /// The accounts-service binary this instance runs (the workspace's own, or an older build to compare with).
    binary: PathBuf,
    env: Vec<(String, String)>,
    log: PathBuf,
    client: reqwest::Client,
    process: tokio::sync::Mutex<ChildProcess>,
}

impl ServiceInstance {
    /// Starts the binary with `env` on a free port (`LISTEN_ADDR` is set here) and waits for it.
    async fn spawn(
        binary: PathBuf,
        mut env: Vec<(String, String)>,
        log: PathBuf,
        client: reqwest::Client,
    ) -> anyhow::Result<Self> {
        let port = free_port()?;
        env.retain(|(name, _)| name != "LISTEN_ADDR");
        env.push(("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{port}")));
        let process = ChildProcess::spawn(&binary, &[], &env, &log)?;
        let instance = Self {
            base_url: format!("http://127.0.0.1:{port}"),
            binary,
            env,
            log,
            client,
            process: tokio::sync::Mutex::new(process),
        };
        instance.wait_healthy().await?;
        Ok(instance)
    }

    async fn wait_healthy(&self) -> anyhow::Result<()> {
        wait_healthy(&self.client, &self.base_url, Duration::from_secs(30)).await.map_err(|error| {
            anyhow::anyhow!("the accounts-service did not come up: {error}; its log:\n{}", self.log_text())
        })
    }

    /// What the process logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process id.
    pub async fn pid(&self) -> u32 {
        self.process.lock().await.pid()
    }

    /// SIGKILLs the process, then starts it again on its port after `down` and waits for it.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        let mut process = self.process.lock().await;
        process.kill()?;
        tokio::time::sleep(down).await;
        *process = ChildProcess::spawn(&self.binary, &[], &self.env, &self.log)?;
        drop(process);
        self.wait_healthy().await
    }

    /// SIGTERMs the process and waits for it to exit.
    pub async fn terminate(&self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.process.lock().await.terminate(limit).await
    }

    /// Stops the process (SIGTERM; one already gone is fine) and removes its log.
    pub async fn stop(self) {
        let _ = self.terminate(Duration::from_secs(30)).await;
        let _ = std::fs::remove_file(&self.log);
    }
}

/// Adds the client `test` with every scope; an older build (a benchmark's baseline) that does not know the
/// newer scopes gets those it had since clients existed.
async fn add_client_to(binary: &std::path::Path, database_url: &str) -> anyhow::Result<String> {
    let binary = binary.to_string_lossy();
    match add_client(&binary, database_url, "test", &scopes::ALL).await {
        Ok(token) => Ok(token),
        Err(error) if format!("{error:#}").contains("unknown scope") => {
            add_client(&binary, database_url, "test", &scopes::ALL[..5]).await
        }
        Err(error) => Err(error),
    }
}

impl TestLedger {
    /// Starts the service with default settings.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts the service with default settings plus `settings` (environment variables).
    pub async fn start_with(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_on(TestDatabase::create().await?, settings).await
    }

    /// Starts the service on a database the test prepared (an older schema, rows written before the service
    /// ran), with default settings plus `settings`.
    pub async fn start_on(database: TestDatabase, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_binary_on(crate::binary_path("accounts-service")?, database, settings).await
    }

    /// Starts another build of the accounts-service (an older version, for a benchmark against it) on a new
    /// database, with default settings plus `settings`.
    pub async fn start_binary(binary: PathBuf, settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_binary_on(binary, TestDatabase::create().await?, settings).await
    }

    /// Starts a build of the accounts-service (this one, or an older one) on `database`, with default settings
    /// plus `settings`.
    pub async fn start_binary_on(
        binary: PathBuf,
        database: TestDatabase,
        settings: &[(&str, &str)],
    ) -> anyhow::Result<Self> {
        let mut env = vec![("DATABASE_URL".to_owned(), database.url.clone())];
        env.extend(settings.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        let auth_off = settings.contains(&("AUTH", "off"));
        let token = match auth_off {
            true => None,
            false => Some(add_client_to(&binary, &database.url).await?),
        };
        let log = std::env::temp_dir().join(format!("accounts-service-{}.log", database.name));
        let client = client_with_token(token.as_deref())?;
        let instance = ServiceInstance::spawn(binary, env, log, client.clone()).await?;
        let base_url = instance.base_url.clone();
        let api = LedgerClient::new(&base_url, token.clone(), Duration::from_secs(60))?;
        let options: PgConnectOptions = database.url.parse()?;
        let pool =
            PgPoolOptions::new().max_connections(8).connect_with(options.application_name(CHECKER_APPLICATION)).await?;
        Ok(Self { base_url, client, api, token, pool, database, instance })
    }

    /// Starts another service process on the same database and settings, on a port of its own (several
    /// instances behind one load balancer, as in production).
    pub async fn add_instance(&self) -> anyhow::Result<ServiceInstance> {
        let n = uuid::Uuid::new_v4().simple();
        let log = std::env::temp_dir().join(format!("accounts-service-{}-{n}.log", self.database.name));
        ServiceInstance::spawn(self.instance.binary.clone(), self.instance.env.clone(), log, self.client.clone()).await
    }

    /// The service's address, for connections below HTTP (raw sockets, a TLS proxy in front of it).
    pub fn addr(&self) -> anyhow::Result<std::net::SocketAddr> {
        Ok(self.base_url.trim_start_matches("http://").parse()?)
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs JSON and returns the status, headers and parsed body.
    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> anyhow::Result<Reply> {
        post_json(&self.client, &self.url(path), body, key).await
    }

    /// GETs a path and returns the status, headers and parsed body.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        Reply::read(self.client.get(self.url(path)).send().await?).await
    }

    /// Opens an account and returns its id.
    pub async fn open_account(&self) -> anyhow::Result<Uuid> {
        Ok(self.api.create_account(None).await?.account_id)
    }

    /// A bank credit or debit that must succeed.
    pub async fn bank(&self, account: Uuid, amount: &str, direction: Direction) -> anyhow::Result<Transaction> {
        let request = BankTransactionRequest::new(account, Amount::parse(amount)?, direction, None);
        let transaction = self.api.bank_transaction(&request, None).await?;
        anyhow::ensure!(transaction.status == TransactionStatus::Success, "{direction} of {amount}: {transaction:?}");
        Ok(transaction)
    }

    /// Opens an account funded by a bank credit of `amount`.
    pub async fn funded_account(&self, amount: &str) -> anyhow::Result<Uuid> {
        let account = self.open_account().await?;
        self.bank(account, amount, Direction::Credit).await?;
        Ok(account)
    }

    /// The account as the API shows it.
    pub async fn account(&self, account: Uuid) -> anyhow::Result<Account> {
        Ok(self.api.account(account).await?)
    }

    /// The balance of an account, read from the database.
    pub async fn balance(&self, account: Uuid) -> anyhow::Result<Decimal> {
        let (balance,): (Decimal,) =
            sqlx::query_as("SELECT balance FROM accounts WHERE id = $1").bind(account).fetch_one(&self.pool).await?;
        Ok(balance)
    }

    /// The sum of every balance, read from the database.
    pub async fn total_balance(&self) -> anyhow::Result<Decimal> {
        let (total,): (Option<Decimal>,) =
            sqlx::query_as("SELECT sum(balance) FROM accounts").fetch_one(&self.pool).await?;
        Ok(total.unwrap_or(Decimal::ZERO))
    }

    /// Rows in `transactions`.
    pub async fn transaction_count(&self) -> anyhow::Result<i64> {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM transactions").fetch_one(&self.pool).await?;
        Ok(count)
    }

    /// Adds a client with `scopes` (through the service's command line) and returns its typed client.
    pub async fn client_with(&self, name: &str, scopes: &[&str]) -> anyhow::Result<(String, LedgerClient)> {
        let token = add_client("accounts-service", &self.database.url, name, scopes).await?;
        let api = LedgerClient::new(&self.base_url, Some(token.clone()), Duration::from_secs(60))?;
        Ok((token, api))
    }

    /// The process id of the service.
    pub async fn pid(&self) -> u32 {
        self.instance.pid().await
    }

    /// What the service logged so far.
    pub fn log_text(&self) -> String {
        self.instance.log_text()
    }

    /// SIGKILLs the service, then starts it again on its port after `down` and waits for it.
    pub async fn restart(&self, down: Duration) -> anyhow::Result<()> {
        self.instance.restart(down).await
    }

    /// SIGTERMs the service and waits for it to exit.
    pub async fn terminate(&self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        self.instance.terminate(limit).await
    }

    /// Stops a ledger that concurrent tasks shared, once they are all done with it.
    pub async fn stop_shared(ledger: std::sync::Arc<Self>) -> anyhow::Result<()> {
        std::sync::Arc::try_unwrap(ledger).map_err(|_| anyhow::anyhow!("the ledger is still shared"))?.stop().await
    }

    /// Stops the service (SIGTERM; a process already gone is fine), drops its database and its log.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.instance.stop().await;
        self.pool.close().await;
        self.database.drop_database().await?;
        Ok(())
    }
}
