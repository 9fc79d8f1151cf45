//! Console sessions: `POST /v1/session` signs in with a tally token,
//! `GET /v1/session` says who is signed in, `DELETE /v1/session` signs out.
//!
//! The session lives in the `tally_session` cookie: `HttpOnly`,
//! `SameSite=Strict`, `Secure` when the host's public URL is https, and as
//! long-lived as the session ([`SESSION_LIFETIME`]). The store keeps only the
//! digest of the cookie's secret, so a copy of the database signs nobody in.
//! A session made with a token ends when the token is revoked.

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::AppState;
use super::error::{ApiError, ErrorResponse};
use crate::auth::{Principal, Role, new_secret, secret_digest};
use crate::store::console::NewSession;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "tally_session";
/// The header a state-changing request made with the cookie must carry.
pub const CSRF_HEADER: &str = "x-csrf-token";
/// How long a session lasts from sign-in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(8 * 3600);
/// Longest cookie secret looked up (a tally secret is 47 bytes).
const MAX_SECRET_LEN: usize = 128;

/// A sign-in with a tally token.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SignIn {
    /// A tally token's secret (`tly_…`), of an operator or a tenant.
    pub token: String,
}

/// Who is signed in.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct SessionView {
    pub role: Role,
    /// A tenant's subscriptions (empty for an operator).
    pub subscriptions: Vec<String>,
    /// Who signed in, e.g. `token 3`, or `alice@https://idp.example`.
    pub subject: String,
    /// The identity provider that signed the person in, by name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub provider: Option<String>,
    pub expires_at: DateTime<Utc>,
    /// Echo it in `X-CSRF-Token` on every POST, PUT or DELETE.
    pub csrf_token: String,
}

/// Signs in with a tally token and sets the session cookie.
#[utoipa::path(post, path = "/v1/session", tag = "console", request_body = SignIn,
    responses(
        (status = 200, body = SessionView, description = "Signed in; the session is in the `tally_session` cookie",
         headers(("Set-Cookie" = String))),
        (status = 401, body = ErrorResponse, description = "The token is unknown"),
        (status = 403, body = ErrorResponse, description = "A reporter token cannot sign in")))]
pub async fn sign_in(
    State(state): State<AppState>,
    body: Result<Json<SignIn>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) = body.map_err(|e| ApiError::bad_request("InvalidJson", e.body_text()))?;
    let token = body.token.trim();
    let unknown = || {
        ApiError::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "This token is not known to tally: check that it was copied whole and has not been revoked.",
        )
    };
    if token.is_empty() || token.len() > MAX_SECRET_LEN {
        return Err(unknown());
    }
    let principal = state
        .store
        .principal(secret_digest(token))
        .await?
        .ok_or_else(unknown)?;
    if principal.role == Role::Reporter {
        return Err(ApiError::forbidden(
            "A reporter token reports usage only; sign in with an operator or tenant token.",
        ));
    }
    let subject = match principal.token_id {
        Some(id) => format!("token {id}"),
        None => "token".to_owned(),
    };
    let (cookie, view) = start_session(&state, principal, subject, None).await?;
    Ok(([(header::SET_COOKIE, cookie)], Json(view)).into_response())
}

/// Starts a session for `principal`: its cookie and what `GET /v1/session`
/// will say of it. `issuer` is the identity provider that signed the person
/// in, if one did.
pub(super) async fn start_session(
    state: &AppState,
    principal: Principal,
    subject: String,
    issuer: Option<String>,
) -> Result<(HeaderValue, SessionView), ApiError> {
    let secret = new_secret();
    let csrf = new_secret();
    let expires_at = state.store.clock().await?
        + chrono::Duration::from_std(SESSION_LIFETIME).expect("a short lifetime");
    state
        .store
        .create_session(NewSession {
            digest: secret_digest(&secret),
            token_id: principal.token_id,
            subject: subject.clone(),
            issuer: issuer.clone(),
            principal: principal.clone(),
            csrf: csrf.clone(),
            expires_at,
        })
        .await?;
    tracing::info!(subject, role = principal.role.as_str(), "console sign-in");
    let provider = issuer.and_then(|issuer| state.identity.name_of(&issuer));
    let view = view(principal, subject, provider, expires_at, csrf);
    let cookie = session_cookie(&secret, SESSION_LIFETIME.as_secs(), secure(state));
    Ok((cookie, view))
}

/// Who is signed in with the session cookie.
#[utoipa::path(get, path = "/v1/session", tag = "console",
    responses((status = 200, body = SessionView), (status = 401, body = ErrorResponse)))]
