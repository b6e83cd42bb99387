//! Helpers for the system tests: a fresh database per test, the accounts-service on a port of its own,
//! and small HTTP conveniences.

pub mod advances;
pub mod chaos;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rust_decimal::Decimal;
use serde_json::Value;
use sqlx::postgres::PgPoolOptions;
use sqlx::{Connection, PgConnection, PgPool};

/// The server URL the tests create their databases on (`make test` sets it from scripts/postgres.sh).
pub fn server_url() -> String {
    std::env::var("TEST_DATABASE_URL")
        .or_else(|_| std::env::var("DATABASE_URL"))
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

/// `url` with its database name replaced.
pub fn with_database(url: &str, database: &str) -> String {
    let (base, query) = url.split_once('?').map_or((url, None), |(b, q)| (b, Some(q)));
    let base = base.rsplit_once('/').map_or(base, |(prefix, _)| prefix);
    match query {
        Some(query) => format!("{base}/{database}?{query}"),
        None => format!("{base}/{database}"),
    }
}

/// A database created for one test and dropped by [`TestDatabase::drop_database`].
pub struct TestDatabase {
    pub name: String,
    pub url: String,
}

const TEST_DB_PREFIX: &str = "systest_";

impl TestDatabase {
    /// Creates a uniquely named empty database. Leftovers of crashed runs older than an hour are dropped.
    pub async fn create() -> anyhow::Result<Self> {
        let server = server_url();
        let mut admin = PgConnection::connect(&server).await.with_context(|| format!("cannot reach {server}"))?;
        let now_s = chrono::Utc::now().timestamp();
        let stale: Vec<(String,)> = sqlx::query_as("SELECT datname FROM pg_database WHERE datname LIKE $1")
            .bind(format!("{TEST_DB_PREFIX}%"))
            .fetch_all(&mut admin)
            .await?;
        for (name,) in stale {
            let created_s = name.split('_').nth(1).and_then(|s| s.parse::<i64>().ok()).unwrap_or(now_s);
            if now_s - created_s > 3600 {
                let _ =
                    sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)")).execute(&mut admin).await;
            }
        }
        let name = format!("{TEST_DB_PREFIX}{now_s}_{}", uuid::Uuid::new_v4().simple());
        sqlx::query(&format!("CREATE DATABASE \"{name}\"")).execute(&mut admin).await?;
        Ok(Self { url: with_database(&server, &name), name })
    }

    /// Drops the database, closing any connection still open to it.
    pub async fn drop_database(&self) -> anyhow::Result<()> {
        let mut admin = PgConnection::connect(&server_url()).await?;
        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)", self.name)).execute(&mut admin).await?;
        Ok(())
    }
}

/// A running accounts-service with its own database.
pub struct TestApp {
    pub addr: SocketAddr,
    pub base_url: String,
    pub client: reqwest::Client,
    /// A direct pool to the service's database, for checks behind the API's back.
    pub pool: PgPool,
    pub database: TestDatabase,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts the service on 127.0.0.1:0 with default settings plus `overrides`.
    pub async fn spawn_with(overrides: &[(&str, &str)]) -> anyhow::Result<Self> {
        let database = TestDatabase::create().await?;
        let url = database.url.clone();
        let overrides: Vec<(String, String)> = overrides.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        let settings = accounts_service::Settings::from_lookup(|name| {
            if name == "DATABASE_URL" {
                return Some(url.clone());
            }
            overrides.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone())
        })?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let (shutdown_tx, shutdown_rx) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(accounts_service::run(settings, listener, async move {
            let _ = shutdown_rx.await;
        }));
        let app = Self {
            addr,
            base_url: format!("http://{addr}"),
            client: reqwest::Client::builder().timeout(Duration::from_secs(60)).build()?,
            pool: PgPoolOptions::new().max_connections(8).connect(&database.url).await?,
            database,
            shutdown: Some(shutdown_tx),
            server: Some(server),
        };
        wait_healthy(&app.client, &app.base_url, Duration::from_secs(30)).await?;
        Ok(app)
    }

    /// Starts the service with default settings.
    pub async fn spawn() -> anyhow::Result<Self> {
        Self::spawn_with(&[]).await
    }

    /// An absolute URL for `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// POSTs JSON and returns the status, headers and parsed body.
    pub async fn post(&self, path: &str, body: &Value, key: Option<&str>) -> anyhow::Result<Reply> {
        let mut request = self.client.post(self.url(path)).json(body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        Reply::read(request.send().await?).await
    }

    /// GETs a path and returns the status, headers and parsed body.
    pub async fn get(&self, path: &str) -> anyhow::Result<Reply> {
        Reply::read(self.client.get(self.url(path)).send().await?).await
    }

    /// Opens an account and returns its id.
    pub async fn open_account(&self) -> anyhow::Result<String> {
        let reply = self.post("/api/v1/accounts", &serde_json::json!({}), None).await?;
        anyhow::ensure!(reply.status == 201, "account creation answered {}: {}", reply.status, reply.text);
        Ok(reply.str("account_id").to_owned())
    }

    /// Opens an account funded by a bank credit of `amount`.
    pub async fn funded_account(&self, amount: &str) -> anyhow::Result<String> {
        let id = self.open_account().await?;
        let reply = self
            .post(
                "/api/v1/bank_transactions",
                &serde_json::json!({"dst_account_id": id, "amount": amount, "direction": "credit", "reason": "funding"}),
                None,
            )
            .await?;
        anyhow::ensure!(reply.status == 201 && reply.str("status") == "success", "funding failed: {}", reply.text);
        Ok(id)
    }

    /// The balance of an account, read from the database.
    pub async fn balance(&self, account_id: &str) -> anyhow::Result<Decimal> {
        let id = uuid::Uuid::parse_str(account_id)?;
        let (balance,): (Decimal,) =
            sqlx::query_as("SELECT balance FROM accounts WHERE id = $1").bind(id).fetch_one(&self.pool).await?;
        Ok(balance)
    }

    /// Rows in `transactions`.
    pub async fn transaction_count(&self) -> anyhow::Result<i64> {
        let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM transactions").fetch_one(&self.pool).await?;
        Ok(count)
    }

    /// Stops an app that concurrent tasks shared, once they are all done with it.
    pub async fn stop_shared(app: std::sync::Arc<Self>) -> anyhow::Result<()> {
        std::sync::Arc::try_unwrap(app).map_err(|_| anyhow::anyhow!("the app is still shared"))?.stop().await
    }

    /// Stops the service gracefully and drops its database.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        if let Some(server) = self.server.take() {
            tokio::time::timeout(Duration::from_secs(30), server).await???;
        }
        self.pool.close().await;
        self.database.drop_database().await
    }
}

