//! The `accounts-service` binary: settings from the environment, then serve until SIGTERM; or, as
//! `accounts-service client add|list|revoke …`, manage the clients allowed to call it (DATABASE_URL only); or,
//! as `accounts-service archive`, archive the days past `HOT_RETENTION_DAYS` to `ARCHIVE_URL` once and print
//! what was archived (one JSON object per day).

use anyhow::Context;
use service_kit::settings::FromEnv;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().map(String::as_str) == Some("client") {
        use ledger_contract::scopes::{ALL, TOKEN_PREFIX};
        return service_kit::clients::main(&args[1..], &accounts_service::db::MIGRATOR, &ALL, TOKEN_PREFIX).await;
    }
    if args.first().map(String::as_str) == Some("archive") {
        service_kit::telemetry::init_tracing_to_stderr();
        return archive_once(&accounts_service::Settings::from_env()?).await;
    }
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
