//! The project's binaries as child processes that die with the test (kill on drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context;

/// The path of a binary built by `cargo build --bins` in the same target directory as the running executable
/// (a test runs from `target/<profile>/deps/`, a binary such as the benchmark from `target/<profile>/`).
pub fn binary_path(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(2).map(|dir| dir.join(name)).collect();
    candidates.iter().find(|path| path.exists()).cloned().with_context(|| {
        format!("{name} is missing next to {}: run `cargo build --bins` first (make test does)", exe.display())
    })
}

/// A TCP port on 127.0.0.1 that is free now, for a server a test is about to start.
///
/// Ports come from just below the kernel's ephemeral range (`ip_local_port_range`), one after another within a
/// process: a port the kernel hands out at random (a `:0` bind, an outgoing connection, the dev server's own
/// HTTP and metrics ports) can then never be the one a test picked and has not bound yet, and two tests of one
/// binary never pick the same.
pub fn free_port() -> anyhow::Result<u16> {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let ephemeral_start = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|range| range.split_whitespace().next()?.parse::<u32>().ok())
        .filter(|start| *start > 20_000)
        .unwrap_or(32_768);
    let (first, count) = (ephemeral_start - 16_000, 16_000);
    // Processes that run at the same time (a test binary and a benchmark) start at different places.
    let offset = std::process::id().wrapping_mul(7_919) % count;
    for _ in 0..count {
        let port = first + (offset + NEXT.fetch_add(1, Ordering::Relaxed)) % count;
        if let Ok(port) = u16::try_from(port) {
            if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    anyhow::bail!("no free port in {first}..{}", first + count)
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing running.
pub struct ChildProcess {
    pub name: String,
    child: Option<Child>,
}

impl ChildProcess {
    /// Starts `program` with `args` and `env`; its output is appended to `log_path`.
    pub fn spawn(program: &Path, args: &[String], env: &[(String, String)], log_path: &Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path)?;
        let mut command = Command::new(program);
        command.args(args).stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log));
        command.env("RUST_LOG", "info,sqlx=warn");
        for (name, value) in env {
            command.env(name, value);
        }
        let name = program.file_name().map_or_else(|| program.display().to_string(), |n| n.to_string_lossy().into());
        let child = command.spawn().with_context(|| format!("starting {}", program.display()))?;
        Ok(Self { name, child: Some(child) })
    }

    /// Starts one of the project's binaries (built by `cargo build --bins`) with `env`.
    pub fn binary(binary: &str, env: &[(String, String)], log_path: &Path) -> anyhow::Result<Self> {
        Self::spawn(&binary_path(binary)?, &[], env, log_path)
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// Whether the process has not exited (a server that could not bind its port exits at once).
    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|child| matches!(child.try_wait(), Ok(None)))
    }

    /// SIGKILL: no shutdown hook runs, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits (at most `limit`) for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().with_context(|| format!("{} is not running", self.name))?;
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        crate::http::poll_until(limit, || {
            let exited = child.try_wait().map_err(anyhow::Error::from);
            async move { exited }
        })
        .await
    }
}

impl Drop for ChildProcess {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

/// Runs `<binary> client <args…>` against `database_url`, as an operator would; its stdout, or an error with
/// what it printed when it fails.
pub async fn client_command(binary: &str, database_url: &str, args: &[&str]) -> anyhow::Result<String> {
    operator_command(binary, database_url, &[&["client"], args].concat()).await
}

/// Runs `<binary> <args…>` against `database_url` (`client …`, `product …`), as an operator would; its stdout,
/// or an error with what it printed when it fails.
pub async fn operator_command(binary: &str, database_url: &str, args: &[&str]) -> anyhow::Result<String> {
    // A path names another build of the binary (a benchmark's baseline); a name, the workspace's own.
    let program = if binary.contains('/') { PathBuf::from(binary) } else { binary_path(binary)? };
    let output = tokio::process::Command::new(program).args(args).env("DATABASE_URL", database_url).output().await?;
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    anyhow::ensure!(
        output.status.success(),
        "{binary} {} failed: {}{stdout}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(stdout)
}

/// Adds a client with `scopes` through `<binary> client add` and returns the token it prints as its last line.
pub async fn add_client(binary: &str, database_url: &str, name: &str, scopes: &[&str]) -> anyhow::Result<String> {
    let stdout = client_command(binary, database_url, &["add", "--name", name, "--scopes", &scopes.join(",")]).await?;
    stdout.lines().last().map(str::to_owned).context("client add printed no token")
}

/// A plain HTTP client that sends `token` as its bearer token on every request.
pub fn client_with_token(token: Option<&str>) -> anyhow::Result<reqwest::Client> {
    let mut headers = reqwest::header::HeaderMap::new();
    if let Some(token) = token {
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse()?);
    }
    Ok(reqwest::Client::builder().timeout(Duration::from_secs(60)).default_headers(headers).build()?)
}
