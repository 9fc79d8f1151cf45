//! The sandbox of one run: its limits and its state.
//!
//! WASI is linked (toolchains import it even when unused) with nothing
//! granted: no preopened directories, no environment, no arguments, no
//! network; stdin is closed and stdout/stderr go into the run's log.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::ResourceTable;
use wasmtime::{ResourceLimiter, Trap};
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::contract::Contract;
use super::egress::{Egress, SENDING_ONLY_DURING_EXPORT};
use super::host_usage::UsageAccess;
use super::stdio::LogStream;

/// What one run may use. Hitting a limit fails the run with a reason naming
/// it; the host and other runs are unaffected.
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Wall-clock time of one call into the adapter (checked every epoch tick, 10 ms).
    pub deadline: Duration,
    /// Linear memory of the adapter, in bytes.
    pub memory_bytes: usize,
    /// Bytes of all documents of a run together.
    pub output_bytes: u64,
    /// Log lines kept per run (`log.write` and stdout/stderr); more are dropped and counted.
    pub log_lines: usize,
    /// Log bytes kept per run; more are dropped and counted.
    pub log_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            deadline: Duration::from_secs(60),
            memory_bytes: 256 << 20,
            output_bytes: 256 << 20,
            log_lines: 10_000,
            log_bytes: 1 << 20,
        }
    }
}

/// Which subscriptions an installation may read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SubscriptionGrant {
    /// Every subscription.
    All,
    /// Only these subscription ids.
    Only(Vec<String>),
}

impl SubscriptionGrant {
    /// Whether `subscription` is granted (ids compare ignoring case).
    pub fn allows(&self, subscription: &str) -> bool {
        match self {
            SubscriptionGrant::All => true,
            SubscriptionGrant::Only(ids) => {
                ids.iter().any(|id| id.eq_ignore_ascii_case(subscription))
            }
        }
    }
}

/// A document written by a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Document {
    /// Its content type, as given by the first append.
    pub content_type: String,
    /// Its bytes, every append concatenated.
    pub bytes: Vec<u8>,
    /// The subscription it belongs to (`append-for`), spelled as the store
    /// spells it in the rows the run read; `None` for a document of the
    /// operator's (`append`).
    pub owner: Option<String>,
}

/// One line of a run's log, as the store keeps it.
pub use crate::store::exports::LogLine;

/// What a kept log line costs beyond its text: the host's record of it.
pub const LOG_LINE_OVERHEAD: usize = std::mem::size_of::<LogLine>();

/// A run's log, capped. What it keeps is charged to the run's memory cap
/// too ([`MemoryLimiter`] counts what it holds).
#[derive(Debug, Default)]
pub struct RunLog {
    /// The lines kept, in order.
    pub lines: Vec<LogLine>,
    /// Bytes the kept lines cost (text and [`LOG_LINE_OVERHEAD`] each).
    pub bytes: usize,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    max_lines: usize,
    max_bytes: usize,
    /// [`Self::bytes`], shared with the run's memory limiter (the log is
    /// written by WASI streams too, which cannot reach the limiter).
    charged: Arc<AtomicUsize>,
    /// What stdout and stderr wrote that is not a line yet.
    pub(super) streams: super::stdio::StreamLines,
}

impl RunLog {
    /// An empty log with the caps of `limits`.
    pub fn new(limits: &Limits) -> Self {
        RunLog {
            max_lines: limits.log_lines,
            max_bytes: limits.log_bytes,
            ..RunLog::default()
        }
    }

    /// Keeps the line if the caps allow, else counts it as dropped. A line
    /// costs its bytes plus [`LOG_LINE_OVERHEAD`] against the byte cap, so
    /// that empty lines are not free.
    pub fn push(&mut self, level: &'static str, message: String) {
        let cost = message.len() + LOG_LINE_OVERHEAD;
        if self.lines.len() < self.max_lines && self.bytes + cost <= self.max_bytes {
            self.bytes += cost;
            self.charged.fetch_add(cost, Ordering::Relaxed);
            self.lines.push(LogLine { level, message });
        } else {
            self.dropped += 1;
        }
    }
}

