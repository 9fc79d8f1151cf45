//! Verify: re-derives the documents of exported windows and compares them,
//! byte for byte, with what was published.
//!
//! For each window starting in the range whose published run kept its
//! provenance, the stored component runs again with the stored config over
//! the same window and granularity, in the sandbox under the installation's
//! limits, sending nothing (`Outbound::Verification`). A window matches
//! when the rows it read digest as they did then and every document is the
//! same: name, owner, content type and bytes (and the stored bytes still
//! have the digest recorded when they were published).
//!
//! Bounds: at most [`MAX_VERIFIED_WINDOWS`] windows a call, re-run one at a
//! time under the exports' run concurrency; each re-run under the
//! installation's limits (deadline, memory, output).

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::runner::run_id;
use super::{Exports, ExportsError, LoadedInstallation, windows};
use crate::sandbox::contract::{ExportRequest, Granularity as WitGranularity, Window};
use crate::sandbox::host_usage::UsageAccess;
use crate::sandbox::limits::Document;
use crate::sandbox::{Outbound, run_export};
use crate::store::exports::{DocumentInfo, Run};
use crate::usage::Granularity;

/// Most windows one verification re-runs.
pub const MAX_VERIFIED_WINDOWS: usize = 366;

/// What a verification found over a range.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    /// The installation's name.
    pub adapter: String,
    /// Windows starting from here…
    pub from: DateTime<Utc>,
    /// …and before here.
    pub to: DateTime<Utc>,
    /// Whether at least one window was verified and every window matched.
    pub verified: bool,
    /// Each exported window of the range, in window order.
    pub windows: Vec<WindowCheck>,
}

/// How one window's published run compares with its re-run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct WindowCheck {
    /// The run verified (the window's published revision).
    pub run_id: i64,
    pub revision: u32,
    pub window: WindowBounds,
    pub result: WindowResult,
    /// Why the window is unverifiable, failed, or does not match.
    pub reason: Option<String>,
    /// The digests of the rows read then and now; `None` unless re-run.
    pub usage: Option<UsageCheck>,
    /// Each document published or re-derived, by name; empty unless re-run.
    pub documents: Vec<DocumentCheck>,
}

/// A window's bounds.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WindowBounds {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

/// The verdict on a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum WindowResult {
    /// Same usage, same documents.
    Match,
    /// The usage or a document differs.
    Mismatch,
    /// Cannot be re-derived: exported before provenance was kept, it sent
    /// requests (a verification sends none), or its component or config is
    /// no longer stored.
    Unverifiable,
    /// The re-run failed (the reason says how).
    Failed,
}

/// The digests of the usage a window's run read, then and now.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct UsageCheck {
    /// Recorded when the window was exported.
    pub recorded: String,
    /// Of the rows the re-run read.
    pub now: String,
    pub matches: bool,
}

/// How one document compares.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentCheck {
    pub name: String,
    /// The subscription it belongs to (the published one's, else the re-run's).
    pub subscription_id: Option<String>,
    pub result: DocumentResult,
    /// Where the bytes first differ; `None` when they do not.
    pub first_difference: Option<FirstDifference>,
}

/// The verdict on a document.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum DocumentResult {
    /// Same bytes, content type and owner.
    Match,
    /// Published and re-derived, not the same (or its stored bytes no
    /// longer have their recorded digest).
    Differs,
    /// Published, not re-derived.
    Missing,
    /// Re-derived, not published.
    Unexpected,
}

/// Where two documents' bytes first differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FirstDifference {
    /// Bytes before it (0-based).
    pub offset: u64,
    /// Its line (1-based; lines end at `\n`).
    pub line: u64,
    /// Its column in bytes (1-based).
    pub column: u64,
}

/// Where `published` and `derived` first differ (one may be a prefix of the
/// other: then where the shorter ends); `None` when they are equal.
pub fn first_difference(published: &[u8], derived: &[u8]) -> Option<FirstDifference> {
    let offset = published
        .iter()
        .zip(derived)
        .position(|(a, b)| a != b)
        .or_else(|| {
            (published.len() != derived.len()).then(|| published.len().min(derived.len()))
        })?;
    let before = &published[..offset];
    let line = before.iter().filter(|&&b| b == b'\n').count() + 1;
    let line_start = before
        .iter()
        .rposition(|&b| b == b'\n')
        .map_or(0, |i| i + 1);
    Some(FirstDifference {
        offset: offset as u64,
        line: line as u64,
        column: (offset - line_start + 1) as u64,
    })
}

