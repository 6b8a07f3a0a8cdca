//! The running exporter: collectors built from the configuration, rebuilt on reload.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use mcpwatch_certificates::{CertificatesCollector, CertificatesConfig};
use mcpwatch_containers::{ContainersCollector, ContainersConfig};
use mcpwatch_core::secret::redact_message;
use mcpwatch_core::{Collector, MetricSink, MetricSource, ScrapeEngine};
use mcpwatch_files::{FilesCollector, FilesConfig};
use mcpwatch_host::{HostCollector, HostConfig};
use mcpwatch_logs::{LogPatternsCollector, LogPatternsConfig};
use mcpwatch_postgres::{PostgresCollector, PostgresConfig};
use mcpwatch_redis::{RedisCollector, RedisConfig};
use mcpwatch_wsdaemon::{HttpCollector, HttpConfig, WsDaemonCollector, WsDaemonConfig};

use crate::config::{ConfigSource, ExporterConfig};
use crate::probe::{ProbeState, Prober};

/// The configuration a collector was built from; a reload keeps a collector (and the
/// state it holds, such as connections) when its configuration did not change.
#[derive(Debug, Clone, PartialEq)]
enum CollectorSpec {
    /// Boxed, as the daemon's: the host's settings are the next largest.
    Host(Box<HostConfig>),
    Postgres(PostgresConfig),
    Redis(RedisConfig),
    /// Boxed: a daemon's settings are the largest by far.
    WsDaemon(Box<WsDaemonConfig>),
    Http(HttpConfig),
    Certificates(CertificatesConfig),
    Files(FilesConfig),
    LogPatterns(LogPatternsConfig),
    Containers(ContainersConfig),
}

type Built = Vec<(CollectorSpec, Arc<dyn Collector>)>;

