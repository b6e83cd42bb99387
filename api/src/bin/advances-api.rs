//! The `advances-api` binary: settings from the environment, then serve until SIGTERM.

use anyhow::Context;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = advances_api::config::ApiSettings::from_env()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    advances_api::rest::run(settings, listener, service_kit::serve::shutdown_signal()).await
}
