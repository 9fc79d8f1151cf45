//! `[[identity.issuers]]` in `tally.toml`: the identity providers whose
//! tokens tally trusts, and how their claims map to tally's roles.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, ensure};
use serde::Deserialize;

/// Largest clock skew an issuer may be given.
pub const MAX_CLOCK_SKEW: Duration = Duration::from_secs(300);

/// The `[identity]` table.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    /// The trusted issuers, tried by the tokens' `iss`.
    #[serde(default)]
    pub issuers: Vec<IssuerConfig>,
}

/// One trusted issuer.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IssuerConfig {
    /// Exactly the tokens' `iss`; its keys are found through
    /// `{issuer}/.well-known/openid-configuration` unless `jwks_file` is set.
    pub issuer: String,
    /// Air-gapped: the issuer's keys from this JWKS file, no network.
    pub jwks_file: Option<PathBuf>,
    /// Where the discovery document is, when not at
    /// `{issuer}/.well-known/openid-configuration` (AD FS: access tokens'
    /// `iss` is `…/adfs/services/trust`, its document at
    /// `https://FS/adfs/.well-known/openid-configuration`).
    pub discovery_url: Option<String>,
    /// The name the console's sign-in button shows (default: the issuer's host).
    pub display_name: Option<String>,
    /// A token's `aud` must name one of these.
    pub audiences: Vec<String>,
    /// Leeway for `exp`, `nbf` and `iat` (default 60 s, at most 5 min).
    #[serde(default = "default_clock_skew", with = "humantime_serde")]
    pub clock_skew: Duration,
    /// Least time between two fetches of the keys: a flood of tokens with
    /// unknown key ids costs the issuer one request per this (default 60 s).
    #[serde(default = "default_key_refresh_floor", with = "humantime_serde")]
    pub key_refresh_floor: Duration,
    /// The claim that names who the token is (default `sub`; Entra ID: `oid`).
    #[serde(default = "default_subject_claim")]
    pub subject_claim: String,
    /// The claim holding role or group values (a string or an array).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// Values of `roles_claim` that make an operator.
    #[serde(default)]
    pub operator: Vec<String>,
    /// Values that make a reporter.
    #[serde(default)]
    pub reporter: Vec<String>,
    /// Values that make a tenant (of the subscriptions the token carries or
    /// was granted).
    #[serde(default)]
    pub tenant: Vec<String>,
    /// A claim carrying a tenant's subscription ids, if the issuer sends one.
    pub subscriptions_claim: Option<String>,
    /// The console's client at this issuer (single sign-on).
    pub client_id: Option<String>,
    /// Its secret, when the issuer wants one.
    pub client_secret: Option<String>,
}

fn default_clock_skew() -> Duration {
    Duration::from_secs(60)
}

fn default_key_refresh_floor() -> Duration {
    Duration::from_secs(60)
}

fn default_subject_claim() -> String {
    "sub".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

impl IdentityConfig {
    /// Refuses what could not work: an issuer that is not a URL, listed twice,
    /// without audiences, with a skew past [`MAX_CLOCK_SKEW`].
    pub fn check(&self) -> anyhow::Result<()> {
        for (i, issuer) in self.issuers.iter().enumerate() {
            let name = &issuer.issuer;
            let url = url::Url::parse(name)
                .map_err(|e| anyhow::anyhow!("identity issuer '{name}' is not a URL: {e}"))?;
            if issuer.jwks_file.is_none() && !matches!(url.scheme(), "https" | "http") {
                bail!("identity issuer '{name}': keys are found over http(s), or set jwks_file");
            }
            ensure!(
                !issuer.audiences.is_empty(),
                "identity issuer '{name}' needs at least one audience"
            );
            ensure!(
                issuer.clock_skew <= MAX_CLOCK_SKEW,
                "identity issuer '{name}': clock_skew is at most {}",
                humantime::format_duration(MAX_CLOCK_SKEW)
            );
            ensure!(
                self.issuers[..i].iter().all(|other| other.issuer != *name),
                "identity issuer '{name}' is listed twice"
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<IdentityConfig> {
        let config: IdentityConfig = toml::from_str(text)?;
        config.check()?;
        Ok(config)
    }

    #[test]
    fn reads_an_issuer_with_defaults_and_refuses_what_cannot_work() {
        let config = parse(
            "[[issuers]]\nissuer = 'https://login.example/t/v2.0'\naudiences = ['api://tally']\noperator = ['Tally.Operator']\n",
        )
        .unwrap();
        let issuer = &config.issuers[0];
        assert_eq!(issuer.clock_skew, Duration::from_secs(60));
        assert_eq!(
            (issuer.subject_claim.as_str(), issuer.roles_claim.as_str()),
            ("sub", "roles")
        );
        assert!(parse("[[issuers]]\nissuer = 'https://a'\naudiences = []\n").is_err());
        assert!(parse("[[issuers]]\nissuer = 'not a url'\naudiences = ['x']\n").is_err());
        assert!(
            parse("[[issuers]]\nissuer = 'https://a'\naudiences = ['x']\nclock_skew = '1h'\n")
                .is_err()
        );
        assert!(
            parse("[[issuers]]\nissuer = 'https://a'\naudiences = ['x']\n[[issuers]]\nissuer = 'https://a'\naudiences = ['y']\n")
                .is_err()
        );
        assert!(
            parse("[[issuers]]\nissuer = 'https://a'\naudiences = ['x']\nrole = 'x'\n").is_err()
        );
    }
}
