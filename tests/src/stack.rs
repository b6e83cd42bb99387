//! The whole system as separate processes, as an operator runs it: the accounts-service ([`TestLedger`]), the
//! advances-worker and the advances-api binaries, a Temporal dev server and two databases of their own.

use std::path::PathBuf;
use std::time::Duration;

use advances_contract::{AdvanceView, AdvancesClient, CreateAdvanceRequest, Created};
use anyhow::Context;
use ledger_contract::{scopes, TransactionStatus};
use money::Amount;
use rust_decimal::Decimal;
use serde_json::Value;
use uuid::Uuid;

use crate::db::TestDatabase;
use crate::http::{poll_until, post_json, wait_healthy, Reply};
use crate::ledger::TestLedger;
use crate::process::{add_client, client_with_token, free_port, operator_command, ChildProcess};
use crate::temporal::TestTemporal;

/// What the worker's ledger client may do: move money to and from the bank, and read accounts and its own
/// transactions.
pub const WORKER_LEDGER_SCOPES: &[&str] = &[scopes::BANK_WRITE, scopes::ACCOUNTS_READ];

/// Every scope of the advances-api.
pub const ADVANCES_SCOPES: [&str; 7] = [
    "advances:read",
    "advances:write",
    "advances:operate",
    "alerts:read",
    "advances:report",
    "events:read",
    "webhooks:manage",
];

/// The settings [`Stack::start`] takes as the terms of the product `standard` it adds (with their defaults, the
/// seed's terms), instead of passing them to the services.
const PRODUCT_TERMS: [(&str, &str, &str); 5] = [
    ("ADVANCE_PAYMENTS", "--payments", "12"),
    ("ADVANCE_PAYMENT_INTERVAL", "--interval", "7d"),
    ("ADVANCE_MAX_FAILED_EXTRA_PAYMENTS", "--max-failed-extra-payments", "12"),
    ("PRODUCT_MIN_AMOUNT", "--min-amount", "0.12"),
    ("PRODUCT_MAX_AMOUNT", "--max-amount", "1000000"),
];

/// One debit of a payment as the ledger recorded it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct LedgerDebit {
    pub idempotency_key: String,
    pub amount: Decimal,
    #[sqlx(try_from = "String")]
    pub status: TransactionStatus,
}

/// Everything, started; stopped by [`Stack::stop`] or, if a test fails first, killed on drop.
pub struct Stack {
    pub temporal: TestTemporal,
    pub ledger: TestLedger,
    pub advances_db: TestDatabase,
    /// A direct pool to the advances database, for checks behind the services' backs.
    pub advances: sqlx::PgPool,
    pub api_url: String,
    pub worker_metrics_url: String,
    /// Plain HTTP with [`Stack::token`], for requests the typed client would never send (bad input, raw checks).
    pub client: reqwest::Client,
    /// The advances API's typed client (`advances-contract`), with [`Stack::token`].
    pub api: AdvancesClient,
    /// The advances-api token of the client `test`, which holds every advances scope.
    pub token: String,
    pub logs: PathBuf,
    api_process: ChildProcess,
    api_env: Vec<(String, String)>,
    worker: Option<ChildProcess>,
    worker_env: Vec<(String, String)>,
}

/// Another advances-api instance on the same database and Temporal (killed on drop).
pub struct OtherApi {
    pub api: AdvancesClient,
    _process: ChildProcess,
}

impl Stack {
    /// Starts everything; `settings` are extra variables for the api and the worker, except the terms of the
    /// product `standard` it adds first (`ADVANCE_PAYMENT_INTERVAL` and the others of [`PRODUCT_TERMS`]).
    pub async fn start(settings: &[(&str, &str)]) -> anyhow::Result<Self> {
        Self::start_with(settings, &[]).await
    }

