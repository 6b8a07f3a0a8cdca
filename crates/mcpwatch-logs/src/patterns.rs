//! Lines counted by pattern, with bounded capture-group labels.

use std::borrow::Cow;
use std::collections::BTreeMap;

use mcpwatch_core::MetricSink;
use mcpwatch_core::follow::Lines;
use mcpwatch_core::metrics::{Label, SampleValue};
use regex::bytes::{CaptureLocations, Regex};

use crate::config::PatternConfig;

/// Capture values longer than this count as `other`.
const MAX_VALUE_BYTES: usize = 128;
/// The value of labels past the bound.
const OTHER: &str = "other";
/// The value of a group that took no part in the match.
const NONE: &str = "none";

/// One pattern and its counts.
#[derive(Debug)]
struct Counted {
    name: String,
    regex: Regex,
    /// Label names, and the index of the capture group of each.
    labels: Vec<(String, usize)>,
    locations: CaptureLocations,
    /// Lines matched, for a pattern without labels.
    lines: u64,
    /// Lines matched per set of label values.
    series: BTreeMap<Vec<String>, u64>,
}

/// Lines read and matched.
#[derive(Debug)]
pub(crate) struct PatternCounts {
    patterns: Vec<Counted>,
    max_series: usize,
    read: u64,
    invalid_utf8: u64,
    too_long: u64,
    unfinished: u64,
}

impl PatternCounts {
    /// Counts for `patterns`, checked by the configuration.
    pub(crate) fn new(patterns: &[PatternConfig], max_series: usize) -> Self {
        let patterns = patterns
            .iter()
            .map(|p| {
                let regex = p.regex.regex().clone();
                let labels = p
                    .labels
                    .iter()
                    .map(|label| {
                        let group = regex
                            .capture_names()
                            .position(|n| n == Some(label.as_str()))
                            .unwrap_or(0);
                        (label.clone(), group)
                    })
                    .collect();
                Counted {
                    name: p.name.clone(),
                    locations: regex.capture_locations(),
                    regex,
                    labels,
                    lines: 0,
                    series: BTreeMap::new(),
                }
            })
            .collect();
        Self {
            patterns,
            max_series,
            read: 0,
            invalid_utf8: 0,
            too_long: 0,
            unfinished: 0,
        }
    }

    /// Adds `log_pattern_lines_total` and `log_lines_total`.
    pub(crate) fn metrics(&self, sink: &mut MetricSink) {
        let matched = sink.counter(
            "log_pattern_lines_total",
            "Lines that matched each named pattern, with the values of its capture groups.",
        );
        for pattern in &self.patterns {
            if pattern.labels.is_empty() {
                matched.add(&[("pattern", &pattern.name)], pattern.lines as f64);
                continue;
            }
            for (values, count) in &pattern.series {
                let mut labels: Vec<Label> = vec![("pattern".into(), pattern.name.clone())];
                labels.extend(
                    pattern
                        .labels
                        .iter()
                        .zip(values)
                        .map(|((name, _), value)| (name.clone().into(), value.clone())),
                );
                matched.add_labels(labels, SampleValue::Number(*count as f64));
            }
        }
        let lines = sink.counter(
            "log_lines_total",
            "Lines read, by result: read (UTF-8), invalid_utf8 (matched all the same, each \
             invalid byte sequence as U+FFFD), \
             too_long (longer than max_line_bytes, not matched), unfinished (a file let go \
             with a line never ended).",
        );
        lines.add(&[("result", "read")], self.read as f64);
        lines.add(&[("result", "invalid_utf8")], self.invalid_utf8 as f64);
        lines.add(&[("result", "too_long")], self.too_long as f64);
        lines.add(&[("result", "unfinished")], self.unfinished as f64);
    }
}

