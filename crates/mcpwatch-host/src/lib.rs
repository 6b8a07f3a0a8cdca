#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod area;
pub mod config;
mod cpu;
#[cfg(target_os = "linux")]
mod diskstats;
#[cfg(target_os = "linux")]
mod filefd;
mod filesystem;
mod memory;
#[cfg(target_os = "linux")]
mod netstat;
mod network;
#[cfg(target_os = "linux")]
mod pressure;
mod process;
mod procfs;
#[cfg(target_os = "linux")]
mod sockstat;
mod system;
#[cfg(target_os = "linux")]
mod tcpstat;
#[cfg(target_os = "linux")]
mod timex;

use std::sync::mpsc;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use mcpwatch_core::{
    BlockingLane, CollectError, Collector, MetricSink, ScrapeContext, async_trait,
};
use sysinfo::{Disks, System};
use tokio::time::Instant;

pub use area::Area;
pub use config::{HostConfig, WatchedProcess};

use area::{AreaLog, AreaOutcome};
use procfs::Procfs;

/// Time kept between the areas' deadline and the scrape's, for the areas' outcomes to be
/// written before the engine stops waiting for the collector.
const OUTCOME_MARGIN: Duration = Duration::from_millis(20);

/// What the areas read from `/proc` keep between scrapes.
struct ProcState {
    procfs: Procfs,
    /// Memory, and CPU usage and process counts where Linux's `/proc` is not there.
    system: System,
    networks: network::NetworkReader,
}

/// Collects the host's metrics (`host_*`), area by area (see [`Area`]). Every area runs on
/// tokio's blocking threads, in four lanes that do not wait for each other: the areas
/// read from `/proc` and adjtimex one after the other, the TCP states (a table that grows
/// with the connections, read until the deadline), the filesystems (statfs, which hangs on
/// a dead network mount), and the watched processes. Each area is timed and marked
/// successful on its own, so a missing file or a hung mount fails its area, not the host.
pub struct HostCollector {
    config: Arc<HostConfig>,
    info: Arc<system::HostInfo>,
    proc_lane: BlockingLane,
    proc_state: Arc<Mutex<ProcState>>,
    tcp_lane: BlockingLane,
    tcp_procfs: Arc<Mutex<Procfs>>,
    filesystem_lane: BlockingLane,
    disks: Arc<Mutex<Disks>>,
    process_lane: BlockingLane,
    processes: Arc<Mutex<System>>,
    log: AreaLog,
}

impl std::fmt::Debug for HostCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostCollector")
            .field("config", &self.config)
            .finish()
    }
}

