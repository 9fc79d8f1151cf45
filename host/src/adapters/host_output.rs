//! The `output` and `log` imports: documents and log lines of a run.

use super::contract::tally::billing::log::{Host as LogHost, Level};
use super::contract::tally::billing::output::{
    Host as OutputHost, OutboundRequest, OutboundResponse, OutputError, SendError,
};
use super::sandbox::{Document, RunState};

/// Longest document name.
pub const MAX_DOCUMENT_NAME: usize = 128;

impl OutputHost for RunState {
    fn append(
        &mut self,
        document: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        if document.is_empty()
            || document.len() > MAX_DOCUMENT_NAME
            || !document.bytes().all(allowed)
            || document.starts_with('.')
        {
            return Ok(Err(OutputError::InvalidName(format!(
                "'{document}' is not a valid document name"
            ))));
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
        Ok(self.send_request(request))
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
