//! The `output` and `log` imports: documents and log lines of a run.

use super::contract::tally::billing::log::{Host as LogHost, Level};
use super::contract::tally::billing::output::{
    Host as OutputHost, OutboundRequest, OutboundResponse, OutputError, SendError,
};
use super::limits::{Document, RunState};
use crate::text::truncate;

/// Longest document name.
pub const MAX_DOCUMENT_NAME: usize = 128;
/// Longest content type.
pub const MAX_CONTENT_TYPE: usize = 256;
/// Most documents one run may write.
pub const MAX_DOCUMENTS: usize = 100;
/// What the host keeps per document beyond its name, content type and bytes
/// (charged against the run's memory cap with them).
const DOCUMENT_OVERHEAD: usize = 128;
/// How much of a refused name or content type a message quotes.
const QUOTED: usize = 64;

/// Whether `name` may name a document: 1 to [`MAX_DOCUMENT_NAME`] bytes of
/// ASCII letters, digits, `.`, `_` and `-`, not starting with `.`, so that
/// it is a plain file name everywhere a document is saved or served.
fn is_document_name(name: &str) -> bool {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
    !name.is_empty()
        && name.len() <= MAX_DOCUMENT_NAME
        && name.bytes().all(allowed)
        && !name.starts_with('.')
}

/// Whether `content_type` may be served as a document's `Content-Type`:
/// 1 to [`MAX_CONTENT_TYPE`] printable ASCII characters.
fn is_content_type(content_type: &str) -> bool {
    !content_type.is_empty()
        && content_type.len() <= MAX_CONTENT_TYPE
        && content_type.is_ascii()
        && !crate::text::has_control(content_type)
}

impl RunState {
    /// Refuses a bad name or content type, or a document over the count cap,
    /// and charges a new document's name and content type to the run.
    fn admit_document(
        &mut self,
        document: &str,
        content_type: &str,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        if !is_document_name(document) {
            return Ok(Err(OutputError::InvalidName(format!(
                "'{}' is not a valid document name",
                truncate(document, QUOTED)
            ))));
        }
        if self.documents.contains_key(document) {
            return Ok(Ok(())); // its content type was recorded on first use
        }
        if !is_content_type(content_type) {
            return Ok(Err(OutputError::InvalidName(format!(
                "content type '{}' of '{document}' is not 1 to {MAX_CONTENT_TYPE} printable ASCII characters",
                truncate(content_type, QUOTED)
            ))));
        }
        if self.documents.len() >= MAX_DOCUMENTS {
            let message = format!("document limit of {MAX_DOCUMENTS} per run reached");
            self.log
                .lock()
                .expect("run log lock")
                .push("error", message);
            return Ok(Err(OutputError::LimitReached(MAX_DOCUMENTS as u64)));
        }
        let kept = document.len() + content_type.len() + DOCUMENT_OVERHEAD;
        self.limiter.charge_host(kept, "a new document")?;
        Ok(Ok(()))
    }
}

impl OutputHost for RunState {
    fn append(
        &mut self,
        document: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        if let Err(refused) = self.admit_document(&document, &content_type)? {
            return Ok(Err(refused));
        }
        if self.output_bytes + bytes.len() as u64 > self.output_cap {
            let message = format!("output limit of {} bytes reached", self.output_cap);
            self.log
                .lock()
                .expect("run log lock")
                .push("error", message);
            return Ok(Err(OutputError::LimitReached(self.output_cap)));
        }
        self.output_bytes += bytes.len() as u64;
        let stored = &mut self
            .documents
            .entry(document)
            .or_insert_with(|| Document {
                content_type,
                bytes: Vec::new(),
            })
            .bytes;
        if stored.is_empty() {
            *stored = bytes; // the first append is kept as lifted, not copied again
        } else {
            stored.extend_from_slice(&bytes);
        }
        Ok(Ok(()))
    }

    fn send(
        &mut self,
        request: OutboundRequest,
    ) -> wasmtime::Result<Result<OutboundResponse, SendError>> {
        self.send_request(request)
    }
}

impl LogHost for RunState {
    fn write(&mut self, level: Level, message: String) -> wasmtime::Result<()> {
        let level = match level {
            Level::Debug => "debug",
            Level::Info => "info",
            Level::Warn => "warn",
            Level::Error => "error",
        };
        self.log.lock().expect("run log lock").push(level, message);
        Ok(())
    }
}

