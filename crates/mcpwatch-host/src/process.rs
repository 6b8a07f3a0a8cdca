//! Watched processes, such as the MCP server's daemon: whether one runs, and its CPU time,
//! memory, open file descriptors and start time, summed over every matching process.

use std::collections::HashMap;

use mcpwatch_core::{MetricFamily, MetricSink};
use sysinfo::{Pid, ProcessRefreshKind, ProcessesToUpdate, System, UpdateKind};

use crate::config::WatchedProcess;

/// Finds the watched processes: by pid file with one targeted read, by name or command
/// line with a scan of every process (only when such a watch is configured).
fn find_all(system: &mut System, watched: &[WatchedProcess]) -> Vec<Vec<Pid>> {
    if watched.iter().any(|w| w.pid_file.is_none()) {
        let kind = ProcessRefreshKind::nothing().without_tasks();
        let kind = if watched.iter().any(|w| w.cmdline.is_some()) {
            kind.with_cmd(UpdateKind::OnlyIfNotSet)
        } else {
            kind
        };
        system.refresh_processes_specifics(ProcessesToUpdate::All, true, kind);
    }
    watched
        .iter()
        .map(|w| match &w.pid_file {
            // The pid is the first line; PostgreSQL's postmaster.pid, for one, has more.
            Some(pid_file) => std::fs::read_to_string(pid_file.path())
                .ok()
                .and_then(|text| text.lines().next()?.trim().parse::<u32>().ok())
                .map(Pid::from_u32)
                .into_iter()
                .collect(),
            None => system
                .processes()
                .iter()
                .filter(|(_, p)| matches(w, p))
                .map(|(pid, _)| *pid)
                .collect(),
        })
        .collect()
}

fn matches(watched: &WatchedProcess, process: &sysinfo::Process) -> bool {
    if let Some(comm) = &watched.comm {
        return process.name() == comm.as_str();
    }
    if let Some(pattern) = &watched.cmdline {
        let cmdline = process
            .cmd()
            .iter()
            .map(|a| a.to_string_lossy())
            .collect::<Vec<_>>()
            .join(" ");
        return pattern.is_match(&cmdline);
    }
    false
}

/// Reports every watched process.
pub(crate) fn collect(system: &mut System, watched: &[WatchedProcess], sink: &mut MetricSink) {
    if watched.is_empty() {
        return;
    }
    let found = find_all(system, watched);
    let mut pids: Vec<Pid> = found.iter().flatten().copied().collect();
    pids.sort_unstable();
    pids.dedup();
    if !pids.is_empty() {
        // Also drops a pid-file process that has exited since the file was written.
        system.refresh_processes_specifics(
            ProcessesToUpdate::Some(&pids),
            true,
            ProcessRefreshKind::nothing()
                .without_tasks()
                .with_cpu()
                .with_memory(),
        );
    }
    let matches: Vec<(&WatchedProcess, Vec<Pid>)> = watched.iter().zip(found).collect();

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

    #[test]
    fn watches_this_process_by_pid_file_and_cmdline() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("self.pid"),
            format!("{}\n/var/lib/data\n1700000000\n", std::process::id()),
        )
        .expect("pid file");
        // A pid that cannot be running: above the kernel's pid_max limit.
        std::fs::write(dir.path().join("stale.pid"), "4194305\n").expect("pid file");
        let config = dir.path().join("c.yml");
        let mut watched: Vec<WatchedProcess> = parse_yaml(
            "- name: me\n  pid_file: self.pid\n- name: gone\n  comm: no-such-process-name\n\
             - name: stale\n  pid_file: stale.pid\n",
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
            cmdline: Pattern::new(&regex_lite::escape(&stem)).ok(),
            pid_file: None,
        });
        let mut system = System::new().expect("system");
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
        assert_eq!(value("host_process_up", "stale"), Some(0.0));
        assert_eq!(value("host_process_up", "stale"), Some(0.0));
    }
}
