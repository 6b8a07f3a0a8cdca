//! TCP and UDP protocol counters from `/proc/net/snmp` and `/proc/net/netstat` (the
//! exporter's network namespace): connections opened, established, reset, segments and
//! retransmissions, listen queue overflows, UDP datagrams and errors. TCP counts both IPv4
//! and IPv6; the UDP ones are IPv4's.

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};

use crate::procfs::Procfs;

/// One counter: the file, its section and field there, the metric and its help. All are
/// counters but `CurrEstab`.
struct Field {
    file: &'static str,
    section: &'static str,
    field: &'static str,
    name: &'static str,
    help: &'static str,
}

const fn field(
    file: &'static str,
    section: &'static str,
    field: &'static str,
    name: &'static str,
    help: &'static str,
) -> Field {
    Field {
        file,
        section,
        field,
        name,
        help,
    }
}

const SNMP: &str = "net/snmp";
const NETSTAT: &str = "net/netstat";

const FIELDS: [Field; 19] = [
    field(
        SNMP,
        "Tcp",
        "ActiveOpens",
        "host_netstat_tcp_active_opens_total",
        "TCP connections this host opened (connect).",
    ),
    field(
        SNMP,
        "Tcp",
        "PassiveOpens",
        "host_netstat_tcp_passive_opens_total",
        "TCP connections this host accepted.",
    ),
    field(
        SNMP,
        "Tcp",
        "AttemptFails",
        "host_netstat_tcp_attempt_fails_total",
        "TCP connection attempts that failed before being established.",
    ),
    field(
        SNMP,
        "Tcp",
        "EstabResets",
        "host_netstat_tcp_established_resets_total",
        "Established TCP connections that were reset.",
    ),
    field(
        SNMP,
        "Tcp",
        "CurrEstab",
        "host_netstat_tcp_current_established",
        "TCP connections now ESTABLISHED or CLOSE_WAIT.",
    ),
    field(
        SNMP,
        "Tcp",
        "InSegs",
        "host_netstat_tcp_in_segments_total",
        "TCP segments received.",
    ),
    field(
        SNMP,
        "Tcp",
        "OutSegs",
        "host_netstat_tcp_out_segments_total",
        "TCP segments sent, retransmissions excluded.",
    ),
    field(
        SNMP,
        "Tcp",
        "RetransSegs",
        "host_netstat_tcp_retransmitted_segments_total",
        "TCP segments retransmitted.",
    ),
    field(
        SNMP,
        "Tcp",
        "InErrs",
        "host_netstat_tcp_in_errors_total",
        "TCP segments received in error.",
    ),
    field(
        SNMP,
        "Tcp",
        "OutRsts",
        "host_netstat_tcp_out_resets_total",
        "TCP segments sent with the RST flag.",
    ),
    field(
        SNMP,
        "Udp",
        "InDatagrams",
        "host_netstat_udp_in_datagrams_total",
        "UDP datagrams delivered (IPv4).",
    ),
    field(
        SNMP,
        "Udp",
        "OutDatagrams",
        "host_netstat_udp_out_datagrams_total",
        "UDP datagrams sent (IPv4).",
    ),
    field(
        SNMP,
        "Udp",
        "NoPorts",
        "host_netstat_udp_no_ports_total",
        "UDP datagrams for a port nothing listened on (IPv4).",
    ),
    field(
        SNMP,
        "Udp",
        "InErrors",
        "host_netstat_udp_in_errors_total",
        "UDP datagrams that could not be delivered, other than for want of a port (IPv4).",
    ),
    field(
        SNMP,
        "Udp",
        "RcvbufErrors",
        "host_netstat_udp_receive_buffer_errors_total",
        "UDP datagrams dropped because the receive buffer was full (IPv4).",
    ),
    field(
        SNMP,
        "Udp",
        "SndbufErrors",
        "host_netstat_udp_send_buffer_errors_total",
        "UDP datagrams dropped because the send buffer was full (IPv4).",
    ),
    field(
        NETSTAT,
        "TcpExt",
        "ListenOverflows",
        "host_netstat_tcp_listen_overflows_total",
        "Connections dropped because a listening socket's accept queue was full.",
    ),
    field(
        NETSTAT,
        "TcpExt",
        "ListenDrops",
        "host_netstat_tcp_listen_drops_total",
        "Connections dropped at a listening socket, for any reason (overflows included).",
    ),
    field(
        NETSTAT,
        "TcpExt",
        "SyncookiesSent",
        "host_netstat_tcp_syncookies_sent_total",
        "SYN cookies sent because a listening socket's SYN queue was full.",
    ),
];

pub(crate) fn collect(procfs: &mut Procfs, sink: &mut MetricSink) -> Result<(), CollectError> {
    let mut values: [Option<f64>; FIELDS.len()] = [None; FIELDS.len()];
    for file in [SNMP, NETSTAT] {
        parse(file, procfs.read(file)?, &mut values);
    }
    for (field, value) in FIELDS.iter().zip(values) {
        if let Some(value) = value {
            let family = if field.name.ends_with("_total") {
                MetricFamily::counter(field.name, field.help)
            } else {
                MetricFamily::gauge(field.name, field.help)
            };
            sink.family(family).add(&[], value);
        }
    }
    Ok(())
}

