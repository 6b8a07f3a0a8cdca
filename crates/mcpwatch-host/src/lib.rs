#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod cpu;
mod filesystem;
mod memory;
mod network;
mod process;
mod system;

use std::sync::{Arc, Mutex, PoisonError, TryLockError};

use mcpwatch_core::{CollectError, Collector, MetricSink, ScrapeContext, async_trait};
use sysinfo::{Disks, System};

pub use config::{HostConfig, WatchedProcess};

/// State kept across scrapes: sysinfo's structures remember the previous readings.
struct SystemState {
    system: System,
    networks: network::NetworkReader,
}

/// Collects the host's metrics (`host_*`). Reading `/proc` and statfs runs on tokio's
/// blocking threads, filesystems apart from the rest so that a hung mount delays only them.
pub struct HostCollector {
    config: Arc<HostConfig>,
    info: Arc<system::HostInfo>,
    state: Arc<Mutex<SystemState>>,
    disks: Arc<Mutex<Disks>>,
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
        let system = System::new()?;
        let networks = network::NetworkReader::new()?;
        let disks = Disks::new_with_refreshed_list_specifics(filesystem::refresh_kind())?;
        Ok(Self {
            config: Arc::new(config),
            info: Arc::new(system::HostInfo::read()),
            state: Arc::new(Mutex::new(SystemState { system, networks })),
            disks: Arc::new(Mutex::new(disks)),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &HostConfig {
        &self.config
    }
}

#[async_trait]
impl Collector for HostCollector {
    fn name(&self) -> &str {
        "host"
    }

    async fn collect(
        &self,
        _ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let (config, info, state) = (self.config.clone(), self.info.clone(), self.state.clone());
        let system_part = tokio::task::spawn_blocking(move || {
            let mut out = MetricSink::default();
            let mut state = state.lock().unwrap_or_else(PoisonError::into_inner);
            let SystemState { system, networks } = &mut *state;
            #[cfg(target_os = "linux")]
            let cpu = cpu::collect(&mut out);
            #[cfg(not(target_os = "linux"))]
            let cpu: Result<(), CollectError> = {
                cpu::collect_usage(system, &mut out);
                Ok(())
            };
            memory::collect(system, &mut out);
            system::collect(&info, &mut out);
            let processes = system::collect_process_count(system, &mut out);
            process::collect(system, &config.processes, &mut out);
            let network = networks.collect(&config, &mut out);
            (out, cpu.and(processes).and(network))
        });
        let (config, disks) = (self.config.clone(), self.disks.clone());
        let filesystem_part = tokio::task::spawn_blocking(move || {
            // A mount that hangs in statfs keeps its lock; later scrapes skip filesystems
            // instead of queueing more blocked threads behind it.
            let mut disks = match disks.try_lock() {
                Ok(disks) => disks,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => {
                    return Err(CollectError::msg(
                        "filesystem statistics are still being read by an earlier scrape \
                         (a hung mount?)",
                    ));
                }
            };
            let mut out = MetricSink::default();
            filesystem::collect(&mut disks, &config, &mut out);
            Ok(out)
        });

        // Each part goes into the sink as soon as it is done: when the deadline cuts a slow
        // part (a hung mount), what the other gathered is still served.
        tokio::pin!(system_part, filesystem_part);
        let (mut system_done, mut filesystems_done) = (false, false);
        let mut result = Ok(());
        while !(system_done && filesystems_done) {
            tokio::select! {
                joined = &mut system_part, if !system_done => {
                    system_done = true;
                    match joined {
                        Ok((out, part_result)) => {
                            sink.append(out);
                            result = result.and(part_result);
                        }
                        Err(e) => {
                            result = result.and(Err(CollectError::msg(format_args!(
                                "host system task: {e}"
                            ))));
                        }
                    }
                }
                joined = &mut filesystem_part, if !filesystems_done => {
                    filesystems_done = true;
                    match joined {
                        Ok(Ok(out)) => sink.append(out),
                        Ok(Err(e)) => result = result.and(Err(e)),
                        Err(e) => {
                            result = result.and(Err(CollectError::msg(format_args!(
                                "host filesystem task: {e}"
                            ))));
                        }
                    }
                }
            }
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::ScrapeEngine;

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
    }

    #[tokio::test]
    async fn filesystems_still_busy_from_an_earlier_scrape_fail_alone() {
        let collector = HostCollector::new(HostConfig::default()).expect("host");
        // A thread holds the filesystems, as an earlier scrape's statfs hanging on a dead
        // mount would.
        let disks = collector.disks.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = disks.lock().expect("lock");
            locked_tx.send(()).expect("signal");
            let _ = release_rx.recv();
        });
        locked_rx.recv().expect("filesystems held");
        let mut sink = MetricSink::default();
        let ctx =
            ScrapeContext::new(tokio::time::Instant::now() + std::time::Duration::from_secs(10));
        let error = collector
            .collect(&ctx, &mut sink)
            .await
            .expect_err("filesystems unavailable");
        release_tx.send(()).expect("release");
        holder.join().expect("holder thread");
        assert!(error.to_string().contains("hung mount"), "{error}");
        assert!(
            sink.find("host_memory_total_bytes").is_some(),
            "other areas served"
        );
        assert!(sink.find("host_cpu_seconds_total").is_some() || cfg!(not(target_os = "linux")));
        assert!(sink.find("host_filesystem_size_bytes").is_none());
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
