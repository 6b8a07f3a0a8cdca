//! Load averages, uptime, boot time, processes by state, and what the host is.

use mcpwatch_core::MetricSink;
use sysinfo::{ProcessStatus, System};

/// Process states reported, each always present so that series do not come and go.
const STATES: [&str; 6] = [
    "running",
    "sleeping",
    "disk_sleep",
    "stopped",
    "zombie",
    "other",
];

fn state_index(status: ProcessStatus) -> usize {
    match status {
        ProcessStatus::Run | ProcessStatus::Waking => 0,
        ProcessStatus::Sleep | ProcessStatus::Idle | ProcessStatus::Parked => 1,
        ProcessStatus::UninterruptibleDiskSleep => 2,
        ProcessStatus::Stop | ProcessStatus::Tracing | ProcessStatus::Suspended => 3,
        ProcessStatus::Zombie | ProcessStatus::Dead => 4,
        _ => 5,
    }
}

/// Labels of `host_info`, read once: they do not change while the collector runs.
#[derive(Debug, Clone)]
pub(crate) struct HostInfo {
    hostname: String,
    os: String,
    kernel: String,
    arch: String,
}

impl HostInfo {
    pub(crate) fn read() -> Self {
        Self {
            hostname: System::host_name().unwrap_or_default(),
            os: System::long_os_version().unwrap_or_default(),
            kernel: System::kernel_version().unwrap_or_default(),
            arch: System::cpu_arch(),
        }
    }
}

pub(crate) fn collect(info: &HostInfo, sink: &mut MetricSink) {
    sink.info("host_info", "What the host is, always 1.").add(
        &[
            ("hostname", &info.hostname),
            ("os", &info.os),
            ("kernel", &info.kernel),
            ("arch", &info.arch),
        ],
        1.0,
    );
    if let Ok(load) = System::load_average() {
        sink.gauge("host_load1", "Load average over 1 minute.")
            .add(&[], load.one);
        sink.gauge("host_load5", "Load average over 5 minutes.")
            .add(&[], load.five);
        sink.gauge("host_load15", "Load average over 15 minutes.")
            .add(&[], load.fifteen);
    }
    if let Ok(uptime) = System::uptime() {
        sink.gauge("host_uptime_seconds", "Seconds since the host booted.")
            .add(&[], uptime as f64);
    }
    if let Ok(boot) = System::boot_time() {
        sink.gauge(
            "host_boot_time_seconds",
            "When the host booted, in seconds since the epoch.",
        )
        .add(&[], boot as f64);
    }
}

/// Counts the processes in `system` (refreshed by the caller) by state.
pub(crate) fn collect_process_states(system: &System, sink: &mut MetricSink) {
    let mut counts = [0_u64; STATES.len()];
    for process in system.processes().values() {
        counts[state_index(process.status())] += 1;
    }
    let family = sink.gauge("host_processes", "Processes by state.");
    for (state, count) in STATES.iter().zip(counts) {
        family.add(&[("state", state)], count as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sysinfo::{ProcessRefreshKind, ProcessesToUpdate};

    #[test]
    fn reports_load_uptime_and_processes() {
        let mut sink = MetricSink::default();
        collect(&HostInfo::read(), &mut sink);
        let value = |sink: &MetricSink, name| sink.find(name).and_then(|f| f.value(&[]));
        assert!(value(&sink, "host_load1").is_some_and(|l| l >= 0.0));
        assert!(value(&sink, "host_uptime_seconds").is_some_and(|u| u > 0.0));
        assert!(value(&sink, "host_boot_time_seconds").is_some_and(|b| b > 1.0e9));

        let mut system = System::new().expect("system");
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            ProcessRefreshKind::nothing().without_tasks(),
        );
        let mut sink = MetricSink::default();
        collect_process_states(&system, &mut sink);
        let family = sink.find("host_processes").expect("family");
        let total: f64 = family
            .samples()
            .iter()
            .map(|s| match s.value {
                mcpwatch_core::metrics::SampleValue::Number(v) => v,
                mcpwatch_core::metrics::SampleValue::Histogram(_) => 0.0,
            })
            .sum();
        assert!(total >= 1.0, "this test process at least");
        assert_eq!(family.samples().len(), STATES.len());
    }
}
