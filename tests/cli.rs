//! The `tally` command line: tokens, access grants, `import` of CSV and NDJSON (directly
//! into a data directory and through a running host), the meter catalog,
//! `adapter test`, and managing a running host's adapters and exports.

use crate::support;

use serde_json::Value;
use sha2::{Digest, Sha256};
use support::process::{self, Server, create_token, tally, tally_ok};
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

#[tokio::test]
async fn access_grants_subscriptions_to_a_subject_and_revokes_them() {
    let dir = DataDir::new();
    let data = dir.path().to_str().unwrap();
    let issuer = "https://login.example/tenant-1/v2.0";
    let access = |verb: &str, subject: &str, subscriptions: &[&str]| {
        let mut args = vec![
            "access",
            verb,
            "--data-dir",
            data,
            "--issuer",
            issuer,
            "--subject",
            subject,
        ];
        for subscription in subscriptions {
            args.extend(["--subscription", subscription]);
        }
        tally(&args)
    };
    let granted = access("grant", "alice", &["sub-1", "Sub-2"]);
    assert!(granted.status.success(), "{granted:?}");
    let out = String::from_utf8_lossy(&granted.stdout);
    assert!(out.contains("granted Sub-2 to 'alice'"), "{out}");
    // Again, in another case: no second grant.
    assert!(access("grant", "alice", &["SUB-1"]).status.success());
    assert!(access("grant", "bob", &["sub-3"]).status.success());

    // Values out of bounds are refused before any change, naming the option.
    let long_subject = "s".repeat(257);
    for (issuer_arg, subject, subscription, option) in [
        ("login.example", "carol", "sub-4", "--issuer"),
        (issuer, long_subject.as_str(), "sub-4", "--subject"),
        (issuer, "carol", "sub\u{1b}4", "--subscription"),
    ] {
        let refused = tally(&[
            "access",
            "grant",
            "--data-dir",
            data,
            "--issuer",
            issuer_arg,
            "--subject",
            subject,
            "--subscription",
            "sub-ok",
            "--subscription",
            subscription,
        ]);
        assert!(!refused.status.success(), "{subject} {subscription:?}");
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(stderr.contains(option), "{stderr}");
    }

    let list = tally_ok(&["access", "list", "--data-dir", data]);
    let rows: Vec<Vec<&str>> = list
        .lines()
        .skip(1)
        .map(|line| line.split_whitespace().skip(1).collect())
        .collect();
    assert_eq!(
        rows,
        [
            ["sub-1", "alice", issuer],
            ["Sub-2", "alice", issuer],
            ["sub-3", "bob", issuer],
        ],
        "{list}"
    );

    // A running host serves the same grants to operators.
    let operator = create_token(data, "operator");
    let server = Server::start(dir.path());
    let client = reqwest::Client::new();
    let url = format!("{}/v1/access/grants", server.base);
    let served = process::get_json(&client, &url, &operator).await;
    assert_eq!(served.as_array().unwrap().len(), 3, "{served}");
    assert_eq!(served[1]["subscriptionId"], "Sub-2");

    let revoked = access("revoke", "alice", &["sub-2"]);
    assert!(revoked.status.success(), "{revoked:?}");
    let missing = access("revoke", "alice", &["sub-1", "sub-2"]);
    assert!(!missing.status.success());
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no grant of sub-2"), "{stderr}");
    // The one that was granted went all the same.
    let served = process::get_json(&client, &url, &operator).await;
    assert_eq!(served.as_array().unwrap().len(), 1, "{served}");
    assert_eq!(served[0]["subject"], "bob");
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
    let token = create_token(data_dir, "operator");
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
    let last = last_closed_day();
    let (from, to) = (
        (last - chrono::Days::new(1)).to_string(),
        (last + chrono::Days::new(1)).to_string(),
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

/// The example billing-webhook manifest pinned to the built component, sent
/// to `api` with its API key in `[secrets]`, written into `dir`.
fn webhook_manifest(dir: &std::path::Path, api: &support::billing_api::BillingApi) -> String {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let wasm = std::fs::read(component_path("billing-webhook")).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let example =
        std::fs::read_to_string(root.join("examples/adapters/billing-webhook.toml")).unwrap();
    assert!(
        example.contains("[secrets.headers]"),
        "the example keeps its key secret"
    );
    let pinned: Vec<String> = example
        .lines()
        .map(|line| match line {
            l if l.starts_with("sha256 = ") => format!("sha256 = \"{sha256}\""),
            l if l.starts_with("component = ") => String::new(),
            l => l
                .replace("https://billing.example/v1/invoice-lines", &api.endpoint())
                .replace("https://billing.example", &api.origin)
                .replace(
                    "replace-with-the-billing-api-key",
                    support::billing_api::API_KEY,
                ),
        })
        .collect();
    let manifest = dir.join("billing.toml");
    std::fs::write(&manifest, pinned.join("\n")).unwrap();
    manifest.to_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_secret_reaches_the_adapter_but_never_the_api_or_the_cli() {
    use support::billing_api::{API_KEY, BillingApi};
    let api = BillingApi::start().await;
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    // Usage reported on a closed day, for the run to invoice.
    let day = last_closed_day();
    let csv = dir.path().join("usage.csv");
    let header = CSV.lines().next().unwrap();
    let record = format!(
        "s1,sub-secret,FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5,/vm1,local,{{}},{{}},2,\
         {day}T00:00:00Z,{day}T01:00:00Z,{day}T09:10:00Z"
    );
    std::fs::write(&csv, format!("{header}\n{record}\n")).unwrap();
    tally_ok(&["import", csv.to_str().unwrap(), "--data-dir", data_dir]);
    let server = Server::start(dir.path());
    let host = ["--url", server.base.as_str(), "--token", token.trim()];
    let run = |args: &[&str]| tally_ok(&[args, &host[..]].concat());
    let manifest = webhook_manifest(dir.path(), &api);
    let component = component_path("billing-webhook");
    let component = component.to_str().unwrap();

    let installed = run(&["adapters", "install", &manifest, "--component", component]);
    assert!(!installed.contains(API_KEY), "{installed}");
    let (from, to) = (day.to_string(), (day + chrono::Days::new(1)).to_string());
    let exported = run(&["export", "run", "billing", "--from", &from, "--to", &to]);
    assert!(exported.contains(" succeeded "), "{exported}");
    let sent = api.requests();
    assert!(!sent.is_empty(), "the run sent its invoice lines");
    assert!(sent.iter().all(|r| r.headers["x-api-key"] == API_KEY));
    assert_eq!(
        api.accepted().len(),
        sent.len(),
        "the billing API took the key"
    );

    // Neither the API nor the CLI shows it.
    let client = reqwest::Client::new();
    for path in ["/v1/adapters", "/v1/adapters/billing"] {
        let body = client
            .get(format!("{}{path}", server.base))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            body.contains("billing") && !body.contains(API_KEY),
            "{path}: {body}"
        );
    }
    let listed = run(&["adapters", "list"]);
    assert!(!listed.contains(API_KEY), "{listed}");
    let shown: Value = serde_json::from_str(&run(&["adapters", "show", "billing"])).unwrap();
    let shown = shown["manifest"].as_str().unwrap();
    assert!(!shown.contains(API_KEY), "{shown}");
    assert!(shown.contains("\"X-Api-Key\" = \"***\""), "{shown}");

    // The shown manifest, sent back as an upgrade, keeps the stored key.
    let edited = dir.path().join("shown.toml");
    std::fs::write(&edited, shown).unwrap();
    let edited = edited.to_str().unwrap();
    run(&["adapters", "upgrade", edited, "--component", component]);
    let corrected = run(&["export", "run", "billing", "--from", &from, "--to", &to]);
    assert!(corrected.contains(" succeeded "), "{corrected}");
    let resent = api.requests();
    assert!(resent.len() > sent.len());
    assert!(resent.iter().all(|r| r.headers["x-api-key"] == API_KEY));

    // "***" stands for nothing in a first install.
    let again = std::fs::read_to_string(edited)
        .unwrap()
        .replace("name = \"billing\"", "name = \"billing-2\"");
    std::fs::write(edited, again).unwrap();
    let refused = tally(
        &[
            &["adapters", "install", edited, "--component", component],
            &host[..],
        ]
        .concat(),
    );
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("secrets.headers.X-Api-Key"), "{stderr}");
}

/// The permission bits of `path`.
fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn the_data_directory_and_every_file_in_it_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let parent = tempfile::tempdir().unwrap();
    let data = parent.path().join("tally-data");
    let data_dir = data.to_str().unwrap();
    create_token(data_dir, "operator");
    assert_eq!(mode(&data), 0o700);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        assert_eq!(mode(&path), 0o600, "{}", path.display());
    }
    if !support::database::on_postgres() {
        assert_eq!(mode(&data.join("tally.db")), 0o600);
    }

    // An older install left everything readable: the next command tightens it.
    let loose = |path: &std::path::Path, bits: u32| {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(bits)).unwrap()
    };
    loose(&data, 0o755);
    std::fs::create_dir(data.join("compiled-adapters")).unwrap();
    loose(&data.join("compiled-adapters"), 0o755);
    std::fs::write(data.join("compiled-adapters/old.cwasm"), b"artifact").unwrap();
    loose(&data.join("compiled-adapters/old.cwasm"), 0o644);
    for entry in std::fs::read_dir(&data).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            loose(&path, 0o644);
        }
    }
    let token = create_token(data_dir, "operator");
    let server = Server::start(&data);
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("compiled-adapters")), 0o700);
    assert_eq!(mode(&data.join("compiled-adapters/old.cwasm")), 0o600);

    // What the running host writes later (a compiled adapter) is private too.
    let component = component_path("chargeback-csv");
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let example = std::fs::read_to_string(root.join("examples/adapters/chargeback.toml")).unwrap();
    let manifest = parent.path().join("chargeback.toml");
    let pinned: Vec<String> = example
        .lines()
        .map(|line| match line.starts_with("sha256 = ") {
            true => format!("sha256 = \"{sha256}\""),
            false => line.to_owned(),
        })
        .collect();
    std::fs::write(&manifest, pinned.join("\n")).unwrap();
    let host = ["--url", server.base.as_str(), "--token", token.trim()];
    tally_ok(
        &[
            &[
                "adapters",
                "install",
                manifest.to_str().unwrap(),
                "--component",
            ],
            &[component.to_str().unwrap()][..],
            &host[..],
        ]
        .concat(),
    );
    let mut files = 0;
    let mut pending = vec![data.clone()];
    while let Some(dir) = pending.pop() {
        assert_eq!(mode(&dir), 0o700, "{}", dir.display());
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else {
                assert_eq!(mode(&path), 0o600, "{}", path.display());
                files += 1;
            }
        }
    }
    assert!(files >= 2, "the old artifact and the new one at least");
}

