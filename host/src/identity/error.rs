//! Why a JWT is refused, in words a person can act on: the text of the
//! `401`'s message and of its `WWW-Authenticate` `error_description`.

use chrono::{DateTime, Utc};

/// A refused JWT.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum TokenError {
    #[error("the token is not a well-formed JWT: {0}")]
    Malformed(String),
    #[error(
        "the token is signed with '{0}', which tally does not accept (accepted: RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384)"
    )]
    AlgorithmNotAllowed(String),
    #[error("the token's issuer '{issuer}' is not trusted (trusted: {trusted})")]
    UnknownIssuer { issuer: String, trusted: String },
    #[error("the token's signing key{} is not among the keys of '{issuer}'{}", .kid.as_ref().map(|k| format!(" '{k}'")).unwrap_or_default(), .refresh_error.as_ref().map(|e| format!(" (the keys could not be fetched again: {e})")).unwrap_or_default())]
    UnknownKey {
        kid: Option<String>,
        issuer: String,
        refresh_error: Option<String>,
    },
    #[error("the token's signature does not verify with the issuer's key")]
    BadSignature,
    #[error("the token has no '{0}' claim, or it is not of the right type")]
    MissingClaim(String),
    #[error("the token expired at {at} ({} s ago, beyond the {skew} s of clock skew allowed)", .now.signed_duration_since(*.at).num_seconds())]
    Expired {
        at: DateTime<Utc>,
        now: DateTime<Utc>,
        skew: u64,
    },
    #[error("the token is not valid before {at} (now {now}): check the clocks, or wait")]
    NotYetValid { at: DateTime<Utc>, now: DateTime<Utc> },
    #[error("the token was issued at {at}, in the future (now {now}): check the issuer's and tally's clocks")]
    IssuedInTheFuture { at: DateTime<Utc>, now: DateTime<Utc> },
    #[error("the token's audience {got} is not tally's (accepted: {accepted})")]
    WrongAudience { got: String, accepted: String },
}

impl TokenError {
    /// The `WWW-Authenticate` value of a `401` for this error.
    pub fn challenge(&self) -> String {
        let description: String = self
            .to_string()
            .chars()
            .map(|c| match c {
                '"' | '\\' => '\'',
                c if c.is_ascii() && !c.is_ascii_control() => c,
                _ => '?',
            })
            .collect();
        format!("Bearer realm=\"tally\", error=\"invalid_token\", error_description=\"{description}\"")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_quote_safely() {
        let error = TokenError::WrongAudience {
            got: "[\"x\"]".into(),
            accepted: "api://tally".into(),
        };
        let challenge = error.challenge();
        assert!(challenge.starts_with("Bearer realm=\"tally\", error=\"invalid_token\""));
        assert!(challenge.contains("error_description=\"the token's audience ['x']"));
        assert!(axum::http::HeaderValue::from_str(&challenge).is_ok());
    }
}
