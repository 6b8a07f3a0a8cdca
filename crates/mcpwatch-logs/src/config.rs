//! `collectors.log_patterns`: one entry per target, a file (or a pattern of file names) and
//! the patterns its lines are counted by.

use std::fmt;

use mcpwatch_core::config::{ConfigPath, Problem, check_target_name};
use mcpwatch_core::follow::FilePattern;
use mcpwatch_core::metrics::is_valid_label_name;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer};

/// Label names a capture group cannot take: the collector's own, and those Prometheus sets.
const RESERVED_LABELS: [&str; 4] = ["target", "pattern", "job", "instance"];

/// One followed log and its patterns.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LogPatternsConfig {
    /// The target's name: the `target` label of its series.
    pub name: String,
    /// A file, or a pattern of file names (`*` and `?`) in one directory; relative to the
    /// configuration file.
    pub path: ConfigPath,
    /// Read the files already there from their start at the first scrape, instead of from
    /// their end.
    #[serde(default)]
    pub read_existing: bool,
    /// Longer lines are counted as `too_long` and not matched.
    #[serde(default = "defaults::max_line_bytes")]
    pub max_line_bytes: u32,
    /// At most this many sets of capture-group values per pattern; the rest count as
    /// `other`.
    #[serde(default = "defaults::max_series")]
    pub max_series: u32,
    /// What lines are counted by; a line can count for several.
    pub patterns: Vec<PatternConfig>,
}

/// A named pattern.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatternConfig {
    /// The `pattern` label.
    pub name: String,
    /// A regular expression searched for in each line (Rust `regex` syntax).
    pub regex: LineRegex,
    /// Named capture groups whose values become labels of the same names.
    #[serde(default)]
    pub labels: Vec<String>,
}

/// A regular expression searched for in a line: a line that is not UTF-8 is still
/// searched, each invalid byte sequence as one U+FFFD.
#[derive(Clone)]
pub struct LineRegex(regex::bytes::Regex);

impl LineRegex {
    /// Compiles `pattern`; the error is the line of the parser's message that names the
    /// problem.
    pub fn new(pattern: &str) -> Result<Self, String> {
        regex::bytes::RegexBuilder::new(pattern)
            // Bounded memory whatever the pattern.
            .size_limit(1 << 20)
            .build()
            .map(LineRegex)
            .map_err(|e| {
                let text = e.to_string();
                let reason = text.lines().last().unwrap_or_default().trim().to_owned();
                format!("invalid regular expression {pattern:?}: {reason}")
            })
    }

    /// The compiled expression.
    pub fn regex(&self) -> &regex::bytes::Regex {
        &self.0
    }
}

impl fmt::Debug for LineRegex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.0.as_str())
    }
}

impl PartialEq for LineRegex {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_str() == other.0.as_str()
    }
}

impl<'de> Deserialize<'de> for LineRegex {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        LineRegex::new(&text).map_err(D::Error::custom)
    }
}

pub(crate) mod defaults {
    pub fn max_line_bytes() -> u32 {
        65_536
    }
    pub fn max_series() -> u32 {
        100
    }
}