#[test]
fn database_passwords_never_show_in_messages() {
    // Nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    for url in [
        format!("postgres://tally:hunter2@127.0.0.1:{port}/tally"),
        format!("postgres://tally@127.0.0.1:{port}/tally?password=hunter2&sslmode=disable"),
        format!("postgres://tally:hunter2@127.0.0.1:{port}/tally?sslmode=sometimes"),
    ] {
        let output = tally(&["token", "list", "--database", &url]);
        assert!(!output.status.success());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("***") && !stderr.contains("hunter2"),
            "{stderr}"
        );
    }
}

/// Whether the session of `client` runs over TLS.
async fn over_tls(client: &tokio_postgres::Client) -> bool {
    client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test]
async fn database_connections_use_tls_as_sslmode_says_on_postgres() {
    use tally::store::postgres::connect::Target;
    let server = support::database::postgres_server();
    let with = |server: &str, options: &str| {
        let joint = if server.contains('?') { '&' } else { '?' };
        format!("{server}{joint}{options}")
    };
    let connect = |url: String| async move { Target::parse(&url).unwrap().connect().await };
    let failure = |error: tokio_postgres::Error| format!("{:#}", anyhow::Error::from(error));

    let (client, _connection) = connect(with(&server, "sslmode=disable")).await.unwrap();
    assert!(!over_tls(&client).await);
    let show = |name: &'static str| {
        let client = &client;
        async move {
            client
                .query_one(&format!("SHOW {name}"), &[])
                .await
                .unwrap()
                .get::<_, String>(0)
        }
    };
    if show("ssl").await != "on" {
        // A server without TLS: `require` says so instead of going on in clear.
        let error = connect(with(&server, "sslmode=require"))
            .await
            .err()
            .unwrap();
        assert!(failure(error).contains("does not offer TLS"));
        let (plain, _connection) = connect(server.clone()).await.unwrap();
        assert!(!over_tls(&plain).await, "prefer goes on without TLS");
        return;
    }
    for mode in ["prefer", "require"] {
        let (client, _connection) = connect(with(&server, &format!("sslmode={mode}")))
            .await
            .unwrap();
        assert!(over_tls(&client).await, "{mode}");
    }
    // The server's certificate is self-signed (Debian's snakeoil, for
    // `localhost`): not one the system trusts...
    let error = connect(with(&server, "sslmode=verify-full"))
        .await
        .err()
        .unwrap();
    assert!(failure(error).contains("certificate"));
    // ...but trusted as the root of `sslrootcert`, for the name it is for.
    let root = format!("sslrootcert={}", show("ssl_cert_file").await);
    let (client, _connection) = connect(with(&server, &format!("sslmode=verify-ca&{root}")))
        .await
        .unwrap();
    assert!(over_tls(&client).await);
    let by_name = server.replace("127.0.0.1", "localhost");
    let (client, _connection) = connect(with(&by_name, &format!("sslmode=verify-full&{root}")))
        .await
        .unwrap();
    assert!(over_tls(&client).await);
    let error = connect(with(&server, &format!("sslmode=verify-full&{root}")))
        .await
        .err()
        .unwrap();
    assert!(
        failure(error).contains("certificate"),
        "127.0.0.1 is not the certificate's name"
    );
}

