//! The `output` and `log` imports: documents and log lines of a run.

use super::contract::tally::billing::log::{Host as LogHost, Level};
use super::contract::tally::billing::output::{
    Host as OutputHost, OutboundRequest, OutboundResponse, OutputError, SendError,
};
use super::sandbox::{Document, RunState};
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

impl RunState {
    /// Refuses a bad name or content type, or a document over the count cap,
    /// and charges a new document's name and content type to the run.
    fn admit_document(
        &mut self,
        document: &str,
        content_type: &str,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if document.is_empty()
            || document.len() > MAX_DOCUMENT_NAME
            || !document.bytes().all(allowed)
            || document.starts_with('.')
        {
            return Ok(Err(OutputError::InvalidName(format!(
                "'{}' is not a valid document name",
                truncate(document, QUOTED)
            ))));
        }
        if self.documents.contains_key(document) {
            return Ok(Ok(())); // its content type was recorded on first use
        }
        if content_type.is_empty()
            || content_type.len() > MAX_CONTENT_TYPE
            || !content_type.is_ascii()
            || crate::text::has_control(content_type)
        {
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
