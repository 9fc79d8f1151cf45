//! The `usage` import: aggregated usage for the installation's subscriptions,
//! streamed as dictionary-encoded column batches.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use serde_json::Value;
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList, WasmStr};

use super::contract::tally::billing::types::{
    Granularity as WitGranularity, Meter as WitMeter, Window,
};
use super::contract::tally::billing::usage::{QueryError, UsageBatch};
use super::limits::{MAX_OPEN_CURSORS, RunState, SubscriptionGrant};
use super::usage_read::UsageRead;
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
    /// Their digest and subscriptions.
    pub read: UsageRead,
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
            read: UsageRead::default(),
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

/// Defines the `usage` interface of the world `version` on `linker` (it is
/// the same in every version served). By hand rather than generated: the
/// subscription list of `query` is read from the adapter's memory one id at
/// a time, after its length is checked, so that a huge list costs the host
/// nothing.
pub fn add_to_linker(linker: &mut Linker<RunState>, version: &str) -> wasmtime::Result<()> {
    let mut usage = linker.instance(&format!("tally:billing/usage@{version}"))?;
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
    if let Err(refused) = check_subscription_count(list.len()) {
        return Ok(Err(refused));
    }
    let mut ids = Vec::with_capacity(list.len());
    for index in 0..list.len() {
        let id = list
            .get(&mut *store, index)
            .expect("an index below the list's length")?;
        let id = id.to_str(&*store)?;
        if let Err(refused) = check_subscription_id(&id) {
            return Ok(Err(refused));
        }
        ids.push(id.into_owned());
    }
    Ok(Ok(ids))
}

/// Refuses a query naming more than [`MAX_QUERY_SUBSCRIPTIONS`] subscriptions.
fn check_subscription_count(count: usize) -> Result<(), QueryError> {
    if count > MAX_QUERY_SUBSCRIPTIONS {
        return Err(QueryError::OutOfScope(format!(
            "the query names {count} subscriptions; at most {MAX_QUERY_SUBSCRIPTIONS} per query"
        )));
    }
    Ok(())
}

/// Refuses, for good, an id no record could have (a NUL, say, or over
/// [`MAX_ID_LEN`] bytes): the database would only fail the read as if it
/// were transient.
fn check_subscription_id(id: &str) -> Result<(), QueryError> {
    check_id(id, MAX_ID_LEN).map_err(|why| {
        QueryError::OutOfScope(format!(
            "subscription '{}' is not a valid id: {why}",
            truncate(id, 64)
        ))
    })
}

/// The bounds of a query's `window`: refused unless it is non-empty, on
/// `granularity`'s boundaries and closed by `now`.
fn window_bounds(
    window: Window,
    granularity: Granularity,
    now: DateTime<Utc>,
) -> Result<(DateTime<Utc>, DateTime<Utc>), QueryError> {
    let (Some(start), Some(end)) = (
        DateTime::from_timestamp(window.start, 0),
        DateTime::from_timestamp(window.end, 0),
    ) else {
        return Err(QueryError::InvalidWindow(
            "the window is out of range".into(),
        ));
    };
    if start >= end || !granularity.is_boundary(start) || !granularity.is_boundary(end) {
        return Err(QueryError::InvalidWindow(format!(
            "[{start}, {end}) is empty or not on {granularity:?} boundaries"
        )));
    }
    if end > now {
        return Err(QueryError::InvalidWindow(format!(
            "the window ends at {end}, after now"
        )));
    }
    Ok((start, end))
}

/// The scopes a cursor reads: the `asked` subscriptions, or the whole
/// `grant` when none are asked. An asked id outside the grant is refused,
/// with the message saying which.
fn cursor_scopes(
    asked: Option<Vec<String>>,
    grant: &SubscriptionGrant,
) -> Result<Vec<SubscriptionScope>, String> {
    match (asked, grant) {
        (None, SubscriptionGrant::All) => Ok(vec![SubscriptionScope::All]),
        (None, SubscriptionGrant::Only(ids)) => {
            Ok(ids.iter().cloned().map(SubscriptionScope::One).collect())
        }
        (Some(asked), grant) => {
            if let Some(refused) = asked.iter().find(|id| !grant.allows(id)) {
                return Err(format!(
                    "subscription '{refused}' is outside this installation's scope"
                ));
            }
            Ok(asked.into_iter().map(SubscriptionScope::One).collect())
        }
    }
}

