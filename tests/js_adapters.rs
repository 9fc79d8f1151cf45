//! The JavaScript adapters of `adapters/js` against the Rust ones they
//! mirror. `invoice-lines-js` bills a billing API that dedupes by
//! Idempotency-Key: usage × rates, each line once across a run retried after
//! a 503, nothing sent to an origin not allowed; its requests are the Rust
//! `billing-webhook`'s, and it refuses the configs it refuses. Both it and
//! `chargeback-js` fail an export whose config cannot work as invalid
//! config. `chargeback-js`, the twin of the Rust `chargeback-csv`, is
//! tested with the other twins in `twins`.
//!
//! Needs the components (`adapters/build.sh`, which `tests/run.sh` runs; it
//! needs Node.js and npm); fails, not skips, without them.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::billing_api::{API_KEY, BillingApi, assert_billed, keys_of, time};
use support::*;
use tally::sandbox::contract::{ExportRequest, Granularity, Window};
use tally::sandbox::egress::AllowedOrigin;
use tally::sandbox::engine::load_file;
use tally::sandbox::host_usage::UsageAccess;
use tally::sandbox::{
    AdapterEngine, ExportOutcome, Limits, LoadedAdapter, RunFailure, SubscriptionGrant,
    validate_config,
};
use tally_usage_generator::{Options, UsageRecord, meters};

/// A reported-time window that cuts the sample usage on both sides.
const WINDOW: (&str, &str) = ("2026-10-28T00:00:00Z", "2026-11-01T00:00:00Z");
const BATCH_SIZE: usize = 20;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// One engine for the whole test binary, so each component compiles once
/// (a JavaScript component takes seconds).
fn engine() -> Arc<AdapterEngine> {
    static ENGINE: OnceLock<(Arc<AdapterEngine>, tempfile::TempDir)> = OnceLock::new();
    let (engine, _cache) = ENGINE.get_or_init(|| {
        let cache = tempfile::tempdir().unwrap();
        (Arc::new(AdapterEngine::new(cache.path()).unwrap()), cache)
    });
    engine.clone()
}

/// A component of `target/adapters`, loaded once.
fn adapter(name: &str) -> LoadedAdapter {
    static LOADED: Mutex<BTreeMap<String, LoadedAdapter>> = Mutex::new(BTreeMap::new());
    let mut loaded = LOADED.lock().unwrap();
    loaded
        .entry(name.to_string())
        .or_insert_with(|| load_file(&engine(), &component_path(name)).unwrap())
        .clone()
}

// --- invoice-lines-js against a billing API -----------------------------------

/// A host holding sample usage.
struct Harness {
    host: TestHost,
    records: Vec<UsageRecord>,
}

impl Harness {
    async fn new() -> Self {
        let (host, records) = TestHost::with_sample(Options {
            subscriptions: 3,
            days: 5,
            ..Options::default()
        })
        .await;
        Harness { host, records }
    }

    /// Runs an export of [`WINDOW`] on a blocking thread, as the host does.
    async fn export(
        &self,
        name: &str,
        run_id: &str,
        config: &Value,
        allowed: Vec<AllowedOrigin>,
    ) -> ExportOutcome {
        let request = ExportRequest {
            run_id: run_id.into(),
            window: Window {
                start: time(WINDOW.0),
                end: time(WINDOW.1),
            },
            granularity: Granularity::Hourly,
            correction: false,
        };
        let usage = UsageAccess::new(
            self.host.store.clone(),
            self.host.store.meter_catalog().await.unwrap(),
            SubscriptionGrant::All,
            self.host.store.clock().await.unwrap(),
        );
        let (engine, adapter, config) = (engine(), adapter(name), config.to_string());
        tokio::task::spawn_blocking(move || {
            tally::sandbox::run_export(
                &engine,
                &adapter,
                &request,
                &config,
                usage,
                tally::sandbox::Outbound::Allowed(allowed),
                &Limits::default(),
            )
        })
        .await
        .unwrap()
    }

