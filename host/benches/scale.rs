//! Scale-out benchmarks: PostgreSQL against the embedded SQLite store in the
//! same run, and one against three replicas on one database.
//!
//! 1. Ingest: the same records through `POST /v1/usage` (batches of 1,000,
//!    six clients) into `tally serve` processes: one on SQLite (the
//!    baseline), one on PostgreSQL, three on one PostgreSQL database (the
//!    clients spread over them). Under each rate, the CPU time each side
//!    (client, tally, PostgreSQL) spent per 1,000 records, and from them the
//!    CPU budget tally would have on PostgreSQL to reach 80% of SQLite's
//!    rate on these shared cores.
//! 2. The 31-day daily query of one subscription (1,000 resources × 5
//!    meters): the raw `GROUP BY` in each database, tally's store on each,
//!    and the tenant API over HTTP: one query at a time, then six at once
//!    against one and three replicas.
//!
//! Needs a PostgreSQL server: `TALLY_BENCH_POSTGRES` (default
//! `postgres://$USER@127.0.0.1:5432/test`); the benchmark creates and drops
//! its own databases there. Run: `cargo bench -p tally --bench scale`
//! (`-- --quick` for a smaller run, `-- --ingest-only` to skip the query,
//! `-- --postgres-latency-ms N` to reach PostgreSQL through a proxy that
//! delays every packet N ms each way, as if the database ran on another
//! machine; tokio's timer rounds the delay up to the next millisecond;
//! `-- --host-stamped` to send the records without `reportedTime`, as a live
//! provider does, so that the host stamps them).

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use serde_json::Value;
use tally::auth::{Role, new_secret, secret_digest};
use tally::store::postgres::PostgresStore;
use tally::store::sqlite::{DATABASE_FILE, SqliteStore};
use tally::store::{AggregateQuery, NewToken, Store, SubscriptionScope, transfer};
use tally::usage::time::Granularity;
use tally_usage_generator::Options;

mod common;
use common::cpu::{self, CpuSample};
use common::{BenchDatabase, METERS};

const BATCH: usize = 1_000;
const CLIENTS: usize = 6;
const SUBSCRIPTION: &str = "bench-subscription";

