//! Command-line flags, named as Prometheus exporters name theirs.

use std::path::PathBuf;

use clap::Parser;
use mcpwatch_core::Secret;
pub use mcpwatch_core::binary::{LogFormat, LogLevel};

/// Prometheus exporter for MCP servers and what runs under them.
#[derive(Debug, Parser)]
#[command(name = "mcpwatch-exporter", version, about, long_about = None)]
pub struct Cli {
    /// YAML configuration file. Without it, the host collector runs with its defaults.
    #[arg(long = "config.file", value_name = "PATH")]
    pub config_file: Option<PathBuf>,

    /// Address to listen on; repeat for several. `:9810` listens on every interface.
    #[arg(
        long = "web.listen-address",
        value_name = "ADDR",
        default_value = ":9810"
    )]
    pub listen_addresses: Vec<String>,

    /// exporter-toolkit web configuration: TLS, basic auth, headers, rate limit.
    #[arg(long = "web.config.file", value_name = "PATH")]
    pub web_config_file: Option<PathBuf>,

    /// Path under which metrics are served.
    #[arg(
        long = "web.telemetry-path",
        value_name = "PATH",
        default_value = "/metrics"
    )]
    pub telemetry_path: String,

    /// Least severe log level written.
    #[arg(long = "log.level", value_enum, default_value_t = LogLevel::Info)]
    pub log_level: LogLevel,

    /// Log line format.
    #[arg(long = "log.format", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Check the configuration (and web configuration) and exit: 0 when valid, 1 otherwise.
    #[arg(long = "check-config")]
    pub check_config: bool,

    /// Runtime worker threads: the threads that run the collections and serve scrapes.
    /// 0 (the default) sizes them to the work and the machine; see docs/configuration.md.
    #[arg(
        long = "runtime.worker-threads",
        value_name = "N",
        default_value_t = 0,
        value_parser = clap::value_parser!(u16).range(0..=1024)
    )]
    pub worker_threads: u16,

    /// Disable the host collector, whatever the configuration file says.
    #[arg(long = "no-collector.host")]
    pub no_collector_host: bool,

    /// Watch a PostgreSQL server (a URL or key=value connection string); repeatable. The
    /// target is named host:port/database. Prefer dsn_file in the configuration file: a
    /// command line is visible to every user of the host.
    #[arg(
        long = "postgres.dsn",
        value_name = "DSN",
        env = "MCPWATCH_POSTGRES_DSN",
        hide_env_values = true
    )]
    pub postgres_dsn: Vec<Secret>,

    /// Watch a Redis server (redis://, rediss:// or unix:// URL); repeatable. The target is
    /// named host:port.
    #[arg(
        long = "redis.url",
        value_name = "URL",
        env = "MCPWATCH_REDIS_URL",
        hide_env_values = true
    )]
    pub redis_url: Vec<Secret>,

    /// Watch an MCP server's daemon; repeatable. An http(s):// URL is its JSON health
    /// endpoint (/health is added to a bare host); a ws(s):// URL is probed with an MCP
    /// session over WebSocket, with /health on the same host and port. The target is named
    /// host:port.
    #[arg(
        long = "wsdaemon.url",
        value_name = "URL",
        env = "MCPWATCH_WSDAEMON_URL",
        hide_env_values = true
    )]
    pub wsdaemon_url: Vec<Secret>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_parse_prometheus_style() {
        let cli = Cli::try_parse_from([
            "mcpwatch-exporter",
            "--config.file",
            "/etc/mcpwatch/exporter.yml",
            "--web.listen-address=127.0.0.1:9810",
            "--web.listen-address=[::1]:9810",
            "--log.format=json",
            "--no-collector.host",
            "--postgres.dsn=postgresql://m:hunter2@db/app",
            "--redis.url=redis://:hunter2@cache:6379",
            "--wsdaemon.url=http://gw:8000/health?token=hunter2",
        ])
        .expect("parse");
        assert_eq!(cli.postgres_dsn.len(), 1);
        assert_eq!(cli.redis_url.len(), 1);
        assert_eq!(cli.wsdaemon_url.len(), 1);
        assert!(!format!("{cli:?}").contains("hunter2"));
        assert_eq!(cli.listen_addresses, ["127.0.0.1:9810", "[::1]:9810"]);
        assert_eq!(cli.log_format, LogFormat::Json);
        assert!(cli.no_collector_host);
        let defaults = Cli::try_parse_from(["mcpwatch-exporter"]).expect("parse");
        assert_eq!(defaults.listen_addresses, [":9810"]);
        assert_eq!(defaults.telemetry_path, "/metrics");
        assert!(Cli::try_parse_from(["mcpwatch-exporter", "--log.level=loud"]).is_err());
    }

    #[test]
    fn help_hides_the_value_of_every_variable() {
        use clap::CommandFactory;
        let command = Cli::command();
        let with_variables: Vec<_> = command
            .get_arguments()
            .filter(|a| a.get_env().is_some())
            .collect();
        assert_eq!(with_variables.len(), 3);
        for argument in with_variables {
            assert!(argument.is_hide_env_values_set(), "{}", argument.get_id());
        }
    }
}
