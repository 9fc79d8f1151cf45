//! Running one export: a fresh store from the pre-instantiated component, the
//! call under the sandbox's limits, and a verdict on how it ended.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::contract::{Description, ExportError, ExportRequest, Summary};
use super::egress::{Egress, Outbound, VERIFICATION_SENDS_NOTHING};
use super::engine::{AdapterEngine, LoadedAdapter};
use super::guest_errors;
use super::host_output::{MAX_DESCRIBED_DOCUMENTS, MAX_DOCUMENT_NAME};
use super::host_usage::UsageAccess;
use super::limits::{Document, Limits, LogLine, MAX_QUOTED_REASON_BYTES, RunClock, RunState};
use crate::text::truncate;

/// Longest deadline of an install-time call (`describe`, `validate-config`),
/// whatever the manifest's deadline: they answer from the adapter's own code.
pub const INSTALL_CALL_DEADLINE: Duration = Duration::from_secs(10);
/// Most bytes an install-time call may pass to the host in one go (its
/// answer, a log line): their answers are short texts.
pub const INSTALL_CALL_COPY_BYTES: usize = 1 << 20;
/// Longest adapter name and version in `describe()`.
pub const MAX_DESCRIBED_NAME: usize = 128;
/// How many of the last stderr lines a trap's cause is looked for in.
const RECENT_STDERR: usize = 12;
/// How many names a host message quotes from a list the adapter gave.
const QUOTED_NAMES: usize = 10;

/// Why a run failed. Each names what happened in words an operator can act on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RunFailure {
    #[error("the adapter ran past its deadline of {0:?} and was stopped")]
    Timeout(Duration),
    #[error("the adapter exceeded its memory limit: {0}")]
    OutOfMemory(String),
    #[error("the adapter trapped: {0}")]
    Trap(String),
    #[error("the adapter refused its configuration: {0}")]
    InvalidConfig(String),
    #[error("transient failure (will be retried): {0}")]
    Transient(String),
    #[error("permanent failure: {0}")]
    Permanent(String),
    #[error("the adapter could not be started: {0}")]
    Instantiate(String),
    #[error("the adapter returned a summary that does not match what it did: {0}")]
    BadSummary(String),
    #[error("the host stopped the run (its lease was lost)")]
    Cancelled,
    #[error("the adapter's describe() is over the host's limits: {0}")]
    BadDescription(String),
    /// The adapter wrote a document for a subscription it may not (outside
    /// the installation's scope, not read by the run, or another's document):
    /// the reason names both.
    #[error("{0}")]
    OutOfScope(String),
}

impl RunFailure {
    /// Whether running again may succeed without changing anything.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            RunFailure::Transient(_) | RunFailure::Instantiate(_) | RunFailure::Cancelled
        )
    }
}

/// Figures of a run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunFigures {
    /// From a fresh store to the adapter's return.
    pub elapsed: Duration,
    /// Fresh store and instance, before the first instruction.
    pub instantiate: Duration,
    pub peak_memory_bytes: usize,
    pub rows_read: u64,
    pub bytes_written: u64,
    /// Requests made through `send`.
    pub requests_sent: u64,
}

/// How a run ended, with what it produced.
#[derive(Debug)]
pub struct ExportOutcome {
    pub result: Result<Summary, RunFailure>,
    /// The documents written; empty unless the run succeeded (a failed run leaves nothing).
    pub documents: BTreeMap<String, Document>,
    pub log: Vec<LogLine>,
    /// Log lines dropped by the caps.
    pub log_dropped: u64,
    pub figures: RunFigures,
    /// SHA-256 (lower-case hex) of every row handed to the adapter, in the
    /// order handed ([`super::usage_read`] defines it).
    pub usage_sha256: String,
}

