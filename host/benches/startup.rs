//! Start-up: how long from `tally serve` to the first answered request, and
//! to every installed adapter being ready, with ten installed adapters whose
//! compiled artifacts are cached, and after the cache was cleared.
//!
//! The baseline is the same host with no adapter installed, started in the
//! same run. While the adapters compile after a clean cache, a client asks
//! the usage API every 20 ms and the slowest answer is reported: the host
//! serves while it compiles.
//!
//! Needs the example adapters (`adapters/build.sh`). Run:
//! `cargo bench -p tally --bench startup` (`-- --rounds N`, default 3).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use tally::auth::{Role, new_secret, secret_digest};
use tally::store::sqlite::SqliteStore;
use tally::store::{NewToken, Store};

/// The installed adapters: (installation name, component file, manifest to
/// take the rest from). Ten installations of ten different components.
const ADAPTERS: &[(&str, &str, &str)] = &[
    ("chargeback", "chargeback-csv.wasm", "chargeback.toml"),
    ("focus", "focus.wasm", "focus.toml"),
    ("statement", "statement.wasm", "statement.toml"),
    ("billing", "billing-webhook.wasm", "billing-webhook.toml"),
    ("showback", "showback-py.wasm", "showback.toml"),
    ("chargeback-py", "chargeback-py.wasm", "chargeback.toml"),
    ("chargeback-js", "chargeback-js.wasm", "chargeback.toml"),
    ("chargeback-go", "chargeback-go.wasm", "chargeback.toml"),
    ("chargeback-c", "chargeback-c.wasm", "chargeback.toml"),
    (
        "location-costs",
        "location-costs-c.wasm",
        "location-costs.toml",
    ),
];

fn main() {
    let rounds: usize = std::env::args()
        .skip_while(|a| a != "--rounds")
        .nth(1)
        .map(|n| n.parse().expect("--rounds N"))
        .unwrap_or(3);
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let runtime = tokio::runtime::Runtime::new().unwrap();

    let empty = tempfile::tempdir().unwrap();
    let empty_token = runtime.block_on(operator_token(empty.path()));
    let full = tempfile::tempdir().unwrap();
    let token = runtime.block_on(operator_token(full.path()));
    let installed = install_all(&root, full.path(), &token);
    let compiled = full.path().join("compiled-adapters");
    println!(
        "tally start-up: {installed} installed adapters ({:.1} MB of components, {:.1} MB compiled); {rounds} rounds, median\n",
        components_size(&root) as f64 / 1e6,
        dir_size(&compiled) as f64 / 1e6
    );

    let mut baseline = Vec::new();
    let mut cached = Vec::new();
    let mut clean = Vec::new();
    for _ in 0..rounds {
        baseline.push(Start::measure(&runtime, empty.path(), &empty_token, 0));
        cached.push(Start::measure(&runtime, full.path(), &token, installed));
        std::fs::remove_dir_all(&compiled).unwrap();
        clean.push(Start::measure(&runtime, full.path(), &token, installed));
    }
    let baseline = Start::median(baseline);
    let cached = Start::median(cached);
    let clean = Start::median(clean);

    println!(
        "| host | listening | first answer | vs no adapters | adapters ready | slowest answer while loading |"
    );
    println!("|---|---:|---:|---:|---:|---:|");
    for (name, start) in [
        ("no adapters (baseline)", &baseline),
        ("10 adapters, compiled cache", &cached),
        ("10 adapters, clean cache (all compile)", &clean),
    ] {
        println!(
            "| {name} | {} | {} | {:.2}× | {} | {} |",
            ms(start.listening),
            ms(start.first_answer),
            start.first_answer.as_secs_f64() / baseline.first_answer.as_secs_f64(),
            ms(start.ready),
            ms(start.slowest_answer),
        );
    }
}

fn ms(duration: Duration) -> String {
    format!("{:.1} ms", duration.as_secs_f64() * 1e3)
}

/// One start of `tally serve`, timed from the spawn.
#[derive(Clone, Copy)]
struct Start {
    /// Until the "listening" line.
    listening: Duration,
    /// Until the first usage API answer.
    first_answer: Duration,
    /// Until the log says every installed adapter is loaded.
    ready: Duration,
    /// The slowest usage API answer from the first one until ready.
    slowest_answer: Duration,
}

