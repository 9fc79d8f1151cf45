//! The meter catalog over REST: everyone may read it, operators extend it.

use axum::Json;
use axum::extract::{Path, State};
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;
use crate::usage::Meter;
use crate::usage::record::{MAX_ID_LEN, check_id};

/// A meter's description, for `PUT /v1/meters/{meterId}`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MeterBody {
    pub name: String,
    pub category: String,
    pub unit: String,
    #[serde(default)]
    pub notes: String,
}

/// The meter catalog.
#[utoipa::path(get, path = "/v1/meters", tag = "meters",
    responses((status = 200, body = Vec<Meter>), (status = 401, body = super::error::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn list_meters(
    State(state): State<AppState>,
    _caller: Caller,
) -> Result<Json<Vec<Meter>>, ApiError> {
    Ok(Json(
        state
            .store
            .meter_catalog()
            .await?
            .all()
            .iter()
            .map(|m| Meter::clone(m))
            .collect(),
    ))
}

/// Adds a meter, or updates the one with this id (ignoring case). Operators only.
#[utoipa::path(put, path = "/v1/meters/{meterId}", tag = "meters",
    params(("meterId" = String, Path)), request_body = MeterBody,
    responses((status = 200, body = Meter), (status = 400, body = super::error::ErrorResponse),
              (status = 403, body = super::error::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn put_meter(
    State(state): State<AppState>,
    caller: Caller,
    Path(meter_id): Path<String>,
    body: Result<Json<MeterBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<Meter>, ApiError> {
    caller.require(&[Role::Operator])?;
    let Json(body) = body.map_err(|e| ApiError::bad_request("InvalidJson", e.body_text()))?;
    check_id(&meter_id, MAX_ID_LEN)
        .map_err(|problem| ApiError::invalid_property("meterId", format!("it {problem}")))?;
    if body.name.trim().is_empty() {
        return Err(ApiError::invalid_property("name", "it must not be empty"));
    }
    for (property, text) in [
        ("name", &body.name),
        ("category", &body.category),
        ("unit", &body.unit),
        ("notes", &body.notes),
    ] {
        // Not storable in every database (NUL), and garbles a terminal.
        if text.contains(|c| crate::text::is_control(c) && c != '\n' && c != '\t') {
            return Err(ApiError::invalid_property(
                property,
                "it must not contain control characters",
            ));
        }
    }
    let meter = Meter {
        key: 0,
        id: meter_id,
        name: body.name,
        category: body.category,
        unit: body.unit,
        notes: body.notes,
    };
    Ok(Json(state.store.upsert_meter(meter).await?))
}
