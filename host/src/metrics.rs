//! Prometheus metrics: requests, latencies, ingest counts and export runs,
//! served at `/metrics`.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

/// Labels of a request. Every value comes from a fixed set, so that no
/// client can grow the registry: a standard method or `other`, a route
/// template or `unmatched`, a status the host itself answered.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    method: &'static str,
    route: String,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    adapter: String,
    /// `succeeded`, `retrying` or `failed`.
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct AdapterLabels {
    adapter: String,
}

/// The host's metrics and their registry.
pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    latency: Family<RouteLabels, Histogram>,
    /// Records stored by ingest.
    pub records_accepted: Counter,
    /// Records recognised as already accepted.
    pub records_duplicate: Counter,
    /// Ingest requests refused as invalid.
    pub rejected_requests: Counter,
    /// Usage events deleted past their retention (the aggregates stay).
    pub events_pruned: Counter,
    export_runs: Family<RunLabels, Counter>,
    export_rows: Family<AdapterLabels, Counter>,
    export_duration: Family<AdapterLabels, Histogram>,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("tally");
        let requests = Family::<RequestLabels, Counter>::default();
        let latency = Family::<RouteLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.000_5, 2.0, 16))
        });
        let (records_accepted, records_duplicate, rejected_requests, events_pruned) =
            Default::default();
        registry.register(
            "http_requests",
            "HTTP requests by route and status",
            requests.clone(),
        );
        registry.register(
            "http_request_duration_seconds",
            "HTTP request latency by route",
            latency.clone(),
        );
        registry.register(
            "usage_records_accepted",
            "Usage records stored",
            Counter::clone(&records_accepted),
        );
        registry.register(
            "usage_records_duplicate",
            "Usage records already accepted (not counted again)",
            Counter::clone(&records_duplicate),
        );
        registry.register(
            "ingest_requests_rejected",
            "Ingest requests refused as invalid",
            Counter::clone(&rejected_requests),
        );
        registry.register(
            "usage_events_pruned",
            "Usage events deleted past their retention by this host (aggregates are kept)",
            Counter::clone(&events_pruned),
        );
        let export_runs = Family::<RunLabels, Counter>::default();
        let export_rows = Family::<AdapterLabels, Counter>::default();
        let export_duration = Family::<AdapterLabels, Histogram>::new_with_constructor(|| {
            Histogram::new(exponential_buckets(0.01, 2.0, 16))
        });
        registry.register(
            "export_runs",
            "Export run attempts by adapter and outcome",
            export_runs.clone(),
        );
        registry.register(
            "export_rows_read",
            "Aggregated usage rows read by adapters",
            export_rows.clone(),
        );
        registry.register(
            "export_run_duration_seconds",
            "Export run attempts' duration by adapter",
            export_duration.clone(),
        );
        Metrics {
            registry,
            requests,
            latency,
            records_accepted,
            records_duplicate,
            rejected_requests,
            events_pruned,
            export_runs,
            export_rows,
            export_duration,
        }
    }
}

impl Metrics {
    /// Counts the outcome of an accepted ingest request.
    pub fn record_ingest(&self, accepted: usize, duplicates: usize) {
        self.records_accepted.inc_by(accepted as u64);
        self.records_duplicate.inc_by(duplicates as u64);
    }

    /// Counts an export run attempt of `adapter`.
    pub fn record_run(&self, adapter: &str, outcome: &'static str, seconds: f64, rows_read: u64) {
        let adapter = adapter.to_owned();
        self.export_runs
            .get_or_create(&RunLabels {
                adapter: adapter.clone(),
                outcome,
            })
            .inc();
        let labels = AdapterLabels { adapter };
        self.export_rows.get_or_create(&labels).inc_by(rows_read);
        self.export_duration.get_or_create(&labels).observe(seconds);
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }
}

/// The method as a label: one of the standard methods, else `other` (a
/// client may send any token as a method; each would be a new series).
fn method_label(method: &Method) -> &'static str {
    match method.as_str() {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "POST" => "POST",
        "PUT" => "PUT",
        "DELETE" => "DELETE",
        "PATCH" => "PATCH",
        "OPTIONS" => "OPTIONS",
        "CONNECT" => "CONNECT",
        "TRACE" => "TRACE",
        _ => "other",
    }
}

/// Middleware over `metrics`: counts and times every routed request. The
/// route is the matched template (never the raw path), so labels stay a
/// fixed set.
pub async fn track(State(metrics): State<Arc<Metrics>>, request: Request, next: Next) -> Response {
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_owned();
    let method = method_label(request.method());
    let started = Instant::now();
    let response = next.run(request).await;
    let labels = RequestLabels {
        method,
        route: route.clone(),
        status: response.status().as_u16(),
    };
    metrics.requests.get_or_create(&labels).inc();
    metrics
        .latency
        .get_or_create(&RouteLabels { route })
        .observe(started.elapsed().as_secs_f64());
    response
}