impl LogPatternsConfig {
    /// Checks what the types cannot; keys are relative to the target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: String, message: String| Err((key, message));
        check_target_name(&self.name).map_err(|m| ("name".to_owned(), m))?;
        FilePattern::new(self.path.path()).map_err(|m| ("path".to_owned(), m))?;
        if self.max_line_bytes == 0 {
            return problem("max_line_bytes".into(), "must be at least 1".into());
        }
        if self.max_series == 0 {
            return problem("max_series".into(), "must be at least 1".into());
        }
        if self.patterns.is_empty() {
            return problem(
                "patterns".into(),
                "give at least one pattern (name and regex)".into(),
            );
        }
        for (i, pattern) in self.patterns.iter().enumerate() {
            let name = &pattern.name;
            if !is_valid_label_name(name) {
                return problem(
                    format!("patterns[{i}].name"),
                    format!("{name:?} is not a pattern name: use letters, digits and _"),
                );
            }
            if self.patterns[..i].iter().any(|p| p.name == *name) {
                return problem(
                    format!("patterns[{i}].name"),
                    format!("{name:?} is used twice"),
                );
            }
            let groups: Vec<&str> = pattern.regex.0.capture_names().flatten().collect();
            for (j, label) in pattern.labels.iter().enumerate() {
                let key = format!("patterns[{i}].labels[{j}]");
                let why = if !is_valid_label_name(label) {
                    "is not a label name (letters, digits and _, not starting with __)".to_owned()
                } else if RESERVED_LABELS.contains(&label.as_str()) {
                    format!("is reserved (not one of {})", RESERVED_LABELS.join(", "))
                } else if pattern.labels[..j].contains(label) {
                    "is listed twice".to_owned()
                } else if !groups.contains(&label.as_str()) {
                    if groups.is_empty() {
                        "is not a named capture group of the regex, which has none: \
                         write (?P<name>...)"
                            .to_owned()
                    } else {
                        format!(
                            "is not a named capture group of the regex (it has {})",
                            groups.join(", ")
                        )
                    }
                } else {
                    continue;
                };
                return problem(key, format!("pattern {name:?}: label {label:?} {why}"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> Result<LogPatternsConfig, String> {
        parse_yaml(text, Path::new("/etc/mcpwatch/exporter.yml")).map_err(|e| e.to_string())
    }

    const BASE: &str = "name: backend\npath: backend/logs/app.log\n";

    #[test]
    fn the_documented_example() {
        let c = parse(&format!(
            "{BASE}patterns:\n  - {{ name: auth_error, regex: '(?P<code>AUTH_\\d{{3}})', labels: [code] }}\n  \
             - {{ name: error, regex: '\\b(ERROR|CRITICAL)\\b' }}\n"
        ))
        .expect("config");
        assert_eq!(
            c.path.path(),
            Path::new("/etc/mcpwatch/backend/logs/app.log"),
            "relative to the configuration file"
        );
        assert_eq!((c.max_line_bytes, c.max_series), (65_536, 100));
        assert_eq!(c.patterns[0].labels, ["code"]);
        c.validate().expect("valid");
    }

    #[test]
    fn errors_name_the_pattern_and_the_key() {
        let check = |patterns: &str| {
            parse(&format!("{BASE}patterns:\n{patterns}"))
                .expect("parses")
                .validate()
                .expect_err("invalid")
        };
        let (key, message) =
            check("  - { name: auth, regex: '(?P<code>AUTH_\\d+)', labels: [codes] }\n");
        assert_eq!(key, "patterns[0].labels[0]");
        assert_eq!(
            message,
            "pattern \"auth\": label \"codes\" is not a named capture group of the regex (it has code)"
        );
        let (key, message) = check("  - { name: e, regex: ERROR, labels: [level] }\n");
        assert_eq!(key, "patterns[0].labels[0]");
        assert!(message.contains("which has none"), "{message}");
        let (key, message) = check("  - { name: e, regex: '(?P<target>x)', labels: [target] }\n");
        assert_eq!(key, "patterns[0].labels[0]");
        assert!(message.contains("is reserved"), "{message}");
        let (key, _) = check("  - { name: e, regex: '(?P<__x>x)', labels: [__x] }\n");
        assert_eq!(key, "patterns[0].labels[0]");
        let (key, message) = check("  - { name: e, regex: a }\n  - { name: e, regex: b }\n");
        assert_eq!(
            (key.as_str(), message.as_str()),
            ("patterns[1].name", "\"e\" is used twice")
        );
        let (key, _) = check("  - { name: 'auth error', regex: a }\n");
        assert_eq!(key, "patterns[0].name");
        let e = parse(&format!("{BASE}patterns: []\n"))
            .expect("parses")
            .validate();
        assert_eq!(e.expect_err("empty").0, "patterns");
    }

    #[test]
    fn a_bad_regex_is_reported_at_its_line() {
        let e = parse(&format!(
            "{BASE}patterns:\n  - name: auth\n    regex: '(AUTH_'\n"
        ))
        .expect_err("regex");
        assert!(e.contains(":5:"), "{e}");
        assert!(e.contains("invalid regular expression \"(AUTH_\""), "{e}");
        let e = parse(&format!("{BASE}patterns: []\ncolour: red\n")).expect_err("unknown key");
        assert!(e.contains("colour"), "{e}");
    }

    #[test]
    fn wildcards_only_in_the_file_name() {
        let c = parse("name: b\npath: 'logs/*/app.log'\npatterns: [{ name: e, regex: E }]\n")
            .expect("parses");
        assert_eq!(c.validate().expect_err("glob").0, "path");
    }
}
