//! `POST /v1/usage`: resource providers report usage.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;
use crate::usage::batch::validate_body;
use crate::usage::{
    BatchError, BatchLimits, MeterCatalog, UsageRecord, UsageRecordInput, ValidationContext,
};

/// What the host did with an accepted request.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngestResponse {
    /// Records stored by this request.
    pub accepted: usize,
    /// Records accepted earlier (same subscriptionId and eventId, same content): not counted again.
    pub duplicates: usize,
    /// Positions of the duplicates in the request.
    pub duplicate_indexes: Vec<usize>,
    /// The reported time stamped on the accepted records.
    pub reported_time: DateTime<Utc>,
}

/// Report usage records: a JSON array, or NDJSON (one record per line).
///
/// All or nothing: one invalid record refuses the whole request (400, with
/// the first 1,000 problems listed and the total counted); a record reusing an
/// accepted eventId with other content refuses it too (409). Retrying an
/// accepted request is safe.
///
/// Limits (configurable in `tally.toml`): the body (`max_body_bytes`, default
/// 32 MiB), the records of one request (`max_records_per_request`, default
/// 5,000) and their hour parts (`max_hour_parts_per_request`, default 10,000; a
/// record of N hours counts N): a request past one is refused with 413 and
/// nothing stored. Times are in the years 2000 to 9999; a quantity is at most
/// 10^15; ids (eventId, subscriptionId, meterId, resourceUri, location) must not
/// begin or end with whitespace nor contain control characters. With a
/// retention of usage events set (`[retention] usage_events`), a record whose
/// usage ended before now minus that retention is refused (400, on
/// `usageEndTime`): its eventId can no longer be checked for duplicates.
#[utoipa::path(
    post, path = "/v1/usage", tag = "ingest",
    request_body(content = Vec<UsageRecordInput>, description = "JSON array or NDJSON of usage records"),
    responses(
        (status = 200, description = "Stored (durably) or recognised as duplicates", body = IngestResponse),
        (status = 400, description = "Malformed or invalid records; nothing stored", body = super::error::ErrorResponse),
        (status = 409, description = "An eventId was already accepted with other content, or a stored sum of quantities would overflow; nothing stored", body = super::error::ErrorResponse),
        (status = 413, description = "RequestBodyTooLarge, TooManyRecords or TooManyHourParts: over a configured limit; nothing stored", body = super::error::ErrorResponse),
    ),
    security(("bearer" = []))
)]
pub async fn ingest_usage(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<IngestResponse>, ApiError> {
    caller.require(&[Role::Reporter, Role::Operator])?;
    let body = body.map_err(|rejection| match rejection.status() {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "RequestBodyTooLarge",
            format!(
                "The request body exceeds {} bytes; send the records in smaller batches.",
                state.settings.max_body_bytes
            ),
        ),
        _ => ApiError::bad_request("InvalidRequestBody", rejection.body_text()),
    })?;
    let ndjson = is_ndjson(&headers, &body);
    let may_set_reported_time = caller.0.role == Role::Operator;
    let limits = state.settings.ingest_limits;
    let catalog = state.store.meter_catalog().await?;
    // Usage may not end in the future of the clock that stamps reported times.
    let now = state.store.clock().await?;
    let checks = Checks {
        now,
        may_set_reported_time,
        limits,
        retention_cutoff: (state.settings.usage_events_retention)
            .map(|retention| crate::retention::cutoff(now, retention)),
    };
    let mut outcome = validate_off_runtime(body.clone(), ndjson, catalog, checks).await?;
    // A meter added through another replica a moment ago: look again before refusing.
    if let Err(BatchError::Invalid {
        unknown_meter: true,
        ..
    }) = outcome
    {
        let catalog = state.store.fresh_meter_catalog().await?;
        outcome = validate_off_runtime(body, ndjson, catalog, checks).await?;
    }
    let records = outcome.map_err(|error| {
        state.metrics.rejected_requests.inc();
        batch_refused(error)
    })?;

    let count = records.len();
    let receipt = state.store.ingest(records).await?;
    state
        .metrics
        .record_ingest(receipt.accepted, receipt.duplicates.len());
    tracing::debug!(
        records = count,
        accepted = receipt.accepted,
        duplicates = receipt.duplicates.len(),
        "ingested"
    );
    Ok(Json(IngestResponse {
        accepted: receipt.accepted,
        duplicates: receipt.duplicates.len(),
        duplicate_indexes: receipt.duplicates,
        reported_time: receipt.reported_time,
    }))
}

fn is_ndjson(headers: &HeaderMap, body: &[u8]) -> bool {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if content_type.contains("ndjson") || content_type.contains("jsonlines") {
        return true;
    }
    body.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'[')
}

/// What a request's records are checked against besides the meter catalog.
#[derive(Debug, Clone, Copy)]
struct Checks {
    /// The store's time at the request.
    now: DateTime<Utc>,
    may_set_reported_time: bool,
    limits: BatchLimits,
    /// Usage that ended before it is refused ([`crate::retention`]).
    retention_cutoff: Option<DateTime<Utc>>,
}

/// Parses and validates the body on the blocking pool: a large body takes
/// CPU time that must not stall the async workers (and `/healthz`).
async fn validate_off_runtime(
    body: Bytes,
    ndjson: bool,
    catalog: Arc<MeterCatalog>,
    checks: Checks,
) -> Result<Result<Vec<UsageRecord>, BatchError>, ApiError> {
    tokio::task::spawn_blocking(move || {
        let ctx = ValidationContext {
            meters: &catalog,
            now: checks.now,
            may_set_reported_time: checks.may_set_reported_time,
            retention_cutoff: checks.retention_cutoff,
        };
        validate_body(&body, ndjson, &ctx, checks.limits)
    })
    .await
    .map_err(|error| {
        tracing::error!(%error, "validating an ingest request failed");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "InternalServerError",
            "The request could not be validated.",
        )
    })
}

/// The answer to a refused batch: 413 past a limit, 400 otherwise.
fn batch_refused(error: BatchError) -> ApiError {
    let message = error.to_string();
    match error {
        BatchError::Malformed(_) | BatchError::Empty => {
            ApiError::bad_request("InvalidJson", message)
        }
        BatchError::TooManyRecords { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "TooManyRecords", message)
        }
        BatchError::TooManyHourParts { .. } => {
            ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "TooManyHourParts", message)
        }
        BatchError::Invalid { errors, total, .. } => {
            let listed = if total > errors.len() {
                format!(" (the first {} are listed)", errors.len())
            } else {
                String::new()
            };
            let mut refused = ApiError::bad_request(
                "InvalidUsageRecords",
                format!(
                    "{total} problem(s) in the usage records{listed}; nothing of this request was stored."
                ),
            );
            refused.details = errors;
            refused
        }
    }
}
