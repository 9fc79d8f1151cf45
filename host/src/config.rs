//! `tally.toml`: optional settings for `tally serve`. Flags win over the file,
//! the file over the defaults.
//!
//! ```toml
//! data_dir = "/var/lib/tally"
//! database = "postgres://tally@db.internal/tally"  # shared by replicas; default: SQLite in data_dir
//! listen = "0.0.0.0:8080"
//! public_url = "https://usage.cloud.example"   # for nextLink behind a proxy
//! provider_subscription_id = "…"               # the default provider subscription
//! max_body_bytes = 33554432
//! max_records_per_request = 5000               # ingest: records of one request
//! max_hour_parts_per_request = 10000           # ingest: hours they cover in all
//! shutdown_timeout = "20s"                     # on SIGTERM: wait for requests and runs, then exit anyway
//!
//! [http]                                       # the server's limits, see api::server
//! header_read_timeout = "10s"                  # a request head must arrive within this
//! idle_timeout = "60s"                         # a request waiting on a silent client is cut off
//! max_connections = 1024                       # more wait in the listen backlog
//! allowed_hosts = ["usage.internal:8080"]      # Host values nextLinks may use without public_url
//!
//! [exports]                                    # the adapter scheduler
//! tick = "10s"                                 # how often it looks for closed windows
//! concurrency = 4                              # runs at once (each adapter runs its windows in order)
//! retry_base = "30s"                           # first wait after a transient failure; doubles
//! retry_max = "1h"
//! max_attempts = 8
//!
//! [[identity.issuers]]                         # single sign-on: JWTs of this issuer are accepted
//! issuer = "https://login.microsoftonline.com/<tenant>/v2.0"   # exactly the tokens' iss
//! audiences = ["api://tally"]
//! roles_claim = "roles"                        # whose values map to roles:
//! operator = ["Tally.Operator"]
//! subscriptions_claim = "subscriptions"        # optional; else `tally access grant`
//! # see docs/single-sign-on.md and crate::identity::IssuerConfig for every key
//!
//! [retention]                                  # see docs/retention.md
//! usage_events = "400d"                        # by usage end; unset keeps events forever (minimum 2d)
//! prune_every = "1h"                           # how often `tally serve` prunes
//! archive_dir = "/var/lib/tally/archive"       # pruned events written here first (NDJSON, gzip)
//!
//! [compile]                                    # compiling a component at install, in a child process
//! timeout = "120s"                             # stopped past it, the install refused
//! memory_mib = 1024                            # data memory of one compile
//! concurrency = 2                              # compiles at once
//! ```

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use serde::Deserialize;

use crate::api::server::ServerSettings;
use crate::exports::ExportSettings;
use crate::identity::IdentityConfig;
use crate::retention::RetentionSettings;
use crate::sandbox::CompileSettings;

/// The contents of `tally.toml`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    pub data_dir: Option<PathBuf>,
    /// `postgres://…` or `sqlite:PATH`; the embedded database in `data_dir` when absent.
    pub database: Option<String>,
    pub listen: Option<SocketAddr>,
    pub public_url: Option<String>,
    pub provider_subscription_id: Option<String>,
    pub max_body_bytes: Option<usize>,
    /// Most records in one ingest request (default [`crate::usage::batch::DEFAULT_MAX_RECORDS`]).
    pub max_records_per_request: Option<usize>,
    /// Most hour parts in one ingest request (default [`crate::usage::batch::DEFAULT_MAX_HOUR_PARTS`]).
    pub max_hour_parts_per_request: Option<usize>,
    /// How long a stopping host (SIGTERM, Ctrl-C) waits for the requests in
    /// progress to finish and the runs in progress to be stopped and
    /// recorded, before it exits anyway (default
    /// [`crate::cli::DEFAULT_SHUTDOWN_TIMEOUT`]).
    #[serde(default, with = "humantime_serde")]
    pub shutdown_timeout: Option<Duration>,
    #[serde(default)]
    pub exports: ExportSettings,
    /// Bounds on compiling a component at install.
    #[serde(default)]
    pub compile: CompileSettings,
    /// The HTTP server's timeouts, connection limit and accepted host names.
    #[serde(default)]
    pub http: ServerSettings,
    /// The identity providers whose JWTs are accepted (single sign-on).
    #[serde(default)]
    pub identity: IdentityConfig,
    /// How long `usage_events` are kept.
    #[serde(default)]
    pub retention: RetentionSettings,
}

impl Config {
    /// Reads and checks a config file.
    pub fn load(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        let config: Config = toml::from_str(&text)
            .with_context(|| format!("{} is not a valid tally config", path.display()))?;
        config
            .http
            .check()
            .and_then(|()| config.identity.check())
            .and_then(|()| config.retention.check())
            .with_context(|| format!("{} is not a valid tally config", path.display()))?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_full_config_and_refuses_unknown_keys() {
        let config: Config = toml::from_str(
            "data_dir = '/var/lib/tally'\ndatabase = 'postgres://db/tally'\nlisten = '0.0.0.0:8080'\npublic_url = 'https://u.example'\nmax_body_bytes = 1024\n",
        )
        .unwrap();
        assert_eq!(config.listen.unwrap().port(), 8080);
        assert_eq!(config.max_body_bytes, Some(1024));
        assert!(toml::from_str::<Config>("lisen = '0.0.0.0:1'").is_err());
        let config: Config =
            toml::from_str("[exports]\ntick = '250ms'\nretry_base = '1s'\n").unwrap();
        assert_eq!(config.exports.tick, std::time::Duration::from_millis(250));
        assert_eq!(config.exports.concurrency, 4);
        let config: Config =
            toml::from_str("[compile]\ntimeout = '2m'\nmemory_mib = 512\n").unwrap();
        assert_eq!(config.compile.timeout, std::time::Duration::from_secs(120));
        assert_eq!(
            (config.compile.memory_mib, config.compile.concurrency),
            (512, 2)
        );
        assert!(toml::from_str::<Config>("[compile]\nmemory = 1\n").is_err());
        let config: Config = toml::from_str(
            "[http]\nheader_read_timeout = '2s'\nmax_connections = 8\nallowed_hosts = ['usage.internal:8080']\n",
        )
        .unwrap();
        assert_eq!(
            config.http.header_read_timeout,
            std::time::Duration::from_secs(2)
        );
        assert_eq!(config.http.idle_timeout, std::time::Duration::from_secs(60));
        assert_eq!(config.http.max_connections, 8);
        config.http.check().unwrap();
        let bad: Config =
            toml::from_str("[http]\nallowed_hosts = ['https://x.example/']\n").unwrap();
        assert!(bad.http.check().is_err());
        assert!(toml::from_str::<Config>("[http]\nheader_timeout = '1s'\n").is_err());
    }
}
