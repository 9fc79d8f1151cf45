//! The chargeback twins against the Rust `chargeback-csv` they mirror: each
//! of [`TWINS`] (Python, JavaScript, C, Go), run by `tally adapter test` in the
//! host's sandbox, writes the very bytes of `chargeback.csv` — daily and
//! hourly, with non-ASCII names, exact rounding ties, huge quantities,
//! negative zero and CSV quoting in the data — and, with `per_subscription`,
//! the same documents per subscription; logs the same lines; fails an
//! off-boundary window alike; and refuses the same configs with the same
//! reasons, word for word.
//!
//! Needs the components (`adapters/build.sh`, which `tests/run.sh` runs);
//! fails, not skips, without them. Compiled components are cached
//! (`~/.cache/tally/adapters`) as for any `tally adapter test`.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Output;

use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use support::process::tally;
use support::*;
use tally_usage_generator::{Options, meters};

/// The adapter the twins mirror.
const RUST: &str = "chargeback-csv";

/// The twins, by component name in `target/adapters`.
const TWINS: [&str; 4] = [
    "chargeback-py",
    "chargeback-js",
    "chargeback-c",
    "chargeback-go",
];

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Writes wire records as NDJSON; returns the file and the window of whole
/// days holding every reported time.
fn write_usage(dir: &Path, records: &[Value]) -> (PathBuf, (String, String)) {
    let path = dir.join("usage.ndjson");
    let text: String = records.iter().map(|r| format!("{r}\n")).collect();
    std::fs::write(&path, text).unwrap();
    let reported: Vec<DateTime<Utc>> = records.iter().map(reported_at).collect();
    let day = |t: &DateTime<Utc>| t.date_naive().and_hms_opt(0, 0, 0).unwrap().and_utc();
    let from = day(reported.iter().min().unwrap());
    let to = day(reported.iter().max().unwrap()) + Duration::days(1);
    (path, (from.to_rfc3339(), to.to_rfc3339()))
}

/// `tally adapter test` of a component of `target/adapters`.
fn adapter_test(
    name: &str,
    config: &Path,
    usage: &Path,
    window: Option<(&str, &str)>,
    granularity: &str,
    out: &Path,
) -> Output {
    let component = component_path(name);
    let mut args = vec![
        "adapter",
        "test",
        component.to_str().unwrap(),
        "--config",
        config.to_str().unwrap(),
        "--usage",
        usage.to_str().unwrap(),
        "--granularity",
        granularity,
        "--out",
        out.to_str().unwrap(),
    ];
    if let Some((from, to)) = window {
        args.extend(["--from", from, "--to", to]);
    }
    tally(&args)
}

/// The report of a successful `tally adapter test`.
fn run_ok(
    name: &str,
    config: &Path,
    usage: &Path,
    window: (&str, &str),
    granularity: &str,
    out: &Path,
) -> String {
    let run = adapter_test(name, config, usage, Some(window), granularity, out);
    let stdout = String::from_utf8_lossy(&run.stdout).into_owned();
    assert!(
        run.status.success(),
        "{name} failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&run.stderr)
    );
    stdout
}

/// The report's lines that start with `prefix` (the adapter's log is `  [`).
fn lines_of<'a>(report: &'a str, prefix: &str) -> Vec<&'a str> {
    report.lines().filter(|l| l.starts_with(prefix)).collect()
}

/// The last line of a failed run's stderr.
fn reason(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr);
    stderr.lines().last().unwrap_or_default().to_string()
}

/// A reason without serde's position (`at line 1 column 42`).
fn without_position(reason: &str) -> &str {
    match reason.rfind(" at line ") {
        Some(at) if reason[at..].contains(" column ") => &reason[..at],
        _ => reason,
    }
}

/// The twins whose refusals give serde_json's position too.
const WITH_POSITIONS: [&str; 1] = ["chargeback-c"];

/// The twins that word a float in a refusal as serde_json does (`1e+20`,
/// `-7.5e-9`); the Python and JavaScript twins print it positionally.
const SERDE_FLOATS: [&str; 2] = ["chargeback-c", "chargeback-go"];

