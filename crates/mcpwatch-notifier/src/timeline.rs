//! An incident's timeline: every event of it, stored in order in the same transaction as
//! the change it records (alerts firing and resolving, each level told on which channel
//! and what the receiver answered, retries, escalation, acknowledgement, status updates,
//! remediation, resolve), with who did it.

use serde::{Deserialize, Serialize};

use crate::payload::Labels;
use crate::time::format_rfc3339;

/// The kinds of timeline entries, as stored and shown.
pub mod kind {
    /// The incident opened: its alerts fired.
    pub const OPENED: &str = "opened";
    /// Its alerts changed: some joined, some resolved.
    pub const ALERTS_CHANGED: &str = "alerts_changed";
    /// A level (or a status update, an acknowledgement's announcement) was queued for a
    /// channel.
    pub const TOLD: &str = "told";
    /// The channel's receiver took it.
    pub const DELIVERED: &str = "delivered";
    /// The receiver refused it or could not be reached; it is tried again.
    pub const DELIVERY_FAILED: &str = "delivery_failed";
    /// Given up on: a dead letter.
    pub const DEAD_LETTER: &str = "dead_letter";
    /// Nobody acknowledged in time: the next level.
    pub const ESCALATED: &str = "escalated";
    /// The last level, told again.
    pub const REPEATED: &str = "repeated";
    /// Someone acknowledged it.
    pub const ACKNOWLEDGED: &str = "acknowledged";
    /// Someone took the acknowledgement back.
    pub const UNACKNOWLEDGED: &str = "unacknowledged";
    /// A status update went to the channels told.
    pub const STATUS_UPDATE: &str = "status_update";
    /// A remediation action was queued as the incident opened.
    pub const REMEDIATION_QUEUED: &str = "remediation_queued";
    /// A remediation action started.
    pub const REMEDIATION_STARTED: &str = "remediation_started";
    /// A remediation action ended (its outcome and output in the detail).
    pub const REMEDIATION_FINISHED: &str = "remediation_finished";
    /// A remediation action was not run (and why).
    pub const REMEDIATION_SKIPPED: &str = "remediation_skipped";
    /// It resolved: every alert resolved, or someone resolved it by hand.
    pub const RESOLVED: &str = "resolved";
}

/// The longest detail stored (a remediation's output is cut to this).
pub const MAX_DETAIL_BYTES: usize = 16 << 10;

/// Alerts a timeline entry names at most; the rest are counted.
pub const MAX_ALERTS: usize = 20;

/// One alert as the timeline names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertBrief {
    /// `firing` or `resolved`.
    pub status: String,
    /// Its `alertname`.
    pub name: String,
    /// Its other labels, `{a="b", ...}`, sorted.
    pub labels: String,
}

/// The longest label text kept for one alert.
const MAX_LABELS_BYTES: usize = 512;

/// The longest alert name kept (it is in every entry of the alert, and the incident's
/// title).
const MAX_NAME_BYTES: usize = 256;

impl AlertBrief {
    /// The brief of an alert.
    pub fn new<L: Labels>(firing: bool, labels: &L) -> Self {
        let mut text = String::from("{");
        for (name, value) in labels.sorted().filter(|(n, _)| *n != "alertname") {
            if text.len() > 1 {
                text.push_str(", ");
            }
            text.push_str(name);
            text.push_str("=\"");
            text.push_str(&value.replace('\\', "\\\\").replace('"', "\\\""));
            text.push('"');
            if text.len() > MAX_LABELS_BYTES {
                cut(&mut text, MAX_LABELS_BYTES);
                text.push('…');
                break;
            }
        }
        text.push('}');
        let mut name = labels.label("alertname").unwrap_or("(no alertname)").to_owned();
        if name.len() > MAX_NAME_BYTES {
            cut(&mut name, MAX_NAME_BYTES);
            name.push('…');
        }
        Self {
            status: if firing { "firing" } else { "resolved" }.into(),
            name,
            labels: text,
        }
    }

    /// `name{labels}`.
    pub fn identity(&self) -> String {
        format!("{}{}", self.name, self.labels)
    }
}