impl Counted {
    fn test(&mut self, line: &[u8], max_series: usize) {
        if self.labels.is_empty() {
            if self.regex.is_match(line) {
                self.lines += 1;
            }
            return;
        }
        if self
            .regex
            .captures_read(&mut self.locations, line)
            .is_none()
        {
            return;
        }
        let values: Vec<String> = self
            .labels
            .iter()
            .map(|(_, group)| match self.locations.get(*group) {
                None => NONE.to_owned(),
                Some((start, end)) if end - start > MAX_VALUE_BYTES => OTHER.to_owned(),
                Some((start, end)) if start == end => NONE.to_owned(),
                Some((start, end)) => String::from_utf8_lossy(&line[start..end]).into_owned(),
            })
            .collect();
        if let Some(count) = self.series.get_mut(&values) {
            *count += 1;
            return;
        }
        let values = if self.series.len() < max_series {
            values
        } else {
            vec![OTHER.to_owned(); self.labels.len()]
        };
        *self.series.entry(values).or_insert(0) += 1;
    }
}

impl Lines for PatternCounts {
    fn line(&mut self, line: &[u8]) {
        // CRLF line endings: the carriage return is no part of the line.
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        // A line that is not UTF-8 is matched as it reads: each invalid sequence is one
        // U+FFFD, which `.` and `\S` match, so `ERROR.*timeout` spans a stray Latin-1 byte
        // (the regex's `.` matches no invalid byte).
        let text = String::from_utf8_lossy(line);
        if matches!(text, Cow::Borrowed(_)) {
            self.read += 1;
        } else {
            self.invalid_utf8 += 1;
        }
        for pattern in &mut self.patterns {
            pattern.test(text.as_bytes(), self.max_series);
        }
    }

    fn too_long(&mut self) {
        self.too_long += 1;
    }

