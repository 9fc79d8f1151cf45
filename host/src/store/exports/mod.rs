//! What the store keeps for billing adapters: components, installations,
//! export runs and the documents of succeeded runs.
//!
//! A run exports one reported-time window of one installation. The first
//! export of a window is revision 0; the database allows only one, which is
//! what makes a window export once however often the scheduler looks at it.
//! An operator's re-run of an exported window is a correction: revision 1, 2…
//!
//! The state machine of runs (claims, leases fenced by a claim count,
//! watermarks, requeues, corrections) is written once for both databases:
//! `rules` decides what needs no database, `sql` holds the statements and
//! `ops` runs them over the store's SQL executor (`store::sql`). Each
//! backend's [`ExportStore`] only opens the connection or transaction and
//! calls the operation, so the two cannot drift apart.

pub(crate) mod ops;
mod rules;
mod sql;

use std::time::Duration;

use async_trait::async_trait;

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::store::{CorruptValue, StoreError};
use crate::usage::Granularity;

/// An installation to create or replace. Its `Debug` shows the manifest's
/// size, not its text (it may hold secrets).
#[derive(Clone)]
pub struct NewInstallation {
    pub name: String,
    /// The manifest as the operator wrote it.
    pub manifest: String,
    pub component_sha256: String,
    /// What the adapter said of itself at install: name, version, documents.
    pub description: AdapterDescription,
    /// Where the first window starts (the watermark before any export).
    pub first_window: DateTime<Utc>,
    /// Whether the documents its runs write for a subscription are published
    /// to that subscription's tenants (the manifest's `publish_to_tenants`).
    pub publish_to_tenants: bool,
}

/// An adapter's `describe()`, kept with its installation.
#[derive(Debug, Clone, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
pub struct AdapterDescription {
    pub name: String,
    pub version: String,
    pub produces: Vec<String>,
}

/// An installed adapter. Its `Debug` shows the manifest's size, not its
/// text (it may hold secrets).
#[derive(Clone, PartialEq)]
pub struct Installation {
    pub id: i64,
    pub name: String,
    /// Random, kept across upgrades: the stem of run ids (and so of idempotency keys).
    pub uid: String,
    pub manifest: String,
    pub component_sha256: String,
    pub description: AdapterDescription,
    pub enabled: bool,
    /// Every window before it has been exported (or the installation started there).
    pub watermark: DateTime<Utc>,
    pub installed_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether its subscriptions' documents are published to their tenants.
    pub publish_to_tenants: bool,
}

/// A manifest in `Debug` output: its size only, since it may hold secrets
/// (the API shows it redacted, see `exports::manifest::redact_secrets`).
struct ManifestText<'a>(&'a str);

impl std::fmt::Debug for ManifestText<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "<{} bytes>", self.0.len())
    }
}

impl std::fmt::Debug for NewInstallation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewInstallation")
            .field("name", &self.name)
            .field("manifest", &ManifestText(&self.manifest))
            .field("component_sha256", &self.component_sha256)
            .field("description", &self.description)
            .field("first_window", &self.first_window)
            .field("publish_to_tenants", &self.publish_to_tenants)
            .finish()
    }
}

impl std::fmt::Debug for Installation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Installation")
            .field("id", &self.id)
            .field("name", &self.name)
            .field("uid", &self.uid)
            .field("manifest", &ManifestText(&self.manifest))
            .field("component_sha256", &self.component_sha256)
            .field("description", &self.description)
            .field("enabled", &self.enabled)
            .field("watermark", &self.watermark)
            .field("installed_at", &self.installed_at)
            .field("updated_at", &self.updated_at)
            .field("publish_to_tenants", &self.publish_to_tenants)
            .finish()
    }
}

/// Where a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunStatus {
    /// Waiting for its turn.
    Pending,
    /// Running now.
    Running,
    /// Failed transiently; runs again after `next_attempt_at`.
    Retrying,
    /// Its documents are published.
    Succeeded,
    /// Failed for a reason that retrying will not fix; holds the watermark.
    Failed,
}

impl RunStatus {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Pending => "pending",
            RunStatus::Running => "running",
            RunStatus::Retrying => "retrying",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    /// Reads a stored status; an unknown one is a corrupt value.
    pub fn decode(text: &str) -> anyhow::Result<Self> {
        Self::parse(text).ok_or_else(|| {
            CorruptValue::error("a stored run status", format!("'{text}' is not a status"))
        })
    }

    /// Parses the stored spelling.
    pub fn parse(text: &str) -> Option<Self> {
        [
            RunStatus::Pending,
            RunStatus::Running,
            RunStatus::Retrying,
            RunStatus::Succeeded,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|status| status.as_str() == text)
    }
}

