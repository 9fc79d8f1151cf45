//! The installation manifest (TOML): which component, what it may do, when it
//! runs and with which configuration.
//!
//! ```toml
//! name = "chargeback"                 # installation name: a-z, 0-9, '-', at most 64
//! version = "0.1.0"                   # the adapter's version
//! world = "tally:billing@0.1.0"       # the contract version it targets
//! sha256 = "9f2c…"                    # pins the component's bytes
//! component = "chargeback-csv.wasm"   # for the CLI: where the component is, relative to this file
//! allowed_outbound_hosts = []         # origins `send` may reach: "https://billing.example.com"
//!
//! [schedule]
//! window = "daily"                    # one run per closed reported-time hour or day
//! granularity = "daily"               # usage handed to the adapter by hour or day (default: the window)
//! lag = "2h"                          # wait after a window closes, for late reports
//! start = "2026-11-01T00:00:00Z"      # first window (default: the window the install falls in)
//!
//! [scope]
//! subscriptions = ["*"]               # or a list of subscription ids
//!
//! [limits]                            # each optional; defaults in `adapters::Limits`
//! deadline_seconds = 60
//! memory_mib = 256
//! output_mib = 256
//! log_lines = 10000
//! log_kib = 1024
//!
//! [config]                            # handed to the adapter as JSON
//! currency = "EUR"
//! ```

use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::adapters::egress::AllowedOrigin;
use crate::adapters::engine::MAX_MEMORY_BYTES;
use crate::adapters::{Limits, SubscriptionGrant};
use crate::usage::Granularity;
use crate::usage::time::parse_time;

/// Longest installation name.
pub const MAX_NAME_LEN: usize = 64;
/// Longest lag: later than this, usage is not "late" but a backfill.
pub const MAX_LAG: Duration = Duration::from_secs(7 * 86_400);
/// Longest deadline an installation may ask for.
pub const MAX_DEADLINE: Duration = Duration::from_secs(3_600);
/// Most output a run may write, in MiB (a document is one database value,
/// which SQLite caps at 1 GB; documents are held in memory until the run ends).
pub const MAX_OUTPUT_MIB: u64 = 512;
/// Most log lines a run may keep.
pub const MAX_LOG_LINES: usize = 1_000_000;
/// Most log KiB a run may keep.
pub const MAX_LOG_KIB: usize = 64 << 10;

/// A parsed, checked manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    /// The version of `tally:billing` targeted, e.g. `0.1.0`.
    pub world_version: String,
    /// Lower-case hex.
    pub sha256: String,
    /// Where the component file is, relative to the manifest (CLI only).
    pub component: Option<String>,
    pub allowed_outbound_hosts: Vec<AllowedOrigin>,
    pub window: Granularity,
    pub granularity: Granularity,
    pub lag: Duration,
    pub start: Option<DateTime<Utc>>,
    pub grant: SubscriptionGrant,
    pub limits: Limits,
    /// The `[config]` table as JSON.
    pub config_json: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: String,
    version: String,
    world: String,
    sha256: String,
    component: Option<String>,
    #[serde(default)]
    allowed_outbound_hosts: Vec<String>,
    schedule: RawSchedule,
    #[serde(default)]
    scope: RawScope,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    config: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    window: Cadence,
    granularity: Option<Cadence>,
    #[serde(default = "default_lag")]
    lag: String,
    start: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScope {
    subscriptions: Vec<String>,
}

impl Default for RawScope {
    fn default() -> Self {
        RawScope {
            subscriptions: vec!["*".into()],
        }
    }
}

#[derive(Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    deadline_seconds: Option<u64>,
    memory_mib: Option<usize>,
    output_mib: Option<u64>,
    log_lines: Option<usize>,
    log_kib: Option<usize>,
}

#[derive(Clone, Copy, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
enum Cadence {
    Hourly,
    Daily,
}

impl From<Cadence> for Granularity {
    fn from(cadence: Cadence) -> Self {
        match cadence {
            Cadence::Hourly => Granularity::Hourly,
            Cadence::Daily => Granularity::Daily,
        }
    }
}

fn default_lag() -> String {
    "1h".into()
}

