//! Tokens over REST (operators only): list, create, revoke. A secret is
//! answered once, at creation; the store keeps only its digest.

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::Caller;
use super::error::{ApiError, ErrorResponse};
use crate::auth::{Role, new_secret, secret_digest};
use crate::store::{NewToken, TokenInfo};
use crate::usage::record::{MAX_ID_LEN, check_id};

/// Most subscriptions one tenant token names.
pub const MAX_TOKEN_SUBSCRIPTIONS: usize = 1_000;
/// Longest description, in bytes.
pub const MAX_DESCRIPTION_BYTES: usize = 1_024;

/// A token to create.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub role: Role,
    /// The subscriptions a tenant token may read (tenants only, at least one).
    #[serde(default)]
    pub subscriptions: Vec<String>,
    /// What the token is for.
    #[serde(default)]
    pub description: String,
}

/// A token as listed (never its secret).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct TokenView {
    pub id: i64,
    pub role: Role,
    pub subscriptions: Vec<String>,
    pub description: String,
    pub created_at: String,
}

/// A token just created, with its secret (shown only this once).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CreatedToken {
    #[serde(flatten)]
    pub token: TokenView,
    pub secret: String,
}

impl From<TokenInfo> for TokenView {
    fn from(token: TokenInfo) -> Self {
        TokenView {
            id: token.id,
            role: token.role,
            subscriptions: token.subscriptions,
            description: token.description,
            created_at: token.created_at,
        }
    }
}

/// The tokens, oldest first.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    responses((status = 200, body = Vec<TokenView>)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<TokenView>>, ApiError> {
    caller.require(&[Role::Operator])?;
    let tokens = state.store.list_tokens().await?;
    Ok(Json(tokens.into_iter().map(TokenView::from).collect()))
}

/// Creates a token; the answer carries its secret, shown only this once.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens", request_body = TokenRequest,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(state): State<AppState>,
    caller: Caller,
    body: Result<Json<TokenRequest>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<CreatedToken>), ApiError> {
    caller.require(&[Role::Operator])?;
    let Json(request) = body.map_err(|e| ApiError::bad_request("InvalidJson", e.body_text()))?;
    check(&request)?;
    let secret = new_secret();
    let id = state
        .store
        .create_token(NewToken {
            digest: secret_digest(&secret),
            role: request.role,
            subscriptions: request.subscriptions,
            description: request.description,
        })
        .await?;
    let token = state
        .store
        .list_tokens()
        .await?
        .into_iter()
        .find(|token| token.id == id)
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::CONFLICT,
                "Conflict",
                "The token was revoked at once.",
            )
        })?;
    tracing::info!(id, role = token.role.as_str(), "token created");
    Ok((
        StatusCode::CREATED,
        Json(CreatedToken {
            token: token.into(),
            secret,
        }),
    ))
}

/// Revokes a token: it, and every console session made with it, stop working at once.
#[utoipa::path(delete, path = "/v1/tokens/{id}", tag = "tokens",
    params(("id" = i64, Path)),
    responses((status = 204, description = "Revoked"), (status = 404, body = ErrorResponse)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(state): State<AppState>,
    caller: Caller,
    Path(id): Path<i64>,
) -> Result<StatusCode, ApiError> {
    caller.require(&[Role::Operator])?;
    if !state.store.revoke_token(id).await? {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "NotFound",
            format!("There is no token with id {id}."),
        ));
    }
    tracing::info!(id, "token revoked");
    Ok(StatusCode::NO_CONTENT)
}

/// The CLI's rules: tenants name their subscriptions, others none.
fn check(request: &TokenRequest) -> Result<(), ApiError> {
    match (request.role, request.subscriptions.is_empty()) {
        (Role::Tenant, true) => {
            return Err(ApiError::invalid_property(
                "subscriptions",
                "a tenant token needs at least one",
            ));
        }
        (Role::Operator | Role::Reporter, false) => {
            return Err(ApiError::invalid_property(
                "subscriptions",
                "only tenant tokens name subscriptions",
            ));
        }
        _ => {}
    }
    if request.subscriptions.len() > MAX_TOKEN_SUBSCRIPTIONS {
        return Err(ApiError::invalid_property(
            "subscriptions",
            format!("at most {MAX_TOKEN_SUBSCRIPTIONS} may be named"),
        ));
    }
    for subscription in &request.subscriptions {
        check_id(subscription, MAX_ID_LEN).map_err(|problem| {
            ApiError::invalid_property("subscriptions", format!("an id {problem}"))
        })?;
    }
    if request.description.len() > MAX_DESCRIPTION_BYTES
        || request.description.contains(crate::text::is_control)
    {
        return Err(ApiError::invalid_property(
            "description",
            format!("it must be at most {MAX_DESCRIPTION_BYTES} bytes without control characters"),
        ));
    }
    Ok(())
}
