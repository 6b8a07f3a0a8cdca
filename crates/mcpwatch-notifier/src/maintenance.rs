//! Maintenance windows: recurring ones from the configuration (`maintenance_windows`, over
//! Alertmanager-style `time_intervals`) and one-off ones added through the API with an
//! author and a reason. An alert a window matches is held, not dropped: its deliveries wait
//! in the store, and when the window ends each channel gets one summary of what is still
//! firing and what resolved meanwhile. Critical alerts pass unless the window holds them.

use serde::Serialize;

use crate::config::NotifierConfig;
use crate::matcher::Matcher;
use crate::payload::Labels;
use crate::time::format_rfc3339;
use crate::timeinterval::TimeInterval;

/// A configured, recurring window.
#[derive(Debug, Clone)]
pub struct Recurring {
    /// Its name, which is its key.
    pub name: String,
    intervals: Vec<TimeInterval>,
    matchers: Vec<Matcher>,
    hold_critical: bool,
}

impl Recurring {
    /// The windows of a checked configuration.
    pub fn all(config: &NotifierConfig) -> Vec<Recurring> {
        config
            .maintenance_windows
            .iter()
            .map(|window| Recurring {
                name: window.name.clone(),
                intervals: window
                    .time_intervals
                    .iter()
                    .filter_map(|name| config.time_intervals.iter().find(|t| &t.name == name))
                    .filter_map(|t| TimeInterval::new(&t.time_intervals).ok())
                    .collect(),
                matchers: window.matchers.clone(),
                hold_critical: window.hold_critical,
            })
            .collect()
    }

    /// Whether it is on at `now` (Unix ms).
    pub fn active(&self, now: i64) -> bool {
        self.intervals.iter().any(|i| i.contains(now))
    }

    /// The matchers as written.
    pub fn matchers(&self) -> Vec<String> {
        self.matchers.iter().map(ToString::to_string).collect()
    }
}

/// A one-off window to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewWindow {
    /// Unix ms.
    pub starts_at: i64,
    /// Unix ms.
    pub ends_at: i64,
    /// Matchers as written (checked).
    pub matchers: Vec<String>,
    /// Who added it.
    pub author: String,
    /// Why.
    pub reason: String,
    /// Hold critical alerts too.
    pub hold_critical: bool,
    /// When it was added, Unix ms.
    pub created_at: i64,
}

/// A stored one-off window.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowRow {
    /// Id; its key is `#<id>`.
    pub id: i64,
    /// What was asked.
    pub window: NewWindow,
}

impl WindowRow {
    /// Its key in held deliveries.
    pub fn key(&self) -> String {
        format!("#{}", self.id)
    }
}

/// A one-off window with its matchers compiled.
#[derive(Debug, Clone)]
pub struct OneOff {
    /// The stored row.
    pub row: WindowRow,
    matchers: Vec<Matcher>,
}

impl OneOff {
    /// Compiles the row's matchers (checked when it was added; one that no longer parses
    /// matches nothing).
    pub fn new(row: WindowRow) -> Self {
        let parsed: Result<Vec<Matcher>, _> = row
            .window
            .matchers
            .iter()
            .map(|m| Matcher::parse(m))
            .collect();
        let matchers = parsed.unwrap_or_else(|_| {
            vec![Matcher::parse("__mcpwatch_unparsable=\"x\"").expect("a valid matcher")]
        });
        Self { row, matchers }
    }

    /// Whether it is on at `now`.
    pub fn active(&self, now: i64) -> bool {
        self.row.window.starts_at <= now && now < self.row.window.ends_at
    }
}

fn critical(labels: &impl Labels) -> bool {
    labels
        .label("severity")
        .is_some_and(|s| s.eq_ignore_ascii_case("critical"))
}

fn holds(matchers: &[Matcher], hold_critical: bool, labels: &impl Labels) -> bool {
    (hold_critical || !critical(labels)) && matchers.iter().all(|m| m.matches(labels))
}

/// The key of the first active window that holds an alert with these labels.
pub fn holding(
    recurring: &[Recurring],
    one_off: &[OneOff],
    labels: &impl Labels,
    now: i64,
) -> Option<String> {
    if let Some(w) = recurring
        .iter()
        .find(|w| w.active(now) && holds(&w.matchers, w.hold_critical, labels))
    {
        return Some(w.name.clone());
    }
    one_off
        .iter()
        .find(|w| w.active(now) && holds(&w.matchers, w.row.window.hold_critical, labels))
        .map(|w| w.row.key())
}

