//! Authentication: the [`Caller`] extractor, from a bearer token (tally's
//! own `tly_…`, or a JWT of a trusted identity provider, told apart by
//! shape) or from a console session cookie. Who made the request goes into
//! the access log's `subject`.
//!
//! A request with an `Authorization` header is judged by it alone. Without
//! one, the console's session cookie is accepted; a state-changing request
//! made with the cookie must also echo the session's CSRF token in
//! `X-CSRF-Token` (the cookie is `SameSite=Strict` too: two locks, since a
//! browser may not honour the attribute).

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderMap, header};

use super::AppState;
use super::error::ApiError;
use super::session::{CSRF_HEADER, session_secret};
use crate::auth::{Principal, Role, SECRET_PREFIX, secret_digest};
use crate::identity::claims::{self, NoAccess};
use crate::identity::{Verified, looks_like_jwt};

/// The authenticated caller of a request. Extracting it answers 401 (with
/// `WWW-Authenticate: Bearer`) when the token or session is missing or unknown.
pub struct Caller(pub Principal);

impl Caller {
    /// Refuses (403) unless the caller has one of `roles`.
    pub fn require(&self, roles: &[Role]) -> Result<(), ApiError> {
        if roles.contains(&self.0.role) {
            Ok(())
        } else {
            Err(ApiError::forbidden(format!(
                "A {} token may not do this.",
                self.0.role.as_str()
            )))
        }
    }
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        if let Some(header) = parts.headers.get(header::AUTHORIZATION) {
            let Some(secret) = header.to_str().ok().and_then(bearer_secret) else {
                return Err(not_bearer());
            };
            // A tally token starts `tly_`; a JWT never does (its header is base64 JSON).
            if looks_like_jwt(secret) && !secret.starts_with(SECRET_PREFIX) {
                return from_jwt(state, secret).await.map(Caller);
            }
            return match state.store.principal(secret_digest(secret)).await? {
                Some(principal) => {
                    log_subject(&token_subject(&principal));
                    Ok(Caller(principal))
                }
                None => Err(ApiError::unauthorized(
                    "InvalidAuthenticationToken",
                    "The access token is invalid.",
                    "Bearer realm=\"tally\", error=\"invalid_token\"",
                )),
            };
        }
        let Some(secret) = session_secret(&parts.headers) else {
            return Err(ApiError::unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or is not a bearer token.",
                "Bearer realm=\"tally\"",
            ));
        };
        let Some(session) = state.store.session(secret_digest(secret)).await? else {
            return Err(ApiError::unauthorized(
                "SessionEnded",
                "The console session has ended or expired; sign in again.",
                "Bearer realm=\"tally\", error=\"invalid_token\"",
            ));
        };
        if !parts.method.is_safe() && !csrf_matches(&parts.headers, &session.csrf) {
            return Err(ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "CsrfTokenMissing",
                format!(
                    "A change made with the console's session must carry the session's \
                     CSRF token in '{CSRF_HEADER}'."
                ),
            ));
        }
        log_subject(&session.subject);
        Ok(Caller(session.principal))
    }
}

/// The principal of a JWT: verified, then mapped by its issuer's
/// configuration and the grants stored for its subject.
async fn from_jwt(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let verified = match state.identity.verify(token, crate::clock::now()).await {
        Ok(verified) => verified,
        Err(error) => {
            return Err(ApiError::unauthorized(
                "InvalidAuthenticationToken",
                format!("The access token is invalid: {error}."),
                error.challenge(),
            ));
        }
    };
    log_subject(&verified.who());
    principal_of(state, &verified).await
}

/// What a verified token (an API token, or a console sign-in's ID token)
/// maps to: its issuer's configuration and the grants stored for its
/// subject; `403 NoAccess` when nothing.
pub(super) async fn principal_of(
    state: &AppState,
    verified: &Verified<'_>,
) -> Result<Principal, ApiError> {
    let granted = state
        .store
        .subscriptions_granted(&verified.issuer.issuer, &verified.subject)
        .await?;
    claims::principal(
        verified.issuer,
        &verified.claims,
        &verified.subject,
        granted,
    )
    .map_err(|NoAccess(message)| {
        ApiError::new(axum::http::StatusCode::FORBIDDEN, "NoAccess", message)
    })
}

/// How a tally token is named in the log (never by its secret).
fn token_subject(principal: &Principal) -> String {
    match principal.token_id {
        Some(id) => format!("token {id}"),
        None => "token".to_owned(),
    }
}

/// Puts who made the request into the access log's span.
fn log_subject(subject: &str) {
    tracing::Span::current().record("subject", tracing::field::display(subject));
}

fn not_bearer() -> ApiError {
    ApiError::unauthorized(
        "AuthenticationFailed",
        "Authentication failed. The 'Authorization' header is missing or is not a bearer token.",
        "Bearer realm=\"tally\"",
    )
}

/// Whether the request echoes the session's CSRF token (compared without
/// an early exit, so that timing does not tell how much of a guess matched).
fn csrf_matches(headers: &HeaderMap, expected: &str) -> bool {
    let Some(given) = headers.get(CSRF_HEADER).map(|v| v.as_bytes()) else {
        return false;
    };
    given.len() == expected.len()
        && given
            .iter()
            .zip(expected.as_bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// The secret of an `Authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer_secret(header: &str) -> Option<&str> {
    let (scheme, secret) = header.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_secret("Bearer abc"), Some("abc"));
        assert_eq!(bearer_secret("bearer  abc "), Some("abc"));
        assert_eq!(bearer_secret("Basic abc"), None);
        assert_eq!(bearer_secret("Bearer "), None);
    }

    #[test]
    fn the_csrf_token_must_match_exactly() {
        let mut headers = HeaderMap::new();
        assert!(!csrf_matches(&headers, "abc"));
        headers.insert(CSRF_HEADER, "abd".parse().unwrap());
        assert!(!csrf_matches(&headers, "abc"));
        headers.insert(CSRF_HEADER, "abcd".parse().unwrap());
        assert!(!csrf_matches(&headers, "abc"));
        headers.insert(CSRF_HEADER, "abc".parse().unwrap());
        assert!(csrf_matches(&headers, "abc"));
    }
}
