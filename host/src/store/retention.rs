//! Pruning `usage_events` ([`crate::retention`]), written once over [`Sql`]:
//! one batch per transaction, archived first when an archive is set, and
//! the watermark that ingest checks.

use anyhow::{Context, ensure};
use chrono::{DateTime, Utc};

use super::sql::{Sql, Value};
use super::{ArchiveFailure, StoreError};
use crate::retention::archive::{ArchiveFile, EventArchive, StoredEvent};
use crate::retention::expired_reason;
use crate::usage::{RecordError, UsageRecord};

/// The store's retention watermark: records whose usage ended before it are
/// refused at ingest; 0 when nothing was ever pruned.
pub(super) const WATERMARK_SQL: &str =
    "SELECT CAST(coalesce(max(before_ms), 0) AS BIGINT) FROM event_retention";

/// What an archive needs of each event, from `usage_events AS e` and the
/// tables its keys name; the two batch reads below add their conditions.
macro_rules! archived_events {
    () => {
        "SELECT e.event_id, s.id, m.id, i.instance_data, e.quantity,
            e.usage_start_ms, e.usage_end_ms, e.reported_at_ms, e.subscription_key
         FROM usage_events AS e
         JOIN subscriptions AS s ON s.key = e.subscription_key
         JOIN meters AS m ON m.key = e.meter_key
         JOIN instances AS i ON i.id = e.instance_id"
    };
}

/// The oldest `$2` events whose usage ended before `$1`, in the order they
/// are archived and deleted.
const ARCHIVE_BATCH_SQL: &str = concat!(
    archived_events!(),
    " WHERE e.usage_end_ms < $1
     ORDER BY e.usage_end_ms, e.subscription_key, e.event_id
     LIMIT $2"
);

/// The oldest `$2` events whose usage ended before `$1` and that come after
/// the event `($3, $4, $5)` (usage end, subscription key, event id) in the
/// order of [`ARCHIVE_BATCH_SQL`]: the next batch of a month archived
/// without deleting its rows.
const ARCHIVE_BATCH_AFTER_SQL: &str = concat!(
    archived_events!(),
    " WHERE e.usage_end_ms < $1 AND (e.usage_end_ms, e.subscription_key, e.event_id) > ($3, $4, $5)
     ORDER BY e.usage_end_ms, e.subscription_key, e.event_id
     LIMIT $2"
);

/// What becomes of the events an archive batch wrote.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Archived {
    /// Deleted in the batch's transaction.
    Deleted,
    /// Kept, to go with their month's partition once the month is archived
    /// (PostgreSQL); the batch starts after the last event archived.
    Kept,
}

/// What one prune batch removed.
#[derive(Debug, Default)]
pub struct PrunedBatch {
    pub events: u64,
    /// The file the batch was archived to, when there is an archive and the
    /// batch was not empty.
    pub archive: Option<ArchiveFile>,
    /// On a store that prunes whole months (PostgreSQL's partitions): the
    /// start of the month the cutoff falls in. Events whose usage ended from
    /// then on stay until their month has passed.
    pub kept_from: Option<DateTime<Utc>>,
}

/// Raises the watermark to `before_ms` and deletes at most `limit` events
/// whose usage ended before it (oldest first, through the index on
/// `usage_end_ms`), in the caller's transaction, after writing them to
/// `archive` when there is one. The watermark is written in the same
/// transaction as the deletion: an ingest that no longer finds a pruned
/// event sees the watermark that refuses it.
pub(super) async fn prune_batch(
    db: &impl Sql,
    before_ms: i64,
    limit: usize,
    archive: Option<EventArchive>,
) -> anyhow::Result<PrunedBatch> {
    raise_watermark(db, before_ms).await?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let Some(archive) = archive else {
        let events = db
            .execute(
                "DELETE FROM usage_events WHERE (subscription_key, event_id) IN (
                     SELECT subscription_key, event_id FROM usage_events
                     WHERE usage_end_ms < $1 ORDER BY usage_end_ms LIMIT $2)",
                &[before_ms.into(), Value::Int(limit)],
            )
            .await
            .context("deleting usage events past their retention")?;
        return Ok(PrunedBatch {
            events,
            ..PrunedBatch::default()
        });
    };
    archive_batch(db, before_ms, limit, archive, Archived::Deleted).await
}

/// Raises the retention watermark to `before_ms` (it never falls).
pub(super) async fn raise_watermark(db: &impl Sql, before_ms: i64) -> anyhow::Result<()> {
    db.execute(
        "INSERT INTO event_retention (singleton, before_ms) VALUES (1, $1)
         ON CONFLICT (singleton) DO UPDATE SET before_ms = CASE
             WHEN excluded.before_ms > event_retention.before_ms THEN excluded.before_ms
             ELSE event_retention.before_ms END",
        &[before_ms.into()],
    )
    .await
    .context("raising the retention watermark")?;
    Ok(())
}

