//! Where absolute links (`nextLink`) point. Clients follow a `nextLink` with
//! their bearer token, so it is built on `public_url` when one is set, else
//! on the request's `Host` only when that is one of the host's own names
//! (`allowed_hosts`, plus the listen address): a request naming any other
//! `Host` is refused, never answered with a link elsewhere. Only answers
//! that carry a `nextLink` need a base: a one-page answer is served whatever
//! `Host` the client sent.

use url::Url;

use super::Settings;
use super::error::ApiError;

/// The base URL (scheme and authority, no trailing slash) of links in an
/// answer to a request that named this `Host`.
pub fn link_base(settings: &Settings, host: Option<&str>) -> Result<String, ApiError> {
    if let Some(url) = &settings.public_url {
        return Ok(url.as_str().trim_end_matches('/').to_owned());
    }
    let host = host.unwrap_or("");
    if settings
        .allowed_hosts
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(host))
    {
        return Ok(format!("http://{host}"));
    }
    Err(ApiError::bad_request(
        "InvalidHost",
        format!(
            "This answer has more than one page, but the Host header '{host}' is not a name of this \
             host, so no link to the next page can be built on it. The operator must set public_url (the URL clients \
             reach the host at) or list '{host}' in [http] allowed_hosts in the host's configuration."
        ),
    ))
}

/// Checks an `allowed_hosts` entry: a host name or address, with an optional
/// port, as a client sends it in `Host` (`usage.internal:8080`, `[::1]:8080`).
pub fn check_allowed_host(host: &str) -> anyhow::Result<()> {
    let authority_only =
        !host.contains(['/', '@', '?', '#', '\\']) && !host.contains(char::is_whitespace);
    let parses = Url::parse(&format!("http://{host}/")).is_ok_and(|url| url.host().is_some());
    anyhow::ensure!(
        authority_only && parses,
        "allowed host '{host}' must be a host name or address with an optional port, as clients send it in Host"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_host(host: &str) -> Option<&str> {
        Some(host)
    }

    #[test]
    fn links_go_to_the_public_url_or_an_allowed_host_only() {
        let settings = Settings {
            allowed_hosts: vec!["usage.internal:8080".into()],
            ..Settings::default()
        };
        assert_eq!(
            link_base(&settings, with_host("USAGE.internal:8080")).unwrap(),
            "http://USAGE.internal:8080"
        );
        for host in [
            "attacker.example",
            "usage.internal",
            "usage.internal:8081",
            "",
        ] {
            let error = link_base(&settings, with_host(host)).unwrap_err();
            assert_eq!(error.code, "InvalidHost", "{host}");
        }
        assert!(link_base(&settings, None).is_err());
        let public = Settings {
            public_url: Some(Url::parse("https://usage.example/").unwrap()),
            ..Settings::default()
        };
        assert_eq!(
            link_base(&public, with_host("attacker.example")).unwrap(),
            "https://usage.example"
        );
    }

    #[test]
    fn allowed_hosts_are_host_and_port_only() {
        for good in [
            "usage.internal",
            "usage.internal:8080",
            "10.0.0.5:80",
            "[::1]:8080",
        ] {
            check_allowed_host(good).unwrap();
        }
        for bad in [
            "http://usage.internal",
            "usage.internal/x",
            "a@b",
            "",
            "usage.internal:x",
        ] {
            assert!(check_allowed_host(bad).is_err(), "{bad}");
        }
    }
}
