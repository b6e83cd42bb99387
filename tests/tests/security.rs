//! The ledger against its own clients: each test sets up an attack an ordinary client could try and asserts
//! that it no longer works (credentials and scopes, per-client idempotency keys, what the download writes).

use std::time::Duration;

use ledger_contract::{scopes, BankTransactionRequest, Direction, LedgerError, TransferRequest};
use money::Amount;
use serde_json::json;
use system_tests::process::client_with_token;
use system_tests::{dec, poll_until, Reply, TestLedger};

/// What a shop's credential holds: its accounts and transfers between them, nothing at the bank's side.
const SHOP: &[&str] = &[scopes::ACCOUNTS_READ, scopes::ACCOUNTS_WRITE, scopes::TRANSFERS_WRITE];

fn forbidden(error: &LedgerError, scope: &str) -> bool {
    matches!(error, LedgerError::Api { status: 403, body, .. } if body.error.code == "forbidden" && body.error.message.contains(scope))
}

#[tokio::test]
async fn an_ordinary_client_can_neither_create_money_nor_read_every_account() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (shop_token, shop) = app.client_with("shop", SHOP).await?;
    let own = shop.create_account(None).await?.account_id;
    let before = (app.total_balance().await?, app.transaction_count().await?);

    // The attack of the review: credit 10^12 from the bank, four times.
    let credit = BankTransactionRequest::new(own, Amount::parse("1000000000000")?, Direction::Credit, None);
    for attempt in 0..4 {
        let refused = shop.bank_transaction(&credit, Some(&format!("mint-{attempt}"))).await;
        assert!(refused.as_ref().is_err_and(|error| forbidden(error, "bank:write")), "{refused:?}");
    }
    assert_eq!((app.total_balance().await?, app.transaction_count().await?), before, "nothing moved or recorded");
    assert_eq!(app.balance(own).await?, dec("0"));

    // Nor may it read every account's transactions.
    let raw = client_with_token(Some(&shop_token))?;
    for path in ["/api/v1/transactions", "/api/v1/transactions/export"] {
        let reply = Reply::read(raw.get(app.url(path)).send().await?).await?;
        assert_eq!((reply.status, reply.error_code()), (403, "forbidden"), "{path}");
        assert!(reply.text.contains("reports:read"), "the refusal names the scope: {}", reply.text);
    }

    // What it may do, it does, and the ledger says who did it.
    let other = app.funded_account("10").await?;
    let paid = shop.transfer(&TransferRequest::new(other, own, Amount::parse("2.50")?, Direction::Debit), None).await?;
    assert_eq!(paid.recorded_by.as_deref(), Some("shop"));
    assert_eq!(app.balance(own).await?, dec("2.50"));
    app.stop().await
}

#[tokio::test]
async fn no_valid_credential_is_a_401_and_a_revoked_one_stops_working() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("AUTH_CACHE_TTL", "200ms")]).await?;
    let token = app.token.clone().unwrap_or_default();
    let anonymous = reqwest::Client::new();
    let accounts = app.url("/api/v1/accounts");
    for header in [None, Some("Bearer wrong"), Some(&format!("Basic {token}")[..]), Some(&token[..])] {
        let mut request = anonymous.post(&accounts).json(&json!({}));
        if let Some(header) = header {
            request = request.header("authorization", header);
        }
        let reply = Reply::read(request.send().await?).await?;
        assert_eq!((reply.status, reply.error_code()), (401, "unauthorized"), "{header:?}");
        assert_eq!(reply.headers.get("www-authenticate").and_then(|v| v.to_str().ok()), Some("Bearer"));
    }
    assert_eq!(app.transaction_count().await? + account_count(&app).await?, 0, "nothing was recorded");
    // The scheme is case-insensitive (RFC 9110).
    let lower = anonymous.post(&accounts).header("authorization", format!("bearer {token}")).json(&json!({}));
    assert_eq!(lower.send().await?.status(), 201);
    // The spec needs a token; health and the docs page do not.
    assert_eq!(anonymous.get(app.url("/api/v1/openapi.json")).send().await?.status(), 401);
    assert_eq!(app.client.get(app.url("/api/v1/openapi.json")).send().await?.status(), 200);
    assert_eq!(anonymous.get(app.url("/health")).send().await?.status(), 200);
    assert_eq!(anonymous.get(app.url("/docs/openapi.json")).send().await?.status(), 200);

    let (_, temp) = app.client_with("temp", SHOP).await?;
    temp.create_account(None).await?;
    let list = client_command(&app, &["list"]).await?;
    assert!(list.contains("temp") && list.contains("transfers:write"), "{list}");
    client_command(&app, &["revoke", "--name", "temp"]).await?;
    poll_until(Duration::from_secs(10), || async {
        Ok(matches!(temp.create_account(None).await, Err(LedgerError::Api { status: 401, .. })).then_some(()))
    })
    .await?;
    let list = client_command(&app, &["list"]).await?;
    let line = list.lines().find(|line| line.starts_with("temp ")).unwrap_or_default();
    assert!(line.contains('T') && !line.contains(" - "), "the revocation time is listed: {line}");
    app.stop().await
}

