//! `tally migrate --from sqlite:PATH --to postgres://…` (needs the server named
//! by `TALLY_TEST_POSTGRES`; fails without it): an embedded installation moves
//! whole, and the host on PostgreSQL answers as the embedded one did.

use crate::support;

use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};
use support::database::TestDatabase;
use support::process::{Server, get_json, post_usage, tally, tally_ok};
use support::*;
use tally_usage_generator::Options;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_embedded_installation_moves_to_postgres_whole_on_postgres() {
    // An embedded host: usage, an operator and a tenant token, a grant, an
    // adapter that exported three days.
    let embedded = tempfile::tempdir().unwrap();
    let data = embedded.path().to_str().unwrap();
    let token = |args: &[&str]| {
        tally_ok(&[&["token", "create", "--data-dir", data][..], args].concat())
            .trim()
            .to_string()
    };
    let operator = token(&["--role", "operator"]);
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_day = today - Days::new(3);
    let generated = sample(&Options {
        subscriptions: 3,
        days: 3,
        end: today - Days::new(1),
        ..Options::default()
    });
    let records: Vec<Value> = reported_by_now(to_wire(&generated));
    let tenant_subscription = records[0]["subscriptionId"].as_str().unwrap().to_owned();
    let tenant = token(&["--role", "tenant", "--subscription", &tenant_subscription]);
    tally_ok(&[
        "access",
        "grant",
        "--data-dir",
        data,
        "--issuer",
        "https://login.example/tenant-1/v2.0",
        "--subject",
        "alice",
        "--subscription",
        &tenant_subscription,
    ]);
    let server = Server::start(embedded.path());
    let client = reqwest::Client::new();
    for batch in records.chunks(1_000) {
        post_usage(&client, &server.base, &operator, batch)
            .await
            .unwrap();
    }
    let manifest = embedded.path().join("chargeback.toml");
    std::fs::write(&manifest, chargeback_manifest(first_day)).unwrap();
    tally_ok(&[
        "adapters",
        "install",
        manifest.to_str().unwrap(),
        "--url",
        &server.base,
        "--token",
        &operator,
    ]);
    wait_for_watermark(&client, &server.base, &operator, today).await;
    let before = Snapshot::take(
        &client,
        &server.base,
        &operator,
        &tenant,
        &tenant_subscription,
    )
    .await;
    drop(server); // the host is stopped before its store is moved

    // Move it.
    let target = TestDatabase::create();
    let moved = tally_ok(&[
        "migrate",
        "--from",
        &format!("sqlite:{data}"),
        "--to",
        &target.url,
    ]);
    assert!(moved.contains("usage_events"), "{moved}");
    assert!(
        moved.contains(&format!("{:>12} rows", records.len())),
        "{moved}"
    );

    // A second migration into the same database is refused, changing nothing.
    let again = tally(&[
        "migrate",
        "--from",
        &format!("sqlite:{data}"),
        "--to",
        &target.url,
    ]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already holds"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // On PostgreSQL: the same tokens, usage, pages, runs and documents.
    let replica_dir = tempfile::tempdir().unwrap();
    let moved_server = Server::start_with(replica_dir.path(), &["--database", &target.url]);
    let after = Snapshot::take(
        &client,
        &moved_server.base,
        &operator,
        &tenant,
        &tenant_subscription,
    )
    .await;
    assert_eq!(after.tenant_rows.len(), before.tenant_rows.len());
    assert_rows_eq(&after.tenant_rows, &before.tenant_rows);
    assert_rows_eq(&after.provider_rows, &before.provider_rows);
    assert_eq!(after.runs, before.runs);
    assert_eq!(after.document, before.document);
    assert_eq!(after.grants, before.grants);
    assert_eq!(after.grants.as_array().map(Vec::len), Some(1));
    assert_totals_eq(
        &totals_by_meter(&after.provider_rows),
        &ingested_totals(
            generated
                .iter()
                .filter(|r| r.reported_time.is_none_or(|t| t < this_hour())),
        ),
    );

    // A paging token of the embedded host resumes on PostgreSQL.
    let second_page = before
        .second_page_link
        .replace(&before.base, &moved_server.base);
    let page = get_json(&client, &second_page, &operator).await;
    assert_rows_eq(
        page["value"].as_array().unwrap(),
        &before.provider_rows[PAGE..PAGE + page["value"].as_array().unwrap().len()],
    );

    // Accepted events stay accepted (a retry is a duplicate); new ones count.
    let retry = post_usage(&client, &moved_server.base, &operator, &records[..10])
        .await
        .unwrap();
    assert_eq!(
        (retry["accepted"].as_u64(), retry["duplicates"].as_u64()),
        (Some(0), Some(10))
    );

    // The scheduler carries on from the watermark: no window runs again.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let runs = get_json(
        &client,
        &format!("{}/v1/adapters/chargeback/runs", moved_server.base),
        &operator,
    )
    .await;
    assert_eq!(runs, before.runs);
}

