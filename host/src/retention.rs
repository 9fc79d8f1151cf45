//! Retention of `usage_events`: the `[retention]` table of `tally.toml`,
//! pruning in bounded batches, and the rule that keeps idempotency exact.
//!
//! `usage_events` is the idempotency key and the audit trail of every
//! accepted record; the hourly and daily aggregates are what the usage API
//! and exports read, and pruning never touches them. Events are aged by
//! their *usage* time: those whose usage ended before `now - retention`
//! are pruned, and a record whose usage ended before it is refused at
//! ingest (its event id could no longer be checked for duplicates), so a
//! retry of a pruned event is refused, never counted twice. The store
//! keeps the cutoff of every prune (a watermark that only rises) and
//! refuses such records itself too, whatever path they come by (`tally
//! import --data-dir`, a replica configured otherwise, a prune racing a
//! request). With `archive_dir` set, each batch is written to an
//! [`archive`] file before the transaction that deletes it commits.

pub mod archive;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use crate::metrics::Metrics;
use crate::store::Store;
use archive::EventArchive;

/// Shortest retention accepted: usage reported late (a provider catching up
/// after an outage, an operator's backfill) must still be checked for
/// duplicates, and a day or two of lateness is ordinary.
pub const MIN_RETENTION: Duration = Duration::from_secs(2 * 24 * 3600);
/// Events deleted per transaction: short enough that ingest (queued behind
/// it on SQLite's writer, or waiting on its row locks on PostgreSQL) is not
/// stalled.
pub const PRUNE_BATCH: usize = 10_000;

/// `tally.toml`'s `[retention]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionSettings {
    /// How long events are kept, by the end of their usage (e.g. `"400d"`);
    /// unset keeps them forever.
    #[serde(with = "humantime_serde")]
    pub usage_events: Option<Duration>,
    /// How often `tally serve` prunes.
    #[serde(with = "humantime_serde")]
    pub prune_every: Duration,
    /// Where pruned events are archived before they are deleted
    /// ([`archive`]); unset deletes them without a copy.
    pub archive_dir: Option<PathBuf>,
}

impl Default for RetentionSettings {
    fn default() -> Self {
        RetentionSettings {
            usage_events: None,
            prune_every: Duration::from_secs(3600),
            archive_dir: None,
        }
    }
}

impl RetentionSettings {
    /// Refuses a retention shorter than [`MIN_RETENTION`] and a zero interval.
    pub fn check(&self) -> anyhow::Result<()> {
        if let Some(retention) = self.usage_events {
            check_retention(retention)?;
        }
        if self.prune_every.is_zero() {
            bail!("[retention] prune_every must be longer than zero");
        }
        Ok(())
    }

    /// Events whose usage ended before this are pruned, and records whose
    /// usage ended before it are refused; `None` keeps everything.
    pub fn cutoff(&self, now: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.usage_events.map(|retention| cutoff(now, retention))
    }

    /// The archive pruned events go to, if one is set.
    pub fn archive(&self) -> Option<EventArchive> {
        self.archive_dir.clone().map(EventArchive::new)
    }
}

/// Refuses a retention shorter than [`MIN_RETENTION`].
pub fn check_retention(retention: Duration) -> anyhow::Result<()> {
    if retention < MIN_RETENTION {
        bail!(
            "[retention] usage_events = \"{}\" is shorter than the minimum of {}: usage reported \
             late could no longer be checked for duplicates",
            humantime::format_duration(retention),
            humantime::format_duration(MIN_RETENTION)
        );
    }
    Ok(())
}

/// `now - retention`, to the millisecond (events store milliseconds).
pub fn cutoff(now: DateTime<Utc>, retention: Duration) -> DateTime<Utc> {
    let retention = chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    now.checked_sub_signed(retention)
        .unwrap_or(DateTime::<Utc>::MIN_UTC)
}

/// The reason a record older than the retention is refused, on `usageEndTime`.
pub fn expired_reason(cutoff: DateTime<Utc>) -> String {
    format!(
        "is before {}, older than this host's retention of usage events: its eventId can no \
         longer be checked for duplicates, so the record is refused (it may have been accepted \
         before)",
        cutoff.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    )
}

/// What one prune removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Pruned {
    pub events: u64,
    /// The archive files written, in order (none without an archive).
    pub archives: Vec<archive::ArchiveFile>,
    /// On a store that prunes whole months (PostgreSQL): events whose usage
    /// ended from this time on stay until their month has passed.
    pub kept_from: Option<DateTime<Utc>>,
}

