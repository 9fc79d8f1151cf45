//! ARM-style errors: `{"error":{"code":"…","message":"…"}}`, as Azure clients expect.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::store::StoreError;
use crate::usage::RecordError;

/// Most per-record errors listed in one response; the message gives the total.
const MAX_LISTED_RECORD_ERRORS: usize = 1_000;

/// An error answered to an API client.
#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Per-record problems of an ingest request.
    pub details: Vec<RecordError>,
    /// Whether to send `WWW-Authenticate: Bearer`.
    challenge: Option<&'static str>,
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
        challenge: &'static str,
    ) -> Self {
        ApiError {
            challenge: Some(challenge),
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
            StoreError::Exists(message) => ApiError::new(StatusCode::CONFLICT, "Conflict", message),
            StoreError::Unavailable(cause) => {
                tracing::error!(error = format!("{cause:#}"), "store unavailable");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "ServiceUnavailable",
                    "The usage store is temporarily unavailable; retry the request.",
                )
            }
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
        if let Some(challenge) = self.challenge {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            );
        }
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("5"));
        }
        response
    }
}