/// Asserts that `twin` refused `config` as `RUST` did: word for word, serde's
/// position included for the twins that give it.
fn assert_same_reason(twin: &str, config: &str, expected: &str, got: &str) {
    if WITH_POSITIONS.contains(&twin) {
        assert_eq!(got, expected, "{twin}, {config}");
    } else {
        assert_eq!(got, without_position(expected), "{twin}, {config}");
    }
}

/// The documents a `tally adapter test` wrote to `out`: name → bytes.
/// (Documents never start with `.`: those are `tally adapter test`'s own files.)
fn documents_in(out: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(out)
        .unwrap()
        .map(|entry| {
            let entry = entry.unwrap();
            let name = entry.file_name().into_string().unwrap();
            (name, entry.path())
        })
        .filter(|(name, _)| !name.starts_with('.'))
        .map(|(name, path)| (name, std::fs::read(path).unwrap()))
        .collect()
}

/// The name a per-subscription document gets for an id that is not a
/// document name: the first 16 hex digits of its SHA-256.
fn digest_name(prefix: &str, subscription: &str, suffix: &str) -> String {
    let hex: String = Sha256::digest(subscription.as_bytes())[..8]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("{prefix}{hex}{suffix}")
}

/// Panics, showing the first line that differs, unless `twin` wrote the
/// bytes `rust` did.
fn assert_same_bytes(what: &str, twin_name: &str, rust: &[u8], twin: &[u8]) {
    if twin == rust {
        return;
    }
    let (rust, twin) = (String::from_utf8_lossy(rust), String::from_utf8_lossy(twin));
    let line = rust.lines().zip(twin.lines()).position(|(a, b)| a != b);
    panic!(
        "{what}: {twin_name} differs from {RUST} (line {line:?}; {} and {} lines)\nrust: {:?}\ntwin: {:?}",
        rust.lines().count(),
        twin.lines().count(),
        line.and_then(|l| rust.lines().nth(l)),
        line.and_then(|l| twin.lines().nth(l)),
    );
}

// --- the data ------------------------------------------------------------------

/// Usage that stresses what must stay byte-identical: groups and a
/// subscription to quote (a comma, quotes, CR, LF), non-ASCII groups around
/// ASCII ones, a tag value `unallocated` meeting untagged resources, a tag
/// key in another case, a meter id in lower case, quantities that round on
/// a tie or to zero, a large one and a negative zero. All reported on 2026-10-31.
fn edge_records() -> Vec<Value> {
    let vm = VM_METER.to_ascii_lowercase();
    let edge = "edge-subscription";
    let cases: [(&str, &str, Value, &str, f64); 14] = [
        (
            "r-and-d",
            edge,
            json!({"cost-center": "R&D, \"Labs\""}),
            &vm,
            3.0,
        ),
        (
            "lf",
            edge,
            json!({"cost-center": "two\nlines"}),
            IP_METER,
            0.0000025,
        ),
        (
            "cr",
            edge,
            json!({"cost-center": "a\rb"}),
            VM_METER,
            0.0078125,
        ),
        (
            "snow",
            edge,
            json!({"cost-center": "Ünïcode ☃"}),
            VM_METER,
            123456789.1234565,
        ),
        (
            "eclair",
            edge,
            json!({"cost-center": "éclair"}),
            VM_METER,
            1.0000005,
        ),
        ("zulu", edge, json!({"cost-center": "zulu"}), VM_METER, 1e-7),
        ("upper", edge, json!({"cost-center": "Zulu"}), VM_METER, 2.5),
        (
            "named",
            edge,
            json!({"cost-center": "unallocated"}),
            VM_METER,
            0.5,
        ),
        ("untagged", edge, json!({}), VM_METER, 0.25),
        (
            "key-case",
            edge,
            json!({"Cost-Center": "ignored"}),
            VM_METER,
            0.125,
        ),
        (
            "ip",
            edge,
            json!({"team": "x", "cost-center": "net"}),
            IP_METER,
            7.0,
        ),
        ("ip-too", edge, json!({"cost-center": "net"}), IP_METER, 0.1),
        (
            "quoted",
            "edge, \"quoted\"",
            json!({"cost-center": "net"}),
            VM_METER,
            1.5,
        ),
        (
            "negative",
            edge,
            json!({"cost-center": "net"}),
            IP_METER,
            -0.0,
        ),
    ];
    cases
        .into_iter()
        .enumerate()
        .map(|(i, (name, subscription, tags, meter, quantity))| {
            let start = Utc.with_ymd_and_hms(2026, 10, 31, i as u32, 0, 0).unwrap();
            let mut r = record(
                subscription,
                &format!("edge-{name}"),
                meter,
                quantity,
                &start.to_rfc3339(),
                &(start + Duration::hours(1)).to_rfc3339(),
            );
            r["resourceUri"] = json!(format!("/edge/{name}"));
            r["tags"] = tags;
            reported(r, "2026-10-31T23:00:00Z")
        })
        .collect()
}

