//! The `advances-api` binary. `advances-api` (or `advances-api serve`) reads its settings from the environment
//! and serves until SIGTERM; `client add|list|revoke` manages the clients allowed to call it and `product
//! add|list|retire` the products it lends under (DATABASE_URL only). `--help` and `--version` touch nothing; a mistake exits 2.

use advances_api::product_command::ProductCommand;
use anyhow::Context;
use clap::{Parser, Subcommand};
use service_kit::clients::ClientCommand;
use service_kit::settings::FromEnv;

/// The advances REST API: starts advances as Temporal workflows and reads them. Settings come from the
/// environment (see README.md).
#[derive(Parser)]
#[command(name = "advances-api", version)]
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
    /// Manage the products advances are granted under.
    #[command(subcommand)]
    Product(ProductCommand),
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    match Cli::parse().command.unwrap_or(Command::Serve) {
        Command::Serve => {
            service_kit::telemetry::init_tracing();
            let settings = advances_api::config::ApiSettings::from_env()?;
            let listener = tokio::net::TcpListener::bind(settings.listen_addr)
                .await
                .with_context(|| format!("cannot listen on {}", settings.listen_addr))?;
            advances_api::run(settings, listener, service_kit::serve::shutdown_signal()).await
        }
        Command::Client(command) => {
            use advances_api::scopes::{ALL, TOKEN_PREFIX};
            service_kit::clients::main(command, &advances_store::MIGRATOR, &ALL, TOKEN_PREFIX).await
        }
        Command::Product(command) => advances_api::product_command::main(command).await,
    }
}
