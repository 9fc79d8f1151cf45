//! ARM-style errors: `{"error":{"code":"…","message":"…"}}`, as Azure clients expect.

use axum::Json;
use axum::extract::Request;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::usage::RecordError;

/// Most per-record errors listed in one response; the message gives the total.
const MAX_LISTED_RECORD_ERRORS: usize = 1_000;
/// Most bytes of a plain-text error (one of axum's rejections) quoted in the
/// ARM error that replaces it.
const MAX_QUOTED_ERROR_BYTES: usize = 4 * 1024;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Per-record problems of an ingest request.
    pub details: Vec<RecordError>,
    /// Whether to send `WWW-Authenticate: Bearer`.
    challenge: Option<std::borrow::Cow<'static, str>>,
}

/// The JSON body of an error.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorResponse {
    pub error: ErrorBody,
}

/// The ARM error object.
#[derive(Debug, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
    /// Ingest only: why each refused record was refused.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<RecordError>,
}

impl ApiError {
    /// An error with an HTTP status and an ARM code.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            details: Vec::new(),
            challenge: None,
        }
    }

    /// 400 with one of the usage API's documented codes.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, code, message)
    }

    /// 400 `InvalidProperty`, naming the property.
    pub fn invalid_property(property: &str, problem: impl std::fmt::Display) -> Self {
        Self::bad_request(
            "InvalidProperty",
            format!("The property '{property}' is invalid: {problem}."),
        )
    }

    /// 401 without a usable token.
    pub fn unauthorized(
        code: &'static str,
        message: impl Into<String>,
        challenge: impl Into<std::borrow::Cow<'static, str>>,
    ) -> Self {
        ApiError {
            challenge: Some(challenge.into()),
            ..Self::new(StatusCode::UNAUTHORIZED, code, message)
        }
    }

    /// 403: the token is valid but may not do this.
    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "AuthorizationFailed", message)
    }

    /// A request whose records were refused; nothing of it was stored.
    pub fn records(status: StatusCode, code: &'static str, mut details: Vec<RecordError>) -> Self {
        let total = details.len();
        details.truncate(MAX_LISTED_RECORD_ERRORS);
        let listed = if total > details.len() {
            format!(" (the first {} are listed)", details.len())
        } else {
            String::new()
        };
        let message = format!(
            "{total} problem(s) in the usage records{listed}; nothing of this request was stored."
        );
        ApiError {
            details,
            ..Self::new(status, code, message)
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::Conflicts(conflicts) => {
                ApiError::records(StatusCode::CONFLICT, "UsageRecordConflict", conflicts)
            }
            StoreError::Expired(expired) => {
                ApiError::records(StatusCode::BAD_REQUEST, "InvalidUsageRecords", expired)
            }
            StoreError::Exists(message) => ApiError::new(StatusCode::CONFLICT, "Conflict", message),
            StoreError::Unavailable(cause) => {
                tracing::error!(error = format!("{cause:#}"), "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The usage store is temporarily unavailable; retry the request.",
                )
            }
            StoreError::Archive(cause) => {
                tracing::error!(
                    error = format!("{cause:#}"),
                    "archiving pruned events failed"
                );
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The archive of pruned usage events could not be written; retry later.",
                )
            }
            StoreError::Corrupt { what, detail } => {
                tracing::error!(%what, %detail, "stored data is corrupt");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "StoredDataCorrupt",
                    format!(
                        "Stored data this request reads cannot be read back ({what}); retrying \
                         will not help. The host's log names the problem, for the operator to \
                         repair or remove the data."
                    ),
                )
            }
            StoreError::Refused(cause) => {
                tracing::error!(error = format!("{cause:#}"), "the store refused a change");
                ApiError::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "StoreRefusedChange",
                    "The usage store refused the change as breaking one of its rules; retrying \
                     the same request will not help.",
                )
            }
            StoreError::InvalidStoredManifest {
                installation,
                detail,
            } => ApiError::new(
                StatusCode::CONFLICT,
                "InvalidStoredManifest",
                format!(
                    "The stored manifest of adapter '{installation}' no longer passes this \
                     host's checks: {detail}. Upgrade the adapter with a corrected manifest \
                     (PUT /v1/adapters/{installation}), or remove and reinstall it."
                ),
            ),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorResponse {
            error: ErrorBody {
                code: self.code.into(),
                message: self.message,
                details: self.details,
            },
        };
        let mut response = (self.status, Json(body)).into_response();
        // A challenge carries only text the host wrote (quotes and
        // non-ASCII already replaced), so it always makes a header value.
        if let Some(value) = self
            .challenge
            .and_then(|challenge| HeaderValue::from_str(&challenge).ok())
        {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}

/// Middleware: an error answered in anything but JSON — one of axum's
/// rejections (a malformed path, query string or body, a multipart body
/// without a boundary), its `405` — becomes an ARM error with the same
/// status and headers (`Allow` stays), quoting the rejection's text. So
/// every error of the API has one shape, whichever layer produced it.
pub async fn arm_errors(request: Request, next: Next) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let response = next.run(request).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) || is_json(response.headers()) {
        return response;
    }
    let (parts, body) = response.into_parts();
    // A rejection's text is a line or two; one that is not gets the status's own message.
    let text = axum::body::to_bytes(body, MAX_QUOTED_ERROR_BYTES)
        .await
        .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_owned())
        .unwrap_or_default();
    let message = if text.is_empty() {
        format!(
            "{method} {path}: {}.",
            status.canonical_reason().unwrap_or("refused")
        )
    } else {
        text
    };
    let mut rewritten = ApiError::new(status, status_code(status), message).into_response();
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            rewritten.headers_mut().insert(name, value.clone());
        }
    }
    rewritten
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|value| value.starts_with("application/json"))
}

/// The ARM code of an error that no handler named.
fn status_code(status: StatusCode) -> &'static str {
    match status {
        StatusCode::NOT_FOUND => "NotFound",
        StatusCode::METHOD_NOT_ALLOWED => "MethodNotAllowed",
        StatusCode::REQUEST_TIMEOUT => "RequestTimeout",
        StatusCode::LENGTH_REQUIRED => "LengthRequired",
        StatusCode::PAYLOAD_TOO_LARGE => "RequestBodyTooLarge",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "UnsupportedMediaType",
        StatusCode::SERVICE_UNAVAILABLE => "ServiceUnavailable",
        status if status.is_server_error() => "InternalServerError",
        _ => "InvalidRequest",
    }
}
