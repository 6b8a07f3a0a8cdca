//! Alertmanager's webhook payload, version "4": every documented field, and any field it
//! adds later kept as it came.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// The only payload version Alertmanager has sent since 0.x; another is refused.
pub const VERSION: &str = "4";

/// A label or annotation set.
pub type LabelSet = BTreeMap<String, String>;

/// Labels looked up by name: an owned [`LabelSet`] or the borrowed ones of [`Incoming`].
pub trait Labels {
    /// The value of label `name`.
    fn label(&self, name: &str) -> Option<&str>;
    /// Every label, sorted by name.
    fn sorted(&self) -> impl Iterator<Item = (&str, &str)>;
}

impl Labels for LabelSet {
    fn label(&self, name: &str) -> Option<&str> {
        self.get(name).map(String::as_str)
    }
    fn sorted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }
}

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
///
/// Deserialized by hand (below) rather than with `#[serde(flatten)]`, which buffers every
/// field before sorting them out and made parsing several times slower.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// Always "4".
    pub version: String,
    /// `<route key>:<group labels>`, stable for the group's life.
    #[serde(rename = "groupKey")]
    pub group_key: String,
    /// Alerts left out by the receiver's `max_alerts`.
    #[serde(rename = "truncatedAlerts")]
    pub truncated_alerts: u64,
    /// The group's status.
    pub status: Status,
    /// The Alertmanager receiver's name (regexp-quoted by Alertmanager).
    pub receiver: String,
    /// The labels the group is grouped by.
    #[serde(rename = "groupLabels")]
    pub group_labels: LabelSet,
    /// Labels every alert shares.
    #[serde(rename = "commonLabels")]
    pub common_labels: LabelSet,
    /// Annotations every alert shares.
    #[serde(rename = "commonAnnotations")]
    pub common_annotations: LabelSet,
    /// The sending Alertmanager.
    #[serde(rename = "externalURL")]
    pub external_url: String,
    /// Why Alertmanager sent it (0.32 and later).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notification_reason: Option<String>,
    /// The alerts.
    pub alerts: Vec<Alert>,
    /// Fields this version does not know (`routeLabels` from 0.34, and later ones).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// One alert of a notification.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alert {
    /// `firing` or `resolved`.
    pub status: Status,
    /// Its labels, `alertname` among them.
    pub labels: LabelSet,
    /// Its annotations: `summary`, `description`, `runbook_url`, ...
    pub annotations: LabelSet,
    /// When it started firing (RFC 3339).
    #[serde(rename = "startsAt")]
    pub starts_at: String,
    /// When it resolved; `0001-01-01T00:00:00Z` while firing.
    #[serde(rename = "endsAt")]
    pub ends_at: String,
    /// The rule's expression in the Prometheus that raised it.
    #[serde(rename = "generatorURL")]
    pub generator_url: String,
    /// Alertmanager's hash of the label set.
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
    pub fn stable_fingerprint(&self) -> Cow<'_, str> {
        fingerprint(&self.fingerprint, &self.labels)
    }
}

/// What copies of one notification share: a SHA-256 (see [`Notification::dedup_key`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct DedupKey(pub [u8; 32]);

impl fmt::Display for DedupKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

/// Who sent a copy, as a number: its Alertmanager's external URL, the address it came from
/// and the URL it posted to (an Alertmanager receiver may list one URL per notifier
/// replica). Copies of one notification from two senders are replicas' copies; a sender's
/// second copy after it was answered is a new sending (a reminder).
pub fn sender(external_url: &str, peer: Option<std::net::IpAddr>, target: &str) -> i64 {
    let peer = peer.map(|p| p.to_string()).unwrap_or_default();
    number(&[external_url, &peer, target])
}

/// A number for these texts, the same in every process and release (the first 8 bytes of
/// their SHA-256, each text ended by a byte no UTF-8 text holds, so that "ab" + "c" and
/// "a" + "bc" differ).
pub(crate) fn number(parts: &[&str]) -> i64 {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0xff]);
    }
    let digest = hash.finalize();
    let mut first = [0_u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_le_bytes(first)
}

/// `sent`, or a hash of `labels` when it is empty.
fn fingerprint<'a>(sent: &'a str, labels: &impl Labels) -> Cow<'a, str> {
    if !sent.is_empty() {
        return Cow::Borrowed(sent);
    }
    let mut hash = Sha256::new();
    for (name, value) in labels.sorted() {
        hash.update(name.as_bytes());
        hash.update([0xff]);
        hash.update(value.as_bytes());
        hash.update([0xff]);
    }
    Cow::Owned(hex(&hash.finalize()[..8]))
}

