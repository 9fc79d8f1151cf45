//! A year of a private cloud's usage, scaled to this machine: the ingest
//! rate month by month, the database's size per million records, and the
//! month's usage query and export at the end of the year against the same at
//! its start.
//!
//! The simulated cloud has `--vms` virtual machines (default 200; the
//! 2,000-VM cloud of the performance issue is ten times this), each
//! reporting 5 meters every hour, in subscriptions of 20 machines: 1,000
//! records an hour, 8.76 million in a year. Every hour's records are
//! validated as the usage API validates them (outside the timing) and
//! stored by the store's ingest, 4 requests at a time, as an operator's
//! backfill reported 10 minutes after each hour. At each month's end the
//! events past `--retention-days` (default 90; 0 keeps them all) are pruned
//! as `tally serve` prunes them. On PostgreSQL a `VACUUM` follows, timed
//! apart: the bench's month lasts seconds, too short for autovacuum, which
//! in a real month would have made the space of deleted events and of
//! updated aggregate rows reusable.
//!
//! After the first month, the middle one and the last, three reads of the
//! month just ended, each the best of three: a tenant's month by day (what a
//! monthly bill reads), the whole cloud's last day by hour, and the
//! `chargeback-csv` component exporting the month (needs
//! `adapters/build.sh`).
//!
//! Run: `cargo bench -p tally --bench year` (`-- --postgres` for the same on
//! PostgreSQL at `TALLY_BENCH_POSTGRES`; `--vms N`, `--months N`,
//! `--retention-days N` to change the cloud; `--archive` to archive the
//! pruned events as `[retention] archive_dir` does, the prune's time then
//! including the archive's, and the archive's size in its own column).

mod common;
use common::{BenchDatabase, METERS};

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Months, TimeZone, Utc};
use serde_json::json;
use tally::retention::archive::EventArchive;
use tally::sandbox::AdapterEngine;
use tally::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use tally::store::postgres::PostgresStore;
use tally::store::sqlite::{DATABASE_FILE, SqliteStore};
use tally::store::{AggregateQuery, Store, SubscriptionScope};
use tally::usage::{Granularity, MeterCatalog, UsageRecord, UsageRecordInput, ValidationContext};

/// Machines per subscription.
const VMS_PER_SUBSCRIPTION: usize = 20;
/// Ingest requests in flight at once.
const CLIENTS: usize = 4;
/// The cloud of the performance issue, for the extrapolation.
const TARGET_VMS: usize = 2_000;

struct Options {
    vms: usize,
    months: u32,
    retention_days: i64,
    postgres: bool,
    archive: bool,
}

impl Options {
    fn from_args() -> Self {
        let args: Vec<String> = std::env::args().collect();
        let value = |name: &str, default: i64| {
            args.iter()
                .position(|a| a == name)
                .and_then(|i| args.get(i + 1))
                .map(|v| {
                    v.parse()
                        .unwrap_or_else(|_| panic!("{name} takes a number"))
                })
                .unwrap_or(default)
        };
        let options = Options {
            vms: value("--vms", 200) as usize,
            months: value("--months", 12) as u32,
            retention_days: value("--retention-days", 90),
            postgres: args.iter().any(|a| a == "--postgres"),
            archive: args.iter().any(|a| a == "--archive"),
        };
        assert!(
            options.vms >= 1 && options.months >= 1,
            "--vms and --months take at least 1"
        );
        options
    }
}

fn main() {
    let options = Options::from_args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        if options.postgres {
            let database = BenchDatabase::create(&common::postgres_server()).await;
            let store = Arc::new(PostgresStore::open(&database.url).await.unwrap());
            let sizes = Sizes::Postgres(common::connect_postgres(&database.url).await);
            simulate(&options, store, &sizes, "PostgreSQL").await;
            drop(sizes);
            database.drop().await;
        } else {
            let dir = tempfile::tempdir().unwrap();
            let store = Arc::new(SqliteStore::open(dir.path()).unwrap());
            let sizes = Sizes::Sqlite(dir.path().join(DATABASE_FILE));
            simulate(&options, store, &sizes, "SQLite").await;
        }
    });
}

