//! Secrets: values that are shown as `<secret>` wherever they could be printed.

use std::fmt;
use std::io;
use std::path::Path;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use subtle::ConstantTimeEq;

/// What a secret looks like in logs, errors, `Debug`, `Display` and serialized output.
pub const REDACTED: &str = "<secret>";

/// A password, token or DSN. Only [`Secret::expose`] reveals it.
#[derive(Clone)]
pub struct Secret(Arc<str>);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Self {
        Self(Arc::from(value.into()))
    }

    /// Reads a secret from a file, as the `*_file` settings do. One trailing line break is
    /// removed, since editors and `echo` add it.
    pub fn from_file(path: &Path) -> io::Result<Self> {
        let text = std::fs::read_to_string(path)?;
        let value = text
            .strip_suffix("\r\n")
            .or_else(|| text.strip_suffix('\n'))
            .unwrap_or(&text);
        Ok(Self::new(value))
    }

    /// The value itself: for the one place that needs it (a connection, an auth header).
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Whether the secret is empty.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(REDACTED)
    }
}

/// Compared in constant time, so that comparing a guess leaks nothing through timing.
impl PartialEq for Secret {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_bytes().ct_eq(other.0.as_bytes()).into()
    }
}

impl Eq for Secret {}

impl Serialize for Secret {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(REDACTED)
    }
}

/// Any scalar is taken verbatim as text (serde_norway hands `12345` or `1e3` to a string
/// as written), so a password YAML would read as a number is kept exactly and never quoted
/// back in a type error.
impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Secret::new)
    }
}

/// For command-line flags: parsing cannot fail, and the value stays hidden in `Debug`.
impl std::str::FromStr for Secret {
    type Err = std::convert::Infallible;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Secret::new(s))
    }
}

impl From<String> for Secret {
    fn from(value: String) -> Self {
        Self::new(value)
    }
}

impl From<&str> for Secret {
    fn from(value: &str) -> Self {
        Self::new(value)
    }
}

/// A URL as it may be shown in an error, a log line, a label or a page: user info is
/// replaced by `<secret>` and the query string and fragment are left out, while the scheme,
/// host, port and path are kept (`http://<secret>@db:3001/health`).
///
/// Everything up to the last `@` is taken as user info, since a password may hold `/`, `?`
/// or `#` unescaped: a URL with an `@` in its path or query then shows less than it could,
/// never more. A port that is not a number (a password the parser took for one, as in
/// `http://ops:pa/ss@db`) and brackets that do not hold an IPv6 address are shown as
/// `<secret>`. Text that does not start with a scheme (`name://`) is shown as `<secret>`
/// whole, since nothing tells which part of it is safe to show. `Debug` quotes the result.
#[derive(Clone, Copy)]
pub struct RedactedUrl<'a>(&'a str);

impl<'a> RedactedUrl<'a> {
    /// Wraps a URL (or what was given as one) for display.
    pub fn new(url: &'a str) -> Self {
        Self(url)
    }
}

/// `scheme` and the rest after `scheme://`, when the text starts with a valid scheme.
fn split_scheme(url: &str) -> Option<(&str, &str)> {
    let (scheme, rest) = url.split_once("://")?;
    let valid = scheme
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic())
        && scheme.chars().all(is_scheme_char);
    valid.then_some((scheme, rest))
}

fn is_scheme_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')
}

