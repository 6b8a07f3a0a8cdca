//! The public status page's model: components derived from a label of the firing alerts,
//! each operational, degraded or in outage from their severities (see [`crate::severity`]),
//! and the 90 days of history behind each component's uptime bar.
//!
//! Each notification of an alert group replaces what that group says of each component
//! (Alertmanager sends a group's whole state every time); a component's state is the worst
//! any group says. The store applies that in the transaction that stores the notification,
//! so the page changes with the webhook that changes it, and records each change of a
//! component's state, from which the days are counted.

use std::collections::BTreeMap;

use mcpwatch_core::config::Problem;
use serde::{Deserialize, Serialize};

use crate::payload::Labels;
use crate::severity::{ComponentState, Severities};
use crate::time::civil_from_days;

/// Days of history the page shows.
pub const HISTORY_DAYS: usize = 90;

/// Alert names kept per component and group (shown only when configured).
const MAX_NAMES: usize = 10;

/// Components the page shows at most when `components` is not set: every value of the
/// label is a component then, and one that carries a pod or request id must not make a
/// public page of megabytes. Those not operational come first.
pub const MAX_UNLISTED_COMPONENTS: usize = 100;

/// The longest name of a component shown by its label's value (longer ones are cut).
pub const MAX_UNLISTED_NAME_BYTES: usize = 200;

/// `status_page`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusPageConfig {
    /// The page's title.
    pub title: String,
    /// The alert label whose value names a component.
    pub component_label: String,
    /// The components shown, in this order, with their public names. Empty: every value
    /// of the label that alerts carry, by its value.
    pub components: Vec<ComponentConfig>,
    /// Show the names of the firing alerts (`alertname`) of each current incident.
    pub show_alert_names: bool,
    /// Show the reason given for each maintenance window.
    pub show_maintenance_reasons: bool,
}

impl Default for StatusPageConfig {
    fn default() -> Self {
        Self {
            title: "Service status".into(),
            component_label: "service".into(),
            components: Vec::new(),
            show_alert_names: false,
            show_maintenance_reasons: false,
        }
    }
}

/// One of `status_page.components`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComponentConfig {
    /// The label's value.
    pub value: String,
    /// Its name on the page (its value when unset).
    #[serde(default)]
    pub name: Option<String>,
}

impl StatusPageConfig {
    /// Checks what the types cannot; the key at fault is under `status_page`.
    pub fn validate(&self) -> Result<(), Problem> {
        if self.component_label.trim().is_empty() {
            return Err((
                "status_page.component_label".into(),
                "must not be empty".into(),
            ));
        }
        for (i, component) in self.components.iter().enumerate() {
            if component.value.is_empty() {
                return Err((
                    format!("status_page.components[{i}].value"),
                    "must not be empty".into(),
                ));
            }
            if self.components[..i]
                .iter()
                .any(|c| c.value == component.value)
            {
                return Err((
                    format!("status_page.components[{i}].value"),
                    format!("{:?} is listed twice", component.value),
                ));
            }
        }
        Ok(())
    }

    /// Whether alerts with this label value count, and the component's public name.
    pub fn public_name<'a>(&'a self, value: &'a str) -> Option<&'a str> {
        if self.components.is_empty() {
            return Some(value);
        }
        self.components
            .iter()
            .find(|c| c.value == value)
            .map(|c| c.name.as_deref().unwrap_or(&c.value))
    }
}

/// What one alert group says of one component.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupStatus {
    /// The component (the label's value).
    pub component: String,
    /// Its state, by the most severe of the group's firing alerts on it.
    pub state: ComponentState,
    /// Those alerts' names.
    pub names: Vec<String>,
}

/// What a notification's alerts say of each component: the worst state of the firing
/// ones on each (components they leave operational are left out).
pub fn of_alerts<'l, L: Labels + 'l>(
    config: &StatusPageConfig,
    severities: &Severities,
    alerts: impl IntoIterator<Item = (bool, &'l L)>,
) -> Vec<GroupStatus> {
    let mut by_component: BTreeMap<String, (ComponentState, Vec<String>)> = BTreeMap::new();
    for (firing, labels) in alerts {
        // An empty value names nothing: Prometheus treats it as no label.
        let Some(component) = labels
            .label(&config.component_label)
            .filter(|c| !c.is_empty())
        else {
            continue;
        };
        if !firing || config.public_name(component).is_none() {
            continue;
        }
        let state = severities
            .of(labels)
            .map_or(ComponentState::Degraded, |s| s.status);
        if state == ComponentState::Operational {
            continue;
        }
        let entry = by_component
            .entry(component.to_owned())
            .or_insert((ComponentState::Operational, Vec::new()));
        entry.0 = entry.0.max(state);
        let name = labels.label("alertname").unwrap_or("").to_owned();
        if !entry.1.contains(&name) && entry.1.len() < MAX_NAMES {
            entry.1.push(name);
        }
    }
    by_component
        .into_iter()
        .map(|(component, (state, mut names))| {
            names.sort();
            GroupStatus {
                component,
                state,
                names,
            }
        })
        .collect()
}

/// A state as the stores keep it: its rank, so that the worst is the largest.
pub fn rank(state: ComponentState) -> i64 {
    match state {
        ComponentState::Operational => 0,
        ComponentState::Degraded => 1,
        ComponentState::Outage => 2,
    }
}

/// What [`rank`] wrote (anything else reads as degraded).
pub fn from_rank(rank: i64) -> ComponentState {
    match rank {
        0 => ComponentState::Operational,
        2 => ComponentState::Outage,
        _ => ComponentState::Degraded,
    }
}

/// A component now, as the store reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Current {
    /// The component.
    pub component: String,
    /// Its state.
    pub state: ComponentState,
    /// The names of the alerts that make it so.
    pub names: Vec<String>,
}

