//! The single writer: one thread owns the write connection and commits
//! concurrent ingest requests together (group commit), so that many small
//! requests share one fsync while each stays all-or-nothing.
//!
//! Two lanes feed it. Control writes (export claims, lease renewals, finishes,
//! meters, tokens) go first: one waits at most for the ingest transaction in
//! progress, never behind queued ingest requests. Ingest requests are bounded
//! by the API's limits on records and hour parts, and a group commit by
//! [`GROUP_HOUR_PART_LIMIT`], so that transaction is short.

use std::collections::HashMap;
use std::hash::Hash;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::store::shares::Shares;
use crate::store::{IngestReceipt, StoreError, retention};
use crate::usage::split::hour_count;
use crate::usage::{RecordError, UsageRecord};

/// Most hour parts (hourly upserts) committed in one group transaction; more
/// requests wait for the next one. Two default-size requests: long enough to
/// share an fsync, short enough that a control write waiting for it is served
/// soon.
const GROUP_HOUR_PART_LIMIT: usize = 2 * crate::usage::batch::DEFAULT_MAX_HOUR_PARTS;
/// Cached subscription and instance keys kept before the cache starts over.
const CACHE_LIMIT: usize = 1_000_000;
/// Jobs that may queue in each lane before senders wait (back-pressure).
const LANE_CAPACITY: usize = 256;

/// A write other than ingest; the closure replies itself.
pub(super) type ControlWrite = Box<dyn FnOnce(&mut Connection) + Send>;

/// Records to store atomically; the reply comes once they are durable.
pub(super) struct IngestJob {
    pub records: Vec<UsageRecord>,
    pub reply: oneshot::Sender<Result<IngestReceipt, StoreError>>,
}

impl IngestJob {
    /// Hourly upserts the job costs.
    fn hour_parts(&self) -> usize {
        self.records
            .iter()
            .map(|r| hour_count(r.usage_start, r.usage_end))
            .sum()
    }
}

/// The writer's two queues.
pub(super) struct Lanes {
    /// Served first.
    pub control: mpsc::Sender<ControlWrite>,
    pub ingest: mpsc::Sender<IngestJob>,
}

impl Lanes {
    /// Whether the writer thread has stopped.
    pub fn is_closed(&self) -> bool {
        self.ingest.is_closed()
    }
}

/// Starts the writer thread on `conn`.
pub(super) fn start(conn: Connection) -> std::io::Result<Lanes> {
    let (control, control_jobs) = mpsc::channel(LANE_CAPACITY);
    let (ingest, ingest_jobs) = mpsc::channel(LANE_CAPACITY);
    std::thread::Builder::new()
        .name("sqlite-writer".into())
        .spawn(move || run(conn, control_jobs, ingest_jobs))?;
    Ok(Lanes { control, ingest })
}

/// What the writer does next.
enum Next {
    Control(ControlWrite),
    Ingest(IngestJob),
}

