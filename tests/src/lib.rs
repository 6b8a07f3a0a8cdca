//! The test harness of mcpwatch: real services (Prometheus, Alertmanager alone or as a
//! gossiping cluster, PostgreSQL, Redis, an MCP server built with the official Python SDK,
//! an SMTP server built with Python's `aiosmtpd`) started on free loopback ports in temporary
//! directories and stopped when dropped; a private Docker daemon on a socket of its own; a stand-in MCP daemon and in-process stand-ins for
//! Slack's incoming webhooks, PagerDuty's Events API v2 and a generic webhook, with faults on
//! demand; a headless Chromium driven through WebDriver; plus the checkers the tests use (`promtool`, `amtool`, Python's strict
//! OpenMetrics parser).
//!
//! A missing program is a test failure that says how to install it, never a skip:
//! `./tests/run.sh` installs everything.

#![forbid(unsafe_code)]

pub mod alertmanager;
pub mod binaries;
pub mod browser;
pub mod daemon;
pub mod docker;
pub mod engine;
pub mod exposition;
pub mod http;
pub mod logrotate;
pub mod mcp;
pub mod notifier;
pub mod pages;
pub mod ports;
pub mod postgres;
pub mod process;
pub mod prometheus;
pub mod redis;
pub mod repo;
pub mod smtp;
pub mod stand_in;
pub mod tls;
pub mod tools;

use std::hash::{BuildHasher, Hasher};
use std::time::{Duration, Instant};

/// A random token, distinct in every call: test passwords that must never show up in any
/// output are searched for by it.
pub fn random_token(prefix: &str) -> String {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    format!("{prefix}{:016x}", hasher.finish())
}

/// Polls `check` every 50 ms until it returns `Some`, for at most `limit`; the limit bounds
/// a test that would otherwise hang, it is not a performance expectation.
///
/// # Panics
/// When `limit` passes, naming `what`.
#[track_caller]
pub fn wait_for<T>(what: &str, limit: Duration, mut check: impl FnMut() -> Option<T>) -> T {
    let start = Instant::now();
    loop {
        if let Some(value) = check() {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The async form of [`wait_for`].
///
/// # Panics
/// When `limit` passes, naming `what`.
pub async fn wait_for_async<T, F, Fut>(what: &str, limit: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let start = Instant::now();
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            start.elapsed() < limit,
            "gave up waiting for {what} after {limit:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
