//! The exporter's YAML configuration, merged with the command-line shortcuts.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use mcpwatch_certificates::{CertificatesCollector, CertificatesConfig};
use mcpwatch_containers::ContainersConfig;
use mcpwatch_core::config::{
    ConfigError, ConfigPath, Pattern, Problem, SecretFile, check_target_name, duration,
    load_yaml_checked,
};
use mcpwatch_core::{ScrapeOptions, Secret};
use mcpwatch_files::FilesConfig;
use mcpwatch_host::HostConfig;
use mcpwatch_logs::LogPatternsConfig;
use mcpwatch_postgres::PostgresConfig;
use mcpwatch_redis::RedisConfig;
use mcpwatch_wsdaemon::config::ToolCallConfig;
use mcpwatch_wsdaemon::endpoint_config::HttpMethod;
use mcpwatch_wsdaemon::{HttpConfig, WsDaemonConfig};
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
    /// `GET /probe`: MCP servers named by the scraper.
    #[serde(default)]
    pub probe: ProbeConfig,
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
    /// Plain HTTP endpoints: admin UIs, gateways.
    #[serde(default)]
    pub http: Vec<HttpConfig>,
    /// Certificate files.
    #[serde(default)]
    pub certificates: Vec<CertificatesConfig>,
    /// Patterns of files, such as backups.
    #[serde(default)]
    pub files: Vec<FilesConfig>,
    /// Plain-text logs, their lines counted by named patterns.
    #[serde(default)]
    pub log_patterns: Vec<LogPatternsConfig>,
    /// Docker daemons, their containers read on each daemon's socket.
    #[serde(default)]
    pub containers: Vec<ContainersConfig>,
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

/// `probe`: the modules `GET /probe?target=URL&module=NAME` probes with, and its bounds.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeConfig {
    /// Probes run at once; a request beyond them is answered 503 at once.
    #[serde(default = "probe_defaults::max_concurrent")]
    pub max_concurrent: usize,
    /// Targets whose probe (and the MCP era it found) is kept between requests; the least
    /// recently probed is forgotten first.
    #[serde(default = "probe_defaults::cache_size")]
    pub cache_size: usize,
    /// The modules, by name.
    #[serde(default)]
    pub modules: BTreeMap<String, ProbeModule>,
}

impl Default for ProbeConfig {
    fn default() -> Self {
        Self {
            max_concurrent: probe_defaults::max_concurrent(),
            cache_size: probe_defaults::cache_size(),
            modules: BTreeMap::new(),
        }
    }
}

mod probe_defaults {
    use std::time::Duration;

    pub fn max_concurrent() -> usize {
        256
    }
    pub fn cache_size() -> usize {
        4096
    }
    pub fn protocol() -> String {
        "auto".to_owned()
    }
    pub fn timeout() -> Duration {
        Duration::from_secs(5)
    }
}

/// `probe.modules.<name>`: how targets named in `/probe` requests are probed, and which
/// targets may be.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProbeModule {
    /// The MCP transport.
    #[serde(default)]
    pub transport: ProbeTransport,
    /// `auto`, or the MCP revision to speak, as a wsdaemon target's `protocol`.
    #[serde(default = "probe_defaults::protocol")]
    pub protocol: String,
    /// The longest a probe may take; the scraper's own timeout lowers it.
    #[serde(default = "probe_defaults::timeout", with = "duration")]
    pub timeout: Duration,
    /// The targets this module may probe: a regular expression the whole target URL must
    /// match. Required, so that the exporter is no open proxy.
    pub allowed_targets: Pattern,
    /// The URL schemes a target may have; by default those of the transport.
    pub schemes: Option<Vec<String>>,
    /// Further headers of every request to the target; secrets.
    #[serde(default)]
    pub headers: BTreeMap<String, Secret>,
    /// Sent as `Authorization: Bearer <token>`.
    pub bearer_token: Option<Secret>,
    /// A file holding the bearer token.
    pub bearer_token_file: Option<SecretFile>,
    /// CA certificates for `https://` and `wss://` targets; the system's otherwise.
    pub ca_file: Option<ConfigPath>,
    /// Accept any server certificate.
    #[serde(default)]
    pub insecure_skip_verify: bool,
    /// A synthetic tool call after the tool list, as a wsdaemon target's.
    pub tool_call: Option<ToolCallConfig>,
    /// What the module probes: `mcp` (the default), an MCP server, or `http`, a plain HTTP
    /// endpoint (an admin UI, a gateway) checked as a `collectors.http` target is.
    #[serde(default)]
    pub prober: ProbeKind,
    /// The checks of `prober: http`; the defaults of a `collectors.http` target otherwise.
    pub http: Option<HttpProbeSettings>,
}

