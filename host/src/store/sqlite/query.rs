//! Aggregate queries: keyset paging over the aggregate tables' primary keys.
//!
//! A page walks subscriptions in key order; within one it reads the rows of the
//! reported window in (usage bucket, meter, instance) order straight off the
//! primary key, summing over reported buckets, starting after the previous
//! page's last row. No page re-reads what an earlier one returned.

use std::collections::HashMap;
use std::sync::Arc;

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::instances::InstanceCache;
use crate::store::paging::{USAGE_HOURS_SQL, page_sql};
use crate::store::{
    AggregatePage, AggregateQuery, AggregateRow, Instance, Position, SubscriptionScope,
};
use crate::usage::MeterCatalog;
use crate::usage::time::{Granularity, day_of_hour};

/// The instances with these keys, from the cache or the database.
fn instances_of(
    conn: &Connection,
    cache: &InstanceCache,
    keys: &[i64],
) -> anyhow::Result<HashMap<i64, Arc<Instance>>> {
    let (mut found, missing) = cache.lookup(keys);
    if missing.is_empty() {
        return Ok(found);
    }
    let mut select =
        conn.prepare_cached("SELECT instance_data_json, location FROM instances WHERE id = ?1")?;
    let mut loaded = Vec::with_capacity(missing.len());
    for key in missing {
        loaded.push(select.query_row([key], |row| {
            Ok(Instance {
                key,
                data_json: row.get(0)?,
                location: row.get(1)?,
            })
        })?);
    }
    cache.keep(loaded, &mut found);
    Ok(found)
}

/// Reads one page of `query`, starting after `after`.
pub(super) fn aggregates(
    conn: &Connection,
    catalog: &MeterCatalog,
    instances: &InstanceCache,
    query: &AggregateQuery,
    after: Option<Position>,
) -> anyhow::Result<AggregatePage> {
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
    let mut rows: Vec<(Position, AggregateRow)> = Vec::with_capacity(wanted);
    let mut instance_keys: Vec<i64> =
        Vec::with_capacity(if query.show_details { wanted } else { 0 });

    let sql = page_sql(granularity, query.show_details);
    for (subscription, subscription_id) in
        subscriptions(conn, &query.scope, after.map(|p| p.subscription))?
    {
        let Some((first_hour, last_hour)) =
            usage_hours_of_window(conn, subscription, reported_hours)?
        else {
            continue;
        };
        let (first, last) = match granularity {
            Granularity::Hourly => (first_hour, last_hour),
            Granularity::Daily => (day_of_hour(first_hour), day_of_hour(last_hour)),
        };
        let start = match after {
            Some(p) if p.subscription == subscription => (p.bucket, p.meter, p.instance),
            _ => (first, -1, -1),
        };
        let mut statement = conn.prepare_cached(&sql)?;
        let limit = (wanted - rows.len()) as i64;
        let mut cursor = if query.show_details {
            statement.query(params![
                subscription,
                start.0,
                start.1,
                start.2,
                last,
                reported.0,
                reported.1,
                limit
            ])?
        } else {
            statement.query(params![
                subscription,
                start.0,
                start.1,
                last,
                reported.0,
                reported.1,
                limit
            ])?
        };
        while let Some(row) = cursor.next()? {
            let bucket: i64 = row.get(0)?;
            let meter_key: i64 = row.get(1)?;
            let quantity: f64 = row.get(2)?;
            let instance: i64 = if query.show_details { row.get(3)? } else { -1 };
            let meter = catalog
                .by_key(meter_key)
                .ok_or_else(|| {
                    anyhow::anyhow!("meter key {meter_key} is missing from the catalog")
                })?
                .clone();
            let position = Position {
                subscription,
                bucket,
                meter: meter_key,
                instance,
            };
            if query.show_details {
                instance_keys.push(instance);
            }
            rows.push((
                position,
                AggregateRow {
                    subscription_id: subscription_id.clone(),
                    meter,
                    usage_start: granularity.start_of(bucket),
                    usage_end: granularity.start_of(bucket + 1),
                    quantity,
                    instance: None,
                },
            ));
        }
        if rows.len() >= wanted {
            break;
        }
    }

    if query.show_details {
        let found = instances_of(conn, instances, &instance_keys)?;
        for (position, row) in &mut rows {
            row.instance = found.get(&position.instance).cloned();
        }
    }
    let next = if rows.len() > query.page_size {
        rows.truncate(query.page_size);
        rows.last().map(|(position, _)| *position)
    } else {
        None
    };
    Ok(AggregatePage {
        rows: rows.into_iter().map(|(_, row)| row).collect(),
        next,
    })
}

/// The subscriptions a query visits, in key order, from `from` on.
fn subscriptions(
    conn: &Connection,
    scope: &SubscriptionScope,
    from: Option<i64>,
) -> anyhow::Result<Vec<(i64, String)>> {
    let from = from.unwrap_or(i64::MIN);
    let found = match scope {
        SubscriptionScope::One(id) => conn
            .prepare_cached("SELECT key, id FROM subscriptions WHERE id = ?1 AND key >= ?2")?
            .query_row(params![id, from], |row| Ok((row.get(0)?, row.get(1)?)))
            .optional()?
            .into_iter()
            .collect(),
        SubscriptionScope::All => conn
            .prepare_cached("SELECT key, id FROM subscriptions WHERE key >= ?1 ORDER BY key")?
            .query_map([from], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<Result<_, _>>()?,
    };
    Ok(found)
}

/// The first and last usage hour reported in `[start, end)` reported hours, if any.
fn usage_hours_of_window(
    conn: &Connection,
    subscription: i64,
    (start, end): (i64, i64),
) -> anyhow::Result<Option<(i64, i64)>> {
    let bounds = conn
        .prepare_cached(USAGE_HOURS_SQL)?
        .query_row(params![subscription, start, end], |row| {
            Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<i64>>(1)?))
        })?;
    Ok(match bounds {
        (Some(first), Some(last)) => Some((first, last)),
        _ => None,
    })
}
