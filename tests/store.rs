//! The store's contract, written once against `Arc<dyn Store>` and held by
//! both backends in the same run: `conformance!` turns each test into
//! `store::…::NAME::on_sqlite` and `store::…::NAME::on_postgres`. The
//! PostgreSQL variant needs the server `TALLY_TEST_POSTGRES` names and fails
//! without it (`tests/run.sh` skips `on_postgres` tests when none answers,
//! outside CI). Components are opaque bytes to the store: no real adapter
//! runs here.

mod access;
mod exports;
mod usage;

use std::sync::Arc;

use chrono::{DateTime, TimeZone, Utc};
use tally::store::sqlite::SqliteStore;
use tally::store::{AggregatePage, AggregateQuery, AggregateRow, Position, Store};

use crate::support::database::TestDatabase;

/// A store on a backend of its own, with what must outlive it.
pub struct Backend {
    /// Declared first: dropped before its database.
    pub store: Arc<dyn Store>,
    _directory: Option<tempfile::TempDir>,
    _database: Option<TestDatabase>,
}

impl Backend {
    /// An embedded store in a temporary directory.
    pub fn sqlite() -> Self {
        let directory = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(directory.path()).unwrap();
        Backend {
            store: Arc::new(store),
            _directory: Some(directory),
            _database: None,
        }
    }

    /// A store on a fresh database of the test server; panics without one.
    pub async fn postgres() -> Self {
        let database = TestDatabase::create();
        let store = tally::store::postgres::PostgresStore::open(&database.url)
            .await
            .unwrap();
        Backend {
            store: Arc::new(store),
            _directory: None,
            _database: Some(database),
        }
    }
}

/// Runs each named `async fn NAME(store: Arc<dyn Store>)` of the calling
/// module on SQLite and on PostgreSQL, as the tests `NAME::on_sqlite` and
/// `NAME::on_postgres`.
macro_rules! conformance {
    ($($test:ident),+ $(,)?) => {$(
        mod $test {
            #[tokio::test]
            async fn on_sqlite() {
                let backend = $crate::store::Backend::sqlite();
                super::$test(backend.store.clone()).await;
            }

            #[tokio::test]
            async fn on_postgres() {
                let backend = $crate::store::Backend::postgres().await;
                super::$test(backend.store.clone()).await;
            }
        }
    )+};
}
pub(crate) use conformance;

/// Midnight UTC of 1 March 2024 plus `days`: a past that every backfill may name.
pub fn day(days: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 3, 1, 0, 0, 0).unwrap() + chrono::Duration::days(days)
}

/// `hours` after [`day`]`(0)`.
pub fn hour(hours: i64) -> DateTime<Utc> {
    day(0) + chrono::Duration::hours(hours)
}

/// Every page of `query` from the start, as the pages came.
pub async fn pages(store: &Arc<dyn Store>, query: &AggregateQuery) -> Vec<AggregatePage> {
    let mut pages = Vec::new();
    let mut after: Option<Position> = None;
    loop {
        let page = store.aggregates(query, after).await.unwrap();
        after = page.next;
        let last = after.is_none();
        pages.push(page);
        if last {
            return pages;
        }
    }
}

/// Every row of `query`, followed through all its pages.
pub async fn all_rows(store: &Arc<dyn Store>, query: &AggregateQuery) -> Vec<AggregateRow> {
    pages(store, query)
        .await
        .into_iter()
        .flat_map(|page| page.rows)
        .collect()
}
