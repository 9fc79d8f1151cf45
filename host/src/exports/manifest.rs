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
//! publish_to_tenants = false          # documents written for a subscription are served to its
//!                                     # tenants (tally:billing@0.2.0 and later)
//!
//! [schedule]
//! window = "daily"                    # one run per closed reported-time hour, day or calendar month
//!                                     #   ("hourly", "daily", "monthly"; months are UTC)
//! granularity = "daily"               # usage handed to the adapter by hour or day
//!                                     #   (default: the window's; daily for monthly windows)
//! lag = "2h"                          # wait after a window closes, for late reports
//! start = "2026-11-01T00:00:00Z"      # first window (default: the window the install falls in)
//!
//! [scope]
//! subscriptions = ["*"]               # or a list of subscription ids
//!
//! [limits]                            # each optional; defaults in `sandbox::Limits`
//! deadline_seconds = 60
//! memory_mib = 256
//! output_mib = 256
//! log_lines = 10000
//! log_kib = 1024
//!
//! [config]                            # handed to the adapter as JSON
//! currency = "EUR"
//!
//! [secrets.headers]                   # merged into [config] for the adapter; never shown
//! "X-Api-Key" = "…"
//! ```
//!
//! **Secrets.** `[secrets]` has the shape of `[config]` (tables, string
//! leaves) and is merged into it before the adapter sees its configuration; a
//! key may be in one or the other, not both. The host stores secrets with the
//! manifest but shows the manifest only through [`redact_secrets`], each
//! secret as [`REDACTED`]. An upgrade that gives a secret as [`REDACTED`] keeps
//! the stored value ([`keep_stored_secrets`]), so a shown manifest can be
//! edited and sent back; a secret left out of an upgrade is gone, like any
//! other key.

use std::ops::Range;
use std::time::Duration;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::sandbox::egress::AllowedOrigin;
use crate::sandbox::engine::MAX_MEMORY_BYTES;
use crate::sandbox::{Limits, SubscriptionGrant};
use crate::store::StoreError;
use crate::store::exports::Installation;
use crate::usage::Granularity;
use crate::usage::time::{YEAR_RANGE, parse_time};

use super::windows::WindowSize;

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
/// What a secret looks like when a manifest is shown, and the value that
/// keeps the stored secret in an upgrade.
pub const REDACTED: &str = "***";

/// A parsed, checked manifest. Its `Debug` leaves the configuration out (it
/// holds the secrets).
#[derive(Clone, PartialEq)]
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
    /// How often it exports: one run per closed window of this size.
    pub window: WindowSize,
    /// How the usage it reads is aggregated (never coarser than the window).
    pub granularity: Granularity,
    pub lag: Duration,
    pub start: Option<DateTime<Utc>>,
    pub grant: SubscriptionGrant,
    pub limits: Limits,
    /// Whether the documents the adapter writes for a subscription are
    /// published to that subscription's tenants.
    pub publish_to_tenants: bool,
    /// The `[config]` table with `[secrets]` merged in, as JSON: what the
    /// adapter receives. Never shown.
    pub config_json: String,
    /// `config_json` with every secret as [`REDACTED`]: what may be shown,
    /// or digested for anyone to compare (a run's provenance).
    pub shown_config_json: String,
    /// Secrets given as [`REDACTED`] (an upgrade keeping stored values), by path.
    pub redacted_secrets: Vec<String>,
}

