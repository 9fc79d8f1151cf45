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
/// Most document names `describe()` may list (in every version; a run's
/// cap is its contract's [`Contract::max_documents`](super::contract::Contract)).
pub const MAX_DESCRIBED_DOCUMENTS: usize = 100;
/// What the host keeps per document beyond its name, content type, owner and
/// bytes (charged against the run's memory cap with them).
const DOCUMENT_OVERHEAD: usize = 128;
/// How much of a refused name, content type or subscription a message quotes.
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

/// The refusal of a name that is not a [document name](is_document_name).
fn invalid_name(document: &str) -> OutputError {
    OutputError::InvalidName(format!(
        "'{}' is not a valid document name",
        truncate(document, QUOTED)
    ))
}

impl RunState {
    /// Writes `bytes` to `document` (a valid name) for `owner` (`None`: the
    /// operator's). Refuses a document owned otherwise, a bad content type or
    /// a document over the count cap, and charges a new document's name,
    /// content type and owner to the run.
    fn write(
        &mut self,
        document: String,
        content_type: String,
        owner: Option<String>,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        match self.documents.get(&document) {
            // Its content type was recorded on first use; its owner is fixed.
            Some(written) if written.owner != owner => {
                let reason = ownership_conflict(&document, owner.as_deref(), written);
                return Ok(Err(self.refuse_out_of_scope(reason)));
            }
            Some(_) => {}
            None => {
                if !is_content_type(&content_type) {
                    return Ok(Err(OutputError::InvalidName(format!(
                        "content type '{}' of '{document}' is not 1 to {MAX_CONTENT_TYPE} printable ASCII characters",
                        truncate(&content_type, QUOTED)
                    ))));
                }
                if self.documents.len() >= self.max_documents {
                    let cap = self.max_documents;
                    let message = format!("document limit of {cap} per run reached");
                    self.log
                        .lock()
                        .expect("run log lock")
                        .push("error", message);
                    return Ok(Err(OutputError::LimitReached(cap as u64)));
                }
                let kept = document.len()
                    + content_type.len()
                    + owner.as_ref().map_or(0, String::len)
                    + DOCUMENT_OVERHEAD;
                self.limiter.charge_host(kept, "a new document")?;
            }
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
                owner,
            })
            .bytes;
        if stored.is_empty() {
            *stored = bytes; // the first append is kept as lifted, not copied again
        } else {
            stored.extend_from_slice(&bytes);
        }
        Ok(Ok(()))
    }

    /// The owner of a document `append-for` writes for `subscription`: its
    /// id as the store spells it, if the installation may read it and the
    /// run was handed a row of it; else why not.
    fn owner_for(&self, subscription: &str, document: &str) -> Result<String, String> {
        let wrote = format!(
            "the adapter wrote {document:?} for subscription {:?}",
            truncate(subscription, QUOTED)
        );
        let Some(usage) = &self.usage else {
            return Err(format!(
                "{wrote}, but documents belong to subscriptions only during export"
            ));
        };
        if !usage.grant.allows(subscription) {
            return Err(format!(
                "{wrote}, which is outside the installation's scope"
            ));
        }
        match usage.read.spelling(subscription) {
            Some(spelling) => Ok(spelling.to_owned()),
            None => Err(format!("{wrote}, of which the run read no usage")),
        }
    }

    /// Refuses a write as `out-of-scope`: logged, and the run fails with the
    /// first such reason whatever the adapter returns.
    fn refuse_out_of_scope(&mut self, reason: String) -> OutputError {
        self.log
            .lock()
            .expect("run log lock")
            .push("error", reason.clone());
        self.out_of_scope.get_or_insert_with(|| reason.clone());
        OutputError::OutOfScope(reason)
    }
}

/// Why a write for `owner` may not go to `document`, which belongs to
/// another (or, written by `append`, to no) subscription.
fn ownership_conflict(document: &str, owner: Option<&str>, written: &Document) -> String {
    let wrote = match owner {
        Some(owner) => format!("the adapter wrote {document:?} for subscription {owner:?}"),
        None => format!("the adapter wrote {document:?} with append"),
    };
    match &written.owner {
        Some(belongs) => format!("{wrote}, but it belongs to subscription {belongs:?}"),
        None => format!("{wrote}, but it was written with append and belongs to no subscription"),
    }
}

