//! A Temporal dev server of one test: the installed `temporal` CLI (never downloaded), in memory, on a port of
//! its own, killed with the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::Context;

use crate::http::poll_until;
use crate::process::{free_port, ChildProcess};

/// The `temporal` CLI: `TEST_TEMPORAL_CLI` (set by `make test` from scripts/deps.sh), else what
/// `scripts/deps.sh find-temporal` finds (the real binary, not a shim that would outlive a kill). Tests never
/// install anything: a missing CLI is an error that names scripts/deps.sh.
pub fn temporal_cli() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("TEST_TEMPORAL_CLI") {
        return Ok(path.into());
    }
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/deps.sh");
    let output = Command::new(script).arg("find-temporal").stderr(Stdio::inherit()).output()?;
    let path = String::from_utf8(output.stdout)?.trim().to_owned();
    anyhow::ensure!(
        output.status.success() && !path.is_empty(),
        "the temporal CLI is not installed: run scripts/deps.sh (make test does)"
    );
    Ok(path.into())
}

/// A dev server with an in-memory store and no Web UI.
pub struct TestTemporal {
    /// `127.0.0.1:port` of its frontend.
    pub address: String,
    log: PathBuf,
    _process: ChildProcess,
}

impl TestTemporal {
    /// Starts the server and waits until its frontend accepts connections.
    pub async fn start() -> anyhow::Result<Self> {
        Self::start_with(&[]).await
    }

    /// Starts the server with more dynamic configuration (`key=value`, e.g. a lower history count at which
    /// Temporal suggests continue-as-new).
    pub async fn start_with(dynamic_config: &[&str]) -> anyhow::Result<Self> {
        let port = free_port()?;
        let mut args: Vec<String> = [
            "server",
            "start-dev",
            "--ip",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--headless",
            "--log-level",
            "error",
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecution=true",
            "--dynamic-config-value",
            "frontend.enableUpdateWorkflowExecutionAsyncAccepted=true",
        ]
        .iter()
        .map(|arg| (*arg).to_owned())
        .collect();
        for value in dynamic_config {
            args.extend(["--dynamic-config-value".to_owned(), (*value).to_owned()]);
        }
        let log = std::env::temp_dir().join(format!("temporal-{port}-{}.log", uuid::Uuid::new_v4().simple()));
        let mut process = ChildProcess::spawn(&temporal_cli()?, &args, &[], &log)?;
        let address = format!("127.0.0.1:{port}");
        let listening = poll_until(Duration::from_secs(60), || {
            let address = address.clone();
            let exited = !process.is_running();
            async move {
                anyhow::ensure!(!exited, "the Temporal dev server exited");
                Ok(tokio::net::TcpStream::connect(&address).await.ok().map(|_| ()))
            }
        })
        .await;
        let listening = listening.and_then(|()| {
            anyhow::ensure!(process.is_running(), "the Temporal dev server exited");
            Ok(())
        });
        listening.with_context(|| {
            let output = std::fs::read_to_string(&log).unwrap_or_default();
            format!("the Temporal dev server did not come up on {address}:\n{output}")
        })?;
        Ok(Self { address, log, _process: process })
    }

    /// Stops the server (SIGKILL: its store is in memory) and removes its log.
    pub fn stop(self) {
        let log = self.log.clone();
        drop(self);
        let _ = std::fs::remove_file(log);
    }
}
