//! The sandbox of one run: its limits and its state.
//!
//! WASI is linked (toolchains import it even when unused) with nothing
//! granted: no preopened directories, no environment, no arguments, no
//! network; stdin is closed and stdout/stderr go into the run's log.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::egress::Egress;
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
    All,
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
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct LogLine {
    /// `debug`, `info`, `warn`, `error`, or `stdout`/`stderr` for WASI output.
    pub level: &'static str,
    pub message: String,
}

impl LogLine {
    /// The levels a line may have.
    pub const LEVELS: [&'static str; 6] = ["debug", "info", "warn", "error", "stdout", "stderr"];

    /// The level spelled `name` (a stored log read back); unknown names read as `info`.
    pub fn level_named(name: &str) -> &'static str {
        Self::LEVELS
            .into_iter()
            .find(|level| *level == name)
            .unwrap_or("info")
    }
}

/// A run's log, capped.
#[derive(Debug, Default)]
pub struct RunLog {
    pub lines: Vec<LogLine>,
    pub bytes: usize,
    /// Lines dropped because a cap was reached.
    pub dropped: u64,
    max_lines: usize,
    max_bytes: usize,
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

    /// Keeps the line if the caps allow, else counts it as dropped.
    pub fn push(&mut self, level: &'static str, message: String) {
        if self.lines.len() < self.max_lines && self.bytes + message.len() <= self.max_bytes {
            self.bytes += message.len();
            self.lines.push(LogLine { level, message });
        } else {
            self.dropped += 1;
        }
    }
}

/// Memory accounting: refuses growth beyond the cap (which traps the adapter)
/// and remembers the peak.
#[derive(Debug)]
pub struct MemoryLimiter {
    cap: usize,
    pub peak: usize,
    pub refused: bool,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.cap {
            self.refused = true;
            return Err(wasmtime::format_err!(
                "the adapter asked for {desired} bytes of memory; the limit is {}",
                self.cap
            ));
        }
        self.peak = self.peak.max(desired);
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 100_000)
    }
}

/// The state of one run's store.
pub struct RunState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    pub limiter: MemoryLimiter,
    /// What the run may read; `None` outside `export` (describe, validate-config).
    pub usage: Option<UsageAccess>,
    /// Where the run may send requests; `None` outside `export`.
    pub egress: Option<Egress>,
    pub documents: BTreeMap<String, Document>,
    pub output_bytes: u64,
    pub output_cap: u64,
    pub log: Arc<Mutex<RunLog>>,
}

impl RunState {
    /// The state of a fresh run: nothing written, nothing granted.
    pub fn new(limits: &Limits, usage: Option<UsageAccess>, egress: Option<Egress>) -> Self {
        let log = Arc::new(Mutex::new(RunLog::new(limits)));
        // Nothing granted: the builder's defaults deny files, env, args and sockets.
        let wasi = WasiCtx::builder()
            .stdout(LogStream::new(log.clone(), "stdout"))
            .stderr(LogStream::new(log.clone(), "stderr"))
            .build();
        RunState {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter {
                cap: limits.memory_bytes,
                peak: 0,
                refused: false,
            },
            usage,
            egress,
            documents: BTreeMap::new(),
            output_bytes: 0,
            output_cap: limits.output_bytes,
            log,
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
