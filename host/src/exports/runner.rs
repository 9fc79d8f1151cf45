//! One attempt of one run: the adapter called over the run's window in the
//! sandbox, and the outcome recorded in one transaction (documents published
//! on success, nothing on failure).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use super::{ExportSettings, Exports, LoadedInstallation};
use crate::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use crate::sandbox::host_usage::UsageAccess;
use crate::sandbox::{Outbound, run_export};
use crate::store::StoreError;
use crate::store::exports::MAX_REASON_BYTES;
use crate::store::exports::{
    FinishedAttempt, Installation, Provenance, Run, RunEnd, RunFiguresRecord, RunLogRecord,
    StoredDocument, sha256_hex,
};
use crate::text::truncate;
use crate::usage::Granularity;

/// Wait before renewing a lease again after a failed renewal.
const RENEW_RETRY: Duration = Duration::from_secs(1);

/// The id an adapter sees for a run: the same on every attempt of the same
/// installed version, so that the idempotency keys of its requests repeat
/// when a retry sends the same requests; another after an upgrade (the
/// requests may differ) and for a correction.
pub fn run_id(installation: &Installation, run: &Run) -> String {
    let version = Sha256::new()
        .chain_update(installation.component_sha256.as_bytes())
        .chain_update(installation.manifest.as_bytes())
        .finalize();
    format!(
        "{}-{}-{}-r{}-{:02x}{:02x}{:02x}{:02x}",
        installation.name,
        installation.uid,
        run.window_start.format("%Y%m%dT%H%MZ"),
        run.revision,
        version[0],
        version[1],
        version[2],
        version[3]
    )
}

impl Exports {
    /// Runs a run claimed at `claimed_at` (by the store's clock) once and
    /// records how it ended.
    pub async fn execute(&self, run: Run, claimed_at: DateTime<Utc>) -> anyhow::Result<()> {
        let cancelled = Arc::new(AtomicBool::new(false));
        let attempt = tokio::select! {
            attempt = self.attempt(&run, claimed_at, cancelled.clone()) => attempt,
            never = self.keep_leased(&run, &cancelled) => match never {},
            never = self.cancel_on_stop(&cancelled) => match never {},
        };
        let attempt = match (attempt, self.stopping()) {
            // Stopped with the host: nothing is wrong with the run, which
            // another replica (or the next start) takes over at once.
            (attempt, Some(cause)) if cancelled.load(Ordering::Relaxed) && !succeeded(&attempt) => {
                stopped_with_the_host(attempt, &cause, self.store_now(claimed_at).await)
            }
            (Ok(attempt), _) => attempt,
            // The host could not even start the adapter (store or component
            // trouble): worth another try.
            (Err(error), _) => FinishedAttempt {
                end: retry_or_fail(
                    &self.settings,
                    &run,
                    format!("{error:#}"),
                    self.store_now(claimed_at).await,
                ),
                figures: RunFiguresRecord::default(),
                log: RunLogRecord::default(),
            },
        };
        let outcome = match &attempt.end {
            RunEnd::Succeeded { .. } => "succeeded",
            RunEnd::Retry { .. } | RunEnd::Released { .. } => "retrying",
            RunEnd::Failed { .. } => "failed",
        };
        let figures = attempt.figures.clone();
        let recorded = match self.store.finish_run(run.id, run.claim, attempt).await {
            Ok(recorded) => recorded,
            Err(error) => {
                // Never leave the run `running` (it would hold its installation):
                // record a retry without documents, a small write. Should that
                // fail too, the lease ends and the run is queued again.
                let reason = format!("recording the run's outcome failed: {error}");
                let fallback = FinishedAttempt {
                    end: retry_or_fail(&self.settings, &run, reason, claimed_at),
                    figures: figures.clone(),
                    log: RunLogRecord::default(),
                };
                self.store.finish_run(run.id, run.claim, fallback).await?;
                return Err(error.into());
            }
        };
        if !recorded {
            // Removed while it ran, or its lease ended and another host took it over.
            tracing::warn!(
                run = run.id,
                attempt = run.attempts,
                "run no longer ours; outcome dropped"
            );
            return Ok(());
        }
        let adapter = match self.store.installation_by_id(run.installation_id).await? {
            Some(installation) => installation.name,
            None => format!("#{}", run.installation_id),
        };
        tracing::info!(%adapter, run = run.id, window = %run.window_start, attempt = run.attempts, outcome, "export run");
        self.metrics.record_run(
            &adapter,
            outcome,
            figures.elapsed_ms as f64 / 1e3,
            figures.rows_read,
        );
        Ok(())
    }

