//! The embedded default store: one SQLite file under the data directory.
//!
//! Durability: WAL journal with `synchronous = FULL`, so a record acknowledged
//! with a 2xx survives a `kill -9` (and a power cut). Writes go through one
//! writer thread (`writer.rs`); reads use a pool of read-only connections,
//! which WAL lets run beside the writer.

mod access;
mod console;
mod exports;
mod schema;
pub(in crate::store) mod sql;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::Utc;
use r2d2_sqlite::SqliteConnectionManager;
use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::oneshot;

use self::sql::{SqliteSql, finish_now};
use self::writer::{IngestJob, Lanes};
use crate::auth::{Principal, Role};
use crate::retention::archive::EventArchive;
use crate::store::instances::InstanceCache;
use crate::store::{
    AggregatePage, AggregateQuery, CorruptValue, IngestReceipt, NewToken, Position, PrunedBatch,
    Store, StoreError, TokenInfo,
};
use crate::store::{paging, retention};
use crate::usage::meters::documented_meters;
use crate::usage::{Meter, MeterCatalog, UsageRecord};

pub use schema::SCHEMA_VERSION;

/// Name of the database file inside the data directory.
pub const DATABASE_FILE: &str = "tally.db";
/// Read connections kept open.
const READ_POOL_SIZE: u32 = 8;
/// Prepared statements each connection keeps: room for ingest's or the
/// page loop's beside those of the export operations, so that neither
/// evicts the other.
const STATEMENT_CACHE_CAPACITY: usize = 64;

/// The SQLite store. Cheap to share behind an `Arc`.
pub struct SqliteStore {
    path: PathBuf,
    readers: r2d2::Pool<SqliteConnectionManager>,
    writer: Lanes,
    catalog: RwLock<Arc<MeterCatalog>>,
    instances: Arc<InstanceCache>,
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir`, migrates its schema
    /// and seeds the documented meters. The directory is made private
    /// ([`super::private_files`]).
    pub fn open(data_dir: &Path) -> anyhow::Result<Self> {
        super::private_files::create_dir(data_dir)?;
        Self::open_file(&data_dir.join(DATABASE_FILE))
    }

    /// Opens a data directory, or a database file when `path` is an existing file.
    pub fn open_path(path: &Path) -> anyhow::Result<Self> {
        if path.is_file() {
            Self::open_file(path)
        } else {
            Self::open(path)
        }
    }

    /// Opens (creating if needed) the database file at `path`, 0600 like its
    /// WAL and shared-memory files.
    pub fn open_file(path: &Path) -> anyhow::Result<Self> {
        let path = path.to_path_buf();
        super::private_files::prepare_database_file(&path)?;
        let mut conn =
            Connection::open(&path).with_context(|| format!("opening {}", path.display()))?;
        configure(&conn, false)?;
        schema::migrate(&mut conn)?;
        seed_documented_meters(&conn)?;
        let catalog = load_catalog(&conn)?;
        let readers = r2d2::Pool::builder()
            .max_size(READ_POOL_SIZE)
            .build(SqliteConnectionManager::file(&path).with_init(|c| configure(c, true)))
            .context("opening read connections")?;
        let writer = writer::start(conn)?;
        let instances = Arc::default();
        Ok(SqliteStore {
            path,
            readers,
            writer,
            catalog: RwLock::new(Arc::new(catalog)),
            instances,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Runs `work` on the writer thread.
    async fn write<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let (reply, outcome) = oneshot::channel();
        let job: writer::ControlWrite = Box::new(move |conn| {
            let _ = reply.send(work(conn));
        });
        self.writer
            .control
            .send(job)
            .await
            .map_err(|_| anyhow!("the writer thread has stopped"))?;
        Ok(outcome
            .await
            .map_err(|_| anyhow!("the writer thread dropped the job"))??)
    }

    /// Runs `work` on a pooled read connection, off the async runtime.
    async fn read<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let readers = self.readers.clone();
        let result = tokio::task::spawn_blocking(move || {
            let conn = readers.get().context("no read connection available")?;
            work(&conn)
        })
        .await
        .map_err(|e| anyhow!("read task failed: {e}"))??;
        Ok(result)
    }

    /// Runs `op` on the writer thread in one transaction (`BEGIN
    /// IMMEDIATE`), committed when it returns `Ok`.
    async fn write_sql<T: Send + 'static>(
        &self,
        op: impl AsyncFnOnce(&SqliteSql<'_>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let output = finish_now(op(&SqliteSql(&tx)))??;
            tx.commit()?;
            Ok(output)
        })
        .await
    }

    /// Runs `op` on a pooled read connection.
    async fn read_sql<T: Send + 'static>(
        &self,
        op: impl AsyncFnOnce(&SqliteSql<'_>) -> anyhow::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        self.read(move |conn| finish_now(op(&SqliteSql(conn)))?)
            .await
    }

    fn catalog_snapshot(&self) -> Arc<MeterCatalog> {
        self.catalog.read().expect("catalog lock").clone()
    }
}

