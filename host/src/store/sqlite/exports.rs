//! [`ExportStore`] on SQLite: the shared operations ([`ops`]), changes run
//! on the writer thread in one transaction each, reads on a pooled reader.

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::SqliteStore;
use crate::store::StoreError;
use crate::store::exports::{
    DocumentInfo, ExportStore, FinishedAttempt, Installation, Interrupted, NewInstallation, Run,
    RunLogRecord, RunRequestOutcome, StoredDocument, TenantDocument, TenantDocumentsAfter,
    name_taken, ops,
};

#[async_trait]
impl ExportStore for SqliteStore {
    async fn put_component(&self, sha256: &str, wasm: Vec<u8>) -> Result<(), StoreError> {
        let sha256 = sha256.to_owned();
        self.write_sql(async move |db| ops::put_component(db, &sha256, wasm).await)
            .await
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let sha256 = sha256.to_owned();
        self.read_sql(async move |db| ops::component(db, &sha256).await)
            .await
    }

    async fn create_installation(&self, new: NewInstallation) -> Result<Installation, StoreError> {
        let name = new.name.clone();
        self.write_sql(async move |db| ops::create_installation(db, new).await)
            .await?
            .ok_or_else(|| name_taken(&name))
    }

    async fn upgrade_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Option<Installation>, StoreError> {
        self.write_sql(async move |db| ops::upgrade_installation(db, new).await)
            .await
    }

    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<Installation>, StoreError> {
        let name = name.to_owned();
        self.write_sql(async move |db| ops::set_enabled(db, &name, enabled).await)
            .await
    }

    async fn remove_installation(&self, name: &str) -> Result<bool, StoreError> {
        let name = name.to_owned();
        self.write_sql(async move |db| ops::remove_installation(db, &name).await)
            .await
    }

    async fn installation(&self, name: &str) -> Result<Option<Installation>, StoreError> {
        let name = name.to_owned();
        self.read_sql(async move |db| ops::installation(db, &name).await)
            .await
    }

    async fn installation_by_id(&self, id: i64) -> Result<Option<Installation>, StoreError> {
        self.read_sql(async move |db| ops::installation_by_id(db, id).await)
            .await
    }

    async fn installations(&self) -> Result<Vec<Installation>, StoreError> {
        self.read_sql(async |db| ops::installations(db).await).await
    }

    async fn schedule_windows(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<usize, StoreError> {
        self.write_sql(async move |db| ops::schedule_windows(db, installation_id, windows).await)
            .await
    }

    async fn request_runs(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, StoreError> {
        self.write_sql(async move |db| ops::request_runs(db, installation_id, windows).await)
            .await
    }

    fn is_shared(&self) -> bool {
        false // one host owns the file
    }

    async fn claim_run(
        &self,
        now: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StoreError> {
        let holder = holder.to_owned();
        self.write_sql(async move |db| ops::claim_run(db, now, &holder, lease).await)
            .await
    }

    async fn renew_lease(
        &self,
        run_id: i64,
        claim: u32,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.write_sql(async move |db| ops::renew_lease(db, run_id, claim, lease).await)
            .await
    }

    async fn finish_run(
        &self,
        run_id: i64,
        claim: u32,
        attempt: FinishedAttempt,
    ) -> Result<bool, StoreError> {
        self.write_sql(async move |db| ops::finish_run(db, run_id, claim, attempt).await)
            .await
    }

    async fn requeue_interrupted_runs(
        &self,
        max_attempts: u32,
        which: Interrupted,
    ) -> Result<usize, StoreError> {
        self.write_sql(async move |db| ops::requeue_interrupted_runs(db, max_attempts, which).await)
            .await
    }

    async fn runs(&self, installation_id: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.read_sql(async move |db| ops::runs(db, installation_id, limit).await)
            .await
    }

    async fn holding_run(&self, installation_id: i64) -> Result<Option<Run>, StoreError> {
        self.read_sql(async move |db| ops::holding_run(db, installation_id).await)
            .await
    }

    async fn run(
        &self,
        installation_id: i64,
        run_id: i64,
    ) -> Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>, StoreError> {
        self.read_sql(async move |db| ops::run(db, installation_id, run_id).await)
            .await
    }

    async fn run_document(
        &self,
        run_id: i64,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let name = name.to_owned();
        self.read_sql(async move |db| ops::run_document(db, run_id, &name).await)
            .await
    }

    async fn published_runs(
        &self,
        installation_id: i64,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let document = document.to_owned();
        self.read_sql(async move |db| {
            ops::published_runs(db, installation_id, &document, from, to).await
        })
        .await
    }

    async fn succeeded_runs(
        &self,
        installation_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.read_sql(async move |db| {
            ops::succeeded_runs(db, installation_id, from, to, limit).await
        })
        .await
    }

    async fn document_names(&self, installation_id: i64) -> Result<Vec<String>, StoreError> {
        self.read_sql(async move |db| ops::document_names(db, installation_id).await)
            .await
    }

    async fn run_config(&self, config_sha256: &str) -> Result<Option<String>, StoreError> {
        let config_sha256 = config_sha256.to_owned();
        self.read_sql(async move |db| ops::run_config(db, &config_sha256).await)
            .await
    }

    async fn tenant_documents(
        &self,
        subscription_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        after: Option<TenantDocumentsAfter>,
        limit: usize,
    ) -> Result<Vec<TenantDocument>, StoreError> {
        let subscription_id = subscription_id.to_owned();
        self.read_sql(async move |db| {
            ops::tenant_documents(db, &subscription_id, from, to, after, limit).await
        })
        .await
    }

    async fn tenant_run_document(
        &self,
        installation_id: i64,
        run_id: i64,
        name: &str,
        subscription_id: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        let (name, subscription_id) = (name.to_owned(), subscription_id.to_owned());
        self.read_sql(async move |db| {
            ops::tenant_run_document(db, installation_id, run_id, &name, &subscription_id).await
        })
        .await
    }

    async fn tenant_published_runs(
        &self,
        installation_id: i64,
        document: &str,
        subscription_id: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        let (document, subscription_id) = (document.to_owned(), subscription_id.to_owned());
        self.read_sql(async move |db| {
            ops::tenant_published_runs(db, installation_id, &document, &subscription_id, from, to)
                .await
        })
        .await
    }

    async fn tenant_document_published(
        &self,
        installation_id: i64,
        document: &str,
        subscription_id: &str,
    ) -> Result<bool, StoreError> {
        let (document, subscription_id) = (document.to_owned(), subscription_id.to_owned());
        self.read_sql(async move |db| {
            ops::tenant_document_published(db, installation_id, &document, &subscription_id).await
        })
        .await
    }
}
