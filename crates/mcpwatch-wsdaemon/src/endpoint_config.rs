//! Settings of one plain HTTP endpoint (`collectors.http[]`): an admin UI, a gateway, any
//! page whose health is its status and its content rather than a JSON document.

use std::collections::BTreeMap;
use std::time::Duration;

use mcpwatch_core::config::{
    ConfigPath, Pattern, Problem, SecretFile, check_target_name, duration, secret_setting,
};
use mcpwatch_core::{RedactedUrl, Secret};
use serde::Deserialize;

use crate::config::check_access;
use crate::net::Endpoint;

/// One HTTP endpoint to check, as `curl -f` would, and more: the status it must answer,
/// what its body must (or must not) hold, redirects followed or not, and each phase timed.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpConfig {
    /// The `target` label.
    pub name: String,
    /// The page, `http://` or `https://`, such as `http://localhost:3000/`.
    pub url: String,
    /// `GET` (the default) or `HEAD`.
    #[serde(default)]
    pub method: HttpMethod,
    /// Further headers of the request; their values are kept as secrets and never shown.
    /// Neither they nor the bearer token follow a redirect to another origin.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token.
    pub bearer_token_file: Option<SecretFile>,
    /// The statuses that pass; any 2xx when empty (the default).
    #[serde(default)]
    pub valid_status_codes: Vec<u16>,
    /// A regular expression the body must match (within `max_body_bytes`).
    pub body_pattern: Option<Pattern>,
    /// A regular expression the body must not match (an error page served with 200).
    pub body_pattern_absent: Option<Pattern>,
    /// Follow redirects (301, 302, 303, 307, 308) to the final page; true by default.
    #[serde(default = "defaults::yes")]
    pub follow_redirects: bool,
    /// At most this many redirects are followed; one more fails the check.
    #[serde(default = "defaults::max_redirects")]
    pub max_redirects: u32,
    /// Limit of the whole check, redirects included; the scrape's deadline may cut it
    /// shorter.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// At most this many bytes of the body are read; the rest is not waited for.
    #[serde(default = "defaults::max_body_bytes")]
    pub max_body_bytes: u64,
    /// CA certificates for `https://`; the system's roots otherwise.
    pub ca_file: Option<ConfigPath>,
    /// Accept any server certificate (for self-signed test servers only).
    #[serde(default)]
    pub insecure_skip_verify: bool,
}

/// The request method of an HTTP check.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum HttpMethod {
    /// The page and its body.
    #[default]
    Get,
    /// The head alone: no body is read.
    Head,
}

impl HttpMethod {
    pub(crate) fn as_method(self) -> http::Method {
        match self {
            HttpMethod::Get => http::Method::GET,
            HttpMethod::Head => http::Method::HEAD,
        }
    }
}

/// The largest `max_body_bytes`: a body is held in memory while it is matched.
pub const MAX_BODY_BYTES_LIMIT: u64 = 64 << 20;

mod defaults {
    use std::time::Duration;

    pub fn yes() -> bool {
        true
    }
    pub fn max_redirects() -> u32 {
        10
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_body_bytes() -> u64 {
        1 << 20
    }
}

impl HttpConfig {
    /// A check of `url` with the defaults, named `name`.
    pub fn from_url(name: String, url: &str) -> Self {
        Self {
            name,
            url: url.to_owned(),
            method: HttpMethod::default(),
            headers: BTreeMap::new(),
            bearer_token: None,
            bearer_token_file: None,
            valid_status_codes: Vec::new(),
            body_pattern: None,
            body_pattern_absent: None,
            follow_redirects: true,
            max_redirects: defaults::max_redirects(),
            timeout: defaults::timeout(),
            max_body_bytes: defaults::max_body_bytes(),
            ca_file: None,
            insecure_skip_verify: false,
        }
    }

    /// The bearer token from `bearer_token` or `bearer_token_file`, if either is set.
    pub fn bearer_token(&self) -> Result<Option<Secret>, String> {
        secret_setting(
            "bearer_token",
            self.bearer_token.clone(),
            self.bearer_token_file.clone(),
        )
    }

