//! `process_*` metrics of the running process, with the names client libraries use.

use std::sync::LazyLock;
use std::time::{SystemTime, UNIX_EPOCH};

use nix::sys::resource::{Resource, UsageWho, getrlimit, getrusage};

use crate::engine::MetricSource;
use crate::metrics::MetricSink;

/// Reports the CPU time, memory, file descriptors and start time of this process.
#[derive(Debug, Default, Clone, Copy)]
pub struct ProcessMetrics;

/// When this process started, in seconds since the epoch.
fn start_time() -> f64 {
    static START: LazyLock<f64> = LazyLock::new(|| {
        #[cfg(target_os = "linux")]
        if let Some(start) = linux::start_time() {
            return start;
        }
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64())
    });
    *START
}

impl MetricSource for ProcessMetrics {
    fn collect(&self, sink: &mut MetricSink) {
        if let Ok(usage) = getrusage(UsageWho::RUSAGE_SELF) {
            let seconds =
                |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1_000_000.0;
            sink.counter(
                "process_cpu_seconds_total",
                "Total user and system CPU time spent in seconds.",
            )
            .add(
                &[],
                seconds(usage.user_time()) + seconds(usage.system_time()),
            );
        }
        if let Ok((soft, _)) = getrlimit(Resource::RLIMIT_NOFILE) {
            sink.gauge(
                "process_max_fds",
                "Maximum number of open file descriptors.",
            )
            .add(&[], soft as f64);
        }
        sink.gauge(
            "process_start_time_seconds",
            "Start time of the process since unix epoch in seconds.",
        )
        .add(&[], start_time());
        #[cfg(target_os = "linux")]
        linux::collect(sink);
    }
}

#[cfg(target_os = "linux")]
mod linux {
    use std::sync::LazyLock;

    use nix::unistd::{SysconfVar, sysconf};

    use crate::metrics::MetricSink;

    static PAGE_SIZE: LazyLock<f64> = LazyLock::new(|| {
        sysconf(SysconfVar::PAGE_SIZE)
            .ok()
            .flatten()
            .map_or(4096.0, |v| v as f64)
    });

    /// Fields of `/proc/self/stat` after the command name, numbered from 3 as in proc(5).
    fn stat_fields(stat: &str) -> Option<Vec<&str>> {
        let rest = &stat[stat.rfind(')')? + 1..];
        Some(rest.split_whitespace().collect())
    }

    pub(super) fn start_time() -> Option<f64> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        let fields = stat_fields(&stat)?;
        // Field 22, counted from 3.
        let start_ticks: f64 = fields.get(22 - 3)?.parse().ok()?;
        let ticks = sysconf(SysconfVar::CLK_TCK).ok().flatten()? as f64;
        let boot = std::fs::read_to_string("/proc/stat").ok()?;
        let btime: f64 = boot
            .lines()
            .find_map(|l| l.strip_prefix("btime "))?
            .trim()
            .parse()
            .ok()?;
        Some(btime + start_ticks / ticks)
    }

    pub(super) fn collect(sink: &mut MetricSink) {
        if let Ok(stat) = std::fs::read_to_string("/proc/self/stat")
            && let Some(fields) = stat_fields(&stat)
        {
            let field = |n: usize| fields.get(n - 3).and_then(|v| v.parse::<f64>().ok());
            if let Some(vsize) = field(23) {
                sink.gauge(
                    "process_virtual_memory_bytes",
                    "Virtual memory size in bytes.",
                )
                .add(&[], vsize);
            }
            if let Some(rss_pages) = field(24) {
                sink.gauge(
                    "process_resident_memory_bytes",
                    "Resident memory size in bytes.",
                )
                .add(&[], rss_pages * *PAGE_SIZE);
            }
            if let Some(threads) = field(20) {
                sink.gauge("process_threads", "Number of OS threads in the process.")
                    .add(&[], threads);
            }
        }
        if let Ok(dir) = std::fs::read_dir("/proc/self/fd") {
            // The directory handle being read is itself one of the entries.
            let open = dir.count().saturating_sub(1);
            sink.gauge("process_open_fds", "Number of open file descriptors.")
                .add(&[], open as f64);
        }
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn stat_fields_skip_command_with_spaces() {
            let stat = "42 (a b) c) S 1 2 3";
            let fields = stat_fields(stat).expect("fields");
            assert_eq!(fields[0], "S");
            assert_eq!(fields[1], "1");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_standard_process_metrics() {
        let mut sink = MetricSink::default();
        ProcessMetrics.collect(&mut sink);
        let start = sink
            .find("process_start_time_seconds")
            .and_then(|f| f.value(&[]))
            .expect("start time");
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs_f64();
        assert!(
            start > now - 86_400.0 && start <= now + 1.0,
            "start {start}"
        );
        assert!(sink.find("process_cpu_seconds_total").is_some());
        assert!(sink.find("process_max_fds").is_some());
        #[cfg(target_os = "linux")]
        {
            let rss = sink
                .find("process_resident_memory_bytes")
                .and_then(|f| f.value(&[]))
                .expect("rss");
            assert!(rss > 1_000_000.0, "rss {rss}");
            let fds = sink
                .find("process_open_fds")
                .and_then(|f| f.value(&[]))
                .expect("fds");
            assert!(fds >= 3.0, "fds {fds}");
        }
    }
}
