//! What a verified token's claims say: whether they hold now and for tally
//! (`exp`, `nbf`, `iat`, `aud`), and which tally role and subscriptions they
//! map to, by the issuer's configuration.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::config::IssuerConfig;
use super::error::TokenError;
use crate::auth::{Principal, Role};

/// A claim as a NumericDate (seconds since the epoch, possibly fractional).
fn date(claims: &Map<String, Value>, name: &'static str) -> Result<Option<DateTime<Utc>>, TokenError> {
    match claims.get(name) {
        None => Ok(None),
        Some(value) => value
            .as_f64()
            .filter(|s| s.is_finite())
            .and_then(|s| DateTime::from_timestamp(s.floor() as i64, 0))
            .map(Some)
            // Present but not a number is refused, never skipped.
            .ok_or_else(|| TokenError::MissingClaim(name.into())),
    }
}

/// Checks `exp` (required), `nbf` and `iat` against `now`, with `skew`.
pub fn check_times(
    claims: &Map<String, Value>,
    now: DateTime<Utc>,
    skew: std::time::Duration,
) -> Result<(), TokenError> {
    let leeway = chrono::Duration::from_std(skew).unwrap_or_default();
    let expires = date(claims, "exp")?.ok_or_else(|| TokenError::MissingClaim("exp".into()))?;
    if expires + leeway <= now {
        return Err(TokenError::Expired {
            at: expires,
            now,
            skew: skew.as_secs(),
        });
    }
    if let Some(not_before) = date(claims, "nbf")?
        && not_before - leeway > now
    {
        return Err(TokenError::NotYetValid { at: not_before, now });
    }
    if let Some(issued) = date(claims, "iat")?
        && issued - leeway > now
    {
        return Err(TokenError::IssuedInTheFuture { at: issued, now });
    }
    Ok(())
}

/// Checks that `aud` (a string or an array) names one of `accepted`.
pub fn check_audience(claims: &Map<String, Value>, accepted: &[String]) -> Result<(), TokenError> {
    let audiences = strings(claims.get("aud"));
    if audiences.is_empty() {
        return Err(TokenError::MissingClaim("aud".into()));
    }
    if audiences.iter().any(|a| accepted.iter().any(|b| b == a)) {
        return Ok(());
    }
    Err(TokenError::WrongAudience {
        got: format!("{audiences:?}"),
        accepted: accepted.join(", "),
    })
}

/// The values of a string or string-array claim.
pub fn strings(value: Option<&Value>) -> Vec<String> {
    match value {
        Some(Value::String(one)) => vec![one.clone()],
        Some(Value::Array(many)) => many
            .iter()
            .filter_map(|v| v.as_str().map(str::to_owned))
            .collect(),
        _ => Vec::new(),
    }
}

/// Why a valid token gives no access.
#[derive(Debug, PartialEq)]
pub struct NoAccess(pub String);

