//! Exports: installing billing adapters and running them over closed
//! reported-time windows, each window once.
//!
//! - [`manifest`]: the installation manifest (TOML) and its checks.
//! - [`installs`]: install, upgrade: the component pinned, checked against
//!   the world and compiled, the config validated by the adapter.
//! - [`installed`]: the installations with their manifests (parsed once per
//!   version) and health; enable, disable, remove.
//! - [`runs`]: run requests (the closed-window rule) and the listings of
//!   runs and their documents.
//! - [`scheduler`]: queues each closed window once its lag has passed and
//!   runs queued windows, with retries and backoff.
//! - [`runner`]: one attempt of one run, recorded with its documents,
//!   figures and log.
//! - [`windows`]: which windows a range covers, and when one is closed.
//! - [`verify`]: documents of exported windows re-derived and compared.
//! - [`documents`]: a document concatenated over the succeeded runs of a
//!   date range (one CSV header), for BI tools to refresh from.
//! - [`tenants`]: the documents runs wrote for a subscription, as its
//!   tenants read them.
//!
//! [`Exports`] is the one door to all of it: the API reaches installations,
//! runs and documents through it, never through the store.

pub mod documents;
mod error;
pub mod installed;
pub mod installs;
pub mod manifest;
pub mod runner;
pub mod runs;
pub mod scheduler;
pub mod tenants;
pub mod verify;
pub mod windows;

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::Deserialize;
use tokio::sync::{Notify, Semaphore, watch};

use crate::metrics::Metrics;
use crate::sandbox::{AdapterEngine, LoadedAdapter};
use crate::store::{Store, StoreError};

pub use error::ExportsError;
pub use installed::{InstallationStatus, LoadedInstallation};
pub use installs::InstallError;
pub use manifest::Manifest;

/// How the scheduler paces runs. `tally.toml`'s `[exports]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ExportSettings {
    /// How often the scheduler looks for closed windows.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Runs at once, over all installations (each installation runs its
    /// windows one at a time). At most [`MAX_CONCURRENT_RUNS`].
    pub concurrency: usize,
    /// Wait before the first retry of a transient failure; doubles each time.
    #[serde(with = "humantime_serde")]
    pub retry_base: Duration,
    /// Longest wait between retries.
    #[serde(with = "humantime_serde")]
    pub retry_max: Duration,
    /// Attempts before a transient failure counts as a failure.
    pub max_attempts: u32,
    /// How long a claimed run stays this host's without news from it; renewed
    /// every third of it while the run goes on. When a host dies, another
    /// replica takes its runs over once their leases end.
    #[serde(with = "humantime_serde")]
    pub lease: Duration,
    /// Install-time calls (`describe`, `validate-config`) at once, over all
    /// installs. At most [`MAX_INSTALL_CALLS`].
    pub install_calls: usize,
    /// How long an install waits for its turn (an install-time call, or a
    /// compile) before it is refused (503); a run's load waits as long.
    #[serde(with = "humantime_serde")]
    pub install_wait: Duration,
}

/// Most runs at once. With [`MAX_INSTALL_CALLS`], within the engine's
/// instance pool ([`crate::sandbox::engine::POOL_SLOTS`]), so that a run
/// always finds a slot.
pub const MAX_CONCURRENT_RUNS: usize = 24;
/// Most install-time calls at once.
pub const MAX_INSTALL_CALLS: usize = 8;

// Every run and install-time call at once finds an instance slot, with room to spare.
const _: () = assert!(
    MAX_CONCURRENT_RUNS + MAX_INSTALL_CALLS + crate::sandbox::engine::POOL_HEADROOM as usize
        <= crate::sandbox::engine::POOL_SLOTS as usize
);

impl ExportSettings {
    /// Install-time calls at once, within bounds.
    pub fn install_calls(&self) -> usize {
        self.install_calls.clamp(1, MAX_INSTALL_CALLS)
    }

    /// Runs at once, within bounds.
    pub fn run_concurrency(&self) -> usize {
        self.concurrency.clamp(1, MAX_CONCURRENT_RUNS)
    }
}

