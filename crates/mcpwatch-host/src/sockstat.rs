//! Socket counts from `/proc/net/sockstat` and `/proc/net/sockstat6` (absent when IPv6 is
//! disabled): sockets in use per protocol, TCP orphans, TIME_WAIT and allocated sockets,
//! and the memory TCP and UDP buffers take. The counts are those of the exporter's network
//! namespace.

use std::sync::LazyLock;

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};

use crate::procfs::Procfs;

/// The protocols whose `inuse` is reported, by their key in the files.
const PROTOCOLS: [(&str, &str); 8] = [
    ("TCP", "tcp"),
    ("UDP", "udp"),
    ("UDPLITE", "udplite"),
    ("RAW", "raw"),
    ("TCP6", "tcp6"),
    ("UDP6", "udp6"),
    ("UDPLITE6", "udplite6"),
    ("RAW6", "raw6"),
];

/// `mem` is counted in pages.
static PAGE_BYTES: LazyLock<f64> = LazyLock::new(|| {
    nix::unistd::sysconf(nix::unistd::SysconfVar::PAGE_SIZE)
        .ok()
        .flatten()
        .map_or(4096.0, |p| p as f64)
});

struct Families {
    used: MetricFamily,
    inuse: MetricFamily,
    orphan: MetricFamily,
    time_wait: MetricFamily,
    allocated: MetricFamily,
    memory: MetricFamily,
}

pub(crate) fn collect(procfs: &mut Procfs, sink: &mut MetricSink) -> Result<(), CollectError> {
    let mut families = Families {
        used: MetricFamily::gauge(
            "host_sockstat_sockets_used",
            "Sockets in use, of every family and protocol.",
        ),
        inuse: MetricFamily::gauge(
            "host_sockstat_sockets_inuse",
            "Sockets in use per protocol.",
        ),
        orphan: MetricFamily::gauge(
            "host_sockstat_tcp_orphan",
            "TCP sockets no longer attached to a process (orphans).",
        ),
        time_wait: MetricFamily::gauge("host_sockstat_tcp_time_wait", "TCP sockets in TIME_WAIT."),
        allocated: MetricFamily::gauge(
            "host_sockstat_tcp_allocated",
            "TCP sockets allocated, in any state.",
        ),
        memory: MetricFamily::gauge(
            "host_sockstat_memory_bytes",
            "Memory the protocol's socket buffers take, in bytes.",
        ),
    };
    parse(procfs.read("net/sockstat")?, *PAGE_BYTES, &mut families);
    if let Some(text) = procfs.read_if_provided("net/sockstat6")? {
        parse(text, *PAGE_BYTES, &mut families);
    }
    let Families {
        used,
        inuse,
        orphan,
        time_wait,
        allocated,
        memory,
    } = families;
    for family in [used, inuse, orphan, time_wait, allocated, memory] {
        sink.family(family);
    }
    Ok(())
}

/// Lines such as "TCP: inuse 6 orphan 0 tw 1 alloc 6 mem 0": a key, then name and value
/// pairs.
fn parse(text: &str, page_bytes: f64, families: &mut Families) {
    for line in text.lines() {
        let Some((key, pairs)) = line.split_once(':') else {
            continue;
        };
        let mut words = pairs.split_whitespace();
        while let (Some(name), Some(value)) = (words.next(), words.next()) {
            let Ok(value) = value.parse::<u64>() else {
                continue;
            };
            let value = value as f64;
            match (key, name) {
                ("sockets", "used") => {
                    families.used.add(&[], value);
                }
                ("TCP", "orphan") => {
                    families.orphan.add(&[], value);
                }
                ("TCP", "tw") => {
                    families.time_wait.add(&[], value);
                }
                ("TCP", "alloc") => {
                    families.allocated.add(&[], value);
                }
                ("TCP" | "UDP", "mem") => {
                    let protocol = if key == "TCP" { "tcp" } else { "udp" };
                    families
                        .memory
                        .add(&[("protocol", protocol)], value * page_bytes);
                }
                (_, "inuse") => {
                    if let Some((_, protocol)) = PROTOCOLS.iter().find(|(k, _)| *k == key) {
                        families.inuse.add(&[("protocol", protocol)], value);
                    }
                }
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        std::fs::create_dir(&net).expect("mkdir");
        std::fs::write(
            net.join("sockstat"),
            "sockets: used 290\nTCP: inuse 10 orphan 1 tw 2 alloc 12 mem 3\n\
             UDP: inuse 4 mem 5\nUDPLITE: inuse 0\nRAW: inuse 1\nFRAG: inuse 0 memory 0\n",
        )
        .expect("write");
        let mut procfs = Procfs::new(dir.path());
        let mut sink = MetricSink::default();
        collect(&mut procfs, &mut sink).expect("without sockstat6");
        assert_eq!(
            sink.find("host_sockstat_sockets_inuse")
                .expect("family")
                .samples()
                .len(),
            4
        );
        std::fs::write(
            net.join("sockstat6"),
            "TCP6: inuse 7\nUDP6: inuse 8\nUDPLITE6: inuse 0\nRAW6: inuse 0\n\
             FRAG6: inuse 0 memory 0\n",
        )
        .expect("write");
        let mut sink = MetricSink::default();
        collect(&mut procfs, &mut sink).expect("collect");
        let value =
            |name: &str, labels: &[(&str, &str)]| sink.find(name).and_then(|f| f.value(labels));
        assert_eq!(value("host_sockstat_sockets_used", &[]), Some(290.0));
        let inuse = |p| value("host_sockstat_sockets_inuse", &[("protocol", p)]);
        assert_eq!(inuse("tcp"), Some(10.0));
        assert_eq!(inuse("udp"), Some(4.0));
        assert_eq!(inuse("raw"), Some(1.0));
        assert_eq!(inuse("tcp6"), Some(7.0));
        assert_eq!(inuse("udp6"), Some(8.0));
        assert_eq!(inuse("frag"), None);
        assert_eq!(
            sink.find("host_sockstat_sockets_inuse")
                .expect("family")
                .samples()
                .len(),
            8
        );
        assert_eq!(value("host_sockstat_tcp_orphan", &[]), Some(1.0));
        assert_eq!(value("host_sockstat_tcp_time_wait", &[]), Some(2.0));
        assert_eq!(value("host_sockstat_tcp_allocated", &[]), Some(12.0));
        assert_eq!(
            value("host_sockstat_memory_bytes", &[("protocol", "tcp")]),
            Some(3.0 * *PAGE_BYTES)
        );
        assert_eq!(
            value("host_sockstat_memory_bytes", &[("protocol", "udp")]),
            Some(5.0 * *PAGE_BYTES)
        );
    }
}