/// One change of a component's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Change {
    /// The state from then on.
    pub state: ComponentState,
    /// When, Unix ms.
    pub at: i64,
}

/// What the store holds for the page: each component's state now, and its changes (the
/// last one before the history starts first, when there is one).
#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    /// The components not operational now.
    pub current: Vec<Current>,
    /// Each component's changes, oldest first.
    pub changes: BTreeMap<String, Vec<Change>>,
}

/// One day of a component's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Day {
    /// `YYYY-MM-DD` (UTC) as days since 1970-01-01.
    #[serde(skip)]
    pub day: i64,
    /// Seconds of the day in outage.
    pub outage_seconds: u64,
    /// Seconds degraded.
    pub degraded_seconds: u64,
    /// Seconds known (the rest of the day was before the history began, or is to come).
    pub known_seconds: u64,
    /// The same three in milliseconds, which the day's bar and uptime are computed from: a
    /// stretch shorter than a second still counts.
    #[serde(skip)]
    pub ms: (i64, i64, i64),
}

impl Day {
    /// `YYYY-MM-DD`.
    pub fn date(&self) -> String {
        let (y, m, d) = civil_from_days(self.day);
        format!("{y:04}-{m:02}-{d:02}")
    }

    /// The share of the known time not in outage; none when nothing is known.
    pub fn uptime(&self) -> Option<f64> {
        let (known, outage, _) = self.ms;
        #[allow(clippy::cast_precision_loss)]
        (known > 0).then(|| 1.0 - outage as f64 / known as f64)
    }

    /// The worst state of the day: what its bar shows.
    pub fn worst(&self) -> Option<ComponentState> {
        let (known, outage, degraded) = self.ms;
        if known == 0 {
            None
        } else if outage > 0 {
            Some(ComponentState::Outage)
        } else if degraded > 0 {
            Some(ComponentState::Degraded)
        } else {
            Some(ComponentState::Operational)
        }
    }
}

const DAY_MS: i64 = 86_400_000;

/// The last [`HISTORY_DAYS`] days (UTC) up to `now`, oldest first, from a component's
/// changes. Time before its first change is unknown; after it, the state holds until the
/// next change.
pub fn days(changes: &[Change], now: i64) -> Vec<Day> {
    let today = now.div_euclid(DAY_MS);
    let first_day = today - i64::try_from(HISTORY_DAYS).unwrap_or(90) + 1;
    let mut days: Vec<Day> = (first_day..=today)
        .map(|day| Day {
            day,
            outage_seconds: 0,
            degraded_seconds: 0,
            known_seconds: 0,
            ms: (0, 0, 0),
        })
        .collect();
    let history_start = first_day * DAY_MS;
    // Milliseconds (known, outage, degraded) per day, made seconds at the end: cut each
    // stretch to seconds and a day known throughout would come short of 86,400.
    let mut ms = vec![(0_i64, 0_i64, 0_i64); days.len()];
    for (i, change) in changes.iter().enumerate() {
        let from = change.at.max(history_start);
        let until = changes.get(i + 1).map_or(now, |next| next.at).min(now);
        if until <= from {
            continue;
        }
        let mut at = from;
        while at < until {
            let day = at.div_euclid(DAY_MS);
            let end = ((day + 1) * DAY_MS).min(until);
            if let Some(d) = usize::try_from(day - first_day)
                .ok()
                .and_then(|i| ms.get_mut(i))
            {
                d.0 += end - at;
                match change.state {
                    ComponentState::Outage => d.1 += end - at,
                    ComponentState::Degraded => d.2 += end - at,
                    ComponentState::Operational => {}
                }
            }
            at = end;
        }
    }
    let seconds = |ms: i64| u64::try_from(ms / 1000).unwrap_or(0);
    for (d, (known, outage, degraded)) in days.iter_mut().zip(ms) {
        d.known_seconds = seconds(known);
        d.outage_seconds = seconds(outage);
        d.degraded_seconds = seconds(degraded);
        d.ms = (known, outage, degraded);
    }
    days
}

