//! The `usage` import: aggregated usage for the installation's subscriptions,
//! streamed as dictionary-encoded column batches.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use chrono::{DateTime, Utc};
use wasmtime::StoreContextMut;
use wasmtime::component::{Linker, Resource, ResourceType, WasmList, WasmStr};

use super::contract::tally::billing::types::{
    Granularity as WitGranularity, Meter as WitMeter, Window,
};
use super::contract::tally::billing::usage::{QueryError, UsageBatch};
use super::limits::{MAX_OPEN_CURSORS, RunState, SubscriptionGrant};
use super::usage_batch::BatchEncoder;
use super::usage_read::UsageRead;
use crate::store::{AggregateQuery, Position, Store, SubscriptionScope};
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
                let kept = usage.read.record(&batch, self.limiter.room());
                self.limiter.charge_host(
                    kept,
                    "what the run has read (its subscriptions, the digest)",
                )?;
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

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::TimeZone;

    use super::*;
    use crate::sandbox::limits::{Limits, RunClock};
    use crate::store::sqlite::SqliteStore;

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
}
