//! Block device I/O from `/proc/diskstats`: operations, bytes and time, in base units, per
//! device. IOPS, utilisation and await are recording rules on these.

use mcpwatch_core::{CollectError, MetricFamily, MetricSink};

use crate::config::{HostConfig, passes};
use crate::procfs::Procfs;

/// What a field counts, for its conversion to base units.
#[derive(Clone, Copy)]
enum Unit {
    Count,
    /// Sectors of 512 bytes, whatever the device's own sector size.
    Sectors,
    Milliseconds,
}

impl Unit {
    fn base(self, raw: u64) -> f64 {
        match self {
            Unit::Count => raw as f64,
            Unit::Sectors => raw as f64 * 512.0,
            Unit::Milliseconds => raw as f64 / 1000.0,
        }
    }
}

/// The fields reported, by their index after the device name (the kernel's
/// `Documentation/admin-guide/iostats.rst`), and their unit.
const FIELDS: [(usize, &str, &str, Unit); 9] = [
    (
        0,
        "host_disk_reads_completed_total",
        "Reads completed by the block device.",
        Unit::Count,
    ),
    (
        2,
        "host_disk_read_bytes_total",
        "Bytes read from the block device.",
        Unit::Sectors,
    ),
    (
        3,
        "host_disk_read_time_seconds_total",
        "Seconds spent by all reads of the block device.",
        Unit::Milliseconds,
    ),
    (
        4,
        "host_disk_writes_completed_total",
        "Writes completed by the block device.",
        Unit::Count,
    ),
    (
        6,
        "host_disk_written_bytes_total",
        "Bytes written to the block device.",
        Unit::Sectors,
    ),
    (
        7,
        "host_disk_write_time_seconds_total",
        "Seconds spent by all writes of the block device.",
        Unit::Milliseconds,
    ),
    (
        8,
        "host_disk_io_now",
        "I/O operations in progress on the block device.",
        Unit::Count,
    ),
    (
        9,
        "host_disk_io_time_seconds_total",
        "Seconds the block device had I/O in progress.",
        Unit::Milliseconds,
    ),
    (
        10,
        "host_disk_io_time_weighted_seconds_total",
        "Seconds spent doing I/O, weighted by the operations in progress.",
        Unit::Milliseconds,
    ),
];

pub(crate) fn collect(
    config: &HostConfig,
    procfs: &mut Procfs,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    write(procfs.read("diskstats")?, config, sink);
    Ok(())
}

