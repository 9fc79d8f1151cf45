//! The scheduler: queues every closed window of every enabled installation
//! once its lag has passed, and runs queued windows, a few at a time.
//!
//! Exactly once rests on the store: a window's first export is one row that
//! cannot be inserted twice, a claim marks it running in one transaction, and
//! its documents are published in the transaction that marks it succeeded. A
//! claim is a lease the running host renews: when the host dies the lease
//! ends and a host (another replica, or this one restarted) runs the window
//! again under the same run id; the dead attempt had published nothing, and
//! could not publish late, since finishing is fenced by the attempt number.
//!
//! A host that stops cleanly (SIGTERM, Ctrl-C: [`Exports::stop`]) claims no
//! more runs and stops the ones in progress through their cancel switch,
//! recording each as retrying now: another replica, or this host restarted,
//! takes it over at once instead of after its lease.

use std::sync::Arc;

use chrono::{DateTime, Utc};
use tokio::sync::Semaphore;

use super::windows::{SETTLE, windows_between};
use super::{Exports, LoadedInstallation};
use crate::store::StoreError;
use crate::store::exports::Interrupted;

/// Shortest tick: a zero in the config must not make the scheduler spin.
const MIN_TICK: std::time::Duration = std::time::Duration::from_millis(50);
/// Most windows queued for one installation per tick (a long backfill is
/// queued over several ticks, as the watermark moves).
const MAX_WINDOWS_PER_TICK: usize = 1_000;

impl Exports {
    /// Runs the scheduler until the host stops ([`Exports::stop`]), then
    /// waits for the runs in progress to be stopped and recorded.
    pub async fn run_scheduler(self: Arc<Self>) {
        let concurrency = self.settings.run_concurrency();
        let slots = self.run_slots.clone();
        self.schedule(&slots).await;
        let in_progress = concurrency - slots.available_permits();
        if in_progress > 0 {
            tracing::info!(
                runs = in_progress,
                "stopping the runs in progress; each is queued again at once"
            );
        }
        // Every run holds a slot until its outcome is recorded.
        let _all = slots.acquire_many(concurrency as u32).await;
        tracing::info!("scheduler stopped");
    }

    /// Queues closed windows and starts claimed runs, tick after tick, until
    /// the host stops. Stopping is checked between steps, never inside one,
    /// so that no claim is cut short (a claimed run is always executed).
    async fn schedule(self: &Arc<Self>, slots: &Arc<Semaphore>) {
        // Alone on its store, a starting host knows every running run is a
        // leftover of its own; replicas wait for the leases to end.
        if !self.store.is_shared() {
            self.requeue_interrupted(Interrupted::AllRunning).await;
        }
        tokio::select! {
            preloaded = self.preload() => if let Err(error) = preloaded {
                tracing::error!(%error, "cannot preload the installed components");
            },
            // Compiles may take long: a stopping host does not wait for them.
            _ = self.stopped() => return,
        }
        while self.stopping().is_none() {
            // Alone on its store, a host is running every run it leased.
            if self.store.is_shared() {
                self.requeue_interrupted(Interrupted::LeaseEnded).await;
            }
            // One reading of the store's clock per tick: replicas agree on it.
            match self.store.clock().await {
                Ok(now) => {
                    if let Err(error) = self.queue_closed_windows(now).await {
                        tracing::error!(%error, "cannot queue closed windows");
                    }
                    self.start_claimed_runs(slots, now).await;
                }
                Err(error) => tracing::error!(%error, "cannot read the store's clock"),
            }
            // What another replica removed or upgraded away is dropped here too.
            self.evict_unused_logged().await;
            // Wake on the tick, or early when a run finished or was requested
            // (or the host stops).
            let tick = self.settings.tick.max(MIN_TICK);
            let _ = tokio::time::timeout(tick, self.wake.notified()).await;
        }
    }

    /// Queues the first export of each window that closed (lag included)
    /// after each enabled installation's watermark.
    pub async fn queue_closed_windows(&self, now: DateTime<Utc>) -> Result<usize, StoreError> {
        let mut queued = 0;
        let installations = self.store.installations().await?;
        self.forget_manifests_except(&installations);
        for installation in installations {
            if !installation.enabled {
                continue;
            }
            let name = installation.name.clone();
            let LoadedInstallation {
                installation,
                manifest,
            } = match self.load(installation) {
                Ok(loaded) => loaded,
                Err(error) => {
                    tracing::error!(adapter = %name, %error, "stored manifest unreadable");
                    continue;
                }
            };
            let Ok(wait) = chrono::Duration::from_std(manifest.lag + SETTLE) else {
                continue;
            };
            let window = manifest.window;
            let last_closed = window.start_of(window.bucket_of(now - wait));
            let windows = windows_between(
                window,
                installation.watermark,
                last_closed,
                MAX_WINDOWS_PER_TICK,
            );
            if windows.is_empty() {
                continue;
            }
            // One installation's trouble (removed mid-tick…) does not hold the others.
            match self.store.schedule_windows(installation.id, windows).await {
                Ok(n) => queued += n,
                Err(error) => {
                    tracing::error!(adapter = %installation.name, %error, "cannot queue windows")
                }
            }
        }
        Ok(queued)
    }

    /// Queues again the runs whose host stopped.
    async fn requeue_interrupted(&self, which: Interrupted) {
        match self
            .store
            .requeue_interrupted_runs(self.settings.max_attempts, which)
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::warn!(runs = n, "runs interrupted by a stop are queued again"),
            Err(error) => tracing::error!(%error, "cannot requeue interrupted runs"),
        }
    }

    /// Starts runs that may start at `now` (the store's time) while there are
    /// free slots and the host is not stopping.
    async fn start_claimed_runs(self: &Arc<Self>, slots: &Arc<Semaphore>, now: DateTime<Utc>) {
        while let Ok(slot) = slots.clone().try_acquire_owned() {
            if self.stopping().is_some() {
                return;
            }
            let lease = self.settings.lease;
            let claimed = self.store.claim_run(now, &self.holder, lease);
            let run = match claimed.await {
                Ok(Some(run)) => run,
                Ok(None) => return,
                Err(error) => {
                    tracing::error!(%error, "cannot claim a run");
                    return;
                }
            };
            let exports = self.clone();
            tokio::spawn(async move {
                if let Err(error) = exports.execute(run, now).await {
                    tracing::error!(error = format!("{error:#}"), "cannot record a run");
                }
                drop(slot);
                exports.wake();
            });
        }
    }
}