/// Whether the window with this key is still on (an unknown key is not).
pub fn still_active(recurring: &[Recurring], one_off: &[OneOff], key: &str, now: i64) -> bool {
    if key.starts_with('#') {
        one_off.iter().any(|w| w.row.key() == key && w.active(now))
    } else {
        recurring.iter().any(|w| w.name == key && w.active(now))
    }
}

/// A window as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct WindowView {
    /// `#<id>` or the configured name.
    pub key: String,
    /// The id of a one-off window.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<i64>,
    /// `one-off` or `recurring`.
    pub kind: &'static str,
    /// On now.
    pub active: bool,
    /// RFC 3339 (one-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub starts_at: Option<String>,
    /// RFC 3339 (one-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ends_at: Option<String>,
    /// Which alerts it holds (all when empty).
    pub matchers: Vec<String>,
    /// Critical alerts are held too.
    pub hold_critical: bool,
    /// Who added it (one-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    /// Why (one-off).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Notifications it holds now.
    pub held_notifications: u64,
}

impl WindowView {
    /// A one-off window.
    pub fn one_off(row: &WindowRow, now: i64, held: u64) -> Self {
        let w = &row.window;
        Self {
            key: row.key(),
            id: Some(row.id),
            kind: "one-off",
            active: w.starts_at <= now && now < w.ends_at,
            starts_at: Some(format_rfc3339(w.starts_at)),
            ends_at: Some(format_rfc3339(w.ends_at)),
            matchers: w.matchers.clone(),
            hold_critical: w.hold_critical,
            author: Some(w.author.clone()),
            reason: Some(w.reason.clone()),
            held_notifications: held,
        }
    }

    /// A configured window.
    pub fn recurring(window: &Recurring, now: i64, held: u64) -> Self {
        Self {
            key: window.name.clone(),
            id: None,
            kind: "recurring",
            active: window.active(now),
            starts_at: None,
            ends_at: None,
            matchers: window.matchers(),
            hold_critical: window.hold_critical,
            author: None,
            reason: None,
            held_notifications: held,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::LabelSet;

    fn labels(pairs: &[(&str, &str)]) -> LabelSet {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn one_off(id: i64, matchers: &[&str], hold_critical: bool) -> OneOff {
        OneOff::new(WindowRow {
            id,
            window: NewWindow {
                starts_at: 1000,
                ends_at: 2000,
                matchers: matchers.iter().map(|m| (*m).to_owned()).collect(),
                author: "ops".into(),
                reason: "upgrade".into(),
                hold_critical,
                created_at: 0,
            },
        })
    }

    #[test]
    fn a_window_holds_what_it_matches_while_on_and_lets_critical_pass() {
        let windows = [one_off(4, &["service=\"mcp\""], false)];
        let warning = labels(&[("service", "mcp"), ("severity", "warning")]);
        let critical = labels(&[("service", "mcp"), ("severity", "critical")]);
        let other = labels(&[("service", "db"), ("severity", "warning")]);
        assert_eq!(holding(&[], &windows, &warning, 1500), Some("#4".into()));
        assert_eq!(holding(&[], &windows, &critical, 1500), None);
        assert_eq!(holding(&[], &windows, &other, 1500), None);
        assert_eq!(holding(&[], &windows, &warning, 2000), None);
        assert_eq!(holding(&[], &windows, &warning, 999), None);
        assert!(still_active(&[], &windows, "#4", 1999));
        assert!(!still_active(&[], &windows, "#4", 2000));
        assert!(!still_active(&[], &windows, "#5", 1500));
        let strict = [one_off(5, &[], true)];
        assert_eq!(holding(&[], &strict, &critical, 1500), Some("#5".into()));
    }

    #[test]
    fn a_recurring_window_follows_its_time_intervals() {
        let config = NotifierConfig::parse(
            "time_intervals:\n  - name: sunday-night\n    time_intervals:\n      - weekdays: [sunday]\n        times: [{start_time: '02:00', end_time: '04:00'}]\n        location: UTC\nmaintenance_windows:\n  - name: weekly\n    time_intervals: [sunday-night]\n",
            std::path::Path::new("/etc/notifier.yml"),
        )
        .expect("config");
        let windows = Recurring::all(&config);
        // 2026-11-22 is a Sunday.
        let sunday_3am = 1_795_316_400_000;
        let warning = labels(&[("severity", "warning")]);
        assert_eq!(
            holding(&windows, &[], &warning, sunday_3am),
            Some("weekly".into())
        );
        assert_eq!(
            holding(&windows, &[], &warning, sunday_3am + 3_600_000),
            None
        );
        assert!(still_active(&windows, &[], "weekly", sunday_3am));
    }
}
