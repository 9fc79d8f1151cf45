//! One ingest request on PostgreSQL, in two steps the group committer
//! (`group_commit.rs`) runs in its transaction: [`stage`] writes the
//! request's events (in a savepoint of its own) and sorts out duplicates and
//! conflicts; [`Aggregates`] then adds the fresh events of every request of
//! the group to the hourly, daily and reported-hour rows at once.
//!
//! Rows are written a statement per table (`unnest` of arrays), in key order
//! so that concurrent transactions lock rows in the same order. Safe beside
//! the same request retried through another replica: the unique index on
//! `(subscription, eventId, usage month)` makes the second a duplicate (a
//! retry has the same usage end, so the same month: `partitions.rs`).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Mutex;

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use deadpool_postgres::Transaction;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;

use super::partitions::usage_month;
use crate::store::shares::Shares;
use crate::store::{IngestReceipt, StoreError};
use crate::usage::{RecordError, UsageRecord};

/// Cached keys kept before the cache starts over.
const CACHE_LIMIT: usize = 1_000_000;

/// Committed keys: subscriptions by id as reported, instances by digest.
#[derive(Default)]
pub(super) struct KeyCache {
    subscriptions: HashMap<String, i64>,
    instances: HashMap<[u8; 16], i64>,
}

impl KeyCache {
    fn keep(&mut self, subscriptions: HashMap<String, i64>, instances: HashMap<[u8; 16], i64>) {
        if self.subscriptions.len() + self.instances.len() > CACHE_LIMIT {
            *self = KeyCache::default();
        }
        self.subscriptions.extend(subscriptions);
        self.instances.extend(instances);
    }
}

/// Keys a request added: subscriptions by id, instances by digest. Kept in
/// the cache only once their transaction commits.
#[derive(Default)]
pub(super) struct NewKeys {
    subscriptions: HashMap<String, i64>,
    instances: HashMap<[u8; 16], i64>,
}

impl KeyCache {
    /// Keeps the keys of a committed request.
    pub(super) fn keep_new(&mut self, keys: NewKeys) {
        self.keep(keys.subscriptions, keys.instances);
    }
}

/// A request whose events are written: what its receipt and the group's
/// aggregates need.
pub(super) struct Staged {
    /// Index of each fresh record, with its subscription key and instance id.
    fresh: Vec<(usize, i64, i64)>,
    duplicates: Vec<usize>,
    /// An event found stored by the insert but gone when read back.
    pub vanished: Option<String>,
    pub keys: NewKeys,
}

impl Staged {
    /// The receipt the request gets once the group commits.
    pub fn receipt(&self, now: DateTime<Utc>) -> IngestReceipt {
        IngestReceipt {
            accepted: self.fresh.len(),
            duplicates: self.duplicates.clone(),
            reported_time: now,
        }
    }

    /// The refusal when a sum of this request's would overflow: which record
    /// tipped it is not known here, so the request's first fresh one.
    pub fn sum_overflow(&self) -> StoreError {
        let first = self.fresh.first().map_or(0, |f| f.0);
        StoreError::Conflicts(vec![RecordError::sum_overflow(first)])
    }
}

