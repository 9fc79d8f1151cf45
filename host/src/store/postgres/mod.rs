//! The shared store: PostgreSQL, for several tally replicas on one database.
//!
//! Everything the SQLite store keeps lives here too, in the same tables (see
//! `schema.rs`), so the API, the adapters and the CLI behave the same on both.
//! What changes is who else writes:
//!
//! - **Ingest** (`group_commit.rs`, `ingest.rs`) commits the concurrent
//!   requests of a replica together, each in a savepoint of its own. Events
//!   are inserted with `ON CONFLICT DO NOTHING` on `(subscription, eventId,
//!   usage month)`, so a retry through another replica, even at the same
//!   instant, is a duplicate (the unique index waits for the other
//!   transaction), and aggregates are added with atomic upserts in key order.
//! - **Usage events** are partitioned by the month their usage ended in
//!   (`partitions.rs`): made as ingest meets a month, dropped whole by the
//!   pruner once the month is past the retention.
//! - **Export runs** (`exports.rs`) are claimed under an advisory lock held for
//!   the claim's transaction, so two replicas never take the same run; a claim
//!   is a lease the running replica renews.
//! - **Keys** of subscriptions, meters and instances come from the database,
//!   so a paging token issued by one replica resumes on any other.
//! - **The meter catalog** is cached per replica and re-read at most every
//!   [`CATALOG_TTL`] (and at once when a query meets a meter it does not know).
//!
//! Connections come from a pool of [`POOL_SIZE`], over TLS as the URL's
//! `sslmode` says ([`connect`]).

mod access;
pub mod connect;
mod console;
mod exports;
mod group_commit;
mod ingest;
mod partitions;
mod schema;
mod sql;

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow};
use async_trait::async_trait;
use chrono::Utc;
use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod, Runtime};

use self::sql::PgSql;
use crate::auth::{Principal, Role};
use crate::retention::archive::EventArchive;
use crate::store::instances::InstanceCache;
use crate::store::paging;
use crate::store::sql::{Dialect, Sql};
use crate::store::{
    AggregatePage, AggregateQuery, CorruptValue, IngestReceipt, NewToken, Position, PrunedBatch,
    Store, StoreError, TokenInfo,
};
use crate::usage::meters::documented_meters;
use crate::usage::{Meter, MeterCatalog, UsageRecord};

pub(crate) use partitions::usage_month;
pub use schema::SCHEMA_VERSION;

/// Connections each replica keeps at most.
pub const POOL_SIZE: usize = 16;
/// Longest a request waits for a free connection.
const POOL_WAIT: Duration = Duration::from_secs(10);
/// How stale a replica's meter catalog may be.
pub const CATALOG_TTL: Duration = Duration::from_secs(1);
/// Advisory lock keys (`pg_advisory_xact_lock`): schema migrations,
/// changes to the set of running export runs, access grants, and pruning.
const MIGRATION_LOCK: i64 = 0x7461_6c6c_0001;
const RUNS_LOCK: i64 = 0x7461_6c6c_0002;
pub(crate) const GRANTS_LOCK: i64 = 0x7461_6c6c_0003;
/// Held by each prune batch, so that replicas pruning at once take turns
/// instead of deadlocking on the rows they both delete.
const PRUNE_LOCK: i64 = 0x7461_6c6c_0004;