/// `tally serve` with a `tally.toml` holding `config`; returns the server,
/// its `host:port` and an operator token.
fn serve_with_config(dir: &DataDir, config: &str) -> (Server, String, String) {
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let file = dir.path().join("tally.toml");
    std::fs::write(&file, config).unwrap();
    let server = Server::start_with(dir.path(), &["--config", file.to_str().unwrap()]);
    let address = server.base.strip_prefix("http://").unwrap().to_owned();
    (server, address, token.trim().to_owned())
}

/// Everything the host sends on `stream` until it closes the connection;
/// panics if it is still open after `patience`.
fn read_until_closed(stream: &mut std::net::TcpStream, patience: std::time::Duration) -> String {
    use std::io::Read;
    stream.set_read_timeout(Some(patience)).unwrap();
    let mut received = Vec::new();
    match stream.read_to_end(&mut received) {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        Err(e) => panic!(
            "the connection was still open after {patience:?} ({e}); received {:?}",
            String::from_utf8_lossy(&received)
        ),
    }
    String::from_utf8_lossy(&received).into_owned()
}

#[test]
fn half_open_requests_and_stalled_bodies_are_cut_off() {
    use std::io::Write;
    use std::net::TcpStream;
    use std::time::Duration;
    let dir = DataDir::new();
    let (_server, address, token) = serve_with_config(
        &dir,
        "[http]\nheader_read_timeout = '1s'\nidle_timeout = '1s'\n",
    );
    // Far longer than the timeouts: a connection still open by then is held.
    let patience = Duration::from_secs(20);

    // A request head that never ends, and a connection that never speaks.
    let mut half_open = TcpStream::connect(&address).unwrap();
    half_open
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: 1")
        .unwrap();
    let silent = TcpStream::connect(&address).unwrap();
    let answer = read_until_closed(&mut half_open, patience);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    read_until_closed(&mut silent.try_clone().unwrap(), patience);

    // A body that stops arriving: the request is refused and the connection closed.
    let mut stalled = TcpStream::connect(&address).unwrap();
    write!(
        stalled,
        "POST /v1/usage HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n[{{\"eventId\":"
    )
    .unwrap();
    let answer = read_until_closed(&mut stalled, patience);
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    // The host serves on.
    let mut fresh = TcpStream::connect(&address).unwrap();
    fresh
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let answer = read_until_closed(&mut fresh, patience);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

#[test]
fn connections_beyond_the_limit_wait_until_one_frees() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;
    let dir = DataDir::new();
    let (_server, address, _) = serve_with_config(&dir, "[http]\nmax_connections = 2\n");
    let healthz = b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n";
    let answer_of = |stream: &mut TcpStream, patience: Duration| -> Option<String> {
        stream.set_read_timeout(Some(patience)).unwrap();
        let mut buffer = [0u8; 4096];
        match stream.read(&mut buffer) {
            Ok(n) => Some(String::from_utf8_lossy(&buffer[..n]).into_owned()),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                None
            }
            Err(e) => panic!("{e}"),
        }
    };
    // Two kept-alive connections, served: the limit.
    let mut held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let mut stream = TcpStream::connect(&address).unwrap();
            stream.write_all(healthz).unwrap();
            let answer = answer_of(&mut stream, Duration::from_secs(20)).unwrap();
            assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
            stream
        })
        .collect();
    // A third waits unanswered…
    let mut third = TcpStream::connect(&address).unwrap();
    third.write_all(healthz).unwrap();
    assert_eq!(answer_of(&mut third, Duration::from_secs(2)), None);
    // …until one of the two closes.
    drop(held.remove(0));
    let answer = answer_of(&mut third, Duration::from_secs(20)).expect("served once a slot freed");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}

