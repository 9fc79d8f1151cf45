//! The `tally` command line: tokens, `import` of CSV and NDJSON (directly
//! into a data directory and through a running host), the meter catalog,
//! `adapter test`, and managing a running host's adapters and exports.

mod support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::process::{Server, tally, tally_ok};
use support::*;

const CSV: &str = "\
eventId,subscriptionId,meterId,resourceUri,location,tags,additionalInfo,quantity,usageStartTime,usageEndTime,reportedTime
e1,sub-csv,FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5,/vm1,local,\"{\"\"cost-center\"\":\"\"finance\"\"}\",{},2,2026-10-01T00:00:00Z,2026-10-01T01:00:00Z,
e2,sub-csv,fab6eb84-500b-4a09-a8ca-7358f8bbaea5,/vm1,local,\"{\"\"cost-center\"\":\"\"finance\"\"}\",{},3,2026-10-01T01:00:00Z,2026-10-01T02:00:00Z,2026-10-01T09:10:00Z
";

async fn hourly_rows(base: &str, token: &str, sub: &str, start: &str, end: &str) -> Vec<Value> {
    let url = format!("{base}{}", usage_uri(sub, start, end, "Hourly"));
    let response = reqwest::Client::new()
        .get(&url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{url}: {}",
        response.status()
    );
    let page: Value = response.json().await.unwrap();
    page["value"].as_array().unwrap().clone()
}

#[tokio::test]
async fn import_csv_into_a_data_directory_keeps_reported_times() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_path_buf();
    let data = data_dir.to_str().unwrap();
    let file = dir.path().join("usage.csv");
    std::fs::write(&file, CSV).unwrap();

    let out = tally_ok(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data,
        "--reported-at",
        "2026-10-01T05:30:00Z",
    ]);
    assert!(out.contains("imported 2 records"), "{out}");
    let again = tally_ok(&[
        "import",
        file.to_str().unwrap(),
        "--data-dir",
        data,
        "--reported-at",
        "2026-10-01T05:30:00Z",
    ]);
    assert!(
        again.contains("imported 0 records (2 duplicates"),
        "{again}"
    );

    let token = tally_ok(&[
        "token",
        "create",
        "--data-dir",
        data,
        "--role",
        "tenant",
        "--subscription",
        "sub-csv",
    ]);
    let server = Server::start(&data_dir);
    // e1 took --reported-at (05:30); e2 kept its own reported time (09:10).
    let at_five = hourly_rows(
        &server.base,
        token.trim(),
        "sub-csv",
        "2026-10-01T05:00:00Z",
        "2026-10-01T06:00:00Z",
    )
    .await;
    assert_eq!(at_five.len(), 1);
    assert_eq!(at_five[0]["properties"]["quantity"], 2.0);
    let at_nine = hourly_rows(
        &server.base,
        token.trim(),
        "sub-csv",
        "2026-10-01T09:00:00Z",
        "2026-10-01T10:00:00Z",
    )
    .await;
    assert_eq!(at_nine[0]["properties"]["quantity"], 3.0);
}

#[test]
fn import_through_a_running_host_and_refusals_name_the_record() {
    let dir = DataDir::new();
    let data = dir.path().to_str().unwrap();
    let operator = tally_ok(&["token", "create", "--data-dir", data, "--role", "operator"]);
    let server = Server::start(dir.path());

    let records = sample(&tally_usage_generator::Options {
        subscriptions: 2,
        days: 2,
        ..Default::default()
    });
    let ndjson: String = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap() + "\n")
        .collect();
    let file = dir.path().join("usage.ndjson");
    std::fs::write(&file, &ndjson).unwrap();
    let out = tally_ok(&[
        "import",
        file.to_str().unwrap(),
        "--url",
        &server.base,
        "--token",
        operator.trim(),
        "--batch-size",
        "500",
    ]);
    assert!(
        out.contains(&format!("imported {} records", records.len())),
        "{out}"
    );

    let bad = dir.path().join("bad.ndjson");
    let mut lines: Vec<String> = ndjson.lines().take(3).map(str::to_string).collect();
    lines[2] = lines[2].replace("\"quantity\":", "\"quantity\":-");
    std::fs::write(&bad, lines.join("\n")).unwrap();
    let refused = tally(&[
        "import",
        bad.to_str().unwrap(),
        "--url",
        &server.base,
        "--token",
        operator.trim(),
    ]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("record 3: quantity"), "{stderr}");
}