/// What a finished attempt measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, serde::Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunFiguresRecord {
    pub rows_read: u64,
    pub rows_written: u64,
    pub bytes_written: u64,
    pub requests_sent: u64,
    pub elapsed_ms: u64,
    pub peak_memory_bytes: u64,
}

/// An export run.
#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: i64,
    pub installation_id: i64,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// 0 for the first export of the window; n for its n-th correction.
    pub revision: u32,
    pub status: RunStatus,
    /// Attempts so far (one the host gave back when it stopped does not
    /// count, see [`RunEnd::Released`]).
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    /// Of the last finished attempt.
    pub figures: Option<RunFiguresRecord>,
    /// Claims so far, never reset (unlike `attempts`, which an operator's
    /// requeue resets): fences a finish or a lease renewal to the attempt
    /// that holds the run.
    pub claim: u32,
    /// How its documents were made; `None` unless it succeeded (and for runs
    /// exported before provenance was kept).
    pub provenance: Option<Provenance>,
}

/// How a succeeded run's documents were made: what anyone needs to re-derive
/// them. The run's window and rows read are on the [`Run`] itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Provenance {
    /// The `tally:billing` version the component ran as, e.g. `0.2.0`.
    pub world_version: String,
    /// The sha256 of the component that ran.
    pub component_sha256: String,
    /// The sha256 of the configuration JSON the adapter received, secrets
    /// included: its key in the store's configs ([`ExportStore::run_config`]).
    /// Internal: never served.
    pub config_sha256: String,
    /// The sha256 of that configuration with every secret as `"***"`: what
    /// is served, telling configurations apart without revealing a secret.
    pub config_digest: String,
    /// The granularity of the usage the adapter was handed.
    pub granularity: Granularity,
    /// The sha256 of every usage row handed to the adapter, in order.
    pub usage_sha256: String,
}

impl Run {
    /// Whether this run replaces an earlier export of its window.
    pub fn is_correction(&self) -> bool {
        self.revision > 0
    }
}

/// Longest failure reason kept with a run; longer ones are cut on a
/// character boundary and marked.
pub const MAX_REASON_BYTES: usize = 4 << 10;

/// One line of a run's log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LogLine {
    /// `debug`, `info`, `warn`, `error`, or `stdout`/`stderr` for WASI output.
    pub level: &'static str,
    /// The line's text.
    pub message: String,
}

impl LogLine {
    /// The levels a line may have.
    pub const LEVELS: [&'static str; 6] = ["debug", "info", "warn", "error", "stdout", "stderr"];

    /// The level spelled `name` (a stored log read back); unknown names read as `info`.
    pub fn level_named(name: &str) -> &'static str {
        Self::LEVELS
            .into_iter()
            .find(|level| *level == name)
            .unwrap_or("info")
    }
}

/// A run's log.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunLogRecord {
    pub lines: Vec<LogLine>,
    /// Lines dropped by the caps.
    pub dropped: u64,
}

/// A document of a succeeded run, without its bytes.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct DocumentInfo {
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    /// The subscription it belongs to (as the store spells it); `None` for
    /// the operator's documents.
    pub subscription_id: Option<String>,
    /// The sha256 of its bytes recorded at publication (lower-case hex);
    /// `None` for documents published before digests were kept.
    pub sha256: Option<String>,
}

/// A stored document.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDocument {
    pub content_type: String,
    pub bytes: Vec<u8>,
    /// The subscription it belongs to; `None` for the operator's documents.
    pub subscription_id: Option<String>,
    /// The sha256 of its bytes as recorded at publication (lower-case hex),
    /// which may differ from `bytes` if the stored bytes were altered. For a
    /// document published before digests were kept: the digest of `bytes`.
    pub sha256: String,
}

impl StoredDocument {
    /// A document to publish, its digest computed from `bytes`.
    pub fn new(content_type: String, bytes: Vec<u8>, subscription_id: Option<String>) -> Self {
        StoredDocument {
            sha256: sha256_hex(&bytes),
            content_type,
            bytes,
            subscription_id,
        }
    }
}

/// The lower-case hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A document published to a subscription, with the run that published it
/// and the installation that ran.
#[derive(Debug, Clone, PartialEq)]
pub struct TenantDocument {
    /// The installation's name.
    pub adapter: String,
    pub run: Run,
    pub document: DocumentInfo,
}

/// Where a listing of a subscription's documents goes on from: the last
/// document of the previous page, in the listing's order (newest window
/// first, then installation, then name).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TenantDocumentsAfter {
    pub window_start: DateTime<Utc>,
    pub installation_id: i64,
    pub name: String,
}

