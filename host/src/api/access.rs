//! Access grants over REST (operators only): an identity provider's subject
//! is given tally subscriptions, as Azure's role assignments give a
//! principal a scope. A token from that issuer for that subject then reads
//! them as a tenant ([`crate::store::access`]).

use axum::Json;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Query, State};
use axum::http::StatusCode;
use serde::Deserialize;

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use crate::auth::Role;
use crate::store::access::{
    Grant, GrantError, InvalidGrant, MAX_GRANTS_PER_SUBJECT, MAX_ISSUER_BYTES, MAX_SUBJECT_BYTES,
    check_grant,
};

/// A subscription to grant to an identity provider's subject, or the grant
/// to revoke.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrantRequest {
    /// The identity provider: its tokens' `iss`, exactly (an http(s) URL).
    #[schema(
        max_length = 1024,
        pattern = "^https?://",
        example = "https://login.microsoftonline.com/00000000-0000-0000-0000-000000000000/v2.0"
    )]
    pub issuer: String,
    /// Who: the subject claim of the issuer's tokens, exactly (Entra: the `oid`).
    #[schema(max_length = 256)]
    pub subject: String,
    /// The subscription granted (ignoring case, as every subscription id).
    #[schema(max_length = 128)]
    pub subscription_id: String,
}

/// The grants, by issuer, subject and subscription.
#[utoipa::path(get, path = "/v1/access/grants", tag = "access",
    responses((status = 200, body = Vec<Grant>)),
    security(("bearer" = [])))]
pub async fn list_grants(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<Grant>>, ApiError> {
    caller.require(&[Role::Operator])?;
    Ok(Json(state.store.grants().await?))
}

/// Grants a subscription to an identity provider's subject. Granting it
/// again answers the grant as first made.
#[utoipa::path(put, path = "/v1/access/grants", tag = "access", request_body = GrantRequest,
    responses(
        (status = 200, body = Grant),
        (status = 400, body = ErrorResponse,
            description = "InvalidJson, or InvalidProperty: a value out of its bounds"),
        (status = 409, body = ErrorResponse,
            description = "TooManyGrants: the subject holds the most subscriptions one may (1,000)")),
    security(("bearer" = [])))]
pub async fn put_grant(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<GrantRequest>, JsonRejection>,
) -> Result<Json<Grant>, ApiError> {
    caller.require(&[Role::Operator])?;
    let Json(request) = body.map_err(|e| ApiError::bad_request("InvalidJson", e.body_text()))?;
    let grant = state
        .store
        .grant(&request.issuer, &request.subject, &request.subscription_id)
        .await
        .map_err(|error| match error {
            GrantError::Invalid(invalid) => invalid_property(invalid),
            GrantError::TooMany { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "TooManyGrants",
                format!("The grant is refused: {error}."),
            ),
            GrantError::Store(error) => error.into(),
        })?;
    tracing::info!(
        issuer = grant.issuer,
        subject = grant.subject,
        subscription = grant.subscription,
        "subscription granted"
    );
    Ok(Json(grant))
}

/// Revokes a grant: the subject's tokens stop reading the subscription
/// through it (a subscription their token carries stays readable).
#[utoipa::path(delete, path = "/v1/access/grants", tag = "access",
    params(
        ("issuer" = String, Query, max_length = 1024, description = "The identity provider, exactly"),
        ("subject" = String, Query, max_length = 256, description = "The subject, exactly"),
        ("subscriptionId" = String, Query, max_length = 128, description = "The subscription (ignoring case)")),
    responses(
        (status = 204, description = "Revoked"),
        (status = 400, body = ErrorResponse,
            description = "InvalidRequest (a parameter is missing) or InvalidProperty"),
        (status = 404, body = ErrorResponse, description = "NotFound: no such grant")),
    security(("bearer" = [])))]
pub async fn revoke_grant(
    State(state): State<AppState>,
    caller: Caller,
    query: Result<Query<GrantRequest>, QueryRejection>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Operator])?;
    let Query(grant) = query.map_err(|e| ApiError::bad_request("InvalidRequest", e.body_text()))?;
    check_grant(&grant.issuer, &grant.subject, &grant.subscription_id).map_err(invalid_property)?;
    let revoked = state
        .store
        .revoke_grant(&grant.issuer, &grant.subject, &grant.subscription_id)
        .await?;
    if !revoked {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!(
                "'{}' from '{}' has no grant of subscription '{}'.",
                grant.subject, grant.issuer, grant.subscription_id
            ),
        ));
    }
    tracing::info!(
        issuer = grant.issuer,
        subject = grant.subject,
        subscription = grant.subscription_id,
        "grant revoked"
    );
    Ok(StatusCode::NO_CONTENT)
}

/// 400 naming the property as the API spells it.
fn invalid_property(invalid: InvalidGrant) -> ApiError {
    let property = match invalid.field {
        "subscription" => "subscriptionId",
        field => field,
    };
    ApiError::invalid_property(property, invalid.problem)
}

// The documented bounds are the store's.
const _: () = assert!(MAX_ISSUER_BYTES == 1024 && MAX_SUBJECT_BYTES == 256);
const _: () = assert!(MAX_GRANTS_PER_SUBJECT == 1_000);
const _: () = assert!(crate::usage::record::MAX_ID_LEN == 128);
