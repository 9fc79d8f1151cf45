//! Retention of `usage_events` (`[retention] usage_events`, `tally prune`):
//! pruning events past their retention keeps the usage API's answers and
//! the exported documents exact, a retry of a pruned event is refused with
//! a clear error instead of being counted twice, recent events stay, and a
//! retention too short is refused. On SQLite, and on PostgreSQL with
//! `TALLY_TEST_BACKEND=postgres`.

use crate::support;

use std::time::{Duration, Instant};

use axum::http::{Method, StatusCode};
use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::process::{tally, tally_ok};
use support::*;
use tally::api::{self, AppState};
use tally::store::Database;
use tally_usage_generator::Options;

fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// `days` of usage of two subscriptions ending `ago` days ago (that day at
/// 00:00, returned), reported as it was.
fn usage_ending(ago: u64, days: u32) -> (DateTime<Utc>, Vec<Value>) {
    let end = today() - Days::new(ago);
    let records = sample(&Options {
        subscriptions: 2,
        days,
        end,
        ..Options::default()
    });
    (end, reported_by_now(to_wire(&records)))
}

/// Three days of usage ending 35 days ago: past a retention of two days by
/// more than a month, so that PostgreSQL, which prunes a whole month at a
/// time (its partitions), prunes all of it as SQLite does.
fn old_usage() -> (DateTime<Utc>, Vec<Value>) {
    usage_ending(35, 3)
}

/// Whether the store is PostgreSQL's.
fn is_postgres(database: &Database) -> bool {
    matches!(database, Database::Postgres(_))
}

/// Events in the store whose usage ended before `before_ms` and at or after it.
fn events(database: &Database, before_ms: i64) -> (i64, i64) {
    let sql = format!(
        "SELECT CAST(count(*) FILTER (WHERE usage_end_ms < {before_ms}) AS BIGINT),
                CAST(count(*) FILTER (WHERE usage_end_ms >= {before_ms}) AS BIGINT) FROM usage_events"
    );
    match database {
        Database::Sqlite(dir) => {
            let file = dir.join(tally::store::sqlite::DATABASE_FILE);
            let conn = rusqlite::Connection::open(file).unwrap();
            conn.query_row(&sql, [], |row| Ok((row.get(0)?, row.get(1)?)))
                .unwrap()
        }
        Database::Postgres(url) => {
            let row = &support::database::query_rows(url, &sql)[0];
            (row.get(0), row.get(1))
        }
    }
}

/// The partitions of `usage_events` on PostgreSQL, by name, sorted.
fn partitions(url: &str) -> Vec<String> {
    let rows = support::database::query_rows(
        url,
        "SELECT CAST(c.relname AS TEXT) FROM pg_inherits AS i
         JOIN pg_class AS c ON c.oid = i.inhrelid
         WHERE i.inhparent = CAST('usage_events' AS regclass) ORDER BY 1",
    );
    rows.iter().map(|row| row.get(0)).collect()
}

/// The partition of `usage_events` that holds usage ending at `end`.
fn partition_of(end: DateTime<Utc>) -> String {
    format!("usage_events_{}", end.format("%Y_%m"))
}

/// Every row of the provider usage API over the last `days` days, hourly and daily.
async fn usage_answers(host: &TestHost, start: DateTime<Utc>) -> (Vec<Value>, Vec<Value>) {
    let start = start.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    // Up to the current hour and day: the API refuses an end in the future.
    let end = this_hour().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (hourly, _) = host
        .list_all(&provider_uri(&start, &end, "Hourly"), &host.operator)
        .await;
    let end = today().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (daily, _) = host
        .list_all(&provider_uri(&start, &end, "Daily"), &host.operator)
        .await;
    assert!(!hourly.is_empty() && !daily.is_empty());
    (hourly, daily)
}

