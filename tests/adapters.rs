//! Billing adapters in the sandbox: the chargeback adapter's totals, and
//! hostile adapters stopped with clear reasons while the host carries on.
//!
//! The components are built from source by `adapters/build.sh` (run by
//! `tests/run.sh`); the tests fail, not skip, without them.

use crate::support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use tally::sandbox::contract::{ExportRequest, Granularity, Window};
use tally::sandbox::engine::load_file;
use tally::sandbox::host_usage::UsageAccess;
use tally::sandbox::limits::LogLine;
use tally::sandbox::{
    AdapterEngine, ExportOutcome, Limits, LoadedAdapter, Outbound, RunFailure, SubscriptionGrant,
    describe, run_export, validate_config,
};
use tally_usage_generator::Options;

struct Sandbox {
    host: TestHost,
    engine: Arc<AdapterEngine>,
    cache: tempfile::TempDir,
}

impl Sandbox {
    async fn new(options: Options) -> Self {
        let (host, _) = TestHost::with_sample(options).await;
        let cache = tempfile::tempdir().unwrap();
        let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
        Sandbox {
            host,
            engine,
            cache,
        }
    }

    fn load(&self, name: &str) -> LoadedAdapter {
        load_file(&self.engine, &component_path(name)).unwrap()
    }

    /// Runs an export on a blocking thread, as the host does.
    async fn export(
        &self,
        adapter: &LoadedAdapter,
        window: (&str, &str),
        config: serde_json::Value,
        grant: SubscriptionGrant,
        limits: Limits,
    ) -> ExportOutcome {
        let never = Arc::new(AtomicBool::new(false));
        self.export_until(adapter, window, config, grant, limits, never)
            .await
    }

    /// Runs an export that the host stops when `cancelled` is set.
    async fn export_until(
        &self,
        adapter: &LoadedAdapter,
        window: (&str, &str),
        config: serde_json::Value,
        grant: SubscriptionGrant,
        limits: Limits,
        cancelled: Arc<AtomicBool>,
    ) -> ExportOutcome {
        let time = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap().timestamp();
        let request = ExportRequest {
            run_id: "run-1".into(),
            window: Window {
                start: time(window.0),
                end: time(window.1),
            },
            granularity: Granularity::Daily,
            correction: false,
        };
        let mut usage = UsageAccess::new(
            self.host.store.clone(),
            self.host.store.meter_catalog().await.unwrap(),
            grant,
            self.host.store.clock().await.unwrap(),
        );
        usage.cancelled = cancelled;
        let (engine, adapter, config) = (self.engine.clone(), adapter.clone(), config.to_string());
        tokio::task::spawn_blocking(move || {
            run_export(
                &engine,
                &adapter,
                &request,
                &config,
                usage,
                Outbound::Allowed(Vec::new()),
                &limits,
            )
        })
        .await
        .unwrap()
    }
}

const WINDOW: (&str, &str) = ("2026-10-25T00:00:00Z", "2026-11-03T00:00:00Z");