fn write(text: &str, config: &HostConfig, sink: &mut MetricSink) {
    let mut families = FIELDS.map(|(index, name, help, _)| {
        if index == 8 {
            MetricFamily::gauge(name, help)
        } else {
            MetricFamily::counter(name, help)
        }
    });
    // A device named twice (a garbled file) would be a duplicate series, which fails the
    // whole scrape in Prometheus: the first line counts.
    let mut seen = std::collections::HashSet::new();
    for line in text.lines() {
        // "major minor name" and at least the 11 fields every kernel since 2.6 writes.
        let mut words = line.split_whitespace();
        let Some(device) = words.nth(2) else {
            continue;
        };
        if !passes(
            device,
            config.disk_devices_include.as_ref(),
            config.disk_devices_exclude.as_ref(),
        ) {
            continue;
        }
        // A field that is not a number skips the device rather than report 0, which a
        // counter's rate would read as a reset.
        let mut values = [0_u64; 11];
        let mut count = 0;
        for (slot, word) in values.iter_mut().zip(words) {
            let Ok(value) = word.parse() else {
                break;
            };
            *slot = value;
            count += 1;
        }
        if count < values.len() || !seen.insert(device) {
            continue;
        }
        for (family, (index, _, _, unit)) in families.iter_mut().zip(FIELDS) {
            family.add(&[("device", device)], unit.base(values[index]));
        }
    }
    for family in families {
        sink.family(family);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::Pattern;

    const DISKSTATS: &str = "\
   7       0 loop0 12 0 24 1 0 0 0 0 0 4 1 0 0 0 0 0 0
 254       0 vda 29872 11763 2568386 10249 58380 40491 4939384 39971 2 9180 53951 9056 32 440744 1453 13051 2276
 254       1 vda1 29000 11000 2500000 10000 58000 40000 4900000 39000 0 9000 53000
 253       0 zram0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0 0
 259       0 nvme0n1 7 0 8 9 10 0 12 13 0 15 16
   8       0 sdb 1 2 3
";

    #[test]
    fn reports_whole_disks_in_base_units() {
        let mut sink = MetricSink::default();
        write(DISKSTATS, &HostConfig::default(), &mut sink);
        let value =
            |name: &str, device: &str| sink.find(name).and_then(|f| f.value(&[("device", device)]));
        assert_eq!(
            value("host_disk_reads_completed_total", "vda"),
            Some(29872.0)
        );
        assert_eq!(
            value("host_disk_read_bytes_total", "vda"),
            Some(2_568_386.0 * 512.0)
        );
        assert_eq!(
            value("host_disk_read_time_seconds_total", "vda"),
            Some(10.249)
        );
        assert_eq!(
            value("host_disk_writes_completed_total", "vda"),
            Some(58380.0)
        );
        assert_eq!(
            value("host_disk_written_bytes_total", "vda"),
            Some(4_939_384.0 * 512.0)
        );
        assert_eq!(
            value("host_disk_write_time_seconds_total", "vda"),
            Some(39.971)
        );
        assert_eq!(value("host_disk_io_now", "vda"), Some(2.0));
        assert_eq!(value("host_disk_io_time_seconds_total", "vda"), Some(9.18));
        assert_eq!(
            value("host_disk_io_time_weighted_seconds_total", "vda"),
            Some(53.951)
        );
        assert_eq!(value("host_disk_io_now", "nvme0n1"), Some(0.0));
        // Loop, zram and partitions are left out; a short line is skipped.
        for family in sink.families() {
            assert_eq!(family.samples().len(), 2, "{}", family.name());
        }
        assert_eq!(sink.families().len(), FIELDS.len());
    }

    #[test]
    fn skips_garbled_lines_and_devices_named_twice() {
        let text = "\
   8       0 sda 1 2 3 4 5 6 7 8 9 10 11
   8      16 sdb 1 2 xx 4 5 6 7 8 9 10 11
   8      32 sdc 1 2 99999999999999999999999 4 5 6 7 8 9 10 11
   8      48 sdd 1 2 3 4 5 6 7 8 9 10 -1
   8       0 sda 100 2 3 4 5 6 7 8 9 10 11
 253       0 we\"ird\\name 1 2 3 4 5 6 7 8 9 10 11
garbage

";
        let mut sink = MetricSink::default();
        write(text, &HostConfig::default(), &mut sink);
        for family in sink.families() {
            let devices: Vec<_> = family
                .samples()
                .iter()
                .map(|s| s.labels[0].1.clone())
                .collect();
            assert_eq!(devices, ["sda", "we\"ird\\name"], "{}", family.name());
        }
        assert_eq!(
            sink.find("host_disk_reads_completed_total")
                .and_then(|f| f.value(&[("device", "sda")])),
            Some(1.0)
        );
    }

    #[test]
    fn include_and_null_exclude() {
        let config = HostConfig {
            disk_devices_include: Pattern::new("^(loop0|vda1)$").ok(),
            disk_devices_exclude: None,
            ..HostConfig::default()
        };
        let mut sink = MetricSink::default();
        write(DISKSTATS, &config, &mut sink);
        let reads = sink
            .find("host_disk_reads_completed_total")
            .expect("family");
        assert_eq!(reads.samples().len(), 2);
        assert_eq!(reads.value(&[("device", "vda1")]), Some(29000.0));
    }
}
