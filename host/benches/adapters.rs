//! The chargeback export as a WebAssembly component against the same
//! transform compiled natively into the host, on the same data in the same
//! run; what provenance (the usage digest, the documents' digests) and one
//! document per subscription add to an export; and the cost of starting an
//! adapter call.
//!
//! Needs the components: `adapters/build.sh`. Run:
//! `cargo bench -p tally --bench adapters` (`-- --quick` for a smaller run).

#[path = "../../adapters/chargeback-csv/src/rating.rs"]
#[allow(dead_code, unused_imports)]
mod rating;

mod common;
use common::METERS;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use serde_json::json;
use tally::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use tally::sandbox::host_usage::BATCH_ROWS;
use tally::sandbox::usage_batch::BatchEncoder;
use tally::sandbox::usage_read::UsageRead;
use tally::sandbox::{AdapterEngine, ExportOutcome, Limits, describe};
use tally::store::exports::sha256_hex;
use tally::store::sqlite::SqliteStore;
use tally::store::{AggregateQuery, Store, SubscriptionScope};
use tally::usage::Granularity;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(benchmark(quick));
}

async fn benchmark(quick: bool) {
    let (resources, days) = if quick { (100, 2) } else { (500, 14) };
    let component =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/adapters/chargeback-csv.wasm");
    let wasm = std::fs::read(&component)
        .unwrap_or_else(|_| panic!("{} is missing: run adapters/build.sh", component.display()));

    let dir = tempfile::tempdir().unwrap();
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let start = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    common::load_grid(&*store, start, days, resources, |r| {
        format!("sub-{}", r % 10)
    })
    .await;
    // Records are reported 10 minutes after their hour: the window reaches one hour further.
    let end = start + chrono::Duration::days(days) + chrono::Duration::hours(1);
    let rows = resources * METERS.len() * days as usize * 24;
    println!(
        "chargeback export: {rows} hourly aggregates ({resources} resources × 5 meters × {days} days)\n"
    );

    let config = common::chargeback_config();
    let catalog = store.meter_catalog().await.unwrap();

    // Reading alone: the store's pages, encoded into batches.
    let query = AggregateQuery {
        scope: SubscriptionScope::All,
        reported_start: start,
        reported_end: end,
        granularity: Granularity::Hourly,
        show_details: true,
        page_size: BATCH_ROWS,
    };
    let read_only = best_of(3, || async {
        let started = Instant::now();
        read_batches(&*store, &query, |_| {}).await;
        started.elapsed()
    })
    .await;

    // The provenance's usage digest, on batches already read: what every run
    // now adds on the host's side (the sandbox digests the batches it hands over).
    let mut batches = Vec::new();
    read_batches(&*store, &query, |batch| batches.push(batch.clone())).await;
    let digest = best_of(3, || async {
        let started = Instant::now();
        let mut read = UsageRead::default();
        for batch in &batches {
            read.record(batch, usize::MAX);
        }
        assert_eq!(read.sha256_hex().len(), 64);
        started.elapsed()
    })
    .await;
    drop(batches);

    // Native: the same rating code, called on the same batches.
    let native = best_of(3, || async {
        let started = Instant::now();
        let parsed = rating::Config::parse(&config).unwrap();
        let mut chargeback = rating::Chargeback::default();
        read_batches(&*store, &query, |batch| {
            chargeback.add(&rating::columns_of!(batch), &parsed.group_by_tag);
        })
        .await;
        let names: HashMap<String, (String, String)> = catalog
            .all()
            .iter()
            .map(|m| (m.id.to_ascii_lowercase(), (m.name.clone(), m.unit.clone())))
            .collect();
        let mut csv = String::new();
        chargeback
            .render(&parsed, &names, |piece| {
                csv.push_str(piece);
                Ok::<_, ()>(())
            })
            .unwrap();
        assert!(csv.len() > 100);
        started.elapsed()
    })
    .await;

    // The component, in the sandbox.
    let cache = tempfile::tempdir().unwrap();
    let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
    let cold = engine.load(&wasm).unwrap();
    let warm = engine.load(&wasm).unwrap();
    let request = ExportRequest {
        run_id: "bench".into(),
        window: Window {
            start: start.timestamp(),
            end: end.timestamp(),
        },
        granularity: WitGranularity::Hourly,
        correction: false,
    };
    let mut peak_memory = 0;
    let mut wasm_time = Duration::MAX;
    let mut published = Duration::MAX;
    for _ in 0..3 {
        let outcome = common::export(&engine, &warm, &store, &catalog, &request, &config).await;
        let summary = outcome.result.as_ref().expect("the export succeeds");
        assert_eq!(summary.rows_read as usize, rows);
        peak_memory = outcome.figures.peak_memory_bytes;
        wasm_time = wasm_time.min(outcome.figures.elapsed);
        published = published.min(document_digests(&outcome));
    }
    // The same export writing one more CSV per subscription (10 here) through
    // `append-for`, each owned by its subscription.
    let per_subscription_config = {
        let mut config: serde_json::Value = serde_json::from_str(&config).unwrap();
        config["per_subscription"] = json!(true);
        config.to_string()
    };
    let mut owned_time = Duration::MAX;
    let mut owned_published = Duration::MAX;
    let mut owned_documents = 0;
    for _ in 0..3 {
        let outcome = common::export(
            &engine,
            &warm,
            &store,
            &catalog,
            &request,
            &per_subscription_config,
        )
        .await;
        outcome.result.as_ref().expect("the export succeeds");
        owned_documents = outcome
            .documents
            .values()
            .filter(|d| d.owner.is_some())
            .count();
        owned_time = owned_time.min(outcome.figures.elapsed);
        owned_published = owned_published.min(document_digests(&outcome));
    }

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!(
        "  {:<46} {:>9.1} ms  {:>10.0} rows/s",
        "read + encode batches only",
        ms(read_only),
        rate(read_only)
    );
    println!(
        "  {:<46} {:>9.1} ms  {:>10.0} rows/s  (baseline)",
        "native transform (same code)",
        ms(native),
        rate(native)
    );
    println!(
        "  {:<46} {:>9.1} ms  {:>10.0} rows/s  {:>4.0}% of native",
        "wasm component in the sandbox",
        ms(wasm_time),
        rate(wasm_time),
        100.0 * native.as_secs_f64() / wasm_time.as_secs_f64()
    );
    println!(
        "  {:<46} {:>9.1} ms  {:>10.0} rows/s  {:>4.0}% of the export above",
        format!("+ {owned_documents} documents owned by subscriptions"),
        ms(owned_time),
        rate(owned_time),
        100.0 * wasm_time.as_secs_f64() / owned_time.as_secs_f64()
    );
    println!(
        "  adapter peak linear memory: {:.1} MiB",
        peak_memory as f64 / (1 << 20) as f64
    );

    // Provenance: the usage digest is computed inside the export (in the
    // figures above), on a thread beside the adapter's once a read passes a
    // chunk; the documents' digests when the run is published.
    println!("\nprovenance (included in the exports above):");
    println!(
        "  {:<46} {:>9.1} ms  {:>10.0} rows/s  (alone; in an export it runs beside the adapter)",
        "usage digest over the rows read",
        ms(digest),
        rate(digest),
    );
    println!(
        "  {:<46} {:>9.1} ms  ({:.1}% of the export's time; {:.1} ms with the owned documents)",
        "sha256 of the documents published",
        ms(published),
        100.0 * published.as_secs_f64() / wasm_time.as_secs_f64(),
        ms(owned_published)
    );

    // Starting a call: a fresh store and instance from the pre-instantiated component.
    let mut starts: Vec<Duration> = (0..500)
        .map(|_| describe(&engine, &warm, &Limits::default()).unwrap().1)
        .collect();
    starts.sort();
    println!(
        "\nadapter call start (fresh store + instance, {} allocator): median {:.1} µs, p99 {:.1} µs",
        if engine.pooling {
            "pooling"
        } else {
            "on-demand"
        },
        starts[starts.len() / 2].as_secs_f64() * 1e6,
        starts[starts.len() * 99 / 100].as_secs_f64() * 1e6
    );
    println!(
        "component load: compile {:.1} ms (once, at install), from the artifact cache {:.2} ms",
        ms(cold.load_time),
        ms(warm.load_time)
    );
}

/// How long the host takes to digest the documents of `outcome`, as it does
/// when it publishes them.
fn document_digests(outcome: &ExportOutcome) -> Duration {
    let started = Instant::now();
    for document in outcome.documents.values() {
        assert_eq!(sha256_hex(&document.bytes).len(), 64);
    }
    started.elapsed()
}

/// Reads every page of `query` and hands each encoded batch to `each`.
async fn read_batches(
    store: &dyn Store,
    query: &AggregateQuery,
    mut each: impl FnMut(&tally::sandbox::contract::tally::billing::usage::UsageBatch),
) {
    let mut encoder = BatchEncoder::default();
    let mut after = None;
    loop {
        let page = store.aggregates(query, after).await.unwrap();
        each(&encoder.encode(&page.rows).unwrap());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
}

async fn best_of<F: std::future::Future<Output = Duration>>(
    runs: usize,
    mut f: impl FnMut() -> F,
) -> Duration {
    let mut best = Duration::MAX;
    for _ in 0..runs {
        best = best.min(f().await);
    }
    best
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}