impl OutputHost for RunState {
    fn append(
        &mut self,
        document: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        if !is_document_name(&document) {
            return Ok(Err(invalid_name(&document)));
        }
        self.write(document, content_type, None, bytes)
    }

    fn append_for(
        &mut self,
        subscription: String,
        document: String,
        content_type: String,
        bytes: Vec<u8>,
    ) -> wasmtime::Result<Result<(), OutputError>> {
        if !is_document_name(&document) {
            return Ok(Err(invalid_name(&document)));
        }
        match self.owner_for(&subscription, &document) {
            Ok(owner) => self.write(document, content_type, Some(owner), bytes),
            Err(reason) => Ok(Err(self.refuse_out_of_scope(reason))),
        }
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

    use std::sync::Arc;

    use super::*;
    use crate::sandbox::contract::Contract;
    use crate::sandbox::host_usage::UsageAccess;
    use crate::sandbox::limits::{Limits, RunClock, SubscriptionGrant};
    use crate::sandbox::usage_read::tests::{batch, row};
    use crate::store::sqlite::SqliteStore;
    use crate::usage::MeterCatalog;

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

    /// Each contract version has its cap: 100 documents a run on 0.1,
    /// 10,000 on 0.2.
    #[test]
    fn a_run_writes_at_most_its_contracts_cap_of_documents() {
        for (version, cap) in [("0.1.0", 100), ("0.2.0", 10_000)] {
            let mut state = run(Limits::default());
            state.max_documents = Contract::for_version(version).unwrap().max_documents;
            assert_eq!(state.max_documents, cap);
            for i in 0..cap {
                append(&mut state, &format!("d{i}.csv"), "text/csv", b"x").unwrap();
            }
            let refused = append(&mut state, "one-more.csv", "text/csv", b"x");
            assert!(
                matches!(refused, Err(OutputError::LimitReached(c)) if c == cap as u64),
                "{version}: {refused:?}"
            );
            // The documents it has still grow.
            append(&mut state, "d0.csv", "text/csv", b"y").unwrap();
            assert_eq!(state.documents.len(), cap);
            assert_eq!(state.documents["d0.csv"].bytes, b"xy");
        }
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

    /// A run that read `read` (one row each) with `grant`, on a store of its own.
    fn run_that_read(grant: SubscriptionGrant, read: &[&str]) -> (RunState, tempfile::TempDir) {
        let data = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(data.path()).unwrap());
        let catalog = Arc::new(MeterCatalog::builtin_for_tests());
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let mut usage = {
            let _entered = runtime.enter();
            UsageAccess::new(store, catalog, grant, chrono::Utc::now())
        };
        let rows: Vec<_> = read.iter().map(|id| row(id, "vm-hours", 0, 1.0)).collect();
        usage.read.record(&batch(&rows), usize::MAX);
        let clock = RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: None,
        };
        (
            RunState::new(&Limits::default(), clock, Some(usage), None),
            data,
        )
    }

    fn append_for(
        state: &mut RunState,
        subscription: &str,
        document: &str,
        bytes: &[u8],
    ) -> Result<(), OutputError> {
        state
            .append_for(
                subscription.into(),
                document.into(),
                "text/plain".into(),
                bytes.to_vec(),
            )
            .expect("no trap")
    }

    fn refused_out_of_scope(result: Result<(), OutputError>) -> String {
        match result {
            Err(OutputError::OutOfScope(reason)) => reason,
            other => panic!("not out of scope: {other:?}"),
        }
    }

    /// A document written for a subscription the run read belongs to it,
    /// under the store's spelling of its id, whatever case the adapter used.
    #[test]
    fn a_document_belongs_to_a_subscription_the_run_read() {
        let grant = SubscriptionGrant::Only(vec!["sub-a".into(), "Sub-B".into()]);
        let (mut state, _data) = run_that_read(grant, &["Sub-A", "Sub-B"]);
        append_for(&mut state, "SUB-A", "statement-a.txt", b"one ").unwrap();
        append_for(&mut state, "sub-a", "statement-a.txt", b"two").unwrap();
        append_for(&mut state, "sub-b", "statement-b.txt", b"b").unwrap();
        append(&mut state, "all.csv", "text/csv", b"a,b\n").unwrap();
        let a = &state.documents["statement-a.txt"];
        assert_eq!(
            (a.owner.as_deref(), a.bytes.as_slice()),
            (Some("Sub-A"), &b"one two"[..])
        );
        assert_eq!(
            state.documents["statement-b.txt"].owner.as_deref(),
            Some("Sub-B")
        );
        assert_eq!(state.documents["all.csv"].owner, None);
        assert_eq!(state.out_of_scope, None);
        // The owner's id is charged to the run with the document.
        assert!(state.limiter.peak >= 3 * DOCUMENT_OVERHEAD + "Sub-ASub-B".len());
    }