/// `tally serve` on an unspecified address knows none of its names: it says
/// at start what to set, and says nothing once `--public-url` is given.
#[test]
fn serving_on_an_unspecified_address_warns_what_to_set() {
    use std::io::{BufRead, BufReader, Read};
    use std::process::{Command, Stdio};
    for public_url in [None, Some("https://usage.example")] {
        let dir = DataDir::new();
        let mut command = Command::new(env!("CARGO_BIN_EXE_tally"));
        command
            .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
            .arg(dir.path())
            .args(support::database::database_args(dir.path()))
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(url) = public_url {
            command.args(["--public-url", url]);
        }
        let mut child = command.spawn().expect("tally serve starts");
        // The address line comes after the warning.
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.starts_with("tally listening on "), "{line}");
        child.kill().unwrap();
        child.wait().unwrap();
        let mut stderr = String::new();
        child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        let warned = stderr.contains("public_url") && stderr.contains("[http] allowed_hosts");
        assert_eq!(warned, public_url.is_none(), "{stderr}");
    }
}

#[tokio::test]
async fn next_links_answer_only_to_the_host_s_own_names() {
    let dir = DataDir::new();
    let (server, address, token) =
        serve_with_config(&dir, "[http]\nallowed_hosts = ['usage.internal:8080']\n");
    let uri = usage_uri(
        "sub-a",
        "2026-10-01T00:00:00Z",
        "2026-10-02T00:00:00Z",
        "Daily",
    );
    let client = reqwest::Client::new();
    // A one-page answer carries no link, so any Host gets it; a longer
    // answer to another Host is refused (tests/usage_api.rs, in process).
    for host in [address.as_str(), "usage.internal:8080", "attacker.example"] {
        let response = client
            .get(format!("{}{uri}", server.base))
            .header("host", host)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200, "Host: {host}");
        let page: serde_json::Value = response.json().await.unwrap();
        assert!(page.get("nextLink").is_none(), "Host: {host}: {page}");
    }
}

