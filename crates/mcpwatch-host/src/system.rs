//! Load averages, uptime, boot time, process and thread counts, and what the host is.

use mcpwatch_core::{CollectError, MetricSink};
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

/// Reports `host_info`, the load averages, the uptime and the process and thread counts.
/// On Linux each comes from one read of `/proc/loadavg`, `/proc/uptime` and the listing of
/// `/proc` (the boot time comes with `/proc/stat`, in the cpu area).
#[cfg(target_os = "linux")]
pub(crate) fn collect(
    info: &HostInfo,
    procfs: &mut crate::procfs::Procfs,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    write_info(info, sink);
    // "0.52 0.58 0.59 2/1234 5678": three loads, then runnable/total scheduling entities,
    // that is threads.
    let loadavg = procfs.read("loadavg")?;
    let fields: Vec<&str> = loadavg.split_whitespace().take(4).collect();
    let load = |i: usize| fields.get(i).and_then(|f| f.parse::<f64>().ok());
    let loads = [load(0), load(1), load(2)];
    let threads = fields
        .get(3)
        .and_then(|f| f.split_once('/'))
        .and_then(|(_, total)| total.parse::<f64>().ok());
    write_loads(loads, sink);
    if let Some(threads) = threads {
        sink.gauge("host_threads", "Threads on the host.")
            .add(&[], threads);
    }
    let uptime = procfs
        .read("uptime")?
        .split_whitespace()
        .next()
        .and_then(|f| f.parse::<f64>().ok());
    if let Some(uptime) = uptime {
        sink.gauge("host_uptime_seconds", "Seconds since the host booted.")
            .add(&[], uptime);
    }
    // One directory read instead of opening every process's files.
    let processes = std::fs::read_dir(procfs.root())
        .map_err(|e| {
            CollectError::from(e).context(format_args!("listing {}", procfs.root().display()))
        })?
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
    Ok(())
}

/// Reports `host_info`, the load averages, uptime, boot time and the process count from
/// sysinfo.
#[cfg(not(target_os = "linux"))]
pub(crate) fn collect(
    info: &HostInfo,
    system: &mut System,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    write_info(info, sink);
    if let Ok(load) = System::load_average() {
        write_loads([Some(load.one), Some(load.five), Some(load.fifteen)], sink);
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
    system.refresh_processes_specifics(
        sysinfo::ProcessesToUpdate::All,
        true,
        sysinfo::ProcessRefreshKind::nothing().without_tasks(),
    );
    sink.gauge("host_processes", "Processes on the host.")
        .add(&[], system.processes().len() as f64);
    Ok(())
}

fn write_info(info: &HostInfo, sink: &mut MetricSink) {
    sink.info("host_info", "What the host is, always 1.").add(
        &[
            ("hostname", &info.hostname),
            ("os", &info.os),
            ("kernel", &info.kernel),
            ("arch", &info.arch),
        ],
        1.0,
    );
}

fn write_loads(loads: [Option<f64>; 3], sink: &mut MetricSink) {
    let names = [
        ("host_load1", "Load average over 1 minute."),
        ("host_load5", "Load average over 5 minutes."),
        ("host_load15", "Load average over 15 minutes."),
    ];
    for ((name, help), load) in names.into_iter().zip(loads) {
        if let Some(load) = load {
            sink.gauge(name, help).add(&[], load);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn reports_load_uptime_and_processes() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("loadavg"), "0.52 0.58 1.25 2/1234 5678\n").expect("write");
        std::fs::write(dir.path().join("uptime"), "350735.47 234388.90\n").expect("write");
        for entry in ["1", "42", "self", "net"] {
            std::fs::create_dir(dir.path().join(entry)).expect("mkdir");
        }
        let mut procfs = crate::procfs::Procfs::new(dir.path());
        let mut sink = MetricSink::default();
        collect(&HostInfo::read(), &mut procfs, &mut sink).expect("collect");
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        assert_eq!(value("host_load1"), Some(0.52));
        assert_eq!(value("host_load5"), Some(0.58));
        assert_eq!(value("host_load15"), Some(1.25));
        assert_eq!(value("host_threads"), Some(1234.0));
        assert_eq!(value("host_uptime_seconds"), Some(350_735.47));
        assert_eq!(value("host_processes"), Some(2.0));
        std::fs::remove_file(dir.path().join("uptime")).expect("remove");
        let error = collect(&HostInfo::read(), &mut procfs, &mut MetricSink::default())
            .expect_err("no uptime");
        assert!(error.to_string().contains("uptime"), "{error}");
    }

    #[cfg(not(target_os = "linux"))]
    #[test]
    fn reports_load_uptime_and_processes() {
        let mut sink = MetricSink::default();
        let mut system = System::new().expect("system");
        collect(&HostInfo::read(), &mut system, &mut sink).expect("collect");
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        assert!(value("host_uptime_seconds").is_some_and(|u| u > 0.0));
        assert!(value("host_processes").is_some_and(|p| p >= 1.0));
    }
}
