//! The web configuration file, in exporter-toolkit's `web-config.yml` format: TLS, HTTP
//! headers, basic auth users (bcrypt) and a rate limit.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

use crate::config::{ConfigError, ConfigPath, Problem, duration, load_yaml_checked};
use crate::secret::Secret;

/// The file as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebConfig {
    /// TLS settings; plain HTTP when absent.
    pub tls_server_config: Option<TlsServerConfig>,
    /// HTTP settings.
    #[serde(default)]
    pub http_server_config: HttpServerConfig,
    /// User name to bcrypt hash; basic auth is required when not empty.
    #[serde(default)]
    pub basic_auth_users: BTreeMap<String, BcryptHash>,
    /// A token bucket over all requests.
    pub rate_limit: Option<RateLimit>,
}

/// `tls_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsServerConfig {
    /// Inline PEM certificate chain.
    pub cert: Option<String>,
    /// Inline PEM private key.
    pub key: Option<Secret>,
    /// Inline PEM CA for client certificates.
    pub client_ca: Option<String>,
    /// Certificate chain file.
    pub cert_file: Option<FileContents>,
    /// Private key file.
    pub key_file: Option<FileContents>,
    /// Client CA file.
    pub client_ca_file: Option<FileContents>,
    /// Client certificate policy.
    #[serde(default)]
    pub client_auth_type: ClientAuthType,
    /// DNS names or IP addresses of which the client certificate must carry one.
    #[serde(default)]
    pub client_allowed_sans: Vec<String>,
    /// Lowest TLS version accepted.
    pub min_version: Option<TlsVersion>,
    /// Highest TLS version accepted.
    pub max_version: Option<TlsVersion>,
    /// TLS 1.2 cipher suites, by their Go names, in preference order.
    #[serde(default)]
    pub cipher_suites: Vec<String>,
    /// Whether the server's order of cipher suites wins (default true).
    pub prefer_server_cipher_suites: Option<bool>,
    /// Key exchange groups, by their Go names, in preference order.
    #[serde(default)]
    pub curve_preferences: Vec<String>,
}

/// `http_server_config`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpServerConfig {
    /// Accepted for compatibility with exporter-toolkit files; mcpwatch serves HTTP/1.1,
    /// which is what scrapers use, and keeps the HTTP/2 stack out of the binary.
    pub http2: Option<bool>,
    /// Security headers added to every response.
    #[serde(default)]
    pub headers: ResponseHeaders,
}

/// The response headers exporter-toolkit allows.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResponseHeaders {
    /// `Content-Security-Policy`.
    #[serde(rename = "Content-Security-Policy")]
    pub content_security_policy: Option<String>,
    /// `X-Frame-Options`: `deny` or `sameorigin`.
    #[serde(rename = "X-Frame-Options")]
    pub x_frame_options: Option<FrameOptions>,
    /// `X-Content-Type-Options`: `nosniff`.
    #[serde(rename = "X-Content-Type-Options")]
    pub x_content_type_options: Option<ContentTypeOptions>,
    /// `X-XSS-Protection`.
    #[serde(rename = "X-XSS-Protection")]
    pub x_xss_protection: Option<String>,
    /// `Strict-Transport-Security`.
    #[serde(rename = "Strict-Transport-Security")]
    pub strict_transport_security: Option<String>,
}

impl ResponseHeaders {
    /// The headers to add, as name and value.
    pub fn pairs(&self) -> Vec<(&'static str, String)> {
        let mut out = Vec::new();
        let mut add = |name, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                out.push((name, v));
            }
        };
        add(
            "content-security-policy",
            self.content_security_policy.clone(),
        );
        add(
            "x-frame-options",
            self.x_frame_options.map(|f| f.as_str().to_owned()),
        );
        add(
            "x-content-type-options",
            self.x_content_type_options.map(|_| "nosniff".to_owned()),
        );
        add("x-xss-protection", self.x_xss_protection.clone());
        add(
            "strict-transport-security",
            self.strict_transport_security.clone(),
        );
        out
    }
}

/// `X-Frame-Options` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FrameOptions {
    /// `deny`.
    Deny,
    /// `sameorigin`.
    Sameorigin,
}