/// A reported-time window that cuts the sample of [`tricky_usage`] on both sides.
const TRICKY_WINDOW: (&str, &str) = ("2026-10-28T00:00:00Z", "2026-11-01T00:00:00Z");

/// Usage records made to trip a naive port: group names that JavaScript and
/// Rust sort differently, that need quoting or look like the fallback
/// group, an odd subscription id, quantities whose cost is an exact rounding
/// tie or as large as ingest accepts, and usage spread over hours.
fn tricky_records() -> Vec<Value> {
    /// (subscription, cost-center, meter, quantity, usage start and end)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        f64,
        (&'static str, &'static str),
    );
    let hour = ("2026-10-29T10:00:00Z", "2026-10-29T11:00:00Z");
    let mut cases: Vec<Case> = [
        ("\u{1f4b6} euro notes", meters::STATIC_IP, 0.015625), // cost 0.0078125: a tie
        ("\u{ff41} fullwidth", meters::STATIC_IP, 1.0),
        ("Zürich", meters::BASE_VM, 0.0078125),
        ("a,b \"quoted\"\nline", meters::BASE_VM, 1e15), // the largest quantity accepted
        ("unallocated", meters::DISK_S10, 3.0),
        ("e\u{301}", meters::DISK_S10, 2.5),
        ("\u{e9}", meters::DISK_S10, 1e-7),
    ]
    .into_iter()
    .map(|(group, meter, quantity)| ("sub-edge", group, meter, quantity, hour))
    .collect();
    let hours = ("2026-10-29T09:00:00Z", "2026-10-29T12:20:00Z");
    cases.push((
        "søb,\"x\"",
        "finance",
        meters::BLOCK_BLOB_CAPACITY,
        1.0,
        hours,
    ));
    cases.push(("\u{1f4b6}-sub", "finance", meters::APP_SERVICE, 0.1, hour));
    cases
        .into_iter()
        .enumerate()
        .map(
            |(i, (subscription, group, meter, quantity, (start, end)))| {
                let event = format!("tricky-{i}");
                let mut r = record(subscription, &event, meter, quantity, start, end);
                r["tags"] = json!({"cost-center": group, "env": "prod"});
                reported(r, "2026-10-29T20:00:00Z")
            },
        )
        .collect()
}

/// The generator's sample over `subscriptions` and 5 days, and the tricky records.
fn tricky_usage(dir: &Path, subscriptions: usize) -> PathBuf {
    let mut records = to_wire(&sample(&Options {
        subscriptions,
        days: 5,
        ..Options::default()
    }));
    records.extend(tricky_records());
    write_usage(dir, &records).0
}

/// A rate card with a negative zero, a tie (0.015625 × 0.5 = 0.0078125
/// exactly), an id in another case than the catalog's, and unrated meters.
fn tricky_config() -> Value {
    json!({
        "currency": "EUR",
        "group_by_tag": "cost-center",
        "rates": {
            meters::BASE_VM.to_ascii_lowercase(): 0.025,
            meters::WINDOWS_VM: 0.04,
            meters::DISK_S10: -0.0,
            meters::STATIC_IP: 0.5,
            meters::BLOCK_BLOB_CAPACITY: 0.00003,
            meters::APP_SERVICE: 0.05,
        }
    })
}

