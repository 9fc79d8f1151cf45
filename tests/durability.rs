//! Every record acknowledged with a 2xx survives a `kill -9` of the host, and
//! nothing is counted twice when the reporters retry; an export cut short by
//! a `kill -9` runs again after the restart and bills every line once.

use crate::support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Days, Utc};
use serde_json::Value;
use support::billing_api::{BillingApi, install_billing_webhook};
use support::process::{Server, create_token, get_json, post_usage};
use support::*;
use tally_usage_generator::Options;

const BATCH: usize = 250;
const SENDERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_usage_survives_kill_9_and_retries_count_once() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let generated = sample(&Options {
        subscriptions: 4,
        days: 8,
        ..Options::default()
    });
    let records = to_wire(&generated);
    let batches: Arc<Vec<Vec<Value>>> =
        Arc::new(records.chunks(BATCH).map(<[Value]>::to_vec).collect());
    assert!(batches.len() > 40);

    // Several reporters stream batches; the host is killed once 20 are acknowledged.
    let mut server = Server::start(dir.path());
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let client = reqwest::Client::new();
    let senders: Vec<_> = (0..SENDERS)
        .map(|sender| {
            let (batches, acknowledged, client, base, token) = (
                batches.clone(),
                acknowledged.clone(),
                client.clone(),
                server.base.clone(),
                token.clone(),
            );
            tokio::spawn(async move {
                for index in (sender..batches.len()).step_by(SENDERS) {
                    match post_usage(&client, &base, &token, &batches[index]).await {
                        Ok(_) => acknowledged.lock().unwrap().push(index),
                        Err(_) => return, // the host is gone
                    }
                }
            })
        })
        .collect();
    while acknowledged.lock().unwrap().len() < 20 {
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    server.kill();
    for sender in senders {
        sender.await.unwrap();
    }
    let acknowledged = acknowledged.lock().unwrap().clone();
    assert!(
        acknowledged.len() < batches.len(),
        "the kill came mid-stream"
    );

    // After a restart every acknowledged record is there: resending it finds a duplicate.
    let server = Server::start(dir.path());
    for &index in &acknowledged {
        let reply = post_usage(&client, &server.base, &token, &batches[index])
            .await
            .unwrap();
        assert_eq!(
            reply["accepted"], 0,
            "batch {index} was acknowledged, so it must have been stored"
        );
        assert_eq!(
            reply["duplicates"].as_u64(),
            Some(batches[index].len() as u64)
        );
    }
    // The reporters retry everything; the totals equal the usage, counted once.
    for batch in batches.iter() {
        let reply = post_usage(&client, &server.base, &token, batch)
            .await
            .unwrap();
        assert_eq!(
            reply["accepted"].as_u64().unwrap() + reply["duplicates"].as_u64().unwrap(),
            batch.len() as u64
        );
    }
    let mut rows = Vec::new();
    let mut next = Some(format!(
        "{}/subscriptions/p/providers/Microsoft.Commerce.Admin/subscriberUsageAggregates?reportedStartTime=2026-10-20T00:00:00Z&reportedEndTime=2026-11-05T00:00:00Z&{API}",
        server.base
    ));
    while let Some(url) = next {
        let page: Value = client
            .get(url)
            .bearer_auth(&token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        rows.extend(page["value"].as_array().unwrap().iter().cloned());
        next = page["nextLink"].as_str().map(str::to_string);
    }
    assert_totals_eq(&totals_by_meter(&rows), &ingested_totals(&generated));
}

/// Rates of the webhook adapter in the restart test.
const RATES: [(&str, f64); 2] = [(VM_METER, 0.025), (IP_METER, 0.005)];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_export_cut_by_kill_9_runs_again_after_restart_and_bills_every_line_once() {
    let dir = DataDir::new();
    let data_dir = dir.path().to_str().unwrap();
    let token = create_token(data_dir, "operator");
    let config = dir.path().join("tally.toml");
    std::fs::write(&config, "[exports]\ntick = '100ms'\nretry_base = '200ms'\n").unwrap();
    let serve_args = ["--config", config.to_str().unwrap()];

    // Two days of usage, all reported before today.
    let today = Utc::now()
        .date_naive()
        .and_hms_opt(0, 0, 0)
        .unwrap()
        .and_utc();
    let first_day = today - Days::new(2);
    let records: Vec<Value> = reported_by_now(to_wire(&sample(&Options {
        subscriptions: 4,
        days: 2,
        end: today - Days::new(1),
        ..Options::default()
    })));
    let mut server = Server::start_with(dir.path(), &serve_args);
    let client = reqwest::Client::new();
    for batch in records.chunks(2_000) {
        post_usage(&client, &server.base, &token, batch)
            .await
            .unwrap();
    }

    // A billing API slow enough for the kill to land mid-export.
    let api = BillingApi::start().await;
    api.slow_down(Duration::from_millis(100));
    install_billing_webhook(dir.path(), &server.base, &token, &api, first_day, &RATES);

    // Kill the host once the billing API has seen a few requests.
    let started = Instant::now();
    while api.requests().len() < 3 {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the export never started"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    server.kill();
    let sent_before_kill = api.requests().len();

    let server = Server::start_with(dir.path(), &serve_args);
    let started = Instant::now();
    let installation = loop {
        let installation = get_json(
            &client,
            &format!("{}/v1/adapters/billing", server.base),
            &token,
        )
        .await;
        let watermark: DateTime<Utc> = installation["watermark"].as_str().unwrap().parse().unwrap();
        if watermark == today {
            break installation;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "{installation}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(installation["heldBy"].is_null());

    // Each window was exported by one run; the one cut short ran twice.
    let runs = get_json(
        &client,
        &format!("{}/v1/adapters/billing/runs", server.base),
        &token,
    )
    .await;
    let runs = runs.as_array().unwrap();
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["status"] == "succeeded" && r["revision"] == 0)
    );
    assert_eq!(
        runs.iter().map(|r| r["attempts"].as_u64().unwrap()).max(),
        Some(2)
    );

    // The restarted run re-sent what the killed one had sent, under the same
    // keys, and the billing API dropped those.
    assert!(
        api.resent_since(sent_before_kill) >= 1,
        "nothing was re-sent under an old key"
    );

    // Every line billed once, and the amounts are the usage times the rates.
    let lines = api.billed_lines();
    let ids: BTreeSet<&str> = lines.iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), lines.len(), "a line was billed twice");
    let mut billed: BTreeMap<String, f64> = BTreeMap::new();
    for line in &lines {
        let meter = line["meter_id"].as_str().unwrap().to_ascii_lowercase();
        *billed.entry(meter).or_default() +=
            line["amount"].as_str().unwrap().parse::<f64>().unwrap();
    }
    for (meter, rate) in RATES {
        let quantity: f64 = records
            .iter()
            .filter(|r| r["meterId"].as_str().unwrap().eq_ignore_ascii_case(meter))
            .filter(|r| (first_day..today).contains(&reported_at(r)))
            .map(|r| r["quantity"].as_f64().unwrap())
            .sum();
        let got = billed[&meter.to_ascii_lowercase()];
        assert!(
            (got - quantity * rate).abs() <= 1e-6 * lines.len() as f64,
            "meter {meter}: billed {got}, usage × rate {}",
            quantity * rate
        );
    }
}
