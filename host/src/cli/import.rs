//! `tally import FILE`: backfill usage from CSV or NDJSON, through a running
//! host (`--url`) or straight into a data directory (`--data-dir`), with the
//! same validation as `POST /v1/usage`.
//!
//! Batches are all-or-nothing and idempotent (event ids), so an import that
//! stops half-way is simply run again: what was accepted counts as duplicates.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use indicatif::{ProgressBar, ProgressStyle};
use reqwest::StatusCode;

use super::DataDir;
use crate::api::{ErrorResponse, IngestResponse};
use crate::store::{Store, StoreError};
use crate::usage::batch::{Batch, DEFAULT_MAX_HOUR_PARTS, DEFAULT_MAX_RECORDS};
use crate::usage::files::{decoded, read_records};
use crate::usage::time::{YEAR_RANGE, parse_time};
use crate::usage::{BatchError, BatchLimits, RecordError, UsageRecordInput, ValidationContext};

/// Most problems printed when a batch is refused.
const MAX_PRINTED_ERRORS: usize = 20;
/// Attempts for a batch that meets a retryable error (503, connection reset).
const ATTEMPTS: u32 = 5;

/// Arguments of `tally import`.
#[derive(clap::Args)]
pub struct ImportArgs {
    /// The file: `.csv` is read as CSV, anything else as NDJSON; a `.gz`
    /// file (`usage.csv.gz`, an archive of pruned events) is decompressed.
    file: PathBuf,
    /// Reported time for records that have none (an operator's backfill); without it the host stamps now.
    #[arg(long)]
    reported_at: Option<String>,
    /// Import through a running host (needs an operator token for reported times).
    #[arg(long, conflicts_with = "data_dir")]
    url: Option<url::Url>,
    /// Token for --url.
    #[arg(long, env = "TALLY_TOKEN", hide_env_values = true)]
    token: Option<String>,
    #[command(flatten)]
    data_dir: DataDir,
    /// Records per request (a request is all-or-nothing; a host takes at most
    /// 5,000 by default). A batch is also cut before its records cover more
    /// than 10,000 hours in all (the host's default hour-parts limit).
    #[arg(long, default_value_t = DEFAULT_MAX_RECORDS)]
    batch_size: usize,
    /// Requests in flight at once (the host commits concurrent ones together).
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
}

/// Where batches go.
#[derive(Clone)]
enum Sink {
    Http {
        client: reqwest::Client,
        endpoint: url::Url,
        token: String,
    },
    Direct(Arc<dyn Store>),
}

/// Counts of what was imported.
#[derive(Default)]
struct Totals {
    accepted: usize,
    duplicates: usize,
}

impl Totals {
    fn add(&mut self, other: Totals) {
        self.accepted += other.accepted;
        self.duplicates += other.duplicates;
    }
}

/// Imports the file, batch by batch.
pub async fn run(args: ImportArgs) -> anyhow::Result<()> {
    let reported_at = match &args.reported_at {
        None => None,
        Some(text) => {
            let time = parse_time(text).ok_or_else(|| {
                anyhow!("--reported-at '{text}' is not an ISO-8601 time {YEAR_RANGE}")
            })?;
            Some(time.to_rfc3339())
        }
    };
    let sink = match &args.url {
        Some(url) => {
            let token = args
                .token
                .clone()
                .context("--url needs --token (or TALLY_TOKEN)")?;
            Sink::Http {
                client: reqwest::Client::new(),
                endpoint: url.join("/v1/usage")?,
                token,
            }
        }
        None => Sink::Direct(args.data_dir.open_store().await?),
    };
    let file = std::fs::File::open(&args.file)
        .with_context(|| format!("opening {}", args.file.display()))?;
    let progress = ProgressBar::new(file.metadata()?.len()).with_style(
        ProgressStyle::with_template("{bar:40} {bytes}/{total_bytes} {msg} ({eta})")
            .expect("a valid template"),
    );
    let (format, input) = decoded(&args.file, progress.wrap_read(file));
    let records = read_records(input, format)?;

    let started = Instant::now();
    let mut totals = Totals::default();
    let mut in_flight = tokio::task::JoinSet::new();
    let mut batch = Vec::with_capacity(args.batch_size);
    let mut batch_start = 0;
    let mut hour_parts = 0;
    let mut records = records.enumerate().peekable();
    while let Some((index, record)) = records.next() {
        // A parse error's index is already the record's position in the file.
        let mut record = record?.map_err(|e| refused(&[e], 0))?;
        if record.reported_time.is_none() {
            record.reported_time.clone_from(&reported_at);
        }
        hour_parts += record.hour_parts();
        batch.push(record);
        // Cut before the next record would take the batch over the hour parts.
        let next_parts = match records.peek() {
            Some((_, Ok(Ok(next)))) => next.hour_parts(),
            _ => 1,
        };
        if batch.len() == args.batch_size.max(1) || hour_parts + next_parts > DEFAULT_MAX_HOUR_PARTS
        {
            hour_parts = 0;
            if in_flight.len() >= args.concurrency.max(1) {
                totals.add(
                    in_flight
                        .join_next()
                        .await
                        .expect("a batch is in flight")??,
                );
                let message = format!(
                    "{} records, {} duplicates",
                    totals.accepted, totals.duplicates
                );
                progress.set_message(message);
            }
            let (sink, batch) = (sink.clone(), std::mem::take(&mut batch));
            in_flight.spawn(async move { sink.send(batch, batch_start).await });
            batch_start = index + 1;
        }
    }
    if !batch.is_empty() {
        in_flight.spawn(async move { sink.send(batch, batch_start).await });
    }
    // The first failed batch stops the import; dropping the set cancels the
    // others, which is safe: batches are all-or-nothing and idempotent.
    while let Some(outcome) = in_flight.join_next().await {
        totals.add(outcome??);
    }
    progress.finish_and_clear();
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "imported {} records ({} duplicates already there) in {seconds:.1} s, {:.0} records/s",
        totals.accepted,
        totals.duplicates,
        (totals.accepted + totals.duplicates) as f64 / seconds.max(1e-9)
    );
    Ok(())
}