fn rate_card() -> serde_json::Value {
    json!({
        "currency": "EUR",
        "group_by_tag": "cost-center",
        "rates": {
            "fab6eb84-500b-4a09-a8ca-7358f8bbaea5": 0.025,
            "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A": 0.04,
            "09F8879E-87E9-4305-A572-4B7BE209F857": 0.0001,
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chargeback_totals_equal_the_usage_api_totals_times_the_rates() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 4,
        days: 5,
        ..Options::default()
    })
    .await;
    let adapter = sandbox.load("chargeback-csv");
    let outcome = sandbox
        .export(
            &adapter,
            WINDOW,
            rate_card(),
            SubscriptionGrant::All,
            Limits::default(),
        )
        .await;
    let summary = outcome.result.expect("the export succeeds");
    assert_eq!(summary.documents, ["chargeback.csv"]);
    let csv = String::from_utf8(outcome.documents["chargeback.csv"].bytes.clone()).unwrap();
    assert_eq!(outcome.documents["chargeback.csv"].content_type, "text/csv");
    assert!(csv.starts_with(
        "date,group,subscription_id,meter_id,meter_name,unit,quantity,rate,cost,currency\n"
    ));

    // Per meter: quantity and cost from the CSV, against the usage API's totals.
    let mut csv_quantity: BTreeMap<String, f64> = BTreeMap::new();
    let mut csv_cost: BTreeMap<String, f64> = BTreeMap::new();
    let mut groups = std::collections::BTreeSet::new();
    for line in csv.lines().skip(1) {
        let cells: Vec<&str> = line.split(',').collect();
        groups.insert(cells[1].to_string());
        *csv_quantity
            .entry(cells[3].to_ascii_lowercase())
            .or_default() += cells[6].parse::<f64>().unwrap();
        *csv_cost.entry(cells[3].to_ascii_lowercase()).or_default() +=
            cells[8].parse::<f64>().unwrap();
        assert_eq!(cells[9], "EUR");
    }
    assert!(
        groups.contains("unallocated") && groups.contains("finance"),
        "{groups:?}"
    );
    let uri = provider_uri(WINDOW.0, WINDOW.1, "Daily");
    let (rows, _) = sandbox.host.list_all(&uri, &sandbox.host.operator).await;
    let api = totals_by_meter(&rows);
    assert_eq!(
        csv_quantity.keys().collect::<Vec<_>>(),
        api.keys().collect::<Vec<_>>()
    );
    let rates = rate_card()["rates"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_f64().unwrap()))
        .collect::<BTreeMap<_, _>>();
    for (meter, quantity) in &api {
        // The CSV rounds each row to 6 decimals.
        let rows_in_csv = csv
            .lines()
            .filter(|l| l.to_ascii_lowercase().contains(meter.as_str()))
            .count() as f64;
        assert!(
            (csv_quantity[meter] - quantity).abs() <= 1e-6 * rows_in_csv + 1e-9,
            "{meter}: {} vs {quantity}",
            csv_quantity[meter]
        );
        let rate = rates.get(meter).copied().unwrap_or(0.0);
        assert!(
            (csv_cost[meter] - quantity * rate).abs() <= 1e-6 * rows_in_csv + 1e-9,
            "{meter}: cost {} vs {}",
            csv_cost[meter],
            quantity * rate
        );
    }
    assert_eq!(summary.rows_read, rows.len() as u64);
    assert!(
        outcome
            .log
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("no rate")),
        "unrated meters are named in the log"
    );
    assert!(outcome.figures.peak_memory_bytes > 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_grant_limits_what_the_adapter_reads() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 3,
        days: 2,
        ..Options::default()
    })
    .await;
    let adapter = sandbox.load("chargeback-csv");
    let only = tally_usage_generator::subscription_id(1);
    let outcome = sandbox
        .export(
            &adapter,
            WINDOW,
            rate_card(),
            SubscriptionGrant::Only(vec![only.clone()]),
            Limits::default(),
        )
        .await;
    let csv = String::from_utf8(outcome.documents["chargeback.csv"].bytes.clone()).unwrap();
    assert!(csv.lines().skip(1).count() > 0);
    assert!(
        csv.lines()
            .skip(1)
            .all(|l| l.split(',').nth(2) == Some(only.as_str())),
        "only the granted subscription"
    );

    let hostile = sandbox.load("hostile");
    let outcome = sandbox
        .export(
            &hostile,
            WINDOW,
            json!({"attack": "out-of-scope"}),
            SubscriptionGrant::Only(vec![only]),
            Limits::default(),
        )
        .await;
    let failure = outcome.result.unwrap_err();
    assert!(
        matches!(&failure, RunFailure::Permanent(reason) if reason.contains("outside this installation's scope")),
        "{failure}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compiled_once_cached_and_refused_when_not_a_supported_adapter() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    })
    .await;
    let first = sandbox.load("chargeback-csv");
    let second = sandbox.load("chargeback-csv");
    assert!(!first.cached && second.cached);
    assert_eq!(first.sha256, second.sha256);
    assert_eq!(first.world_version, "0.2.0");
    let (description, _) = describe(&sandbox.engine, &second, &Limits::default()).unwrap();
    assert_eq!(
        (description.name.as_str(), description.produces.as_slice()),
        (
            "chargeback-csv",
            &[
                "chargeback.csv".to_string(),
                "chargeback-{subscription}.csv".to_string()
            ][..]
        )
    );
    validate_config(
        &sandbox.engine,
        &second,
        &rate_card().to_string(),
        &Limits::default(),
    )
    .unwrap();
    let refused = validate_config(
        &sandbox.engine,
        &second,
        r#"{"currency":"euros","group_by_tag":"cc","rates":{}}"#,
        &Limits::default(),
    );
    assert!(
        matches!(&refused, Err(RunFailure::InvalidConfig(r)) if r.contains("ISO 4217")),
        "{refused:?}"
    );
    // A core module is told how to become a component, for each toolchain.
    let core_module = sandbox.engine.load(b"\0asm\x01\0\0\0").unwrap_err();
    let advice = format!("{core_module:#}");
    assert!(
        advice.contains("a core WebAssembly module, not a component")
            && advice.contains("tally adapter componentize")
            && advice.contains("wasm32-wasip2"),
        "{advice}"
    );
    // A damaged cache entry is compiled again, not fatal. (Replaced, not
    // rewritten in place: loaded components map their artifact.)
    for entry in std::fs::read_dir(sandbox.cache.path()).unwrap() {
        let path = entry.unwrap().path();
        let damaged = path.with_extension("damaged");
        std::fs::write(&damaged, b"damaged").unwrap();
        std::fs::rename(&damaged, &path).unwrap();
    }
    let recompiled = sandbox.load("chargeback-csv");
    assert!(!recompiled.cached);
    assert!(describe(&sandbox.engine, &recompiled, &Limits::default()).is_ok());

    let next_major = load_file(&sandbox.engine, &component_path("next-major")).unwrap_err();
    let message = format!("{next_major:#}");
    assert!(
        message.contains("targets tally:billing@1.0.0")
            && message.contains("supports tally:billing@0.1.0"),
        "{message}"
    );
    let garbage = sandbox.engine.load(b"definitely not wasm").unwrap_err();
    assert!(
        format!("{garbage:#}").contains("not a WebAssembly component"),
        "{garbage:#}"
    );
}

