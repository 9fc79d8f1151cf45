//! The decisions of the export state machine that need no database: what
//! an operator's request does to a window, what a finished attempt records,
//! and how far the watermark moves. [`super::ops`] reads the facts and
//! writes the outcome.

use chrono::{DateTime, Utc};

use super::{RunEnd, RunRequestOutcome, RunStatus};

/// The latest revision of a window, as far as a request for it goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct LatestRun {
    pub id: i64,
    pub status: RunStatus,
    pub revision: u32,
}

/// What an operator's request does to a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RequestAction {
    /// Queue this revision: the first export (0) or a correction.
    Insert { revision: u32 },
    /// Queue the failed run again from scratch (same run id).
    Reset(i64),
    /// Let the retrying run start now instead of waiting out its backoff.
    Hasten(i64),
    /// Leave the pending or running run as it is.
    Keep(i64),
}

impl RequestAction {
    /// The action for a window whose latest revision is `latest`.
    pub(crate) fn for_latest(latest: Option<LatestRun>) -> Self {
        let Some(latest) = latest else {
            return RequestAction::Insert { revision: 0 };
        };
        match latest.status {
            RunStatus::Succeeded => RequestAction::Insert {
                revision: latest.revision + 1,
            },
            RunStatus::Failed => RequestAction::Reset(latest.id),
            RunStatus::Retrying => RequestAction::Hasten(latest.id),
            RunStatus::Pending | RunStatus::Running => RequestAction::Keep(latest.id),
        }
    }

    /// What the operator is told.
    pub(crate) fn outcome(self) -> RunRequestOutcome {
        match self {
            RequestAction::Insert { revision: 0 } => RunRequestOutcome::Queued,
            RequestAction::Insert { .. } => RunRequestOutcome::Correction,
            RequestAction::Reset(_) | RequestAction::Hasten(_) => RunRequestOutcome::Requeued,
            RequestAction::Keep(_) => RunRequestOutcome::AlreadyQueued,
        }
    }
}

/// What a finished attempt records on its run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FinishUpdate {
    pub status: RunStatus,
    /// Why it failed.
    pub reason: Option<String>,
    /// When it may run again.
    pub next_attempt: Option<DateTime<Utc>>,
    /// Whether the attempt counts toward the run's attempts (all but one
    /// the host gave back when it stopped).
    pub counted: bool,
}

impl FinishUpdate {
    /// The update for an attempt that ended so.
    pub(crate) fn of(end: &RunEnd) -> Self {
        let (status, reason, next_attempt) = match end {
            RunEnd::Succeeded { .. } => (RunStatus::Succeeded, None, None),
            RunEnd::Retry { reason, at } | RunEnd::Released { reason, at } => {
                (RunStatus::Retrying, Some(reason.clone()), Some(*at))
            }
            RunEnd::Failed { reason } => (RunStatus::Failed, Some(reason.clone()), None),
        };
        FinishUpdate {
            status,
            reason,
            next_attempt,
            counted: !matches!(end, RunEnd::Released { .. }),
        }
    }
}

/// The watermark after `watermark` moves over every exported window that
/// follows it without a gap. `succeeded` are the `(start, end)` (ms) of
/// succeeded runs starting at or after `watermark`, in start order.
pub(crate) fn advanced_watermark(
    watermark: i64,
    succeeded: impl IntoIterator<Item = (i64, i64)>,
) -> i64 {
    let mut watermark = watermark;
    for (start, end) in succeeded {
        if start > watermark {
            break; // a window not exported yet holds it
        }
        if start == watermark {
            watermark = end;
        }
    }
    watermark
}

#[cfg(test)]
mod tests {
    use super::*;

    fn latest(status: RunStatus, revision: u32) -> Option<LatestRun> {
        Some(LatestRun {
            id: 7,
            status,
            revision,
        })
    }

    #[test]
    fn a_request_queues_exports_corrects_succeeded_ones_and_requeues_failed_ones() {
        let cases = [
            (
                None,
                RequestAction::Insert { revision: 0 },
                RunRequestOutcome::Queued,
            ),
            (
                latest(RunStatus::Succeeded, 0),
                RequestAction::Insert { revision: 1 },
                RunRequestOutcome::Correction,
            ),
            (
                latest(RunStatus::Succeeded, 2),
                RequestAction::Insert { revision: 3 },
                RunRequestOutcome::Correction,
            ),
            (
                latest(RunStatus::Failed, 1),
                RequestAction::Reset(7),
                RunRequestOutcome::Requeued,
            ),
            (
                latest(RunStatus::Retrying, 0),
                RequestAction::Hasten(7),
                RunRequestOutcome::Requeued,
            ),
            (
                latest(RunStatus::Pending, 0),
                RequestAction::Keep(7),
                RunRequestOutcome::AlreadyQueued,
            ),
            (
                latest(RunStatus::Running, 1),
                RequestAction::Keep(7),
                RunRequestOutcome::AlreadyQueued,
            ),
        ];
        for (latest, action, outcome) in cases {
            assert_eq!(RequestAction::for_latest(latest), action, "{latest:?}");
            assert_eq!(action.outcome(), outcome, "{latest:?}");
        }
    }

    #[test]
    fn a_finish_records_the_status_reason_and_next_attempt_of_its_end() {
        let at = DateTime::from_timestamp(3600, 0).unwrap();
        let provenance = super::super::Provenance {
            world_version: "0.2.0".into(),
            component_sha256: "c0ffee".into(),
            config_sha256: "a".into(),
            config_digest: "b".into(),
            granularity: crate::usage::Granularity::Daily,
            usage_sha256: "d".into(),
        };
        let succeeded = FinishUpdate::of(&RunEnd::Succeeded {
            documents: vec![],
            provenance,
            config_json: "{}".into(),
        });
        assert_eq!(
            (succeeded.status, succeeded.reason, succeeded.next_attempt),
            (RunStatus::Succeeded, None, None)
        );
        let retry = FinishUpdate::of(&RunEnd::Retry {
            reason: "busy".into(),
            at,
        });
        assert_eq!(
            (retry.status, retry.reason.as_deref(), retry.next_attempt),
            (RunStatus::Retrying, Some("busy"), Some(at))
        );
        let released = FinishUpdate::of(&RunEnd::Released {
            reason: "stopped".into(),
            at,
        });
        assert_eq!(
            (released.status, released.next_attempt, released.counted),
            (RunStatus::Retrying, Some(at), false)
        );
        assert!(retry.counted);
        let failed = FinishUpdate::of(&RunEnd::Failed {
            reason: "bad".into(),
        });
        assert_eq!(
            (failed.status, failed.reason.as_deref(), failed.next_attempt),
            (RunStatus::Failed, Some("bad"), None)
        );
    }

    #[test]
    fn the_watermark_moves_over_exported_windows_up_to_the_first_gap() {
        assert_eq!(advanced_watermark(10, []), 10);
        assert_eq!(advanced_watermark(10, [(10, 20), (20, 30)]), 30);
        // Two revisions of one window, then a gap at 30.
        assert_eq!(
            advanced_watermark(10, [(10, 20), (10, 20), (20, 30), (40, 50)]),
            30
        );
        // A window exported after a later one does not move it until the gap closes.
        assert_eq!(advanced_watermark(10, [(20, 30)]), 10);
    }
}
