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

/// The command line, as `P::parse()` reads it, except that a refused command line's message
/// goes through [`crate::secret::redact_message`]: clap quotes the argument it did not
/// expect, which may be a connection URL given without its flag. Help and version print as
/// clap prints them.
pub fn parse_args<P: clap::Parser>() -> P {
    use clap::error::ErrorKind;
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(error) => {
            if matches!(
                error.kind(),
                ErrorKind::DisplayHelp
                    | ErrorKind::DisplayVersion
                    | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            ) {
                error.exit();
            }
            #[allow(clippy::print_stderr)]
            {
                eprint!(
                    "{}",
                    crate::secret::redact_message(&error.render().to_string())
                );
            }
            std::process::exit(error.exit_code());
        }
    }
}

/// The exit code of a run. A failure of `--check-config` or a subcommand answers a person at
/// a terminal (standard error, prefixed by `program`); a server's goes to its log.
pub fn exit_code(
    program: &str,
    result: anyhow::Result<()>,
    interactive: bool,
) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            if interactive {
                #[allow(clippy::print_stderr)]
                {
                    eprintln!("{program}: {error:#}");
                }
            } else {
                tracing::error!("{error:#}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

/// What `--check-config` prints when everything read is valid: the configuration file
/// (or the built-in defaults) and the web configuration file.
pub fn print_valid(
    program: &str,
    config_file: Option<&std::path::Path>,
    web_config_file: Option<&std::path::Path>,
) {
    let mut checked = vec![config_file.map_or_else(
        || "built-in defaults".to_owned(),
        |f| f.display().to_string(),
    )];
    if let Some(web) = web_config_file {
        checked.push(web.display().to_string());
    }
    #[allow(clippy::print_stdout)]
    {
        println!("{program}: configuration is valid ({})", checked.join(", "));
    }
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