/// The PostgreSQL store. Cheap to share behind an `Arc`.
pub struct PostgresStore {
    pool: Pool,
    catalog: RwLock<(Arc<MeterCatalog>, Instant)>,
    instances: InstanceCache,
    /// Where ingest requests wait to be committed together.
    group_commit: group_commit::GroupCommit,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user@host:port/database`, with the
    /// options of [`connect`]), migrates the schema and seeds the documented
    /// meters.
    pub async fn open(url: &str) -> anyhow::Result<Self> {
        let target = connect::Target::parse(url)?;
        let manager = Manager::from_connect(
            target.config.clone(),
            target,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(POOL_WAIT))
            .runtime(Runtime::Tokio1)
            .build()
            .context("building the connection pool")?;
        let mut client = pool
            .get()
            .await
            .with_context(|| format!("connecting to {}", redact(url)))?;
        schema::migrate(&mut client).await?;
        seed_documented_meters(&client).await?;
        let catalog = load_catalog(&client).await?;
        drop(client);
        Ok(PostgresStore {
            group_commit: group_commit::GroupCommit::start(pool.clone()),
            pool,
            catalog: RwLock::new((Arc::new(catalog), Instant::now())),
            instances: InstanceCache::default(),
        })
    }

    /// A pooled connection.
    async fn client(&self) -> anyhow::Result<deadpool_postgres::Object> {
        self.pool
            .get()
            .await
            .map_err(|e| anyhow!("no database connection: {e}"))
    }

    /// Runs `op` in one transaction, committed when it returns `Ok`.
    async fn write_sql<T>(
        &self,
        op: impl AsyncFnOnce(&PgSql<'_, deadpool_postgres::Transaction<'_>>) -> anyhow::Result<T>,
    ) -> Result<T, StoreError> {
        let mut client = self.client().await?;
        let tx = client.transaction().await.map_err(anyhow::Error::from)?;
        let output = op(&PgSql(&tx)).await?;
        tx.commit().await.map_err(anyhow::Error::from)?;
        Ok(output)
    }

    /// Runs `op` on a pooled connection.
    async fn read_sql<T>(
        &self,
        op: impl AsyncFnOnce(&PgSql<'_, deadpool_postgres::Client>) -> anyhow::Result<T>,
    ) -> Result<T, StoreError> {
        Ok(op(&PgSql(&self.client().await?)).await?)
    }

    /// The catalog, re-read when older than [`CATALOG_TTL`] (or when `force`).
    async fn catalog(&self, force: bool) -> anyhow::Result<Arc<MeterCatalog>> {
        {
            let (catalog, loaded) = &*self.catalog.read().expect("catalog lock");
            if !force && loaded.elapsed() < CATALOG_TTL {
                return Ok(catalog.clone());
            }
        }
        let catalog = Arc::new(load_catalog(&*self.client().await?).await?);
        *self.catalog.write().expect("catalog lock") = (catalog.clone(), Instant::now());
        Ok(catalog)
    }
}

/// The URL with its passwords hidden, for messages: the one of the user
/// information and any `password=` option.
pub fn redact(url: &str) -> String {
    let (mut head, query) = match url.split_once('?') {
        Some((head, query)) => (head.to_owned(), Some(query)),
        None => (url.to_owned(), None),
    };
    // The authority runs from "://" to the next '/'; its user information
    // ends at its last '@' (a password may hold an unescaped '@' or ':').
    if let Some(start) = head.find("://").map(|i| i + 3) {
        let end = head[start..].find('/').map_or(head.len(), |i| start + i);
        if let Some(at) = head[start..end].rfind('@').map(|i| start + i)
            && let Some(colon) = head[start..at].find(':').map(|i| start + i)
        {
            head.replace_range(colon + 1..at, "***");
        }
    }
    let Some(query) = query else {
        return head;
    };
    let pairs: Vec<String> = (query.split('&'))
        .map(|pair| match pair.split_once('=') {
            Some((key, _)) if key.eq_ignore_ascii_case("password") => format!("{key}=***"),
            _ => pair.to_owned(),
        })
        .collect();
    format!("{head}?{}", pairs.join("&"))
}

/// Adds the documented meters that are missing; an operator's edits stay.
async fn seed_documented_meters(client: &tokio_postgres::Client) -> anyhow::Result<()> {
    let insert = client
        .prepare(
            "INSERT INTO meters (id, name, category, unit, notes) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT ((fold(id))) DO NOTHING",
        )
        .await?;
    for m in documented_meters() {
        client
            .execute(&insert, &[&m.id, &m.name, &m.category, &m.unit, &m.notes])
            .await?;
    }
    Ok(())
}

async fn load_catalog(client: &tokio_postgres::Client) -> anyhow::Result<MeterCatalog> {
    let rows = client
        .query(
            "SELECT key, id, name, category, unit, notes FROM meters ORDER BY key",
            &[],
        )
        .await?;
    Ok(MeterCatalog::new(
        rows.iter()
            .map(|row| Meter {
                key: row.get(0),
                id: row.get(1),
                name: row.get(2),
                category: row.get(3),
                unit: row.get(4),
                notes: row.get(5),
            })
            .collect(),
    ))
}

/// Inserts the subscription if new; returns its key.
async fn subscription_key(
    client: &impl deadpool_postgres::GenericClient,
    id: &str,
) -> anyhow::Result<i64> {
    client
        .execute(
            "INSERT INTO subscriptions (id, first_seen) VALUES ($1, $2)
             ON CONFLICT ((fold(id))) DO NOTHING",
            &[&id, &Utc::now().to_rfc3339()],
        )
        .await?;
    Ok(client
        .query_one(
            "SELECT key FROM subscriptions WHERE fold(id) = fold($1)",
            &[&id],
        )
        .await?
        .get(0))
}

#[async_trait]
impl Store for PostgresStore {
    async fn meter_catalog(&self) -> Result<Arc<MeterCatalog>, StoreError> {
        Ok(self.catalog(false).await?)
    }

    async fn fresh_meter_catalog(&self) -> Result<Arc<MeterCatalog>, StoreError> {
        Ok(self.catalog(true).await?)
    }

    async fn upsert_meter(&self, meter: Meter) -> Result<Meter, StoreError> {
        self.client()
            .await?
            .execute(
                "INSERT INTO meters (id, name, category, unit, notes) VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT ((fold(id))) DO UPDATE SET name = excluded.name,
                     category = excluded.category, unit = excluded.unit, notes = excluded.notes",
                &[
                    &meter.id,
                    &meter.name,
                    &meter.category,
                    &meter.unit,
                    &meter.notes,
                ],
            )
            .await
            .map_err(anyhow::Error::from)?;
        let catalog = self.catalog(true).await?;
        catalog.resolve(&meter.id).cloned().ok_or_else(|| {
            StoreError::Unavailable(anyhow!("the meter vanished after it was written"))
        })
    }

    async fn ingest(&self, records: Vec<UsageRecord>) -> Result<IngestReceipt, StoreError> {
        self.group_commit.ingest(records).await
    }

    async fn prune_usage_events(
        &self,
        before: chrono::DateTime<Utc>,
        limit: usize,
        archive: Option<EventArchive>,
    ) -> Result<PrunedBatch, StoreError> {
        let before_ms = before.timestamp_millis();
        self.write_sql(async |db| {
            db.execute("SELECT pg_advisory_xact_lock($1)", &[PRUNE_LOCK.into()])
                .await?;
            partitions::prune_batch(db, before_ms, limit, archive).await
        })
        .await
    }

    async fn aggregates(
        &self,
        query: &AggregateQuery,
        after: Option<Position>,
    ) -> Result<AggregatePage, StoreError> {
        let rows = self
            .read_sql(async |db| paging::read_page(db, &self.instances, query, after).await)
            .await?;
        let mut catalog = self.catalog(false).await?;
        if rows.meets_unknown_meter(&catalog) {
            // Added through another replica since this one last looked.
            catalog = self.catalog(true).await?;
        }
        Ok(rows.into_page(&catalog)?)
    }

    async fn subscription_exists(&self, id: &str) -> Result<bool, StoreError> {
        let found = self
            .client()
            .await?
            .query_opt(
                "SELECT 1 FROM subscriptions WHERE fold(id) = fold($1)",
                &[&id],
            )
            .await
            .map_err(anyhow::Error::from)?;
        Ok(found.is_some())
    }

    async fn create_token(&self, token: NewToken) -> Result<i64, StoreError> {
        let work = async {
            let mut client = self.client().await?;
            let tx = client.transaction().await?;
            for subscription in &token.subscriptions {
                subscription_key(&tx, subscription).await?;
            }
            let id: i64 = tx
                .query_one(
                    "INSERT INTO api_tokens (digest, role, subscriptions, description, created_at)
                     VALUES ($1, $2, $3, $4, $5) RETURNING id",
                    &[
                        &&token.digest[..],
                        &token.role.as_str(),
                        &serde_json::to_string(&token.subscriptions)?,
                        &token.description,
                        &Utc::now().to_rfc3339(),
                    ],
                )
                .await?
                .get(0);
            tx.commit().await?;
            anyhow::Ok(id)
        };
        Ok(work.await?)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let rows = self
            .client()
            .await?
            .query(
                "SELECT id, role, subscriptions, description, created_at FROM api_tokens ORDER BY id",
                &[],
            )
            .await
            .map_err(anyhow::Error::from)?;
        let tokens = rows
            .iter()
            .map(|row| {
                let role: String = row.get(1);
                Ok(TokenInfo {
                    id: row.get(0),
                    role: Role::parse(&role).ok_or_else(|| {
                        CorruptValue::error(
                            "a stored token role",
                            format!("'{role}' is not a role"),
                        )
                    })?,
                    subscriptions: serde_json::from_str(row.get(2))?,
                    description: row.get(3),
                    created_at: row.get(4),
                })
            })
            .collect::<anyhow::Result<_>>()?;
        Ok(tokens)
    }

    async fn revoke_token(&self, id: i64) -> Result<bool, StoreError> {
        let deleted = self
            .client()
            .await?
            .execute("DELETE FROM api_tokens WHERE id = $1", &[&id])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(deleted == 1)
    }

    async fn clock(&self) -> Result<chrono::DateTime<Utc>, StoreError> {
        let ms: i64 = self
            .client()
            .await?
            .query_one(&format!("SELECT {}", Dialect::Postgres.now_ms()), &[])
            .await
            .map_err(anyhow::Error::from)?
            .get(0);
        Ok(crate::store::exports::time(ms)?)
    }

    async fn health(&self) -> Result<(), StoreError> {
        self.client()
            .await?
            .query_one("SELECT count(*) FROM meters", &[])
            .await
            .map_err(anyhow::Error::from)?;
        Ok(())
    }

    async fn principal(&self, digest: [u8; 32]) -> Result<Option<Principal>, StoreError> {
        let found = self
            .client()
            .await?
            .query_opt(
                "SELECT role, subscriptions, id FROM api_tokens WHERE digest = $1",
                &[&&digest[..]],
            )
            .await
            .map_err(anyhow::Error::from)?;
        let Some(row) = found else {
            return Ok(None);
        };
        let role: String = row.get(0);
        let role = Role::parse(&role).ok_or_else(|| {
            CorruptValue::error("a stored token role", format!("'{role}' is not a role"))
        })?;
        Ok(Some(Principal {
            role,
            subscriptions: serde_json::from_str(row.get(1)).map_err(anyhow::Error::from)?,
            token_id: Some(row.get(2)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn redact_hides_every_password_of_a_url() {
        let cases = [
            (
                "postgres://tally:hunter2@db:5432/tally",
                "postgres://tally:***@db:5432/tally",
            ),
            (
                "postgres://tally:hun@ter:2@db/tally",
                "postgres://tally:***@db/tally",
            ),
            (
                "postgres://tally@db/tally?password=hunter2",
                "postgres://tally@db/tally?password=***",
            ),
            (
                "postgresql://db/tally?sslmode=require&PASSWORD=hunter2&user=tally",
                "postgresql://db/tally?sslmode=require&PASSWORD=***&user=tally",
            ),
            (
                "postgres://tally:hunter2@db1:5432,db2:5433/tally?password=again",
                "postgres://tally:***@db1:5432,db2:5433/tally?password=***",
            ),
            ("postgres://tally@db/tally", "postgres://tally@db/tally"),
            (
                "postgres://db/tally?user=tally",
                "postgres://db/tally?user=tally",
            ),
        ];
        for (url, shown) in cases {
            assert_eq!(redact(url), shown, "{url}");
        }
    }
}
