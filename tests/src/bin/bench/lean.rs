//! A lean HTTP/1.1 client, for one client's latency: one kept-alive socket, each request written in one write and
//! its response read to its `Content-Length`, nothing else. reqwest's own work per request (its connection task and
//! the hand-offs to it, header maps, pooling) measured about half a millisecond on this machine, as much as the
//! service's; the raw SQL anchor has no such client in front of it, so the keyed client's p50 is measured with this
//! one (and with reqwest beside it, in the same table).

use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use system_tests::Lcg;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use uuid::Uuid;

use crate::{next_transfer, transfer_body, Run};

/// One connection to a service.
pub struct Lean {
    stream: BufReader<TcpStream>,
    host: String,
    token: Option<String>,
}

impl Lean {
    /// Connects to `base_url` (`http://host:port`), sending `token` as the bearer token of every request.
    pub async fn connect(base_url: &str, token: Option<&str>) -> anyhow::Result<Self> {
        let host = base_url.strip_prefix("http://").context("a lean client speaks plain HTTP")?.trim_end_matches('/');
        let stream = TcpStream::connect(host).await?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), host: host.to_owned(), token: token.map(str::to_owned) })
    }

    /// POSTs `body` (JSON) to `path` with `key` as its `Idempotency-Key`; answers the status, the body read.
    pub async fn post(&mut self, path: &str, body: &str, key: Option<&str>) -> anyhow::Result<u16> {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
            self.host,
            body.len()
        );
        if let Some(token) = &self.token {
            request.push_str(&format!("Authorization: Bearer {token}\r\n"));
        }
        if let Some(key) = key {
            request.push_str(&format!("Idempotency-Key: {key}\r\n"));
        }
        request.push_str("\r\n");
        request.push_str(body);
        self.stream.get_mut().write_all(request.as_bytes()).await?;

        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.split(' ').nth(1).and_then(|code| code.parse().ok()).context("no status line")?;
        let mut length = None;
        loop {
            line.clear();
            if self.stream.read_line(&mut line).await? == 0 {
                bail!("the connection closed inside a response's headers");
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = Some(value.trim().parse::<usize>()?);
                }
            }
        }
        let mut body = vec![0; length.context("a response without Content-Length")?];
        self.stream.read_exact(&mut body).await?;
        Ok(status)
    }
}

/// One client's keyed transfers through a [`Lean`] connection for `seconds`, between uniform random pairs of
/// `accounts` (as `run_transfers` picks them), each under a new key.
pub async fn keyed_transfers(
    base_url: &str,
    token: Option<&str>,
    seconds: u64,
    accounts: &[Uuid],
) -> anyhow::Result<Run> {
    let mut lean = Lean::connect(base_url, token).await?;
    let mut rng = Lcg(17);
    let mut latencies_us = Vec::new();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(seconds);
    while Instant::now() < deadline {
        let (src, dst, amount) = next_transfer(&mut rng, accounts, false);
        let body = transfer_body(src, dst, amount).to_string();
        let key = Uuid::new_v4().to_string();
        let t0 = Instant::now();
        let status = lean.post("/api/v1/transaction", &body, Some(&key)).await?;
        anyhow::ensure!(status == 201, "transfer answered {status}");
        latencies_us.push(t0.elapsed().as_micros() as u64);
    }
    let label = "HTTP + Idempotency-Key, lean client".to_owned();
    Ok(Run { label, clients: 1, ops: latencies_us.len(), elapsed: started.elapsed(), latencies_us })
}