fn main() {
    let quick = has_flag("--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut server = common::postgres_server();
    let latency = flag_value("--postgres-latency-ms").map(Duration::from_millis);
    if let Some(latency) = latency {
        server = runtime.block_on(common::latency::behind_proxy(&server, latency));
    }
    println!(
        "tally scale-out benchmarks ({} run; PostgreSQL at {server}{})\n",
        if quick { "quick" } else { "full" },
        match latency {
            Some(latency) => format!(", {} ms added each way", latency.as_millis()),
            None => String::new(),
        }
    );
    runtime.block_on(ingest_benchmark(&server, quick));
    if !has_flag("--ingest-only") {
        runtime.block_on(query_benchmark(&server, quick));
    }
}

/// Whether `flag` is on the command line.
fn has_flag(flag: &str) -> bool {
    std::env::args().any(|a| a == flag)
}

/// The value after `flag` on the command line.
fn flag_value(flag: &str) -> Option<u64> {
    let args: Vec<String> = std::env::args().collect();
    let at = args.iter().position(|a| a == flag)?;
    let value = args.get(at + 1).and_then(|v| v.parse().ok());
    Some(value.unwrap_or_else(|| panic!("{flag} takes a number of milliseconds")))
}

// ---------------------------------------------------------------- ingest

async fn ingest_benchmark(server: &str, quick: bool) {
    let host_stamped = has_flag("--host-stamped");
    let records: Vec<Value> = tally_usage_generator::generate(&Options {
        subscriptions: 24,
        days: if quick { 4 } else { 15 },
        ..Options::default()
    })
    .map(|r| serde_json::to_value(r).unwrap())
    .map(|mut record| {
        if host_stamped {
            record.as_object_mut().unwrap().remove("reportedTime");
        }
        record
    })
    .collect();
    let bodies: Vec<String> = records
        .chunks(BATCH)
        .map(|c| Value::from(c.to_vec()).to_string())
        .collect();
    println!(
        "ingest: {} records in {} batches of {BATCH}, {CLIENTS} clients",
        records.len(),
        bodies.len()
    );

    let dir = tempfile::tempdir().unwrap();
    let token = operator_token(&SqliteStore::open(dir.path()).unwrap()).await;
    let replica = Replica::start(dir.path(), None);
    let before = Sides::now(std::slice::from_ref(&replica));
    let baseline = common::post_all(
        std::slice::from_ref(&replica.base),
        &token,
        &bodies,
        CLIENTS,
    )
    .await;
    report(
        "1 replica, SQLite (baseline)",
        records.len(),
        baseline,
        None,
    );
    let on_sqlite = Sides::now(std::slice::from_ref(&replica)).used_since(&before);
    on_sqlite.report(records.len(), baseline);
    drop(replica);
    let mut on_postgres = None;

    for replicas in [1, 3] {
        let database = BenchDatabase::create(server).await;
        let token = operator_token(&PostgresStore::open(&database.url).await.unwrap()).await;
        let dirs: Vec<_> = (0..replicas)
            .map(|_| tempfile::tempdir().unwrap())
            .collect();
        let running: Vec<Replica> = dirs
            .iter()
            .map(|dir| Replica::start(dir.path(), Some(&database.url)))
            .collect();
        let bases: Vec<String> = running.iter().map(|r| r.base.clone()).collect();
        let before = Sides::now(&running);
        let elapsed = common::post_all(&bases, &token, &bodies, CLIENTS).await;
        report(
            &format!("{replicas} replica(s), PostgreSQL"),
            records.len(),
            elapsed,
            Some(baseline),
        );
        let used = Sides::now(&running).used_since(&before);
        used.report(records.len(), elapsed);
        on_postgres.get_or_insert(used);
        drop(running);
        database.drop().await;
    }
    // With every side on the same cores, a rate is bounded by the cores
    // over the CPU a record costs all sides together: what PostgreSQL and
    // the clients spend leaves tally a budget for reaching 80% of SQLite.
    if let (Some(postgres), None) = (on_postgres, flag_value("--postgres-latency-ms"))
        && !postgres.postgres.is_zero()
    {
        let cores = cores();
        let sqlite_rate = records.len() as f64 / baseline.as_secs_f64();
        // Milliseconds of CPU per 1,000 records.
        let budget = cores as f64 * 1e6 / (0.8 * sqlite_rate);
        let per_thousand = |time| ms_per_thousand(time, records.len());
        let others = per_thousand(postgres.client + postgres.postgres);
        println!(
            "  80% of SQLite's rate on {cores} cores, all busy: at most {budget:.1} ms of CPU per 1,000 \
             records; PostgreSQL and the clients take {others:.1} ms, leaving tally {:.1} ms (it spends {:.1} ms)",
            (budget - others).max(0.0),
            per_thousand(postgres.tally),
        );
    }
    println!();
}

/// The machine's cores, as the bench's CPU shares count them.
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `time` spread over `records`, in milliseconds per 1,000 records.
fn ms_per_thousand(time: Duration, records: usize) -> f64 {
    1e6 * time.as_secs_f64() / records as f64
}

/// The CPU time of an ingest run's sides: this process (the clients, and
/// the latency proxy when there is one), the tally replicas, and the
/// PostgreSQL server's processes when it runs on this machine.
#[derive(Clone, Copy)]
struct SideTimes {
    client: Duration,
    tally: Duration,
    postgres: Duration,
}

/// The sides' CPU samples at one moment.
struct Sides {
    client: CpuSample,
    tally: CpuSample,
    postgres: CpuSample,
}

impl Sides {
    fn now(replicas: &[Replica]) -> Self {
        Sides {
            client: CpuSample::of([cpu::this_process()]),
            tally: CpuSample::of(replicas.iter().map(|r| r.child.id())),
            postgres: CpuSample::of(cpu::processes_named("postgres")),
        }
    }

    fn used_since(&self, earlier: &Sides) -> SideTimes {
        SideTimes {
            client: self.client.since(&earlier.client),
            tally: self.tally.since(&earlier.tally),
            postgres: self.postgres.since(&earlier.postgres),
        }
    }
}

impl SideTimes {
    /// Prints each side's CPU time per 1,000 records, and how busy the
    /// machine's cores were over the run's `elapsed` time.
    fn report(&self, records: usize, elapsed: Duration) {
        let per_thousand = |time| ms_per_thousand(time, records);
        let cores = cores();
        let used = self.client + self.tally + self.postgres;
        println!(
            "    CPU per 1,000 records: client {:.1} ms, tally {:.1} ms, PostgreSQL {:.1} ms \
             ({:.0}% of {cores} cores busy)",
            per_thousand(self.client),
            per_thousand(self.tally),
            per_thousand(self.postgres),
            100.0 * used.as_secs_f64() / (elapsed.as_secs_f64() * cores as f64)
        );
    }
}

async fn operator_token(store: &dyn Store) -> String {
    let token = new_secret();
    store
        .create_token(NewToken {
            digest: secret_digest(&token),
            role: Role::Operator,
            subscriptions: vec![],
            description: String::new(),
        })
        .await
        .unwrap();
    token
}

fn report(name: &str, records: usize, elapsed: Duration, baseline: Option<Duration>) {
    let rate = records as f64 / elapsed.as_secs_f64();
    match baseline {
        None => println!("  {name:<44} {rate:>10.0} rec/s"),
        Some(b) => println!(
            "  {name:<44} {rate:>10.0} rec/s  ({:.0}% of the baseline's rate)",
            100.0 * b.as_secs_f64() / elapsed.as_secs_f64()
        ),
    }
}

// ---------------------------------------------------------------- query

async fn query_benchmark(server: &str, quick: bool) {
    let days: i64 = if quick { 3 } else { 31 };
    let resources = if quick { 200 } else { 1_000 };
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sqlite = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let loading = Instant::now();
    common::load_grid(&*sqlite, start, days, resources, |_| {
        SUBSCRIPTION.to_string()
    })
    .await;
    let token = tenant_token(&*sqlite).await;
    drop(sqlite);
    let records = days as usize * 24 * resources * METERS.len();
    println!(
        "query: {records} hourly records (1 subscription, {resources} resources × 5 meters, {days} days), loaded in {:.1} s",
        loading.elapsed().as_secs_f64()
    );
    let database = BenchDatabase::create(server).await;
    let copying = Instant::now();
    transfer::sqlite_to_postgres(dir.path(), &database.url)
        .await
        .unwrap();
    println!(
        "  copied to PostgreSQL by `tally migrate` in {:.1} s",
        copying.elapsed().as_secs_f64()
    );
    let (first_day, last_day) = (
        Granularity::Daily.bucket_of(start),
        Granularity::Daily.bucket_of(start) + days + 1,
    );

    // Baselines: the raw GROUP BY of the daily table, with instanceData, in each database.
    let sql = "SELECT g.*, i.instance_data FROM (
                 SELECT usage_day, meter_key, instance_id, SUM(quantity) FROM usage_daily
                 WHERE subscription_key = 1 AND reported_day >= $1 AND reported_day < $2
                 GROUP BY 1, 2, 3) AS g JOIN instances AS i ON i.id = g.instance_id";
    let conn = rusqlite::Connection::open(dir.path().join(DATABASE_FILE)).unwrap();
    let (sqlite_raw, rows) = common::best_of(3, async || {
        let started = Instant::now();
        let mut statement = conn.prepare(&sql.replace('$', "?")).unwrap();
        let rows = statement
            .query_map([first_day, last_day], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, f64>(3)?,
                    r.get::<_, String>(4)?,
                ))
            })
            .unwrap()
            .count();
        (started.elapsed(), rows)
    })
    .await;
    report_query("SQLite raw GROUP BY (baseline)", rows, sqlite_raw, None);
    let pg = common::connect_postgres(&database.url).await;
    let (pg_raw, pg_rows) = common::best_of(3, async || {
        let started = Instant::now();
        let rows = pg.query(sql, &[&first_day, &last_day]).await.unwrap().len();
        (started.elapsed(), rows)
    })
    .await;
    assert_eq!(pg_rows, rows);
    report_query("PostgreSQL raw GROUP BY", rows, pg_raw, Some(sqlite_raw));

    // tally's stores, every 1,000-row page.
    let query = AggregateQuery {
        scope: SubscriptionScope::One(SUBSCRIPTION.into()),
        reported_start: Granularity::Daily.start_of(first_day),
        reported_end: Granularity::Daily.start_of(last_day),
        granularity: Granularity::Daily,
        show_details: true,
        page_size: tally::api::PAGE_SIZE,
    };
    let sqlite_store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path()).unwrap());
    let pg_store: Arc<dyn Store> = Arc::new(PostgresStore::open(&database.url).await.unwrap());
    for (name, store, baseline) in [
        ("SQLite store, 1,000-row pages", &sqlite_store, sqlite_raw),
        ("PostgreSQL store, 1,000-row pages", &pg_store, pg_raw),
    ] {
        let (elapsed, count) = common::best_of(3, async || {
            let started = Instant::now();
            let (mut count, mut after) = (0, None);
            loop {
                let page = store.aggregates(&query, after).await.unwrap();
                count += page.rows.len();
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            (started.elapsed(), count)
        })
        .await;
        assert_eq!(count, rows);
        report_query(name, rows, elapsed, Some(baseline));
    }
    drop((sqlite_store, pg_store));

    // The tenant API over HTTP: one query at a time, then six at once.
    let window = format!(
        "reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Daily&showDetails=true&api-version=2015-06-01-preview",
        Granularity::Daily
            .start_of(first_day)
            .format("%Y-%m-%dT%H:%M:%SZ"),
        Granularity::Daily
            .start_of(last_day)
            .format("%Y-%m-%dT%H:%M:%SZ")
    );
    let sqlite_replica = Replica::start(dir.path(), None);
    let one = vec![sqlite_replica.base.clone()];
    let (api_sqlite, _) =
        common::best_of(3, async || (read_all(&one, &token, &window, 1).await, 0)).await;
    report_query(
        "usage API over HTTP, SQLite",
        rows,
        api_sqlite,
        Some(sqlite_raw),
    );
    let concurrent_sqlite = read_all(&one, &token, &window, CLIENTS).await;
    report_queries(
        "6 queries at once, 1 replica, SQLite (baseline)",
        rows,
        concurrent_sqlite,
        None,
    );
    drop(sqlite_replica);

    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let replicas: Vec<Replica> = dirs
        .iter()
        .map(|d| Replica::start(d.path(), Some(&database.url)))
        .collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let (api_pg, _) = common::best_of(3, async || {
        (read_all(&bases[..1], &token, &window, 1).await, 0)
    })
    .await;
    report_query(
        "usage API over HTTP, PostgreSQL",
        rows,
        api_pg,
        Some(sqlite_raw),
    );
    for count in [1, 3] {
        let elapsed = read_all(&bases[..count], &token, &window, CLIENTS).await;
        report_queries(
            &format!("6 queries at once, {count} replica(s), PostgreSQL"),
            rows,
            elapsed,
            Some(concurrent_sqlite),
        );
    }
    drop(replicas);
    drop(pg);
    database.drop().await;
}

