//! `POST /v1/usage`: resource providers report usage.

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::extract::rejection::BytesRejection;
use axum::http::{HeaderMap, StatusCode, header};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;
use crate::usage::files::parse_json_record;
use crate::usage::{MeterCatalog, RecordError, UsageRecord, UsageRecordInput, ValidationContext};

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
/// every problem listed); a record reusing an accepted eventId with other
/// content refuses it too (409). Retrying an accepted request is safe.
#[utoipa::path(
    post, path = "/v1/usage", tag = "ingest",
    request_body(content = Vec<UsageRecordInput>, description = "JSON array or NDJSON of usage records"),
    responses(
        (status = 200, description = "Stored (durably) or recognised as duplicates", body = IngestResponse),
        (status = 400, description = "Malformed or invalid records; nothing stored", body = super::error::ErrorResponse),
        (status = 409, description = "An eventId was already accepted with other content; nothing stored", body = super::error::ErrorResponse),
        (status = 413, description = "Body larger than the configured limit", body = super::error::ErrorResponse),
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
    let inputs = parse_body(&body, is_ndjson(&headers, &body))?;
    let mut catalog = state.store.meter_catalog().await?;
    // A meter added through another replica a moment ago: look again before refusing.
    let unknown = |catalog: &MeterCatalog| {
        inputs
            .iter()
            .filter_map(|input| input.as_ref().ok()?.meter_id.as_deref())
            .any(|id| catalog.resolve(id).is_none())
    };
    if unknown(&catalog) {
        catalog = state.store.fresh_meter_catalog().await?;
    }
    let ctx = ValidationContext {
        meters: &catalog,
        now: Utc::now(),
        may_set_reported_time: caller.0.role == Role::Operator,
    };
    let records = validate_all(inputs, &ctx).inspect_err(|_| {
        state.metrics.rejected_requests.inc();
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

/// Splits the body into records; a record that is not valid JSON or has a
/// field of the wrong type becomes a per-record error.
pub(crate) fn parse_body(
    body: &[u8],
    ndjson: bool,
) -> Result<Vec<Result<UsageRecordInput, RecordError>>, ApiError> {
    let text = std::str::from_utf8(body).map_err(|e| {
        ApiError::bad_request("InvalidJson", format!("The body is not UTF-8: {e}."))
    })?;
    let inputs: Vec<_> = if ndjson {
        text.lines()
            .filter(|line| !line.trim().is_empty())
            .enumerate()
            .map(|(i, line)| parse_json_record(i, line))
            .collect()
    } else {
        let raw: Vec<&RawValue> = serde_json::from_str(text).map_err(|e| {
            ApiError::bad_request(
                "InvalidJson",
                format!("The body is not a JSON array of records: {e}."),
            )
        })?;
        raw.iter()
            .enumerate()
            .map(|(i, record)| parse_json_record(i, record.get()))
            .collect()
    };
    if inputs.is_empty() {
        return Err(ApiError::bad_request(
            "InvalidJson",
            "The request carries no usage records.",
        ));
    }
    Ok(inputs)
}

/// Validates every record; any problem refuses the request with all problems listed.
pub(crate) fn validate_all(
    inputs: Vec<Result<UsageRecordInput, RecordError>>,
    ctx: &ValidationContext<'_>,
) -> Result<Vec<UsageRecord>, ApiError> {
    let mut records = Vec::with_capacity(inputs.len());
    let mut errors = Vec::new();
    for (index, input) in inputs.into_iter().enumerate() {
        match input
            .map_err(|e| vec![e])
            .and_then(|input| input.validate(index, ctx))
        {
            Ok(record) => records.push(record),
            Err(mut problems) => errors.append(&mut problems),
        }
    }
    if errors.is_empty() {
        Ok(records)
    } else {
        Err(ApiError::records(
            StatusCode::BAD_REQUEST,
            "InvalidUsageRecords",
            errors,
        ))
    }
}
