//! Severities in one place: how the value of an alert's `severity` label maps to the
//! operators' scale (P0–P3, or critical/warning/info), what each means for a status page
//! component, and how often an open incident of that severity is told a status update.
//! Incidents, the status page, status updates and the web pages all read it from here.

use std::time::Duration;

use mcpwatch_core::config::{Problem, duration};
use serde::{Deserialize, Deserializer, Serialize};

use crate::payload::Labels;

/// What a firing alert of a severity means for its status page component.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ComponentState {
    /// Nothing firing (or only what does not count).
    Operational,
    /// Working, but not as it should.
    Degraded,
    /// Not working.
    Outage,
}

impl ComponentState {
    /// As the status page and its JSON name it.
    pub fn as_str(self) -> &'static str {
        match self {
            ComponentState::Operational => "operational",
            ComponentState::Degraded => "degraded",
            ComponentState::Outage => "outage",
        }
    }

    /// What [`ComponentState::as_str`] wrote.
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "operational" => Some(ComponentState::Operational),
            "degraded" => Some(ComponentState::Degraded),
            "outage" => Some(ComponentState::Outage),
            _ => None,
        }
    }
}

/// `severities`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SeverityConfig {
    /// The alert label that carries the severity.
    pub label: String,
    /// The levels, most severe first.
    pub levels: Vec<SeverityLevelConfig>,
    /// The level of an alert whose label is missing or matches no level's `values`.
    pub unknown: Option<String>,
}

/// One level of `severities.levels`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeverityLevelConfig {
    /// Its name on the operators' scale (`P0`, `critical`).
    pub name: String,
    /// The label values that are this level (its name when empty).
    #[serde(default)]
    pub values: Vec<String>,
    /// What a firing alert of this level makes of its component.
    pub status: ComponentState,
    /// Tell the channels already told a status update this often while an incident of
    /// this level is open and unacknowledged.
    #[serde(default, deserialize_with = "optional_duration")]
    pub updates_every: Option<Duration>,
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

impl Default for SeverityConfig {
    /// Prometheus's customary labels: critical, warning, info; an alert with none counts
    /// as a warning.
    fn default() -> Self {
        let level = |name: &str, status| SeverityLevelConfig {
            name: name.to_owned(),
            values: Vec::new(),
            status,
            updates_every: None,
        };
        Self {
            label: "severity".into(),
            levels: vec![
                level("critical", ComponentState::Outage),
                level("warning", ComponentState::Degraded),
                level("info", ComponentState::Operational),
            ],
            unknown: Some("warning".into()),
        }
    }
}

/// A level, as incidents and pages use it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Severity {
    /// Its name.
    pub name: String,
    /// Its rank: 0 is the most severe.
    pub rank: usize,
    /// What it makes of a component.
    pub status: ComponentState,
    /// How often an open incident of it is told a status update.
    #[serde(skip)]
    pub updates_every: Option<Duration>,
}

/// The configured scale.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Severities {
    label: String,
    levels: Vec<Severity>,
    values: Vec<(String, usize)>,
    unknown: Option<usize>,
}

impl Default for Severities {
    fn default() -> Self {
        Self::new(&SeverityConfig::default())
    }
}

impl SeverityConfig {
    /// Checks what the types cannot; the key at fault is under `severities`.
    pub fn validate(&self) -> Result<(), Problem> {
        if self.label.is_empty() {
            return Err(("severities.label".into(), "must not be empty".into()));
        }
        if self.levels.is_empty() {
            return Err(("severities.levels".into(), "give at least one level".into()));
        }
        let mut values: Vec<&str> = Vec::new();
        for (i, level) in self.levels.iter().enumerate() {
            let key = format!("severities.levels[{i}]");
            if level.name.trim().is_empty() {
                return Err((format!("{key}.name"), "must not be empty".into()));
            }
            if self.levels[..i].iter().any(|l| l.name == level.name) {
                return Err((
                    format!("{key}.name"),
                    format!("{:?} is named twice", level.name),
                ));
            }
            let own = if level.values.is_empty() {
                std::slice::from_ref(&level.name)
            } else {
                &level.values[..]
            };
            for value in own {
                if values.contains(&value.as_str()) {
                    return Err((
                        format!("{key}.values"),
                        format!("{value:?} belongs to an earlier level already"),
                    ));
                }
                values.push(value);
            }
            if level
                .updates_every
                .is_some_and(|d| d < Duration::from_secs(1))
            {
                return Err((format!("{key}.updates_every"), "must be at least 1s".into()));
            }
        }
        if let Some(unknown) = &self.unknown
            && !self.levels.iter().any(|l| &l.name == unknown)
        {
            return Err((
                "severities.unknown".into(),
                format!("no level is named {unknown:?}"),
            ));
        }
        Ok(())
    }
}