async fn tenant_token(store: &dyn Store) -> String {
    let token = new_secret();
    store
        .create_token(NewToken {
            digest: secret_digest(&token),
            role: Role::Tenant,
            subscriptions: vec![SUBSCRIPTION.into()],
            description: String::new(),
        })
        .await
        .unwrap();
    token
}

/// `queries` full reads of the window at once (every page, bodies read), spread over `bases`.
async fn read_all(bases: &[String], token: &str, window: &str, queries: usize) -> Duration {
    let client = reqwest::Client::new();
    let started = Instant::now();
    let tasks: Vec<_> = (0..queries)
        .map(|q| {
            let (client, token) = (client.clone(), token.to_string());
            let base = bases[q % bases.len()].clone();
            let first = format!(
                "{base}/subscriptions/{SUBSCRIPTION}/providers/Microsoft.Commerce/UsageAggregates?{window}"
            );
            tokio::spawn(async move {
                let mut next = Some(first);
                while let Some(url) = next {
                    let body = client
                        .get(&url)
                        .bearer_auth(&token)
                        .send()
                        .await
                        .unwrap()
                        .error_for_status()
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap();
                    next = common::next_link_of(&body);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    started.elapsed()
}

fn report_query(name: &str, rows: usize, elapsed: Duration, baseline: Option<Duration>) {
    let ms = elapsed.as_secs_f64() * 1e3;
    match baseline {
        None => println!("  {name:<48} {ms:>8.0} ms  {rows} rows"),
        Some(b) => println!(
            "  {name:<48} {ms:>8.0} ms  {:.2}× the baseline",
            elapsed.as_secs_f64() / b.as_secs_f64()
        ),
    }
}

fn report_queries(name: &str, rows: usize, elapsed: Duration, baseline: Option<Duration>) {
    let rate = (CLIENTS * rows) as f64 / elapsed.as_secs_f64();
    match baseline {
        None => println!("  {name:<48} {rate:>8.0} rows/s"),
        Some(b) => println!(
            "  {name:<48} {rate:>8.0} rows/s  ({:.0}% of the baseline's rate)",
            100.0 * b.as_secs_f64() / elapsed.as_secs_f64()
        ),
    }
}

// ---------------------------------------------------------------- processes

/// A `tally serve` process.
struct Replica {
    child: Child,
    base: String,
}

impl Replica {
    fn start(data_dir: &Path, database: Option<&str>) -> Self {
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data_dir)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(url) = database {
            command.args(["--database", url]);
        }
        let mut child = command.spawn().expect("tally serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("tally listening on ")
            .expect("the address line")
            .to_string();
        Replica { child, base }
    }
}

impl Drop for Replica {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
