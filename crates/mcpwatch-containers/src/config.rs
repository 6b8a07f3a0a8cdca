//! `collectors.containers`: one entry per Docker daemon.

use std::path::PathBuf;

use mcpwatch_core::config::{ConfigPath, Problem, check_target_name};
use serde::Deserialize;

/// The socket Docker listens on by default.
pub const DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// The most containers a target may report one by one; beyond it the series of one daemon
/// would outgrow what a dashboard shows.
pub const MAX_CONTAINERS: usize = 10_000;

/// The most inspections at once a target may send its daemon.
pub const MAX_CONCURRENCY: usize = 64;

/// The most stats requests at once a target may have open on its daemon (one connection,
/// one file descriptor each).
pub const MAX_STATS_CONCURRENCY: usize = 256;

/// One Docker daemon.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainersConfig {
    /// The `target` label.
    pub name: String,
    /// The daemon's unix socket, relative to the configuration file.
    #[serde(default = "defaults::socket")]
    pub socket: ConfigPath,
    /// Read CPU, memory and process counts of each running container from the stats
    /// endpoint: one more request per running container and scrape.
    #[serde(default)]
    pub stats: bool,
    /// At most this many containers are reported one by one (running, restarting, paused
    /// and dead ones first, then by name); the rest are only counted.
    #[serde(default = "defaults::max_containers")]
    pub max_containers: usize,
    /// Inspections sent to the daemon at once (one connection each).
    #[serde(default = "defaults::concurrency")]
    pub concurrency: usize,
    /// Stats requests open at once. The daemon samples the containers asked for together,
    /// once a second, and a request waits for the next sample: each round of this many
    /// running containers costs up to a second of the scrape.
    #[serde(default = "defaults::stats_concurrency")]
    pub stats_concurrency: usize,
}

mod defaults {
    use super::*;

    pub fn socket() -> ConfigPath {
        ConfigPath::from(PathBuf::from(DEFAULT_SOCKET))
    }
    pub fn max_containers() -> usize {
        100
    }
    pub fn concurrency() -> usize {
        16
    }
    pub fn stats_concurrency() -> usize {
        100
    }
}

impl ContainersConfig {
    /// A target on the default socket with the default settings.
    pub fn new(name: String) -> Self {
        Self {
            name,
            socket: defaults::socket(),
            stats: false,
            max_containers: defaults::max_containers(),
            concurrency: defaults::concurrency(),
            stats_concurrency: defaults::stats_concurrency(),
        }
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Err((key.to_owned(), message));
        check_target_name(&self.name).map_err(|m| ("name".to_owned(), m))?;
        let socket = self.socket.path().to_string_lossy();
        if socket.contains("://") {
            return problem(
                "socket",
                format!(
                    "{socket:?} is not a path: give the unix socket's path \
                     (such as {DEFAULT_SOCKET}); daemons reached over TCP are not read"
                ),
            );
        }
        if !(1..=MAX_CONTAINERS).contains(&self.max_containers) {
            return problem(
                "max_containers",
                format!(
                    "{} is not between 1 and {MAX_CONTAINERS}",
                    self.max_containers
                ),
            );
        }
        if !(1..=MAX_CONCURRENCY).contains(&self.concurrency) {
            return problem(
                "concurrency",
                format!(
                    "{} is not between 1 and {MAX_CONCURRENCY}",
                    self.concurrency
                ),
            );
        }
        if !(1..=MAX_STATS_CONCURRENCY).contains(&self.stats_concurrency) {
            return problem(
                "stats_concurrency",
                format!(
                    "{} is not between 1 and {MAX_STATS_CONCURRENCY}",
                    self.stats_concurrency
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> ContainersConfig {
        parse_yaml(text, Path::new("/etc/mcpwatch/exporter.yml")).expect("config")
    }

    #[test]
    fn defaults_and_a_relative_socket() {
        let c = parse("name: docker\n");
        assert_eq!(c, ContainersConfig::new("docker".into()));
        assert_eq!(c.socket.path(), Path::new(DEFAULT_SOCKET));
        assert!(!c.stats);
        assert_eq!(
            (c.max_containers, c.concurrency, c.stats_concurrency),
            (100, 16, 100)
        );
        assert_eq!(c.validate(), Ok(()));
        let c = parse("name: d\nsocket: run/docker.sock\nstats: true\nmax_containers: 5\n");
        assert_eq!(c.socket.path(), Path::new("/etc/mcpwatch/run/docker.sock"));
        assert!(c.stats);
        assert_eq!(c.max_containers, 5);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("name: ''\n", "name"),
            ("name: d\nsocket: unix:///var/run/docker.sock\n", "socket"),
            ("name: d\nsocket: tcp://127.0.0.1:2375\n", "socket"),
            ("name: d\nmax_containers: 0\n", "max_containers"),
            ("name: d\nconcurrency: 0\n", "concurrency"),
            ("name: d\nconcurrency: 65\n", "concurrency"),
            ("name: d\nstats_concurrency: 0\n", "stats_concurrency"),
            ("name: d\nstats_concurrency: 257\n", "stats_concurrency"),
        ] {
            assert_eq!(parse(text).validate().expect_err(text).0, key, "{text}");
        }
        let e = parse_yaml::<ContainersConfig>("name: d\nall: true\n", Path::new("c.yml"))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("unknown field `all`"), "{e}");
    }
}