/// Each section is two lines: "Tcp: RtoAlgorithm RtoMin ..." naming the fields, then
/// "Tcp: 1 200 ..." with their values. A line whose section does not follow its names'
/// (a file cut or garbled) starts a new pair, so it does not shift every later section.
fn parse(file: &str, text: &str, values: &mut [Option<f64>; FIELDS.len()]) {
    let mut names: Option<(&str, &str)> = None;
    for line in text.lines() {
        let Some((section, rest)) = line.split_once(':') else {
            names = None;
            continue;
        };
        let header = match names.take() {
            Some((named, header)) if named == section => header,
            _ => {
                names = Some((section, rest));
                continue;
            }
        };
        for (name, number) in header.split_whitespace().zip(rest.split_whitespace()) {
            let Some(i) = FIELDS
                .iter()
                .position(|f| f.file == file && f.section == section && f.field == name)
            else {
                continue;
            };
            values[i] = number.parse::<i64>().ok().map(|n| n as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_tcp_udp_and_listen_counters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let net = dir.path().join("net");
        std::fs::create_dir(&net).expect("mkdir");
        std::fs::write(
            net.join("snmp"),
            "Ip: Forwarding DefaultTTL\nIp: 1 64\n\
             IcmpMsg: InType3\nIcmpMsg: 1\n\
             Tcp: RtoAlgorithm RtoMin RtoMax MaxConn ActiveOpens PassiveOpens AttemptFails \
             EstabResets CurrEstab InSegs OutSegs RetransSegs InErrs OutRsts InCsumErrors\n\
             Tcp: 1 200 120000 -1 167 2 3 4 5 11903 9508 7 8 22 0\n\
             Udp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors \
             InCsumErrors IgnoredMulti MemErrors\n\
             Udp: 332 9 10 333 11 12 0 0 0\n\
             UdpLite: InDatagrams NoPorts InErrors\nUdpLite: 100 100 100\n",
        )
        .expect("write");
        std::fs::write(
            net.join("netstat"),
            "TcpExt: SyncookiesSent SyncookiesRecv ListenOverflows ListenDrops\n\
             TcpExt: 13 0 14 15\n\
             IpExt: InNoRoutes\nIpExt: 0\n",
        )
        .expect("write");
        let mut sink = MetricSink::default();
        collect(&mut Procfs::new(dir.path()), &mut sink).expect("collect");
        let value = |name| sink.find(name).and_then(|f| f.value(&[]));
        for (name, expected) in [
            ("host_netstat_tcp_active_opens_total", 167.0),
            ("host_netstat_tcp_passive_opens_total", 2.0),
            ("host_netstat_tcp_attempt_fails_total", 3.0),
            ("host_netstat_tcp_established_resets_total", 4.0),
            ("host_netstat_tcp_current_established", 5.0),
            ("host_netstat_tcp_in_segments_total", 11903.0),
            ("host_netstat_tcp_out_segments_total", 9508.0),
            ("host_netstat_tcp_retransmitted_segments_total", 7.0),
            ("host_netstat_tcp_in_errors_total", 8.0),
            ("host_netstat_tcp_out_resets_total", 22.0),
            ("host_netstat_udp_in_datagrams_total", 332.0),
            ("host_netstat_udp_no_ports_total", 9.0),
            ("host_netstat_udp_in_errors_total", 10.0),
            ("host_netstat_udp_out_datagrams_total", 333.0),
            ("host_netstat_udp_receive_buffer_errors_total", 11.0),
            ("host_netstat_udp_send_buffer_errors_total", 12.0),
            ("host_netstat_tcp_syncookies_sent_total", 13.0),
            ("host_netstat_tcp_listen_overflows_total", 14.0),
            ("host_netstat_tcp_listen_drops_total", 15.0),
        ] {
            assert_eq!(value(name), Some(expected), "{name}");
        }
        assert_eq!(sink.families().len(), FIELDS.len());

        // The Ip section's names line is gone: the sections after it still pair up.
        let mut values = [None; FIELDS.len()];
        parse(
            SNMP,
            "Ip: 1 64\nIcmp: InMsgs\nIcmp: 5\n\
             Tcp: ActiveOpens PassiveOpens\nTcp: 167 2\n\
             Udp: InDatagrams\nUdp: 332\n",
            &mut values,
        );
        let parsed = |field: &str| {
            FIELDS
                .iter()
                .position(|f| f.field == field && f.file == SNMP)
                .and_then(|i| values[i])
        };
        assert_eq!(parsed("ActiveOpens"), Some(167.0));
        assert_eq!(parsed("PassiveOpens"), Some(2.0));
        assert_eq!(parsed("InDatagrams"), Some(332.0));
        assert_eq!(
            sink.find("host_netstat_tcp_current_established")
                .map(MetricFamily::kind),
            Some(mcpwatch_core::MetricKind::Gauge)
        );
    }
}