/// What the host keeps for a cursor over `scopes`, charged to the run.
fn cursor_charge(scopes: &[SubscriptionScope]) -> usize {
    CURSOR_OVERHEAD
        + scopes
            .iter()
            .map(|scope| match scope {
                SubscriptionScope::One(id) => id.len() + ID_OVERHEAD,
                SubscriptionScope::All => ID_OVERHEAD,
            })
            .sum::<usize>()
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
        let (start, end) = match window_bounds(window, granularity, usage.now) {
            Ok(bounds) => bounds,
            Err(refused) => return Ok(Err(refused)),
        };
        let scopes = match cursor_scopes(subscriptions, &usage.grant) {
            Ok(scopes) => scopes,
            Err(message) => {
                self.log
                    .lock()
                    .expect("run log lock")
                    .push("error", message.clone());
                return Ok(Err(QueryError::OutOfScope(message)));
            }
        };
        if self.open_cursors >= MAX_OPEN_CURSORS {
            return Err(wasmtime::format_err!(
                "the adapter opened more than {MAX_OPEN_CURSORS} usage cursors at once (drop the ones it has read)"
            ));
        }
        let charged = cursor_charge(&scopes);
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
                let kept = usage.read.record(&batch);
                self.limiter
                    .charge_host(kept, "the subscriptions the run has read")?;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::TimeZone;

    use super::*;
    use crate::sandbox::limits::{Limits, RunClock};
    use crate::store::AggregateRow;
    use crate::store::Instance;
    use crate::store::sqlite::SqliteStore;
    use crate::usage::Meter;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).unwrap()
    }

    fn window(start: DateTime<Utc>, end: DateTime<Utc>) -> Window {
        Window {
            start: start.timestamp(),
            end: end.timestamp(),
        }
    }

    fn invalid_window(result: Result<(DateTime<Utc>, DateTime<Utc>), QueryError>) -> String {
        match result {
            Err(QueryError::InvalidWindow(reason)) => reason,
            other => panic!("not an invalid window: {other:?}"),
        }
    }

    fn out_of_scope<T: std::fmt::Debug>(result: Result<T, QueryError>) -> String {
        match result {
            Err(QueryError::OutOfScope(reason)) => reason,
            other => panic!("not out of scope: {other:?}"),
        }
    }

    #[test]
    fn a_query_names_at_most_1000_subscriptions() {
        check_subscription_count(MAX_QUERY_SUBSCRIPTIONS).unwrap();
        let reason = out_of_scope(check_subscription_count(MAX_QUERY_SUBSCRIPTIONS + 1));
        assert!(reason.contains("names 1001 subscriptions"), "{reason}");
    }

    #[test]
    fn a_subscription_id_no_record_can_have_is_refused_quoted_short() {
        check_subscription_id("5c4d7e0a-sub").unwrap();
        check_subscription_id(&"s".repeat(MAX_ID_LEN)).unwrap();
        for id in ["", " padded", "a\0b", "a\u{202e}b"] {
            out_of_scope(check_subscription_id(id));
        }
        let reason = out_of_scope(check_subscription_id(&"s".repeat(10_000)));
        assert!(reason.contains("longer than 128 bytes"), "{reason}");
        assert!(reason.len() < 200, "{} bytes", reason.len());
    }

    #[test]
    fn a_window_is_closed_non_empty_and_on_the_granularitys_boundaries() {
        let now = at(20, 3);
        let (start, end) =
            window_bounds(window(at(18, 0), at(19, 0)), Granularity::Daily, now).unwrap();
        assert_eq!((start, end), (at(18, 0), at(19, 0)));
        window_bounds(window(at(20, 2), at(20, 3)), Granularity::Hourly, now).unwrap();

        let reason = invalid_window(window_bounds(
            window(at(18, 5), at(19, 0)),
            Granularity::Daily,
            now,
        ));
        assert!(reason.contains("Daily boundaries"), "{reason}");
        let half_hour = Window {
            start: at(18, 0).timestamp(),
            end: at(18, 0).timestamp() + 1_800,
        };
        invalid_window(window_bounds(half_hour, Granularity::Hourly, now));
        invalid_window(window_bounds(
            window(at(19, 0), at(19, 0)),
            Granularity::Daily,
            now,
        ));
        invalid_window(window_bounds(
            window(at(19, 0), at(18, 0)),
            Granularity::Daily,
            now,
        ));
        let reason = invalid_window(window_bounds(
            window(at(20, 3), at(20, 4)),
            Granularity::Hourly,
            now,
        ));
        assert!(reason.contains("after now"), "{reason}");
        let far = Window {
            start: 0,
            end: i64::MAX,
        };
        let reason = invalid_window(window_bounds(far, Granularity::Hourly, now));
        assert!(reason.contains("out of range"), "{reason}");
    }

    #[test]
    fn a_cursor_reads_the_asked_subscriptions_or_the_whole_grant() {
        let one = |id: &str| SubscriptionScope::One(id.into());
        let grant = SubscriptionGrant::Only(vec!["sub-a".into(), "sub-b".into()]);
        assert_eq!(
            cursor_scopes(None, &SubscriptionGrant::All).unwrap(),
            [SubscriptionScope::All]
        );
        assert_eq!(
            cursor_scopes(None, &grant).unwrap(),
            [one("sub-a"), one("sub-b")]
        );
        // Ids compare ignoring case; the cursor reads them as asked.
        assert_eq!(
            cursor_scopes(Some(vec!["SUB-B".into()]), &grant).unwrap(),
            [one("SUB-B")]
        );
        let refused = cursor_scopes(Some(vec!["sub-a".into(), "sub-c".into()]), &grant);
        assert_eq!(
            refused.unwrap_err(),
            "subscription 'sub-c' is outside this installation's scope"
        );
        assert_eq!(
            cursor_scopes(Some(vec!["any".into()]), &SubscriptionGrant::All).unwrap(),
            [one("any")]
        );
    }

    #[test]
    fn a_cursor_is_charged_for_the_ids_it_holds() {
        let few = cursor_charge(&[SubscriptionScope::All]);
        let many: Vec<_> = (0..MAX_QUERY_SUBSCRIPTIONS)
            .map(|i| SubscriptionScope::One(format!("{i:0>128}")))
            .collect();
        assert!(few >= CURSOR_OVERHEAD);
        assert!(cursor_charge(&many) >= CURSOR_OVERHEAD + MAX_QUERY_SUBSCRIPTIONS * 128);
    }

    /// A run may hold 16 cursors at once; one more traps the adapter, and
    /// dropping one gives its place and its charge back.
    #[test]
    fn a_run_holds_at_most_16_cursors_at_once() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let _entered = runtime.enter();
        let data = tempfile::tempdir().unwrap();
        let store = Arc::new(SqliteStore::open(data.path()).unwrap());
        let catalog = Arc::new(MeterCatalog::builtin_for_tests());
        let usage = UsageAccess::new(store, catalog, SubscriptionGrant::All, Utc::now());
        let clock = RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: None,
        };
        let mut state = RunState::new(&Limits::default(), clock, Some(usage), None);
        let day = || (window(at(18, 0), at(19, 0)), WitGranularity::Daily);
        let mut cursors = Vec::new();
        for _ in 0..MAX_OPEN_CURSORS {
            let (window, granularity) = day();
            cursors.push(state.query(window, granularity, None).unwrap().unwrap());
        }
        let (window, granularity) = day();
        let trap = state.query(window, granularity, None).unwrap_err();
        assert!(
            trap.to_string().contains("more than 16 usage cursors"),
            "{trap}"
        );

        let held = state.limiter.peak;
        state.close_cursor(cursors.pop().unwrap()).unwrap();
        assert_eq!(state.open_cursors, MAX_OPEN_CURSORS - 1);
        let (window, granularity) = day();
        state.query(window, granularity, None).unwrap().unwrap();
        assert_eq!(
            state.limiter.peak, held,
            "the closed cursor's charge was given back"
        );
    }

    #[test]
    fn usage_is_readable_only_during_export() {
        let clock = RunClock {
            deadline: Instant::now() + Duration::from_secs(3_600),
            cancelled: None,
        };
        let mut state = RunState::new(&Limits::default(), clock, None, None);
        let answer = state
            .query(window(at(18, 0), at(19, 0)), WitGranularity::Daily, None)
            .unwrap();
        assert!(matches!(answer, Err(QueryError::Unavailable(_))));
        assert!(state.meters().is_empty());
    }

    fn meter(id: &str) -> Arc<Meter> {
        Arc::new(Meter {
            key: 1,
            id: id.into(),
            name: id.into(),
            category: "compute".into(),
            unit: "hours".into(),
            notes: String::new(),
        })
    }

    /// A stored instance: its `instanceData` as a JSON string literal.
    fn instance(key: i64, resources: serde_json::Value) -> Arc<Instance> {
        let data = serde_json::json!({ "Microsoft.Resources": resources }).to_string();
        Arc::new(Instance {
            key,
            location: String::new(),
            data_json: serde_json::to_string(&data).unwrap(),
        })
    }

    fn row(
        subscription: &str,
        meter: &Arc<Meter>,
        instance: &Arc<Instance>,
        hour: u32,
    ) -> AggregateRow {
        AggregateRow {
            subscription_id: subscription.into(),
            meter: meter.clone(),
            usage_start: at(18, hour),
            usage_end: at(18, hour + 1),
            quantity: f64::from(hour) + 0.5,
            instance: Some(instance.clone()),
        }
    }

    /// Each string of a batch is in its dictionary once; every row's columns
    /// index into it and read back as the row; a tag set is shared by the
    /// rows of its instance.
    #[test]
    fn a_batch_is_dictionary_encoded_and_reads_back_as_its_rows() {
        let vm = meter("vm-hours");
        let disk = meter("disk-gb");
        let web = instance(
            1,
            serde_json::json!({
                "resourceUri": "/subscriptions/sub-a/vms/web",
                "location": "local",
                "tags": { "costCentre": "cc-1", "env": "prod" },
                "additionalInfo": { "cores": 4 },
            }),
        );
        let bare = instance(
            2,
            serde_json::json!({ "resourceUri": "/subscriptions/sub-a/disks/d" }),
        );
        let rows = [
            row("sub-a", &vm, &web, 0),
            row("sub-a", &vm, &web, 1),
            row("sub-a", &disk, &bare, 0),
        ];
        let batch = BatchEncoder::default().encode(&rows).unwrap();

        let mut unique = batch.strings.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), batch.strings.len(), "{:?}", batch.strings);
        let text = |i: u32| batch.strings[i as usize].as_str();
        assert_eq!(
            batch
                .subscription_id
                .iter()
                .map(|&i| text(i))
                .collect::<Vec<_>>(),
            ["sub-a"; 3]
        );
        assert_eq!(
            batch.meter_id.iter().map(|&i| text(i)).collect::<Vec<_>>(),
            ["vm-hours", "vm-hours", "disk-gb"]
        );
        assert_eq!(text(batch.resource_uri[2]), "/subscriptions/sub-a/disks/d");
        assert_eq!(text(batch.location[0]), "local");
        assert_eq!(text(batch.additional_info[0]), r#"{"cores":4}"#);
        // Fields an instance lacks read as empty (additional info as `{}`).
        assert_eq!(
            (text(batch.location[2]), text(batch.additional_info[2])),
            ("", "{}")
        );

        assert_eq!(batch.tags, [0, 0, 1]);
        let tags: Vec<(&str, &str)> = batch.tag_sets[0]
            .iter()
            .map(|&(k, v)| (text(k), text(v)))
            .collect();
        assert_eq!(tags, [("costCentre", "cc-1"), ("env", "prod")]);
        assert!(batch.tag_sets[1].is_empty());

        assert_eq!(
            batch.usage_start,
            [at(18, 0), at(18, 1), at(18, 0)].map(|t| t.timestamp())
        );
        assert_eq!(batch.usage_end[1], at(18, 2).timestamp());
        assert_eq!(batch.quantity, [0.5, 1.5, 0.5]);
    }

    /// A guest decodes each batch by itself: the dictionary starts afresh.
    #[test]
    fn each_batch_has_its_own_dictionary() {
        let vm = meter("vm-hours");
        let web = instance(
            1,
            serde_json::json!({ "resourceUri": "/vms/web", "tags": { "a": "b" } }),
        );
        let mut encoder = BatchEncoder::default();
        let first = encoder.encode(&[row("sub-a", &vm, &web, 0)]).unwrap();
        let second = encoder.encode(&[row("sub-b", &vm, &web, 1)]).unwrap();
        assert!(first.strings.iter().any(|s| s == "sub-a"));
        assert!(!second.strings.iter().any(|s| s == "sub-a"));
        assert_eq!(second.strings[second.subscription_id[0] as usize], "sub-b");
        assert_eq!(second.tag_sets.len(), 1);
        let (k, v) = second.tag_sets[0][0];
        assert_eq!(
            (&*second.strings[k as usize], &*second.strings[v as usize]),
            ("a", "b")
        );
    }

    #[test]
    fn a_row_without_a_readable_instance_fails_the_read() {
        let vm = meter("vm-hours");
        let mut without = row("sub-a", &vm, &instance(1, serde_json::json!({})), 0);
        without.instance = None;
        assert!(BatchEncoder::default().encode(&[without]).is_err());
        let broken = Arc::new(Instance {
            key: 3,
            location: String::new(),
            data_json: "\"not json\"".into(),
        });
        assert!(
            BatchEncoder::default()
                .encode(&[row("sub-a", &vm, &broken, 0)])
                .is_err()
        );
    }
}