/// Whether a failure, with the run's log, is the one an attack must end in.
type Expected = fn(&RunFailure, &[LogLine]) -> bool;

/// A run whose lease is lost is stopped by the host at once, whatever the adapter is doing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_the_host_cancels_stops_within_a_tick() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    })
    .await;
    let hostile = sandbox.load("hostile");
    let limits = Limits {
        deadline: Duration::from_secs(60),
        ..Limits::default()
    };
    let cancelled = Arc::new(AtomicBool::new(false));
    let switch = cancelled.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        switch.store(true, Ordering::Relaxed);
    });
    let started = Instant::now();
    let outcome = sandbox
        .export_until(
            &hostile,
            WINDOW,
            json!({"attack": "loop"}),
            SubscriptionGrant::All,
            limits,
            cancelled,
        )
        .await;
    assert_eq!(outcome.result.unwrap_err(), RunFailure::Cancelled);
    assert!(outcome.documents.is_empty());
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "stopped after {:?}, not at its 60 s deadline",
        started.elapsed()
    );
}

/// Each attack, the failure it must end in, and the deadline it runs under.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_adapters_are_stopped_with_clear_reasons_while_others_export() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    })
    .await;
    let hostile = sandbox.load("hostile");
    let chargeback = sandbox.load("chargeback-csv");
    let limits = Limits {
        deadline: Duration::from_millis(500),
        memory_bytes: 64 << 20,
        output_bytes: 8 << 20,
        log_lines: 1_000,
        log_bytes: 64 << 10,
    };

    let expectations: [(&str, Expected); 10] = [
        ("loop", |f, _| matches!(f, RunFailure::Timeout(_))),
        ("memory", |f, _| matches!(f, RunFailure::OutOfMemory(_))),
        (
            "recursion",
            |f, _| matches!(f, RunFailure::Trap(r) if r.contains("stack overflow")),
        ),
        (
            "trap",
            |f, _| matches!(f, RunFailure::Trap(r) if r.contains("panics on purpose")),
        ),
        (
            "flood-output",
            |f, _| matches!(f, RunFailure::Permanent(r) if r.contains("LimitReached")),
        ),
        (
            "read-file",
            |f, _| matches!(f, RunFailure::Permanent(r) if r.contains("no file access")),
        ),
        (
            "read-env",
            |f, _| matches!(f, RunFailure::Permanent(r) if r.contains("no environment variables")),
        ),
        // Refused before anything is sent, and the refusal is in the run's log.
        ("send-forbidden", |f, log| {
            matches!(f, RunFailure::Permanent(r) if r.contains("NotAllowed"))
                && log.iter().any(|l| {
                    l.level == "error"
                        && l.message.contains("send refused")
                        && l.message.contains("http://127.0.0.1:9")
                        && l.message.contains("allowed_outbound_hosts")
                })
        }),
        (
            "garbage",
            |f, _| matches!(f, RunFailure::BadSummary(r) if r.contains("never-written.csv")),
        ),
        (
            "garbage-rows",
            |f, _| matches!(f, RunFailure::BadSummary(r) if r.contains("rows read")),
        ),
    ];
    for (attack, expected) in expectations {
        // A well-behaved export runs at the same time, unaffected.
        let started = Instant::now();
        let (bad, good) = tokio::join!(
            sandbox.export(
                &hostile,
                WINDOW,
                json!({"attack": attack}),
                SubscriptionGrant::All,
                limits.clone()
            ),
            sandbox.export(
                &chargeback,
                WINDOW,
                rate_card(),
                SubscriptionGrant::All,
                Limits::default()
            ),
        );
        let failure = bad.result.expect_err(attack);
        assert!(
            expected(&failure, &bad.log),
            "{attack}: {failure}; log: {:?}",
            bad.log
        );
        assert!(
            bad.documents.is_empty(),
            "{attack}: a failed run leaves no documents"
        );
        assert!(
            started.elapsed() < limits.deadline + Duration::from_secs(2),
            "{attack} took {:?}",
            started.elapsed()
        );
        assert!(
            good.result.is_ok(),
            "{attack}: the good adapter failed: {:?}",
            good.result
        );
    }

    // A log flood is capped, not fatal: the lines beyond the caps are counted.
    let flood = sandbox
        .export(
            &hostile,
            WINDOW,
            json!({"attack": "flood-log"}),
            SubscriptionGrant::All,
            limits.clone(),
        )
        .await;
    assert!(
        matches!(flood.result, Err(RunFailure::Timeout(_))) || flood.result.is_ok(),
        "{:?}",
        flood.result
    );
    assert_eq!(flood.log.len(), limits.log_lines);
    assert!(flood.log_dropped > 0);

    // The store still serves.
    let health = sandbox
        .host
        .call(axum::http::Method::GET, "/healthz", None, None)
        .await;
    assert_eq!(health.status, axum::http::StatusCode::OK);
}

