//! API tokens and the roles they carry.
//!
//! A token is a random secret shown once at creation; the store keeps only its
//! SHA-256 digest. Secrets are 256 random bits, so a plain digest is enough
//! (no password-hashing cost on every request).

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What a token may do.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum, utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything: all subscriptions' usage, the provider API, the catalog.
    Operator,
    /// Read the usage of the subscriptions bound to the token.
    Tenant,
    /// Report usage (ingest) only.
    Reporter,
}

impl Role {
    /// The role's name, as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Operator => "operator",
            Role::Tenant => "tenant",
            Role::Reporter => "reporter",
        }
    }

    /// The role named `value`, if any.
    pub fn parse(value: &str) -> Option<Self> {
        [Role::Operator, Role::Tenant, Role::Reporter]
            .into_iter()
            .find(|r| r.as_str() == value)
    }
}

/// The caller behind a valid token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub role: Role,
    /// The subscriptions a tenant token is bound to (empty for other roles).
    pub subscriptions: Vec<String>,
    /// The token behind the request, directly or through a console session.
    pub token_id: Option<i64>,
}

impl Principal {
    /// Whether this caller may read the usage of `subscription_id`.
    pub fn may_read(&self, subscription_id: &str) -> bool {
        match self.role {
            Role::Operator => true,
            Role::Tenant => self
                .subscriptions
                .iter()
                .any(|s| s.eq_ignore_ascii_case(subscription_id)),
            Role::Reporter => false,
        }
    }
}

/// Prefix of every secret, so that a leaked one is easy to recognise.
pub const SECRET_PREFIX: &str = "tly_";

/// Creates a new secret: `tly_` followed by 256 random bits, URL-safe.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the operating system's random source works");
    format!("{SECRET_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// The digest under which a secret is stored.
pub fn secret_digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_unique_and_digests_stable() {
        let (a, b) = (new_secret(), new_secret());
        assert_ne!(a, b);
        assert!(a.starts_with("tly_") && a.len() > 40);
        assert_eq!(secret_digest(&a), secret_digest(&a));
        assert_ne!(secret_digest(&a), secret_digest(&b));
    }

    #[test]
    fn tenants_read_only_their_subscriptions() {
        let tenant = Principal {
            role: Role::Tenant,
            subscriptions: vec!["ABC".into()],
            token_id: Some(1),
        };
        assert!(tenant.may_read("abc"));
        assert!(!tenant.may_read("abd"));
        assert!(
            !Principal {
                role: Role::Reporter,
                subscriptions: vec![],
                token_id: None,
            }
            .may_read("abc")
        );
        assert!(
            Principal {
                role: Role::Operator,
                subscriptions: vec![],
                token_id: None,
            }
            .may_read("abc")
        );
    }
}