/// Writes one request's events in `tx` (the request's savepoint); its
/// conflicts instead when there are any (the caller rolls the savepoint back).
/// Reported times missing from records are `now`, the database's clock.
pub(super) async fn stage(
    cache: &Mutex<KeyCache>,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<Result<Staged, StoreError>> {
    let subscriptions = subscription_keys(cache, tx, records, now).await?;
    let subscription_of = |record: &UsageRecord| subscriptions[&record.subscription_id];

    // Within the request: a repeated event is a duplicate of its first copy,
    // or a conflict when its content differs.
    let mut first_copy: HashMap<(i64, &str), usize> = HashMap::new();
    let mut candidates = Vec::new();
    let mut duplicates = Vec::new();
    let mut conflicts = Vec::new();
    for (index, record) in records.iter().enumerate() {
        match first_copy.get(&(subscription_of(record), record.event_id.as_str())) {
            None => {
                first_copy.insert((subscription_of(record), &record.event_id), index);
                candidates.push(index);
            }
            Some(&first) if records[first].digest == record.digest => duplicates.push(index),
            Some(_) => conflicts.push(RecordError::event_conflict(index, record)),
        }
    }
    let instances = instance_ids(cache, tx, records, &candidates, &subscription_of).await?;

    // Insert the events; the ones already there are duplicates or conflicts.
    candidates.sort_by_key(|&i| (subscription_of(&records[i]), records[i].event_id.as_str()));
    let column = |f: &(dyn Fn(&UsageRecord) -> i64 + Sync)| -> Vec<i64> {
        candidates.iter().map(|&i| f(&records[i])).collect()
    };
    let subscription_keys = column(&|r| subscription_of(r));
    let event_ids: Vec<&str> = candidates
        .iter()
        .map(|&i| records[i].event_id.as_str())
        .collect();
    let digests: Vec<&[u8]> = candidates.iter().map(|&i| &records[i].digest[..]).collect();
    let insert_events = tx
        .prepare_cached(
            "INSERT INTO usage_events (subscription_key, event_id, meter_key, instance_id, quantity,
                 usage_start_ms, usage_end_ms, reported_at_ms, digest, usage_month)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                 $5::float8[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[],
                 $10::bigint[])
             ON CONFLICT (subscription_key, event_id, usage_month) DO NOTHING
             RETURNING subscription_key, event_id",
        )
        .await?;
    let inserted = tx
        .query(
            &insert_events,
            &[
                &subscription_keys,
                &event_ids,
                &column(&|r| r.meter_key),
                &column(&|r| instances[&r.instance_digest]),
                &candidates
                    .iter()
                    .map(|&i| records[i].quantity)
                    .collect::<Vec<f64>>(),
                &column(&|r| r.usage_start.timestamp_millis()),
                &column(&|r| r.usage_end.timestamp_millis()),
                &column(&|r| r.reported_time.unwrap_or(now).timestamp_millis()),
                &digests,
                &column(&|r| usage_month(r.usage_end)),
            ],
        )
        .await?;
    let mut fresh = Vec::with_capacity(candidates.len());
    let mut known = Vec::new();
    if inserted.len() == candidates.len() {
        fresh = candidates;
    } else {
        let inserted: HashSet<(i64, &str)> = inserted
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        for index in candidates {
            let record = &records[index];
            if inserted.contains(&(subscription_of(record), record.event_id.as_str())) {
                fresh.push(index);
            } else {
                known.push(index);
            }
        }
    }
    let mut vanished = None;
    if !known.is_empty() {
        let find_events = tx
            .prepare_cached(
                "SELECT e.subscription_key, e.event_id, e.digest FROM usage_events e
                 JOIN unnest($1::bigint[], $2::text[], $3::bigint[])
                   AS k (subscription_key, event_id, usage_month)
                   USING (subscription_key, event_id, usage_month)",
            )
            .await?;
        let stored = tx
            .query(
                &find_events,
                &[
                    &known
                        .iter()
                        .map(|&i| subscription_of(&records[i]))
                        .collect::<Vec<_>>(),
                    &known
                        .iter()
                        .map(|&i| records[i].event_id.as_str())
                        .collect::<Vec<_>>(),
                    &known
                        .iter()
                        .map(|&i| usage_month(records[i].usage_end))
                        .collect::<Vec<_>>(),
                ],
            )
            .await?;
        let stored: HashMap<(i64, &str), &[u8]> = stored
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        for &index in &known {
            let record = &records[index];
            match stored.get(&(subscription_of(record), record.event_id.as_str())) {
                Some(digest) if digest[..] == record.digest[..] => duplicates.push(index),
                Some(_) => conflicts.push(RecordError::event_conflict(index, record)),
                // Deleted since the insert found it: pruned meanwhile, which
                // the watermark the group reads next refuses.
                None => vanished = Some(record.event_id.clone()),
            }
        }
    }
    if !conflicts.is_empty() {
        conflicts.sort_by_key(|c| c.index);
        return Ok(Err(StoreError::Conflicts(conflicts)));
    }
    duplicates.sort_unstable();
    fresh.sort_unstable();
    let fresh = fresh
        .into_iter()
        .map(|i| {
            let record = &records[i];
            (
                i,
                subscription_of(record),
                instances[&record.instance_digest],
            )
        })
        .collect();
    Ok(Ok(Staged {
        fresh,
        duplicates,
        vanished,
        keys: NewKeys {
            subscriptions,
            instances,
        },
    }))
}

