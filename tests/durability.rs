//! Every record acknowledged with a 2xx survives a `kill -9` of the host, and
//! nothing is counted twice when the reporters retry.

mod support;

use std::sync::{Arc, Mutex};

use serde_json::Value;
use support::process::{Server, tally_ok};
use support::*;
use tally_usage_generator::Options;

const BATCH: usize = 250;
const SENDERS: usize = 4;

async fn post(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    batch: &[Value],
) -> reqwest::Result<Value> {
    client
        .post(format!("{base}/v1/usage"))
        .bearer_auth(token)
        .json(batch)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_usage_survives_kill_9_and_retries_count_once() {
    let dir = tempfile::tempdir().unwrap();
    let data_dir = dir.path().to_str().unwrap();
    let token = tally_ok(&[
        "token",
        "create",
        "--data-dir",
        data_dir,
        "--role",
        "operator",
    ])
    .trim()
    .to_string();
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
                    match post(&client, &base, &token, &batches[index]).await {
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
        let reply = post(&client, &server.base, &token, &batches[index])
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
        let reply = post(&client, &server.base, &token, batch).await.unwrap();
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
