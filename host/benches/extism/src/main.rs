//! tally's chargeback component against the same transform as an Extism
//! plugin, on the same rows in the same run: rows/s, call overhead, memory.
//!
//! Both read the same store pages, encoded by tally's `BatchEncoder` into the
//! same batches of `BATCH_ROWS` rows, inside the timed section. tally hands
//! each batch to the component through its typed contract; the Extism host
//! serialises it (JSON, then MessagePack: the encodings the Rust PDK decodes)
//! and calls the plugin once per batch, then once more for the CSV. Both
//! produce the same CSV, byte for byte (asserted).
//!
//! Run: `host/benches/extism/run.sh` (`--quick` for a smaller run).
//! Figures and their reading: docs/performance.md, "Against Extism".

#[path = "../../common/mod.rs"]
mod common;
mod extism_run;
mod measure;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{TimeZone, Utc};
use common::METERS;
use extism_run::Encoding;
use measure::{mib, micros, millis, percentile, rss_growth};
use serde_json::json;
use tally::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use tally::sandbox::host_usage::BATCH_ROWS;
use tally::sandbox::usage_batch::BatchEncoder;
use tally::sandbox::{AdapterEngine, Limits, describe};
use tally::store::sqlite::SqliteStore;
use tally::store::{AggregateQuery, Store, SubscriptionScope};
use tally::usage::Granularity;

/// Rounds of each export; the best of them counts.
const ROUNDS: usize = 5;
/// Calls timed for the call overhead.
const CALLS: usize = 1_000;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(benchmark(quick));
}

/// A file the benchmark needs, built by `run.sh`.
fn artifact(relative: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../..")
        .join(relative);
    std::fs::read(&path).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run host/benches/extism/run.sh",
            path.display()
        )
    })
}

/// One system's best figures over the rounds.
struct Best {
    elapsed: Duration,
    rss_growth: u64,
    linear_memory: u64,
}

impl Best {
    fn new() -> Self {
        Best {
            elapsed: Duration::MAX,
            rss_growth: 0,
            linear_memory: 0,
        }
    }

    /// Keeps the fastest time; memory as measured in the last round (the
    /// first round also pays for one-time allocations).
    fn record(&mut self, elapsed: Duration, rss_growth: u64, linear_memory: u64) {
        self.elapsed = self.elapsed.min(elapsed);
        self.rss_growth = rss_growth;
        self.linear_memory = linear_memory;
    }
}

