//! The snapshot model: metric families gathered by a collector before anything is encoded.
//!
//! A collector fills a [`MetricSink`] with [`MetricFamily`] values. Names are written in
//! full, the way they appear in the classic text format (`host_cpu_seconds_total`,
//! `mcpwatch_build_info`); the OpenMetrics encoder derives the family name and unit from
//! them. Histograms keep per-bucket (non-cumulative) counts, as prometheus-client does.

use std::borrow::Cow;
use std::sync::Arc;

/// A label: a static or owned name and an owned value.
pub type Label = (Cow<'static, str>, String);

/// Labels shared by every sample of a family, such as `target="main"`.
pub type ConstLabels = Arc<[Label]>;

/// The type of a metric family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetricKind {
    /// A value that can go up and down.
    Gauge,
    /// A monotonically increasing value; the name ends in `_total`.
    Counter,
    /// Labels describing the target; the name ends in `_info`, every value is 1.
    Info,
    /// Observations counted in buckets; the name has no suffix.
    Histogram,
    /// A value of unknown type (`untyped` in the classic format).
    Unknown,
}

/// A histogram sample: per-bucket counts, ascending by upper bound, the last one `+Inf`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistogramValue {
    /// `(upper bound, observations in this bucket only)`.
    pub buckets: Vec<(f64, u64)>,
    /// Sum of all observations.
    pub sum: f64,
    /// Number of observations.
    pub count: u64,
}

/// The value of one sample.
#[derive(Debug, Clone, PartialEq)]
pub enum SampleValue {
    /// A gauge, counter, info or unknown value.
    Number(f64),
    /// A histogram.
    Histogram(Box<HistogramValue>),
}

/// One series of a family: its own labels and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// Labels of this series, after the family's constant labels.
    pub labels: Vec<Label>,
    /// The value.
    pub value: SampleValue,
}

/// A metric family: name, help, type, and its samples.
#[derive(Debug, Clone)]
pub struct MetricFamily {
    name: Cow<'static, str>,
    help: Cow<'static, str>,
    kind: MetricKind,
    const_labels: ConstLabels,
    samples: Vec<Sample>,
}

impl MetricFamily {
    /// A family of the given kind. The name must be a valid metric name; a counter's ends in
    /// `_total`, an info's in `_info`.
    pub fn new(
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
        kind: MetricKind,
    ) -> Self {
        let name = name.into();
        debug_assert!(is_valid_metric_name(&name), "invalid metric name {name:?}");
        debug_assert!(
            kind != MetricKind::Counter || name.ends_with("_total"),
            "counter {name:?} must end in _total"
        );
        debug_assert!(
            kind != MetricKind::Info || name.ends_with("_info"),
            "info {name:?} must end in _info"
        );
        Self {
            name,
            help: help.into(),
            kind,
            const_labels: Arc::from([]),
            samples: Vec::new(),
        }
    }

    /// A gauge family.
    pub fn gauge(name: impl Into<Cow<'static, str>>, help: impl Into<Cow<'static, str>>) -> Self {
        Self::new(name, help, MetricKind::Gauge)
    }

    /// A counter family; `name` ends in `_total`.
    pub fn counter(name: impl Into<Cow<'static, str>>, help: impl Into<Cow<'static, str>>) -> Self {
        Self::new(name, help, MetricKind::Counter)
    }

    /// An info family; `name` ends in `_info`.
    pub fn info(name: impl Into<Cow<'static, str>>, help: impl Into<Cow<'static, str>>) -> Self {
        Self::new(name, help, MetricKind::Info)
    }

    /// A histogram family.
    pub fn histogram(
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self::new(name, help, MetricKind::Histogram)
    }

    /// Sets the labels every sample of this family carries before its own.
    pub fn with_const_labels(mut self, labels: ConstLabels) -> Self {
        self.const_labels = labels;
        self
    }

