//! Operators' run requests, under the scheduler's rule (only closed
//! windows), and the runs and documents an installation has.

use chrono::{DateTime, Utc};

use super::{Exports, ExportsError, LoadedInstallation, windows};
use crate::store::StoreError;
use crate::store::exports::{
    DocumentInfo, Installation, Run, RunLogRecord, RunRequestOutcome, StoredDocument,
};

/// Most windows one run request may cover (a year of hours is 8,760).
pub const MAX_REQUESTED_WINDOWS: usize = 10_000;

/// A run with its log and the documents it published.
#[derive(Debug, Clone)]
pub struct RunRecord {
    pub run: Run,
    pub log: RunLogRecord,
    pub documents: Vec<DocumentInfo>,
}

impl Exports {
    /// Runs the windows of `loaded` overlapping `[from, to)` now: a first
    /// export, a correction of an exported window (the adapter is told), or
    /// a failed window again. Refused when the adapter is disabled, the range
    /// covers more than [`MAX_REQUESTED_WINDOWS`], or its last window has not
    /// closed by the store's clock (the scheduler's rule: lag passed, last
    /// records committed).
    pub async fn request_runs(
        &self,
        loaded: &LoadedInstallation,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<(Run, RunRequestOutcome)>, ExportsError> {
        let LoadedInstallation {
            installation,
            manifest,
        } = loaded;
        if from >= to {
            return Err(ExportsError::InvalidRange {
                property: "to",
                reason: "it must be after 'from'".into(),
            });
        }
        if !installation.enabled {
            return Err(ExportsError::Disabled(installation.name.clone()));
        }
        let count = windows::window_count(manifest.window, from, to);
        if count > MAX_REQUESTED_WINDOWS as i64 {
            return Err(ExportsError::InvalidRange {
                property: "to",
                reason: format!(
                    "the range covers {count} windows; at most {MAX_REQUESTED_WINDOWS} per request"
                ),
            });
        }
        let windows = windows::windows_between(manifest.window, from, to, MAX_REQUESTED_WINDOWS);
        let now = self.store.clock().await?;
        if let Some((_, end)) = windows
            .last()
            .filter(|(_, end)| !windows::is_closed(*end, manifest.lag, now))
        {
            return Err(ExportsError::not_closed(*end, manifest.lag));
        }
        let requested = self.store.request_runs(installation.id, windows).await?;
        self.wake();
        Ok(requested)
    }

    /// The latest `limit` runs of `installation`, newest window first.
    pub async fn runs(
        &self,
        installation: &Installation,
        limit: usize,
    ) -> Result<Vec<Run>, StoreError> {
        self.store.runs(installation.id, limit).await
    }

    /// Run `id` of `installation`, with its log and documents.
    pub async fn run(
        &self,
        installation: &Installation,
        id: i64,
    ) -> Result<RunRecord, ExportsError> {
        let (run, log, documents) =
            self.store
                .run(installation.id, id)
                .await?
                .ok_or_else(|| ExportsError::NoRun {
                    adapter: installation.name.clone(),
                    run: id,
                })?;
        Ok(RunRecord {
            run,
            log,
            documents,
        })
    }

    /// A document of run `id` of `installation`, as the adapter wrote it.
    pub async fn run_document(
        &self,
        installation: &Installation,
        id: i64,
        document: &str,
    ) -> Result<StoredDocument, ExportsError> {
        // The run must belong to this installation.
        self.run(installation, id).await?;
        self.store
            .run_document(id, document)
            .await?
            .ok_or_else(|| ExportsError::NoRunDocument {
                run: id,
                document: document.to_owned(),
            })
    }

    /// The names of the documents `installation` has published.
    pub async fn document_names(
        &self,
        installation: &Installation,
    ) -> Result<Vec<String>, StoreError> {
        self.store.document_names(installation.id).await
    }
}