/// A response, read whole.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// Reads a response; a body that is not JSON leaves `json` as `Null`.
    pub async fn read(response: reqwest::Response) -> anyhow::Result<Self> {
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await?;
        let json = serde_json::from_str(&text).unwrap_or(Value::Null);
        Ok(Self { status, headers, text, json })
    }

    /// A string field of the body, or "" when absent.
    pub fn str(&self, field: &str) -> &str {
        self.json.get(field).and_then(Value::as_str).unwrap_or_default()
    }

    /// The error code of an error body, or "" when the body is not one.
    pub fn error_code(&self) -> &str {
        self.json.pointer("/error/code").and_then(Value::as_str).unwrap_or_default()
    }

    /// A numeric field read exactly from the JSON text of the number.
    pub fn decimal(&self, field: &str) -> Decimal {
        decimal_of(self.json.get(field).unwrap_or(&Value::Null))
    }
}

/// The exact decimal of a JSON number (read from its text, never through f64).
pub fn decimal_of(value: &Value) -> Decimal {
    match value {
        Value::Number(number) => {
            let text = number.to_string();
            Decimal::from_str_exact(&text).or_else(|_| Decimal::from_scientific(&text)).unwrap_or_default()
        }
        _ => Decimal::MIN,
    }
}

/// Polls `check` until it returns `Some`, or fails after `limit`.
pub async fn poll_until<T, F, Fut>(limit: Duration, mut check: F) -> anyhow::Result<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<Option<T>>>,
{
    let deadline = Instant::now() + limit;
    loop {
        if let Some(value) = check().await? {
            return Ok(value);
        }
        if Instant::now() > deadline {
            bail!("condition not met within {limit:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Polls `{base_url}/health` until it answers 200, or fails after `limit`.
pub async fn wait_healthy(client: &reqwest::Client, base_url: &str, limit: Duration) -> anyhow::Result<()> {
    poll_until(limit, || {
        let request = client.get(format!("{base_url}/health")).send();
        async move { Ok(request.await.ok().filter(|r| r.status().is_success()).map(|_| ())) }
    })
    .await
}

/// A tiny deterministic generator (an LCG), so a workload can be replayed from its seed.
pub struct Lcg(pub u64);

impl Lcg {
    /// The next value in `0..bound`.
    pub fn next(&mut self, bound: u64) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % bound
    }
}

/// The path of a binary built by `cargo build --bins` in the same target directory as the running executable
/// (a test runs from `target/<profile>/deps/`, a binary such as the benchmark from `target/<profile>/`).
pub fn binary_path(name: &str) -> anyhow::Result<std::path::PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates: Vec<std::path::PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join(name)).collect();
    candidates.iter().find(|path| path.exists()).cloned().with_context(|| {
        format!("{name} is missing next to {}: run `cargo build --bins` first (make test does)", exe.display())
    })
}