impl Manifest {
    /// Parses and checks a manifest; errors name the field at fault.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: Raw = toml::from_str(text).context("the manifest is not valid")?;
        check_name(&raw.name)?;
        let world_version = raw
            .world
            .strip_prefix("tally:billing@")
            .filter(|v| semver_like(v))
            .with_context(|| {
                format!(
                    "world '{}' is not of the form tally:billing@MAJOR.MINOR.PATCH",
                    raw.world
                )
            })?
            .to_owned();
        let sha256 = raw.sha256.to_ascii_lowercase();
        if sha256.len() != 64 || !sha256.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("sha256 must be 64 hex digits (the component's SHA-256)");
        }
        let allowed_outbound_hosts = raw
            .allowed_outbound_hosts
            .iter()
            .map(|origin| AllowedOrigin::parse(origin))
            .collect::<anyhow::Result<_>>()
            .context("allowed_outbound_hosts")?;
        let window = Granularity::from(raw.schedule.window);
        let granularity = raw.schedule.granularity.map_or(window, Granularity::from);
        if granularity == Granularity::Daily && window == Granularity::Hourly {
            bail!("schedule: a daily granularity needs daily windows");
        }
        let lag = humantime::parse_duration(&raw.schedule.lag)
            .with_context(|| format!("schedule.lag '{}' is not a duration", raw.schedule.lag))?;
        if lag > MAX_LAG {
            bail!("schedule.lag is over {MAX_LAG:?}: run older windows as a backfill instead");
        }
        let start = raw
            .schedule
            .start
            .as_deref()
            .map(|text| {
                let start = parse_time(text)
                    .with_context(|| format!("schedule.start '{text}' is not an ISO-8601 time"))?;
                if !window.is_boundary(start) {
                    bail!("schedule.start {start} is not on a {window:?} window boundary");
                }
                if start < super::windows::earliest() {
                    bail!("schedule.start {start} is before the year 2000");
                }
                Ok(start)
            })
            .transpose()?;
        let grant = scope(&raw.scope.subscriptions)?;
        let limits = limits(&raw.limits)?;
        let config_json = serde_json::to_string(&raw.config)?;
        Ok(Manifest {
            name: raw.name,
            version: raw.version,
            world_version,
            sha256,
            component: raw.component,
            allowed_outbound_hosts,
            window,
            granularity,
            lag,
            start,
            grant,
            limits,
            config_json,
        })
    }
}

fn check_name(name: &str) -> anyhow::Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !name.starts_with('-');
    if !valid {
        bail!(
            "name '{name}' must be 1 to {MAX_NAME_LEN} of a-z, 0-9 and '-', not starting with '-'"
        );
    }
    Ok(())
}