/// Runs `export` on a fresh instance under `limits`, reading through `usage`
/// and sending where `outbound` allows.
///
/// Blocks: call it from a blocking thread (`tokio::task::spawn_blocking`),
/// never from an async task, since the imports wait on the store and the network.
pub fn run_export(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    request: &ExportRequest,
    config: &str,
    usage: UsageAccess,
    outbound: Outbound,
    limits: &Limits,
) -> ExportOutcome {
    let started = Instant::now();
    let verification = outbound == Outbound::Verification;
    let egress = match outbound {
        Outbound::Allowed(allowed) => Some(Egress::new(
            request.run_id.clone(),
            allowed,
            engine.outbound_clients(),
            usage.runtime.clone(),
            started + limits.deadline,
        )),
        Outbound::Verification => None,
    };
    let clock = RunClock {
        deadline: started + limits.deadline,
        cancelled: Some(usage.cancelled.clone()),
    };
    // A call may pass the host at most what the adapter could hold itself.
    let mut store = new_store(
        engine,
        adapter,
        limits,
        clock,
        limits.memory_bytes,
        Some(usage),
        egress,
    );
    if verification {
        store.data_mut().no_egress = VERIFICATION_SENDS_NOTHING;
    }
    let instance = adapter.pre.instantiate(&mut store);
    let instantiate = started.elapsed();

    let result = match instance {
        Err(error) => Err(instantiate_failure(&error, &store)),
        Ok(instance) => {
            let called = instance.export(&mut store, request, config);
            match called {
                Ok(Ok(summary)) => {
                    let state = store.data();
                    let rows_read = state.usage.as_ref().map_or(0, |u| u.rows_read);
                    check_summary(summary, &state.documents, rows_read, state.max_documents)
                }
                Ok(Err(ExportError::InvalidConfig(reason))) => {
                    Err(RunFailure::InvalidConfig(bounded(reason)))
                }
                Ok(Err(ExportError::Transient(reason))) => {
                    Err(RunFailure::Transient(bounded(reason)))
                }
                Ok(Err(ExportError::Permanent(reason))) => {
                    Err(RunFailure::Permanent(bounded(reason)))
                }
                Err(error) => Err(classify("export", &error, &store, limits)),
            }
        }
    };
    // A write out of scope fails the run whatever the adapter did next
    // (unless the host stopped it: then it runs again, and fails then).
    let result = match store.data().out_of_scope.clone() {
        Some(reason) if !matches!(result, Err(RunFailure::Cancelled)) => {
            Err(RunFailure::OutOfScope(bounded(reason)))
        }
        _ => result,
    };
    // A trapped instance is dropped with its store; the next run starts fresh.
    let mut state = store.into_data();
    state.log.lock().expect("run log lock").finish_streams();
    let figures = RunFigures {
        elapsed: started.elapsed(),
        instantiate,
        peak_memory_bytes: state.limiter.peak,
        rows_read: state.usage.as_ref().map_or(0, |u| u.rows_read),
        bytes_written: state.output_bytes,
        requests_sent: state.egress.as_ref().map_or(0, |e| e.sent),
    };
    let (log, log_dropped) = {
        let log = state.log.lock().expect("run log lock");
        (log.lines.clone(), log.dropped)
    };
    let usage_sha256 = state
        .usage
        .as_mut()
        .map(|u| u.read.sha256_hex())
        .unwrap_or_default();
    let documents = if result.is_ok() {
        state.documents
    } else {
        BTreeMap::new()
    };
    ExportOutcome {
        result,
        documents,
        log,
        log_dropped,
        figures,
        usage_sha256,
    }
}

