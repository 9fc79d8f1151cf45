//! Operations endpoints: health, metrics and the OpenAPI document.

use axum::Json;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use serde::Serialize;
use utoipa::OpenApi;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;

/// Health of the host.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
    pub version: &'static str,
}

/// Liveness and readiness: answers 200 when the store answers (no token needed).
#[utoipa::path(get, path = "/healthz", tag = "operations",
    responses((status = 200, body = Health), (status = 503, description = "The store does not answer")))]
pub async fn healthz(State(state): State<AppState>) -> impl IntoResponse {
    let version = env!("CARGO_PKG_VERSION");
    match state.store.health().await {
        Ok(_) => (
            StatusCode::OK,
            Json(Health {
                status: "ok",
                version,
            }),
        ),
        Err(_) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(Health {
                status: "unavailable",
                version,
            }),
        ),
    }
}

/// Prometheus metrics in the text exposition format (operator token: Prometheus
/// sends it with `authorization: {credentials: …}`).
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, content_type = "text/plain"), (status = 401, body = super::error::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn metrics(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<impl IntoResponse, ApiError> {
    caller.require(&[Role::Operator])?;
    let content_type = "text/plain; version=0.0.4; charset=utf-8";
    Ok((
        [(header::CONTENT_TYPE, content_type)],
        state.metrics.encode(),
    ))
}

/// This API's OpenAPI 3.1 document, generated from the code (any valid token).
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, content_type = "application/json"), (status = 401, body = super::error::ErrorResponse)),
    security(("bearer" = [])))]
pub async fn openapi(_caller: Caller) -> impl IntoResponse {
    Json(super::ApiDoc::openapi())
}
