//! Settings of one Redis target (`collectors.redis[]`).

use std::time::Duration;

use mcpwatch_core::Secret;
use mcpwatch_core::config::{ConfigPath, Problem, SecretFile, duration, secret_setting};
use serde::Deserialize;

/// One Redis server to watch.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RedisConfig {
    /// The `target` label.
    pub name: String,
    /// `redis://[user[:password]@]host[:port][/db]`, or `rediss://` for TLS.
    pub url: Secret,
    /// The ACL user, when not in the URL.
    pub username: Option<String>,
    /// The password, when not in the URL.
    pub password: Option<Secret>,
    /// A file holding the password.
    pub password_file: Option<SecretFile>,
    /// CA certificates for `rediss://`; the system's roots otherwise.
    pub ca_file: Option<ConfigPath>,
    /// How long connecting may take.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub connect_timeout: Duration,
    /// How long a reply may take.
    #[serde(default = "defaults::timeout", with = "duration")]
    pub response_timeout: Duration,
    /// Commands reported from `INFO commandstats`: the top N by calls.
    #[serde(default = "defaults::max_commands")]
    pub max_commands: u32,
    /// At most this many databases in the keyspace metrics.
    #[serde(default = "defaults::max_databases")]
    pub max_databases: u32,
    /// At most this many replicas.
    #[serde(default = "defaults::max_replicas")]
    pub max_replicas: u32,
}

mod defaults {
    use std::time::Duration;

    pub fn timeout() -> Duration {
        Duration::from_secs(5)
    }
    pub fn max_commands() -> u32 {
        100
    }
    pub fn max_databases() -> u32 {
        16
    }
    pub fn max_replicas() -> u32 {
        32
    }
}

impl RedisConfig {
    /// A target from a URL alone, as `--redis.url` gives.
    pub fn from_url(name: String, url: Secret) -> Self {
        Self {
            name,
            url,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            connect_timeout: defaults::timeout(),
            response_timeout: defaults::timeout(),
            max_commands: defaults::max_commands(),
            max_databases: defaults::max_databases(),
            max_replicas: defaults::max_replicas(),
        }
    }

    /// The password from `password` or `password_file`, if either is set.
    pub fn password(&self) -> Result<Option<Secret>, String> {
        secret_setting(
            "password",
            self.password.clone(),
            self.password_file.clone(),
        )
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        mcpwatch_core::config::check_target_name(&self.name).map_err(|m| ("name".to_owned(), m))?;
        self.password()
            .map_err(|message| ("password".to_owned(), message))?;
        crate::connection_info(self).map_err(|message| ("url".to_owned(), message))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    #[test]
    fn reads_and_checks() {
        let c: RedisConfig = parse_yaml(
            "name: cache\nurl: redis://cache:6379/2\npassword: s3cret\n",
            Path::new("c.yml"),
        )
        .expect("config");
        assert!(c.validate().is_ok());
        assert_eq!(c.max_commands, 100);
        assert!(!format!("{c:?}").contains("s3cret"));
        let bad: RedisConfig =
            parse_yaml("name: cache\nurl: 'http://cache:1/x'\n", Path::new("c.yml"))
                .expect("config");
        assert_eq!(bad.validate().expect_err("scheme").0, "url");
    }
}
