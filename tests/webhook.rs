//! The billing-webhook adapter against a real billing API on a loopback
//! port: what it invoices, how a failed run is retried under the same
//! idempotency keys without billing twice, and what is never sent.
//!
//! The billing API here keeps every request, drops a request whose
//! `Idempotency-Key` it already accepted (as real billing APIs do), and can
//! be told to answer one request with a 503. The component is built from
//! source by `adapters/build.sh` (run by `tests/run.sh`); the tests fail, not
//! skip, without it.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::Arc;

use axum::http::StatusCode;
use serde_json::{Value, json};
use support::billing_api::{API_KEY, BillingApi, assert_billed, keys_of, time};
use support::process::tally;
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
const WINDOW: (&str, &str) = ("2026-10-28T00:00:00Z", "2026-11-02T00:00:00Z");
const BATCH_SIZE: usize = 20;

/// A host holding sample usage, and the webhook adapter loaded.
struct Harness {
    host: TestHost,
    records: Vec<UsageRecord>,
    engine: Arc<AdapterEngine>,
    adapter: LoadedAdapter,
    _cache: tempfile::TempDir,
}

impl Harness {
    async fn new() -> Self {
        let (host, records) = TestHost::with_sample(Options {
            subscriptions: 3,
            days: 5,
            ..Options::default()
        })
        .await;
        let cache = tempfile::tempdir().unwrap();
        let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
        let adapter = load_file(&engine, &component_path("billing-webhook")).unwrap();
        Harness {
            host,
            records,
            engine,
            adapter,
            _cache: cache,
        }
    }