    /// Quantity and amount per lower-case meter id of the generated usage
    /// reported in [`WINDOW`], rated with `rates`, computed here from the
    /// records themselves: what must be billed.
    fn expected(&self, rates: &Value) -> BTreeMap<String, (f64, f64)> {
        let (start, end) = (time(WINDOW.0), time(WINDOW.1));
        let mut totals: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for r in &self.records {
            let reported = r.reported_time.unwrap().timestamp();
            if reported < start || reported >= end {
                continue;
            }
            let meter = r.meter_id.to_ascii_lowercase();
            let rate = rates
                .as_object()
                .unwrap()
                .iter()
                .find(|(id, _)| id.eq_ignore_ascii_case(&meter))
                .map_or(0.0, |(_, rate)| rate.as_f64().unwrap());
            let total = totals.entry(meter).or_default();
            total.0 += r.quantity;
            total.1 += r.quantity * rate;
        }
        totals
    }
}

/// A rate card for some of the sample's meters (the others are invoiced at 0).
fn rates() -> Value {
    json!({
        meters::BASE_VM.to_ascii_lowercase(): 0.025,
        meters::WINDOWS_VM: 0.04,
        meters::DISK_S10: 0.0021,
        meters::BLOCK_BLOB_CAPACITY: 0.0001,
        meters::STATIC_IP: 0.005,
    })
}