fn configure(conn: &Connection, read_only: bool) -> rusqlite::Result<()> {
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE_CAPACITY);
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "cache_size", -64_000)?; // KiB
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.pragma_update(None, "foreign_keys", true)?;
    if read_only {
        conn.pragma_update(None, "query_only", true)?;
        // No memory map: mapped pages count in the host's RSS (and in a
        // container's memory limit) up to the map's size, here the whole
        // file; reads through SQLite's page cache cost ~20% more time and
        // keep a long export's memory flat (host/benches/export_rss.rs).
        conn.pragma_update(None, "mmap_size", 0)?;
    }
    Ok(())
}

/// Adds the documented meters that are missing; an operator's edits stay.
fn seed_documented_meters(conn: &Connection) -> anyhow::Result<()> {
    let mut insert = conn.prepare(
        "INSERT INTO meters (id, name, category, unit, notes) VALUES (?1, ?2, ?3, ?4, ?5) ON CONFLICT (id) DO NOTHING",
    )?;
    for m in documented_meters() {
        insert.execute(params![m.id, m.name, m.category, m.unit, m.notes])?;
    }
    Ok(())
}

fn load_catalog(conn: &Connection) -> anyhow::Result<MeterCatalog> {
    let meters = conn
        .prepare("SELECT key, id, name, category, unit, notes FROM meters ORDER BY key")?
        .query_map([], |row| {
            Ok(Meter {
                key: row.get(0)?,
                id: row.get(1)?,
                name: row.get(2)?,
                category: row.get(3)?,
                unit: row.get(4)?,
                notes: row.get(5)?,
            })
        })?
        .collect::<Result<_, _>>()?;
    Ok(MeterCatalog::new(meters))
}

#[async_trait]
impl Store for SqliteStore {
    async fn meter_catalog(&self) -> Result<Arc<MeterCatalog>, StoreError> {
        Ok(self.catalog_snapshot())
    }

    async fn upsert_meter(&self, meter: Meter) -> Result<Meter, StoreError> {
        let id = meter.id.clone();
        let catalog = self
            .write(move |conn| {
                conn.execute(
                    "INSERT INTO meters (id, name, category, unit, notes) VALUES (?1, ?2, ?3, ?4, ?5)
                     ON CONFLICT (id) DO UPDATE SET name = excluded.name, category = excluded.category,
                         unit = excluded.unit, notes = excluded.notes",
                    params![meter.id, meter.name, meter.category, meter.unit, meter.notes],
                )?;
                load_catalog(conn)
            })
            .await?;
        let stored = catalog.resolve(&id).cloned();
        *self.catalog.write().expect("catalog lock") = Arc::new(catalog);
        stored.ok_or_else(|| {
            StoreError::Unavailable(anyhow!("the meter vanished after it was written"))
        })
    }

    async fn ingest(&self, records: Vec<UsageRecord>) -> Result<IngestReceipt, StoreError> {
        let (reply, outcome) = oneshot::channel();
        self.writer
            .ingest
            .send(IngestJob { records, reply })
            .await
            .map_err(|_| anyhow!("the writer thread has stopped"))?;
        outcome
            .await
            .map_err(|_| anyhow!("the writer thread dropped the request"))?
    }

