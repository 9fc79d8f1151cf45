//! Durable storage of usage, aggregates, meters, API tokens and access grants.
//!
//! The API and the CLI talk to a [`Store`] only. [`sqlite::SqliteStore`] is the
//! embedded default, for one host; [`postgres::PostgresStore`] is shared by
//! several replicas. [`Database`] says which one to open. [`exports`] is what
//! a store keeps for billing adapters; [`private_files`] keeps the data
//! directory readable by the host's account only. Aggregates are kept per (subscription,
//! usage bucket, meter, instance, *reported* bucket), hourly and daily, so
//! that a query over a reported-time window is an index range scan whatever
//! its usage times.

pub mod access;
pub mod console;
pub mod exports;
mod instances;
mod paging;
pub mod postgres;
pub mod private_files;
mod retention;
mod shares;
mod sql;
pub mod sqlite;
pub mod transfer;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use self::access::AccessStore;
pub use self::console::ConsoleStore;
pub use self::exports::ExportStore;
pub use self::retention::PrunedBatch;
use crate::auth::{Principal, Role};
use crate::retention::archive::EventArchive;
use crate::usage::{Granularity, Meter, MeterCatalog, MeterKey, RecordError, UsageRecord};

/// Where the store lives. Its `Debug` redacts a PostgreSQL password, as its
/// `Display` does.
#[derive(Clone, PartialEq, Eq)]
pub enum Database {
    /// The embedded SQLite database: a data directory (holding
    /// [`sqlite::DATABASE_FILE`]) or the database file itself.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (`postgres://user@host:port/database`).
    Postgres(String),
}

impl Database {
    /// Reads `postgres://…` / `postgresql://…`, `sqlite:PATH`, or a bare path (SQLite).
    pub fn parse(text: &str) -> Self {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Database::Postgres(text.to_owned())
        } else {
            Database::Sqlite(PathBuf::from(text.strip_prefix("sqlite:").unwrap_or(text)))
        }
    }

    /// The backend's name: `sqlite` or `postgres`.
    pub fn backend(&self) -> &'static str {
        match self {
            Database::Sqlite(_) => "sqlite",
            Database::Postgres(_) => "postgres",
        }
    }

    /// Opens the store, creating and migrating its schema as needed.
    pub async fn open(&self) -> anyhow::Result<Arc<dyn Store>> {
        Ok(match self {
            Database::Sqlite(path) => Arc::new(sqlite::SqliteStore::open_path(path)?),
            Database::Postgres(url) => Arc::new(postgres::PostgresStore::open(url).await?),
        })
    }
}

impl std::fmt::Display for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => write!(f, "sqlite:{}", path.display()),
            Database::Postgres(url) => f.write_str(&postgres::redact(url)),
        }
    }
}

impl std::fmt::Debug for Database {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Database::Sqlite(path) => f.debug_tuple("Sqlite").field(path).finish(),
            Database::Postgres(url) => f
                .debug_tuple("Postgres")
                .field(&postgres::redact(url))
                .finish(),
        }
    }
}

/// Errors at the store's edge: what a retry may fix ([`Self::Unavailable`])
/// told apart from what it will not (stored data that does not read, a
/// write the database refuses), so that clients are told the truth.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Records reuse an accepted `(subscriptionId, eventId)` with other content;
    /// nothing of the request was stored.
    #[error("{} record(s) conflict with records already accepted", .0.len())]
    Conflicts(Vec<RecordError>),
    /// Records whose usage ended before the store's retention watermark
    /// (the cutoff of a prune, [`crate::retention`]): their event ids can
    /// no longer be checked for duplicates; nothing of the request was stored.
    #[error("{} record(s) are older than the retention of usage events", .0.len())]
    Expired(Vec<RecordError>),
    /// Something with this name exists already.
    #[error("{0}")]
    Exists(String),
    /// The database could not do the work now (connection lost, locked or
    /// busy, I/O error, disk full, no pooled connection in time); retryable.
    #[error("the usage store is unavailable: {0:#}")]
    Unavailable(anyhow::Error),
    /// The archive of pruned usage events could not be written or settled
    /// (its directory missing or not writable, the disk full): nothing was
    /// pruned; a retry may pass once the directory is mended.
    #[error("{0:#}")]
    Archive(anyhow::Error),
    /// A stored value does not read back (an unknown run status, JSON that
    /// does not parse, a time out of range), or the database reports its
    /// own damage: a retry reads the same. `what` names the value.
    #[error("stored data is corrupt: {what}: {detail}")]
    Corrupt { what: String, detail: String },
    /// The database refused a write as breaking one of its rules (a
    /// constraint, a value it cannot hold): the same write fails again.
    #[error("the store refused the change: {0:#}")]
    Refused(anyhow::Error),
    /// An installation's stored manifest no longer passes this host's checks
    /// (it was stored by an older version, or altered in the database).
    #[error("the stored manifest of adapter '{installation}' is not valid: {detail}")]
    InvalidStoredManifest {
        installation: String,
        detail: String,
    },
}

