//! Archives of pruned usage events (`[retention] archive_dir`): before a
//! prune deletes a batch of events, it writes them to
//! `usage-events-<seq>.ndjson.gz` in the archive directory, one record a
//! line in the ingest format with its `reportedTime`, so that `tally import`
//! reads an archive back into a host that never had those events.
//!
//! Exactly once: `seq` comes from the database, in the transaction that
//! deletes the batch and records the file (`event_archives`). The file is
//! written and synced under a partial name before that transaction commits,
//! and renamed to its own name after: a file with its own name holds a
//! committed archive, and nothing else. A prune that stops in between
//! leaves a partial file; the next prune publishes it if its number was
//! committed, else removes it and takes the number again.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, SecondsFormat, Utc};
use flate2::Compression;
use flate2::write::GzEncoder;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::store::exports::sha256_hex;
use crate::store::private_files;

/// Where archives are written. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventArchive {
    dir: PathBuf,
}

/// One pruned event as it is archived: the record as its provider sent it,
/// with the time it was reported.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ArchivedEvent {
    pub event_id: String,
    pub subscription_id: String,
    pub meter_id: String,
    pub resource_uri: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub location: String,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub tags: Map<String, Value>,
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub additional_info: Map<String, Value>,
    pub quantity: f64,
    pub usage_start_time: String,
    pub usage_end_time: String,
    pub reported_time: String,
}

/// A stored event, as the store reads it for the archive.
pub struct StoredEvent {
    pub event_id: String,
    pub subscription_id: String,
    pub meter_id: String,
    /// The instance's `instanceData` as stored (the resource, its location,
    /// tags and additional info).
    pub instance_data: String,
    pub quantity: f64,
    pub usage_start_ms: i64,
    pub usage_end_ms: i64,
    pub reported_at_ms: i64,
}

/// An archive file written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveFile {
    /// Its number, in `event_archives`.
    pub seq: i64,
    /// The file's name in the archive directory, once published.
    pub name: String,
    pub events: u64,
    pub bytes: u64,
    /// Lower-case hex SHA-256 of the file.
    pub sha256: String,
}

/// What a file is named until the archive it holds is committed.
const PARTIAL: &str = ".partial";

impl EventArchive {
    /// Archives into `dir` (created, private to tally's account, when missing).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        EventArchive { dir: dir.into() }
    }

    /// The archive directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The name of archive number `seq`.
    pub fn file_name(seq: i64) -> String {
        format!("usage-events-{seq:08}.ndjson.gz")
    }

    /// Writes archive number `seq` of `events` under its partial name
    /// (`….ndjson.gz.partial`), synced, replacing any file of that name;
    /// [`EventArchive::publish`] gives it its name once the transaction
    /// that records it has committed.
    pub fn write(&self, seq: i64, events: &[StoredEvent]) -> anyhow::Result<ArchiveFile> {
        // Buffered: the encoder clears its whole output buffer for every
        // write it takes, and a record is dozens of small writes.
        let gzip = GzEncoder::new(Vec::new(), Compression::default());
        let mut lines = BufWriter::with_capacity(64 * 1024, gzip);
        for event in events {
            serde_json::to_writer(&mut lines, &ArchivedEvent::of(event)?)?;
            lines.write_all(b"\n")?;
        }
        let bytes = lines.into_inner().map_err(|e| e.into_error())?.finish()?;
        let file = ArchiveFile {
            seq,
            name: Self::file_name(seq),
            events: events.len() as u64,
            bytes: bytes.len() as u64,
            sha256: sha256_hex(&bytes),
        };
        private_files::create_dir(&self.dir)?;
        let path = self.partial_path(seq);
        let written = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(private_files::FILE_MODE)
            .open(&path)
            .and_then(|mut out| {
                out.write_all(&bytes)?;
                out.sync_all()
            });
        written.with_context(|| format!("writing {}", path.display()))?;
        Ok(file)
    }

    /// Gives archive `seq` its name, once its transaction has committed.
    pub fn publish(&self, seq: i64) -> anyhow::Result<()> {
        let (partial, path) = (self.partial_path(seq), self.dir.join(Self::file_name(seq)));
        std::fs::rename(&partial, &path)
            .with_context(|| format!("renaming {} to {}", partial.display(), path.display()))?;
        File::open(&self.dir)
            .and_then(|dir| dir.sync_all())
            .with_context(|| format!("syncing {}", self.dir.display()))
    }

    /// Settles what a prune that stopped half-way left, `committed` being
    /// the last number committed: its partial file (committed, not yet
    /// renamed) is published, the next number's (never committed) removed.
    /// Prunes take turns and each settles before it writes, so no other
    /// partial file can exist. Runs in the transaction that takes the next
    /// number, so that no other prune is writing meanwhile.
    pub fn settle(&self, committed: i64) -> anyhow::Result<()> {
        if self.partial_path(committed).exists() {
            self.publish(committed)?;
        }
        let stale = self.partial_path(committed + 1);
        match std::fs::remove_file(&stale) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => {
                Err(error).with_context(|| format!("removing {}", stale.display()))
            }
            _ => Ok(()),
        }
    }

    fn partial_path(&self, seq: i64) -> PathBuf {
        self.dir.join(Self::file_name(seq) + PARTIAL)
    }
}