#[tokio::test]
async fn the_client_command_keeps_only_a_hash_and_refuses_what_it_cannot_do() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (token, _) = app.client_with("kept", &[scopes::ACCOUNTS_READ]).await?;
    let (stored, hashed): (i64, i64) = sqlx::query_as(
        "SELECT count(*) FILTER (WHERE c::text LIKE '%' || $1 || '%'),
                count(*) FILTER (WHERE token_sha256 = sha256(convert_to($1, 'UTF8')) AND name = 'kept')
         FROM api_clients c",
    )
    .bind(&token)
    .fetch_one(&app.pool)
    .await?;
    assert_eq!((stored, hashed), (0, 1), "the token is stored nowhere, only its SHA-256");
    for args in [
        &["add", "--name", "kept", "--scopes", "accounts:read"][..],
        &["add", "--name", "root", "--scopes", "accounts:read,superuser"],
        &["add", "--name", "anonymous", "--scopes", "accounts:read"],
        &["add", "--name", "nobody", "--scopes", ""],
        &["revoke", "--name", "never-added"],
        &["drop"],
    ] {
        assert!(client_command(&app, args).await.is_err(), "{args:?} is refused");
    }
    app.stop().await
}

#[tokio::test]
async fn an_idempotency_key_belongs_to_its_client() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (_, alice) = app.client_with("alice", SHOP).await?;
    let (_, bob) = app.client_with("bob", SHOP).await?;
    let (payer, payee) = (app.funded_account("100").await?, app.open_account().await?);
    let transfer = |amount: &str| -> anyhow::Result<TransferRequest> {
        Ok(TransferRequest::new(payer, payee, Amount::parse(amount)?, Direction::Debit))
    };

    let by_alice = alice.transfer(&transfer("5")?, Some("shared-key")).await?;
    // Bob's request with the same key is a request of its own: neither a replay of Alice's nor a 422.
    let by_bob = bob.transfer(&transfer("7")?, Some("shared-key")).await?;
    assert_ne!(by_alice.transaction_id, by_bob.transaction_id);
    assert_eq!((by_bob.amount.to_string().as_str(), by_bob.recorded_by.as_deref()), ("7", Some("bob")));
    assert_eq!(app.balance(payee).await?, dec("12"));
    // Alice's retry still replays her own.
    assert_eq!(alice.transfer(&transfer("5")?, Some("shared-key")).await?.transaction_id, by_alice.transaction_id);

    // A lookup by key shows the caller's own transactions only.
    let seen = |rows: Vec<ledger_contract::Transaction>| rows.iter().map(|t| t.transaction_id).collect::<Vec<_>>();
    assert_eq!(seen(alice.transactions_by_key("shared-key").await?), vec![by_alice.transaction_id]);
    assert_eq!(seen(bob.transactions_by_key("shared-key").await?), vec![by_bob.transaction_id]);
    assert_eq!(seen(app.api.transactions_by_key("shared-key").await?), Vec::<uuid::Uuid>::new());
    app.stop().await
}

#[tokio::test]
async fn with_auth_off_anyone_may_do_everything_and_the_log_warns() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("AUTH", "off")]).await?;
    let account = app.funded_account("3").await?;
    let reply = app.get("/api/v1/transactions").await?;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.json.pointer("/transactions/0/recorded_by").and_then(|v| v.as_str()), Some("anonymous"));
    assert_eq!(app.balance(account).await?, dec("3"));
    assert!(app.log_text().contains("WARN") && app.log_text().contains("AUTH=off"), "{}", app.log_text());
    app.stop().await
}

#[tokio::test]
async fn the_download_says_who_recorded_each_row_and_never_writes_a_formula() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let account = app.open_account().await?;
    for reason in ["=HYPERLINK(\"http://evil.example\")", "+1+1", "-1", "@SUM(A1)", "\tx", "plain"] {
        let credit = BankTransactionRequest::new(account, Amount::parse("1")?, Direction::Credit, Some(reason.into()));
        app.api.bank_transaction(&credit, None).await?;
    }
    let csv = app.client.get(app.url("/api/v1/transactions/export")).send().await?.text().await?;
    let header = csv.lines().next().unwrap_or_default();
    assert!(header.ends_with(",description,recorded_by"), "{header}");
    let rows: Vec<&str> = csv.lines().skip(1).collect();
    assert_eq!(rows.len(), 6);
    for row in &rows {
        assert!(row.ends_with(",test"), "recorded_by is the client: {row}");
        let description = row.rsplit(',').nth(1).unwrap_or_default();
        let unquoted = description.strip_prefix('"').unwrap_or(description);
        assert!(!unquoted.starts_with(['=', '+', '-', '@', '\t']), "no cell starts a formula: {row}");
    }
    assert!(csv.contains(",\"'=HYPERLINK(\"\"http://evil.example\"\")\","), "{csv}");
    app.stop().await
}