/// Most linear memories one instance may have (all its core instances together).
pub const MAX_MEMORIES: usize = 2;
/// Most tables one instance may have.
pub const MAX_TABLES: usize = 16;
/// Most core instances one component may create.
pub const MAX_CORE_INSTANCES: usize = 32;
/// Most elements one table may hold.
pub const MAX_TABLE_ELEMENTS: usize = 100_000;
/// Host bytes charged per table element (a pointer).
const TABLE_ELEMENT_BYTES: usize = std::mem::size_of::<usize>();

/// What one instance holds, counted against its memory cap: all its linear
/// memories and tables together, and what the host keeps on its behalf
/// (document names and content types, open cursors and the subscription lists
/// they hold, the run's log). Refuses growth beyond the cap (which traps the
/// adapter) and remembers the peak. A log line is kept under the log's own
/// caps; what it costs then counts against the next growth or charge.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    linear: usize,
    tables: usize,
    host: usize,
    /// Bytes the run's log keeps ([`RunLog::bytes`]).
    log: Arc<AtomicUsize>,
    /// Highest total charged so far (memories, tables and host-kept state).
    pub peak: usize,
    /// What was refused, when something was: the run fails as out of memory.
    pub refused: Option<String>,
}

impl MemoryLimiter {
    /// A limiter with nothing charged.
    pub fn new(cap: usize) -> Self {
        MemoryLimiter {
            cap,
            linear: 0,
            tables: 0,
            host: 0,
            log: Arc::default(),
            peak: 0,
            refused: None,
        }
    }

    /// Counts what `log` keeps against this cap from now on.
    pub fn charge_log(&mut self, log: &RunLog) {
        self.log = log.charged.clone();
    }

    fn total(&self) -> usize {
        self.linear + self.tables + self.host + self.log.load(Ordering::Relaxed)
    }

    /// Whether `more` bytes fit under the cap; if not, remembers the refusal.
    fn fits(&mut self, more: usize, what: &str) -> bool {
        let total = self.total().saturating_add(more);
        if total > self.cap {
            self.refused = Some(format!(
                "{what} would bring the adapter to {total} bytes (memories, tables and what the host keeps for it); the limit is {} MiB",
                self.cap >> 20
            ));
            return false;
        }
        true
    }

    fn note_peak(&mut self) {
        self.peak = self.peak.max(self.total());
    }

    /// Charges `bytes` the host keeps for the adapter; an error (which traps
    /// the adapter) when they would not fit under the cap.
    pub fn charge_host(&mut self, bytes: usize, what: &str) -> wasmtime::Result<()> {
        if !self.fits(bytes, what) {
            let reason = self.refused.clone().unwrap_or_default();
            return Err(wasmtime::format_err!(reason));
        }
        self.host += bytes;
        self.note_peak();
        Ok(())
    }

    /// Bytes the run may still be charged before its cap.
    pub fn room(&self) -> usize {
        self.cap.saturating_sub(self.total())
    }

    /// Gives back host bytes charged before (a cursor dropped).
    pub fn release_host(&mut self, bytes: usize) {
        self.host = self.host.saturating_sub(bytes);
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = desired.saturating_sub(current);
        if !self.fits(growth, &format!("growing a memory to {desired} bytes")) {
            let reason = self.refused.clone().unwrap_or_default();
            return Err(wasmtime::format_err!(reason));
        }
        self.linear += growth;
        self.note_peak();
        Ok(true)
    }

    fn table_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MAX_TABLE_ELEMENTS {
            return Ok(false);
        }
        let growth = desired.saturating_sub(current) * TABLE_ELEMENT_BYTES;
        if !self.fits(growth, &format!("growing a table to {desired} elements")) {
            return Ok(false);
        }
        self.tables += growth;
        self.note_peak();
        Ok(true)
    }

    fn instances(&self) -> usize {
        MAX_CORE_INSTANCES
    }

    fn memories(&self) -> usize {
        MAX_MEMORIES
    }

    fn tables(&self) -> usize {
        MAX_TABLES
    }
}

