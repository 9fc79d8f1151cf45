//! Aggregate queries: keyset paging over the aggregate tables' primary keys,
//! once for both databases, over a [`Sql`] executor.
//!
//! A page walks subscriptions in key order; within one it reads the rows of the
//! reported window in (usage bucket, meter, instance) order straight off the
//! primary key, summing over reported buckets, starting after the previous
//! page's last row. No page re-reads what an earlier one returned.
//!
//! [`read_page`] returns the rows with their meters as keys: the backend
//! resolves them against its catalog ([`PageRows::into_page`]), which on a
//! shared database may first need re-reading.

use std::sync::Arc;

use anyhow::anyhow;
use serde_json::value::RawValue;

use crate::store::instances::InstanceCache;
use crate::store::sql::{Dialect, Sql, Value};
use crate::store::{
    AggregatePage, AggregateQuery, AggregateRow, Instance, Position, SubscriptionScope,
};
use crate::usage::MeterCatalog;
use crate::usage::time::{Granularity, day_of_hour};

/// The first and last usage hour reported in `[$2, $3)` reported hours of subscription `$1`.
const USAGE_HOURS_SQL: &str = "SELECT MIN(min_usage_hour), MAX(max_usage_hour) FROM reported_hours
     WHERE subscription_key = $1 AND reported_hour >= $2 AND reported_hour < $3";

/// Instances loaded by one statement: a fixed count of parameters (the last
/// key repeated), so that one prepared statement serves every page.
const INSTANCE_BATCH: usize = 64;

/// One subscription's stored rows in key order (bucket, meter, instance,
/// reported bucket), after `($2, $3, $4, $5)`, at most `$9` of them.
///
/// Per instance (`details`), the rows of one bucket, meter and instance
/// (reported in several buckets: mostly one or two) are summed as they are
/// read, not by a `GROUP BY`: SQLite steps its aggregator for every row,
/// which made the grouped read twice the cost of this ordered one. Per
/// meter, a row sums every instance's (thousands of stored rows), which the
/// database's `GROUP BY` does cheaper than handing each to Rust; each such
/// row ends with the key past its group.
fn page_sql(granularity: Granularity, details: bool) -> String {
    let (table, bucket, reported) = match granularity {
        Granularity::Hourly => ("usage_hourly", "usage_hour", "reported_hour"),
        Granularity::Daily => ("usage_daily", "usage_day", "reported_day"),
    };
    let (columns, order) = if details {
        (
            format!("instance_id, {reported}, quantity"),
            format!("ORDER BY {bucket}, meter_key, instance_id, {reported}"),
        )
    } else {
        let past = i64::MAX;
        (
            format!("{past}, {past}, SUM(quantity)"),
            format!("GROUP BY {bucket}, meter_key ORDER BY {bucket}, meter_key"),
        )
    };
    format!(
        "SELECT {bucket}, meter_key, {columns}
         FROM {table}
         WHERE subscription_key = $1 AND ({bucket}, meter_key, instance_id, {reported}) > ($2, $3, $4, $5)
           AND {bucket} <= $6 AND {reported} >= $7 AND {reported} < $8
         {order}
         LIMIT $9"
    )
}

/// A row's quantity summed over its reported buckets as the database's own
/// `SUM` adds them, so that a page holds the bits a `GROUP BY` gave (an
/// export's digest covers them): SQLite's compensated sum
/// (Kahan-Babuska-Neumaier, from 0), PostgreSQL's plain one (from the
/// first value), both in key order.
#[derive(Debug, Clone, Copy)]
enum Sum {
    Compensated { sum: f64, error: f64 },
    Plain(f64),
}

impl Sum {
    fn of(dialect: Dialect, quantity: f64) -> Sum {
        match dialect {
            Dialect::Sqlite => {
                let mut sum = Sum::Compensated {
                    sum: 0.0,
                    error: 0.0,
                };
                sum.add(quantity);
                sum
            }
            Dialect::Postgres => Sum::Plain(quantity),
        }
    }

    fn add(&mut self, quantity: f64) {
        match self {
            Sum::Compensated { sum, error } => {
                let total = *sum + quantity;
                *error += if sum.abs() > quantity.abs() {
                    (*sum - total) + quantity
                } else {
                    (quantity - total) + *sum
                };
                *sum = total;
            }
            Sum::Plain(sum) => *sum += quantity,
        }
    }

    fn value(self) -> f64 {
        match self {
            Sum::Compensated { sum, error } if error.is_finite() => sum + error,
            Sum::Compensated { sum, .. } | Sum::Plain(sum) => sum,
        }
    }
}