/// Cuts `text` to at most `max` bytes, on a character boundary.
pub fn cut(text: &mut String, max: usize) {
    if text.len() > max {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

/// A timeline entry to store: the store adds the incident and the time.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Note {
    /// One of [`kind`].
    pub kind: &'static str,
    /// Who did it, when someone did.
    pub actor: Option<String>,
    /// The channel it concerns.
    pub channel: Option<String>,
    /// The escalation level it concerns, from 1.
    pub level: Option<u32>,
    /// What happened, in words (a receiver's answer, an error, a command's output).
    pub detail: Option<String>,
    /// The alerts it concerns.
    pub alerts: Vec<AlertBrief>,
}

impl Note {
    /// A note of `kind`.
    pub fn new(kind: &'static str) -> Self {
        Self {
            kind,
            ..Self::default()
        }
    }

    /// With who did it.
    pub fn by(mut self, actor: impl Into<String>) -> Self {
        self.actor = Some(actor.into());
        self
    }

    /// With its channel.
    pub fn channel(mut self, channel: impl Into<String>) -> Self {
        self.channel = Some(channel.into());
        self
    }

    /// With its level.
    pub fn level(mut self, level: u32) -> Self {
        self.level = Some(level);
        self
    }

    /// With what happened, cut to [`MAX_DETAIL_BYTES`].
    pub fn detail(mut self, detail: impl Into<String>) -> Self {
        let mut detail = detail.into();
        if detail.len() > MAX_DETAIL_BYTES {
            cut(&mut detail, MAX_DETAIL_BYTES);
            detail.push_str("\n[cut]");
        }
        self.detail = Some(detail);
        self
    }

    /// With the alerts it concerns.
    pub fn alerts(mut self, alerts: Vec<AlertBrief>) -> Self {
        self.alerts = alerts;
        self
    }

    /// The alerts as the stores keep them: a JSON array, none when empty.
    pub fn encode_alerts(&self) -> Option<String> {
        (!self.alerts.is_empty()).then(|| serde_json::to_string(&self.alerts).unwrap_or_default())
    }
}

/// A stored timeline entry, as the API and the pages show it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Entry {
    /// Its position: entries are shown in this order.
    pub id: i64,
    /// When, RFC 3339.
    pub at: String,
    /// When, Unix ms.
    #[serde(skip)]
    pub at_ms: i64,
    /// One of [`kind`].
    pub kind: String,
    /// Who did it.
    pub actor: Option<String>,
    /// The channel.
    pub channel: Option<String>,
    /// The level, from 1.
    pub level: Option<u32>,
    /// What happened.
    pub detail: Option<String>,
    /// The alerts it concerns.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub alerts: Vec<AlertBrief>,
}