    /// A subscription outside the grant, or one of which the run read no
    /// row, owns nothing: refused as out of scope, nothing written, and the
    /// run keeps the first reason (which fails it).
    #[test]
    fn a_subscription_outside_the_grant_or_not_read_owns_nothing() {
        let grant = SubscriptionGrant::Only(vec!["sub-a".into(), "sub-b".into()]);
        let (mut state, _data) = run_that_read(grant, &["sub-a"]);
        let reason =
            refused_out_of_scope(append_for(&mut state, "sub-z", "statement-x.html", b"x"));
        assert_eq!(
            reason,
            r#"the adapter wrote "statement-x.html" for subscription "sub-z", which is outside the installation's scope"#
        );
        let not_read =
            refused_out_of_scope(append_for(&mut state, "sub-b", "statement-b.html", b"x"));
        assert_eq!(
            not_read,
            r#"the adapter wrote "statement-b.html" for subscription "sub-b", of which the run read no usage"#
        );
        assert!(state.documents.is_empty());
        assert_eq!(state.output_bytes, 0);
        assert_eq!(state.out_of_scope.as_deref(), Some(reason.as_str()));
        let log = state.log.lock().unwrap();
        assert!(
            log.lines
                .iter()
                .any(|l| l.level == "error" && l.message == not_read)
        );

        // With every subscription granted, reading one is still what it takes.
        let (mut state, _data) = run_that_read(SubscriptionGrant::All, &["sub-a"]);
        append_for(&mut state, "sub-a", "a.txt", b"x").unwrap();
        refused_out_of_scope(append_for(&mut state, "sub-q", "q.txt", b"x"));
        // A huge id is quoted short.
        let huge =
            refused_out_of_scope(append_for(&mut state, &"s".repeat(100_000), "h.txt", b"x"));
        assert!(huge.len() < 300, "{} bytes", huge.len());
    }

    /// A document's owner is fixed at its first write: `append` may not add
    /// to a subscription's document, nor `append-for` to the operator's or
    /// another subscription's.
    #[test]
    fn a_documents_owner_is_fixed_at_its_first_write() {
        let (mut state, _data) = run_that_read(SubscriptionGrant::All, &["sub-a", "sub-b"]);
        append_for(&mut state, "sub-a", "a.txt", b"a").unwrap();
        append(&mut state, "shared.txt", "text/plain", b"s").unwrap();
        let cases = [
            (
                append(&mut state, "a.txt", "text/plain", b"!"),
                r#"the adapter wrote "a.txt" with append, but it belongs to subscription "sub-a""#,
            ),
            (
                append_for(&mut state, "sub-b", "a.txt", b"!"),
                r#"the adapter wrote "a.txt" for subscription "sub-b", but it belongs to subscription "sub-a""#,
            ),
            (
                append_for(&mut state, "sub-a", "shared.txt", b"!"),
                r#"the adapter wrote "shared.txt" for subscription "sub-a", but it was written with append and belongs to no subscription"#,
            ),
        ];
        let first = cases[0].1;
        for (result, expected) in cases {
            assert_eq!(refused_out_of_scope(result), expected);
        }
        assert_eq!(state.documents["a.txt"].bytes, b"a");
        assert_eq!(state.documents["shared.txt"].bytes, b"s");
        assert_eq!(state.out_of_scope.as_deref(), Some(first));
    }

    /// A verification run sends nothing, and says why.
    #[test]
    fn a_verification_run_sends_nothing() {
        let mut state = run(Limits::default());
        state.no_egress = crate::sandbox::egress::VERIFICATION_SENDS_NOTHING;
        let answer = state
            .send(OutboundRequest {
                method: "POST".into(),
                url: "https://billing.example.com/lines".into(),
                headers: vec![],
                body: b"{}".to_vec(),
            })
            .unwrap();
        assert!(
            matches!(&answer, Err(SendError::NotAllowed(r)) if r == "a verification run sends no requests"),
            "{answer:?}"
        );
    }
}
