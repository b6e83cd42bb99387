//! Helpers for the advances tests: a Temporal dev server per test (from the installed CLI, never
//! downloaded), and child processes that die with the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use temporalio_client::Client;
use temporalio_sdk::testing::{EphemeralExe, LocalServer, LocalWorkflowEnvironmentOptions, WorkflowEnvironment};

/// The `temporal` CLI: `TEST_TEMPORAL_CLI` (set by `make test` from scripts/deps.sh), else what
/// `scripts/deps.sh temporal-path` finds (the real binary, not a shim that would outlive a kill).
pub fn temporal_cli() -> anyhow::Result<String> {
    if let Ok(path) = std::env::var("TEST_TEMPORAL_CLI") {
        return Ok(path);
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps.sh");
    let output = Command::new(script).arg("temporal-path").stderr(Stdio::inherit()).output()?;
    let path = String::from_utf8(output.stdout)?.trim().to_owned();
    anyhow::ensure!(
        output.status.success() && !path.is_empty(),
        "the temporal CLI is not installed: run scripts/deps.sh"
    );
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for a test's own server).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A Temporal dev server of one test, with an in-memory store; stopped by [`TestTemporal::stop`] or when
/// dropped (the SDK kills it on drop).
pub struct TestTemporal {
    pub address: String,
    environment: WorkflowEnvironment<LocalServer>,
}

impl TestTemporal {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let options = LocalWorkflowEnvironmentOptions::builder()
            .server_executable(EphemeralExe::ExistingPath(temporal_cli()?))
            .port(port)
            .extra_args(vec!["--log-level".to_owned(), "error".to_owned()])
            .build();
        let environment =
            WorkflowEnvironment::start_local(options).await.context("starting the Temporal dev server")?;
        Ok(Self { address: format!("127.0.0.1:{port}"), environment })
    }

    pub fn client(&self) -> &Client {
        self.environment.client()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.environment.shutdown().await?;
        Ok(())
    }
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing running.
pub struct ChildProcess {
    pub name: String,
    child: Option<Child>,
}

impl ChildProcess {
    /// Starts `binary` (built by `cargo build --bins`) with `env`; its output goes to `log_path`.
    pub fn spawn(binary: &str, env: &[(&str, String)], log_path: &std::path::Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path)?;
        let mut command = Command::new(crate::binary_path(binary)?);
        command.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).env("RUST_LOG", "info,sqlx=warn");
        for (name, value) in env {
            command.env(name, value);
        }
        Ok(Self {
            name: binary.to_owned(),
            child: Some(command.spawn().with_context(|| format!("starting {binary}"))?),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no shutdown hook runs, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        crate::poll_until(limit, || {
            let exited = child.try_wait().map_err(anyhow::Error::from);
            async move { exited }
        })
        .await
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// The whole system as separate processes: the accounts-service, the advances-worker and the advances-api
/// binaries, each with its settings from the environment, on a dev server and two databases of their own.
pub struct Stack {
    pub temporal: TestTemporal,
    pub accounts_db: crate::TestDatabase,
    pub advances_db: crate::TestDatabase,
    /// Direct pools, for checks behind the services' backs.
    pub ledger: sqlx::PgPool,
    pub advances: sqlx::PgPool,
    pub accounts_url: String,
    pub api_url: String,
    pub worker_metrics_url: String,
    pub client: reqwest::Client,
    pub logs: std::path::PathBuf,
    accounts: ChildProcess,
    accounts_env: Vec<(&'static str, String)>,
    api: ChildProcess,
    worker: Option<ChildProcess>,
    worker_env: Vec<(&'static str, String)>,
}

impl Stack {
    /// Starts everything; `settings` are extra variables for the api and the worker (e.g. the interval).
    pub async fn start(settings: &[(&'static str, &str)]) -> anyhow::Result<Self> {
        let temporal = TestTemporal::start().await?;
        let accounts_db = crate::TestDatabase::create().await?;
        let advances_db = crate::TestDatabase::create().await?;
        let logs = std::env::temp_dir().join(format!("advances-e2e-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs)?;
        let (accounts_port, api_port, metrics_port) = (free_port()?, free_port()?, free_port()?);
        let accounts_url = format!("http://127.0.0.1:{accounts_port}");
        let accounts_env =
            vec![("DATABASE_URL", accounts_db.url.clone()), ("LISTEN_ADDR", format!("127.0.0.1:{accounts_port}"))];
        let accounts = ChildProcess::spawn("accounts-service", &accounts_env, &logs.join("accounts-service.log"))?;
        let client = reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?;
        crate::wait_healthy(&client, &accounts_url, Duration::from_secs(30)).await?;

        let mut common: Vec<(&'static str, String)> = vec![
            ("DATABASE_URL", advances_db.url.clone()),
            ("TEMPORAL_ADDRESS", temporal.address.clone()),
            ("ACCOUNTS_URL", accounts_url.clone()),
        ];
        common.extend(settings.iter().map(|(name, value)| (*name, (*value).to_owned())));
        let mut worker_env = common.clone();
        worker_env.push(("METRICS_ADDR", format!("127.0.0.1:{metrics_port}")));
        let mut api_env = common;
        api_env.push(("LISTEN_ADDR", format!("127.0.0.1:{api_port}")));
        let api = ChildProcess::spawn("advances-api", &api_env, &logs.join("advances-api.log"))?;
        let mut stack = Self {
            temporal,
            ledger: sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&accounts_db.url).await?,
            accounts_db,
            advances: sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&advances_db.url).await?,
            advances_db,
            accounts_url,
            api_url: format!("http://127.0.0.1:{api_port}"),
            worker_metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            client,
            logs,
            accounts,
            accounts_env,
            api,
            worker: None,
            worker_env,
        };
        stack.start_worker().await?;
        crate::wait_healthy(&stack.client, &stack.api_url, Duration::from_secs(60)).await?;
        Ok(stack)
    }

    /// Starts the worker (again) and waits for its health endpoint.
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        let worker = ChildProcess::spawn("advances-worker", &self.worker_env, &self.logs.join("advances-worker.log"))?;
        self.worker = Some(worker);
        crate::wait_healthy(&self.client, &self.worker_metrics_url, Duration::from_secs(60)).await
    }

    /// SIGKILLs the worker, as a crash would.
    pub fn kill_worker(&mut self) -> anyhow::Result<()> {
        if let Some(mut worker) = self.worker.take() {
            worker.kill()?;
        }
        Ok(())
    }

    /// SIGKILLs the accounts-service, then starts it again on its port after `down`.
    pub async fn restart_accounts(&mut self, down: Duration) -> anyhow::Result<()> {
        self.accounts.kill()?;
        tokio::time::sleep(down).await;
        self.accounts =
            ChildProcess::spawn("accounts-service", &self.accounts_env, &self.logs.join("accounts-service.log"))?;
        crate::wait_healthy(&self.client, &self.accounts_url, Duration::from_secs(30)).await
    }

    /// The pids of the accounts-service, the advances-api and the advances-worker.
    pub fn pids(&self) -> [u32; 3] {
        [self.accounts.pid(), self.api.pid(), self.worker.as_ref().map_or(0, ChildProcess::pid)]
    }

    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.logs.join("advances-worker.log")).unwrap_or_default()
    }

    pub async fn post(
        &self,
        base: &str,
        path: &str,
        body: &serde_json::Value,
        key: Option<&str>,
    ) -> anyhow::Result<crate::Reply> {
        let mut request = self.client.post(format!("{base}{path}")).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        crate::Reply::read(request.send().await?).await
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<crate::Reply> {
        crate::Reply::read(self.client.get(format!("{base}{path}")).send().await?).await
    }

    /// Opens an account with `balance` in it (bank credit), returns its id.
    pub async fn account(&self, balance: &str) -> anyhow::Result<String> {
        let reply = self.post(&self.accounts_url, "/api/v1/accounts", &serde_json::json!({}), None).await?;
        let id = reply.str("account_id").to_owned();
        anyhow::ensure!(reply.status == 201, "{}", reply.text);
        if balance != "0" {
            self.bank(&id, balance, "credit").await?;
        }
        Ok(id)
    }

    /// A bank credit or debit on the ledger that must succeed.
    pub async fn bank(&self, account: &str, amount: &str, direction: &str) -> anyhow::Result<()> {
        let body = serde_json::json!({"dst_account_id": account, "amount": amount, "direction": direction});
        let reply = self.post(&self.accounts_url, "/api/v1/bank_transactions", &body, None).await?;
        anyhow::ensure!(reply.str("status") == "success", "{}", reply.text);
        Ok(())
    }

    /// Polls `GET /api/v1/advances/{id}` until `check` holds.
    pub async fn wait_for_advance(
        &self,
        advance_id: &str,
        limit: Duration,
        check: impl Fn(&serde_json::Value) -> bool,
    ) -> anyhow::Result<serde_json::Value> {
        let path = format!("/api/v1/advances/{advance_id}");
        crate::poll_until(limit, || async {
            let reply = self.get(&self.api_url, &path).await?;
            Ok((reply.status == 200 && check(&reply.json)).then_some(reply.json))
        })
        .await
        .with_context(|| format!("advance {advance_id}; logs in {}", self.logs.display()))
    }

    /// The ledger's successful and failed debits of an account: (key, amount, status), oldest first.
    pub async fn debits(&self, account: &str) -> anyhow::Result<Vec<(String, rust_decimal::Decimal, String)>> {
        Ok(sqlx::query_as(
            "SELECT idempotency_key, amount, status FROM transactions
             WHERE dst_account_id = $1 AND direction = 'debit' AND idempotency_key LIKE 'payment-%'
             ORDER BY created_at, id",
        )
        .bind(uuid::Uuid::parse_str(account)?)
        .fetch_all(&self.ledger)
        .await?)
    }

    /// The ledger's grants (bank credits made with an advance key) of an account.
    pub async fn grants(&self, account: &str) -> anyhow::Result<i64> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM transactions WHERE dst_account_id = $1 AND idempotency_key LIKE 'advance-%-grant'",
        )
        .bind(uuid::Uuid::parse_str(account)?)
        .fetch_one(&self.ledger)
        .await?;
        Ok(count)
    }

    pub async fn balance(&self, account: &str) -> anyhow::Result<rust_decimal::Decimal> {
        let reply = self.get(&self.accounts_url, &format!("/api/v1/accounts/{account}")).await?;
        Ok(reply.decimal("balance"))
    }

    /// Stops everything and drops the databases; the logs are removed too.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_worker()?;
        self.api.terminate(Duration::from_secs(30)).await?;
        self.accounts.terminate(Duration::from_secs(30)).await?;
        self.ledger.close().await;
        self.advances.close().await;
        self.accounts_db.drop_database().await?;
        self.advances_db.drop_database().await?;
        let _ = std::fs::remove_dir_all(&self.logs);
        self.temporal.stop().await
    }
}
