//! Bytes, packets, errors and drops per network interface, and whether it is up.
//!
//! On Linux one read of `/proc/net/dev` gives every counter (sysinfo reads a dozen sysfs
//! files per interface); elsewhere sysinfo's counters are used.

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};

use crate::config::{HostConfig, passes};
use crate::procfs::Procfs;

/// Counters of one interface.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct InterfaceCounters {
    pub device: String,
    pub receive_bytes: u64,
    pub receive_packets: u64,
    pub receive_errors: u64,
    pub receive_drop: Option<u64>,
    pub transmit_bytes: u64,
    pub transmit_packets: u64,
    pub transmit_errors: u64,
    pub transmit_drop: Option<u64>,
    pub up: Option<bool>,
}

/// Parses `/proc/net/dev`.
#[cfg(target_os = "linux")]
fn parse_proc_net_dev(text: &str) -> Vec<InterfaceCounters> {
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, values) = line.split_once(':')?;
            let v: Vec<u64> = values
                .split_whitespace()
                .map(|n| n.parse().unwrap_or(0))
                .collect();
            (v.len() >= 12).then(|| InterfaceCounters {
                device: name.trim().to_owned(),
                receive_bytes: v[0],
                receive_packets: v[1],
                receive_errors: v[2],
                receive_drop: Some(v[3]),
                transmit_bytes: v[8],
                transmit_packets: v[9],
                transmit_errors: v[10],
                transmit_drop: Some(v[11]),
                up: None,
            })
        })
        .collect()
}

/// The network state kept across scrapes: nothing on Linux, sysinfo's list elsewhere.
#[derive(Debug)]
pub(crate) struct NetworkReader {
    #[cfg(not(target_os = "linux"))]
    networks: sysinfo::Networks,
}

impl NetworkReader {
    pub(crate) fn new() -> Result<Self, sysinfo::Error> {
        Ok(Self {
            #[cfg(not(target_os = "linux"))]
            networks: sysinfo::Networks::new_with_refreshed_list()?,
        })
    }

    #[cfg(target_os = "linux")]
    fn read(&mut self, procfs: &mut Procfs) -> Result<Vec<InterfaceCounters>, CollectError> {
        let mut interfaces = parse_proc_net_dev(procfs.read("net/dev")?);
        for interface in &mut interfaces {
            let path = format!("/sys/class/net/{}/operstate", interface.device);
            interface.up = std::fs::read_to_string(path).ok().map(|state| {
                // Loopback and some virtual interfaces report "unknown" while working.
                !matches!(state.trim(), "down" | "lowerlayerdown" | "notpresent")
            });
        }
        Ok(interfaces)
    }

    #[cfg(not(target_os = "linux"))]
    fn read(&mut self, _procfs: &mut Procfs) -> Result<Vec<InterfaceCounters>, CollectError> {
        use sysinfo::InterfaceOperationalState as State;
        self.networks.refresh(true);
        Ok(self
            .networks
            .iter()
            .map(|(name, d)| InterfaceCounters {
                device: name.to_string_lossy().into_owned(),
                receive_bytes: d.total_received(),
                receive_packets: d.total_packets_received(),
                receive_errors: d.total_errors_on_received(),
                receive_drop: None,
                transmit_bytes: d.total_transmitted(),
                transmit_packets: d.total_packets_transmitted(),
                transmit_errors: d.total_errors_on_transmitted(),
                transmit_drop: None,
                up: Some(!matches!(
                    d.operational_state(),
                    State::Down | State::LowerLayerDown | State::NotPresent
                )),
            })
            .collect())
    }

    pub(crate) fn collect(
        &mut self,
        config: &HostConfig,
        procfs: &mut Procfs,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let mut interfaces = self.read(procfs)?;
        interfaces.retain(|i| {
            passes(
                &i.device,
                config.network_devices_include.as_ref(),
                config.network_devices_exclude.as_ref(),
            )
        });
        interfaces.sort_by(|a, b| a.device.cmp(&b.device));
        write(&interfaces, sink);
        Ok(())
    }
}

type Reading = fn(&InterfaceCounters) -> Option<u64>;

