//! OpenMetrics 1.0.0 through prometheus-client's encoder.
//!
//! The snapshot is handed to a `prometheus_client` registry as one collector; the crate then
//! writes descriptors, `# UNIT` lines, `_total`/`_info` suffixes and `# EOF`.

use std::borrow::Cow;
use std::fmt;
use std::sync::Arc;

use prometheus_client::collector::Collector as PromCollector;
use prometheus_client::encoding::{DescriptorEncoder, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::{Registry, Unit};

use crate::metrics::{FamilyGroup, MetricKind, SampleValue};

/// Appends `groups` to `out` in the OpenMetrics text format, ending with `# EOF`.
pub fn encode_openmetrics(groups: &Arc<[FamilyGroup]>, out: &mut String) {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Snapshot(groups.clone())));
    // Writing into a String cannot fail; a family that cannot be encoded is a bug caught by
    // the tests that parse this output.
    if prometheus_client::encoding::text::encode(out, &registry).is_err() {
        tracing::error!("OpenMetrics encoding failed");
    }
}

#[derive(Debug)]
struct Snapshot(Arc<[FamilyGroup]>);

impl PromCollector for Snapshot {
    fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> Result<(), fmt::Error> {
        for group in self.0.iter() {
            let (base, unit) = split_name(group.name(), group.kind());
            let help = escape_help(group.help());
            let metric_type = match group.kind() {
                MetricKind::Gauge => MetricType::Gauge,
                MetricKind::Counter => MetricType::Counter,
                MetricKind::Info => MetricType::Info,
                MetricKind::Histogram => MetricType::Histogram,
                MetricKind::Unknown => MetricType::Unknown,
            };
            let mut metric = encoder.encode_descriptor(base, &help, unit.as_ref(), metric_type)?;
            for family in group.members() {
                for sample in family.samples() {
                    let labels = (family.const_labels(), sample.labels.as_slice());
                    if let (SampleValue::Number(_), MetricKind::Info) =
                        (&sample.value, group.kind())
                    {
                        metric.encode_info(&labels)?;
                    } else if labels.0.is_empty() && labels.1.is_empty() {
                        // Without labels the sample is written bare, not with `{}`.
                        encode_value(&mut metric, &sample.value, group.kind())?;
                    } else {
                        let mut labelled = metric.encode_family(&labels)?;
                        encode_value(&mut labelled, &sample.value, group.kind())?;
                    }
                }
            }
        }
        Ok(())
    }
}

fn encode_value(
    metric: &mut MetricEncoder<'_>,
    value: &SampleValue,
    kind: MetricKind,
) -> Result<(), fmt::Error> {
    match (value, kind) {
        (SampleValue::Number(v), MetricKind::Counter) => {
            metric.encode_counter::<NoLabelSet, f64, f64>(v, None)
        }
        (SampleValue::Number(v), _) => metric.encode_gauge(v),
        (SampleValue::Histogram(h), _) => {
            metric.encode_histogram::<NoLabelSet>(h.sum, h.count, &h.buckets, None)
        }
    }
}

/// Splits a full name into the OpenMetrics family name and its unit: `_total` and `_info`
/// are sample suffixes, and a unit suffix becomes a `# UNIT` line.
fn split_name(name: &str, kind: MetricKind) -> (&str, Option<Unit>) {
    let base = match kind {
        MetricKind::Counter => name.strip_suffix("_total").unwrap_or(name),
        MetricKind::Info => return (name.strip_suffix("_info").unwrap_or(name), None),
        MetricKind::Gauge | MetricKind::Histogram | MetricKind::Unknown => name,
    };
    let unit = if let Some(b) = base.strip_suffix("_seconds") {
        Some((b, Unit::Seconds))
    } else if let Some(b) = base.strip_suffix("_bytes") {
        Some((b, Unit::Bytes))
    } else if let Some(b) = base.strip_suffix("_ratio") {
        Some((b, Unit::Other("ratio".to_owned())))
    } else {
        base.strip_suffix("_celsius").map(|b| (b, Unit::Celsius))
    };
    match unit {
        Some((stripped, unit)) => (stripped, Some(unit)),
        None => (base, None),
    }
}

fn escape_help(help: &str) -> Cow<'_, str> {
    if !help.contains(['\\', '\n', '"']) {
        return Cow::Borrowed(help);
    }
    let mut out = String::with_capacity(help.len() + 8);
    for c in help.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '"' => out.push_str("\\\""),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{HistogramValue, MetricFamily, merge_families};

    fn encode(families: Vec<MetricFamily>) -> String {
        let (groups, _) = merge_families(families);
        let mut out = String::new();
        encode_openmetrics(&Arc::from(groups), &mut out);
        out
    }

    #[test]
    fn counters_carry_unit_and_total_suffix() {
        let mut f = MetricFamily::counter("host_cpu_seconds_total", "CPU time.");
        f.add(&[("mode", "idle")], 2.0);
        assert_eq!(
            encode(vec![f]),
            "# HELP host_cpu_seconds CPU time.\n\
             # TYPE host_cpu_seconds counter\n\
             # UNIT host_cpu_seconds seconds\n\
             host_cpu_seconds_total{mode=\"idle\"} 2.0\n\
             # EOF\n"
        );
    }

    #[test]
    fn info_and_histogram() {
        let mut info = MetricFamily::info("mcpwatch_build_info", "Build.");
        info.add(&[("version", "1.0")], 1.0);
        let mut h = MetricFamily::histogram("lat_seconds", "Latency \"quoted\".");
        h.add_histogram(
            &[],
            HistogramValue {
                buckets: vec![(1.0, 1), (f64::INFINITY, 1)],
                sum: 3.0,
                count: 2,
            },
        );
        let text = encode(vec![info, h]);
        assert!(
            text.contains("# TYPE mcpwatch_build info\nmcpwatch_build_info{version=\"1.0\"} 1\n")
        );
        assert!(text.contains("# HELP lat_seconds Latency \\\"quoted\\\".\n"));
        assert!(text.contains("lat_seconds_bucket{le=\"+Inf\"} 2\n"));
        assert!(text.ends_with("# EOF\n"));
    }

    #[test]
    fn unit_split() {
        let split = |name, kind| {
            let (base, unit) = split_name(name, kind);
            (base, unit.map(|u| u.as_str().to_owned()))
        };
        assert_eq!(
            split("a_bytes", MetricKind::Gauge),
            ("a", Some("bytes".into()))
        );
        assert_eq!(
            split("a_seconds_total", MetricKind::Counter),
            ("a", Some("seconds".into()))
        );
        assert_eq!(split("a_info", MetricKind::Info), ("a", None));
        assert_eq!(split("a_total", MetricKind::Counter), ("a", None));
        assert_eq!(split("up", MetricKind::Gauge), ("up", None));
    }
}
