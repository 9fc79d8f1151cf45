//! stdout/stderr of an adapter, written into its run log line by line.
//!
//! Writes never fail (a Rust guest panics when stderr fails); beyond the
//! log's caps they are dropped and counted, like `log.write` lines. A write
//! need not end a line (CPython writes `KeyError`, `: ` and `'rates'`
//! apart): lines are assembled across writes ([`StreamLines`]), and a
//! Python traceback on stderr is kept as one log line, its frames naming
//! the adapter's files as the author knows them (`app.py`, not `/0/app.py`).

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
/// Most bytes of a traceback kept as its log line: its first line, then as
/// many of its last lines (the innermost frames, the exception) as fit.
const MAX_TRACEBACK: usize = 8_192;
/// The first line of a Python traceback.
pub(super) const TRACEBACK_START: &str = "Traceback (most recent call last):";
/// Lines that chain one traceback to the next.
const TRACEBACK_CHAINS: [&str; 2] = [
    "During handling of the above exception",
    "The above exception was the direct cause",
];

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
        log.write_stream(self.level, bytes);
    }
}

/// What stdout and stderr have written that is not a log line yet: the
/// unfinished line of each, and a traceback being read. Bounded: at most
/// [`MAX_LINE`] bytes a stream and [`MAX_TRACEBACK`] of traceback.
#[derive(Debug, Default)]
pub struct StreamLines {
    /// The unfinished line of stdout and of stderr, and whether it was cut.
    partial: [(Vec<u8>, bool); 2],
    traceback: Option<Traceback>,
}

/// A Python traceback being read from stderr, a line at a time.
#[derive(Debug)]
struct Traceback {
    /// Its last lines, as many as fit in [`MAX_TRACEBACK`].
    tail: std::collections::VecDeque<String>,
    tail_bytes: usize,
    /// Lines left out between the first line and the tail.
    left_out: usize,
    /// Its exception's line came: what follows ends it, unless it chains
    /// another traceback to it.
    ended: bool,
    /// A chaining line came: the next traceback belongs here.
    chained: bool,
}

impl Traceback {
    fn new() -> Self {
        Traceback {
            tail: Default::default(),
            tail_bytes: 0,
            left_out: 0,
            ended: false,
            chained: false,
        }
    }

    fn add(&mut self, line: String) {
        self.tail_bytes += line.len() + 1;
        self.tail.push_back(line);
        while self.tail_bytes > MAX_TRACEBACK && self.tail.len() > 1 {
            let first = self.tail.pop_front().expect("more than one line");
            self.tail_bytes -= first.len() + 1;
            self.left_out += 1;
        }
    }

    /// The traceback as one message of several lines.
    fn into_message(self) -> String {
        let mut lines: Vec<String> = vec![TRACEBACK_START.into()];
        if self.left_out > 0 {
            lines.push(format!("  … {} lines left out", self.left_out));
        }
        lines.extend(self.tail);
        lines.join("\n")
    }
}

impl RunLog {
    /// Takes `bytes` written to the stream `level` (`stdout` or `stderr`):
    /// each line they finish becomes a log line.
    pub fn write_stream(&mut self, level: &'static str, bytes: &[u8]) {
        let index = usize::from(level == "stderr");
        for (i, piece) in bytes.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                let (line, _) = std::mem::take(&mut self.streams.partial[index]);
                self.stream_line(level, line);
            }
            let (partial, cut) = &mut self.streams.partial[index];
            let room = MAX_LINE - partial.len();
            partial.extend_from_slice(&piece[..piece.len().min(room)]);
            *cut |= piece.len() > room;
        }
    }

    /// Ends what the streams left unfinished (a last line without a newline,
    /// a traceback): at the end of each call, before the log is read.
    pub fn finish_streams(&mut self) {
        for (index, level) in ["stdout", "stderr"].into_iter().enumerate() {
            let (line, _) = std::mem::take(&mut self.streams.partial[index]);
            self.stream_line(level, line);
        }
        if let Some(traceback) = self.streams.traceback.take() {
            self.push("stderr", traceback.into_message());
        }
    }

    /// A finished line of a stream: kept, or added to the traceback it belongs to.
    fn stream_line(&mut self, level: &'static str, line: Vec<u8>) {
        if line.is_empty() {
            return;
        }
        let line = String::from_utf8_lossy(&line).into_owned();
        if level != "stderr" {
            return self.push(level, line);
        }
        if let Some(traceback) = &mut self.streams.traceback {
            let chains = TRACEBACK_CHAINS.iter().any(|c| line.starts_with(c));
            if traceback.ended && chains {
                traceback.ended = false;
                traceback.chained = true;
                return traceback.add(line);
            }
            if !traceback.ended {
                if line.starts_with([' ', '\t']) || (traceback.chained && line == TRACEBACK_START) {
                    traceback.chained &= line != TRACEBACK_START;
                    return traceback.add(adapter_path(line));
                }
                // The exception's own line: the traceback ends, unless another chains to it.
                traceback.add(line);
                traceback.ended = true;
                return;
            }
            // Anything else after the exception: the traceback is complete.
            let traceback = self.streams.traceback.take().expect("a traceback is open");
            self.push(level, traceback.into_message());
        }
        if line == TRACEBACK_START {
            self.streams.traceback = Some(Traceback::new());
        } else {
            self.push(level, line);
        }
    }
}