/// Calls `describe` on a fresh instance and checks its answer against the
/// host's bounds; also returns the time from a fresh store to a ready instance.
pub fn describe(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    limits: &Limits,
) -> Result<(Description, Duration), RunFailure> {
    // Timed like a run's start: a fresh store, then the instance.
    let started = Instant::now();
    let limits = &install_call_limits(limits);
    let mut store = install_call_store(engine, adapter, limits);
    let instance = adapter
        .pre
        .instantiate(&mut store)
        .map_err(|e| instantiate_failure(&e, &store))?;
    let instantiated = started.elapsed();
    let description = instance.describe(&mut store).map_err(|e| {
        if copied_too_much(&e) {
            RunFailure::BadDescription(format!("it is over {INSTALL_CALL_COPY_BYTES} bytes"))
        } else {
            classify("describe", &e, &store, limits)
        }
    })?;
    check_description(&description)?;
    Ok((description, instantiated))
}

/// Asks the adapter whether it accepts `config` (JSON).
pub fn validate_config(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    config: &str,
    limits: &Limits,
) -> Result<(), RunFailure> {
    let limits = &install_call_limits(limits);
    let mut store = install_call_store(engine, adapter, limits);
    let instance = adapter
        .pre
        .instantiate(&mut store)
        .map_err(|e| instantiate_failure(&e, &store))?;
    match instance.validate_config(&mut store, config) {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(RunFailure::InvalidConfig(bounded(reason))),
        Err(error) => Err(classify("validate-config", &error, &store, limits)),
    }
}

/// The limits of an install-time call: the installation's, with a deadline
/// of at most [`INSTALL_CALL_DEADLINE`].
fn install_call_limits(limits: &Limits) -> Limits {
    Limits {
        deadline: limits.deadline.min(INSTALL_CALL_DEADLINE),
        ..limits.clone()
    }
}

/// The store of an install-time call under `limits`: small copies, no grants.
fn install_call_store(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    limits: &Limits,
) -> Store<RunState> {
    let clock = RunClock {
        deadline: Instant::now() + limits.deadline,
        cancelled: None,
    };
    new_store(
        engine,
        adapter,
        limits,
        clock,
        INSTALL_CALL_COPY_BYTES,
        None,
        None,
    )
}

/// A fresh store for `adapter` under `limits` and its contract's caps,
/// stopping at `clock`, copying at most `copy_bytes` from the adapter per
/// call: memory limiter, deadline, nothing granted.
fn new_store(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    limits: &Limits,
    clock: RunClock,
    copy_bytes: usize,
    usage: Option<UsageAccess>,
    egress: Option<Egress>,
) -> Store<RunState> {
    let mut state = RunState::new(limits, clock, usage, egress);
    state.max_documents = adapter.pre.contract().max_documents;
    let mut store = Store::new(engine.engine(), state);
    store.limiter(|state| &mut state.limiter);
    // What wasmtime copies out of the adapter's memory for one call (strings
    // and lists it passes or returns): past it, the call traps.
    store.set_hostcall_fuel(copy_bytes);
    // Checked at every epoch tick: the wall-clock deadline (time in host
    // calls counts too, and long host calls check it themselves), and the
    // host's cancel switch.
    store.epoch_deadline_callback(|store| {
        Ok(if store.data().clock.expired() {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        })
    });
    store.set_epoch_deadline(1);
    store
}

/// Why an instance could not be made: over its memory cap (its initial
/// memories), or the host's trouble (a full pool: worth another try).
fn instantiate_failure(error: &wasmtime::Error, store: &Store<RunState>) -> RunFailure {
    match &store.data().limiter.refused {
        Some(refused) => RunFailure::OutOfMemory(refused.clone()),
        None => RunFailure::Instantiate(format!("{error:#}")),
    }
}

/// Whether a call failed because the adapter passed more than the store's
/// copy allowance (wasmtime's hostcall fuel).
fn copied_too_much(error: &wasmtime::Error) -> bool {
    format!("{error:#}").contains("too much data is being copied")
}

/// A reason the adapter gave, cut to what a failure reason may quote.
fn bounded(reason: String) -> String {
    if reason.len() <= MAX_QUOTED_REASON_BYTES {
        return reason;
    }
    truncate(&reason, MAX_QUOTED_REASON_BYTES).into_owned()
}

