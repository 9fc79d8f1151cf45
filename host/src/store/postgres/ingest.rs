//! Ingest on PostgreSQL: one transaction per request, safe beside the same
//! request retried through another replica.
//!
//! Rows are written a statement per table (`unnest` of arrays), in key order
//! so that concurrent requests lock rows in the same order. A deadlock or
//! serialisation failure rolls the request back and runs it again. Reported
//! times come from the database's clock, like the closing of export windows.

use std::collections::{BTreeMap, HashMap};

use anyhow::anyhow;
use chrono::{DateTime, Utc};
use tokio_postgres::Transaction;
use tokio_postgres::error::SqlState;

use super::PostgresStore;
use crate::store::sql::Dialect;
use crate::store::{IngestReceipt, StoreError, retention};
use crate::usage::split::{days_of, split_hourly};
use crate::usage::time::{Granularity, day_of_hour};
use crate::usage::{RecordError, UsageRecord};

/// Times a request is run again after a deadlock or serialisation failure.
const RETRIES: usize = 5;
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

/// Stores `records` atomically (see [`crate::store::Store::ingest`]).
pub(super) async fn ingest(
    store: &PostgresStore,
    records: Vec<UsageRecord>,
) -> Result<IngestReceipt, StoreError> {
    let stamped = records.iter().any(|r| r.reported_time.is_none());
    let mut tries = 0;
    loop {
        let outcome = async {
            let mut client = store.client().await?;
            let tx = client.transaction().await?;
            let now = database_now(&tx).await?;
            let outcome = write(store, &tx, &records, now).await?;
            match outcome {
                Ok((receipt, keys)) => {
                    // A request stamped in one hour must not commit in the next:
                    // that hour's window may be exported by then.
                    let hour = Granularity::Hourly.bucket_of(now);
                    if stamped && Granularity::Hourly.bucket_of(database_now(&tx).await?) != hour {
                        tx.rollback().await?;
                        return Ok(None);
                    }
                    tx.commit().await?;
                    let (subscriptions, instances) = keys;
                    store
                        .keys
                        .lock()
                        .expect("key cache lock")
                        .keep(subscriptions, instances);
                    anyhow::Ok(Some(Ok(receipt)))
                }
                Err(refused) => {
                    tx.rollback().await?;
                    Ok(Some(Err(refused)))
                }
            }
        }
        .await;
        match outcome {
            Ok(Some(result)) => return result,
            Ok(None) if tries < RETRIES => {
                tries += 1; // stamped again in the new hour
            }
            Ok(None) => {
                return Err(StoreError::Unavailable(anyhow!(
                    "the request kept straddling an hour boundary"
                )));
            }
            Err(error) if tries < RETRIES && is_retryable(&error) => {
                tries += 1;
                tracing::debug!(error = format!("{error:#}"), tries, "ingest runs again");
            }
            Err(error) => return Err(StoreError::from(error)),
        }
    }
}

/// The database's clock ([`Dialect::now_ms`]), which stamps reported times,
/// so that replicas' clocks need not agree.
async fn database_now(tx: &Transaction<'_>) -> anyhow::Result<DateTime<Utc>> {
    let ms: i64 = tx
        .query_one(&format!("SELECT {}", Dialect::Postgres.now_ms()), &[])
        .await?
        .get(0);
    crate::store::exports::time(ms)
}

fn is_retryable(error: &anyhow::Error) -> bool {
    error
        .downcast_ref::<tokio_postgres::Error>()
        .and_then(|e| e.code())
        .is_some_and(|code| {
            *code == SqlState::T_R_DEADLOCK_DETECTED || *code == SqlState::T_R_SERIALIZATION_FAILURE
        })
}

type NewKeys = (HashMap<String, i64>, HashMap<[u8; 16], i64>);

