//! Pressure stall information from `/proc/pressure/{cpu,memory,io}`: the time tasks waited
//! for a resource (`some`) and the time every non-idle task was stalled on it at once
//! (`full`), as counters in seconds.
//!
//! A kernel built without PSI, older than 4.20 or booted with `psi=0` has no such files (or
//! refuses to read them): the area then reports nothing, which is not a failure.

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};

use crate::procfs::Procfs;

/// Each resource and its file under the procfs root.
const RESOURCES: [(&str, &str); 3] = [
    ("cpu", "pressure/cpu"),
    ("memory", "pressure/memory"),
    ("io", "pressure/io"),
];

pub(crate) fn collect(procfs: &mut Procfs, sink: &mut MetricSink) -> Result<(), CollectError> {
    let mut waiting = MetricFamily::counter(
        "host_pressure_waiting_seconds_total",
        "Seconds in which at least one task waited for the resource (PSI \"some\").",
    );
    let mut stalled = MetricFamily::counter(
        "host_pressure_stalled_seconds_total",
        "Seconds in which every non-idle task was stalled on the resource at once (PSI \
         \"full\").",
    );
    let mut provided = false;
    for (resource, file) in RESOURCES {
        let Some(text) = procfs.read_if_provided(file)? else {
            continue;
        };
        provided = true;
        for line in text.lines() {
            let Some((kind, total)) = parse_line(line) else {
                continue;
            };
            let labels = [("resource", resource)];
            match kind {
                "some" => {
                    waiting.add(&labels, total);
                }
                // The kernel writes a "full" line for cpu since 5.13, always 0: it is not
                // defined for the whole system.
                "full" if resource != "cpu" => {
                    stalled.add(&labels, total);
                }
                _ => {}
            }
        }
    }
    if !provided {
        tracing::debug!(
            root = %procfs.root().display(),
            "No pressure stall information: the kernel does not provide it."
        );
    }
    sink.family(waiting);
    sink.family(stalled);
    Ok(())
}

/// "some avg10=0.00 avg60=0.00 avg300=0.00 total=12345": the kind and the total, given in
/// microseconds, in seconds.
fn parse_line(line: &str) -> Option<(&str, f64)> {
    let mut words = line.split_whitespace();
    let kind = words.next()?;
    let total = words.find_map(|w| w.strip_prefix("total="))?;
    Some((kind, total.parse::<u64>().ok()? as f64 / 1_000_000.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_some_and_full_and_tolerates_absence() {
        let dir = tempfile::tempdir().expect("tempdir");
        let pressure = dir.path().join("pressure");
        std::fs::create_dir(&pressure).expect("mkdir");
        std::fs::write(
            pressure.join("cpu"),
            "some avg10=98.12 avg60=76.71 avg300=27.47 total=98384168\n\
             full avg10=0.00 avg60=0.00 avg300=0.00 total=0\n",
        )
        .expect("write");
        std::fs::write(
            pressure.join("io"),
            "some avg10=2.41 avg60=2.30 avg300=1.13 total=5912293\n\
             full avg10=0.00 avg60=0.14 avg300=0.34 total=2766217\n",
        )
        .expect("write");
        let mut procfs = Procfs::new(dir.path());
        let mut sink = MetricSink::default();
        collect(&mut procfs, &mut sink).expect("collect");
        let value = |name: &str, resource: &str| {
            sink.find(name)
                .and_then(|f| f.value(&[("resource", resource)]))
        };
        assert_eq!(
            value("host_pressure_waiting_seconds_total", "cpu"),
            Some(98.384168)
        );
        assert_eq!(value("host_pressure_stalled_seconds_total", "cpu"), None);
        assert_eq!(
            value("host_pressure_waiting_seconds_total", "io"),
            Some(5.912293)
        );
        assert_eq!(
            value("host_pressure_stalled_seconds_total", "io"),
            Some(2.766217)
        );
        // No memory file: that resource is left out.
        assert_eq!(value("host_pressure_waiting_seconds_total", "memory"), None);

        // No pressure directory at all: nothing, and no failure.
        let empty = tempfile::tempdir().expect("tempdir");
        let mut sink = MetricSink::default();
        collect(&mut Procfs::new(empty.path()), &mut sink).expect("not available");
        assert!(sink.families().iter().all(|f| f.is_empty()));
    }
}