impl FrameOptions {
    fn as_str(self) -> &'static str {
        match self {
            FrameOptions::Deny => "deny",
            FrameOptions::Sameorigin => "sameorigin",
        }
    }
}

/// `X-Content-Type-Options` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentTypeOptions {
    /// `nosniff`.
    Nosniff,
}

/// `rate_limit`.
#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Time between two requests; 0 disables the limit.
    #[serde(with = "duration")]
    pub interval: Duration,
    /// Requests allowed at once.
    pub burst: u32,
}

/// Client certificate policies, named as in Go's `crypto/tls`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum ClientAuthType {
    /// No client certificate is asked for.
    #[default]
    NoClientCert,
    /// Asked for, not required, not verified.
    RequestClientCert,
    /// Required, not verified.
    RequireAnyClientCert,
    /// Verified when given.
    VerifyClientCertIfGiven,
    /// Required and verified against `client_ca_file`.
    RequireAndVerifyClientCert,
}

/// TLS protocol versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TlsVersion {
    /// TLS 1.2.
    Tls12,
    /// TLS 1.3.
    Tls13,
}

impl<'de> Deserialize<'de> for TlsVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        match String::deserialize(deserializer)?.as_str() {
            "TLS12" => Ok(TlsVersion::Tls12),
            "TLS13" => Ok(TlsVersion::Tls13),
            v @ ("TLS10" | "TLS11") => Err(D::Error::custom(format_args!(
                "{v} is not supported: TLS 1.0 and 1.1 are insecure; use TLS12 or TLS13"
            ))),
            other => Err(D::Error::custom(format_args!(
                "unknown TLS version {other:?}; use TLS12 or TLS13"
            ))),
        }
    }
}

/// A bcrypt hash, checked for form when read.
#[derive(Clone)]
pub struct BcryptHash(Secret);

impl BcryptHash {
    /// The hash text.
    pub fn as_str(&self) -> &str {
        self.0.expose()
    }
}

impl fmt::Debug for BcryptHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(crate::secret::REDACTED)
    }
}

impl<'de> Deserialize<'de> for BcryptHash {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        bcrypt::HashParts::from_str(&text).map_err(|_| {
            D::Error::custom(
                "not a bcrypt hash (expected $2a$, $2b$ or $2y$ followed by cost and salt; \
                 make one with `htpasswd -nBC 10 \"\" | tr -d ':\\n'`)",
            )
        })?;
        Ok(BcryptHash(Secret::new(text)))
    }
}

/// A file read while the configuration is read, so that a missing one is reported at its
/// key. Its content is never shown.
#[derive(Clone)]
pub struct FileContents {
    path: PathBuf,
    content: Secret,
}

impl FileContents {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its content.
    pub fn content(&self) -> &str {
        self.content.expose()
    }
}

impl fmt::Debug for FileContents {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FileContents({})", self.path.display())
    }
}

impl<'de> Deserialize<'de> for FileContents {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let path = ConfigPath::deserialize(deserializer)?.path().to_owned();
        let content = std::fs::read_to_string(&path)
            .map_err(|e| D::Error::custom(format_args!("cannot read {}: {e}", path.display())))?;
        Ok(FileContents {
            path,
            content: Secret::new(content),
        })
    }
}

