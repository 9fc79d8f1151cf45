//! The JavaScript adapters of `adapters/js` against the Rust ones they
//! mirror. `chargeback-js` writes the very bytes of `chargeback-csv`'s
//! `chargeback.csv` (daily and hourly, through `tally adapter test`, with
//! non-ASCII names, exact rounding ties, huge quantities, negative zero and
//! CSV quoting in the data), and with `per_subscription` its documents per
//! subscription. `invoice-lines-js` bills a billing API that
//! dedupes by Idempotency-Key: usage × rates, each line once across a run
//! retried after a 503, nothing sent to an origin not allowed; its requests
//! are the Rust `billing-webhook`'s. Both refuse configs that cannot work.
//!
//! Needs the components (`adapters/build.sh`, which `tests/run.sh` runs; it
//! needs Node.js and npm); fails, not skips, without them.

use crate::support;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex, OnceLock};

use axum::http::StatusCode;
use serde_json::{Value, json};
use sha2::Digest;
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

// --- chargeback-js: the same bytes as chargeback-csv --------------------------

/// Usage records made to trip a naive port: group names that JavaScript and
/// Rust sort differently, that need quoting or look like the fallback
/// group, an odd subscription id, quantities whose cost is an exact rounding
/// tie or as large as ingest accepts, and usage spread over hours.
fn tricky_records() -> Vec<Value> {
    /// (subscription, cost-center, meter, quantity, usage start and end)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        f64,
        (&'static str, &'static str),
    );
    let hour = ("2026-10-29T10:00:00Z", "2026-10-29T11:00:00Z");
    let mut cases: Vec<Case> = [
        ("\u{1f4b6} euro notes", meters::STATIC_IP, 0.015625), // cost 0.0078125: a tie
        ("\u{ff41} fullwidth", meters::STATIC_IP, 1.0),
        ("Zürich", meters::BASE_VM, 0.0078125),
        ("a,b \"quoted\"\nline", meters::BASE_VM, 1e15), // the largest quantity accepted
        ("unallocated", meters::DISK_S10, 3.0),
        ("e\u{301}", meters::DISK_S10, 2.5),
        ("\u{e9}", meters::DISK_S10, 1e-7),
    ]
    .into_iter()
    .map(|(group, meter, quantity)| ("sub-edge", group, meter, quantity, hour))
    .collect();
    let hours = ("2026-10-29T09:00:00Z", "2026-10-29T12:20:00Z");
    cases.push((
        "søb,\"x\"",
        "finance",
        meters::BLOCK_BLOB_CAPACITY,
        1.0,
        hours,
    ));
    cases.push(("\u{1f4b6}-sub", "finance", meters::APP_SERVICE, 0.1, hour));
    cases
        .into_iter()
        .enumerate()
        .map(
            |(i, (subscription, group, meter, quantity, (start, end)))| {
                let event = format!("tricky-{i}");
                let mut r = record(subscription, &event, meter, quantity, start, end);
                r["tags"] = json!({"cost-center": group, "env": "prod"});
                reported(r, "2026-10-29T20:00:00Z")
            },
        )
        .collect()
}

/// A rate card with a negative zero, a tie (0.015625 × 0.5 = 0.0078125
/// exactly), an id in another case than the catalog's, and unrated meters.
fn chargeback_config() -> Value {
    json!({
        "currency": "EUR",
        "group_by_tag": "cost-center",
        "rates": {
            meters::BASE_VM.to_ascii_lowercase(): 0.025,
            meters::WINDOWS_VM: 0.04,
            meters::DISK_S10: -0.0,
            meters::STATIC_IP: 0.5,
            meters::BLOCK_BLOB_CAPACITY: 0.00003,
            meters::APP_SERVICE: 0.05,
        }
    })
}

/// Runs `tally adapter test` with its artifact cache in `cache`.
fn adapter_test(
    name: &str,
    config: &Path,
    usage: &Path,
    granularity: &str,
    out: &Path,
    cache: &Path,
) -> Output {
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["adapter", "test"])
        .arg(component_path(name))
        .arg("--config")
        .arg(config)
        .arg("--usage")
        .arg(usage)
        .args([
            "--from",
            WINDOW.0,
            "--to",
            WINDOW.1,
            "--granularity",
            granularity,
        ])
        .arg("--out")
        .arg(out)
        .env("XDG_CACHE_HOME", cache)
        .output()
        .expect("the tally binary runs")
}

/// The adapter's log lines in a `tally adapter test` report.
fn log_lines(report: &str) -> Vec<&str> {
    report.lines().filter(|l| l.starts_with("  [")).collect()
}