fn write(interfaces: &[InterfaceCounters], sink: &mut MetricSink) {
    let counters: [(&'static str, &'static str, Reading); 8] = [
        (
            "host_network_receive_bytes_total",
            "Bytes received by the interface.",
            |i| Some(i.receive_bytes),
        ),
        (
            "host_network_transmit_bytes_total",
            "Bytes sent by the interface.",
            |i| Some(i.transmit_bytes),
        ),
        (
            "host_network_receive_packets_total",
            "Packets received by the interface.",
            |i| Some(i.receive_packets),
        ),
        (
            "host_network_transmit_packets_total",
            "Packets sent by the interface.",
            |i| Some(i.transmit_packets),
        ),
        (
            "host_network_receive_errors_total",
            "Receive errors of the interface.",
            |i| Some(i.receive_errors),
        ),
        (
            "host_network_transmit_errors_total",
            "Transmit errors of the interface.",
            |i| Some(i.transmit_errors),
        ),
        (
            "host_network_receive_drop_total",
            "Received packets the interface dropped.",
            |i| i.receive_drop,
        ),
        (
            "host_network_transmit_drop_total",
            "Outgoing packets the interface dropped.",
            |i| i.transmit_drop,
        ),
    ];
    for (name, help, read) in counters {
        let mut family = MetricFamily::counter(name, help);
        for interface in interfaces {
            if let Some(value) = read(interface) {
                family.add(&[("device", &interface.device)], value as f64);
            }
        }
        sink.family(family);
    }
    let up = sink.gauge(
        "host_network_up",
        "Whether the interface is operationally up; interfaces that report no state, such \
         as loopback, count as up.",
    );
    for interface in interfaces {
        if let Some(state) = interface.up {
            up.add(
                &[("device", &interface.device)],
                if state { 1.0 } else { 0.0 },
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::Pattern;

    #[cfg(target_os = "linux")]
    #[test]
    fn parses_proc_net_dev() {
        let text = "Inter-|   Receive |  Transmit\n face |bytes packets|bytes\n\
                    \x20   lo: 53991000   17630    0    0    0     0          0         0 \
                    53991000   17630    0    0    0     0       0          0\n\
                    \x20 eth0: 179804041    9651    3    4    0     0          0         0   \
                    635202    7789    5    6    0     0       0          0\n";
        let interfaces = parse_proc_net_dev(text);
        assert_eq!(interfaces.len(), 2);
        let eth0 = &interfaces[1];
        assert_eq!(eth0.device, "eth0");
        assert_eq!(eth0.receive_bytes, 179_804_041);
        assert_eq!(eth0.receive_errors, 3);
        assert_eq!(eth0.receive_drop, Some(4));
        assert_eq!(eth0.transmit_packets, 7789);
        assert_eq!(eth0.transmit_errors, 5);
        assert_eq!(eth0.transmit_drop, Some(6));
    }

    #[test]
    fn reports_interfaces_with_filters() {
        let mut reader = NetworkReader::new().expect("networks");
        let mut procfs = Procfs::new(std::path::Path::new("/proc"));
        let all = HostConfig {
            network_devices_exclude: None,
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        reader
            .collect(&all, &mut procfs, &mut sink)
            .expect("collect");
        let received = sink
            .find("host_network_receive_bytes_total")
            .expect("family");
        assert!(
            received.value(&[("device", "lo")]).is_some(),
            "loopback is listed"
        );
        assert_eq!(
            sink.find("host_network_up")
                .and_then(|f| f.value(&[("device", "lo")])),
            Some(1.0)
        );

        let only_lo = HostConfig {
            network_devices_include: Pattern::new("^lo$").ok(),
            network_devices_exclude: None,
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        reader
            .collect(&only_lo, &mut procfs, &mut sink)
            .expect("collect");
        assert_eq!(
            sink.find("host_network_receive_bytes_total")
                .expect("family")
                .samples()
                .len(),
            1
        );
        // The default excludes loopback.
        let mut sink = MetricSink::default();
        reader
            .collect(&HostConfig::default(), &mut procfs, &mut sink)
            .expect("collect");
        assert!(
            sink.find("host_network_receive_bytes_total")
                .and_then(|f| f.value(&[("device", "lo")]))
                .is_none()
        );
    }
}