impl super::contract::tally::billing::types::Host for RunState {}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use super::*;
    use crate::sandbox::limits::{Limits, RunClock};

    /// The state of an export call under `limits`, granted nothing.
    fn run(limits: Limits) -> RunState {
        let clock = RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: None,
        };
        RunState::new(&limits, clock, None, None)
    }

    fn append(
        state: &mut RunState,
        document: &str,
        content_type: &str,
        bytes: &[u8],
    ) -> Result<(), OutputError> {
        state
            .append(document.into(), content_type.into(), bytes.to_vec())
            .expect("no trap")
    }

    #[test]
    fn document_names_are_plain_file_names() {
        let longest = "n".repeat(MAX_DOCUMENT_NAME);
        for name in [
            "chargeback.csv",
            "focus-2026_11.parquet",
            "a",
            "a..b",
            "-x",
            &longest,
        ] {
            assert!(is_document_name(name), "{name:?} is accepted");
        }
        let too_long = "n".repeat(MAX_DOCUMENT_NAME + 1);
        for name in [
            "",
            ".hidden",
            "..",
            "../etc/passwd",
            "a/b.csv",
            "a\\b.csv",
            "a b.csv",
            "a\0.csv",
            "a\n.csv",
            "café.csv",
            "C:x.csv",
            &too_long,
        ] {
            assert!(!is_document_name(name), "{name:?} is refused");
        }
    }

    #[test]
    fn content_types_are_printable_ascii_up_to_256_bytes() {
        let longest = format!("text/{}", "x".repeat(MAX_CONTENT_TYPE - 5));
        for content_type in ["text/csv", "text/csv; charset=utf-8", &longest] {
            assert!(
                is_content_type(content_type),
                "{content_type:?} is accepted"
            );
        }
        let too_long = format!("{longest}x");
        for content_type in [
            "",
            "text/csv\r\nX-Injected: 1",
            "text/csv\0",
            "text/csv\u{7f}",
            "téxt/csv",
            &too_long,
        ] {
            assert!(
                !is_content_type(content_type),
                "{content_type:?} is refused"
            );
        }
    }

    #[test]
    fn a_refused_name_writes_nothing_and_is_quoted_short() {
        let mut state = run(Limits::default());
        let name = format!("../{}", "a".repeat(10_000));
        let refused = append(&mut state, &name, "text/csv", b"x");
        let Err(OutputError::InvalidName(message)) = refused else {
            panic!("{refused:?}");
        };
        assert!(message.len() < 200, "{message}");
        let refused = append(&mut state, "ok.csv", "text/csv\n", b"x");
        assert!(matches!(refused, Err(OutputError::InvalidName(m)) if m.contains("ok.csv")));
        assert!(state.documents.is_empty());
        assert_eq!(state.output_bytes, 0);
    }

    #[test]
    fn appends_concatenate_under_the_first_content_type() {
        let mut state = run(Limits::default());
        append(&mut state, "lines.csv", "text/csv", b"a,b\n").unwrap();
        // Later appends' content types are not looked at.
        append(&mut state, "lines.csv", "", b"1,2\n").unwrap();
        let document = &state.documents["lines.csv"];
        assert_eq!(document.content_type, "text/csv");
        assert_eq!(document.bytes, b"a,b\n1,2\n");
        assert_eq!(state.output_bytes, 8);
    }

    #[test]
    fn the_output_cap_counts_every_document_to_the_byte() {
        let mut state = run(Limits {
            output_bytes: 10,
            ..Limits::default()
        });
        append(&mut state, "a.txt", "text/plain", b"123456").unwrap();
        let refused = append(&mut state, "b.txt", "text/plain", b"12345");
        assert!(
            matches!(refused, Err(OutputError::LimitReached(10))),
            "{refused:?}"
        );
        // What still fits is taken, refused bytes are not counted.
        append(&mut state, "a.txt", "text/plain", b"7890").unwrap();
        assert_eq!(state.output_bytes, 10);
        assert_eq!(state.documents["a.txt"].bytes, b"1234567890");
        let log = state.log.lock().unwrap();
        assert!(log.lines[0].message.contains("output limit of 10 bytes"));
    }

    #[test]
    fn a_run_writes_at_most_100_documents() {
        let mut state = run(Limits::default());
        for i in 0..MAX_DOCUMENTS {
            append(&mut state, &format!("d{i}.csv"), "text/csv", b"x").unwrap();
        }
        let refused = append(&mut state, "one-more.csv", "text/csv", b"x");
        assert!(
            matches!(refused, Err(OutputError::LimitReached(100))),
            "{refused:?}"
        );
        // The documents it has still grow.
        append(&mut state, "d0.csv", "text/csv", b"y").unwrap();
        assert_eq!(state.documents.len(), MAX_DOCUMENTS);
        assert_eq!(state.documents["d0.csv"].bytes, b"xy");
    }

    /// A new document's name and content type are kept by the host, so they
    /// count against the run's memory cap: past it, the adapter traps.
    #[test]
    fn new_documents_are_charged_to_the_memory_cap() {
        let mut state = run(Limits {
            memory_bytes: 1_000,
            ..Limits::default()
        });
        let name = "n".repeat(MAX_DOCUMENT_NAME);
        let content_type = "t".repeat(MAX_CONTENT_TYPE);
        // Each costs 128 + 256 + 128 bytes: the second passes 1,000.
        append(&mut state, &name, &content_type, b"").unwrap();
        let trapped = state.append("m".repeat(MAX_DOCUMENT_NAME), content_type, vec![]);
        assert!(trapped.is_err());
        assert!(
            state
                .limiter
                .refused
                .as_deref()
                .unwrap()
                .contains("a new document")
        );
        assert_eq!(state.documents.len(), 1);
    }
}
