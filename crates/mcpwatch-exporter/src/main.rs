//! `mcpwatch-exporter`: reads the configuration, builds the collectors, serves `/metrics`.

#![forbid(unsafe_code)]

mod cli;
mod config;
mod exporter;
mod probe;

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use futures_util::FutureExt;
use mcpwatch_core::ExporterService;
use mcpwatch_core::web::{WebServer, check_web_config, install_crypto_provider, shutdown_signal};

use crate::cli::Cli;
use crate::config::ConfigSource;
use crate::exporter::Exporter;

// A collection of many targets allocates and frees megabytes of small buffers. glibc's
// arenas keep what was freed (a reload from 300 targets to 1 kept 32 MiB against 8 MiB
// fresh); jemalloc gives it back within a quarter second, with the decay and single arena
// set in .cargo/config.toml (JEMALLOC_SYS_WITH_MALLOC_CONF).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

fn main() -> ExitCode {
    let cli: Cli = mcpwatch_core::binary::parse_args();
    mcpwatch_core::binary::init_logging(cli.log_level, cli.log_format);
    install_crypto_provider();
    let check_only = cli.check_config;
    mcpwatch_core::binary::exit_code("mcpwatch-exporter", run(cli), check_only)
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let source = ConfigSource::from_cli(&cli);
    let config = source.load()?;
    if let Some(web) = &cli.web_config_file {
        check_web_config(web)?;
    }
    if cli.check_config {
        exporter::check(&config).map_err(anyhow::Error::msg)?;
        mcpwatch_core::binary::print_valid(
            "mcpwatch-exporter",
            source.file(),
            cli.web_config_file.as_deref(),
        );
        return Ok(());
    }

    // One worker runs a small configuration (each thread costs memory, as node_exporter's
    // GOMAXPROCS=1 default reflects); a large one gets one per 50 targets, up to the cores.
    // Reading /proc and files runs on the blocking pool, whose threads outlive a scrape
    // interval so that each scrape does not start new ones. Each file-reading target reads
    // on one lane, one read at a time: a read that hangs (a dead mount) holds one thread,
    // and the pool has room for several before others wait.
    let workers = worker_threads(cli.worker_threads, &config);
    let sized = (cli.worker_threads == 0).then(|| (workers, available_cores()));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .max_blocking_threads(16)
        .thread_keep_alive(std::time::Duration::from_secs(300))
        .enable_all()
        .thread_name("mcpwatch-exporter")
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(serve(cli, source, &config, sized));
    // A blocking read stuck on a dead mount must not keep the process from exiting.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    result
}

/// The runtime's worker threads: the configured count, else what the configuration's work
/// calls for on this machine's cores (its CPU quota included).
fn worker_threads(configured: u16, config: &config::ExporterConfig) -> usize {
    if configured > 0 {
        return usize::from(configured);
    }
    config.worker_threads_for(available_cores())
}

fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

async fn serve(
    cli: Cli,
    source: ConfigSource,
    config: &config::ExporterConfig,
    sized: Option<(usize, usize)>,
) -> anyhow::Result<()> {
    let mut exporter = Exporter::new(source, config).map_err(anyhow::Error::msg)?;
    if let Some((running, cores)) = sized {
        exporter = exporter.with_sized_workers(running, cores);
    }
    let exporter = Arc::new(exporter);
    let server = WebServer::bind(&cli.listen_addresses, cli.web_config_file.as_deref()).await?;
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = env!("MCPWATCH_REVISION"),
        collectors = ?exporter.engine().collectors(),
        workers = tokio::runtime::Handle::current().metrics().num_workers(),
        "Starting mcpwatch-exporter."
    );

    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(exporter.clone()));

    let reload_target = exporter.clone();
    let service = ExporterService::new(exporter.engine().clone())
        .with_telemetry_path(cli.telemetry_path.clone())
        .with_route("/probe", exporter.prober())
        .with_reload(Arc::new(move || {
            let exporter = reload_target.clone();
            async move {
                tokio::task::spawn_blocking(move || exporter.reload())
                    .await
                    .map_err(|e| format!("reload task failed: {e}"))?
            }
            .boxed()
        }));
    server.serve(service, shutdown_signal()).await;
    tracing::info!("Stopped.");
    Ok(())
}

#[cfg(unix)]
async fn reload_on_sighup(exporter: Arc<Exporter>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("Cannot watch SIGHUP; reload with POST /-/reload instead.");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading the configuration.");
        let exporter = exporter.clone();
        let _ = tokio::task::spawn_blocking(move || exporter.reload()).await;
    }
}