impl Start {
    fn measure(
        runtime: &tokio::runtime::Runtime,
        data: &Path,
        token: &str,
        adapters: usize,
    ) -> Start {
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .env("RUST_LOG", "info")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tally serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let listening = spawned.elapsed();
        let base = line
            .trim()
            .strip_prefix("tally listening on ")
            .expect("the address line")
            .to_owned();
        let ready = watch_ready(&mut child);
        let client = reqwest::Client::new();
        let url = format!(
            "{base}/subscriptions/bench/providers/Microsoft.Commerce/UsageAggregates\
             ?api-version=2015-06-01-preview&reportedStartTime=2026-01-01T00:00:00Z\
             &reportedEndTime=2026-01-02T00:00:00Z"
        );
        let ask = || {
            let asked = Instant::now();
            let answered = runtime
                .block_on(client.get(&url).bearer_auth(token).send())
                .is_ok_and(|r| r.status().is_success());
            (answered, asked.elapsed())
        };
        let first_answer = loop {
            if ask().0 {
                break spawned.elapsed();
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        let mut slowest_answer = Duration::ZERO;
        let ready = loop {
            match ready.recv_timeout(Duration::from_millis(20)) {
                Ok(loaded) => {
                    assert_eq!(loaded, adapters, "every installed adapter loads");
                    break spawned.elapsed();
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let (answered, took) = ask();
                    assert!(answered, "the host answers while adapters load");
                    slowest_answer = slowest_answer.max(took);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => panic!("tally serve exited"),
            }
        };
        let _ = child.kill();
        let _ = child.wait();
        Start {
            listening,
            first_answer,
            ready,
            slowest_answer,
        }
    }

    fn median(mut starts: Vec<Start>) -> Start {
        let middle = starts.len() / 2;
        let mut pick = |key: fn(&Start) -> Duration| {
            starts.sort_by_key(key);
            key(&starts[middle])
        };
        Start {
            listening: pick(|s| s.listening),
            first_answer: pick(|s| s.first_answer),
            ready: pick(|s| s.ready),
            slowest_answer: pick(|s| s.slowest_answer),
        }
    }
}

/// Sends the number of adapters loaded when the host logs that its preload ended.
fn watch_ready(child: &mut Child) -> mpsc::Receiver<usize> {
    let (ready, receiver) = mpsc::channel();
    let stderr = BufReader::new(child.stderr.take().unwrap());
    std::thread::spawn(move || {
        for line in stderr.lines().map_while(Result::ok) {
            if line.contains("installed adapters loaded") {
                let loaded = line
                    .split_whitespace()
                    .find_map(|word| word.strip_prefix("loaded="))
                    .and_then(|n| n.parse().ok())
                    .unwrap_or(usize::MAX);
                let _ = ready.send(loaded);
            }
        }
    });
    receiver
}

async fn operator_token(data: &Path) -> String {
    let store = SqliteStore::open(data).unwrap();
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
    token
}

/// Installs every adapter through `tally adapters install` on a host of its
/// own (installing compiles, filling the cache); returns how many.
fn install_all(root: &Path, data: &Path, token: &str) -> usize {
    let mut host = Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(host.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line.trim().strip_prefix("tally listening on ").unwrap();
    let manifests = tempfile::tempdir().unwrap();
    for (name, component, template) in ADAPTERS {
        let component = root.join("target/adapters").join(component);
        let wasm = std::fs::read(&component).unwrap_or_else(|_| {
            panic!("{} is missing: run adapters/build.sh", component.display())
        });
        let sha256: String = Sha256::digest(&wasm)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let template = std::fs::read_to_string(root.join("examples/adapters").join(template))
            .expect("the example manifest");
        let manifest: String = template
            .lines()
            .map(|line| {
                if line.starts_with("name = ") {
                    format!("name = \"{name}\"")
                } else if line.starts_with("sha256 = ") {
                    format!("sha256 = \"{sha256}\"")
                } else if line.starts_with("component = ") {
                    format!("component = \"{}\"", component.display())
                } else {
                    line.to_owned()
                }
            })
            .collect::<Vec<_>>()
            .join("\n");
        let path = manifests.path().join(format!("{name}.toml"));
        std::fs::write(&path, manifest).unwrap();
        let output = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["adapters", "install"])
            .arg(&path)
            .args(["--url", base, "--token", token])
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "installing {name}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    let _ = host.kill();
    let _ = host.wait();
    ADAPTERS.len()
}

fn components_size(root: &Path) -> u64 {
    ADAPTERS
        .iter()
        .map(|(_, file, _)| {
            std::fs::metadata(root.join("target/adapters").join(file)).map_or(0, |m| m.len())
        })
        .sum()
}

fn dir_size(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}