/// At most [`QUOTED_NAMES`] names, each cut short, and how many were left out.
fn quote_names<S: AsRef<str>>(names: &[S]) -> String {
    let quoted: Vec<String> = names
        .iter()
        .take(QUOTED_NAMES)
        .map(|name| format!("{:?}", truncate(name.as_ref(), MAX_DOCUMENT_NAME)))
        .collect();
    let more = names.len().saturating_sub(QUOTED_NAMES);
    if more == 0 {
        format!("[{}]", quoted.join(", "))
    } else {
        format!("[{}, … and {more} more]", quoted.join(", "))
    }
}

/// `describe()` within bounds: what is stored with the installation and
/// served in every listing.
fn check_description(description: &Description) -> Result<(), RunFailure> {
    let refuse = |reason: String| Err(RunFailure::BadDescription(reason));
    for (field, value) in [
        ("name", &description.name),
        ("version", &description.version),
    ] {
        if value.is_empty() || value.len() > MAX_DESCRIBED_NAME {
            return refuse(format!(
                "its {field} is {} bytes; 1 to {MAX_DESCRIBED_NAME} are allowed",
                value.len()
            ));
        }
    }
    if description.produces.len() > MAX_DESCRIBED_DOCUMENTS {
        return refuse(format!(
            "it produces {} documents; at most {MAX_DESCRIBED_DOCUMENTS}",
            description.produces.len()
        ));
    }
    if let Some(long) = description
        .produces
        .iter()
        .find(|name| name.len() > MAX_DOCUMENT_NAME)
    {
        return refuse(format!(
            "document name {:?} is over {MAX_DOCUMENT_NAME} bytes",
            truncate(long, MAX_DOCUMENT_NAME)
        ));
    }
    Ok(())
}

/// A summary must name exactly the documents written (in any order, a name
/// repeated or not; at most `max_documents`) and claim no more rows than the
/// host handed over (`rows_read`): anything else is a confused (or hostile)
/// adapter, and its documents are not published.
fn check_summary(
    summary: Summary,
    documents: &BTreeMap<String, Document>,
    rows_read: u64,
    max_documents: usize,
) -> Result<Summary, RunFailure> {
    if summary.documents.len() > max_documents {
        return Err(RunFailure::BadSummary(format!(
            "it names {} documents {}; a run writes at most {max_documents}",
            summary.documents.len(),
            quote_names(&summary.documents)
        )));
    }
    let written: Vec<&String> = documents.keys().collect();
    let mut named: Vec<&String> = summary.documents.iter().collect();
    named.sort();
    named.dedup();
    if named != written {
        return Err(RunFailure::BadSummary(format!(
            "it names the documents {} but wrote {}",
            quote_names(&named),
            quote_names(&written)
        )));
    }
    if summary.rows_read > rows_read {
        return Err(RunFailure::BadSummary(format!(
            "it claims {} rows read; the host handed it {rows_read}",
            summary.rows_read
        )));
    }
    Ok(summary)
}