/// What a probe module probes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeKind {
    /// An MCP server, over `transport`.
    #[default]
    Mcp,
    /// A plain HTTP endpoint.
    Http,
}

/// `probe.modules.<name>.http`: the checks of a plain HTTP probe, as a `collectors.http`
/// target's settings of the same names; each left out keeps that target's default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpProbeSettings {
    /// `GET` or `HEAD`.
    pub method: Option<HttpMethod>,
    /// The statuses that pass; any 2xx by default.
    pub valid_status_codes: Option<Vec<u16>>,
    /// A regular expression the body must match.
    pub body_pattern: Option<Pattern>,
    /// A regular expression the body must not match.
    pub body_pattern_absent: Option<Pattern>,
    /// Follow redirects.
    pub follow_redirects: Option<bool>,
    /// At most this many redirects are followed.
    pub max_redirects: Option<u32>,
    /// At most this many bytes of the body are read.
    pub max_body_bytes: Option<u64>,
}

/// The settings of one target a probe request names.
#[derive(Debug, Clone, PartialEq)]
pub enum ProbeTargetConfig {
    /// An MCP server, probed as a wsdaemon target with `mcp_url` or `websocket_url` alone.
    Mcp(Box<WsDaemonConfig>),
    /// A plain HTTP endpoint, checked as an http target.
    Http(Box<HttpConfig>),
}

impl ProbeTargetConfig {
    /// Checks the target as its collector will.
    pub fn validate(&self) -> Result<(), Problem> {
        match self {
            ProbeTargetConfig::Mcp(config) => config.validate(),
            ProbeTargetConfig::Http(config) => config.validate(),
        }
    }
}

/// The MCP transport of a probe module.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ProbeTransport {
    /// Streamable HTTP (`http://`, `https://`).
    #[default]
    StreamableHttp,
    /// WebSocket with the `mcp` subprotocol (`ws://`, `wss://`), legacy era only.
    Websocket,
}

impl ProbeTransport {
    /// The schemes of the transport.
    pub fn schemes(self) -> &'static [&'static str] {
        match self {
            ProbeTransport::StreamableHttp => &["http", "https"],
            ProbeTransport::Websocket => &["ws", "wss"],
        }
    }

    /// The name written in the configuration.
    pub fn as_str(self) -> &'static str {
        match self {
            ProbeTransport::StreamableHttp => "streamable_http",
            ProbeTransport::Websocket => "websocket",
        }
    }
}

impl ProbeModule {
    /// The schemes a target may have.
    pub fn schemes(&self) -> Vec<&str> {
        match &self.schemes {
            Some(schemes) => schemes.iter().map(String::as_str).collect(),
            None => self.transport.schemes().to_vec(),
        }
    }

    /// The settings of a wsdaemon target probing `url` alone, over this module's transport,
    /// named `name`. The URL is checked by the wsdaemon collector, not here.
    pub fn daemon_config(&self, name: String, url: &str) -> Result<WsDaemonConfig, String> {
        let mut config = WsDaemonConfig::from_url(name, url)?;
        config.health_url = None;
        match self.transport {
            ProbeTransport::StreamableHttp => {
                config.websocket_url = None;
                config.mcp_url = Some(url.to_owned());
            }
            ProbeTransport::Websocket => {
                config.websocket_url = Some(url.to_owned());
                config.mcp_url = None;
            }
        }
        config.timeout = self.timeout;
        config.protocol = self.protocol.clone();
        config.headers = self.headers.clone();
        config.bearer_token = self.bearer_token.clone();
        config.bearer_token_file = self.bearer_token_file.clone();
        config.ca_file = self.ca_file.clone();
        config.insecure_skip_verify = self.insecure_skip_verify;
        config.tool_call = self.tool_call.clone();
        Ok(config)
    }

