//! The `advances-api` binary: settings from the environment, then serve until SIGTERM; or, as
//! `advances-api client add|list|revoke …`, manage the clients allowed to call it (DATABASE_URL only).

use anyhow::Context;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("client") {
        use advances_api::scopes::{ALL, TOKEN_PREFIX};
        return service_kit::clients::main(&args[1..], &advances_store::MIGRATOR, &ALL, TOKEN_PREFIX).await;
    }
    service_kit::telemetry::init_tracing();
    let settings = advances_api::config::ApiSettings::from_env()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    advances_api::rest::run(settings, listener, service_kit::serve::shutdown_signal()).await
}
