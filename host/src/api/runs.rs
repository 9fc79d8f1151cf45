//! Export runs and their documents over REST (operators only).
//!
//! | route | what |
//! |---|---|
//! | `GET /v1/adapters/{name}/runs` | runs, newest window first |
//! | `POST /v1/adapters/{name}/runs` | run, re-run or backfill windows `{from, to}` |
//! | `GET /v1/adapters/{name}/runs/{id}` | a run with its log and documents |
//! | `GET /v1/adapters/{name}/runs/{id}/documents/{document}` | a run's document |
//! | `GET /v1/adapters/{name}/documents` | the documents an adapter published |
//! | `GET /v1/adapters/{name}/documents/{document}?from=&to=` | one document over a date range |

use axum::Json;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use crate::auth::Role;
use crate::exports::ExportsError;
use crate::exports::documents::JoinedDocument;
use crate::exports::runs::RunRecord;
use crate::store::exports::{
    DocumentInfo, Installation, LogLine, Provenance, Run, RunFiguresRecord, RunRequestOutcome,
    RunStatus,
};
use crate::usage::Granularity;
use crate::usage::time::{YEAR_RANGE, parse_time_or_date};

/// Runs listed by default, and at most.
const DEFAULT_RUNS: usize = 100;
const MAX_RUNS: usize = 1_000;

/// A run as the API shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunView {
    pub id: i64,
    /// The id the adapter sees: stable across attempts, the stem of idempotency keys.
    pub run_id: String,
    pub window_start: DateTime<Utc>,
    pub window_end: DateTime<Utc>,
    /// 0 for the window's first export; n for its n-th correction.
    pub revision: u32,
    pub correction: bool,
    pub status: RunStatus,
    pub attempts: u32,
    /// Why the last attempt failed.
    pub reason: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub finished_at: Option<DateTime<Utc>>,
    pub figures: Option<RunFiguresRecord>,
    /// This run's URL.
    pub url: String,
}

/// A run with its log and documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct RunDetail {
    #[serde(flatten)]
    pub run: RunView,
    pub log: Vec<LogLineView>,
    /// Log lines dropped by the run's caps.
    pub log_dropped: u64,
    /// How its documents were made; `null` unless it succeeded (or when it
    /// succeeded before provenance was kept).
    pub provenance: Option<ProvenanceView>,
    pub documents: Vec<DocumentView>,
}

/// How a succeeded run's documents were made: enough to re-derive them.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProvenanceView {
    /// The contract the component ran as, e.g. `tally:billing@0.2.0`.
    pub contract: String,
    /// The sha256 of the component that ran.
    pub component: String,
    /// The sha256 of its configuration with every secret as `"***"`: it
    /// changes with the configuration, and tells nothing of a secret.
    pub config: String,
    /// The reported-time window exported.
    pub window: WindowView,
    /// The granularity of the usage the adapter read.
    #[schema(value_type = String, example = "daily")]
    pub granularity: &'static str,
    /// The sha256 of the usage rows the adapter read, in the order read.
    pub usage: String,
    /// How many usage rows it read.
    pub rows_read: u64,
}

/// A reported-time window, `[start, end)`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WindowView {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl WindowView {
    /// The window of `run`.
    pub fn of(run: &Run) -> Self {
        WindowView {
            start: run.window_start,
            end: run.window_end,
        }
    }
}

impl ProvenanceView {
    /// The provenance of `run`, if it has one.
    pub fn of(run: &Run) -> Option<Self> {
        let Provenance {
            world_version,
            component_sha256,
            config_digest,
            granularity,
            usage_sha256,
            // The key of the full config, secrets included: never served.
            config_sha256: _,
        } = run.provenance.clone()?;
        Some(ProvenanceView {
            contract: format!("tally:billing@{world_version}"),
            component: component_sha256,
            config: config_digest,
            window: WindowView::of(run),
            granularity: match granularity {
                Granularity::Hourly => "hourly",
                Granularity::Daily => "daily",
            },
            usage: usage_sha256,
            rows_read: run.figures.as_ref().map_or(0, |figures| figures.rows_read),
        })
    }
}

/// A log line.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogLineView {
    /// `debug`, `info`, `warn`, `error`, `stdout` or `stderr`.
    pub level: String,
    pub message: String,
}

/// A document of a run.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct DocumentView {
    pub name: String,
    pub content_type: String,
    pub bytes: u64,
    /// The subscription it was written for (published to its tenants when
    /// the adapter publishes to tenants); `null` for the operator's.
    pub subscription_id: Option<String>,
    /// The sha256 of its bytes, recorded when it was published; `null` for
    /// documents published before digests were kept.
    pub sha256: Option<String>,
    pub url: String,
}

