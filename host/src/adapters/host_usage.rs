//! The `usage` import: aggregated usage for the installation's subscriptions,
//! streamed as dictionary-encoded column batches.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wasmtime::component::Resource;

use super::contract::tally::billing::types::{
    Granularity as WitGranularity, Meter as WitMeter, Window,
};
use super::contract::tally::billing::usage::{Host, HostCursor, QueryError, UsageBatch};
use super::sandbox::{RunState, SubscriptionGrant};
use crate::store::{AggregateQuery, AggregateRow, Position, Store, SubscriptionScope};
use crate::usage::{Granularity, MeterCatalog};

/// Rows in one batch handed to the adapter.
pub const BATCH_ROWS: usize = 4_096;

/// What a run may read, and how.
pub struct UsageAccess {
    pub store: Arc<dyn Store>,
    pub catalog: Arc<MeterCatalog>,
    pub grant: SubscriptionGrant,
    /// The runtime the store's futures run on (runs execute on blocking threads).
    pub runtime: tokio::runtime::Handle,
    /// Rows handed to the adapter so far.
    pub rows_read: u64,
    /// When the run started: windows must have closed before it.
    pub now: DateTime<Utc>,
    /// Set when the store failed mid-read: the run then fails as transient
    /// (the adapter is stopped; it could not have produced a whole export).
    pub store_failure: Option<String>,
    /// Set by the host to stop the run (its lease was lost): the sandbox
    /// traps within an epoch tick, whatever the adapter is doing.
    pub cancelled: Arc<AtomicBool>,
}

impl UsageAccess {
    /// Access to `store` for a run starting now, on the current tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<MeterCatalog>,
        grant: SubscriptionGrant,
    ) -> Self {
        UsageAccess {
            store,
            catalog,
            grant,
            runtime: tokio::runtime::Handle::current(),
            rows_read: 0,
            now: Utc::now(),
            store_failure: None,
            cancelled: Arc::default(),
        }
    }
}

/// A streaming read: the queries still to run and where the current one is.
pub struct UsageCursor {
    queries: VecDeque<AggregateQuery>,
    after: Option<Position>,
    encoder: BatchEncoder,
}

/// Turns pages of aggregate rows into column batches. Keeps the resource
/// fields of each instance, decoded once for the whole read.
#[derive(Default)]
pub struct BatchEncoder {
    instances: HashMap<i64, Arc<InstanceFields>>,
}

/// The fields of an instance that batches carry.
struct InstanceFields {
    resource_uri: String,
    location: String,
    tags: Vec<(String, String)>,
    additional_info: String,
}

impl Host for RunState {
    fn query(
        &mut self,
        window: Window,
        granularity: WitGranularity,
        subscriptions: Option<Vec<String>>,
    ) -> wasmtime::Result<Result<Resource<UsageCursor>, QueryError>> {
        let Some(usage) = &self.usage else {
            let reason = "usage is readable only during export".to_string();
            return Ok(Err(QueryError::Unavailable(reason)));
        };
        let granularity = match granularity {
            WitGranularity::Hourly => Granularity::Hourly,
            WitGranularity::Daily => Granularity::Daily,
        };
        let (Some(start), Some(end)) = (
            DateTime::from_timestamp(window.start, 0),
            DateTime::from_timestamp(window.end, 0),
        ) else {
            return Ok(Err(QueryError::InvalidWindow(
                "the window is out of range".into(),
            )));
        };
        if start >= end || !granularity.is_boundary(start) || !granularity.is_boundary(end) {
            return Ok(Err(QueryError::InvalidWindow(format!(
                "[{start}, {end}) is empty or not on {granularity:?} boundaries"
            ))));
        }
        if end > usage.now {
            return Ok(Err(QueryError::InvalidWindow(format!(
                "the window ends at {end}, after now"
            ))));
        }
        let scopes = match (subscriptions, &usage.grant) {
            (None, SubscriptionGrant::All) => vec![SubscriptionScope::All],
            (None, SubscriptionGrant::Only(ids)) => {
                ids.iter().cloned().map(SubscriptionScope::One).collect()
            }
            (Some(asked), grant) => {
                if let Some(refused) = asked.iter().find(|id| !grant.allows(id)) {
                    let message =
                        format!("subscription '{refused}' is outside this installation's scope");
                    self.log
                        .lock()
                        .expect("run log lock")
                        .push("error", message.clone());
                    return Ok(Err(QueryError::OutOfScope(message)));
                }
                asked.into_iter().map(SubscriptionScope::One).collect()
            }
        };
        let queries = scopes
            .into_iter()
            .map(|scope| AggregateQuery {
                scope,
                reported_start: start,
                reported_end: end,
                granularity,
                show_details: true,
                page_size: BATCH_ROWS,
            })
            .collect();
        let cursor = UsageCursor {
            queries,
            after: None,
            encoder: BatchEncoder::default(),
        };
        Ok(Ok(self.table().push(cursor)?))
    }

    fn meters(&mut self) -> wasmtime::Result<Vec<WitMeter>> {
        let Some(usage) = &self.usage else {
            return Ok(Vec::new());
        };
        let meter = |m: &Arc<crate::usage::Meter>| WitMeter {
            id: m.id.clone(),
            name: m.name.clone(),
            category: m.category.clone(),
            unit: m.unit.clone(),
        };
        Ok(usage.catalog.all().iter().map(meter).collect())
    }
}