/// A published document, as the store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct PublishedDocument {
    pub content_type: String,
    pub bytes: Vec<u8>,
    pub subscription_id: Option<String>,
    /// Recorded at publication.
    pub sha256: String,
}

/// Compares the `published` documents with the re-run's `derived` ones, by
/// name (bytewise order).
pub fn compare_documents(
    published: &BTreeMap<String, PublishedDocument>,
    derived: &BTreeMap<String, Document>,
) -> Vec<DocumentCheck> {
    let names: BTreeSet<&String> = published.keys().chain(derived.keys()).collect();
    names
        .into_iter()
        .map(|name| compare_document(name, published.get(name), derived.get(name)))
        .collect()
}

/// Compares document `name` as published and as re-derived (either may be
/// absent, not both).
pub fn compare_document(
    name: &str,
    published: Option<&PublishedDocument>,
    derived: Option<&Document>,
) -> DocumentCheck {
    let (result, first_difference) = match (published, derived) {
        (Some(published), Some(derived)) => {
            let first_difference = first_difference(&published.bytes, &derived.bytes);
            let same = first_difference.is_none()
                && published.content_type == derived.content_type
                && published.subscription_id == derived.owner
                && published.sha256 == sha256_hex(&published.bytes);
            let result = if same {
                DocumentResult::Match
            } else {
                DocumentResult::Differs
            };
            (result, first_difference)
        }
        (Some(_), None) => (DocumentResult::Missing, None),
        (None, _) => (DocumentResult::Unexpected, None),
    };
    let subscription_id = match (published, derived) {
        (Some(published), _) => published.subscription_id.clone(),
        (None, derived) => derived.and_then(|d| d.owner.clone()),
    };
    DocumentCheck {
        name: name.to_owned(),
        subscription_id,
        result,
        first_difference,
    }
}

/// The verdict on a re-run window: a match when the usage digests and every
/// document match; else a mismatch, with a reason that says what differs.
pub fn window_verdict(
    usage: &UsageCheck,
    documents: &[DocumentCheck],
) -> (WindowResult, Option<String>) {
    let differing: Vec<&str> = documents
        .iter()
        .filter(|d| d.result != DocumentResult::Match)
        .map(|d| d.name.as_str())
        .collect();
    if usage.matches && differing.is_empty() {
        return (WindowResult::Match, None);
    }
    let mut reasons = Vec::new();
    if !usage.matches {
        reasons.push("the usage it read has changed".to_owned());
    }
    if !differing.is_empty() {
        const QUOTED: usize = 10;
        let mut quoted: Vec<String> = differing
            .iter()
            .take(QUOTED)
            .map(|n| format!("{n:?}"))
            .collect();
        if differing.len() > QUOTED {
            quoted.push(format!("and {} more", differing.len() - QUOTED));
        }
        reasons.push(format!("documents differ: {}", quoted.join(", ")));
    }
    (WindowResult::Mismatch, Some(reasons.join("; ")))
}

/// Whether a report verified: at least one window, every one matching.
pub fn verified(windows: &[WindowCheck]) -> bool {
    !windows.is_empty() && windows.iter().all(|w| w.result == WindowResult::Match)
}

