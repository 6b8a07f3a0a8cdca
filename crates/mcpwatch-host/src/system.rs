//! Load averages, uptime, boot time, process and thread counts, and what the host is.

use mcpwatch_core::MetricSink;
use sysinfo::System;

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

/// Counts processes from the entries of `/proc` (and threads from `/proc/loadavg`), which
/// costs one directory read instead of opening every process's files.
#[cfg(target_os = "linux")]
pub(crate) fn collect_process_count(
    _system: &mut System,
    sink: &mut MetricSink,
) -> Result<(), mcpwatch_core::CollectError> {
    let processes = std::fs::read_dir("/proc")
        .map_err(|e| mcpwatch_core::CollectError::from(e).context("listing /proc"))?
        .filter_map(Result::ok)
        .filter(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.bytes().all(|b| b.is_ascii_digit()))
        })
        .count();
    sink.gauge("host_processes", "Processes on the host.")
        .add(&[], processes as f64);
    // The fourth field is "runnable/total" scheduling entities, that is threads.
    if let Ok(loadavg) = std::fs::read_to_string("/proc/loadavg")
        && let Some(total) = loadavg
            .split_whitespace()
            .nth(3)
            .and_then(|f| f.split_once('/'))
            .and_then(|(_, total)| total.parse::<f64>().ok())
    {
        sink.gauge("host_threads", "Threads on the host.")
            .add(&[], total);
    }
    Ok(())
}

/// Counts processes from sysinfo's list.
#[cfg(not(target_os = "linux"))]
pub(crate) fn collect_process_count(
    system: &mut System,
    sink: &mut MetricSink,
) -> Result<(), mcpwatch_core::CollectError> {
    system.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::All,
        true,
        sysinfo::ProcessRefreshKind::nothing().without_tasks(),
    );
    sink.gauge("host_processes", "Processes on the host.")
        .add(&[], system.processes().len() as f64);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_load_uptime_and_processes() {
        let mut sink = MetricSink::default();
        collect(&HostInfo::read(), &mut sink);
        let mut system = System::new().expect("system");
        collect_process_count(&mut system, &mut sink).expect("processes");
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        assert!(value("host_load1").is_some_and(|l| l >= 0.0));
        assert!(value("host_uptime_seconds").is_some_and(|u| u > 0.0));
        assert!(value("host_boot_time_seconds").is_some_and(|b| b > 1.0e9));
        let processes = value("host_processes").expect("process count");
        assert!(processes >= 1.0, "this test process at least");
        #[cfg(target_os = "linux")]
        assert!(value("host_threads").is_some_and(|t| t >= processes));
    }
}
