#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod config;
mod metrics;
pub mod scan;

use std::sync::Arc;
use std::time::SystemTime;

use mcpwatch_core::{
    BlockingLane, CollectError, Collector, MetricSink, ScrapeContext, async_trait,
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
    /// One listing at a time: a listing hanging on a dead mount holds it, and later scrapes
    /// wait for it without holding threads of the blocking pool.
    lane: BlockingLane,
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
            lane: BlockingLane::default(),
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
        let pattern = self.pattern.clone();
        let keep = self.config.previous_files + 1;
        let what = format!("listing {}", self.pattern.dir().display());
        let listed = self
            .lane
            .run(ctx, &what, move |stop| scan::list(&pattern, keep, stop))
            .await;
        let (found, result) = match listed {
            Ok(Ok(listing)) => (Found::Listed(listing), Ok(())),
            Ok(Err(ScanError::State(state, error))) => {
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
            Ok(Err(ScanError::Stopped { entries })) => (
                Found::Unknown,
                Err(CollectError::msg(format_args!(
                    "{what} stopped at the scrape's deadline after {entries} entries"
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
