//! Several tally replicas on one PostgreSQL database (the server named by
//! `TALLY_TEST_POSTGRES`; these tests fail without it): ingest through any
//! replica counts once, paging continues across replicas, each export
//! window runs once even when the replica running it is killed, and a
//! replica whose own clock runs ahead keeps to the database's.

use crate::support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::billing_api::{API_KEY, BillingApi, assert_billed};
use support::database::TestDatabase;
use support::process::{Server, get_json, post_usage, tally_ok};
use support::*;
use tally_usage_generator::Options;

/// Rates of the webhook adapter.
const RATES: [(&str, f64); 2] = [(VM_METER, 0.025), (IP_METER, 0.005)];
const REPLICAS: usize = 3;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_export_each_window_once_when_one_is_killed_on_postgres() {
    let database = TestDatabase::create();
    let url = database.url.clone();
    let token = tally_ok(&["token", "create", "--database", &url, "--role", "operator"])
        .trim()
        .to_string();
    let dirs: Vec<tempfile::TempDir> = (0..REPLICAS)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let config = dirs[0].path().join("tally.toml");
    std::fs::write(
        &config,
        "[exports]\ntick = '100ms'\nretry_base = '200ms'\nlease = '2s'\n",
    )
    .unwrap();
    let serve_args = ["--config", config.to_str().unwrap(), "--database", &url];
    let mut replicas: Vec<Server> = dirs
        .iter()
        .map(|dir| Server::start_with(dir.path(), &serve_args))
        .collect();
    let bases: Vec<String> = replicas.iter().map(|r| r.base.clone()).collect();
    let client = reqwest::Client::new();

    // Four days of usage, reported before today.
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_day = today - Days::new(4);
    let generated = sample(&Options {
        subscriptions: 3,
        days: 4,
        end: today - Days::new(1),
        ..Options::default()
    });
    let records: Vec<Value> = reported_by_now(to_wire(&generated));

    // Each batch through two replicas at the same instant (one stores it, the
    // other finds duplicates), then retried through the third.
    let mut accepted = 0;
    for (i, batch) in records.chunks(500).enumerate() {
        let (a, b, c) = (
            &bases[i % REPLICAS],
            &bases[(i + 1) % REPLICAS],
            &bases[(i + 2) % REPLICAS],
        );
        let (first, second) = tokio::join!(
            post_usage(&client, a, &token, batch),
            post_usage(&client, b, &token, batch)
        );
        for reply in [first.unwrap(), second.unwrap()] {
            let stored = reply["accepted"].as_u64().unwrap() as usize;
            assert!(
                stored == 0 || stored == batch.len(),
                "a request is stored whole or found whole: {reply}"
            );
            assert_eq!(
                stored + reply["duplicates"].as_u64().unwrap() as usize,
                batch.len()
            );
            accepted += stored;
        }
        let retry = post_usage(&client, c, &token, batch).await.unwrap();
        assert_eq!(retry["accepted"], 0, "{retry}");
    }
    assert_eq!(accepted, records.len(), "every record stored once");

    // The totals agree on every replica, and a page started on one continues on the next.
    let hour = this_hour();
    let in_window: Vec<_> = generated
        .iter()
        .filter(|r| r.reported_time.is_none_or(|t| t < hour))
        .collect();
    for start in 0..REPLICAS {
        let mut rows = Vec::new();
        let mut next = Some(format!(
            "{}/subscriptions/p/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Hourly&{API}",
            bases[start],
            (first_day - Days::new(30)).format("%Y-%m-%dT%H:%M:%SZ"),
            hour.format("%Y-%m-%dT%H:%M:%SZ"),
        ));
        let mut replica = start;
        let mut pages = 0;
        while let Some(link) = next {
            let link = link.replace(&bases[(replica + REPLICAS - 1) % REPLICAS], &bases[replica]);
            let page = get_json(&client, &link, &token).await;
            rows.extend(page["value"].as_array().unwrap().iter().cloned());
            next = page["nextLink"].as_str().map(str::to_string);
            replica = (replica + 1) % REPLICAS;
            pages += 1;
        }
        assert!(
            pages > REPLICAS,
            "paged across every replica ({pages} pages)"
        );
        assert_totals_eq(
            &totals_by_meter(&rows),
            &ingested_totals(in_window.iter().copied()),
        );
    }

    // An invoice adapter, installed through one replica, slow enough to be cut.
    let api = BillingApi::start().await;
    api.slow_down(Duration::from_millis(100));
    let manifest = dirs[0].path().join("billing.toml");
    std::fs::write(&manifest, billing_manifest(&api, first_day)).unwrap();
    let installed = tally_ok(&[
        "adapters",
        "install",
        manifest.to_str().unwrap(),
        "--url",
        &bases[1],
        "--token",
        &token,
    ]);
    assert!(installed.starts_with("installed billing"), "{installed}");

    // Kill -9 whichever replica holds the running run once it has sent a few requests.
    let db = connect(&url).await;
    let started = Instant::now();
    let (cut_run, holder) = loop {
        if api.requests().len() >= 3 {
            let running = db
                .query_opt(
                    "SELECT id, lease_holder FROM export_runs WHERE status = 'running'",
                    &[],
                )
                .await
                .unwrap();
            if let Some(row) = running {
                break (row.get::<_, i64>(0), row.get::<_, String>(1));
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "no export started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    let pid: u32 = holder.rsplit(':').next().unwrap().parse().unwrap();
    let killed = replicas
        .iter()
        .position(|r| r.child.id() == pid)
        .unwrap_or_else(|| panic!("{holder} is none of the replicas"));
    replicas[killed].kill();
    let sent_before_kill = api.requests().len();
    let survivor = &bases[(killed + 1) % REPLICAS];

    // The survivors take the cut run over once its lease ends, and finish every window.
    let started = Instant::now();
    loop {
        let installation =
            get_json(&client, &format!("{survivor}/v1/adapters/billing"), &token).await;
        let watermark: DateTime<Utc> = installation["watermark"].as_str().unwrap().parse().unwrap();
        if watermark == today {
            assert!(installation["heldBy"].is_null(), "{installation}");
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{installation}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // One run per window, each exported once; the cut one took a second attempt elsewhere.
    let runs = get_json(
        &client,
        &format!("{survivor}/v1/adapters/billing/runs"),
        &token,
    )
    .await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 4, "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["revision"] == 0),
        "{runs:?}"
    );
    let cut = db
        .query_one(
            "SELECT attempts, lease_holder FROM export_runs WHERE id = $1",
            &[&cut_run],
        )
        .await
        .unwrap();
    assert!(cut.get::<_, i64>(0) >= 2, "the cut run ran again");
    assert_ne!(
        cut.get::<_, String>(1),
        holder,
        "another replica finished the cut run"
    );

    // The take-over re-sent what the killed attempt had sent, under the same
    // keys; the billing API dropped those, and every line is billed once.
    assert!(
        api.resent_since(sent_before_kill) >= 1,
        "nothing was re-sent under an old key"
    );
    // Meters without a rate are billed at 0.
    let mut expected: BTreeMap<String, (f64, f64)> = BTreeMap::new();
    for record in records
        .iter()
        .filter(|r| (first_day..today).contains(&reported_at(r)))
    {
        let meter = record["meterId"].as_str().unwrap().to_ascii_lowercase();
        let rate = RATES
            .iter()
            .find(|(m, _)| m.eq_ignore_ascii_case(&meter))
            .map_or(0.0, |(_, rate)| *rate);
        let quantity = record["quantity"].as_f64().unwrap();
        let total = expected.entry(meter).or_default();
        total.0 += quantity;
        total.1 += quantity * rate;
    }
    assert_billed(&api.billed_lines(), &expected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_meter_added_through_one_replica_is_accepted_at_once_by_another_on_postgres() {
    use axum::http::{Method, StatusCode};
    use tally::api::{self, AppState, Settings};
    use tally::auth::{Role, new_secret, secret_digest};
    use tally::store::{Database, NewToken};

    let database = TestDatabase::create();
    let shared = Database::Postgres(database.url.clone());
    let (a, b) = (shared.open().await.unwrap(), shared.open().await.unwrap());
    let token = new_secret();
    a.create_token(NewToken {
        digest: secret_digest(&token),
        role: Role::Operator,
        subscriptions: vec![],
        description: "test".into(),
    })
    .await
    .unwrap();
    // B has read its catalog before the meter exists.
    assert!(
        b.meter_catalog()
            .await
            .unwrap()
            .resolve("gpu-hours")
            .is_none()
    );
    let (a, b) = (
        api::router(AppState::new(a, Settings::default())),
        api::router(AppState::new(b, Settings::default())),
    );
    let meter = r#"{"name": "GPU hours", "category": "Compute", "unit": "GPU hours"}"#;
    let put = call(
        &a,
        Method::PUT,
        "/v1/meters/GPU-Hours",
        Some(&token),
        Some(meter.into()),
    )
    .await;
    assert_eq!(put.status, StatusCode::OK, "{}", put.body);
    let gpu = record(
        "sub-gpu",
        "gpu-1",
        "gpu-hours",
        2.0,
        "2026-11-01T10:00:00Z",
        "2026-11-01T11:00:00Z",
    );
    let posted = call(
        &b,
        Method::POST,
        "/v1/usage",
        Some(&token),
        Some(Value::from(vec![gpu]).to_string()),
    )
    .await;
    assert_eq!(posted.status, StatusCode::OK, "{}", posted.body);
    assert_eq!(posted.counts(), (1, 0));
}

/// A replica whose own clock runs two hours ahead of the database's keeps to
/// the database's clock: it serves no hour still being written, accepts no
/// usage that ends in the database's future, runs no window the database has
/// not closed, exports no window early, and starts an installation's windows
/// at the database's hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_whose_clock_runs_ahead_keeps_to_the_database_clock_on_postgres() {
    let database = TestDatabase::create();
    let url = database.url.clone();
    let token = tally_ok(&["token", "create", "--database", &url, "--role", "operator"])
        .trim()
        .to_string();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("tally.toml");
    std::fs::write(&config, "[exports]\ntick = '100ms'\n").unwrap();
    let ahead = Server::start_with_env(
        dir.path(),
        &["--config", config.to_str().unwrap(), "--database", &url],
        &[(tally::clock::SKEW_VARIABLE, "2h")],
    );
    let base = ahead.base.as_str();
    let client = reqwest::Client::new();
    let db = connect(&url).await;
    let time = |t: DateTime<Utc>| t.format("%Y-%m-%dT%H:%M:%SZ").to_string();

    // The hour being written (by the database's clock) is not served.
    let open = open_hour(&db).await;
    let reply = client
        .get(format!(
            "{base}/subscriptions/p/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime={}&reportedEndTime={}&aggregationGranularity=Hourly&{API}",
            time(open - chrono::Duration::hours(1)),
            time(open + chrono::Duration::hours(1)),
        ))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(reply.status(), 400);
    let body: Value = reply.json().await.unwrap();
    assert_eq!(body["error"]["code"], "RequestEndTimeIsInFuture", "{body}");

    // Usage that ends an hour from now is refused.
    let open = open_hour(&db).await;
    let future = record(
        "sub-1",
        "e-future",
        VM_METER,
        1.0,
        &time(open + chrono::Duration::hours(1)),
        &time(open + chrono::Duration::hours(2)),
    );
    let reply = client
        .post(format!("{base}/v1/usage"))
        .bearer_auth(&token)
        .json(&[future])
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("is in the future"), "{body}");

    // An installation's first window is the database's hour.
    let before = database_now(&db).await;
    install(
        base,
        &token,
        dir.path(),
        &chargeback_manifest("latest", None),
    );
    let after = database_now(&db).await;
    let latest = get_json(&client, &format!("{base}/v1/adapters/latest"), &token).await;
    let watermark: DateTime<Utc> = latest["watermark"].as_str().unwrap().parse().unwrap();
    assert!(
        before - chrono::Duration::hours(1) < watermark && watermark <= after,
        "first window {watermark}, the database's time between {before} and {after}"
    );

    // The scheduler exports the closed windows, and no later one.
    let hour = hour_of(database_now(&db).await);
    let first = hour - chrono::Duration::hours(3);
    install(
        base,
        &token,
        dir.path(),
        &chargeback_manifest("past", Some(first)),
    );
    let started = Instant::now();
    loop {
        let past = get_json(&client, &format!("{base}/v1/adapters/past"), &token).await;
        let watermark: DateTime<Utc> = past["watermark"].as_str().unwrap().parse().unwrap();
        if watermark >= hour {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{past}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let runs = get_json(&client, &format!("{base}/v1/adapters/past/runs"), &token).await;
    let now = database_now(&db).await;
    for run in runs.as_array().unwrap() {
        let end: DateTime<Utc> = run["windowEnd"].as_str().unwrap().parse().unwrap();
        assert!(end <= now, "a window ending at {end} ran at {now}: {runs}");
    }

    // A run of the hour being written is refused.
    let open = open_hour(&db).await;
    let request =
        json!({"from": open.to_rfc3339(), "to": (open + chrono::Duration::hours(1)).to_rfc3339()});
    let reply = client
        .post(format!("{base}/v1/adapters/past/runs"))
        .bearer_auth(&token)
        .json(&request)
        .send()
        .await
        .unwrap();
    let status = reply.status();
    let body: Value = reply.json().await.unwrap();
    assert_eq!(status, 400, "{body}");
    assert!(body.to_string().contains("has not closed yet"), "{body}");
}

/// The database's time now.
async fn database_now(db: &tokio_postgres::Client) -> DateTime<Utc> {
    let ms: i64 = db
        .query_one(
            "SELECT (extract(epoch from clock_timestamp()) * 1000)::bigint",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    DateTime::from_timestamp_millis(ms).unwrap()
}

/// The start of the hour `t` is in.
fn hour_of(t: DateTime<Utc>) -> DateTime<Utc> {
    DateTime::from_timestamp(t.timestamp() - t.timestamp().rem_euclid(3_600), 0).unwrap()
}

/// The hour being written by the database's clock, or the next one when less
/// than a minute of it is left: it ends over a minute from now either way.
async fn open_hour(db: &tokio_postgres::Client) -> DateTime<Utc> {
    hour_of(database_now(db).await + chrono::Duration::minutes(1))
}

/// A chargeback adapter named `name`, on hourly windows from `start` (by
/// default the window the install falls in), without lag.
fn chargeback_manifest(name: &str, start: Option<DateTime<Utc>>) -> String {
    let component = component_path("chargeback-csv");
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let start = start.map_or_else(String::new, |start| {
        format!("start = '{}'\n", start.to_rfc3339())
    });
    let world = world_of(&wasm);
    format!(
        "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{world}'\nsha256 = '{sha256}'\n\
         component = '{}'\n[schedule]\nwindow = 'hourly'\nlag = '0s'\n{start}\
         [config]\ncurrency = 'EUR'\ngroup_by_tag = 'cost-center'\nrates = {{ '{VM_METER}' = 0.025 }}\n",
        component.display(),
    )
}

/// Installs `manifest` through the CLI.
fn install(base: &str, token: &str, dir: &std::path::Path, manifest: &str) {
    let file = dir.join("adapter.toml");
    std::fs::write(&file, manifest).unwrap();
    let installed = tally_ok(&[
        "adapters",
        "install",
        file.to_str().unwrap(),
        "--url",
        base,
        "--token",
        token,
    ]);
    assert!(installed.starts_with("installed"), "{installed}");
}

fn billing_manifest(api: &BillingApi, start: DateTime<Utc>) -> String {
    let component = component_path("billing-webhook");
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let rates: Vec<String> = RATES.iter().map(|(m, r)| format!("'{m}' = {r}")).collect();
    let world = world_of(&wasm);
    format!(
        "name = 'billing'\nversion = '0.1.0'\nworld = 'tally:billing@{world}'\nsha256 = '{sha256}'\n\
         component = '{}'\nallowed_outbound_hosts = ['{}']\n\
         [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{}'\n\
         [config]\nendpoint = '{}'\ncurrency = 'EUR'\nbatch_size = 4\n\
         headers = {{ 'X-Api-Key' = '{API_KEY}' }}\nrates = {{ {} }}\n",
        component.display(),
        api.origin,
        start.to_rfc3339(),
        api.endpoint(),
        rates.join(", ")
    )
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}
