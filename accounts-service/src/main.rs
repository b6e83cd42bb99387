//! The `accounts-service` binary: settings from the environment, then serve until SIGTERM; or, as
//! `accounts-service client add|list|revoke …`, manage the clients allowed to call it (DATABASE_URL only).

use anyhow::Context;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("client") {
        use ledger_contract::scopes::{ALL, TOKEN_PREFIX};
        return service_kit::clients::main(&args[1..], &accounts_service::db::MIGRATOR, &ALL, TOKEN_PREFIX).await;
    }
    service_kit::telemetry::init_tracing();
    let settings = accounts_service::Settings::from_env()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    accounts_service::run(settings, listener, service_kit::serve::shutdown_signal()).await
}
