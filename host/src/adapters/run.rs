//! Running one export: a fresh store from the pre-instantiated component, the
//! call under the sandbox's limits, and a verdict on how it ended.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wasmtime::{Store, Trap, UpdateDeadline};

use super::contract::{Description, ExportError, ExportRequest, Summary};
use super::egress::{AllowedOrigin, Egress};
use super::engine::{AdapterEngine, LoadedAdapter};
use super::host_usage::UsageAccess;
use super::sandbox::{Document, Limits, LogLine, RunState};

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
}

/// Runs `export` on a fresh instance under `limits`, reading through `usage`
/// and sending only to the `allowed` origins.
///
/// Blocks: call it from a blocking thread (`tokio::task::spawn_blocking`),
/// never from an async task, since the imports wait on the store and the network.
pub fn run_export(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    request: &ExportRequest,
    config: &str,
    usage: UsageAccess,
    allowed: Vec<AllowedOrigin>,
    limits: &Limits,
) -> ExportOutcome {
    let started = Instant::now();
    let egress = Egress::new(
        request.run_id.clone(),
        allowed,
        usage.runtime.clone(),
        started + limits.deadline,
    );
    let mut store = new_store(engine, limits, Some(usage), Some(egress));
    let instance = adapter.pre.instantiate(&mut store);
    let instantiate = started.elapsed();

    let result = match instance {
        Err(error) => Err(RunFailure::Instantiate(error.to_string())),
        Ok(instance) => {
            let called = instance
                .tally_billing_adapter()
                .call_export(&mut store, request, config);
            match called {
                Ok(Ok(summary)) => check_summary(summary, store.data()),
                Ok(Err(ExportError::InvalidConfig(reason))) => {
                    Err(RunFailure::InvalidConfig(reason))
                }
                Ok(Err(ExportError::Transient(reason))) => Err(RunFailure::Transient(reason)),
                Ok(Err(ExportError::Permanent(reason))) => Err(RunFailure::Permanent(reason)),
                Err(error) => Err(classify(&error, &store, limits)),
            }
        }
    };
    // A trapped instance is dropped with its store; the next run starts fresh.
    let state = store.into_data();
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
    }
}

/// Calls `describe` on a fresh instance; also returns the time from a fresh
/// store to a ready instance.
pub fn describe(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    limits: &Limits,
) -> Result<(Description, Duration), RunFailure> {
    // Timed like a run's start: a fresh store, then the instance.
    let started = Instant::now();
    let mut store = new_store(engine, limits, None, None);
    let instance = adapter
        .pre
        .instantiate(&mut store)
        .map_err(|e| RunFailure::Instantiate(e.to_string()))?;
    let instantiated = started.elapsed();
    let description = instance
        .tally_billing_adapter()
        .call_describe(&mut store)
        .map_err(|e| classify(&e, &store, limits))?;
    Ok((description, instantiated))
}

/// Asks the adapter whether it accepts `config` (JSON).
pub fn validate_config(
    engine: &AdapterEngine,
    adapter: &LoadedAdapter,
    config: &str,
    limits: &Limits,
) -> Result<(), RunFailure> {
    let mut store = new_store(engine, limits, None, None);
    let instance = adapter
        .pre
        .instantiate(&mut store)
        .map_err(|e| RunFailure::Instantiate(e.to_string()))?;
    match instance
        .tally_billing_adapter()
        .call_validate_config(&mut store, config)
    {
        Ok(Ok(())) => Ok(()),
        Ok(Err(reason)) => Err(RunFailure::InvalidConfig(reason)),
        Err(error) => Err(classify(&error, &store, limits)),
    }
}

/// A fresh store under `limits`: memory limiter, deadline, nothing granted.
fn new_store(
    engine: &AdapterEngine,
    limits: &Limits,
    usage: Option<UsageAccess>,
    egress: Option<Egress>,
) -> Store<RunState> {
    let cancelled = usage.as_ref().map(|u| u.cancelled.clone());
    let mut store = Store::new(engine.engine(), RunState::new(limits, usage, egress));
    store.limiter(|state| &mut state.limiter);
    // Checked at every epoch tick: the wall-clock deadline (time in host
    // calls counts too), and the host's cancel switch.
    let deadline = Instant::now() + limits.deadline;
    store.epoch_deadline_callback(move |_| {
        let cancelled = cancelled
            .as_ref()
            .is_some_and(|c| c.load(Ordering::Relaxed));
        Ok(if Instant::now() >= deadline || cancelled {
            UpdateDeadline::Interrupt
        } else {
            UpdateDeadline::Continue(1)
        })
    });
    store.set_epoch_deadline(1);
    store
}

/// A summary must name exactly the documents written: anything else is a
/// confused (or hostile) adapter, and its documents are not published.
fn check_summary(summary: Summary, state: &RunState) -> Result<Summary, RunFailure> {
    let written: Vec<&String> = state.documents.keys().collect();
    let mut named: Vec<&String> = summary.documents.iter().collect();
    named.sort();
    named.dedup();
    if named != written {
        return Err(RunFailure::BadSummary(format!(
            "it names the documents {named:?} but wrote {written:?}"
        )));
    }
    let rows_read = state.usage.as_ref().map_or(0, |u| u.rows_read);
    if summary.rows_read > rows_read {
        return Err(RunFailure::BadSummary(format!(
            "it claims {} rows read; the host handed it {rows_read}",
            summary.rows_read
        )));
    }
    Ok(summary)
}

/// Names the cause of a trap.
fn classify(error: &wasmtime::Error, store: &Store<RunState>, limits: &Limits) -> RunFailure {
    if let Some(reason) = store
        .data()
        .usage
        .as_ref()
        .and_then(|u| u.store_failure.clone())
    {
        return RunFailure::Transient(reason);
    }
    if store.data().limiter.refused {
        return RunFailure::OutOfMemory(format!("limit {} MiB", limits.memory_bytes >> 20));
    }
    let cancelled = store
        .data()
        .usage
        .as_ref()
        .is_some_and(|u| u.cancelled.load(Ordering::Relaxed));
    match error.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) if cancelled => RunFailure::Cancelled,
        Some(Trap::Interrupt) => RunFailure::Timeout(limits.deadline),
        Some(Trap::StackOverflow) => RunFailure::Trap("stack overflow (recursion too deep)".into()),
        Some(trap) => {
            // A guest's panic message went to stderr just before the trap.
            let log = store.data().log.lock().expect("run log lock");
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
