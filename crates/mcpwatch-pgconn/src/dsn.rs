//! Connection strings: tokio-postgres reads them, except the TLS settings it does not know
//! (`sslmode=verify-ca`, `verify-full`, `sslrootcert`), which are taken out here first.
//! Nothing here ever quotes the string back: it holds the password.

use std::path::PathBuf;

use mcpwatch_core::Secret;
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::SettingsError;

/// libpq's `sslmode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SslMode {
    /// Plain TCP.
    Disable,
    /// TLS when the server offers it, without checking its certificate (libpq's default).
    Prefer,
    /// TLS, without checking the certificate (unless a root certificate is given).
    Require,
    /// TLS with a certificate signed by a trusted CA.
    VerifyCa,
    /// TLS with a trusted certificate for the host connected to.
    VerifyFull,
}

/// A connection string taken apart: what tokio-postgres reads, and the TLS settings it
/// does not. Its `Debug` shows no password (tokio-postgres hides it).
#[derive(Debug)]
pub struct ParsedDsn {
    config: tokio_postgres::Config,
    ssl_mode: SslMode,
    root_cert: Option<PathBuf>,
}

impl ParsedDsn {
    /// The database a connection lands in: the one named, else the user's (the user is
    /// always set by [`parse`]).
    pub fn database(&self) -> &str {
        database(&self.config)
    }

    /// Trusts the CAs in `path` instead of those the connection string names; as with
    /// `sslrootcert`, this turns `require` into `verify-ca`.
    pub fn set_root_cert(&mut self, path: PathBuf) {
        self.root_cert = Some(path);
        if self.ssl_mode == SslMode::Require {
            self.ssl_mode = SslMode::VerifyCa;
        }
    }

    /// The TLS connector for the `sslmode` and root certificates (with `disable` it is
    /// never used), and the recorder of the certificate chains the server presents.
    pub fn connector(&self) -> Result<(MakeRustlsConnect, crate::tls::Watched), SettingsError> {
        let port = self.config.get_ports().first().copied().unwrap_or(5432);
        crate::tls::connector(self.ssl_mode, self.root_cert.as_deref(), port)
    }

    /// The settings tokio-postgres connects with (its `sslmode` only says whether to
    /// encrypt: the checks are the connector's).
    pub fn into_config(self) -> tokio_postgres::Config {
        self.config
    }
}

/// Reads a connection string. tokio-postgres logs in as the user running the process
/// when none is named: that user is filled in here, so that [`ParsedDsn::database`] is the
/// database the server picks.
pub fn parse(dsn: &Secret) -> Result<ParsedDsn, SettingsError> {
    let text = dsn.expose().trim();
    let (rest, params) = if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        split_url(text)
    } else {
        split_pairs(text)
    };
    let mut ssl_mode = SslMode::Prefer;
    let mut root_cert = None;
    let mut system_roots = false;
    for (key, value) in params {
        match key.as_str() {
            "sslmode" => {
                ssl_mode = match value.as_str() {
                    "disable" => SslMode::Disable,
                    "allow" | "prefer" => SslMode::Prefer,
                    "require" => SslMode::Require,
                    "verify-ca" => SslMode::VerifyCa,
                    "verify-full" => SslMode::VerifyFull,
                    _ => return Err(SettingsError::SslMode),
                }
            }
            // libpq 16: the system's roots, and verify-full unless said otherwise.
            _ if value == "system" => {
                root_cert = None;
                system_roots = true;
            }
            _ => root_cert = Some(PathBuf::from(value)),
        }
    }
    if system_roots && matches!(ssl_mode, SslMode::Prefer | SslMode::Require) {
        ssl_mode = SslMode::VerifyFull;
    }
    // As in libpq, a root certificate turns `require` into `verify-ca`.
    if ssl_mode == SslMode::Require && root_cert.is_some() {
        ssl_mode = SslMode::VerifyCa;
    }
    let mut config: tokio_postgres::Config = rest.parse().map_err(|e| SettingsError::Invalid {
        reason: invalid_reason(&e),
    })?;
    config.ssl_mode(match ssl_mode {
        SslMode::Disable => tokio_postgres::config::SslMode::Disable,
        SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
        _ => tokio_postgres::config::SslMode::Require,
    });
    if config.get_hosts().is_empty() {
        config.host("localhost");
    }
    // tokio-postgres logs in as the user running the process when none is named, and the
    // server then picks the database of that name: said here, so that the collector knows
    // which database it lands in.
    if config.get_user().is_none() {
        let user = whoami::username().map_err(|e| SettingsError::NoUser {
            reason: e.to_string(),
        })?;
        config.user(user);
    }
    Ok(ParsedDsn {
        config,
        ssl_mode,
        root_cert,
    })
}

