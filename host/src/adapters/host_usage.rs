//! The `usage` import: aggregated usage for the installation's subscriptions,
//! streamed as dictionary-encoded column batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList, WasmStr};

use super::contract::WORLD_VERSION;
use super::contract::tally::billing::types::{
    Granularity as WitGranularity, Meter as WitMeter, Window,
};
use super::contract::tally::billing::usage::{QueryError, UsageBatch};
use super::sandbox::{MAX_OPEN_CURSORS, RunState, SubscriptionGrant};
use crate::store::{AggregateQuery, AggregateRow, Position, Store, SubscriptionScope};
use crate::text::truncate;
use crate::usage::record::{MAX_ID_LEN, check_id};
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
    /// Access to `store` for a run starting at `now` (by the store's clock),
    /// on the current tokio runtime.
    pub fn new(
        store: Arc<dyn Store>,
        catalog: Arc<MeterCatalog>,
        grant: SubscriptionGrant,
        now: DateTime<Utc>,
    ) -> Self {
        UsageAccess {
            store,
            catalog,
            grant,
            runtime: tokio::runtime::Handle::current(),
            rows_read: 0,
            now,
            store_failure: None,
            cancelled: Arc::default(),
        }
    }
}

/// Most subscription ids one `query` may name.
pub const MAX_QUERY_SUBSCRIPTIONS: usize = 1_000;
/// What the host keeps per open cursor beyond its subscription list.
const CURSOR_OVERHEAD: usize = 1 << 10;
/// What the host keeps per subscription id of a cursor beyond its bytes.
const ID_OVERHEAD: usize = std::mem::size_of::<String>();
/// Decoded instance fields a cursor keeps between batches (a cache, emptied
/// when full).
const MAX_CACHED_INSTANCE_BYTES: usize = 4 << 20;

/// A streaming read: its queries, one per subscription scope, and where the
/// current one is.
pub struct UsageCursor {
    scopes: Vec<SubscriptionScope>,
    /// Index of the scope being read.
    current: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    granularity: Granularity,
    after: Option<Position>,
    encoder: BatchEncoder,
    /// Bytes charged to the run for this cursor, given back when it is dropped.
    charged: usize,
}

impl UsageCursor {
    /// The query of the scope being read, if any is left.
    fn query(&self) -> Option<AggregateQuery> {
        Some(AggregateQuery {
            scope: self.scopes.get(self.current)?.clone(),
            reported_start: self.start,
            reported_end: self.end,
            granularity: self.granularity,
            show_details: true,
            page_size: BATCH_ROWS,
        })
    }
}

/// Turns pages of aggregate rows into column batches. Keeps the resource
/// fields of each instance, decoded once (up to a bound) for the whole read.
#[derive(Default)]
pub struct BatchEncoder {
    instances: HashMap<i64, Arc<InstanceFields>>,
    cached_bytes: usize,
}

/// The fields of an instance that batches carry.
struct InstanceFields {
    resource_uri: String,
    location: String,
    tags: Vec<(String, String)>,
    additional_info: String,
}

impl InstanceFields {
    /// About what the cache holds for it: its text, a tag pair's two
    /// `String`s, the record and its map entry.
    fn bytes(&self) -> usize {
        let tags: usize = self.tags.iter().map(|(k, v)| k.len() + v.len() + 48).sum();
        self.resource_uri.len() + self.location.len() + self.additional_info.len() + tags + 128
    }
}

/// Defines the `usage` interface on `linker`. By hand rather than generated:
/// the subscription list of `query` is read from the adapter's memory one id
/// at a time, after its length is checked, so that a huge list costs the host
/// nothing.
pub fn add_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    let mut usage = linker.instance(&format!("tally:billing/usage@{WORLD_VERSION}"))?;
    usage.resource(
        "cursor",
        ResourceType::host::<UsageCursor>(),
        |mut store, rep| store.data_mut().close_cursor(Resource::new_own(rep)),
    )?;
    usage.func_wrap(
        "query",
        |mut store: StoreContextMut<'_, RunState>,
         (window, granularity, subscriptions): (
            Window,
            WitGranularity,
            Option<WasmList<WasmStr>>,
        )| {
            let asked = match subscriptions {
                None => None,
                Some(list) => match read_subscriptions(&mut store, &list)? {
                    Ok(ids) => Some(ids),
                    Err(refused) => return Ok((Err(refused),)),
                },
            };
            Ok((store.data_mut().query(window, granularity, asked)?,))
        },
    )?;
    usage.func_wrap("meters", |store: StoreContextMut<'_, RunState>, (): ()| {
        Ok((store.data().meters(),))
    })?;
    usage.func_wrap(
        "[method]cursor.next",
        |mut store: StoreContextMut<'_, RunState>, (cursor,): (Resource<UsageCursor>,)| {
            Ok((store.data_mut().next_batch(cursor)?,))
        },
    )?;
    Ok(())
}

