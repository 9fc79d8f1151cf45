//! Benchmarks of the usage pipeline, each against a baseline in the same run:
//!
//! 1. Ingest through `POST /v1/usage` (HTTP, JSON, validation, idempotency,
//!    group commit) vs raw batched SQLite inserts of the same rows into the
//!    same schema.
//! 2. A 31-day daily query of one subscription with 1,000 resources × 5
//!    meters through the tenant usage API (every page, over HTTP, JSON
//!    decoded) vs a raw SQL `GROUP BY` on the same database (and the raw
//!    ordered read the store runs instead, summed as it is read); and the
//!    console's explorer (`/v1/usage/summary`) over the same range. Its
//!    floor: the baseline plus the pages' JSON written from memory plus the
//!    same bytes moved over HTTP, what any server of this format must spend.
//!
//! Run: `cargo bench -p tally --bench usage` (add `-- --quick` for a smaller run,
//! `-- --query-only` to skip the ingest part, `-- --ingest-only` the query).

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, TimeZone, Utc};
use rusqlite::{Connection, params};
use serde_json::Value;
use tally::api::{self, AppState, Settings, usage_json};
use tally::auth::{Role, new_secret, secret_digest};
use tally::store::sqlite::{DATABASE_FILE, SqliteStore};
use tally::store::{AggregateQuery, NewToken, Store, SubscriptionScope};
use tally::usage::split::{days_of, split_hourly};
use tally::usage::time::{Granularity, day_of_hour};
use tally::usage::{MeterCatalog, UsageRecord, UsageRecordInput, ValidationContext};
use tally_usage_generator::Options;

mod common;
use common::METERS;

const BATCH: usize = 1_000;
const CLIENTS: usize = 4;

fn main() {
    let quick = std::env::args().any(|a| a == "--quick");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    println!(
        "tally usage benchmarks ({} run)\n",
        if quick { "quick" } else { "full" }
    );
    if !std::env::args().any(|a| a == "--query-only") {
        runtime.block_on(ingest_benchmark(quick));
    }
    if !std::env::args().any(|a| a == "--ingest-only") {
        runtime.block_on(query_benchmark(quick));
    }
}

// ---------------------------------------------------------------- ingest

async fn ingest_benchmark(quick: bool) {
    let days = if quick { 4 } else { 15 };
    let records: Vec<Value> = tally_usage_generator::generate(&Options {
        subscriptions: 24,
        days,
        ..Options::default()
    })
    .map(|r| serde_json::to_value(r).unwrap())
    .collect();
    let bodies: Vec<String> = records
        .chunks(BATCH)
        .map(|c| Value::from(c.to_vec()).to_string())
        .collect();
    println!(
        "ingest: {} records in {} batches of {BATCH}",
        records.len(),
        bodies.len()
    );

    // Baseline: the same rows, prepared in advance, inserted with prepared statements.
    let validated = validate(&records);
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap()); // creates the schema
    let baseline = raw_inserts(&dir.path().join(DATABASE_FILE), &validated);
    report(
        "raw batched SQLite inserts (baseline)",
        records.len(),
        baseline,
        None,
    );
    // The machine's limits for the same data: the events alone (no
    // aggregates, no keys to resolve), and the commits per second the disk
    // allows (an empty transaction, WAL, synchronous = FULL).
    let dir = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(dir.path()).unwrap());
    let events_only = raw_event_inserts(&dir.path().join(DATABASE_FILE), &validated);
    report(
        "limit: the events alone, raw batched inserts",
        records.len(),
        events_only,
        Some(baseline),
    );
    let (commits, commit_time) = empty_commits(&dir.path().join("fsync.db"));
    println!(
        "  limit: {:.0} commits/s (one-row transactions; a request of {BATCH} needs at least one)",
        commits as f64 / commit_time.as_secs_f64()
    );

    for clients in [1, CLIENTS] {
        let dir = tempfile::tempdir().unwrap();
        let (base, token) = serve(dir.path()).await;
        let elapsed = common::post_all(&[base], &token, &bodies, clients).await;
        report(
            &format!("POST /v1/usage, {clients} client(s)"),
            records.len(),
            elapsed,
            Some(baseline),
        );
    }
    println!();
}

