//! `usage_events` on PostgreSQL is partitioned by the month its usage ended
//! in (`usage_month`, schema migration 10), so that pruning a month of
//! events is dropping its partition, not deleting its rows one by one.
//!
//! Partitions are made when ingest first meets a month ([`Partitions::make`])
//! and dropped by the pruner ([`prune_batch`]) once the whole month is past
//! the retention. Both hold [`PARTITION_LOCK`] and read the retention
//! watermark under it, so a month that was dropped is never made again: its
//! usage is older than the watermark and refused instead.
//!
//! The idempotency key is `(subscription, eventId, usage month)`: a retried
//! record has the same usage end, so the same month and partition, and is a
//! duplicate as before. Only an eventId reused with a usage end in another
//! month is no longer caught as a conflict (it is a new event of that month).

use std::collections::HashSet;
use std::sync::Mutex;
use std::sync::atomic::{AtomicI64, Ordering};

use anyhow::Context;
use chrono::{DateTime, Datelike, NaiveDate, Utc};
use deadpool_postgres::{GenericClient, Transaction};
use tokio_postgres::error::SqlState;

use super::sql::PgSql;
use crate::retention::archive::EventArchive;
use crate::store::retention::{self, Archived, PrunedBatch, WATERMARK_SQL};

/// Advisory lock held while partitions are made or dropped.
const PARTITION_LOCK: i64 = 0x7461_6c6c_0005;

/// The month a usage end falls in, as `usage_month` stores it: `year * 12 +
/// month - 1` (UTC), as the schema's `usage_month(ms)` computes it.
pub(crate) fn usage_month(end: DateTime<Utc>) -> i64 {
    i64::from(end.year()) * 12 + i64::from(end.month0())
}

/// The first instant of `month`, in milliseconds since the epoch.
fn month_start_ms(month: i64) -> i64 {
    let year = i32::try_from(month.div_euclid(12)).unwrap_or(i32::MAX);
    let month0 = month.rem_euclid(12) as u32;
    NaiveDate::from_ymd_opt(year, month0 + 1, 1).map_or(i64::MAX, |day| {
        day.and_time(Default::default())
            .and_utc()
            .timestamp_millis()
    })
}

/// The month of a time given in milliseconds.
fn month_of_ms(ms: i64) -> i64 {
    DateTime::from_timestamp_millis(ms).map_or(i64::MAX, usage_month)
}

/// Whether `error` is an insert into a month without a partition (dropped
/// since this replica last saw it): the group runs again, making it or
/// refusing its records as expired.
pub(super) fn is_missing_partition(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.as_db_error())
        .is_some_and(|e| {
            // `usage_events` has no CHECK constraint of its own: a check
            // violation naming no constraint is the partition routing's
            // (whatever language the server writes its messages in).
            *e.code() == SqlState::CHECK_VIOLATION
                && e.constraint().is_none()
                && (e.table() == Some("usage_events") || e.message().starts_with("no partition"))
        })
}

/// The months this replica knows to have a partition, and the retention
/// watermark it last read.
#[derive(Default)]
pub(super) struct Partitions {
    known: Mutex<HashSet<i64>>,
    watermark: AtomicI64,
}

impl Partitions {
    /// The retention watermark as this replica last read it (it only rises):
    /// usage older than it is refused without asking the database.
    pub fn watermark(&self) -> i64 {
        self.watermark.load(Ordering::Relaxed)
    }

    /// The months of `months` this replica does not know to have a
    /// partition, sorted, once each.
    pub fn unknown(&self, months: impl IntoIterator<Item = i64>) -> Vec<i64> {
        let known = self.known.lock().expect("partition cache lock");
        let mut unknown: Vec<i64> = months.into_iter().filter(|m| !known.contains(m)).collect();
        unknown.sort_unstable();
        unknown.dedup();
        unknown
    }