/// Runs `attack` of the hostile adapter beside a well-behaved export, which
/// must succeed; returns the hostile run's outcome.
async fn beside_a_good_export(
    sandbox: &Sandbox,
    attack: serde_json::Value,
    grant: SubscriptionGrant,
    limits: Limits,
) -> ExportOutcome {
    let hostile = sandbox.load("hostile");
    let chargeback = sandbox.load("chargeback-csv");
    let (bad, good) = tokio::join!(
        sandbox.export(&hostile, WINDOW, attack.clone(), grant, limits),
        sandbox.export(
            &chargeback,
            WINDOW,
            rate_card(),
            SubscriptionGrant::All,
            Limits::default()
        ),
    );
    assert!(
        good.result.is_ok(),
        "{attack}: the good adapter failed: {:?}",
        good.result
    );
    assert!(
        bad.documents.is_empty(),
        "{attack}: a failed run leaves no documents"
    );
    bad
}

/// Finding 2: what the host keeps for an adapter (documents' names and
/// content types, cursors and their subscription lists, log lines) is
/// bounded and counted against the run's limits, at install time too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_host_keeps_for_an_adapter_is_bounded_and_charged() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    })
    .await;
    let small = Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    };
    let permanent = |outcome: &ExportOutcome| match &outcome.result {
        Err(RunFailure::Permanent(reason)) => reason.clone(),
        other => panic!("not a permanent failure: {other:?}"),
    };

    // A long content type is refused on the first document.
    let long_types = beside_a_good_export(
        &sandbox,
        json!({"attack": "documents", "count": 2_000, "bytes": 64 << 10}),
        SubscriptionGrant::All,
        small.clone(),
    )
    .await;
    let reason = permanent(&long_types);
    assert!(
        reason.contains("InvalidName") && reason.contains("content type"),
        "{reason}"
    );
    // Documents beyond the count cap (10,000 on 0.2) are refused.
    let many = beside_a_good_export(
        &sandbox,
        json!({"attack": "documents", "count": 12_000, "bytes": 16}),
        SubscriptionGrant::All,
        small.clone(),
    )
    .await;
    assert!(
        permanent(&many).contains("LimitReached(10000)"),
        "{:?}",
        many.result
    );

    // A query naming 100,000 subscriptions is refused without keeping them.
    let long_lists = beside_a_good_export(
        &sandbox,
        json!({"attack": "cursors", "count": 20, "bytes": 100_000}),
        SubscriptionGrant::All,
        small.clone(),
    )
    .await;
    let reason = permanent(&long_lists);
    assert!(
        reason.contains("OutOfScope") && reason.contains("at most 1000 per query"),
        "{reason}"
    );
    // Open cursors are bounded, and what they hold is counted.
    let cursors = beside_a_good_export(
        &sandbox,
        json!({"attack": "cursors", "count": 20, "bytes": 1_000}),
        SubscriptionGrant::All,
        small.clone(),
    )
    .await;
    assert!(
        matches!(&cursors.result, Err(RunFailure::Trap(r)) if r.contains("more than 16 usage cursors")),
        "{:?}",
        cursors.result
    );
    // What open cursors hold counts against the memory cap with the
    // adapter's own memory.
    let charged = beside_a_good_export(
        &sandbox,
        json!({"attack": "cursors", "count": 16, "bytes": 1_000}),
        SubscriptionGrant::All,
        Limits {
            memory_bytes: 2 << 20,
            ..small.clone()
        },
    )
    .await;
    assert!(
        matches!(&charged.result, Err(RunFailure::OutOfMemory(r)) if r.contains("opening a usage cursor")),
        "{:?}",
        charged.result
    );

    // Empty log lines are not free: each costs a line's record.
    let empty_lines = beside_a_good_export(
        &sandbox,
        json!({"attack": "empty-log", "count": 200_000}),
        SubscriptionGrant::All,
        Limits {
            log_lines: 1_000_000,
            log_bytes: 64 << 10,
            ..small.clone()
        },
    )
    .await;
    assert!(empty_lines.result.is_ok(), "{:?}", empty_lines.result);
    assert!(
        empty_lines.log.len() <= (64 << 10) / 32,
        "{} empty lines kept within 64 KiB",
        empty_lines.log.len()
    );
    assert_eq!(
        empty_lines.log.len() as u64 + empty_lines.log_dropped,
        200_000
    );

    // The same bounds hold during validate-config, at install.
    let hostile = sandbox.load("hostile");
    let refused = validate_config(
        &sandbox.engine,
        &hostile,
        &json!({"attack": "config-documents", "count": 2_000, "bytes": 64 << 10}).to_string(),
        &small,
    );
    assert!(
        matches!(&refused, Err(RunFailure::InvalidConfig(r)) if r.contains("InvalidName")),
        "{refused:?}"
    );
}

