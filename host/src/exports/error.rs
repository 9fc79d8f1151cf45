//! What the exports service refuses, besides installs and upgrades
//! ([`super::InstallError`]).

use chrono::{DateTime, Utc};

use crate::store::StoreError;

/// A refused request about installations, runs or documents.
#[derive(Debug, thiserror::Error)]
pub enum ExportsError {
    /// No adapter is installed under this name.
    #[error("No adapter is installed as '{0}'.")]
    NotInstalled(String),
    /// The adapter has no run with this id.
    #[error("Adapter '{adapter}' has no run {run}.")]
    NoRun { adapter: String, run: i64 },
    /// The run has no document with this name.
    #[error("Run {run} has no document '{document}'.")]
    NoRunDocument { run: i64, document: String },
    /// The adapter never published a document with this name.
    #[error("Adapter '{adapter}' has published no document '{document}'.")]
    NoDocument { adapter: String, document: String },
    /// Runs were requested of a disabled adapter.
    #[error("Adapter '{0}' is disabled: enable it to run windows.")]
    Disabled(String),
    /// The requested range is not one the service runs: `property` says
    /// which bound is wrong, `reason` why.
    #[error("The property '{property}' is invalid: {reason}.")]
    InvalidRange {
        property: &'static str,
        reason: String,
    },
    /// The document's content type does not join across runs; `per_run` is
    /// where each run's is fetched (`{id}` standing for the run's id).
    #[error(
        "'{document}' is {content_type}, which does not join across runs; fetch it per run at {per_run}."
    )]
    NotJoinable {
        document: String,
        content_type: String,
        per_run: String,
    },
    /// Nothing of this name is published to the subscription: the adapter
    /// does not exist, publishes nothing to tenants, or never published the
    /// document (of this run) to this subscription. Which, is not told.
    #[error(
        "No document '{document}' of adapter '{adapter}' is published to subscription '{subscription}'."
    )]
    NotPublished {
        subscription: String,
        adapter: String,
        document: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ExportsError {
    /// A range whose last window ends at `end` and has not closed yet.
    pub(crate) fn not_closed(end: DateTime<Utc>, lag: std::time::Duration) -> Self {
        ExportsError::InvalidRange {
            property: "to",
            reason: format!(
                "the last window of the range ends at {end}, and has not closed yet: it can run \
                 from {} (its end plus the lag of {}). Usage imported now is reported now; \
                 past usage imported with its reported time (`tally import --reported-at`) \
                 can be exported at once",
                chrono::Duration::from_std(lag)
                    .ok()
                    .and_then(|lag| end.checked_add_signed(lag))
                    .map_or_else(|| "later".to_owned(), |at| at.to_string()),
                humantime::format_duration(lag)
            ),
        }
    }
}