impl HostCursor for RunState {
    fn next(&mut self, cursor: Resource<UsageCursor>) -> wasmtime::Result<Option<UsageBatch>> {
        let usage = self
            .usage
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("a cursor outlived its export"))?;
        let (store, runtime) = (usage.store.clone(), usage.runtime.clone());
        let cursor = self.table.get_mut(&cursor)?;
        while let Some(query) = cursor.queries.front() {
            let page = match runtime.block_on(store.aggregates(query, cursor.after)) {
                Ok(page) => page,
                Err(error) => {
                    let reason = format!("reading usage failed: {error}");
                    usage.store_failure = Some(reason.clone());
                    return Err(wasmtime::format_err!(reason));
                }
            };
            match page.next {
                Some(position) => cursor.after = Some(position),
                None => {
                    cursor.queries.pop_front();
                    cursor.after = None;
                }
            }
            if !page.rows.is_empty() {
                let batch = cursor.encoder.encode(&page.rows)?;
                usage.rows_read += page.rows.len() as u64;
                return Ok(Some(batch));
            }
        }
        Ok(None)
    }

    fn drop(&mut self, cursor: Resource<UsageCursor>) -> wasmtime::Result<()> {
        self.table.delete(cursor)?;
        Ok(())
    }
}

impl BatchEncoder {
    /// A column batch with a per-batch string dictionary.
    pub fn encode(&mut self, rows: &[AggregateRow]) -> wasmtime::Result<UsageBatch> {
        let instances = &mut self.instances;
        let mut batch = UsageBatch {
            strings: Vec::new(),
            subscription_id: Vec::with_capacity(rows.len()),
            meter_id: Vec::with_capacity(rows.len()),
            resource_uri: Vec::with_capacity(rows.len()),
            location: Vec::with_capacity(rows.len()),
            tags: Vec::with_capacity(rows.len()),
            additional_info: Vec::with_capacity(rows.len()),
            usage_start: Vec::with_capacity(rows.len()),
            usage_end: Vec::with_capacity(rows.len()),
            quantity: Vec::with_capacity(rows.len()),
            tag_sets: Vec::new(),
        };
        let mut dictionary: HashMap<String, u32> = HashMap::new();
        let mut intern = |strings: &mut Vec<String>, s: &str| -> u32 {
            if let Some(&i) = dictionary.get(s) {
                return i;
            }
            let i = strings.len() as u32;
            strings.push(s.to_owned());
            dictionary.insert(s.to_owned(), i);
            i
        };
        let mut tag_set_of_instance: HashMap<i64, u32> = HashMap::new();
        for row in rows {
            let instance = row
                .instance
                .as_ref()
                .ok_or_else(|| wasmtime::format_err!("a detailed row without instance"))?;
            let fields = match instances.get(&instance.key) {
                Some(fields) => fields.clone(),
                None => {
                    let fields = Arc::new(decode_instance(&instance.data_json)?);
                    instances.insert(instance.key, fields.clone());
                    fields
                }
            };
            batch
                .subscription_id
                .push(intern(&mut batch.strings, &row.subscription_id));
            batch
                .meter_id
                .push(intern(&mut batch.strings, &row.meter.id));
            batch
                .resource_uri
                .push(intern(&mut batch.strings, &fields.resource_uri));
            batch
                .location
                .push(intern(&mut batch.strings, &fields.location));
            batch
                .additional_info
                .push(intern(&mut batch.strings, &fields.additional_info));
            let tag_set = match tag_set_of_instance.get(&instance.key) {
                Some(&index) => index,
                None => {
                    let set = fields
                        .tags
                        .iter()
                        .map(|(k, v)| {
                            (intern(&mut batch.strings, k), intern(&mut batch.strings, v))
                        })
                        .collect();
                    batch.tag_sets.push(set);
                    let index = batch.tag_sets.len() as u32 - 1;
                    tag_set_of_instance.insert(instance.key, index);
                    index
                }
            };
            batch.tags.push(tag_set);
            batch.usage_start.push(row.usage_start.timestamp());
            batch.usage_end.push(row.usage_end.timestamp());
            batch.quantity.push(row.quantity);
        }
        Ok(batch)
    }
}

/// The resource fields of a stored `instanceData` literal.
fn decode_instance(data_json: &str) -> wasmtime::Result<InstanceFields> {
    let parse = || -> Option<InstanceFields> {
        let data: String = serde_json::from_str(data_json).ok()?;
        let value: Value = serde_json::from_str(&data).ok()?;
        let resources = value.get("Microsoft.Resources")?;
        let text = |key: &str| {
            resources
                .get(key)
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_owned()
        };
        let tags = resources
            .get("tags")
            .and_then(Value::as_object)
            .map(|tags| {
                tags.iter()
                    .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                    .collect()
            })
            .unwrap_or_default();
        let additional_info = resources
            .get("additionalInfo")
            .map(Value::to_string)
            .unwrap_or_else(|| "{}".into());
        Some(InstanceFields {
            resource_uri: text("resourceUri"),
            location: text("location"),
            tags,
            additional_info,
        })
    };
    parse().ok_or_else(|| wasmtime::format_err!("a stored instance is not valid instanceData"))
}