fn validate(records: &[Value]) -> Vec<UsageRecord> {
    let catalog = MeterCatalog::builtin_for_tests();
    let ctx = ValidationContext {
        meters: &catalog,
        now: Utc::now(),
        may_set_reported_time: true,
        retention_cutoff: None,
    };
    records
        .iter()
        .enumerate()
        .map(|(i, r)| {
            serde_json::from_value::<UsageRecordInput>(r.clone())
                .unwrap()
                .validate(i, &ctx)
                .unwrap()
        })
        .collect()
}

/// The physical floor: one transaction per batch, prepared statements, keys
/// known in advance, no idempotency lookup.
fn raw_inserts(path: &std::path::Path, records: &[UsageRecord]) -> Duration {
    let mut conn = open_raw(path);
    let subscriptions = key_in_order_seen(records.iter().map(|r| r.subscription_id.clone()));
    let instances = key_in_order_seen(records.iter().map(|r| r.instance_digest));
    let keys: Vec<(i64, i64)> = subscriptions.into_iter().zip(instances).collect();
    let literals: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(&r.instance_data).unwrap())
        .collect();
    let now = Utc::now();
    let started = Instant::now();
    for ((chunk, chunk_keys), chunk_literals) in records
        .chunks(BATCH)
        .zip(keys.chunks(BATCH))
        .zip(literals.chunks(BATCH))
    {
        let tx = conn.transaction().unwrap();
        {
            let mut sub = tx.prepare_cached("INSERT INTO subscriptions (key, id, first_seen) VALUES (?1, ?2, '') ON CONFLICT DO NOTHING").unwrap();
            let mut instance = tx
                .prepare_cached("INSERT INTO instances (id, subscription_key, digest, resource_uri, location, instance_data, instance_data_json) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) ON CONFLICT DO NOTHING")
                .unwrap();
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO usage_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .unwrap();
            let mut hourly = tx.prepare_cached("INSERT INTO usage_hourly VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity").unwrap();
            let mut daily = tx.prepare_cached("INSERT INTO usage_daily VALUES (?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT DO UPDATE SET quantity = quantity + excluded.quantity").unwrap();
            let mut bounds = tx.prepare_cached("INSERT INTO reported_hours VALUES (?1, ?2, ?3, ?4, 1) ON CONFLICT DO UPDATE SET min_usage_hour = min(min_usage_hour, excluded.min_usage_hour), max_usage_hour = max(max_usage_hour, excluded.max_usage_hour), records = records + 1").unwrap();
            for ((r, &(s, i)), literal) in chunk.iter().zip(chunk_keys).zip(chunk_literals) {
                sub.execute(params![s, r.subscription_id]).unwrap();
                instance
                    .execute(params![
                        i,
                        s,
                        &r.instance_digest[..],
                        r.resource_uri,
                        r.location,
                        r.instance_data,
                        literal
                    ])
                    .unwrap();
                let reported = r.reported_time.unwrap_or(now);
                event
                    .execute(params![
                        s,
                        r.event_id,
                        r.meter_key,
                        i,
                        r.quantity,
                        r.usage_start.timestamp_millis(),
                        r.usage_end.timestamp_millis(),
                        reported.timestamp_millis(),
                        &r.digest[..]
                    ])
                    .unwrap();
                let rh = Granularity::Hourly.bucket_of(reported);
                let hours = split_hourly(r.quantity, r.usage_start, r.usage_end);
                for &(h, q) in &hours {
                    hourly
                        .execute(params![s, h, r.meter_key, i, rh, q])
                        .unwrap();
                }
                for (d, q) in days_of(&hours) {
                    daily
                        .execute(params![s, d, r.meter_key, i, day_of_hour(rh), q])
                        .unwrap();
                }
                bounds
                    .execute(params![s, rh, hours[0].0, hours[hours.len() - 1].0])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

/// `pages` requests answered with `page_bytes` bytes held in memory by the
/// same HTTP stack (axum, hyper, loopback, the same client), best of 3: what
/// moving the usage API's JSON costs without reading or writing it.
async fn transport_alone(client: &reqwest::Client, page_bytes: usize, pages: usize) -> Duration {
    let page = axum::body::Bytes::from(vec![b' '; page_bytes]);
    let app = axum::Router::new().route(
        "/page",
        axum::routing::get(move || {
            let page = page.clone();
            async move { page }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/page", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let mut best = Duration::MAX;
    for _ in 0..3 {
        let started = Instant::now();
        for _ in 0..pages {
            let body = client
                .get(&url)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            assert_eq!(body.len(), page_bytes);
        }
        best = best.min(started.elapsed());
    }
    best
}

/// A raw connection as the store opens its own: WAL, `synchronous = FULL`,
/// 64 MB of page cache.
fn open_raw(path: &std::path::Path) -> Connection {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.pragma_update(None, "cache_size", -64_000).unwrap();
    conn
}

/// Keys 1, 2, … given to values in the order they are first seen, as the
/// store's would be: each value's key, in order.
fn key_in_order_seen<T: std::hash::Hash + Eq>(values: impl Iterator<Item = T>) -> Vec<i64> {
    let mut keys = std::collections::HashMap::new();
    values
        .map(|value| {
            let next = keys.len() as i64 + 1;
            *keys.entry(value).or_insert(next)
        })
        .collect()
}

/// The events of `records` alone, one transaction per batch: what the disk
/// and SQLite do for the rows every design has to keep.
fn raw_event_inserts(path: &std::path::Path, records: &[UsageRecord]) -> Duration {
    let mut conn = open_raw(path);
    let keys = key_in_order_seen(records.iter().map(|r| r.subscription_id.clone()));
    let now = Utc::now();
    let started = Instant::now();
    for (chunk, chunk_keys) in records.chunks(BATCH).zip(keys.chunks(BATCH)) {
        let tx = conn.transaction().unwrap();
        {
            let mut event = tx
                .prepare_cached(
                    "INSERT INTO usage_events VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                )
                .unwrap();
            for (r, &s) in chunk.iter().zip(chunk_keys) {
                event
                    .execute(params![
                        s,
                        r.event_id,
                        r.meter_key,
                        1,
                        r.quantity,
                        r.usage_start.timestamp_millis(),
                        r.usage_end.timestamp_millis(),
                        r.reported_time.unwrap_or(now).timestamp_millis(),
                        &r.digest[..]
                    ])
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }
    started.elapsed()
}

/// Commits of a one-row transaction for about two seconds (WAL,
/// synchronous = FULL): the fsyncs a second this disk allows.
fn empty_commits(path: &std::path::Path) -> (usize, Duration) {
    let conn = Connection::open(path).unwrap();
    conn.pragma_update(None, "journal_mode", "WAL").unwrap();
    conn.pragma_update(None, "synchronous", "FULL").unwrap();
    conn.execute("CREATE TABLE t (n INTEGER)", []).unwrap();
    let started = Instant::now();
    let mut commits = 0;
    while started.elapsed() < Duration::from_secs(2) {
        conn.execute("INSERT INTO t VALUES (1)", []).unwrap();
        commits += 1;
    }
    (commits, started.elapsed())
}

async fn serve(dir: &std::path::Path) -> (String, String) {
    let store = Arc::new(SqliteStore::open(dir).unwrap());
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
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = api::router(AppState::new(store, served_at(&listener)));
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, token)
}

/// The API's settings when served on `listener`: nextLinks on its address.
fn served_at(listener: &tokio::net::TcpListener) -> Settings {
    Settings {
        allowed_hosts: vec![listener.local_addr().unwrap().to_string()],
        ..Settings::default()
    }
}

// ---------------------------------------------------------------- query

const RESOURCES: usize = 1_000;

async fn query_benchmark(quick: bool) {
    let days: i64 = if quick { 3 } else { 31 };
    let resources = if quick { 200 } else { RESOURCES };
    let start: DateTime<Utc> = Utc.with_ymd_and_hms(2026, 9, 1, 0, 0, 0).unwrap();
    let sub = "bench-subscription";
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path()).unwrap());

    let loading = Instant::now();
    common::load_grid(&*store, start, days, resources, |_| sub.to_string()).await;
    let records = days as usize * 24 * resources * METERS.len();
    println!(
        "query: {records} hourly records loaded in {:.1} s (1 subscription, {resources} resources × 5 meters, {days} days)",
        loading.elapsed().as_secs_f64()
    );

    let token = new_secret();
    store
        .create_token(NewToken {
            digest: secret_digest(&token),
            role: Role::Tenant,
            subscriptions: vec![sub.into()],
            description: String::new(),
        })
        .await
        .unwrap();
    let path = dir.path().join(DATABASE_FILE);
    let (first_day, last_day) = (
        Granularity::Daily.bucket_of(start),
        Granularity::Daily.bucket_of(start) + days + 1,
    );

    // Baselines: the raw GROUP BY, over the daily table and over the hourly rows.
    let conn = Connection::open(&path).unwrap();
    let group_by = |sql: &str, from: i64, to: i64| {
        let started = Instant::now();
        let mut statement = conn.prepare(sql).unwrap();
        let rows: Vec<(i64, i64, i64, f64)> = statement
            .query_map(params![1, from, to], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        (started.elapsed(), rows.len())
    };
    let daily_sql = "SELECT usage_day, meter_key, instance_id, SUM(quantity) FROM usage_daily
        WHERE subscription_key = ?1 AND reported_day >= ?2 AND reported_day < ?3 GROUP BY 1, 2, 3";
    let (ids_only, daily_rows) = best_of(3, || group_by(daily_sql, first_day, last_day));
    let (baseline, _) = best_of(3, || {
        group_by_with_instances(
            &conn,
            &format!(
                "SELECT g.*, i.instance_data FROM ({daily_sql}) AS g JOIN instances AS i ON i.id = g.instance_id"
            ),
            first_day,
            last_day,
        )
    });
    // What the store runs instead of a GROUP BY: the rows in key order,
    // those of one key (reported on several days) summed as they are read.
    let (ordered, ordered_rows) = best_of(3, || {
        ordered_with_instances(
            &conn,
            "SELECT d.usage_day, d.meter_key, d.instance_id, d.quantity, i.instance_data
             FROM usage_daily AS d JOIN instances AS i ON i.id = d.instance_id
             WHERE d.subscription_key = ?1 AND d.reported_day >= ?2 AND d.reported_day < ?3
             ORDER BY d.usage_day, d.meter_key, d.instance_id, d.reported_day",
            first_day,
            last_day,
        )
    });
    assert_eq!(ordered_rows, daily_rows);
    let (hourly_sql, _) = best_of(3, || {
        group_by(
            "SELECT usage_hour / 24, meter_key, instance_id, SUM(quantity) FROM usage_hourly
             WHERE subscription_key = ?1 AND reported_hour >= ?2 AND reported_hour < ?3 GROUP BY 1, 2, 3",
            first_day * 24,
            last_day * 24,
        )
    });
    report_query(
        "raw GROUP BY, daily table + instanceData (baseline)",
        daily_rows,
        baseline,
        None,
    );
    report_query(
        "raw GROUP BY, daily table, keys only",
        daily_rows,
        ids_only,
        Some(baseline),
    );
    report_query(
        "raw ordered read + instanceData, summed as read",
        daily_rows,
        ordered,
        Some(baseline),
    );
    report_query(
        "raw GROUP BY over the hourly rows, keys only",
        daily_rows,
        hourly_sql,
        Some(baseline),
    );

    // tally's store alone: 1,000-row keyset pages.
    let query = AggregateQuery {
        scope: SubscriptionScope::One(sub.into()),
        reported_start: Granularity::Daily.start_of(first_day),
        reported_end: Granularity::Daily.start_of(last_day),
        granularity: Granularity::Daily,
        show_details: true,
        page_size: tally::api::PAGE_SIZE,
    };
    let (mut store_time, mut pages) = (Duration::MAX, Vec::new());
    for _ in 0..3 {
        let started = Instant::now();
        let (mut rows, mut after) = (0, None);
        pages.clear();
        loop {
            let page = store.aggregates(&query, after).await.unwrap();
            rows += page.rows.len();
            after = page.next;
            pages.push(page);
            if after.is_none() {
                break;
            }
        }
        store_time = store_time.min(started.elapsed());
        assert_eq!(rows, daily_rows);
    }
    report_query(
        "tally store, 1,000-row pages",
        daily_rows,
        store_time,
        Some(baseline),
    );
    // The API's own serialiser on the same pages, already in memory.
    let link = format!(
        "{}&continuationToken={}",
        first_page_url("http://127.0.0.1:8080", sub, first_day, last_day),
        "x".repeat(60)
    );
    let (writing, _) = best_of(3, || {
        let started = Instant::now();
        let names = usage_json::RowNames {
            namespace: "Microsoft.Commerce",
            row_type: "Microsoft.Commerce/UsageAggregate",
            id_owner: None,
        };
        let bytes: usize = (pages.iter())
            .map(|page| {
                usage_json::page(
                    &names,
                    &page.rows,
                    page.next.as_ref().map(|_| link.as_str()),
                )
                .len()
            })
            .sum();
        (started.elapsed(), bytes)
    });
    report_query(
        "limit: the pages' JSON written from memory",
        daily_rows,
        writing,
        Some(baseline),
    );
    drop(pages);

    // tally: the tenant API, every page over HTTP.
    let client = reqwest::Client::new();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = api::router(AppState::new(store.clone(), served_at(&listener)));
    let base = &format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    let first = first_page_url(base, sub, first_day, last_day);
    let (best, (pages, _, _)) = common::best_of(3, async || {
        follow_links(&client, &token, &first, false).await
    })
    .await;
    assert_eq!(pages, daily_rows.div_ceil(tally::api::PAGE_SIZE));
    report_query(
        "usage API over HTTP (server + transport)",
        daily_rows,
        best,
        Some(baseline),
    );
    let (best, (pages, rows, bytes)) = common::best_of(3, async || {
        follow_links(&client, &token, &first, true).await
    })
    .await;
    assert_eq!(rows, daily_rows, "the API returns the rows of the GROUP BY");
    println!("    ({:.1} MB of JSON, {pages} pages)", bytes as f64 / 1e6);
    report_query(
        "usage API over HTTP + client decodes rows",
        daily_rows,
        best,
        Some(baseline),
    );
    let transport = transport_alone(&client, bytes / pages, pages).await;
    report_query(
        "limit: the same bytes from memory, same HTTP stack",
        daily_rows,
        transport,
        Some(baseline),
    );
    // No server can do less than read the rows (the baseline), write their
    // JSON and move the bytes: the API's floor on this machine, whatever
    // its paging costs.
    report_query(
        "floor: baseline + JSON written + bytes moved",
        daily_rows,
        baseline + writing + transport,
        Some(baseline),
    );

    // The console's explorer: the same range folded on the server into the
    // chart's series and the table, one request, decoded by the client.
    let (from, to) = (
        Granularity::Daily.start_of(first_day).format("%Y-%m-%d"),
        Granularity::Daily.start_of(last_day).format("%Y-%m-%d"),
    );
    for (group_by, what) in [
        ("meter", "explorer, by meter (per-meter rows)"),
        ("tag:cost-center", "explorer, by tag (every instance row)"),
    ] {
        let url = format!("{base}/v1/usage/summary?from={from}&to={to}&groupBy={group_by}");
        let (best, read) = common::best_of(3, async || {
            let started = Instant::now();
            let body = client
                .get(&url)
                .bearer_auth(&token)
                .send()
                .await
                .unwrap()
                .bytes()
                .await
                .unwrap();
            let summary: serde_json::Value = serde_json::from_slice(&body).unwrap();
            (
                started.elapsed(),
                summary["aggregateRows"].as_u64().unwrap() as usize,
            )
        })
        .await;
        report_query(&format!("{what}, over HTTP"), read, best, Some(baseline));
    }
}

/// The tenant API's first page of the daily query of `sub` over `[first_day, last_day)`.
fn first_page_url(base: &str, sub: &str, first_day: i64, last_day: i64) -> String {
    let day = |d: i64| Granularity::Daily.start_of(d).format("%Y-%m-%dT%H:%M:%SZ");
    format!(
        "{base}/subscriptions/{sub}/providers/Microsoft.Commerce/UsageAggregates?\
         reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Daily&api-version=2015-06-01-preview",
        day(first_day),
        day(last_day)
    )
}

/// Every page from `first` on, following `nextLink`s as an Azure client does;
/// the time, the pages, the rows (counted only when `decode`) and the bytes.
async fn follow_links(
    client: &reqwest::Client,
    token: &str,
    first: &str,
    decode: bool,
) -> (Duration, (usize, usize, usize)) {
    let started = Instant::now();
    let (mut pages, mut rows, mut bytes, mut next) = (0, 0, 0, Some(first.to_owned()));
    while let Some(url) = next {
        pages += 1;
        let body = (client.get(&url).bearer_auth(token).send().await.unwrap())
            .bytes()
            .await
            .unwrap();
        bytes += body.len();
        // Without decoding, only find the next link (the last field).
        next = if decode {
            let page: Page = serde_json::from_slice(&body).unwrap();
            rows += page.value.len();
            page.next_link
        } else {
            common::next_link_of(&body)
        };
    }
    (started.elapsed(), (pages, rows, bytes))
}

fn group_by_with_instances(conn: &Connection, sql: &str, from: i64, to: i64) -> (Duration, usize) {
    let started = Instant::now();
    let mut statement = conn.prepare(sql).unwrap();
    let rows: Vec<(i64, i64, i64, f64, String)> = statement
        .query_map(params![1, from, to], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    (started.elapsed(), rows.len())
}

/// Runs `sql` (rows in key order, `instance_data` last) and sums the rows
/// of one key as they are read, as the store does; the rows it makes.
fn ordered_with_instances(conn: &Connection, sql: &str, from: i64, to: i64) -> (Duration, usize) {
    let started = Instant::now();
    let mut statement = conn.prepare(sql).unwrap();
    let mut found = statement.query(params![1, from, to]).unwrap();
    let mut rows: Vec<((i64, i64, i64), f64, String)> = Vec::new();
    while let Some(r) = found.next().unwrap() {
        let key = (r.get(0).unwrap(), r.get(1).unwrap(), r.get(2).unwrap());
        let quantity: f64 = r.get(3).unwrap();
        match rows.last_mut() {
            Some(last) if last.0 == key => last.1 += quantity,
            _ => rows.push((key, quantity, r.get(4).unwrap())),
        }
    }
    (started.elapsed(), rows.len())
}

/// What an Azure client decodes from a page.
#[derive(serde::Deserialize)]
struct Page {
    value: Vec<Aggregate>,
    #[serde(rename = "nextLink")]
    next_link: Option<String>,
}

#[derive(serde::Deserialize)]
#[allow(dead_code)] // decoded as a client would, not all read
struct Aggregate {
    id: String,
    name: String,
    properties: Sample,
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
#[allow(dead_code)]
struct Sample {
    subscription_id: String,
    meter_id: String,
    usage_start_time: String,
    usage_end_time: String,
    quantity: f64,
    instance_data: String,
}

fn best_of<T>(runs: usize, mut f: impl FnMut() -> (Duration, T)) -> (Duration, T) {
    let mut best = f();
    for _ in 1..runs {
        let next = f();
        if next.0 < best.0 {
            best = next;
        }
    }
    best
}

fn report(name: &str, records: usize, elapsed: Duration, baseline: Option<Duration>) {
    let rate = records as f64 / elapsed.as_secs_f64();
    let ratio = baseline
        .map(|b| {
            format!(
                "  {:>5.0}% of baseline",
                100.0 * b.as_secs_f64() / elapsed.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<42} {:>8.2} s  {rate:>10.0} records/s{ratio}",
        elapsed.as_secs_f64()
    );
}

fn report_query(name: &str, rows: usize, elapsed: Duration, baseline: Option<Duration>) {
    let ratio = baseline
        .map(|b| {
            format!(
                "  {:>5.2}× baseline time",
                elapsed.as_secs_f64() / b.as_secs_f64()
            )
        })
        .unwrap_or_default();
    println!(
        "  {name:<52} {:>8.1} ms  {rows:>7} rows{ratio}",
        elapsed.as_secs_f64() * 1e3
    );
}