    /// [`Stack::start`] on a Temporal server with more dynamic configuration (see [`TestTemporal::start_with`]).
    pub async fn start_with(settings: &[(&str, &str)], temporal_config: &[&str]) -> anyhow::Result<Self> {
        let (temporal, ledger, advances_db) =
            tokio::try_join!(TestTemporal::start_with(temporal_config), TestLedger::start(), TestDatabase::create())?;
        let logs = std::env::temp_dir().join(format!("advances-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&logs)?;
        let (api_port, metrics_port) = (free_port()?, free_port()?);
        // Each process holds only the scopes it needs, as `make up` gives them.
        let (worker_token, api_ledger_token, token) = tokio::try_join!(
            add_client("accounts-service", &ledger.database.url, "advances-worker", WORKER_LEDGER_SCOPES),
            add_client("accounts-service", &ledger.database.url, "advances-api", &[scopes::ACCOUNTS_READ]),
            add_client("advances-api", &advances_db.url, "test", &ADVANCES_SCOPES),
        )?;
        let (terms, settings): (Vec<_>, Vec<_>) =
            settings.iter().partition(|(name, _)| PRODUCT_TERMS.iter().any(|(term, _, _)| term == name));
        let mut product = vec!["product", "add", "--name", "standard"];
        for (term, flag, default) in PRODUCT_TERMS {
            product.extend([flag, terms.iter().find(|(name, _)| *name == term).map_or(default, |(_, value)| *value)]);
        }
        operator_command("advances-api", &advances_db.url, &product).await?;
        let mut common: Vec<(String, String)> = vec![
            ("DATABASE_URL".into(), advances_db.url.clone()),
            ("TEMPORAL_ADDRESS".into(), temporal.address.clone()),
            ("ACCOUNTS_URL".into(), ledger.base_url.clone()),
        ];
        common.extend(settings.iter().map(|(name, value)| ((*name).to_owned(), (*value).to_owned())));
        let mut worker_env = common.clone();
        worker_env.push(("METRICS_ADDR".into(), format!("127.0.0.1:{metrics_port}")));
        worker_env.push(("ACCOUNTS_API_TOKEN".into(), worker_token));
        let mut api_env = common;
        api_env.push(("ACCOUNTS_API_TOKEN".into(), api_ledger_token));
        let listen = ("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{api_port}"));
        let api_process =
            ChildProcess::binary("advances-api", &[&api_env[..], &[listen]].concat(), &logs.join("advances-api.log"))?;
        let api_url = format!("http://127.0.0.1:{api_port}");
        let mut stack = Self {
            temporal,
            ledger,
            advances: sqlx::postgres::PgPoolOptions::new().max_connections(4).connect(&advances_db.url).await?,
            advances_db,
            api: AdvancesClient::new(&api_url, Some(token.clone()), Duration::from_secs(60))?,
            api_url,
            worker_metrics_url: format!("http://127.0.0.1:{metrics_port}"),
            client: client_with_token(Some(&token))?,
            token,
            logs,
            api_process,
            api_env,
            worker: None,
            worker_env,
        };
        let (client, api_url) = (stack.client.clone(), stack.api_url.clone());
        let api_up = wait_healthy(&client, &api_url, Duration::from_secs(60));
        let (worker_up, api_up) = tokio::join!(stack.start_worker(), api_up);
        worker_up?;
        api_up.with_context(|| format!("the advances-api did not come up; logs in {}", stack.logs.display()))?;
        Ok(stack)
    }

    /// Starts the worker (again) and waits for its health endpoint.
    pub async fn start_worker(&mut self) -> anyhow::Result<()> {
        let worker = ChildProcess::binary("advances-worker", &self.worker_env, &self.logs.join("advances-worker.log"))?;
        self.worker = Some(worker);
        wait_healthy(&self.client, &self.worker_metrics_url, Duration::from_secs(60))
            .await
            .with_context(|| format!("the advances-worker did not come up; logs in {}", self.logs.display()))
    }

    /// Starts another advances-api on the same database, Temporal and ledger, as a second replica would run.
    pub async fn other_api(&self, n: usize) -> anyhow::Result<OtherApi> {
        let url = format!("http://127.0.0.1:{}", free_port()?);
        let listen = ("LISTEN_ADDR".to_owned(), url.trim_start_matches("http://").to_owned());
        let log = self.logs.join(format!("advances-api-{n}.log"));
        let process = ChildProcess::binary("advances-api", &[&self.api_env[..], &[listen]].concat(), &log)?;
        wait_healthy(&self.client, &url, Duration::from_secs(60)).await?;
        Ok(OtherApi {
            api: AdvancesClient::new(&url, Some(self.token.clone()), Duration::from_secs(60))?,
            _process: process,
        })
    }

    /// Runs `advances-api <args…>` (`product add …`) on the stack's advances database; its stdout.
    pub async fn operator(&self, args: &[&str]) -> anyhow::Result<String> {
        operator_command("advances-api", &self.advances_db.url, args).await
    }

    /// SIGKILLs the worker, as a crash would.
    pub fn kill_worker(&mut self) -> anyhow::Result<()> {
        if let Some(mut worker) = self.worker.take() {
            worker.kill()?;
        }
        Ok(())
    }

    /// The pids of the accounts-service, the advances-api and the advances-worker.
    pub async fn pids(&self) -> [u32; 3] {
        [self.ledger.pid().await, self.api_process.pid(), self.worker.as_ref().map_or(0, ChildProcess::pid)]
    }

    pub fn worker_log(&self) -> String {
        std::fs::read_to_string(self.logs.join("advances-worker.log")).unwrap_or_default()
    }

    pub async fn post(&self, base: &str, path: &str, body: &Value, key: Option<&str>) -> anyhow::Result<Reply> {
        post_json(&self.client, &format!("{base}{path}"), body, key).await
    }

    pub async fn get(&self, base: &str, path: &str) -> anyhow::Result<Reply> {
        Reply::read(self.client.get(format!("{base}{path}")).send().await?).await
    }

    /// Opens an account with `balance` in it (a bank credit unless it is 0), returns its id.
    pub async fn account(&self, balance: &str) -> anyhow::Result<Uuid> {
        if crate::http::dec(balance) == Decimal::ZERO {
            self.ledger.open_account().await
        } else {
            self.ledger.funded_account(balance).await
        }
    }

    /// Asks for an advance of `amount` to `account` through the typed client.
    pub async fn create_advance(&self, account: Uuid, amount: &str, key: Option<&str>) -> anyhow::Result<Created> {
        let amount = Amount::parse(amount)?.into();
        let request =
            CreateAdvanceRequest { account_id: account, amount, advance_id: None, product: None, first_due_at: None };
        Ok(self.api.create_advance(&request, key).await?)
    }

    /// Polls `GET /api/v1/advances/{id}` until `check` holds.
    pub async fn wait_for_advance(
        &self,
        advance_id: Uuid,
        limit: Duration,
        check: impl Fn(&AdvanceView) -> bool,
    ) -> anyhow::Result<AdvanceView> {
        poll_until(limit, || async {
            let advance = self.api.advance(advance_id).await?;
            Ok(check(&advance).then_some(advance))
        })
        .await
        .with_context(|| format!("advance {advance_id}; logs in {}", self.logs.display()))
    }

    /// The ledger's successful and failed payment debits of an account, oldest first.
    pub async fn debits(&self, account: Uuid) -> anyhow::Result<Vec<LedgerDebit>> {
        Ok(sqlx::query_as(
            "SELECT idempotency_key, amount, status FROM transactions
             WHERE dst_account_id = $1 AND direction = 'debit' AND idempotency_key LIKE 'payment-%'
             ORDER BY created_at, id",
        )
        .bind(account)
        .fetch_all(&self.ledger.pool)
        .await?)
    }

    /// The ledger's grants (bank credits made with an advance key) of an account.
    pub async fn grants(&self, account: Uuid) -> anyhow::Result<i64> {
        let (count,): (i64,) = sqlx::query_as(
            "SELECT count(*) FROM transactions WHERE dst_account_id = $1 AND idempotency_key LIKE 'advance-%-grant'",
        )
        .bind(account)
        .fetch_one(&self.ledger.pool)
        .await?;
        Ok(count)
    }

    /// The balance as the ledger's API shows it.
    pub async fn balance(&self, account: Uuid) -> anyhow::Result<Decimal> {
        Ok(self.ledger.account(account).await?.balance)
    }

    /// Stops everything and drops the databases; the logs are removed too.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.kill_worker()?;
        self.api_process.terminate(Duration::from_secs(30)).await?;
        self.advances.close().await;
        self.advances_db.drop_database().await?;
        self.ledger.stop().await?;
        let _ = std::fs::remove_dir_all(&self.logs);
        self.temporal.stop();
        Ok(())
    }
}
