//! Watched processes, such as the MCP server's daemon: whether one runs, and its CPU time,
//! memory, open file descriptors and start time, summed over every matching process.

use std::collections::HashMap;

use mcpwatch_core::{MetricFamily, MetricSink};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use crate::config::WatchedProcess;

/// What every scrape refreshes for all processes: enough to count them by state, plus the
/// command line when a watched process is found by it.
pub(crate) fn list_refresh_kind(watched: &[WatchedProcess]) -> ProcessRefreshKind {
    let kind = ProcessRefreshKind::nothing().without_tasks();
    if watched.iter().any(|w| w.cmdline.is_some()) {
        kind.with_cmd(UpdateKind::OnlyIfNotSet)
    } else {
        kind
    }
}

fn find(system: &System, watched: &WatchedProcess) -> Vec<Pid> {
    if let Some(pid_file) = &watched.pid_file {
        return std::fs::read_to_string(pid_file.path())
            .ok()
            .and_then(|text| text.trim().parse::<u32>().ok())
            .map(Pid::from_u32)
            .filter(|pid| system.process(*pid).is_some())
            .into_iter()
            .collect();
    }
    system
        .processes()
        .iter()
        .filter(|(_, p)| {
            if let Some(comm) = &watched.comm {
                return p.name() == comm.as_str();
            }
            if let Some(pattern) = &watched.cmdline {
                let cmdline = p
                    .cmd()
                    .iter()
                    .map(|a| a.to_string_lossy())
                    .collect::<Vec<_>>()
                    .join(" ");
                return pattern.is_match(&cmdline);
            }
            false
        })
        .map(|(pid, _)| *pid)
        .collect()
}

/// Reports every watched process; `system`'s process list was refreshed by the caller.
pub(crate) fn collect(system: &mut System, watched: &[WatchedProcess], sink: &mut MetricSink) {
    if watched.is_empty() {
        return;
    }
    let matches: Vec<(&WatchedProcess, Vec<Pid>)> =
        watched.iter().map(|w| (w, find(system, w))).collect();
    let mut pids: Vec<Pid> = matches
        .iter()
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    pids.sort_unstable();
    pids.dedup();
    if !pids.is_empty() {
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            false,
            ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cpu()
                .with_memory(),
        );
    }

    let mut up = MetricFamily::gauge(
        "host_process_up",
        "Whether at least one process of the watched name runs.",
    );
    let mut count = MetricFamily::gauge(
        "host_process_instances",
        "Processes matching the watched process.",
    );
    let mut cpu = MetricFamily::counter(
        "host_process_cpu_seconds_total",
        "CPU time of the matching processes, in seconds.",
    );
    let mut rss = MetricFamily::gauge(
        "host_process_resident_memory_bytes",
        "Resident memory of the matching processes, in bytes.",
    );
    let mut virt = MetricFamily::gauge(
        "host_process_virtual_memory_bytes",
        "Virtual memory of the matching processes, in bytes.",
    );
    let mut fds = MetricFamily::gauge(
        "host_process_open_fds",
        "Open file descriptors of the matching processes.",
    );
    let mut start = MetricFamily::gauge(
        "host_process_start_time_seconds",
        "Start of the oldest matching process, in seconds since the epoch.",
    );
    let by_pid: HashMap<Pid, &sysinfo::Process> =
        system.processes().iter().map(|(k, v)| (*k, v)).collect();
    for (w, pids) in &matches {
        let labels = [("process", w.name.as_str())];
        let procs: Vec<&sysinfo::Process> =
            pids.iter().filter_map(|p| by_pid.get(p).copied()).collect();
        up.add(&labels, if procs.is_empty() { 0.0 } else { 1.0 });
        count.add(&labels, procs.len() as f64);
        if procs.is_empty() {
            continue;
        }
        cpu.add(
            &labels,
            procs.iter().map(|p| p.accumulated_cpu_time()).sum::<u64>() as f64 / 1000.0,
        );
        rss.add(
            &labels,
            procs.iter().map(|p| p.memory()).sum::<u64>() as f64,
        );
        virt.add(
            &labels,
            procs.iter().map(|p| p.virtual_memory()).sum::<u64>() as f64,
        );
        let open: Option<usize> = procs.iter().map(|p| p.open_files()).sum();
        if let Some(open) = open {
            fds.add(&labels, open as f64);
        }
        if let Some(oldest) = procs.iter().map(|p| p.start_time()).min() {
            start.add(&labels, oldest as f64);
        }
    }
    for family in [up, count, cpu, rss, virt, fds, start] {
        sink.family(family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::{Pattern, parse_yaml};

    fn refreshed(watched: &[WatchedProcess]) -> System {
        let mut system = System::new().expect("system");
        system.refresh_processes_specifics(
            ProcessesToUpdate::All,
            true,
            list_refresh_kind(watched),
        );
        system
    }

    #[test]
    fn watches_this_process_by_pid_file_and_cmdline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("self.pid"),
            format!("{}\n", std::process::id()),
        )
        .expect("pid file");
        let config = dir.path().join("c.yml");
        let mut watched: Vec<WatchedProcess> = parse_yaml(
            "- name: me\n  pid_file: self.pid\n- name: gone\n  comm: no-such-process-name\n",
            &config,
        )
        .expect("config");
        let exe = std::env::current_exe().expect("exe");
        let stem = exe
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        watched.push(WatchedProcess {
            name: "by-cmdline".into(),
            comm: None,
            cmdline: Pattern::new(&regex::escape(&stem)).ok(),
            pid_file: None,
        });
        let mut system = refreshed(&watched);
        let mut sink = MetricSink::default();
        collect(&mut system, &watched, &mut sink);
        let value = |name: &str, process: &str| {
            sink.find(name)
                .and_then(|f| f.value(&[("process", process)]))
        };
        assert_eq!(value("host_process_up", "me"), Some(1.0));
        assert_eq!(value("host_process_instances", "me"), Some(1.0));
        assert!(value("host_process_resident_memory_bytes", "me").is_some_and(|m| m > 1e6));
        assert!(value("host_process_open_fds", "me").is_some_and(|f| f >= 3.0));
        assert!(value("host_process_cpu_seconds_total", "me").is_some());
        assert_eq!(value("host_process_up", "by-cmdline"), Some(1.0));
        assert_eq!(value("host_process_up", "gone"), Some(0.0));
        assert_eq!(value("host_process_instances", "gone"), Some(0.0));
        assert_eq!(value("host_process_resident_memory_bytes", "gone"), None);
    }
}