/// Why the host collector could not be created.
#[derive(Debug, thiserror::Error)]
pub enum HostError {
    /// The operating system is not supported by sysinfo.
    #[error("host metrics are not available on this system: {0}")]
    Unsupported(#[from] sysinfo::Error),
    /// The configuration is inconsistent.
    #[error("collectors.host.{key}: {message}")]
    Config {
        /// The key at fault, under `collectors.host`.
        key: String,
        /// What is wrong.
        message: String,
    },
}

impl HostCollector {
    /// Creates the collector and takes a first reading, so that the first scrape has a
    /// baseline.
    pub fn new(config: HostConfig) -> Result<Self, HostError> {
        config
            .validate()
            .map_err(|(key, message)| HostError::Config { key, message })?;
        let proc_state = ProcState {
            procfs: Procfs::new(config.procfs.path()),
            system: System::new()?,
            networks: network::NetworkReader::new()?,
        };
        let disks = Disks::new_with_refreshed_list_specifics(filesystem::refresh_kind())?;
        Ok(Self {
            info: Arc::new(system::HostInfo::read()),
            proc_lane: BlockingLane::default(),
            proc_state: Arc::new(Mutex::new(proc_state)),
            tcp_lane: BlockingLane::default(),
            tcp_procfs: Arc::new(Mutex::new(Procfs::new(config.procfs.path()))),
            filesystem_lane: BlockingLane::default(),
            disks: Arc::new(Mutex::new(disks)),
            process_lane: BlockingLane::default(),
            processes: Arc::new(Mutex::new(System::new()?)),
            log: AreaLog::default(),
            config: Arc::new(config),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }

    /// The areas this collector runs: enabled, supported here, and with something to do.
    fn areas(&self, lane: impl Fn(Area) -> bool) -> Vec<Area> {
        Area::ALL
            .into_iter()
            .filter(|&area| {
                lane(area)
                    && area.supported()
                    && self.config.area_enabled(area)
                    && (area != Area::Processes || !self.config.processes.is_empty())
            })
            .collect()
    }
}

/// Runs one area of the `/proc` lane.
fn collect_proc_area(
    area: Area,
    state: &mut ProcState,
    config: &HostConfig,
    info: &system::HostInfo,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    let ProcState {
        procfs,
        system,
        networks,
    } = state;
    match area {
        #[cfg(target_os = "linux")]
        Area::Cpu => cpu::collect(procfs, sink),
        #[cfg(not(target_os = "linux"))]
        Area::Cpu => {
            cpu::collect_usage(system, sink);
            Ok(())
        }
        Area::Memory => {
            memory::collect(system, sink);
            Ok(())
        }
        #[cfg(target_os = "linux")]
        Area::System => system::collect(info, procfs, sink),
        #[cfg(not(target_os = "linux"))]
        Area::System => system::collect(info, system, sink),
        Area::Network => networks.collect(config, procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Diskstats => diskstats::collect(config, procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Pressure => pressure::collect(procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Sockstat => sockstat::collect(procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Netstat => netstat::collect(procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Filefd => filefd::collect(procfs, sink),
        #[cfg(target_os = "linux")]
        Area::Timex => timex::collect(sink),
        // Areas of the other lanes, or not supported here.
        _ => Ok(()),
    }
}

/// Runs the TCP states area on its own lane.
fn collect_tcp_area(
    procfs: &mut Procfs,
    stop: std::time::Instant,
    sink: &mut MetricSink,
) -> Result<(), CollectError> {
    #[cfg(target_os = "linux")]
    return tcpstat::collect(procfs, stop, sink);
    #[cfg(not(target_os = "linux"))]
    {
        let _ = (procfs, stop, sink);
        Ok(())
    }
}

/// What one area reports from its lane.
struct AreaDone {
    outcome: AreaOutcome,
    sink: MetricSink,
}

/// Runs `areas` one after the other on `lane`, each timed, with its metrics apart from the
/// others', and returns every area's metrics and outcome: the areas the lane did not reach
/// by the deadline (a read that hung, or an earlier scrape's still holding the lane) fail
/// with the lane's error.
async fn run_lane<S: Send + 'static>(
    lane: &BlockingLane,
    ctx: &ScrapeContext,
    what: &str,
    areas: Vec<Area>,
    state: Arc<Mutex<S>>,
    work: impl Fn(Area, &mut S, std::time::Instant, &mut MetricSink) -> Result<(), CollectError>
    + Send
    + 'static,
) -> Vec<AreaDone> {
    if areas.is_empty() {
        return Vec::new();
    }
    let start = Instant::now();
    let (done_tx, done_rx) = mpsc::channel();
    let lane_areas = areas.clone();
    let ran = lane
        .run(ctx, what, move |stop| {
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            for area in lane_areas {
                let started = std::time::Instant::now();
                let mut sink = MetricSink::default();
                let result = if started >= stop {
                    Err(CollectError::msg(
                        "not started: the scrape's deadline came first",
                    ))
                } else {
                    work(area, &mut *state, stop, &mut sink)
                };
                let outcome = AreaOutcome {
                    area,
                    duration: started.elapsed(),
                    result: result.map_err(|e| e.to_string()),
                };
                // The receiver is gone only when the scrape gave up on this lane.
                if done_tx.send(AreaDone { outcome, sink }).is_err() {
                    return;
                }
            }
        })
        .await;
    let mut done: Vec<AreaDone> = done_rx.try_iter().collect();
    if let Err(error) = ran {
        let error = error.to_string();
        for area in areas {
            if !done.iter().any(|d| d.outcome.area == area) {
                done.push(AreaDone {
                    outcome: AreaOutcome {
                        area,
                        duration: start.elapsed(),
                        result: Err(error.clone()),
                    },
                    sink: MetricSink::default(),
                });
            }
        }
    }
    done
}

#[async_trait]
impl Collector for HostCollector {
    fn name(&self) -> &str {
        "host"
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let areas_ctx = ScrapeContext::new(
            ctx.deadline()
                .checked_sub(OUTCOME_MARGIN)
                .unwrap_or(ctx.deadline()),
        );

        let proc_areas =
            self.areas(|a| !matches!(a, Area::Tcpstat | Area::Filesystem | Area::Processes));
        let (config, info) = (self.config.clone(), self.info.clone());
        let proc_lane = run_lane(
            &self.proc_lane,
            &areas_ctx,
            "reading /proc",
            proc_areas,
            self.proc_state.clone(),
            move |area, state, _, sink| collect_proc_area(area, state, &config, &info, sink),
        );

        // TCP states read a table that grows with the connections and is cut at the
        // deadline: on a lane of their own, a large one fails only itself, and does not
        // keep a concurrent scrape with a shorter deadline from the other areas.
        let tcp_lane = run_lane(
            &self.tcp_lane,
            &areas_ctx,
            "reading TCP sockets",
            self.areas(|a| a == Area::Tcpstat),
            self.tcp_procfs.clone(),
            |_, procfs, stop, sink| collect_tcp_area(procfs, stop, sink),
        );

        let mut filesystem_areas = self.areas(|a| a == Area::Filesystem);
        let mut filesystem_busy = Vec::new();
        // A statfs that hangs (a dead network mount) holds the lane: later scrapes fail the
        // area at once instead of waiting for it until their deadline.
        if !filesystem_areas.is_empty() && self.filesystem_lane.is_busy() {
            filesystem_areas.clear();
            filesystem_busy.push(AreaDone {
                outcome: AreaOutcome {
                    area: Area::Filesystem,
                    duration: Duration::ZERO,
                    result: Err(
                        "statfs of an earlier scrape has not returned (a hung mount?)".to_owned(),
                    ),
                },
                sink: MetricSink::default(),
            });
        }
        let config = self.config.clone();
        let filesystem_lane = run_lane(
            &self.filesystem_lane,
            &areas_ctx,
            "reading filesystem statistics",
            filesystem_areas,
            self.disks.clone(),
            move |_, disks, _, sink| {
                filesystem::collect(disks, &config, sink);
                Ok(())
            },
        );

        let process_areas = self.areas(|a| a == Area::Processes);
        let config = self.config.clone();
        let process_lane = run_lane(
            &self.process_lane,
            &areas_ctx,
            "reading watched processes",
            process_areas,
            self.processes.clone(),
            move |_, system, _, sink| {
                process::collect(system, &config.processes, sink);
                Ok(())
            },
        );

        let (proc_done, tcp_done, filesystem_done, process_done) =
            tokio::join!(proc_lane, tcp_lane, filesystem_lane, process_lane);
        let mut done: Vec<AreaDone> = proc_done;
        done.extend(tcp_done);
        done.extend(filesystem_done);
        done.extend(filesystem_busy);
        done.extend(process_done);
        done.sort_by_key(|d| d.outcome.area);
        let mut outcomes = Vec::with_capacity(done.len());
        for AreaDone { outcome, sink: out } in done {
            self.log.record(&outcome);
            sink.append(out);
            outcomes.push(outcome);
        }
        area::write_outcomes(&outcomes, sink);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::ScrapeEngine;
    use mcpwatch_core::config::ConfigPath;
    use std::path::Path;

    fn area_success(scrape: &mcpwatch_core::Scrape, area: &str) -> Option<f64> {
        scrape.value("host_scrape_area_success", &[("area", area)])
    }

    #[tokio::test]
    async fn collects_every_area() {
        let collector = HostCollector::new(HostConfig::default()).expect("host");
        let engine = ScrapeEngine::builder().collector(collector).build();
        let scrape = engine.scrape(None).await;
        for name in [
            "host_cpu_seconds_total",
            "host_cpus",
            "host_memory_total_bytes",
            "host_memory_available_bytes",
            "host_swap_total_bytes",
            "host_load1",
            "host_uptime_seconds",
            "host_boot_time_seconds",
            "host_processes",
            "host_procs_running",
            "host_filesystem_size_bytes",
            "host_filesystem_avail_bytes",
            "host_network_receive_bytes_total",
            "host_info",
        ] {
            assert!(scrape.group(name).is_some(), "{name} missing");
        }
        assert_eq!(
            scrape.value(
                "mcpwatch_scrape_collector_success",
                &[("collector", "host")]
            ),
            Some(1.0)
        );
        for area in Area::ALL {
            let expected = (area.supported() && area.on_by_default() && area != Area::Processes)
                .then_some(1.0);
            assert_eq!(area_success(&scrape, area.name()), expected, "{area:?}");
        }
    }

    #[tokio::test]
    async fn filesystems_still_busy_from_an_earlier_scrape_fail_alone() {
        let collector = HostCollector::new(HostConfig::default()).expect("host");
        // The lane is held, as an earlier scrape's statfs hanging on a dead mount holds it.
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let long = ScrapeContext::new(Instant::now() + Duration::from_secs(60));
        let lane = &collector.filesystem_lane;
        let holder = lane.run(&long, "a hung statfs", move |_| {
            let _ = locked_tx.send(());
            let _ = release_rx.recv();
        });
        let scrape = async {
            locked_rx.await.expect("lane held");
            let mut sink = MetricSink::default();
            let ctx = ScrapeContext::new(Instant::now() + Duration::from_secs(10));
            let started = Instant::now();
            collector
                .collect(&ctx, &mut sink)
                .await
                .expect("the host does not fail");
            let took = started.elapsed();
            release_tx.send(()).expect("release");
            (sink, took)
        };
        let (held, (sink, took)) = tokio::join!(holder, scrape);
        held.expect("holder");
        assert!(
            took < Duration::from_secs(10),
            "did not wait for the lane: {took:?}"
        );
        let success = |area: &str| {
            sink.find("host_scrape_area_success")
                .and_then(|f| f.value(&[("area", area)]))
        };
        assert_eq!(success("filesystem"), Some(0.0));
        assert_eq!(success("memory"), Some(1.0));
        assert_eq!(success("cpu"), Some(1.0));
        assert!(
            sink.find("host_memory_total_bytes").is_some(),
            "other areas served"
        );
        assert!(sink.find("host_filesystem_size_bytes").is_none());
    }

    #[tokio::test]
    async fn tcp_states_cut_at_the_deadline_fail_alone() {
        let root = tempfile::tempdir().expect("tempdir");
        for file in [
            "stat",
            "loadavg",
            "uptime",
            "diskstats",
            "net/dev",
            "net/sockstat",
            "net/snmp",
            "net/netstat",
            "sys/fs/file-nr",
        ] {
            let to = root.path().join(file);
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            let text = std::fs::read(Path::new("/proc").join(file)).expect("read /proc");
            std::fs::write(to, text).expect("write");
        }
        // A table of a terabyte (sparse): no scrape reads it to the end.
        std::fs::File::create(root.path().join("net/tcp"))
            .and_then(|tcp| tcp.set_len(1 << 40))
            .expect("sparse net/tcp");
        let config = HostConfig {
            areas: [(Area::Tcpstat, true)].into(),
            procfs: ConfigPath::from(root.path().to_owned()),
            ..HostConfig::default()
        };
        let collector = HostCollector::new(config).expect("host");
        let mut sink = MetricSink::default();
        let ctx = ScrapeContext::new(Instant::now() + Duration::from_secs(2));
        collector.collect(&ctx, &mut sink).await.expect("collect");
        let success = |area: &str| {
            sink.find("host_scrape_area_success")
                .and_then(|f| f.value(&[("area", area)]))
        };
        assert_eq!(success("tcpstat"), Some(0.0));
        for area in [
            "cpu",
            "system",
            "diskstats",
            "sockstat",
            "netstat",
            "filefd",
            "timex",
        ] {
            assert_eq!(success(area), Some(1.0), "{area}");
        }
    }

    #[tokio::test]
    async fn tcp_states_still_read_by_an_earlier_scrape_keep_no_other_area_waiting() {
        let config = HostConfig {
            areas: [(Area::Tcpstat, true)].into(),
            ..HostConfig::default()
        };
        let collector = HostCollector::new(config).expect("host");
        // A scrape with a longer deadline still reads a large /proc/net/tcp.
        let (locked_tx, locked_rx) = tokio::sync::oneshot::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let long = ScrapeContext::new(Instant::now() + Duration::from_secs(60));
        let holder = collector.tcp_lane.run(&long, "a long TCP table", move |_| {
            let _ = locked_tx.send(());
            let _ = release_rx.recv();
        });
        let scrape = async {
            locked_rx.await.expect("lane held");
            let mut sink = MetricSink::default();
            let ctx = ScrapeContext::new(Instant::now() + Duration::from_secs(2));
            collector.collect(&ctx, &mut sink).await.expect("collect");
            release_tx.send(()).expect("release");
            sink
        };
        let (held, sink) = tokio::join!(holder, scrape);
        held.expect("holder");
        let success = |area: &str| {
            sink.find("host_scrape_area_success")
                .and_then(|f| f.value(&[("area", area)]))
        };
        assert_eq!(success("tcpstat"), Some(0.0));
        for area in [
            "cpu",
            "memory",
            "system",
            "network",
            "diskstats",
            "netstat",
            "timex",
        ] {
            assert_eq!(success(area), Some(1.0), "{area}");
        }
    }

    #[tokio::test]
    async fn areas_switched_off_are_absent() {
        let config = HostConfig {
            areas: [(Area::Cpu, false), (Area::Filesystem, false)].into(),
            ..HostConfig::default()
        };
        let collector = HostCollector::new(config).expect("host");
        let mut sink = MetricSink::default();
        let ctx = ScrapeContext::new(Instant::now() + Duration::from_secs(10));
        collector.collect(&ctx, &mut sink).await.expect("collect");
        assert!(sink.find("host_cpu_seconds_total").is_none());
        assert!(sink.find("host_filesystem_size_bytes").is_none());
        let areas: Vec<String> = sink
            .find("host_scrape_area_success")
            .expect("family")
            .samples()
            .iter()
            .flat_map(|s| s.labels.iter().map(|(_, v)| v.clone()))
            .collect();
        assert!(!areas.contains(&"cpu".to_owned()), "{areas:?}");
        assert!(!areas.contains(&"filesystem".to_owned()), "{areas:?}");
        assert!(areas.contains(&"memory".to_owned()), "{areas:?}");
    }

    #[test]
    fn invalid_config_names_the_key() {
        let config = HostConfig {
            processes: vec![WatchedProcess {
                name: "d".into(),
                comm: None,
                cmdline: None,
                pid_file: None,
            }],
            ..HostConfig::default()
        };
        let error = HostCollector::new(config)
            .expect_err("no selector")
            .to_string();
        assert_eq!(
            error,
            "collectors.host.processes[0]: set exactly one of comm, cmdline or pid_file"
        );
    }
}
