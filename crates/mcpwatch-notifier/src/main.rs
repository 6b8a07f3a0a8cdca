//! `mcpwatch-notifier`: receives Alertmanager webhooks, stores them, delivers them once.

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use futures_util::FutureExt;
use mcpwatch_core::binary::{LogFormat, LogLevel, exit_code, init_logging, print_valid};
use mcpwatch_core::config::ConfigError;
use mcpwatch_core::web::{WebServer, check_web_config, install_crypto_provider, shutdown_signal};
use mcpwatch_notifier::{Notifier, NotifierConfig, ReloadError, ReloadHook};

// A webhook is hundreds of small strings (labels, annotations) parsed, routed, stored and
// freed; mimalloc halves what the system allocator spends on them.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Receives Alertmanager webhooks and delivers every notification once, by email, Slack,
/// PagerDuty, webhook or log.
#[derive(Debug, Parser)]
#[command(name = "mcpwatch-notifier", version, about, long_about = None)]
struct Cli {
    /// YAML configuration file. Without it, every notification is logged to standard output.
    #[arg(long = "config.file", value_name = "PATH", global = true)]
    config_file: Option<PathBuf>,

    /// Address to listen on; repeat for several. `:9811` listens on every interface.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9811"
    )]
    listen_addresses: Vec<String>,

    /// exporter-toolkit web configuration: TLS, basic auth, headers, rate limit.
    #[arg(long = "web.config.file", value_name = "PATH")]
    web_config_file: Option<PathBuf>,

    /// Least severe log level written.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info, global = true)]
    log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,

    /// Check the configuration (templates rendered against samples) and exit: 0 when valid.
    #[arg(long = "check-config")]
    check_config: bool,

    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Push a sample notification through one channel now, bypassing the queue, and say
    /// whether it was delivered.
    SendTest {
        /// The channel's name in the configuration.
        #[arg(long)]
        channel: String,
        /// Send the sample as resolved.
        #[arg(long)]
        resolved: bool,
    },
    /// Acknowledges an incident on a running notifier (its escalation stops), or takes the
    /// acknowledgement back with --unack. Uses the API credentials of --config.file.
    Ack {
        /// The incident id (in messages, and in /api/v1/incidents).
        incident: i64,
        /// Take the acknowledgement back: the escalation goes on.
        #[arg(long)]
        unack: bool,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
        /// The notifier's address.
        #[arg(long, value_name = "URL", default_value = "http://127.0.0.1:9811")]
        url: String,
    },
}

fn main() -> ExitCode {
    let cli: Cli = mcpwatch_core::binary::parse_args();
    init_logging(cli.log_level, cli.log_format);
    install_crypto_provider();
    let interactive = cli.check_config || cli.command.is_some();
    exit_code("mcpwatch-notifier", run(cli), interactive)
}