impl WebConfig {
    /// Reads and checks a web configuration file.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        load_yaml_checked(path, WebConfig::validate)
    }

    /// Checks what involves several keys.
    fn validate(&self) -> Result<(), Problem> {
        let invalid = |key: &str, message: &str| (key.to_owned(), message.to_owned());
        if let Some(tls) = &self.tls_server_config {
            let key = "tls_server_config";
            match (&tls.cert, &tls.cert_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(key, "set either cert or cert_file, not both"));
                }
                (None, None) => return Err(invalid(key, "cert or cert_file is required")),
                _ => {}
            }
            match (&tls.key, &tls.key_file) {
                (Some(_), Some(_)) => {
                    return Err(invalid(key, "set either key or key_file, not both"));
                }
                (None, None) => return Err(invalid(key, "key or key_file is required")),
                _ => {}
            }
            if tls.client_ca.is_some() && tls.client_ca_file.is_some() {
                return Err(invalid(
                    key,
                    "set either client_ca or client_ca_file, not both",
                ));
            }
            let has_ca = tls.client_ca.is_some() || tls.client_ca_file.is_some();
            let verifies = matches!(
                tls.client_auth_type,
                ClientAuthType::VerifyClientCertIfGiven
                    | ClientAuthType::RequireAndVerifyClientCert
            );
            if verifies && !has_ca {
                return Err(invalid(
                    "tls_server_config.client_ca_file",
                    "required when client_auth_type verifies client certificates",
                ));
            }
            if has_ca && !verifies {
                return Err(invalid(
                    "tls_server_config.client_auth_type",
                    "a client CA is set, so use VerifyClientCertIfGiven or \
                     RequireAndVerifyClientCert",
                ));
            }
            if !tls.client_allowed_sans.is_empty()
                && tls.client_auth_type != ClientAuthType::RequireAndVerifyClientCert
            {
                return Err(invalid(
                    "tls_server_config.client_allowed_sans",
                    "requires client_auth_type RequireAndVerifyClientCert",
                ));
            }
            if let (Some(min), Some(max)) = (tls.min_version, tls.max_version)
                && min > max
            {
                return Err(invalid(
                    "tls_server_config.min_version",
                    "higher than max_version",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_yaml;

    fn parse(text: &str) -> Result<WebConfig, String> {
        let path = Path::new("web.yml");
        parse_yaml::<WebConfig>(text, path)
            .and_then(|c| match c.validate() {
                Ok(()) => Ok(c),
                Err((key, message)) => Err(ConfigError::located(path, text, key, message)),
            })
            .map_err(|e| e.to_string())
    }

    const HASH: &str = "$2y$10$X0h1gDsPszWURQaxFh.zoubFi6DXncSjhoQNJgRrnGs7EsimhC7zG";

    #[test]
    fn reads_basic_auth_and_headers() {
        let c = parse(&format!(
            "basic_auth_users:\n  alice: '{HASH}'\nhttp_server_config:\n  headers:\n    \
             X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n"
        ))
        .expect("valid");
        assert_eq!(c.basic_auth_users["alice"].as_str(), HASH);
        assert_eq!(
            c.http_server_config.headers.pairs(),
            vec![
                ("x-frame-options", "deny".to_owned()),
                ("x-content-type-options", "nosniff".to_owned())
            ]
        );
        assert!(format!("{c:?}").contains("<secret>"));
        assert!(!format!("{c:?}").contains(HASH));
    }

    #[test]
    fn rejects_bad_values_where_they_are() {
        let e = parse("basic_auth_users:\n  alice: plaintext\n").expect_err("not bcrypt");
        assert!(e.starts_with("web.yml:2:"), "{e}");
        assert!(
            e.contains("basic_auth_users.alice: not a bcrypt hash"),
            "{e}"
        );
        assert!(!e.contains("plaintext"), "{e}");

        let e = parse("tls_server_config:\n  min_version: TLS10\n").expect_err("tls10");
        assert!(
            e.contains("tls_server_config.min_version: TLS10 is not supported"),
            "{e}"
        );

        let e = parse("tls_server_config:\n  key_file: /nonexistent/key.pem\n")
            .expect_err("missing key");
        assert!(e.starts_with("web.yml:2:"), "{e}");
        assert!(
            e.contains("tls_server_config.key_file: cannot read /nonexistent/key.pem"),
            "{e}"
        );

        let e = parse("http_server_config:\n  headers:\n    Server: x\n").expect_err("header");
        assert!(
            e.contains("http_server_config.headers.Server: unknown field"),
            "{e}"
        );

        let e = parse("tls_server_config:\n  cert: x\n").expect_err("no key");
        assert_eq!(
            e,
            "web.yml:1:1: tls_server_config: key or key_file is required"
        );

        let e = parse(
            "tls_server_config:\n  cert: x\n  key: y\n  client_auth_type: RequireAndVerifyClientCert\n",
        )
        .expect_err("no ca");
        assert!(e.contains("client_ca_file: required"), "{e}");
    }

    #[test]
    fn empty_file_is_plain_http_without_auth() {
        let c = parse("").expect("empty");
        assert!(c.tls_server_config.is_none());
        assert!(c.basic_auth_users.is_empty());
        assert_eq!(c.http_server_config.http2, None);
    }
}
