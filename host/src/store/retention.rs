//! Pruning `usage_events` ([`crate::retention`]), written once over [`Sql`]:
//! one batch per transaction, and the watermark that ingest checks.

use anyhow::Context;
use chrono::{DateTime, Utc};

use super::StoreError;
use super::sql::{Sql, Value};
use crate::retention::expired_reason;
use crate::usage::{RecordError, UsageRecord};

/// The store's retention watermark: records whose usage ended before it are
/// refused at ingest; 0 when nothing was ever pruned.
pub(super) const WATERMARK_SQL: &str =
    "SELECT CAST(coalesce(max(before_ms), 0) AS BIGINT) FROM event_retention";

/// Raises the watermark to `before_ms` and deletes at most `limit` events
/// whose usage ended before it (oldest first, through the index on
/// `usage_end_ms`), in the caller's transaction. The watermark is written in
/// the same transaction as the deletion: an ingest that no longer finds a
/// pruned event sees the watermark that refuses it.
pub(super) async fn prune_batch(
    db: &impl Sql,
    before_ms: i64,
    limit: usize,
) -> anyhow::Result<u64> {
    db.execute(
        "INSERT INTO event_retention (singleton, before_ms) VALUES (1, $1)
         ON CONFLICT (singleton) DO UPDATE SET before_ms = CASE
             WHEN excluded.before_ms > event_retention.before_ms THEN excluded.before_ms
             ELSE event_retention.before_ms END",
        &[before_ms.into()],
    )
    .await
    .context("raising the retention watermark")?;
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    db.execute(
        "DELETE FROM usage_events WHERE (subscription_key, event_id) IN (
             SELECT subscription_key, event_id FROM usage_events
             WHERE usage_end_ms < $1 ORDER BY usage_end_ms LIMIT $2)",
        &[before_ms.into(), Value::Int(limit)],
    )
    .await
    .context("deleting usage events past their retention")
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
