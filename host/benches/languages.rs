//! The chargeback adapter in Rust, Python, JavaScript, C and Go side by
//! side, on the same data in the same run: compile at install, load from the
//! cache, instantiate, export (rows/s) and peak memory, with the other
//! languages' figures as a ratio of the Rust ones.
//!
//! Needs the components: `adapters/build.sh`. Run:
//! `cargo bench -p tally --bench languages` (`-- --quick` for a smaller run).

mod common;
use common::METERS;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{TimeZone, Utc};
use tally::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use tally::sandbox::{AdapterEngine, Limits, describe};
use tally::store::Store;
use tally::store::sqlite::SqliteStore;

/// The implementations: (label, component).
const IMPLEMENTATIONS: [(&str, &str); 5] = [
    ("Rust", "chargeback-csv"),
    ("Python", "chargeback-py"),
    ("JavaScript", "chargeback-js"),
    ("C", "chargeback-c"),
    ("Go", "chargeback-go"),
];

/// What one implementation measured.
struct Figures {
    size: usize,
    compile: Duration,
    cached_load: Duration,
    instantiate: Duration,
    export: Duration,
    rows: u64,
    peak_memory: usize,
    document: Vec<u8>,
}

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(benchmark(quick));
}

async fn benchmark(quick: bool) {
    let (resources, days) = if quick { (50, 2) } else { (200, 7) };
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let start = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    common::load_grid(&*store, start, days, resources, |r| {
        format!("sub-{}", r % 10)
    })
    .await;
    // Records are reported 10 minutes after their hour: the window reaches one hour further.
    let end = start + chrono::Duration::days(days) + chrono::Duration::hours(1);
    let rows = resources * METERS.len() * days as usize * 24;
    println!(
        "chargeback in {} languages: {rows} hourly aggregates ({resources} resources × 5 meters × {days} days)\n",
        IMPLEMENTATIONS.len()
    );
    let config = common::chargeback_config();
    let request = ExportRequest {
        run_id: "bench".into(),
        window: Window {
            start: start.timestamp(),
            end: end.timestamp(),
        },
        granularity: WitGranularity::Hourly,
        correction: false,
    };

    let mut results = Vec::new();
    for (label, name) in IMPLEMENTATIONS {
        let figures = measure(name, &store, &request, &config).await;
        assert_eq!(figures.rows as usize, rows, "{label} read every row");
        results.push((label, figures));
    }
    let rust = &results[0].1;
    for (label, figures) in &results[1..] {
        assert!(
            figures.document == rust.document,
            "the {label} document differs from the Rust one"
        );
    }

    println!("| | size | compile | cached load | instantiate | export | rows/s | peak memory |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for (label, f) in &results {
        println!(
            "| {label} | {:.1} MB | {:.0} ms | {:.1} ms | {:.0} µs | {:.0} ms | {:.0} | {:.1} MiB |",
            f.size as f64 / 1e6,
            ms(f.compile),
            ms(f.cached_load),
            f.instantiate.as_secs_f64() * 1e6,
            ms(f.export),
            f.rows as f64 / f.export.as_secs_f64(),
            f.peak_memory as f64 / (1 << 20) as f64
        );
    }
    println!("\nas a ratio of Rust (higher is slower or bigger; rows/s: the share of Rust's):");
    for (label, f) in &results[1..] {
        println!(
            "  {label}: compile {:.1}×, cached load {:.1}×, instantiate {:.1}×, rows/s {:.0}%, peak memory {:.1}×",
            ratio(f.compile, rust.compile),
            ratio(f.cached_load, rust.cached_load),
            ratio(f.instantiate, rust.instantiate),
            100.0 * rust.export.as_secs_f64() / f.export.as_secs_f64(),
            f.peak_memory as f64 / rust.peak_memory as f64
        );
    }
    println!(
        "\nthe {} documents are byte-identical ({} bytes)",
        results.len(),
        rust.document.len()
    );
}

async fn measure(
    name: &str,
    store: &Arc<SqliteStore>,
    request: &ExportRequest,
    config: &str,
) -> Figures {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../target/adapters")
        .join(format!("{name}.wasm"));
    let wasm = std::fs::read(&path)
        .unwrap_or_else(|_| panic!("{} is missing: run adapters/build.sh", path.display()));
    let cache = tempfile::tempdir().unwrap();
    let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
    let cold = engine.load(&wasm).unwrap();
    assert!(!cold.cached);
    let mut cached_load = Duration::MAX;
    for _ in 0..5 {
        cached_load = cached_load.min(engine.load(&wasm).unwrap().load_time);
    }
    let adapter = engine.load(&wasm).unwrap();
    let limits = Limits::default();
    let mut instantiations: Vec<Duration> = (0..50)
        .map(|_| describe(&engine, &adapter, &limits).unwrap().1)
        .collect();
    instantiations.sort();

    let catalog = store.meter_catalog().await.unwrap();
    let mut best: Option<Figures> = None;
    for _ in 0..3 {
        let outcome = common::export(&engine, &adapter, store, &catalog, request, config).await;
        let summary = outcome
            .result
            .unwrap_or_else(|e| panic!("{name} failed: {e}"));
        if best
            .as_ref()
            .is_some_and(|b| b.export <= outcome.figures.elapsed)
        {
            continue;
        }
        best = Some(Figures {
            size: wasm.len(),
            compile: cold.load_time,
            cached_load,
            instantiate: instantiations[instantiations.len() / 2],
            export: outcome.figures.elapsed,
            rows: summary.rows_read,
            peak_memory: outcome.figures.peak_memory_bytes,
            document: outcome
                .documents
                .get("chargeback.csv")
                .map(|d| d.bytes.clone())
                .unwrap_or_default(),
        });
    }
    best.unwrap()
}

fn ms(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
