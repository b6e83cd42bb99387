//! A PostgreSQL primary and its streaming hot standby, private to one test: `initdb` for the primary, then
//! `pg_basebackup -R` for the standby, from the system's PostgreSQL binaries, on free ports, removed afterwards.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use anyhow::Context;

use crate::free_port;

/// The system's PostgreSQL program `name` (the newest version's, as `scripts/postgres.sh` finds them).
fn program(name: &str) -> anyhow::Result<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|entries| entries.filter_map(|e| e.ok()).map(|e| e.path().join("bin")).collect())
        .unwrap_or_default();
    dirs.sort();
    dirs.reverse();
    dirs.extend([PathBuf::from("/usr/local/bin"), PathBuf::from("/usr/bin")]);
    dirs.into_iter().map(|dir| dir.join(name)).find(|path| path.is_file()).with_context(|| format!("no {name} found"))
}

/// Runs a PostgreSQL program as the owner of the clusters (PostgreSQL refuses to run as root).
fn run(args: &[&str]) -> anyhow::Result<()> {
    let program = program(args[0])?;
    let root = is_root();
    let mut command = if root {
        let mut command = Command::new("runuser");
        command.args(["-u", "postgres", "--"]).arg(&program);
        command
    } else {
        Command::new(&program)
    };
    let output = command.args(&args[1..]).output()?;
    anyhow::ensure!(
        output.status.success(),
        "{} failed: {}{}",
        args.join(" "),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}

/// Whether this process runs as root (then the clusters belong to `postgres`).
fn is_root() -> bool {
    Command::new("id").arg("-u").output().map(|out| out.stdout.starts_with(b"0\n")).unwrap_or(false)
}

/// A primary and a standby streaming from it.
pub struct Replicated {
    dir: PathBuf,
    pub primary_port: u16,
    pub standby_port: u16,
}

impl Replicated {
    /// Creates and starts both clusters, and the database `database` on the primary (replicated to the standby).
    pub async fn start(database: &str) -> anyhow::Result<Self> {
        let dir = std::env::temp_dir().join(format!("replicated-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        if is_root() {
            let status = Command::new("chown").args(["-R", "postgres"]).arg(&dir).status()?;
            anyhow::ensure!(status.success(), "chown failed");
        }
        let (primary_port, standby_port) = (free_port()?, free_port()?);
        let this = Self { dir, primary_port, standby_port };
        let primary = this.data("primary");
        let standby = this.data("standby");
        let socket = this.dir.to_string_lossy().into_owned();
        run(&["initdb", "-D", &primary, "-U", "postgres", "--auth=trust", "--no-sync"])?;
        let options =
            format!("-p {primary_port} -k {socket} -c listen_addresses=127.0.0.1 -c wal_level=replica -c fsync=off");
        run(&["pg_ctl", "-D", &primary, "-o", &options, "-l", &format!("{primary}.log"), "-w", "start"])?;
        let admin = format!("postgres://postgres@127.0.0.1:{primary_port}/postgres");
        let mut conn: sqlx::PgConnection = sqlx::Connection::connect(&admin).await?;
        sqlx::query(&format!("CREATE DATABASE \"{database}\"")).execute(&mut conn).await?;
        run(&[
            "pg_basebackup",
            "-h",
            "127.0.0.1",
            "-p",
            &primary_port.to_string(),
            "-U",
            "postgres",
            "-D",
            &standby,
            "-R",
            "-X",
            "stream",
            // An immediate checkpoint: the default spreads the one the backup starts with over a good part of
            // checkpoint_timeout, which made this take 90 s.
            "--checkpoint=fast",
        ])?;
        let options = format!("-p {standby_port} -k {socket} -c listen_addresses=127.0.0.1 -c hot_standby=on");
        run(&["pg_ctl", "-D", &standby, "-o", &options, "-l", &format!("{standby}.log"), "-w", "start"])?;
        Ok(this)
    }

    fn data(&self, name: &str) -> String {
        self.dir.join(name).to_string_lossy().into_owned()
    }

    pub fn primary_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.primary_port)
    }

    pub fn standby_url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.standby_port)
    }

    /// Waits until the standby has replayed everything the primary has written so far.
    pub async fn caught_up(&self, limit: Duration) -> anyhow::Result<()> {
        let mut primary: sqlx::PgConnection = sqlx::Connection::connect(&self.primary_url("postgres")).await?;
        let (lsn,): (String,) = sqlx::query_as("SELECT pg_current_wal_lsn()::text").fetch_one(&mut primary).await?;
        let standby_url = self.standby_url("postgres");
        crate::poll_until(limit, || {
            let (lsn, standby_url) = (lsn.clone(), standby_url.clone());
            async move {
                let mut standby: sqlx::PgConnection = sqlx::Connection::connect(&standby_url).await?;
                let (done,): (bool,) = sqlx::query_as("SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn")
                    .bind(lsn)
                    .fetch_one(&mut standby)
                    .await?;
                Ok(done.then_some(()))
            }
        })
        .await
    }
}

/// Both clusters stop and their files go with the test, however it ends.
impl Drop for Replicated {
    fn drop(&mut self) {
        for name in ["standby", "primary"] {
            let _ = run(&["pg_ctl", "-D", &self.data(name), "-m", "immediate", "stop"]);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