// --- chargeback.csv ------------------------------------------------------------

#[test]
fn each_twin_writes_the_rust_adapters_bytes_on_the_edge_records() {
    let dir = tempfile::tempdir().unwrap();
    // Three and a half days across a month's end, and the edge cases.
    let mut records = to_wire(&sample(&Options {
        subscriptions: 6,
        days: 3,
        end: Utc.with_ymd_and_hms(2026, 11, 2, 12, 0, 0).unwrap(),
        ..Options::default()
    }));
    records.extend(edge_records());
    let (usage, window) = write_usage(dir.path(), &records);
    let window = (window.0.as_str(), window.1.as_str());

    // The example rate card, and one with a tie (0.0078125), a negative
    // zero and meters left out (exported at 0 and named in the log).
    let example = root().join("examples/adapters/chargeback.toml");
    let edges = dir.path().join("edges.json");
    std::fs::write(
        &edges,
        json!({
            "currency": "USD",
            "group_by_tag": "cost-center",
            "rates": {
                VM_METER.to_ascii_lowercase(): 0.0078125,
                "9CD92D4C-BAFD-4492-B278-BEDC2DE8232A": -0.0,
                "e5572fce-9f58-49d7-840c-b168c0f01fff": 1,
            },
        })
        .to_string(),
    )
    .unwrap();

    for (config, what) in [(&example, "example"), (&edges, "edges")] {
        for granularity in ["daily", "hourly"] {
            let out = |name: &str| dir.path().join(format!("{what}-{granularity}-{name}"));
            let rust = run_ok(RUST, config, &usage, window, granularity, &out(RUST));
            let expected = std::fs::read(out(RUST).join("chargeback.csv")).unwrap();
            let rows = expected.iter().filter(|b| **b == b'\n').count() - 1;
            assert!(rows > 100, "{what}, {granularity}: {rows} rows");
            println!("{what}, {granularity}: {rows} rows");
            println!("  {RUST:<14} {}", lines_of(&rust, "figures:")[0]);
            for twin in TWINS {
                let report = run_ok(twin, config, &usage, window, granularity, &out(twin));
                assert!(
                    report.contains(&format!("adapter {twin} 0.1.0")),
                    "{report}"
                );
                let got = std::fs::read(out(twin).join("chargeback.csv")).unwrap();
                assert_same_bytes(&format!("{what}, {granularity}"), twin, &expected, &got);
                assert_eq!(
                    lines_of(&report, "  ["),
                    lines_of(&rust, "  ["),
                    "{twin}: the logs"
                );
                assert_eq!(lines_of(&report, "ok:"), lines_of(&rust, "ok:"), "{twin}");
                println!("  {twin:<14} {}", lines_of(&report, "figures:")[0]);
            }
            if what == "edges" {
                let log = lines_of(&rust, "  [").join("\n");
                assert!(
                    log.contains(&format!(
                        "[warn] meter {IP_METER} has no rate in the rate card; exported at 0"
                    )),
                    "{log}"
                );
            }
        }
    }

    // The edge cases were exercised: quoting, the tie rounded to even, the
    // negative zero, a meter without a rate.
    let csv = std::fs::read_to_string(
        dir.path()
            .join(format!("edges-daily-{RUST}/chargeback.csv")),
    )
    .unwrap();
    for expected in [
        "\"R&D, \"\"Labs\"\"\"",
        "\"two\nlines\"",
        "\"a\rb\"",
        ",\"edge, \"\"quoted\"\"\",",
        ",Ünïcode ☃,",
        ",3.000000,0.007812,0.023438,USD\n",
        ",-0.000000,-0.000000,USD\n",
        ",zulu,edge-subscription,FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5,Base VM Size Hours,Virtual core hours,0.000000,0.007812,0.000000,USD\n",
    ] {
        assert!(csv.contains(expected), "{expected:?} in\n{csv}");
    }

    // A window off the day's boundaries fails them all alike (transient, retried).
    let off = ("2026-10-31T00:30:00Z", window.1);
    let fail = |name: &str| {
        let run = adapter_test(
            name,
            &example,
            &usage,
            Some(off),
            "daily",
            &dir.path().join("off"),
        );
        assert!(!run.status.success(), "{name} ran an off-boundary window");
        reason(&run)
    };
    let expected = fail(RUST);
    assert!(
        expected.contains("QueryError::InvalidWindow("),
        "{expected}"
    );
    for twin in TWINS {
        let reason = fail(twin);
        // chargeback-js words the query's refusal its own way
        // (`invalid-window: …`): the host's reason and the retry are the same.
        if twin == "chargeback-js" {
            assert!(
                reason.starts_with("error: transient failure (will be retried): ")
                    && reason.contains("is empty or not on Daily boundaries"),
                "{twin}: {reason}"
            );
        } else {
            assert_eq!(reason, expected, "{twin}");
        }
    }
}