/// The key copies of a notification share, whichever Alertmanager replica sent it and
/// however often: the receiver, the group, and each alert's fingerprint, status and start.
/// Never the raw body, which differs between replicas (`externalURL`) and versions.
fn dedup_key<'a>(
    receiver: &str,
    group_key: &str,
    alerts: impl Iterator<Item = (Cow<'a, str>, Status, &'a str)>,
) -> DedupKey {
    let mut entries: Vec<(Cow<'a, str>, Status, i128)> = alerts
        .map(|(fingerprint, status, starts_at)| {
            (
                fingerprint,
                status,
                parse_rfc3339(starts_at).unwrap_or_default(),
            )
        })
        .collect();
    entries.sort();
    entries.dedup();
    let mut hash = Sha256::new();
    hash.update(b"mcpwatch-dedup-v1\0");
    hash.update(receiver.as_bytes());
    hash.update([0]);
    hash.update(group_key.as_bytes());
    hash.update([0]);
    let mut digits = itoa::Buffer::new();
    for (fingerprint, status, starts) in &entries {
        hash.update(fingerprint.as_bytes());
        hash.update([0]);
        hash.update(status.as_str().as_bytes());
        hash.update([0]);
        hash.update(digits.format(*starts).as_bytes());
        hash.update([b'\n']);
    }
    DedupKey(hash.finalize().into())
}

/// The checks beyond JSON types: the version, and start times that are times.
fn check<'s>(version: &str, starts: impl Iterator<Item = &'s str>) -> Result<(), PayloadError> {
    if version != VERSION {
        return Err(PayloadError::Version(version.to_owned()));
    }
    let mut starts = starts.peekable();
    if starts.peek().is_none() {
        return Err(PayloadError::Invalid(
            "alerts: empty; Alertmanager never sends a notification without alerts".to_owned(),
        ));
    }
    for (index, starts_at) in starts.enumerate() {
        if parse_rfc3339(starts_at).is_none() {
            return Err(PayloadError::Invalid(format!(
                "alerts[{index}].startsAt: not an RFC 3339 time: {starts_at:?}"
            )));
        }
    }
    Ok(())
}

/// A string borrowed from the body when it has no escapes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Text<'a>(pub Cow<'a, str>);

impl<'de> Deserialize<'de> for Text<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Text<'de>, E> {
                Ok(Text(v.into()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Text<'de>, E> {
                Ok(Text(v.to_owned().into()))
            }
        }
        deserializer.deserialize_str(Visitor)
    }
}

/// A label set borrowed from the body: sorted by name, the last of a repeated name kept
/// (as a [`LabelSet`] keeps it).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelView<'a>(Vec<(Cow<'a, str>, Cow<'a, str>)>);

impl<'de> Deserialize<'de> for LabelView<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> de::Visitor<'de> for Visitor {
            type Value = LabelView<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<LabelView<'de>, A::Error> {
                let mut pairs = Vec::with_capacity(map.size_hint().unwrap_or(8));
                while let Some((Text(name), Text(value))) =
                    map.next_entry::<Text<'de>, Text<'de>>()?
                {
                    pairs.push((name, value));
                }
                // Stable: among equal names the last comes last, and is the one kept.
                pairs.sort_by(|a: &(Cow<'_, str>, _), b| a.0.cmp(&b.0));
                let mut kept: Vec<(Cow<'de, str>, Cow<'de, str>)> = Vec::with_capacity(pairs.len());
                for pair in pairs {
                    match kept.last_mut() {
                        Some(last) if last.0 == pair.0 => *last = pair,
                        _ => kept.push(pair),
                    }
                }
                Ok(LabelView(kept))
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

impl Labels for LabelView<'_> {
    fn label(&self, name: &str) -> Option<&str> {
        self.0
            .binary_search_by(|(n, _)| n.as_ref().cmp(name))
            .ok()
            .map(|i| self.0[i].1.as_ref())
    }
    fn sorted(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_ref(), v.as_ref()))
    }
}