impl Entry {
    /// An entry read back; `alerts` as [`Note::encode_alerts`] wrote it.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        id: i64,
        at_ms: i64,
        kind: String,
        actor: Option<String>,
        channel: Option<String>,
        level: Option<u32>,
        detail: Option<String>,
        alerts: Option<&str>,
    ) -> Self {
        Self {
            id,
            at: format_rfc3339(at_ms),
            at_ms,
            kind,
            actor,
            channel,
            level,
            detail,
            alerts: alerts
                .and_then(|a| serde_json::from_str(a).ok())
                .unwrap_or_default(),
        }
    }

    /// One line saying what happened, for pages and reports.
    pub fn describe(&self) -> String {
        let level = self.level.map(|l| format!("level {l}"));
        let on = |what: &str| match (&level, &self.channel) {
            (Some(l), Some(c)) => format!("{what} {l} on {c}"),
            (None, Some(c)) => format!("{what} on {c}"),
            (Some(l), None) => format!("{what} {l}"),
            (None, None) => what.to_owned(),
        };
        let alerts = |verb: &str| {
            let firing = self.alerts.iter().filter(|a| a.status == "firing").count();
            let resolved = self.alerts.len() - firing;
            match (firing, resolved) {
                (f, 0) => format!("{verb}: {f} alert(s) firing"),
                (0, r) => format!("{verb}: {r} alert(s) resolved"),
                (f, r) => format!("{verb}: {f} alert(s) firing, {r} resolved"),
            }
        };
        match self.kind.as_str() {
            kind::OPENED => alerts("Incident opened"),
            kind::ALERTS_CHANGED => alerts("Alerts changed"),
            kind::TOLD => on("Told"),
            kind::DELIVERED => on("Delivered"),
            kind::DELIVERY_FAILED => on("Delivery failed"),
            kind::DEAD_LETTER => on("Gave up (dead letter)"),
            kind::ESCALATED => on("Escalated to"),
            kind::REPEATED => on("Told again"),
            kind::ACKNOWLEDGED => "Acknowledged".into(),
            kind::UNACKNOWLEDGED => "Acknowledgement taken back".into(),
            kind::STATUS_UPDATE => "Status update sent".into(),
            kind::REMEDIATION_QUEUED => "Remediation queued".into(),
            kind::REMEDIATION_STARTED => "Remediation started".into(),
            kind::REMEDIATION_FINISHED => "Remediation finished".into(),
            kind::REMEDIATION_SKIPPED => "Remediation not run".into(),
            kind::RESOLVED if self.actor.is_some() => "Resolved by hand".into(),
            kind::RESOLVED => "Resolved: every alert resolved".into(),
            other => other.to_owned(),
        }
    }
}

/// At most [`MAX_ALERTS`] briefs, firing first.
pub fn bounded(mut all: Vec<AlertBrief>) -> Vec<AlertBrief> {
    all.sort_by(|a, b| {
        a.status
            .cmp(&b.status)
            .then_with(|| a.identity().cmp(&b.identity()))
    });
    all.dedup();
    all.truncate(MAX_ALERTS);
    all
}

/// What alerts are about, by name: `A`, `A, B`, `A and 3 more`; the firing ones when any
/// fires.
pub fn title(briefs: &[AlertBrief]) -> String {
    let firing: Vec<&AlertBrief> = briefs.iter().filter(|b| b.status == "firing").collect();
    let chosen: Vec<&AlertBrief> = if firing.is_empty() {
        briefs.iter().collect()
    } else {
        firing
    };
    let mut names: Vec<&str> = chosen.iter().map(|b| b.name.as_str()).collect();
    names.dedup();
    match names.len() {
        0 => String::new(),
        1 | 2 => names.join(", "),
        n => format!("{} and {} more", names[0], n - 1),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::LabelSet;

    #[test]
    fn briefs_name_alerts_bounded_and_escaped() {
        let mut labels = LabelSet::new();
        labels.insert("alertname".into(), "HighErrorRate".into());
        labels.insert("service".into(), "gate\"way".into());
        let brief = AlertBrief::new(true, &labels);
        assert_eq!(brief.identity(), "HighErrorRate{service=\"gate\\\"way\"}");
        let mut huge = LabelSet::new();
        huge.insert("a".into(), "é".repeat(2000));
        let brief = AlertBrief::new(false, &huge);
        assert!(brief.labels.len() <= MAX_LABELS_BYTES + 8, "{}", brief.labels.len());
        assert_eq!(brief.name, "(no alertname)");
        let many: Vec<AlertBrief> = (0..50)
            .map(|i| {
                let mut l = labels.clone();
                l.insert("i".into(), i.to_string());
                AlertBrief::new(i % 2 == 0, &l)
            })
            .collect();
        let kept = bounded(many);
        assert_eq!(kept.len(), MAX_ALERTS);
        assert!(kept.iter().all(|b| b.status == "firing"));
        assert_eq!(title(&kept), "HighErrorRate");
    }

    #[test]
    fn details_are_cut_on_a_character_boundary() {
        let note = Note::new(kind::REMEDIATION_FINISHED).detail("ü".repeat(MAX_DETAIL_BYTES));
        let detail = note.detail.expect("detail");
        assert!(detail.ends_with("\n[cut]"));
        assert!(detail.len() <= MAX_DETAIL_BYTES + 6);
    }
}
