//! `tally export run NAME --from --to`: run, re-run (a correction) or
//! backfill an adapter's windows on a running host, and wait for them;
//! `tally export show NAME RUN`: one run with its provenance.

use std::time::{Duration, Instant};

use anyhow::bail;
use clap::Subcommand;
use reqwest::Method;
use serde_json::{Value, json};

use super::client::{HostArgs, HostClient};
use super::installations::{print_runs, require_succeeded};
use super::printable::printable;

/// How often a waiting command asks how its runs are doing.
const POLL: Duration = Duration::from_millis(250);

/// `tally export …`
#[derive(Subcommand)]
pub enum ExportCommand {
    /// Run the windows of [--from, --to) now: first exports, corrections of
    /// exported windows, failed windows again.
    Run(RunArgs),
    /// Re-derive the documents of the exported windows starting in
    /// [--from, --to) and compare them with the published ones; exits with 1
    /// unless every window matches.
    Verify(super::verify::VerifyArgs),
    /// Show a run: its window, status, provenance (contract, component,
    /// config digest, granularity, usage digest) and documents.
    Show(super::run_show::ShowArgs),
}

/// Arguments of `tally export run`.
#[derive(clap::Args)]
pub struct RunArgs {
    /// The installation's name.
    name: String,
    /// Start (ISO-8601 time or date).
    #[arg(long)]
    from: String,
    /// End, exclusive (ISO-8601 time or date).
    #[arg(long)]
    to: String,
    /// Return once queued, without waiting for the runs to finish.
    #[arg(long)]
    no_wait: bool,
    /// Longest wait for the runs, e.g. `10m`.
    #[arg(long, default_value = "30m", value_parser = humantime::parse_duration)]
    timeout: Duration,
    #[command(flatten)]
    host: HostArgs,
}

/// Runs `tally export …`.
pub async fn run(command: ExportCommand) -> anyhow::Result<()> {
    let args = match command {
        ExportCommand::Run(args) => args,
        ExportCommand::Verify(args) => return super::verify::run(args).await,
        ExportCommand::Show(args) => return super::run_show::show(args).await,
    };
    let client = HostClient::new(args.host);
    let path = format!("/v1/adapters/{}/runs", args.name);
    let requested: Vec<Value> = client
        .json(
            client
                .request(Method::POST, &path)?
                .json(&json!({ "from": args.from, "to": args.to })),
        )
        .await?;
    for item in &requested {
        println!(
            "window {}: {} (run {})",
            printable(item["run"]["windowStart"].as_str().unwrap_or_default()),
            printable(item["outcome"].as_str().unwrap_or_default()),
            item["run"]["id"]
        );
    }
    if args.no_wait {
        return Ok(());
    }
    let started = Instant::now();
    let mut runs: Vec<Value> = requested
        .into_iter()
        .map(|item| item["run"].clone())
        .collect();
    loop {
        for run in runs.iter_mut() {
            if matches!(run["status"].as_str(), Some("succeeded" | "failed")) {
                continue;
            }
            let url = run["url"].as_str().unwrap_or_default().to_owned();
            *run = client.json(client.request(Method::GET, &url)?).await?;
        }
        let done = runs
            .iter()
            .all(|run| matches!(run["status"].as_str(), Some("succeeded" | "failed")));
        if done {
            break;
        }
        if started.elapsed() > args.timeout {
            print_runs(&runs);
            bail!("the runs did not finish within {:?}", args.timeout);
        }
        tokio::time::sleep(POLL).await;
    }
    print_runs(&runs);
    require_succeeded(&runs)
}