/// `POST /v1/adapters/{name}/runs`: the windows overlapping `[from, to)`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RunRequest {
    /// ISO-8601 time or date.
    pub from: String,
    /// ISO-8601 time or date (exclusive).
    pub to: String,
}

/// What a run request did for one window.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestedRun {
    pub outcome: RunRequestOutcome,
    pub run: RunView,
}

/// `?limit=` of the run list.
#[derive(Debug, Deserialize)]
pub struct RunsQuery {
    limit: Option<usize>,
}

/// `?from=&to=` of a joined document.
#[derive(Debug, Deserialize)]
pub struct RangeQuery {
    from: Option<String>,
    to: Option<String>,
}

/// An adapter's runs, newest window first.
#[utoipa::path(get, path = "/v1/adapters/{name}/runs", tag = "exports",
    params(("name" = String, Path), ("limit" = Option<usize>, Query)),
    responses((status = 200, body = Vec<RunView>), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn list_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(query): Query<RunsQuery>,
) -> Result<Json<Vec<RunView>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    let limit = query.limit.unwrap_or(DEFAULT_RUNS).clamp(1, MAX_RUNS);
    let runs = exports.runs(&installation, limit).await?;
    Ok(Json(
        runs.iter()
            .map(|run| run_view(&installation, run))
            .collect(),
    ))
}

/// Runs the windows overlapping `[from, to)` now: a first export, a
/// correction of an exported window (the adapter is told), or a failed
/// window again.
#[utoipa::path(post, path = "/v1/adapters/{name}/runs", tag = "exports",
    params(("name" = String, Path)), request_body = RunRequest,
    responses((status = 202, body = Vec<RequestedRun>), (status = 400, body = ErrorResponse),
              (status = 404, body = ErrorResponse),
              (status = 409, description = "The adapter is disabled", body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn request_runs(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    body: Result<Json<RunRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<Vec<RequestedRun>>), ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let Json(body) = body.map_err(|e| ApiError::bad_request("InvalidJson", e.body_text()))?;
    let loaded = exports.installation(&name).await?;
    let (from, to) = (
        time_or_date("from", &body.from)?,
        time_or_date("to", &body.to)?,
    );
    let requested = exports.request_runs(&loaded, from, to).await?;
    let views = requested
        .into_iter()
        .map(|(run, outcome)| RequestedRun {
            outcome,
            run: run_view(&loaded.installation, &run),
        })
        .collect();
    Ok((StatusCode::ACCEPTED, Json(views)))
}

/// A run with its log and documents.
#[utoipa::path(get, path = "/v1/adapters/{name}/runs/{id}", tag = "exports",
    params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = RunDetail), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn show_run(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id)): Path<(String, i64)>,
) -> Result<Json<RunDetail>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    let RunRecord {
        run,
        log,
        documents,
    } = exports.run(&installation, id).await?;
    let view = run_view(&installation, &run);
    let documents = documents
        .into_iter()
        .map(
            |DocumentInfo {
                 name,
                 content_type,
                 bytes,
                 subscription_id,
                 sha256,
             }| DocumentView {
                url: format!("{}/documents/{name}", view.url),
                name,
                content_type,
                bytes,
                subscription_id,
                sha256,
            },
        )
        .collect();
    Ok(Json(RunDetail {
        run: view,
        log: log.lines.into_iter().map(log_line).collect(),
        log_dropped: log.dropped,
        provenance: ProvenanceView::of(&run),
        documents,
    }))
}

/// A document of one run, as the adapter wrote it.
#[utoipa::path(get, path = "/v1/adapters/{name}/runs/{id}/documents/{document}", tag = "exports",
    params(("name" = String, Path), ("id" = i64, Path), ("document" = String, Path)),
    responses((status = 200, description = "the document, with its content type: inline when text/csv, text/plain, JSON or NDJSON, else an attachment; always `Content-Security-Policy: sandbox` and `nosniff`", content_type = "*/*"),
              (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn run_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, id, document)): Path<(String, i64, String)>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    let stored = exports.run_document(&installation, id, &document).await?;
    Ok(document_response(
        &stored.content_type,
        &document,
        Body::from(stored.bytes),
    ))
}

/// The documents an adapter has published.
#[utoipa::path(get, path = "/v1/adapters/{name}/documents", tag = "exports",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<String>), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn list_documents(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
) -> Result<Json<Vec<String>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    Ok(Json(exports.document_names(&installation).await?))
}

