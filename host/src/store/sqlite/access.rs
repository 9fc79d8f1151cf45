//! [`AccessStore`] on SQLite: the shared operations ([`ops`]).

use async_trait::async_trait;

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::access::{AccessStore, Grant, GrantError, check_grant, ops};

#[async_trait]
impl AccessStore for SqliteStore {
    async fn grant(
        &self,
        issuer: &str,
        subject: &str,
        subscription: &str,
    ) -> Result<Grant, GrantError> {
        check_grant(issuer, subject, subscription)?;
        let (issuer, subject, subscription) = (
            issuer.to_owned(),
            subject.to_owned(),
            subscription.to_owned(),
        );
        let (for_issuer, for_subject) = (issuer.clone(), subject.clone());
        self.write_sql(async move |db| ops::grant(db, &issuer, &subject, &subscription).await)
            .await?
            .ok_or(GrantError::TooMany {
                issuer: for_issuer,
                subject: for_subject,
            })
    }

    async fn revoke_grant(
        &self,
        issuer: &str,
        subject: &str,
        subscription: &str,
    ) -> Result<bool, StoreError> {
        let (issuer, subject, subscription) = (
            issuer.to_owned(),
            subject.to_owned(),
            subscription.to_owned(),
        );
        self.write_sql(async move |db| ops::revoke(db, &issuer, &subject, &subscription).await)
            .await
    }

    async fn grants(&self) -> Result<Vec<Grant>, StoreError> {
        self.read_sql(async move |db| ops::grants(db).await).await
    }

    async fn subscriptions_granted(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<String>, StoreError> {
        let (issuer, subject) = (issuer.to_owned(), subject.to_owned());
        self.read_sql(async move |db| ops::subscriptions_granted(db, &issuer, &subject).await)
            .await
    }
}