/// Writes one request in `tx`; its conflicts instead when there are any
/// (the caller rolls back).
async fn write(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<Result<(IngestReceipt, NewKeys), StoreError>> {
    let subscriptions = subscription_keys(store, tx, records, now).await?;
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
            Some(_) => conflicts.push(conflict(index, record)),
        }
    }
    let instances = instance_ids(store, tx, records, &candidates, &subscription_of).await?;

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
    let inserted = tx
        .query(
            "INSERT INTO usage_events (subscription_key, event_id, meter_key, instance_id, quantity,
                 usage_start_ms, usage_end_ms, reported_at_ms, digest)
             SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[],
                 $5::float8[], $6::bigint[], $7::bigint[], $8::bigint[], $9::bytea[])
             ON CONFLICT (subscription_key, event_id) DO NOTHING
             RETURNING subscription_key, event_id",
            &[
                &subscription_keys,
                &event_ids,
                &column(&|r| r.meter_key),
                &column(&|r| instances[&r.instance_digest]),
                &candidates.iter().map(|&i| records[i].quantity).collect::<Vec<f64>>(),
                &column(&|r| r.usage_start.timestamp_millis()),
                &column(&|r| r.usage_end.timestamp_millis()),
                &column(&|r| r.reported_time.unwrap_or(now).timestamp_millis()),
                &digests,
            ],
        )
        .await?;
    let inserted: std::collections::HashSet<(i64, String)> = inserted
        .iter()
        .map(|row| (row.get(0), row.get(1)))
        .collect();
    let (fresh, known): (Vec<usize>, Vec<usize>) = candidates.iter().partition(|&&i| {
        inserted.contains(&(subscription_of(&records[i]), records[i].event_id.clone()))
    });
    let mut vanished = None;
    if !known.is_empty() {
        let stored = tx
            .query(
                "SELECT e.subscription_key, e.event_id, e.digest FROM usage_events e
                 JOIN unnest($1::bigint[], $2::text[]) AS k (subscription_key, event_id)
                   USING (subscription_key, event_id)",
                &[
                    &known
                        .iter()
                        .map(|&i| subscription_of(&records[i]))
                        .collect::<Vec<_>>(),
                    &known
                        .iter()
                        .map(|&i| records[i].event_id.as_str())
                        .collect::<Vec<_>>(),
                ],
            )
            .await?;
        let stored: HashMap<(i64, String), Vec<u8>> = stored
            .iter()
            .map(|row| ((row.get(0), row.get(1)), row.get(2)))
            .collect();
        for &index in &known {
            let record = &records[index];
            let key = (subscription_of(record), record.event_id.clone());
            match stored.get(&key) {
                Some(digest) if digest[..] == record.digest[..] => duplicates.push(index),
                Some(_) => conflicts.push(conflict(index, record)),
                None => vanished = Some(index),
            }
        }
    }
    // Read after the events were written: a pruned event this request no
    // longer found was deleted by a transaction that also raised the
    // watermark, committed before this statement began.
    let watermark: i64 = tx.query_one(retention::WATERMARK_SQL, &[]).await?.get(0);
    if let Some(expired) = retention::expired(records, watermark) {
        return Ok(Err(expired));
    }
    if let Some(index) = vanished {
        return Err(anyhow!(
            "event '{}' vanished while being ingested",
            records[index].event_id
        ));
    }
    if !conflicts.is_empty() {
        conflicts.sort_by_key(|c| c.index);
        return Ok(Err(StoreError::Conflicts(conflicts)));
    }
    duplicates.sort_unstable();

    // Each fresh event's share of the hourly and daily aggregates, summed per
    // key first (one upsert may not touch a row twice), in key order.
    let mut hourly: BTreeMap<[i64; 5], f64> = BTreeMap::new();
    let mut daily: BTreeMap<[i64; 5], f64> = BTreeMap::new();
    // Per (subscription, reported hour): the usage hours touched and the records.
    let mut bounds: BTreeMap<(i64, i64), (i64, i64, i64)> = BTreeMap::new();
    for &index in &fresh {
        let record = &records[index];
        let (subscription, instance) =
            (subscription_of(record), instances[&record.instance_digest]);
        let reported_hour = Granularity::Hourly.bucket_of(record.reported_time.unwrap_or(now));
        let hours = split_hourly(record.quantity, record.usage_start, record.usage_end);
        for &(hour, quantity) in &hours {
            *hourly
                .entry([
                    subscription,
                    hour,
                    record.meter_key,
                    instance,
                    reported_hour,
                ])
                .or_default() += quantity;
        }
        for (day, quantity) in days_of(&hours) {
            let key = [
                subscription,
                day,
                record.meter_key,
                instance,
                day_of_hour(reported_hour),
            ];
            *daily.entry(key).or_default() += quantity;
        }
        let (first, last) = (hours[0].0, hours[hours.len() - 1].0);
        let entry = bounds
            .entry((subscription, reported_hour))
            .or_insert((first, last, 0));
        *entry = (entry.0.min(first), entry.1.max(last), entry.2 + 1);
    }
    // Every sum stays finite: the request's own here, the stored ones below
    // (PostgreSQL refuses a float8 sum that overflows).
    if let Some(&first) = fresh.first()
        && hourly
            .values()
            .chain(daily.values())
            .any(|q| !q.is_finite())
    {
        return Ok(Err(StoreError::Conflicts(vec![RecordError::sum_overflow(
            first,
        )])));
    }
    for (table, bucket, reported, rows) in [
        ("usage_hourly", "usage_hour", "reported_hour", &hourly),
        ("usage_daily", "usage_day", "reported_day", &daily),
    ] {
        let part = |i: usize| rows.keys().map(|k| k[i]).collect::<Vec<i64>>();
        let upserted = tx.execute(
            &format!(
                "INSERT INTO {table} (subscription_key, {bucket}, meter_key, instance_id, {reported}, quantity)
                 SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[],
                     $5::bigint[], $6::float8[])
                 ON CONFLICT (subscription_key, {bucket}, meter_key, instance_id, {reported})
                 DO UPDATE SET quantity = {table}.quantity + excluded.quantity"
            ),
            &[&part(0), &part(1), &part(2), &part(3), &part(4), &rows.values().copied().collect::<Vec<f64>>()],
        )
        .await;
        match upserted {
            Err(error) if error.code() == Some(&SqlState::NUMERIC_VALUE_OUT_OF_RANGE) => {
                // Which record tipped the sum is not known here: the request's first.
                return Ok(Err(StoreError::Conflicts(vec![RecordError::sum_overflow(
                    fresh[0],
                )])));
            }
            upserted => upserted?,
        };
    }
    tx.execute(
        "INSERT INTO reported_hours (subscription_key, reported_hour, min_usage_hour, max_usage_hour, records)
         SELECT * FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::bigint[])
         ON CONFLICT (subscription_key, reported_hour) DO UPDATE
         SET min_usage_hour = least(reported_hours.min_usage_hour, excluded.min_usage_hour),
             max_usage_hour = greatest(reported_hours.max_usage_hour, excluded.max_usage_hour),
             records = reported_hours.records + excluded.records",
        &[
            &bounds.keys().map(|k| k.0).collect::<Vec<_>>(),
            &bounds.keys().map(|k| k.1).collect::<Vec<_>>(),
            &bounds.values().map(|v| v.0).collect::<Vec<_>>(),
            &bounds.values().map(|v| v.1).collect::<Vec<_>>(),
            &bounds.values().map(|v| v.2).collect::<Vec<_>>(),
        ],
    )
    .await?;
    Ok(Ok((
        IngestReceipt {
            accepted: fresh.len(),
            duplicates,
            reported_time: now,
        },
        (subscriptions, instances),
    )))
}

