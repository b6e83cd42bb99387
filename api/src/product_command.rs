//! `advances-api product add|list|retire`: products are managed from the command line, like clients; the API
//! only reads them.

use std::time::Duration;

use advances_model::Product;
use advances_store::products::{self, Added, StoredProduct};
use anyhow::bail;
use money::Amount;
use service_kit::settings::parse_duration;

/// `advances-api product …`.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ProductCommand {
    /// Adds a product. Its terms never change: to lend on other terms, add another and retire this one. Adding
    /// the same definition again changes nothing.
    Add {
        /// Lowercase a-z 0-9 . _ -, at most 64 characters; never reused, even once retired.
        #[arg(long)]
        name: String,
        /// Regular payments of each advance (1 to 520).
        #[arg(long)]
        payments: u32,
        /// Time between payments: 7d, 14d, 1h, 500ms …
        #[arg(long, value_parser = parse_interval)]
        interval: Duration,
        /// The least one advance may lend (at least a cent per payment).
        #[arg(long, value_parser = parse_amount)]
        min_amount: Amount,
        /// The most one advance may lend.
        #[arg(long, value_parser = parse_amount)]
        max_amount: Amount,
        /// Extra payments (after the regular ones) that may fail in a row before an advance defaults.
        #[arg(long, default_value_t = 12)]
        max_failed_extra_payments: u32,
    },
    /// Lists the products, retired ones included.
    List,
    /// Retires a product: it takes no new advances; running advances keep their terms.
    Retire {
        #[arg(long)]
        name: String,
    },
}

fn parse_interval(text: &str) -> Result<Duration, String> {
    parse_duration(text).map_err(|error| format!("{error:#}"))
}

fn parse_amount(text: &str) -> Result<Amount, String> {
    Amount::parse(text).map_err(|error| error.to_string())
}

fn describe(stored: &StoredProduct) -> String {
    let p = &stored.product;
    let retired = stored.retired_at.map_or("-".to_owned(), |at| at.format("%Y-%m-%dT%H:%M:%SZ").to_string());
    format!(
        "{:<24} {:>8} {:>14} {:>16} {:>16} {:>10} {:<20} {}",
        p.name,
        p.payments,
        format!("{}ms", p.interval_ms),
        p.min_amount,
        p.max_amount,
        p.max_failed_extra_payments,
        stored.created_at.format("%Y-%m-%dT%H:%M:%SZ"),
        retired
    )
}

const HEADER: &str = "name                     payments       interval       min_amount       max_amount max_failed created              retired";

/// Runs a `product` command on `DATABASE_URL` (the advances database).
pub async fn main(command: ProductCommand) -> anyhow::Result<()> {
    let pool = service_kit::clients::command_pool(&advances_store::MIGRATOR).await?;
    let result = run(&pool, command).await;
    pool.close().await;
    result
}

async fn run(pool: &sqlx::PgPool, command: ProductCommand) -> anyhow::Result<()> {
    match command {
        ProductCommand::Add { name, payments, interval, min_amount, max_amount, max_failed_extra_payments } => {
            let product = Product {
                name,
                payments,
                interval_ms: u64::try_from(interval.as_millis()).unwrap_or(u64::MAX),
                min_amount: min_amount.value(),
                max_amount: max_amount.value(),
                max_failed_extra_payments,
            };
            product.validate()?;
            match products::add(pool, &product).await? {
                Added::Created => println!("added product {}", product.name),
                Added::AlreadyThere(_) => println!("product {} already exists with these terms", product.name),
                Added::NameTaken(existing) => bail!(
                    "a product named {:?} exists with other terms (names are never reused; products never change):\n{HEADER}\n{}",
                    product.name,
                    describe(&existing)
                ),
            }
        }
        ProductCommand::List => {
            println!("{HEADER}");
            for stored in products::list(pool, true).await? {
                println!("{}", describe(&stored));
            }
        }
        ProductCommand::Retire { name } => {
            if !products::retire(pool, &name).await? {
                bail!("no active product named {name:?}");
            }
            println!("retired product {name}: it takes no new advances; running ones keep their terms");
        }
    }
    Ok(())
}