    /// The settings of a plain HTTP check of `url` with this module's settings, named
    /// `name`.
    pub fn http_config(&self, name: String, url: &str) -> HttpConfig {
        let mut config = HttpConfig::from_url(name, url);
        config.timeout = self.timeout;
        config.headers = self.headers.clone();
        config.bearer_token = self.bearer_token.clone();
        config.bearer_token_file = self.bearer_token_file.clone();
        config.ca_file = self.ca_file.clone();
        config.insecure_skip_verify = self.insecure_skip_verify;
        if let Some(http) = &self.http {
            if let Some(method) = http.method {
                config.method = method;
            }
            if let Some(codes) = &http.valid_status_codes {
                config.valid_status_codes = codes.clone();
            }
            config.body_pattern = http.body_pattern.clone();
            config.body_pattern_absent = http.body_pattern_absent.clone();
            if let Some(follow) = http.follow_redirects {
                config.follow_redirects = follow;
            }
            if let Some(max) = http.max_redirects {
                config.max_redirects = max;
            }
            if let Some(max) = http.max_body_bytes {
                config.max_body_bytes = max;
            }
        }
        config
    }

    /// The settings of the target `url` names, by this module's prober.
    pub fn target_config(&self, name: String, url: &str) -> Result<ProbeTargetConfig, String> {
        match self.prober {
            ProbeKind::Mcp => self
                .daemon_config(name, url)
                .map(|c| ProbeTargetConfig::Mcp(Box::new(c))),
            ProbeKind::Http => Ok(ProbeTargetConfig::Http(Box::new(
                self.http_config(name, url),
            ))),
        }
    }

    /// What the schemes are checked against, for messages.
    fn scheme_owner(&self) -> String {
        match self.prober {
            ProbeKind::Mcp => format!("transport {}", self.transport.as_str()),
            ProbeKind::Http => "prober http".to_owned(),
        }
    }

    /// A target that stands for any of this module's, to check the settings with before a
    /// request names one.
    pub fn sample_target(&self) -> String {
        let scheme = self.schemes().first().copied().unwrap_or("http");
        format!("{scheme}://127.0.0.1/")
    }

    /// Checks what the types cannot; the key is relative to the module's entry.
    fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: &str| Err((key.to_owned(), message.to_owned()));
        if self.allowed_targets.as_str().is_empty() {
            return problem(
                "allowed_targets",
                "must not be empty: give a regular expression of the target URLs to allow",
            );
        }
        if self.timeout.is_zero() {
            return problem("timeout", "must be greater than zero");
        }
        if let Some(schemes) = &self.schemes {
            if schemes.is_empty() {
                return problem("schemes", "list at least one scheme");
            }
            let allowed = self.transport.schemes();
            for (i, scheme) in schemes.iter().enumerate() {
                if !allowed.contains(&scheme.as_str()) {
                    return Err((
                        format!("schemes[{i}]"),
                        format!(
                            "{scheme:?} is not a scheme of {} ({})",
                            self.scheme_owner(),
                            allowed.join(", ")
                        ),
                    ));
                }
                if schemes[..i].contains(scheme) {
                    return Err((
                        format!("schemes[{i}]"),
                        format!("{scheme:?} is listed twice"),
                    ));
                }
            }
        }
        match self.prober {
            ProbeKind::Mcp if self.http.is_some() => {
                return problem("http", "applies to prober: http only");
            }
            ProbeKind::Http => {
                let mcp_only = [
                    ("transport", self.transport != ProbeTransport::default()),
                    ("protocol", self.protocol != probe_defaults::protocol()),
                    ("tool_call", self.tool_call.is_some()),
                ];
                if let Some((key, _)) = mcp_only.iter().find(|(_, set)| *set) {
                    return problem(key, "applies to prober: mcp only");
                }
            }
            ProbeKind::Mcp => {}
        }
        // The collector's own checks (protocol, headers, token, tool call, statuses,
        // patterns), on a target that stands for the ones requests will name.
        let config = self
            .target_config("probe".to_owned(), &self.sample_target())
            .map_err(|message| ("transport".to_owned(), message))?;
        config.validate().map_err(|(key, message)| {
            let field = key.split(['.', '[']).next().unwrap_or_default();
            let in_http = self.prober == ProbeKind::Http
                && [
                    "method",
                    "valid_status_codes",
                    "body_pattern",
                    "body_pattern_absent",
                    "follow_redirects",
                    "max_redirects",
                    "max_body_bytes",
                ]
                .contains(&field);
            if in_http {
                (format!("http.{key}"), message)
            } else {
                (key, message)
            }
        })
    }
}

