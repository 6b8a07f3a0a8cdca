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