/// A webhook body as the receiver needs it to store and route it: checked exactly as
/// [`Notification`] is (a body one accepts, the other accepts), but borrowing its strings
/// from the body and skipping fields it does not know, which are stored with the body.
#[derive(Debug, Clone, PartialEq)]
pub struct Incoming<'a> {
    version: Text<'a>,
    group_key: Text<'a>,
    truncated_alerts: u64,
    status: Status,
    receiver: Text<'a>,
    group_labels: LabelView<'a>,
    common_labels: LabelView<'a>,
    common_annotations: LabelView<'a>,
    external_url: Text<'a>,
    notification_reason: Option<Text<'a>>,
    alerts: Vec<IncomingAlert<'a>>,
}

/// One alert of an [`Incoming`] body.
#[derive(Debug, Clone, PartialEq)]
pub struct IncomingAlert<'a> {
    /// `firing` or `resolved`.
    pub status: Status,
    /// Its labels.
    pub labels: LabelView<'a>,
    annotations: LabelView<'a>,
    starts_at: Text<'a>,
    ends_at: Text<'a>,
    generator_url: Text<'a>,
    fingerprint: Text<'a>,
}

impl<'a> Incoming<'a> {
    /// Parses and checks a webhook body, as [`Notification::parse`] does.
    pub fn parse(body: &'a str) -> Result<Self, PayloadError> {
        let incoming: Incoming<'a> = match serde_json::from_str(body) {
            Ok(n) => n,
            Err(_) => return Err(Notification::explain(body.as_bytes())),
        };
        check(
            &incoming.version.0,
            incoming.alerts.iter().map(|a| a.starts_at.0.as_ref()),
        )?;
        Ok(incoming)
    }

    /// The Alertmanager receiver's name.
    pub fn receiver(&self) -> &str {
        &self.receiver.0
    }

    /// The sending Alertmanager's external URL.
    pub fn external_url(&self) -> &str {
        &self.external_url.0
    }

    /// The group key.
    pub fn group_key(&self) -> &str {
        &self.group_key.0
    }

    /// The group's status.
    pub fn status(&self) -> Status {
        self.status
    }

    /// The alerts.
    pub fn alerts(&self) -> &[IncomingAlert<'a>] {
        &self.alerts
    }

    /// The same key as [`Notification::dedup_key`] of the same body.
    pub fn dedup_key(&self) -> DedupKey {
        dedup_key(
            &self.receiver.0,
            &self.group_key.0,
            self.alerts.iter().map(|a| {
                (
                    fingerprint(&a.fingerprint.0, &a.labels),
                    a.status,
                    a.starts_at.0.as_ref(),
                )
            }),
        )
    }
}

/// A struct's `Deserialize` from a JSON object: the named fields (`required` ones missing
/// are an error naming them, `default` ones fall back to their default), a repeated field
/// refused, and every other key either kept in the struct's `extra` as it came (`keep`) or
/// skipped (`skip`).
macro_rules! deserialize_object {
    ($ty:ty, $ctor:ident, $expecting:expr, $unknown:ident, $level:expr,
     { $($field:ident: $name:literal $kind:ident),* $(,)? }) => {
        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                struct Visitor;
                impl<'de> de::Visitor<'de> for Visitor {
                    type Value = $ty;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$ty, A::Error> {
                        $(let mut $field = None;)*
                        deserialize_object!(@declare $unknown, extra);
                        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
                            match key.as_ref() {
                                $($name => {
                                    if $field.is_some() {
                                        return Err(de::Error::duplicate_field($name));
                                    }
                                    $field = Some(map.next_value()?);
                                })*
                                _ => deserialize_object!(@unknown $unknown, map, extra, key, $level),
                            }
                        }
                        Ok(deserialize_object!(@build $unknown, $ctor, extra, {
                            $($field: deserialize_object!(@value $kind, $field, $name),)*
                        }))
                    }
                }
                deserializer.deserialize_map(Visitor)
            }
        }
    };
    (@declare keep, $extra:ident) => {
        let mut $extra = Map::new();
    };
    (@declare skip, $extra:ident) => {};
    (@unknown keep, $map:ident, $extra:ident, $key:ident, $level:expr) => {{
        let value: Value = $map.next_value_seed(UnknownValue { level: $level })?;
        $extra.insert($key.into_owned(), value);
    }};
    // Read as delivery reads it, so that a body accepted here is one delivery can parse.
    (@unknown skip, $map:ident, $extra:ident, $key:ident, $level:expr) => {{
        $map.next_value_seed(UnknownValue { level: $level })?;
    }};
    (@build keep, $ctor:ident, $extra:ident, { $($body:tt)* }) => {
        $ctor { $($body)* extra: $extra }
    };
    (@build skip, $ctor:ident, $extra:ident, { $($body:tt)* }) => {
        $ctor { $($body)* }
    };
    (@value required, $field:ident, $name:literal) => {
        $field.ok_or_else(|| de::Error::missing_field($name))?
    };
    (@value default, $field:ident, $name:literal) => {
        $field.unwrap_or_default()
    };
}