/// The share of the known time of `days` not in outage.
pub fn uptime(days: &[Day]) -> Option<f64> {
    let known: i64 = days.iter().map(|d| d.ms.0).sum();
    let outage: i64 = days.iter().map(|d| d.ms.1).sum();
    #[allow(clippy::cast_precision_loss)]
    (known > 0).then(|| 1.0 - outage as f64 / known as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::LabelSet;

    fn alert(name: &str, service: &str, severity: &str) -> LabelSet {
        [
            ("alertname", name),
            ("service", service),
            ("severity", severity),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
    }

    #[test]
    fn components_take_the_worst_firing_severity() {
        let config = StatusPageConfig::default();
        let alerts = [
            (true, alert("Slow", "gateway", "warning")),
            (true, alert("Down", "gateway", "critical")),
            (false, alert("Down", "db", "critical")),
            (true, alert("Note", "db", "info")),
            (true, alert("Disk", "db", "warning")),
            (true, alert("Nameless", "", "critical")),
        ];
        let status = of_alerts(
            &config,
            &Severities::default(),
            alerts.iter().map(|(f, l)| (*f, l)),
        );
        assert_eq!(
            status,
            [
                GroupStatus {
                    component: "db".into(),
                    state: ComponentState::Degraded,
                    names: vec!["Disk".into()],
                },
                GroupStatus {
                    component: "gateway".into(),
                    state: ComponentState::Outage,
                    names: vec!["Down".into(), "Slow".into()],
                },
            ]
        );
        // A listed set of components keeps the others (internal services) off the page.
        let listed = StatusPageConfig {
            components: vec![ComponentConfig {
                value: "gateway".into(),
                name: Some("MCP gateway".into()),
            }],
            ..StatusPageConfig::default()
        };
        let status = of_alerts(
            &listed,
            &Severities::default(),
            alerts.iter().map(|(f, l)| (*f, l)),
        );
        assert_eq!(status.len(), 1);
        assert_eq!(listed.public_name("gateway"), Some("MCP gateway"));
        assert_eq!(listed.public_name("db"), None);
    }

    #[test]
    fn a_day_known_throughout_is_86_400_seconds_whatever_the_milliseconds_of_its_changes() {
        let day = |d: i64| d * DAY_MS;
        let changes = [
            Change {
                state: ComponentState::Operational,
                at: day(20_000),
            },
            Change {
                state: ComponentState::Outage,
                at: day(20_001) + 36_000_500,
            },
            Change {
                state: ComponentState::Operational,
                at: day(20_001) + 39_600_250,
            },
            // Across midnight.
            Change {
                state: ComponentState::Degraded,
                at: day(20_002) - 1_800_600,
            },
            Change {
                state: ComponentState::Operational,
                at: day(20_002) + 1_800_300,
            },
        ];
        let days = days(&changes, day(20_003) + 43_200_000);
        let [first, second, third, today] = days[HISTORY_DAYS - 4..] else {
            panic!("four days");
        };
        assert_eq!(
            [first, second, third, today].map(|d| d.known_seconds),
            [86_400, 86_400, 86_400, 43_200]
        );
        assert_eq!(
            (second.outage_seconds, second.degraded_seconds),
            (3_599, 1_800)
        );
        assert_eq!(third.degraded_seconds, 1_800);
    }

    #[test]
    fn an_outage_under_a_second_old_colours_today() {
        let now = 20_000 * DAY_MS + 3_600_000;
        let changes = [
            Change {
                state: ComponentState::Operational,
                at: now - 10_000,
            },
            Change {
                state: ComponentState::Outage,
                at: now - 300,
            },
        ];
        let today = *days(&changes, now).last().expect("today");
        assert_eq!((today.outage_seconds, today.known_seconds), (0, 10));
        assert_eq!(today.worst(), Some(ComponentState::Outage));
        assert!(today.uptime().is_some_and(|u| (u - 0.97).abs() < 1e-9));
    }

    #[test]
    fn days_count_outage_and_degraded_time_per_utc_day() {
        let day = |d: i64| d * DAY_MS;
        let now = day(20_000) + 12 * 3_600_000;
        let changes = [
            Change {
                state: ComponentState::Operational,
                at: day(19_990),
            },
            Change {
                state: ComponentState::Outage,
                at: day(19_999) + 23 * 3_600_000,
            },
            Change {
                state: ComponentState::Degraded,
                at: day(20_000) + 3_600_000,
            },
            Change {
                state: ComponentState::Operational,
                at: day(20_000) + 2 * 3_600_000,
            },
        ];
        let days = days(&changes, now);
        assert_eq!(days.len(), HISTORY_DAYS);
        let last = days[HISTORY_DAYS - 1];
        assert_eq!(
            (
                last.outage_seconds,
                last.degraded_seconds,
                last.known_seconds
            ),
            (3600, 3600, 12 * 3600)
        );
        let yesterday = days[HISTORY_DAYS - 2];
        assert_eq!(
            (yesterday.outage_seconds, yesterday.known_seconds),
            (3600, 86_400)
        );
        assert_eq!(
            days[HISTORY_DAYS - 11].worst(),
            Some(ComponentState::Operational)
        );
        assert_eq!(days[HISTORY_DAYS - 12].worst(), None);
        assert_eq!(days[0].uptime(), None);
        let total = uptime(&days).expect("known");
        let expected = 1.0 - 7200.0 / (10.0 * 86_400.0 + 12.0 * 3600.0);
        assert!((total - expected).abs() < 1e-12, "{total} {expected}");
        assert_eq!(last.date(), "2024-10-04");
    }
}
