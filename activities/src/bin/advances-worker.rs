//! The `advances-worker` binary. `advances-worker` (or `advances-worker serve`) reads its settings from the
//! environment and polls the task queue until SIGTERM. `--help` and `--version` touch nothing; a mistake
//! exits 2.

use advances_activities::config::WorkerSettings;
use clap::{Parser, Subcommand};
use service_kit::settings::FromEnv;

/// The advances worker: runs AdvanceWorkflow and ReconcileWorkflow and their activities, and serves /health and
/// /metrics. Settings come from the environment (see README.md).
#[derive(Parser)]
#[command(name = "advances-worker", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Poll the task queue until SIGTERM (the default).
    Serve,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Command::Serve = Cli::parse().command.unwrap_or(Command::Serve);
    service_kit::telemetry::init_tracing();
    let settings = WorkerSettings::from_env()?;
    advances_activities::worker::run(settings, service_kit::serve::shutdown_signal()).await
}
