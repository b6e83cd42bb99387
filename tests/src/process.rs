//! The project's binaries as child processes that die with the test (kill on drop).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

/// A free TCP port on 127.0.0.1 (free when asked; good enough for a test's own server).
pub fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
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