/// What tokio-postgres found wrong: its error says only "invalid connection string", its
/// cause what (an option by name, or what is malformed; not the values).
fn invalid_reason(e: &tokio_postgres::Error) -> String {
    std::error::Error::source(e).map_or_else(|| e.to_string(), ToString::to_string)
}

const TLS_KEYS: [&str; 2] = ["sslmode", "sslrootcert"];

fn split_url(text: &str) -> (String, Vec<(String, String)>) {
    let Some((base, query)) = text.split_once('?') else {
        return (text.to_owned(), Vec::new());
    };
    let mut kept = Vec::new();
    let mut taken = Vec::new();
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        if TLS_KEYS.contains(&key) {
            taken.push((key.to_owned(), percent_decode(value)));
        } else {
            kept.push(pair);
        }
    }
    let rest = if kept.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", kept.join("&"))
    };
    (rest, taken)
}

fn split_pairs(text: &str) -> (String, Vec<(String, String)>) {
    let mut kept = String::new();
    let mut taken = Vec::new();
    let mut chars = text.char_indices().peekable();
    while let Some(&(start, c)) = chars.peek() {
        if c.is_whitespace() {
            chars.next();
            continue;
        }
        // A key, '=', then a bare or single-quoted value.
        let mut end = start;
        let mut key_end = None;
        let mut quoted = false;
        let mut escaped = false;
        let mut value = String::new();
        for (i, c) in chars.by_ref() {
            end = i + c.len_utf8();
            match key_end {
                None if c == '=' => key_end = Some(i),
                None if c.is_whitespace() => break,
                None => {}
                Some(_) if escaped => {
                    value.push(c);
                    escaped = false;
                }
                Some(_) if quoted && c == '\\' => escaped = true,
                Some(_) if c == '\'' => quoted = !quoted,
                Some(_) if !quoted && c.is_whitespace() => break,
                Some(_) => value.push(c),
            }
        }
        let token = &text[start..end];
        let key = key_end.map(|k| text[start..k].trim());
        match key {
            Some(k) if TLS_KEYS.contains(&k) => taken.push((k.to_owned(), value)),
            _ => {
                kept.push_str(token.trim());
                kept.push(' ');
            }
        }
    }
    (kept.trim_end().to_owned(), taken)
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && let Some(byte) = text
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
        {
            out.push(byte);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A name for a target given on the command line: `host:port/database` (`[::1]:5432/app`
/// for IPv6), without the user or password; or why the string cannot be used.
pub fn target_name(dsn: &Secret) -> Result<String, SettingsError> {
    let parsed = parse(dsn)?;
    let host = match parsed.config.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) if h.contains(':') => format!("[{h}]"),
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        #[cfg(unix)]
        Some(tokio_postgres::config::Host::Unix(p)) => p.display().to_string(),
        None => "localhost".to_owned(),
    };
    let port = parsed.config.get_ports().first().copied().unwrap_or(5432);
    Ok(format!("{host}:{port}/{}", database(&parsed.config)))
}

/// The database a connection lands in: the one named, else the user's (the user is
/// always set by [`parse`]).
fn database(config: &tokio_postgres::Config) -> &str {
    config
        .get_dbname()
        .or(config.get_user())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_tls_settings_are_taken_out() {
        let p = parse(&Secret::new(
            "postgresql://monitor:p%40ss@db.example:6432/app?sslmode=verify-full&\
             sslrootcert=%2Fetc%2Fca.pem&application_name=x",
        ))
        .expect("parse");
        assert_eq!(p.ssl_mode, SslMode::VerifyFull);
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        assert_eq!(p.database(), "app");
        assert_eq!(p.config.get_password(), Some(&b"p@ss"[..]));
        assert_eq!(p.config.get_ports(), [6432]);
    }

    #[test]
    fn key_value_pairs_with_quotes() {
        let p = parse(&Secret::new(
            "host=db user=monitor password='a b\\'c' sslmode=require dbname=app",
        ))
        .expect("parse");
        assert_eq!(p.ssl_mode, SslMode::Require);
        assert_eq!(p.config.get_password(), Some(&b"a b'c"[..]));
        assert_eq!(p.config.get_dbname(), Some("app"));
        let p = parse(&Secret::new(
            "host=db sslrootcert='/etc/my ca.pem' sslmode=require",
        ))
        .expect("parse");
        assert_eq!(
            p.ssl_mode,
            SslMode::VerifyCa,
            "a root certificate means verify-ca"
        );
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/my ca.pem")));
        assert_eq!(
            parse(&Secret::new("host=db")).expect("parse").ssl_mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn a_root_certificate_given_later_is_as_sslrootcert() {
        let mut p = parse(&Secret::new("host=db user=m sslmode=require")).expect("parse");
        p.set_root_cert(PathBuf::from("/etc/ca.pem"));
        assert_eq!(p.ssl_mode, SslMode::VerifyCa);
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/ca.pem")));
        let mut p = parse(&Secret::new(
            "host=db user=m sslmode=verify-full sslrootcert=/a.pem",
        ))
        .expect("parse");
        p.set_root_cert(PathBuf::from("/b.pem"));
        assert_eq!(p.ssl_mode, SslMode::VerifyFull, "a stricter mode stays");
        assert_eq!(p.root_cert, Some(PathBuf::from("/b.pem")));
        let mut p = parse(&Secret::new("host=db user=m sslmode=disable")).expect("parse");
        p.set_root_cert(PathBuf::from("/b.pem"));
        assert_eq!(p.ssl_mode, SslMode::Disable);
    }

    #[test]
    fn errors_never_quote_the_password() {
        for (dsn, expected) in [
            (
                "postgresql://u:hunter2@db/app?sslmode=maybe",
                "sslmode must be",
            ),
            ("host=db password=hunter2 bogus=1", "unknown option `bogus`"),
            (
                "postgresql://u:hunter2@db:notaport/app",
                "invalid connection string",
            ),
            ("host=db password='hunter2", "invalid connection string"),
            (
                "host=db password=hunter2 port=x",
                "invalid value for option `port`",
            ),
            (
                "postgresql://u:hunter2@db/app?connect_timeout=soon",
                "invalid value for option `connect_timeout`",
            ),
        ] {
            let e = parse(&Secret::new(dsn)).expect_err(dsn);
            let (display, debug) = (e.to_string(), format!("{e:?}"));
            assert!(display.contains(expected), "{dsn}: {display}");
            for text in [&display, &debug] {
                assert!(!text.contains("hunter2"), "{dsn}: {text}");
            }
        }
        for dsn in [
            "postgresql://u:hunter2@db:notaport/app",
            "host=db sslmode=sideways password=hunter2",
        ] {
            let e = target_name(&Secret::new(dsn)).expect_err(dsn);
            assert!(!format!("{e} {e:?}").contains("hunter2"), "{e:?}");
        }
    }

    #[test]
    fn names_from_the_connection_string() {
        let name = |dsn: &str| target_name(&Secret::new(dsn)).expect(dsn);
        assert_eq!(name("postgresql://u:pw@db:6432/app"), "db:6432/app");
        assert_eq!(name("host=10.0.0.5 user=monitor"), "10.0.0.5:5432/monitor");
        // No user, no database: the user running the process, and its database.
        assert_eq!(
            name("host=10.0.0.5 password=pw"),
            format!(
                "10.0.0.5:5432/{}",
                whoami::username().expect("the user running the tests")
            )
        );
        assert_eq!(name("postgresql://u:pw@[::1]:5432/app"), "[::1]:5432/app");
        assert!(matches!(
            target_name(&Secret::new("host=db sslmode=sideways")),
            Err(SettingsError::SslMode)
        ));
    }
}