    /// Runs an export of [`WINDOW`] on a blocking thread, as the host does.
    async fn export(
        &self,
        run_id: &str,
        correction: bool,
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
            correction,
        };
        let usage = UsageAccess::new(
            self.host.store.clone(),
            self.host.store.meter_catalog().await.unwrap(),
            SubscriptionGrant::All,
            self.host.store.clock().await.unwrap(),
        );
        let (engine, adapter, config) = (
            self.engine.clone(),
            self.adapter.clone(),
            config.to_string(),
        );
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
    /// reported in [`WINDOW`], rated with `rates`: what must be billed.
    fn expected(&self, rates: &Value) -> BTreeMap<String, (f64, f64)> {
        let (start, end) = (time(WINDOW.0), time(WINDOW.1));
        let mut totals: BTreeMap<String, (f64, f64)> = BTreeMap::new();
        for r in &self.records {
            let reported = r.reported_time.unwrap().timestamp();
            if reported < start || reported >= end {
                continue;
            }
            let meter = r.meter_id.to_ascii_lowercase();
            let rate = rate_of(rates, &meter);
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

fn rate_of(rates: &Value, meter: &str) -> f64 {
    rates
        .as_object()
        .unwrap()
        .iter()
        .find(|(id, _)| id.eq_ignore_ascii_case(meter))
        .map_or(0.0, |(_, rate)| rate.as_f64().unwrap())
}

fn config(api: &BillingApi, rates: Value) -> Value {
    json!({
        "endpoint": api.endpoint(),
        "currency": "EUR",
        "batch_size": BATCH_SIZE,
        "headers": {"X-Api-Key": API_KEY},
        "rates": rates,
    })
}

/// A decimal string in millionths, exactly.
fn micros(decimal: &str) -> i64 {
    let (units, fraction) = decimal.split_once('.').unwrap_or((decimal, ""));
    assert!(fraction.len() <= 6, "{decimal}");
    units.parse::<i64>().unwrap() * 1_000_000 + format!("{fraction:0<6}").parse::<i64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invoice_lines_reach_the_billing_api_and_total_usage_times_rates() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let outcome = harness
        .export("run-1", false, &config(&api, rates()), vec![api.allowed()])
        .await;
    let summary = outcome.result.expect("the export succeeds");

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
            request.body["batch"],
            json!({"index": i + 1, "count": requests.len()})
        );
        assert_eq!(request.body["run_id"], "run-1");
        assert_eq!(request.body["correction"], false);
        assert!(request.body["lines"].as_array().unwrap().len() <= BATCH_SIZE);
    }
    assert_billed(&lines, &harness.expected(&rates()));
    assert_eq!(summary.rows_written, lines.len() as u64);
    assert_eq!(outcome.figures.requests_sent, requests.len() as u64);

    // The summary document agrees with what the billing API received, to the millionth.
    assert_eq!(summary.documents, ["invoice-summary.json"]);
    let document = &outcome.documents["invoice-summary.json"];
    assert_eq!(document.content_type, "application/json");
    let written: Value = serde_json::from_slice(&document.bytes).unwrap();
    assert_eq!(written["lines"], lines.len());
    assert_eq!(written["requests"], requests.len());
    let total: i64 = lines
        .iter()
        .map(|l| micros(l["amount"].as_str().unwrap()))
        .sum();
    assert_eq!(micros(written["totals"]["EUR"].as_str().unwrap()), total);
    assert!(
        outcome
            .log
            .iter()
            .any(|l| l.level == "warn" && l.message.contains("no rate")),
        "unrated meters are named in the log: {:?}",
        outcome.log
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_run_is_retried_under_the_same_keys_and_bills_each_line_once() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let config = config(&api, rates());
    api.fail_once_at(3);

    let failed = harness
        .export("run-1", false, &config, vec![api.allowed()])
        .await;
    let failure = failed.result.expect_err("the 503 fails the run");
    assert!(failure.is_transient(), "{failure}");
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
        .export("run-1", false, &config, vec![api.allowed()])
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
    // Stable keys: each key of the first attempt came again with the very same body.
    for (first, second) in first_attempt.iter().zip(&second_attempt) {
        assert_eq!(first.key, second.key);
        assert_eq!(first.body, second.body, "{}", first.key);
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
    assert_eq!(api.accepted().len(), second_attempt.len());

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
        .export("run-1", false, &config(&api, rates()), vec![elsewhere])
        .await;
    let failure = outcome.result.expect_err("nothing may be sent");
    assert!(!failure.is_transient(), "{failure}");
    assert!(
        matches!(&failure, RunFailure::Permanent(r) if r.contains(&api.origin) && r.contains("allowed_outbound_hosts")),
        "{failure}"
    );
    assert!(
        outcome.log.iter().any(|l| l.level == "error"
            && l.message.contains("send refused")
            && l.message.contains(&api.origin)),
        "{:?}",
        outcome.log
    );
    assert!(api.requests().is_empty(), "the billing API saw nothing");
    assert_eq!(outcome.figures.requests_sent, 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_allowed_name_that_resolves_to_the_loopback_reaches_nothing() {
    // `localhost` is allowed by name, but it resolves to the loopback, where
    // the billing API listens: only the IP literal may lead there.
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let by_name = api.origin.replace("127.0.0.1", "localhost");
    let mut config = config(&api, rates());
    config["endpoint"] = json!(api.endpoint().replace("127.0.0.1", "localhost"));
    let allowed = vec![AllowedOrigin::parse(&by_name).unwrap()];
    let outcome = harness.export("run-1", false, &config, allowed).await;
    let failure = outcome.result.expect_err("nothing may be sent");
    assert!(
        matches!(&failure, RunFailure::Permanent(r) if r.contains("internal addresses")),
        "{failure}"
    );
    assert!(api.requests().is_empty(), "the billing API saw nothing");

    // Once the operator allows the loopback literal, the name reaches it.
    let allowed = vec![AllowedOrigin::parse(&by_name).unwrap(), api.allowed()];
    let outcome = harness.export("run-2", false, &config, allowed).await;
    outcome.result.expect("the run succeeds");
    assert!(!api.accepted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_is_a_new_run_with_new_keys_and_the_same_line_ids() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    harness
        .export("run-1", false, &config(&api, rates()), vec![api.allowed()])
        .await
        .result
        .expect("the first export");
    let first = api.accepted();

    // The rate card changed: the window is exported again as a correction.
    let mut corrected_rates = rates();
    corrected_rates[meters::BASE_VM.to_ascii_lowercase()] = json!(0.03);
    harness
        .export(
            "run-2",
            true,
            &config(&api, corrected_rates.clone()),
            vec![api.allowed()],
        )
        .await
        .result
        .expect("the correction");
    let second = api.accepted()[first.len()..].to_vec();

    let keys = |run: &[(String, Value)]| run.iter().map(|(k, _)| k.clone()).collect::<Vec<_>>();
    assert_eq!(keys(&second), keys_of("run-2", second.len()));
    assert!(
        keys(&first).iter().all(|k| !keys(&second).contains(k)),
        "a correction's requests are not dropped as retries"
    );
    assert!(second.iter().all(|(_, body)| body["correction"] == true));
    let ids = |run: &[(String, Value)]| -> BTreeSet<String> {
        run.iter()
            .flat_map(|(_, body)| body["lines"].as_array().unwrap().clone())
            .map(|l| l["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        ids(&first),
        ids(&second),
        "the receiver replaces the same lines"
    );
    let corrected: Vec<Value> = second
        .iter()
        .flat_map(|(_, body)| body["lines"].as_array().unwrap().clone())
        .collect();
    assert_billed(&corrected, &harness.expected(&corrected_rates));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_by_the_billing_api_fails_the_run_for_good_with_its_answer() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let mut wrong_key = config(&api, rates());
    wrong_key["headers"]["X-Api-Key"] = json!("revoked");
    let outcome = harness
        .export("run-1", false, &wrong_key, vec![api.allowed()])
        .await;
    let failure = outcome.result.expect_err("a 401 fails the run");
    assert!(
        matches!(&failure, RunFailure::Permanent(r) if r.contains("401") && r.contains("invalid API key")),
        "{failure}"
    );
    assert_eq!(api.requests().len(), 1, "it stops at the first refusal");
    assert!(api.accepted().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_that_cannot_work_is_refused_before_install() {
    let harness = Harness::new().await;
    let api = BillingApi::start().await;
    let good = config(&api, rates());
    // The example an operator starts from is valid as shipped.
    let example: toml::Table = toml::from_str(
        &std::fs::read_to_string(
            PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                .join("../examples/adapters/billing-webhook.toml"),
        )
        .unwrap(),
    )
    .unwrap();
    for config in [
        good.clone(),
        serde_json::to_value(&example["config"]).unwrap(),
    ] {
        validate_config(
            &harness.engine,
            &harness.adapter,
            &config.to_string(),
            &Limits::default(),
        )
        .unwrap();
    }
    for (key, value, complaint) in [
        ("endpoint", json!("ftp://billing.example/"), "http or https"),
        ("endpoint", json!("billing.example/v1"), "http or https"),
        ("currency", json!("euro"), "ISO 4217"),
        ("rates", json!({"m": -1.0}), "non-negative"),
        ("batch_size", json!(0), "batch_size"),
        (
            "headers",
            json!({"Idempotency-Key": "mine"}),
            "set by tally",
        ),
        ("webhook_secret", json!("x"), "unknown field"),
    ] {
        let mut config = good.clone();
        config[key] = value;
        let refused = validate_config(
            &harness.engine,
            &harness.adapter,
            &config.to_string(),
            &Limits::default(),
        );
        assert!(
            matches!(&refused, Err(RunFailure::InvalidConfig(r)) if r.contains(complaint)),
            "{key}: {refused:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adapter_test_sends_only_to_the_origins_it_is_given() {
    let api = BillingApi::start().await;
    let dir = tempfile::tempdir().unwrap();
    let records = sample(&Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    });
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let config_path = dir.path().join("webhook.json");
    std::fs::write(&config_path, config(&api, rates()).to_string()).unwrap();
    let out = dir.path().join("out");
    let run = |allow: Option<String>| {
        let (usage, config_path, out) = (usage.clone(), config_path.clone(), out.clone());
        tokio::task::spawn_blocking(move || {
            let mut args = vec![
                "adapter".to_string(),
                "test".into(),
                component_path("billing-webhook").to_str().unwrap().into(),
                "--config".into(),
                config_path.to_str().unwrap().into(),
                "--usage".into(),
                usage.to_str().unwrap().into(),
                "--out".into(),
                out.to_str().unwrap().into(),
            ];
            if let Some(origin) = allow {
                args.extend(["--allow-outbound".into(), origin]);
            }
            tally(&args.iter().map(String::as_str).collect::<Vec<_>>())
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
    let report = String::from_utf8_lossy(&passed.stdout);
    assert!(
        report.contains(&format!("{} requests sent", requests.len())),
        "{report}"
    );
    let written: Value =
        serde_json::from_slice(&std::fs::read(out.join("invoice-summary.json")).unwrap()).unwrap();
    assert_eq!(written["lines"], api.billed_lines().len());
}