/// Finding 11: a host call checks the deadline and the cancel switch itself
/// (a read over 1,000,000 granted subscriptions queries the store 1,000,000
/// times in one `next()`), and the lists it accepts are bounded. The stop
/// comes long before the last query on any machine: 1,000,000 store queries
/// take well over the second of the deadline (about 25,000 in that second
/// on a shared 2-core machine, debug build: a 40-fold margin). A stop
/// that comes before the adapter is inside `next()` (the switch set before
/// the run) is caught by the epoch check instead, so the switch is thrown
/// while the run reads.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_calls_stop_at_the_deadline_and_bound_their_lists() {
    const GRANTED: usize = 1_000_000;
    let sandbox = Sandbox::new(Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    })
    .await;
    let many: Vec<String> = (0..GRANTED).map(|i| format!("granted-{i}")).collect();
    // Long enough for the adapter to be inside `cursor.next` on a loaded
    // machine; querying the million subscriptions takes about 40 s here.
    let limits = Limits {
        deadline: Duration::from_secs(5),
        ..Limits::default()
    };
    let outcome = beside_a_good_export(
        &sandbox,
        json!({"attack": "read-all"}),
        SubscriptionGrant::Only(many.clone()),
        limits,
    )
    .await;
    assert!(
        matches!(outcome.result, Err(RunFailure::Timeout(_))),
        "{:?}",
        outcome.result
    );
    // Stopped inside the call, not after it had queried them all.
    let stopped = stopped_inside_next(&outcome.log, "the run's deadline passed");
    assert!(stopped < GRANTED as u64, "{stopped} store queries");

    // The host's cancel switch stops it inside the call too.
    let hostile = sandbox.load("hostile");
    let cancelled = Arc::new(AtomicBool::new(false));
    let switch = cancelled.clone();
    tokio::spawn(async move {
        tokio::time::sleep(Duration::from_secs(2)).await;
        switch.store(true, Ordering::Relaxed);
    });
    let outcome = sandbox
        .export_until(
            &hostile,
            WINDOW,
            json!({"attack": "read-all"}),
            SubscriptionGrant::Only(many),
            Limits::default(),
            cancelled,
        )
        .await;
    assert_eq!(outcome.result.unwrap_err(), RunFailure::Cancelled);
    let stopped = stopped_inside_next(&outcome.log, "the host stopped the run");
    assert!(stopped < GRANTED as u64, "{stopped} store queries");

    // A million subscription ids in one query are refused, not queried.
    let outcome = beside_a_good_export(
        &sandbox,
        json!({"attack": "query-many", "count": 1_000_000}),
        SubscriptionGrant::All,
        Limits::default(),
    )
    .await;
    assert!(
        matches!(&outcome.result, Err(RunFailure::Permanent(r)) if r.contains("the query names 1000000 subscriptions")),
        "{:?}",
        outcome.result
    );
}

