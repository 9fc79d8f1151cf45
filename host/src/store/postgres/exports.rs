//! [`ExportStore`] on PostgreSQL, for replicas sharing one database: the
//! shared operations ([`ops`]), changes in one transaction each, reads on a
//! pooled connection. Claims, requeues and operator requests serialise on
//! the advisory lock [`RUNS_LOCK`](super::RUNS_LOCK) (see [`ops`]).

use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::PostgresStore;
use crate::store::StoreError;
use crate::store::exports::{
    DocumentInfo, ExportStore, FinishedAttempt, Installation, Interrupted, NewInstallation, Run,
    RunLogRecord, RunRequestOutcome, StoredDocument, TenantDocument, TenantDocumentsAfter,
    name_taken, ops,
};

#[async_trait]
impl ExportStore for PostgresStore {
    async fn put_component(&self, sha256: &str, wasm: Vec<u8>) -> Result<(), StoreError> {
        self.write_sql(async |db| ops::put_component(db, sha256, wasm).await)
            .await
    }

    async fn component(&self, sha256: &str) -> Result<Option<Vec<u8>>, StoreError> {
        self.read_sql(async |db| ops::component(db, sha256).await)
            .await
    }

    async fn create_installation(&self, new: NewInstallation) -> Result<Installation, StoreError> {
        let name = new.name.clone();
        self.write_sql(async |db| ops::create_installation(db, new).await)
            .await?
            .ok_or_else(|| name_taken(&name))
    }

    async fn upgrade_installation(
        &self,
        new: NewInstallation,
    ) -> Result<Option<Installation>, StoreError> {
        self.write_sql(async |db| ops::upgrade_installation(db, new).await)
            .await
    }

    async fn set_enabled(
        &self,
        name: &str,
        enabled: bool,
    ) -> Result<Option<Installation>, StoreError> {
        self.write_sql(async |db| ops::set_enabled(db, name, enabled).await)
            .await
    }

    async fn remove_installation(&self, name: &str) -> Result<bool, StoreError> {
        self.write_sql(async |db| ops::remove_installation(db, name).await)
            .await
    }

    async fn installation(&self, name: &str) -> Result<Option<Installation>, StoreError> {
        self.read_sql(async |db| ops::installation(db, name).await)
            .await
    }

    async fn installation_by_id(&self, id: i64) -> Result<Option<Installation>, StoreError> {
        self.read_sql(async |db| ops::installation_by_id(db, id).await)
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
        self.write_sql(async |db| ops::schedule_windows(db, installation_id, windows).await)
            .await
    }

    async fn request_runs(
        &self,
        installation_id: i64,
        windows: Vec<(DateTime<Utc>, DateTime<Utc>)>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, StoreError> {
        self.write_sql(async |db| ops::request_runs(db, installation_id, windows).await)
            .await
    }

    fn is_shared(&self) -> bool {
        true
    }

    async fn claim_run(
        &self,
        now: DateTime<Utc>,
        holder: &str,
        lease: Duration,
    ) -> Result<Option<Run>, StoreError> {
        self.write_sql(async |db| ops::claim_run(db, now, holder, lease).await)
            .await
    }

    async fn renew_lease(
        &self,
        run_id: i64,
        claim: u32,
        lease: Duration,
    ) -> Result<bool, StoreError> {
        self.write_sql(async |db| ops::renew_lease(db, run_id, claim, lease).await)
            .await
    }

    async fn finish_run(
        &self,
        run_id: i64,
        claim: u32,
        attempt: FinishedAttempt,
    ) -> Result<bool, StoreError> {
        self.write_sql(async |db| ops::finish_run(db, run_id, claim, attempt).await)
            .await
    }

    async fn requeue_interrupted_runs(
        &self,
        max_attempts: u32,
        which: Interrupted,
    ) -> Result<usize, StoreError> {
        self.write_sql(async |db| ops::requeue_interrupted_runs(db, max_attempts, which).await)
            .await
    }

    async fn runs(&self, installation_id: i64, limit: usize) -> Result<Vec<Run>, StoreError> {
        self.read_sql(async |db| ops::runs(db, installation_id, limit).await)
            .await
    }

    async fn holding_run(&self, installation_id: i64) -> Result<Option<Run>, StoreError> {
        self.read_sql(async |db| ops::holding_run(db, installation_id).await)
            .await
    }

    async fn run(
        &self,
        installation_id: i64,
        run_id: i64,
    ) -> Result<Option<(Run, RunLogRecord, Vec<DocumentInfo>)>, StoreError> {
        self.read_sql(async |db| ops::run(db, installation_id, run_id).await)
            .await
    }

    async fn run_document(
        &self,
        run_id: i64,
        name: &str,
    ) -> Result<Option<StoredDocument>, StoreError> {
        self.read_sql(async |db| ops::run_document(db, run_id, name).await)
            .await
    }

    async fn published_runs(
        &self,
        installation_id: i64,
        document: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<Run>, StoreError> {
        self.read_sql(async |db| ops::published_runs(db, installation_id, document, from, to).await)
            .await
    }

    async fn succeeded_runs(
        &self,
        installation_id: i64,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.read_sql(async |db| ops::succeeded_runs(db, installation_id, from, to, limit).await)
            .await
    }

    async fn document_names(&self, installation_id: i64) -> Result<Vec<String>, StoreError> {
        self.read_sql(async |db| ops::document_names(db, installation_id).await)
            .await
    }

    async fn run_config(&self, config_sha256: &str) -> Result<Option<String>, StoreError> {
        self.read_sql(async |db| ops::run_config(db, config_sha256).await)
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
        self.read_sql(async |db| {
            ops::tenant_documents(db, subscription_id, from, to, after, limit).await
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
        self.read_sql(async |db| {
            ops::tenant_run_document(db, installation_id, run_id, name, subscription_id).await
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
        self.read_sql(async |db| {
            ops::tenant_published_runs(db, installation_id, document, subscription_id, from, to)
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
        self.read_sql(async |db| {
            ops::tenant_document_published(db, installation_id, document, subscription_id).await
        })
        .await
    }
}
