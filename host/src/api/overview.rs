//! `GET /v1/overview` (operators): what the console's overview shows of the
//! host: usage received, the replicas seen, the version and backend.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, Utc};
use serde::Serialize;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;
use crate::store::console::{Received, Replica};

/// A replica counts as seen when it said so within this long.
pub const REPLICA_SEEN_WITHIN: std::time::Duration = std::time::Duration::from_secs(120);

/// The host at a glance.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Overview {
    /// This replica's version of tally.
    pub version: &'static str,
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    /// The store's clock.
    pub now: DateTime<Utc>,
    /// Received since midnight UTC (by reported time).
    pub today: Received,
    /// Received since the first of the month, UTC.
    pub month: Received,
    /// Records reported in the current hour so far.
    pub this_hour_records: i64,
    /// Records reported in the previous hour: the ingest rate per hour.
    pub previous_hour_records: i64,
    /// The latest reported time of any record.
    pub last_reported_time: Option<DateTime<Utc>>,
    /// The replicas seen alive lately, latest first.
    pub replicas: Vec<Replica>,
}

/// The host at a glance: usage received today and this month, the ingest
/// rate, the replicas seen.
#[utoipa::path(get, path = "/v1/overview", tag = "console",
    responses((status = 200, body = Overview)),
    security(("bearer" = [])))]
pub async fn overview(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Overview>, ApiError> {
    caller.require(&[Role::Operator])?;
    let now = state.store.clock().await?;
    let usage = state.store.usage_overview(now).await?;
    let seen_since = now - chrono::Duration::from_std(REPLICA_SEEN_WITHIN).expect("short");
    Ok(Json(Overview {
        version: env!("CARGO_PKG_VERSION"),
        backend: state.settings.backend,
        now,
        today: usage.today,
        month: usage.month,
        this_hour_records: usage.this_hour,
        previous_hour_records: usage.previous_hour,
        last_reported_time: usage.last_reported,
        replicas: state.store.replicas(seen_since).await?,
    }))
}