/// Review of finding 11: a subscription id no record can have (a NUL) is
/// refused as out of scope for good, not sent to the store to fail there
/// as a transient error (retried every attempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_id_no_record_can_have_is_out_of_scope() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    })
    .await;
    let outcome = beside_a_good_export(
        &sandbox,
        json!({"attack": "nul-subscription"}),
        SubscriptionGrant::All,
        Limits::default(),
    )
    .await;
    assert!(
        matches!(&outcome.result, Err(RunFailure::Permanent(r)) if r.contains("OutOfScope") && r.contains("control characters")),
        "{:?}",
        outcome.result
    );
}

/// How many store queries `cursor.next` had made when the host stopped it
/// for `why`, as the run's log says.
fn stopped_inside_next(log: &[LogLine], why: &str) -> u64 {
    let line = log
        .iter()
        .find(|l| l.level == "error" && l.message.starts_with("stopped inside cursor.next"))
        .unwrap_or_else(|| panic!("no line saying where the run stopped: {log:?}"));
    assert!(line.message.ends_with(why), "{}", line.message);
    line.message
        .split(' ')
        .nth(4)
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{}", line.message))
}

/// Findings 3 and 14: what an adapter says of itself or of its failure is
/// kept at a bounded size.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_strings_are_bounded() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    })
    .await;
    let error = beside_a_good_export(
        &sandbox,
        json!({"attack": "huge-error", "bytes": 8 << 20}),
        SubscriptionGrant::All,
        Limits::default(),
    )
    .await;
    let reason = error.result.unwrap_err().to_string();
    assert!(reason.len() <= 4 << 10, "{} bytes", reason.len());
    assert!(
        reason.ends_with(&format!("[truncated: {} bytes]", 8 << 20)),
        "{}",
        &reason[reason.len() - 64..]
    );

    let names = beside_a_good_export(
        &sandbox,
        json!({"attack": "summary-names", "count": 1_000_000}),
        SubscriptionGrant::All,
        Limits::default(),
    )
    .await;
    let failure = names.result.unwrap_err();
    let message = failure.to_string();
    assert!(
        matches!(failure, RunFailure::BadSummary(_)),
        "{message:.300}"
    );
    assert!(message.len() < 2 << 10, "{} bytes", message.len());
    assert!(message.contains("and 999990 more"), "{message}");

    let bomb = load_file(&sandbox.engine, &component_path("hostile-describe")).unwrap();
    let refused = describe(&sandbox.engine, &bomb, &Limits::default()).unwrap_err();
    assert!(
        matches!(&refused, RunFailure::BadDescription(r) if r.contains("over 1048576 bytes")),
        "{refused}"
    );
}

