//! Configuration loading: YAML files whose errors name the file, line, column and key, and
//! value types that check themselves while being read (durations, patterns, files, secrets),
//! so that a bad value is reported where it was written.

use std::cell::RefCell;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::secret::{REDACTED, Secret, redact_message};

mod locate;

/// A configuration error, ready to show to the user. Its text (`Display`, and `Debug`, which
/// shows the same) has every secret the key or the message may quote replaced, by
/// [`redact_message`] and for a key written as `name:value` after its colon.
#[derive(thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("{}: cannot read: {error}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why; part of the message rather than a source, so that it is said once.
        error: std::io::Error,
    },
    /// A value is wrong.
    #[error("{}", format_invalid(path, *line, *column, key, message))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// 1-based line, when known.
        line: Option<usize>,
        /// 1-based column, when known.
        column: Option<usize>,
        /// The key path, such as `collectors.postgres[0].dsn_file`; shown redacted.
        key: String,
        /// What is wrong; shown redacted.
        message: String,
    },
}

/// The text the user sees, so that no field is ever shown unredacted.
impl fmt::Debug for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl ConfigError {
    /// An error found after parsing, at a known key but without a position.
    pub fn invalid(path: &Path, key: impl Into<String>, message: impl fmt::Display) -> Self {
        ConfigError::Invalid {
            path: path.to_owned(),
            line: None,
            column: None,
            key: key.into(),
            message: message.to_string(),
        }
    }

    /// An error found after parsing `text`, placed on the line where `key` is written; a
    /// key that is missing (a required one) is placed at the nearest enclosing key or item
    /// that is written.
    pub fn located(
        path: &Path,
        text: &str,
        key: impl Into<String>,
        message: impl fmt::Display,
    ) -> Self {
        let key = key.into();
        let position = locate::locate_nearest(without_bom(text), &key);
        ConfigError::Invalid {
            path: path.to_owned(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            key,
            message: message.to_string(),
        }
    }

    /// An error found in the file at `path` after it was parsed and checked (the content of
    /// a file it names, say), placed as [`ConfigError::located`] places it when the file can
    /// still be read.
    pub fn in_file(path: &Path, key: impl Into<String>, message: impl fmt::Display) -> Self {
        match std::fs::read_to_string(path) {
            Ok(text) => Self::located(path, &text, key, message),
            Err(_) => Self::invalid(path, key, message),
        }
    }
}

/// A problem a check found in a configuration: the key at fault and what is wrong.
pub type Problem = (String, String);

/// Checks the name of a target: it becomes the `target` label of every series it gives and
/// is shown in `/health`, `/` and the logs, so it must not be empty, nor be a URL or hold
/// credentials (`://`, `@`). The name is not quoted back. Collectors call this from their
/// `validate`, with the key `name`.
pub fn check_target_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("must not be empty".to_owned());
    }
    if name.contains("://") || name.contains('@') {
        return Err(
            "must not be a URL or hold `@`: the name is the target label of every \
             series, and is shown in /health, / and the logs; name the target after its \
             host:port, or in words"
                .to_owned(),
        );
    }
    Ok(())
}

/// `text` without the byte order mark some editors write first: it is no column of line 1.
fn without_bom(text: &str) -> &str {
    text.strip_prefix('\u{feff}').unwrap_or(text)
}

/// The key path and the message as shown. A key written as `name:value` (no space after
/// the colon) holds what was meant as its value: it is shown as `name:<secret>`, in the key
/// path and where the message quotes it (`unknown field ...`).
fn redacted(key: &str, message: &str) -> (String, String) {
    let Some(colon) = key.find(':') else {
        return (redact_message(key), redact_message(message));
    };
    let segment = key[..colon].rfind(['.', ']']).map_or(0, |i| i + 1);
    let shown = format!("{}:{REDACTED}", &key[segment..colon]);
    let message = message.replace(&key[segment..], &shown);
    (
        redact_message(&format!("{}{shown}", &key[..segment])),
        redact_message(&message),
    )
}