    fn unfinished(&mut self) {
        self.unfinished += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LineRegex;

    fn pattern(name: &str, regex: &str, labels: &[&str]) -> PatternConfig {
        PatternConfig {
            name: name.to_owned(),
            regex: LineRegex::new(regex).expect("regex"),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        }
    }

    fn value(counts: &PatternCounts, labels: &[(&str, &str)]) -> Option<f64> {
        let mut sink = MetricSink::default();
        counts.metrics(&mut sink);
        sink.find("log_pattern_lines_total")
            .expect("family")
            .value(labels)
    }

    fn seed_patterns() -> Vec<PatternConfig> {
        vec![
            pattern("auth_error", r"(?P<code>AUTH_\d{3})", &["code"]),
            pattern("http_status", r#"" (?P<status>[45]\d\d) "#, &["status"]),
            pattern("error", r"\b(ERROR|CRITICAL)\b", &[]),
        ]
    }

    #[test]
    fn a_line_counts_for_every_pattern_it_matches() {
        let mut counts = PatternCounts::new(&seed_patterns(), 10);
        assert_eq!(
            value(&counts, &[("pattern", "error")]),
            Some(0.0),
            "declared at 0"
        );
        counts.line(b"2026-12-06 ERROR login refused: AUTH_001 invalid credentials");
        counts.line(b"2026-12-06 CRITICAL AUTH_003 token store unreachable\r");
        counts.line(b"2026-12-06 INFO AUTH_001 retried");
        counts.line(b"1.2.3.4 - - [x] \"GET / HTTP/1.1\" 429 12 \"-\" \"curl\"");
        counts.line(b"1.2.3.4 - - [x] \"GET / HTTP/1.1\" 200 12 \"-\" \"curl\"");
        counts.line(b"ERRORS are not ERROR-free"); // the word ERROR once, after "not "
        assert_eq!(value(&counts, &[("pattern", "error")]), Some(3.0));
        let auth = |code| value(&counts, &[("pattern", "auth_error"), ("code", code)]);
        assert_eq!((auth("AUTH_001"), auth("AUTH_003")), (Some(2.0), Some(1.0)));
        assert_eq!(
            value(&counts, &[("pattern", "http_status"), ("status", "429")]),
            Some(1.0)
        );
        assert_eq!(
            value(&counts, &[("pattern", "http_status"), ("status", "200")]),
            None
        );
        assert_eq!((counts.read, counts.invalid_utf8), (6, 0));
    }

    #[test]
    fn labels_are_bounded() {
        let mut counts = PatternCounts::new(
            &[pattern(
                "user",
                r"user=(?P<user>\S*)(?: role=(?P<role>\w+))?",
                &["user", "role"],
            )],
            3,
        );
        for n in 0..10 {
            counts.line(format!("login user=u{n} role=admin").as_bytes());
        }
        counts.line(b"login user=u0 role=admin");
        counts.line(format!("login user={}", "x".repeat(200)).as_bytes());
        counts.line(b"login user= role=x");
        let v = |user, role| {
            value(
                &counts,
                &[("pattern", "user"), ("user", user), ("role", role)],
            )
        };
        assert_eq!(v("u0", "admin"), Some(2.0));
        assert_eq!(v("u2", "admin"), Some(1.0));
        assert_eq!(v("u3", "admin"), None, "past max_series");
        assert_eq!(
            v("other", "other"),
            Some(9.0),
            "7 users past the bound, the long one, the empty one"
        );
        let mut counts = PatternCounts::new(
            &[pattern(
                "user",
                r"user=(?P<user>\S*)(?: role=(?P<role>\w+))?",
                &["user", "role"],
            )],
            5,
        );
        counts.line(format!("login user={}", "x".repeat(200)).as_bytes());
        counts.line(b"login user= role=x");
        let v = |user, role| {
            value(
                &counts,
                &[("pattern", "user"), ("user", user), ("role", role)],
            )
        };
        assert_eq!(v("other", "none"), Some(1.0), "too long, and no role");
        assert_eq!(v("none", "x"), Some(1.0), "empty");
    }

    #[test]
    fn invalid_utf8_is_counted_and_still_matched() {
        let mut counts = PatternCounts::new(&seed_patterns(), 10);
        counts.line(b"\xff\xfe ERROR AUTH_002 \xc3(");
        counts.line(b"AUTH_\xff01");
        assert_eq!((counts.read, counts.invalid_utf8), (0, 2));
        assert_eq!(value(&counts, &[("pattern", "error")]), Some(1.0));
        assert_eq!(
            value(&counts, &[("pattern", "auth_error"), ("code", "AUTH_002")]),
            Some(1.0)
        );
        assert_eq!(
            value(
                &counts,
                &[("pattern", "auth_error"), ("code", "AUTH_\u{fffd}01")]
            ),
            None,
            "\\d matches no invalid byte"
        );
        assert_eq!(
            value(&counts, &[("pattern", "auth_error"), ("code", "AUTH_002")]),
            Some(1.0)
        );
        // A Latin-1 byte is one U+FFFD: `.` spans it, `\S` takes it into a label, `\w` stops
        // before it.
        let mut latin1 = PatternCounts::new(
            &[
                pattern("timeout", r"ERROR.*timeout", &[]),
                pattern("word", r"word=(?P<user>\w+)", &["user"]),
                pattern("any", r"any=(?P<user>\S+)", &["user"]),
                pattern("one", r"^one=.$", &[]),
            ],
            10,
        );
        latin1.line(b"ERROR caf\xe9 timeout");
        latin1.line(b"word=ren\xe9e any=ren\xe9e");
        latin1.line(b"one=\xe9");
        latin1.line(b"one=\xf0\x9f\x98");
        latin1.line(b"one=\xe9\xe9");
        assert_eq!(value(&latin1, &[("pattern", "timeout")]), Some(1.0));
        assert_eq!(
            value(&latin1, &[("pattern", "word"), ("user", "ren")]),
            Some(1.0)
        );
        assert_eq!(
            value(&latin1, &[("pattern", "any"), ("user", "ren\u{fffd}e")]),
            Some(1.0)
        );
        assert_eq!(
            value(&latin1, &[("pattern", "one")]),
            Some(2.0),
            "one invalid byte, and a cut four-byte sequence, are one character; two are two"
        );
        assert_eq!((latin1.read, latin1.invalid_utf8), (0, 5));
        counts.too_long();
        counts.unfinished();
        let mut sink = MetricSink::default();
        counts.metrics(&mut sink);
        let lines = sink.find("log_lines_total").expect("lines");
        for (result, n) in [
            ("read", 0.0),
            ("invalid_utf8", 2.0),
            ("too_long", 1.0),
            ("unfinished", 1.0),
        ] {
            assert_eq!(lines.value(&[("result", result)]), Some(n), "{result}");
        }
    }
}
