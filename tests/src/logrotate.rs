//! The real logrotate, run on a log file the way cron runs it: the rotations that the
//! followers of the request log and of plain-text logs must survive.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::tools::require;

/// logrotate, from Debian's path or `PATH`.
///
/// # Panics
/// When logrotate is missing, saying how to install it.
fn program() -> PathBuf {
    let debian = Path::new("/usr/sbin/logrotate");
    if debian.is_file() {
        return debian.to_owned();
    }
    require("logrotate", "apt-get install -y logrotate")
}

/// The real logrotate on one log file, with its configuration and state file in `dir`.
#[derive(Debug)]
pub struct Logrotate {
    program: PathBuf,
    log: PathBuf,
    config: PathBuf,
    state: PathBuf,
}

impl Logrotate {
    /// Configured with `options` (`copytruncate`, `rotate 3`, `extension .log`...).
    pub fn new(dir: &Path, log: &Path, options: &str) -> Self {
        let rotate = Self {
            program: program(),
            log: log.to_owned(),
            config: dir.join("logrotate.conf"),
            state: dir.join("logrotate.state"),
        };
        rotate.configure(options);
        rotate
    }

    /// Writes the configuration again with other options.
    pub fn configure(&self, options: &str) {
        std::fs::write(
            &self.config,
            format!("{} {{\n{options}\n}}\n", self.log.display()),
        )
        .expect("logrotate.conf");
    }

    /// One rotation now, as `logrotate --force` from cron would do when due.
    pub fn rotate(&self) {
        let out = Command::new(&self.program)
            .arg("--force")
            .arg("--state")
            .arg(&self.state)
            .arg(&self.config)
            .output()
            .expect("run logrotate");
        assert!(
            out.status.success(),
            "logrotate failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
