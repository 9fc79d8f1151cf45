//! stdout/stderr of an adapter, written into its run log line by line.
//!
//! Writes never fail (a Rust guest panics when stderr fails); beyond the
//! log's caps they are dropped and counted, like `log.write` lines.

use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use super::sandbox::RunLog;

/// Longest line kept; longer ones are cut.
const MAX_LINE: usize = 4_096;

/// stdout or stderr of an adapter, writing into its run log.
#[derive(Clone)]
pub struct LogStream {
    log: Arc<Mutex<RunLog>>,
    level: &'static str,
}

impl LogStream {
    /// A stream whose lines enter `log` at `level`.
    pub fn new(log: Arc<Mutex<RunLog>>, level: &'static str) -> Self {
        LogStream { log, level }
    }

    fn write_bytes(&self, bytes: &[u8]) {
        let mut log = self.log.lock().expect("run log lock");
        for line in bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            let line = &line[..line.len().min(MAX_LINE)];
            log.push(self.level, String::from_utf8_lossy(line).into_owned());
        }
    }
}

impl IsTerminal for LogStream {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for LogStream {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[wasmtime_wasi::async_trait]
impl OutputStream for LogStream {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.write_bytes(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for LogStream {
    async fn ready(&mut self) {}
}

impl AsyncWrite for LogStream {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.write_bytes(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}