fn format_invalid(
    path: &Path,
    line: Option<usize>,
    column: Option<usize>,
    key: &str,
    message: &str,
) -> String {
    let mut out = path.display().to_string();
    if let Some(line) = line {
        out.push_str(&format!(":{line}"));
        if let Some(column) = column {
            out.push_str(&format!(":{column}"));
        }
    }
    let (key, message) = redacted(key, message);
    if !key.is_empty() {
        out.push_str(&format!(": {key}"));
    }
    out.push_str(&format!(": {message}"));
    out
}

thread_local! {
    /// The directory of the file being read: relative paths inside it are taken from there.
    static BASE_DIR: RefCell<Option<PathBuf>> = const { RefCell::new(None) };
}

/// Reads and parses a YAML file. Unknown keys are errors when `T` denies them.
pub fn load_yaml<T: DeserializeOwned>(path: &Path) -> Result<T, ConfigError> {
    load_yaml_checked(path, |_| Ok(()))
}

/// Reads and parses a YAML file, then runs `check` on it; a problem it finds is reported at
/// the line of its key.
pub fn load_yaml_checked<T: DeserializeOwned>(
    path: &Path,
    check: impl FnOnce(&T) -> Result<(), Problem>,
) -> Result<T, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read {
        path: path.to_owned(),
        error,
    })?;
    let value = parse_yaml(&text, path)?;
    check(&value).map_err(|(key, message)| ConfigError::located(path, &text, key, message))?;
    Ok(value)
}

/// Parses YAML text that came from `origin`; relative paths in it are resolved against
/// `origin`'s directory.
pub fn parse_yaml<T: DeserializeOwned>(text: &str, origin: &Path) -> Result<T, ConfigError> {
    struct Restore(Option<PathBuf>);
    impl Drop for Restore {
        fn drop(&mut self) {
            BASE_DIR.with(|b| *b.borrow_mut() = self.0.take());
        }
    }
    let base = origin
        .parent()
        .map(|p| {
            if p.as_os_str().is_empty() {
                Path::new(".")
            } else {
                p
            }
        })
        .map(Path::to_path_buf);
    let _restore = Restore(BASE_DIR.with(|b| b.replace(base)));

    let text = without_bom(text);
    // An empty file is an empty mapping: every setting takes its default.
    let text = if text.trim().is_empty() { "{}" } else { text };
    let deserializer = serde_norway::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|error| {
        // A syntax error (a tab that indents, an unclosed quote) is placed by the parser on
        // the character at fault; the key being read when it stopped is beside the point.
        if let Err(syntax) = serde_norway::from_str::<serde::de::IgnoredAny>(text) {
            return syntax_error(origin, &syntax);
        }
        let mut key = match error.path().to_string() {
            root if root == "." => String::new(),
            key => key,
        };
        let inner = error.into_inner();
        let location = inner.location();
        // A value quoted back may be a secret written under the wrong key: the error's text
        // is redacted when it is shown.
        let mut message = inner.to_string();
        if let Some(loc) = &location {
            let suffix = format!(" at line {} column {}", loc.line(), loc.column());
            if let Some(stripped) = message.strip_suffix(&suffix) {
                message = stripped.to_owned();
            }
        }
        // serde_norway prefixes its own notion of the path; the key is reported separately.
        if let Some((prefix, rest)) = message.split_once(": ")
            && !prefix.contains(' ')
            && key.starts_with(prefix)
        {
            message = rest.to_owned();
        }
        // serde_norway places an error raised while reading a value (a bad duration, an
        // unreadable file) at the start of the enclosing mapping; the key's own position is
        // better. The parser's is kept when it is on that line and not before the key (it
        // then points at the value; a flow mapping's start is before the key).
        let reported = location.map(|l| (l.line(), l.column()));
        // A key written twice is reported for its mapping: the second one is the mistake.
        if let Some(field) = message
            .strip_prefix("duplicate field `")
            .and_then(|rest| rest.split_once('`'))
            .map(|(field, _)| field.to_owned())
        {
            let position = locate::locate_repeated(text, &key, &field).or(reported);
            key = if key.is_empty() {
                field
            } else {
                format!("{key}.{field}")
            };
            return ConfigError::Invalid {
                path: origin.to_owned(),
                line: position.map(|p| p.0),
                column: position.map(|p| p.1),
                key,
                message,
            };
        }
        let position = match (locate::locate(text, &key), reported) {
            (Some(found), Some(reported)) if found.0 == reported.0 && found.1 <= reported.1 => {
                Some(reported)
            }
            (Some(found), _) => Some(found),
            (None, reported) => reported,
        };
        ConfigError::Invalid {
            path: origin.to_owned(),
            line: position.map(|p| p.0),
            column: position.map(|p| p.1),
            key,
            message,
        }
    })
}