async fn account_count(app: &TestLedger) -> anyhow::Result<i64> {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM accounts").fetch_one(&app.pool).await?;
    Ok(count)
}

/// Runs `accounts-service client …` on the test's database.
async fn client_command(app: &TestLedger, args: &[&str]) -> anyhow::Result<String> {
    system_tests::process::client_command("accounts-service", &app.database.url, args).await
}

#[tokio::test]
async fn credentials_in_a_url_never_reach_an_error_message() -> anyhow::Result<()> {
    let port = system_tests::free_port()?;
    let client = ledger_contract::LedgerClient::new(
        &format!("http://worker:s3cret-password@127.0.0.1:{port}"),
        Some("ledger_token".into()),
        Duration::from_secs(2),
    )?;
    let error = client.account(uuid::Uuid::new_v4()).await.err().map(|error| format!("{error} {error:?}"));
    let error = error.unwrap_or_default();
    assert!(error.contains("no answer"), "{error}");
    assert!(!error.contains("s3cret-password") && !error.contains("ledger_token"), "{error}");
    Ok(())
}

#[tokio::test]
async fn health_says_unavailable_without_echoing_the_database_error() -> anyhow::Result<()> {
    let app = TestLedger::start_with(&[("DB_ACQUIRE_TIMEOUT", "1s")]).await?;
    // The database refuses the service's connections: its pool cannot get one.
    let database = app.database.name.clone();
    let server = sqlx::PgPool::connect(&system_tests::server_url()).await?;
    sqlx::query(&format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS false")).execute(&server).await?;
    sqlx::query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
         WHERE datname = current_database() AND application_name LIKE 'accounts-service%'",
    )
    .execute(&app.pool)
    .await?;
    let health = poll_until(Duration::from_secs(15), || async {
        let reply = app.get("/health").await?;
        Ok((reply.status == 503).then_some(reply))
    })
    .await;
    sqlx::query(&format!("ALTER DATABASE \"{database}\" WITH ALLOW_CONNECTIONS true")).execute(&server).await?;
    server.close().await;
    let health = health?;
    assert_eq!(health.json, json!({"status": "unavailable", "database": "unavailable"}), "{}", health.text);
    app.stop().await
}

#[tokio::test]
async fn a_batch_lookup_by_keys_answers_each_key_in_order_and_only_with_the_callers_own() -> anyhow::Result<()> {
    let app = TestLedger::start().await?;
    let (_, alice) = app.client_with("alice", SHOP).await?;
    let (payer, payee) = (app.funded_account("100").await?, app.open_account().await?);
    let transfer = TransferRequest::new(payer, payee, Amount::parse("1")?, Direction::Debit);
    let first = alice.transfer(&transfer, Some("k-1")).await?;
    let mine = app.api.transfer(&transfer, Some("k-2")).await?;
    let keys: Vec<String> = ["k-2", "k-1", "none", "k-1"].map(str::to_owned).to_vec();
    let found = alice.transactions_by_keys(&keys).await?;
    let summary: Vec<(&str, Vec<uuid::Uuid>)> = found
        .iter()
        .map(|entry| (entry.idempotency_key.as_str(), entry.transactions.iter().map(|t| t.transaction_id).collect()))
        .collect();
    assert_eq!(summary, vec![("k-2", vec![]), ("k-1", vec![first.transaction_id]), ("none", vec![])]);
    let as_test = app.api.transactions_by_keys(&keys).await?;
    assert_eq!(as_test[0].transactions.iter().map(|t| t.transaction_id).collect::<Vec<_>>(), vec![mine.transaction_id]);

    // A full batch of the longest keys fits the route's body limit.
    let longest: Vec<String> = (0..1000).map(|n| format!("{n:0>255}")).collect();
    assert_eq!(alice.transactions_by_keys(&longest).await?.len(), 1000);
    let too_many: Vec<String> = (0..1001).map(|n| format!("k{n}")).collect();
    for bad in [vec![], too_many, vec!["has space".to_owned()]] {
        let refused = alice.transactions_by_keys(&bad).await;
        assert!(matches!(refused, Err(LedgerError::Api { status: 422, .. })), "{refused:?}");
    }
    let (_, writer) = app.client_with("writer", &[scopes::TRANSFERS_WRITE]).await?;
    assert!(writer.transactions_by_keys(&keys).await.is_err_and(|error| forbidden(&error, "accounts:read")));
    app.stop().await
}