    /// Makes the partitions of `months` that are missing, except for months
    /// wholly before the retention watermark, and returns that watermark,
    /// read under the lock: records of a month left without a partition
    /// are older than it.
    pub async fn make(
        &self,
        client: &mut impl GenericClient,
        months: Vec<i64>,
    ) -> anyhow::Result<i64> {
        let tx = client.transaction().await?;
        // Attaching waits for other changes of the table's schema (a prune's
        // drop): this long at most, then the group runs again.
        tx.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
            .await?;
        let watermark: i64 = tx.query_one(WATERMARK_SQL, &[]).await?.get(0);
        self.watermark.fetch_max(watermark, Ordering::Relaxed);
        let made: Vec<i64> = months
            .into_iter()
            .filter(|&month| month_start_ms(month + 1) > watermark)
            .collect();
        tx.execute(
            "SELECT create_usage_events_partition(month) FROM unnest($1::bigint[]) AS month",
            &[&made],
        )
        .await
        .context("making the partitions of new usage months")?;
        tx.commit().await?;
        self.known
            .lock()
            .expect("partition cache lock")
            .extend(made);
        Ok(watermark)
    }

    /// Forgets every month: after an insert met a dropped one.
    pub fn forget(&self) {
        self.known.lock().expect("partition cache lock").clear();
    }
}

/// The months that have a partition, with the partition's name, oldest first.
async fn partitions(tx: &impl GenericClient) -> anyhow::Result<Vec<(i64, String)>> {
    let rows = tx
        .query(
            "SELECT CAST((regexp_match(pg_get_expr(c.relpartbound, c.oid),
                                       'FROM \\(''?(-?[0-9]+)''?\\)'))[1] AS BIGINT),
                    CAST(c.relname AS TEXT)
             FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid
             WHERE i.inhparent = CAST('usage_events' AS regclass)
             ORDER BY 1",
            &[],
        )
        .await
        .context("listing the partitions of usage_events")?;
    // A partition not made by tally (a DEFAULT one, say) has no bound.
    Ok(rows
        .iter()
        .filter_map(|row| Some((row.get::<_, Option<i64>>(0)?, row.get(1))))
        .collect())
}

/// The start of the month of `before_ms`: months before it have ended
/// before `before_ms`, so their partitions may go.
fn whole_months_before(before_ms: i64) -> i64 {
    month_start_ms(month_of_ms(before_ms))
}

/// One prune batch (see [`crate::store::Store::prune_usage_events`]) of whole
/// months, in the caller's transaction: raises the watermark to
/// `before_ms`, then drops the partitions of the months that ended by then
/// (events of the month `before_ms` falls in stay until it has passed).
/// With an archive, those months' events are first archived a batch at a
/// time, each batch's file recorded with its last event, and the rows kept:
/// the batch that finds nothing more to archive drops the months.
pub(super) async fn prune_batch(
    db: &PgSql<'_, Transaction<'_>>,
    before_ms: i64,
    limit: usize,
    archive: Option<EventArchive>,
) -> anyhow::Result<PrunedBatch> {
    retention::raise_watermark(db, before_ms).await?;
    let whole_months = whole_months_before(before_ms);
    let kept_from = DateTime::from_timestamp_millis(whole_months);
    // Ingest queues behind a drop waiting for the table: wait this long at
    // most, else this prune fails and the next one tries again.
    db.0.batch_execute("SET LOCAL lock_timeout = '5s'").await?;
    let months = lock_months(db.0, whole_months).await?;
    let Some(archive) = archive else {
        let mut events = 0;
        for (_, table) in &months {
            let held: i64 =
                db.0.query_one(&format!("SELECT count(*) FROM {table}"), &[])
                    .await?
                    .get(0);
            events += held as u64;
        }
        drop_months(db.0, months).await?;
        return Ok(PrunedBatch {
            events,
            archive: None,
            kept_from,
        });
    };
    for (_, table) in &months {
        analyze_if_stale(db.0, table).await?;
    }
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut batch =
        retention::archive_batch(db, whole_months, limit, archive, Archived::Kept).await?;
    if (batch.events as i64) < limit {
        // Every event of these months is in a file now: the ones before
        // this batch in earlier ones, and none can have come since the
        // first batch raised the watermark (see `lock_months`).
        drop_months(db.0, months).await?;
    }
    batch.kept_from = kept_from;
    Ok(batch)
}

