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

use super::limits::RunLog;

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::Limits;

    fn stream(limits: &Limits) -> (LogStream, Arc<Mutex<RunLog>>) {
        let log = Arc::new(Mutex::new(RunLog::new(limits)));
        (LogStream::new(log.clone(), "stderr"), log)
    }

    fn messages(log: &Mutex<RunLog>) -> Vec<String> {
        let log = log.lock().unwrap();
        log.lines.iter().map(|l| l.message.clone()).collect()
    }

    #[test]
    fn output_enters_the_log_a_line_at_a_time_without_empty_lines() {
        let (stream, log) = stream(&Limits::default());
        stream.write_bytes(b"thread 'main' panicked\n\nat src/lib.rs:3\n");
        assert_eq!(
            messages(&log),
            ["thread 'main' panicked", "at src/lib.rs:3"]
        );
        assert!(
            log.lock()
                .unwrap()
                .lines
                .iter()
                .all(|l| l.level == "stderr")
        );
    }

    /// Lines are cut at 4 KiB, even inside a character, and bytes that are
    /// not UTF-8 are kept as replacement characters.
    #[test]
    fn long_or_invalid_lines_are_cut_and_kept_readable() {
        let (stream, log) = stream(&Limits::default());
        let mut long = vec![b'a'; MAX_LINE - 1];
        long.extend_from_slice("é and more".as_bytes());
        long.push(b'\n');
        stream.write_bytes(&long);
        stream.write_bytes(b"bad \xff byte\n");
        let lines = messages(&log);
        assert_eq!(lines[0].len(), MAX_LINE - 1 + '\u{fffd}'.len_utf8());
        assert!(lines[0].ends_with("a\u{fffd}"));
        assert_eq!(lines[1], "bad \u{fffd} byte");
    }

    #[test]
    fn output_past_the_log_caps_is_dropped_and_counted() {
        let (stream, log) = stream(&Limits {
            log_lines: 2,
            ..Limits::default()
        });
        stream.write_bytes(b"1\n2\n3\n4\n");
        assert_eq!(messages(&log), ["1", "2"]);
        assert_eq!(log.lock().unwrap().dropped, 2);
    }
}
