//! Start-up: a host whose compiled adapters were lost (a new machine, a
//! cleared cache) answers requests at once while it compiles them again,
//! and says when every installed adapter is ready.

use crate::support;

use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use support::process::{Server, create_token, tally_ok};

/// A JavaScript adapter (QuickJS: seconds to compile) and a Rust one.
const ADAPTERS: &[(&str, &str, &str)] = &[
    ("chargeback-js", "chargeback-js.wasm", "chargeback.toml"),
    ("statement", "statement.wasm", "statement.toml"),
];

#[tokio::test]
async fn a_host_answers_while_it_compiles_its_adapters_and_says_when_they_are_ready() {
    let data = tempfile::tempdir().unwrap();
    let data_dir = data.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let token = token.trim();
    {
        let mut host = Server::start(data.path());
        for (name, component, manifest) in ADAPTERS {
            install(&host.base, token, name, component, manifest);
        }
        host.terminate();
    }
    let compiled = data.path().join("compiled-adapters");
    assert!(compiled.read_dir().unwrap().next().is_some());
    std::fs::remove_dir_all(&compiled).unwrap();

    let host = Server::start(data.path());
    let usage = format!(
        "{}/subscriptions/any/providers/Microsoft.Commerce/UsageAggregates\
         ?api-version=2015-06-01-preview&reportedStartTime=2026-01-01T00:00:00Z\
         &reportedEndTime=2026-01-02T00:00:00Z",
        host.base
    );
    let client = reqwest::Client::new();
    let answer = client.get(&usage).bearer_auth(token).send().await.unwrap();
    assert_eq!(answer.status(), 200);
    let health = client.get(format!("{}/healthz", host.base)).send().await;
    assert_eq!(health.unwrap().status(), 200);
    // Answered before the compiles ended: the log has not said so yet.
    assert!(
        !host.log().contains("installed adapters loaded"),
        "{}",
        host.log()
    );
    let asked = Instant::now();
    let ready = loop {
        if let Some(line) = host
            .log()
            .lines()
            .find(|line| line.contains("installed adapters loaded"))
        {
            break line.to_owned();
        }
        assert!(
            asked.elapsed() < Duration::from_secs(300),
            "the adapters never loaded:\n{}",
            host.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        ready.contains("loaded=2") && ready.contains("failed=0"),
        "{ready}"
    );
    // Compiled again into the cache, for the next start.
    assert_eq!(compiled.read_dir().unwrap().count(), ADAPTERS.len());
}

/// Installs the example manifest `manifest` as `name` with `component`, pinned.
fn install(base: &str, token: &str, name: &str, component: &str, manifest: &str) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let component = root.join("target/adapters").join(component);
    let wasm = std::fs::read(&component).expect("the example adapters are built");
    let sha256: String = Sha256::digest(&wasm)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let template = std::fs::read_to_string(root.join("examples/adapters").join(manifest)).unwrap();
    let manifest: Vec<String> = template
        .lines()
        .map(|line| match line.split(" =").next() {
            Some("name") => format!("name = \"{name}\""),
            Some("sha256") => format!("sha256 = \"{sha256}\""),
            Some("component") => format!("component = \"{}\"", component.display()),
            _ => line.to_owned(),
        })
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("manifest.toml");
    std::fs::write(&path, manifest.join("\n")).unwrap();
    tally_ok(&[
        "adapters",
        "install",
        path.to_str().unwrap(),
        "--url",
        base,
        "--token",
        token,
    ]);
}
