//! Peak RSS of the host while one export streams 10 million hourly aggregates
//! (issue 3: under 200 MB), against a plain read of the same rows.
//!
//! 1. Data, built once and cached under `target/bench-data/`: generated usage
//!    (`examples/usage-generator`, one record per resource, meter and hour)
//!    ingested through the store's normal `ingest`, so that every record is one
//!    hourly aggregate, all reported in one window.
//! 2. Each path runs in a fresh child process (this program again, with
//!    `--child`), so that what it measures is that path alone: open the store
//!    (and the engine, with the component's artifact cached), then read every
//!    row of the window at hourly granularity, either through
//!    `Store::aggregates` in pages of 4,096 (the baseline) or as the
//!    `chargeback-csv` export in the sandbox (`run_export`, default limits).
//!    The child reports the kernel's peak RSS (`VmHWM`) before and after, and
//!    the peaks of its anonymous and file-backed parts, sampled every 5 ms.
//!
//! With `--hostile`, instead: the peak host RSS of the worst adapter of each
//! kind of `adapters/hostile` at the default limits (each in a fresh child,
//! on a small store), against the goal that the host grows by at most the
//! adapter's memory cap + 64 MiB.
//!
//! Needs the components: `adapters/build.sh`. Run:
//! `cargo bench -p tally --bench export_rss` (`-- --quick` for a smaller run,
//! `-- --hostile` for the hostile adapters).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::json;
use tally::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use tally::sandbox::host_usage::{BATCH_ROWS, UsageAccess};
use tally::sandbox::{AdapterEngine, Limits, Outbound, SubscriptionGrant, describe, run_export};
use tally::store::sqlite::{SCHEMA_VERSION, SqliteStore};
use tally::store::{AggregateQuery, Store, SubscriptionScope};
use tally::usage::{Granularity, UsageRecordInput, ValidationContext};
use tally_usage_generator::{Options, generate, meters};

/// Records per `ingest` call (the writer commits up to 50,000 together).
const INGEST_BATCH: usize = 20_000;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        let data = PathBuf::from(&args[i + 2]);
        runtime.block_on(child(&args[i + 1], &data));
    } else if let Some(i) = args.iter().position(|a| a == "--hostile-child") {
        let data = PathBuf::from(&args[i + 2]);
        runtime.block_on(hostile_child(&args[i + 1], &data));
    } else if args.iter().any(|a| a == "--hostile") {
        runtime.block_on(hostile_benchmark());
    } else {
        runtime.block_on(benchmark(args.iter().any(|a| a == "--quick")));
    }
}

async fn benchmark(quick: bool) {
    // ≈15.5 records an hour per subscription: 900 × 30 days ≈ 10.06 million.
    let options = Options {
        subscriptions: if quick { 30 } else { 900 },
        days: if quick { 10 } else { 30 },
        ..Options::default()
    };
    let wasm = std::fs::read(component()).unwrap_or_else(|_| {
        panic!(
            "{} is missing: run adapters/build.sh",
            component().display()
        )
    });
    let data = target_dir().join(format!(
        "bench-data/export-rss-{}subs-{}d-seed{}-schema{SCHEMA_VERSION}",
        options.subscriptions, options.days, options.seed
    ));
    let built = build_data(&data, &options).await;
    let data = data.canonicalize().unwrap();
    // Compiled once here, as at install; the children load these very bytes'
    // cached artifact (even if adapters/build.sh runs meanwhile).
    std::fs::write(data.join("chargeback-csv.wasm"), &wasm).unwrap();
    AdapterEngine::new(data.join("artifacts"))
        .unwrap()
        .load(&wasm)
        .unwrap();

    println!(
        "export of {} hourly aggregates ({} subscriptions × {} days of generated usage, one window)",
        thousands(built.rows),
        options.subscriptions,
        options.days
    );
    println!(
        "data: {} ({:.0} s to ingest {} records, {} records/s, {:.2} GB on disk; built once, cached)\n",
        data.display(),
        built.seconds,
        thousands(built.rows),
        thousands((built.rows as f64 / built.seconds) as u64),
        dir_size(&data) as f64 / 1e9
    );

    let read = run_child("read", &data, built.rows);
    let export = run_child("export", &data, built.rows);
    println!(
        "  {:<40} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>11}",
        "", "RSS peak", "before", "anon pk", "file pk", "SQLite", "time", "rows/s"
    );
    for (name, m) in [
        ("store read, pages of 4,096 (baseline)", &read),
        ("chargeback-csv export in the sandbox", &export),
    ] {
        println!(
            "  {name:<40} {:>5.0} MiB {:>5.0} MiB {:>5.0} MiB {:>5.0} MiB {:>5.0} MiB {:>7.1} s {:>11}",
            mib(m["hwm_after"]),
            mib(m["rss_before"]),
            mib(m["anon_peak"]),
            mib(m["file_peak"]),
            mib(m["sqlite_peak"]),
            m["ms"] / 1e3,
            thousands((m["rows"] / (m["ms"] / 1e3)) as u64)
        );
    }
    println!(
        "  (RSS peak: VmHWM after; before: VmRSS before the read; anon/file pk: RssAnon/RssFile \
         sampled every 5 ms; SQLite: its heap's high-water mark)"
    );
    println!(
        "\n  export vs read: peak RSS {:.2}×, time {:.2}×; adapter linear memory {:.1} MiB, documents {:.1} MB ({} rows)",
        export["hwm_after"] / read["hwm_after"],
        export["ms"] / read["ms"],
        mib(export["wasm_peak"]),
        export["document_bytes"] / 1e6,
        thousands(export["rows_written"] as u64)
    );
    let verdict = |bytes: f64| if bytes < 200e6 { "met" } else { "NOT met" };
    println!(
        "  target, peak RSS of the export under 200 MB: {:.0} MB, {} (anonymous memory alone: {:.0} MB, {})",
        export["hwm_after"] / 1e6,
        verdict(export["hwm_after"]),
        export["anon_peak"] / 1e6,
        verdict(export["anon_peak"])
    );
}

