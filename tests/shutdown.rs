//! `tally serve` stops cleanly on SIGTERM: it stops listening, lets the
//! request in progress finish, stops the export run in progress and records
//! it as retrying at once, and exits 0; the next start exports that window
//! once.

use crate::support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use support::billing_api::{BillingApi, install_billing_webhook};
use support::process::{Server, create_token, get_json, post_usage};
use support::*;
use tally::store::exports::RunStatus;
use tally_usage_generator::Options;

/// Rates of the webhook adapter.
const RATES: [(&str, f64); 2] = [(VM_METER, 0.025), (IP_METER, 0.005)];

fn today() -> DateTime<Utc> {
    Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc()
}

/// A config with a fast scheduler and a short shutdown timeout.
fn serve_config(dir: &DataDir) -> String {
    let config = dir.path().join("tally.toml");
    std::fs::write(
        &config,
        "shutdown_timeout = '10s'\n[exports]\ntick = '100ms'\nretry_base = '1h'\n",
    )
    .unwrap();
    config.to_str().unwrap().to_owned()
}

/// Polls `condition` every 50 ms; panics with `what` after a minute.
async fn wait_until<F, Fut>(what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !condition().await {
        assert!(started.elapsed() < Duration::from_secs(60), "{what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_the_run_in_progress_and_the_next_start_exports_its_window_once() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let config = serve_config(&dir);
    let serve_args = ["--config", config.as_str()];

    // Yesterday's usage, all reported by now.
    let today = today();
    let yesterday = today - Days::new(1);
    let records: Vec<Value> = reported_by_now(to_wire(&sample(&Options {
        subscriptions: 2,
        days: 1,
        end: yesterday,
        ..Options::default()
    })));
    let mut server = Server::start_with(dir.path(), &serve_args);
    let client = reqwest::Client::new();
    for batch in records.chunks(2_000) {
        post_usage(&client, &server.base, &token, batch)
            .await
            .unwrap();
    }

    // A billing API that holds every request: the run waits in its first send.
    let api = BillingApi::start().await;
    api.slow_down(Duration::from_secs(3_600));
    install_billing_webhook(dir.path(), &server.base, &token, &api, yesterday, &RATES);
    let runs_url = format!("{}/v1/adapters/billing/runs", server.base);
    wait_until("the export never started", || async {
        let runs = get_json(&client, &runs_url, &token).await;
        runs[0]["status"] == "running"
    })
    .await;

    let status = server.terminate();
    assert!(status.success(), "tally serve exited with {status}");

    // The run was stopped and recorded for another host to take at once.
    let store = dir.database().open().await.unwrap();
    let installation = store.installation("billing").await.unwrap().unwrap();
    let runs = store.runs(installation.id, 10).await.unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let stopped = &runs[0];
    assert_eq!(stopped.status, RunStatus::Retrying, "{stopped:?}");
    assert_eq!(
        stopped.reason.as_deref(),
        Some("the host stopped (SIGTERM); retried at once")
    );
    assert!(
        stopped.next_attempt_at.unwrap() <= Utc::now(),
        "{stopped:?}"
    );
    drop(store);

    // The next start exports the window: one first export, attempted twice,
    // its document published, every line billed once.
    api.slow_down(Duration::ZERO);
    let server = Server::start_with(dir.path(), &serve_args);
    let adapter_url = format!("{}/v1/adapters/billing", server.base);
    wait_until("the window was never exported", || async {
        let installation = get_json(&client, &adapter_url, &token).await;
        installation["watermark"]
            .as_str()
            .unwrap()
            .parse::<DateTime<Utc>>()
            .unwrap()
            == today
    })
    .await;
    let runs_url = format!("{}/v1/adapters/billing/runs", server.base);
    let runs = get_json(&client, &runs_url, &token).await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let run = &runs[0];
    assert_eq!(
        (&run["status"], &run["revision"], &run["attempts"]),
        // The attempt the stop cut short was given back.
        (&Value::from("succeeded"), &Value::from(0), &Value::from(1)),
        "{run}"
    );
    let shown = get_json(&client, &format!("{runs_url}/{}", run["id"]), &token).await;
    let documents: Vec<&str> = shown["documents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["name"].as_str().unwrap())
        .collect();
    assert_eq!(documents, ["invoice-summary.json"], "{shown}");
    let lines = api.billed_lines();
    let ids: std::collections::BTreeSet<&str> =
        lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert!(!lines.is_empty());
    assert_eq!(ids.len(), lines.len(), "a line was billed twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_in_progress_at_sigterm_is_answered_and_new_connections_are_refused() {
    let dir = DataDir::new();
    let token = create_token(dir.path().to_str().unwrap(), "operator");
    let config = serve_config(&dir);
    let mut server = Server::start_with(dir.path(), &["--config", config.as_str()]);
    let address = server.base.strip_prefix("http://").unwrap().to_owned();

    // An ingest request whose body has half arrived when the host is told
    // to stop. Its `100 Continue` says the host has read the head and
    // waits for the body: the request is in progress.
    let usage = record(
        "sub-1",
        "e-1",
        VM_METER,
        1.0,
        "2026-11-01T10:00:00Z",
        "2026-11-01T11:00:00Z",
    );
    let body = serde_json::to_vec(&[usage]).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let mut stream = TcpStream::connect(&address).unwrap();
    write!(
        stream,
        "POST /v1/usage HTTP/1.1\r\nhost: {address}\r\nauthorization: Bearer {token}\r\n\
         content-type: application/json\r\nexpect: 100-continue\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    let mut interim = Vec::new();
    let mut byte = [0u8; 1];
    while !interim.ends_with(b"\r\n\r\n") {
        stream.read_exact(&mut byte).unwrap();
        interim.push(byte[0]);
    }
    assert!(interim.starts_with(b"HTTP/1.1 100 Continue"), "{interim:?}");
    stream.write_all(first).unwrap();
    stream.flush().unwrap();

    server.signal(libc::SIGTERM);
    // The host stops listening…
    wait_until("the host kept listening after SIGTERM", || async {
        TcpStream::connect(&address).is_err()
    })
    .await;
    // …and still answers the request it was reading.
    stream.write_all(rest).unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("\"accepted\":1"), "{answer}");

    let status = server.wait_for_exit();
    assert!(status.success(), "tally serve exited with {status}");
}
