//! The unmodified Azure SDK for Python (`azure-mgmt-commerce` 6.0.1) lists the
//! tenant usage API over real HTTP, through every page, hourly and daily.
//!
//! Needs the virtual environment that `tests/run.sh` creates (`.venv`, or the
//! interpreter named by `TALLY_TEST_PYTHON`); fails, not skips, without it.

use crate::support;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

use serde_json::Value;
use support::*;
use tally::auth::Role;
use tally_usage_generator::Options;

fn python() -> PathBuf {
    let python = std::env::var_os("TALLY_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/python"));
    assert!(
        python.exists(),
        "{} is missing: run tests/run.sh, which installs the Azure SDK into .venv",
        python.display()
    );
    python
}

/// Lists a subscription's usage with the SDK: the listing (rows, distinct
/// names, totals per meter), or the error the SDK raised when the service
/// refused (`type`, `status`, `code`, `message`).
pub(crate) fn sdk_list(
    base: &str,
    token: &str,
    sub: &str,
    start: &str,
    end: &str,
    granularity: &str,
) -> Result<Value, Value> {
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../tests/python/azure_sdk_list.py");
    let output = Command::new(python())
        .arg(script)
        .args([base, token, sub, start, end, granularity])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    match output.status.code() {
        Some(0) => Ok(serde_json::from_slice(&output.stdout).unwrap()),
        Some(2) => Err(serde_json::from_slice::<Value>(&output.stdout).unwrap()["error"].clone()),
        _ => panic!("the SDK failed ({}):\n{stderr}", output.status),
    }
}

fn list_with_sdk(
    base: &str,
    token: &str,
    sub: &str,
    start: &str,
    end: &str,
    granularity: &str,
) -> Value {
    sdk_list(base, token, sub, start, end, granularity)
        .unwrap_or_else(|error| panic!("the service refused the SDK: {error}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_azure_sdk_lists_every_page_and_the_totals_match_what_was_ingested() {
    let host = TestHost::new().await;
    // 60 days of 18 instances: more than 1,000 rows, hourly and daily.
    let options = Options {
        subscriptions: 1,
        days: 60,
        ..Options::default()
    };
    let records = sample(&options);
    host.ingest(&to_wire(&records)).await;
    let address = host.serve().await;
    let base = format!("http://{address}");

    let sub = records[0].subscription_id.clone();
    let tenant = host.token(Role::Tenant, &[&sub]).await;
    let (start, end) = ("2026-08-25T00:00:00+00:00", "2026-11-03T00:00:00+00:00");
    let expected = ingested_totals(records.iter().filter(|r| r.subscription_id == sub));

    for granularity in ["Hourly", "Daily"] {
        let listed = tokio::task::spawn_blocking({
            let (base, tenant, sub) = (base.clone(), tenant.clone(), sub.clone());
            move || list_with_sdk(&base, &tenant, &sub, start, end, granularity)
        })
        .await
        .unwrap();
        let rows = listed["rows"].as_u64().unwrap();
        assert!(
            rows > 1_000,
            "{granularity}: {rows} rows is a single page; the test must page"
        );
        assert_eq!(
            listed["distinct_names"].as_u64(),
            Some(rows),
            "{granularity}: no row listed twice"
        );
        let totals: BTreeMap<String, f64> =
            serde_json::from_value(listed["totals"].clone()).unwrap();
        assert_totals_eq(&totals, &expected);
    }
}