/// A YAML syntax error at the parser's own position, said once.
fn syntax_error(origin: &Path, error: &serde_norway::Error) -> ConfigError {
    let mut message = error.to_string();
    let location = error.location();
    if let Some(loc) = &location {
        message = message.replacen(
            &format!(" at line {} column {}", loc.line(), loc.column()),
            "",
            1,
        );
    }
    ConfigError::Invalid {
        path: origin.to_owned(),
        line: location.as_ref().map(|l| l.line()),
        column: location.as_ref().map(|l| l.column()),
        key: String::new(),
        message,
    }
}

/// Resolves `path` against the directory of the file being parsed.
fn resolve(path: PathBuf) -> PathBuf {
    if path.is_absolute() {
        return path;
    }
    BASE_DIR.with(|b| match b.borrow().as_ref() {
        Some(base) => base.join(&path),
        None => path,
    })
}

/// A file path from a configuration file, relative to that file's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigPath(PathBuf);

impl ConfigPath {
    /// The resolved path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl From<PathBuf> for ConfigPath {
    /// A path given in code (a default), taken as it is.
    fn from(path: PathBuf) -> Self {
        ConfigPath(path)
    }
}

impl<'de> Deserialize<'de> for ConfigPath {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = PathBuf::deserialize(deserializer)?;
        if raw.as_os_str().is_empty() {
            return Err(D::Error::custom("empty path"));
        }
        Ok(ConfigPath(resolve(raw)))
    }
}

impl Serialize for ConfigPath {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

/// A secret read from a file while the configuration is read (the `*_file` settings): an
/// unreadable file is reported at its key and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFile {
    path: PathBuf,
    secret: Secret,
}

impl SecretFile {
    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Its content.
    pub fn secret(&self) -> &Secret {
        &self.secret
    }
}

impl<'de> Deserialize<'de> for SecretFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let ConfigPath(path) = ConfigPath::deserialize(deserializer)?;
        let secret = Secret::from_file(&path).map_err(|e| {
            D::Error::custom(format_args!(
                "cannot read secret file {}: {e}",
                path.display()
            ))
        })?;
        Ok(SecretFile { path, secret })
    }
}

impl Serialize for SecretFile {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.path.serialize(serializer)
    }
}

/// Picks a setting given inline or through its `*_file` variant; naming both is an error.
pub fn secret_setting(
    key: &str,
    inline: Option<Secret>,
    file: Option<SecretFile>,
) -> Result<Option<Secret>, String> {
    match (inline, file) {
        (Some(_), Some(_)) => Err(format!("set either {key} or {key}_file, not both")),
        (Some(s), None) => Ok(Some(s)),
        (None, Some(f)) => Ok(Some(f.secret)),
        (None, None) => Ok(None),
    }
}

/// A regular expression, unanchored, checked when read.
#[derive(Clone)]
pub struct Pattern(regex_lite::Regex);

impl Pattern {
    /// Compiles a pattern.
    pub fn new(pattern: &str) -> Result<Self, regex_lite::Error> {
        regex_lite::Regex::new(pattern).map(Pattern)
    }

    /// Whether `text` contains a match.
    pub fn is_match(&self, text: &str) -> bool {
        self.0.is_match(text)
    }

