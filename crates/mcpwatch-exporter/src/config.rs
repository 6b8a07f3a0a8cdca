//! The exporter's YAML configuration, merged with the command-line shortcuts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpwatch_core::config::{ConfigError, Problem, check_target_name, duration, load_yaml_checked};
use mcpwatch_core::{ScrapeOptions, Secret};
use mcpwatch_host::HostConfig;
use mcpwatch_postgres::PostgresConfig;
use mcpwatch_redis::RedisConfig;
use mcpwatch_wsdaemon::WsDaemonConfig;
use serde::Deserialize;

use crate::cli::Cli;

/// The configuration file.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExporterConfig {
    /// What to collect.
    #[serde(default)]
    pub collectors: CollectorsConfig,
    /// Scrape timing.
    #[serde(default)]
    pub scrape: ScrapeConfig,
}

/// `collectors`.
#[derive(Debug, Default, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectorsConfig {
    /// The host collector.
    #[serde(default)]
    pub host: HostConfig,
    /// PostgreSQL servers.
    #[serde(default)]
    pub postgres: Vec<PostgresConfig>,
    /// Redis servers.
    #[serde(default)]
    pub redis: Vec<RedisConfig>,
    /// MCP servers' daemons.
    #[serde(default)]
    pub wsdaemon: Vec<WsDaemonConfig>,
}

/// `scrape`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ScrapeConfig {
    /// The longest a scrape may take; Prometheus's own timeout lowers it.
    #[serde(with = "duration")]
    pub timeout: Duration,
    /// Time kept free of Prometheus's timeout for encoding and the network.
    #[serde(with = "duration")]
    pub timeout_offset: Duration,
}

impl Default for ScrapeConfig {
    fn default() -> Self {
        let defaults = ScrapeOptions::default();
        Self {
            timeout: defaults.timeout,
            timeout_offset: defaults.timeout_offset,
        }
    }
}

impl ScrapeConfig {
    /// The engine's options.
    pub fn options(&self) -> ScrapeOptions {
        ScrapeOptions {
            timeout: self.timeout,
            timeout_offset: self.timeout_offset,
        }
    }
}

/// Where the configuration comes from: the file, if any, and the flags that add to it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    no_collector_host: bool,
    postgres_dsns: Vec<Secret>,
    redis_urls: Vec<Secret>,
    wsdaemon_urls: Vec<Secret>,
}

impl ConfigSource {
    /// The file and shortcuts named on the command line.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            file: cli.config_file.clone(),
            no_collector_host: cli.no_collector_host,
            postgres_dsns: cli.postgres_dsn.clone(),
            redis_urls: cli.redis_url.clone(),
            wsdaemon_urls: cli.wsdaemon_url.clone(),
        }
    }

    /// The configuration file, when one is used.
    pub fn file(&self) -> Option<&Path> {
        self.file.as_deref()
    }

    /// Reads the file (or the defaults), checks it and applies the flags.
    pub fn load(&self) -> Result<ExporterConfig, ConfigError> {
        let mut config = match &self.file {
            Some(path) => load_yaml_checked(path, ExporterConfig::validate)?,
            None => {
                let config = ExporterConfig::default();
                config.validate().map_err(|(key, message)| {
                    ConfigError::invalid(&PathBuf::from("<defaults>"), key, message)
                })?;
                config
            }
        };
        if self.no_collector_host {
            config.collectors.host.enabled = false;
        }
        self.add_flag_targets(&mut config)?;
        Ok(config)
    }

    /// Adds the targets of `--postgres.dsn`, `--redis.url` and `--wsdaemon.url`, named
    /// after their address.
    fn add_flag_targets(&self, config: &mut ExporterConfig) -> Result<(), ConfigError> {
        let origin = PathBuf::from("<command line>");
        for (i, dsn) in self.postgres_dsns.iter().enumerate() {
            let key = format!("--postgres.dsn #{}", i + 1);
            let base = mcpwatch_postgres::target_name(dsn)
                .map_err(|message| ConfigError::invalid(&origin, &key, message))?;
            let name = unique_name(&base, config.collectors.postgres.iter().map(|p| &p.name));
            let target = PostgresConfig::from_dsn(name, dsn.clone());
            target
                .validate()
                .map_err(|(_, message)| ConfigError::invalid(&origin, &key, message))?;
            config.collectors.postgres.push(target);
        }
        for (i, url) in self.redis_urls.iter().enumerate() {
            let key = format!("--redis.url #{}", i + 1);
            let base = mcpwatch_redis::target_name(url)
                .map_err(|message| ConfigError::invalid(&origin, &key, message))?;
            let name = unique_name(&base, config.collectors.redis.iter().map(|r| &r.name));
            let target = RedisConfig::from_url(name, url.clone());
            target
                .validate()
                .map_err(|(_, message)| ConfigError::invalid(&origin, &key, message))?;
            config.collectors.redis.push(target);
        }
        for (i, url) in self.wsdaemon_urls.iter().enumerate() {
            let key = format!("--wsdaemon.url #{}", i + 1);
            let invalid = |message: String| ConfigError::invalid(&origin, &key, message);
            let base = mcpwatch_wsdaemon::target_name(url.expose()).map_err(invalid)?;
            let name = unique_name(&base, config.collectors.wsdaemon.iter().map(|w| &w.name));
            let target = WsDaemonConfig::from_url(name, url.expose()).map_err(invalid)?;
            target.validate().map_err(|(_, message)| invalid(message))?;
            config.collectors.wsdaemon.push(target);
        }
        Ok(())
    }
}