/// Deletes every event whose usage ended before `before`, in batches of
/// [`PRUNE_BATCH`], each its own transaction, each archived first into
/// `archive` when there is one (its file published once it committed).
pub async fn prune(
    store: &dyn Store,
    before: DateTime<Utc>,
    archive: Option<&EventArchive>,
) -> anyhow::Result<Pruned> {
    let mut pruned = Pruned::default();
    loop {
        let batch = async {
            let batch = store
                .prune_usage_events(before, PRUNE_BATCH, archive.cloned())
                .await?;
            if let (Some(archive), Some(file)) = (archive, &batch.archive) {
                let (archive, seq) = (archive.clone(), file.seq);
                tokio::task::spawn_blocking(move || archive.publish(seq)).await??;
            }
            anyhow::Ok(batch)
        }
        .await
        .with_context(|| match (pruned.events, pruned.archives.len()) {
            (0, _) => "pruning usage events".to_owned(),
            (events, 0) => format!("pruning usage events, after {events} were pruned"),
            (events, files) => format!(
                "pruning usage events, after {events} were pruned into {files} archive files"
            ),
        })?;
        pruned.events += batch.events;
        pruned.archives.extend(batch.archive);
        pruned.kept_from = batch.kept_from;
        if batch.events < PRUNE_BATCH as u64 {
            return Ok(pruned);
        }
    }
}

/// Prunes every `settings.prune_every` (the first time at once), while the
/// host runs; does nothing when no retention is set. Several replicas may
/// prune one database at once: their batches take turns.
pub async fn run_pruner(store: Arc<dyn Store>, settings: RetentionSettings, metrics: Arc<Metrics>) {
    let Some(retention) = settings.usage_events else {
        return;
    };
    let archive = settings.archive();
    // Say once which policy runs: an operator who meant to archive sees
    // that nothing is, before the first events are gone.
    let retention_text = humantime::format_duration(retention).to_string();
    let every_text = humantime::format_duration(settings.prune_every).to_string();
    match &settings.archive_dir {
        Some(dir) => tracing::info!(
            retention = retention_text,
            every = every_text,
            archive_dir = %dir.display(),
            "usage events past their retention are archived, then pruned"
        ),
        None => tracing::info!(
            retention = retention_text,
            every = every_text,
            "usage events past their retention are pruned without a copy ([retention] \
             archive_dir is not set)"
        ),
    }
    let mut every = tokio::time::interval(settings.prune_every);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let outcome = async {
            let before = cutoff(store.clock().await?, retention);
            anyhow::Ok((
                before,
                prune(store.as_ref(), before, archive.as_ref()).await?,
            ))
        }
        .await;
        match outcome {
            Ok((before, pruned)) => {
                metrics.events_pruned.inc_by(pruned.events);
                let files: Vec<&str> = (pruned.archives.iter()).map(|f| f.name.as_str()).collect();
                tracing::info!(
                    pruned = pruned.events,
                    %before,
                    archived_to = ?files,
                    kept_until_their_month_passes = ?pruned.kept_from,
                    "pruned usage events past their retention"
                );
            }
            Err(error) => tracing::warn!(
                error = format!("{error:#}"),
                "pruning usage events failed; trying again at the next interval"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_retention_and_refuses_one_too_short() {
        let settings: RetentionSettings = toml::from_str("usage_events = '400d'").unwrap();
        assert_eq!(
            settings.usage_events,
            Some(Duration::from_secs(400 * 86_400))
        );
        assert_eq!(settings.prune_every, Duration::from_secs(3600));
        settings.check().unwrap();
        assert!(RetentionSettings::default().check().is_ok());
        assert_eq!(RetentionSettings::default().cutoff(Utc::now()), None);
        let short: RetentionSettings = toml::from_str("usage_events = '36h'").unwrap();
        let error = short.check().unwrap_err().to_string();
        assert!(
            error.contains("1day 12h") && error.contains("2days"),
            "{error}"
        );
        let zero: RetentionSettings =
            toml::from_str("usage_events = '2d'\nprune_every = '0s'").unwrap();
        assert!(zero.check().is_err());
        assert!(toml::from_str::<RetentionSettings>("events = '2d'").is_err());
        assert_eq!(settings.archive(), None);
        let archived: RetentionSettings =
            toml::from_str("usage_events = '90d'\narchive_dir = '/var/lib/tally/archive'").unwrap();
        assert_eq!(
            archived.archive().unwrap().dir(),
            std::path::Path::new("/var/lib/tally/archive")
        );
    }

    #[test]
    fn the_cutoff_is_now_minus_the_retention() {
        let now = "2026-12-01T12:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let settings = RetentionSettings {
            usage_events: Some(Duration::from_secs(400 * 86_400)),
            ..RetentionSettings::default()
        };
        assert_eq!(
            settings.cutoff(now).unwrap().to_rfc3339(),
            "2025-10-27T12:00:00+00:00"
        );
        assert_eq!(
            cutoff(now, Duration::MAX),
            DateTime::<Utc>::MIN_UTC,
            "a retention past the calendar keeps everything"
        );
    }
}
