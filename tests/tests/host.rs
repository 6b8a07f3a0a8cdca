//! The host collector through the exporter binary, against this machine's `/proc` read by
//! the test at the same moment: every counter the exporter serves lies between the test's
//! read just before the scrape and its read just after; an area switched off serves no
//! series; a procfs root lacking a file fails that area alone.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use mcpwatch_tests::binaries::start_exporter;
use mcpwatch_tests::exposition::value_of;
use mcpwatch_tests::http::scrape_text;
use mcpwatch_tests::tools::promtool_check_metrics;

/// The areas the default configuration runs on Linux (processes needs watched processes,
/// tcpstat is off by default).
const AREAS: [&str; 11] = [
    "cpu",
    "memory",
    "system",
    "network",
    "filesystem",
    "diskstats",
    "pressure",
    "sockstat",
    "netstat",
    "filefd",
    "timex",
];

async fn scrape(address: SocketAddr) -> String {
    scrape_text(address, None).await
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("reading {path}: {e}"))
}

/// What the test reads of `/proc`, each counter by the series the exporter writes for it,
/// in the same unit.
fn counters() -> BTreeMap<String, f64> {
    let mut counters = BTreeMap::new();
    let ticks = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .expect("CLK_TCK") as f64;
    let modes = [
        "user", "nice", "system", "idle", "iowait", "irq", "softirq", "steal",
    ];
    for line in read("/proc/stat").lines() {
        let mut words = line.split_whitespace();
        let key = words.next().unwrap_or_default();
        let first = || {
            line.split_whitespace()
                .nth(1)
                .and_then(|v| v.parse::<f64>().ok())
        };
        let scalar = match key {
            "ctxt" => Some("host_context_switches_total"),
            "intr" => Some("host_interrupts_total"),
            "processes" => Some("host_forks_total"),
            _ => None,
        };
        if let Some(name) = scalar {
            counters.insert(name.to_owned(), first().expect("a number"));
        } else if let Some(cpu) = key.strip_prefix("cpu").filter(|c| !c.is_empty()) {
            for (mode, value) in modes.iter().zip(words) {
                // The kernel's iowait may go backwards (Documentation/filesystems/proc.rst).
                if *mode == "iowait" {
                    continue;
                }
                let value: f64 = value.parse().expect("ticks");
                counters.insert(
                    format!("host_cpu_seconds_total{{cpu=\"{cpu}\",mode=\"{mode}\"}}"),
                    value / ticks,
                );
            }
        }
    }
    let disk = [
        (0, "host_disk_reads_completed_total", 1.0, 1.0),
        (2, "host_disk_read_bytes_total", 512.0, 1.0),
        (3, "host_disk_read_time_seconds_total", 1.0, 1000.0),
        (4, "host_disk_writes_completed_total", 1.0, 1.0),
        (6, "host_disk_written_bytes_total", 512.0, 1.0),
        (7, "host_disk_write_time_seconds_total", 1.0, 1000.0),
        (9, "host_disk_io_time_seconds_total", 1.0, 1000.0),
        (10, "host_disk_io_time_weighted_seconds_total", 1.0, 1000.0),
    ];
    for line in read("/proc/diskstats").lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        let Some(device) = words.get(2) else { continue };
        for (index, name, times, per) in disk {
            if let Some(value) = words.get(3 + index).and_then(|v| v.parse::<u64>().ok()) {
                counters.insert(
                    format!("{name}{{device=\"{device}\"}}"),
                    value as f64 * times / per,
                );
            }
        }
    }
    for resource in ["cpu", "memory", "io"] {
        let Ok(text) = std::fs::read_to_string(format!("/proc/pressure/{resource}")) else {
            continue;
        };
        for line in text.lines() {
            let total = line
                .split_whitespace()
                .find_map(|w| w.strip_prefix("total="))
                .and_then(|t| t.parse::<u64>().ok())
                .expect("total");
            let name = match line.split_whitespace().next() {
                Some("some") => "host_pressure_waiting_seconds_total",
                Some("full") => "host_pressure_stalled_seconds_total",
                _ => continue,
            };
            counters.insert(
                format!("{name}{{resource=\"{resource}\"}}"),
                total as f64 / 1_000_000.0,
            );
        }
    }
    let netstat = [
        ("Tcp", "ActiveOpens", "host_netstat_tcp_active_opens_total"),
        (
            "Tcp",
            "PassiveOpens",
            "host_netstat_tcp_passive_opens_total",
        ),
        ("Tcp", "InSegs", "host_netstat_tcp_in_segments_total"),
        ("Tcp", "OutSegs", "host_netstat_tcp_out_segments_total"),
        (
            "Tcp",
            "RetransSegs",
            "host_netstat_tcp_retransmitted_segments_total",
        ),
        ("Tcp", "OutRsts", "host_netstat_tcp_out_resets_total"),
        ("Udp", "InDatagrams", "host_netstat_udp_in_datagrams_total"),
        ("Udp", "InErrors", "host_netstat_udp_in_errors_total"),
        (
            "TcpExt",
            "ListenOverflows",
            "host_netstat_tcp_listen_overflows_total",
        ),
        (
            "TcpExt",
            "ListenDrops",
            "host_netstat_tcp_listen_drops_total",
        ),
    ];
    for file in ["/proc/net/snmp", "/proc/net/netstat"] {
        let text = read(file);
        let lines: Vec<&str> = text.lines().collect();
        for pair in lines.chunks(2) {
            let [names, values] = pair else { continue };
            let section = names.split(':').next().unwrap_or_default();
            for (field, value) in names
                .split_whitespace()
                .skip(1)
                .zip(values.split_whitespace().skip(1))
            {
                if let Some((_, _, name)) = netstat
                    .iter()
                    .find(|(s, f, _)| *s == section && *f == field)
                {
                    counters.insert((*name).to_owned(), value.parse().expect("number"));
                }
            }
        }
    }
    for line in read("/proc/net/dev").lines().skip(2) {
        let Some((device, values)) = line.split_once(':') else {
            continue;
        };
        let values: Vec<f64> = values
            .split_whitespace()
            .map(|v| v.parse().expect("number"))
            .collect();
        let device = device.trim();
        counters.insert(
            format!("host_network_receive_bytes_total{{device=\"{device}\"}}"),
            values[0],
        );
        counters.insert(
            format!("host_network_transmit_packets_total{{device=\"{device}\"}}"),
            values[9],
        );
    }
    counters
}

