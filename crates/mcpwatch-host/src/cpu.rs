//! CPU time per mode, runnable and blocked tasks, context switches, interrupts, forks and
//! the boot time. Linux gives them all in `/proc/stat`, read once; elsewhere sysinfo's usage
//! ratio per CPU is reported instead.

use mcpwatch_core::MetricSink;
#[cfg(target_os = "linux")]
use mcpwatch_core::{CollectError, MetricFamily};

/// The modes of a `/proc/stat` cpu line, in order. Guest time is already included in user
/// and nice, so it is not reported again.
#[cfg(target_os = "linux")]
const MODES: [&str; 8] = [
    "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
];

/// Reads `/proc/stat`.
#[cfg(target_os = "linux")]
pub(crate) fn collect(
    procfs: &mut crate::procfs::Procfs,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    use std::sync::LazyLock;
    static TICKS_PER_SECOND: LazyLock<f64> = LazyLock::new(|| {
        nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .ok()
            .flatten()
            .map_or(100.0, |t| t as f64)
    });
    let stat = procfs.read("stat")?;
    write_proc_stat(stat, *TICKS_PER_SECOND, sink);
    Ok(())
}

/// The single-value lines of `/proc/stat`: key, metric, help, whether a counter.
#[cfg(target_os = "linux")]
const SCALARS: [(&str, &str, &str, bool); 6] = [
    (
        "procs_running",
        "host_procs_running",
        "Tasks (threads) ready to run.",
        false,
    ),
    (
        "procs_blocked",
        "host_procs_blocked",
        "Tasks (threads) blocked on I/O.",
        false,
    ),
    (
        "ctxt",
        "host_context_switches_total",
        "Context switches since boot.",
        true,
    ),
    (
        "intr",
        "host_interrupts_total",
        "Interrupts serviced since boot, of every kind.",
        true,
    ),
    (
        "processes",
        "host_forks_total",
        "Processes and threads created (forks) since boot.",
        true,
    ),
    (
        "btime",
        "host_boot_time_seconds",
        "When the host booted, in seconds since the epoch.",
        false,
    ),
];

#[cfg(target_os = "linux")]
fn write_proc_stat(stat: &str, ticks_per_second: f64, sink: &mut MetricSink) {
    let mut cpus = 0_u32;
    let mut scalars: [Option<f64>; SCALARS.len()] = [None; SCALARS.len()];
    let family = sink.counter(
        "host_cpu_seconds_total",
        "Seconds the CPUs spent in each mode.",
    );
    for line in stat.lines() {
        let Some((key, values)) = line.split_once(' ') else {
            continue;
        };
        if let Some(i) = SCALARS.iter().position(|(k, ..)| *k == key) {
            // `intr` is followed by one count per interrupt number: the first is the total.
            scalars[i] = values
                .split_whitespace()
                .next()
                .and_then(|v| v.parse().ok());
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
    for ((_, name, help, counter), value) in SCALARS.iter().zip(scalars) {
        if let Some(value) = value {
            let family = if *counter {
                MetricFamily::counter(*name, *help)
            } else {
                MetricFamily::gauge(*name, *help)
            };
            sink.family(family).add(&[], value);
        }
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
                    intr 123 0 5 118\nctxt 4567\nbtime 1700000000\nprocesses 890\n\
                    procs_running 3\nprocs_blocked 1\nsoftirq 99 1 2\n";
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
        assert_eq!(value("host_interrupts_total"), Some(123.0));
        assert_eq!(value("host_context_switches_total"), Some(4567.0));
        assert_eq!(value("host_forks_total"), Some(890.0));
        assert_eq!(value("host_boot_time_seconds"), Some(1_700_000_000.0));
        assert_eq!(sink.families().len(), 8);
    }

    #[test]
    fn reads_this_machine() {
        let mut sink = MetricSink::default();
        let mut procfs = crate::procfs::Procfs::new(std::path::Path::new("/proc"));
        collect(&mut procfs, &mut sink).expect("/proc/stat");
        let idle = sink
            .find("host_cpu_seconds_total")
            .and_then(|f| f.value(&[("cpu", "0"), ("mode", "idle")]))
            .expect("idle seconds");
        assert!(idle > 0.0);
    }
}