fn target_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target")
}

fn component() -> PathBuf {
    target_dir().join("adapters/chargeback-csv.wasm")
}

/// What the data build recorded (`complete.json` in the data directory).
#[derive(serde::Serialize, serde::Deserialize)]
struct Built {
    /// Records ingested, each one hourly aggregate.
    rows: u64,
    /// Time to ingest them.
    seconds: f64,
    /// The reported-time window holding them all.
    start: DateTime<Utc>,
    end: DateTime<Utc>,
}

impl Built {
    fn of(dir: &Path) -> Option<Built> {
        let text = std::fs::read_to_string(dir.join("complete.json")).ok()?;
        Some(serde_json::from_str(&text).unwrap())
    }
}

/// The store of generated usage in `dir`, ingested unless a complete one is there.
async fn build_data(dir: &Path, options: &Options) -> Built {
    if let Some(built) = Built::of(dir) {
        return built;
    }
    let _ = std::fs::remove_dir_all(dir); // an interrupted build
    eprintln!("building {} (once)…", dir.display());
    let started = Instant::now();
    let store = SqliteStore::open(dir).unwrap();
    let catalog = store.meter_catalog().await.unwrap();
    // Generating and validating on one thread, the store's writer on the other.
    let (batches, mut received) = tokio::sync::mpsc::channel(2);
    let generating = options.clone();
    std::thread::spawn(move || {
        let ctx = ValidationContext {
            meters: &catalog,
            now: Utc::now(),
            may_set_reported_time: true,
            retention_cutoff: None,
        };
        let mut batch = Vec::with_capacity(INGEST_BATCH);
        for record in generate(&generating) {
            let input: UsageRecordInput =
                serde_json::from_value(serde_json::to_value(record).unwrap()).unwrap();
            batch.push(input.validate(batch.len(), &ctx).expect("a valid record"));
            if batch.len() == INGEST_BATCH {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(INGEST_BATCH));
                batches.blocking_send(full).unwrap();
            }
        }
        if !batch.is_empty() {
            batches.blocking_send(batch).unwrap();
        }
    });
    let mut rows = 0u64;
    while let Some(batch) = received.recv().await {
        let receipt = store.ingest(batch).await.expect("ingest");
        assert!(receipt.duplicates.is_empty());
        rows += receipt.accepted as u64;
        if rows % 1_000_000 < INGEST_BATCH as u64 {
            eprintln!(
                "  {} records, {:.0} s",
                thousands(rows),
                started.elapsed().as_secs_f64()
            );
        }
    }
    drop(store);
    // From the first usage hour to past the latest late report (30 h 20 min after its hour).
    let end = options.end; // on an hour
    let built = Built {
        rows,
        seconds: started.elapsed().as_secs_f64(),
        start: end - chrono::Duration::days(options.days.into()),
        end: end + chrono::Duration::hours(32),
    };
    let marker = serde_json::to_string(&built).unwrap();
    std::fs::write(dir.join("complete.json"), marker).unwrap();
    built
}

