//! Shared helpers of the integration tests: a host on a temporary data
//! directory, tokens, requests through `Router::oneshot` or real HTTP, and
//! sample usage from the generator in `examples/`.

pub mod billing_api;
pub mod browser;
pub mod database;
pub mod oidc;
pub mod oidc_user;
pub mod process;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tally::api::{self, AppState, Settings};
use tally::auth::{Role, new_secret, secret_digest};
use tally::exports::{ExportSettings, Exports};
use tally::sandbox::{AdapterEngine, CompileSettings, Compiler};
use tally::store::{NewToken, Store};
use tower::ServiceExt;

pub use self::database::DataDir;

pub const API: &str = "api-version=2015-06-01-preview";
/// Base VM Size Hours, as the catalog spells it.
pub const VM_METER: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
/// Static IP Address Usage.
pub const IP_METER: &str = "F271A8A388C44D93956A063E1D2FA80B";

/// A host on its own temporary data directory, with an operator and a reporter token.
pub struct TestHost {
    pub app: Router,
    /// The settings `app` was built with.
    pub settings: Settings,
    pub store: Arc<dyn Store>,
    /// Billing adapters, with the scheduler running (see [`TestHost::with_exports`]).
    pub exports: Option<Arc<Exports>>,
    pub operator: String,
    pub reporter: String,
    pub data: DataDir,
}

/// A response, decoded.
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// `(accepted, duplicates)` of an ingest reply.
    pub fn counts(&self) -> (u64, u64) {
        (
            self.body["accepted"].as_u64().unwrap(),
            self.body["duplicates"].as_u64().unwrap(),
        )
    }

    /// The ARM error code, if this is an error.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
}

impl TestHost {
    pub async fn new() -> Self {
        Self::with_settings(settings()).await
    }

    pub async fn with_settings(settings: Settings) -> Self {
        let data = DataDir::new();
        let store = data.database().open().await.unwrap();
        let app = api::router(AppState::new(store.clone(), settings.clone()));
        let mut host = TestHost {
            app,
            settings,
            store,
            exports: None,
            operator: String::new(),
            reporter: String::new(),
            data,
        };
        host.operator = host.token(Role::Operator, &[]).await;
        host.reporter = host.token(Role::Reporter, &[]).await;
        host
    }

    /// A host that runs billing adapters, its scheduler ticking every 100 ms
    /// and retrying after 200 ms.
    pub async fn with_exports() -> Self {
        Self::with_compile_settings(CompileSettings::default()).await
    }

    /// [`TestHost::with_exports`], compiling components under `compile`.
    pub async fn with_compile_settings(compile: CompileSettings) -> Self {
        let settings = ExportSettings {
            tick: Duration::from_millis(100),
            retry_base: Duration::from_millis(200),
            retry_max: Duration::from_secs(1),
            max_attempts: 3,
            ..ExportSettings::default()
        };
        Self::with_export_and_compile_settings(settings, compile).await
    }

    /// A host that runs billing adapters with these scheduler settings.
    pub async fn with_export_settings(settings: ExportSettings) -> Self {
        Self::with_export_and_compile_settings(settings, CompileSettings::default()).await
    }

    /// A host that runs billing adapters and compiles them as `tally serve`
    /// does: in children of the `tally` binary, bounded by `compile`.
    pub async fn with_export_and_compile_settings(
        settings: ExportSettings,
        compile: CompileSettings,
    ) -> Self {
        let mut host = Self::new().await;
        let compiler = Compiler::Child {
            program: env!("CARGO_BIN_EXE_tally").into(),
            settings: compile,
        };
        let engine = Arc::new(
            AdapterEngine::new(host.data.path().join("compiled-adapters"))
                .unwrap()
                .with_compiler(compiler),
        );
        let exports = Arc::new(Exports::new(host.store.clone(), engine, settings));
        tokio::spawn(exports.clone().run_scheduler());
        host.app = api::router(
            AppState::new(host.store.clone(), host.settings.clone()).with_exports(exports.clone()),
        );
        host.exports = Some(exports);
        host
    }

    /// A host holding the generator's sample usage; returns the records too.
    pub async fn with_sample(
        options: tally_usage_generator::Options,
    ) -> (Self, Vec<tally_usage_generator::UsageRecord>) {
        let host = Self::new().await;
        let records = sample(&options);
        host.ingest(&to_wire(&records)).await;
        (host, records)
    }

    /// Mints a token.
    pub async fn token(&self, role: Role, subscriptions: &[&str]) -> String {
        let secret = new_secret();
        let token = NewToken {
            digest: secret_digest(&secret),
            role,
            subscriptions: subscriptions.iter().map(|s| s.to_string()).collect(),
            description: "test".into(),
        };
        self.store.create_token(token).await.unwrap();
        secret
    }