    /// Renews the run's lease while the attempt goes on; never returns. When
    /// the lease is lost, or cannot be confirmed before it ends, the attempt
    /// is stopped: another host may be running the window by then.
    async fn keep_leased(&self, run: &Run, cancelled: &AtomicBool) -> std::convert::Infallible {
        let lease = self.settings.lease;
        let mut confirmed = Instant::now(); // the claim granted it
        let mut wait = lease / 3;
        loop {
            tokio::time::sleep(wait).await;
            let renewed = self.store.renew_lease(run.id, run.claim, lease);
            let outcome = tokio::time::timeout(lease / 3, renewed).await;
            wait = match outcome {
                Ok(Ok(true)) => {
                    confirmed = Instant::now();
                    lease / 3
                }
                Ok(Ok(false)) => {
                    tracing::warn!(run = run.id, "lease lost: another attempt owns the run");
                    cancelled.store(true, Ordering::Relaxed);
                    return std::future::pending().await;
                }
                Ok(Err(error)) => {
                    tracing::warn!(run = run.id, %error, "cannot renew a lease");
                    RENEW_RETRY
                }
                Err(_) => {
                    tracing::warn!(run = run.id, "renewing a lease timed out");
                    RENEW_RETRY
                }
            };
            if confirmed.elapsed() + RENEW_RETRY >= lease {
                tracing::warn!(
                    run = run.id,
                    "lease not confirmed in time: the run is stopped"
                );
                cancelled.store(true, Ordering::Relaxed);
                return std::future::pending().await;
            }
        }
    }

    /// The store's time now (what retries are timed by, since every replica
    /// claims by it), or `claimed_at` should the store not answer.
    async fn store_now(&self, claimed_at: DateTime<Utc>) -> DateTime<Utc> {
        self.store.clock().await.unwrap_or(claimed_at)
    }

    /// Flips the run's cancel switch when the host stops; never returns.
    async fn cancel_on_stop(&self, cancelled: &AtomicBool) -> std::convert::Infallible {
        self.stopped().await;
        cancelled.store(true, Ordering::Relaxed);
        std::future::pending().await
    }

