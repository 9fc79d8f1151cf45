//! Durable storage of usage, aggregates, meters and API tokens.
//!
//! The API and the CLI talk to a [`Store`] only. [`sqlite::SqliteStore`] is the
//! embedded default, for one host; [`postgres::PostgresStore`] is shared by
//! several replicas. [`Database`] says which one to open. [`exports`] is what
//! a store keeps for billing adapters; [`private_files`] keeps the data
//! directory readable by the host's account only. Aggregates are kept per (subscription,
//! usage bucket, meter, instance, *reported* bucket), hourly and daily, so
//! that a query over a reported-time window is an index range scan whatever
//! its usage times.

pub mod exports;
mod instances;
mod paging;
pub mod postgres;
pub mod private_files;
mod sql;
pub mod sqlite;
pub mod transfer;

use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

pub use self::exports::ExportStore;
use crate::auth::{Principal, Role};
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

/// Errors at the store's edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Records reuse an accepted `(subscriptionId, eventId)` with other content;
    /// nothing of the request was stored.
    #[error("{} record(s) conflict with records already accepted", .0.len())]
    Conflicts(Vec<RecordError>),
    /// Something with this name exists already.
    #[error("{0}")]
    Exists(String),
    /// The database could not do the work (disk full, locked, I/O error…); retryable.
    #[error("the usage store is unavailable: {0:#}")]
    Unavailable(#[from] anyhow::Error),
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
    pub subscription_id: String,
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
    /// escaped), ready to be copied into a response.
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
/// their exports in [`ExportStore`]. Implementations are cheap to share (`Arc`).
#[async_trait]
pub trait Store: ExportStore + Send + Sync + 'static {
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
