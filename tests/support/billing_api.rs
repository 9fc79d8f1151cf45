//! A billing system's HTTP API on a loopback port, as adapters that `send`
//! invoice lines meet it: it keeps every request, drops a request whose
//! `Idempotency-Key` it already accepted (as real billing APIs do), and can
//! be told to fail one request or to answer slowly. And what a test asserts
//! of the invoice lines it received.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tally::sandbox::egress::AllowedOrigin;

use super::component_path;
use super::process::tally_ok;

/// The API key the billing API expects in `X-Api-Key`.
pub const API_KEY: &str = "test-api-key";

/// Installs the billing-webhook adapter as `billing` on the host at `base`
/// with the CLI (its manifest written into `dir`): invoice lines sent to
/// `api` at `rates`, daily windows from `start`, no lag.
pub fn install_billing_webhook(
    dir: &std::path::Path,
    base: &str,
    token: &str,
    api: &BillingApi,
    start: DateTime<Utc>,
    rates: &[(&str, f64)],
) {
    let wasm = std::fs::read(component_path("billing-webhook")).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rates: Vec<String> = rates.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    let manifest = dir.join("billing.toml");
    std::fs::write(
        &manifest,
        format!(
            "name = 'billing'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n\
             component = '{}'\nallowed_outbound_hosts = ['{}']\n\
             [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n\
             [config]\nendpoint = '{}'\ncurrency = 'EUR'\nbatch_size = 4\n\
             headers = {{ 'X-Api-Key' = '{API_KEY}' }}\nrates = {{ {} }}\n",
            super::world_of(&wasm),
            component_path("billing-webhook").display(),
            api.origin,
            start.to_rfc3339(),
            api.endpoint(),
            rates.join(", ")
        ),
    )
    .unwrap();
    let installed = tally_ok(&[
        "adapters",
        "install",
        manifest.to_str().unwrap(),
        "--url",
        base,
        "--token",
        token,
    ]);
    assert!(installed.starts_with("installed billing"), "{installed}");
}

/// One request as the billing API saw it.
#[derive(Clone, Debug)]
pub struct Received {
    pub key: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub status: StatusCode,
}

#[derive(Default)]
pub struct Ledger {
    /// Every request in arrival order, duplicates and failures included.
    requests: Vec<Received>,
    /// The keys it accepted, in order, with their bodies.
    accepted: Vec<(String, Value)>,
    /// The arrival (counted from 1) answered 503, once.
    fail_arrival: Option<usize>,
    /// How long each answer takes.
    delay: Duration,
}

/// A billing API on a loopback port.
pub struct BillingApi {
    /// `http://127.0.0.1:PORT`
    pub origin: String,
    ledger: Arc<Mutex<Ledger>>,
}