async fn simulate<S: Store + 'static>(
    options: &Options,
    store: Arc<S>,
    sizes: &Sizes,
    backend: &str,
) {
    let start = Utc.with_ymd_and_hms(2025, 11, 1, 0, 0, 0).unwrap();
    let retention =
        (options.retention_days > 0).then(|| chrono::Duration::days(options.retention_days));
    println!(
        "a year of usage on {backend}: {} VMs × {} meters, subscriptions of {VMS_PER_SUBSCRIPTION}, \
         {} records an hour, {CLIENTS} requests at a time; retention of events: {}\n",
        options.vms,
        METERS.len(),
        options.vms * METERS.len(),
        match retention {
            Some(_) => format!(
                "{} days, pruned at each month's end",
                options.retention_days
            ),
            None => "none (every event kept)".into(),
        }
    );
    let archive_dir = options.archive.then(|| tempfile::tempdir().unwrap());
    let archive = (archive_dir.as_ref()).map(|dir| EventArchive::new(dir.path()));
    println!(
        "{:>5} {:>12} {:>10} {:>10} {:>10} {:>9} {:>12} {:>11} {:>10} {:>10}",
        "month",
        "records",
        "records/s",
        "prune ms",
        "vacuum ms",
        "DB MB",
        "MB/M records",
        "events MB",
        "aggr. MB",
        "archive MB"
    );
    let catalog = store.meter_catalog().await.unwrap();
    let reads = Reads::new(&catalog);
    let checkpoints = [0, options.months / 2, options.months - 1];
    let mut measured: Vec<(u32, Measured)> = Vec::new();
    let mut total_records = 0usize;
    let mut rates = Vec::new();
    for month in 0..options.months {
        let month_start = start + Months::new(month);
        let month_end = start + Months::new(month + 1);
        let mut ingesting = Duration::ZERO;
        let mut records = 0;
        let mut day = month_start;
        while day < month_end {
            let batches: Vec<Vec<UsageRecord>> = (0..24)
                .map(|hour| {
                    hour_of_usage(&catalog, options.vms, day + chrono::Duration::hours(hour))
                })
                .collect();
            records += batches.iter().map(Vec::len).sum::<usize>();
            ingesting += ingest(&store, batches).await;
            day += chrono::Duration::days(1);
        }
        total_records += records;
        let rate = records as f64 / ingesting.as_secs_f64();
        rates.push(rate);
        let pruning = match retention {
            Some(retention) => {
                let started = Instant::now();
                tally::retention::prune(&*store, month_end - retention, archive.as_ref())
                    .await
                    .unwrap();
                started.elapsed()
            }
            None => Duration::ZERO,
        };
        let vacuuming = sizes.vacuum().await;
        let size = sizes.read().await;
        let archived = archive_dir
            .as_ref()
            .map_or(0, |dir| directory_bytes(dir.path()));
        println!(
            "{:>5} {:>12} {:>10.0} {:>10.0} {:>10.0} {:>9.1} {:>12.1} {:>11.1} {:>10.1} {:>10.1}",
            month + 1,
            total_records,
            rate,
            pruning.as_secs_f64() * 1e3,
            vacuuming.as_secs_f64() * 1e3,
            mb(size.database),
            mb(size.database) / (total_records as f64 / 1e6),
            mb(size.events),
            mb(size.aggregates),
            mb(archived),
        );
        if checkpoints.contains(&month) && !measured.iter().any(|(m, _)| *m == month) {
            measured.push((month, reads.measure(&store, month_start, month_end).await));
        }
    }

    println!("\nreads of the month just ended (best of 3):");
    println!(
        "{:>5} {:>26} {:>26} {:>30}",
        "month",
        "a tenant's month by day",
        "the cloud's day by hour",
        "chargeback export of the month"
    );
    for (month, m) in &measured {
        println!(
            "{:>5} {:>16.1} ms {:>5} rows {:>16.1} ms {:>5} rows {:>18.1} ms {:>7} rows",
            month + 1,
            ms(m.tenant_month.0),
            m.tenant_month.1,
            ms(m.cloud_day.0),
            m.cloud_day.1,
            ms(m.export.0),
            m.export.1
        );
    }
    let (first, last) = (&measured[0].1, &measured[measured.len() - 1].1);
    println!(
        "\nend of the year against its start: tenant's month {:.2}×, cloud's day {:.2}×, \
         export {:.2}×; ingest {:.0} → {:.0} records/s ({:.2}×)",
        ratio(last.tenant_month.0, first.tenant_month.0),
        ratio(last.cloud_day.0, first.cloud_day.0),
        ratio(last.export.0, first.export.0),
        rates[0],
        rates[rates.len() - 1],
        rates[rates.len() - 1] / rates[0],
    );
    let size = sizes.read().await;
    let per_million = mb(size.database) / (total_records as f64 / 1e6);
    let target_records = TARGET_VMS * METERS.len() * 24 * 365;
    let slowest = rates.iter().copied().fold(f64::INFINITY, f64::min);
    println!(
        "a {TARGET_VMS}-VM cloud ({:.1} M records a year, {} an hour), extrapolated linearly: \
         {:.0} GB at the year's end at {per_million:.0} MB per million records; an hour's \
         records ingested in {:.2} s at the slowest month's rate ({:.3}% of the hour)",
        target_records as f64 / 1e6,
        TARGET_VMS * METERS.len(),
        per_million * target_records as f64 / 1e6 / 1e3,
        (TARGET_VMS * METERS.len()) as f64 / slowest,
        (TARGET_VMS * METERS.len()) as f64 / slowest / 3600.0 * 100.0,
    );
}

