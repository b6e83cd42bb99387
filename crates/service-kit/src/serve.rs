//! Serving with limits on what a client can hold, until told to stop, then draining within a deadline.
//!
//! Our own accept loop instead of `axum::serve`, which sets no header timeout and no connection limit: a
//! client that sends half a request, or never reads its response, would otherwise hold a connection (and a
//! file descriptor) for ever.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio::time::Sleep;

/// What one HTTP server allows its clients.
#[derive(Debug, Clone, Copy)]
pub struct ServerLimits {
    /// On shutdown, in-flight requests get this long to finish (`SHUTDOWN_GRACE`).
    pub grace: Duration,
    /// A request's headers must arrive within this (`HTTP_HEADER_TIMEOUT`); an idle kept-alive connection is
    /// closed after it too.
    pub header_timeout: Duration,
    /// Open connections at most (`HTTP_MAX_CONNECTIONS`); at the limit the server stops accepting until one
    /// closes (the kernel's backlog holds the rest), so it never runs out of file descriptors.
    pub max_connections: usize,
    /// A response the client does not read for this long is cut and its connection closed.
    pub write_stall: Duration,
}

impl ServerLimits {
    /// Reads `SHUTDOWN_GRACE` (20s), `HTTP_HEADER_TIMEOUT` (10s) and `HTTP_MAX_CONNECTIONS` (1024); the
    /// service says how long a response may stall.
    pub fn read<F: Fn(&str) -> Option<String>>(
        env: &crate::settings::Env<F>,
        write_stall: Duration,
    ) -> anyhow::Result<Self> {
        let limits = Self {
            grace: env.duration("SHUTDOWN_GRACE", "20s")?,
            header_timeout: env.duration("HTTP_HEADER_TIMEOUT", "10s")?,
            max_connections: env.number("HTTP_MAX_CONNECTIONS", "1024")?,
            write_stall,
        };
        anyhow::ensure!(
            (1..=100_000).contains(&limits.max_connections),
            "HTTP_MAX_CONNECTIONS must be between 1 and 100000"
        );
        Ok(limits)
    }
}

/// Serves `app` on `listener` until `shutdown` completes; then stops accepting and lets in-flight requests
/// finish for at most `limits.grace` (the rest are dropped, with a warning).
pub async fn serve(
    listener: TcpListener,
    app: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
    limits: ServerLimits,
) -> anyhow::Result<()> {
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let graceful = GracefulShutdown::new();
    let mut builder = http1::Builder::new();
    builder.timer(TokioTimer::new()).header_read_timeout(limits.header_timeout);
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = Arc::clone(&slots).acquire_owned() => slot?,
            () = &mut shutdown => break,
        };
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    // Out of file descriptors or a connection reset before accept: wait a little, go on.
                    tracing::warn!(%error, "accepting a connection failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let _ = stream.set_nodelay(true);
        let io = TokioIo::new(StallGuard::new(stream, limits.write_stall));
        let connection = builder.serve_connection(io, TowerToHyperService::new(app.clone()));
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection closed with an error");
            }
            drop(slot);
        });
    }
    tracing::info!("shutting down: no new connections, finishing in-flight requests");
    drop(listener);
    if tokio::time::timeout(limits.grace, graceful.shutdown()).await.is_err() {
        tracing::warn!(
            grace_ms = limits.grace.as_millis() as u64,
            "requests still in flight after the grace period were dropped"
        );
    }
    Ok(())
}

/// A connection whose writes fail with `TimedOut` once one has made no progress for `limit`: a client that
/// stops reading cannot hold the connection, or what feeds it, for ever.
struct StallGuard {
    stream: TcpStream,
    limit: Duration,
    stalled: Option<Pin<Box<Sleep>>>,
}

impl StallGuard {
    fn new(stream: TcpStream, limit: Duration) -> Self {
        Self { stream, limit, stalled: None }
    }

    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let deadline = self.stalled.get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match deadline.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, "the client stopped reading"))),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for StallGuard {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_read(cx, buf)
    }
}

impl AsyncWrite for StallGuard {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write(cx, buf);
        this.watch(cx, poll)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_write_vectored(cx, bufs);
        this.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let poll = Pin::new(&mut this.stream).poll_flush(cx);
        this.watch(cx, poll)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().stream).poll_shutdown(cx)
    }
}

/// Resolves on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
}
