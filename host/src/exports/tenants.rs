//! Documents published to tenants: what the runs of installations with
//! `publish_to_tenants` wrote for a subscription, listed, read per run and
//! joined over windows for that subscription only.
//!
//! Whether the caller may read the subscription is the API's to decide; here
//! anything not published to the subscription is [`ExportsError::NotPublished`],
//! worded from what the caller asked alone, so that no answer tells another
//! subscription's documents (or an adapter that publishes none) apart.

use chrono::{DateTime, Utc};
use futures_util::StreamExt;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::documents::{JoinedDocument, Joining, concatenate};
use super::{Exports, ExportsError};
use crate::store::exports::{Installation, StoredDocument, TenantDocument, TenantDocumentsAfter};

impl Exports {
    /// The documents published to `subscription_id` for windows starting in
    /// `[from, to)`: newest window first, then by installation and name, at
    /// most `limit` after `after`.
    pub async fn tenant_documents(
        &self,
        subscription_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<TenantDocumentsAfter>,
        limit: usize,
    ) -> Result<Vec<TenantDocument>, ExportsError> {
        Ok(self
            .store
            .tenant_documents(subscription_id, from, to, after, limit)
            .await?)
    }

    /// `document` of run `run_id` of the installation named `adapter`, if it
    /// was published to `subscription_id`.
    pub async fn tenant_run_document(
        &self,
        subscription_id: &str,
        adapter: &str,
        run_id: i64,
        document: &str,
    ) -> Result<StoredDocument, ExportsError> {
        let not_published = || ExportsError::NotPublished {
            subscription: subscription_id.to_owned(),
            adapter: adapter.to_owned(),
            document: document.to_owned(),
        };
        let installation = self.publishing(adapter).await?.ok_or_else(not_published)?;
        self.store
            .tenant_run_document(installation.id, run_id, document, subscription_id)
            .await?
            .ok_or_else(not_published)
    }

    /// `document` of the installation named `adapter` over its runs whose
    /// windows start in `[from, to)` and whose `document` was published to
    /// `subscription_id`, joined as an operator's joined document is.
    /// Refused when it was never published to the subscription, or when its
    /// content type does not join.
    pub async fn tenant_joined_document(
        &self,
        subscription_id: &str,
        adapter: &str,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<JoinedDocument, ExportsError> {
        let not_published = || ExportsError::NotPublished {
            subscription: subscription_id.to_owned(),
            adapter: adapter.to_owned(),
            document: document.to_owned(),
        };
        let installation = self.publishing(adapter).await?.ok_or_else(not_published)?;
        let runs = self
            .store
            .tenant_published_runs(installation.id, document, subscription_id, from, to)
            .await?;
        let Some(first) = runs.first() else {
            let published = self
                .store
                .tenant_document_published(installation.id, document, subscription_id)
                .await?;
            if !published {
                return Err(not_published());
            }
            return Ok(JoinedDocument {
                content_type: "text/plain".into(),
                body: futures_util::stream::empty().boxed(),
            });
        };
        let content_type = self
            .store
            .tenant_run_document(installation.id, first.id, document, subscription_id)
            .await?
            .map(|d| d.content_type)
            .unwrap_or_default();
        let Some(joining) = Joining::of(&content_type) else {
            return Err(ExportsError::NotJoinable {
                per_run: format!(
                    "/v1/subscriptions/{}/adapters/{}/runs/{{id}}/documents/{document}",
                    path_segment(subscription_id),
                    installation.name
                ),
                document: document.to_owned(),
                content_type,
            });
        };
        let body = concatenate(self.store.clone(), runs, document.to_owned(), joining).boxed();
        Ok(JoinedDocument { content_type, body })
    }

    /// The installation named `adapter` (ignoring case), if it publishes to
    /// tenants. Its manifest is not read: tenants need none of it.
    async fn publishing(&self, adapter: &str) -> Result<Option<Installation>, ExportsError> {
        Ok(self
            .store
            .installation(adapter)
            .await?
            .filter(|installation| installation.publish_to_tenants))
    }
}

/// What a path segment may hold unescaped: the unreserved characters.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// `value` as one segment of a URL's path (a subscription id may hold `/`,
/// `?` or spaces).
pub fn path_segment(value: &str) -> String {
    utf8_percent_encode(value, SEGMENT).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_path_segment_escapes_all_but_the_unreserved_characters() {
        assert_eq!(path_segment("sub-A_1.x~"), "sub-A_1.x~");
        assert_eq!(path_segment("a/b?c d%é"), "a%2Fb%3Fc%20d%25%C3%A9");
    }
}