// `multi_memory_adapter(hogs, pages)`: the hostile adapter with many memories.
include!("../adapters/hostile/multi_memory.rs");

/// Finding 12: the memory cap covers all of an instance's memories
/// together, and a component may declare only a few; one declaring many is
/// refused when it is loaded (at install), with the reason.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_memory_cap_covers_every_memory_of_an_instance() {
    let sandbox = Sandbox::new(Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    })
    .await;
    // Two memories (the most allowed) of 24 MiB each, under a cap of 32 MiB.
    let two = sandbox.engine.load(&multi_memory_adapter(1, 384)).unwrap();
    let limits = Limits {
        memory_bytes: 32 << 20,
        ..Limits::default()
    };
    let small = sandbox.engine.load(&multi_memory_adapter(1, 128)).unwrap();
    let fits = sandbox
        .export(
            &small,
            WINDOW,
            json!({}),
            SubscriptionGrant::All,
            limits.clone(),
        )
        .await;
    assert!(fits.result.is_ok(), "2 × 8 MiB fit: {:?}", fits.result);
    let chargeback = sandbox.load("chargeback-csv");
    let (over, good) = tokio::join!(
        sandbox.export(&two, WINDOW, json!({}), SubscriptionGrant::All, limits),
        sandbox.export(
            &chargeback,
            WINDOW,
            rate_card(),
            SubscriptionGrant::All,
            Limits::default()
        ),
    );
    assert!(good.result.is_ok(), "{:?}", good.result);
    assert!(
        matches!(&over.result, Err(RunFailure::OutOfMemory(r)) if r.contains("limit is 32 MiB")),
        "{:?}",
        over.result
    );

    // Twelve extra memories are refused outright, before any run.
    let refused = sandbox
        .engine
        .load(&multi_memory_adapter(12, 1))
        .unwrap_err();
    let message = format!("{refused:#}");
    assert!(
        message.contains("13 Wasm linear memories") && message.contains("maximum of 2"),
        "{message}"
    );
}
