//! Reading values out of a text exposition, and the check every scrape of the suite goes
//! through: no series twice.

use std::collections::HashMap;

/// The value of the sample written exactly as `series` (name and labels as the exporter
/// writes them) in a classic text exposition.
pub fn value_of(exposition: &str, series: &str) -> Option<f64> {
    exposition.lines().find_map(|line| {
        line.strip_prefix(series)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// The `_count` series of `mcp_server_operation_duration_seconds` as the MCP metrics write
/// it: `target` first when the series comes from a configured target (a request log), then
/// the method, the tool, the error type (absent on success) and the revision.
pub fn operation_count_series(
    target: Option<&str>,
    method: &str,
    tool: Option<&str>,
    error: Option<&str>,
    version: &str,
) -> String {
    let mut labels = Vec::new();
    if let Some(target) = target {
        labels.push(format!("target=\"{target}\""));
    }
    labels.push(format!("mcp_method_name=\"{method}\""));
    if let Some(tool) = tool {
        labels.push(format!("gen_ai_tool_name=\"{tool}\""));
    }
    if let Some(error) = error {
        labels.push(format!("error_type=\"{error}\""));
    }
    labels.push(format!("mcp_protocol_version=\"{version}\""));
    format!(
        "mcp_server_operation_duration_seconds_count{{{}}}",
        labels.join(",")
    )
}

/// A series' identity: its name and its labels, sorted by label name, values unescaped.
type SeriesKey = (String, Vec<(String, String)>);

/// Reads the name and labels of a sample line (classic text or OpenMetrics); `None` for
/// comments, blank lines and lines that are not samples.
fn series_key(line: &str) -> Option<Result<SeriesKey, String>> {
    if line.is_empty() || line.starts_with('#') {
        return None;
    }
    let end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = line[..end].to_owned();
    let mut labels = Vec::new();
    let mut rest = &line[end..];
    if let Some(body) = rest.strip_prefix('{') {
        let mut chars = body.char_indices().peekable();
        loop {
            // Label name, up to '=' (or the closing brace of an empty or trailing set).
            let mut label = String::new();
            let close = loop {
                match chars.next() {
                    Some((i, '}')) if label.is_empty() => break Some(i),
                    Some((_, '=')) => break None,
                    Some((_, ',')) if label.is_empty() => {}
                    Some((_, c)) => label.push(c),
                    None => return Some(Err(format!("unterminated labels: {line}"))),
                }
            };
            if let Some(i) = close {
                rest = &body[i + 1..];
                break;
            }
            if chars.next().map(|(_, c)| c) != Some('"') {
                return Some(Err(format!("label {label} has no quoted value: {line}")));
            }
            let mut value = String::new();
            loop {
                match chars.next() {
                    Some((_, '\\')) => match chars.next() {
                        Some((_, 'n')) => value.push('\n'),
                        Some((_, c)) => value.push(c),
                        None => return Some(Err(format!("bad escape: {line}"))),
                    },
                    Some((_, '"')) => break,
                    Some((_, c)) => value.push(c),
                    None => return Some(Err(format!("unterminated value: {line}"))),
                }
            }
            labels.push((label, value));
        }
    }
    if !rest.starts_with(' ') {
        return Some(Err(format!("no value after the series: {line}")));
    }
    labels.sort();
    Some(Ok((name, labels)))
}

/// Every series (name and label set) written more than once in an exposition, with how
/// often; and the lines that could not be read as samples.
pub fn duplicate_series(exposition: &str) -> Vec<String> {
    let mut seen: HashMap<SeriesKey, usize> = HashMap::new();
    let mut problems = Vec::new();
    for line in exposition.lines() {
        match series_key(line) {
            None => {}
            Some(Ok(key)) => *seen.entry(key).or_default() += 1,
            Some(Err(problem)) => problems.push(problem),
        }
    }
    let mut duplicates: Vec<String> = seen
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|((name, labels), count)| {
            let labels: Vec<String> = labels.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
            format!("{name}{{{}}} written {count} times", labels.join(","))
        })
        .collect();
    duplicates.sort();
    problems.extend(duplicates);
    problems
}

/// Fails when an exposition holds a series twice (Prometheus drops such samples and counts
/// them in `prometheus_target_scrapes_sample_duplicate_timestamp_total`) or a line that is
/// not a sample. Every scrape the end-to-end tests make goes through it, and it returns
/// the exposition for the test to read.
///
/// # Panics
/// Naming every duplicate.
#[track_caller]
pub fn checked(exposition: String) -> String {
    let problems = duplicate_series(&exposition);
    assert!(
        problems.is_empty(),
        "the exposition has duplicate series:\n{}",
        problems.join("\n")
    );
    exposition
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_whole_series_only() {
        let text = "# TYPE a gauge\na 1\na_b 2\na{x=\"y\"} 3\n";
        assert_eq!(value_of(text, "a"), Some(1.0));
        assert_eq!(value_of(text, "a_b"), Some(2.0));
        assert_eq!(value_of(text, "a{x=\"y\"}"), Some(3.0));
        assert_eq!(value_of(text, "b"), None);
    }

    #[test]
    fn duplicates_are_found_whatever_the_label_order() {
        let text = "# TYPE q info\nq_info{a=\"1\",b=\"x,y\"} 1\nq_info{b=\"x,y\",a=\"1\"} 1\n\
                    q_info{a=\"1\",b=\"x\"} 1\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 2\n\
                    up 1\nup 0\ne{v=\"say \\\"hi\\\"\"} 1\ne{v=\"say \\\"hi\\\"\"} 1\n# EOF\n";
        assert_eq!(
            duplicate_series(text),
            [
                "e{v=\"say \\\"hi\\\"\"} written 2 times",
                "q_info{a=\"1\",b=\"x,y\"} written 2 times",
                "up{} written 2 times",
            ]
        );
        let unique = "a{x=\"1\"} 1\na{x=\"2\"} 1\na 1\nb{x=\"1\"} 1\nc{} 1\n";
        assert!(duplicate_series(unique).is_empty());
        assert_eq!(duplicate_series("a{x=1} 1\n").len(), 1, "unquoted value");
        assert_eq!(duplicate_series("a{x=\"1\"\n").len(), 1, "unterminated");
    }
}
