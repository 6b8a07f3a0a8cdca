//! The exporter's YAML configuration, merged with the command-line shortcuts.

use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpwatch_core::ScrapeOptions;
use mcpwatch_core::config::{ConfigError, Problem, duration, load_yaml_checked};
use mcpwatch_host::HostConfig;
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
}

impl ConfigSource {
    /// The file and shortcuts named on the command line.
    pub fn from_cli(cli: &Cli) -> Self {
        Self {
            file: cli.config_file.clone(),
            no_collector_host: cli.no_collector_host,
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
        Ok(config)
    }
}

impl ExporterConfig {
    /// Checks what the types cannot.
    fn validate(&self) -> Result<(), Problem> {
        self.collectors
            .host
            .validate()
            .map_err(|(key, message)| (format!("collectors.host.{key}"), message))?;
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