impl std::fmt::Debug for Manifest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manifest")
            .field("name", &self.name)
            .field("version", &self.version)
            .field("world_version", &self.world_version)
            .field("sha256", &self.sha256)
            .finish_non_exhaustive()
    }
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
    #[serde(default)]
    publish_to_tenants: bool,
    schedule: RawSchedule,
    #[serde(default)]
    scope: RawScope,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    config: toml::Table,
    #[serde(default)]
    secrets: toml::Table,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSchedule {
    window: WindowSize,
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
    /// The manifest `installation` was stored with, parsed and checked again.
    /// One that no longer passes (an older host stored it, or it was altered
    /// in the database) is [`StoreError::InvalidStoredManifest`], naming the
    /// installation and the first line of what is wrong.
    pub fn of_installation(installation: &Installation) -> Result<Self, StoreError> {
        Self::parse(&installation.manifest).map_err(|error| {
            let detail = format!("{error:#}");
            StoreError::InvalidStoredManifest {
                installation: installation.name.clone(),
                detail: detail.lines().next().unwrap_or_default().to_owned(),
            }
        })
    }

    /// Parses and checks a manifest; errors name the field at fault.
    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let raw: Raw = toml::from_str(text).map_err(|e| invalid_toml(text, &e))?;
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
        let window = raw.schedule.window;
        let granularity = raw
            .schedule
            .granularity
            .map_or(window.default_granularity(), Granularity::from);
        if !window.allows(granularity) {
            bail!("schedule: a daily granularity needs daily windows or longer (daily or monthly)");
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
                let start = parse_time(text).with_context(|| {
                    format!("schedule.start '{text}' is not an ISO-8601 time {YEAR_RANGE}")
                })?;
                if !window.is_boundary(start) {
                    bail!("schedule.start {start} is not on a {window} window boundary");
                }
                Ok(start)
            })
            .transpose()?;
        let grant = scope(&raw.scope.subscriptions)?;
        let limits = limits(&raw.limits)?;
        if raw.publish_to_tenants && !world_writes_owned_documents(&world_version) {
            bail!(
                "publish_to_tenants needs tally:billing@{OWNED_DOCUMENTS_WORLD}: \
                 0.1 adapters write no per-subscription documents"
            );
        }
        let mut config = raw.config;
        let mut shown_config = config.clone();
        let shown_secrets = redacted_leaves(&raw.secrets);
        let mut redacted_secrets = Vec::new();
        merge_secrets(&mut config, raw.secrets, "secrets", &mut redacted_secrets)?;
        merge_secrets(&mut shown_config, shown_secrets, "secrets", &mut Vec::new())?;
        let config_json = serde_json::to_string(&config)?;
        let shown_config_json = serde_json::to_string(&shown_config)?;
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
            publish_to_tenants: raw.publish_to_tenants,
            config_json,
            shown_config_json,
            redacted_secrets,
        })
    }

    /// Refuses a manifest that still holds a secret as [`REDACTED`]: one the
    /// host could not fill in from a stored manifest.
    pub fn check_secrets_given(&self) -> anyhow::Result<()> {
        match self.redacted_secrets.first() {
            Some(path) => bail!(
                "{path} is '{REDACTED}', which stands for a stored secret: give its value \
                 (only an upgrade of an installation that has {path} may keep it this way)"
            ),
            None => Ok(()),
        }
    }
}

/// The first contract version whose adapters write documents for a
/// subscription (`append-for`).
pub const OWNED_DOCUMENTS_WORLD: &str = "0.2.0";

/// Whether adapters of world `version` (`MAJOR.MINOR.PATCH`) can write
/// documents for a subscription: 0.2 and later.
fn world_writes_owned_documents(version: &str) -> bool {
    let parts = |text: &str| -> Vec<u64> {
        text.split('.')
            .map(|part| part.parse().unwrap_or(0))
            .collect()
    };
    parts(version) >= parts(OWNED_DOCUMENTS_WORLD)
}

/// A `[secrets]` table with every string leaf as [`REDACTED`] (anything
/// else is left for [`merge_secrets`] to refuse).
fn redacted_leaves(secrets: &toml::Table) -> toml::Table {
    secrets
        .iter()
        .map(|(key, value)| {
            let shown = match value {
                toml::Value::Table(inner) => toml::Value::Table(redacted_leaves(inner)),
                toml::Value::String(_) => toml::Value::String(REDACTED.into()),
                other => other.clone(),
            };
            (key.clone(), shown)
        })
        .collect()
}