/// One document over the succeeded runs whose windows start in `[from, to)`
/// (default: all), in window order, each window by its latest revision; CSV
/// with one header. A stable URL for BI tools to refresh from.
#[utoipa::path(get, path = "/v1/adapters/{name}/documents/{document}", tag = "exports",
    params(("name" = String, Path), ("document" = String, Path),
           ("from" = Option<String>, Query), ("to" = Option<String>, Query)),
    responses((status = 200, description = "the joined document, served as a run's document is", content_type = "*/*"),
              (status = 404, body = ErrorResponse), (status = 409, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn joined_document(
    State(state): State<AppState>,
    caller: Caller,
    Path((name, document)): Path<(String, String)>,
    Query(range): Query<RangeQuery>,
) -> Result<Response, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let installation = exports.installation(&name).await?.installation;
    let from = match &range.from {
        Some(text) => time_or_date("from", text)?,
        None => DateTime::<Utc>::MIN_UTC,
    };
    let to = match &range.to {
        Some(text) => time_or_date("to", text)?,
        None => DateTime::<Utc>::MAX_UTC,
    };
    let JoinedDocument { content_type, body } = exports
        .joined_document(&installation, &document, from, to)
        .await?;
    Ok(document_response(
        &content_type,
        &document,
        Body::from_stream(body),
    ))
}

/// A run as the API shows it.
pub(super) fn run_view(installation: &Installation, run: &Run) -> RunView {
    RunView {
        id: run.id,
        run_id: crate::exports::runner::run_id(installation, run),
        window_start: run.window_start,
        window_end: run.window_end,
        revision: run.revision,
        correction: run.is_correction(),
        status: run.status,
        attempts: run.attempts,
        reason: run.reason.clone(),
        next_attempt_at: run.next_attempt_at,
        created_at: run.created_at,
        finished_at: run.finished_at,
        figures: run.figures.clone(),
        url: format!("/v1/adapters/{}/runs/{}", installation.name, run.id),
    }
}

fn log_line(line: LogLine) -> LogLineView {
    LogLineView {
        level: line.level.to_owned(),
        message: line.message,
    }
}

/// Content types a browser shows as inert text or data: documents of these
/// types are served inline, any other as an attachment (downloaded, never
/// rendered in the host's origin).
const INLINE_CONTENT_TYPES: [&str; 5] = [
    "text/csv",
    "text/plain",
    "application/json",
    "application/x-ndjson",
    "application/jsonl",
];

/// A stored document as an HTTP answer. The adapter chose its content type,
/// so the answer is locked down whatever it is: no sniffing another type, a
/// sandbox that runs no script, and inline only for the safe types.
pub(super) fn document_response(content_type: &str, name: &str, body: Body) -> Response {
    let mut response = body.into_response();
    let headers = response.headers_mut();
    if let Ok(value) = HeaderValue::from_str(content_type) {
        headers.insert(header::CONTENT_TYPE, value);
    }
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("sandbox"),
    );
    let disposition = if is_inline(content_type) {
        "inline"
    } else {
        "attachment"
    };
    // Names are checked at write: no quotes, no slashes.
    let value = HeaderValue::from_str(&format!("{disposition}; filename=\"{name}\""))
        .unwrap_or(HeaderValue::from_static("attachment"));
    headers.insert(header::CONTENT_DISPOSITION, value);
    response
}

/// Whether a document of this content type may be shown inline.
fn is_inline(content_type: &str) -> bool {
    let essence = content_type.split(';').next().unwrap_or("").trim();
    INLINE_CONTENT_TYPES
        .iter()
        .any(|safe| safe.eq_ignore_ascii_case(essence))
}

/// A time (ISO 8601) or a date (`YYYY-MM-DD`, midnight UTC).
pub(super) fn time_or_date(property: &str, text: &str) -> Result<DateTime<Utc>, ApiError> {
    parse_time_or_date(text).ok_or_else(|| {
        ApiError::invalid_property(
            property,
            format!("it is not an ISO-8601 time or date {YEAR_RANGE}"),
        )
    })
}

/// The exports service's refusals, as the API answers them.
impl From<ExportsError> for ApiError {
    fn from(error: ExportsError) -> Self {
        let message = error.to_string();
        match error {
            ExportsError::Store(error) => error.into(),
            ExportsError::NotInstalled(_) => {
                ApiError::new(StatusCode::NOT_FOUND, "AdapterNotFound", message)
            }
            ExportsError::NoRun { .. }
            | ExportsError::NoRunDocument { .. }
            | ExportsError::NoDocument { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "NotFound", message)
            }
            ExportsError::Disabled(_) => {
                ApiError::new(StatusCode::CONFLICT, "AdapterDisabled", message)
            }
            ExportsError::InvalidRange { property, reason } => {
                ApiError::invalid_property(property, reason)
            }
            ExportsError::NotJoinable { .. } => {
                ApiError::new(StatusCode::CONFLICT, "NotJoinable", message)
            }
            ExportsError::NotPublished { .. } => {
                ApiError::new(StatusCode::NOT_FOUND, "DocumentNotFound", message)
            }
        }
    }
}