/// When a run must stop: its deadline, or the host's cancel switch (its lease
/// was lost). Checked at every epoch tick while wasm runs, and by host calls
/// that may take long, so that neither can outlast it.
#[derive(Debug, Clone)]
pub struct RunClock {
    /// The wall-clock deadline of the call.
    pub deadline: Instant,
    /// Set by the host to stop the run; `None` outside `export`.
    pub cancelled: Option<Arc<AtomicBool>>,
}

impl RunClock {
    /// Whether the run must stop now.
    pub fn expired(&self) -> bool {
        Instant::now() >= self.deadline
            || self
                .cancelled
                .as_ref()
                .is_some_and(|c| c.load(Ordering::Relaxed))
    }

    /// Why the run must stop, in words for its log.
    pub fn why_stopped(&self) -> &'static str {
        if Instant::now() >= self.deadline {
            "the run's deadline passed"
        } else {
            "the host stopped the run"
        }
    }

    /// In a host call: an interrupt trap (as the epoch check raises) when
    /// the run must stop, so the call returns at once.
    pub fn check(&self) -> wasmtime::Result<()> {
        if self.expired() {
            return Err(Trap::Interrupt.into());
        }
        Ok(())
    }

    /// Runs `future` on `runtime` from a host call, giving up with an
    /// interrupt trap as soon as the run must stop (checked every tick).
    pub fn block_on<F: Future>(
        &self,
        runtime: &tokio::runtime::Handle,
        future: F,
    ) -> wasmtime::Result<F::Output> {
        runtime.block_on(async {
            tokio::pin!(future);
            loop {
                tokio::select! {
                    output = &mut future => return Ok(output),
                    () = tokio::time::sleep(CLOCK_TICK) => self.check()?,
                }
            }
        })
    }
}

/// How often a host call that waits checks whether its run must stop.
const CLOCK_TICK: Duration = Duration::from_millis(10);

/// Longest failure reason kept with a run, as the store keeps it.
pub use crate::store::exports::MAX_REASON_BYTES;
/// Longest text of the adapter's (an error it returned) that a failure
/// reason quotes: with the host's words around it, it stays under
/// [`MAX_REASON_BYTES`].
pub const MAX_QUOTED_REASON_BYTES: usize = 3 << 10;

/// The state of one run's store (or of an install-time call's).
pub struct RunState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    /// What the run holds, against its memory cap.
    pub limiter: MemoryLimiter,
    /// When the call must stop (deadline, cancel switch).
    pub clock: RunClock,
    /// What the run may read; `None` outside `export` (describe, validate-config).
    pub usage: Option<UsageAccess>,
    /// Where the run may send requests; `None` outside `export`.
    pub egress: Option<Egress>,
    /// Documents written so far, by name.
    pub documents: BTreeMap<String, Document>,
    /// Bytes of all documents so far.
    pub output_bytes: u64,
    /// Most bytes of all documents together ([`Limits::output_bytes`]).
    pub output_cap: u64,
    /// The run's log, shared with the WASI stdout/stderr streams.
    pub log: Arc<Mutex<RunLog>>,
    /// Usage cursors the adapter has open (at most [`MAX_OPEN_CURSORS`]).
    pub open_cursors: usize,
    /// Most documents the run may write (its contract version's cap).
    pub max_documents: usize,
    /// The first `out-of-scope` refusal of a write: the run fails with it,
    /// whatever the adapter returns.
    pub out_of_scope: Option<String>,
    /// Why `send` is refused when the run has no [`Egress`].
    pub no_egress: &'static str,
}

/// Most usage cursors a run may have open at once.
pub const MAX_OPEN_CURSORS: usize = 16;

impl RunState {
    /// The state of a fresh call that must stop at `clock`: nothing written,
    /// nothing granted.
    pub fn new(
        limits: &Limits,
        clock: RunClock,
        usage: Option<UsageAccess>,
        egress: Option<Egress>,
    ) -> Self {
        let log = RunLog::new(limits);
        let mut limiter = MemoryLimiter::new(limits.memory_bytes);
        limiter.charge_log(&log);
        let log = Arc::new(Mutex::new(log));
        // Nothing granted: the builder's defaults deny files, env, args and sockets.
        let wasi = WasiCtx::builder()
            .stdout(LogStream::new(log.clone(), "stdout"))
            .stderr(LogStream::new(log.clone(), "stderr"))
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter,
            clock,
            usage,
            egress,
            documents: BTreeMap::new(),
            output_bytes: 0,
            output_cap: limits.output_bytes,
            log,
            open_cursors: 0,
            max_documents: Contract::current().max_documents,
            out_of_scope: None,
            no_egress: SENDING_ONLY_DURING_EXPORT,
        }
    }

    /// The run's resources (cursors).
    pub fn table(&mut self) -> &mut ResourceTable {
        &mut self.table
    }
}

