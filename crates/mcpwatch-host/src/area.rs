//! The areas of the host collector: each can be switched off, and each is timed and marked
//! successful on its own (`host_scrape_area_duration_seconds`, `host_scrape_area_success`),
//! so that a missing `/proc` file or a hung mount fails one area, not the host.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use mcpwatch_core::{MetricFamily, MetricSink};

/// One area of the host collector, named as in `collectors.host.areas` and in the `area`
/// label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Area {
    /// CPU time per mode, tasks, context switches, interrupts, forks, boot time
    /// (`/proc/stat`).
    Cpu,
    /// Memory and swap.
    Memory,
    /// Load, uptime, process and thread counts, `host_info`.
    System,
    /// Network interface counters (`/proc/net/dev`).
    Network,
    /// Filesystem space and inodes per mount point (statvfs).
    Filesystem,
    /// Block device I/O (`/proc/diskstats`).
    Diskstats,
    /// Pressure stall information (`/proc/pressure`).
    Pressure,
    /// Socket counts (`/proc/net/sockstat`, `sockstat6`).
    Sockstat,
    /// TCP sockets per state (`/proc/net/tcp`, `tcp6`).
    Tcpstat,
    /// TCP and UDP protocol counters (`/proc/net/snmp`, `netstat`).
    Netstat,
    /// File handles allocated and the limit (`/proc/sys/fs/file-nr`).
    Filefd,
    /// Clock synchronisation (adjtimex).
    Timex,
    /// Watched processes (`collectors.host.processes`).
    Processes,
}

impl Area {
    /// Every area, in the order they are reported.
    pub const ALL: [Area; 13] = [
        Area::Cpu,
        Area::Memory,
        Area::System,
        Area::Network,
        Area::Filesystem,
        Area::Diskstats,
        Area::Pressure,
        Area::Sockstat,
        Area::Tcpstat,
        Area::Netstat,
        Area::Filefd,
        Area::Timex,
        Area::Processes,
    ];

    /// The name in the configuration, the flags and the `area` label.
    pub fn name(self) -> &'static str {
        match self {
            Area::Cpu => "cpu",
            Area::Memory => "memory",
            Area::System => "system",
            Area::Network => "network",
            Area::Filesystem => "filesystem",
            Area::Diskstats => "diskstats",
            Area::Pressure => "pressure",
            Area::Sockstat => "sockstat",
            Area::Tcpstat => "tcpstat",
            Area::Netstat => "netstat",
            Area::Filefd => "filefd",
            Area::Timex => "timex",
            Area::Processes => "processes",
        }
    }

    /// What the area reports, for help texts.
    pub fn description(self) -> &'static str {
        match self {
            Area::Cpu => {
                "CPU time, tasks, context switches, interrupts, forks and boot time (/proc/stat)"
            }
            Area::Memory => "memory and swap",
            Area::System => "load, uptime, process and thread counts, host_info",
            Area::Network => "network interface counters (/proc/net/dev)",
            Area::Filesystem => "filesystem space and inodes (statvfs)",
            Area::Diskstats => "block device I/O (/proc/diskstats)",
            Area::Pressure => "pressure stall information (/proc/pressure)",
            Area::Sockstat => "socket counts (/proc/net/sockstat, sockstat6)",
            Area::Tcpstat => "TCP sockets per state (/proc/net/tcp, tcp6)",
            Area::Netstat => "TCP and UDP counters (/proc/net/snmp, netstat)",
            Area::Filefd => "file handles allocated and the limit (/proc/sys/fs/file-nr)",
            Area::Timex => "clock synchronisation (adjtimex)",
            Area::Processes => "watched processes",
        }
    }

    /// Whether the area runs when the configuration does not name it. TCP states are not
    /// counted by default: reading `/proc/net/tcp` walks the kernel's whole connection hash
    /// table (262144 buckets on a 24 GiB host, some 8 ms), however few connections there
    /// are, and the counts that matter most (established, TIME_WAIT, orphans) come cheaply
    /// from sockstat and netstat. node_exporter leaves its tcpstat collector off too.
    pub fn on_by_default(self) -> bool {
        self != Area::Tcpstat
    }

    /// Whether the area exists on this operating system: the ones read from Linux's
    /// `/proc` and adjtimex do not elsewhere.
    pub fn supported(self) -> bool {
        match self {
            Area::Cpu
            | Area::Memory
            | Area::System
            | Area::Network
            | Area::Filesystem
            | Area::Processes => true,
            _ => cfg!(target_os = "linux"),
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// How one area's part of a scrape went.
#[derive(Debug)]
pub(crate) struct AreaOutcome {
    pub area: Area,
    pub duration: Duration,
    pub result: Result<(), String>,
}

/// The last result of each area, so that a failure is logged when it starts or changes and
/// its end once, not on every scrape.
#[derive(Debug, Default)]
pub(crate) struct AreaLog {
    last: Mutex<[Option<Result<(), String>>; Area::ALL.len()]>,
}

impl AreaLog {
    pub(crate) fn record(&self, outcome: &AreaOutcome) {
        let mut last = self.last.lock().unwrap_or_else(PoisonError::into_inner);
        let previous = &mut last[outcome.area.index()];
        let area = outcome.area.name();
        match (&*previous, &outcome.result) {
            (Some(Err(_)), Ok(())) => tracing::info!(area, "Host area recovered."),
            (Some(Err(before)), Err(error)) if before == error => {
                tracing::debug!(area, %error, "Host area still failing.");
            }
            (_, Err(error)) => tracing::warn!(area, %error, "Host area failed."),
            _ => {}
        }
        *previous = Some(outcome.result.clone());
    }
}

/// Writes `host_scrape_area_duration_seconds` and `host_scrape_area_success` for the areas
/// that ran, in the order of `outcomes`.
pub(crate) fn write_outcomes(outcomes: &[AreaOutcome], sink: &mut MetricSink) {
    let mut duration = MetricFamily::gauge(
        "host_scrape_area_duration_seconds",
        "Duration of the host collector area's last run, in seconds.",
    );
    let mut success = MetricFamily::gauge(
        "host_scrape_area_success",
        "Whether the host collector area's last run succeeded (1) or failed or timed out (0).",
    );
    for outcome in outcomes {
        let labels = [("area", outcome.area.name())];
        duration.add(&labels, outcome.duration.as_secs_f64());
        success.add(&labels, if outcome.result.is_ok() { 1.0 } else { 0.0 });
    }
    sink.family(duration);
    sink.family(success);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_the_order_of_all() {
        for (i, area) in Area::ALL.iter().enumerate() {
            assert_eq!(area.index(), i, "{area:?}");
            assert!(area.name().bytes().all(|b| b.is_ascii_lowercase()));
        }
    }
}