/// `base`, or `base-2`, `base-3`... when a target already has the name.
fn unique_name<'a>(base: &str, taken: impl Iterator<Item = &'a String> + Clone) -> String {
    let mut name = base.to_owned();
    let mut n = 1;
    while taken.clone().any(|t| *t == name) {
        n += 1;
        name = format!("{base}-{n}");
    }
    name
}

/// Checks each target of `collectors.<kind>`: its name (which every series carries as its
/// `target` label) first, then the target itself, and that no two share a name.
fn check_targets<T>(
    kind: &str,
    targets: &[T],
    name: fn(&T) -> &String,
    validate: fn(&T) -> Result<(), Problem>,
) -> Result<(), Problem> {
    for (i, target) in targets.iter().enumerate() {
        let key = |k: String| format!("collectors.{kind}[{i}].{k}");
        check_target_name(name(target)).map_err(|m| (key("name".into()), m))?;
        validate(target).map_err(|(k, m)| (key(k), m))?;
        if targets[..i].iter().any(|t| name(t) == name(target)) {
            return Err((
                key("name".into()),
                format!("{:?} is used twice", name(target)),
            ));
        }
    }
    Ok(())
}

impl ExporterConfig {
    /// Checks what the types cannot.
    fn validate(&self) -> Result<(), Problem> {
        self.collectors
            .host
            .validate()
            .map_err(|(key, message)| (format!("collectors.host.{key}"), message))?;
        check_targets(
            "postgres",
            &self.collectors.postgres,
            |t| &t.name,
            PostgresConfig::validate,
        )?;
        check_targets(
            "redis",
            &self.collectors.redis,
            |t| &t.name,
            RedisConfig::validate,
        )?;
        check_targets(
            "wsdaemon",
            &self.collectors.wsdaemon,
            |t| &t.name,
            WsDaemonConfig::validate,
        )?;
        if self.scrape.timeout.is_zero() {
            return Err((
                "scrape.timeout".to_owned(),
                "must be greater than zero".to_owned(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    fn load(text: &str, extra: &[&str]) -> Result<ExporterConfig, String> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("exporter.yml");
        std::fs::write(&path, text).expect("write");
        let mut args = vec![
            "mcpwatch-exporter".to_owned(),
            format!("--config.file={}", path.display()),
        ];
        args.extend(extra.iter().map(|s| (*s).to_owned()));
        let cli = Cli::try_parse_from(args).expect("flags");
        ConfigSource::from_cli(&cli).load().map_err(|e| {
            e.to_string()
                .replace(&path.display().to_string(), "exporter.yml")
        })
    }

    #[test]
    fn reads_the_documented_example() {
        let config = load(
            "collectors:\n  host: { enabled: true, mountpoints_exclude: \"^/(proc|sys|dev)\" }\n\
             scrape:\n  timeout: 10s\n",
            &[],
        )
        .expect("valid");
        assert!(config.collectors.host.enabled);
        assert_eq!(
            config
                .collectors
                .host
                .mountpoints_exclude
                .as_ref()
                .map(|p| p.as_str()),
            Some("^/(proc|sys|dev)")
        );
        assert_eq!(config.scrape.timeout, Duration::from_secs(10));
    }

    #[test]
    fn targets_from_the_file_and_the_flags() {
        let config = load(
            "collectors:\n  postgres:\n    - name: main\n      dsn: postgresql://m:pw@db:5432/app\n  \
             redis:\n    - name: cache\n      url: redis://cache:6379\n",
            &[
                "--postgres.dsn=postgresql://m:pw@db:5432/app",
                "--postgres.dsn=postgresql://m:pw@db:5432/app",
                "--redis.url=redis://:pw@127.0.0.1:6380/0",
            ],
        )
        .expect("valid");
        let names: Vec<&str> = config
            .collectors
            .postgres
            .iter()
            .map(|p| p.name.as_str())
            .collect();
        assert_eq!(names, ["main", "db:5432/app", "db:5432/app-2"]);
        assert_eq!(config.collectors.redis[1].name, "127.0.0.1:6380");
    }

    #[test]
    fn wsdaemon_targets_from_the_documented_example_and_flags() {
        let config = load(
            "collectors:\n  wsdaemon:\n    - name: exai\n      \
             health_url: http://127.0.0.1:3001/health\n      \
             websocket_url: ws://127.0.0.1:3001/\n      \
             health_file: logs/ws_daemon.health.json\n",
            &[
                "--wsdaemon.url=ws://127.0.0.1:3001/",
                "--wsdaemon.url=http://gw:8000",
            ],
        )
        .expect("valid");
        let targets = &config.collectors.wsdaemon;
        assert_eq!(targets[0].name, "exai");
        let file = targets[0].health_file.as_ref().expect("health file");
        assert!(
            file.path().is_absolute(),
            "relative to the configuration file"
        );
        assert_eq!(targets[1].name, "127.0.0.1:3001");
        assert_eq!(
            targets[1].websocket_url.as_deref(),
            Some("ws://127.0.0.1:3001/")
        );
        assert_eq!(
            targets[2].health_url.as_deref(),
            Some("http://gw:8000/health")
        );
        let e = load("", &["--wsdaemon.url=ftp://x"]).expect_err("scheme");
        assert!(e.starts_with("<command line>: --wsdaemon.url #1: "), "{e}");
        let e = load(
            "collectors:\n  wsdaemon:\n    - name: d\n      health_url: http://x/\n      \
             mappings:\n        - pointer: /q\n          metric: wsdaemon_up\n",
            &[],
        )
        .expect_err("clash");
        assert!(
            e.starts_with("exporter.yml:7:11: collectors.wsdaemon[0].mappings[0].metric: "),
            "{e}"
        );
    }

    #[test]
    fn target_errors_name_their_entry() {
        let e = load(
            "collectors:\n  postgres:\n    - name: a\n      dsn: postgresql://db/x\n    \
             - name: a\n      dsn: postgresql://db/y\n",
            &[],
        )
        .expect_err("duplicate");
        assert_eq!(
            e,
            "exporter.yml:5:7: collectors.postgres[1].name: \"a\" is used twice"
        );
        let e = load(
            "collectors:\n  redis:\n    - name: c\n      url: 'http://hunter2@x'\n",
            &[],
        )
        .expect_err("scheme");
        assert!(
            e.starts_with("exporter.yml:4:7: collectors.redis[0].url: expected"),
            "{e}"
        );
        assert!(!e.contains("hunter2"));
        let e = load(
            "",
            &["--postgres.dsn=host=db password=hunter2 sslmode=sideways"],
        )
        .expect_err("flag");
        assert!(e.starts_with("<command line>: --postgres.dsn #1: "), "{e}");
        assert!(!e.contains("hunter2"));
    }

    #[test]
    fn urls_with_credentials_are_refused_without_quoting_them() {
        assert_eq!(
            load(
                "",
                &["--wsdaemon.url=http://ops:hunter2@gw:8000/health?k=hunter2"]
            )
            .expect_err("user info"),
            "<command line>: --wsdaemon.url #1: \"http://<secret>@gw:8000/<…>\": \
             credentials in the URL are not supported; use bearer_token"
        );
        assert_eq!(
            load(
                "collectors:\n  wsdaemon:\n    - name: d\n      \
                 mcp_url: http://ops:hunter2@gw:8000/mcp\n",
                &[]
            )
            .expect_err("user info"),
            "exporter.yml:4:7: collectors.wsdaemon[0].mcp_url: \"http://<secret>@gw:8000/<…>\": \
             credentials in the URL are not supported; use bearer_token"
        );
    }

    #[test]
    fn a_target_named_by_a_url_is_refused_at_its_name() {
        for (kind, entry) in [
            ("postgres", "dsn: postgresql://127.0.0.1:1/app"),
            ("redis", "url: redis://127.0.0.1:1"),
            ("wsdaemon", "health_url: http://127.0.0.1:1/health"),
        ] {
            for name in ["redis://:hunter2@127.0.0.1:1", "ops:hunter2@127.0.0.1"] {
                let e = load(
                    &format!("collectors:\n  {kind}:\n    - name: '{name}'\n      {entry}\n"),
                    &[],
                )
                .expect_err(name);
                assert!(
                    e.starts_with(&format!(
                        "exporter.yml:3:7: collectors.{kind}[0].name: must not be a URL"
                    )),
                    "{e}"
                );
                assert!(!e.contains("hunter2"), "{e}");
            }
        }
    }

    #[test]
    fn no_collector_flag_wins_over_the_file() {
        let config = load(
            "collectors:\n  host:\n    enabled: true\n",
            &["--no-collector.host"],
        )
        .expect("valid");
        assert!(!config.collectors.host.enabled);
    }

    #[test]
    fn errors_name_file_line_and_key() {
        assert_eq!(
            load(
                "collectors:\n  host:\n    enabled: true\n    mountpoint_exclude: x\n",
                &[]
            )
            .expect_err("typo"),
            "exporter.yml:4:5: collectors.host.mountpoint_exclude: unknown field \
             `mountpoint_exclude`, expected one of `enabled`, `mountpoints_include`, \
             `mountpoints_exclude`, `fstypes_include`, `fstypes_exclude`, \
             `network_devices_include`, `network_devices_exclude`, `processes`"
        );
        let e = load("scrape:\n  timeout: 10\n", &[]).expect_err("no unit");
        assert!(
            e.starts_with("exporter.yml:2:3: scrape.timeout: invalid duration"),
            "{e}"
        );
        // The parser places a bad value at the start of its flow mapping, before the key.
        let e = load("scrape: {timeout: 5y}\n", &[]).expect_err("unit");
        assert!(
            e.starts_with("exporter.yml:1:10: scrape.timeout: invalid duration"),
            "{e}"
        );
        let e = load("collectors:\n  host:\n    enabled: maybe\n", &[]).expect_err("type");
        assert!(
            e.starts_with("exporter.yml:3:14: collectors.host.enabled: invalid type"),
            "{e}"
        );
        let e = load("scrape:\n  timeout: 0s\n", &[]).expect_err("zero");
        assert_eq!(
            e,
            "exporter.yml:2:3: scrape.timeout: must be greater than zero"
        );
        let e = load(
            "collectors:\n  host:\n    processes:\n      - name: a\n        comm: x\n      \
             - name: a\n        comm: y\n",
            &[],
        )
        .expect_err("duplicate");
        assert_eq!(
            e,
            "exporter.yml:6:9: collectors.host.processes[1].name: \"a\" is used twice"
        );
    }
}
