//! Memory and swap, and the cgroup limit when the collector runs in a container.

use mcpwatch_core::MetricSink;
use sysinfo::{MemoryRefreshKind, System};

pub(crate) fn collect(system: &mut System, sink: &mut MetricSink) {
    system.refresh_memory_specifics(MemoryRefreshKind::everything());
    let gauges: [(&'static str, &'static str, u64); 7] = [
        (
            "host_memory_total_bytes",
            "Total physical memory in bytes.",
            system.total_memory(),
        ),
        (
            "host_memory_available_bytes",
            "Memory available for new work without swapping, in bytes.",
            system.available_memory(),
        ),
        (
            "host_memory_free_bytes",
            "Memory not used at all, in bytes (excludes caches that can be reclaimed).",
            system.free_memory(),
        ),
        (
            "host_memory_used_bytes",
            "Memory in use, in bytes.",
            system.used_memory(),
        ),
        (
            "host_swap_total_bytes",
            "Total swap space in bytes.",
            system.total_swap(),
        ),
        (
            "host_swap_free_bytes",
            "Unused swap space in bytes.",
            system.free_swap(),
        ),
        (
            "host_swap_used_bytes",
            "Swap space in use, in bytes.",
            system.used_swap(),
        ),
    ];
    for (name, help, value) in gauges {
        sink.gauge(name, help).add(&[], value as f64);
    }
    if let Some(limits) = system.cgroup_limits() {
        sink.gauge(
            "host_cgroup_memory_limit_bytes",
            "Memory limit of the cgroup the collector runs in, in bytes.",
        )
        .add(&[], limits.total_memory as f64);
        sink.gauge(
            "host_cgroup_memory_rss_bytes",
            "Resident memory of the cgroup the collector runs in, in bytes.",
        )
        .add(&[], limits.rss as f64);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_consistent_memory() {
        let mut system = System::new().expect("system");
        let mut sink = MetricSink::default();
        collect(&mut system, &mut sink);
        let value = |name| sink.find(name).and_then(|f| f.value(&[])).expect(name);
        let total = value("host_memory_total_bytes");
        assert!(total > 0.0);
        assert!(value("host_memory_available_bytes") <= total);
        assert!(value("host_memory_used_bytes") <= total);
    }
}
