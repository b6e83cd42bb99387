//! The `advances-worker` binary: settings from the environment, then poll the task queue until SIGTERM.

use advances_activities::config::WorkerSettings;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = WorkerSettings::from_env()?;
    advances_activities::worker::run(settings, service_kit::serve::shutdown_signal()).await
}