/// Values that stay put while the test runs: boot time, CPUs, the file handle limit, the
/// clock's synchronisation state and TAI offset.
fn constants() -> BTreeMap<&'static str, f64> {
    let stat = read("/proc/stat");
    let btime = stat
        .lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|b| b.trim().parse().ok())
        .expect("btime");
    let cpus = stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
        .count() as f64;
    let file_max = read("/proc/sys/fs/file-nr")
        .split_whitespace()
        .nth(2)
        .and_then(|m| m.parse().ok())
        .expect("file-max");
    let mut tx = rtime_clock::adjtime::Timex::new();
    let state = rtime_clock::adjtime::adjtimex(&mut tx).expect("adjtimex");
    BTreeMap::from([
        ("host_boot_time_seconds", btime),
        ("host_cpus", cpus),
        ("host_filefd_maximum", file_max),
        ("host_timex_sync_status", if state == 5 { 0.0 } else { 1.0 }),
        ("host_timex_tai_offset_seconds", f64::from(tx.0.tai)),
    ])
}

#[tokio::test]
async fn counters_lie_between_two_reads_of_proc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (exporter, address) = start_exporter(
        dir.path(),
        "collectors:\n  host:\n    areas: { tcpstat: true }\n",
        &[],
    )
    .await;
    let constants_before = constants();
    let before = counters();
    let text = scrape(address).await;
    let after = counters();
    assert_eq!(constants(), constants_before, "changed while the test ran");
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");

    let mut problems = Vec::new();
    let mut compared = 0;
    for line in text.lines().filter(|l| l.starts_with("host_")) {
        let Some((series, value)) = line.rsplit_once(' ') else {
            continue;
        };
        let value: f64 = value.parse().expect("value");
        if let Some(&expected) = constants_before.get(series) {
            compared += 1;
            if value != expected {
                problems.push(format!("{series}: {value}, /proc says {expected}"));
            }
            continue;
        }
        let (Some(low), Some(high)) = (before.get(series), after.get(series)) else {
            continue;
        };
        compared += 1;
        if !(*low <= value && value <= *high) {
            problems.push(format!("{series}: {value} not within [{low}, {high}]"));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));

    // Each kind of counter was compared: none was left out because the exporter named it
    // otherwise.
    for prefix in [
        "host_cpu_seconds_total{",
        "host_context_switches_total",
        "host_interrupts_total",
        "host_forks_total",
        "host_disk_reads_completed_total{",
        "host_disk_written_bytes_total{",
        "host_disk_io_time_weighted_seconds_total{",
        "host_netstat_tcp_active_opens_total",
        "host_netstat_tcp_listen_overflows_total",
        "host_network_receive_bytes_total{",
    ] {
        assert!(
            before
                .keys()
                .any(|k| k.starts_with(prefix) && text.contains(&format!("\n{k} "))),
            "{prefix} not served as /proc names it"
        );
    }
    if Path::new("/proc/pressure/io").exists() {
        assert!(text.contains("\nhost_pressure_waiting_seconds_total{resource=\"io\"} "));
    }
    assert!(compared > 50, "only {compared} series compared");
    for area in AREAS {
        assert_eq!(
            value_of(
                &text,
                &format!("host_scrape_area_success{{area=\"{area}\"}}")
            ),
            Some(1.0),
            "{area}: {}",
            exporter.output()
        );
    }
    // Every state is reported; the exporter's own socket listens.
    let listening = value_of(&text, "host_tcp_connections{state=\"listen\"}");
    assert!(listening.is_some_and(|l| l >= 1.0), "{listening:?}");
    assert_eq!(text.matches("\nhost_tcp_connections{").count(), 11);
}

