//! CPU time per mode, and runnable and blocked tasks. Linux gives them in `/proc/stat`;
//! elsewhere sysinfo's usage ratio per CPU is reported instead.

use mcpwatch_core::{CollectError, MetricSink};

/// The modes of a `/proc/stat` cpu line, in order. Guest time is already included in user
/// and nice, so it is not reported again.
#[cfg(target_os = "linux")]
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Reads per-CPU, per-mode seconds from `/proc/stat`.
#[cfg(target_os = "linux")]
pub(crate) fn collect(sink: &mut MetricSink) -> Result<(), CollectError> {
    use std::sync::LazyLock;
    static TICKS_PER_SECOND: LazyLock<f64> = LazyLock::new(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t as f64)
    });
    let stat = std::fs::read_to_string("/proc/stat")
        .map_err(|e| CollectError::from(e).context("reading /proc/stat"))?;
    write_proc_stat(&stat, *TICKS_PER_SECOND, sink);
    Ok(())
}

#[cfg(target_os = "linux")]
fn write_proc_stat(stat: &str, ticks_per_second: f64, sink: &mut MetricSink) {
    let mut cpus = 0_u32;
    let mut tasks: Vec<(&'static str, &'static str, f64)> = Vec::new();
    let family = sink.counter(
        "host_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    for line in stat.lines() {
        if let Some(running) = line.strip_prefix("procs_running ") {
            if let Ok(n) = running.trim().parse() {
                tasks.push(("host_procs_running", "Tasks (threads) ready to run.", n));
            }
            continue;
        }
        if let Some(blocked) = line.strip_prefix("procs_blocked ") {
            if let Ok(n) = blocked.trim().parse() {
                tasks.push(("host_procs_blocked", "Tasks (threads) blocked on I/O.", n));
            }
            continue;
        }
        let Some(rest) = line.strip_prefix("cpu") else {
            continue;
        };
        // The aggregate line is "cpu  ..."; per-CPU lines are "cpu0 ...".
        let Some((id, values)) = rest.split_once(' ') else {
            continue;
        };
        if id.is_empty() {
            continue;
        }
        cpus += 1;
        for (mode, value) in MODES.iter().zip(values.split_whitespace()) {
            if let Ok(ticks) = value.parse::<f64>() {
                family.add(&[("cpu", id), ("mode", mode)], ticks / ticks_per_second);
            }
        }
    }
    sink.gauge("host_cpus", "Number of logical CPUs.")
        .add(&[], f64::from(cpus));
    for (name, help, value) in tasks {
        sink.gauge(name, help).add(&[], value);
    }
}

/// Reports sysinfo's usage ratio per CPU (since the previous scrape).
#[cfg(not(target_os = "linux"))]
pub(crate) fn collect_usage(system: &mut sysinfo::System, sink: &mut MetricSink) {
    system.refresh_cpu_usage();
    let family = sink.gauge(
        "host_cpu_usage_ratio",
        "Share of time each CPU was busy since the previous scrape.",
    );
    for (i, cpu) in system.cpus().iter().enumerate() {
        family.add(
            &[("cpu", &i.to_string())],
            f64::from(cpu.cpu_usage()) / 100.0,
        );
    }
    sink.gauge("host_cpus", "Number of logical CPUs.")
        .add(&[], system.cpus().len() as f64);
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn parses_per_cpu_lines() {
        let stat = "cpu  10 0 5 100 1 0 0 0 0 0\n\
                    cpu0 600 10 300 5000 20 1 2 3 0 0\n\
                    cpu1 400 0 200 5000 0 0 0 0\n\
                    intr 123\nbtime 1700000000\nprocs_running 3\nprocs_blocked 1\n";
        let mut sink = MetricSink::default();
        write_proc_stat(stat, 100.0, &mut sink);
        let cpu = sink.find("host_cpu_seconds_total").expect("family");
        assert_eq!(cpu.value(&[("cpu", "0"), ("mode", "user")]), Some(6.0));
        assert_eq!(cpu.value(&[("cpu", "0"), ("mode", "steal")]), Some(0.03));
        assert_eq!(cpu.value(&[("cpu", "1"), ("mode", "idle")]), Some(50.0));
        assert_eq!(cpu.samples().len(), 16);
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        assert_eq!(value("host_cpus"), Some(2.0));
        assert_eq!(value("host_procs_running"), Some(3.0));
        assert_eq!(value("host_procs_blocked"), Some(1.0));
    }

    #[test]
    fn reads_this_machine() {
        let mut sink = MetricSink::default();
        collect(&mut sink).expect("/proc/stat");
        let idle = sink
            .find("host_cpu_seconds_total")
            .and_then(|f| f.value(&[("cpu", "0"), ("mode", "idle")]))
            .expect("idle seconds");
        assert!(idle > 0.0);
    }
}
