//! The health file a daemon rewrites (`logs/ws_daemon.health.json`): its age, whether it
//! parses, and its values through the same mapping as the endpoint's, labelled
//! `source="file"`. A missing, stale or half-written file shows as such and fails nothing;
//! a stale file is not known to be healthy (`wsdaemon_healthy{source="file"} 0`), whatever
//! it last said.

use std::io::Read;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpwatch_core::MetricSink;
use serde_json::Value;

use crate::config::WsDaemonConfig;
use crate::mapping::map_health;

/// A health file larger than this is not read whole, and counts as unparsable.
const SIZE_LIMIT: u64 = 1 << 20;

/// What reading the health file found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FileState {
    Missing,
    Unparsable,
    Stale,
    Fresh,
}

/// Reads the health file at `path` into `sink`.
pub(crate) fn read(path: &Path, config: &WsDaemonConfig, sink: &mut MetricSink) -> FileState {
    let (state, modified) = match load(path) {
        Err(error) => {
            if error.kind() != std::io::ErrorKind::NotFound {
                tracing::debug!(path = %path.display(), %error, "Health file not readable.");
            }
            (FileState::Missing, None)
        }
        Ok((modified, json)) => {
            // A file written "in the future" (a clock set wrong, on the daemon's host or
            // this one) by more than the limit cannot be told fresh either.
            let (age, ahead) = match SystemTime::now().duration_since(modified) {
                Ok(age) => (age, Duration::ZERO),
                Err(early) => (Duration::ZERO, early.duration()),
            };
            let stale = age.max(ahead) > config.health_file_max_age;
            let state = match json {
                None => FileState::Unparsable,
                Some(json) => {
                    let mut values = MetricSink::default();
                    map_health(&json, "file", config, &mut values);
                    let state = if stale {
                        FileState::Stale
                    } else {
                        FileState::Fresh
                    };
                    if state == FileState::Stale {
                        // What a stale file says may no longer hold: healthy is not known.
                        if let Some(healthy) = values.find_mut("wsdaemon_healthy") {
                            healthy.set_all(0.0);
                        }
                    }
                    sink.append(values);
                    state
                }
            };
            (state, Some((modified, age, stale)))
        }
    };
    let flag = |on: bool| if on { 1.0 } else { 0.0 };
    sink.gauge(
        "wsdaemon_health_file_present",
        "Whether the daemon's health file exists and can be read.",
    )
    .add(&[], flag(state != FileState::Missing));
    sink.gauge(
        "wsdaemon_health_file_parse_error",
        "Whether the health file is not a JSON object (truncated, half-written, too large).",
    )
    .add(&[], flag(state == FileState::Unparsable));
    sink.gauge(
        "wsdaemon_health_file_stale",
        "Whether the health file is missing or older than health_file_max_age.",
    )
    .add(
        &[],
        flag(
            matches!(state, FileState::Missing | FileState::Stale)
                || modified.is_some_and(|(_, _, stale)| stale),
        ),
    );
    if let Some((modified, age, _)) = modified {
        sink.gauge(
            "wsdaemon_health_file_mtime_seconds",
            "When the health file was last written, in seconds since the epoch.",
        )
        .add(
            &[],
            modified
                .duration_since(UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        );
        sink.gauge(
            "wsdaemon_health_file_age_seconds",
            "Seconds since the health file was last written.",
        )
        .add(&[], age.as_secs_f64());
    }
    state
}

/// The file's modification time and, when it is a JSON object, its contents.
fn load(path: &Path) -> std::io::Result<(SystemTime, Option<Value>)> {
    let file = std::fs::File::open(path)?;
    let modified = file.metadata()?.modified()?;
    let mut text = Vec::new();
    file.take(SIZE_LIMIT + 1).read_to_end(&mut text)?;
    if text.len() as u64 > SIZE_LIMIT {
        return Ok((modified, None));
    }
    Ok((
        modified,
        serde_json::from_slice::<Value>(&text)
            .ok()
            .filter(Value::is_object),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;

    fn value(sink: &MetricSink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sink.find(name).and_then(|f| f.value(labels))
    }

    /// A target with the health file at `path` and a one-minute age limit.
    fn config(path: &Path) -> WsDaemonConfig {
        parse_yaml(
            &format!(
                "name: d\nhealth_file: {}\nhealth_file_max_age: 1m\n",
                path.display()
            ),
            Path::new("c.yml"),
        )
        .expect("config")
    }

    /// Dates the file at `path` to `when`.
    fn set_mtime(path: &Path, when: SystemTime) {
        std::fs::File::options()
            .write(true)
            .open(path)
            .and_then(|f| f.set_modified(when))
            .expect("set mtime");
    }

    #[test]
    fn fresh_truncated_stale_and_missing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ws_daemon.health.json");
        let config = config(&path);

        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Missing);
        assert_eq!(value(&sink, "wsdaemon_health_file_present", &[]), Some(0.0));
        assert_eq!(value(&sink, "wsdaemon_health_file_stale", &[]), Some(1.0));
        assert!(sink.find("wsdaemon_health_file_age_seconds").is_none());

        std::fs::write(&path, r#"{"status":"healthy","sessions":3}"#).expect("write");
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Fresh);
        assert_eq!(
            value(&sink, "wsdaemon_sessions", &[("source", "file")]),
            Some(3.0)
        );
        assert_eq!(
            value(&sink, "wsdaemon_health_file_parse_error", &[]),
            Some(0.0)
        );
        assert_eq!(value(&sink, "wsdaemon_health_file_stale", &[]), Some(0.0));
        let age = value(&sink, "wsdaemon_health_file_age_seconds", &[]).expect("age");
        assert!((0.0..60.0).contains(&age), "{age}");

        std::fs::write(&path, r#"{"status":"healthy","sess"#).expect("write");
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Unparsable);
        assert_eq!(
            value(&sink, "wsdaemon_health_file_parse_error", &[]),
            Some(1.0)
        );
        assert!(sink.find("wsdaemon_sessions").is_none());

        std::fs::write(&path, r#"{"status":"healthy"}"#).expect("write");
        set_mtime(&path, SystemTime::now() - Duration::from_secs(600));
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Stale);
        assert_eq!(value(&sink, "wsdaemon_health_file_stale", &[]), Some(1.0));
        let age = value(&sink, "wsdaemon_health_file_age_seconds", &[]).expect("age");
        assert!(age >= 600.0, "{age}");
    }

    #[test]
    fn a_stale_file_is_not_known_to_be_healthy() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("ws_daemon.health.json");
        let config = config(&path);
        let file = [("source", "file")];
        let age = |seconds: u64| set_mtime(&path, SystemTime::now() - Duration::from_secs(seconds));
        std::fs::write(&path, r#"{"status":"healthy","sessions":3}"#).expect("write");

        // Within the limit: what the file says.
        age(50);
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Fresh);
        assert_eq!(value(&sink, "wsdaemon_healthy", &file), Some(1.0));

        // Past it: not known to be healthy; the rest is still shown as last written.
        age(70);
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Stale);
        assert_eq!(value(&sink, "wsdaemon_health_file_stale", &[]), Some(1.0));
        assert_eq!(value(&sink, "wsdaemon_healthy", &file), Some(0.0));
        assert_eq!(
            value(&sink, "wsdaemon_status", &[file[0], ("status", "healthy")]),
            Some(1.0)
        );
        assert_eq!(value(&sink, "wsdaemon_sessions", &file), Some(3.0));

        // Rewritten: healthy again.
        std::fs::write(&path, r#"{"status":"healthy","sessions":3}"#).expect("write");
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Fresh);
        assert_eq!(value(&sink, "wsdaemon_healthy", &file), Some(1.0));

        // Written "in the future": a little is clock skew, more than the limit is stale.
        let ahead =
            |seconds: u64| set_mtime(&path, SystemTime::now() + Duration::from_secs(seconds));
        ahead(30);
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Fresh);
        assert_eq!(
            value(&sink, "wsdaemon_health_file_age_seconds", &[]),
            Some(0.0)
        );
        ahead(50 * 365 * 86_400);
        let mut sink = MetricSink::default();
        assert_eq!(read(&path, &config, &mut sink), FileState::Stale);
        assert_eq!(value(&sink, "wsdaemon_health_file_stale", &[]), Some(1.0));
        assert_eq!(value(&sink, "wsdaemon_healthy", &file), Some(0.0));
    }
}
