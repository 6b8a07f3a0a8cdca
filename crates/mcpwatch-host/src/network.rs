//! Bytes, packets and errors per network interface.

use mcpwatch_core::{MetricFamily, MetricSink};
use sysinfo::{InterfaceOperationalState, Networks};

use crate::config::{HostConfig, passes};

pub(crate) fn collect(networks: &mut Networks, config: &HostConfig, sink: &mut MetricSink) {
    networks.refresh(true);
    let mut interfaces: Vec<(String, &sysinfo::NetworkData)> = networks
        .iter()
        .map(|(name, data)| (name.to_string_lossy().into_owned(), data))
        .filter(|(name, _)| {
            passes(
                name,
                config.network_devices_include.as_ref(),
                config.network_devices_exclude.as_ref(),
            )
        })
        .collect();
    interfaces.sort_by(|a, b| a.0.cmp(&b.0));

    type Reading = fn(&sysinfo::NetworkData) -> u64;
    let counters: [(&'static str, &'static str, Reading); 6] = [
        (
            "host_network_receive_bytes_total",
            "Bytes received by the interface.",
            |d| d.total_received(),
        ),
        (
            "host_network_transmit_bytes_total",
            "Bytes sent by the interface.",
            |d| d.total_transmitted(),
        ),
        (
            "host_network_receive_packets_total",
            "Packets received by the interface.",
            |d| d.total_packets_received(),
        ),
        (
            "host_network_transmit_packets_total",
            "Packets sent by the interface.",
            |d| d.total_packets_transmitted(),
        ),
        (
            "host_network_receive_errors_total",
            "Receive errors of the interface.",
            |d| d.total_errors_on_received(),
        ),
        (
            "host_network_transmit_errors_total",
            "Transmit errors of the interface.",
            |d| d.total_errors_on_transmitted(),
        ),
    ];
    for (name, help, read) in counters {
        let mut family = MetricFamily::counter(name, help);
        for (device, data) in &interfaces {
            family.add(&[("device", device)], read(data) as f64);
        }
        sink.family(family);
    }
    let up = sink.gauge(
        "host_network_up",
        "Whether the interface is operationally up (1), down (0); unknown state counts as up \
         for interfaces that do not report one, such as loopback.",
    );
    for (device, data) in &interfaces {
        let value = match data.operational_state() {
            InterfaceOperationalState::Down
            | InterfaceOperationalState::LowerLayerDown
            | InterfaceOperationalState::NotPresent => 0.0,
            _ => 1.0,
        };
        up.add(&[("device", device)], value);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::Pattern;

    #[test]
    fn reports_interfaces_with_filters() {
        let mut networks = Networks::new_with_refreshed_list().expect("networks");
        let all = HostConfig {
            network_devices_exclude: None,
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        collect(&mut networks, &all, &mut sink);
        let received = sink
            .find("host_network_receive_bytes_total")
            .expect("family");
        assert!(
            received.value(&[("device", "lo")]).is_some(),
            "loopback is listed"
        );

        let only_lo = HostConfig {
            network_devices_include: Pattern::new("^lo$").ok(),
            network_devices_exclude: None,
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        collect(&mut networks, &only_lo, &mut sink);
        assert_eq!(
            sink.find("host_network_receive_bytes_total")
                .expect("family")
                .samples()
                .len(),
            1
        );
    }
}