/// The aggregate rows a group of requests adds to ([`Shares`]).
#[derive(Default)]
pub(super) struct Aggregates(Shares);

/// A sum that would pass `f64::MAX`: the group is refused as a whole.
pub(super) struct Overflow;

impl Aggregates {
    /// Adds each fresh event of a staged request to its hours and days.
    pub fn add(&mut self, records: &[UsageRecord], staged: &Staged, now: DateTime<Utc>) {
        self.0.add_fresh(records, &staged.fresh, now);
    }

    /// Adds the sums to the stored rows in `tx`. Every sum stays finite: the
    /// group's own are checked here, the stored ones by PostgreSQL, which
    /// refuses a float8 sum that overflows (the transaction is then lost).
    ///
    /// The three statements are pipelined (sent together, run in order, in
    /// one round trip): with the database on another machine each round
    /// trip costs the whole group its latency.
    pub async fn upsert(&self, tx: &Transaction<'_>) -> anyhow::Result<Result<(), Overflow>> {
        let shares = &self.0;
        if !shares.is_finite() {
            return Ok(Err(Overflow));
        }
        let upsert_sql = |table: &str, bucket: &str, reported: &str| {
            format!(
                "INSERT INTO {table} (subscription_key, {bucket}, meter_key, instance_id, {reported}, quantity)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                     $5::bigint[], $6::float8[])
                 ON CONFLICT (subscription_key, {bucket}, meter_key, instance_id, {reported})
                 DO UPDATE SET quantity = {table}.quantity + excluded.quantity"
            )
        };
        let hourly = tx
            .prepare_cached(&upsert_sql("usage_hourly", "usage_hour", "reported_hour"))
            .await?;
        let daily = tx
            .prepare_cached(&upsert_sql("usage_daily", "usage_day", "reported_day"))
            .await?;
        let bounds = tx
            .prepare_cached(
                "INSERT INTO reported_hours (subscription_key, reported_hour, min_usage_hour, max_usage_hour, records)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
                 ON CONFLICT (subscription_key, reported_hour) DO UPDATE
                 SET min_usage_hour = least(reported_hours.min_usage_hour, excluded.min_usage_hour),
                     max_usage_hour = greatest(reported_hours.max_usage_hour, excluded.max_usage_hour),
                     records = reported_hours.records + excluded.records",
            )
            .await?;
        let (hourly_rows, daily_rows) = (Columns::of(&shares.hourly), Columns::of(&shares.daily));
        let (hourly_params, daily_params) = (hourly_rows.params(), daily_rows.params());
        let bounds_rows = [
            shares.bounds.keys().map(|k| k.0).collect::<Vec<_>>(),
            shares.bounds.keys().map(|k| k.1).collect(),
            shares.bounds.values().map(|v| v.0).collect(),
            shares.bounds.values().map(|v| v.1).collect(),
            shares.bounds.values().map(|v| v.2).collect(),
        ];
        let bounds_params: Vec<&(dyn ToSql + Sync)> = bounds_rows
            .iter()
            .map(|c| c as &(dyn ToSql + Sync))
            .collect();
        // Polled in this order, so sent and run in this order (the tables'
        // order every committer takes its row locks in).
        let (hourly, daily, bounds) = tokio::join!(
            tx.execute(&hourly, &hourly_params),
            tx.execute(&daily, &daily_params),
            tx.execute(&bounds, &bounds_params),
        );
        // The first failure is the cause; the statements after it fail
        // only because the transaction was aborted.
        for upserted in [hourly, daily] {
            match upserted {
                Err(error) if error.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => {
                    return Ok(Err(Overflow));
                }
                upserted => upserted?,
            };
        }
        bounds?;
        Ok(Ok(()))
    }
}

/// An aggregate table's summed shares as the columns of its `unnest`.
struct Columns {
    keys: [Vec<i64>; 5],
    quantities: Vec<f64>,
}

