#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collect;
pub mod config;
mod info;
mod metrics;

use mcpwatch_core::Secret;
use redis::{ConnectionInfo, IntoConnectionInfo};

pub use collect::RedisCollector;
pub use config::RedisConfig;

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct RedisError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong; never the URL or the password.
    pub message: String,
}

/// Connection settings from the URL and the password settings.
fn connection_info(config: &RedisConfig) -> Result<ConnectionInfo, String> {
    let url = config.url.expose();
    if !(url.starts_with("redis://") || url.starts_with("rediss://") || url.starts_with("unix://"))
    {
        return Err("expected redis://, rediss:// or unix://".to_owned());
    }
    // The parser's own message may quote the URL, and with it the password.
    let info = url.into_connection_info().map_err(|_| {
        "invalid URL (expected redis://[user[:password]@]host[:port][/db])".to_owned()
    })?;
    // No CLIENT SETINFO: servers before 7.2 answer it with an error reply, which counts in
    // their error statistics; the connection is named with CLIENT SETNAME instead.
    // Nothing the collector sends depends on the selected database, so the URL's is not
    // selected: a SELECT in the handshake would hide the server's answer to a refused
    // connection (maxclients, sent before closing) behind a broken pipe, and an ACL that
    // refuses SELECT would refuse every connection.
    let mut redis = info
        .redis_settings()
        .clone()
        .set_skip_set_lib_name()
        .set_db(0);
    if let Some(user) = &config.username {
        redis = redis.set_username(user);
    }
    if let Some(password) = config.password()? {
        redis = redis.set_password(password.expose());
    }
    Ok(info.set_redis_settings(redis))
}

/// A target name from a URL given on the command line: `host:port`, without credentials.
pub fn target_name(url: &Secret) -> Result<String, String> {
    let info = connection_info(&RedisConfig::from_url(String::new(), url.clone()))?;
    Ok(match info.addr() {
        redis::ConnectionAddr::Tcp(host, port)
        | redis::ConnectionAddr::TcpTls { host, port, .. } => {
            if host.contains(':') {
                format!("[{host}]:{port}")
            } else {
                format!("{host}:{port}")
            }
        }
        other => other.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_names() {
        let mut config = RedisConfig::from_url(
            "c".into(),
            Secret::new("redis://user:hunter2@cache.example:6380/2"),
        );
        assert!(connection_info(&config).is_ok());
        assert_eq!(
            target_name(&config.url).as_deref(),
            Ok("cache.example:6380")
        );
        assert_eq!(
            target_name(&Secret::new("redis://[::1]:6379")).as_deref(),
            Ok("[::1]:6379")
        );
        config.url = Secret::new("redis://:hunter2@[bad");
        let e = connection_info(&config).expect_err("bad url");
        assert!(!e.contains("hunter2"), "{e}");
        config.url = Secret::new("http://x");
        assert!(connection_info(&config).is_err());
    }
}
