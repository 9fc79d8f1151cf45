//! The single writer: one thread owns the write connection and commits
//! concurrent ingest requests together (group commit), so that many small
//! requests share one fsync while each stays all-or-nothing.

use std::collections::HashMap;
use std::hash::Hash;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::store::{IngestReceipt, StoreError};
use crate::usage::split::{days_of, split_hourly};
use crate::usage::time::{Granularity, day_of_hour};
use crate::usage::{RecordError, UsageRecord};

/// Most records committed in one transaction; more wait for the next one.
const GROUP_RECORD_LIMIT: usize = 50_000;
/// Cached subscription and instance keys kept before the cache starts over.
const CACHE_LIMIT: usize = 1_000_000;

/// Work for the writer thread.
pub(super) enum Job {
    /// Store records atomically and reply with the outcome once durable.
    Ingest {
        records: Vec<UsageRecord>,
        reply: oneshot::Sender<Result<IngestReceipt, StoreError>>,
    },
    /// Any other write; the closure replies itself.
    Apply(Box<dyn FnOnce(&mut Connection) + Send>),
}

/// Runs until every sender is gone.
pub(super) fn run(mut conn: Connection, mut jobs: mpsc::Receiver<Job>) {
    let mut caches = Caches::default();
    while let Some(job) = jobs.blocking_recv() {
        let (records, reply) = match job {
            Job::Apply(write) => {
                write(&mut conn);
                continue;
            }
            Job::Ingest { records, reply } => (records, reply),
        };
        let mut group = vec![(records, reply)];
        let mut count = group[0].0.len();
        let mut deferred = None;
        while count < GROUP_RECORD_LIMIT {
            match jobs.try_recv() {
                Ok(Job::Ingest { records, reply }) => {
                    count += records.len();
                    group.push((records, reply));
                }
                Ok(Job::Apply(write)) => {
                    deferred = Some(write);
                    break;
                }
                Err(_) => break,
            }
        }
        commit_group(&mut conn, &mut caches, group);
        if let Some(write) = deferred {
            write(&mut conn);
        }
    }
}

type Reply = oneshot::Sender<Result<IngestReceipt, StoreError>>;

fn commit_group(conn: &mut Connection, caches: &mut Caches, group: Vec<(Vec<UsageRecord>, Reply)>) {
    let now = Utc::now();
    let outcome = (|| -> anyhow::Result<Vec<Result<IngestReceipt, StoreError>>> {
        let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut outcomes = Vec::with_capacity(group.len());
        for (records, _) in &group {
            let savepoint = tx.savepoint()?;
            match ingest_request(&savepoint, caches, records, now)? {
                Ok(receipt) => {
                    savepoint.commit()?;
                    outcomes.push(Ok(receipt));
                }
                Err(conflicts) => {
                    drop(savepoint); // rolls this request back, keeps the others
                    caches.forget_pending();
                    outcomes.push(Err(StoreError::Conflicts(conflicts)));
                }
            }
        }
        tx.commit()?;
        Ok(outcomes)
    })();
    match outcome {
        Ok(outcomes) => {
            caches.keep_pending();
            for ((_, reply), outcome) in group.into_iter().zip(outcomes) {
                let _ = reply.send(outcome);
            }
        }
        Err(error) => {
            caches.forget_pending();
            tracing::error!(error = format!("{error:#}"), "ingest transaction failed");
            for (_, reply) in group {
                let _ = reply.send(Err(StoreError::Unavailable(anyhow!("{error:#}"))));
            }
        }
    }
}

/// Stores one request's records, or returns its conflicts (then the caller rolls back).
fn ingest_request(
    conn: &Connection,
    caches: &mut Caches,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<Result<IngestReceipt, Vec<RecordError>>> {
    // Phase 1: classify every record before writing any, so a conflict costs nothing.
    let mut find_event = conn.prepare_cached(
        "SELECT digest FROM usage_events WHERE subscription_key = ?1 AND event_id = ?2",
    )?;
    let mut in_request: HashMap<(i64, &str), [u8; 16]> = HashMap::new();
    let (mut fresh, mut duplicates, mut conflicts) = (Vec::new(), Vec::new(), Vec::new());
    for (index, record) in records.iter().enumerate() {
        let subscription = caches.subscription_key(conn, &record.subscription_id, now)?;
        let known = match in_request.get(&(subscription, record.event_id.as_str())) {
            Some(digest) => Some(*digest),
            None => find_event
                .query_row(params![subscription, record.event_id], |row| {
                    row.get::<_, [u8; 16]>(0)
                })
                .map(Some)
                .or_else(|e| {
                    if e == rusqlite::Error::QueryReturnedNoRows {
                        Ok(None)
                    } else {
                        Err(e)
                    }
                })?,
        };
        match known {
            None => {
                in_request.insert((subscription, &record.event_id), record.digest);
                fresh.push((index, subscription));
            }
            Some(digest) if digest == record.digest => duplicates.push(index),
            Some(_) => conflicts.push(RecordError::new(
                index,
                "eventId",
                format!(
                    "event '{}' of subscription '{}' was already accepted with different content",
                    record.event_id, record.subscription_id
                ),
            )),
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(conflicts));
    }

    // Phase 2: the event itself, then its share of every hourly and daily aggregate.
    let mut insert_event = conn.prepare_cached(
        "INSERT INTO usage_events (subscription_key, event_id, meter_key, instance_id, quantity,
             usage_start_ms, usage_end_ms, reported_at_ms, digest)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
    )?;
    let mut add_hourly = conn.prepare_cached(
        "INSERT INTO usage_hourly (subscription_key, usage_hour, meter_key, instance_id, reported_hour, quantity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity",
    )?;
    let mut add_daily = conn.prepare_cached(
        "INSERT INTO usage_daily (subscription_key, usage_day, meter_key, instance_id, reported_day, quantity)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
         ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity",
    )?;
    let mut usage_hours_by_report: HashMap<(i64, i64), (i64, i64)> = HashMap::new();
    for &(index, subscription) in &fresh {
        let record = &records[index];
        let instance = caches.instance_id(conn, subscription, record)?;
        let reported = record.reported_time.unwrap_or(now);
        insert_event.execute(params![
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
        let reported_hour = Granularity::Hourly.bucket_of(reported);
        let hours = split_hourly(record.quantity, record.usage_start, record.usage_end);
        for &(hour, quantity) in &hours {
            add_hourly.execute(params![
                subscription,
                hour,
                record.meter_key,
                instance,
                reported_hour,
                quantity
            ])?;
        }
        for (day, quantity) in days_of(&hours) {
            add_daily.execute(params![
                subscription,
                day,
                record.meter_key,
                instance,
                day_of_hour(reported_hour),
                quantity
            ])?;
        }
        let (first, last) = (hours[0].0, hours[hours.len() - 1].0);
        let bounds = usage_hours_by_report
            .entry((subscription, reported_hour))
            .or_insert((first, last));
        *bounds = (bounds.0.min(first), bounds.1.max(last));
    }
    let mut add_bounds = conn.prepare_cached(
        "INSERT INTO reported_hours (subscription_key, reported_hour, min_usage_hour, max_usage_hour)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT DO UPDATE SET min_usage_hour = min(min_usage_hour, excluded.min_usage_hour),
                                   max_usage_hour = max(max_usage_hour, excluded.max_usage_hour)",
    )?;
    for ((subscription, reported_hour), (min, max)) in usage_hours_by_report {
        add_bounds.execute(params![subscription, reported_hour, min, max])?;
    }
    Ok(Ok(IngestReceipt {
        accepted: fresh.len(),
        duplicates,
        reported_time: now,
    }))
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
