//! Verification of exported windows over REST (operators only).
//!
//! | route | what |
//! |---|---|
//! | `POST /v1/adapters/{name}/verify?from=&to=` | re-derive the documents of the windows starting in `[from, to)` and compare them with the published ones |

use axum::Json;
use axum::extract::{Path, Query, State};
use chrono::{DateTime, Utc};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use crate::auth::Role;
use crate::exports::verify::VerifyReport;
use crate::usage::time::{YEAR_RANGE, parse_time_or_date};

/// `?from=&to=` of a verification.
#[derive(Debug, Deserialize)]
pub struct VerifyQuery {
    from: Option<String>,
    to: Option<String>,
}

/// Re-runs, one at a time, each window starting in `[from, to)` whose
/// published run kept its provenance: the stored component with the stored
/// configuration over the same window and granularity, in the sandbox under
/// the installation's limits, sending no request; and compares the usage it
/// read and each document with what was published. At most 366 windows a
/// call (400 beyond); `verified` is true when there was at least one window
/// and every one matched.
#[utoipa::path(post, path = "/v1/adapters/{name}/verify", tag = "exports",
    params(("name" = String, Path),
           ("from" = String, Query, description = "Windows starting from here (ISO-8601 time or date)"),
           ("to" = String, Query, description = "…and before here (exclusive)")),
    responses((status = 200, body = VerifyReport),
              (status = 400, description = "A bound is missing or not a time, the range is empty, or it covers more than 366 windows", body = ErrorResponse),
              (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn verify_adapter(
    State(state): State<AppState>,
    caller: Caller,
    Path(name): Path<String>,
    Query(range): Query<VerifyQuery>,
) -> Result<Json<VerifyReport>, ApiError> {
    caller.require(&[Role::Operator])?;
    let exports = state.exports()?;
    let from = bound("from", range.from.as_deref())?;
    let to = bound("to", range.to.as_deref())?;
    Ok(Json(exports.verify(&name, from, to).await?))
}

/// A required bound of the range.
fn bound(property: &str, text: Option<&str>) -> Result<DateTime<Utc>, ApiError> {
    let text = text.ok_or_else(|| ApiError::invalid_property(property, "it is required"))?;
    parse_time_or_date(text).ok_or_else(|| {
        ApiError::invalid_property(
            property,
            format!("it is not an ISO-8601 time or date {YEAR_RANGE}"),
        )
    })
}
