//! Helpers for the advances tests: a Temporal dev server per test (from the installed CLI, never
//! downloaded), and child processes that die with the test.

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::Context;
use temporalio_client::Client;
use temporalio_sdk::testing::{EphemeralExe, LocalServer, LocalWorkflowEnvironmentOptions, WorkflowEnvironment};

/// The `temporal` CLI: `TEST_TEMPORAL_CLI` (set by `make test` from scripts/deps.sh), else from `PATH`.
pub fn temporal_cli() -> anyhow::Result<String> {
    if let Ok(path) = std::env::var("TEST_TEMPORAL_CLI") {
        return Ok(path);
    }
    let output = Command::new("sh").args(["-c", "command -v temporal"]).output()?;
    let path = String::from_utf8(output.stdout)?.trim().to_owned();
    anyhow::ensure!(!path.is_empty(), "the temporal CLI is not installed: run scripts/deps.sh (make test does)");
    Ok(path)
}

/// A free TCP port on 127.0.0.1 (free when asked; good enough for a test's own server).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

/// A Temporal dev server of one test, with an in-memory store; stopped by [`TestTemporal::stop`] or when
/// dropped (the SDK kills it on drop).
pub struct TestTemporal {
    pub address: String,
    environment: WorkflowEnvironment<LocalServer>,
}

impl TestTemporal {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let options = LocalWorkflowEnvironmentOptions::builder()
            .server_executable(EphemeralExe::ExistingPath(temporal_cli()?))
            .port(port)
            .extra_args(vec!["--log-level".to_owned(), "error".to_owned()])
            .build();
        let environment =
            WorkflowEnvironment::start_local(options).await.context("starting the Temporal dev server")?;
        Ok(Self { address: format!("127.0.0.1:{port}"), environment })
    }

    pub fn client(&self) -> &Client {
        self.environment.client()
    }

    pub async fn stop(self) -> anyhow::Result<()> {
        self.environment.shutdown().await?;
        Ok(())
    }
}

/// A child process killed (SIGKILL) when dropped, so a failed test leaves nothing running.
pub struct ChildProcess {
    pub name: String,
    child: Option<Child>,
}

impl ChildProcess {
    /// Starts `binary` (built by `cargo build --bins`) with `env`; its output goes to `log_path`.
    pub fn spawn(binary: &str, env: &[(&str, String)], log_path: &std::path::Path) -> anyhow::Result<Self> {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(log_path)?;
        let mut command = Command::new(crate::binary_path(binary)?);
        command.stdout(Stdio::from(log.try_clone()?)).stderr(Stdio::from(log)).env("RUST_LOG", "info,sqlx=warn");
        for (name, value) in env {
            command.env(name, value);
        }
        Ok(Self {
            name: binary.to_owned(),
            child: Some(command.spawn().with_context(|| format!("starting {binary}"))?),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map_or(0, Child::id)
    }

    /// SIGKILL: no shutdown hook runs, as in a crash.
    pub fn kill(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            child.kill()?;
            child.wait()?;
        }
        Ok(())
    }

    /// SIGTERM, then waits for the exit.
    pub async fn terminate(&mut self, limit: Duration) -> anyhow::Result<std::process::ExitStatus> {
        let mut child = self.child.take().context("not running")?;
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status()?;
        crate::poll_until(limit, || {
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
