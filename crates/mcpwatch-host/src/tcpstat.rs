//! TCP sockets per state, counted from `/proc/net/tcp` and `/proc/net/tcp6` (the exporter's
//! network namespace). The tables are read through a fixed buffer and only each line's
//! state is looked at, so that a host with many connections costs time in proportion, not
//! memory; the read stops at the scrape's deadline.

use std::time::Instant;

use mcpwatch_core::{CollectError, MetricSink};

use crate::procfs::Procfs;

/// The states of `include/net/tcp_states.h`, numbered from 1.
const STATES: [&str; 11] = [
    "established",
    "syn_sent",
    "syn_recv",
    "fin_wait1",
    "fin_wait2",
    "time_wait",
    "close",
    "close_wait",
    "last_ack",
    "listen",
    "closing",
];

pub(crate) fn collect(
    procfs: &mut Procfs,
    stop: Instant,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    let mut counts = [0_u64; STATES.len()];
    procfs.for_each_line("net/tcp", stop, |line| count(line, &mut counts))?;
    // Absent when IPv6 is disabled.
    if procfs.provides("net/tcp6") {
        procfs.for_each_line("net/tcp6", stop, |line| count(line, &mut counts))?;
    }
    let family = sink.gauge(
        "host_tcp_connections",
        "TCP sockets (IPv4 and IPv6) in each state.",
    );
    for (state, count) in STATES.iter().zip(counts) {
        family.add(&[("state", state)], count as f64);
    }
    Ok(())
}

/// "  0: 0100007F:1F90 00000000:0000 0A ...": the fourth field is the state in hex. The
/// heading line has "st" there and is skipped.
fn count(line: &[u8], counts: &mut [u64; STATES.len()]) {
    let Some(state) = line
        .split(|b| b.is_ascii_whitespace())
        .filter(|w| !w.is_empty())
        .nth(3)
    else {
        return;
    };
    let Some(state) = std::str::from_utf8(state)
        .ok()
        .and_then(|s| u8::from_str_radix(s, 16).ok())
    else {
        return;
    };
    if let Some(slot) = usize::from(state)
        .checked_sub(1)
        .and_then(|i| counts.get_mut(i))
    {
        *slot += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const HEADING: &str = "  sl  local_address rem_address   st tx_queue rx_queue tr tm->when \
                           retrnsmt   uid  timeout inode\n";

    fn entry(i: usize, state: &str) -> String {
        format!(
            "{i:4}: 0100007F:1F90 00000000:0000 {state} 00000000:00000000 00:00000000 \
             00000000     0        0 {i} 1 0000000000000000 100 0 0 10 0\n"
        )
    }

    #[test]
    fn counts_every_state_of_both_tables() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        std::fs::create_dir(&net).expect("mkdir");
        // Enough lines to span several reads of the buffer.
        let mut tcp = HEADING.to_owned();
        for i in 0..3000 {
            tcp.push_str(&entry(i, if i % 3 == 0 { "0A" } else { "01" }));
        }
        tcp.push_str(&entry(3000, "06"));
        tcp.push_str(&entry(3001, "0C"));
        std::fs::write(net.join("tcp"), &tcp).expect("write");
        let mut procfs = Procfs::new(dir.path());
        let later = Instant::now() + Duration::from_secs(60);
        let mut sink = MetricSink::default();
        collect(&mut procfs, later, &mut sink).expect("without tcp6");
        let value = |sink: &MetricSink, state: &str| {
            sink.find("host_tcp_connections")
                .and_then(|f| f.value(&[("state", state)]))
        };
        assert_eq!(value(&sink, "listen"), Some(1000.0));
        assert_eq!(value(&sink, "established"), Some(2000.0));
        assert_eq!(value(&sink, "time_wait"), Some(1.0));
        assert_eq!(value(&sink, "closing"), Some(0.0));

        std::fs::write(
            net.join("tcp6"),
            format!("{HEADING}{}{}", entry(0, "0A"), entry(1, "08")),
        )
        .expect("write");
        let mut sink = MetricSink::default();
        collect(&mut procfs, later, &mut sink).expect("collect");
        assert_eq!(value(&sink, "listen"), Some(1001.0));
        assert_eq!(value(&sink, "close_wait"), Some(1.0));
        let family = sink.find("host_tcp_connections").expect("family");
        assert_eq!(family.samples().len(), 11);

        std::fs::remove_file(net.join("tcp")).expect("remove");
        let error = collect(&mut procfs, later, &mut MetricSink::default())
            .expect_err("no IPv4 table")
            .to_string();
        assert!(error.contains("net/tcp"), "{error}");
    }
}