    /// Adds a sample with static label names.
    pub fn add(&mut self, labels: &[(&'static str, &str)], value: f64) -> &mut Self {
        self.samples.push(Sample {
            labels: static_labels(labels),
            value: SampleValue::Number(value),
        });
        self
    }

    /// Adds a sample whose labels are already owned.
    pub fn add_labels(&mut self, labels: Vec<Label>, value: SampleValue) -> &mut Self {
        debug_assert!(
            matches!(value, SampleValue::Histogram(_)) == (self.kind == MetricKind::Histogram),
            "sample value does not fit family {}",
            self.name
        );
        self.samples.push(Sample { labels, value });
        self
    }

    /// Adds a histogram sample with static label names.
    pub fn add_histogram(
        &mut self,
        labels: &[(&'static str, &str)],
        value: HistogramValue,
    ) -> &mut Self {
        self.add_labels(
            static_labels(labels),
            SampleValue::Histogram(Box::new(value)),
        )
    }

    /// Replaces the value of every sample, as when a value written early ("down") turns
    /// out otherwise.
    pub fn set_all(&mut self, value: f64) {
        for sample in &mut self.samples {
            sample.value = SampleValue::Number(value);
        }
    }

    /// The full name, as in the classic format.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The help text.
    pub fn help(&self) -> &str {
        &self.help
    }

    /// The type.
    pub fn kind(&self) -> MetricKind {
        self.kind
    }

    /// Labels shared by every sample.
    pub fn const_labels(&self) -> &[Label] {
        &self.const_labels
    }

    /// The samples.
    pub fn samples(&self) -> &[Sample] {
        &self.samples
    }

    /// Whether the family has no sample.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The value of the first sample whose labels include all of `labels`; for tests and
    /// for code that reads back a snapshot.
    pub fn value(&self, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples.iter().find_map(|s| {
            let all = labels.iter().all(|(k, v)| {
                self.const_labels
                    .iter()
                    .chain(&s.labels)
                    .any(|(lk, lv)| lk == k && lv == v)
            });
            match (&s.value, all) {
                (SampleValue::Number(n), true) => Some(*n),
                _ => None,
            }
        })
    }
}

fn static_labels(labels: &[(&'static str, &str)]) -> Vec<Label> {
    labels
        .iter()
        .map(|(k, v)| (Cow::Borrowed(*k), (*v).to_owned()))
        .collect()
}

/// Whether `name` matches `[a-zA-Z_:][a-zA-Z0-9_:]*`.
pub fn is_valid_metric_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_' | b':'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':')
}

/// Whether `name` matches `[a-zA-Z_][a-zA-Z0-9_]*` and is not reserved (`__` prefix).
pub fn is_valid_label_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    !name.starts_with("__")
        && matches!(bytes.next(), Some(b'a'..=b'z' | b'A'..=b'Z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Where a collector puts what it gathered. Every family it creates carries the sink's
/// constant labels (a configured target's `target="<name>"`).
#[derive(Debug, Default)]
pub struct MetricSink {
    const_labels: Option<ConstLabels>,
    families: Vec<MetricFamily>,
}

impl MetricSink {
    /// A sink whose families carry `const_labels`.
    pub fn new(const_labels: ConstLabels) -> Self {
        Self {
            const_labels: (!const_labels.is_empty()).then_some(const_labels),
            families: Vec::new(),
        }
    }

    /// Adds a family and returns it for its samples to be added.
    pub fn family(&mut self, family: MetricFamily) -> &mut MetricFamily {
        let family = match &self.const_labels {
            Some(labels) => family.with_const_labels(labels.clone()),
            None => family,
        };
        self.families.push(family);
        let last = self.families.len() - 1;
        &mut self.families[last]
    }

    /// Adds a gauge family.
    pub fn gauge(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
    ) -> &mut MetricFamily {
        self.family(MetricFamily::gauge(name, help))
    }

    /// Adds a counter family; `name` ends in `_total`.
    pub fn counter(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
    ) -> &mut MetricFamily {
        self.family(MetricFamily::counter(name, help))
    }

    /// Adds an info family; `name` ends in `_info`.
    pub fn info(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
    ) -> &mut MetricFamily {
        self.family(MetricFamily::info(name, help))
    }

    /// Adds a histogram family.
    pub fn histogram(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        help: impl Into<Cow<'static, str>>,
    ) -> &mut MetricFamily {
        self.family(MetricFamily::histogram(name, help))
    }

    /// Moves every family of `other` into this sink, giving them this sink's constant
    /// labels; for collectors that gather parts of a scrape on other threads.
    pub fn append(&mut self, other: MetricSink) {
        for family in other.families {
            self.family(family);
        }
    }

    /// The families gathered so far.
    pub fn families(&self) -> &[MetricFamily] {
        &self.families
    }

    /// Takes the families out.
    pub fn into_families(self) -> Vec<MetricFamily> {
        self.families
    }

    /// The first family named `name`.
    pub fn find(&self, name: &str) -> Option<&MetricFamily> {
        self.families.iter().find(|f| f.name() == name)
    }

    /// The first family named `name`, to change.
    pub fn find_mut(&mut self, name: &str) -> Option<&mut MetricFamily> {
        self.families.iter_mut().find(|f| f.name() == name)
    }
}

/// Sorts families by name and merges those of the same name (the same metric from several
/// targets) so that each name is described once. A family whose type disagrees with the first
/// of its name is dropped and returned in `conflicts`.
pub fn merge_families(mut families: Vec<MetricFamily>) -> (Vec<FamilyGroup>, Vec<MetricFamily>) {
    families.retain(|f| !f.is_empty());
    families.sort_by(|a, b| a.name.cmp(&b.name));
    let mut groups: Vec<FamilyGroup> = Vec::new();
    let mut conflicts = Vec::new();
    for family in families {
        match groups.last_mut() {
            Some(group) if group.name() == family.name() => {
                if group.kind() == family.kind() {
                    group.members.push(family);
                } else {
                    conflicts.push(family);
                }
            }
            _ => groups.push(FamilyGroup {
                members: vec![family],
            }),
        }
    }
    (groups, conflicts)
}

/// Families of one name, described once in the exposition.
#[derive(Debug, Clone)]
pub struct FamilyGroup {
    members: Vec<MetricFamily>,
}

impl FamilyGroup {
    /// The families; all share a name and type.
    pub fn members(&self) -> &[MetricFamily] {
        &self.members
    }

    /// The shared name.
    pub fn name(&self) -> &str {
        self.members[0].name()
    }

    /// The help text of the first member.
    pub fn help(&self) -> &str {
        self.members[0].help()
    }

    /// The shared type.
    pub fn kind(&self) -> MetricKind {
        self.members[0].kind()
    }

    /// Number of series (histograms count once).
    pub fn series(&self) -> usize {
        self.members.iter().map(|m| m.samples.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_validated() {
        assert!(is_valid_metric_name("host_cpu_seconds_total"));
        assert!(is_valid_metric_name("a:b"));
        assert!(!is_valid_metric_name("1abc"));
        assert!(!is_valid_metric_name("a-b"));
        assert!(!is_valid_metric_name(""));
        assert!(is_valid_label_name("target"));
        assert!(!is_valid_label_name("__name__"));
        assert!(!is_valid_label_name("a:b"));
    }

    #[test]
    fn sink_applies_const_labels() {
        let mut sink = MetricSink::new(Arc::from([("target".into(), "main".to_owned())]));
        sink.gauge("pg_up", "Whether the server answered.")
            .add(&[], 1.0);
        let family = sink.find("pg_up").expect("family");
        assert_eq!(family.const_labels()[0].1, "main");
        assert_eq!(family.value(&[("target", "main")]), Some(1.0));
        assert_eq!(family.value(&[("target", "other")]), None);
    }

    #[test]
    fn merge_groups_by_name_and_drops_conflicts() {
        let mut a = MetricFamily::gauge("x", "X.");
        a.add(&[("target", "a")], 1.0);
        let mut b = MetricFamily::gauge("x", "X.");
        b.add(&[("target", "b")], 2.0);
        let mut c = MetricFamily::counter("x_total", "C.");
        c.add(&[], 1.0);
        let mut d = MetricFamily::new("x", "clash", MetricKind::Unknown);
        d.add(&[], 3.0);
        let empty = MetricFamily::gauge("empty", "Nothing.");
        let (groups, conflicts) = merge_families(vec![c, b, empty, a, d]);
        let names: Vec<_> = groups.iter().map(|g| g.name()).collect();
        assert_eq!(names, ["x", "x_total"]);
        assert_eq!(groups[0].series(), 2);
        assert_eq!(conflicts.len(), 1);
    }
}
