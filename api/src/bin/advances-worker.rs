//! The `advances-worker` binary: settings from the environment, then poll the task queue until SIGTERM.

use advances_api::config::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    accounts_service::init_tracing();
    let settings = advances_api::config::WorkerSettings::from_env()?;
    advances_api::worker::run(settings, accounts_service::shutdown_signal()).await
}
