//! Alertmanager's webhook payload, version "4": every documented field, and any field it
//! adds later kept as it came.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The only payload version Alertmanager has sent since 0.x; another is refused.
pub const VERSION: &str = "4";

/// A label or annotation set.
pub type LabelSet = BTreeMap<String, String>;

/// Firing or resolved, for a group and for each alert.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// At least one alert (of a group) is firing.
    Firing,
    /// Everything has resolved.
    Resolved,
}

impl Status {
    /// `firing` or `resolved`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Firing => "firing",
            Status::Resolved => "resolved",
        }
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One webhook notification: a group of alerts for one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    /// Always "4".
    pub version: String,
    /// `<route key>:<group labels>`, stable for the group's life.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// Alerts left out by the receiver's `max_alerts`.
    #[serde(rename = "truncatedAlerts", default)]
    pub truncated_alerts: u64,
    /// The group's status.
    pub status: Status,
    /// The Alertmanager receiver's name (regexp-quoted by Alertmanager).
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(rename = "groupLabels", default)]
    pub group_labels: LabelSet,
    /// Labels every alert shares.
    #[serde(rename = "commonLabels", default)]
    pub common_labels: LabelSet,
    /// Annotations every alert shares.
    #[serde(rename = "commonAnnotations", default)]
    pub common_annotations: LabelSet,
    /// The sending Alertmanager.
    #[serde(rename = "externalURL", default)]
    pub external_url: String,
    /// Why Alertmanager sent it (0.32 and later).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notification_reason: Option<String>,
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Fields this version does not know (`routeLabels` from 0.34, and later ones).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: Status,
    /// Its labels, `alertname` among them.
    pub labels: LabelSet,
    /// Its annotations: `summary`, `description`, `runbook_url`, ...
    #[serde(default)]
    pub annotations: LabelSet,
    /// When it started firing (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When it resolved; `0001-01-01T00:00:00Z` while firing.
    #[serde(rename = "endsAt", default)]
    pub ends_at: String,
    /// The rule's expression in the Prometheus that raised it.
    #[serde(rename = "generatorURL", default)]
    pub generator_url: String,
    /// Alertmanager's hash of the label set.
    #[serde(default)]
    pub fingerprint: String,
    /// Fields this version does not know.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

impl Alert {
    /// The `alertname` label, or an empty string.
    pub fn name(&self) -> &str {
        self.labels.get("alertname").map_or("", String::as_str)
    }

    /// The fingerprint Alertmanager sent, or one computed from the labels when it sent
    /// none (payloads from other senders).
    pub fn stable_fingerprint(&self) -> String {
        if !self.fingerprint.is_empty() {
            return self.fingerprint.clone();
        }
        let mut hash = Sha256::new();
        for (name, value) in &self.labels {
            hash.update(name.as_bytes());
            hash.update([0xff]);
            hash.update(value.as_bytes());
            hash.update([0xff]);
        }
        hex(&hash.finalize()[..8])
    }
}

/// Why a webhook body was refused; the text names the field and what is wrong.
#[derive(Debug, thiserror::Error)]
pub enum PayloadError {
    /// Not JSON, or a field of the wrong type or missing.
    #[error("{0}")]
    Invalid(String),
    /// A version other than "4".
    #[error("version: unsupported payload version {0:?}, expected \"4\"")]
    Version(String),
}

impl Notification {
    /// Parses and checks a webhook body.
    pub fn parse(body: &[u8]) -> Result<Self, PayloadError> {
        // The fast path; a body that fails is parsed again to name the field at fault.
        let notification: Notification = match serde_json::from_slice(body) {
            Ok(n) => n,
            Err(_) => return Err(Self::explain(body)),
        };
        if notification.version != VERSION {
            return Err(PayloadError::Version(notification.version));
        }
        for (index, alert) in notification.alerts.iter().enumerate() {
            if parse_rfc3339(&alert.starts_at).is_none() {
                return Err(PayloadError::Invalid(format!(
                    "alerts[{index}].startsAt: not an RFC 3339 time: {:?}",
                    alert.starts_at
                )));
            }
        }
        Ok(notification)
    }

    /// Why `body` does not parse, with the path of the field at fault.
    fn explain(body: &[u8]) -> PayloadError {
        let mut deserializer = serde_json::Deserializer::from_slice(body);
        let result: Result<Notification, _> = serde_path_to_error::deserialize(&mut deserializer);
        match result {
            Err(error) => {
                let path = error.path().to_string();
                let inner = error.into_inner();
                if path == "." {
                    PayloadError::Invalid(format!("body: {inner}"))
                } else {
                    PayloadError::Invalid(format!("{path}: {inner}"))
                }
            }
            Ok(_) => match deserializer.end() {
                Err(e) => PayloadError::Invalid(format!("body: {e}")),
                Ok(()) => PayloadError::Invalid("body: not a webhook payload".into()),
            },
        }
    }