impl Sink {
    /// Sends one batch; `first` is the index of its first record in the file.
    async fn send(&self, batch: Vec<UsageRecordInput>, first: usize) -> anyhow::Result<Totals> {
        match self {
            Sink::Direct(store) => {
                let catalog = store.meter_catalog().await?;
                let ctx = ValidationContext {
                    meters: &catalog,
                    now: store.clock().await?,
                    may_set_reported_time: true,
                    // The store refuses what is older than its pruned events.
                    retention_cutoff: None,
                };
                // The host's checks and limits, on the same code path.
                let limits = BatchLimits {
                    max_records: batch.len().max(DEFAULT_MAX_RECORDS),
                    ..BatchLimits::default()
                };
                let mut checked = Batch::new(&ctx, limits);
                let records = batch
                    .into_iter()
                    .try_for_each(|record| checked.push(Ok(record)))
                    .and_then(|()| checked.finish())
                    .map_err(|e| refused_batch(e, first))?;
                match store.ingest(records).await {
                    Ok(receipt) => Ok(Totals {
                        accepted: receipt.accepted,
                        duplicates: receipt.duplicates.len(),
                    }),
                    Err(StoreError::Conflicts(records) | StoreError::Expired(records)) => {
                        Err(refused(&records, first))
                    }
                    Err(error) => Err(error.into()),
                }
            }
            Sink::Http {
                client,
                endpoint,
                token,
            } => {
                let body = batch
                    .iter()
                    .map(serde_json::to_string)
                    .collect::<Result<Vec<_>, _>>()?
                    .join("\n");
                for attempt in 1..=ATTEMPTS {
                    let response = client
                        .post(endpoint.clone())
                        .bearer_auth(token)
                        .header("content-type", "application/x-ndjson")
                        .body(body.clone())
                        .send()
                        .await;
                    let retryable = match response {
                        Ok(response) if response.status().is_success() => {
                            let receipt: IngestResponse = response.json().await?;
                            return Ok(Totals {
                                accepted: receipt.accepted,
                                duplicates: receipt.duplicates,
                            });
                        }
                        Ok(response) if response.status() == StatusCode::SERVICE_UNAVAILABLE => {
                            anyhow!("the host answered 503")
                        }
                        Ok(response) => {
                            let status = response.status();
                            let text = response.text().await.unwrap_or_default();
                            return Err(match serde_json::from_str::<ErrorResponse>(&text) {
                                Ok(error) if !error.error.details.is_empty() => {
                                    refused(&error.error.details, first)
                                }
                                Ok(error) => anyhow!(
                                    "the host refused the batch ({status}): {}",
                                    error.error.message
                                ),
                                Err(_) => anyhow!("the host refused the batch ({status}): {text}"),
                            });
                        }
                        Err(error) if error.is_connect() || error.is_timeout() => anyhow!(error),
                        Err(error) => return Err(error.into()),
                    };
                    if attempt == ATTEMPTS {
                        return Err(retryable.context(format!(
                            "batch starting at record {first} failed {ATTEMPTS} times"
                        )));
                    }
                    tokio::time::sleep(Duration::from_millis(250 << attempt)).await;
                }
                unreachable!("the loop returns on its last attempt")
            }
        }
    }
}

fn refused_batch(error: BatchError, first: usize) -> anyhow::Error {
    match error {
        BatchError::Invalid { errors, total, .. } => refused_counted(&errors, total, first),
        other => anyhow!(
            "a batch starting at record {} was refused: {other}",
            first + 1
        ),
    }
}

/// An error listing a refused batch's problems, numbered as records of the file.
fn refused(problems: &[RecordError], first: usize) -> anyhow::Error {
    refused_counted(problems, problems.len(), first)
}

/// As [`refused`], for `total` problems of which `problems` were kept.
fn refused_counted(problems: &[RecordError], total: usize, first: usize) -> anyhow::Error {
    let mut lines: Vec<String> = problems
        .iter()
        .take(MAX_PRINTED_ERRORS)
        .map(|p| {
            format!(
                "  record {}: {}: {}",
                first + p.index + 1,
                p.field,
                p.reason
            )
        })
        .collect();
    if total > lines.len() {
        lines.push(format!("  … and {} more", total - lines.len()));
    }
    anyhow!(
        "a batch starting at record {} was refused; earlier batches were stored (re-running the import is safe):\n{}",
        first + 1,
        lines.join("\n")
    )
}