fn semver_like(version: &str) -> bool {
    let parts: Vec<&str> = version.split('.').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn scope(subscriptions: &[String]) -> anyhow::Result<SubscriptionGrant> {
    match subscriptions {
        [] => bail!("scope.subscriptions is empty: list subscription ids, or [\"*\"] for all"),
        [all] if all == "*" => Ok(SubscriptionGrant::All),
        ids if ids.iter().any(|id| id == "*") => {
            bail!("scope.subscriptions: \"*\" cannot be mixed with ids")
        }
        ids => Ok(SubscriptionGrant::Only(ids.to_vec())),
    }
}

fn limits(raw: &RawLimits) -> anyhow::Result<Limits> {
    let mut limits = Limits::default();
    if let Some(seconds) = raw.deadline_seconds {
        limits.deadline = Duration::from_secs(seconds);
        if seconds == 0 || limits.deadline > MAX_DEADLINE {
            bail!(
                "limits.deadline_seconds must be 1 to {}",
                MAX_DEADLINE.as_secs()
            );
        }
    }
    if let Some(mib) = raw.memory_mib {
        if mib == 0 || mib > MAX_MEMORY_BYTES >> 20 {
            bail!("limits.memory_mib must be 1 to {}", MAX_MEMORY_BYTES >> 20);
        }
        limits.memory_bytes = mib << 20;
    }
    if let Some(mib) = raw.output_mib {
        if !(1..=MAX_OUTPUT_MIB).contains(&mib) {
            bail!("limits.output_mib must be 1 to {MAX_OUTPUT_MIB}");
        }
        limits.output_bytes = mib << 20;
    }
    if let Some(lines) = raw.log_lines {
        if lines > MAX_LOG_LINES {
            bail!("limits.log_lines must be at most {MAX_LOG_LINES}");
        }
        limits.log_lines = lines;
    }
    if let Some(kib) = raw.log_kib {
        if kib > MAX_LOG_KIB {
            bail!("limits.log_kib must be at most {MAX_LOG_KIB}");
        }
        limits.log_bytes = kib << 10;
    }
    Ok(limits)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SHA: &str = "9f2c0000000000000000000000000000000000000000000000000000000000aa";

    fn manifest(extra: &str) -> String {
        format!(
            "name = 'chargeback'\nversion = '0.1.0'\nworld = 'tally:billing@0.1.0'\nsha256 = '{SHA}'\n{extra}"
        )
    }

    #[test]
    fn a_full_manifest_parses_with_its_defaults() {
        let text = manifest(
            "allowed_outbound_hosts = ['https://billing.example.com', 'http://127.0.0.1:9000']\n\
             [schedule]\nwindow = 'daily'\nlag = '2h 30m'\nstart = '2026-11-01T00:00:00Z'\n\
             [scope]\nsubscriptions = ['sub-a', 'sub-b']\n\
             [limits]\ndeadline_seconds = 30\nmemory_mib = 64\n\
             [config]\ncurrency = 'EUR'\nrates = { 'meter-a' = 0.5 }\n",
        );
        let m = Manifest::parse(&text).unwrap();
        assert_eq!(m.world_version, "0.1.0");
        assert_eq!(m.window, Granularity::Daily);
        assert_eq!(m.granularity, Granularity::Daily);
        assert_eq!(m.lag, Duration::from_secs(9_000));
        assert_eq!(m.allowed_outbound_hosts.len(), 2);
        assert_eq!(
            m.allowed_outbound_hosts[0].to_string(),
            "https://billing.example.com"
        );
        assert_eq!(
            m.grant,
            SubscriptionGrant::Only(vec!["sub-a".into(), "sub-b".into()])
        );
        assert_eq!(m.limits.deadline, Duration::from_secs(30));
        assert_eq!(m.limits.memory_bytes, 64 << 20);
        assert_eq!(m.limits.output_bytes, Limits::default().output_bytes);
        let config: serde_json::Value = serde_json::from_str(&m.config_json).unwrap();
        assert_eq!(config["rates"]["meter-a"], 0.5);
    }

    #[test]
    fn a_minimal_manifest_reads_everything_hourly_after_an_hour() {
        let m = Manifest::parse(&manifest("[schedule]\nwindow = 'hourly'\n")).unwrap();
        assert_eq!(m.granularity, Granularity::Hourly);
        assert_eq!(m.lag, Duration::from_secs(3_600));
        assert_eq!(m.grant, SubscriptionGrant::All);
        assert_eq!(m.config_json, "{}");
        assert!(m.start.is_none());
    }

    #[test]
    fn mistakes_are_refused_naming_the_field() {
        let cases = [
            (manifest("[schedule]\nwindow = 'weekly'\n"), "weekly"),
            (
                manifest("[schedule]\nwindow = 'daily'\nlag = 'soon'\n"),
                "schedule.lag",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\nstart = '2026-11-01T05:00:00Z'\n"),
                "boundary",
            ),
            (
                manifest(
                    "allowed_outbound_hosts = ['https://x.example/path']\n[schedule]\nwindow = 'daily'\n",
                ),
                "without path",
            ),
            (
                manifest("allowed_outbound_hosts = ['ftp://x.example']\n[schedule]\nwindow = 'daily'\n"),
                "http and https",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n[scope]\nsubscriptions = []\n"),
                "scope.subscriptions",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n[limits]\nmemory_mib = 4096\n"),
                "memory_mib",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\nsurprise = 1\n"),
                "surprise",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\nstart = '0026-11-01T00:00:00Z'\n"),
                "before the year 2000",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n[limits]\noutput_mib = 100000\n"),
                "output_mib",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n[limits]\nmemory_mib = 18446744073709551615\n"),
                "memory_mib",
            ),
            (
                manifest("[schedule]\nwindow = 'hourly'\ngranularity = 'daily'\n"),
                "daily windows",
            ),
            (
                "name = 'Bad Name'\nversion = '1'\nworld = 'tally:billing@0.1.0'\nsha256 = 'x'\n[schedule]\nwindow = 'daily'\n"
                    .into(),
                "name 'Bad Name'",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n").replace("tally:billing@0.1.0", "other@1"),
                "tally:billing@MAJOR.MINOR.PATCH",
            ),
            (
                manifest("[schedule]\nwindow = 'daily'\n").replace(SHA, "abc"),
                "64 hex digits",
            ),
        ];
        for (text, expected) in cases {
            let error = format!("{:#}", Manifest::parse(&text).unwrap_err());
            assert!(
                error.contains(expected),
                "{expected:?} not in {error:?}\n{text}"
            );
        }
    }
}