/// A TOML error by line and column, without the excerpt of the manifest that
/// `toml`'s message quotes (it could be a secret's line).
fn invalid_toml(text: &str, error: &toml::de::Error) -> anyhow::Error {
    let message = error.message().trim_end();
    match error.span() {
        Some(span) => {
            let before = &text.as_bytes()[..span.start.min(text.len())];
            let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
            let column = before.iter().rev().take_while(|&&b| b != b'\n').count() + 1;
            anyhow::anyhow!("the manifest is not valid: line {line}, column {column}: {message}")
        }
        None => anyhow::anyhow!("the manifest is not valid: {message}"),
    }
}

/// Merges the `[secrets]` table `secrets` (at `path`) into `config`: tables
/// merge, string leaves are added, and a key present in both is refused.
/// The paths of secrets given as [`REDACTED`] are added to `redacted`.
fn merge_secrets(
    config: &mut toml::Table,
    secrets: toml::Table,
    path: &str,
    redacted: &mut Vec<String>,
) -> anyhow::Result<()> {
    for (key, value) in secrets {
        let path = format!("{path}.{key}");
        match (value, config.get_mut(&key)) {
            (toml::Value::Table(inner), Some(toml::Value::Table(existing))) => {
                merge_secrets(existing, inner, &path, redacted)?;
            }
            (_, Some(_)) => bail!("{path} is also in [config]: a key is secret or not, not both"),
            (toml::Value::Table(inner), None) => {
                let mut table = toml::Table::new();
                merge_secrets(&mut table, inner, &path, redacted)?;
                config.insert(key, toml::Value::Table(table));
            }
            (toml::Value::String(secret), None) => {
                if secret == REDACTED {
                    redacted.push(path);
                }
                config.insert(key, toml::Value::String(secret));
            }
            (_, None) => bail!("{path} must be a string (or a table of them)"),
        }
    }
    Ok(())
}

/// Merges a `[secrets]` table into a `[config]` table, as an installation's
/// adapter gets them (for `tally adapter test` on a manifest).
pub fn merge_secrets_into(config: &mut toml::Table, secrets: toml::Table) -> anyhow::Result<()> {
    merge_secrets(config, secrets, "secrets", &mut Vec::new())
}

/// The manifest `text` as shown to anyone: each string under `[secrets]`
/// replaced by `"***"`, the rest (comments included) as written. A text that
/// does not parse is not shown at all.
pub fn redact_secrets(text: &str) -> String {
    match secret_spans(text) {
        Ok(spans) => splice(
            text,
            spans.into_iter().map(|(_, span)| (span, quoted(REDACTED))),
        ),
        Err(_) => "# (this manifest cannot be read, so it is not shown)\n".into(),
    }
}

/// The manifest `text` of an upgrade, each secret given as [`REDACTED`]
/// replaced by the value of the same secret in the `stored` manifest. A
/// secret the stored manifest does not have stays [`REDACTED`], which
/// [`Manifest::check_secrets_given`] then refuses, naming it.
pub fn keep_stored_secrets(text: &str, stored: &str) -> anyhow::Result<String> {
    let stored: toml::Table =
        toml::from_str(stored).context("the stored manifest is unreadable")?;
    let Ok(spans) = secret_spans(text) else {
        return Ok(text.to_owned()); // parse says what is wrong
    };
    let kept = spans.into_iter().filter_map(|(path, span)| {
        if text.get(span.clone()).map(unquote).as_deref() != Some(REDACTED) {
            return None;
        }
        let mut value = stored.get("secrets")?;
        for key in &path {
            value = value.as_table()?.get(key)?;
        }
        Some((span, quoted(value.as_str()?)))
    });
    Ok(splice(text, kept))
}

/// The key path and byte range of every string leaf under `[secrets]`.
fn secret_spans(text: &str) -> anyhow::Result<Vec<(Vec<String>, Range<usize>)>> {
    let document = toml::de::DeTable::parse(text).map_err(|e| invalid_toml(text, &e))?;
    let mut spans = Vec::new();
    if let Some(secrets) = document.get_ref().get("secrets") {
        collect_spans(secrets, &mut Vec::new(), &mut spans);
    }
    Ok(spans)
}

