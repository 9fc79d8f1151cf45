//! `tally adapter test`: run an adapter locally against sample usage, in the
//! same sandbox and limits as the host, with no server. An adapter author's
//! inner loop: it prints the adapter's log and figures and writes its
//! documents to a directory.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, anyhow, bail};
use chrono::{DateTime, Utc};
use clap::{Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

mod bindings;
mod componentize;
mod new;
mod out;

use super::printable::{printable, printable_lines};
use crate::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use crate::sandbox::egress::AllowedOrigin;
use crate::sandbox::engine::LoadedAdapter;
use crate::sandbox::host_usage::UsageAccess;
use crate::sandbox::{
    AdapterEngine, CompileSettings, Compiler, Limits, Outbound, SubscriptionGrant, describe,
    run_export, validate_config,
};
use crate::store::Store;
use crate::store::sqlite::SqliteStore;
use crate::usage::files::{FileFormat, read_records};
use crate::usage::time::parse_time;
use crate::usage::{Granularity, ValidationContext};

/// Longest `tally adapter test` lets a compile take (a host: `[compile] timeout`).
const AUTHOR_COMPILE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// `tally adapter …`
#[derive(Subcommand)]
pub enum AdapterCommand {
    /// Run an adapter's export locally against a usage file (no server).
    Test(TestArgs),
    /// Create a working adapter project to start from: Rust, Python, JavaScript, C or Go.
    New(new::NewArgs),
    /// Write the C or Go bindings of the contract this host serves.
    Bindings(bindings::BindingsArgs),
    /// Turn a core module (C, C++, Go, Zig: wasm32-wasi) into an adapter component.
    Componentize(componentize::ComponentizeArgs),
}

/// Arguments of `tally adapter test`.
#[derive(clap::Args)]
#[command(
    after_help = "The adapter's config is the manifest's [config] (with [secrets] merged in), \
as a host gives it to the installed adapter, and the run gets the manifest's [limits]: \
what passes here is what gets installed. \
Compiles are cached in $XDG_CACHE_HOME/tally/adapters (else ~/.cache/tally/adapters): \
a second run of the same component loads it in milliseconds."
)]
pub struct TestArgs {
    /// The component (.wasm).
    component: PathBuf,
    /// The installation manifest whose `[config]` table, with its `[secrets]`
    /// merged in, the adapter gets, under its `[limits]`: the same config
    /// and limits as when installed.
    #[arg(long, default_value = "manifest.toml", conflicts_with = "config")]
    manifest: PathBuf,
    /// A config to use instead of the manifest's: JSON, or TOML (a
    /// `[config]` table with `[secrets]`, or the table itself).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Sample usage, NDJSON or CSV; records without `reportedTime` count as reported when their usage ended.
    #[arg(long)]
    usage: PathBuf,
    /// Start of the reported-time window (default: the first reported time, rounded down).
    #[arg(long)]
    from: Option<String>,
    /// End of the window (default: the last reported time, rounded up).
    #[arg(long)]
    to: Option<String>,
    #[arg(long, value_enum, default_value_t = GranularityArg::Daily)]
    granularity: GranularityArg,
    /// Directory for the documents: created if missing. The documents of a
    /// previous `tally adapter test` there are replaced; any other
    /// non-empty directory is refused (nothing in it is overwritten).
    #[arg(long, default_value = "adapter-out")]
    out: PathBuf,
    /// Run the export as a correction (`correction: true` in the request):
    /// the window was exported before and this run replaces it.
    #[arg(long)]
    correction: bool,
    /// An origin (scheme://host[:port]) the adapter may `send` to, as an
    /// installation's `allowed_outbound_hosts`; repeat for several.
    #[arg(long = "allow-outbound", value_name = "ORIGIN", value_parser = AllowedOrigin::parse)]
    allow_outbound: Vec<AllowedOrigin>,
}

#[derive(Clone, Copy, ValueEnum)]
enum GranularityArg {
    Hourly,
    Daily,
}

/// Runs `tally adapter …`.
pub async fn run(command: AdapterCommand) -> anyhow::Result<()> {
    match command {
        AdapterCommand::Test(args) => test(args).await,
        AdapterCommand::New(args) => new::new(args),
        AdapterCommand::Bindings(args) => bindings::run(args),
        AdapterCommand::Componentize(args) => componentize::run(args),
    }
}

