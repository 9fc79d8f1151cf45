//! `tally serve`: run the host.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::{DEFAULT_DATA_DIR, DataDir};
use crate::adapters::{AdapterEngine, Compiler};
use crate::api::{self, AppState, Settings};
use crate::config::Config;
use crate::exports::Exports;
use crate::store::Database;
use crate::usage::{BatchLimits, batch};

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
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

/// Runs the host until Ctrl-C or SIGTERM.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
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
    };
    let app = api::router(AppState::new(store, settings).with_exports(exports));
    // The first line on stdout is the address, for scripts and tests that pick port 0.
    println!("tally listening on http://{address}");
    std::io::stdout().flush()?;
    tracing::info!(%address, "serving");
    api::server::serve(listener, app, &config.http, shutdown_signal()).await;
    // Runs cut short here are queued again at the next start, under the same run id.
    scheduler.abort();
    tracing::info!("stopped");
    Ok(())
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

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut terminate =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                .expect("a SIGTERM handler");
        tokio::select! {
            _ = interrupt => {}
            _ = terminate.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
}