#[tokio::test]
async fn an_area_switched_off_is_absent() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_exporter, address) = start_exporter(
        dir.path(),
        "collectors:\n  host:\n    areas: { pressure: false, timex: true }\n",
        &["--no-collector.host.diskstats", "--no-collector.host.timex"],
    )
    .await;
    let text = scrape(address).await;
    // Switched off in the file, by a flag over the file, by a flag, and by default.
    let off = ["pressure", "timex", "diskstats", "tcpstat"];
    for prefix in ["host_pressure_", "host_timex_", "host_disk_", "host_tcp_"] {
        assert!(
            !text.lines().any(|l| l.starts_with(prefix)),
            "{prefix}* served"
        );
    }
    for area in off {
        assert!(!text.contains(&format!("{{area=\"{area}\"}}")), "{area}");
    }
    for area in AREAS.iter().filter(|a| !off.contains(a)) {
        assert_eq!(
            value_of(
                &text,
                &format!("host_scrape_area_success{{area=\"{area}\"}}")
            ),
            Some(1.0),
            "{area}"
        );
    }
    assert!(text.contains("\nhost_sockstat_sockets_used "));
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
}

#[tokio::test]
async fn a_missing_proc_file_fails_only_its_area() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A procfs root with everything the areas read but diskstats.
    let procfs = dir.path().join("proc");
    std::fs::create_dir(&procfs).expect("mkdir");
    for entry in ["stat", "loadavg", "uptime", "net", "pressure", "sys"] {
        std::os::unix::fs::symlink(Path::new("/proc").join(entry), procfs.join(entry))
            .expect("symlink");
    }
    let (exporter, address) = start_exporter(
        dir.path(),
        &format!("collectors:\n  host:\n    procfs: {}\n", procfs.display()),
        &[],
    )
    .await;
    let text = scrape(address).await;
    assert_eq!(
        value_of(&text, "host_scrape_area_success{area=\"diskstats\"}"),
        Some(0.0)
    );
    assert!(
        value_of(
            &text,
            "host_scrape_area_duration_seconds{area=\"diskstats\"}"
        )
        .is_some()
    );
    for area in AREAS.iter().filter(|a| **a != "diskstats") {
        assert_eq!(
            value_of(
                &text,
                &format!("host_scrape_area_success{{area=\"{area}\"}}")
            ),
            Some(1.0),
            "{area}"
        );
    }
    assert_eq!(
        value_of(
            &text,
            "mcpwatch_scrape_collector_success{collector=\"host\",target=\"\"}"
        ),
        Some(1.0)
    );
    assert!(!text.lines().any(|l| l.starts_with("host_disk_")));
    assert!(text.contains("\nhost_cpu_seconds_total{"));
    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    // The failure is logged once, naming the file.
    scrape(address).await;
    let log = exporter.output();
    let expected = format!("{}/diskstats", procfs.display());
    assert_eq!(
        log.lines()
            .filter(|l| l.contains("Host area failed") && l.contains(&expected))
            .count(),
        1,
        "{log}"
    );
}
