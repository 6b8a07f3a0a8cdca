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
/// never more. Text that does not start with a scheme (`name://`) is shown as `<secret>`
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
    let mut chars = scheme.chars();
    let valid = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    valid.then_some((scheme, rest))
}

impl fmt::Display for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some((scheme, rest)) = split_scheme(self.0) else {
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
        let end = rest.find(['?', '#']).unwrap_or(rest.len());
        f.write_str(&rest[..end])
    }
}

impl fmt::Debug for RedactedUrl<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

/// `text` with every URL in it shown as [`RedactedUrl`]: for messages that quote a value
/// (a parser's "invalid type: string \"...\""), so that a URL written under the wrong key
/// is not printed whole. A URL in quotes (`"`, `'` or a backtick) runs to the closing quote;
/// one without, to the next space, quote or angle bracket.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(separator) = rest.find("://") {
        let start = rest[..separator]
            .char_indices()
            .rev()
            .find(|&(_, c)| !(c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.')))
            .map_or(0, |(i, c)| i + c.len_utf8());
        let after = &rest[separator + 3..];
        let length = match rest[..start].chars().last() {
            Some(quote @ ('"' | '\'' | '`')) => closing_quote(after, quote),
            _ => {
                after.find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            }
        }
        .unwrap_or(after.len());
        let end = separator + 3 + length;
        out.push_str(&rest[..start]);
        out.push_str(&RedactedUrl::new(&rest[start..end]).to_string());
        rest = &rest[end..];
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
            redact_urls(
                "invalid type: string \"http://u:hunter2@x:1/a?token=hunter2\", expected u32"
            ),
            "invalid type: string \"http://<secret>@x:1/a\", expected u32"
        );
        assert_eq!(
            redact_urls("unknown variant `ws://u:p w@x/?t=hunter2`, expected `gauge`"),
            "unknown variant `ws://<secret>@x/`, expected `gauge`"
        );
        assert_eq!(
            redact_urls("string \"http://u:a\\\"hunter2@x/\" and http://y/?k=hunter2 end"),
            "string \"http://<secret>@x/\" and http://y/ end"
        );
        assert_eq!(redact_urls("no URL: here"), "no URL: here");
        assert_eq!(redact_urls("odd ://hunter2 «x»"), "odd <secret> «x»");
        assert_eq!(redact_urls("«http://u:hunter2@x/»"), "«http://<secret>@x/»");
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