    async fn attempt(
        &self,
        run: &Run,
        claimed_at: DateTime<Utc>,
        cancelled: Arc<AtomicBool>,
    ) -> anyhow::Result<FinishedAttempt> {
        let installation = self
            .store
            .installation_by_id(run.installation_id)
            .await?
            .context("the installation was removed")?;
        let LoadedInstallation {
            installation,
            manifest,
        } = match self.load(installation) {
            Ok(loaded) => loaded,
            // Another attempt would read the same: the operator upgrades the adapter.
            Err(error @ StoreError::InvalidStoredManifest { .. }) => {
                let reason = format!("{error}; upgrade the adapter with a corrected manifest");
                return Ok(FinishedAttempt {
                    end: RunEnd::Failed {
                        reason: truncate(&reason, MAX_REASON_BYTES).into_owned(),
                    },
                    figures: RunFiguresRecord::default(),
                    log: RunLogRecord::default(),
                });
            }
            Err(error) => return Err(error.into()),
        };
        let adapter = self.loaded(&installation.component_sha256).await?;
        let mut usage = UsageAccess::new(
            self.store.clone(),
            self.store.meter_catalog().await?,
            manifest.grant.clone(),
            self.store.clock().await?,
        );
        usage.cancelled = cancelled;
        let request = ExportRequest {
            run_id: run_id(&installation, run),
            window: Window {
                start: run.window_start.timestamp(),
                end: run.window_end.timestamp(),
            },
            granularity: match manifest.granularity {
                Granularity::Hourly => WitGranularity::Hourly,
                Granularity::Daily => WitGranularity::Daily,
            },
            correction: run.is_correction(),
        };
        // What the run is made of, kept with its documents should it succeed.
        let config_json = manifest.config_json.clone();
        let mut provenance = Provenance {
            world_version: adapter.world_version.to_string(),
            component_sha256: adapter.sha256.clone(),
            config_sha256: sha256_hex(config_json.as_bytes()),
            config_digest: sha256_hex(manifest.shown_config_json.as_bytes()),
            granularity: manifest.granularity,
            usage_sha256: String::new(),
        };
        let engine = self.engine.clone();
        let outcome = tokio::task::spawn_blocking(move || {
            run_export(
                &engine,
                &adapter,
                &request,
                &manifest.config_json,
                usage,
                Outbound::Allowed(manifest.allowed_outbound_hosts.clone()),
                &manifest.limits,
            )
        })
        .await?;

        let figures = RunFiguresRecord {
            rows_read: outcome.figures.rows_read,
            rows_written: outcome.result.as_ref().map_or(0, |s| s.rows_written),
            bytes_written: outcome.figures.bytes_written,
            requests_sent: outcome.figures.requests_sent,
            elapsed_ms: outcome.figures.elapsed.as_millis() as u64,
            peak_memory_bytes: outcome.figures.peak_memory_bytes as u64,
        };
        let log = RunLogRecord {
            lines: outcome.log,
            dropped: outcome.log_dropped,
        };
        provenance.usage_sha256 = outcome.usage_sha256;
        let end = match outcome.result {
            Ok(_) => RunEnd::Succeeded {
                documents: outcome
                    .documents
                    .into_iter()
                    .map(|(name, d)| (name, StoredDocument::new(d.content_type, d.bytes, d.owner)))
                    .collect(),
                provenance,
                config_json,
            },
            Err(failure) if failure.is_transient() => {
                let now = self.store_now(claimed_at).await;
                retry_or_fail(&self.settings, run, failure.to_string(), now)
            }
            Err(failure) => RunEnd::Failed {
                reason: truncate(&failure.to_string(), MAX_REASON_BYTES).into_owned(),
            },
        };
        Ok(FinishedAttempt { end, figures, log })
    }
}

/// Whether an attempt succeeded.
fn succeeded(attempt: &anyhow::Result<FinishedAttempt>) -> bool {
    matches!(
        attempt,
        Ok(FinishedAttempt {
            end: RunEnd::Succeeded { .. },
            ..
        })
    )
}

/// An attempt the host's stop (`cause`: the signal) cut short: given back,
/// to run again at once (`now`, the store's time) without counting as an
/// attempt, with what it measured and logged.
fn stopped_with_the_host(
    attempt: anyhow::Result<FinishedAttempt>,
    cause: &str,
    now: DateTime<Utc>,
) -> FinishedAttempt {
    let (figures, log) = match attempt {
        Ok(attempt) => (attempt.figures, attempt.log),
        Err(_) => Default::default(),
    };
    FinishedAttempt {
        end: RunEnd::Released {
            reason: format!("the host stopped ({cause}); retried at once"),
            at: now,
        },
        figures,
        log,
    }
}

/// A transient failure at `now`: retried after a doubling wait, until the
/// attempts run out. The reason is cut to what a run keeps.
fn retry_or_fail(
    settings: &ExportSettings,
    run: &Run,
    reason: String,
    now: DateTime<Utc>,
) -> RunEnd {
    // Room for the words added when the attempts run out.
    let reason = truncate(&reason, MAX_REASON_BYTES - 64).into_owned();
    if run.attempts >= settings.max_attempts {
        return RunEnd::Failed {
            reason: format!("{reason} (gave up after {} attempts)", run.attempts),
        };
    }
    RunEnd::Retry {
        reason,
        at: now + backoff(settings, run.attempts),
    }
}

/// Wait after the `attempts`-th attempt failed: base × 2^(attempts − 1), capped.
fn backoff(settings: &ExportSettings, attempts: u32) -> Duration {
    let factor = 2u32.saturating_pow(attempts.saturating_sub(1));
    settings
        .retry_base
        .saturating_mul(factor)
        .min(settings.retry_max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_its_cap() {
        let settings = ExportSettings {
            retry_base: Duration::from_secs(30),
            retry_max: Duration::from_secs(300),
            ..ExportSettings::default()
        };
        let waits: Vec<u64> = (1..=6).map(|a| backoff(&settings, a).as_secs()).collect();
        assert_eq!(waits, [30, 60, 120, 240, 300, 300]);
    }
}
