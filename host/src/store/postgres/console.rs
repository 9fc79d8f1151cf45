//! [`ConsoleStore`] on PostgreSQL: the shared operations ([`ops`]).

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::console::{ConsoleStore, NewSession, Replica, Session, UsageOverview, ops};

#[async_trait]
impl ConsoleStore for PostgresStore {
    async fn create_session(&self, session: NewSession) -> Result<(), StoreError> {
        self.write_sql(async move |db| ops::create_session(db, session).await)
            .await
    }

    async fn session(&self, digest: [u8; 32]) -> Result<Option<Session>, StoreError> {
        self.read_sql(async move |db| ops::session(db, digest).await)
            .await
    }

    async fn end_session(&self, digest: [u8; 32]) -> Result<bool, StoreError> {
        self.write_sql(async move |db| ops::end_session(db, digest).await)
            .await
    }

    async fn usage_overview(&self, now: DateTime<Utc>) -> Result<UsageOverview, StoreError> {
        self.read_sql(async move |db| ops::usage_overview(db, now).await)
            .await
    }

    async fn subscriptions(&self) -> Result<Vec<String>, StoreError> {
        self.read_sql(async move |db| ops::subscriptions(db).await)
            .await
    }

    async fn replica_alive(&self, replica: Replica) -> Result<(), StoreError> {
        self.write_sql(async move |db| ops::replica_alive(db, replica).await)
            .await
    }

    async fn replicas(&self, since: DateTime<Utc>) -> Result<Vec<Replica>, StoreError> {
        self.read_sql(async move |db| ops::replicas(db, since).await)
            .await
    }
}