/// The subscription ids of a query, read from the adapter's memory: refused
/// (out of scope) when there are too many, or one is longer than any stored id.
fn read_subscriptions(
    store: &mut StoreContextMut<'_, RunState>,
    list: &WasmList<WasmStr>,
) -> wasmtime::Result<Result<Vec<String>, QueryError>> {
    if list.len() > MAX_QUERY_SUBSCRIPTIONS {
        return Ok(Err(QueryError::OutOfScope(format!(
            "the query names {} subscriptions; at most {MAX_QUERY_SUBSCRIPTIONS} per query",
            list.len()
        ))));
    }
    let mut ids = Vec::with_capacity(list.len());
    for index in 0..list.len() {
        let id = list
            .get(&mut *store, index)
            .expect("an index below the list's length")?;
        let id = id.to_str(&*store)?;
        // An id no record could have (a NUL, say) is refused here, for good:
        // the database would only fail the read as if it were transient.
        if let Err(why) = check_id(&id, MAX_ID_LEN) {
            return Ok(Err(QueryError::OutOfScope(format!(
                "subscription '{}' is not a valid id: {why}",
                truncate(&id, 64)
            ))));
        }
        ids.push(id.into_owned());
    }
    Ok(Ok(ids))
}

impl RunState {
    /// `usage.query`: a cursor over `window`, for the asked subscriptions or
    /// the installation's whole scope.
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
        if self.open_cursors >= MAX_OPEN_CURSORS {
            return Err(wasmtime::format_err!(
                "the adapter opened more than {MAX_OPEN_CURSORS} usage cursors at once (drop the ones it has read)"
            ));
        }
        let charged = CURSOR_OVERHEAD
            + scopes
                .iter()
                .map(|scope| match scope {
                    SubscriptionScope::One(id) => id.len() + ID_OVERHEAD,
                    SubscriptionScope::All => ID_OVERHEAD,
                })
                .sum::<usize>();
        self.limiter
            .charge_host(charged, "opening a usage cursor")?;
        self.open_cursors += 1;
        let cursor = UsageCursor {
            scopes,
            current: 0,
            start,
            end,
            granularity,
            after: None,
            encoder: BatchEncoder::default(),
            charged,
        };
        Ok(Ok(self.table().push(cursor)?))
    }

    /// `usage.meters`: the meter catalog.
    fn meters(&self) -> Vec<WitMeter> {
        let Some(usage) = &self.usage else {
            return Vec::new();
        };
        let meter = |m: &Arc<crate::usage::Meter>| WitMeter {
            id: m.id.clone(),
            name: m.name.clone(),
            category: m.category.clone(),
            unit: m.unit.clone(),
        };
        usage.catalog.all().iter().map(meter).collect()
    }

    /// `cursor.next`: the next non-empty page as a batch. Checks the run's
    /// deadline and cancel switch before each store query and while it waits,
    /// since a read over many subscriptions may query the store many times
    /// without returning to wasm.
    fn next_batch(
        &mut self,
        cursor: Resource<UsageCursor>,
    ) -> wasmtime::Result<Option<UsageBatch>> {
        let usage = self
            .usage
            .as_mut()
            .ok_or_else(|| wasmtime::format_err!("a cursor outlived its export"))?;
        let (store, runtime) = (usage.store.clone(), usage.runtime.clone());
        let cursor = self.table.get_mut(&cursor)?;
        let mut queries = 0u64;
        while let Some(query) = cursor.query() {
            let waited = self.clock.check().and_then(|()| {
                self.clock
                    .block_on(&runtime, store.aggregates(&query, cursor.after))
            });
            let read = match waited {
                Ok(read) => read,
                Err(stop) => {
                    // Said in the run's log: where the time went.
                    let message = format!(
                        "stopped inside cursor.next after {queries} store queries: {}",
                        self.clock.why_stopped()
                    );
                    self.log
                        .lock()
                        .expect("run log lock")
                        .push("error", message);
                    return Err(stop);
                }
            };
            queries += 1;
            let page = match read {
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
                    cursor.current += 1;
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

    /// A cursor dropped: what it held is given back to the run.
    fn close_cursor(&mut self, cursor: Resource<UsageCursor>) -> wasmtime::Result<()> {
        let cursor = self.table.delete(cursor)?;
        self.limiter.release_host(cursor.charged);
        self.open_cursors = self.open_cursors.saturating_sub(1);
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
                    if self.cached_bytes > MAX_CACHED_INSTANCE_BYTES {
                        instances.clear();
                        self.cached_bytes = 0;
                    }
                    self.cached_bytes += fields.bytes();
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