impl Severities {
    /// The scale of a checked configuration.
    pub fn new(config: &SeverityConfig) -> Self {
        let levels: Vec<Severity> = config
            .levels
            .iter()
            .enumerate()
            .map(|(rank, l)| Severity {
                name: l.name.clone(),
                rank,
                status: l.status,
                updates_every: l.updates_every,
            })
            .collect();
        let values = config
            .levels
            .iter()
            .enumerate()
            .flat_map(|(rank, l)| {
                let own = if l.values.is_empty() {
                    vec![l.name.clone()]
                } else {
                    l.values.clone()
                };
                own.into_iter().map(move |v| (v, rank))
            })
            .collect();
        let unknown = config
            .unknown
            .as_ref()
            .and_then(|name| levels.iter().position(|l| &l.name == name));
        Self {
            label: config.label.clone(),
            levels,
            values,
            unknown,
        }
    }

    /// The label read.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The level of a label value (`None`: the label is missing).
    pub fn of_value(&self, value: Option<&str>) -> Option<&Severity> {
        let rank = value
            .and_then(|v| self.values.iter().find(|(known, _)| known == v))
            .map(|(_, rank)| *rank)
            .or(self.unknown)?;
        self.levels.get(rank)
    }

    /// The level of an alert.
    pub fn of<L: Labels>(&self, labels: &L) -> Option<&Severity> {
        self.of_value(labels.label(&self.label))
    }

    /// A level by name.
    pub fn named(&self, name: &str) -> Option<&Severity> {
        self.levels.iter().find(|l| l.name == name)
    }

    /// The more severe of two.
    pub fn worst<'a>(a: Option<&'a Severity>, b: Option<&'a Severity>) -> Option<&'a Severity> {
        match (a, b) {
            (Some(a), Some(b)) => Some(if b.rank < a.rank { b } else { a }),
            (a, b) => a.or(b),
        }
    }

    /// Every level, most severe first.
    pub fn levels(&self) -> &[Severity] {
        &self.levels
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::payload::LabelSet;

    fn seed_scale() -> SeverityConfig {
        serde_yaml_ng_like(
            r"
label: severity
levels:
  - {name: P0, values: [critical, page], status: outage, updates_every: 15m}
  - {name: P1, values: [high], status: degraded, updates_every: 30m}
  - {name: P2, values: [warning], status: degraded}
  - {name: P3, values: [info], status: operational}
unknown: P2
",
        )
    }

    fn serde_yaml_ng_like(text: &str) -> SeverityConfig {
        mcpwatch_core::config::parse_yaml(text, std::path::Path::new("test.yml")).expect("parses")
    }

    #[test]
    fn values_map_to_the_operators_scale() {
        let config = seed_scale();
        config.validate().expect("valid");
        let scale = Severities::new(&config);
        let mut labels = LabelSet::new();
        labels.insert("severity".into(), "page".into());
        let p0 = scale.of(&labels).expect("a level");
        assert_eq!(
            (p0.name.as_str(), p0.rank, p0.status),
            ("P0", 0, ComponentState::Outage)
        );
        assert_eq!(p0.updates_every, Some(Duration::from_secs(900)));
        assert_eq!(
            scale.of_value(Some("nonsense")).map(|s| s.name.as_str()),
            Some("P2")
        );
        assert_eq!(scale.of_value(None).map(|s| s.name.as_str()), Some("P2"));
        let p3 = scale.of_value(Some("info"));
        assert_eq!(
            Severities::worst(p3, Some(p0)).map(|s| s.name.as_str()),
            Some("P0")
        );
        assert_eq!(
            Severities::worst(p3, None).map(|s| s.name.as_str()),
            Some("P3")
        );
    }

    #[test]
    fn the_default_is_critical_warning_info() {
        let scale = Severities::default();
        assert_eq!(
            scale.of_value(Some("critical")).map(|s| s.status),
            Some(ComponentState::Outage)
        );
        assert_eq!(
            scale.of_value(None).map(|s| s.name.as_str()),
            Some("warning")
        );
    }

    #[test]
    fn a_scale_that_cannot_work_is_refused_with_its_key() {
        let mut config = seed_scale();
        config.levels[2].values.push("page".into());
        assert_eq!(
            config.validate().expect_err("twice").0,
            "severities.levels[2].values"
        );
        let mut config = seed_scale();
        config.unknown = Some("P9".into());
        assert_eq!(
            config.validate().expect_err("unknown").0,
            "severities.unknown"
        );
        let mut config = seed_scale();
        config.levels[1].name = "P0".into();
        assert_eq!(
            config.validate().expect_err("named twice").0,
            "severities.levels[1].name"
        );
    }
}