/// Runs `mode` in a fresh process and returns what it measured.
fn run_child(mode: &str, data: &Path, rows: u64) -> HashMap<String, f64> {
    let output = Command::new(std::env::current_exe().unwrap())
        .args(["--child", mode, data.to_str().unwrap()])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "child {mode} failed: {stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let measured: HashMap<String, f64> = stdout
        .lines()
        .filter_map(|line| line.strip_prefix("measured "))
        .flat_map(|line| line.split(' '))
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.parse().unwrap()))
        .collect();
    assert_eq!(measured["rows"] as u64, rows, "{mode} read every row");
    measured
}

/// One measured path, in this (fresh) process; prints `measured k=v …`.
async fn child(mode: &str, data: &Path) {
    let Built { start, end, .. } = Built::of(data).expect("built data");
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(data).unwrap());
    let catalog = store.meter_catalog().await.unwrap();
    let engine = Arc::new(AdapterEngine::new(data.join("artifacts")).unwrap());
    let wasm = std::fs::read(data.join("chargeback-csv.wasm")).unwrap();
    let adapter = engine.load(&wasm).unwrap();
    assert!(adapter.cached, "the artifact was compiled by the parent");

    let sampler = Sampler::start();
    let (hwm_before, rss_before) = (status("VmHWM"), status("VmRSS"));
    // SAFETY: a plain read of SQLite's memory statistics (the crate's bundled SQLite).
    unsafe { rusqlite::ffi::sqlite3_memory_highwater(1) };
    let started = Instant::now();
    let mut extra = String::new();
    let rows = match mode {
        "read" => {
            let query = AggregateQuery {
                scope: SubscriptionScope::All,
                reported_start: start,
                reported_end: end,
                granularity: Granularity::Hourly,
                show_details: true,
                page_size: BATCH_ROWS,
            };
            let (mut rows, mut after) = (0, None);
            loop {
                let page = store.aggregates(&query, after).await.unwrap();
                rows += page.rows.len() as u64;
                match page.next {
                    Some(next) => after = Some(next),
                    None => break rows,
                }
            }
        }
        "export" => {
            let now = store.clock().await.unwrap();
            let usage = UsageAccess::new(store.clone(), catalog, SubscriptionGrant::All, now);
            let request = ExportRequest {
                run_id: "export-rss".into(),
                window: Window {
                    start: start.timestamp(),
                    end: end.timestamp(),
                },
                granularity: WitGranularity::Hourly,
                correction: false,
            };
            let outcome = tokio::task::spawn_blocking(move || {
                run_export(
                    &engine,
                    &adapter,
                    &request,
                    &chargeback_config(),
                    usage,
                    Outbound::Allowed(Vec::new()),
                    &Limits::default(),
                )
            })
            .await
            .unwrap();
            let summary = outcome.result.expect("the export succeeds");
            let bytes: usize = outcome.documents.values().map(|d| d.bytes.len()).sum();
            extra = format!(
                " wasm_peak={} document_bytes={bytes} rows_written={}",
                outcome.figures.peak_memory_bytes, summary.rows_written
            );
            assert_eq!(summary.rows_read, outcome.figures.rows_read);
            outcome.figures.rows_read // as counted by the host
        }
        other => panic!("unknown mode {other}"),
    };
    let ms = started.elapsed().as_secs_f64() * 1e3;
    let (anon_peak, file_peak) = sampler.stop();
    // SAFETY: as above.
    let sqlite_peak = unsafe { rusqlite::ffi::sqlite3_memory_highwater(0) };
    println!(
        "measured rows={rows} ms={ms} hwm_before={hwm_before} rss_before={rss_before} hwm_after={} anon_peak={anon_peak} file_peak={file_peak} sqlite_peak={sqlite_peak}{extra}",
        status("VmHWM")
    );
}

/// A rate card for the meters the generator reports; costs grouped by cost centre.
fn chargeback_config() -> String {
    json!({
        "currency": "EUR", "group_by_tag": "cost-center",
        "rates": {
            meters::BASE_VM: 0.025, meters::WINDOWS_VM: 0.04, meters::DISK_S10: 0.002,
            meters::DISK_P10: 0.004, meters::BLOCK_BLOB_CAPACITY: 0.0001,
            meters::BLOB_TRANSACTIONS: 0.0004, meters::STATIC_IP: 0.005,
            meters::DYNAMIC_IP: 0.004, meters::APP_SERVICE: 0.05
        }
    })
    .to_string()
}

/// Peaks of `RssAnon` and `RssFile` (the kernel keeps only the total's peak).
struct Sampler {
    stop: Arc<AtomicBool>,
    peaks: Arc<[AtomicU64; 2]>,
    thread: std::thread::JoinHandle<()>,
}