/// A page read, its meters not yet resolved.
pub(crate) struct PageRows {
    granularity: Granularity,
    page_size: usize,
    /// Up to one row more than a page: whether another page follows.
    rows: Vec<PageRow>,
}

struct PageRow {
    position: Position,
    subscription_id: Arc<str>,
    quantity: Sum,
    instance: Option<Arc<Instance>>,
}

impl PageRows {
    /// Whether a row's meter is missing from `catalog` (added through
    /// another replica since this one last read it).
    pub(crate) fn meets_unknown_meter(&self, catalog: &MeterCatalog) -> bool {
        (self.rows.iter()).any(|row| catalog.by_key(row.position.meter).is_none())
    }

    /// The page, with the meters of `catalog`.
    pub(crate) fn into_page(mut self, catalog: &MeterCatalog) -> anyhow::Result<AggregatePage> {
        let next = if self.rows.len() > self.page_size {
            self.rows.truncate(self.page_size);
            self.rows.last().map(|row| row.position)
        } else {
            None
        };
        let granularity = self.granularity;
        let rows = (self.rows.into_iter())
            .map(|row| {
                let key = row.position.meter;
                let meter = catalog
                    .by_key(key)
                    .ok_or_else(|| anyhow!("meter key {key} is missing from the catalog"))?;
                let bucket = row.position.bucket;
                Ok(AggregateRow {
                    subscription_id: row.subscription_id,
                    meter: meter.clone(),
                    usage_start: granularity.start_of(bucket),
                    usage_end: granularity.start_of(bucket + 1),
                    quantity: row.quantity.value(),
                    instance: row.instance,
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(AggregatePage { rows, next })
    }
}

/// Reads one page of `query`, starting after `after`.
pub(crate) async fn read_page(
    db: &impl Sql,
    instances: &InstanceCache,
    query: &AggregateQuery,
    after: Option<Position>,
) -> anyhow::Result<PageRows> {
    let granularity = query.granularity;
    let reported = (
        granularity.bucket_of(query.reported_start),
        granularity.bucket_of(query.reported_end),
    );
    let reported_hours = (
        Granularity::Hourly.bucket_of(query.reported_start),
        Granularity::Hourly.bucket_of(query.reported_end),
    );
    // One more row than a page tells whether another page follows.
    let wanted = query.page_size + 1;
    let mut rows: Vec<PageRow> = Vec::with_capacity(wanted);

    let sql = page_sql(granularity, query.show_details);
    let dialect = db.dialect();
    let details = query.show_details;
    for (subscription, subscription_id) in
        subscriptions(db, &query.scope, after.map(|p| p.subscription)).await?
    {
        let Some((first_hour, last_hour)) =
            usage_hours_of_window(db, subscription, reported_hours).await?
        else {
            continue;
        };
        let subscription_id: Arc<str> = subscription_id.into();
        let (first, last) = match granularity {
            Granularity::Hourly => (first_hour, last_hour),
            Granularity::Daily => (day_of_hour(first_hour), day_of_hour(last_hour)),
        };
        // The stored key (bucket, meter, instance, reported bucket) to read
        // after: past every row of the previous page's last row.
        let mut from = match after {
            Some(p) if p.subscription == subscription => {
                let instance = if details { p.instance } else { i64::MAX };
                [p.bucket, p.meter, instance, i64::MAX]
            }
            _ => [first, -1, -1, -1],
        };
        // Each statement asks for the stored rows the rows still wanted
        // should take, by how many made each row so far (one at first: a
        // row is mostly one stored row); fewer than asked means the
        // subscription's rows are all read.
        let (mut stored, mut made) = (0, 0);
        loop {
            let missing = wanted - rows.len();
            let limit = (missing * stored).div_ceil(made.max(1)).max(missing) + 1;
            let before = rows.len();
            let mut read = 0;
            let mut params: Vec<Value> = vec![subscription.into()];
            params.extend(from.map(Value::from));
            params.extend([last, reported.0, reported.1, limit as i64].map(Value::from));
            db.for_each_row(&sql, &params, |row| {
                read += 1;
                from = [row.take(0)?, row.take(1)?, row.take(2)?, row.take(3)?];
                let quantity: f64 = row.take(4)?;
                let position = Position {
                    subscription,
                    bucket: from[0],
                    meter: from[1],
                    instance: if details { from[2] } else { -1 },
                };
                match rows.last_mut() {
                    Some(same) if same.position == position => same.quantity.add(quantity),
                    _ => rows.push(PageRow {
                        position,
                        subscription_id: subscription_id.clone(),
                        quantity: Sum::of(dialect, quantity),
                        instance: None,
                    }),
                }
                Ok(())
            })
            .await?;
            (stored, made) = (stored + read, made + rows.len() - before);
            if read < limit || rows.len() >= wanted {
                break;
            }
        }
        if rows.len() >= wanted {
            break;
        }
    }

    if query.show_details {
        let keys: Vec<i64> = rows.iter().map(|row| row.position.instance).collect();
        let found = instances_of(db, instances, &keys).await?;
        for (row, instance) in rows.iter_mut().zip(found) {
            row.instance = instance;
        }
    }
    Ok(PageRows {
        granularity,
        page_size: query.page_size,
        rows,
    })
}

/// The subscriptions a query visits, in key order, from `from` on.
async fn subscriptions(
    db: &impl Sql,
    scope: &SubscriptionScope,
    from: Option<i64>,
) -> anyhow::Result<Vec<(i64, String)>> {
    let from = Value::from(from.unwrap_or(i64::MIN));
    let found = match scope {
        SubscriptionScope::One(id) => {
            let dialect = db.dialect();
            let sql = format!(
                "SELECT key, id FROM subscriptions WHERE {} = {} AND key >= $2",
                dialect.fold("id"),
                dialect.fold("$1")
            );
            db.query(&sql, &[id.as_str().into(), from]).await?
        }
        SubscriptionScope::All => {
            db.query(
                "SELECT key, id FROM subscriptions WHERE key >= $1 ORDER BY key",
                &[from],
            )
            .await?
        }
    };
    (found.into_iter())
        .map(|mut row| Ok((row.take(0)?, row.take(1)?)))
        .collect()
}

/// The first and last usage hour reported in `[start, end)` reported hours, if any.
async fn usage_hours_of_window(
    db: &impl Sql,
    subscription: i64,
    (start, end): (i64, i64),
) -> anyhow::Result<Option<(i64, i64)>> {
    let mut bounds = db
        .query_one(
            USAGE_HOURS_SQL,
            &[subscription, start, end].map(Value::from),
        )
        .await?;
    Ok(match (bounds.take(0)?, bounds.take(1)?) {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}

/// The instance of each of `keys`, in their order, from the cache or the
/// database; `None` for a key with no instance row.
async fn instances_of(
    db: &impl Sql,
    cache: &InstanceCache,
    keys: &[i64],
) -> anyhow::Result<Vec<Option<Arc<Instance>>>> {
    let (mut found, missing) = cache.lookup(keys);
    if missing.is_empty() {
        return Ok(found);
    }
    let placeholders: Vec<String> = (1..=INSTANCE_BATCH).map(|n| format!("${n}")).collect();
    let sql = format!(
        "SELECT id, instance_data_json, location FROM instances WHERE id IN ({})",
        placeholders.join(", ")
    );
    let mut loaded = Vec::with_capacity(missing.len());
    for batch in missing.chunks(INSTANCE_BATCH) {
        let last = batch[batch.len() - 1];
        let params: Vec<Value> = (0..INSTANCE_BATCH)
            .map(|i| Value::from(batch.get(i).copied().unwrap_or(last)))
            .collect();
        for mut row in db.query(&sql, &params).await? {
            let key = row.take(0)?;
            loaded.push(Instance {
                key,
                data_json: usable_literal(key, row.take(1)?),
                location: row.take(2)?,
            });
        }
    }
    let loaded = cache.keep(loaded);
    for (instance, key) in found.iter_mut().zip(keys) {
        if instance.is_none() {
            *instance = loaded.get(key).cloned();
        }
    }
    Ok(found)
}

/// A stored `instanceData` literal as the usage API copies it: the JSON
/// value without the whitespace around it, or empty if it is not JSON, which
/// is logged here, once per load instead of once per row served.
fn usable_literal(key: i64, literal: String) -> String {
    match serde_json::from_str::<&RawValue>(&literal) {
        Ok(value) if value.get().len() == literal.len() => literal,
        Ok(value) => value.get().to_owned(),
        Err(_) => {
            tracing::error!(
                instance = key,
                "a stored instanceData literal is not valid JSON; its rows are served without it"
            );
            String::new()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::sql::{SqliteSql, finish_now};

    fn row(bucket: i64, meter: i64) -> PageRow {
        PageRow {
            position: Position {
                subscription: 1,
                bucket,
                meter,
                instance: -1,
            },
            subscription_id: "s".into(),
            quantity: Sum::Plain(1.0),
            instance: None,
        }
    }

    #[test]
    fn a_page_ends_at_its_size_and_names_where_the_next_starts() {
        let catalog = MeterCatalog::builtin_for_tests();
        let read = |rows| PageRows {
            granularity: Granularity::Daily,
            page_size: 2,
            rows,
        };
        let page = read(vec![row(1, 1), row(1, 2), row(2, 1)])
            .into_page(&catalog)
            .unwrap();
        assert_eq!(page.rows.len(), 2);
        assert_eq!(page.next.map(|p| (p.bucket, p.meter)), Some((1, 2)));
        assert_eq!(page.rows[1].meter.key, 2);
        assert_eq!(page.rows[1].usage_start, Granularity::Daily.start_of(1));

        let last = read(vec![row(1, 1), row(1, 2)])
            .into_page(&catalog)
            .unwrap();
        assert_eq!((last.rows.len(), last.next), (2, None));

        let unknown = read(vec![row(1, 1), row(1, 9_999)]);
        assert!(unknown.meets_unknown_meter(&catalog));
        assert!(unknown.into_page(&catalog).is_err());
    }

    /// Summed in Rust, a row's quantity has the bits SQLite's `SUM` gives
    /// over the same values in the same order, where a plain sum would not.
    #[test]
    fn compensated_sums_are_sqlites_own() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch("CREATE TABLE q (n INTEGER PRIMARY KEY, x REAL NOT NULL)")
            .unwrap();
        let cases: [&[f64]; 6] = [
            &[1.0],
            &[-0.0],
            &[0.1; 10],
            &[1e16, 1.0, -1e16, 1.0],
            &[1e308, 1e308, -1e308],
            &[0.3, 1e-17, 2.5e15, -0.7, 1.0 / 3.0],
        ];
        let mut differs = false;
        for values in cases {
            conn.execute("DELETE FROM q", []).unwrap();
            for (n, x) in values.iter().enumerate() {
                conn.execute(
                    "INSERT INTO q VALUES (?1, ?2)",
                    rusqlite::params![n as i64, x],
                )
                .unwrap();
            }
            let sqlite: f64 = conn
                .query_row("SELECT SUM(x) FROM q", [], |row| row.get(0))
                .unwrap();
            let mut sum = Sum::of(Dialect::Sqlite, values[0]);
            values[1..].iter().for_each(|&x| sum.add(x));
            assert_eq!(sum.value().to_bits(), sqlite.to_bits(), "{values:?}");
            let plain = values[1..].iter().fold(values[0], |a, &x| a + x);
            differs |= plain.to_bits() != sqlite.to_bits();
        }
        assert!(differs, "some case must tell the two sums apart");
    }

    #[test]
    fn stored_literals_are_kept_trimmed_or_dropped_when_not_json() {
        let kept = "\"{\\\"a\\\":\\\"\u{e9}\\u0001\\\"}\"";
        assert_eq!(usable_literal(1, kept.into()), kept);
        assert_eq!(usable_literal(1, " \"a\" \n".into()), "\"a\"");
        assert_eq!(usable_literal(1, "\"unterminated".into()), "");
        assert_eq!(usable_literal(1, String::new()), "");
    }

    #[test]
    fn instances_load_in_batches_whatever_their_count() {
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE instances (id INTEGER PRIMARY KEY, instance_data_json TEXT, location TEXT)",
        )
        .unwrap();
        let count = 2 * INSTANCE_BATCH as i64 + 3;
        for id in 1..=count {
            conn.execute(
                "INSERT INTO instances VALUES (?1, ?2, 'local')",
                rusqlite::params![id, format!("\"{id}\"")],
            )
            .unwrap();
        }
        let cache = InstanceCache::default();
        // Repeated keys, and one (0) with no instance row.
        let mut keys: Vec<i64> = (1..=count).rev().collect();
        keys.extend([1, 2, 0, 3]);
        let found = finish_now(instances_of(&SqliteSql(&conn), &cache, &keys))
            .unwrap()
            .unwrap();
        assert_eq!(found.len(), keys.len(), "one instance per key, in order");
        for (key, instance) in keys.iter().zip(&found) {
            match instance {
                Some(instance) => assert_eq!(instance.data_json, format!("\"{key}\"")),
                None => assert_eq!(*key, 0),
            }
        }
        assert!(found[keys.len() - 2].is_none());
        // Now from the cache alone (but the key that has no row).
        assert_eq!(cache.lookup(&keys).1, vec![0]);
    }
}
