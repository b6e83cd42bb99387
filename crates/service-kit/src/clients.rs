//! API clients: each caller has a name, scopes and a secret bearer token, kept in the service's own database
//! (`api_clients`, created by each service's migrations). Only the token's SHA-256 is stored: the token is
//! shown once, when the client is added.
//!
//! Tokens are 256 random bits, so a fast hash is enough (password hashing exists to slow down guessing of
//! low-entropy secrets; nobody guesses 2^256). A lookup by hash also reveals nothing through its timing
//! about how much of a presented token was right.

use std::fmt::Write as _;

use anyhow::{bail, Context};
use sha2::{Digest, Sha256};
use sqlx::PgPool;

/// The name a request carries when authentication is off (`AUTH=off`); no client may take it.
pub const ANONYMOUS: &str = "anonymous";

/// The longest client name.
pub const MAX_NAME_CHARS: usize = 64;

/// A client as `client list` shows it.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ClientRow {
    pub name: String,
    pub scopes: Vec<String>,
    pub created_at: String,
    pub revoked_at: Option<String>,
}

/// The SHA-256 of a token: the only form in which it is stored or looked up.
pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// A new token: the service's prefix (so a leaked token says where it belongs) and 256 random bits in hex.
pub fn new_token(prefix: &str) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|error| anyhow::anyhow!("the OS random source failed: {error}"))?;
    let mut token = format!("{prefix}_");
    for byte in secret {
        let _ = write!(token, "{byte:02x}");
    }
    Ok(token)
}

/// Whether `token` has the shape of a token this service issues (its prefix, `_`, 64 hex digits): anything
/// else is refused without a database lookup, so garbage in `Authorization` costs no connection.
pub fn well_formed(token: &str, prefix: &str) -> bool {
    token.strip_prefix(prefix).and_then(|rest| rest.strip_prefix('_')).is_some_and(|secret| {
        secret.len() == 64 && secret.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    })
}

/// Lowercase letters, digits, `.`, `_` and `-`, starting with a letter or digit, at most 64 characters; never
/// [`ANONYMOUS`]. Names are recorded with every transaction, so they stay unique even after a revocation.
pub fn check_name(name: &str) -> anyhow::Result<()> {
    let valid_chars = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "._-".contains(c));
    let valid_start = name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit());
    if name.is_empty() || name.len() > MAX_NAME_CHARS || !valid_chars || !valid_start {
        bail!("a client name is 1 to {MAX_NAME_CHARS} of a-z 0-9 . _ - starting with a letter or digit, not {name:?}");
    }
    if name == ANONYMOUS {
        bail!("{ANONYMOUS:?} is reserved for requests made with AUTH=off");
    }
    Ok(())
}

/// Splits `a,b,c` and checks every scope against the service's own list.
pub fn parse_scopes(text: &str, known: &[&str]) -> anyhow::Result<Vec<String>> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in text.split(',').map(str::trim).filter(|scope| !scope.is_empty()) {
        if !known.contains(&scope) {
            bail!("unknown scope {scope:?}; this service knows {}", known.join(", "));
        }
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    if scopes.is_empty() {
        bail!("a client needs at least one scope, of: {}", known.join(", "));
    }
    Ok(scopes)
}

/// Adds a client and returns its token (the only time it exists outside the client's hands).
pub async fn add(pool: &PgPool, name: &str, scopes: &[String], prefix: &str) -> anyhow::Result<String> {
    check_name(name)?;
    let token = new_token(prefix)?;
    let inserted = sqlx::query(
        "INSERT INTO api_clients (name, token_sha256, scopes) VALUES ($1, $2, $3) ON CONFLICT (name) DO NOTHING",
    )
    .bind(name)
    .bind(&token_hash(&token)[..])
    .bind(scopes)
    .execute(pool)
    .await?
    .rows_affected();
    if inserted == 0 {
        bail!("a client named {name:?} already exists (names stay taken after a revocation)");
    }
    Ok(token)
}