    async fn prune_usage_events(
        &self,
        before: chrono::DateTime<Utc>,
        limit: usize,
        archive: Option<EventArchive>,
    ) -> Result<PrunedBatch, StoreError> {
        let before_ms = before.timestamp_millis();
        // One batch per writer job: ingest groups run between batches.
        self.write_sql(async move |db| retention::prune_batch(db, before_ms, limit, archive).await)
            .await
    }

    async fn aggregates(
        &self,
        query: &AggregateQuery,
        after: Option<Position>,
    ) -> Result<AggregatePage, StoreError> {
        let (query, instances) = (query.clone(), self.instances.clone());
        let rows = self
            .read_sql(async move |db| paging::read_page(db, &instances, &query, after).await)
            .await?;
        Ok(rows.into_page(&self.catalog_snapshot())?)
    }

    async fn subscription_exists(&self, id: &str) -> Result<bool, StoreError> {
        let id = id.to_owned();
        self.read(move |conn| {
            Ok(conn
                .prepare_cached("SELECT 1 FROM subscriptions WHERE id = ?1")?
                .query_row([id], |_| Ok(()))
                .optional()?
                .is_some())
        })
        .await
    }

    async fn create_token(&self, token: NewToken) -> Result<i64, StoreError> {
        self.write(move |conn| {
            let tx = conn.transaction()?;
            let now = crate::clock::now();
            for subscription in &token.subscriptions {
                writer::subscription_key(&tx, subscription, now)?;
            }
            tx.execute(
                "INSERT INTO api_tokens (digest, role, subscriptions, description, created_at)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![
                    &token.digest[..],
                    token.role.as_str(),
                    serde_json::to_string(&token.subscriptions)?,
                    token.description,
                    now.to_rfc3339()
                ],
            )?;
            let id = tx.last_insert_rowid();
            tx.commit()?;
            Ok(id)
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        self.read(|conn| {
            let mut select = conn.prepare(
                "SELECT id, role, subscriptions, description, created_at FROM api_tokens ORDER BY id",
            )?;
            let rows = select.query_map([], |row| {
                Ok((row.get(0)?, row.get::<_, String>(1)?, row.get::<_, String>(2)?, row.get(3)?, row.get(4)?))
            })?;
            rows.map(|row| {
                let (id, role, subscriptions, description, created_at) = row?;
                Ok(TokenInfo {
                    id,
                    role: Role::parse(&role).ok_or_else(|| CorruptValue::error("a stored token role", format!("'{role}' is not a role")))?,
                    subscriptions: serde_json::from_str(&subscriptions)?,
                    description,
                    created_at,
                })
            })
            .collect()
        })
        .await
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        self.write(move |conn| Ok(conn.execute("DELETE FROM api_tokens WHERE id = ?1", [id])? == 1))
            .await
    }

    async fn clock(&self) -> Result<chrono::DateTime<Utc>, StoreError> {
        Ok(crate::clock::now()) // one host, one clock
    }

    async fn health(&self) -> Result<(), StoreError> {
        if self.writer.is_closed() {
            return Err(StoreError::Unavailable(anyhow!(
                "the writer thread has stopped"
            )));
        }
        self.read(|conn| Ok(conn.query_row("SELECT count(*) FROM meters", [], |_| Ok(()))?))
            .await
    }

    async fn principal(&self, digest: [u8; 32]) -> Result<Option<Principal>, StoreError> {
        self.read(move |conn| {
            let found = conn
                .prepare_cached("SELECT role, subscriptions, id FROM api_tokens WHERE digest = ?1")?
                .query_row([&digest[..]], |row| {
                    Ok((
                        row.get::<_, String>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, i64>(2)?,
                    ))
                })
                .optional()?;
            let Some((role, subscriptions, id)) = found else {
                return Ok(None);
            };
            let role = Role::parse(&role).ok_or_else(|| {
                CorruptValue::error("a stored token role", format!("'{role}' is not a role"))
            })?;
            Ok(Some(Principal {
                role,
                subscriptions: serde_json::from_str(&subscriptions)?,
                token_id: Some(id),
            }))
        })
        .await
    }
}