fn conflict(index: usize, record: &UsageRecord) -> RecordError {
    RecordError::new(
        index,
        "eventId",
        format!(
            "event '{}' of subscription '{}' was already accepted with different content",
            record.event_id, record.subscription_id
        ),
    )
}

/// Keys of the request's subscriptions (by id as reported), inserting new ones.
async fn subscription_keys(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    now: DateTime<Utc>,
) -> anyhow::Result<HashMap<String, i64>> {
    let mut keys = HashMap::new();
    let mut missing: Vec<&str> = Vec::new();
    {
        let cache = store.keys.lock().expect("key cache lock");
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
    tx.execute(
        "INSERT INTO subscriptions (id, first_seen) SELECT id, $2 FROM unnest($1::text[]) AS n (id)
         ON CONFLICT ((fold(id))) DO NOTHING",
        &[&missing, &now.to_rfc3339()],
    )
    .await?;
    // Matched as the unique index matches them: ids differing in case are one subscription.
    for row in tx
        .query(
            "SELECT n.id, s.key FROM unnest($1::text[]) AS n (id)
             JOIN subscriptions s ON fold(s.id) = fold(n.id)",
            &[&missing],
        )
        .await?
    {
        keys.insert(row.get(0), row.get(1));
    }
    if let Some(id) = missing.iter().find(|id| !keys.contains_key(**id)) {
        return Err(anyhow!("subscription '{id}' vanished while being ingested"));
    }
    Ok(keys)
}

/// Ids of the instances of `candidates`, inserting new ones.
async fn instance_ids(
    store: &PostgresStore,
    tx: &Transaction<'_>,
    records: &[UsageRecord],
    candidates: &[usize],
    subscription_of: &(dyn Fn(&UsageRecord) -> i64 + Sync),
) -> anyhow::Result<HashMap<[u8; 16], i64>> {
    let mut ids = HashMap::new();
    let mut missing: BTreeMap<[u8; 16], &UsageRecord> = BTreeMap::new();
    {
        let cache = store.keys.lock().expect("key cache lock");
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
    tx.execute(
        "INSERT INTO instances (subscription_key, digest, resource_uri, location, instance_data,
             instance_data_json)
         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::text[], $4::text[], $5::text[], $6::text[])
         ON CONFLICT (digest) DO NOTHING",
        &[
            &rows.iter().map(|r| subscription_of(r)).collect::<Vec<i64>>(),
            &digests,
            &rows.iter().map(|r| r.resource_uri.as_str()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.location.as_str()).collect::<Vec<_>>(),
            &rows.iter().map(|r| r.instance_data.as_str()).collect::<Vec<_>>(),
            &rows
                .iter()
                .map(|r| serde_json::to_string(&r.instance_data).expect("a string serialises"))
                .collect::<Vec<_>>(),
        ],
    )
    .await?;
    for row in tx
        .query(
            "SELECT digest, id FROM instances WHERE digest = ANY($1)",
            &[&digests],
        )
        .await?
    {
        let digest: Vec<u8> = row.get(0);
        let digest: [u8; 16] = digest
            .try_into()
            .map_err(|_| anyhow!("a stored instance digest is not 16 bytes"))?;
        ids.insert(digest, row.get(1));
    }
    Ok(ids)
}