/// Rows per page of the usage API.
const PAGE: usize = 1_000;

/// What a user of the host sees.
struct Snapshot {
    base: String,
    tenant_rows: Vec<Value>,
    provider_rows: Vec<Value>,
    second_page_link: String,
    runs: Value,
    document: String,
    grants: Value,
}

impl Snapshot {
    async fn take(
        client: &reqwest::Client,
        base: &str,
        operator: &str,
        tenant: &str,
        subscription: &str,
    ) -> Self {
        let since = "reportedStartTime=2000-01-01T00:00:00Z";
        let today = Utc::now().format("%Y-%m-%dT00:00:00Z");
        let hour = this_hour().format("%Y-%m-%dT%H:%M:%SZ");
        let (tenant_rows, _) = list_all(
            client,
            &format!("{base}/subscriptions/{subscription}/providers/Microsoft.Commerce/UsageAggregates?{since}&reportedEndTime={today}&aggregationGranularity=Daily&showDetails=true&{API}"),
            tenant,
        )
        .await;
        let (provider_rows, links) = list_all(
            client,
            &format!("{base}/subscriptions/p/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?{since}&reportedEndTime={hour}&aggregationGranularity=Hourly&{API}"),
            operator,
        )
        .await;
        assert!(links.len() > 1, "several pages");
        let runs = get_json(
            client,
            &format!("{base}/v1/adapters/chargeback/runs"),
            operator,
        )
        .await;
        let document = client
            .get(format!("{base}/v1/adapters/chargeback/documents/chargeback.csv?from=2000-01-01&to=2100-01-01"))
            .bearer_auth(operator)
            .send()
            .await
            .unwrap()
            .error_for_status()
            .unwrap()
            .text()
            .await
            .unwrap();
        let grants = get_json(client, &format!("{base}/v1/access/grants"), operator).await;
        Snapshot {
            base: base.to_owned(),
            tenant_rows,
            provider_rows,
            second_page_link: links[0].clone(),
            runs,
            document,
            grants,
        }
    }
}

/// Every row of a listing, and the nextLinks followed.
async fn list_all(client: &reqwest::Client, first: &str, token: &str) -> (Vec<Value>, Vec<String>) {
    let (mut rows, mut links) = (Vec::new(), Vec::new());
    let mut next = Some(first.to_owned());
    while let Some(url) = next {
        let page = get_json(client, &url, token).await;
        rows.extend(page["value"].as_array().unwrap().iter().cloned());
        next = page["nextLink"].as_str().map(str::to_owned);
        links.extend(next.clone());
    }
    (rows, links)
}

/// The same rows: ids and every field equal, quantities to summation error.
fn assert_rows_eq(actual: &[Value], expected: &[Value]) {
    assert_eq!(actual.len(), expected.len());
    for (got, want) in actual.iter().zip(expected) {
        let (mut got, mut want) = (got.clone(), want.clone());
        let q = |row: &mut Value| row["properties"]["quantity"].take().as_f64().unwrap();
        let (a, b) = (q(&mut got), q(&mut want));
        assert!((a - b).abs() <= 1e-9 * b.abs().max(1.0), "{a} vs {b}");
        assert_eq!(got, want);
    }
}

async fn wait_for_watermark(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    until: DateTime<Utc>,
) {
    let started = Instant::now();
    loop {
        let installation = get_json(client, &format!("{base}/v1/adapters/chargeback"), token).await;
        let watermark: DateTime<Utc> = installation["watermark"].as_str().unwrap().parse().unwrap();
        if watermark == until {
            return;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{installation}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The example chargeback manifest, pinned, exporting from `start` without lag.
fn chargeback_manifest(start: DateTime<Utc>) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = component_path("chargeback-csv");
    let sha256: String = Sha256::digest(std::fs::read(&component).unwrap())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let example = std::fs::read_to_string(root.join("examples/adapters/chargeback.toml")).unwrap();
    example
        .lines()
        .map(|line| {
            if line.starts_with("sha256 = ") {
                format!("sha256 = \"{sha256}\"")
            } else if line.starts_with("component = ") {
                format!("component = '{}'", component.display())
            } else if line.starts_with("lag = ") {
                format!("lag = '0s'\nstart = '{}'", start.to_rfc3339())
            } else {
                line.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
