//! Child processes that are stopped when dropped, with their output kept for diagnosis.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

/// A running program. Dropping it kills it (SIGKILL) and waits for it.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    child: Option<Child>,
    log: PathBuf,
}

impl ServiceProcess {
    /// Starts `command` with stdout and stderr written to `<log_dir>/<name>.log`.
    ///
    /// # Panics
    /// When the program cannot be started.
    pub fn spawn(name: &str, mut command: Command, log_dir: &Path) -> Self {
        let log = log_dir.join(format!("{name}.log"));
        let out = File::create(&log).expect("create log file");
        let err = out.try_clone().expect("clone log file");
        let child = command
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({command:?}): {e}"));
        Self {
            name: name.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// The process id.
    ///
    /// # Panics
    /// After the process was waited for.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().expect("running").id()
    }

    /// What the program wrote so far.
    pub fn output(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends a signal.
    ///
    /// # Panics
    /// When the signal cannot be sent.
    pub fn signal(&self, signal: Signal) {
        let pid = i32::try_from(self.pid()).expect("pid fits");
        kill(Pid::from_raw(pid), signal).expect("send signal");
    }

    /// Whether the process still runs.
    pub fn is_running(&mut self) -> bool {
        self.child
            .as_mut()
            .is_some_and(|c| matches!(c.try_wait(), Ok(None)))
    }

    /// Sends `signal` and waits for the process to exit, at most `limit`, then kills it.
    pub fn stop(&mut self, signal: Signal, limit: Duration) {
        if !self.is_running() {
            self.child = None;
            return;
        }
        self.signal(signal);
        let child = self.child.as_mut().expect("running");
        let deadline = std::time::Instant::now() + limit;
        while std::time::Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                self.child = None;
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
        self.child = None;
    }

    /// Waits for the process to exit, at most `limit`.
    ///
    /// # Panics
    /// When it is still running after `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = crate::wait_for(&format!("{} to exit", self.name), limit, || {
            child.try_wait().ok().flatten()
        });
        self.child = None;
        status
    }
}

impl Drop for ServiceProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