    /// The key copies of this notification share, whichever Alertmanager replica sent it
    /// and however often: the receiver, the group, and each alert's fingerprint, status and
    /// start. Never the raw body, which differs between replicas (`externalURL`) and
    /// versions.
    pub fn dedup_key(&self) -> String {
        let mut entries: Vec<(String, Status, i128)> = self
            .alerts
            .iter()
            .map(|a| {
                (
                    a.stable_fingerprint(),
                    a.status,
                    parse_rfc3339(&a.starts_at).unwrap_or_default(),
                )
            })
            .collect();
        entries.sort();
        entries.dedup();
        let mut hash = Sha256::new();
        hash.update(b"mcpwatch-dedup-v1\0");
        hash.update(self.receiver.as_bytes());
        hash.update([0]);
        hash.update(self.group_key.as_bytes());
        hash.update([0]);
        for (fingerprint, status, starts) in &entries {
            hash.update(fingerprint.as_bytes());
            hash.update([0]);
            hash.update(status.as_str().as_bytes());
            hash.update([0]);
            hash.update(starts.to_string().as_bytes());
            hash.update([b'\n']);
        }
        hex(&hash.finalize())
    }

    /// How many alerts fire.
    pub fn firing_count(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .count()
    }

    /// A sample notification, for `send-test` and for checking templates.
    pub fn sample() -> Self {
        let now = crate::time::now_rfc3339();
        let alert = |name: &str, severity: &str, instance: &str, status: Status| Alert {
            status,
            labels: [
                ("alertname", name),
                ("severity", severity),
                ("instance", instance),
                ("job", "mcpwatch"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            annotations: [
                (
                    "summary",
                    "This is a test notification from mcpwatch-notifier.",
                ),
                (
                    "description",
                    "Sent by `mcpwatch-notifier send-test` to check this channel end to end.",
                ),
                ("runbook_url", "https://example.com/runbooks#test"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
            starts_at: now.clone(),
            ends_at: "0001-01-01T00:00:00Z".to_owned(),
            generator_url: "http://prometheus.example.com/graph".to_owned(),
            fingerprint: String::new(),
            extra: Map::new(),
        };
        let alerts = vec![
            alert(
                "McpwatchTestNotification",
                "warning",
                "mcp-1:3001",
                Status::Firing,
            ),
            alert(
                "McpwatchTestNotification",
                "warning",
                "mcp-2:3001",
                Status::Resolved,
            ),
        ];
        let labels = |pairs: &[(&str, &str)]| -> LabelSet {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        Notification {
            version: VERSION.to_owned(),
            group_key: format!("{{}}:{{alertname=\"McpwatchTestNotification\",sent=\"{now}\"}}"),
            truncated_alerts: 0,
            status: Status::Firing,
            receiver: "mcpwatch-test".to_owned(),
            group_labels: labels(&[("alertname", "McpwatchTestNotification")]),
            common_labels: labels(&[
                ("alertname", "McpwatchTestNotification"),
                ("job", "mcpwatch"),
                ("severity", "warning"),
            ]),
            common_annotations: labels(&[(
                "summary",
                "This is a test notification from mcpwatch-notifier.",
            )]),
            external_url: "http://alertmanager.example.com".to_owned(),
            notification_reason: Some("first notification".to_owned()),
            alerts,
            extra: Map::new(),
        }
    }
}

/// Lower-case hexadecimal.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// An RFC 3339 time (any offset, any fraction) as nanoseconds since the Unix epoch.
pub fn parse_rfc3339(text: &str) -> Option<i128> {
    let b = text.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let s = text.get(range)?;
        s.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| s.parse().ok())?
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) || hour > 23 || minute > 59 {
        return None;
    }
    if second > 60 {
        return None;
    }
    let mut rest = &text[19..];
    let mut nanos: i128 = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let digits = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if digits == 0 {
            return None;
        }
        let mut value: i128 = 0;
        for (i, c) in fraction.bytes().take(digits).enumerate() {
            if i < 9 {
                value = value * 10 + i128::from(c - b'0');
            }
        }
        for _ in digits..9 {
            value *= 10;
        }
        nanos = value;
        rest = &fraction[digits..];
    }
    let offset_seconds: i64 = match rest {
        "Z" | "z" => 0,
        _ => {
            let sign = match rest.as_bytes().first() {
                Some(b'+') => 1,
                Some(b'-') => -1,
                _ => return None,
            };
            let (h, m) = rest[1..].split_once(':')?;
            if h.len() != 2 || m.len() != 2 {
                return None;
            }
            sign * (h.parse::<i64>().ok()? * 3600 + m.parse::<i64>().ok()? * 60)
        }
    };
    let days = days_from_civil(year, month, day);
    let seconds = days * 86_400 + hour * 3600 + minute * 60 + second - offset_seconds;
    Some(i128::from(seconds) * 1_000_000_000 + nanos)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{
      "receiver": "web\\.hook",
      "status": "firing",
      "alerts": [
        {"status": "firing", "labels": {"alertname": "WsDaemonDown", "instance": "mcp-1:3001", "severity": "critical"},
         "annotations": {"summary": "The MCP daemon is down."},
         "startsAt": "2026-11-22T10:00:00.123456789+01:00", "endsAt": "0001-01-01T00:00:00Z",
         "generatorURL": "http://prom/graph", "fingerprint": "8a07086b74f3ba78", "futureAlertField": [1]}
      ],
      "groupLabels": {"alertname": "WsDaemonDown"},
      "commonLabels": {"alertname": "WsDaemonDown"},
      "commonAnnotations": {},
      "externalURL": "http://am-1:9093",
      "version": "4",
      "groupKey": "{}:{alertname=\"WsDaemonDown\"}",
      "truncatedAlerts": 0,
      "notification_reason": "first notification",
      "routeLabels": {"team": "mcp"}
    }"#;

    #[test]
    fn parses_every_field_and_keeps_unknown_ones() {
        let n = Notification::parse(BODY.as_bytes()).expect("parse");
        assert_eq!(n.receiver, "web\\.hook");
        assert_eq!(n.alerts[0].fingerprint, "8a07086b74f3ba78");
        assert_eq!(n.notification_reason.as_deref(), Some("first notification"));
        assert_eq!(n.extra["routeLabels"]["team"], "mcp");
        assert_eq!(n.alerts[0].extra["futureAlertField"][0], 1);
        let round: Value = serde_json::to_value(&n).expect("serialize");
        assert_eq!(round["routeLabels"]["team"], "mcp");
        assert_eq!(round["groupKey"], "{}:{alertname=\"WsDaemonDown\"}");
    }

    #[test]
    fn errors_name_the_field() {
        let bad = BODY.replace(
            r#""status": "firing", "labels""#,
            r#""status": "fired", "labels""#,
        );
        let error = Notification::parse(bad.as_bytes()).expect_err("bad status");
        assert!(
            error
                .to_string()
                .starts_with("alerts[0].status: unknown variant `fired`")
        );
        let missing = BODY.replace(r#""groupKey""#, r#""groupkey""#);
        let error = Notification::parse(missing.as_bytes()).expect_err("missing");
        assert!(
            error.to_string().contains("missing field `groupKey`"),
            "{error}"
        );
        let version = BODY.replace(r#""version": "4""#, r#""version": "3""#);
        assert!(matches!(
            Notification::parse(version.as_bytes()),
            Err(PayloadError::Version(v)) if v == "3"
        ));
        let error = Notification::parse(b"{\"version\": ").expect_err("truncated");
        assert!(error.to_string().contains("EOF while parsing"), "{error}");
        let time = BODY.replace("2026-11-22T10:00:00.123456789+01:00", "yesterday");
        let error = Notification::parse(time.as_bytes()).expect_err("time");
        assert!(
            error.to_string().starts_with("alerts[0].startsAt"),
            "{error}"
        );
    }

    #[test]
    fn dedup_key_ignores_what_differs_between_copies() {
        let a = Notification::parse(BODY.as_bytes()).expect("parse");
        let mut b = a.clone();
        b.external_url = "http://am-2:9093".to_owned();
        b.notification_reason = None;
        b.extra.clear();
        b.alerts[0].starts_at = "2026-11-22T09:00:00.123456789Z".to_owned();
        assert_eq!(a.dedup_key(), b.dedup_key());
        let mut resolved = a.clone();
        resolved.alerts[0].status = Status::Resolved;
        assert_ne!(a.dedup_key(), resolved.dedup_key());
        let mut refired = a.clone();
        refired.alerts[0].starts_at = "2026-11-22T11:00:00Z".to_owned();
        assert_ne!(a.dedup_key(), refired.dedup_key());
        let mut other_receiver = a.clone();
        other_receiver.receiver = "pager".to_owned();
        assert_ne!(a.dedup_key(), other_receiver.dedup_key());
    }

    #[test]
    fn rfc3339_times() {
        assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(
            parse_rfc3339("2026-11-22T10:00:00.5+01:00"),
            Some(1_795_338_000 * 1_000_000_000 + 500_000_000)
        );
        assert_eq!(
            parse_rfc3339("0001-01-01T00:00:00Z"),
            Some(-62_135_596_800 * 1_000_000_000)
        );
        assert_eq!(parse_rfc3339("2026-13-01T00:00:00Z"), None);
        assert_eq!(parse_rfc3339("2026-11-22 10:00"), None);
    }
}