    /// Whether `status` passes.
    pub(crate) fn is_valid_status(&self, status: u16) -> bool {
        if self.valid_status_codes.is_empty() {
            (200..300).contains(&status)
        } else {
            self.valid_status_codes.contains(&status)
        }
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Err((key.to_owned(), message));
        if let Err(message) = check_target_name(&self.name) {
            return problem("name", message);
        }
        let shown = RedactedUrl::new(&self.url);
        if !matches!(
            self.url.split_once("://").map(|(scheme, _)| scheme),
            Some("http" | "https")
        ) {
            return problem("url", format!("{shown:?}: expected http:// or https://"));
        }
        if let Err(e) = Endpoint::parse(&self.url) {
            return problem("url", format!("{shown:?}: {e}"));
        }
        check_access(
            self.bearer_token(),
            self.bearer_token_file.is_some(),
            &self.headers,
        )?;
        for (i, status) in self.valid_status_codes.iter().enumerate() {
            if !(100..=599).contains(status) {
                return problem(
                    &format!("valid_status_codes[{i}]"),
                    format!("{status} is no HTTP status (100 to 599)"),
                );
            }
        }
        if self.method == HttpMethod::Head {
            for (key, pattern) in [
                ("body_pattern", &self.body_pattern),
                ("body_pattern_absent", &self.body_pattern_absent),
            ] {
                if pattern.is_some() {
                    return problem(
                        key,
                        "a HEAD request has no body to match: use method GET".into(),
                    );
                }
            }
        }
        if self.timeout.is_zero() {
            return problem("timeout", "must be greater than zero".into());
        }
        if !(1..=MAX_BODY_BYTES_LIMIT).contains(&self.max_body_bytes) {
            return problem(
                "max_body_bytes",
                format!("must be between 1 and {MAX_BODY_BYTES_LIMIT} (64 MiB)"),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> HttpConfig {
        parse_yaml(text, Path::new("c.yml")).expect("config")
    }

    #[test]
    fn reads_the_documented_example_with_its_defaults() {
        let c = parse("name: admin-ui\nurl: http://localhost:3000\n");
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c,
            HttpConfig::from_url("admin-ui".into(), "http://localhost:3000")
        );
        assert_eq!(c.method, HttpMethod::Get);
        assert!(c.follow_redirects);
        assert_eq!(c.max_redirects, 10);
        assert_eq!(c.timeout, Duration::from_secs(5));
        assert_eq!(c.max_body_bytes, 1 << 20);
        assert!(c.is_valid_status(200) && c.is_valid_status(204));
        assert!(!c.is_valid_status(302) && !c.is_valid_status(503));

        let c = parse(
            "name: gw\nurl: https://gw.example:8443/login\nmethod: GET\n\
             valid_status_codes: [200, 302]\nbody_pattern: '(?i)<title>Admin'\n\
             body_pattern_absent: 'Internal Server Error'\nfollow_redirects: false\n\
             max_redirects: 3\ntimeout: 2s\nmax_body_bytes: 65536\nheaders:\n  X-Tenant: ops\n\
             bearer_token: hunter2\ninsecure_skip_verify: true\n",
        );
        assert_eq!(c.validate(), Ok(()));
        assert!(c.is_valid_status(302) && !c.is_valid_status(204));
        assert_eq!(
            c.body_pattern.as_ref().map(Pattern::as_str),
            Some("(?i)<title>Admin")
        );
        assert!(!format!("{c:?}").contains("hunter2"));
    }

    #[test]
    fn problems_name_their_key() {
        for (text, key, needle) in [
            ("url: ftp://x/", "url", "expected http:// or https://"),
            ("url: ws://x/", "url", "expected http:// or https://"),
            (
                "url: 'http://ops:hunter2@x/'",
                "url",
                "credentials in the URL are not supported",
            ),
            (
                "url: http://x/\nvalid_status_codes: [200, 99]",
                "valid_status_codes[1]",
                "no HTTP status",
            ),
            (
                "url: http://x/\nmethod: HEAD\nbody_pattern: x",
                "body_pattern",
                "HEAD request has no body",
            ),
            (
                "url: http://x/\ntimeout: 0s",
                "timeout",
                "greater than zero",
            ),
            (
                "url: http://x/\nmax_body_bytes: 0",
                "max_body_bytes",
                "between 1",
            ),
            (
                "url: http://x/\nheaders:\n  Authorization: x",
                "headers.Authorization",
                "sets itself",
            ),
            ("url: http://x/\nbearer_token: ''", "bearer_token", "empty"),
        ] {
            let c = parse(&format!("name: t\n{text}\n"));
            let (at, message) = c.validate().expect_err(text);
            assert_eq!(at, key, "{text}");
            assert!(message.contains(needle), "{text}: {message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
        let c = parse("name: 'http://x'\nurl: http://x/\n");
        assert_eq!(c.validate().expect_err("name").0, "name");
        let e = parse_yaml::<HttpConfig>(
            "name: t\nurl: http://x/\nmethod: POST\n",
            Path::new("c.yml"),
        )
        .expect_err("method");
        assert!(e.to_string().contains("unknown variant `POST`"), "{e}");
        let e = parse_yaml::<HttpConfig>(
            "name: t\nurl: http://x/\nbody_pattern: '('\n",
            Path::new("c.yml"),
        )
        .expect_err("pattern");
        assert!(e.to_string().contains("invalid regular expression"), "{e}");
    }
}
