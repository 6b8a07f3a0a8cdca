//! Alertmanager-style label matchers (`name="value"`, `!=`, `=~`, `!~`), as the routing
//! tree and maintenance windows use them.

use std::fmt;

use serde::{Deserialize, Deserializer};

use crate::payload::Labels;

/// How a matcher compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatchOp {
    /// `=`
    Equal,
    /// `!=`
    NotEqual,
    /// `=~` (fully anchored)
    Regex,
    /// `!~` (fully anchored)
    NotRegex,
}

/// One matcher, such as `severity="critical"` or `service=~"gateway|db"`. A missing label
/// is the empty string, as in Alertmanager.
#[derive(Clone)]
pub struct Matcher {
    name: String,
    op: MatchOp,
    value: String,
    regex: Option<regex_lite::Regex>,
}

impl fmt::Debug for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl fmt::Display for Matcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let op = match self.op {
            MatchOp::Equal => "=",
            MatchOp::NotEqual => "!=",
            MatchOp::Regex => "=~",
            MatchOp::NotRegex => "!~",
        };
        write!(f, "{}{op}{:?}", self.name, self.value)
    }
}

impl Matcher {
    /// Parses `name="value"` (the value may be unquoted) with `=`, `!=`, `=~` or `!~`.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let position = text
            .find(['=', '!'])
            .ok_or_else(|| format!("{text:?}: expected name=\"value\" (or !=, =~, !~)"))?;
        let name = text[..position].trim();
        let rest = &text[position..];
        let (op, value) = if let Some(v) = rest.strip_prefix("=~") {
            (MatchOp::Regex, v)
        } else if let Some(v) = rest.strip_prefix("!~") {
            (MatchOp::NotRegex, v)
        } else if let Some(v) = rest.strip_prefix("!=") {
            (MatchOp::NotEqual, v)
        } else if let Some(v) = rest.strip_prefix('=') {
            (MatchOp::Equal, v)
        } else {
            return Err(format!("{text:?}: expected =, !=, =~ or !~ after the name"));
        };
        if name.is_empty()
            || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
            || name.as_bytes()[0].is_ascii_digit()
        {
            return Err(format!("{text:?}: {name:?} is not a label name"));
        }
        let value = value.trim();
        let value = if value.starts_with('"') {
            serde_json::from_str::<String>(value).map_err(|_| {
                format!("{text:?}: the quoted value is not closed or has a bad escape")
            })?
        } else {
            value.to_owned()
        };
        let regex = match op {
            MatchOp::Regex | MatchOp::NotRegex => Some(
                regex_lite::Regex::new(&format!("^(?:{value})$"))
                    .map_err(|e| format!("{text:?}: bad regular expression: {e}"))?,
            ),
            _ => None,
        };
        Ok(Self {
            name: name.to_owned(),
            op,
            value,
            regex,
        })
    }

    /// Whether `labels` satisfy it.
    pub fn matches(&self, labels: &impl Labels) -> bool {
        let actual = labels.label(&self.name).unwrap_or("");
        match (self.op, &self.regex) {
            (MatchOp::Equal, _) => actual == self.value,
            (MatchOp::NotEqual, _) => actual != self.value,
            (MatchOp::Regex, Some(re)) => re.is_match(actual),
            (MatchOp::NotRegex, Some(re)) => !re.is_match(actual),
            (_, None) => false,
        }
    }
}

impl<'de> Deserialize<'de> for Matcher {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Matcher::parse(&text).map_err(serde::de::Error::custom)
    }
}