#[tokio::test]
async fn adapter_text_is_escaped_and_documents_cannot_script_the_host() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let server = Server::start(dir.path());
    let host = ["--url", server.base.as_str(), "--token", token.trim()];
    let run = |args: &[&str]| tally(&[args, &host[..]].concat());

    let component = component_path("hostile");
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let yesterday = chrono::Utc::now().date_naive() - chrono::Days::new(1);
    let today = yesterday + chrono::Days::new(1);
    for (name, attack) in [("escapes", "terminal-escapes"), ("page", "html-document")] {
        let manifest = dir.path().join(format!("{name}.toml"));
        std::fs::write(
            &manifest,
            format!(
                "name = '{name}'\nversion = '0.1.0'\nworld = 'tally:billing@{}'\nsha256 = '{sha256}'\n\
                 [schedule]\nwindow = 'daily'\nlag = '0s'\nstart = '{today}T00:00:00Z'\n[config]\nattack = '{attack}'\n",
                world_of(&wasm)
            ),
        )
        .unwrap();
        let installed = run(&[
            "adapters",
            "install",
            manifest.to_str().unwrap(),
            "--component",
            component.to_str().unwrap(),
        ]);
        assert!(
            installed.status.success(),
            "{}",
            String::from_utf8_lossy(&installed.stderr)
        );
        let exported = run(&[
            "export",
            "run",
            name,
            "--from",
            &yesterday.to_string(),
            "--to",
            &today.to_string(),
        ]);
        assert_eq!(exported.status.success(), name == "page", "{exported:?}");
    }

    // The failure reason, as `tally adapters runs` prints it, and nothing raw anywhere.
    let runs = run(&["adapters", "runs", "escapes"]);
    let stdout = String::from_utf8_lossy(&runs.stdout);
    assert!(stdout.contains(r"\u{1b}[2J\u{1b}]0;owned\u{7}"), "{stdout}");
    assert!(
        !stdout.lines().any(|l| l.starts_with("forged row")),
        "{stdout}"
    );
    let listed = run(&["adapters", "list"]);
    let attack = dir.path().join("attack.json");
    std::fs::write(&attack, r#"{"attack": "terminal-escapes"}"#).unwrap();
    let usage = dir.path().join("usage.ndjson");
    let record = record(
        "sub-a",
        "e1",
        VM_METER,
        1.0,
        "2026-10-01T00:00:00Z",
        "2026-10-01T01:00:00Z",
    );
    std::fs::write(&usage, format!("{record}\n")).unwrap();
    let (component, attack, usage) = (
        component.to_str().unwrap(),
        attack.to_str().unwrap(),
        usage.to_str().unwrap(),
    );
    let out = dir.path().join("out");
    let tested = tally(&[
        "adapter",
        "test",
        component,
        "--config",
        attack,
        "--usage",
        usage,
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(!tested.status.success());
    for output in [&runs, &listed, &tested] {
        for text in [&output.stdout, &output.stderr] {
            let text = String::from_utf8_lossy(text);
            assert!(!text.contains(['\u{1b}', '\u{7}', '\r']), "{text:?}");
        }
    }
    assert!(
        String::from_utf8_lossy(&tested.stderr).contains(r"\u{1b}[31mscreen cleared"),
        "{}",
        String::from_utf8_lossy(&tested.stderr)
    );

    // Documents: a page is an attachment, a CSV inline; neither runs a script.
    let client = reqwest::Client::new();
    let runs = process::get_json(
        &client,
        &format!("{}/v1/adapters/page/runs", server.base),
        token.trim(),
    )
    .await;
    let run_url = format!("{}{}", server.base, runs[0]["url"].as_str().unwrap());
    for (document, disposition) in [("page.html", "attachment"), ("table.csv", "inline")] {
        let served = client
            .get(format!("{run_url}/documents/{document}"))
            .bearer_auth(token.trim())
            .send()
            .await
            .unwrap();
        assert_eq!(served.status(), 200, "{document}");
        let header = |name: &str| served.headers()[name].to_str().unwrap().to_owned();
        assert!(
            header("content-disposition")
                .starts_with(&format!("{disposition}; filename=\"{document}\"")),
            "{document}: {}",
            header("content-disposition")
        );
        assert_eq!(header("content-security-policy"), "sandbox", "{document}");
        assert_eq!(header("x-content-type-options"), "nosniff", "{document}");
    }
}