fn load(file: Option<&PathBuf>) -> Result<NotifierConfig, ConfigError> {
    match file {
        Some(path) => NotifierConfig::load(path),
        None => Ok(NotifierConfig::builtin()),
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let config = load(cli.config_file.as_ref())?;
    if let Some(web) = &cli.web_config_file {
        check_web_config(web)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(8)
        .enable_all()
        .thread_name("mcpwatch-notifier")
        .build()
        .context("starting the runtime")?;
    if cli.check_config {
        // Channels are built too (CA files read, addresses parsed); nothing is contacted.
        // (and dropped inside the runtime: lettre's connection pool needs one to close).
        runtime.block_on(async { mcpwatch_notifier::check(config) })?;
        print_valid(
            "mcpwatch-notifier",
            cli.config_file.as_deref(),
            cli.web_config_file.as_deref(),
        );
        return Ok(());
    }
    if let Some(Command::SendTest { channel, resolved }) = &cli.command {
        return runtime.block_on(send_test(config, channel, *resolved));
    }
    if let Some(Command::Ack {
        incident,
        unack,
        by,
        url,
    }) = &cli.command
    {
        return runtime.block_on(ack(&config, *incident, *unack, by.clone(), url));
    }
    runtime.block_on(serve(cli, config))
}

async fn send_test(config: NotifierConfig, channel: &str, resolved: bool) -> anyhow::Result<()> {
    mcpwatch_notifier::send_test(config, channel, resolved).await?;
    #[allow(clippy::print_stdout)]
    {
        println!("mcpwatch-notifier: test notification delivered through {channel:?}");
    }
    Ok(())
}

async fn ack(
    config: &NotifierConfig,
    incident: i64,
    unack: bool,
    by: Option<String>,
    url: &str,
) -> anyhow::Result<()> {
    let action = if unack { "unack" } else { "ack" };
    let by = by
        .or_else(|| std::env::var("USER").ok())
        .unwrap_or_else(|| "mcpwatch-notifier ack".to_owned());
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .build()
        .context("building the HTTP client")?;
    let mut request = client
        .post(format!(
            "{}/api/v1/incidents/{incident}/{action}",
            url.trim_end_matches('/')
        ))
        .json(&serde_json::json!({ "by": by }));
    if let Some(auth) = &config.api.auth {
        if let Some(token) = auth.token() {
            request = request.bearer_auth(token.expose());
        } else if let Some((user, password)) = auth.basic() {
            request = request.basic_auth(user, Some(password.expose()));
        }
    }
    // The URL may carry credentials: the error shows it redacted, and reqwest's own text
    // without it.
    let response = request
        .send()
        .await
        .map_err(|e| anyhow::Error::new(e.without_url()))
        .with_context(|| {
            format!(
                "contacting the notifier at {}",
                mcpwatch_core::RedactedUrl::new(url)
            )
        })?;
    let status = response.status();
    let body: serde_json::Value = response.json().await.unwrap_or_default();
    if !status.is_success() {
        let message = body["error"].as_str().unwrap_or("no explanation given");
        anyhow::bail!("the notifier answered {status}: {message}");
    }
    let incident = &body["incident"];
    #[allow(clippy::print_stdout)]
    {
        println!(
            "mcpwatch-notifier: incident {} ({} level {}) is {} now",
            incident["id"],
            incident["policy"].as_str().unwrap_or("?"),
            incident["level"],
            incident["state"].as_str().unwrap_or("?")
        );
    }
    Ok(())
}

async fn serve(cli: Cli, config: NotifierConfig) -> anyhow::Result<()> {
    let (notifier, dispatcher) = Notifier::start(config).await?;
    let server = WebServer::bind(&cli.listen_addresses, cli.web_config_file.as_deref()).await?;
    let config = notifier.config();
    tracing::info!(
        version = env!("CARGO_PKG_VERSION"),
        revision = mcpwatch_notifier::revision(),
        storage = %config.storage.path.path().display(),
        channels = ?config.channels.keys().collect::<Vec<_>>(),
        "Starting mcpwatch-notifier."
    );
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    // Read at start: a reload does not change it.
    let grace = config.delivery.shutdown_grace;
    let dispatching = tokio::spawn(dispatcher.run(stop_rx, grace));

    let file = cli.config_file.clone();
    let reload_target = notifier.clone();
    let reload: ReloadHook = Arc::new(move || {
        let notifier = reload_target.clone();
        let file = file.clone();
        async move {
            let config = tokio::task::spawn_blocking(move || load(file.as_ref()))
                .await
                .map_err(|_| ReloadError::Interrupted)??;
            notifier.reload(config).await?;
            tracing::info!("Configuration reloaded.");
            Ok(())
        }
        .boxed()
    });
    #[cfg(unix)]
    tokio::spawn(reload_on_sighup(reload.clone()));

    let router = mcpwatch_notifier::router(notifier.clone(), Some(reload));
    // axum routers are tower services; the server takes hyper's.
    let service = hyper_util::service::TowerToHyperService::new(router);
    server.serve(service, shutdown_signal()).await;
    let _ = stop_tx.send(true);
    let _ = dispatching.await;
    tracing::info!("Stopped.");
    Ok(())
}

#[cfg(unix)]
async fn reload_on_sighup(reload: ReloadHook) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("Cannot watch SIGHUP; reload with POST /-/reload instead.");
        return;
    };
    while hangup.recv().await.is_some() {
        tracing::info!("SIGHUP received; reloading the configuration.");
        if let Err(e) = reload().await {
            tracing::error!(error = %e, "Reload failed; the previous configuration stays.");
        }
    }
}