/// Writes `url` redacted; its path too when `path` is set, else `/<…>` for whatever follows
/// the host and port (a path can be the secret itself: a Slack webhook's is).
fn write_url(f: &mut fmt::Formatter<'_>, url: &str, path: bool) -> fmt::Result {
    let Some((scheme, rest)) = split_scheme(url) else {
        return f.write_str(REDACTED);
    };
    write!(f, "{scheme}://")?;
    let rest = match rest.rfind('@') {
        Some(at) => {
            write!(f, "{REDACTED}@")?;
            &rest[at + 1..]
        }
        None => rest,
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    write_authority(f, &rest[..authority_end])?;
    let rest = &rest[authority_end..];
    let end = rest.find(['?', '#']).unwrap_or(rest.len());
    match &rest[..end] {
        shown if path => f.write_str(shown),
        "" if rest.is_empty() => Ok(()),
        "/" if end == rest.len() => f.write_str("/"),
        _ => f.write_str("/<…>"),
    }
}

/// Host and port: the port only when it is a number, brackets only around an IPv6 address.
fn write_authority(f: &mut fmt::Formatter<'_>, authority: &str) -> fmt::Result {
    let (host, port) = match authority.strip_prefix('[') {
        Some(inside) => match inside.split_once(']') {
            Some((address, after)) if address.parse::<std::net::Ipv6Addr>().is_ok() => {
                write!(f, "[{address}]")?;
                (
                    None,
                    after
                        .strip_prefix(':')
                        .or(Some(after).filter(|a| !a.is_empty())),
                )
            }
            _ => return f.write_str(REDACTED),
        },
        None => match authority.rsplit_once(':') {
            Some((host, port)) => (Some(host), Some(port)),
            None => (Some(authority), None),
        },
    };
    if let Some(host) = host {
        f.write_str(host)?;
    }
    match port {
        Some(port) if port.bytes().all(|b| b.is_ascii_digit()) => write!(f, ":{port}"),
        Some(_) => write!(f, ":{REDACTED}"),
        None => Ok(()),
    }
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_url(f, self.0, true)
    }
}

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// A URL quoted back from somewhere whose meaning is unknown: scheme, host and port only.
struct UrlInMessage<'a>(&'a str);

impl fmt::Display for UrlInMessage<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_url(f, self.0, false)
    }
}

/// Names whose value is a secret in `name=value` text (libpq connection strings, query
/// strings), matched at the end of the name: `sslpassword=`, `api_key=`, `auth_token=`.
const SECRET_NAMES: [&str; 5] = ["password", "passwd", "token", "secret", "key"];

/// `text` with every secret it may quote replaced, for messages that quote values (a
/// parser's "invalid type: string \"...\"", a check's "\"...\" is used twice") and whose
/// context is unknown:
///
/// - a URL shows its scheme, host and port, `<secret>` for user info and `/<…>` for the rest
///   (`http://<secret>@db:3001/<…>`). A URL in quotes (`"`, `'` or a backtick) runs to the
///   closing quote, one without to the next space, quote or angle bracket; and either runs
///   on to the last `@` before the next space, since a password may hold a quote.
/// - in `name=value` text, the value of every name ending in `password`, `passwd`, `token`,
///   `secret` or `key` is `<secret>`: up to the next space, or a libpq quoted value whole.
pub fn redact_message(text: &str) -> String {
    redact_assignments(&redact_urls(text))
}

fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(separator) = rest.find("://") {
        let start = rest[..separator]
            .char_indices()
            .rev()
            .find(|&(_, c)| !is_scheme_char(c))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let after = &rest[separator + 3..];
        let ends_word = |c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>');
        let mut length = match rest[..start].chars().last() {
            Some(quote @ ('"' | '\'' | '`')) => closing_quote(after, quote),
            _ => after.find(ends_word),
        }
        .unwrap_or(after.len());
        // A quote or bracket inside a password ends the URL too early: user info runs to the
        // last `@` of the word.
        let word = length
            + after[length..]
                .find(char::is_whitespace)
                .unwrap_or(after.len() - length);
        if let Some(at) = after[..word].rfind('@').filter(|&at| at >= length) {
            length = at
                + 1
                + after[at + 1..]
                    .find(ends_word)
                    .unwrap_or(after.len() - at - 1);
        }
        let end = separator + 3 + length;
        out.push_str(&rest[..start]);
        out.push_str(&UrlInMessage(&rest[start..end]).to_string());
        rest = &rest[end..];
    }
    out.push_str(rest);
    out
}

/// Replaces the values of secret `name=value` assignments.
fn redact_assignments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(equals) = rest.find('=') {
        let name_start = rest[..equals]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '_' | '-')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let name = rest[name_start..equals].to_ascii_lowercase();
        out.push_str(&rest[..=equals]);
        rest = &rest[equals + 1..];
        if !SECRET_NAMES.iter().any(|secret| name.ends_with(secret)) {
            continue;
        }
        let length = if let Some(quoted) = rest.strip_prefix('\'') {
            // libpq's quoting: 'a b\'c'.
            closing_quote(quoted, '\'').map_or(rest.len(), |end| end + 2)
        } else {
            let word = rest.find(char::is_whitespace).unwrap_or(rest.len());
            // The quote (and punctuation) that closes the value where it is quoted back, as
            // in `invalid duration "host=db password=...":`, is kept.
            let closer = rest[..word]
                .rfind(['"', '\'', '`'])
                .filter(|&q| rest[q + 1..word].chars().all(|c| ",.:;)]}>".contains(c)));
            closer.unwrap_or(word)
        };
        if length > 0 {
            out.push_str(REDACTED);
        }
        rest = &rest[length..];
    }
    out.push_str(rest);
    out
}

