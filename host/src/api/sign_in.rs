//! Signing in to the console through an identity provider (single sign-on):
//! `GET /v1/session/providers` lists the issuers offered, `GET
//! /v1/session/sso` sends the browser to one ([`crate::identity::sign_in`]),
//! and `GET /v1/session/callback` is where it comes back with a code, to
//! leave with a session cookie. A failure goes back to the sign-in page with
//! the reason in words.

use axum::Json;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::auth::principal_of;
use super::error::ApiError;
use super::next_link::link_base;
use super::session::{cookie, secure, start_session};
use crate::identity::sign_in::{Pending, SIGN_IN_WINDOW};

/// The cookie holding a pending sign-in.
const PENDING_COOKIE: &str = "tally_sso";
/// Longest console route to return to.
const MAX_RETURN_LEN: usize = 200;

/// A sign-in provider, as the sign-in page shows it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct ProviderView {
    pub name: String,
    pub sign_in_url: String,
}

/// The identity providers the console offers to sign in with.
pub async fn providers(State(state): State<AppState>) -> Json<Vec<ProviderView>> {
    Json(
        state
            .identity
            .sign_in_providers()
            .into_iter()
            .map(|(index, name)| ProviderView {
                name,
                sign_in_url: format!("/v1/session/sso?provider={index}"),
            })
            .collect(),
    )
}

#[derive(Debug, Deserialize)]
pub struct StartParams {
    provider: usize,
    #[serde(rename = "return")]
    return_to: Option<String>,
}

/// Sends the browser to the provider's login page.
pub async fn start(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Result<Query<StartParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(params) =
        params.map_err(|e| ApiError::bad_request("InvalidProperty", e.body_text()))?;
    if state.identity.sign_in_provider(params.provider).is_none() {
        return Err(ApiError::new(
            axum::http::StatusCode::NOT_FOUND,
            "NotFound",
            format!("There is no sign-in provider {}.", params.provider),
        ));
    }
    let return_to = params
        .return_to
        .filter(|r| {
            r.starts_with("#/") && r.len() <= MAX_RETURN_LEN && !r.contains(char::is_control)
        })
        .unwrap_or_else(|| "#/".into());
    let pending = Pending::new(params.provider, return_to);
    let redirect_uri = callback_url(&state, &headers)?;
    let url = state
        .identity
        .authorization_url(&pending, &redirect_uri)
        .await
        .map_err(|error| unreachable_issuer(&error))?;
    let cookie = pending_cookie(&pending.encode(), SIGN_IN_WINDOW.as_secs(), secure(&state));
    Ok(([(header::SET_COOKIE, cookie)], Redirect::to(&url)).into_response())
}

#[derive(Debug, Deserialize)]
pub struct CallbackParams {
    code: Option<String>,
    state: Option<String>,
    error: Option<String>,
    error_description: Option<String>,
}

/// Where the provider sends the browser back: redeems the code, maps the ID
/// token's claims, starts the session.
pub async fn callback(
    State(state): State<AppState>,
    headers: HeaderMap,
    Query(params): Query<CallbackParams>,
) -> Response {
    let clear = pending_cookie("", 0, secure(&state));
    let outcome = finish(&state, &headers, params).await;
    let mut response = match outcome {
        Ok((cookie, return_to)) => {
            let mut response = Redirect::to(&format!("/{return_to}")).into_response();
            response.headers_mut().append(header::SET_COOKIE, cookie);
            response
        }
        Err(message) => {
            tracing::info!(
                reason = message,
                "console sign-in through the identity provider failed"
            );
            let encoded: String =
                url::form_urlencoded::byte_serialize(message.as_bytes()).collect();
            Redirect::to(&format!("/#/sign-in?error={encoded}")).into_response()
        }
    };
    response.headers_mut().append(header::SET_COOKIE, clear);
    response
}

/// The session cookie and the route to return to, or why not.
async fn finish(
    state: &AppState,
    headers: &HeaderMap,
    params: CallbackParams,
) -> Result<(HeaderValue, String), String> {
    if let Some(error) = params.error {
        return Err(format!(
            "The identity provider did not sign you in: {error}{}",
            params
                .error_description
                .map(|d| format!(" ({d})"))
                .unwrap_or_default()
        ));
    }
    let pending = pending_of(headers)
        .ok_or("The sign-in took too long or was started in another browser; sign in again.")?;
    if params.state.as_deref() != Some(pending.state.as_str()) {
        return Err("The sign-in's state does not match; sign in again.".into());
    }
    let code = params.code.ok_or("The identity provider sent no code.")?;
    let redirect_uri = callback_url(state, headers).map_err(|e| e.message)?;
    let verified = state
        .identity
        .redeem(&pending, &code, &redirect_uri, crate::clock::now())
        .await
        .map_err(|e| format!("The sign-in could not be completed: {e:#}."))?
        .map_err(|e| format!("The identity provider's ID token was refused: {e}."))?;
    let principal = principal_of(state, &verified)
        .await
        .map_err(|e| e.message)?;
    if principal.role == crate::auth::Role::Reporter {
        return Err(
            "A reporter reports usage only; the console is for operators and tenants.".into(),
        );
    }
    let issuer = verified.issuer.issuer.clone();
    let (cookie, _) = start_session(state, principal, verified.who(), Some(issuer))
        .await
        .map_err(|e| e.message)?;
    Ok((cookie, pending.return_to))
}

/// `{base}/v1/session/callback`, the redirect URI registered at the provider.
fn callback_url(state: &AppState, headers: &HeaderMap) -> Result<String, ApiError> {
    let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
    Ok(format!(
        "{}/v1/session/callback",
        link_base(&state.settings, host)?
    ))
}

fn unreachable_issuer(error: &anyhow::Error) -> ApiError {
    tracing::warn!(
        error = format!("{error:#}"),
        "the identity provider could not be reached"
    );
    ApiError::new(
        axum::http::StatusCode::BAD_GATEWAY,
        "IdentityProviderUnavailable",
        format!("The identity provider could not be reached: {error:#}."),
    )
}

/// The pending sign-in of the request's cookie.
fn pending_of(headers: &HeaderMap) -> Option<Pending> {
    cookie(headers, PENDING_COOKIE)
        .filter(|value| value.len() <= 1024)
        .and_then(Pending::decode)
}

/// The pending sign-in's cookie: `SameSite=Lax`, since the browser comes
/// back from the provider's site (a `Strict` cookie would not be sent).
fn pending_cookie(value: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{PENDING_COOKIE}={value}; Path=/v1/session; HttpOnly; SameSite=Lax; Max-Age={max_age}{secure}"
    ))
    .expect("base64url")
}