#[test]
fn each_twin_writes_the_rust_adapters_bytes_on_the_tricky_records() {
    let dir = tempfile::tempdir().unwrap();
    let usage = tricky_usage(dir.path(), 3);
    let config = dir.path().join("chargeback.json");
    std::fs::write(&config, tricky_config().to_string()).unwrap();

    for granularity in ["daily", "hourly"] {
        let run = |name: &str| {
            let out = dir.path().join(format!("{name}-{granularity}"));
            let report = run_ok(name, &config, &usage, TRICKY_WINDOW, granularity, &out);
            (std::fs::read(out.join("chargeback.csv")).unwrap(), report)
        };
        let (rust, rust_report) = run(RUST);
        for twin in TWINS {
            let (bytes, report) = run(twin);
            assert_same_bytes(granularity, twin, &rust, &bytes);
            assert_eq!(
                lines_of(&report, "  ["),
                lines_of(&rust_report, "  ["),
                "{twin}: the same log"
            );
        }
        // The data did reach the cases that matter.
        let csv = String::from_utf8(rust).unwrap();
        for needle in [
            ",0.015625,0.500000,0.007812,EUR\n", // an exact tie, to even (toFixed: 0.007813)
            ",1000000000000000.000000,0.025000,", // the largest quantity, in full
            ",-0.000000,-0.000000,EUR\n",
            "\"a,b \"\"quoted\"\"\nline\"",
            "\"søb,\"\"x\"\"\"",
        ] {
            assert!(
                csv.contains(needle),
                "{granularity}: no {needle:?} in\n{csv}"
            );
        }
        // Rust's byte order, which JavaScript's `<` does not give.
        let fullwidth = csv.find("\u{ff41} fullwidth").unwrap();
        let banknotes = csv.find("\u{1f4b6} euro notes").unwrap();
        assert!(
            fullwidth < banknotes,
            "U+FF41 sorts before U+1F4B6 in UTF-8"
        );
        assert!(csv.lines().count() > 100, "{csv}");
    }
}

// --- per-subscription documents ------------------------------------------------

/// Runs `RUST` and every twin with `config` on `usage`, daily and hourly,
/// asserts that each twin wrote the same documents with the same bytes (and
/// logged the same lines), and hands the Rust documents to `check`.
fn assert_same_documents(
    dir: &Path,
    usage: &Path,
    window: (&str, &str),
    config: &Path,
    check: impl Fn(&str, &BTreeMap<String, Vec<u8>>),
) {
    for granularity in ["daily", "hourly"] {
        let out = |name: &str| dir.join(format!("{granularity}-{name}"));
        let rust = run_ok(RUST, config, usage, window, granularity, &out(RUST));
        let expected = documents_in(&out(RUST));
        for twin in TWINS {
            let report = run_ok(twin, config, usage, window, granularity, &out(twin));
            assert_eq!(
                lines_of(&report, "  ["),
                lines_of(&rust, "  ["),
                "{twin}: the logs"
            );
            let got = documents_in(&out(twin));
            assert_eq!(
                got.keys().collect::<Vec<_>>(),
                expected.keys().collect::<Vec<_>>(),
                "{twin}, {granularity}: the same documents"
            );
            for (name, bytes) in &expected {
                assert_same_bytes(&format!("{granularity}, {name}"), twin, bytes, &got[name]);
            }
        }
        check(granularity, &expected);
        println!(
            "{granularity}: {} documents, identical in {}",
            expected.len(),
            TWINS.join(", ")
        );
    }
}