/// Names the cause of a trap of `call` (the contract's name of the function).
fn classify(
    call: &str,
    error: &wasmtime::Error,
    store: &Store<RunState>,
    limits: &Limits,
) -> RunFailure {
    if let Some(reason) = store
        .data()
        .usage
        .as_ref()
        .and_then(|u| u.store_failure.clone())
    {
        return RunFailure::Transient(reason);
    }
    if let Some(refused) = &store.data().limiter.refused {
        return RunFailure::OutOfMemory(refused.clone());
    }
    let cancelled = store
        .data()
        .clock
        .cancelled
        .as_ref()
        .is_some_and(|c| c.load(Ordering::Relaxed));
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if cancelled => RunFailure::Cancelled,
        Some(Trap::Interrupt) => RunFailure::Timeout(limits.deadline),
        Some(Trap::StackOverflow) => RunFailure::Trap("stack overflow (recursion too deep)".into()),
        Some(trap) => {
            // A guest's panic message went to stderr just before the trap.
            let mut log = store.data().log.lock().expect("run log lock");
            log.finish_streams();
            let recent: Vec<&str> = log
                .lines
                .iter()
                .rev()
                .filter(|l| l.level == "stderr")
                .take(RECENT_STDERR)
                .map(|l| l.message.as_str())
                .collect::<Vec<_>>()
                .into_iter()
                .rev()
                .collect();
            if let Some(cause) = guest_errors::explain(call, &recent) {
                return RunFailure::Trap(bounded(cause));
            }
            let stderr: Vec<&str> = log
                .lines
                .iter()
                .rev()
                .filter(|l| l.level == "stderr" && !l.message.starts_with("note: run with"))
                .take(2)
                .map(|l| l.message.as_str())
                .collect();
            if stderr.is_empty() {
                RunFailure::Trap(trap.to_string())
            } else {
                let last: Vec<&str> = stderr.into_iter().rev().collect();
                RunFailure::Trap(format!("{trap}; stderr: {}", last.join(" ")))
            }
        }
        None => RunFailure::Trap(format!("{error:#}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::limits::MAX_REASON_BYTES;

    fn written(names: &[&str]) -> BTreeMap<String, Document> {
        let document = Document {
            content_type: "text/csv".into(),
            bytes: b"a\n".to_vec(),
            owner: None,
        };
        names
            .iter()
            .map(|name| (name.to_string(), document.clone()))
            .collect()
    }

    fn summary(rows_read: u64, documents: &[&str]) -> Summary {
        Summary {
            rows_read,
            rows_written: 1,
            documents: documents.iter().map(|d| d.to_string()).collect(),
        }
    }

    fn bad_summary(result: Result<Summary, RunFailure>) -> String {
        match result {
            Err(RunFailure::BadSummary(reason)) => reason,
            other => panic!("not a bad summary: {other:?}"),
        }
    }

    #[test]
    fn a_summary_names_exactly_the_documents_written_in_any_order() {
        let documents = written(&["a.csv", "b.csv"]);
        for names in [
            &["a.csv", "b.csv"][..],
            &["b.csv", "a.csv"],
            &["b.csv", "a.csv", "b.csv"],
        ] {
            check_summary(summary(7, names), &documents, 7, 100).unwrap();
        }
        check_summary(summary(0, &[]), &written(&[]), 0, 100).unwrap();

        let reason = bad_summary(check_summary(summary(7, &["a.csv"]), &documents, 7, 100));
        assert!(
            reason.contains(r#"["a.csv"] but wrote ["a.csv", "b.csv"]"#),
            "{reason}"
        );
        let named = ["a.csv", "b.csv", "c.csv"];
        let reason = bad_summary(check_summary(summary(7, &named), &documents, 7, 100));
        assert!(reason.contains("c.csv"), "{reason}");
    }

    #[test]
    fn a_summary_claims_no_more_rows_than_the_host_handed_over() {
        let documents = written(&["a.csv"]);
        check_summary(summary(6, &["a.csv"]), &documents, 7, 100).unwrap();
        let reason = bad_summary(check_summary(summary(8, &["a.csv"]), &documents, 7, 100));
        assert!(
            reason.contains("claims 8 rows read; the host handed it 7"),
            "{reason}"
        );
    }

    /// A hostile summary's names are not copied into the reason whole.
    #[test]
    fn a_summary_with_too_many_names_is_quoted_in_short() {
        let long = "n".repeat(1_000);
        let names: Vec<&str> = std::iter::repeat_n(long.as_str(), 1_000).collect();
        let reason = bad_summary(check_summary(summary(0, &names), &written(&[]), 0, 100));
        assert!(reason.contains("names 1000 documents"), "{reason:.200}");
        assert!(reason.contains("… and 990 more]"), "{reason:.200}");
        assert!(reason.len() < 4 << 10, "{} bytes", reason.len());
    }

    #[test]
    fn a_description_is_within_the_hosts_bounds() {
        let description =
            |name: &str, version: &str, produces: usize, longest: usize| Description {
                name: name.into(),
                version: version.into(),
                produces: (0..produces).map(|i| format!("{i:0>longest$}")).collect(),
            };
        let longest = "n".repeat(MAX_DESCRIBED_NAME);
        check_description(&description("chargeback", "0.1.0", 100, 128)).unwrap();
        check_description(&description(&longest, &longest, 0, 1)).unwrap();
        let refused = [
            (description("", "0.1.0", 1, 8), "its name is 0 bytes"),
            (
                description(&format!("{longest}n"), "0.1.0", 1, 8),
                "its name is 129 bytes",
            ),
            (
                description("chargeback", "", 1, 8),
                "its version is 0 bytes",
            ),
            (
                description("chargeback", "0.1.0", 101, 8),
                "produces 101 documents",
            ),
            (description("chargeback", "0.1.0", 1, 129), "over 128 bytes"),
        ];
        for (description, expected) in refused {
            match check_description(&description) {
                Err(RunFailure::BadDescription(reason)) => {
                    assert!(reason.contains(expected), "{expected:?} not in {reason:?}")
                }
                other => panic!("{expected}: {other:?}"),
            }
        }
    }

    /// An adapter's reason, with the host's words around it, fits the stored
    /// reason's bound; a short one is kept whole.
    #[test]
    fn an_adapters_reason_is_cut_to_fit_a_stored_reason() {
        assert_eq!(bounded("rate card missing".into()), "rate card missing");
        let exact = "é".repeat(MAX_QUOTED_REASON_BYTES / 2);
        assert_eq!(bounded(exact.clone()), exact);
        let cut = bounded("é".repeat(10_000));
        assert!(cut.starts_with("éé") && cut.ends_with("… [truncated: 20000 bytes]"));
        for failure in [
            RunFailure::InvalidConfig(cut.clone()),
            RunFailure::Transient(cut.clone()),
            RunFailure::Permanent(cut),
        ] {
            let reason = failure.to_string();
            assert!(reason.len() <= MAX_REASON_BYTES, "{} bytes", reason.len());
        }
    }

    /// Which failures the host retries: the adapter's transient ones and the
    /// host's own trouble, never a verdict on the adapter.
    #[test]
    fn only_transient_failures_are_retried() {
        let retried = [
            RunFailure::Transient("billing API down".into()),
            RunFailure::Instantiate("the pool is full".into()),
            RunFailure::Cancelled,
        ];
        assert!(retried.iter().all(RunFailure::is_transient));
        let final_ = [
            RunFailure::Timeout(Duration::from_secs(60)),
            RunFailure::OutOfMemory("growing a memory".into()),
            RunFailure::Trap("unreachable".into()),
            RunFailure::InvalidConfig("no currency".into()),
            RunFailure::Permanent("refused".into()),
            RunFailure::BadSummary("names".into()),
            RunFailure::BadDescription("name".into()),
            RunFailure::OutOfScope("statement-x.html for sub-z".into()),
        ];
        assert!(!final_.iter().any(RunFailure::is_transient));
    }

    #[test]
    fn install_time_calls_get_at_most_ten_seconds() {
        let long = Limits {
            deadline: Duration::from_secs(600),
            memory_bytes: 64 << 20,
            ..Limits::default()
        };
        let limits = install_call_limits(&long);
        assert_eq!(limits.deadline, INSTALL_CALL_DEADLINE);
        assert_eq!(limits.memory_bytes, 64 << 20);
        let short = Limits {
            deadline: Duration::from_secs(2),
            ..Limits::default()
        };
        assert_eq!(install_call_limits(&short).deadline, Duration::from_secs(2));
    }
}