    /// The source text.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

impl fmt::Debug for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for Pattern {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl<'de> Deserialize<'de> for Pattern {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Pattern::new(&text).map_err(|e| {
            // regex errors span several lines; the first names the problem.
            let first = e.to_string();
            let reason = first.lines().last().unwrap_or_default().trim().to_owned();
            D::Error::custom(format_args!(
                "invalid regular expression {text:?}: {reason}"
            ))
        })
    }
}

impl Serialize for Pattern {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// Parses a Prometheus-style duration: `500ms`, `10s`, `1m30s`, `2h`, `1d`, `1w`.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let text = text.trim();
    if text == "0" {
        return Ok(Duration::ZERO);
    }
    let mut rest = text;
    let mut total = Duration::ZERO;
    let mut previous_unit = u64::MAX;
    if rest.is_empty() {
        return Err("empty duration".to_owned());
    }
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return Err(format!(
                "invalid duration {text:?}: expected a number followed by ms, s, m, h, d or w"
            ));
        }
        let number: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("invalid duration {text:?}: number too large"))?;
        rest = &rest[digits..];
        let unit_len = rest.bytes().take_while(u8::is_ascii_alphabetic).count();
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let millis_per_unit: u64 = match unit {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            "h" => 3_600_000,
            "d" => 86_400_000,
            "w" => 604_800_000,
            "" => return Err(format!("invalid duration {text:?}: missing unit")),
            other => {
                return Err(format!(
                    "invalid duration {text:?}: unknown unit {other:?} (use ms, s, m, h, d or w)"
                ));
            }
        };
        // As in Prometheus: units from largest to smallest, each once ("1m30s", not "30s1m").
        if millis_per_unit >= previous_unit {
            return Err(format!(
                "invalid duration {text:?}: units must go from largest to smallest, each once"
            ));
        }
        previous_unit = millis_per_unit;
        let millis = number
            .checked_mul(millis_per_unit)
            .ok_or_else(|| format!("invalid duration {text:?}: too large"))?;
        total += Duration::from_millis(millis);
    }
    Ok(total)
}

/// Formats a duration the way [`parse_duration`] reads it.
pub fn format_duration(duration: Duration) -> String {
    let millis = duration.as_millis();
    if millis == 0 {
        return "0s".to_owned();
    }
    let mut out = String::new();
    let mut rest = millis;
    for (unit, size) in [("h", 3_600_000), ("m", 60_000), ("s", 1_000), ("ms", 1)] {
        if rest >= size {
            out.push_str(&format!("{}{unit}", rest / size));
            rest %= size;
        }
    }
    out
}

/// Serde helpers for `Duration` fields written as `10s`: `#[serde(with = "duration")]`.
pub mod duration {
    use super::*;

