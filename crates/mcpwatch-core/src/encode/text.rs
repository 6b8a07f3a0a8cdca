//! The classic Prometheus text format, version 0.0.4.
//!
//! prometheus-client only writes OpenMetrics, and `promtool check metrics` only reads this
//! format, so it is written here, byte by byte, without intermediate strings.

use crate::metrics::{FamilyGroup, HistogramValue, Label, MetricKind, SampleValue};

/// Appends `groups` to `out` in the text format 0.0.4.
pub fn encode_text(groups: &[FamilyGroup], out: &mut Vec<u8>) {
    for group in groups {
        let name = group.name().as_bytes();
        out.extend_from_slice(b"# HELP ");
        out.extend_from_slice(name);
        out.push(b' ');
        escape_help(group.help(), out);
        out.extend_from_slice(b"\n# TYPE ");
        out.extend_from_slice(name);
        out.extend_from_slice(match group.kind() {
            MetricKind::Gauge | MetricKind::Info => b" gauge\n",
            MetricKind::Counter => b" counter\n",
            MetricKind::Histogram => b" histogram\n",
            MetricKind::Unknown => b" untyped\n",
        });
        for family in group.members() {
            let consts = family.const_labels();
            for sample in family.samples() {
                match &sample.value {
                    SampleValue::Number(value) => {
                        out.extend_from_slice(name);
                        write_labels(consts, &sample.labels, None, out);
                        out.push(b' ');
                        write_f64(*value, out);
                        out.push(b'\n');
                    }
                    SampleValue::Histogram(h) => {
                        write_histogram(name, consts, &sample.labels, h, out);
                    }
                }
            }
        }
    }
}

