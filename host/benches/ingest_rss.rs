//! Peak RSS of a `tally serve` process while it answers the worst ingest
//! bodies at its default limits (issue 10: an ingest request may cost at most
//! 8× its body + a constant).
//!
//! Each body goes to a fresh host on a new SQLite data directory: this
//! crate's `tally`, or the binary given with `--tally PATH` (e.g. a build of
//! an earlier commit, for a before/after). The host's peak RSS (`VmHWM`) is
//! read after a warm-up request and again after the body; the growth is
//! printed beside the body's size, with the answer, the time it took and the
//! slowest `/healthz` answered meanwhile (polled every 20 ms).
//!
//! Run: `cargo bench -p tally --bench ingest_rss [-- --tally PATH --max-body BYTES --only TEXT]`
//! (bodies larger than `--max-body` are skipped: an unbounded host may need
//! hundreds of times their size; `--only` keeps the bodies whose name has TEXT).
//!
//! The current figures, before and after issue 10: `docs/performance.md`.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

const VM_METER: &str = "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5";
const MIB: usize = 1 << 20;

/// One request body.
struct Body {
    name: &'static str,
    content_type: &'static str,
    bytes: Vec<u8>,
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .map(|i| args[i + 1].clone())
    };
    let tally = value("--tally").unwrap_or_else(|| env!("CARGO_BIN_EXE_tally").to_string());
    let max_body = value("--max-body").map_or(32 * MIB, |v| v.parse().unwrap());
    let only = value("--only").unwrap_or_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(benchmark(&tally, max_body, &only));
}

async fn benchmark(tally: &str, max_body: usize, only: &str) {
    println!("host: {tally}");
    println!(
        "| body | size | answer | peak RSS growth | growth / body | time | slowest /healthz meanwhile |"
    );
    println!("|---|---|---|---|---|---|---|");
    for body in bodies().into_iter().filter(|b| b.name.contains(only)) {
        if body.bytes.len() > max_body {
            println!(
                "| {} | {} | skipped (--max-body) | | | | |",
                body.name,
                size(body.bytes.len())
            );
            continue;
        }
        let outcome = measure(tally, &body).await;
        println!(
            "| {} | {} | {} | {} | {:.1}× | {:.2} s | {:.0} ms |",
            body.name,
            size(body.bytes.len()),
            outcome.answer,
            size(outcome.growth as usize),
            outcome.growth as f64 / body.bytes.len() as f64,
            outcome.elapsed.as_secs_f64(),
            outcome.slowest_health.as_secs_f64() * 1e3,
        );
    }
}

fn bodies() -> Vec<Body> {
    let now = Utc::now();
    let hour_ago = now - chrono::Duration::hours(2);
    let month_ago = hour_ago - chrono::Duration::days(31);
    let empty_lines = |bytes: usize| "{}\n".repeat(bytes / 3).into_bytes();
    let empty_array = |bytes: usize| {
        let mut text = String::from("[{}");
        text.push_str(&",{}".repeat((bytes - 1) / 3 - 1));
        text.push(']');
        text.into_bytes()
    };
    let tags = serde_json::Value::Object(
        (0..280)
            .map(|i| (format!("k{i:04}"), serde_json::json!("v-tag-value")))
            .collect(),
    );
    vec![
        Body {
            name: "`{}` lines (NDJSON), 4 MiB",
            content_type: "application/x-ndjson",
            bytes: empty_lines(4 * MIB),
        },
        Body {
            name: "`{}` lines (NDJSON), 32 MiB",
            content_type: "application/x-ndjson",
            bytes: empty_lines(32 * MIB),
        },
        Body {
            name: "`[{},{},…]` (JSON array), 4 MiB",
            content_type: "application/json",
            bytes: empty_array(4 * MIB),
        },
        Body {
            name: "`[{},{},…]` (JSON array), 32 MiB",
            content_type: "application/json",
            bytes: empty_array(32 * MIB),
        },
        Body {
            name: "1,000 records of 31 days (744,000 hour parts)",
            content_type: "application/x-ndjson",
            bytes: ndjson((0..1_000).map(|i| minimal(i, month_ago, hour_ago, None))),
        },
        Body {
            name: "13 records of 31 days (9,672 hour parts)",
            content_type: "application/x-ndjson",
            bytes: ndjson((0..13).map(|i| minimal(i, month_ago, hour_ago, None))),
        },
        Body {
            name: "5,000 minimal hourly records, not on the hour (10,000 hour parts)",
            content_type: "application/x-ndjson",
            bytes: ndjson(
                (0..5_000)
                    .map(|i| minimal(i, hour_ago, hour_ago + chrono::Duration::hours(1), None)),
            ),
        },
        Body {
            name: "5,000 hourly records with 280 tags each, not on the hour",
            content_type: "application/x-ndjson",
            bytes: ndjson((0..5_000).map(|i| {
                minimal(
                    i,
                    hour_ago,
                    hour_ago + chrono::Duration::hours(1),
                    Some(&tags),
                )
            })),
        },
    ]
}