/// Runs until every sender is gone.
fn run(
    mut conn: Connection,
    mut control: mpsc::Receiver<ControlWrite>,
    mut ingest: mpsc::Receiver<IngestJob>,
) {
    // Only to wait on both lanes at once; no I/O or timers run here.
    let waiter = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a current-thread runtime without drivers builds");
    let mut caches = Caches::default();
    loop {
        let next = match control.try_recv() {
            Ok(write) => Next::Control(write),
            Err(_) => {
                let next = waiter.block_on(async {
                    tokio::select! {
                        biased;
                        Some(write) = control.recv() => Some(Next::Control(write)),
                        Some(job) = ingest.recv() => Some(Next::Ingest(job)),
                        else => None,
                    }
                });
                match next {
                    Some(next) => next,
                    None => return,
                }
            }
        };
        let first = match next {
            Next::Control(write) => {
                write(&mut conn);
                continue;
            }
            Next::Ingest(job) => job,
        };
        let mut parts = first.hour_parts();
        let mut group = vec![first];
        // A control write that arrives meanwhile ends the group: it goes next.
        while parts < GROUP_HOUR_PART_LIMIT && control.is_empty() {
            match ingest.try_recv() {
                Ok(job) => {
                    parts += job.hour_parts();
                    group.push(job);
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut caches, group);
    }
}

fn commit_group(conn: &mut Connection, caches: &mut Caches, group: Vec<IngestJob>) {
    let now = crate::clock::now();
    match write_group(conn, caches, &group, now) {
        Ok(Written::Committed(outcomes)) => {
            caches.keep_pending();
            for (job, outcome) in group.into_iter().zip(outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Ok(Written::SumOverflow(_)) if group.len() > 1 => {
            // One request's sums would pass f64::MAX: find it by committing each alone.
            caches.forget_pending();
            for job in group {
                commit_group(conn, caches, vec![job]);
            }
        }
        Ok(Written::SumOverflow(index)) => {
            caches.forget_pending();
            let refused = StoreError::Conflicts(vec![RecordError::sum_overflow(index)]);
            for job in group {
                let _ = job.reply.send(Err(refused.duplicate()));
            }
        }
        Err(error) => {
            caches.forget_pending();
            tracing::error!(error = format!("{error:#}"), "ingest transaction failed");
            let error = StoreError::from(error);
            for job in group {
                let _ = job.reply.send(Err(error.duplicate()));
            }
        }
    }
}

/// What a group's transaction came to.
enum Written {
    /// Committed, with each request's outcome.
    Committed(Vec<Result<IngestReceipt, StoreError>>),
    /// Rolled back: a sum would pass `f64::MAX`; the index of the first
    /// record that added to it, in its request.
    SumOverflow(usize),
}

/// One transaction for the group: each request's events in a savepoint of
/// its own (a conflicting request rolls back alone), then the shares of
/// every accepted request summed per key and upserted once, in key order:
/// concurrent requests for the same day and resources update their daily
/// rows once, not once each.
fn write_group(
    conn: &mut Connection,
    caches: &mut Caches,
    group: &[IngestJob],
    now: DateTime<Utc>,
) -> anyhow::Result<Written> {
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    // Read inside the write lock: no prune can run until this commits.
    let watermark: i64 = tx.query_row(retention::WATERMARK_SQL, [], |row| row.get(0))?;
    let mut outcomes = Vec::with_capacity(group.len());
    let mut shares = Shares::default();
    for job in group {
        if let Some(expired) = retention::expired(&job.records, watermark) {
            outcomes.push(Err(expired));
            continue;
        }
        let savepoint = tx.savepoint()?;
        match ingest_request(&savepoint, caches, &job.records, now)? {
            Ok(Accepted { receipt, fresh }) => {
                savepoint.commit()?;
                shares.add_fresh(&job.records, &fresh, now);
                outcomes.push(Ok(receipt));
            }
            Err(conflicts) => {
                drop(savepoint); // rolls this request back, keeps the others
                caches.forget_pending();
                outcomes.push(Err(StoreError::Conflicts(conflicts)));
            }
        }
    }
    if let Some(index) = write_shares(&shares, &tx)? {
        return Ok(Written::SumOverflow(index)); // dropping `tx` rolls it back
    }
    tx.commit()?;
    Ok(Written::Committed(outcomes))
}

/// A request whose events are stored.
struct Accepted {
    receipt: IngestReceipt,
    /// The events it added, as (index in the request, subscription key,
    /// instance id).
    fresh: Vec<(usize, i64, i64)>,
}

/// Stores one request's events, or returns its conflicts (then the caller
/// rolls its savepoint back); the fresh events are the caller's to add to
/// the aggregates.
///
/// Each event is inserted unless its id is taken (the unique index is the
/// idempotency check: no lookup before the insert); only an id already taken,
/// by an earlier request or earlier in this one, is read back to tell a
/// duplicate from a conflict.
fn ingest_request(
    conn: &Connection,
    caches: &mut Caches,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<Result<Accepted, Vec<RecordError>>> {
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO usage_events (subscription_key, event_id, meter_key, instance_id, quantity,
             usage_start_ms, usage_end_ms, reported_at_ms, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
         ON CONFLICT (subscription_key, event_id) DO NOTHING",
    )?;
    let mut find_event = conn.prepare_cached(
        "SELECT digest FROM usage_events WHERE subscription_key = ?1 AND event_id = ?2",
    )?;
    let (mut duplicates, mut conflicts) = (Vec::new(), Vec::new());
    let mut fresh = Vec::with_capacity(records.len());
    for (index, record) in records.iter().enumerate() {
        let subscription = caches.subscription_key(conn, &record.subscription_id, now)?;
        let instance = caches.instance_id(conn, subscription, record)?;
        let reported = record.reported_time.unwrap_or(now);
        let inserted = insert_event.execute(params![
            subscription,
            record.event_id,
            record.meter_key,
            instance,
            record.quantity,
            record.usage_start.timestamp_millis(),
            record.usage_end.timestamp_millis(),
            reported.timestamp_millis(),
            &record.digest[..],
        ])?;
        if inserted == 1 {
            fresh.push((index, subscription, instance));
            continue;
        }
        let stored: [u8; 16] =
            find_event.query_row(params![subscription, record.event_id], |row| row.get(0))?;
        if stored == record.digest {
            duplicates.push(index);
        } else {
            conflicts.push(RecordError::event_conflict(index, record));
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(conflicts));
    }
    let receipt = IngestReceipt {
        accepted: fresh.len(),
        duplicates,
        reported_time: now,
    };
    Ok(Ok(Accepted { receipt, fresh }))
}

/// Adds a group's summed shares to the stored rows. A sum that would pass
/// `f64::MAX` stops it: the index of the first record that added to that row
/// (in its request) is returned, and nothing of the group must be kept.
fn write_shares(shares: &Shares, conn: &Connection) -> rusqlite::Result<Option<usize>> {
    // An update whose sum would pass f64::MAX is skipped (no row
    // written): cheaper than reading every sum back.
    for (rows, sql) in [
            (
                &shares.hourly,
                "INSERT INTO usage_hourly (subscription_key, usage_hour, meter_key, instance_id, reported_hour, quantity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity
                 WHERE quantity + excluded.quantity <= ?7",
            ),
            (
                &shares.daily,
                "INSERT INTO usage_daily (subscription_key, usage_day, meter_key, instance_id, reported_day, quantity)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                 ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity
                 WHERE quantity + excluded.quantity <= ?7",
            ),
        ] {
            let mut upsert = conn.prepare_cached(sql)?;
            for (key, &(quantity, first)) in rows {
                let written = quantity.is_finite()
                    && upsert.execute(params![
                        key[0],
                        key[1],
                        key[2],
                        key[3],
                        key[4],
                        quantity,
                        f64::MAX
                    ])? == 1;
                if !written {
                    return Ok(Some(first));
                }
            }
        }
    let mut add_bounds = conn.prepare_cached(
            "INSERT INTO reported_hours (subscription_key, reported_hour, min_usage_hour, max_usage_hour, records)
             VALUES (?1, ?2, ?3, ?4, ?5)
             ON CONFLICT DO UPDATE SET min_usage_hour = min(min_usage_hour, excluded.min_usage_hour),
                                       max_usage_hour = max(max_usage_hour, excluded.max_usage_hour),
                                       records = records + excluded.records",
        )?;
    for (&(subscription, reported_hour), &(min, max, count)) in &shares.bounds {
        add_bounds.execute(params![subscription, reported_hour, min, max, count])?;
    }
    Ok(None)
}

/// Inserts the subscription if new; returns its key.
pub(super) fn subscription_key(
    conn: &Connection,
    id: &str,
    now: DateTime<Utc>,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO subscriptions (id, first_seen) VALUES (?1, ?2) ON CONFLICT (id) DO NOTHING",
    )?
    .execute(params![id, now.to_rfc3339()])?;
    conn.prepare_cached("SELECT key FROM subscriptions WHERE id = ?1")?
        .query_row([id], |row| row.get(0))
}

/// Keys of subscriptions and instances, so that a steady stream of records
/// does not look them up again. Keys written by a transaction stay pending
/// until it commits: a rolled-back key must never be reused.
#[derive(Default)]
struct Caches {
    subscriptions: KeyCache<String>,
    instances: KeyCache<[u8; 16]>,
}

impl Caches {
    fn subscription_key(
        &mut self,
        conn: &Connection,
        id: &str,
        now: DateTime<Utc>,
    ) -> rusqlite::Result<i64> {
        let cache_key = id.to_ascii_lowercase();
        if let Some(key) = self.subscriptions.get(&cache_key) {
            return Ok(key);
        }
        let key = subscription_key(conn, id, now)?;
        self.subscriptions.pending.insert(cache_key, key);
        Ok(key)
    }

    fn instance_id(
        &mut self,
        conn: &Connection,
        subscription: i64,
        record: &UsageRecord,
    ) -> rusqlite::Result<i64> {
        if let Some(id) = self.instances.get(&record.instance_digest) {
            return Ok(id);
        }
        conn.prepare_cached(
            "INSERT INTO instances (subscription_key, digest, resource_uri, location, instance_data, instance_data_json)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT (digest) DO NOTHING",
        )?
        .execute(params![
            subscription,
            &record.instance_digest[..],
            record.resource_uri,
            record.location,
            record.instance_data,
            serde_json::to_string(&record.instance_data).expect("a string serialises"),
        ])?;
        let id = conn
            .prepare_cached("SELECT id FROM instances WHERE digest = ?1")?
            .query_row([&record.instance_digest[..]], |row| row.get(0))?;
        self.instances.pending.insert(record.instance_digest, id);
        Ok(id)
    }

    fn keep_pending(&mut self) {
        self.subscriptions.keep_pending();
        self.instances.keep_pending();
    }

    fn forget_pending(&mut self) {
        self.subscriptions.pending.clear();
        self.instances.pending.clear();
    }
}

struct KeyCache<K> {
    committed: HashMap<K, i64>,
    pending: HashMap<K, i64>,
}

impl<K> Default for KeyCache<K> {
    fn default() -> Self {
        KeyCache {
            committed: HashMap::new(),
            pending: HashMap::new(),
        }
    }
}

impl<K: Hash + Eq> KeyCache<K> {
    fn get(&self, key: &K) -> Option<i64> {
        self.committed
            .get(key)
            .or_else(|| self.pending.get(key))
            .copied()
    }

    fn keep_pending(&mut self) {
        if self.committed.len() + self.pending.len() > CACHE_LIMIT {
            self.committed.clear();
        }
        self.committed.extend(self.pending.drain());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::usage::{MeterCatalog, UsageRecordInput, ValidationContext};

    fn record(meters: &MeterCatalog, event: usize) -> UsageRecord {
        let input: UsageRecordInput = serde_json::from_value(serde_json::json!({
            "eventId": format!("e{event}"), "subscriptionId": "sub", "resourceUri": "/vm",
            "meterId": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", "quantity": 1.0,
            "usageStartTime": "2024-05-01T00:00:00Z", "usageEndTime": "2024-05-01T01:00:00Z"
        }))
        .unwrap();
        let ctx = ValidationContext {
            meters,
            now: Utc::now(),
            may_set_reported_time: false,
            retention_cutoff: None,
        };
        input.validate(event, &ctx).unwrap()
    }

    #[test]
    fn a_control_write_queued_behind_ingest_requests_runs_before_them() {
        let mut conn = Connection::open_in_memory().unwrap();
        super::super::schema::migrate(&mut conn).unwrap();
        super::super::seed_documented_meters(&conn).unwrap();
        let meters = MeterCatalog::builtin_for_tests();
        let (control, control_jobs) = mpsc::channel::<ControlWrite>(LANE_CAPACITY);
        let (ingest, ingest_jobs) = mpsc::channel(LANE_CAPACITY);

        // Queued before the writer starts: eight ingest requests, then a lease renewal.
        let receipts: Vec<_> = (0..8)
            .map(|event| {
                let (reply, receipt) = oneshot::channel();
                let records = vec![record(&meters, event)];
                ingest.try_send(IngestJob { records, reply }).ok().unwrap();
                receipt
            })
            .collect();
        let (seen, events_seen) = oneshot::channel();
        control
            .try_send(Box::new(move |conn: &mut Connection| {
                let events: i64 = conn
                    .query_row("SELECT count(*) FROM usage_events", [], |row| row.get(0))
                    .unwrap();
                let _ = seen.send(events);
            }))
            .ok()
            .unwrap();
        drop((control, ingest));
        let writer = std::thread::spawn(move || run(conn, control_jobs, ingest_jobs));

        assert_eq!(
            events_seen.blocking_recv().unwrap(),
            0,
            "the control write ran before any queued ingest request"
        );
        for receipt in receipts {
            assert_eq!(receipt.blocking_recv().unwrap().unwrap().accepted, 1);
        }
        writer.join().unwrap();
    }
}