fn invoice_config(api: &BillingApi) -> Value {
    json!({
        "endpoint": api.endpoint(),
        "currency": "EUR",
        "batch_size": BATCH_SIZE,
        "headers": {"X-Api-Key": API_KEY},
        "rates": rates(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_lines_total_usage_times_rates_in_the_rust_adapters_requests() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let outcome = harness
        .export(
            "invoice-lines-js",
            "run-1",
            &invoice_config(&api),
            vec![api.allowed()],
        )
        .await;
    let summary = outcome.result.as_ref().expect("the export succeeds");

    let requests = api.requests();
    let lines = api.billed_lines();
    assert!(requests.iter().all(|r| r.status == StatusCode::CREATED));
    assert_eq!(requests.len(), lines.len().div_ceil(BATCH_SIZE));
    assert_eq!(
        requests.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        keys_of("run-1", requests.len())
    );
    for (i, request) in requests.iter().enumerate() {
        assert_eq!(request.headers["x-api-key"], API_KEY);
        assert_eq!(request.headers["content-type"], "application/json");
        assert_eq!(
            request.headers["user-agent"],
            "tally-invoice-lines-js/0.1.0"
        );
        assert_eq!(
            request.body["batch"],
            json!({"index": i + 1, "count": requests.len()})
        );
    }
    assert_billed(&lines, &harness.expected(&rates()));
    assert_eq!(summary.rows_written, lines.len() as u64);
    assert_eq!(outcome.figures.requests_sent, requests.len() as u64);
    assert!(
        outcome
            .log
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("no rate")),
        "unrated meters are named in the log: {:?}",
        outcome.log
    );

    // The Rust billing-webhook adapter, on the same usage and config, sends
    // the same requests and writes the same summary.
    let rust_api = BillingApi::start().await;
    let rust = harness
        .export(
            "billing-webhook",
            "run-1",
            &invoice_config(&rust_api),
            vec![rust_api.allowed()],
        )
        .await;
    rust.result.as_ref().expect("the Rust export succeeds");
    let bodies =
        |api: &BillingApi| -> Vec<Value> { api.accepted().into_iter().map(|(_, b)| b).collect() };
    assert!(
        bodies(&api) == bodies(&rust_api),
        "invoice-lines-js and billing-webhook send the same requests"
    );
    let summary_of = |outcome: &ExportOutcome| -> Value {
        let mut document: Value =
            serde_json::from_slice(&outcome.documents["invoice-summary.json"].bytes).unwrap();
        document["endpoint"] = Value::Null; // each its own billing API
        document
    };
    assert_eq!(summary_of(&outcome), summary_of(&rust));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_503_a_retry_under_the_same_run_id_bills_each_line_once() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let config = invoice_config(&api);
    api.fail_once_at(3);

    let failed = harness
        .export("invoice-lines-js", "run-1", &config, vec![api.allowed()])
        .await;
    let failure = failed.result.expect_err("the 503 fails the run");
    assert!(
        matches!(&failure, RunFailure::Transient(r) if r.contains("request 3 of") && r.contains("503")),
        "{failure}"
    );
    assert!(
        failed.documents.is_empty(),
        "a failed run leaves no documents"
    );
    let first_attempt = api.requests();
    assert_eq!(first_attempt.len(), 3, "the run stops at the failure");
    assert_eq!(api.accepted().len(), 2);

    // The host retries the same run later: same run id, same window.
    let retried = harness
        .export("invoice-lines-js", "run-1", &config, vec![api.allowed()])
        .await;
    let summary = retried.result.expect("the retry succeeds");
    let second_attempt = api.requests()[first_attempt.len()..].to_vec();
    assert!(
        second_attempt.len() > 3,
        "the failure was not the last request"
    );
    assert_eq!(
        second_attempt
            .iter()
            .map(|r| r.key.clone())
            .collect::<Vec<_>>(),
        keys_of("run-1", second_attempt.len())
    );
    for (first, second) in first_attempt.iter().zip(&second_attempt) {
        assert_eq!(
            first.body, second.body,
            "{}: the same body again",
            first.key
        );
    }
    assert_eq!(
        second_attempt
            .iter()
            .map(|r| r.status)
            .take(3)
            .collect::<Vec<_>>(),
        [StatusCode::OK, StatusCode::OK, StatusCode::CREATED],
        "the two accepted requests are dropped as duplicates; the failed one is accepted now"
    );
    let lines = api.billed_lines();
    assert_eq!(summary.rows_written, lines.len() as u64);
    assert_billed(&lines, &harness.expected(&rates()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_not_allowed_the_billing_apis_origin_sends_nothing() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let elsewhere = AllowedOrigin::parse("https://billing.example").unwrap();
    let outcome = harness
        .export(
            "invoice-lines-js",
            "run-1",
            &invoice_config(&api),
            vec![elsewhere],
        )
        .await;
    let failure = outcome.result.expect_err("nothing may be sent");
    assert!(
        matches!(&failure, RunFailure::Permanent(r) if r.contains(&api.origin) && r.contains("allowed_outbound_hosts")),
        "{failure}"
    );
    assert!(api.requests().is_empty(), "the billing API saw nothing");
    assert_eq!(outcome.figures.requests_sent, 0);

    // `tally adapter test` sends only with `--allow-outbound`.
    let dir = tempfile::tempdir().unwrap();
    let usage = dir.path().join("usage.ndjson");
    let records = to_wire(&sample(&Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    }));
    std::fs::write(
        &usage,
        records.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let config = dir.path().join("invoice.json");
    std::fs::write(&config, invoice_config(&api).to_string()).unwrap();
    let run = |allow: Option<String>| {
        let (usage, config, cache) = (usage.clone(), config.clone(), dir.path().to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
            command
                .args(["adapter", "test"])
                .arg(component_path("invoice-lines-js"))
                .arg("--config")
                .arg(&config)
                .arg("--usage")
                .arg(&usage)
                .arg("--out")
                .arg(cache.join("out"))
                .env("XDG_CACHE_HOME", &cache);
            if let Some(origin) = allow {
                command.args(["--allow-outbound", &origin]);
            }
            command.output().unwrap()
        })
    };
    let refused = run(None).await.unwrap();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("allowed_outbound_hosts"), "{stderr}");
    assert!(api.requests().is_empty(), "nothing was sent");
    let passed = run(Some(api.origin.clone())).await.unwrap();
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let requests = api.requests();
    assert!(!requests.is_empty());
    assert_eq!(
        requests.iter().map(|r| r.key.clone()).collect::<Vec<_>>(),
        keys_of("local-test", requests.len())
    );
}

// --- configs -----------------------------------------------------------------

/// The `[config]` table of an example manifest, as JSON.
fn example_config(manifest: &str) -> Value {
    let text = std::fs::read_to_string(root().join("examples/adapters").join(manifest)).unwrap();
    let table: toml::Table = toml::from_str(&text).unwrap();
    serde_json::to_value(&table["config"]).unwrap()
}

/// Why `name` refuses `config`, less serde's "at line 1 column N"; `None`
/// when it accepts it.
fn refusal(name: &str, config: &str) -> Option<String> {
    match validate_config(&engine(), &adapter(name), config, &Limits::default()) {
        Ok(()) => None,
        Err(RunFailure::InvalidConfig(reason)) => Some(match reason.rfind(" at line ") {
            Some(at) if reason[at..].contains(" column ") => reason[..at].to_string(),
            _ => reason,
        }),
        Err(other) => panic!("{name} failed on {config}: {other}"),
    }
}

#[test]
fn configs_are_refused_with_the_rust_adapters_reasons() {
    // What an operator starts from is valid as shipped.
    let config = example_config("billing-webhook.toml");
    assert_eq!(refusal("invoice-lines-js", &config.to_string()), None);
    let good = json!({
        "endpoint": "https://billing.example/v1/invoice-lines",
        "currency": "EUR",
        "headers": {"X-Api-Key": "k"},
        "rates": rates(),
    });
    let with = |key: &str, value: Value| {
        let mut config = good.clone();
        config[key] = value;
        config.to_string()
    };
    let invoice = [
        (
            with("endpoint", json!("ftp://billing.example/")),
            "http or https",
        ),
        (
            with("endpoint", json!("https://u:p@billing.example/")),
            "credentials",
        ),
        (
            with("endpoint", json!("http://billing.example:99999/")),
            "invalid port",
        ),
        (with("currency", json!("euro")), "ISO 4217"),
        (with("batch_size", json!(0)), "batch_size"),
        (with("batch_size", json!(-1)), "expected usize"),
        (
            with("headers", json!({"Idempotency-Key": "mine"})),
            "set by tally",
        ),
        (
            with("headers", json!({"X-Api-Key": "two\nlines"})),
            "printable ASCII",
        ),
        (with("rates", json!({"m": -1.0})), "non-negative"),
        (with("rates", json!({"m": 1, "M": 2})), "two rates"),
        (with("source", json!("two words")), "source"),
        (with("webhook_secret", json!("x")), "unknown field"),
    ];
    for (config, complaint) in invoice {
        let reason = refusal("billing-webhook", &config)
            .unwrap_or_else(|| panic!("billing-webhook accepts {config}"));
        assert!(
            reason.contains(complaint),
            "billing-webhook, {config}: {reason}"
        );
        assert_eq!(
            refusal("invoice-lines-js", &config),
            Some(reason),
            "invoice-lines-js, {config}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_with_a_config_that_cannot_work_fails_as_invalid_config() {
    let harness = Harness::new().await;
    for name in ["chargeback-js", "invoice-lines-js"] {
        let outcome = harness
            .export(name, "run-1", &json!({"currency": "euro"}), Vec::new())
            .await;
        assert!(
            matches!(&outcome.result, Err(RunFailure::InvalidConfig(_))),
            "{name}: {:?}",
            outcome.result
        );
    }
}

// --- the JavaScript unit tests ------------------------------------------------

#[test]
fn the_javascript_unit_tests_pass() {
    let output = Command::new("node")
        .args(["--test", "test/"])
        .current_dir(root().join("adapters/js"))
        .output()
        .expect("node runs (adapters/build.sh needs it too)");
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}