/// Every client, active and revoked, by name.
pub async fn list(pool: &PgPool) -> anyhow::Result<Vec<ClientRow>> {
    Ok(sqlx::query_as(
        "SELECT name, scopes, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS created_at,
                to_char(revoked_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"') AS revoked_at
         FROM api_clients ORDER BY name",
    )
    .fetch_all(pool)
    .await?)
}

/// Revokes a client: its token stops working (within the services' cache time, see `AUTH_CACHE_TTL`).
pub async fn revoke(pool: &PgPool, name: &str) -> anyhow::Result<()> {
    let revoked =
        sqlx::query("UPDATE api_clients SET revoked_at = clock_timestamp() WHERE name = $1 AND revoked_at IS NULL")
            .bind(name)
            .execute(pool)
            .await?
            .rows_affected();
    if revoked == 0 {
        bail!("no active client named {name:?}");
    }
    Ok(())
}

/// The name and scopes of the active client holding the token with this hash.
pub async fn find(pool: &PgPool, hash: &[u8; 32]) -> sqlx::Result<Option<(String, Vec<String>)>> {
    sqlx::query_as("SELECT name, scopes FROM api_clients WHERE token_sha256 = $1 AND revoked_at IS NULL")
        .bind(&hash[..])
        .fetch_optional(pool)
        .await
}

/// `<service> client …`: the words after `client`, as the binaries' command lines parse them.
#[derive(Debug, Clone, PartialEq, Eq, clap::Subcommand)]
pub enum ClientCommand {
    /// Adds a client; prints its bearer token as the last line (shown only now, stored only as a hash).
    Add {
        /// Lowercase a-z 0-9 . _ -, at most 64 characters; never reused, even once revoked.
        #[arg(long)]
        name: String,
        /// Comma-separated scopes (see the README's table).
        #[arg(long)]
        scopes: String,
    },
    /// Lists every client, revoked ones included.
    List,
    /// Revokes a client: its token stops working within AUTH_CACHE_TTL.
    Revoke {
        #[arg(long)]
        name: String,
    },
}

/// Runs a `client` command: connects to `DATABASE_URL`, applies the service's migrations (the table must
/// exist) and does what `command` says.
pub async fn main(
    command: ClientCommand,
    migrator: &sqlx::migrate::Migrator,
    known_scopes: &[&str],
    prefix: &str,
) -> anyhow::Result<()> {
    let pool = command_pool(migrator).await?;
    let result = run(&pool, command, known_scopes, prefix).await;
    pool.close().await;
    result
}

/// The one connection a command-line command (`client`, `product`) works on: `DATABASE_URL`, with the
/// service's migrations applied (so the tables exist).
pub async fn command_pool(migrator: &sqlx::migrate::Migrator) -> anyhow::Result<PgPool> {
    let url = crate::secret::Secret::new(
        std::env::var("DATABASE_URL").context("DATABASE_URL must name the service's database")?,
    );
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(url.expose())
        .await
        .context("cannot connect to DATABASE_URL")?;
    migrator.run(&pool).await?;
    Ok(pool)
}

/// Does what a `client` command says, on `pool`. Prints the token of a new client as the last line of stdout.
pub async fn run(pool: &PgPool, command: ClientCommand, known_scopes: &[&str], prefix: &str) -> anyhow::Result<()> {
    match command {
        ClientCommand::Add { name, scopes } => {
            let scopes = parse_scopes(&scopes, known_scopes)?;
            let token = add(pool, &name, &scopes, prefix).await?;
            println!("added client {name} with scopes {}", scopes.join(","));
            println!("its bearer token follows; it is shown only now and stored only as a hash:");
            println!("{token}");
        }
        ClientCommand::List => {
            println!("{:<32} {:<21} {:<21} scopes", "name", "created", "revoked");
            for client in list(pool).await? {
                let revoked = client.revoked_at.as_deref().unwrap_or("-");
                println!("{:<32} {:<21} {:<21} {}", client.name, client.created_at, revoked, client.scopes.join(","));
            }
        }
        ClientCommand::Revoke { name } => {
            revoke(pool, &name).await?;
            println!("revoked client {name}");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_prefixed_random_and_hashed_to_32_bytes() -> anyhow::Result<()> {
        let (a, b) = (new_token("ledger")?, new_token("ledger")?);
        assert!(a.starts_with("ledger_") && a.len() == "ledger_".len() + 64);
        assert!(well_formed(&a, "ledger") && !well_formed(&a, "advances"));
        assert!(!well_formed("ledger_xyz", "ledger") && !well_formed(&a.to_uppercase(), "ledger"));
        assert_ne!(a, b);
        assert_ne!(token_hash(&a), token_hash(&b));
        Ok(())
    }

    #[test]
    fn names_are_checked() {
        for good in ["advances-worker", "demo", "a", "x.y_z-1"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
        for bad in ["", "Demo", "-x", "a b", "anonymous", "é", &"a".repeat(65)] {
            assert!(check_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn scopes_must_be_known_and_at_least_one() {
        let known = ["accounts:read", "bank:write"];
        assert_eq!(
            parse_scopes("bank:write, accounts:read,bank:write", &known).ok(),
            Some(vec!["bank:write".to_owned(), "accounts:read".to_owned()])
        );
        assert!(parse_scopes("bank:write,root", &known).is_err());
        assert!(parse_scopes(" , ", &known).is_err());
    }
}