impl Default for ExportSettings {
    fn default() -> Self {
        ExportSettings {
            tick: Duration::from_secs(10),
            concurrency: 4,
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(3_600),
            max_attempts: 8,
            lease: Duration::from_secs(30),
            install_calls: 4,
            install_wait: Duration::from_secs(30),
        }
    }
}

/// The adapters side of the host: the store, the engine, the components
/// loaded so far, and a bell that wakes the scheduler.
pub struct Exports {
    pub(crate) store: Arc<dyn Store>,
    pub(crate) engine: Arc<AdapterEngine>,
    pub settings: ExportSettings,
    /// Where runs are counted (shared with the API's `/metrics`).
    pub metrics: Arc<Metrics>,
    /// Components compiled for the engine, by sha256: those installations
    /// use, and those installs in progress are checking.
    loaded: Mutex<HashMap<String, LoadedAdapter>>,
    /// Manifests parsed so far, by installation id, with the text each was
    /// parsed from (an upgrade stores another text).
    manifests: Mutex<HashMap<i64, (String, Arc<Manifest>)>>,
    /// Installs and loads begun and still running: eviction waits for a quiet moment.
    installs: Arc<Mutex<InstallActivity>>,
    /// Turns of install-time calls ([`ExportSettings::install_calls`]).
    install_calls: Arc<Semaphore>,
    /// Turns of runs ([`ExportSettings::concurrency`]): the scheduler's runs
    /// and verifications' re-runs take them.
    run_slots: Arc<Semaphore>,
    wake: Notify,
    /// This host, as the holder of the runs it claims (`hostname:pid`).
    holder: String,
    /// Why the host is stopping (`SIGTERM`…), once it is: the scheduler
    /// claims nothing more, and the runs in progress are stopped and queued
    /// again at once.
    stopping: watch::Sender<Option<String>>,
}

impl Exports {
    /// The exports of `store`, running components on `engine`.
    pub fn new(
        store: Arc<dyn Store>,
        engine: Arc<AdapterEngine>,
        settings: ExportSettings,
    ) -> Self {
        Exports {
            store,
            engine,
            install_calls: Arc::new(Semaphore::new(settings.install_calls())),
            run_slots: Arc::new(Semaphore::new(settings.run_concurrency())),
            settings,
            metrics: Arc::default(),
            loaded: Mutex::default(),
            manifests: Mutex::default(),
            installs: Arc::default(),
            wake: Notify::new(),
            holder: holder_name(),
            stopping: watch::Sender::new(None),
        }
    }

    /// Stops the exports of a host that stops because of `cause` (a signal's
    /// name): the scheduler claims no more runs, and each run in progress is
    /// stopped through its cancel switch and recorded as retrying at once,
    /// for another replica or the next start to take over without waiting
    /// for its lease. [`Self::run_scheduler`] returns once they are recorded.
    pub fn stop(&self, cause: &str) {
        self.stopping.send_replace(Some(cause.to_owned()));
        self.wake();
    }

    /// Why the host is stopping, once it is.
    fn stopping(&self) -> Option<String> {
        self.stopping.borrow().clone()
    }

    /// Waits until the host stops; returns why.
    async fn stopped(&self) -> String {
        let mut stopping = self.stopping.subscribe();
        let cause = stopping
            .wait_for(Option::is_some)
            .await
            .expect("the sender lives as long as self");
        cause.clone().unwrap_or_default()
    }

    /// The engine components are compiled for and run on.
    pub fn engine(&self) -> &AdapterEngine {
        &self.engine
    }

    /// Wakes the scheduler now (a run was requested or finished).
    pub fn wake(&self) {
        self.wake.notify_one();
    }

    /// The component with this sha256, compiled for the engine: from memory,
    /// else from the store (mapping the cached artifact, compiling only if
    /// the cache lost it).
    pub(crate) async fn loaded(&self, sha256: &str) -> anyhow::Result<LoadedAdapter> {
        if let Some(adapter) = self.in_memory(sha256) {
            return Ok(adapter);
        }
        // Counted as an install: eviction must not delete what this maps.
        let _running = self.install_running();
        let wasm = self
            .store
            .component(sha256)
            .await?
            .ok_or_else(|| anyhow::anyhow!("component {sha256} is not in the store"))?;
        let (adapter, _) = self
            .engine
            .load_async(sha256, wasm, self.settings.install_wait)
            .await?;
        self.remember(adapter.clone());
        Ok(adapter)
    }

