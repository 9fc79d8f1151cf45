//! The `tally` command line: `serve`, `token`, `access`, `import`, `meters`, `migrate`, `prune`, `adapter`
//! (an author's local test), `adapters` and `export` (a running host's
//! installs and runs).

mod access;
mod author;
mod client;
mod compile_child;
mod import;
mod installations;
mod meters;
mod migrate;
mod printable;
mod prune;
mod run_show;
mod runs;
mod serve;
mod token;
mod verify;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand, ValueEnum};

pub use serve::DEFAULT_SHUTDOWN_TIMEOUT;

use crate::store::{Database, Store};

/// Where the embedded store lives unless told otherwise.
pub const DEFAULT_DATA_DIR: &str = "tally-data";

#[derive(Parser)]
#[command(
    name = "tally",
    version,
    about = "Usage metering and billing adapters for private clouds"
)]
struct Cli {
    /// Log format on standard error (level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the host: ingest, usage API and adapters, on the embedded store or PostgreSQL.
    Serve(serve::ServeArgs),
    /// Manage API tokens.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Grant an identity provider's subjects subscriptions (single sign-on).
    #[command(subcommand)]
    Access(access::AccessCommand),
    /// Import usage from a CSV or NDJSON file (backfills, migrations).
    Import(import::ImportArgs),
    /// The meter catalog: list it, or add meters from a CSV file.
    #[command(subcommand)]
    Meters(meters::MetersCommand),
    /// Move an embedded store to PostgreSQL: `--from sqlite:PATH --to postgres://…`.
    Migrate(migrate::MigrateArgs),
    /// Delete usage events past their retention once (aggregates are kept); `serve` does it hourly.
    Prune(prune::PruneArgs),
    /// Billing adapters for authors: create a project, run one locally against sample usage.
    #[command(subcommand)]
    Adapter(author::AdapterCommand),
    /// Installed adapters of a running host: install, list, show, upgrade…
    #[command(subcommand)]
    Adapters(installations::AdaptersCommand),
    /// Exports of a running host: run, re-run or backfill windows; show a run; verify windows.
    #[command(subcommand)]
    Export(runs::ExportCommand),
    /// The host's compiler child: a component on stdin, its artifact on stdout.
    #[command(hide = true)]
    CompileComponent(compile_child::CompileArgs),
}

/// Runs the command line; the exit code says whether it worked.
pub fn main() -> ExitCode {
    let Cli {
        log_format,
        command,
    } = Cli::parse();
    // The compiler child starts nothing it does not need: no runtime, no logging.
    if let Command::CompileComponent(args) = command {
        return compile_child::run(args);
    }
    init_logging(log_format);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    let outcome = runtime.block_on(async {
        match command {
            Command::Serve(args) => serve::run(args).await,
            Command::Token(command) => token::run(command).await,
            Command::Access(command) => access::run(command).await,
            Command::Import(args) => import::run(args).await,
            Command::Meters(command) => meters::run(command).await,
            Command::Migrate(args) => migrate::run(args).await,
            Command::Prune(args) => prune::run(args).await,
            Command::Adapter(command) => author::run(command).await,
            Command::Adapters(command) => installations::run(command).await,
            Command::Export(command) => runs::run(command).await,
            Command::CompileComponent(_) => unreachable!("handled before the runtime starts"),
        }
    });
    // What is still running has had its time (a stopping host waited out its
    // shutdown timeout): an adapter run on a blocking thread must not hold the exit.
    runtime.shutdown_background();
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // Error messages quote the host, adapters and files: no escape sequences.
            eprintln!(
                "error: {}",
                printable::printable_lines(&format!("{error:#}"))
            );
            ExitCode::FAILURE
        }
    }
}

fn init_logging(format: LogFormat) {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    // Colours only on a terminal: a log file or journal gets plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// `--data-dir` and `--database`, shared by the commands that open the store.
#[derive(clap::Args, Clone)]
struct DataDir {
    /// Directory of the embedded database (and of this host's compiled adapters).
    #[arg(long, env = "TALLY_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// The store, when not the embedded database in the data directory:
    /// `postgres://user@host:port/database` (shared by replicas) or `sqlite:PATH`.
    #[arg(long, env = "TALLY_DATABASE", hide_env_values = true)]
    database: Option<String>,
}

impl DataDir {
    fn or_default(&self) -> PathBuf {
        self.data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR))
    }

    /// The store `--database` names, else the data directory's.
    fn database(&self) -> Database {
        match &self.database {
            Some(text) => Database::parse(text),
            None => Database::Sqlite(self.or_default()),
        }
    }

    /// Opens the store.
    async fn open_store(&self) -> anyhow::Result<Arc<dyn Store>> {
        self.database().open().await
    }
}
