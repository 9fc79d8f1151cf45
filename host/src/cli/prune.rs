//! `tally prune`: delete the usage events past their retention once, as
//! `tally serve` does every `[retention] prune_every`, archiving them first
//! when an archive directory is set.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;

use super::DataDir;
use crate::config::Config;
use crate::retention::archive::EventArchive;
use crate::retention::{check_retention, cutoff, prune};
use crate::store::Database;

/// Arguments of `tally prune`.
#[derive(clap::Args)]
pub struct PruneArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// The host's config file (tally.toml): its `[retention] usage_events`,
    /// `data_dir` and `database`.
    #[arg(long)]
    config: Option<PathBuf>,
    /// The retention, instead of the config's (e.g. `400d`; at least 2 days).
    #[arg(long, value_parser = humantime::parse_duration)]
    usage_events: Option<Duration>,
    /// Archive the pruned events into this directory first, instead of the
    /// config's `[retention] archive_dir`.
    #[arg(long)]
    archive_dir: Option<PathBuf>,
}

/// Prunes once and prints what it removed.
pub async fn run(args: PruneArgs) -> anyhow::Result<()> {
    let config = args
        .config
        .as_deref()
        .map(Config::load)
        .transpose()?
        .unwrap_or_default();
    let Some(retention) = args.usage_events.or(config.retention.usage_events) else {
        bail!(
            "no retention of usage events is set: give --usage-events or set [retention] \
             usage_events in the config; nothing was pruned"
        );
    };
    check_retention(retention)?;
    let database = match (args.data_dir.database.as_deref()).or(config.database.as_deref()) {
        Some(text) => Database::parse(text),
        None => Database::Sqlite(
            (args.data_dir.data_dir.clone())
                .or(config.data_dir)
                .unwrap_or_else(|| PathBuf::from(super::DEFAULT_DATA_DIR)),
        ),
    };
    let archive = (args.archive_dir)
        .or(config.retention.archive_dir)
        .map(EventArchive::new);
    let store = database.open().await?;
    let before = cutoff(store.clock().await?, retention);
    let pruned = prune(store.as_ref(), before, archive.as_ref()).await?;
    println!(
        "pruned {} usage events whose usage ended before {} from {database} \
         (hourly and daily aggregates kept)",
        pruned.events,
        before.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
    );
    if let Some(kept_from) = pruned.kept_from.filter(|&from| from < before) {
        println!(
            "kept until their month has passed: the events whose usage ended from {} on \
             (PostgreSQL prunes a whole month at a time)",
            kept_from.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        );
    }
    match &archive {
        Some(archive) => {
            for file in &pruned.archives {
                println!(
                    "archived {} events to {} ({} bytes, sha256 {})",
                    file.events,
                    archive.dir().join(&file.name).display(),
                    file.bytes,
                    file.sha256
                );
            }
        }
        // Deleting without a copy is a choice; say it was made.
        None if pruned.events > 0 => println!(
            "not archived: neither --archive-dir nor [retention] archive_dir is set, so the \
             pruned events were deleted without a copy"
        ),
        None => {}
    }
    Ok(())
}
