//! The `accounts-service` binary: settings from the environment, then serve until SIGTERM.

use anyhow::Context;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = accounts_service::Settings::from_env()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    accounts_service::run(settings, listener, service_kit::serve::shutdown_signal()).await
}
