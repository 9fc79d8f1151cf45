//! `tally serve`: run the host.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;

use super::{DEFAULT_DATA_DIR, DataDir};
use crate::api::{self, AppState, Settings};
use crate::config::Config;
use crate::exports::Exports;
use crate::sandbox::{AdapterEngine, Compiler};
use crate::store::Database;
use crate::usage::{BatchLimits, batch};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// How long a stopping host waits for the requests and runs in progress
/// before it exits anyway (`shutdown_timeout` in `tally.toml`): under the
/// 30 s a container orchestrator commonly allows before it kills.
pub const DEFAULT_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);
/// Compiled components, in the data directory.
pub const COMPILED_ADAPTERS_DIR: &str = "compiled-adapters";

/// Arguments of `tally serve`.
#[derive(clap::Args)]
pub struct ServeArgs {
    #[command(flatten)]
    data_dir: DataDir,
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, env = "TALLY_LISTEN")]
    listen: Option<SocketAddr>,
    /// Optional config file (tally.toml).
    #[arg(long)]
    config: Option<PathBuf>,
    /// The URL clients reach this host at: the base of every nextLink (else
    /// the request's Host, when it is the listen address or in `allowed_hosts`).
    #[arg(long)]
    public_url: Option<String>,
}

/// Runs the host until Ctrl-C or SIGTERM, then stops cleanly: the listener
/// closes, the requests in progress finish, the export runs in progress are
/// stopped and queued again at once; past the shutdown timeout the host
/// exits anyway. A second signal exits at once.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let mut signals = StopSignals::listen()?;
    let config = args
        .config
        .as_deref()
        .map(Config::load)
        .transpose()?
        .unwrap_or_default();
    let data_dir = args
        .data_dir
        .data_dir
        .or(config.data_dir)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR));
    let listen = args
        .listen
        .or(config.listen)
        .unwrap_or_else(|| DEFAULT_LISTEN.parse().expect("a valid address"));
    let public_url = args
        .public_url
        .or(config.public_url)
        .map(|url| url::Url::parse(&url).with_context(|| format!("public URL '{url}'")))
        .transpose()?;

    let database = match args
        .data_dir
        .database
        .as_deref()
        .or(config.database.as_deref())
    {
        Some(text) => Database::parse(text),
        None => Database::Sqlite(data_dir.clone()),
    };
    // The data directory and all the host writes there are the account's own.
    crate::store::private_files::private_umask();
    crate::store::private_files::create_dir(&data_dir)?;
    if let Some(dir) = &config.retention.archive_dir {
        // A directory tally cannot create would fail every prune; say so now.
        crate::store::private_files::create_dir(dir)
            .context("[retention] archive_dir: pruned events could not be archived there")?;
    }
    let store = database.open().await?;
    tracing::info!(%database, "store open");
    // Compiled adapters live in this host's data directory, also beside a
    // shared database: each replica compiles the stored components for itself,
    // in bounded children of this binary.
    let engine = Arc::new(
        AdapterEngine::new(data_dir.join(COMPILED_ADAPTERS_DIR))?
            .with_compiler(Compiler::this_binary(config.compile)?),
    );
    let exports = Arc::new(Exports::new(store.clone(), engine, config.exports));
    let scheduler = tokio::spawn(exports.clone().run_scheduler());
    let listener = tokio::net::TcpListener::bind(listen)
        .await
        .with_context(|| format!("listening on {listen}"))?;
    let address = listener.local_addr()?;
    if address.ip().is_unspecified() && public_url.is_none() && config.http.allowed_hosts.is_empty()
    {
        tracing::warn!(
            %address,
            "listening on an unspecified address with neither public_url nor [http] allowed_hosts set: \
             usage answers longer than one page are refused (400 InvalidHost), since no nextLink can \
             be built; set public_url (the URL clients reach the host at) or list the names clients \
             use in [http] allowed_hosts"
        );
    }
    let settings = Settings {
        public_url,
        allowed_hosts: allowed_hosts(&config.http.allowed_hosts, address),
        provider_subscription_id: config.provider_subscription_id,
        max_body_bytes: config.max_body_bytes.unwrap_or(api::DEFAULT_MAX_BODY_BYTES),
        ingest_limits: BatchLimits {
            max_records: config
                .max_records_per_request
                .unwrap_or(batch::DEFAULT_MAX_RECORDS),
            max_hour_parts: config
                .max_hour_parts_per_request
                .unwrap_or(batch::DEFAULT_MAX_HOUR_PARTS),
        },
        page_size: api::PAGE_SIZE,
        backend: database.backend(),
        usage_events_retention: config.retention.usage_events,
    };
    let heartbeat = tokio::spawn(replica_heartbeat(store.clone()));
    let pruner = tokio::spawn(crate::retention::run_pruner(
        store.clone(),
        config.retention.clone(),
        exports.metrics.clone(),
    ));
    let identity = crate::identity::Identity::new(&config.identity)?;
    let app = api::router(
        AppState::new(store, settings)
            .with_exports(exports.clone())
            .with_identity(identity),
    );
    // The first line on stdout is the address, for scripts and tests that pick port 0.
    println!("tally listening on http://{address}");
    std::io::stdout().flush()?;
    tracing::info!(%address, "serving");
    let (stop_serving, serving_stopped) = tokio::sync::oneshot::channel::<()>();
    let http = config.http.clone();
    let server = tokio::spawn(async move {
        let stop = async {
            let _ = serving_stopped.await;
        };
        api::server::serve(listener, app, &http, stop).await;
    });

    let signal = signals.next().await;
    let timeout = config.shutdown_timeout.unwrap_or(DEFAULT_SHUTDOWN_TIMEOUT);
    tracing::info!(
        signal,
        ?timeout,
        "stopping: no new connections or runs; waiting for the requests in progress, \
         and stopping the runs in progress (each queued again at once)"
    );
    exports.stop(signal);
    heartbeat.abort();
    pruner.abort();
    let _ = stop_serving.send(());
    let stopped = async {
        let (_, _) = tokio::join!(server, scheduler);
    };
    tokio::select! {
        finished = tokio::time::timeout(timeout, stopped) => match finished {
            Ok(()) => tracing::info!("stopped"),
            Err(_) => tracing::warn!(
                ?timeout,
                "requests or runs still in progress after the shutdown timeout: exiting anyway \
                 (a run cut short is queued again at the next start, or by a replica once its \
                 lease ends)"
            ),
        },
        second = signals.next() => tracing::warn!(
            signal = second,
            "a second signal: exiting without waiting for what is in progress"
        ),
    }
    Ok(())
}

