//! A webhook receiver of our own for the tests (`tests/receiver/webhook_receiver.py`): it verifies every
//! delivery with the `standardwebhooks` package from PyPI, as a customer's receiver would, and can be told to
//! go down or be slow.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use serde_json::Value;

use crate::process::{free_port, ChildProcess};

/// One verified delivery.
#[derive(Debug, Clone, Deserialize)]
pub struct Received {
    pub webhook_id: String,
    pub event: Value,
}

/// What the receiver has seen: verified deliveries in arrival order, deliveries whose signature failed, and
/// deliveries it refused (down, or no secret yet).
#[derive(Debug, Clone, Deserialize)]
pub struct Log {
    pub received: Vec<Received>,
    pub rejected: u64,
    /// The `webhook-id` of each delivery refused.
    pub refused: Vec<String>,
}

/// The receiver process, stopped on drop.
pub struct WebhookReceiver {
    pub url: String,
    client: reqwest::Client,
    _process: ChildProcess,
}

impl WebhookReceiver {
    pub async fn start() -> anyhow::Result<Self> {
        let port = free_port()?;
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("receiver/webhook_receiver.py");
        let log = std::env::temp_dir().join(format!("webhook-receiver-{port}.log"));
        let process =
            ChildProcess::spawn(Path::new("python3"), &[script.display().to_string(), port.to_string()], &[], &log)?;
        let receiver =
            Self { url: format!("http://127.0.0.1:{port}/hook"), client: reqwest::Client::new(), _process: process };
        crate::poll_until(Duration::from_secs(20), || async { Ok(receiver.log().await.ok()) }).await?;
        Ok(receiver)
    }

    fn control(&self, what: &str) -> String {
        self.url.replace("/hook", &format!("/control/{what}"))
    }

    async fn set(&self, what: &str, value: String) -> anyhow::Result<()> {
        let reply = self.client.post(self.control(what)).body(value).send().await?;
        anyhow::ensure!(reply.status().is_success(), "the receiver refused {what}: {}", reply.status());
        Ok(())
    }

    /// The endpoint's signing secret: until it is set, every delivery is answered 503.
    pub async fn set_secret(&self, secret: &str) -> anyhow::Result<()> {
        self.set("secret", secret.to_owned()).await
    }

    /// Down (503 to every delivery) or up.
    pub async fn set_down(&self, down: bool) -> anyhow::Result<()> {
        self.set("down", if down { "1" } else { "0" }.to_owned()).await
    }

    /// Waits this long before answering each delivery.
    pub async fn set_slow(&self, delay: Duration) -> anyhow::Result<()> {
        self.set("slow", delay.as_secs_f64().to_string()).await
    }

    pub async fn log(&self) -> anyhow::Result<Log> {
        Ok(self.client.get(self.control("received")).send().await?.error_for_status()?.json().await?)
    }
}