/// A stored value that does not decode: carried in an [`anyhow::Error`] to
/// the store's edge, where it becomes [`StoreError::Corrupt`].
#[derive(Debug, thiserror::Error)]
#[error("{what}: {detail}")]
pub struct CorruptValue {
    /// What the value is ("a stored run status").
    pub what: String,
    /// What is wrong with it.
    pub detail: String,
}

impl CorruptValue {
    /// A corrupt `what`, as an error to return with `?`.
    pub fn error(what: impl Into<String>, detail: impl std::fmt::Display) -> anyhow::Error {
        anyhow::Error::new(CorruptValue {
            what: what.into(),
            detail: detail.to_string(),
        })
    }
}

/// The archive of pruned events failed: carried in an [`anyhow::Error`] to
/// the store's edge, where it becomes [`StoreError::Archive`] (not a
/// database's unavailability).
#[derive(Debug, thiserror::Error)]
#[error("{0:#}")]
pub struct ArchiveFailure(pub anyhow::Error);

/// Where database errors are classified: by the first typed cause in the
/// chain (a decoded value, SQLite's result code, PostgreSQL's SQLSTATE, a
/// JSON column); anything else is taken as unavailability.
impl From<anyhow::Error> for StoreError {
    fn from(error: anyhow::Error) -> Self {
        match classify(&error) {
            Kind::Unavailable => StoreError::Unavailable(error),
            Kind::Archive => StoreError::Archive(error),
            Kind::Refused => StoreError::Refused(error),
            Kind::Corrupt { what, detail } => StoreError::Corrupt { what, detail },
        }
    }
}

impl StoreError {
    /// The same error again, for another request of one failed group commit
    /// (the cause's chain kept as text).
    pub fn duplicate(&self) -> StoreError {
        match self {
            StoreError::Conflicts(conflicts) => StoreError::Conflicts(conflicts.clone()),
            StoreError::Expired(expired) => StoreError::Expired(expired.clone()),
            StoreError::Exists(message) => StoreError::Exists(message.clone()),
            StoreError::Unavailable(cause) => StoreError::Unavailable(anyhow::anyhow!("{cause:#}")),
            StoreError::Archive(cause) => StoreError::Archive(anyhow::anyhow!("{cause:#}")),
            StoreError::Corrupt { what, detail } => StoreError::Corrupt {
                what: what.clone(),
                detail: detail.clone(),
            },
            StoreError::Refused(cause) => StoreError::Refused(anyhow::anyhow!("{cause:#}")),
            StoreError::InvalidStoredManifest {
                installation,
                detail,
            } => StoreError::InvalidStoredManifest {
                installation: installation.clone(),
                detail: detail.clone(),
            },
        }
    }
}

/// What kind of failure a database error is.
#[derive(Debug, PartialEq, Eq)]
enum Kind {
    Unavailable,
    Archive,
    Refused,
    Corrupt { what: String, detail: String },
}

/// Classifies `error` by the first cause in its chain that says what it is.
fn classify(error: &anyhow::Error) -> Kind {
    let mut context = None;
    for cause in error.chain() {
        if let Some(corrupt) = cause.downcast_ref::<CorruptValue>() {
            return Kind::Corrupt {
                what: corrupt.what.clone(),
                detail: corrupt.detail.clone(),
            };
        }
        if cause.is::<ArchiveFailure>() {
            return Kind::Archive;
        }
        if let Some(sqlite) = cause.downcast_ref::<rusqlite::Error>() {
            return sqlite_kind(sqlite);
        }
        if let Some(postgres) = cause.downcast_ref::<tokio_postgres::Error>() {
            return postgres_kind(postgres);
        }
        if let Some(json) = cause.downcast_ref::<serde_json::Error>() {
            // The store parses JSON only from its own columns.
            return Kind::Corrupt {
                what: context.unwrap_or_else(|| "a stored JSON value".into()),
                detail: json.to_string(),
            };
        }
        context = Some(cause.to_string());
    }
    Kind::Unavailable
}