pub async fn show_session(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<Json<SessionView>, ApiError> {
    let session = match session_secret(&headers) {
        Some(secret) => state.store.session(secret_digest(secret)).await?,
        None => None,
    };
    let session = session.ok_or_else(no_session)?;
    let provider = session
        .issuer
        .as_deref()
        .and_then(|issuer| state.identity.name_of(issuer));
    Ok(Json(view(
        session.principal,
        session.subject,
        provider,
        session.expires_at,
        session.csrf,
    )))
}

/// Signs out: ends the session in the store and clears the cookie.
#[utoipa::path(delete, path = "/v1/session", tag = "console",
    params(("X-CSRF-Token" = String, Header, description = "The session's csrfToken")),
    responses((status = 204, description = "Signed out", headers(("Set-Cookie" = String))),
              (status = 200, description = "Signed out here; `logoutUrl` signs out at the identity provider too",
               body = serde_json::Value, headers(("Set-Cookie" = String))),
              (status = 401, body = ErrorResponse), (status = 403, body = ErrorResponse)))]
pub async fn sign_out(
    State(state): State<AppState>,
    caller: super::auth::Caller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    // The Caller check has verified the session and its CSRF token.
    let _ = caller;
    let secret = session_secret(&headers).ok_or_else(no_session)?;
    let digest = secret_digest(secret);
    let issuer = state.store.session(digest).await?.and_then(|s| s.issuer);
    state.store.end_session(digest).await?;
    let cookie = session_cookie("", 0, secure(&state));
    // Signed in through an identity provider: sign out there too, where it offers it.
    if let Some(issuer) = issuer {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let back = format!("{}/", super::next_link::link_base(&state.settings, host)?);
        if let Some(logout_url) = state.identity.logout_url(&issuer, &back).await {
            let body = Json(serde_json::json!({ "logoutUrl": logout_url }));
            return Ok(([(header::SET_COOKIE, cookie)], body).into_response());
        }
    }
    Ok((StatusCode::NO_CONTENT, [(header::SET_COOKIE, cookie)]).into_response())
}

fn no_session() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "SessionEnded",
        "No console session: sign in.",
    )
}

fn view(
    principal: Principal,
    subject: String,
    provider: Option<String>,
    expires_at: DateTime<Utc>,
    csrf_token: String,
) -> SessionView {
    SessionView {
        role: principal.role,
        subscriptions: principal.subscriptions,
        subject,
        provider,
        expires_at,
        csrf_token,
    }
}

/// Whether cookies get `Secure`: when people reach the host over https.
pub(super) fn secure(state: &AppState) -> bool {
    state
        .settings
        .public_url
        .as_ref()
        .is_some_and(|url| url.scheme() == "https")
}

/// The `Set-Cookie` value of a session (an empty one with `max_age` 0 clears it).
fn session_cookie(secret: &str, max_age: u64, secure: bool) -> HeaderValue {
    let secure = if secure { "; Secure" } else { "" };
    HeaderValue::from_str(&format!(
        "{SESSION_COOKIE}={secret}; Path=/; HttpOnly; SameSite=Strict; Max-Age={max_age}{secure}"
    ))
    .expect("a secret is URL-safe base64")
}

/// The session cookie's secret in a request's `Cookie` headers, if any.
pub fn session_secret(headers: &HeaderMap) -> Option<&str> {
    cookie(headers, SESSION_COOKIE)
        .filter(|secret| !secret.is_empty() && secret.len() <= MAX_SECRET_LEN)
}

/// The value of cookie `name` in a request's `Cookie` headers, if any.
pub(super) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(found, _)| *found == name)
        .map(|(_, value)| value.trim())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_session_among_other_cookies() {
        let mut headers = HeaderMap::new();
        assert_eq!(session_secret(&headers), None);
        headers.append(header::COOKIE, "a=1; tally_sessionx=2".parse().unwrap());
        assert_eq!(session_secret(&headers), None);
        headers.append(
            header::COOKIE,
            "b=3;  tally_session=tly_abc ; c=4".parse().unwrap(),
        );
        assert_eq!(session_secret(&headers), Some("tly_abc"));
    }

    #[test]
    fn the_cookie_is_http_only_strict_and_secure_over_https() {
        let cookie = session_cookie("tly_x", 60, true);
        let cookie = cookie.to_str().unwrap();
        for part in [
            "tally_session=tly_x",
            "HttpOnly",
            "SameSite=Strict",
            "Max-Age=60",
            "Secure",
            "Path=/",
        ] {
            assert!(cookie.contains(part), "{cookie} lacks {part}");
        }
        assert!(
            !session_cookie("tly_x", 60, false)
                .to_str()
                .unwrap()
                .contains("Secure")
        );
    }
}
