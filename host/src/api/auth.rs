//! Bearer-token authentication: the [`Caller`] extractor.

use axum::extract::FromRequestParts;
use axum::http::header;
use axum::http::request::Parts;

use super::AppState;
use super::error::ApiError;
use crate::auth::{Principal, Role, secret_digest};

/// The authenticated caller of a request. Extracting it answers 401 (with
/// `WWW-Authenticate: Bearer`) when the token is missing or unknown.
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
        let header = parts
            .headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        let Some(secret) = header.and_then(bearer_secret) else {
            return Err(ApiError::unauthorized(
                "AuthenticationFailed",
                "Authentication failed. The 'Authorization' header is missing or is not a bearer token.",
                "Bearer realm=\"tally\"",
            ));
        };
        match state.store.principal(secret_digest(secret)).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(ApiError::unauthorized(
                "InvalidAuthenticationToken",
                "The access token is invalid.",
                "Bearer realm=\"tally\", error=\"invalid_token\"",
            )),
        }
    }
}

/// The secret of an `Authorization: Bearer …` header (the scheme is case-insensitive).
fn bearer_secret(header: &str) -> Option<&str> {
    let (scheme, secret) = header.split_once(' ')?;
    let secret = secret.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !secret.is_empty()).then_some(secret)
}

#[cfg(test)]
mod tests {
    use super::bearer_secret;

    #[test]
    fn parses_bearer_headers() {
        assert_eq!(bearer_secret("Bearer abc"), Some("abc"));
        assert_eq!(bearer_secret("bearer  abc "), Some("abc"));
        assert_eq!(bearer_secret("Basic abc"), None);
        assert_eq!(bearer_secret("Bearer "), None);
    }
}