impl Exports {
    /// Verifies adapter `name`'s windows starting in `[from, to)` (see the
    /// module's notes). Refused when the range is empty or covers more than
    /// [`MAX_VERIFIED_WINDOWS`] windows.
    pub async fn verify(
        &self,
        name: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<VerifyReport, ExportsError> {
        let loaded = self.installation(name).await?;
        if from >= to {
            return Err(ExportsError::InvalidRange {
                property: "to",
                reason: "it must be after 'from'".into(),
            });
        }
        let count = windows::window_count(loaded.manifest.window, from, to);
        if count > MAX_VERIFIED_WINDOWS as i64 {
            return Err(ExportsError::InvalidRange {
                property: "to",
                reason: format!(
                    "the range covers {count} windows; at most {MAX_VERIFIED_WINDOWS} per verification"
                ),
            });
        }
        let runs = self
            .store
            .succeeded_runs(loaded.installation.id, from, to, MAX_VERIFIED_WINDOWS)
            .await?;
        let mut windows = Vec::with_capacity(runs.len());
        for run in &runs {
            windows.push(self.verify_window(&loaded, run).await?);
        }
        Ok(VerifyReport {
            adapter: loaded.installation.name.clone(),
            from,
            to,
            verified: verified(&windows),
            windows,
        })
    }

    /// Re-runs `run`'s window and compares what it wrote with what `run`
    /// published.
    async fn verify_window(
        &self,
        loaded: &LoadedInstallation,
        run: &Run,
    ) -> Result<WindowCheck, ExportsError> {
        let LoadedInstallation {
            installation,
            manifest,
        } = loaded;
        let verdict = |result, reason: String| WindowCheck {
            run_id: run.id,
            revision: run.revision,
            window: WindowBounds {
                start: run.window_start,
                end: run.window_end,
            },
            result,
            reason: Some(reason),
            usage: None,
            documents: Vec::new(),
        };
        let Some(provenance) = &run.provenance else {
            let reason = "it was exported before tally kept how documents were made";
            return Ok(verdict(WindowResult::Unverifiable, reason.into()));
        };
        let sent = run.figures.as_ref().map_or(0, |f| f.requests_sent);
        if sent > 0 {
            let reason =
                format!("its run sent {sent} requests, which a verification does not send again");
            return Ok(verdict(WindowResult::Unverifiable, reason));
        }
        let Some(config) = self.store.run_config(&provenance.config_sha256).await? else {
            let reason = "the configuration it ran with is no longer stored";
            return Ok(verdict(WindowResult::Unverifiable, reason.into()));
        };
        let adapter = match self.loaded(&provenance.component_sha256).await {
            Ok(adapter) => adapter,
            Err(error) => {
                let reason = format!("its component cannot be loaded: {error:#}");
                return Ok(verdict(WindowResult::Failed, reason));
            }
        };
        let usage = UsageAccess::new(
            self.store.clone(),
            self.store.meter_catalog().await?,
            manifest.grant.clone(),
            self.store.clock().await?,
        );
        // As the runner asked it, so that what depends on it repeats.
        let request = ExportRequest {
            run_id: run_id(installation, run),
            window: Window {
                start: run.window_start.timestamp(),
                end: run.window_end.timestamp(),
            },
            granularity: match provenance.granularity {
                Granularity::Hourly => WitGranularity::Hourly,
                Granularity::Daily => WitGranularity::Daily,
            },
            correction: run.is_correction(),
        };
        let (engine, limits) = (self.engine.clone(), manifest.limits.clone());
        let outcome = {
            let _slot = self
                .run_slots
                .acquire()
                .await
                .expect("the run slots are never closed");
            tokio::task::spawn_blocking(move || {
                run_export(
                    &engine,
                    &adapter,
                    &request,
                    &config,
                    usage,
                    Outbound::Verification,
                    &limits,
                )
            })
            .await
        };
        let outcome = match outcome {
            Ok(outcome) => outcome,
            Err(error) => {
                let reason = format!("the re-run stopped: {error}");
                return Ok(verdict(WindowResult::Failed, reason));
            }
        };
        if let Err(failure) = &outcome.result {
            return Ok(verdict(WindowResult::Failed, failure.to_string()));
        }
        let usage = UsageCheck {
            matches: outcome.usage_sha256 == provenance.usage_sha256,
            recorded: provenance.usage_sha256.clone(),
            now: outcome.usage_sha256,
        };
        let documents = self.compare_with_published(run, &outcome.documents).await?;
        let (result, reason) = window_verdict(&usage, &documents);
        Ok(WindowCheck {
            reason,
            result,
            usage: Some(usage),
            documents,
            ..verdict(result, String::new())
        })
    }

    /// Compares the documents `run` published, read one at a time, with
    /// those its re-run wrote (`derived`).
    async fn compare_with_published(
        &self,
        run: &Run,
        derived: &BTreeMap<String, Document>,
    ) -> Result<Vec<DocumentCheck>, ExportsError> {
        let published: Vec<DocumentInfo> = self
            .store
            .run(run.installation_id, run.id)
            .await?
            .map(|(_, _, documents)| documents)
            .unwrap_or_default();
        let names: BTreeSet<&str> = published
            .iter()
            .map(|d| d.name.as_str())
            .chain(derived.keys().map(String::as_str))
            .collect();
        let mut checks = Vec::with_capacity(names.len());
        for name in names {
            let stored = if published.iter().any(|d| d.name == name) {
                self.store.run_document(run.id, name).await?
            } else {
                None
            };
            let published = stored.map(|stored| PublishedDocument {
                content_type: stored.content_type,
                bytes: stored.bytes,
                subscription_id: stored.subscription_id,
                sha256: stored.sha256,
            });
            checks.push(compare_document(
                name,
                published.as_ref(),
                derived.get(name),
            ));
        }
        Ok(checks)
    }
}

/// The lower-case hex SHA-256 of `bytes`.
fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: u64, line: u64, column: u64) -> Option<FirstDifference> {
        Some(FirstDifference {
            offset,
            line,
            column,
        })
    }

    #[test]
    fn the_first_difference_is_located_by_offset_line_and_column() {
        assert_eq!(first_difference(b"a,b\n1,2\n", b"a,b\n1,2\n"), None);
        assert_eq!(first_difference(b"", b""), None);
        assert_eq!(first_difference(b"a,b\n1,2\n", b"a,b\n1,3\n"), at(6, 2, 3));
        assert_eq!(first_difference(b"x", b"y"), at(0, 1, 1));
        assert_eq!(first_difference(b"ab\n\ncd", b"ab\n\nce"), at(5, 3, 2));
        // One a prefix of the other: where the shorter ends.
        assert_eq!(first_difference(b"a,b\n", b"a,b\n1,2\n"), at(4, 2, 1));
        assert_eq!(first_difference(b"a,b\n1", b"a,b\n"), at(4, 2, 1));
        assert_eq!(first_difference(b"", b"x"), at(0, 1, 1));
        // Columns count bytes.
        assert_eq!(
            first_difference("é1".as_bytes(), "é2".as_bytes()),
            at(2, 1, 3)
        );
    }

    fn published(bytes: &[u8], owner: Option<&str>) -> PublishedDocument {
        PublishedDocument {
            content_type: "text/csv".into(),
            bytes: bytes.to_vec(),
            subscription_id: owner.map(str::to_owned),
            sha256: sha256_hex(bytes),
        }
    }

    fn derived(bytes: &[u8], owner: Option<&str>) -> Document {
        Document {
            content_type: "text/csv".into(),
            bytes: bytes.to_vec(),
            owner: owner.map(str::to_owned),
        }
    }

    fn results(checks: &[DocumentCheck]) -> Vec<(&str, DocumentResult)> {
        checks.iter().map(|c| (c.name.as_str(), c.result)).collect()
    }

    #[test]
    fn documents_compare_by_name_bytes_content_type_and_owner() {
        let published = BTreeMap::from([
            ("a.csv".to_owned(), published(b"a\n1\n", None)),
            ("gone.csv".to_owned(), published(b"x", None)),
            ("s-a.csv".to_owned(), published(b"a", Some("sub-a"))),
            ("s-b.csv".to_owned(), published(b"b", Some("sub-b"))),
            ("typed.csv".to_owned(), published(b"t", None)),
        ]);
        let mut typed = derived(b"t", None);
        typed.content_type = "text/plain".into();
        let derived = BTreeMap::from([
            ("a.csv".to_owned(), derived(b"a\n2\n", None)),
            ("new.csv".to_owned(), derived(b"n", Some("sub-n"))),
            ("s-a.csv".to_owned(), derived(b"a", Some("sub-a"))),
            ("s-b.csv".to_owned(), derived(b"b", Some("sub-c"))),
            ("typed.csv".to_owned(), typed),
        ]);
        let checks = compare_documents(&published, &derived);
        assert_eq!(
            results(&checks),
            [
                ("a.csv", DocumentResult::Differs),
                ("gone.csv", DocumentResult::Missing),
                ("new.csv", DocumentResult::Unexpected),
                ("s-a.csv", DocumentResult::Match),
                ("s-b.csv", DocumentResult::Differs),
                ("typed.csv", DocumentResult::Differs),
            ]
        );
        assert_eq!(checks[0].first_difference, at(2, 2, 1));
        assert_eq!(checks[2].subscription_id.as_deref(), Some("sub-n"));
        assert_eq!(checks[3].subscription_id.as_deref(), Some("sub-a"));
        // Same bytes, another owner or type: differs, at no byte.
        assert_eq!(checks[4].first_difference, None);
        assert_eq!(checks[5].first_difference, None);
    }

    /// Stored bytes that no longer have their recorded digest differ, even
    /// when the re-run happens to write them.
    #[test]
    fn a_stored_document_that_lost_its_digest_differs() {
        let mut altered = published(b"a,b\n1,2\n", None);
        altered.sha256 = sha256_hex(b"a,b\n1,3\n");
        let published = BTreeMap::from([("a.csv".to_owned(), altered)]);
        let derived = BTreeMap::from([("a.csv".to_owned(), derived(b"a,b\n1,2\n", None))]);
        let checks = compare_documents(&published, &derived);
        assert_eq!(results(&checks), [("a.csv", DocumentResult::Differs)]);
    }

    fn usage(matches: bool) -> UsageCheck {
        UsageCheck {
            recorded: "aa".into(),
            now: if matches { "aa" } else { "bb" }.into(),
            matches,
        }
    }

    fn check(name: &str, result: DocumentResult) -> DocumentCheck {
        DocumentCheck {
            name: name.into(),
            subscription_id: None,
            result,
            first_difference: None,
        }
    }

    #[test]
    fn a_window_matches_when_its_usage_and_every_document_do() {
        let documents = [check("a.csv", DocumentResult::Match)];
        assert_eq!(
            window_verdict(&usage(true), &documents),
            (WindowResult::Match, None)
        );
        assert_eq!(
            window_verdict(&usage(true), &[]),
            (WindowResult::Match, None)
        );

        let (result, reason) = window_verdict(&usage(false), &documents);
        assert_eq!(result, WindowResult::Mismatch);
        assert_eq!(reason.as_deref(), Some("the usage it read has changed"));

        let documents = [
            check("a.csv", DocumentResult::Match),
            check("b.csv", DocumentResult::Missing),
            check("c.csv", DocumentResult::Differs),
        ];
        let (result, reason) = window_verdict(&usage(false), &documents);
        assert_eq!(result, WindowResult::Mismatch);
        assert_eq!(
            reason.as_deref(),
            Some(r#"the usage it read has changed; documents differ: "b.csv", "c.csv""#)
        );
        // A long list is quoted short.
        let many: Vec<DocumentCheck> = (0..1_000)
            .map(|i| check(&format!("d{i}.csv"), DocumentResult::Unexpected))
            .collect();
        let (_, reason) = window_verdict(&usage(true), &many);
        assert!(reason.unwrap().ends_with(r#""d9.csv", and 990 more"#));
    }

    #[test]
    fn a_report_verifies_when_it_has_windows_and_all_match() {
        let window = |result| WindowCheck {
            run_id: 1,
            revision: 0,
            window: WindowBounds {
                start: DateTime::UNIX_EPOCH,
                end: DateTime::UNIX_EPOCH,
            },
            result,
            reason: None,
            usage: None,
            documents: vec![],
        };
        assert!(verified(&[
            window(WindowResult::Match),
            window(WindowResult::Match)
        ]));
        assert!(!verified(&[]));
        for other in [
            WindowResult::Mismatch,
            WindowResult::Unverifiable,
            WindowResult::Failed,
        ] {
            assert!(!verified(&[window(WindowResult::Match), window(other)]));
        }
    }
}
