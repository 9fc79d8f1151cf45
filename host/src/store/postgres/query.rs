//! Aggregate queries on PostgreSQL: the same keyset paging as SQLite's
//! (`crate::store::sqlite`), over the same primary keys.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::anyhow;
use deadpool_postgres::GenericClient;

use super::PostgresStore;
use crate::store::paging::{USAGE_HOURS_SQL, page_sql};
use crate::store::{
    AggregatePage, AggregateQuery, AggregateRow, Instance, Position, SubscriptionScope,
};
use crate::usage::time::{Granularity, day_of_hour};

/// Reads one page of `query`, starting after `after`.
pub(super) async fn aggregates(
    store: &PostgresStore,
    query: &AggregateQuery,
    after: Option<Position>,
) -> anyhow::Result<AggregatePage> {
    let client = store.client().await?;
    let mut catalog = store.catalog(false).await?;
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

    let page = client
        .prepare_cached(&page_sql(granularity, query.show_details))
        .await?;
    for (subscription, subscription_id) in
        subscriptions(&client, &query.scope, after.map(|p| p.subscription)).await?
    {
        let bounds = client
            .query_one(
                USAGE_HOURS_SQL,
                &[&subscription, &reported_hours.0, &reported_hours.1],
            )
            .await?;
        let (Some(first_hour), Some(last_hour)) = (
            bounds.get::<_, Option<i64>>(0),
            bounds.get::<_, Option<i64>>(1),
        ) else {
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
        let limit = (wanted - rows.len()) as i64;
        let found = if query.show_details {
            client
                .query(
                    &page,
                    &[
                        &subscription,
                        &start.0,
                        &start.1,
                        &start.2,
                        &last,
                        &reported.0,
                        &reported.1,
                        &limit,
                    ],
                )
                .await?
        } else {
            client
                .query(
                    &page,
                    &[
                        &subscription,
                        &start.0,
                        &start.1,
                        &last,
                        &reported.0,
                        &reported.1,
                        &limit,
                    ],
                )
                .await?
        };
        for row in found {
            let bucket: i64 = row.get(0);
            let meter_key: i64 = row.get(1);
            let quantity: f64 = row.get(2);
            let instance: i64 = if query.show_details { row.get(3) } else { -1 };
            if catalog.by_key(meter_key).is_none() {
                // Added through another replica since this one last looked.
                catalog = store.catalog(true).await?;
            }
            let meter = catalog
                .by_key(meter_key)
                .ok_or_else(|| anyhow!("meter key {meter_key} is missing from the catalog"))?
                .clone();
            rows.push((
                Position {
                    subscription,
                    bucket,
                    meter: meter_key,
                    instance,
                },
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
        let keys: Vec<i64> = rows.iter().map(|(p, _)| p.instance).collect();
        let found = instances_of(store, &client, &keys).await?;
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
async fn subscriptions(
    client: &impl GenericClient,
    scope: &SubscriptionScope,
    from: Option<i64>,
) -> anyhow::Result<Vec<(i64, String)>> {
    let from = from.unwrap_or(i64::MIN);
    let rows = match scope {
        SubscriptionScope::One(id) => {
            client
                .query(
                    "SELECT key, id FROM subscriptions WHERE fold(id) = fold($1) AND key >= $2",
                    &[id, &from],
                )
                .await?
        }
        SubscriptionScope::All => {
            client
                .query(
                    "SELECT key, id FROM subscriptions WHERE key >= $1 ORDER BY key",
                    &[&from],
                )
                .await?
        }
    };
    Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
}

/// The instances with these keys, from the cache or the database.
async fn instances_of(
    store: &PostgresStore,
    client: &impl GenericClient,
    keys: &[i64],
) -> anyhow::Result<HashMap<i64, Arc<Instance>>> {
    let (mut found, missing) = store.instances.lookup(keys);
    if missing.is_empty() {
        return Ok(found);
    }
    let loaded = client
        .query(
            "SELECT id, instance_data_json, location FROM instances WHERE id = ANY($1)",
            &[&missing],
        )
        .await?
        .iter()
        .map(|row| Instance {
            key: row.get(0),
            data_json: row.get(1),
            location: row.get(2),
        })
        .collect();
    store.instances.keep(loaded, &mut found);
    Ok(found)
}