/// Installs chargeback-csv with daily windows from `start`.
async fn install_chargeback(host: &TestHost, start: DateTime<Utc>) {
    let wasm = std::fs::read(component_path("chargeback-csv")).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest = format!(
        "name = 'chargeback'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n\
         [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n\
         [config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\n\
         rates = {{ '{VM_METER}' = 0.025, '{IP_METER}' = 0.005 }}\n",
        world_of(&wasm),
        start.to_rfc3339()
    );
    let address = host.serve().await;
    let (status, body) = support::send_adapter(
        reqwest::Method::POST,
        address,
        &host.operator,
        "/v1/adapters",
        &manifest,
        &wasm,
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let started = Instant::now();
    loop {
        let shown = host
            .get("/v1/adapters/chargeback", &host.operator)
            .await
            .body;
        let watermark: DateTime<Utc> = shown["watermark"].as_str().unwrap().parse().unwrap();
        if watermark >= today() {
            return;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{shown}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The documents of every window, re-derived from the stored aggregates by
/// `verify` and compared byte for byte with those published before.
async fn verify_all(host: &TestHost, first_day: DateTime<Utc>) -> Value {
    let uri = format!(
        "/v1/adapters/chargeback/verify?from={}&to={}",
        first_day.date_naive(),
        today().date_naive()
    );
    let reply = host
        .call(Method::POST, &uri, Some(&host.operator), None)
        .await;
    assert_eq!(reply.status, StatusCode::OK, "{}", reply.body);
    reply.body
}

/// Old usage (backfilled, still inside the retention when it came) and
/// recent usage; the usage API read and chargeback-csv exported; then the
/// old events pruned by `tally prune`: they are gone, the recent ones stay,
/// the API answers the same rows, every window's documents re-derive byte
/// for byte, and retrying a pruned event is refused (by the store's
/// watermark, and by a host configured with the retention) without
/// counting it twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pruned_events_keep_aggregates_exports_and_idempotency_exact() {
    let host = TestHost::with_exports().await;
    // Old: three days of usage ending two days ago, reported as it was.
    let (end, old) = old_usage();
    host.ingest(&old).await;
    // Recent: an hour of usage that ended at the start of this hour.
    let hour = this_hour();
    let recent: Vec<Value> = ["sub-a", "sub-b"]
        .iter()
        .map(|sub| {
            record(
                sub,
                &format!("recent-{sub}"),
                VM_METER,
                2.0,
                &(hour - chrono::Duration::hours(1)).to_rfc3339(),
                &hour.to_rfc3339(),
            )
        })
        .collect();
    host.ingest(&recent).await;
    let first_day = end - Days::new(3);
    install_chargeback(&host, first_day).await;
    let before = usage_answers(&host, first_day).await;
    let report = verify_all(&host, first_day).await;
    assert_eq!(report["verified"], true, "{report}");

    // Prune with a retention of two days: every old event's usage ended
    // before now - 2 days, every recent one after.
    let database = host.data.database();
    let cutoff_ms = (Utc::now() - chrono::Duration::days(2)).timestamp_millis();
    let (old_events, recent_events) = events(&database, cutoff_ms);
    assert_eq!(
        (old_events, recent_events),
        (old.len() as i64, recent.len() as i64)
    );
    let dir = host.data.path().to_str().unwrap().to_owned();
    let output = tally(&["prune", "--data-dir", &dir, "--usage-events", "2d"]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        stdout.starts_with(&format!(
            "pruned {} usage events whose usage ended before ",
            old.len()
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("not archived: neither --archive-dir nor [retention] archive_dir is set"),
        "deleting without a copy is said: {stdout}"
    );
    assert_eq!(events(&database, cutoff_ms), (0, recent.len() as i64));
    // PostgreSQL dropped the old months' partitions, kept the recent one's,
    // and says that it prunes whole months.
    if let Database::Postgres(url) = &database {
        let left = partitions(url);
        let old_months = [partition_of(first_day + Days::new(1)), partition_of(end)];
        assert!(
            !left.iter().any(|name| old_months.contains(name)),
            "{left:?}"
        );
        assert!(left.contains(&partition_of(hour)), "{left:?}");
    }
    assert_eq!(
        stdout.contains("kept until their month has passed: the events whose usage ended from "),
        is_postgres(&database),
        "{stdout}"
    );

    // The aggregates, and so the API and the exports, are untouched.
    assert_eq!(usage_answers(&host, first_day).await, before);
    let report = verify_all(&host, first_day).await;
    assert_eq!(report["verified"], true, "{report}");
    for window in report["windows"].as_array().unwrap() {
        assert_eq!(window["result"], "match", "{window}");
        assert_eq!(window["usage"]["matches"], true, "{window}");
    }

    // A retry of a pruned event is refused, whole request included, even by
    // a host that has no retention configured: the store's watermark.
    let retry = vec![recent[0].clone(), old[0].clone()];
    let refused = host.ingest_as(&host.operator, &retry).await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    assert_eq!(refused.code(), "InvalidUsageRecords");
    let detail = &refused.body["error"]["details"][0];
    assert_eq!(
        (detail["index"].as_u64(), detail["field"].as_str()),
        (Some(1), Some("usageEndTime"))
    );
    let reason = detail["reason"].as_str().unwrap();
    assert!(
        reason.contains("older than this host's retention of usage events")
            && reason.contains("can no longer be checked for duplicates"),
        "{reason}"
    );
    // A host configured with the retention refuses it before the store.
    let configured = api::router(AppState::new(
        host.store.clone(),
        tally::api::Settings {
            usage_events_retention: Some(Duration::from_secs(2 * 86_400)),
            ..settings()
        },
    ));
    let body = Value::from(vec![old[1].clone()]).to_string();
    let refused = call(
        &configured,
        Method::POST,
        "/v1/usage",
        Some(&host.operator),
        Some(body),
    )
    .await;
    assert_eq!(refused.status, StatusCode::BAD_REQUEST, "{}", refused.body);
    let reason = refused.body["error"]["details"][0]["reason"]
        .as_str()
        .unwrap();
    assert!(reason.contains("retention of usage events"), "{reason}");
    // Nothing counted twice; the recent events are still duplicates.
    assert_eq!(usage_answers(&host, first_day).await, before);
    let again = host.ingest_as(&host.operator, &recent).await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.body);
    assert_eq!(again.counts(), (0, recent.len() as u64));
    assert_eq!(events(&database, cutoff_ms), (0, recent.len() as i64));

    // Pruning again finds nothing more.
    let output = tally(&["prune", "--data-dir", &dir, "--usage-events", "2d"]);
    assert!(
        String::from_utf8_lossy(&output.stdout).starts_with("pruned 0 usage events"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// Runs `tally ARGS…`, which must fail; its standard error.
fn refused(args: &[&str]) -> String {
    let output = tally(args);
    assert!(!output.status.success(), "tally {args:?} succeeded");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// A retention under two days is refused, from the config file and the
/// command line alike; without any, `tally prune` says so and prunes nothing;
/// `tally serve` refuses both, and an archive directory it cannot create.
#[test]
fn a_retention_too_short_or_missing_is_refused() {
    let data = DataDir::new();
    let dir = data.path().to_str().unwrap();
    let config = data.path().join("tally.toml");
    std::fs::write(&config, "[retention]\nusage_events = '1d'\n").unwrap();
    let config = config.to_str().unwrap();
    let stderr = refused(&["prune", "--data-dir", dir, "--config", config]);
    assert!(
        stderr.contains("is shorter than the minimum of 2days"),
        "{stderr}"
    );
    refused(&["prune", "--data-dir", dir, "--usage-events", "36h"]);
    let stderr = refused(&["prune", "--data-dir", dir]);
    assert!(
        stderr.contains("no retention of usage events is set"),
        "{stderr}"
    );
    // `tally serve` reads the same config and refuses to start.
    let stderr = refused(&["serve", "--data-dir", dir, "--config", config]);
    assert!(stderr.contains("shorter than the minimum"), "{stderr}");
    // An archive directory that cannot be created stops `tally serve` at
    // once, not every prune later.
    let blocked = data.path().join("not-a-directory");
    std::fs::write(&blocked, b"").unwrap();
    let archived = data.path().join("archived.toml");
    let archive_dir = blocked.join("archive");
    std::fs::write(
        &archived,
        format!(
            "[retention]\nusage_events = '90d'\narchive_dir = '{}'\n",
            archive_dir.display()
        ),
    )
    .unwrap();
    let archived = archived.to_str().unwrap();
    let stderr = refused(&["serve", "--data-dir", dir, "--config", archived]);
    assert!(stderr.contains("[retention] archive_dir"), "{stderr}");
}

/// Every row of the provider usage API from `start` on (hourly and daily),
/// without the row ids and names, which carry the store's own instance keys:
/// each row's properties but its quantity, with the quantity, sorted. What
/// two stores holding the same usage answer alike, but for the last bits of
/// sums added in another order.
async fn usage_rows(host: &TestHost, start: DateTime<Utc>) -> Vec<(String, f64)> {
    let (hourly, daily) = usage_answers(host, start).await;
    let mut rows: Vec<(String, f64)> = (hourly.iter().chain(&daily))
        .map(|row| {
            let mut properties = row["properties"].clone();
            let quantity = properties["quantity"].take().as_f64().unwrap();
            (properties.to_string(), quantity)
        })
        .collect();
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    rows
}

/// Whether the rows are the same, their quantities equal within 1e-12 of their size.
fn same_rows(left: &[(String, f64)], right: &[(String, f64)]) -> bool {
    left.len() == right.len()
        && (left.iter().zip(right))
            .all(|((a, x), (b, y))| a == b && (x - y).abs() <= 1e-12 * x.abs().max(y.abs()))
}

/// The records of every archive file in `dir`, by file name.
fn archived(dir: &std::path::Path) -> Vec<(String, Vec<Value>)> {
    use std::io::Read;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    (files.iter())
        .map(|path| {
            let mut text = String::new();
            flate2::read::GzDecoder::new(std::fs::File::open(path).unwrap())
                .read_to_string(&mut text)
                .unwrap();
            let records = text
                .lines()
                .map(|l| serde_json::from_str(l).unwrap())
                .collect();
            let name = path.file_name().unwrap().to_str().unwrap().to_owned();
            (name, records)
        })
        .collect()
}

/// `(subscriptionId, eventId)` of each record, sorted.
fn event_keys<'a>(records: impl IntoIterator<Item = &'a Value>) -> Vec<(String, String)> {
    let mut keys: Vec<_> = (records.into_iter())
        .map(|r| (r["subscriptionId"].to_string(), r["eventId"].to_string()))
        .collect();
    keys.sort();
    keys
}

/// With an archive directory, `tally prune` writes the events it prunes to
/// numbered gzip NDJSON files first: an archive that cannot be written
/// prunes nothing; what prunes cut short left is settled (a committed
/// file published, an uncommitted one replaced);
/// every pruned event is in exactly one file, in the ingest format with its
/// reported time; and `tally import` of the files into a fresh host gives
/// the usage API the same rows as the host they were pruned from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn archived_events_rebuild_the_same_usage_in_a_fresh_host() {
    let host = TestHost::new().await;
    // Two old sets: two days ending 85 days ago, and three ending 35 days
    // ago (whole months apart, so that both stores prune the same sets).
    let (end, older) = usage_ending(85, 2);
    let (_, old) = old_usage();
    host.ingest(&older).await;
    host.ingest(&old).await;
    let old: Vec<Value> = older.iter().chain(&old).cloned().collect();
    let first_day = end - Days::new(2);
    let before = usage_rows(&host, first_day).await;
    let database = host.data.database();
    let dir = host.data.path().to_str().unwrap().to_owned();
    let cutoff_ms = (Utc::now() - chrono::Duration::days(2)).timestamp_millis();

    // An archive that cannot be written (its path is a file) prunes nothing.
    let blocked = host.data.path().join("not-a-directory");
    std::fs::write(&blocked, b"").unwrap();
    let stderr = refused(&[
        "prune",
        "--data-dir",
        &dir,
        "--usage-events",
        "2d",
        "--archive-dir",
        blocked.to_str().unwrap(),
    ]);
    assert!(stderr.contains(blocked.to_str().unwrap()), "{stderr}");
    assert!(
        stderr.contains("archive") && !stderr.contains("store is unavailable"),
        "an archive failure is said as one, not as the database's: {stderr}"
    );
    assert_eq!(events(&database, cutoff_ms), (old.len() as i64, 0));

    // The older set first (a retention of 50 days), then what prunes cut
    // short would leave: the first file committed but not yet given its
    // name, and a partial file under the next number, never committed; then
    // the rest.
    let archive = host.data.path().join("archive");
    let archive_arg = archive.to_str().unwrap();
    tally_ok(&[
        "prune",
        "--data-dir",
        &dir,
        "--usage-events",
        "50d",
        "--archive-dir",
        archive_arg,
    ]);
    let first = archived(&archive);
    assert_eq!(
        event_keys(first.iter().flat_map(|(_, records)| records)),
        event_keys(&older)
    );
    let partial = |name: &str| archive.join(format!("{name}.partial"));
    std::fs::rename(archive.join(&first[0].0), partial(&first[0].0)).unwrap();
    let next = format!("usage-events-{:08}.ndjson.gz", first.len() + 1);
    std::fs::write(partial(&next), b"left by a prune that never committed").unwrap();
    let stdout = tally_ok(&[
        "prune",
        "--data-dir",
        &dir,
        "--usage-events",
        "2d",
        "--archive-dir",
        archive_arg,
    ]);
    assert!(
        stdout.contains("archived ") && stdout.contains(&next),
        "{stdout}"
    );
    assert!(!stdout.contains("not archived"), "{stdout}");
    assert_eq!(events(&database, cutoff_ms), (0, 0));
    // On PostgreSQL the emptied months' partitions went too.
    if let Database::Postgres(url) = &database {
        assert_eq!(partitions(url), Vec::<String>::new());
    }

    // Each pruned event once, in files numbered from 1 without a gap.
    let files = archived(&archive);
    let names: Vec<&str> = files.iter().map(|(name, _)| name.as_str()).collect();
    let numbered: Vec<String> = (1..=files.len())
        .map(|seq| format!("usage-events-{seq:08}.ndjson.gz"))
        .collect();
    assert_eq!(names, numbered);
    assert_eq!(
        event_keys(files.iter().flat_map(|(_, records)| records)),
        event_keys(&old)
    );
    assert_eq!(
        files[0].1, first[0].1,
        "the first file, published as written"
    );
    for record in files.iter().flat_map(|(_, records)| records) {
        for field in [
            "meterId",
            "resourceUri",
            "quantity",
            "usageStartTime",
            "usageEndTime",
            "reportedTime",
        ] {
            assert!(record.get(field).is_some(), "{field} missing from {record}");
        }
    }

    // Imported into a fresh host, the archives answer the same usage.
    let fresh = TestHost::new().await;
    let fresh_dir = fresh.data.path().to_str().unwrap().to_owned();
    let mut imported = 0;
    for name in &names {
        let file = archive.join(name);
        tally_ok(&["import", file.to_str().unwrap(), "--data-dir", &fresh_dir]);
        imported += files.iter().find(|(n, _)| n == name).unwrap().1.len();
    }
    assert_eq!(imported, old.len());
    let after = usage_rows(&fresh, first_day).await;
    assert!(
        same_rows(&after, &before),
        "{} rows from the archives, {} before; first difference: {:?}",
        after.len(),
        before.len(),
        (after.iter().zip(&before)).find(|(a, b)| a.0 != b.0 || a.1 != b.1)
    );
}

/// `tally serve` with a retention prunes on its own, the first time at
/// start, and says in its log which policy runs: without `archive_dir` that
/// the events go without a copy, with it where they are archived (and the
/// files are there).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tally_serve_prunes_on_its_own_and_says_whether_it_archives() {
    for archiving in [false, true] {
        let host = TestHost::new().await;
        let (_, old) = old_usage();
        host.ingest(&old).await;
        let database = host.data.database();
        let cutoff_ms = (Utc::now() - chrono::Duration::days(2)).timestamp_millis();
        assert_eq!(events(&database, cutoff_ms), (old.len() as i64, 0));

        let archive = host.data.path().join("archive");
        let mut config = "[retention]\nusage_events = '2d'\nprune_every = '1h'\n".to_owned();
        if archiving {
            config += &format!("archive_dir = '{}'\n", archive.display());
        }
        let config_file = host.data.path().join("retention.toml");
        std::fs::write(&config_file, config).unwrap();
        let server = support::process::Server::start_with(
            host.data.path(),
            &["--config", config_file.to_str().unwrap()],
        );
        let started = Instant::now();
        while events(&database, cutoff_ms) != (0, 0) {
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "tally serve did not prune: {}",
                server.log()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let log = server.log();
        if archiving {
            assert!(
                log.contains("archived, then pruned") && log.contains(&*archive.to_string_lossy()),
                "{log}"
            );
            let records: usize = archived(&archive).iter().map(|(_, r)| r.len()).sum();
            assert_eq!(records, old.len());
        } else {
            assert!(log.contains("pruned without a copy"), "{log}");
            assert!(!archive.exists());
        }
    }
}
