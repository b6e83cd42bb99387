//! The `accounts-service` binary. `accounts-service` (or `accounts-service serve`) reads its settings from the
//! environment and serves until SIGTERM; `client add|list|revoke` manages the clients allowed to call it
//! (DATABASE_URL only); `archive` archives the days past `HOT_RETENTION_DAYS` to `ARCHIVE_URL` once and prints
//! one JSON object per day archived. `--help` and `--version` touch nothing; a mistake exits 2.

use anyhow::Context;
use clap::{Parser, Subcommand};
use service_kit::clients::ClientCommand;
use service_kit::settings::FromEnv;

/// The ledger: accounts, balances, transfers and snapshot reports on PostgreSQL. Settings come from the
/// environment (see README.md).
#[derive(Parser)]
#[command(name = "accounts-service", version)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API until SIGTERM (the default).
    Serve,
    /// Manage the clients allowed to call the API.
    #[command(subcommand)]
    Client(ClientCommand),
    /// Archive the days past HOT_RETENTION_DAYS to ARCHIVE_URL once, printing one JSON line per day.
    Archive,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => serve().await,
        Command::Client(command) => {
            use ledger_contract::scopes::{ALL, TOKEN_PREFIX};
            service_kit::clients::main(command, &accounts_service::db::MIGRATOR, &ALL, TOKEN_PREFIX).await
        }
        Command::Archive => {
            service_kit::telemetry::init_tracing_to_stderr();
            archive_once(&accounts_service::Settings::from_env()?).await
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    service_kit::telemetry::init_tracing();
    let settings = accounts_service::Settings::from_env()?;
    let listener = tokio::net::TcpListener::bind(settings.listen_addr)
        .await
        .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
    accounts_service::run(settings, listener, service_kit::serve::shutdown_signal()).await
}

async fn archive_once(settings: &accounts_service::Settings) -> anyhow::Result<()> {
    use accounts_service::{archive, db};
    let url = settings.archive_url.as_deref().context("ARCHIVE_URL is not set: nowhere to archive to")?;
    let archive = archive::Archive::open(url)?;
    let pool = db::connect(settings).await?;
    db::MIGRATOR.run(&pool).await?;
    let days = archive::archive_due(&pool, &archive, settings.hot_retention_days, settings.archive_stop_after).await?;
    for day in days {
        println!("{}", serde_json::to_string(&day)?);
    }
    pool.close().await;
    Ok(())
}
