//! The HTTP/1 server loop of `tally serve`: the API over a TCP listener,
//! with the limits a client must not be able to lift — how long a request's
//! head may take, how long a request may wait on a silent client, and how
//! many connections are served at once.
//!
//! | limit | default | when hit |
//! |---|---|---|
//! | `header_read_timeout` | 10 s | the connection is closed (a new connection, or a kept-alive one, that has not sent a whole request head) |
//! | `idle_timeout` | 60 s | the connection is closed (a request body or a response that moved no byte for that long) |
//! | `max_connections` | 1,024 | further connections wait in the listen backlog until one closes |

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde::Deserialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Sleep;
use tower_http::timeout::RequestBodyTimeoutLayer;

/// Default time for a request head to arrive.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Default time a request may wait on its client without a byte moving.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Default number of connections served at once.
pub const DEFAULT_MAX_CONNECTIONS: usize = 1_024;

/// The server's limits and the names it answers to: `tally.toml`'s `[http]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerSettings {
    /// How long a client has to send a whole request head, from the moment
    /// the server waits for one (a new connection, or a kept-alive one after
    /// its last response): also how long an unused connection stays open.
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// How long a request may wait on its client with no byte moving: a
    /// request body that stops arriving, a response the client stops reading.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Connections served at once; more wait in the listen backlog.
    pub max_connections: usize,
    /// `Host` values (`name` or `name:port`) the usage API builds `nextLink`s
    /// on when no `public_url` is set, besides the listen address itself.
    pub allowed_hosts: Vec<String>,
}

impl Default for ServerSettings {
    fn default() -> Self {
        ServerSettings {
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_connections: DEFAULT_MAX_CONNECTIONS,
            allowed_hosts: Vec::new(),
        }
    }
}

impl ServerSettings {
    /// Refuses settings that would serve nothing or never time out.
    pub fn check(&self) -> anyhow::Result<()> {
        anyhow::ensure!(
            self.max_connections > 0,
            "http.max_connections must be at least 1"
        );
        anyhow::ensure!(
            !self.header_read_timeout.is_zero() && !self.idle_timeout.is_zero(),
            "http.header_read_timeout and http.idle_timeout must be longer than 0"
        );
        for host in &self.allowed_hosts {
            super::next_link::check_allowed_host(host)?;
        }
        Ok(())
    }
}

/// Serves `app` on `listener` until `shutdown` completes, then waits for the
/// requests in progress to finish.
pub async fn serve(
    listener: TcpListener,
    app: Router,
    settings: &ServerSettings,
    shutdown: impl Future<Output = ()>,
) {
    let app = app.layer(RequestBodyTimeoutLayer::new(settings.idle_timeout));
    let service = TowerToHyperService::new(app);
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(settings.header_read_timeout);
    let connections = Arc::new(Semaphore::new(settings.max_connections));
    let graceful = GracefulShutdown::new();
    let mut shutdown = std::pin::pin!(shutdown);
    loop {
        // A connection is accepted only with a free slot: the others wait
        // in the kernel's backlog, costing the host nothing.
        let slot = tokio::select! {
            slot = connections.clone().acquire_owned() => slot.expect("the semaphore is never closed"),
            () = &mut shutdown => break,
        };
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(error) => {
                    accept_failed(error).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let io = TokioIo::new(StallTimeout::new(stream, settings.idle_timeout));
        let connection = graceful.watch(http.serve_connection(io, service.clone()));
        tokio::spawn(async move {
            // An error here is the client's (a reset, a timeout): nothing to answer.
            if let Err(error) = connection.await {
                tracing::debug!(%error, "connection ended");
            }
            drop(slot);
        });
    }
    drop(listener);
    graceful.shutdown().await;
}

/// After a failed `accept`: a connection the client reset is nothing; running
/// out of file descriptors is worth a pause, as other connections close.
async fn accept_failed(error: io::Error) {
    if matches!(
        error.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    ) {
        return;
    }
    tracing::error!(%error, "accept failed");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// A connection whose writes fail once the client has read nothing for
/// `limit`, so that a client that stops reading a response does not hold
/// the response (and its connection slot) forever. Reads need no such
/// guard: hyper times out request heads, and the request body carries its
/// own timeout (`RequestBodyTimeoutLayer`).
struct StallTimeout<S> {
    inner: S,
    limit: Duration,
    /// Set while a write waits on the client.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl<S> StallTimeout<S> {
    fn new(inner: S, limit: Duration) -> Self {
        StallTimeout {
            inner,
            limit,
            stalled: None,
        }
    }

    /// The outcome of a write attempt: progress clears the stall; waiting
    /// longer than the limit fails the write.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let limit = self.limit;
        let stalled = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        ready!(stalled.as_mut().poll(cx));
        Poll::Ready(Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "the client read nothing of the response within the idle timeout",
        )))
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StallTimeout<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StallTimeout<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn a_write_the_client_never_reads_fails_after_the_idle_timeout() {
        let (server_side, mut client) = tokio::io::duplex(1024);
        let mut guarded = StallTimeout::new(server_side, Duration::from_secs(2));
        // A client that reads: 64 KiB through a 1 KiB pipe, no error.
        let reader = tokio::spawn(async move {
            let mut received = vec![0u8; 64 * 1024];
            client.read_exact(&mut received).await.unwrap();
            client
        });
        guarded.write_all(&[7u8; 64 * 1024]).await.unwrap();
        let _client = reader.await.unwrap();
        // A client that stops reading: the write fails (instead of waiting
        // forever) once the pipe is full and nothing moves for the limit.
        let stalled = guarded.write_all(&[7u8; 64 * 1024]);
        let error = tokio::time::timeout(Duration::from_secs(60), stalled)
            .await
            .expect("the write gave up by itself")
            .unwrap_err();
        assert_eq!(error.kind(), io::ErrorKind::TimedOut);
    }
}