/// How an attempt ended, to record atomically.
#[derive(Debug)]
pub enum RunEnd {
    /// Publish the documents and mark the run succeeded, with how they were
    /// made and the configuration JSON that `provenance.config_sha256` names
    /// (kept once per digest).
    Succeeded {
        documents: Vec<(String, StoredDocument)>,
        provenance: Provenance,
        config_json: String,
    },
    /// Try again at `at`.
    Retry { reason: String, at: DateTime<Utc> },
    /// The host stopped before the attempt could end: try again at `at`,
    /// the attempt not counted (rolling restarts never use up a run's
    /// attempts).
    Released { reason: String, at: DateTime<Utc> },
    /// Give up.
    Failed { reason: String },
}

/// The end of an attempt with what it measured.
#[derive(Debug)]
pub struct FinishedAttempt {
    pub end: RunEnd,
    pub figures: RunFiguresRecord,
    pub log: RunLogRecord,
}

/// Which `running` runs count as interrupted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupted {
    /// Those whose lease has ended: their host stopped renewing it.
    LeaseEnded,
    /// All of them: a host alone on its store, starting, left them all.
    AllRunning,
}

/// What an operator's request for a window did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RunRequestOutcome {
    /// A first export was queued.
    Queued,
    /// The window had been exported: a correction was queued.
    Correction,
    /// A failed run of the window was queued again, or a retrying one told
    /// not to wait (same run id).
    Requeued,
    /// A run of the window is already pending, running or retrying.
    AlreadyQueued,
}

