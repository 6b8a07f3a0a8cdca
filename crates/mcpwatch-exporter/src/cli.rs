//! Command-line flags, named as Prometheus exporters name theirs.

use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Args, Command, FromArgMatches, Parser};
use mcpwatch_core::Secret;
pub use mcpwatch_core::binary::{LogFormat, LogLevel};
use mcpwatch_host::Area;

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

    /// Areas of the host collector to disable, whatever the configuration file says.
    #[command(flatten)]
    pub host_areas: HostAreaFlags,

    /// Where procfs is mounted, such as /host/proc in a container that mounts the host's;
    /// overrides collectors.host.procfs.
    #[arg(long = "path.procfs", value_name = "PATH")]
    pub procfs: Option<PathBuf>,

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

/// `--collector.host.<area>` and `--no-collector.host.<area>` for each area, as
/// node_exporter's `--collector.<name>` and `--no-collector.<name>`.
const HOST_AREA_FLAGS: [(&str, &str, Area); 13] = [
    ("collector.host.cpu", "no-collector.host.cpu", Area::Cpu),
    (
        "collector.host.memory",
        "no-collector.host.memory",
        Area::Memory,
    ),
    (
        "collector.host.system",
        "no-collector.host.system",
        Area::System,
    ),
    (
        "collector.host.network",
        "no-collector.host.network",
        Area::Network,
    ),
    (
        "collector.host.filesystem",
        "no-collector.host.filesystem",
        Area::Filesystem,
    ),
    (
        "collector.host.diskstats",
        "no-collector.host.diskstats",
        Area::Diskstats,
    ),
    (
        "collector.host.pressure",
        "no-collector.host.pressure",
        Area::Pressure,
    ),
    (
        "collector.host.sockstat",
        "no-collector.host.sockstat",
        Area::Sockstat,
    ),
    (
        "collector.host.tcpstat",
        "no-collector.host.tcpstat",
        Area::Tcpstat,
    ),
    (
        "collector.host.netstat",
        "no-collector.host.netstat",
        Area::Netstat,
    ),
    (
        "collector.host.filefd",
        "no-collector.host.filefd",
        Area::Filefd,
    ),
    (
        "collector.host.timex",
        "no-collector.host.timex",
        Area::Timex,
    ),
    (
        "collector.host.processes",
        "no-collector.host.processes",
        Area::Processes,
    ),
];

/// The host areas switched on or off on the command line; of the two flags of one area,
/// the last given wins.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostAreaFlags {
    /// Each area named by a flag, and whether it runs.
    pub areas: Vec<(Area, bool)>,
}

impl FromArgMatches for HostAreaFlags {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut flags = Self::default();
        flags.update_from_arg_matches(matches)?;
        Ok(flags)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        self.areas = HOST_AREA_FLAGS
            .iter()
            .filter_map(|(on, off, area)| {
                if matches.get_flag(on) {
                    Some((*area, true))
                } else if matches.get_flag(off) {
                    Some((*area, false))
                } else {
                    None
                }
            })
            .collect();
        Ok(())
    }
}

impl Args for HostAreaFlags {
    fn augment_args(command: Command) -> Command {
        HOST_AREA_FLAGS
            .iter()
            .fold(command, |command, (on, off, area)| {
                let default = if area.on_by_default() { "on" } else { "off" };
                command
                    .arg(
                        Arg::new(*on)
                            .long(*on)
                            .action(ArgAction::SetTrue)
                            .overrides_with(*off)
                            .help(format!(
                                "Enable the host collector's {} area ({default} by default): \
                                 {}.",
                                area.name(),
                                area.description()
                            )),
                    )
                    .arg(
                        Arg::new(*off)
                            .long(*off)
                            .action(ArgAction::SetTrue)
                            .overrides_with(*on)
                            .help(format!(
                                "Disable the host collector's {} area.",
                                area.name()
                            )),
                    )
            })
    }

    fn augment_args_for_update(command: Command) -> Command {
        Self::augment_args(command)
    }
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
            "--no-collector.host.diskstats",
            "--collector.host.tcpstat",
            "--collector.host.timex",
            "--no-collector.host.timex",
            "--path.procfs=/host/proc",
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
        assert_eq!(
            cli.host_areas.areas,
            [
                (Area::Diskstats, false),
                (Area::Tcpstat, true),
                (Area::Timex, false)
            ]
        );
        assert_eq!(cli.procfs, Some(PathBuf::from("/host/proc")));
        let defaults = Cli::try_parse_from(["mcpwatch-exporter"]).expect("parse");
        assert_eq!(defaults.listen_addresses, [":9810"]);
        assert!(defaults.host_areas.areas.is_empty());
        assert!(
            Cli::try_parse_from(["mcpwatch-exporter", "--no-collector.host.diskstat"]).is_err()
        );
        assert_eq!(defaults.telemetry_path, "/metrics");
        assert!(Cli::try_parse_from(["mcpwatch-exporter", "--log.level=loud"]).is_err());
    }

    #[test]
    fn every_host_area_has_its_flags() {
        let areas: Vec<Area> = HOST_AREA_FLAGS.iter().map(|(_, _, area)| *area).collect();
        assert_eq!(areas, Area::ALL);
        for (on, off, area) in HOST_AREA_FLAGS {
            assert_eq!(on, format!("collector.host.{}", area.name()));
            assert_eq!(off, format!("no-collector.host.{}", area.name()));
            let parse = |flags: &[&str]| {
                let args = flags.iter().map(|f| format!("--{f}"));
                Cli::try_parse_from(std::iter::once("mcpwatch-exporter".to_owned()).chain(args))
                    .expect("parse")
                    .host_areas
                    .areas
            };
            assert_eq!(parse(&[off]), [(area, false)]);
            assert_eq!(parse(&[on]), [(area, true)]);
            assert_eq!(parse(&[on, off]), [(area, false)], "the last wins");
            assert_eq!(parse(&[off, on]), [(area, true)], "the last wins");
        }
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