/// The principal a token's claims map to: operator, else reporter, else a
/// tenant of the subscriptions the token carries or was `granted` (holding
/// one of the `tenant` values too, where the issuer lists some).
pub fn principal(
    config: &IssuerConfig,
    claims: &Map<String, Value>,
    subject: &str,
    granted: Vec<String>,
) -> Result<Principal, NoAccess> {
    let values = strings(claims.get(&config.roles_claim));
    let has = |wanted: &[String]| values.iter().any(|v| wanted.contains(v));
    let role = if has(&config.operator) {
        Some(Role::Operator)
    } else if has(&config.reporter) {
        Some(Role::Reporter)
    } else {
        None
    };
    if let Some(role) = role {
        return Ok(Principal {
            role,
            subscriptions: Vec::new(),
            token_id: None,
        });
    }
    let mut subscriptions = config
        .subscriptions_claim
        .as_ref()
        .map(|claim| strings(claims.get(claim)))
        .unwrap_or_default();
    for subscription in granted {
        if !subscriptions.iter().any(|s| s.eq_ignore_ascii_case(&subscription)) {
            subscriptions.push(subscription);
        }
    }
    subscriptions.retain(|s| crate::usage::record::check_id(s, crate::usage::record::MAX_ID_LEN).is_ok());
    // A tenant has subscriptions; where the issuer lists tenant values, one
    // of them too.
    if !subscriptions.is_empty() && (config.tenant.is_empty() || has(&config.tenant)) {
        return Ok(Principal {
            role: Role::Tenant,
            subscriptions,
            token_id: None,
        });
    }
    Err(NoAccess(format!(
        "The token of '{subject}' from '{}' is valid but grants no tally role: its '{}' claim holds {} \
         (an operator needs one of {:?}, a reporter one of {:?}), and it carries no subscription{}{}. \
         Ask the operator for a role, or for subscriptions (`tally access grant`).",
        config.issuer,
        config.roles_claim,
        if values.is_empty() { "nothing".to_owned() } else { format!("{values:?}") },
        config.operator,
        config.reporter,
        config
            .subscriptions_claim
            .as_ref()
            .map(|c| format!(" in '{c}'"))
            .unwrap_or_default(),
        if config.tenant.is_empty() { String::new() } else { format!(" (a tenant needs one of {:?})", config.tenant) },
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn config() -> IssuerConfig {
        toml::from_str(
            "issuer = 'https://idp'\naudiences = ['api://tally']\noperator = ['ops']\nreporter = ['rp']\ntenant = ['tn']\nsubscriptions_claim = 'subs'\n",
        )
        .unwrap()
    }

    fn claims(value: Value) -> Map<String, Value> {
        value.as_object().unwrap().clone()
    }

    #[test]
    fn times_hold_within_the_skew_and_strings_are_refused() {
        let now = DateTime::from_timestamp(1_000_000, 0).unwrap();
        let skew = std::time::Duration::from_secs(60);
        assert!(check_times(&claims(json!({"exp": 1_000_030})), now, skew).is_ok());
        assert!(check_times(&claims(json!({"exp": 999_950})), now, skew).is_ok());
        assert!(matches!(check_times(&claims(json!({"exp": 999_900})), now, skew), Err(TokenError::Expired { .. })));
        assert_eq!(check_times(&claims(json!({})), now, skew), Err(TokenError::MissingClaim("exp".into())));
        // A date that is not a number is refused, not skipped.
        assert_eq!(
            check_times(&claims(json!({"exp": 1_000_030, "nbf": "99999999999"})), now, skew),
            Err(TokenError::MissingClaim("nbf".into()))
        );
        assert!(matches!(
            check_times(&claims(json!({"exp": 1_000_900, "nbf": 1_000_300})), now, skew),
            Err(TokenError::NotYetValid { .. })
        ));
        assert!(matches!(
            check_times(&claims(json!({"exp": 1_000_900, "iat": 1_000_300})), now, skew),
            Err(TokenError::IssuedInTheFuture { .. })
        ));
    }

    #[test]
    fn audiences_may_be_a_string_or_a_list() {
        let accepted = vec!["api://tally".to_owned()];
        assert!(check_audience(&claims(json!({"aud": "api://tally"})), &accepted).is_ok());
        assert!(check_audience(&claims(json!({"aud": ["x", "api://tally"]})), &accepted).is_ok());
        assert!(matches!(check_audience(&claims(json!({"aud": "api://other"})), &accepted), Err(TokenError::WrongAudience { .. })));
        assert_eq!(check_audience(&claims(json!({})), &accepted), Err(TokenError::MissingClaim("aud".into())));
    }

    #[test]
    fn claims_map_to_roles_and_subscriptions_by_configuration() {
        let config = config();
        let map = |value: Value, granted: &[&str]| {
            principal(&config, &claims(value), "who", granted.iter().map(|s| s.to_string()).collect())
        };
        assert_eq!(map(json!({"roles": ["ops"]}), &[]).unwrap().role, Role::Operator);
        assert_eq!(map(json!({"roles": "rp"}), &[]).unwrap().role, Role::Reporter);
        let tenant = map(json!({"roles": ["tn"], "subs": ["sub-a"]}), &["SUB-A", "sub-b"]).unwrap();
        assert_eq!((tenant.role, tenant.subscriptions), (Role::Tenant, vec!["sub-a".into(), "sub-b".into()]));
        // Tenant values are listed: subscriptions alone are not enough.
        assert!(map(json!({}), &["sub-c"]).is_err());
        let mut open = config.clone();
        open.tenant.clear();
        let granted_only = principal(&open, &claims(json!({})), "who", vec!["sub-c".into()]).unwrap();
        assert_eq!(granted_only.subscriptions, vec!["sub-c".to_string()]);
        let nothing = map(json!({"roles": ["viewer"]}), &[]).unwrap_err();
        assert!(nothing.0.contains("grants no tally role") && nothing.0.contains("viewer"), "{}", nothing.0);
    }
}
