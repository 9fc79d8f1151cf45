//! Reading a usage listing's next page while the current one is sent.
//!
//! An Azure client follows `nextLink` as soon as it has a page, so when a
//! page has a next one the host starts reading it at once, on another core,
//! and the request that brings the continuation token takes that read
//! instead of starting its own. Nothing a client sees changes: the page is
//! the one its token names, read a few milliseconds earlier (keyset pages
//! never depend on when they are read, except for usage reported meanwhile
//! into the window, which a page read later could equally miss).
//!
//! Bounded: at most [`MAX_PENDING`] pages (by default) are read ahead at
//! once, for all callers together, each kept at most [`KEPT_FOR`]; when all are taken, no
//! page is read ahead (the next request reads its own, as without this). So
//! a client that never follows its links costs the host at most one page
//! read for each page it asks for, and takes from others only the speed-up.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::store::{AggregatePage, AggregateQuery, Position, Store, StoreError};

/// Most pages read ahead at once by default (a page is at most the API's
/// page size of rows, about 1 MB as JSON).
pub const MAX_PENDING: usize = 16;
/// How long a page read ahead waits for its request.
pub const KEPT_FOR: Duration = Duration::from_secs(10);

/// The pages being read, or read, ahead of their requests.
pub struct ReadAhead {
    pending: Mutex<HashMap<(AggregateQuery, Position), Pending>>,
    max_pending: usize,
}

impl Default for ReadAhead {
    fn default() -> Self {
        ReadAhead::new(MAX_PENDING)
    }
}

struct Pending {
    started: Instant,
    read: JoinHandle<Result<AggregatePage, StoreError>>,
}

impl Drop for Pending {
    fn drop(&mut self) {
        self.read.abort();
    }
}

impl ReadAhead {
    /// Reads at most `max_pending` pages ahead at once; 0 never reads ahead.
    pub fn new(max_pending: usize) -> Self {
        ReadAhead {
            pending: Mutex::new(HashMap::new()),
            max_pending,
        }
    }

    /// The page of `query` after `after`: the one read ahead for it if there
    /// is one, else read now. When it has a next page, starts reading that.
    pub async fn page(
        &self,
        store: &Arc<dyn Store>,
        query: &AggregateQuery,
        after: Option<Position>,
    ) -> Result<AggregatePage, StoreError> {
        let ahead = after.and_then(|position| self.take(query, position));
        let page = match ahead {
            // A read ahead that failed is read again: its error may have passed.
            Some(mut pending) => match (&mut pending.read).await {
                Ok(Ok(page)) => page,
                _ => store.aggregates(query, after).await?,
            },
            None => store.aggregates(query, after).await?,
        };
        if let Some(next) = page.next {
            self.start(store, query, next);
        }
        Ok(page)
    }

    /// How many pages are read ahead now.
    pub fn pending(&self) -> usize {
        self.lock().len()
    }

    fn take(&self, query: &AggregateQuery, position: Position) -> Option<Pending> {
        self.lock().remove(&(query.clone(), position))
    }

    fn start(&self, store: &Arc<dyn Store>, query: &AggregateQuery, position: Position) {
        let mut pending = self.lock();
        pending.retain(|_, p| p.started.elapsed() < KEPT_FOR);
        if pending.len() >= self.max_pending {
            return;
        }
        let (store, query) = (store.clone(), query.clone());
        let key = (query.clone(), position);
        let read = tokio::spawn(async move { store.aggregates(&query, Some(position)).await });
        pending.insert(
            key,
            Pending {
                started: Instant::now(),
                read,
            },
        );
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<(AggregateQuery, Position), Pending>> {
        // Nothing here panics while holding the lock; recover anyway.
        self.pending.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::store::SubscriptionScope;
    use crate::store::sqlite::SqliteStore;
    use crate::usage::{Granularity, MeterCatalog, UsageRecordInput, ValidationContext};

    /// A store with one hour of usage of `resources` resources in "sub".
    async fn store_with(resources: usize) -> (tempfile::TempDir, Arc<dyn Store>) {
        let data = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(data.path()).unwrap();
        let meters = MeterCatalog::builtin_for_tests();
        let ctx = ValidationContext {
            meters: &meters,
            now: Utc::now(),
            may_set_reported_time: true,
            retention_cutoff: None,
        };
        let records = (0..resources)
            .map(|r| {
                let input: UsageRecordInput = serde_json::from_value(serde_json::json!({
                    "eventId": format!("e{r}"), "subscriptionId": "sub", "resourceUri": format!("/vm-{r}"),
                    "meterId": "FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", "quantity": 1.0,
                    "usageStartTime": "2024-05-01T00:00:00Z", "usageEndTime": "2024-05-01T01:00:00Z",
                    "reportedTime": "2024-05-01T01:10:00Z"
                }))
                .unwrap();
                input.validate(r, &ctx).unwrap()
            })
            .collect();
        store.ingest(records).await.unwrap();
        let store: Arc<dyn Store> = Arc::new(store);
        (data, store)
    }

    fn query(page_size: usize, reported_end: &str) -> AggregateQuery {
        AggregateQuery {
            scope: SubscriptionScope::One("sub".into()),
            reported_start: "2024-05-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap(),
            reported_end: reported_end.parse::<DateTime<Utc>>().unwrap(),
            granularity: Granularity::Hourly,
            show_details: true,
            page_size,
        }
    }

    #[tokio::test]
    async fn pages_read_ahead_are_the_pages_their_tokens_name() {
        let (_data, store) = store_with(25).await;
        let query = query(10, "2024-05-01T02:00:00Z");
        let read_ahead = ReadAhead::default();
        let (mut after, mut pages) = (None, 0);
        loop {
            let page = read_ahead.page(&store, &query, after).await.unwrap();
            assert_eq!(page, store.aggregates(&query, after).await.unwrap());
            pages += 1;
            assert_eq!(
                read_ahead.pending(),
                usize::from(page.next.is_some()),
                "the next page, and only it, is read ahead"
            );
            match page.next {
                Some(next) => after = Some(next),
                None => break,
            }
        }
        assert_eq!(pages, 3);
    }

    #[tokio::test]
    async fn at_most_16_pages_are_read_ahead_for_links_nobody_follows() {
        let (_data, store) = store_with(3).await;
        let read_ahead = ReadAhead::default();
        // 20 distinct queries, each asked for its first page only.
        for hour in 2..22 {
            let query = query(1, &format!("2024-05-01T{hour:02}:00:00Z"));
            let page = read_ahead.page(&store, &query, None).await.unwrap();
            assert!(page.next.is_some());
        }
        assert_eq!(read_ahead.pending(), MAX_PENDING);
    }
}