/// SQLite: busy, locked, I/O, full, can't open… may pass; a constraint does
/// not; corrupt or not-a-database is damage; a column that does not convert
/// is a corrupt value.
fn sqlite_kind(error: &rusqlite::Error) -> Kind {
    use rusqlite::ErrorCode;
    let corrupt = |what: &str| Kind::Corrupt {
        what: what.into(),
        detail: error.to_string(),
    };
    match error {
        rusqlite::Error::SqliteFailure(failure, _) => match failure.code {
            ErrorCode::ConstraintViolation | ErrorCode::TooBig | ErrorCode::TypeMismatch => {
                Kind::Refused
            }
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => corrupt("the database file"),
            _ => Kind::Unavailable,
        },
        rusqlite::Error::FromSqlConversionFailure(..)
        | rusqlite::Error::IntegralValueOutOfRange(..)
        | rusqlite::Error::InvalidColumnType(..)
        | rusqlite::Error::Utf8Error(..) => corrupt("a stored value"),
        _ => Kind::Unavailable,
    }
}

/// PostgreSQL, by SQLSTATE class: 08 connection, 40 rollback (serialization,
/// deadlock), 53 resources, 57 operator intervention and 58 system errors
/// may pass; 22 data exceptions and 23 constraints do not; XX is internal
/// damage (a corrupt page or index). No SQLSTATE: the connection's trouble.
fn postgres_kind(error: &tokio_postgres::Error) -> Kind {
    match error.code() {
        Some(code) => sqlstate_kind(code.code(), error),
        None => Kind::Unavailable,
    }
}

/// The kind of a PostgreSQL error with SQLSTATE `code`.
fn sqlstate_kind(code: &str, error: &dyn std::fmt::Display) -> Kind {
    match code.get(..2) {
        Some("22" | "23") => Kind::Refused,
        Some("XX") => Kind::Corrupt {
            what: "the database".into(),
            detail: error.to_string(),
        },
        _ => Kind::Unavailable,
    }
}

/// What an accepted ingest request did.
#[derive(Debug, Clone, PartialEq)]
pub struct IngestReceipt {
    /// Records stored now.
    pub accepted: usize,
    /// Indexes of records that had been accepted before (not counted again).
    pub duplicates: Vec<usize>,
    /// The reported time stamped on the accepted records (unless backfilled).
    pub reported_time: DateTime<Utc>,
}

/// Which subscriptions a query covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SubscriptionScope {
    One(String),
    All,
}

/// A usage-aggregates query: a reported-time window, aggregated by usage time.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AggregateQuery {
    pub scope: SubscriptionScope,
    /// Inclusive, on a bucket boundary of `granularity`.
    pub reported_start: DateTime<Utc>,
    /// Exclusive, on a bucket boundary of `granularity`.
    pub reported_end: DateTime<Utc>,
    pub granularity: Granularity,
    /// Per instance (`true`), or summed over the instances of a meter.
    pub show_details: bool,
    /// Most rows in one page.
    pub page_size: usize,
}

/// A position in the total order of aggregate rows; paging resumes after it.
///
/// Rows are ordered by subscription, usage bucket, meter and instance, all
/// keys that never change once written, so a position stays valid while new
/// usage arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Position {
    pub subscription: i64,
    pub bucket: i64,
    pub meter: MeterKey,
    /// `-1` when rows are not per instance.
    pub instance: i64,
}

/// One aggregated row.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregateRow {
    /// Shared by a page's rows of one subscription: one allocation per
    /// subscription and page, not one per row.
    pub subscription_id: Arc<str>,
    pub meter: Arc<Meter>,
    pub usage_start: DateTime<Utc>,
    pub usage_end: DateTime<Utc>,
    pub quantity: f64,
    /// The instance, when the query shows details.
    pub instance: Option<Arc<Instance>>,
}