impl ArchivedEvent {
    /// The record of `event`, its resource fields read back from the
    /// stored `instanceData`.
    pub fn of(event: &StoredEvent) -> anyhow::Result<Self> {
        #[derive(Deserialize)]
        #[serde(rename_all = "camelCase")]
        struct Resources {
            resource_uri: String,
            location: String,
            tags: Map<String, Value>,
            additional_info: Map<String, Value>,
        }
        #[derive(Deserialize)]
        struct InstanceData {
            #[serde(rename = "Microsoft.Resources")]
            resources: Resources,
        }
        let InstanceData { resources } =
            serde_json::from_str(&event.instance_data).with_context(|| {
                format!(
                    "reading the stored instance data of event '{}' of subscription '{}'",
                    event.event_id, event.subscription_id
                )
            })?;
        Ok(ArchivedEvent {
            event_id: event.event_id.clone(),
            subscription_id: event.subscription_id.clone(),
            meter_id: event.meter_id.clone(),
            resource_uri: resources.resource_uri,
            location: resources.location,
            tags: resources.tags,
            additional_info: resources.additional_info,
            quantity: event.quantity,
            usage_start_time: time(event.usage_start_ms)?,
            usage_end_time: time(event.usage_end_ms)?,
            reported_time: time(event.reported_at_ms)?,
        })
    }
}

