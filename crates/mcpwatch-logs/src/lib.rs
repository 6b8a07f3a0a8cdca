#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod collect;
pub mod config;
mod patterns;

pub use collect::LogPatternsCollector;
pub use config::LogPatternsConfig;

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct LogPatternsError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong.
    pub message: String,
}