#[test]
fn chargeback_js_writes_the_very_bytes_of_the_rust_adapter() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = to_wire(&sample(&Options {
        subscriptions: 3,
        days: 5,
        ..Options::default()
    }));
    records.extend(tricky_records());
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        records.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let config = dir.path().join("chargeback.json");
    std::fs::write(&config, chargeback_config().to_string()).unwrap();

    for granularity in ["daily", "hourly"] {
        let run = |name: &str| {
            let out = dir.path().join(format!("{name}-{granularity}"));
            let output = adapter_test(name, &config, &usage, granularity, &out, dir.path());
            assert!(
                output.status.success(),
                "{name} {granularity}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            let report = String::from_utf8(output.stdout).unwrap();
            (std::fs::read(out.join("chargeback.csv")).unwrap(), report)
        };
        let (rust, rust_report) = run("chargeback-csv");
        let (js, js_report) = run("chargeback-js");
        assert!(
            js_report.contains("adapter chargeback-js 0.1.0"),
            "{js_report}"
        );
        let csv = String::from_utf8(rust.clone()).unwrap();
        if js != rust {
            let js = String::from_utf8_lossy(&js);
            let first = csv.lines().zip(js.lines()).position(|(a, b)| a != b);
            panic!(
                "{granularity}: chargeback-js differs from chargeback-csv at line {first:?}:\nRust: {:?}\nJS:   {:?}",
                first.and_then(|i| csv.lines().nth(i)),
                first.and_then(|i| js.lines().nth(i)),
            );
        }
        assert_eq!(
            log_lines(&js_report),
            log_lines(&rust_report),
            "the same log"
        );
        // The data did reach the cases that matter.
        for needle in [
            ",0.015625,0.500000,0.007812,EUR\n", // an exact tie, to even (toFixed: 0.007813)
            ",1000000000000000.000000,0.025000,", // the largest quantity, in full
            ",-0.000000,-0.000000,EUR\n",
            "\"a,b \"\"quoted\"\"\nline\"",
            "\"søb,\"\"x\"\"\"",
        ] {
            assert!(
                csv.contains(needle),
                "{granularity}: no {needle:?} in\n{csv}"
            );
        }
        // Rust's byte order, which JavaScript's `<` does not give.
        let fullwidth = csv.find("\u{ff41} fullwidth").unwrap();
        let banknotes = csv.find("\u{1f4b6} euro notes").unwrap();
        assert!(
            fullwidth < banknotes,
            "U+FF41 sorts before U+1F4B6 in UTF-8"
        );
        assert!(csv.lines().count() > 100, "{csv}");
    }
}

/// The documents a `tally adapter test` wrote to `out`: name → bytes.
fn documents_in(out: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, std::fs::read(entry.path()).unwrap())
        })
        .collect()
}

#[test]
fn chargeback_js_writes_the_rust_adapters_per_subscription_documents() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = to_wire(&sample(&Options {
        subscriptions: 2,
        days: 5,
        ..Options::default()
    }));
    records.extend(tricky_records());
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        records.iter().map(|r| format!("{r}\n")).collect::<String>(),
    )
    .unwrap();
    let mut config = chargeback_config();
    config["per_subscription"] = json!(true);
    let config_path = dir.path().join("chargeback.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    for granularity in ["daily", "hourly"] {
        let run = |name: &str| {
            let out = dir.path().join(format!("{name}-{granularity}"));
            let output = adapter_test(name, &config_path, &usage, granularity, &out, dir.path());
            assert!(
                output.status.success(),
                "{name} {granularity}: {}{}",
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            documents_in(&out)
        };
        let (rust, js) = (run("chargeback-csv"), run("chargeback-js"));
        assert_eq!(
            js.keys().collect::<Vec<_>>(),
            rust.keys().collect::<Vec<_>>(),
            "{granularity}: the same documents"
        );
        for (name, bytes) in &rust {
            assert!(
                &js[name] == bytes,
                "{granularity}: {name} differs:\nRust: {:?}\nJS:   {:?}",
                String::from_utf8_lossy(bytes),
                String::from_utf8_lossy(&js[name])
            );
        }
        // Named by the id, or by its digest for ids that are no names
        // (a comma and quotes; a character outside ASCII).
        let digest = |id: &str| {
            let hex: String = sha2::Sha256::digest(id.as_bytes())[..8]
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            format!("chargeback-{hex}.csv")
        };
        for name in [
            "chargeback-sub-edge.csv".to_string(),
            digest("s\u{f8}b,\"x\""),
            digest("\u{1f4b6}-sub"),
        ] {
            assert!(rust.contains_key(&name), "{name} in {:?}", rust.keys());
        }
        let edge = String::from_utf8(rust["chargeback-sub-edge.csv"].clone()).unwrap();
        assert!(edge.contains(",0.015625,0.500000,0.007812,EUR\n"), "{edge}");
        let mut reader = csv::Reader::from_reader(edge.as_bytes());
        assert!(
            reader.records().all(|row| &row.unwrap()[2] == "sub-edge"),
            "only its own rows: {edge}"
        );
        println!("{granularity}: {} documents, identical", rust.len());
    }
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
    for (name, config) in [
        ("chargeback-js", chargeback_config()),
        ("chargeback-js", example_config("chargeback.toml")),
        ("invoice-lines-js", example_config("billing-webhook.toml")),
    ] {
        assert_eq!(refusal(name, &config.to_string()), None, "{name}");
    }
    let chargeback = [
        (
            r#"{"currency":"EURO","group_by_tag":"cc","rates":{}}"#,
            "ISO 4217",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":" \t","rates":{}}"#,
            "group_by_tag must not be empty",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":-0.5}}"#,
            "not -0.5",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"tax":0.2}"#,
            "unknown field `tax`",
        ),
        (
            r#"{"currency":"EUR","rates":{}}"#,
            "missing field `group_by_tag`",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":"cheap"}}"#,
            "expected f64",
        ),
        (
            r#"{"currency":7,"group_by_tag":"cc","rates":{}}"#,
            "expected a string",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":[1]}"#,
            "expected a map",
        ),
        (r#""EUR""#, "expected struct Config"),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"ab":1,"AB":2}}"#,
            "twice",
        ),
    ];
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
    let cases = chargeback
        .iter()
        .map(|(config, complaint)| {
            (
                "chargeback-csv",
                "chargeback-js",
                config.to_string(),
                *complaint,
            )
        })
        .chain(invoice.iter().map(|(config, complaint)| {
            (
                "billing-webhook",
                "invoice-lines-js",
                config.clone(),
                *complaint,
            )
        }));
    for (rust, js, config, complaint) in cases {
        let reason = refusal(rust, &config).unwrap_or_else(|| panic!("{rust} accepts {config}"));
        assert!(reason.contains(complaint), "{rust}, {config}: {reason}");
        assert_eq!(refusal(js, &config), Some(reason), "{js}, {config}");
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