fn collect_spans(
    value: &toml::Spanned<toml::de::DeValue<'_>>,
    path: &mut Vec<String>,
    spans: &mut Vec<(Vec<String>, Range<usize>)>,
) {
    match value.get_ref() {
        toml::de::DeValue::Table(table) => {
            for (key, inner) in table {
                path.push(key.get_ref().to_string());
                collect_spans(inner, path, spans);
                path.pop();
            }
        }
        toml::de::DeValue::String(_) => spans.push((path.clone(), value.span())),
        // Not a secret: parse refuses it, and it is not shown hidden.
        _ => spans.push((path.clone(), value.span())),
    }
}

/// `text` with each range replaced, ranges in any order and disjoint.
fn splice(text: &str, replacements: impl Iterator<Item = (Range<usize>, String)>) -> String {
    let mut replacements: Vec<_> = replacements.collect();
    replacements.sort_by_key(|(span, _)| std::cmp::Reverse(span.start));
    let mut out = text.to_owned();
    for (span, with) in replacements {
        out.replace_range(span, &with);
    }
    out
}

/// A TOML basic string holding `value`.
fn quoted(value: &str) -> String {
    toml::Value::String(value.to_owned()).to_string()
}

/// The string a TOML string literal holds (or the text itself).
fn unquote(literal: &str) -> String {
    toml::from_str::<toml::Table>(&format!("v = {literal}"))
        .ok()
        .and_then(|t| t.get("v").and_then(|v| v.as_str().map(str::to_owned)))
        .unwrap_or_else(|| literal.to_owned())
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

/// A manifest's `[limits]` table (`None`: absent), checked as
/// [`Manifest::parse`] checks it: `tally adapter test` reads only a
/// manifest's config and limits, and runs under the limits the host would.
pub fn limits_of_table(table: Option<toml::Value>) -> anyhow::Result<Limits> {
    let raw: RawLimits = match table {
        Some(table) => table.try_into().context("limits")?,
        None => RawLimits::default(),
    };
    limits(&raw)
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
        assert_eq!(m.window, WindowSize::Daily);
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
    fn monthly_windows_read_daily_by_default_or_hourly_when_asked() {
        let monthly = |extra: &str| {
            Manifest::parse(&manifest(&format!(
                "[schedule]\nwindow = 'monthly'\n{extra}"
            )))
        };
        let m = monthly("start = '2026-02-01T00:00:00Z'\n").unwrap();
        assert_eq!(m.window, WindowSize::Monthly);
        assert_eq!(m.granularity, Granularity::Daily);
        assert_eq!(m.start, Some("2026-02-01T00:00:00Z".parse().unwrap()));
        let m = monthly("granularity = 'hourly'\n").unwrap();
        assert_eq!(m.granularity, Granularity::Hourly);
        for (extra, expected) in [
            (
                "start = '2026-02-02T00:00:00Z'\n",
                "not on a monthly window boundary",
            ),
            ("granularity = 'monthly'\n", "unknown variant `monthly`"),
        ] {
            let error = format!("{:#}", monthly(extra).unwrap_err());
            assert!(error.contains(expected), "{expected:?} not in {error:?}");
        }
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
                "in the years 2000 to 9999",
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

    const WEBHOOK: &str = "[schedule]\nwindow = 'daily'\n\
        [config]\nendpoint = 'https://billing.example/v1'\n\
        [config.headers]\n'X-Source' = 'tally'\n\
        # the billing API's key\n\
        [secrets.headers]\n'X-Api-Key' = \"k3y-\\\"quoted\\\"\" # kept out of sight\n\
        [secrets]\ntoken = '''s3cret'''\n";

    #[test]
    fn secrets_reach_the_adapters_config_merged_into_its_tables() {
        let m = Manifest::parse(&manifest(WEBHOOK)).unwrap();
        let config: serde_json::Value = serde_json::from_str(&m.config_json).unwrap();
        assert_eq!(config["headers"]["X-Api-Key"], "k3y-\"quoted\"");
        assert_eq!(config["headers"]["X-Source"], "tally");
        assert_eq!(config["token"], "s3cret");
        assert!(m.redacted_secrets.is_empty());
        assert!(!format!("{m:?}").contains("k3y"));
        // The shown config: the same tables, every secret as "***".
        let shown: serde_json::Value = serde_json::from_str(&m.shown_config_json).unwrap();
        assert_eq!(shown["headers"]["X-Api-Key"], REDACTED);
        assert_eq!(shown["headers"]["X-Source"], "tally");
        assert_eq!(shown["token"], REDACTED);
        assert!(!m.shown_config_json.contains("s3cret"));
    }

    #[test]
    fn only_a_world_with_owned_documents_publishes_to_tenants() {
        let publishing = "publish_to_tenants = true\n[schedule]\nwindow = 'daily'\n";
        let error = format!("{:#}", Manifest::parse(&manifest(publishing)).unwrap_err());
        assert!(
            error.contains("publish_to_tenants needs tally:billing@0.2.0"),
            "{error}"
        );
        for world in ["0.2.0", "0.2.1", "0.10.0", "1.0.0"] {
            let text = manifest(publishing).replace("@0.1.0", &format!("@{world}"));
            assert!(
                Manifest::parse(&text).unwrap().publish_to_tenants,
                "{world}"
            );
        }
        let quiet = Manifest::parse(&manifest("[schedule]\nwindow = 'daily'\n")).unwrap();
        assert!(!quiet.publish_to_tenants);
    }

    #[test]
    fn a_shown_manifest_hides_every_secret_and_keeps_the_rest() {
        let text = manifest(WEBHOOK);
        let shown = redact_secrets(&text);
        assert!(
            !shown.contains("k3y") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert!(shown.contains("# kept out of sight") && shown.contains("'X-Source' = 'tally'"));
        let shown = Manifest::parse(&shown).unwrap();
        assert_eq!(
            shown.redacted_secrets,
            ["secrets.headers.X-Api-Key", "secrets.token"]
        );
        assert!(shown.check_secrets_given().is_err());
    }

    #[test]
    fn an_upgrade_keeps_stored_secrets_given_as_redacted_and_takes_new_ones() {
        let stored = manifest(WEBHOOK);
        let edited = redact_secrets(&stored).replace("\"***\" # kept", "'n3w' # kept");
        let upgraded = Manifest::parse(&keep_stored_secrets(&edited, &stored).unwrap()).unwrap();
        upgraded.check_secrets_given().unwrap();
        let config: serde_json::Value = serde_json::from_str(&upgraded.config_json).unwrap();
        assert_eq!(config["headers"]["X-Api-Key"], "n3w");
        assert_eq!(config["token"], "s3cret");

        // A secret the installation never had cannot be "kept".
        let new = format!("{edited}extra = '***'\n");
        let error = Manifest::parse(&keep_stored_secrets(&new, &stored).unwrap())
            .unwrap()
            .check_secrets_given()
            .unwrap_err();
        assert!(error.to_string().contains("secrets.extra"), "{error}");
    }

    #[test]
    fn secrets_are_strings_apart_from_config_and_never_quoted_in_errors() {
        let clash = "[schedule]\nwindow = 'daily'\n[config]\nkey = 'a'\n[secrets]\nkey = 'b'\n";
        let error = format!("{:#}", Manifest::parse(&manifest(clash)).unwrap_err());
        assert!(error.contains("secrets.key is also in [config]"), "{error}");
        let number = "[schedule]\nwindow = 'daily'\n[secrets]\nkey = 5\n";
        let error = format!("{:#}", Manifest::parse(&manifest(number)).unwrap_err());
        assert!(error.contains("secrets.key must be a string"), "{error}");
        let broken = "[schedule]\nwindow = 'daily'\n[secrets]\nkey = 'hunter2\n";
        let error = format!("{:#}", Manifest::parse(&manifest(broken)).unwrap_err());
        assert!(
            error.contains("line 8, column 15") && !error.contains("hunter2"),
            "{error}"
        );
    }

    /// Each limit an installation may set, at its bounds.
    #[test]
    fn limits_are_taken_up_to_their_caps_and_refused_past_them() {
        let with_limits = |limits: &str| {
            Manifest::parse(&manifest(&format!(
                "[schedule]\nwindow = 'daily'\n[limits]\n{limits}\n"
            )))
        };
        let most = with_limits(
            "deadline_seconds = 3600\nmemory_mib = 1024\noutput_mib = 512\n\
             log_lines = 1000000\nlog_kib = 65536",
        )
        .unwrap()
        .limits;
        assert_eq!(
            most,
            Limits {
                deadline: MAX_DEADLINE,
                memory_bytes: MAX_MEMORY_BYTES,
                output_bytes: MAX_OUTPUT_MIB << 20,
                log_lines: MAX_LOG_LINES,
                log_bytes: MAX_LOG_KIB << 10,
            }
        );
        // A run may keep no log at all.
        let silent = with_limits("log_lines = 0\nlog_kib = 0").unwrap().limits;
        assert_eq!((silent.log_lines, silent.log_bytes), (0, 0));
        for (limit, expected) in [
            ("deadline_seconds = 0", "deadline_seconds must be 1 to 3600"),
            (
                "deadline_seconds = 3601",
                "deadline_seconds must be 1 to 3600",
            ),
            ("memory_mib = 0", "memory_mib must be 1 to 1024"),
            ("output_mib = 0", "output_mib must be 1 to 512"),
            ("output_mib = 513", "output_mib must be 1 to 512"),
            ("log_lines = 1000001", "log_lines must be at most 1000000"),
            ("log_kib = 65537", "log_kib must be at most 65536"),
        ] {
            let error = format!("{:#}", with_limits(limit).unwrap_err());
            assert!(error.contains(expected), "{limit}: {error}");
            let error = format!("{:#}", alone(limit).unwrap_err());
            assert!(error.contains(expected), "alone, {limit}: {error}");
        }
        // The table alone, as `tally adapter test` reads it, gives the same.
        let most_alone = alone(
            "deadline_seconds = 3600\nmemory_mib = 1024\noutput_mib = 512\n\
             log_lines = 1000000\nlog_kib = 65536",
        );
        assert_eq!(most_alone.unwrap(), most);
        assert_eq!(limits_of_table(None).unwrap(), Limits::default());
        assert!(format!("{:#}", alone("cpu = 1").unwrap_err()).contains("unknown field `cpu`"));
    }

    /// A manifest's `[limits]` table alone, through [`limits_of_table`].
    fn alone(limits: &str) -> anyhow::Result<Limits> {
        let mut table: toml::Table = toml::from_str(&format!("[limits]\n{limits}\n")).unwrap();
        limits_of_table(table.remove("limits"))
    }

    #[test]
    fn a_lag_is_at_most_a_week_and_a_scope_is_all_or_ids() {
        let parse = |schedule: &str, scope: &str| {
            Manifest::parse(&manifest(&format!(
                "[schedule]\nwindow = 'daily'\n{schedule}\n[scope]\nsubscriptions = {scope}\n"
            )))
        };
        assert_eq!(parse("lag = '7d'", "['*']").unwrap().lag, MAX_LAG);
        let error = format!("{:#}", parse("lag = '7d 1s'", "['*']").unwrap_err());
        assert!(error.contains("backfill"), "{error}");
        let error = format!("{:#}", parse("", "['*', 'sub-a']").unwrap_err());
        assert!(error.contains("cannot be mixed"), "{error}");
    }
}