    fn in_memory(&self, sha256: &str) -> Option<LoadedAdapter> {
        self.loaded
            .lock()
            .expect("loaded lock")
            .get(sha256)
            .cloned()
    }

    fn remember(&self, adapter: LoadedAdapter) {
        self.loaded
            .lock()
            .expect("loaded lock")
            .insert(adapter.sha256.clone(), adapter);
    }

    /// The sha256 of every component held loaded, sorted.
    pub fn loaded_components(&self) -> Vec<String> {
        let mut loaded: Vec<String> = self
            .loaded
            .lock()
            .expect("loaded lock")
            .keys()
            .cloned()
            .collect();
        loaded.sort();
        loaded
    }

    /// Drops the loaded components and deletes the compiled artifacts that
    /// no installation uses (after a remove or an upgrade, here or through
    /// another replica). Skipped while an install runs, since what it loaded
    /// is not installed yet; the scheduler's next tick tries again. Returns
    /// how many components were dropped or deleted.
    pub async fn evict_unused(&self) -> anyhow::Result<usize> {
        let before = *self.installs.lock().expect("installs lock");
        if before.running > 0 {
            return Ok(0);
        }
        let installed: HashSet<String> = self
            .store
            .installations()
            .await?
            .into_iter()
            .map(|installation| installation.component_sha256)
            .collect();
        let dropped = {
            let mut loaded = self.loaded.lock().expect("loaded lock");
            // An install that began meanwhile may have loaded what the list misses.
            if *self.installs.lock().expect("installs lock") != before {
                return Ok(0);
            }
            let count = loaded.len();
            loaded.retain(|sha256, _| installed.contains(sha256));
            count - loaded.len()
        };
        let (engine, installs) = (self.engine.clone(), self.installs.clone());
        let deleted = tokio::task::spawn_blocking(move || {
            // An install that begins meanwhile keeps every artifact from then on.
            engine.remove_artifacts(|sha256| {
                installed.contains(sha256) || *installs.lock().expect("installs lock") != before
            })
        })
        .await??;
        if dropped + deleted > 0 {
            tracing::info!(dropped, deleted, "evicted components no installation uses");
        }
        Ok(dropped + deleted)
    }

    /// [`Self::evict_unused`], its failure logged: eviction only frees memory and disk.
    pub(crate) async fn evict_unused_logged(&self) {
        if let Err(error) = self.evict_unused().await {
            tracing::warn!(
                error = format!("{error:#}"),
                "cannot evict unused components"
            );
        }
    }

    /// Marks an install (or a load) as running until the guard drops.
    fn install_running(&self) -> InstallRunning<'_> {
        let mut installs = self.installs.lock().expect("installs lock");
        installs.begun += 1;
        installs.running += 1;
        InstallRunning(self)
    }

    /// Loads every installed component, so that no run waits for a compile.
    /// The host serves requests meanwhile; the line logged at the end says
    /// when every adapter is ready (from the compiled cache, or compiled).
    pub async fn preload(&self) -> Result<(), StoreError> {
        let started = std::time::Instant::now();
        let (mut loaded, mut failed) = (0, 0);
        for installation in self.store.installations().await? {
            match self.loaded(&installation.component_sha256).await {
                Ok(_) => loaded += 1,
                Err(error) => {
                    failed += 1;
                    tracing::error!(adapter = %installation.name, error = format!("{error:#}"), "cannot load the component");
                }
            }
        }
        tracing::info!(
            loaded,
            failed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "installed adapters loaded"
        );
        Ok(())
    }
}

/// Installs, upgrades and loads of components begun, and those still running.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
struct InstallActivity {
    begun: u64,
    running: usize,
}

/// An install, upgrade or load in progress (see [`Exports::evict_unused`]).
struct InstallRunning<'a>(&'a Exports);

impl Drop for InstallRunning<'_> {
    fn drop(&mut self) {
        self.0.installs.lock().expect("installs lock").running -= 1;
    }
}

/// `hostname:pid`, naming this host in the runs it holds.
fn holder_name() -> String {
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "localhost".into());
    format!("{hostname}:{}", std::process::id())
}