/// Storage of adapters, runs and documents.
#[async_trait]
pub trait ExportStore: Send + Sync + 'static {
    /// Keeps a component's bytes under their sha256 (a no-op if present).
    async fn put_component(&self, sha256: &str, wasm: Vec<u8>) -> Result<(), StoreError>;

    /// A component's bytes.
    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Creates an installation; `Exists` if the name is taken.
    async fn create_installation(&self, new: NewInstallation) -> Result<Installation, StoreError>;

    /// Replaces an installation's manifest, component and description, keeping
    /// its runs, documents and watermark.
    async fn upgrade_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Option<Installation>, StoreError>;

    /// Enables or disables; `None` if there is no such installation.
    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<Installation>, StoreError>;

    /// Deletes an installation with its runs and documents; `false` if none.
    async fn remove_installation(&self, name: &str) -> Result<bool, StoreError>;

    /// An installation by name (ignoring case).
    async fn installation(&self, name: &str) -> Result<Option<Installation>, StoreError>;

    /// An installation by id.
    async fn installation_by_id(&self, id: i64) -> Result<Option<Installation>, StoreError>;

    /// All installations, by name.
    async fn installations(&self) -> Result<Vec<Installation>, StoreError>;

    /// Queues the first export of each window that has none (revision 0);
    /// returns how many were queued.
    async fn schedule_windows(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<usize, StoreError>;

    /// An operator's run of each window: a first export, a correction of an
    /// exported one, or a failed one again.
    async fn request_runs(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, StoreError>;

    /// Whether other hosts may use this store at the same time (replicas on
    /// one database): then a run left `running` is only taken over once its
    /// lease has ended.
    fn is_shared(&self) -> bool;

    /// Takes the next run that may start at `now`, marks it running and
    /// leases it to `holder` (a host, for operators) for `lease`: per
    /// installation, windows run one at a time in order, and a failed window
    /// holds the ones after it. Claims are serialised, so two hosts never
    /// take the same run. Leases run on the store's clock (the database's on
    /// PostgreSQL), so hosts' clocks need not agree.
    async fn claim_run(
        &self,
        now: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StoreError>;

    /// Extends the lease of claim `claim` (the run's `claim` when it was
    /// claimed) to `lease` from now; `false` when the run is no longer this
    /// claim's (taken over, requeued or removed).
    async fn renew_lease(
        &self,
        run_id: i64,
        claim: u32,
        lease: Duration,
    ) -> Result<bool, StoreError>;

    /// Records how the attempt of claim `claim` ended. On success the
    /// documents are published and the watermark advanced in the same
    /// transaction. `false`, recording nothing, when the run is no longer
    /// this claim's: its installation was removed, or its lease ended and
    /// another claim took it over.
    async fn finish_run(
        &self,
        run_id: i64,
        claim: u32,
        finished: FinishedAttempt,
    ) -> Result<bool, StoreError>;

    /// Runs left `running` by a host that stopped: queued again (same run
    /// id), or failed once they have started `max_attempts` times.
    async fn requeue_interrupted_runs(
        &self,
        max_attempts: u32,
        which: Interrupted,
    ) -> Result<usize, StoreError>;

    /// Runs of an installation, newest window first.
    async fn runs(&self, installation_id: i64, limit: usize) -> Result<Vec<Run>, StoreError>;

    /// The earliest failed first export (revision 0) of an installation: the
    /// run holding its watermark.
    async fn holding_run(&self, installation_id: i64) -> Result<Option<Run>, StoreError>;

    /// A run of an installation, with its log and documents.
    async fn run(
        &self,
        installation_id: i64,
        run_id: i64,
    ) -> Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>, StoreError>;

    /// A document of a run.
    async fn run_document(
        &self,
        run_id: i64,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError>;

    /// The runs whose `document` is published for windows starting in
    /// `[from, to)`: for each window its latest succeeded revision, in window order.
    async fn published_runs(
        &self,
        installation_id: i64,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError>;

    /// For each window starting in `[from, to)`, its latest succeeded
    /// revision (what is published of it), in window order; at most `limit`.
    async fn succeeded_runs(
        &self,
        installation_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError>;

    /// Names of the documents published by an installation's runs.
    async fn document_names(&self, installation_id: i64) -> Result<Vec<String>, StoreError>;

    /// The configuration JSON a run was given, by its sha256
    /// ([`Provenance::config_sha256`]). Holds secrets: never serve it.
    async fn run_config(&self, config_sha256: &str) -> Result<Option<String>, StoreError>;

    /// The documents published to `subscription_id` (ignoring case): those
    /// it owns, of installations that publish to tenants, of each window's
    /// latest succeeded revision, for windows starting in `[from, to)`;
    /// newest window first, then by installation and name; at most `limit`,
    /// after `after`.
    async fn tenant_documents(
        &self,
        subscription_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<TenantDocumentsAfter>,
        limit: usize,
    ) -> Result<Vec<TenantDocument>, StoreError>;

    /// Document `name` of run `run_id` of installation `installation_id`, if
    /// the installation publishes to tenants and `subscription_id` (ignoring
    /// case) owns the document.
    async fn tenant_run_document(
        &self,
        installation_id: i64,
        run_id: i64,
        name: &str,
        subscription_id: &str,
    ) -> Result<Option<StoredDocument>, StoreError>;

    /// [`Self::published_runs`], only those whose `document` `subscription_id`
    /// (ignoring case) owns, of an installation that publishes to tenants.
    async fn tenant_published_runs(
        &self,
        installation_id: i64,
        document: &str,
        subscription_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError>;

    /// Whether any run of an installation that publishes to tenants
    /// published `document` to `subscription_id` (ignoring case).
    async fn tenant_document_published(
        &self,
        installation_id: i64,
        document: &str,
        subscription_id: &str,
    ) -> Result<bool, StoreError>;
}

/// A stored millisecond time.
pub(crate) fn time(ms: i64) -> anyhow::Result<DateTime<Utc>> {
    DateTime::from_timestamp_millis(ms)
        .ok_or_else(|| CorruptValue::error("a stored time", format!("{ms} ms is out of range")))
}

/// The error of a create whose name is taken.
pub(crate) fn name_taken(name: &str) -> StoreError {
    StoreError::Exists(format!("an adapter is already installed as '{name}'"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_redacts_manifest_secrets() {
        let manifest =
            "[config]\nurl = \"https://billing.example\"\n\n[secrets]\napi_key = \"s3cr3t-key\"\n";
        let description = AdapterDescription {
            name: "a".into(),
            version: "1".into(),
            produces: vec![],
        };
        let new = NewInstallation {
            name: "a".into(),
            manifest: manifest.into(),
            component_sha256: "c0ffee".into(),
            description: description.clone(),
            first_window: DateTime::UNIX_EPOCH,
            publish_to_tenants: false,
        };
        let installed = Installation {
            id: 1,
            name: "a".into(),
            uid: "0011".into(),
            manifest: manifest.into(),
            component_sha256: "c0ffee".into(),
            description,
            enabled: true,
            watermark: DateTime::UNIX_EPOCH,
            installed_at: DateTime::UNIX_EPOCH,
            updated_at: DateTime::UNIX_EPOCH,
            publish_to_tenants: false,
        };
        for shown in [format!("{new:?}"), format!("{installed:?}")] {
            assert!(!shown.contains("s3cr3t-key"), "{shown}");
            assert!(
                shown.contains(&format!("{} bytes", manifest.len())),
                "{shown}"
            );
        }
    }
}
