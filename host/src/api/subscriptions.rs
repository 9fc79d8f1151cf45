//! `GET /v1/subscriptions`: the subscriptions a caller may read — every one
//! seen for an operator, their own for a tenant.

use axum::Json;
use axum::extract::State;
use serde::Serialize;

use super::AppState;
use super::auth::Caller;
use super::error::ApiError;
use crate::auth::Role;

/// A subscription.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubscriptionView {
    pub subscription_id: String,
}

/// The subscriptions the caller may read, by id.
#[utoipa::path(get, path = "/v1/subscriptions", tag = "usage",
    responses((status = 200, body = Vec<SubscriptionView>)),
    security(("bearer" = [])))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    caller: Caller,
) -> Result<Json<Vec<SubscriptionView>>, ApiError> {
    caller.require(&[Role::Operator, Role::Tenant])?;
    let ids = match caller.0.role {
        Role::Operator => state.store.subscriptions().await?,
        _ => {
            let mut own = caller.0.subscriptions.clone();
            own.sort();
            own
        }
    };
    Ok(Json(
        ids.into_iter()
            .map(|subscription_id| SubscriptionView { subscription_id })
            .collect(),
    ))
}