/// One hour of the cloud's usage, validated as the usage API validates it.
fn hour_of_usage(
    catalog: &MeterCatalog,
    vms: usize,
    usage_start: DateTime<Utc>,
) -> Vec<UsageRecord> {
    let ctx = ValidationContext {
        meters: catalog,
        now: Utc::now(),
        may_set_reported_time: true,
        retention_cutoff: None,
    };
    let usage_end = usage_start + chrono::Duration::hours(1);
    let times = (
        usage_start.to_rfc3339(),
        usage_end.to_rfc3339(),
        (usage_end + chrono::Duration::minutes(10)).to_rfc3339(),
    );
    let hour = usage_start.timestamp() / 3600;
    let mut records = Vec::with_capacity(vms * METERS.len());
    for vm in 0..vms {
        let subscription = format!("subscription-{}", vm / VMS_PER_SUBSCRIPTION);
        for (m, meter) in METERS.iter().enumerate() {
            let input = UsageRecordInput {
                event_id: Some(format!("{hour}-{vm}-{m}")),
                resource_uri: Some(format!(
                    "/subscriptions/{subscription}/resourceGroups/rg-{}/providers/Microsoft.Compute/virtualMachines/vm-{vm}",
                    vm % 3
                )),
                subscription_id: Some(subscription.clone()),
                meter_id: Some((*meter).to_owned()),
                location: Some("local".into()),
                tags: Some(serde_json::Map::from_iter([(
                    "cost-center".to_owned(),
                    json!(format!("cc-{}", vm % 7)),
                )])),
                additional_info: None,
                quantity: Some(1.0 + (vm % 5) as f64),
                usage_start_time: Some(times.0.clone()),
                usage_end_time: Some(times.1.clone()),
                reported_time: Some(times.2.clone()),
            };
            records.push(input.validate(records.len(), &ctx).expect("a valid record"));
        }
    }
    records
}