/// `ms` as the ingest format writes times: UTC, milliseconds only when there are some.
fn time(ms: i64) -> anyhow::Result<String> {
    let time = DateTime::<Utc>::from_timestamp_millis(ms)
        .with_context(|| format!("{ms} ms is not a time"))?;
    Ok(time.to_rfc3339_opts(SecondsFormat::AutoSi, true))
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use flate2::read::GzDecoder;

    use super::*;
    use crate::usage::{MeterCatalog, UsageRecordInput, ValidationContext};

    fn stored(instance_data: &str) -> StoredEvent {
        StoredEvent {
            event_id: "e-1".into(),
            subscription_id: "sub-a".into(),
            meter_id: "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5".into(),
            instance_data: instance_data.into(),
            quantity: 0.1 + 0.2,
            usage_start_ms: 1_764_547_200_000,
            usage_end_ms: 1_764_550_800_500,
            reported_at_ms: 1_764_551_000_000,
        }
    }

    fn lines(file: &Path) -> Vec<String> {
        let mut text = String::new();
        GzDecoder::new(std::fs::File::open(file).unwrap())
            .read_to_string(&mut text)
            .unwrap();
        text.lines().map(str::to_owned).collect()
    }

    /// An archived line is a record ingest accepts as the same event: the
    /// same content digest, instance data, times and quantity.
    #[test]
    fn an_archived_event_reads_back_as_the_record_that_was_stored() {
        let input: UsageRecordInput = serde_json::from_value(serde_json::json!({
            "eventId": "e-1", "subscriptionId": "sub-a",
            "meterId": "fab6eb84-500b-4a09-a8ca-7358f8bbaea5",
            "resourceUri": "/subscriptions/sub-a/vm/\"ü\"", "location": "local",
            "tags": {"cost-center": "R&D", "a": "é\n"}, "additionalInfo": {"size": "A1", "n": 2},
            "quantity": 0.30000000000000004,
            "usageStartTime": "2025-12-01T00:00:00Z", "usageEndTime": "2025-12-01T01:00:00.500Z",
        }))
        .unwrap();
        let ctx = ValidationContext {
            meters: &MeterCatalog::builtin_for_tests(),
            now: Utc::now(),
            may_set_reported_time: true,
            retention_cutoff: None,
        };
        let record = input.validate(0, &ctx).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let archive = EventArchive::new(dir.path().join("archive"));
        let file = archive.write(7, &[stored(&record.instance_data)]).unwrap();
        archive.publish(7).unwrap();
        assert_eq!(file.name, "usage-events-00000007.ndjson.gz");
        assert_eq!(file.events, 1);
        let path = archive.dir().join(&file.name);
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(
            (file.bytes, file.sha256.clone()),
            (bytes.len() as u64, sha256_hex(&bytes))
        );

        let lines = lines(&path);
        assert_eq!(lines.len(), 1);
        let back: UsageRecordInput = serde_json::from_str(&lines[0]).unwrap();
        assert_eq!(back.reported_time.as_deref(), Some("2025-12-01T01:03:20Z"));
        let back = back.validate(0, &ctx).unwrap();
        assert_eq!(back.digest, record.digest, "{}", lines[0]);
        assert_eq!(back.instance_data, record.instance_data);
        assert_eq!(
            (back.usage_start, back.usage_end, back.quantity),
            (record.usage_start, record.usage_end, record.quantity)
        );
    }

    /// A file is written under a partial name and takes its own once
    /// published; settling publishes the partial files of committed numbers
    /// and removes the others (a prune that never committed).
    #[test]
    fn partial_files_are_published_when_committed_and_removed_otherwise() {
        let dir = tempfile::tempdir().unwrap();
        let archive = EventArchive::new(dir.path());
        let names = || {
            let mut names: Vec<String> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|entry| entry.unwrap().file_name().into_string().unwrap())
                .collect();
            names.sort();
            names
        };
        let instance = r#"{"Microsoft.Resources":{"resourceUri":"/vm","location":"","tags":{},"additionalInfo":{}}}"#;
        let events = [stored(instance), stored(instance)];
        let file = archive.write(1, &events).unwrap();
        assert_eq!(names(), ["usage-events-00000001.ndjson.gz.partial"]);
        archive.publish(file.seq).unwrap();
        assert_eq!(names(), [file.name.as_str()]);
        let first = lines(&dir.path().join(&file.name));
        assert_eq!(first.len(), 2);
        assert!(
            !first[0].contains("location") && !first[0].contains("tags"),
            "{}",
            first[0]
        );

        // Number 2 committed but not renamed, number 3 never committed.
        archive.write(2, &events).unwrap();
        std::fs::write(archive.partial_path(3), b"cut short").unwrap();
        archive.settle(2).unwrap();
        assert_eq!(
            names(),
            [EventArchive::file_name(1), EventArchive::file_name(2)]
        );
        // Rewritten whole when the number is taken again.
        std::fs::write(archive.partial_path(3), b"cut short").unwrap();
        let third = archive.write(3, &events[..1]).unwrap();
        archive.publish(3).unwrap();
        let path = dir.path().join(&third.name);
        assert_eq!(std::fs::read(&path).unwrap().len() as u64, third.bytes);
        assert_eq!(lines(&path).len(), 1);
        archive.settle(3).unwrap();
        assert_eq!(names().len(), 3);
        EventArchive::new(dir.path().join("missing"))
            .settle(3)
            .unwrap();
    }

    #[test]
    fn unreadable_instance_data_is_an_error_naming_the_event() {
        let error = ArchivedEvent::of(&stored("not json")).unwrap_err();
        assert!(format!("{error:#}").contains("event 'e-1' of subscription 'sub-a'"));
    }
}