#[test]
fn each_twin_writes_the_rust_adapters_per_subscription_documents() {
    let dir = tempfile::tempdir().unwrap();
    let mut records = to_wire(&sample(&Options {
        subscriptions: 3,
        days: 2,
        end: Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(),
        ..Options::default()
    }));
    records.extend(edge_records());
    let (usage, window) = write_usage(dir.path(), &records);
    let config = dir.path().join("per-subscription.json");
    std::fs::write(
        &config,
        json!({
            "currency": "EUR",
            "group_by_tag": "cost-center",
            "per_subscription": true,
            "rates": {VM_METER.to_ascii_lowercase(): 0.0078125, IP_METER: 0.005},
        })
        .to_string(),
    )
    .unwrap();

    let window = (window.0.as_str(), window.1.as_str());
    assert_same_documents(
        dir.path(),
        &usage,
        window,
        &config,
        |granularity, expected| {
            // One document per subscription, named by its id or, for an id that
            // is no name, its digest; together they hold chargeback.csv's rows.
            let whole = String::from_utf8(expected["chargeback.csv"].clone()).unwrap();
            let mut reader = csv::Reader::from_reader(whole.as_bytes());
            let subscriptions: BTreeSet<String> = reader
                .records()
                .map(|row| row.unwrap()[2].to_string())
                .collect();
            assert_eq!(
                expected.len(),
                subscriptions.len() + 1,
                "{granularity}: {:?}",
                expected.keys()
            );
            assert!(expected.contains_key("chargeback-edge-subscription.csv"));
            assert!(expected.contains_key(&digest_name("chargeback-", "edge, \"quoted\"", ".csv")));
            let header = whole.lines().next().unwrap();
            let mut rows = 0;
            for (name, bytes) in expected.iter().filter(|(n, _)| *n != "chargeback.csv") {
                let text = String::from_utf8(bytes.clone()).unwrap();
                assert_eq!(text.lines().next(), Some(header), "{name}");
                rows += text.lines().count() - 1;
            }
            assert_eq!(
                rows,
                whole.lines().count() - 1,
                "every row in one subscription's document"
            );
        },
    );
}

#[test]
fn each_twin_writes_the_rust_adapters_per_subscription_documents_on_the_tricky_records() {
    let dir = tempfile::tempdir().unwrap();
    let usage = tricky_usage(dir.path(), 2);
    let mut config = tricky_config();
    config["per_subscription"] = json!(true);
    let config_path = dir.path().join("chargeback.json");
    std::fs::write(&config_path, config.to_string()).unwrap();

    assert_same_documents(
        dir.path(),
        &usage,
        TRICKY_WINDOW,
        &config_path,
        |_, rust| {
            // Named by the id, or by its digest for ids that are no names
            // (a comma and quotes; a character outside ASCII).
            for name in [
                "chargeback-sub-edge.csv".to_string(),
                digest_name("chargeback-", "s\u{f8}b,\"x\"", ".csv"),
                digest_name("chargeback-", "\u{1f4b6}-sub", ".csv"),
            ] {
                assert!(rust.contains_key(&name), "{name} in {:?}", rust.keys());
            }
            let edge = String::from_utf8(rust["chargeback-sub-edge.csv"].clone()).unwrap();
            assert!(edge.contains(",0.015625,0.500000,0.007812,EUR\n"), "{edge}");
            let mut reader = csv::Reader::from_reader(edge.as_bytes());
            assert!(
                reader.records().all(|row| &row.unwrap()[2] == "sub-edge"),
                "only its own rows: {edge}"
            );
        },
    );
}

// --- configs -------------------------------------------------------------------

