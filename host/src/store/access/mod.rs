//! Access grants: an operator gives an identity provider's subject tally
//! subscriptions, as Azure's role assignments give a principal a scope. A
//! token from that issuer for that subject then reads those subscriptions.
//!
//! Issuer and subject are opaque to tally and compared exactly (case
//! matters); a subscription compares ignoring ASCII case, as everywhere in
//! tally, and is kept as it was first granted. The operations are written
//! once in `ops` over the store's `Sql` executor; each backend implements
//! [`AccessStore`] by running them.

pub(crate) mod ops;

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use super::StoreError;
use crate::usage::record::{MAX_ID_LEN, check_id, quote};

/// Most subscriptions granted to one subject of one issuer.
pub const MAX_GRANTS_PER_SUBJECT: usize = 1_000;
/// Longest issuer (an `http(s)` URL, the tokens' `iss`), in bytes.
pub const MAX_ISSUER_BYTES: usize = 1_024;
/// Longest subject (the claim that names who a token is), in bytes.
pub const MAX_SUBJECT_BYTES: usize = 256;

/// A subscription granted to a subject of an issuer.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Grant {
    /// The identity provider, as its tokens' `iss` names it.
    pub issuer: String,
    /// Who the grant is for, as the issuer's tokens name them.
    pub subject: String,
    /// The subscription granted, as it was first granted.
    #[serde(rename = "subscriptionId")]
    pub subscription: String,
    /// When it was first granted (the store's clock).
    pub created_at: DateTime<Utc>,
}

/// Why a grant was not made.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// A value breaks the bounds [`check_grant`] applies.
    #[error("{0}")]
    Invalid(#[from] InvalidGrant),
    /// The subject holds [`MAX_GRANTS_PER_SUBJECT`] subscriptions already.
    #[error(
        "'{subject}' from '{issuer}' already has {MAX_GRANTS_PER_SUBJECT} subscriptions granted, \
         the most one subject may have; revoke one first"
    )]
    TooMany { issuer: String, subject: String },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// A grant's value that breaks its bounds.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the {field} is invalid: {problem}")]
pub struct InvalidGrant {
    /// `issuer`, `subject` or `subscription`.
    pub field: &'static str,
    /// What is wrong with it.
    pub problem: String,
}

/// Checks a grant's values: an `http(s)` URL of at most
/// [`MAX_ISSUER_BYTES`], a subject of at most [`MAX_SUBJECT_BYTES`], a
/// subscription id as usage names it; none empty, padded with whitespace or
/// holding a control character. Values are refused, never trimmed: a
/// trimmed subject would be somebody else.
pub fn check_grant(issuer: &str, subject: &str, subscription: &str) -> Result<(), InvalidGrant> {
    let invalid = |field: &'static str| move |problem: String| InvalidGrant { field, problem };
    check_id(issuer, MAX_ISSUER_BYTES).map_err(invalid("issuer"))?;
    if !is_http_url(issuer) {
        return Err(invalid("issuer")(format!(
            "{} is not an http(s) URL, as an issuer's `iss` is",
            quote(issuer)
        )));
    }
    check_id(subject, MAX_SUBJECT_BYTES).map_err(invalid("subject"))?;
    check_id(subscription, MAX_ID_LEN).map_err(invalid("subscription"))?;
    Ok(())
}

/// Whether `text` is an absolute `http` or `https` URL with a host.
fn is_http_url(text: &str) -> bool {
    url::Url::parse(text)
        .is_ok_and(|url| matches!(url.scheme(), "https" | "http") && url.has_host())
}

/// The grants of subjects to subscriptions.
#[async_trait]
pub trait AccessStore: Send + Sync {
    /// Grants `subscription` to `subject` of `issuer` and returns the grant;
    /// granting it again returns the grant as first made. Checks the values
    /// ([`check_grant`]) and refuses a subject's grant past
    /// [`MAX_GRANTS_PER_SUBJECT`].
    async fn grant(
        &self,
        issuer: &str,
        subject: &str,
        subscription: &str,
    ) -> Result<Grant, GrantError>;

    /// Revokes a grant; `false` if there was none.
    async fn revoke_grant(
        &self,
        issuer: &str,
        subject: &str,
        subscription: &str,
    ) -> Result<bool, StoreError>;

    /// Every grant, by issuer and subject (bytewise), then subscription
    /// (ignoring ASCII case).
    async fn grants(&self) -> Result<Vec<Grant>, StoreError>;

    /// The subscriptions granted to `subject` of `issuer`, as granted, by id
    /// (ignoring ASCII case); none for a subject never granted any.
    async fn subscriptions_granted(
        &self,
        issuer: &str,
        subject: &str,
    ) -> Result<Vec<String>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    const ISSUER: &str = "https://login.example/tenant/v2.0";

    #[test]
    fn bounds_are_checked_and_name_the_field() {
        assert_eq!(check_grant(ISSUER, "alice", "sub-1"), Ok(()));
        assert_eq!(check_grant("http://127.0.0.1:8080", "a", "s"), Ok(()));
        let field = |issuer: &str, subject: &str, subscription: &str| {
            check_grant(issuer, subject, subscription)
                .unwrap_err()
                .field
        };
        let long_issuer = format!("https://example.com/{}", "a".repeat(MAX_ISSUER_BYTES));
        for issuer in ["", "login.example", "ftp://example.com", &long_issuer] {
            assert_eq!(field(issuer, "alice", "sub-1"), "issuer", "{issuer}");
        }
        let long_subject = "s".repeat(MAX_SUBJECT_BYTES + 1);
        for subject in ["", " alice", "al\u{1b}ice", &long_subject] {
            assert_eq!(field(ISSUER, subject, "sub-1"), "subject", "{subject}");
        }
        assert_eq!(
            check_grant(ISSUER, &"s".repeat(MAX_SUBJECT_BYTES), "sub-1"),
            Ok(())
        );
        for subscription in ["", "sub-1 ", "sub\n1", &"x".repeat(MAX_ID_LEN + 1)] {
            assert_eq!(field(ISSUER, "alice", subscription), "subscription");
        }
    }
}