async fn benchmark(quick: bool) {
    let (resources, days) = if quick { (100, 2) } else { (500, 14) };
    let component = artifact("target/adapters/chargeback-csv.wasm");
    let plugin = artifact("target/wasm32-unknown-unknown/release/chargeback_extism.wasm");

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
        "chargeback export, tally component vs Extism plugin: {rows} hourly aggregates \
         ({resources} resources × 5 meters × {days} days), batches of {BATCH_ROWS} rows\n"
    );

    let config = json!({
        "currency": "EUR", "group_by_tag": "cost-center",
        "rates": { METERS[0]: 0.025, METERS[1]: 0.04, METERS[2]: 0.002, METERS[3]: 0.0001 }
    })
    .to_string();
    let catalog = store.meter_catalog().await.unwrap();
    let meters: Vec<(String, String, String)> = catalog
        .all()
        .iter()
        .map(|m| (m.id.clone(), m.name.clone(), m.unit.clone()))
        .collect();
    let query = AggregateQuery {
        scope: SubscriptionScope::All,
        reported_start: start,
        reported_end: end,
        granularity: Granularity::Hourly,
        show_details: true,
        page_size: BATCH_ROWS,
    };
    let request = ExportRequest {
        run_id: "bench".into(),
        window: Window {
            start: start.timestamp(),
            end: end.timestamp(),
        },
        granularity: WitGranularity::Hourly,
        correction: false,
    };

    // Both compiled once, outside the timed sections (as at install).
    let cache = tempfile::tempdir().unwrap();
    let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
    let adapter = engine.load(&component).unwrap();
    let compiled = extism_run::compile(&plugin);

    // The rounds alternate between the systems, so that the machine's
    // noise falls on all of them alike.
    let mut read_only = Duration::MAX;
    let mut tally = Best::new();
    // Extism as it comes (the batch in, the CSV out), and as a tally built
    // on it would run: with the usage digest of provenance on the host.
    let mut extism = [
        (Encoding::Json, false, Best::new(), 0),
        (Encoding::Msgpack, false, Best::new(), 0),
        (Encoding::Json, true, Best::new(), 0),
        (Encoding::Msgpack, true, Best::new(), 0),
    ];
    for _ in 0..ROUNDS {
        // Reading alone: the share of every export that is the store's.
        let started = Instant::now();
        read_batches(&*store, &query).await;
        read_only = read_only.min(started.elapsed());

        let ((outcome, elapsed), growth) = rss_growth(async {
            let started = Instant::now();
            let outcome =
                common::export(&engine, &adapter, &store, &catalog, &request, &config).await;
            (outcome, started.elapsed())
        })
        .await;
        let summary = outcome.result.as_ref().expect("the export succeeds");
        assert_eq!(summary.rows_read as usize, rows);
        tally.record(elapsed, growth, outcome.figures.peak_memory_bytes as u64);
        let expected = &outcome.documents["chargeback.csv"].bytes;

        for (encoding, digest, best, input_bytes) in &mut extism {
            let (run, growth) = rss_growth(extism_run::export(
                &compiled, &*store, &query, &config, &meters, *encoding, *digest,
            ))
            .await;
            assert_eq!(run.rows_read, rows);
            assert!(
                run.csv == expected[..],
                "the Extism plugin's CSV ({encoding:?}) differs from the component's"
            );
            best.record(run.elapsed, growth, run.plugin_memory_bytes);
            *input_bytes = run.input_bytes;
        }
    }

    let rate = |d: Duration| rows as f64 / d.as_secs_f64();
    println!("rows/s (best of {ROUNDS}; store read and batch encoding included in every line):");
    println!(
        "  {:<48} {:>9.1} ms  {:>10.0} rows/s",
        "read + encode batches only",
        millis(read_only),
        rate(read_only)
    );
    println!(
        "  {:<48} {:>9.1} ms  {:>10.0} rows/s  (baseline)",
        "tally: component in the sandbox (with digest)",
        millis(tally.elapsed),
        rate(tally.elapsed)
    );
    for (encoding, digest, best, input_bytes) in &extism {
        println!(
            "  {:<48} {:>9.1} ms  {:>10.0} rows/s  tally ÷ Extism {:.2}×  ({:.0} bytes/row in)",
            label(*encoding, *digest),
            millis(best.elapsed),
            rate(best.elapsed),
            best.elapsed.as_secs_f64() / tally.elapsed.as_secs_f64(),
            *input_bytes as f64 / rows as f64
        );
    }
    let beyond_read = |d: Duration| d.saturating_sub(read_only);
    println!("  beyond the read (each time minus the read alone):");
    println!(
        "    {:<46} {:>9.1} ms  {:>10.0} rows/s",
        "tally",
        millis(beyond_read(tally.elapsed)),
        rate(beyond_read(tally.elapsed))
    );
    for (encoding, digest, best, _) in &extism {
        println!(
            "    {:<46} {:>9.1} ms  {:>10.0} rows/s  tally ÷ Extism {:.2}×",
            label(*encoding, *digest),
            millis(beyond_read(best.elapsed)),
            rate(beyond_read(best.elapsed)),
            beyond_read(best.elapsed).as_secs_f64() / beyond_read(tally.elapsed).as_secs_f64()
        );
    }

    println!("\nmemory (last round):");
    // tally's peak is what the run was charged: its linear memory and the
    // host's buffers for it (the usage digest's, 3.3 MiB, once it reads
    // more than 64 KiB).
    println!(
        "  {:<48} linear memory + host buffers {:>6.1} MiB, process RSS growth {:>6.1} MiB",
        "tally component",
        mib(tally.linear_memory),
        mib(tally.rss_growth)
    );
    for (encoding, digest, best, _) in &extism {
        println!(
            "  {:<48} linear memory {:>6.1} MiB, process RSS growth {:>6.1} MiB",
            label(*encoding, *digest),
            mib(best.linear_memory),
            mib(best.rss_growth)
        );
    }

    // A call that does nothing: tally starts a fresh store and instance
    // for every call; an Extism host usually keeps its plugin alive.
    let tally_calls: Vec<Duration> = (0..CALLS)
        .map(|_| {
            let started = Instant::now();
            describe(&engine, &adapter, &Limits::default()).expect("describe");
            started.elapsed()
        })
        .collect();
    let (extism_live, extism_fresh) = extism_run::call_overhead(&compiled, CALLS);
    println!("\ncall overhead ({CALLS} calls each):");
    for (name, samples) in [
        ("tally: fresh store + instance + describe()", &tally_calls),
        ("Extism: noop() on a live plugin", &extism_live),
        ("Extism: fresh plugin + noop()", &extism_fresh),
    ] {
        println!(
            "  {:<48} median {:>8.1} µs, p99 {:>8.1} µs",
            name,
            micros(percentile(samples, 50)),
            micros(percentile(samples, 99))
        );
    }
}

/// How an Extism line is named.
fn label(encoding: Encoding, digest: bool) -> String {
    let digest = if digest { " + usage digest" } else { "" };
    format!("Extism plugin, {encoding:?} batches{digest}")
}

/// Reads every page of `query` and encodes it into a batch, as both exports do.
async fn read_batches(store: &dyn Store, query: &AggregateQuery) {
    let mut encoder = BatchEncoder::default();
    let mut after = None;
    loop {
        let page = store.aggregates(query, after).await.unwrap();
        std::hint::black_box(encoder.encode(&page.rows).unwrap());
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
}