impl Sampler {
    fn start() -> Sampler {
        let stop = Arc::new(AtomicBool::new(false));
        let peaks: Arc<[AtomicU64; 2]> = Arc::default();
        let (stopping, peaking) = (stop.clone(), peaks.clone());
        let thread = std::thread::spawn(move || {
            while !stopping.load(Ordering::Relaxed) {
                peaking[0].fetch_max(status("RssAnon"), Ordering::Relaxed);
                peaking[1].fetch_max(status("RssFile"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        });
        Sampler {
            stop,
            peaks,
            thread,
        }
    }

    fn stop(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        self.thread.join().unwrap();
        (
            self.peaks[0].load(Ordering::Relaxed),
            self.peaks[1].load(Ordering::Relaxed),
        )
    }
}

/// A `kB` field of `/proc/self/status`, in bytes.
fn status(field: &str) -> u64 {
    let text = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = text
        .lines()
        .find(|l| l.starts_with(field) && l[field.len()..].starts_with(':'))
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"));
    let kb: u64 = line[field.len() + 1..]
        .trim()
        .trim_end_matches(" kB")
        .parse()
        .unwrap();
    kb * 1024
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}

fn mib(bytes: f64) -> f64 {
    bytes / (1 << 20) as f64
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

// The worst adapter of each kind, at the default limits.

// `multi_memory_adapter(hogs, pages)`: the hostile adapter with many memories.
include!("../../adapters/hostile/multi_memory.rs");

/// Each kind of hostile adapter: its name, what it does, and how it is called
/// (`export` with a config, `install` for describe and validate-config).
const HOSTILE: [(&str, &str, &str); 11] = [
    (
        "memory",
        "grows its memory to the cap",
        r#"{"attack":"memory"}"#,
    ),
    (
        "multi-memory",
        "12 extra instances, a memory of 120 MiB each",
        "wat",
    ),
    (
        "documents",
        "1,500 documents with 1 MiB content types",
        r#"{"attack":"documents","bytes":1048576,"count":1500}"#,
    ),
    (
        "cursors",
        "100 cursors naming 100,000 subscriptions each",
        r#"{"attack":"cursors","bytes":100000,"count":100}"#,
    ),
    (
        "query-many",
        "one query naming 1,000,000 subscriptions",
        r#"{"attack":"query-many","count":1000000}"#,
    ),
    (
        "flood-log",
        "10 million log lines",
        r#"{"attack":"flood-log"}"#,
    ),
    (
        "deadline",
        "reads 100,000 granted subscriptions; deadline 2 s",
        r#"{"attack":"read-all"}"#,
    ),
    (
        "flood-output",
        "documents up to the output cap",
        r#"{"attack":"flood-output"}"#,
    ),
    (
        "huge-error",
        "a permanent error of 100 MiB",
        r#"{"attack":"huge-error","bytes":104857600}"#,
    ),
    (
        "summary-names",
        "a summary naming 1,000,000 documents",
        r#"{"attack":"summary-names","count":1000000}"#,
    ),
    (
        "describe-bomb",
        "describe(): 8 MiB name and version, 500,000 documents",
        "install",
    ),
];

async fn hostile_benchmark() {
    let options = Options {
        subscriptions: 2,
        days: 2,
        ..Options::default()
    };
    let data = target_dir().join(format!(
        "bench-data/hostile-rss-seed{}-schema{SCHEMA_VERSION}",
        options.seed
    ));
    build_data(&data, &options).await;
    let data = data.canonicalize().unwrap();
    let engine = AdapterEngine::new(data.join("artifacts")).unwrap();
    for name in ["hostile", "hostile-describe"] {
        let wasm = std::fs::read(target_dir().join(format!("adapters/{name}.wasm")))
            .unwrap_or_else(|_| panic!("{name}.wasm is missing: run adapters/build.sh"));
        std::fs::write(data.join(format!("{name}.wasm")), &wasm).unwrap();
        engine.load(&wasm).unwrap();
    }
    let cap = Limits::default().memory_bytes as f64;
    let goal = cap + (64 << 20) as f64;
    println!(
        "peak host RSS growth of the worst adapter of each kind, default limits (memory cap {:.0} MiB; goal: growth <= {:.0} MiB)\n",
        mib(cap),
        mib(goal)
    );
    println!(
        "  {:<14} {:<52} {:>11} {:>8}  outcome",
        "kind", "attack", "RSS growth", "goal"
    );
    for (kind, what, _) in HOSTILE {
        let output = Command::new(std::env::current_exe().unwrap())
            .args(["--hostile-child", kind, data.to_str().unwrap()])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&output.stdout);
        let measured: HashMap<String, String> = stdout
            .lines()
            .filter_map(|line| line.strip_prefix("measured "))
            .flat_map(|line| line.splitn(2, ' '))
            .filter_map(|pair| pair.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect();
        let (growth, outcome) = match (measured.get("growth"), measured.get("outcome")) {
            (Some(growth), Some(outcome)) => (growth.parse::<f64>().unwrap(), outcome.clone()),
            _ => (
                f64::NAN,
                format!(
                    "child died ({}): {}",
                    output.status,
                    String::from_utf8_lossy(&output.stderr)
                        .lines()
                        .last()
                        .unwrap_or("")
                ),
            ),
        };
        let verdict = if growth <= goal { "met" } else { "NOT met" };
        println!(
            "  {kind:<14} {what:<52} {:>7.0} MiB {verdict:>8}  {outcome:.110}",
            mib(growth)
        );
    }
}

/// One hostile adapter in this (fresh) process; prints `measured growth=… outcome=…`.
async fn hostile_child(kind: &str, data: &Path) {
    let (_, _, how) = HOSTILE
        .into_iter()
        .find(|(name, _, _)| *name == kind)
        .expect("a known kind");
    let Built { start, end, .. } = Built::of(data).expect("built data");
    let store: Arc<SqliteStore> = Arc::new(SqliteStore::open(data).unwrap());
    let catalog = store.meter_catalog().await.unwrap();
    let engine = Arc::new(AdapterEngine::new(data.join("artifacts")).unwrap());
    let file = if how == "install" {
        "hostile-describe"
    } else {
        "hostile"
    };
    let wasm = std::fs::read(data.join(format!("{file}.wasm"))).unwrap();
    let hostile = engine.load(&wasm).unwrap();
    let rss_before = status("VmRSS");
    let limits = Limits::default();
    let outcome = match how {
        "install" => {
            let engine = engine.clone();
            tokio::task::spawn_blocking(move || match describe(&engine, &hostile, &limits) {
                Ok((description, _)) => format!(
                    "accepted: name of {} bytes, {} documents",
                    description.name.len(),
                    description.produces.len()
                ),
                Err(failure) => format!("refused: {failure}"),
            })
            .await
            .unwrap()
        }
        _ => {
            let adapter = if how == "wat" {
                match engine.load(&multi_memory_adapter(12, 1_920)) {
                    Ok(adapter) => adapter,
                    Err(error) => {
                        let growth = status("VmHWM").saturating_sub(rss_before);
                        println!("measured growth={growth} outcome=refused at load: {error:#}");
                        return;
                    }
                }
            } else {
                hostile
            };
            // The one kind that is not at the default limits: a deadline to overrun.
            let (grant, limits) = if kind == "deadline" {
                let granted = (0..100_000).map(|i| format!("granted-{i}")).collect();
                let deadline = Duration::from_secs(2);
                (
                    SubscriptionGrant::Only(granted),
                    Limits { deadline, ..limits },
                )
            } else {
                (SubscriptionGrant::All, limits)
            };
            let now = store.clock().await.unwrap();
            let usage = UsageAccess::new(store.clone(), catalog, grant, now);
            let request = ExportRequest {
                run_id: "hostile-rss".into(),
                window: Window {
                    start: start.timestamp(),
                    end: end.timestamp(),
                },
                granularity: WitGranularity::Hourly,
                correction: false,
            };
            let config = how.to_owned();
            let engine = engine.clone();
            let outcome = tokio::task::spawn_blocking(move || {
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
            .unwrap();
            // Measured before the outcome is formatted (the host's own copy).
            let growth = status("VmHWM").saturating_sub(rss_before);
            let elapsed = outcome.figures.elapsed.as_secs_f64();
            let outcome = match outcome.result {
                Ok(_) => format!(
                    "succeeded after {elapsed:.1} s (peak {:.0} MiB charged)",
                    mib(outcome.figures.peak_memory_bytes as f64)
                ),
                Err(failure) => {
                    let text = failure.to_string();
                    let start: String = text.chars().take(160).collect();
                    format!(
                        "failed after {elapsed:.1} s ({} bytes): {}",
                        text.len(),
                        start.replace('\n', " ")
                    )
                }
            };
            println!("measured growth={growth} outcome={outcome}");
            return;
        }
    };
    let growth = status("VmHWM").saturating_sub(rss_before);
    let outcome: String = outcome.chars().take(200).collect();
    println!("measured growth={growth} outcome={outcome}");
}