#[test]
fn each_twin_refuses_configs_with_the_rust_adapters_reasons() {
    let dir = tempfile::tempdir().unwrap();
    let usage = dir.path().join("usage.ndjson");
    let records = sample(&Options {
        subscriptions: 1,
        days: 1,
        ..Options::default()
    });
    std::fs::write(&usage, serde_json::to_string(&records[0]).unwrap()).unwrap();
    let refuse = |name: &str, config: &str| {
        let file = dir.path().join("config.json");
        std::fs::write(&file, config).unwrap();
        let run = adapter_test(name, &file, &usage, None, "daily", &dir.path().join("out"));
        assert!(!run.status.success(), "{name} accepted {config}");
        reason(&run)
    };

    // The reasons of chargeback-csv, word for word.
    for (config, reason) in [
        (
            r#"{"currency":"EURO","group_by_tag":"cc","rates":{}}"#,
            "currency 'EURO' is not an ISO 4217 code",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":" \t","rates":{}}"#,
            "group_by_tag must not be empty",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":-0.5}}"#,
            "the rate of meter 'm' must be a non-negative number, not -0.5",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":-1e-7}}"#,
            "the rate of meter 'm' must be a non-negative number, not -0.0000001",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"tax":0.2}"#,
            "unknown field `tax`, expected one of `currency`, `group_by_tag`, `rates`",
        ),
        (
            r#"{"currency":"EUR","rates":{}}"#,
            "missing field `group_by_tag`",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"m":"cheap"}}"#,
            "invalid type: string \"cheap\", expected f64",
        ),
        (
            r#"{"currency":7,"group_by_tag":"cc","rates":{}}"#,
            "invalid type: integer `7`, expected a string",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":[1]}"#,
            "invalid type: sequence, expected a map",
        ),
        (
            r#""EUR""#,
            "invalid type: string \"EUR\", expected struct Config",
        ),
        (
            r#"{"currency":"EUR","group_by_tag":"cc","rates":{"ab":1,"AB":2}}"#,
            "the rate card names meter 'AB' twice ('AB' and 'ab'; ids ignore case)",
        ),
    ] {
        let expected = refuse(RUST, config);
        assert!(expected.contains(reason), "{RUST}, {config}: {expected}");
        for twin in TWINS {
            assert_same_reason(twin, config, &expected, &refuse(twin, config));
        }
    }

    // More shapes serde words its own way, and negative rates printed as
    // Rust's `{}` (shortest digits, never an exponent) at the extremes.
    let base = r#""currency":"EUR","group_by_tag":"cc""#;
    let mut configs: Vec<String> = [
        r#"{"currency":"EUR","group_by_tag":" \t\u3000","rates":{}}"#,
        r#"{"currency":null,"group_by_tag":"cc","rates":{}}"#,
        r#"{"currency":"EUR","group_by_tag":"cc","rates":{},"per_subscription":1}"#,
        r#"{"currency":"EUR","currency":"USD"}"#,
        "{\"currency\":\"EUR\",\n\"group_by_tag\":\n\"cc\",\n\"rates\":{\"m\":true}}",
    ]
    .map(String::from)
    .into();
    for rate in [
        "-1",
        "-123456789.1234565",
        "-5e-324",
        "-1e21",
        "-1.7976931348623157e308",
    ] {
        configs.push(format!(r#"{{{base},"rates":{{"m":0.5,"n":{rate}}}}}"#));
    }
    let floats = [
        r#"{"currency":-7.5e-9,"group_by_tag":"cc","rates":{}}"#,
        r#"{"currency":1e20,"group_by_tag":"cc","rates":{}}"#,
    ];
    for config in configs.iter().map(String::as_str).chain(floats) {
        let expected = refuse(RUST, config);
        assert!(
            expected.starts_with("error: the adapter refused its configuration: config: "),
            "{RUST}, {config}: {expected}"
        );
        for twin in TWINS {
            if floats.contains(&config) && !SERDE_FLOATS.contains(&twin) {
                continue;
            }
            assert_same_reason(twin, config, &expected, &refuse(twin, config));
        }
    }
    let tiny = format!(r#"{{{base},"rates":{{"m":0.5,"n":-1e-7}}}}"#);
    for twin in TWINS {
        let negative = refuse(twin, &tiny);
        assert!(
            without_position(&negative)
                .ends_with("'n' must be a non-negative number, not -0.0000001"),
            "{twin}: {negative}"
        );
    }
}