/// Archives the batch, deletes exactly what was archived (unless `archived`
/// is [`Archived::Kept`]), and records the file and its last event under the
/// next number of `event_archives`; the caller's transaction commits all
/// three, or none when the file could not be written.
pub(super) async fn archive_batch(
    db: &impl Sql,
    before_ms: i64,
    limit: i64,
    archive: EventArchive,
    archived: Archived,
) -> anyhow::Result<PrunedBatch> {
    let committed: i64 = db
        .query_one(
            "SELECT CAST(coalesce(max(seq), 0) AS BIGINT) FROM event_archives",
            &[],
        )
        .await?
        .take(0)?;
    let settling = archive.clone();
    db.blocking(move || settling.settle(committed))
        .await?
        .context("settling what an earlier prune left in the archive")
        .map_err(ArchiveFailure)?;
    let (sql, mut params) = (ARCHIVE_BATCH_SQL, vec![before_ms.into(), Value::Int(limit)]);
    let (sql, params) = match archived {
        Archived::Deleted => (sql, params),
        Archived::Kept => {
            params.extend(last_archived(db, committed).await?);
            (ARCHIVE_BATCH_AFTER_SQL, params)
        }
    };
    let mut events = Vec::new();
    let mut last = None;
    db.for_each_row(sql, &params, |row| {
        let event = StoredEvent {
            event_id: row.take(0)?,
            subscription_id: row.take(1)?,
            meter_id: row.take(2)?,
            instance_data: row.take(3)?,
            quantity: row.take(4)?,
            usage_start_ms: row.take(5)?,
            usage_end_ms: row.take(6)?,
            reported_at_ms: row.take(7)?,
        };
        let subscription_key: i64 = row.take(8)?;
        last = Some((event.usage_end_ms, subscription_key, event.event_id.clone()));
        events.push(event);
        Ok(())
    })
    .await
    .context("reading usage events to archive")?;
    let Some((last_end, last_subscription, last_event)) = last else {
        return Ok(PrunedBatch::default());
    };
    let seq = committed + 1;
    let count = events.len() as u64;
    let dir = archive.dir().to_owned();
    let file = db
        .blocking(move || archive.write(seq, &events))
        .await?
        .with_context(|| {
            format!(
                "archiving pruned usage events to {}",
                dir.join(EventArchive::file_name(seq)).display()
            )
        })
        .map_err(ArchiveFailure)?;
    if archived == Archived::Deleted {
        // Exactly the rows archived: everything up to the last one, in the
        // order they were read. Only this range, so that the index on
        // `usage_end_ms` is read up to the last row, not up to `before_ms`
        // (SQLite's index ends with the table's key and reads exactly the
        // range; PostgreSQL's reads up to the last row's time).
        let deleted = db
            .execute(
                "DELETE FROM usage_events
                 WHERE (usage_end_ms, subscription_key, event_id) <= ($1, $2, $3)",
                &[
                    last_end.into(),
                    last_subscription.into(),
                    last_event.as_str().into(),
                ],
            )
            .await
            .context("deleting archived usage events")?;
        ensure!(
            deleted == count,
            "{count} usage events were archived but {deleted} matched their deletion (events \
             changed meanwhile); this batch was not pruned, the next prune tries again"
        );
    }
    db.execute(
        "INSERT INTO event_archives (seq, file, events, bytes, sha256, last_usage_end_ms,
             archived_ms, last_subscription_key, last_event_id)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        &[
            seq.into(),
            file.name.as_str().into(),
            Value::Int(count as i64),
            Value::Int(file.bytes as i64),
            file.sha256.as_str().into(),
            last_end.into(),
            Value::Int(crate::clock::now().timestamp_millis()),
            last_subscription.into(),
            last_event.into(),
        ],
    )
    .await
    .context("recording the archive file")?;
    Ok(PrunedBatch {
        events: count,
        archive: Some(file),
        kept_from: None,
    })
}

/// The key of the last event archive file `seq` holds, as the parameters
/// `$3..$5` of [`ARCHIVE_BATCH_AFTER_SQL`]: the start of everything when
/// there is no such file, or it was written before the key was recorded
/// (its events were deleted then, so nothing before it is left).
async fn last_archived(db: &impl Sql, seq: i64) -> anyhow::Result<[Value; 3]> {
    let start = || [Value::Int(i64::MIN), Value::Int(i64::MIN), "".into()];
    let Some(mut row) = db
        .query_opt(
            "SELECT last_usage_end_ms, last_subscription_key, last_event_id
             FROM event_archives WHERE seq = $1",
            &[seq.into()],
        )
        .await?
    else {
        return Ok(start());
    };
    let end: i64 = row.take(0)?;
    let subscription: Option<i64> = row.take(1)?;
    let event: Option<String> = row.take(2)?;
    Ok(match (subscription, event) {
        (Some(subscription), Some(event)) => [end.into(), subscription.into(), event.into()],
        _ => start(),
    })
}

/// The records of a request whose usage ended before the watermark, as
/// the error that refuses the request; `None` when there are none.
pub(super) fn expired(records: &[UsageRecord], watermark_ms: i64) -> Option<StoreError> {
    let cutoff = DateTime::<Utc>::from_timestamp_millis(watermark_ms)?;
    let refused: Vec<RecordError> = (records.iter().enumerate())
        .filter(|(_, record)| record.usage_end < cutoff)
        .map(|(index, _)| RecordError::new(index, "usageEndTime", expired_reason(cutoff)))
        .collect();
    (!refused.is_empty()).then_some(StoreError::Expired(refused))
}