impl BillingApi {
    pub async fn start() -> Self {
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let app = axum::Router::new()
            .route("/v1/invoice-lines", axum::routing::post(receive))
            .with_state(ledger.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        BillingApi { origin, ledger }
    }

    pub fn endpoint(&self) -> String {
        format!("{}/v1/invoice-lines", self.origin)
    }

    pub fn allowed(&self) -> AllowedOrigin {
        AllowedOrigin::parse(&self.origin).unwrap()
    }

    /// Answers the `arrival`-th request (from 1, counting every request) with a 503, once.
    pub fn fail_once_at(&self, arrival: usize) {
        self.ledger.lock().unwrap().fail_arrival = Some(arrival);
    }

    /// Makes every answer take `delay` (so that a run lasts long enough to be interrupted).
    pub fn slow_down(&self, delay: Duration) {
        self.ledger.lock().unwrap().delay = delay;
    }

    /// Requests after the first `mark` that repeat the idempotency key of one
    /// of those: what a retried or taken-over run sent again.
    pub fn resent_since(&self, mark: usize) -> usize {
        let requests = self.requests();
        let (before, after) = requests.split_at(mark);
        after
            .iter()
            .filter(|r| before.iter().any(|old| old.key == r.key))
            .count()
    }

    pub fn requests(&self) -> Vec<Received> {
        self.ledger.lock().unwrap().requests.clone()
    }

    pub fn accepted(&self) -> Vec<(String, Value)> {
        self.ledger.lock().unwrap().accepted.clone()
    }

    /// The invoice lines of the accepted requests: what would be billed.
    pub fn billed_lines(&self) -> Vec<Value> {
        self.accepted()
            .iter()
            .flat_map(|(_, body)| body["lines"].as_array().unwrap().clone())
            .collect()
    }
}

async fn receive(
    State(ledger): State<Arc<Mutex<Ledger>>>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, String) {
    let delay = ledger.lock().unwrap().delay;
    tokio::time::sleep(delay).await;
    let mut ledger = ledger.lock().unwrap();
    let arrival = ledger.requests.len() + 1;
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (status, answer) = if key.is_empty() {
        (
            StatusCode::BAD_REQUEST,
            json!({"error": "Idempotency-Key is required"}),
        )
    } else if headers.get("x-api-key").and_then(|v| v.to_str().ok()) != Some(API_KEY) {
        (
            StatusCode::UNAUTHORIZED,
            json!({"error": "invalid API key"}),
        )
    } else if ledger.fail_arrival == Some(arrival) {
        ledger.fail_arrival = None;
        (
            StatusCode::SERVICE_UNAVAILABLE,
            json!({"error": "down for maintenance"}),
        )
    } else if ledger.accepted.iter().any(|(k, _)| *k == key) {
        (StatusCode::OK, json!({"duplicate": true}))
    } else if json.is_null() {
        (StatusCode::BAD_REQUEST, json!({"error": "not JSON"}))
    } else {
        ledger.accepted.push((key.clone(), json.clone()));
        (
            StatusCode::CREATED,
            json!({"accepted": json["lines"].as_array().map_or(0, Vec::len)}),
        )
    };
    ledger.requests.push(Received {
        key,
        headers,
        body: json,
        status,
    });
    (status, answer.to_string())
}

/// A decimal-string field of an invoice line.
fn decimal(line: &Value, field: &str) -> f64 {
    line[field].as_str().unwrap().parse().unwrap()
}

/// Asserts that `lines` bill each line once and add up, per meter, to
/// `expected` (each line is rounded to 6 decimals).
pub fn assert_billed(lines: &[Value], expected: &BTreeMap<String, (f64, f64)>) {
    let ids: BTreeSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), lines.len(), "every line is billed once");
    let mut billed: BTreeMap<String, (f64, f64, usize)> = BTreeMap::new();
    for line in lines {
        let total = billed
            .entry(line["meter_id"].as_str().unwrap().to_ascii_lowercase())
            .or_default();
        total.0 += decimal(line, "quantity");
        total.1 += decimal(line, "amount");
        total.2 += 1;
        // What the receiver can recompute from the line itself.
        let recomputed = decimal(line, "quantity") * decimal(line, "unit_price");
        assert!(
            (decimal(line, "amount") - recomputed).abs() <= 5e-7 + 1e-9 * recomputed,
            "{line}"
        );
        assert_eq!(line["currency"], "EUR");
        assert_eq!(
            time(line["period_end"].as_str().unwrap())
                - time(line["period_start"].as_str().unwrap()),
            86_400,
            "a line is one usage day"
        );
    }
    assert_eq!(
        billed.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same meters"
    );
    for (meter, &(quantity, amount)) in expected {
        let (got_quantity, got_amount, lines) = billed[meter];
        let tolerance = 1e-6 * lines as f64 + 1e-9 * quantity;
        assert!(
            (got_quantity - quantity).abs() <= tolerance,
            "{meter}: quantity {got_quantity} vs {quantity}"
        );
        assert!(
            (got_amount - amount).abs() <= tolerance,
            "{meter}: amount {got_amount} vs {amount}"
        );
    }
}

/// The keys the host promises for a run's requests: `<run-id>.<n>`, n from 1.
pub fn keys_of(run_id: &str, requests: usize) -> Vec<String> {
    (1..=requests).map(|n| format!("{run_id}.{n}")).collect()
}

/// Unix seconds of an RFC 3339 time.
pub fn time(text: &str) -> i64 {
    chrono::DateTime::parse_from_rfc3339(text)
        .unwrap()
        .timestamp()
}