/// A frame line with the path componentize-py gives the adapter's files
/// (`File "/0/app.py"`: the `-p` directory's index) as the author's own
/// (`File "app.py"`).
fn adapter_path(line: String) -> String {
    let Some(at) = line.find("File \"/") else {
        return line;
    };
    let rest = &line[at + "File \"/".len()..];
    let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
    if digits == 0 || rest.as_bytes().get(digits) != Some(&b'/') {
        return line;
    }
    format!("{}File \"{}", &line[..at], &rest[digits + 1..])
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

    /// A line written in pieces is one line; the last one, unfinished, is
    /// kept when the call ends.
    #[test]
    fn lines_are_assembled_across_writes() {
        let (stream, log) = stream(&Limits::default());
        for piece in [&b"KeyError"[..], b": ", b"'rates'\nnext", b" line"] {
            stream.write_bytes(piece);
        }
        assert_eq!(messages(&log), ["KeyError: 'rates'"]);
        log.lock().unwrap().finish_streams();
        assert_eq!(messages(&log), ["KeyError: 'rates'", "next line"]);
    }

    /// As CPython writes it inside componentize-py: one log line, naming
    /// the adapter's file as its author does.
    #[test]
    fn a_python_traceback_is_one_log_line() {
        let (stream, log) = stream(&Limits::default());
        stream.write_bytes(b"before\nTraceback (most recent call last):\n");
        stream.write_bytes(b"  File \"/0/app.py\", line 20, in export\n");
        stream.write_bytes(b"  File \"/1/common/rates.py\", line 8, in rate_of\n");
        for piece in [&b"KeyError"[..], b": ", b"'rates'", b"\n", b"after\n"] {
            stream.write_bytes(piece);
        }
        assert_eq!(
            messages(&log),
            [
                "before",
                "Traceback (most recent call last):\n  File \"app.py\", line 20, in export\n  \
                 File \"common/rates.py\", line 8, in rate_of\nKeyError: 'rates'",
                "after"
            ]
        );
    }

    /// Chained tracebacks stay together; a deep one keeps its first line
    /// and its innermost frames; one cut short by a trap is kept as it is.
    #[test]
    fn tracebacks_chained_deep_or_unfinished_are_kept_whole_or_bounded() {
        let (out, log) = stream(&Limits::default());
        out.write_bytes(
            b"Traceback (most recent call last):\n  File \"app.py\", line 3, in f\nKeyError: 'a'\n\n\
              During handling of the above exception, another exception occurred:\n\n\
              Traceback (most recent call last):\n  File \"app.py\", line 5, in f\nValueError: b\n",
        );
        log.lock().unwrap().finish_streams();
        let chained = messages(&log);
        assert_eq!(chained.len(), 1, "{chained:?}");
        assert!(
            chained[0].contains("KeyError: 'a'\nDuring handling"),
            "{chained:?}"
        );
        assert!(
            chained[0].ends_with("line 5, in f\nValueError: b"),
            "{chained:?}"
        );

        let (out, log) = stream(&Limits::default());
        out.write_bytes(b"Traceback (most recent call last):\n");
        for i in 0..1_000 {
            out.write_bytes(format!("  File \"app.py\", line {i}, in deep\n").as_bytes());
        }
        out.write_bytes(b"RecursionError: too deep\n");
        log.lock().unwrap().finish_streams();
        let deep = messages(&log);
        assert_eq!(deep.len(), 1);
        assert!(deep[0].len() <= MAX_TRACEBACK + 100, "{}", deep[0].len());
        assert!(deep[0].starts_with("Traceback (most recent call last):\n  … "));
        assert!(deep[0].ends_with("line 999, in deep\nRecursionError: too deep"));

        let (out, log) = stream(&Limits::default());
        out.write_bytes(b"Traceback (most recent call last):\n  File \"app.py\", line 3, in f\n");
        assert!(messages(&log).is_empty());
        log.lock().unwrap().finish_streams();
        assert_eq!(
            messages(&log),
            ["Traceback (most recent call last):\n  File \"app.py\", line 3, in f"]
        );
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