/// Whether `name` can name a probe module: letters, digits, `_` and `-`, as it is written
/// in URLs and shown as the `module` label.
fn check_module_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        return Err("a module name must not be empty".to_owned());
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(
            "a module name holds letters, digits, `_` and `-` only: it is written in /probe \
             URLs and shown as a label"
                .to_owned(),
        );
    }
    Ok(())
}

/// Where the configuration comes from: the file, if any, and the flags that add to it.
#[derive(Debug, Clone)]
pub struct ConfigSource {
    file: Option<PathBuf>,
    no_collector_host: bool,
    host_areas: Vec<(mcpwatch_host::Area, bool)>,
    procfs: Option<PathBuf>,
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
            host_areas: cli.host_areas.areas.clone(),
            procfs: cli.procfs.clone(),
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
        let host = &mut config.collectors.host;
        if self.no_collector_host {
            host.enabled = false;
        }
        host.areas.extend(self.host_areas.iter().copied());
        if let Some(procfs) = &self.procfs {
            host.procfs = ConfigPath::from(procfs.clone());
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
            let base = mcpwatch_pgconn::target_name(dsn)
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

/// Network targets (or concurrent probes) one runtime worker serves before the work calls
/// for another: at 50 MCP daemon targets a collection takes about 12 ms of CPU.
const TARGETS_PER_WORKER: usize = 50;

impl ExporterConfig {
    /// The runtime worker threads this configuration's work calls for, at most `cores`: one
    /// per 50 network targets, counting a probe module's concurrent probes as targets. A
    /// small configuration keeps one worker, and with it the smallest resident memory.
    pub fn worker_threads_for(&self, cores: usize) -> usize {
        let c = &self.collectors;
        let targets =
            c.postgres.len() + c.redis.len() + c.wsdaemon.len() + c.http.len() + c.containers.len();
        let probes = if self.probe.modules.is_empty() {
            0
        } else {
            self.probe.max_concurrent
        };
        (targets + probes)
            .div_ceil(TARGETS_PER_WORKER)
            .clamp(1, cores.max(1))
    }

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
        check_targets(
            "http",
            &self.collectors.http,
            |t| &t.name,
            HttpConfig::validate,
        )?;
        check_targets(
            "certificates",
            &self.collectors.certificates,
            |t| &t.name,
            |t| {
                CertificatesCollector::new(t.clone())
                    .map(drop)
                    .map_err(|e| (e.key, e.message))
            },
        )?;
        check_targets(
            "files",
            &self.collectors.files,
            |t| &t.name,
            FilesConfig::validate,
        )?;
        check_targets(
            "log_patterns",
            &self.collectors.log_patterns,
            |t| &t.name,
            LogPatternsConfig::validate,
        )?;
        check_targets(
            "containers",
            &self.collectors.containers,
            |t| &t.name,
            ContainersConfig::validate,
        )?;
        if self.scrape.timeout.is_zero() {
            return Err((
                "scrape.timeout".to_owned(),
                "must be greater than zero".to_owned(),
            ));
        }
        self.probe.validate()
    }
}

impl ProbeConfig {
    /// Checks the bounds and every module; keys from `probe`.
    fn validate(&self) -> Result<(), Problem> {
        for (key, value) in [
            ("probe.max_concurrent", self.max_concurrent),
            ("probe.cache_size", self.cache_size),
        ] {
            if value == 0 {
                return Err((key.to_owned(), "must be at least 1".to_owned()));
            }
        }
        for (name, module) in &self.modules {
            check_module_name(name).map_err(|m| (format!("probe.modules.{name}"), m))?;
            module
                .validate()
                .map_err(|(key, m)| (format!("probe.modules.{name}.{key}"), m))?;
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
        std::fs::write(dir.path().join("token"), "hunter2\n").expect("write token");
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
    fn workers_follow_the_work_up_to_the_cores() {
        let daemons = |n: usize| {
            let mut text = String::from("collectors:\n  wsdaemon:\n");
            for i in 0..n {
                text +=
                    &format!("    - {{ name: d{i}, health_url: \"http://127.0.0.1:1/health\" }}\n");
            }
            load(&text, &[]).expect("valid")
        };
        let default = load("{}", &[]).expect("valid");
        assert_eq!(default.worker_threads_for(8), 1);
        assert_eq!(daemons(50).worker_threads_for(8), 1);
        assert_eq!(daemons(51).worker_threads_for(8), 2);
        assert_eq!(daemons(300).worker_threads_for(8), 6);
        assert_eq!(daemons(300).worker_threads_for(2), 2);
        assert_eq!(daemons(300).worker_threads_for(0), 1);
        // A fleet's probes count as targets: 256 at once by default.
        let fleet = load(
            "probe:\n  modules:\n    mcp: { allowed_targets: \"^http://127\\\\.0\\\\.0\\\\.1:\" }\n",
            &[],
        )
        .expect("valid");
        assert_eq!(fleet.worker_threads_for(16), 6);
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
    fn containers_targets_from_the_documented_example() {
        let config = load(
            "collectors:\n  containers:\n    - name: docker\n    - name: builds\n      \
             socket: /run/user/1000/docker.sock\n      stats: true\n      max_containers: 20\n",
            &[],
        )
        .expect("valid");
        let targets = &config.collectors.containers;
        assert_eq!(
            targets[0].socket.path(),
            Path::new(mcpwatch_containers::config::DEFAULT_SOCKET)
        );
        assert!(!targets[0].stats);
        assert_eq!(
            targets[1].socket.path(),
            Path::new("/run/user/1000/docker.sock")
        );
        assert!(targets[1].stats);
        assert_eq!(targets[1].max_containers, 20);
        let e = load(
            "collectors:\n  containers:\n    - name: d\n      socket: tcp://h:2375\n",
            &[],
        )
        .expect_err("a URL");
        assert!(
            e.starts_with("exporter.yml:4:7: collectors.containers[0].socket: "),
            "{e}"
        );
    }

    #[test]
    fn files_targets_from_the_documented_example() {
        let config = load(
            "collectors:\n  files:\n    - { name: sqlite_backups, path: \"backups/sql_app_backup_*.db\", \
             max_age: 1h, min_size_ratio: 0.5 }\n    - name: pg_dumps\n      \
             path: /var/backups/pg/*.sql.gz\n",
            &[],
        )
        .expect("valid");
        let targets = &config.collectors.files;
        assert_eq!(targets[0].name, "sqlite_backups");
        assert!(targets[0].path.path().is_absolute(), "relative to the file");
        assert!(
            targets[0]
                .path
                .path()
                .ends_with("backups/sql_app_backup_*.db")
        );
        assert_eq!(targets[0].max_age, Some(Duration::from_secs(3600)));
        assert_eq!(targets[1].max_age, None);
        assert_eq!(targets[1].min_size_ratio, 0.5);
        let e = load(
            "collectors:\n  files:\n    - name: a\n      path: /b/*.db\n    - name: b\n      \
             path: /b/*/x.db\n",
            &[],
        )
        .expect_err("directory wildcard");
        assert!(
            e.starts_with("exporter.yml:6:7: collectors.files[1].path: wildcards are allowed"),
            "{e}"
        );
        let e = load(
            "collectors:\n  files:\n    - name: a\n      path: /b/*.db\n      min_size_ratio: 2\n",
            &[],
        )
        .expect_err("ratio");
        assert!(
            e.starts_with("exporter.yml:5:7: collectors.files[0].min_size_ratio: 2 is not"),
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
    fn host_area_flags_add_to_the_file() {
        use mcpwatch_host::Area;
        let config = load(
            "collectors:\n  host:\n    areas: { diskstats: false, timex: true }\n    \
             procfs: /proc\n",
            &[
                "--no-collector.host.timex",
                "--collector.host.tcpstat",
                "--path.procfs=/host/proc",
            ],
        )
        .expect("valid");
        let host = &config.collectors.host;
        assert!(!host.area_enabled(Area::Diskstats));
        assert!(host.area_enabled(Area::Tcpstat));
        assert!(!host.area_enabled(Area::Timex));
        assert!(host.area_enabled(Area::Pressure));
        assert_eq!(host.procfs.path(), Path::new("/host/proc"));
        let e = load("collectors:\n  host:\n    areas: { disk: false }\n", &[])
            .expect_err("unknown area");
        assert!(
            e.starts_with("exporter.yml:3:12: collectors.host.areas: unknown area `disk`"),
            "{e}"
        );
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
             `network_devices_include`, `network_devices_exclude`, `disk_devices_include`, \
             `disk_devices_exclude`, `processes`, `areas`, `procfs`"
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

    #[test]
    fn http_targets_name_their_entry() {
        let config = load(
            "collectors:\n  http:\n    - name: admin-ui\n      url: http://localhost:3000\n    \
             - name: gateway\n      url: https://gw.example/login\n      \
             valid_status_codes: [200, 302]\n      follow_redirects: false\n",
            &[],
        )
        .expect("valid");
        let names: Vec<&str> = config
            .collectors
            .http
            .iter()
            .map(|t| t.name.as_str())
            .collect();
        assert_eq!(names, ["admin-ui", "gateway"]);
        assert_eq!(config.collectors.http[1].valid_status_codes, [200, 302]);
        for (text, expected) in [
            (
                "    - name: a\n      url: http://localhost:3000\n      valid_status_code: [200]\n",
                "exporter.yml:5:7: collectors.http[0].valid_status_code: unknown field \
                 `valid_status_code`, expected one of",
            ),
            (
                "    - name: a\n      url: 'ws://ops:hunter2@x/'\n",
                "exporter.yml:4:7: collectors.http[0].url: \"ws://<secret>@x/\": expected \
                 http:// or https://",
            ),
            (
                "    - name: a\n      url: http://x/\n    - name: a\n      url: http://y/\n",
                "exporter.yml:5:7: collectors.http[1].name: \"a\" is used twice",
            ),
            (
                "    - name: a\n      url: http://x/\n      method: HEAD\n      body_pattern: ok\n",
                "exporter.yml:6:7: collectors.http[0].body_pattern: a HEAD request has no body \
                 to match: use method GET",
            ),
        ] {
            let e = load(&format!("collectors:\n  http:\n{text}"), &[]).expect_err(text);
            assert!(e.starts_with(expected), "{e}");
            assert!(!e.contains("hunter2"), "{e}");
        }
    }

    #[test]
    fn an_http_probe_module_checks_pages() {
        let config = load_probe(
            "probe:\n  modules:\n    web:\n      prober: http\n      timeout: 3s\n      \
             allowed_targets: 'https?://[a-z0-9.-]+(:\\d+)?/.*'\n      bearer_token_file: token\n      \
             http:\n        valid_status_codes: [200, 302]\n        body_pattern: '<title>'\n        \
             follow_redirects: false\n",
        )
        .expect("valid");
        let module = &config.probe.modules["web"];
        assert_eq!(module.prober, ProbeKind::Http);
        assert_eq!(module.schemes(), ["http", "https"]);
        let http = module.http_config("ui:3000".into(), "http://ui:3000/");
        assert_eq!(http.valid_status_codes, [200, 302]);
        assert_eq!(
            http.body_pattern.as_ref().map(Pattern::as_str),
            Some("<title>")
        );
        assert!(!http.follow_redirects);
        assert_eq!(http.max_redirects, 10, "a target's default");
        assert_eq!(http.timeout, Duration::from_secs(3));
        assert_eq!(
            http.bearer_token()
                .expect("token")
                .map(|t| t.expose().to_owned()),
            Some("hunter2".to_owned())
        );
        let module = |body: &str| {
            load_probe(&format!(
                "probe:\n  modules:\n    web:\n      allowed_targets: 'http://x/'\n{body}"
            ))
        };
        for (body, expected) in [
            (
                "      prober: http\n      tool_call: {name: echo}\n",
                "exporter.yml:6:7: probe.modules.web.tool_call: applies to prober: mcp only",
            ),
            (
                "      prober: http\n      transport: websocket\n",
                "exporter.yml:6:7: probe.modules.web.transport: applies to prober: mcp only",
            ),
            (
                "      http: {valid_status_codes: [200]}\n",
                "exporter.yml:5:7: probe.modules.web.http: applies to prober: http only",
            ),
            (
                "      prober: http\n      http:\n        valid_status_codes: [200, 700]\n",
                "exporter.yml:7:35: probe.modules.web.http.valid_status_codes[1]: 700 is no HTTP \
                 status (100 to 599)",
            ),
            (
                "      prober: http\n      schemes: [ws]\n",
                "exporter.yml:6:17: probe.modules.web.schemes[0]: \"ws\" is not a scheme of \
                 prober http (http, https)",
            ),
            (
                "      prober: ftp\n",
                "exporter.yml:5:15: probe.modules.web.prober: unknown variant `ftp`",
            ),
        ] {
            let e = module(body).expect_err(body);
            assert!(e.starts_with(expected), "{body}: {e}");
        }
    }

    fn load_probe(text: &str) -> Result<ExporterConfig, String> {
        load(text, &[])
    }

    #[test]
    fn a_module_takes_its_defaults() {
        let config = load_probe(
            "probe:\n  modules:\n    mcp:\n      allowed_targets: 'https?://10\\.0\\.\\d+\\.\\d+:8000/mcp'\n",
        )
        .expect("valid");
        assert_eq!(config.probe.max_concurrent, 256);
        assert_eq!(config.probe.cache_size, 4096);
        let module = &config.probe.modules["mcp"];
        assert_eq!(module.transport, ProbeTransport::StreamableHttp);
        assert_eq!(module.protocol, "auto");
        assert_eq!(module.timeout, Duration::from_secs(5));
        assert_eq!(module.schemes(), ["http", "https"]);
        assert!(!module.insecure_skip_verify);
        assert!(module.tool_call.is_none());
        assert_eq!(ExporterConfig::default().probe, ProbeConfig::default());
    }

    #[test]
    fn every_setting_of_a_module_is_read() {
        let config = load_probe(
            "probe:\n  max_concurrent: 8\n  cache_size: 100\n  modules:\n    fleet:\n      \
             transport: websocket\n      protocol: '2025-06-18'\n      timeout: 3s\n      \
             allowed_targets: 'wss://[a-z0-9-]+\\.mcp\\.internal/ws'\n      schemes: [wss]\n      \
             headers:\n        X-Tenant: ops\n      bearer_token_file: token\n      \
             insecure_skip_verify: true\n      tool_call:\n        name: echo\n        \
             arguments: {text: hi}\n        expect: hi\n",
        )
        .expect("valid");
        assert_eq!(config.probe.max_concurrent, 8);
        assert_eq!(config.probe.cache_size, 100);
        let module = &config.probe.modules["fleet"];
        assert_eq!(module.transport, ProbeTransport::Websocket);
        assert_eq!(module.schemes(), ["wss"]);
        assert_eq!(module.timeout, Duration::from_secs(3));
        let daemon = module
            .daemon_config("x:443".into(), "wss://a.mcp.internal/ws")
            .expect("daemon config");
        assert_eq!(
            daemon.websocket_url.as_deref(),
            Some("wss://a.mcp.internal/ws")
        );
        assert_eq!(daemon.health_url, None);
        assert_eq!(daemon.mcp_url, None);
        assert_eq!(daemon.protocol, "2025-06-18");
        assert_eq!(
            daemon
                .bearer_token()
                .expect("token")
                .map(|t| t.expose().to_owned()),
            Some("hunter2".to_owned())
        );
        assert_eq!(daemon.headers["X-Tenant"].expose(), "ops");
        assert_eq!(
            daemon.tool_call.as_ref().map(|c| c.name.as_str()),
            Some("echo")
        );
        assert!(daemon.insecure_skip_verify);
        assert!(!format!("{config:?}").contains("hunter2"));
    }

    #[test]
    fn module_errors_name_file_line_and_key() {
        let module = |body: &str| {
            load_probe(&format!(
                "probe:\n  modules:\n    mcp:\n      allowed_targets: 'http://127\\.0\\.0\\.1:\\d+/mcp'\n{body}"
            ))
        };
        assert_eq!(
            load_probe("probe:\n  modules:\n    mcp:\n      timeout: 2s\n").expect_err("required"),
            "exporter.yml:3:5: probe.modules.mcp: missing field `allowed_targets`"
        );
        let e = load_probe("probe:\n  modules:\n    mcp:\n      allowed_targets: 'http://(x'\n")
            .expect_err("regex");
        assert!(
            e.starts_with(
                "exporter.yml:4:7: probe.modules.mcp.allowed_targets: invalid regular \
                 expression \"http://(x\""
            ),
            "{e}"
        );
        assert_eq!(
            load_probe("probe:\n  modules:\n    mcp:\n      allowed_targets: ''\n")
                .expect_err("empty"),
            "exporter.yml:4:7: probe.modules.mcp.allowed_targets: must not be empty: give a \
             regular expression of the target URLs to allow"
        );
        let e = module("      timout: 2s\n").expect_err("typo");
        assert!(
            e.starts_with(
                "exporter.yml:5:7: probe.modules.mcp.timout: unknown field `timout`, expected \
                 one of `transport`, `protocol`, `timeout`, `allowed_targets`, `schemes`"
            ),
            "{e}"
        );
        assert_eq!(
            module("      schemes: [http, ws]\n").expect_err("scheme"),
            "exporter.yml:5:23: probe.modules.mcp.schemes[1]: \"ws\" is not a scheme of \
             transport streamable_http (http, https)"
        );
        assert_eq!(
            module("      schemes: []\n").expect_err("no scheme"),
            "exporter.yml:5:7: probe.modules.mcp.schemes: list at least one scheme"
        );
        let e = module("      transport: sse\n").expect_err("transport");
        assert!(
            e.starts_with("exporter.yml:5:18: probe.modules.mcp.transport: unknown variant `sse`"),
            "{e}"
        );
        assert_eq!(
            module("      timeout: 0s\n").expect_err("zero"),
            "exporter.yml:5:7: probe.modules.mcp.timeout: must be greater than zero"
        );
        let e = module("      protocol: '2099-01-01'\n").expect_err("protocol");
        assert!(
            e.starts_with(
                "exporter.yml:5:7: probe.modules.mcp.protocol: \"2099-01-01\" is neither"
            ),
            "{e}"
        );
        let e = module("      transport: websocket\n      protocol: '2026-07-28'\n")
            .expect_err("modern over websocket");
        assert!(
            e.starts_with("exporter.yml:6:7: probe.modules.mcp.protocol: "),
            "{e}"
        );
        assert_eq!(
            module("      bearer_token: hunter2\n      bearer_token_file: token\n")
                .expect_err("both"),
            "exporter.yml:5:7: probe.modules.mcp.bearer_token: set either bearer_token or \
             bearer_token_file, not both"
        );
        assert_eq!(
            module("      tool_call: {name: echo, expect: '(x'}\n").expect_err("expect"),
            "exporter.yml:5:31: probe.modules.mcp.tool_call.expect: not a regular expression: \
             found open group without closing ')'"
        );
        assert_eq!(
            load_probe("probe:\n  modules:\n    'a b':\n      allowed_targets: x\n")
                .expect_err("name"),
            "exporter.yml:3:5: probe.modules.a b: a module name holds letters, digits, `_` and `-` \
             only: it is written in /probe URLs and shown as a label"
        );
        assert_eq!(
            load_probe("probe:\n  max_concurrent: 0\n").expect_err("zero"),
            "exporter.yml:2:3: probe.max_concurrent: must be at least 1"
        );
        let e = load_probe("probe:\n  module: {}\n").expect_err("typo");
        assert!(
            e.starts_with("exporter.yml:2:3: probe.module: unknown field `module`"),
            "{e}"
        );
    }
}