/// How often a replica says it is alive (the console's overview lists the
/// replicas seen in the last [`REPLICA_SEEN_WITHIN`](crate::api::overview::REPLICA_SEEN_WITHIN)).
const HEARTBEAT_EVERY: Duration = Duration::from_secs(30);

/// Records, every [`HEARTBEAT_EVERY`], that this replica is alive.
async fn replica_heartbeat(store: Arc<dyn crate::store::Store>) {
    let replica = crate::store::console::Replica {
        id: format!("{}:{}", host_name(), std::process::id()),
        version: env!("CARGO_PKG_VERSION").to_owned(),
        started_at: crate::clock::now(),
        last_seen: crate::clock::now(),
    };
    let mut every = tokio::time::interval(HEARTBEAT_EVERY);
    loop {
        every.tick().await;
        if let Err(error) = store.replica_alive(replica.clone()).await {
            tracing::warn!(
                error = format!("{error:#}"),
                "could not record that this replica is alive"
            );
        }
    }
}

/// This machine's name, as the kernel knows it.
fn host_name() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .ok()
        .filter(|name| !name.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// The `Host` values nextLinks may be built on: the configured ones, and the
/// listen address itself (with `localhost` for a loopback one) unless it is
/// unspecified (`0.0.0.0`), which no client can reach the host by.
fn allowed_hosts(configured: &[String], address: SocketAddr) -> Vec<String> {
    let mut hosts = configured.to_vec();
    if !address.ip().is_unspecified() {
        hosts.push(address.to_string());
    }
    if address.ip().is_loopback() {
        hosts.push(format!("localhost:{}", address.port()));
    }
    hosts
}

/// The signals that stop the host (SIGTERM, Ctrl-C's SIGINT), listened for
/// from the start: one that arrives before the host serves stops it cleanly
/// too, instead of killing the process.
struct StopSignals {
    #[cfg(unix)]
    terminate: tokio::signal::unix::Signal,
    #[cfg(unix)]
    interrupt: tokio::signal::unix::Signal,
}

impl StopSignals {
    fn listen() -> anyhow::Result<Self> {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            Ok(StopSignals {
                terminate: signal(SignalKind::terminate()).context("listening for SIGTERM")?,
                interrupt: signal(SignalKind::interrupt()).context("listening for SIGINT")?,
            })
        }
        #[cfg(not(unix))]
        Ok(StopSignals {})
    }

    /// Waits for the next signal; returns its name.
    async fn next(&mut self) -> &'static str {
        #[cfg(unix)]
        {
            tokio::select! {
                _ = self.terminate.recv() => "SIGTERM",
                _ = self.interrupt.recv() => "SIGINT",
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
            "Ctrl-C"
        }
    }
}
