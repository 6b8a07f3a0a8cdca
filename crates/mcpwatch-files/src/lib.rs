#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod metrics;
pub mod scan;

use std::sync::{Arc, Mutex, TryLockError};
use std::time::SystemTime;

use mcpwatch_core::{
    CollectError, Collector, MetricSink, ScrapeContext, async_trait, on_blocking_pool,
};

pub use config::FilesConfig;
pub use mcpwatch_core::follow::FilePattern;

use crate::metrics::Found;
use crate::scan::ScanError;

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct FilesError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Watches the files one pattern matches (`files_*`).
#[derive(Debug)]
pub struct FilesCollector {
    config: Arc<FilesConfig>,
    pattern: Arc<FilePattern>,
    /// Held while a listing runs: a listing hanging on a dead mount keeps it, and later
    /// scrapes do not queue more threads behind it.
    listing: Arc<Mutex<()>>,
}

impl FilesCollector {
    /// Checks the configuration and creates the collector; nothing is read yet.
    pub fn new(config: FilesConfig) -> Result<Self, FilesError> {
        config
            .validate()
            .map_err(|(key, message)| FilesError { key, message })?;
        let pattern = config.pattern().map_err(|message| FilesError {
            key: "path".to_owned(),
            message,
        })?;
        Ok(Self {
            config: Arc::new(config),
            pattern: Arc::new(pattern),
            listing: Arc::new(Mutex::new(())),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &FilesConfig {
        &self.config
    }
}

#[async_trait]
impl Collector for FilesCollector {
    fn name(&self) -> &str {
        "files"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        let (pattern, lock) = (self.pattern.clone(), self.listing.clone());
        let keep = self.config.previous_files + 1;
        let what = format!("listing {}", self.pattern.dir().display());
        let listed = on_blocking_pool(ctx, &what, move |stop| {
            let _listing = match lock.try_lock() {
                Ok(guard) => guard,
                Err(TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                Err(TryLockError::WouldBlock) => return None,
            };
            Some(scan::list(&pattern, keep, stop))
        })
        .await;
        let (found, result) = match listed {
            Ok(Some(Ok(listing))) => (Found::Listed(listing), Ok(())),
            Ok(Some(Err(ScanError::State(state, error)))) => {
                // A state to show, not a failure: the directory was looked at.
                tracing::debug!(
                    target_name = %self.config.name,
                    directory = %self.pattern.dir().display(),
                    state = state.as_str(),
                    %error,
                    "Directory not listed."
                );
                (Found::State(state), Ok(()))
            }
            Ok(Some(Err(ScanError::Stopped { entries }))) => (
                Found::Unknown,
                Err(CollectError::msg(format_args!(
                    "{what} stopped at the scrape's deadline after {entries} entries"
                ))),
            ),
            Ok(None) => (
                Found::Unknown,
                Err(CollectError::msg(format_args!(
                    "{} is still being listed by an earlier scrape (a hung mount?)",
                    self.pattern.dir().display()
                ))),
            ),
            Err(error) => (Found::Unknown, Err(error)),
        };
        metrics::write(&self.config, &found, SystemTime::now(), sink);
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::ConfigPath;
    use std::fs::File;
    use std::path::Path;
    use std::time::{Duration, UNIX_EPOCH};

    fn collector(path: &Path, extra: impl FnOnce(&mut FilesConfig)) -> FilesCollector {
        let mut config = FilesConfig::new("backups".into(), ConfigPath::from(path.to_owned()));
        extra(&mut config);
        FilesCollector::new(config).expect("collector")
    }

    async fn collect(collector: &FilesCollector) -> (MetricSink, Result<(), CollectError>) {
        let mut sink = MetricSink::default();
        let ctx = ScrapeContext::new(tokio::time::Instant::now() + Duration::from_secs(30));
        let result = collector.collect(&ctx, &mut sink).await;
        (sink, result)
    }

    fn value(sink: &MetricSink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        sink.find(name).and_then(|f| f.value(labels))
    }

    fn backup(dir: &Path, name: &str, size: usize, modified: SystemTime) {
        let path = dir.join(name);
        std::fs::write(&path, vec![0u8; size]).expect("write");
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| f.set_modified(modified))
            .expect("mtime");
    }

    #[tokio::test]
    async fn a_directory_removed_and_restored_is_seen_again() {
        let root = tempfile::tempdir().expect("tempdir");
        let dir = root.path().join("backups");
        std::fs::create_dir(&dir).expect("dir");
        let modified = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        backup(&dir, "sql_app_backup_1.db", 4096, modified);
        let c = collector(&dir.join("sql_app_backup_*.db"), |_| {});
        let (sink, result) = collect(&c).await;
        assert!(result.is_ok());
        assert_eq!(value(&sink, "files_matches", &[]), Some(1.0));

        std::fs::remove_dir_all(&dir).expect("remove");
        let (sink, result) = collect(&c).await;
        assert!(
            result.is_ok(),
            "a missing directory is a state, not a failure"
        );
        assert_eq!(value(&sink, "files_up", &[]), Some(0.0));
        assert_eq!(
            value(&sink, "files_directory_state", &[("state", "missing")]),
            Some(1.0)
        );
        assert!(sink.find("files_newest_size_bytes").is_none());

        std::fs::create_dir(&dir).expect("restore");
        backup(&dir, "sql_app_backup_2.db", 100, modified);
        let (sink, _) = collect(&c).await;
        assert_eq!(value(&sink, "files_up", &[]), Some(1.0));
        assert_eq!(value(&sink, "files_matches", &[]), Some(1.0));
        assert_eq!(value(&sink, "files_newest_size_bytes", &[]), Some(100.0));
    }

    #[tokio::test]
    async fn a_listing_still_running_is_not_started_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = collector(&dir.path().join("*.db"), |_| {});
        // A thread holds the listing, as an earlier scrape's hanging on a dead mount would.
        let held = c.listing.clone();
        let (locked_tx, locked_rx) = std::sync::mpsc::channel();
        let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
        let holder = std::thread::spawn(move || {
            let _held = held.lock().expect("lock");
            locked_tx.send(()).expect("signal");
            let _ = release_rx.recv();
        });
        locked_rx.recv().expect("listing held");
        let (sink, result) = collect(&c).await;
        release_tx.send(()).expect("release");
        holder.join().expect("holder thread");
        let error = result.expect_err("busy").to_string();
        assert!(error.contains("earlier scrape"), "{error}");
        assert_eq!(value(&sink, "files_up", &[]), Some(0.0));
        assert!(sink.find("files_directory_state").is_none());
        let (sink, result) = collect(&c).await;
        assert!(result.is_ok());
        assert_eq!(value(&sink, "files_matches", &[]), Some(0.0));
    }

    #[test]
    fn a_bad_configuration_names_the_key() {
        let config = FilesConfig::new(
            "b".into(),
            ConfigPath::from(std::path::PathBuf::from("/b/*/x.db")),
        );
        let e = FilesCollector::new(config)
            .expect_err("dir glob")
            .to_string();
        assert!(e.starts_with("path: wildcards"), "{e}");
    }
}