/// A resource instance as the usage API shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    /// The store's key; makes row names unique.
    pub key: i64,
    pub location: String,
    /// The `instanceData` string as a JSON string literal (quoted and
    /// escaped), ready to be copied into a response; empty when the stored
    /// literal is not JSON (the rows are served without `instanceData`).
    pub data_json: String,
}

/// One page of a query.
#[derive(Debug, Clone, PartialEq)]
pub struct AggregatePage {
    pub rows: Vec<AggregateRow>,
    /// Where the next page starts; `None` on the last page.
    pub next: Option<Position>,
}

/// A token to store: only its digest is kept.
#[derive(Debug, Clone)]
pub struct NewToken {
    pub digest: [u8; 32],
    pub role: Role,
    pub subscriptions: Vec<String>,
    pub description: String,
}

/// A stored token, without its secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct TokenInfo {
    pub id: i64,
    pub role: Role,
    pub subscriptions: Vec<String>,
    pub description: String,
    pub created_at: String,
}

/// Everything the host keeps: usage, meters and tokens here, adapters and
/// their exports in [`ExportStore`], sessions and the console's figures in
/// [`ConsoleStore`], identity providers' subjects' grants in
/// [`AccessStore`]. Implementations are cheap to share (`Arc`).
#[async_trait]
pub trait Store: ExportStore + ConsoleStore + AccessStore + Send + Sync + 'static {
    /// A snapshot of the meter catalog (on a shared store, up to
    /// [`postgres::CATALOG_TTL`] old).
    async fn meter_catalog(&self) -> Result<Arc<MeterCatalog>, StoreError>;

    /// The meter catalog as stored now: a meter added through another
    /// replica a moment ago is in it.
    async fn fresh_meter_catalog(&self) -> Result<Arc<MeterCatalog>, StoreError> {
        self.meter_catalog().await
    }

    /// Adds a meter to the catalog, or updates the one with the same id (ignoring case).
    async fn upsert_meter(&self, meter: Meter) -> Result<Meter, StoreError>;

    /// Stores validated records atomically: all of them, or none when one
    /// conflicts with an accepted record. Durable when it returns `Ok`.
    async fn ingest(&self, records: Vec<UsageRecord>) -> Result<IngestReceipt, StoreError>;

    /// Deletes at most `limit` usage events whose usage ended before
    /// `before`, in one short transaction, and raises the store's retention
    /// watermark to `before` (it never falls): from then on ingest refuses
    /// ([`StoreError::Expired`]) records whose usage ended before it. The
    /// aggregates are not touched. With an `archive`, the events are first
    /// written to its next file (numbered in `event_archives`) under a
    /// partial name, which the caller publishes
    /// ([`EventArchive::publish`]) once this returns, and nothing is
    /// deleted unless that file was written. Returns how many events were
    /// deleted, fewer than `limit` when none is left, and the file.
    /// Safe beside ingest and beside other replicas pruning the same
    /// database.
    async fn prune_usage_events(
        &self,
        before: DateTime<Utc>,
        limit: usize,
        archive: Option<EventArchive>,
    ) -> Result<PrunedBatch, StoreError>;

    /// One page of aggregates, starting after `after`.
    async fn aggregates(
        &self,
        query: &AggregateQuery,
        after: Option<Position>,
    ) -> Result<AggregatePage, StoreError>;

    /// Whether the subscription is known (has reported usage or a tenant token).
    async fn subscription_exists(&self, id: &str) -> Result<bool, StoreError>;

    /// Stores a new API token; returns its id.
    async fn create_token(&self, token: NewToken) -> Result<i64, StoreError>;

    /// All tokens, oldest first (never their secrets).
    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError>;

    /// Deletes a token; `false` if there was none with this id.
    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError>;

    /// The store's clock: what unstamped usage is reported at, and what
    /// export windows close by. The database's on PostgreSQL, so that
    /// replicas agree whatever their own clocks say.
    async fn clock(&self) -> Result<DateTime<Utc>, StoreError>;

    /// Whether the store can read and write (for `/healthz`).
    async fn health(&self) -> Result<(), StoreError>;

    /// The principal of a token, by the digest of its secret.
    async fn principal(&self, digest: [u8; 32]) -> Result<Option<Principal>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn sqlite_error(code: std::ffi::c_int) -> anyhow::Error {
        anyhow::Error::new(rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(code),
            None,
        ))
        .context("a store call")
    }

    #[test]
    fn sqlite_errors_are_classified_by_their_result_code() {
        for retryable in [
            rusqlite::ffi::SQLITE_BUSY,
            rusqlite::ffi::SQLITE_LOCKED,
            rusqlite::ffi::SQLITE_IOERR,
            rusqlite::ffi::SQLITE_FULL,
            rusqlite::ffi::SQLITE_CANTOPEN,
        ] {
            let error = StoreError::from(sqlite_error(retryable));
            assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
        }
        let refused = StoreError::from(sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE));
        assert!(matches!(refused, StoreError::Refused(_)), "{refused:?}");
        for damaged in [rusqlite::ffi::SQLITE_CORRUPT, rusqlite::ffi::SQLITE_NOTADB] {
            let error = StoreError::from(sqlite_error(damaged));
            assert!(
                matches!(&error, StoreError::Corrupt { what, .. } if what == "the database file"),
                "{error:?}"
            );
        }
        let column =
            rusqlite::Error::InvalidColumnType(3, "status".into(), rusqlite::types::Type::Integer);
        let error = StoreError::from(anyhow::Error::new(column));
        assert!(matches!(error, StoreError::Corrupt { .. }), "{error:?}");
    }

    #[test]
    fn undecodable_values_are_corrupt_and_name_what_they_are() {
        let json = serde_json::from_str::<u64>("{")
            .context("a stored run log")
            .context("reading run 7");
        let error = StoreError::from(json.unwrap_err());
        assert!(
            matches!(&error, StoreError::Corrupt { what, .. } if what == "a stored run log"),
            "{error:?}"
        );
        let status = CorruptValue::error("a stored run status", "'halted' is not one");
        let error = StoreError::from(status.context("listing runs"));
        assert!(
            matches!(&error, StoreError::Corrupt { what, detail } if what == "a stored run status" && detail.contains("halted")),
            "{error:?}"
        );
        // Nothing typed in the chain: the store's own trouble, retryable.
        let error = StoreError::from(anyhow::anyhow!("the writer thread has stopped"));
        assert!(matches!(error, StoreError::Unavailable(_)), "{error:?}");
    }

    #[test]
    fn an_archive_failure_is_said_as_one_whatever_caused_it() {
        let io = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let failure = anyhow::Error::new(io).context("archiving pruned usage events to /a/f.gz");
        let error = StoreError::from(anyhow::Error::new(ArchiveFailure(failure)));
        assert!(matches!(error, StoreError::Archive(_)), "{error:?}");
        assert_eq!(
            error.to_string(),
            "archiving pruned usage events to /a/f.gz: no space left"
        );
    }

    #[test]
    fn postgres_errors_are_classified_by_their_sqlstate_class() {
        let kind = |code: &str| sqlstate_kind(code, &code);
        // Connection, serialization or deadlock, resources, admin shutdown, I/O.
        for retryable in ["08006", "40001", "40P01", "53100", "57P01", "58030"] {
            assert_eq!(kind(retryable), Kind::Unavailable, "{retryable}");
        }
        // Unique and check violations, a value out of range, bad encoding.
        for refused in ["23505", "23514", "22003", "22021"] {
            assert_eq!(kind(refused), Kind::Refused, "{refused}");
        }
        assert!(matches!(kind("XX001"), Kind::Corrupt { .. }));
    }

    #[test]
    fn a_duplicate_keeps_the_kind_and_the_message() {
        let error = StoreError::from(sqlite_error(rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE));
        let copy = error.duplicate();
        assert!(matches!(copy, StoreError::Refused(_)));
        assert_eq!(copy.to_string(), error.to_string());
    }

    #[test]
    fn debug_output_redacts_the_database_password() {
        for url in [
            "postgres://tally:hunter2-pw@db.internal/tally",
            "postgres://tally@db.internal/tally?password=hunter2-pw",
        ] {
            let shown = format!("{:?}", Database::parse(url));
            assert!(!shown.contains("hunter2-pw"), "{shown}");
            assert!(shown.contains("db.internal"), "{shown}");
        }
    }
}