impl Columns {
    fn of(rows: &BTreeMap<[i64; 5], (f64, usize)>) -> Self {
        Columns {
            keys: std::array::from_fn(|i| rows.keys().map(|k| k[i]).collect()),
            quantities: rows.values().map(|(q, _)| *q).collect(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> =
            self.keys.iter().map(|c| c as &(dyn ToSql + Sync)).collect();
        params.push(&self.quantities);
        params
    }
}

/// Keys of the request's subscriptions (by id as reported), inserting new ones.
async fn subscription_keys(
    cache: &Mutex<KeyCache>,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut keys = HashMap::new();
    let mut missing: Vec<&str> = Vec::new();
    {
        let cache = cache.lock().expect("key cache lock");
        for record in records {
            match cache.subscriptions.get(&record.subscription_id) {
                Some(&key) => {
                    keys.insert(record.subscription_id.clone(), key);
                }
                None => missing.push(&record.subscription_id),
            }
        }
    }
    if missing.is_empty() {
        return Ok(keys);
    }
    missing.sort_unstable();
    missing.dedup();
    let insert = tx
        .prepare_cached(
            "INSERT INTO subscriptions (id, first_seen) SELECT id, $2 FROM unnest($1::text[]) AS n (id)
             ON CONFLICT ((fold(id))) DO NOTHING",
        )
        .await?;
    tx.execute(&insert, &[&missing, &now.to_rfc3339()]).await?;
    // Matched as the unique index matches them: ids differing in case are one subscription.
    let find = tx
        .prepare_cached(
            "SELECT n.id, s.key FROM unnest($1::text[]) AS n (id)
             JOIN subscriptions s ON fold(s.id) = fold(n.id)",
        )
        .await?;
    for row in tx.query(&find, &[&missing]).await? {
        keys.insert(row.get(0), row.get(1));
    }
    if let Some(id) = missing.iter().find(|id| !keys.contains_key(**id)) {
        return Err(anyhow!("subscription '{id}' vanished while being ingested"));
    }
    Ok(keys)
}

/// Ids of the instances of `candidates`, inserting new ones.
async fn instance_ids(
    cache: &Mutex<KeyCache>,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    candidates: &[usize],
    subscription_of: &(dyn Fn(&UsageRecord) -> i64 + Sync),
) -> anyhow::Result<HashMap<[u8; 16], i64>> {
    let mut ids = HashMap::new();
    let mut missing: BTreeMap<[u8; 16], &UsageRecord> = BTreeMap::new();
    {
        let cache = cache.lock().expect("key cache lock");
        for &index in candidates {
            let record = &records[index];
            match cache.instances.get(&record.instance_digest) {
                Some(&id) => {
                    ids.insert(record.instance_digest, id);
                }
                None => {
                    missing.entry(record.instance_digest).or_insert(record);
                }
            }
        }
    }
    if missing.is_empty() {
        return Ok(ids);
    }
    let rows: Vec<&UsageRecord> = missing.values().copied().collect();
    let digests: Vec<&[u8]> = missing.keys().map(|d| &d[..]).collect();
    let insert = tx
        .prepare_cached(
            "INSERT INTO instances (subscription_key, digest, resource_uri, location, instance_data,
                 instance_data_json)
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[])
             ON CONFLICT (digest) DO NOTHING",
        )
        .await?;
    tx.execute(
        &insert,
        &[
            &rows
                .iter()
                .map(|r| subscription_of(r))
                .collect::<Vec<i64>>(),
            &digests,
            &rows
                .iter()
                .map(|r| r.resource_uri.as_str())
                .collect::<Vec<_>>(),
            &rows.iter().map(|r| r.location.as_str()).collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|r| r.instance_data.as_str())
                .collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|r| serde_json::to_string(&r.instance_data).expect("a string serialises"))
                .collect::<Vec<_>>(),
        ],
    )
    .await?;
    let find = tx
        .prepare_cached("SELECT digest, id FROM instances WHERE digest = ANY($1)")
        .await?;
    for row in tx.query(&find, &[&digests]).await? {
        let digest: Vec<u8> = row.get(0);
        let digest: [u8; 16] = digest
            .try_into()
            .map_err(|_| anyhow!("a stored instance digest is not 16 bytes"))?;
        ids.insert(digest, row.get(1));
    }
    Ok(ids)
}