async fn test(args: TestArgs) -> anyhow::Result<()> {
    let (config, limits) = match &args.config {
        Some(path) => (read_config(path)?, Limits::default()),
        None => read_manifest(&args.manifest)?,
    };
    out::prepare(&args.out)?;
    let granularity = match args.granularity {
        GranularityArg::Hourly => Granularity::Hourly,
        GranularityArg::Daily => Granularity::Daily,
    };
    let scratch = tempfile::tempdir()?;
    let store = Arc::new(SqliteStore::open(scratch.path())?);
    let (first, last) = load_usage(&store, &args.usage).await?;
    // The scratch store's clock: the host's own, this being one host offline.
    let now = store.clock().await?;
    let start = match &args.from {
        Some(text) => {
            parse_time(text).ok_or_else(|| anyhow!("--from '{text}' is not an ISO-8601 time"))?
        }
        None => granularity.start_of(granularity.bucket_of(first)),
    };
    let end = match &args.to {
        Some(text) => {
            parse_time(text).ok_or_else(|| anyhow!("--to '{text}' is not an ISO-8601 time"))?
        }
        None => granularity
            .start_of(granularity.bucket_of(last) + 1)
            .min(granularity.start_of(granularity.bucket_of(now))),
    };

    // Compiled as the host compiles it: in a bounded child of this binary,
    // given longer than a host gives a compile (an author's machine is often
    // busy building; the host's timeout protects a shared service).
    let settings = CompileSettings {
        timeout: AUTHOR_COMPILE_TIMEOUT,
        ..CompileSettings::default()
    };
    let engine = Arc::new(
        AdapterEngine::new(artifact_cache()?)?.with_compiler(Compiler::this_binary(settings)?),
    );
    let adapter = load_with_progress(&engine, &args.component).await?;
    // Before the first call: `describe` runs under them too.
    println!("limits: {}", describe_limits(&limits));
    // Guest calls block (stdio into the run log): off the async runtime, as in the host.
    let (description, _) = {
        let (engine, adapter, limits) = (engine.clone(), adapter.clone(), limits.clone());
        tokio::task::spawn_blocking(move || describe(&engine, &adapter, &limits)).await??
    };
    println!(
        "adapter {} {} (tally:billing@{}, sha256 {}), {} {:.1} ms",
        printable(&description.name),
        printable(&description.version),
        adapter.world_version,
        &adapter.sha256[..12],
        if adapter.cached {
            "loaded from the cache in"
        } else {
            "compiled (and cached for the next runs) in"
        },
        adapter.load_time.as_secs_f64() * 1e3
    );
    {
        let (engine, adapter, config, limits) = (
            engine.clone(),
            adapter.clone(),
            config.clone(),
            limits.clone(),
        );
        tokio::task::spawn_blocking(move || validate_config(&engine, &adapter, &config, &limits))
            .await??;
    }

    let request = ExportRequest {
        run_id: "local-test".into(),
        window: Window {
            start: start.timestamp(),
            end: end.timestamp(),
        },
        granularity: match granularity {
            Granularity::Hourly => WitGranularity::Hourly,
            Granularity::Daily => WitGranularity::Daily,
        },
        correction: args.correction,
    };
    let usage = UsageAccess::new(
        store.clone(),
        store.meter_catalog().await?,
        SubscriptionGrant::All,
        now,
    );
    println!("window {start} .. {end} ({granularity:?})");
    let outcome = tokio::task::spawn_blocking(move || {
        let allowed = Outbound::Allowed(args.allow_outbound);
        run_export(
            &engine, &adapter, &request, &config, usage, allowed, &limits,
        )
    })
    .await?;

    for line in &outcome.log {
        // The adapter's own words: no escape sequences reach the terminal.
        // A message of several lines (a traceback) is indented under its level.
        let message = printable_lines(&line.message).replace('\n', "\n      ");
        println!("  [{}] {message}", line.level);
    }
    if outcome.log_dropped > 0 {
        println!(
            "  … {} log lines dropped (over the log caps)",
            outcome.log_dropped
        );
    }
    let figures = &outcome.figures;
    let seconds = figures.elapsed.as_secs_f64();
    println!(
        "figures: {:.1} ms, instantiate {:.0} µs, peak memory {:.1} MiB, {} rows read ({:.0} rows/s), {} bytes written, {} requests sent",
        seconds * 1e3,
        figures.instantiate.as_secs_f64() * 1e6,
        figures.peak_memory_bytes as f64 / (1 << 20) as f64,
        figures.rows_read,
        figures.rows_read as f64 / seconds.max(1e-9),
        figures.bytes_written,
        figures.requests_sent
    );
    let summary = outcome.result.map_err(|failure| anyhow!("{failure}"))?;
    out::record(&args.out, outcome.documents.keys())?;
    for (name, document) in &outcome.documents {
        let path = args.out.join(name);
        std::fs::write(&path, &document.bytes)
            .with_context(|| format!("writing {}", path.display()))?;
        println!(
            "document {} ({}, {} bytes)",
            printable(&path.display().to_string()),
            printable(&document.content_type),
            document.bytes.len()
        );
    }
    println!(
        "ok: {} rows read, {} rows written",
        summary.rows_read, summary.rows_written
    );
    Ok(())
}

/// Loads the component: from the cache, or compiled (in a bounded child, as
/// the host compiles) with a spinner on a terminal, since a Python
/// component takes many seconds.
async fn load_with_progress(
    engine: &Arc<AdapterEngine>,
    path: &Path,
) -> anyhow::Result<LoadedAdapter> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let progress = (!engine.is_cached(&wasm)).then(|| {
        let spinner = ProgressBar::new_spinner().with_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("a valid template"),
        );
        spinner.set_message(format!(
            "compiling {} ({:.1} MB; once: the next runs load it from the cache)",
            path.display(),
            wasm.len() as f64 / 1e6
        ));
        spinner.enable_steady_tick(std::time::Duration::from_millis(120));
        spinner
    });
    let engine = engine.clone();
    let loaded = tokio::task::spawn_blocking(move || engine.load(&wasm)).await?;
    if let Some(progress) = progress {
        progress.finish_and_clear();
    }
    loaded.with_context(|| format!("loading {}", path.display()))
}