/// Stores `batches`, [`CLIENTS`] at a time; how long it took.
async fn ingest<S: Store + 'static>(store: &Arc<S>, batches: Vec<Vec<UsageRecord>>) -> Duration {
    let mut lanes: Vec<Vec<Vec<UsageRecord>>> = (0..CLIENTS).map(|_| Vec::new()).collect();
    for (i, batch) in batches.into_iter().enumerate() {
        lanes[i % CLIENTS].push(batch);
    }
    let started = Instant::now();
    let tasks: Vec<_> = lanes
        .into_iter()
        .map(|lane| {
            let store = store.clone();
            tokio::spawn(async move {
                for batch in lane {
                    store.ingest(batch).await.expect("ingest");
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

/// The three reads, and what the export needs.
struct Reads {
    engine: Arc<AdapterEngine>,
    adapter: tally::sandbox::LoadedAdapter,
    catalog: Arc<MeterCatalog>,
    config: String,
    _cache: tempfile::TempDir,
}

/// A read's best time and the rows it returned.
type Timed = (Duration, usize);

struct Measured {
    tenant_month: Timed,
    cloud_day: Timed,
    export: Timed,
}

impl Reads {
    fn new(catalog: &Arc<MeterCatalog>) -> Self {
        let component = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../target/adapters/chargeback-csv.wasm");
        let wasm = std::fs::read(&component).unwrap_or_else(|_| {
            panic!("{} is missing: run adapters/build.sh", component.display())
        });
        let cache = tempfile::tempdir().unwrap();
        let engine = Arc::new(AdapterEngine::new(cache.path()).unwrap());
        let adapter = engine.load(&wasm).unwrap();
        let config = common::chargeback_config();
        Reads {
            engine,
            adapter,
            catalog: catalog.clone(),
            config,
            _cache: cache,
        }
    }

    async fn measure<S: Store + 'static>(
        &self,
        store: &Arc<S>,
        month_start: DateTime<Utc>,
        month_end: DateTime<Utc>,
    ) -> Measured {
        let tenant_month = AggregateQuery {
            scope: SubscriptionScope::One("subscription-0".into()),
            reported_start: month_start,
            reported_end: month_end,
            granularity: Granularity::Daily,
            show_details: true,
            page_size: 1_000,
        };
        let cloud_day = AggregateQuery {
            scope: SubscriptionScope::All,
            reported_start: month_end - chrono::Duration::days(1),
            reported_end: month_end,
            granularity: Granularity::Hourly,
            show_details: true,
            page_size: 1_000,
        };
        let request = ExportRequest {
            run_id: "year".into(),
            window: Window {
                start: month_start.timestamp(),
                end: month_end.timestamp(),
            },
            granularity: WitGranularity::Hourly,
            correction: false,
        };
        Measured {
            tenant_month: common::best_of(3, async || page_all(&**store, &tenant_month).await)
                .await,
            cloud_day: common::best_of(3, async || page_all(&**store, &cloud_day).await).await,
            export: common::best_of(3, async || {
                let started = Instant::now();
                let outcome = common::export(
                    &self.engine,
                    &self.adapter,
                    store,
                    &self.catalog,
                    &request,
                    &self.config,
                )
                .await;
                let summary = outcome.result.as_ref().expect("the export succeeds");
                (started.elapsed(), summary.rows_read as usize)
            })
            .await,
        }
    }
}

/// Every page of `query`; the time and the rows.
async fn page_all(store: &dyn Store, query: &AggregateQuery) -> Timed {
    let started = Instant::now();
    let (mut rows, mut after) = (0, None);
    loop {
        let page = store.aggregates(query, after).await.unwrap();
        rows += page.rows.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert!(rows > 0, "the query returned rows");
    (started.elapsed(), rows)
}

/// Where the database's size is read.
enum Sizes {
    Sqlite(PathBuf),
    Postgres(tokio_postgres::Client),
}

/// Bytes on disk: the whole database, the events, the aggregate tables.
struct Size {
    database: u64,
    events: u64,
    aggregates: u64,
}

impl Sizes {
    /// What autovacuum does over a month on PostgreSQL (SQLite reuses
    /// freed pages by itself); how long it took.
    async fn vacuum(&self) -> Duration {
        let started = Instant::now();
        if let Sizes::Postgres(client) = self {
            client.batch_execute("VACUUM").await.unwrap();
        }
        started.elapsed()
    }

    async fn read(&self) -> Size {
        match self {
            Sizes::Sqlite(path) => sqlite_size(path),
            Sizes::Postgres(client) => {
                let row = client
                    .query_one(
                        // usage_events is partitioned by month: its size is its partitions'.
                        "SELECT pg_database_size(current_database()),
                                CAST((SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)
                                      FROM pg_inherits
                                      WHERE inhparent = CAST('usage_events' AS regclass)) AS BIGINT),
                                pg_total_relation_size('usage_hourly') + pg_total_relation_size('usage_daily')",
                        &[],
                    )
                    .await
                    .unwrap();
                let bytes = |i: usize| row.get::<_, i64>(i) as u64;
                Size {
                    database: bytes(0),
                    events: bytes(1),
                    aggregates: bytes(2),
                }
            }
        }
    }
}

/// The file and its WAL; the tables and their indexes from `dbstat`.
fn sqlite_size(path: &Path) -> Size {
    let file = |p: &Path| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let wal = path.with_file_name(format!("{DATABASE_FILE}-wal"));
    let conn =
        rusqlite::Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let of = |tables: &[&str]| -> u64 {
        let list = tables
            .iter()
            .map(|t| format!("'{t}'"))
            .collect::<Vec<_>>()
            .join(",");
        conn.query_row(
            &format!(
                "SELECT coalesce(sum(pgsize), 0) FROM dbstat
                 WHERE name IN ({list})
                    OR name IN (SELECT name FROM sqlite_schema WHERE tbl_name IN ({list}))"
            ),
            [],
            |row| row.get::<_, i64>(0),
        )
        .unwrap() as u64
    };
    Size {
        database: file(path) + file(&wal),
        events: of(&["usage_events"]),
        aggregates: of(&["usage_hourly", "usage_daily"]),
    }
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1e6
}

/// The bytes of the files in `dir`.
fn directory_bytes(dir: &Path) -> u64 {
    (std::fs::read_dir(dir).unwrap())
        .map(|entry| entry.unwrap().metadata().unwrap().len())
        .sum()
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn ratio(a: Duration, b: Duration) -> f64 {
    a.as_secs_f64() / b.as_secs_f64()
}