impl WasiView for RunState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_covers_memories_tables_and_host_state_together() {
        let mut limiter = MemoryLimiter::new(10 << 20);
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        assert!(limiter.memory_growing(0, 4 << 20, None).unwrap());
        limiter.charge_host(1 << 20, "a cursor").unwrap();
        assert_eq!(limiter.room(), 1 << 20);
        // 9 MiB charged: a third memory of 2 MiB is over the 10 MiB cap.
        assert!(limiter.memory_growing(0, 2 << 20, None).is_err());
        assert!(
            limiter
                .refused
                .as_deref()
                .unwrap()
                .contains("limit is 10 MiB")
        );
        limiter.release_host(1 << 20);
        assert!(limiter.memory_growing(0, 1 << 20, None).unwrap());
        assert_eq!(limiter.peak, 9 << 20);
    }

    /// What the run's log keeps counts against the cap like the rest.
    #[test]
    fn the_cap_covers_the_run_log() {
        let limits = Limits {
            memory_bytes: 4 << 20,
            log_bytes: 2 << 20,
            ..Limits::default()
        };
        let mut log = RunLog::new(&limits);
        let mut limiter = MemoryLimiter::new(limits.memory_bytes);
        limiter.charge_log(&log);
        assert!(limiter.memory_growing(0, 2 << 20, None).unwrap());
        for _ in 0..1_000 {
            log.push("info", "x".repeat(1_000));
        }
        assert_eq!(log.dropped, 0);
        // ≈ 1 MiB of log and 2 MiB of memory: 2 MiB more is over the 4 MiB cap.
        assert!(limiter.memory_growing(2 << 20, 4 << 20, None).is_err());
        assert!(
            limiter
                .memory_growing(2 << 20, (2 << 20) + (1 << 19), None)
                .unwrap()
        );
    }

    fn log_capped(lines: usize, bytes: usize) -> RunLog {
        RunLog::new(&Limits {
            log_lines: lines,
            log_bytes: bytes,
            ..Limits::default()
        })
    }

    #[test]
    fn the_log_keeps_its_first_lines_and_counts_the_rest() {
        let mut log = log_capped(3, 1 << 20);
        for i in 0..5 {
            log.push("info", format!("line {i}"));
        }
        let kept: Vec<&str> = log.lines.iter().map(|l| l.message.as_str()).collect();
        assert_eq!(kept, ["line 0", "line 1", "line 2"]);
        assert_eq!(log.dropped, 2);
    }

    /// Empty lines are not free, and a line too long for the room left is
    /// dropped without silencing the shorter lines after it.
    #[test]
    fn the_log_byte_cap_counts_each_lines_record() {
        let mut log = log_capped(1_000, 5 * LOG_LINE_OVERHEAD + 10);
        for _ in 0..4 {
            log.push("debug", String::new());
        }
        log.push("info", "x".repeat(11));
        log.push("info", "x".repeat(10));
        log.push("info", String::new());
        assert_eq!(log.lines.len(), 5);
        assert_eq!(log.lines[4].message.len(), 10);
        assert_eq!(log.dropped, 2);
        assert_eq!(log.bytes, 5 * LOG_LINE_OVERHEAD + 10);
    }

    #[test]
    fn a_subscription_grant_compares_ids_ignoring_case() {
        let grant = SubscriptionGrant::Only(vec!["Sub-A".into()]);
        assert!(grant.allows("sub-a") && grant.allows("SUB-A"));
        assert!(!grant.allows("sub-b") && !grant.allows("sub-a "));
        assert!(SubscriptionGrant::All.allows("anything"));
    }
}