    /// One request through the router, in process.
    pub async fn call(
        &self,
        method: Method,
        uri: &str,
        token: Option<&str>,
        body: Option<String>,
    ) -> Reply {
        call(&self.app, method, uri, token, body).await
    }

    pub async fn get(&self, uri: &str, token: &str) -> Reply {
        self.call(Method::GET, uri, Some(token), None).await
    }

    /// Posts records as a JSON array with the given token.
    pub async fn ingest_as(&self, token: &str, records: &[Value]) -> Reply {
        self.call(
            Method::POST,
            "/v1/usage",
            Some(token),
            Some(Value::from(records.to_vec()).to_string()),
        )
        .await
    }

    /// Posts records as an operator (who may backfill reported times); asserts success.
    pub async fn ingest(&self, records: &[Value]) -> Value {
        let mut accepted = json!({"accepted": 0, "duplicates": 0});
        for chunk in records.chunks(5_000) {
            let reply = self.ingest_as(&self.operator, chunk).await;
            assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
            accepted["accepted"] = json!(
                accepted["accepted"].as_u64().unwrap() + reply.body["accepted"].as_u64().unwrap()
            );
            accepted["duplicates"] = json!(
                accepted["duplicates"].as_u64().unwrap()
                    + reply.body["duplicates"].as_u64().unwrap()
            );
        }
        accepted
    }

    /// Follows `nextLink` from `uri` to the last page; returns every row and the page count.
    pub async fn list_all(&self, uri: &str, token: &str) -> (Vec<Value>, usize) {
        let mut rows = Vec::new();
        let mut next = Some(uri.to_string());
        let mut pages = 0;
        while let Some(uri) = next {
            let reply = self.get(&uri, token).await;
            assert_eq!(reply.status, StatusCode::OK, "{uri}: {}", reply.body);
            pages += 1;
            rows.extend(reply.body["value"].as_array().unwrap().iter().cloned());
            next = reply.body["nextLink"].as_str().map(|link| {
                let link = link
                    .strip_prefix("http://tally.test")
                    .expect("nextLink is absolute, on the host the client used");
                link.to_string()
            });
        }
        (rows, pages)
    }

    /// Serves the API over real HTTP on a free loopback port.
    pub async fn serve(&self) -> SocketAddr {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        // The same host, answering to its address as `tally serve` does.
        let mut settings = self.settings.clone();
        settings.allowed_hosts.push(address.to_string());
        let mut state = AppState::new(self.store.clone(), settings);
        if let Some(exports) = &self.exports {
            state = state.with_exports(exports.clone());
        }
        let app = api::router(state);
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        address
    }
}

/// The settings of a test host: the defaults, answering to `tally.test`,
/// the `Host` of in-process requests.
pub fn settings() -> Settings {
    Settings {
        allowed_hosts: vec!["tally.test".into()],
        ..Settings::default()
    }
}

/// A usage record in the wire format.
pub fn record(
    subscription: &str,
    event: &str,
    meter: &str,
    quantity: f64,
    start: &str,
    end: &str,
) -> Value {
    json!({
        "eventId": event, "subscriptionId": subscription, "meterId": meter,
        "resourceUri": format!("/subscriptions/{subscription}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm1"),
        "location": "local", "tags": {"cost-center": "finance"}, "additionalInfo": {"ImageType": "Linux"},
        "quantity": quantity, "usageStartTime": start, "usageEndTime": end,
    })
}

/// The same record, reported at `reported` (an operator's backfill).
pub fn reported(mut record: Value, reported: &str) -> Value {
    record["reportedTime"] = json!(reported);
    record
}

/// The start of the current hour: the latest end a usage query may ask for.
pub fn this_hour() -> chrono::DateTime<chrono::Utc> {
    let now = chrono::Utc::now().timestamp();
    chrono::DateTime::from_timestamp(now - now.rem_euclid(3_600), 0).unwrap()
}

/// The last day that an example manifest's daily window (lag 2 h) has closed,
/// whatever the hour: yesterday from 03:00 UTC, the day before until then.
pub fn last_closed_day() -> chrono::NaiveDate {
    (chrono::Utc::now() - chrono::Duration::hours(3)).date_naive() - chrono::Days::new(1)
}

/// One request through `app`, in process.
pub async fn call(
    app: &Router,
    method: Method,
    uri: &str,
    token: Option<&str>,
    body: Option<String>,
) -> Reply {
    let mut request = Request::builder()
        .method(method)
        .uri(uri)
        .header("host", "tally.test");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    if body.is_some() {
        request = request.header("content-type", "application/json");
    }
    let request = request
        .body(body.map(Body::from).unwrap_or_else(Body::empty))
        .unwrap();
    let response = app.clone().oneshot(request).await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()));
    Reply {
        status,
        headers,
        body,
    }
}