#[test]
fn token_create_checks_its_arguments() {
    let dir = DataDir::new();
    let data = dir.path().to_str().unwrap();
    assert!(
        !tally(&["token", "create", "--data-dir", data, "--role", "tenant"])
            .status
            .success()
    );
    assert!(
        !tally(&[
            "token",
            "create",
            "--data-dir",
            data,
            "--role",
            "operator",
            "--subscription",
            "x"
        ])
        .status
        .success()
    );
    // Issue 10, finding 6: a subscription with blanks or control characters
    // is refused, not trimmed (" sub-1" is no subscription usage arrives for).
    for subscription in [" sub-1", "sub-1\t", "sub\u{1b}-1"] {
        let refused = tally(&[
            "token",
            "create",
            "--data-dir",
            data,
            "--role",
            "tenant",
            "--subscription",
            subscription,
        ]);
        assert!(!refused.status.success(), "{subscription:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains("--subscription"), "{stderr}");
    }
    let secret = tally_ok(&[
        "token",
        "create",
        "--data-dir",
        data,
        "--role",
        "reporter",
        "--description",
        "rp-1",
    ]);
    assert!(secret.trim().starts_with("tly_"));
    let list = tally_ok(&["token", "list", "--data-dir", data]);
    assert!(list.contains("reporter") && list.contains("rp-1"), "{list}");
    assert!(
        !list.contains(secret.trim()),
        "secrets are never shown again"
    );
}

#[tokio::test]
async fn a_revoked_token_stops_working_at_once() {
    let dir = DataDir::new();
    let data = dir.path().to_str().unwrap();
    let operator = tally_ok(&["token", "create", "--data-dir", data, "--role", "operator"]);
    let server = Server::start(dir.path());
    let meters = |token: String| {
        let url = format!("{}/v1/meters", server.base);
        async move {
            reqwest::Client::new()
                .get(url)
                .bearer_auth(token.trim())
                .send()
                .await
                .unwrap()
                .status()
        }
    };
    assert_eq!(meters(operator.clone()).await, 200);
    let id = tally_ok(&["token", "list", "--data-dir", data])
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    assert!(tally_ok(&["token", "revoke", "--data-dir", data, &id]).contains("revoked"));
    assert_eq!(meters(operator).await, 401);
    assert!(
        !tally(&["token", "revoke", "--data-dir", data, &id])
            .status
            .success(),
        "revoking twice is an error"
    );
}

#[test]
fn operators_extend_the_meter_catalog_from_csv() {
    let dir = DataDir::new();
    let data = dir.path().to_path_buf();
    let data = data.to_str().unwrap();
    let file = dir.path().join("meters.csv");
    std::fs::write(
        &file,
        "meter_id,meter_name,category,unit,notes\nGPU-HOURS,GPU hours,Compute,GPU hours,per GPU\n",
    )
    .unwrap();
    assert!(
        tally_ok(&[
            "meters",
            "import",
            "--data-dir",
            data,
            file.to_str().unwrap()
        ])
        .contains("1 meters")
    );
    let list = tally_ok(&["meters", "list", "--data-dir", data]);
    assert_eq!(
        list.lines().count(),
        1 + 69 + 1,
        "header, the documented meters and the new one"
    );
    assert!(
        list.contains("GPU-HOURS,GPU hours,Compute,GPU hours,per GPU"),
        "{list}"
    );

    std::fs::write(&file, "meter_id,meter_name\n,nameless\n").unwrap();
    let refused = tally(&[
        "meters",
        "import",
        "--data-dir",
        data,
        file.to_str().unwrap(),
    ]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("line 2"));
}

#[test]
fn adapter_test_runs_an_adapter_locally_and_reports_its_failure() {
    let dir = DataDir::new();
    let records = sample(&tally_usage_generator::Options {
        subscriptions: 2,
        days: 2,
        ..Default::default()
    });
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(
        &usage,
        records
            .iter()
            .map(|r| serde_json::to_string(r).unwrap() + "\n")
            .collect::<String>(),
    )
    .unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = |name: &str| {
        let path = root.join("target/adapters").join(format!("{name}.wasm"));
        assert!(
            path.exists(),
            "{} is missing: run adapters/build.sh",
            path.display()
        );
        path.to_str().unwrap().to_string()
    };
    let out = dir.path().join("out");
    // `tally adapter test COMPONENT --config CONFIG` on the sample usage.
    let adapter_test = |name: &str, config: &std::path::Path| {
        tally(&[
            "adapter",
            "test",
            &component(name),
            "--config",
            config.to_str().unwrap(),
            "--usage",
            usage.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ])
    };
    let passed = adapter_test(
        "chargeback-csv",
        &root.join("examples/adapters/chargeback.toml"),
    );
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    let report = String::from_utf8_lossy(&passed.stdout);
    assert!(
        report.contains("adapter chargeback-csv 0.1.0") && report.contains("figures:"),
        "{report}"
    );
    let csv = std::fs::read_to_string(out.join("chargeback.csv")).unwrap();
    assert!(csv.starts_with("date,group,subscription_id,"), "{csv}");
    assert!(csv.lines().count() > 10);

    let attack = dir.path().join("attack.json");
    std::fs::write(&attack, r#"{"attack": "trap"}"#).unwrap();
    let failed = adapter_test("hostile", &attack);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains("trapped") && stderr.contains("panics on purpose"),
        "{stderr}"
    );

    // A refusal with output on stderr is a clean error, not a crash.
    std::fs::write(&attack, r#"{"attack": "refuse-config"}"#).unwrap();
    let refused = adapter_test("hostile", &attack);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("refused its configuration: refused on purpose"),
        "{stderr}"
    );
}

#[test]
fn adapter_test_names_a_bad_record_by_its_place_in_the_file() {
    let dir = DataDir::new();
    // More records than one load batch (10,000), the bad one last.
    let records = sample(&tally_usage_generator::Options {
        subscriptions: 6,
        days: 8,
        ..Default::default()
    });
    assert!(records.len() > 10_000);
    let mut lines: Vec<String> = records
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let last = lines.len();
    lines[last - 1] = lines[last - 1].replace("\"quantity\":", "\"quantity\":-");
    let usage = dir.path().join("usage.ndjson");
    std::fs::write(&usage, lines.join("\n")).unwrap();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let failed = tally(&[
        "adapter",
        "test",
        root.join("target/adapters/chargeback-csv.wasm")
            .to_str()
            .unwrap(),
        "--config",
        root.join("examples/adapters/chargeback.toml")
            .to_str()
            .unwrap(),
        "--usage",
        usage.to_str().unwrap(),
    ]);
    assert!(!failed.status.success());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert!(
        stderr.contains(&format!("record {last}: quantity")),
        "{stderr}"
    );
}

#[test]
fn operators_manage_adapters_and_exports_from_the_cli() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = tally_ok(&[
        "token",
        "create",
        "--data-dir",
        data_dir,
        "--role",
        "operator",
    ]);
    let server = Server::start(dir.path());
    let host = ["--url", server.base.as_str(), "--token", token.trim()];
    let run = |args: &[&str]| tally_ok(&[args, &host[..]].concat());

    // The example manifest, pinned to the built component.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = component_path("chargeback-csv");
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let example = std::fs::read_to_string(root.join("examples/adapters/chargeback.toml")).unwrap();
    let pinned: Vec<String> = example
        .lines()
        .map(|line| match line.starts_with("sha256 = ") {
            true => format!("sha256 = \"{sha256}\""),
            false => line.to_owned(),
        })
        .collect();
    let manifest = dir.path().join("chargeback.toml");
    std::fs::write(&manifest, pinned.join("\n")).unwrap();
    let manifest = manifest.to_str().unwrap();
    let component = component.to_str().unwrap();

    let installed = run(&["adapters", "install", manifest, "--component", component]);
    assert!(
        installed.starts_with("installed chargeback (chargeback-csv 0.1.0"),
        "{installed}"
    );
    let listed = run(&["adapters", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("chargeback ") && l.contains("true")),
        "{listed}"
    );
    let shown: Value = serde_json::from_str(&run(&["adapters", "show", "chargeback"])).unwrap();
    assert_eq!(shown["sha256"], sha256.as_str());
    assert!(shown["manifest"].as_str().unwrap().contains("group_by_tag"));

    // Run two closed days now (nothing was reported: empty documents), then again: corrections.
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let (from, to) = (
        (yesterday - chrono::Days::new(1)).to_string(),
        (yesterday + chrono::Days::new(1)).to_string(),
    );
    let exported = run(&["export", "run", "chargeback", "--from", &from, "--to", &to]);
    assert_eq!(exported.matches(": queued").count(), 2, "{exported}");
    assert_eq!(exported.matches(" succeeded ").count(), 2, "{exported}");
    let corrected = run(&["export", "run", "chargeback", "--from", &from, "--to", &to]);
    assert_eq!(corrected.matches(": correction").count(), 2, "{corrected}");
    let runs = run(&["adapters", "runs", "chargeback"]);
    assert_eq!(runs.lines().count(), 1 + 4, "{runs}");

    assert!(run(&["adapters", "disable", "chargeback"]).contains("disabled"));
    assert!(run(&["adapters", "enable", "chargeback"]).contains("enabled"));
    let upgraded = run(&["adapters", "upgrade", manifest, "--component", component]);
    assert!(upgraded.starts_with("upgraded chargeback"), "{upgraded}");
    assert!(run(&["adapters", "remove", "chargeback"]).starts_with("removed chargeback"));
    // What the host refuses comes back as its message, and a failure exit code.
    let missing = tally(&[&["adapters", "show", "chargeback"], &host[..]].concat());
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(
        stderr.contains("No adapter is installed as 'chargeback'"),
        "{stderr}"
    );
}