/// The offset of the first `quote` in `text` that a backslash does not escape.
fn closing_quote(text: &str, quote: char) -> Option<usize> {
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' => escaped = true,
            c if c == quote => return Some(i),
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn never_shows_its_value() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s}"), "<secret>");
        assert_eq!(format!("{s:?}"), "<secret>");
        assert_eq!(format!("{:?}", Some(&s)), "Some(<secret>)");
        assert_eq!(serde_json::to_string(&s).expect("json"), "\"<secret>\"");
        assert_eq!(s.expose(), "hunter2");
    }

    #[test]
    fn scalars_that_yaml_reads_as_numbers_are_accepted() {
        for text in ["12345", "1e3", "0x1F", "+5", "True"] {
            let s: Secret = serde_norway::from_str(text).expect("scalar");
            assert_eq!(s.expose(), text);
        }
        let s: Secret = serde_norway::from_str("'007'").expect("string");
        assert_eq!(s.expose(), "007");
        let e = serde_norway::from_str::<Secret>("[hunter2]").expect_err("sequence");
        assert!(!e.to_string().contains("hunter2"), "{e}");
    }

    #[test]
    fn urls_show_neither_user_info_nor_query() {
        let shown = |url: &str| RedactedUrl::new(url).to_string();
        assert_eq!(
            shown("http://ops:hunter2@db.example:3001/health?token=hunter2#x"),
            "http://<secret>@db.example:3001/health"
        );
        assert_eq!(
            shown("https://gw:8000/health?key=hunter2"),
            "https://gw:8000/health"
        );
        assert_eq!(shown("ws://[::1]:3001/"), "ws://[::1]:3001/");
        assert_eq!(
            shown("redis://:hunter2@127.0.0.1:6379/0"),
            "redis://<secret>@127.0.0.1:6379/0"
        );
        assert_eq!(
            shown("postgresql://monitor@db/app?password=hunter2&sslmode=require"),
            "postgresql://<secret>@db/app"
        );
        assert_eq!(
            shown("unix:///run/redis.sock?pass=hunter2"),
            "unix:///run/redis.sock"
        );
        // A password with the characters that end an authority, unescaped.
        for url in [
            "http://ops:hun/ter2@db:3001/health",
            "http://ops:hun?ter2@db:3001/health",
            "http://ops:hun#ter2@db:3001/health",
            "http://ops:hun@ter2@db:3001/health",
            "http://ops:hun ter2@db:3001/health",
        ] {
            assert_eq!(shown(url), "http://<secret>@db:3001/health", "{url}");
        }
        // Not a URL: nothing tells what is safe to show.
        for text in [
            "hunter2",
            "ops:hunter2@db/health",
            "://hunter2@x",
            "1http://x",
            "",
        ] {
            assert_eq!(shown(text), "<secret>", "{text}");
        }
        assert_eq!(
            format!("{:?}", RedactedUrl::new("http://u:hunter2@x/")),
            "\"http://<secret>@x/\""
        );
    }

    #[test]
    fn urls_in_messages_are_redacted() {
        assert_eq!(
            redact_message(
                "invalid type: string \"http://u:hunter2@x:1/a?token=hunter2\", expected u32"
            ),
            "invalid type: string \"http://<secret>@x:1/<…>\", expected u32"
        );
        assert_eq!(
            redact_message("unknown variant `ws://u:p w@x/?t=hunter2`, expected `gauge`"),
            "unknown variant `ws://<secret>@x/<…>`, expected `gauge`"
        );
        assert_eq!(
            redact_message("string \"http://u:a\\\"hunter2@x/\" and http://y/?k=hunter2 end"),
            "string \"http://<secret>@x/\" and http://y/<…> end"
        );
        assert_eq!(redact_message("no URL: here"), "no URL: here");
    }

    #[test]
    fn ports_that_are_no_number_and_brackets_without_an_address_are_hidden() {
        let shown = |url: &str| RedactedUrl::new(url).to_string();
        assert_eq!(
            shown("http://127.0.0.1:hunter2/health"),
            "http://127.0.0.1:<secret>/health"
        );
        assert_eq!(shown("http://db:/health"), "http://db:/health");
        assert_eq!(shown("http://[hunter2]/health"), "http://<secret>/health");
        assert_eq!(shown("http://[hunter2/health"), "http://<secret>/health");
        assert_eq!(
            shown("http://[::1]:hunter2/health"),
            "http://[::1]:<secret>/health"
        );
        assert_eq!(shown("ws://[::1]x/"), "ws://[::1]:<secret>/");
    }

    #[test]
    fn messages_show_no_path_no_query_and_no_secret_assignment() {
        let cases = [
            // A webhook's path is its secret.
            (
                "invalid duration \"https://hooks.example:443/services/T0/B0/hunter2\": x",
                "invalid duration \"https://hooks.example:443/<…>\": x",
            ),
            (
                "no channel is named \"https://h/services/hunter2?x=1\"",
                "no channel is named \"https://h/<…>\"",
            ),
            (
                "at http://h:1/ and http://h:2",
                "at http://h:1/ and http://h:2",
            ),
            ("at http://h:1?token=hunter2.", "at http://h:1/<…>"),
            // A password holding the quote that closes the value.
            (
                "unknown variant `http://u:hun`ter2@127.0.0.1/`, expected `gauge` or `counter`",
                "unknown variant `http://<secret>@127.0.0.1/`, expected `gauge` or `counter`",
            ),
            (
                "string \"http://u:hun\\\"ter2@x/\", expected",
                "string \"http://<secret>@x/\", expected",
            ),
            (
                "see ftp://u:hun<ter2@x/a here",
                "see ftp://<secret>@x/<…> here",
            ),
            (
                "unknown field `dsn:postgresql://m:hunter2@h/app`",
                "unknown field `dsn:postgresql://<secret>@h/<…>`",
            ),
            // libpq connection strings and other assignments.
            (
                "invalid duration \"host=db password=hunter2\": expected a number",
                "invalid duration \"host=db password=<secret>\": expected a number",
            ),
            (
                "invalid type: string \"host=db PASSWORD='hun ter\\'2' user=m\", expected u32",
                "invalid type: string \"host=db PASSWORD=<secret> user=m\", expected u32",
            ),
            (
                "cannot read /x/host=h passwd=hunter2: No such file",
                "cannot read /x/host=h passwd=<secret> No such file",
            ),
            (
                "token=hunter2 api_key=hunter2, sslpassword=hunter2 client_secret=hunter2",
                "token=<secret> api_key=<secret> sslpassword=<secret> client_secret=<secret>",
            ),
            (
                "unknown field `password=hun`ter2`, expected",
                "unknown field `password=<secret>`, expected",
            ),
            ("sslmode=require user=m", "sslmode=require user=m"),
            ("a == b, password=", "a == b, password="),
            ("password='hunter2", "password=<secret>"),
            ("odd ://hunter2 «x»", "odd <secret> «x»"),
            ("«http://u:hunter2@x/»", "«http://<secret>@x/<…>"),
        ];
        let mut wrong = Vec::new();
        for (text, expected) in cases {
            let got = redact_message(text);
            if got != expected {
                wrong.push(format!("{text}\n  got:      {got}\n  expected: {expected}"));
            }
        }
        assert!(
            wrong.is_empty(),
            "{} of {} wrong:\n{}",
            wrong.len(),
            cases.len(),
            wrong.join("\n")
        );
    }

    #[test]
    fn compares_by_value() {
        assert_eq!(Secret::new("a"), Secret::new("a"));
        assert_ne!(Secret::new("a"), Secret::new("b"));
        assert_ne!(Secret::new("a"), Secret::new("ab"));
    }

    #[test]
    fn reads_files_without_the_trailing_newline() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("token");
        std::fs::write(&path, "s3cret\n").expect("write");
        assert_eq!(Secret::from_file(&path).expect("read").expose(), "s3cret");
        std::fs::write(&path, "a\nb\r\n").expect("write");
        assert_eq!(Secret::from_file(&path).expect("read").expose(), "a\nb");
    }
}