/// The tenant usage API URI of a subscription.
pub fn usage_uri(subscription: &str, start: &str, end: &str, granularity: &str) -> String {
    format!(
        "/subscriptions/{subscription}/providers/Microsoft.Commerce/UsageAggregates?reportedStartTime={start}&reportedEndTime={end}&aggregationGranularity={granularity}&{API}"
    )
}

/// The provider usage API URI (all subscribers).
pub fn provider_uri(start: &str, end: &str, granularity: &str) -> String {
    format!(
        "/subscriptions/default-provider/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime={start}&reportedEndTime={end}&aggregationGranularity={granularity}&{API}"
    )
}

/// The `tally:billing` version a component targets (`"0.2.0"`), as its
/// manifest's `world` says it: read from the name of its adapter export; the
/// current version for bytes that are no adapter.
pub fn world_of(wasm: &[u8]) -> String {
    let prefix = b"tally:billing/adapter@";
    let Some(at) = wasm.windows(prefix.len()).position(|w| w == prefix) else {
        return tally::sandbox::contract::CURRENT_WORLD.to_owned();
    };
    let at = at + prefix.len();
    wasm[at..]
        .iter()
        .take_while(|b| b.is_ascii_digit() || **b == b'.')
        .map(|&b| char::from(b))
        .collect()
}

/// The bytes of an example adapter built by `adapters/build.sh` (run by
/// `tests/run.sh`): tests that need one fail, not skip, without it.
pub fn component_path(name: &str) -> std::path::PathBuf {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/adapters")
        .join(format!("{name}.wasm"));
    assert!(
        path.exists(),
        "{} is missing: run adapters/build.sh (tests/run.sh does)",
        path.display()
    );
    path
}

/// Sample usage from the generator, as wire records.
pub fn sample(options: &tally_usage_generator::Options) -> Vec<tally_usage_generator::UsageRecord> {
    tally_usage_generator::generate(options).collect()
}

pub fn to_wire(records: &[tally_usage_generator::UsageRecord]) -> Vec<Value> {
    records
        .iter()
        .map(|r| serde_json::to_value(r).unwrap())
        .collect()
}

/// Sum of the generated records' quantities per lower-case meter id: what the
/// usage API must total once they are ingested.
pub fn ingested_totals<'a>(
    records: impl IntoIterator<Item = &'a tally_usage_generator::UsageRecord>,
) -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    for r in records {
        *totals.entry(r.meter_id.to_ascii_lowercase()).or_insert(0.0) += r.quantity;
    }
    totals
}

/// Sum of `properties.quantity` per lower-case meter id.
pub fn totals_by_meter(rows: &[Value]) -> std::collections::BTreeMap<String, f64> {
    let mut totals = std::collections::BTreeMap::new();
    for row in rows {
        let meter = row["properties"]["meterId"]
            .as_str()
            .unwrap()
            .to_ascii_lowercase();
        *totals.entry(meter).or_insert(0.0) += row["properties"]["quantity"].as_f64().unwrap();
    }
    totals
}

/// Asserts two per-meter totals agree to floating-point summation error.
pub fn assert_totals_eq(
    actual: &std::collections::BTreeMap<String, f64>,
    expected: &std::collections::BTreeMap<String, f64>,
) {
    assert_eq!(
        actual.keys().collect::<Vec<_>>(),
        expected.keys().collect::<Vec<_>>(),
        "the same meters"
    );
    for (meter, want) in expected {
        let got = actual[meter];
        assert!(
            (got - want).abs() <= 1e-9 * want.abs().max(1.0),
            "meter {meter}: got {got}, want {want}"
        );
    }
}

/// When a wire record says it was reported.
pub fn reported_at(record: &Value) -> chrono::DateTime<chrono::Utc> {
    record["reportedTime"].as_str().unwrap().parse().unwrap()
}

/// The records already reported by now (a sample's last hours may be
/// reported in the future, which ingest refuses).
pub fn reported_by_now(records: Vec<Value>) -> Vec<Value> {
    let now = chrono::Utc::now();
    records
        .into_iter()
        .filter(|r| reported_at(r) < now)
        .collect()
}

/// Sends an adapter's `manifest` and component `wasm` to `path` on the host
/// at `address` (`POST /v1/adapters` installs, `PUT /v1/adapters/{name}`
/// upgrades) as the CLI does, over real HTTP with a multipart body: the
/// answer's status and JSON body.
pub async fn send_adapter(
    method: reqwest::Method,
    address: std::net::SocketAddr,
    token: &str,
    path: &str,
    manifest: &str,
    wasm: &[u8],
) -> (u16, serde_json::Value) {
    let form = reqwest::multipart::Form::new()
        .text("manifest", manifest.to_owned())
        .part(
            "component",
            reqwest::multipart::Part::bytes(wasm.to_vec()).file_name("adapter.wasm"),
        );
    let response = reqwest::Client::new()
        .request(method, format!("http://{address}{path}"))
        .bearer_auth(token)
        .multipart(form)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}