fn write_histogram(
    name: &[u8],
    consts: &[Label],
    labels: &[Label],
    h: &HistogramValue,
    out: &mut Vec<u8>,
) {
    let mut cumulative = 0_u64;
    let mut le = ryu::Buffer::new();
    for (upper, count) in &h.buckets {
        cumulative += count;
        out.extend_from_slice(name);
        out.extend_from_slice(b"_bucket");
        let bound = if upper.is_infinite() {
            "+Inf"
        } else if upper.fract() == 0.0 && upper.abs() < 1e15 {
            // Integral bounds are written as Go does ("1", not "1.0").
            let s = le.format(*upper);
            s.strip_suffix(".0").unwrap_or(s)
        } else {
            le.format(*upper)
        };
        write_labels(consts, labels, Some(bound), out);
        out.push(b' ');
        out.extend_from_slice(itoa::Buffer::new().format(cumulative).as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(name);
    out.extend_from_slice(b"_sum");
    write_labels(consts, labels, None, out);
    out.push(b' ');
    write_f64(h.sum, out);
    out.push(b'\n');
    out.extend_from_slice(name);
    out.extend_from_slice(b"_count");
    write_labels(consts, labels, None, out);
    out.push(b' ');
    out.extend_from_slice(itoa::Buffer::new().format(h.count).as_bytes());
    out.push(b'\n');
}

fn write_labels(consts: &[Label], labels: &[Label], le: Option<&str>, out: &mut Vec<u8>) {
    if consts.is_empty() && labels.is_empty() && le.is_none() {
        return;
    }
    out.push(b'{');
    let mut first = true;
    let pairs = consts
        .iter()
        .chain(labels)
        .map(|(k, v)| (k.as_ref(), v.as_str()))
        .chain(le.map(|le| ("le", le)));
    for (key, value) in pairs {
        if !first {
            out.push(b',');
        }
        first = false;
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(b"=\"");
        escape_label_value(value, out);
        out.push(b'"');
    }
    out.push(b'}');
}

fn escape_label_value(value: &str, out: &mut Vec<u8>) {
    if !value.bytes().any(|b| matches!(b, b'\\' | b'"' | b'\n')) {
        out.extend_from_slice(value.as_bytes());
        return;
    }
    for b in value.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'"' => out.extend_from_slice(b"\\\""),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

fn escape_help(help: &str, out: &mut Vec<u8>) {
    for b in help.bytes() {
        match b {
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\n' => out.extend_from_slice(b"\\n"),
            _ => out.push(b),
        }
    }
}

/// Writes a sample value: integers without a fraction, `NaN`, `+Inf`, `-Inf`, else the
/// shortest representation that reads back to the same float.
pub(crate) fn write_f64(value: f64, out: &mut Vec<u8>) {
    if value.is_nan() {
        out.extend_from_slice(b"NaN");
    } else if value.is_infinite() {
        out.extend_from_slice(if value > 0.0 { b"+Inf" } else { b"-Inf" });
    } else if value.fract() == 0.0 && value.abs() < 1e15 {
        // The cast is exact: the value is integral and well inside i64.
        out.extend_from_slice(itoa::Buffer::new().format(value as i64).as_bytes());
    } else {
        out.extend_from_slice(ryu::Buffer::new().format_finite(value).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::{MetricFamily, merge_families};
    use std::sync::Arc;

    fn encode(families: Vec<MetricFamily>) -> String {
        let (groups, _) = merge_families(families);
        let mut out = Vec::new();
        encode_text(&groups, &mut out);
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn writes_help_type_and_samples() {
        let mut f = MetricFamily::counter("host_cpu_seconds_total", "CPU time\\spent\nby mode.");
        f.add(&[("cpu", "0"), ("mode", "user")], 12.5);
        let text = encode(vec![f]);
        assert_eq!(
            text,
            "# HELP host_cpu_seconds_total CPU time\\\\spent\\nby mode.\n\
             # TYPE host_cpu_seconds_total counter\n\
             host_cpu_seconds_total{cpu=\"0\",mode=\"user\"} 12.5\n"
        );
    }

    #[test]
    fn escapes_label_values_and_prefixes_const_labels() {
        let consts: Arc<[Label]> = Arc::from([("target".into(), "a\"b".to_owned())]);
        let mut f = MetricFamily::gauge("x", "X.").with_const_labels(consts);
        f.add(&[("path", "C:\\dir\nnext")], 1.0);
        assert!(encode(vec![f]).contains("x{target=\"a\\\"b\",path=\"C:\\\\dir\\nnext\"} 1\n"));
    }

    #[test]
    fn writes_special_values() {
        let mut out = Vec::new();
        for v in [
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
            3.0,
            -2.0,
            0.25,
            1e20,
            1.5e-9,
        ] {
            write_f64(v, &mut out);
            out.push(b' ');
        }
        assert_eq!(
            String::from_utf8(out).expect("utf-8"),
            "NaN +Inf -Inf 3 -2 0.25 1e20 1.5e-9 "
        );
    }

    #[test]
    fn writes_cumulative_histogram_buckets() {
        let mut f = MetricFamily::histogram("req_duration_seconds", "Latency.");
        f.add_histogram(
            &[("tool", "search")],
            HistogramValue {
                buckets: vec![(0.1, 2), (1.0, 3), (f64::INFINITY, 1)],
                sum: 2.5,
                count: 6,
            },
        );
        let text = encode(vec![f]);
        assert!(text.contains("# TYPE req_duration_seconds histogram\n"));
        assert!(text.contains("req_duration_seconds_bucket{tool=\"search\",le=\"0.1\"} 2\n"));
        assert!(text.contains("req_duration_seconds_bucket{tool=\"search\",le=\"1\"} 5\n"));
        assert!(text.contains("req_duration_seconds_bucket{tool=\"search\",le=\"+Inf\"} 6\n"));
        assert!(text.contains("req_duration_seconds_sum{tool=\"search\"} 2.5\n"));
        assert!(text.contains("req_duration_seconds_count{tool=\"search\"} 6\n"));
    }

    #[test]
    fn merged_families_share_one_header() {
        let mut a = MetricFamily::gauge("pg_up", "Up.");
        a.add(&[("target", "a")], 1.0);
        let mut b = MetricFamily::gauge("pg_up", "Up.");
        b.add(&[("target", "b")], 0.0);
        let text = encode(vec![a, b]);
        assert_eq!(text.matches("# TYPE pg_up").count(), 1);
        assert!(text.contains("pg_up{target=\"a\"} 1\npg_up{target=\"b\"} 0\n"));
    }

    #[test]
    fn info_is_a_gauge() {
        let mut f = MetricFamily::info("mcpwatch_build_info", "Build.");
        f.add(&[("version", "0.1.0")], 1.0);
        assert!(encode(vec![f]).contains("# TYPE mcpwatch_build_info gauge\n"));
    }
}
