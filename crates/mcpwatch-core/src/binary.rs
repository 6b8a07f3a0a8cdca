//! What the mcpwatch binaries share: `--log.level`, `--log.format` and the logger they set
//! up (feature `binary`).

use clap::ValueEnum;

/// `--log.level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogLevel {
    /// Everything, including each scrape's or delivery's details.
    Debug,
    /// Start, stop, reloads, failures and recoveries.
    Info,
    /// Problems only.
    Warn,
    /// Errors only.
    Error,
}

impl LogLevel {
    /// The `tracing` filter for this level.
    pub fn filter(self) -> tracing::level_filters::LevelFilter {
        use tracing::level_filters::LevelFilter;
        match self {
            LogLevel::Debug => LevelFilter::DEBUG,
            LogLevel::Info => LevelFilter::INFO,
            LogLevel::Warn => LevelFilter::WARN,
            LogLevel::Error => LevelFilter::ERROR,
        }
    }
}

/// `--log.format`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// Logs to standard error at `level` in `format`.
pub fn init_logging(level: LogLevel, format: LogFormat) {
    use std::io::IsTerminal;
    // Events name their own fields (`collector`, `target`, `channel`); the Rust module path
    // would clash with `target` in JSON and means nothing to an operator.
    let builder = tracing_subscriber::fmt()
        .with_max_level(level.filter())
        .with_target(false)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}