/// Calls `$m!(args, { fields })` with the fields of a notification: one list for the
/// owned and the borrowed type, so that they check the same body the same way.
macro_rules! notification_fields {
    ($m:ident!($($args:tt)*)) => {
        $m!($($args)* {
            version: "version" required,
            group_key: "groupKey" required,
            truncated_alerts: "truncatedAlerts" default,
            status: "status" required,
            receiver: "receiver" required,
            group_labels: "groupLabels" default,
            common_labels: "commonLabels" default,
            common_annotations: "commonAnnotations" default,
            external_url: "externalURL" default,
            notification_reason: "notification_reason" default,
            alerts: "alerts" required,
        });
    };
}

/// The same for an alert.
macro_rules! alert_fields {
    ($m:ident!($($args:tt)*)) => {
        $m!($($args)* {
            status: "status" required,
            labels: "labels" required,
            annotations: "annotations" default,
            starts_at: "startsAt" required,
            ends_at: "endsAt" default,
            generator_url: "generatorURL" default,
            fingerprint: "fingerprint" default,
        });
    };
}

const NOTIFICATION: &str = "an Alertmanager webhook payload (an object)";
const ALERT: &str = "an alert (an object)";

// The levels of the values of each object's fields: the body is level 1, an alert (in
// the `alerts` array, level 2) level 3.
notification_fields!(deserialize_object!(
    Notification,
    Notification,
    NOTIFICATION,
    keep,
    2,
));
notification_fields!(deserialize_object!(
    Incoming<'de>,
    Incoming,
    NOTIFICATION,
    skip,
    2,
));
alert_fields!(deserialize_object!(Alert, Alert, ALERT, keep, 4,));
alert_fields!(deserialize_object!(
    IncomingAlert<'de>,
    IncomingAlert,
    ALERT,
    skip,
    4,
));

/// How deep a body's JSON may nest, the body itself being level 1. Alertmanager's own
/// fields reach level 4; only fields this version does not know go deeper. Well under
/// `serde_json`'s recursion limit (127 levels), so that this check, named in the error,
/// is the one a body meets, and so that a channel may wrap the payload in a few levels
/// of its own and still be read by a receiver with that limit.
pub const MAX_DEPTH: usize = 64;

/// The value of a field this version does not know, at nesting `level`: read by intake
/// and by delivery alike, so that both refuse the same bodies.
struct UnknownValue {
    level: usize,
}