/// Where compiled components are cached between runs: the user's own cache
/// directory, never a shared one (a planted artifact would run as native code).
fn artifact_cache() -> anyhow::Result<PathBuf> {
    let base = match std::env::var_os("XDG_CACHE_HOME") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir),
        _ => PathBuf::from(
            std::env::var_os("HOME").context("HOME is not set; cannot place the adapter cache")?,
        )
        .join(".cache"),
    };
    Ok(base.join("tally").join("adapters"))
}

/// The adapter config of a manifest, as JSON: its `[config]` table with its
/// `[secrets]` merged in, as the host hands it to the installed adapter; and
/// its `[limits]`, the defaults for those it leaves out, as the host applies them.
fn read_manifest(path: &Path) -> anyhow::Result<(String, Limits)> {
    let text = std::fs::read_to_string(path).with_context(|| {
        format!(
            "reading {}: the adapter's config is the manifest's [config] (give --manifest FILE, or --config FILE)",
            path.display()
        )
    })?;
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let mut config = match table.remove("config") {
        Some(toml::Value::Table(config)) => config,
        Some(_) => bail!("`config` in {} must be a table", path.display()),
        None => toml::Table::new(),
    };
    match table.remove("secrets") {
        Some(toml::Value::Table(secrets)) => {
            crate::exports::manifest::merge_secrets_into(&mut config, secrets)
                .with_context(|| format!("{}", path.display()))?
        }
        Some(_) => bail!("`secrets` in {} must be a table", path.display()),
        None => {}
    }
    let limits = crate::exports::manifest::limits_of_table(table.remove("limits"))
        .with_context(|| format!("{}", path.display()))?;
    Ok((serde_json::to_string(&config)?, limits))
}

/// The limits a run gets, as one line for the author.
fn describe_limits(limits: &Limits) -> String {
    format!(
        "{} s a call, {} MiB of memory, {} MiB of documents, {} log lines / {} KiB",
        limits.deadline.as_secs(),
        limits.memory_bytes >> 20,
        limits.output_bytes >> 20,
        limits.log_lines,
        limits.log_bytes >> 10
    )
}

/// The adapter config as JSON: from JSON, or from TOML (its `[config]` table
/// if it has one, with its `[secrets]` merged in as a host would).
fn read_config(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    if path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"))
    {
        let value: serde_json::Value = serde_json::from_str(&text)
            .with_context(|| format!("{} is not JSON", path.display()))?;
        return Ok(value.to_string());
    }
    let mut table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    let secrets = match table.remove("secrets") {
        Some(toml::Value::Table(secrets)) => Some(secrets),
        Some(_) => bail!("`secrets` in {} must be a table", path.display()),
        None => None,
    };
    let mut config = match table.remove("config") {
        Some(toml::Value::Table(config)) => config,
        Some(_) => bail!("`config` in {} must be a table", path.display()),
        None => table,
    };
    if let Some(secrets) = secrets {
        crate::exports::manifest::merge_secrets_into(&mut config, secrets)
            .with_context(|| format!("{}", path.display()))?;
    }
    Ok(serde_json::to_string(&config)?)
}

/// Loads a usage file into the scratch store; returns the first and last reported times.
async fn load_usage(
    store: &SqliteStore,
    path: &Path,
) -> anyhow::Result<(DateTime<Utc>, DateTime<Utc>)> {
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let catalog = store.meter_catalog().await?;
    let ctx = ValidationContext {
        meters: &catalog,
        now: store.clock().await?,
        may_set_reported_time: true,
        retention_cutoff: None,
    };
    let mut bounds: Option<(DateTime<Utc>, DateTime<Utc>)> = None;
    let mut batch = Vec::new();
    // Indexes are positions in the file, so errors name the record the author can find.
    for (index, record) in read_records(file, FileFormat::of_path(path))?.enumerate() {
        let mut input =
            record?.map_err(|e| anyhow!("record {}: {}: {}", e.index + 1, e.field, e.reason))?;
        if input.reported_time.is_none() {
            input.reported_time.clone_from(&input.usage_end_time);
        }
        let record = input.validate(index, &ctx).map_err(|errors| {
            let e = &errors[0];
            anyhow!("record {}: {}: {}", e.index + 1, e.field, e.reason)
        })?;
        let reported = record.reported_time.expect("set above");
        bounds = Some(bounds.map_or((reported, reported), |(a, b)| {
            (a.min(reported), b.max(reported))
        }));
        batch.push(record);
        if batch.len() == 10_000 {
            store.ingest(std::mem::take(&mut batch)).await?;
        }
    }
    if !batch.is_empty() {
        store.ingest(batch).await?;
    }
    bounds.ok_or_else(|| anyhow!("{} holds no usage records", path.display()))
}