fn minimal(
    event: usize,
    start: DateTime<Utc>,
    end: DateTime<Utc>,
    tags: Option<&serde_json::Value>,
) -> serde_json::Value {
    let mut record = serde_json::json!({
        "eventId": format!("e{event}"), "subscriptionId": "s", "meterId": VM_METER,
        "resourceUri": format!("/vm{event}"), "quantity": 1.0,
        "usageStartTime": start.to_rfc3339(), "usageEndTime": end.to_rfc3339(),
    });
    if let Some(tags) = tags {
        record["tags"] = tags.clone();
    }
    record
}

fn ndjson(records: impl Iterator<Item = serde_json::Value>) -> Vec<u8> {
    records
        .map(|r| r.to_string())
        .collect::<Vec<_>>()
        .join("\n")
        .into_bytes()
}

struct Outcome {
    answer: String,
    growth: u64,
    elapsed: Duration,
    slowest_health: Duration,
}

async fn measure(tally: &str, body: &Body) -> Outcome {
    let data = tempfile::tempdir().unwrap();
    let token = run(
        tally,
        &["token", "create", "--role", "operator", "--data-dir"],
        data.path(),
    );
    let mut host = Host::start(tally, data.path());
    let client = reqwest::Client::new();
    let post = |bytes: Vec<u8>, content_type: &'static str| {
        client
            .post(format!("{}/v1/usage", host.base))
            .bearer_auth(&token)
            .header("content-type", content_type)
            .body(bytes)
            .send()
    };
    let warm_up = minimal(
        999_999,
        Utc::now() - chrono::Duration::hours(3),
        Utc::now() - chrono::Duration::hours(2),
        None,
    );
    let reply = post(ndjson(std::iter::once(warm_up)), "application/x-ndjson")
        .await
        .unwrap();
    assert!(reply.status().is_success(), "the warm-up is accepted");
    let before = peak_rss(host.child.id());

    let done = Arc::new(AtomicBool::new(false));
    let health = tokio::spawn({
        let (done, url) = (done.clone(), format!("{}/healthz", host.base));
        async move {
            let client = reqwest::Client::new();
            let mut slowest = Duration::ZERO;
            while !done.load(Ordering::Relaxed) {
                let started = Instant::now();
                let _ = client.get(&url).send().await;
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            slowest
        }
    });
    let started = Instant::now();
    let answer = match post(body.bytes.clone(), body.content_type).await {
        Ok(reply) => {
            let status = reply.status();
            let text = reply.text().await.unwrap_or_default();
            let code = serde_json::from_str::<serde_json::Value>(&text)
                .ok()
                .and_then(|v| v["error"]["code"].as_str().map(str::to_string))
                .unwrap_or_default();
            format!("{} {code}", status.as_u16())
        }
        Err(error) => format!("failed: {error}"),
    };
    let elapsed = started.elapsed();
    done.store(true, Ordering::Relaxed);
    let slowest_health = health.await.unwrap();
    let growth = peak_rss(host.child.id()).saturating_sub(before);
    host.stop();
    Outcome {
        answer,
        growth,
        elapsed,
        slowest_health,
    }
}

/// Runs `tally ARGS DIR` and returns its standard output.
fn run(tally: &str, args: &[&str], dir: &Path) -> String {
    let output = Command::new(tally).args(args).arg(dir).output().unwrap();
    assert!(output.status.success(), "tally {args:?} failed");
    String::from_utf8(output.stdout).unwrap().trim().to_string()
}

/// A `tally serve` child on a free port.
struct Host {
    child: Child,
    base: String,
}

impl Host {
    fn start(tally: &str, data: &Path) -> Host {
        let mut child = Command::new(tally)
            .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let base = line
            .trim()
            .strip_prefix("tally listening on ")
            .expect("the address line")
            .to_string();
        Host { child, base }
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Peak resident memory of a process so far (`VmHWM`), in bytes.
fn peak_rss(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let kib: u64 = status
        .lines()
        .find_map(|line| line.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("a VmHWM line");
    kib * 1024
}

fn size(bytes: usize) -> String {
    if bytes >= MIB {
        format!("{:.1} MiB", bytes as f64 / MIB as f64)
    } else {
        format!("{:.0} KiB", bytes as f64 / 1024.0)
    }
}