/// Builds the collectors of `config`, keeping those of `previous` whose configuration did
/// not change. A collector's error may quote a value read from the configuration (the path
/// of a CA file) that holds a secret: it is redacted as configuration errors are.
fn build(config: &ExporterConfig, previous: &Built) -> Result<Built, String> {
    let mut specs = Vec::new();
    let collectors = &config.collectors;
    if collectors.host.enabled {
        specs.push(CollectorSpec::Host(Box::new(collectors.host.clone())));
    }
    let postgres = collectors.postgres.iter().cloned();
    specs.extend(postgres.map(CollectorSpec::Postgres));
    let redis = collectors.redis.iter().cloned();
    specs.extend(redis.map(CollectorSpec::Redis));
    let wsdaemon = collectors.wsdaemon.iter().cloned();
    specs.extend(wsdaemon.map(|target| CollectorSpec::WsDaemon(Box::new(target))));
    let http = collectors.http.iter().cloned();
    specs.extend(http.map(CollectorSpec::Http));
    let certificates = collectors.certificates.iter().cloned();
    specs.extend(certificates.map(CollectorSpec::Certificates));
    let files = collectors.files.iter().cloned();
    specs.extend(files.map(CollectorSpec::Files));
    let log_patterns = collectors.log_patterns.iter().cloned();
    specs.extend(log_patterns.map(CollectorSpec::LogPatterns));
    let containers = collectors.containers.iter().cloned();
    specs.extend(containers.map(CollectorSpec::Containers));
    specs
        .into_iter()
        .map(|spec| {
            if let Some((_, kept)) = previous.iter().find(|(old, _)| *old == spec) {
                return Ok((spec, kept.clone()));
            }
            let collector: Arc<dyn Collector> = match &spec {
                CollectorSpec::Host(host) => {
                    Arc::new(HostCollector::new(host.as_ref().clone()).map_err(|e| e.to_string())?)
                }
                CollectorSpec::Postgres(target) => Arc::new(
                    PostgresCollector::new(target.clone())
                        .map_err(|e| format!("postgres target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::Redis(target) => Arc::new(
                    RedisCollector::new(target.clone())
                        .map_err(|e| format!("redis target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::WsDaemon(target) => Arc::new(
                    WsDaemonCollector::new(target.as_ref().clone())
                        .map_err(|e| format!("wsdaemon target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::Http(target) => Arc::new(
                    HttpCollector::new(target.clone())
                        .map_err(|e| format!("http target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::Certificates(target) => Arc::new(
                    CertificatesCollector::new(target.clone())
                        .map_err(|e| format!("certificates target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::Files(target) => Arc::new(
                    FilesCollector::new(target.clone())
                        .map_err(|e| format!("files target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::LogPatterns(target) => Arc::new(
                    LogPatternsCollector::new(target.clone())
                        .map_err(|e| format!("log_patterns target {:?}: {e}", target.name))?,
                ),
                CollectorSpec::Containers(target) => Arc::new(
                    ContainersCollector::new(target.clone())
                        .map_err(|e| format!("containers target {:?}: {e}", target.name))?,
                ),
            };
            Ok((spec, collector))
        })
        .collect::<Result<Built, String>>()
        .map_err(|error| redact_message(&error))
}

/// Builds every collector and probe module of `config` and drops them, as `--check-config`
/// does: a CA file that does not parse is found there, not at start. Nothing connects.
pub fn check(config: &ExporterConfig) -> Result<(), String> {
    build(config, &Vec::new())?;
    ProbeState::build(config).map(|_| ())
}

/// `mcpwatch_config_last_reload_*`, as Prometheus and Alertmanager report theirs.
#[derive(Debug, Default)]
struct ReloadStatus {
    successful: AtomicBool,
    success_timestamp: AtomicU64,
}

impl ReloadStatus {
    fn record(&self, ok: bool) {
        self.successful.store(ok, Ordering::Relaxed);
        if ok {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            self.success_timestamp.store(now, Ordering::Relaxed);
        }
    }
}

impl MetricSource for ReloadStatus {
    fn collect(&self, sink: &mut MetricSink) {
        sink.gauge(
            "mcpwatch_config_last_reload_successful",
            "Whether the last configuration load succeeded.",
        )
        .add(
            &[],
            if self.successful.load(Ordering::Relaxed) {
                1.0
            } else {
                0.0
            },
        );
        sink.gauge(
            "mcpwatch_config_last_reload_success_timestamp_seconds",
            "When the configuration was last loaded successfully, in seconds since the epoch.",
        )
        .add(&[], self.success_timestamp.load(Ordering::Relaxed) as f64);
    }
}

/// The exporter's collectors and engine, and the modules of `/probe`.
pub struct Exporter {
    source: ConfigSource,
    engine: ScrapeEngine,
    built: Mutex<Built>,
    prober: Arc<Prober>,
    status: Arc<ReloadStatus>,
    /// With the worker count sized to the work: the workers running and the cores there are.
    sized_workers: Option<(usize, usize)>,
}

impl Exporter {
    /// Builds the collectors and probe modules of `config`.
    pub fn new(source: ConfigSource, config: &ExporterConfig) -> Result<Self, String> {
        let built = build(config, &Vec::new())?;
        let prober = Arc::new(Prober::new(ProbeState::build(config)?));
        let status = Arc::new(ReloadStatus::default());
        status.record(true);
        let engine = ScrapeEngine::builder()
            .collectors(built.iter().map(|(_, c)| c.clone()))
            .options(config.scrape.options())
            .source(status.clone())
            .source(prober.clone())
            .build_info(env!("CARGO_PKG_VERSION"), env!("MCPWATCH_REVISION"))
            .build();
        Ok(Self {
            source,
            engine,
            built: Mutex::new(built),
            prober,
            status,
            sized_workers: None,
        })
    }

    /// Says that the runtime runs `running` workers because the configuration's work called
    /// for them on `cores` cores: a reload whose work calls for more says so in the log,
    /// since a runtime keeps the workers it started with.
    pub fn with_sized_workers(mut self, running: usize, cores: usize) -> Self {
        self.sized_workers = Some((running, cores));
        self
    }

    /// The engine serving scrapes.
    pub fn engine(&self) -> &ScrapeEngine {
        &self.engine
    }

    /// The handler of `/probe`.
    pub fn prober(&self) -> Arc<Prober> {
        self.prober.clone()
    }

    /// Re-reads the configuration and swaps the collectors and probe modules (emptying the
    /// probes' cache). On error the running ones stay.
    pub fn reload(&self) -> Result<(), String> {
        let mut built = self.built.lock().unwrap_or_else(PoisonError::into_inner);
        let result = self
            .source
            .load()
            .map_err(|e| e.to_string())
            .and_then(|config| Ok((build(&config, &built)?, ProbeState::build(&config)?, config)));
        match result {
            Ok((next, probes, config)) => {
                self.engine.replace(
                    next.iter().map(|(_, c)| c.clone()).collect(),
                    config.scrape.options(),
                );
                self.prober.replace(probes);
                *built = next;
                tracing::info!(collectors = ?self.engine.collectors(), "Configuration reloaded.");
                if let Some((running, cores)) = self.sized_workers {
                    let wanted = config.worker_threads_for(cores);
                    if wanted > running {
                        tracing::warn!(
                            running,
                            wanted,
                            "The configuration's work calls for more runtime workers than run; \
                             restart the exporter (or set --runtime.worker-threads) to use them."
                        );
                    }
                }
                self.status.record(true);
                Ok(())
            }
            Err(error) => {
                tracing::error!(%error, "Configuration not reloaded; the previous one stays.");
                self.status.record(false);
                Err(error)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cli::Cli;
    use clap::Parser;

    #[tokio::test]
    async fn reload_keeps_unchanged_collectors_and_survives_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exporter.yml");
        std::fs::write(&path, "collectors:\n  host:\n    enabled: true\n").expect("write");
        let cli = Cli::try_parse_from([
            "mcpwatch-exporter".to_owned(),
            format!("--config.file={}", path.display()),
        ])
        .expect("flags");
        let source = ConfigSource::from_cli(&cli);
        let exporter =
            Exporter::new(source.clone(), &source.load().expect("config")).expect("exporter");
        let first = exporter.built.lock().expect("lock")[0].1.clone();

        exporter.reload().expect("same config");
        let kept = exporter.built.lock().expect("lock")[0].1.clone();
        assert!(Arc::ptr_eq(&first, &kept), "unchanged collector is kept");

        std::fs::write(&path, "collectors:\n  host:\n    enabled: nope\n").expect("write");
        let error = exporter.reload().expect_err("bad config");
        assert!(error.contains("collectors.host.enabled"), "{error}");
        assert_eq!(
            exporter.engine().collectors().len(),
            1,
            "old collectors stay"
        );
        let scrape = exporter.engine().scrape(None).await;
        assert_eq!(
            scrape.value("mcpwatch_config_last_reload_successful", &[]),
            Some(0.0)
        );

        std::fs::write(&path, "collectors:\n  host:\n    enabled: false\n").expect("write");
        exporter.reload().expect("host disabled");
        assert!(exporter.engine().collectors().is_empty());
        let scrape = exporter.engine().scrape(None).await;
        assert_eq!(
            scrape.value("mcpwatch_config_last_reload_successful", &[]),
            Some(1.0)
        );
    }
}