/// Locks the partitions of the months that ended by `end_ms` against
/// writes until the transaction ends, and returns them, oldest first, as
/// (name, quoted name). An ingest that wrote to one before waited for the
/// lock has committed by then, and is seen; one that writes after it reads
/// the watermark this prune raised (and committed, in an earlier batch or
/// with this one), and is refused.
async fn lock_months(
    tx: &impl GenericClient,
    end_ms: i64,
) -> anyhow::Result<Vec<(String, String)>> {
    let mut months = Vec::new();
    for (month, name) in partitions(tx).await? {
        if month_start_ms(month + 1) > end_ms {
            break;
        }
        let table = format!("\"{}\"", name.replace('"', "\"\""));
        tx.batch_execute(&format!("LOCK TABLE {table} IN SHARE MODE"))
            .await?;
        months.push((name, table));
    }
    Ok(months)
}

/// Gathers the planner's statistics of a month's partition when they are
/// missing or older than a tenth of its rows. Without them the archive's
/// batch read is planned as if the month were nearly empty (a sort of the
/// whole month for every batch of 10,000: 1.8 s instead of tens of ms, seen
/// when months filled faster than autovacuum analyses them).
async fn analyze_if_stale(tx: &impl GenericClient, table: &str) -> anyhow::Result<()> {
    let stale: bool = tx
        .query_one(
            "SELECT coalesce(s.last_analyze, s.last_autoanalyze) IS NULL
                    OR s.n_mod_since_analyze > c.reltuples / 10
             FROM pg_stat_user_tables AS s JOIN pg_class AS c ON c.oid = s.relid
             WHERE s.relid = CAST(CAST($1 AS TEXT) AS regclass)",
            &[&table],
        )
        .await?
        .get(0);
    if stale {
        tx.batch_execute(&format!("ANALYZE {table}")).await?;
    }
    Ok(())
}

/// Drops the partitions `months` (from [`lock_months`]).
async fn drop_months(tx: &impl GenericClient, months: Vec<(String, String)>) -> anyhow::Result<()> {
    if months.is_empty() {
        return Ok(());
    }
    // Only now, so that making a new month waits for the drops, not for the
    // archive or the counts: the lock orders drops after the watermark's
    // read in `make`.
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&PARTITION_LOCK])
        .await?;
    for (name, table) in months {
        tx.batch_execute(&format!("DROP TABLE {table}"))
            .await
            .with_context(|| format!("dropping {name}, the usage events of a past month"))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_count_from_year_zero_and_start_on_the_first() {
        let end = "2026-11-30T23:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(usage_month(end), 2026 * 12 + 10);
        let start = "2026-11-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(month_start_ms(usage_month(end)), start.timestamp_millis());
        // The hour ending at midnight of the 1st belongs to the new month.
        let midnight = "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(usage_month(midnight), usage_month(end) + 1);
        assert_eq!(
            month_start_ms(usage_month(end) + 1),
            midnight.timestamp_millis()
        );
        // December's next month is January of the next year.
        assert_eq!(
            month_start_ms(2026 * 12 + 12),
            "2027-01-01T00:00:00Z"
                .parse::<DateTime<Utc>>()
                .unwrap()
                .timestamp_millis()
        );
    }

    #[test]
    fn whole_months_before_is_the_start_of_the_cutoffs_month() {
        let cutoff = "2026-12-03T10:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let first = "2026-12-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(
            whole_months_before(cutoff.timestamp_millis()),
            first.timestamp_millis()
        );
        assert_eq!(
            whole_months_before(first.timestamp_millis()),
            first.timestamp_millis()
        );
    }
}
