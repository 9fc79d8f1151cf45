//! Shared by the benchmarks: a grid of hourly usage loaded straight into a
//! store, and an adapter's export run as the host runs it.

#![allow(dead_code)] // each benchmark uses its own share

pub mod cpu;
pub mod latency;

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tally::sandbox::contract::ExportRequest;
use tally::sandbox::host_usage::UsageAccess;
use tally::sandbox::{
    AdapterEngine, ExportOutcome, Limits, LoadedAdapter, Outbound, SubscriptionGrant, run_export,
};
use tally::store::Store;
use tally::usage::{MeterCatalog, UsageRecordInput, ValidationContext};

/// Five documented meters (VM, Windows VM, S10 disk, blob capacity, static IP).
pub const METERS: [&str; 5] = [
    "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5",
    "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A",
    "e5572fce-9f58-49d7-840c-b168c0f01fff",
    "09F8879E-87E9-4305-A572-4B7BE209F857",
    "F271A8A388C44D93956A063E1D2FA80B",
];

/// The `chargeback-csv` config the benchmarks export with: euros, grouped
/// by the `cost-center` tag, rates for four of [`METERS`] (the static IP is
/// left unrated).
pub fn chargeback_config() -> String {
    json!({
        "currency": "EUR", "group_by_tag": "cost-center",
        "rates": { METERS[0]: 0.025, METERS[1]: 0.04, METERS[2]: 0.002, METERS[3]: 0.0001 }
    })
    .to_string()
}

/// One record per resource, meter and hour for `days` from `start`, reported
/// 10 minutes after its hour; resource `r` belongs to `subscription(r)` and
/// carries the tag `cost-center = cc-{r % 7}`.
pub async fn load_grid(
    store: &dyn Store,
    start: DateTime<Utc>,
    days: i64,
    resources: usize,
    subscription: impl Fn(usize) -> String,
) {
    let catalog = MeterCatalog::builtin_for_tests();
    let ctx = ValidationContext {
        meters: &catalog,
        now: Utc::now(),
        may_set_reported_time: true,
        retention_cutoff: None,
    };
    for hour in 0..days * 24 {
        let usage_start = start + chrono::Duration::hours(hour);
        let usage_end = usage_start + chrono::Duration::hours(1);
        let reported = (usage_end + chrono::Duration::minutes(10)).to_rfc3339();
        let mut batch = Vec::with_capacity(resources * METERS.len());
        for resource in 0..resources {
            let sub = subscription(resource);
            for meter in METERS {
                let input: UsageRecordInput = serde_json::from_value(json!({
                    "eventId": format!("{hour}-{resource}-{meter}"), "subscriptionId": sub, "meterId": meter,
                    "resourceUri": format!("/subscriptions/{sub}/resourceGroups/rg/providers/Microsoft.Compute/virtualMachines/vm-{resource}"),
                    "location": "local", "tags": {"cost-center": format!("cc-{}", resource % 7)},
                    "additionalInfo": {"ImageType": "Linux"}, "quantity": 1.0 + (resource % 5) as f64,
                    "usageStartTime": usage_start.to_rfc3339(), "usageEndTime": usage_end.to_rfc3339(),
                    "reportedTime": reported,
                }))
                .expect("a well-formed record");
                batch.push(input.validate(batch.len(), &ctx).expect("a valid record"));
            }
        }
        store.ingest(batch).await.expect("ingest");
    }
}

/// One export of `adapter` over everything in `store`, with the default
/// limits and no egress, on a blocking thread as the host runs it.
pub async fn export<S: Store + 'static>(
    engine: &Arc<AdapterEngine>,
    adapter: &LoadedAdapter,
    store: &Arc<S>,
    catalog: &Arc<MeterCatalog>,
    request: &ExportRequest,
    config: &str,
) -> ExportOutcome {
    let now = store.clock().await.expect("the store's clock");
    let usage = UsageAccess::new(store.clone(), catalog.clone(), SubscriptionGrant::All, now);
    let (engine, adapter, request, config) = (
        engine.clone(),
        adapter.clone(),
        request.clone(),
        config.to_owned(),
    );
    tokio::task::spawn_blocking(move || {
        let limits = Limits::default();
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

/// The `nextLink` of a page, found without decoding the rows (it is the last field).
pub fn next_link_of(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).unwrap();
    let start = text.rfind("\"nextLink\":\"")? + "\"nextLink\":\"".len();
    let end = start + text[start..].find('"')?;
    Some(text[start..end].to_string())
}

/// Posts every body to `POST /v1/usage` from `clients` concurrent clients,
/// spread over `bases` round-robin; the time it took.
pub async fn post_all(
    bases: &[String],
    token: &str,
    bodies: &[String],
    clients: usize,
) -> Duration {
    let client = reqwest::Client::new();
    let bodies = Arc::new(bodies.to_vec());
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (client, bodies, token) = (client.clone(), bodies.clone(), token.to_string());
            let url = format!("{}/v1/usage", bases[c % bases.len()]);
            tokio::spawn(async move {
                for body in bodies.iter().skip(c).step_by(clients) {
                    let response = client
                        .post(&url)
                        .bearer_auth(&token)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(
                        response.status().is_success(),
                        "{}",
                        response.text().await.unwrap()
                    );
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// The shortest of `runs` measurements, with what the last one returned.
pub async fn best_of<T>(
    runs: usize,
    mut measure: impl AsyncFnMut() -> (Duration, T),
) -> (Duration, T) {
    let mut best = Duration::MAX;
    let mut output = None;
    for _ in 0..runs {
        let (elapsed, value) = measure().await;
        best = best.min(elapsed);
        output = Some(value);
    }
    (best, output.expect("at least one run"))
}

/// The PostgreSQL server benchmarks use: `TALLY_BENCH_POSTGRES`, by default
/// `postgres://$USER@127.0.0.1:5432/test`.
pub fn postgres_server() -> String {
    std::env::var("TALLY_BENCH_POSTGRES").unwrap_or_else(|_| {
        format!(
            "postgres://{}@127.0.0.1:5432/test",
            std::env::var("USER").unwrap_or_else(|_| "postgres".into())
        )
    })
}

/// A database of the benchmark's own on the server, dropped by [`BenchDatabase::drop`].
pub struct BenchDatabase {
    server: String,
    name: String,
    pub url: String,
}

impl BenchDatabase {
    pub async fn create(server: &str) -> Self {
        let name = format!(
            "tally_bench_{}_{}",
            std::process::id(),
            Utc::now().timestamp_micros()
        );
        admin(server, &format!("CREATE DATABASE {name}")).await;
        let mut url = url::Url::parse(server).unwrap();
        url.set_path(&name);
        BenchDatabase {
            server: server.to_owned(),
            name,
            url: url.to_string(),
        }
    }

    pub async fn drop(self) {
        admin(
            &self.server,
            &format!("DROP DATABASE {} WITH (FORCE)", self.name),
        )
        .await;
    }
}

/// A connection to `url` whose connection task runs on the current runtime.
pub async fn connect_postgres(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| {
            panic!("cannot reach PostgreSQL at {url}: {e} (set TALLY_BENCH_POSTGRES)")
        });
    tokio::spawn(connection);
    client
}

async fn admin(server: &str, sql: &str) {
    connect_postgres(server)
        .await
        .batch_execute(sql)
        .await
        .unwrap();
}
