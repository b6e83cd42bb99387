//! Transport security: PostgreSQL over verified TLS for both services' database code, and the ledger's client
//! over HTTPS with a private CA. Each test also shows the attack it stops (plain connections refused, an
//! unknown CA refused). Temporal's TLS is tested in `advances/transport.rs`, which links the SDK.

use std::time::Duration;

use ledger_contract::{LedgerClient, LedgerError};
use system_tests::process::{add_client, ChildProcess};
use system_tests::tls::{TestCa, TlsPostgres, TlsProxy};
use system_tests::{free_port, wait_healthy, TestLedger};

#[tokio::test]
async fn both_services_reach_postgresql_over_verified_tls_and_plain_connections_are_refused() -> anyhow::Result<()> {
    let ca = TestCa::new()?;
    let postgres = TlsPostgres::start(&ca)?;
    let ca_file = ca.write("ca.pem", &ca.pem())?;
    let admin = sqlx::PgPool::connect(&postgres.url("postgres", "verify-full", Some(&ca_file))).await?;
    for database in ["accounts", "advances"] {
        sqlx::query(&format!("CREATE DATABASE {database}")).execute(&admin).await?;
    }

    // Refused: no TLS at all (the server only takes TLS), and TLS with a CA that did not sign the server.
    let plain = sqlx::PgPool::connect(&postgres.url("postgres", "disable", None)).await;
    assert!(plain.is_err(), "a plain connection is refused");
    let stranger = TestCa::new()?;
    let stranger_file = stranger.write("ca.pem", &stranger.pem())?;
    let unverified = sqlx::PgPool::connect(&postgres.url("postgres", "verify-full", Some(&stranger_file))).await;
    assert!(unverified.is_err(), "a server certificate of another CA is refused");

    // The ledger: its client command and the service itself, over verify-full.
    let accounts_url = postgres.url("accounts", "verify-full", Some(&ca_file));
    let token = add_client("accounts-service", &accounts_url, "tls-test", &ledger_contract::scopes::ALL).await?;
    let port = free_port()?;
    let log = ca.dir.join("accounts-service.log");
    let env = [("DATABASE_URL".to_owned(), accounts_url), ("LISTEN_ADDR".to_owned(), format!("127.0.0.1:{port}"))];
    let mut service = ChildProcess::binary("accounts-service", &env, &log)?;
    let base = format!("http://127.0.0.1:{port}");
    wait_healthy(&reqwest::Client::new(), &base, Duration::from_secs(30))
        .await
        .map_err(|error| anyhow::anyhow!("{error}: {}", std::fs::read_to_string(&log).unwrap_or_default()))?;
    let ledger = LedgerClient::new(&base, Some(token), Duration::from_secs(10))?;
    let account = ledger.create_account(None).await?;
    assert_eq!(ledger.account(account.account_id).await?.account_id, account.account_id);
    let (connections, all_tls): (i64, bool) = sqlx::query_as(
        "SELECT count(*), coalesce(bool_and(s.ssl), false) FROM pg_stat_activity a JOIN pg_stat_ssl s USING (pid)
         WHERE a.application_name LIKE 'accounts-service%'",
    )
    .fetch_one(&admin)
    .await?;
    assert!(connections >= 2 && all_tls, "{connections} service connections, all TLS: {all_tls}");
    service.kill()?;

    // The advances' store (the worker's and the API's database code) and the API's client command.
    let advances_url = postgres.url("advances", "verify-full", Some(&ca_file));
    add_client("advances-api", &advances_url, "tls-test", &["advances:read"]).await?;
    let store = advances_store::connect(&advances_url, 2).await?;
    let (ssl,): (bool,) =
        sqlx::query_as("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()").fetch_one(&store).await?;
    assert!(ssl);
    store.close().await;
    admin.close().await;
    Ok(())
}

#[tokio::test]
async fn the_ledger_client_calls_an_https_ledger_with_a_private_ca_and_refuses_an_unknown_one() -> anyhow::Result<()> {
    let ledger = TestLedger::start().await?;
    let ca = TestCa::new()?;
    let proxy = TlsProxy::start(&ca.server(&["localhost"])?, ledger.addr()?, &[b"http/1.1"], None).await?;
    let https = format!("https://localhost:{}", proxy.addr.port());
    let pem = ca.pem();
    let trusting = LedgerClient::with_ca(&https, ledger.token.clone(), Duration::from_secs(10), Some(pem.as_bytes()))?;
    let account = trusting.create_account(None).await?;
    assert_eq!(ledger.account(account.account_id).await?.account_id, account.account_id);

    let public_roots_only = LedgerClient::new(&https, ledger.token.clone(), Duration::from_secs(10))?;
    let refused = public_roots_only.create_account(None).await;
    assert!(matches!(refused, Err(LedgerError::Transport { .. })), "{refused:?}");
    assert_eq!(ledger.transaction_count().await?, 0);
    drop(proxy);
    ledger.stop().await
}