    /// Reads a duration string.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_duration(&text).map_err(D::Error::custom)
    }

    /// Writes a duration string.
    pub fn serialize<S: Serializer>(value: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format_duration(*value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Sample {
        #[serde(default, with = "duration")]
        timeout: Duration,
        pattern: Option<Pattern>,
        token_file: Option<SecretFile>,
        nested: Option<Nested>,
    }

    #[allow(dead_code)]
    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Nested {
        items: Vec<Item>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Item {
        #[allow(dead_code)]
        name: String,
    }

    fn error(text: &str) -> String {
        parse_yaml::<Sample>(text, Path::new("/etc/mcpwatch/config.yml"))
            .expect_err("must fail")
            .to_string()
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("10s"), Ok(Duration::from_secs(10)));
        assert_eq!(parse_duration("1m30s"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("0"), Ok(Duration::ZERO));
        assert!(parse_duration("10").is_err());
        assert!(parse_duration("ten seconds").is_err());
        assert!(parse_duration("5y").is_err());
        assert!(parse_duration("30s1m").is_err());
        assert!(parse_duration("1s1s").is_err());
        assert!(parse_duration("1.5s").is_err());
        assert_eq!(format_duration(Duration::from_millis(90_500)), "1m30s500ms");
    }

    #[test]
    fn unknown_key_names_file_line_and_key() {
        assert_eq!(
            error("timeout: 5s\nnested:\n  items:\n    - name: a\n      colour: red\n"),
            "/etc/mcpwatch/config.yml:5:7: nested.items[0].colour: unknown field `colour`, \
             expected `name`"
        );
    }

    #[test]
    fn wrong_type_and_bad_values_are_located() {
        let e = error("nested:\n  items: 3\n");
        assert!(
            e.starts_with("/etc/mcpwatch/config.yml:2:10: nested.items: invalid type"),
            "{e}"
        );
        let e = error("# comment\ntimeout: soon\n");
        assert!(
            e.starts_with("/etc/mcpwatch/config.yml:2:1: timeout: invalid duration"),
            "{e}"
        );
        let e = error("nested:\n  items: []\ntimeout: 1x\n");
        assert!(
            e.starts_with("/etc/mcpwatch/config.yml:3:1: timeout: invalid duration"),
            "{e}"
        );
        let e = error("{nested: {items: []}, timeout: soon}\n");
        assert!(e.starts_with("/etc/mcpwatch/config.yml:1:"), "{e}");
        let e = error("pattern: \"(unclosed\"\n");
        assert!(
            e.contains(":1:") && e.contains("pattern: invalid regular expression"),
            "{e}"
        );
    }

    #[test]
    fn secret_files_are_read_relative_to_the_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("token"), "abc\n").expect("write");
        let config = dir.path().join("config.yml");
        let sample: Sample = parse_yaml("token_file: token\n", &config).expect("parse");
        let file = sample.token_file.expect("token file");
        assert_eq!(file.secret().expose(), "abc");
        assert_eq!(file.path(), dir.path().join("token"));

        let e = parse_yaml::<Sample>("\n\ntoken_file: missing\n", &config)
            .expect_err("missing file")
            .to_string();
        assert!(e.contains("config.yml:3:"), "{e}");
        assert!(e.contains("token_file: cannot read secret file"), "{e}");
        assert!(e.contains("No such file"), "{e}");
    }

    #[test]
    fn empty_file_takes_defaults() {
        let sample: Sample = parse_yaml("# nothing\n", Path::new("c.yml")).expect("parse");
        assert_eq!(sample.timeout, Duration::ZERO);
    }

    #[test]
    fn missing_file_names_the_file_and_the_reason_once() {
        let e = load_yaml::<Sample>(Path::new("/nonexistent/config.yml")).expect_err("missing");
        assert!(std::error::Error::source(&e).is_none());
        let e = e.to_string();
        assert!(
            e.starts_with("/nonexistent/config.yml: cannot read: "),
            "{e}"
        );
        assert_eq!(e.matches("No such file").count(), 1, "{e}");
    }

    #[test]
    fn values_quoted_back_show_no_password() {
        let e = error("timeout: http://u:hunter2@x/?t=hunter2\n");
        assert!(
            e.starts_with(
                "/etc/mcpwatch/config.yml:1:1: timeout: invalid duration \
                 \"http://<secret>@x/<…>\""
            ),
            "{e}"
        );
        let e = error("nested:\n  items:\n    - 'redis://:hunter2@cache/0'\n");
        assert_eq!(
            e,
            "/etc/mcpwatch/config.yml:3:7: nested.items[0]: invalid type: string \
             \"redis://<secret>@cache/<…>\", expected struct Item"
        );
    }

    #[test]
    fn keys_written_with_their_value_show_no_value() {
        assert_eq!(
            error("nested:\n  items: [{name: a, password:hunter2}]\n"),
            "/etc/mcpwatch/config.yml:2:21: nested.items[0].password:<secret>: unknown field \
             `password:<secret>`, expected `name`"
        );
        assert_eq!(
            error("nested:\n  items:\n    - name: a\n      url:http://x/services/hunter2: 1\n"),
            "/etc/mcpwatch/config.yml:4:7: nested.items[0].url:<secret>: unknown field \
             `url:<secret>`, expected `name`"
        );
        assert_eq!(
            error("host=db password=hunter2: 1\n"),
            "/etc/mcpwatch/config.yml:1:1: host=db password=<secret>: unknown field \
             `host=db password=<secret>`, expected one of `timeout`, `pattern`, `token_file`, \
             `nested`"
        );
        let e = ConfigError::invalid(
            Path::new("c.yml"),
            "names.https://h/services/hunter2",
            "\"https://h/services/hunter2\" is used twice",
        );
        let shown = "c.yml: names.https:<secret>: \"https:<secret>\" is used twice";
        assert_eq!(e.to_string(), shown);
        assert_eq!(format!("{e:?}"), shown);
    }

    #[test]
    fn values_that_are_no_url_show_no_secret() {
        assert_eq!(
            error("timeout: \"host=db password=hunter2\"\n"),
            "/etc/mcpwatch/config.yml:1:1: timeout: invalid duration \"host=db \
             password=<secret>\": expected a number followed by ms, s, m, h, d or w"
        );
        assert_eq!(
            error("timeout: \"https://hooks.example/services/T0/hunter2\"\n"),
            "/etc/mcpwatch/config.yml:1:1: timeout: invalid duration \
             \"https://hooks.example/<…>\": expected a number followed by ms, s, m, h, d or w"
        );
    }

    #[test]
    fn a_byte_order_mark_is_no_column() {
        assert_eq!(
            error("\u{feff}bogus: 1\n"),
            "/etc/mcpwatch/config.yml:1:1: bogus: unknown field `bogus`, expected one of \
             `timeout`, `pattern`, `token_file`, `nested`"
        );
        assert_eq!(
            error("\u{feff}timeout: 1s\ntimeout: 2s\n"),
            "/etc/mcpwatch/config.yml:2:1: timeout: duplicate field `timeout`"
        );
        assert_eq!(
            error("\u{feff}\ttimeout: 1s\n"),
            "/etc/mcpwatch/config.yml:1:1: found character that cannot start any token, \
             while scanning for the next token"
        );
        let e = ConfigError::located(
            Path::new("c.yml"),
            "\u{feff}nested:\n  items: []\n",
            "nested.items",
            "x",
        );
        assert_eq!(e.to_string(), "c.yml:2:3: nested.items: x");
    }

    #[test]
    fn columns_count_characters() {
        assert_eq!(
            error("{pattern: \"\u{e9}\u{e9}\u{e9}\", timeout: 1s, timeout: 2s}\n"),
            "/etc/mcpwatch/config.yml:1:31: timeout: duplicate field `timeout`"
        );
        assert_eq!(
            error("nested: {items: [{name: \"\u{e9}\"}, {name: b, colour: red}]}\n"),
            "/etc/mcpwatch/config.yml:1:41: nested.items[1].colour: unknown field `colour`, \
             expected `name`"
        );
    }

    #[test]
    fn a_missing_key_is_placed_at_its_item() {
        let text = "nested:\n  items:\n    - name: a\n    - name: b\n";
        let e = ConfigError::located(Path::new("c.yml"), text, "nested.items[1].colour", "x");
        assert_eq!(e.to_string(), "c.yml:4:7: nested.items[1].colour: x");
        let e = ConfigError::located(Path::new("c.yml"), text, "other.colour", "x");
        assert_eq!(e.to_string(), "c.yml: other.colour: x");
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yml");
        std::fs::write(&path, format!("# c\n{text}")).expect("write");
        let e = ConfigError::in_file(&path, "nested.items[0].name", "x");
        assert_eq!(
            e.to_string(),
            format!("{}:4:7: nested.items[0].name: x", path.display())
        );
    }

    #[test]
    fn a_target_name_is_no_url() {
        assert_eq!(check_target_name("main"), Ok(()));
        assert_eq!(check_target_name("db:5432/app"), Ok(()));
        assert_eq!(check_target_name("[::1]:6379"), Ok(()));
        for name in ["", "redis://:hunter2@x", "ops:hunter2@x", "http://x/"] {
            let e = check_target_name(name).expect_err(name);
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn syntax_errors_point_at_the_offending_character() {
        // A tab indents line 4; the parser was reading the value on line 3.
        assert_eq!(
            error("nested:\n  items:\n    - name: a\n\t  name: b\n"),
            "/etc/mcpwatch/config.yml:4:1: found a tab character that violates indentation, \
             while scanning a plain scalar at line 3 column 13"
        );
        assert_eq!(
            error("timeout: 5s\nnested:\n  items: []\n  \titems: []\n"),
            "/etc/mcpwatch/config.yml:4:3: found character that cannot start any token, \
             while scanning for the next token"
        );
        assert_eq!(
            error("nested:\n  items:\n\t- name: b\n"),
            "/etc/mcpwatch/config.yml:3:1: found character that cannot start any token, \
             while scanning for the next token"
        );
    }

    #[test]
    fn duplicate_keys_point_at_the_second_one() {
        assert_eq!(
            error("timeout: 5s\nnested:\n  items: []\ntimeout: 6s\n"),
            "/etc/mcpwatch/config.yml:4:1: timeout: duplicate field `timeout`"
        );
        assert_eq!(
            error("nested:\n  items:\n    - name: a\n    - name: b\n      # x\n      name: c\n"),
            "/etc/mcpwatch/config.yml:6:7: nested.items[1].name: duplicate field `name`"
        );
        assert_eq!(
            error("nested:\n  items:\n    -\n      name: a\n      name: b\n"),
            "/etc/mcpwatch/config.yml:5:7: nested.items[0].name: duplicate field `name`"
        );
        assert_eq!(
            error("timeout: 5s\nnested:\n  items: []\n  items:\n    - name: a\n"),
            "/etc/mcpwatch/config.yml:4:3: nested.items: duplicate field `items`"
        );
        assert_eq!(
            error("timeout: 5s\nnested: {items: [], items: []}\n"),
            "/etc/mcpwatch/config.yml:2:21: nested.items: duplicate field `items`"
        );
        assert_eq!(
            error("nested:\n  items:\n    - {name: a, name: b}\n"),
            "/etc/mcpwatch/config.yml:3:17: nested.items[0].name: duplicate field `name`"
        );
    }

    #[test]
    fn unknown_keys_and_bad_types_inside_items_are_located() {
        assert_eq!(
            error("nested:\n  items:\n    - name: a\n    - name: b\n      colour: red\n"),
            "/etc/mcpwatch/config.yml:5:7: nested.items[1].colour: unknown field `colour`, \
             expected `name`"
        );
        assert_eq!(
            error("nested:\n  items:\n    - name: a\n    - name: [b]\n"),
            "/etc/mcpwatch/config.yml:4:13: nested.items[1].name: invalid type: sequence, \
             expected a string"
        );
    }

    #[test]
    fn checks_after_parsing_are_placed_on_their_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.yml");
        std::fs::write(
            &path,
            "timeout: 5s\nnested:\n  items:\n    - name: a\n    - name: a\n",
        )
        .expect("write");
        let e = load_yaml_checked::<Sample>(&path, |s| {
            let items = &s.nested.as_ref().expect("nested").items;
            if items[0].name == items[1].name {
                return Err(("nested.items[1].name".into(), "used twice".into()));
            }
            Ok(())
        })
        .expect_err("duplicate")
        .to_string();
        assert_eq!(
            e,
            format!("{}:5:7: nested.items[1].name: used twice", path.display())
        );
    }

    #[test]
    fn both_inline_and_file_is_an_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("pw"), "x").expect("write");
        let file: SecretFile = parse_yaml("pw", &dir.path().join("c.yml")).expect("secret file");
        assert!(secret_setting("password", Some("y".into()), Some(file.clone())).is_err());
        assert_eq!(
            secret_setting("password", None, Some(file))
                .expect("ok")
                .expect("some")
                .expose(),
            "x"
        );
    }
}