impl<'de> de::DeserializeSeed<'de> for UnknownValue {
    type Value = Value;
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl UnknownValue {
    /// The seed of an array's element or an object's value; an error once this level is
    /// a container beyond [`MAX_DEPTH`].
    fn inner<E: de::Error>(&self) -> Result<UnknownValue, E> {
        if self.level > MAX_DEPTH {
            return Err(E::custom(format_args!(
                "JSON nested too deep: level {} is beyond the limit of {MAX_DEPTH} levels",
                self.level
            )));
        }
        Ok(UnknownValue {
            level: self.level + 1,
        })
    }
}

impl<'de> de::Visitor<'de> for UnknownValue {
    type Value = Value;
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        de::DeserializeSeed::deserialize(self, deserializer)
    }
    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut items = Vec::with_capacity(seq.size_hint().unwrap_or(0).min(64));
        while let Some(item) = seq.next_element_seed(UnknownValue { level: inner.level })? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let inner = self.inner()?;
        let mut object = Map::new();
        while let Some(Text(key)) = map.next_key::<Text<'de>>()? {
            let value = map.next_value_seed(UnknownValue { level: inner.level })?;
            object.insert(key.into_owned(), value);
        }
        Ok(Value::Object(object))
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
        check(
            &notification.version,
            notification.alerts.iter().map(|a| a.starts_at.as_str()),
        )?;
        Ok(notification)
    }

    /// Why `body` does not parse, with the path of the field at fault.
    pub(crate) fn explain(body: &[u8]) -> PayloadError {
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

    /// The key copies of this notification share (see [`Incoming::dedup_key`], which
    /// gives the same key for the same body).
    pub fn dedup_key(&self) -> DedupKey {
        dedup_key(
            &self.receiver,
            &self.group_key,
            self.alerts
                .iter()
                .map(|a| (a.stable_fingerprint(), a.status, a.starts_at.as_str())),
        )
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
        let twice = BODY.replace(r#""version": "4","#, r#""version": "4", "version": "4","#);
        let error = Notification::parse(twice.as_bytes()).expect_err("repeated");
        assert!(
            error.to_string().contains("duplicate field `version`"),
            "{error}"
        );
        let error = Notification::parse(b"[1]").expect_err("array");
        assert!(
            error
                .to_string()
                .contains("an Alertmanager webhook payload"),
            "{error}"
        );
        let error = Notification::parse(
            BODY.replace(
                r#""labels": {"alertname""#,
                r#""labels": 7, "x": {"alertname""#,
            )
            .as_bytes(),
        )
        .expect_err("labels");
        assert!(
            error
                .to_string()
                .starts_with("alerts[0].labels: invalid type"),
            "{error}"
        );
        // A key spelled with an escape is still the field it names.
        let escaped = BODY.replace(r#""groupKey""#, r#""group\u004bey""#);
        assert!(Notification::parse(escaped.as_bytes()).is_ok());
        let time = BODY.replace("2026-11-22T10:00:00.123456789+01:00", "yesterday");
        let error = Notification::parse(time.as_bytes()).expect_err("time");
        assert!(
            error.to_string().starts_with("alerts[0].startsAt"),
            "{error}"
        );
    }

    #[test]
    fn the_borrowed_view_accepts_and_refuses_what_the_notification_does() {
        let variants = [
            BODY.to_owned(),
            BODY.replace(
                r#""status": "firing", "labels""#,
                r#""status": "fired", "labels""#,
            ),
            BODY.replace(r#""groupKey""#, r#""groupkey""#),
            BODY.replace(r#""groupKey""#, r#""group\u004bey""#),
            BODY.replace(r#""version": "4""#, r#""version": "3""#),
            BODY.replace(r#""version": "4","#, r#""version": "4", "version": "4","#),
            BODY.replace(r#""truncatedAlerts": 0"#, r#""truncatedAlerts": -1"#),
            BODY.replace(
                r#""externalURL": "http://am-1:9093""#,
                r#""externalURL": null"#,
            ),
            BODY.replace(
                r#""notification_reason": "first notification""#,
                r#""notification_reason": null"#,
            ),
            BODY.replace(
                r#""notification_reason": "first notification""#,
                r#""notification_reason": 3"#,
            ),
            BODY.replace(
                r#""commonAnnotations": {}"#,
                r#""commonAnnotations": {"a": 1}"#,
            ),
            BODY.replace(r#""commonAnnotations": {}"#, r#""commonAnnotations": []"#),
            BODY.replace(
                r#""annotations": {"summary""#,
                r#""annotations": {"x": "1", "x": "2", "summary""#,
            ),
            BODY.replace(
                r#""generatorURL": "http://prom/graph""#,
                r#""generatorURL": false"#,
            ),
            BODY.replace(r#""fingerprint": "8a07086b74f3ba78", "#, ""),
            BODY.replace(
                r#""startsAt": "2026-11-22T10:00:00.123456789+01:00""#,
                r#""startsAt": "soon""#,
            ),
            BODY.replace(
                r#""futureAlertField": [1]"#,
                r#""futureAlertField": {"deep": [null, "\u00e9"]}"#,
            ),
            BODY.replace(
                r#""routeLabels": {"team": "mcp"}"#,
                r#""routeLabels": {"team": "mcp"}, "x": [1, 2"#,
            ),
            "[]".to_owned(),
            "{}".to_owned(),
        ];
        for body in &variants {
            let owned = Notification::parse(body.as_bytes());
            let borrowed = Incoming::parse(body);
            match (&owned, &borrowed) {
                (Ok(owned), Ok(borrowed)) => {
                    assert_eq!(owned.dedup_key(), borrowed.dedup_key(), "{body}");
                    for (a, b) in owned.alerts.iter().zip(borrowed.alerts()) {
                        let a: Vec<_> = a.labels.sorted().collect();
                        let b: Vec<_> = b.labels.sorted().collect();
                        assert_eq!(a, b);
                    }
                }
                (Err(owned), Err(borrowed)) => {
                    assert_eq!(owned.to_string(), borrowed.to_string(), "{body}");
                }
                _ => panic!(
                    "one parse accepts what the other refuses: {owned:?} / {borrowed:?}\n{body}"
                ),
            }
        }
        let repeated = Incoming::parse(&variants[12]).expect("repeated annotation");
        assert_eq!(repeated.alerts()[0].annotations.label("x"), Some("2"));
        let no_fingerprint = Incoming::parse(&variants[14]).expect("no fingerprint");
        assert_eq!(
            no_fingerprint.dedup_key(),
            Notification::parse(variants[14].as_bytes())
                .expect("parse")
                .dedup_key()
        );
    }

    /// `BODY` with `levels` nested arrays as the value of a new field of the body (`top`)
    /// or of its alert.
    fn nested(levels: usize, top: bool) -> String {
        let value = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
        if top {
            BODY.replace(
                r#""version": "4","#,
                &format!(r#""version": "4", "deep": {value},"#),
            )
        } else {
            BODY.replace(r#""futureAlertField": [1]"#, &format!(r#""deep": {value}"#))
        }
    }

    #[test]
    fn intake_and_delivery_refuse_the_same_depth() {
        // The body is level 1, its fields' values level 2, an alert's level 4.
        for (top, deepest) in [(true, MAX_DEPTH - 1), (false, MAX_DEPTH - 3)] {
            for levels in [1, deepest, deepest + 1, 126, 127, 128, 1000, 100_000] {
                let body = nested(levels, top);
                let owned = Notification::parse(body.as_bytes());
                let borrowed = Incoming::parse(&body);
                // What the dispatcher reads from the store.
                let delivered = serde_json::from_str::<Notification>(&body);
                if levels <= deepest {
                    let n = owned.expect("within the limit");
                    assert!(borrowed.is_ok() && delivered.is_ok(), "{levels}");
                    let value = if top {
                        &n.extra["deep"]
                    } else {
                        &n.alerts[0].extra["deep"]
                    };
                    assert!(value.is_array());
                } else {
                    let error = borrowed.expect_err("too deep").to_string();
                    assert_eq!(error, owned.expect_err("too deep").to_string());
                    assert!(delivered.is_err(), "{levels}");
                    let level = MAX_DEPTH + 1;
                    assert!(
                        error.contains(&format!(
                            "JSON nested too deep: level {level} is beyond the limit of {MAX_DEPTH} levels"
                        )),
                        "{error}"
                    );
                    let field = if top { "deep[0]" } else { "alerts[0].deep[0]" };
                    assert!(error.starts_with(field), "{error}");
                }
            }
        }
        // Where a string belongs, any nesting is the wrong type.
        for levels in [1, 127, 1000] {
            let value = format!("{}{}", "[".repeat(levels), "]".repeat(levels));
            for body in [
                BODY.replace(
                    r#""instance": "mcp-1:3001""#,
                    &format!(r#""instance": {value}"#),
                ),
                BODY.replace(
                    r#""summary": "The MCP daemon is down.""#,
                    &format!(r#""summary": {value}"#),
                ),
            ] {
                let error = Incoming::parse(&body)
                    .expect_err("not a string")
                    .to_string();
                assert!(
                    error.contains("invalid type: sequence, expected a string"),
                    "{error}"
                );
                assert!(serde_json::from_str::<Notification>(&body).is_err());
            }
        }
    }

    #[test]
    fn a_notification_without_alerts_is_refused() {
        let start = BODY.find(r#""alerts": ["#).expect("alerts");
        let open = start + r#""alerts": ["#.len();
        let close = open + BODY[open..].find("\n      ]").expect("end of alerts");
        let empty = format!("{}{}", &BODY[..open], &BODY[close..]);
        for error in [
            Notification::parse(empty.as_bytes())
                .expect_err("empty")
                .to_string(),
            Incoming::parse(&empty).expect_err("empty").to_string(),
        ] {
            assert!(error.starts_with("alerts: empty"), "{error}");
        }
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
        // What the stores' times format to parses back.
        for ms in [0, 1_795_338_000_500, 951_782_400_000, -1] {
            let text = crate::time::format_rfc3339(ms);
            assert_eq!(
                parse_rfc3339(&text),
                Some(i128::from(ms) * 1_000_000),
                "{text}"
            );
        }
        assert_eq!(
            crate::time::format_rfc3339(951_782_400_000),
            "2000-02-29T00:00:00.000Z"
        );
    }
}
