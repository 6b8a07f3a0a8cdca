//! Settings of one watched pattern of files (`collectors.files[]`).

use std::time::Duration;

use mcpwatch_core::config::{ConfigPath, Problem, check_target_name, duration};
use serde::{Deserialize, Deserializer};

use mcpwatch_core::follow::FilePattern;

/// Previous files compared with the newest at most; more would only cost memory.
pub const MAX_PREVIOUS_FILES: usize = 1000;

/// One pattern of files to watch, such as a directory of backups.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FilesConfig {
    /// The `target` label.
    pub name: String,
    /// A file, or a pattern of file names (`*`, `?`) in one directory; relative to the
    /// configuration file.
    pub path: ConfigPath,
    /// How old the newest file may be: the recovery point objective of a backup. Served as
    /// `files_max_age_seconds` for the alert to compare with.
    #[serde(default, deserialize_with = "optional_duration")]
    pub max_age: Option<Duration>,
    /// The newest file is suspicious when smaller than this share of the median size of
    /// the previous files. Served as `files_min_size_ratio`; 0 turns the check off.
    #[serde(default = "defaults::min_size_ratio")]
    pub min_size_ratio: f64,
    /// How many files before the newest (by modification time) the median size is taken of.
    #[serde(default = "defaults::previous_files")]
    pub previous_files: usize,
}

mod defaults {
    pub fn min_size_ratio() -> f64 {
        0.5
    }
    pub fn previous_files() -> usize {
        7
    }
}

fn optional_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    duration::deserialize(d).map(Some)
}

impl FilesConfig {
    /// A target watching `path` with the default settings.
    pub fn new(name: String, path: ConfigPath) -> Self {
        Self {
            name,
            path,
            max_age: None,
            min_size_ratio: defaults::min_size_ratio(),
            previous_files: defaults::previous_files(),
        }
    }

    /// The directory and the pattern of names.
    pub fn pattern(&self) -> Result<FilePattern, String> {
        FilePattern::new(self.path.path())
    }

    /// Checks what the types cannot; the key is relative to this target's entry.
    pub fn validate(&self) -> Result<(), Problem> {
        let problem = |key: &str, message: String| Err((key.to_owned(), message));
        check_target_name(&self.name).map_err(|m| ("name".to_owned(), m))?;
        self.pattern().map_err(|m| ("path".to_owned(), m))?;
        if self.max_age.is_some_and(|d| d.is_zero()) {
            return problem(
                "max_age",
                "must be greater than zero (leave it out to have no limit)".to_owned(),
            );
        }
        if !(0.0..=1.0).contains(&self.min_size_ratio) {
            return problem(
                "min_size_ratio",
                format!(
                    "{} is not between 0 and 1 (0.5: the newest file may be half the usual \
                     size; 0 turns the check off)",
                    self.min_size_ratio
                ),
            );
        }
        if !(1..=MAX_PREVIOUS_FILES).contains(&self.previous_files) {
            return problem(
                "previous_files",
                format!(
                    "{} is not between 1 and {MAX_PREVIOUS_FILES}",
                    self.previous_files
                ),
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mcpwatch_core::config::parse_yaml;
    use std::path::Path;

    fn parse(text: &str) -> FilesConfig {
        parse_yaml(text, Path::new("/etc/mcpwatch/exporter.yml")).expect("config")
    }

    #[test]
    fn reads_the_documented_example_relative_to_the_file() {
        let c = parse(
            "name: sqlite_backups\npath: backups/sql_app_backup_*.db\nmax_age: 1h\n\
             min_size_ratio: 0.5\n",
        );
        assert_eq!(c.validate(), Ok(()));
        assert_eq!(
            c.path.path(),
            Path::new("/etc/mcpwatch/backups/sql_app_backup_*.db")
        );
        assert_eq!(c.max_age, Some(Duration::from_secs(3600)));
        assert_eq!(c.previous_files, 7);
        let c = parse("name: pg\npath: /var/backups/pg/*.sql.gz\n");
        assert_eq!(c.max_age, None);
        assert_eq!(c.min_size_ratio, 0.5);
    }

    #[test]
    fn bad_values_name_their_key() {
        for (text, key) in [
            ("name: a\npath: /b/*/x.db\n", "path"),
            ("name: a\npath: /b/x\nmax_age: 0s\n", "max_age"),
            (
                "name: a\npath: /b/x\nmin_size_ratio: 1.5\n",
                "min_size_ratio",
            ),
            (
                "name: a\npath: /b/x\nmin_size_ratio: -0.1\n",
                "min_size_ratio",
            ),
            ("name: a\npath: /b/x\nprevious_files: 0\n", "previous_files"),
            ("name: ''\npath: /b/x\n", "name"),
        ] {
            assert_eq!(parse(text).validate().expect_err(text).0, key, "{text}");
        }
        let e =
            parse_yaml::<FilesConfig>("name: a\npath: /b/x\nmax_age: soon\n", Path::new("c.yml"))
                .expect_err("duration")
                .to_string();
        assert!(e.starts_with("c.yml:3:"), "{e}");
        assert!(e.contains("max_age: invalid duration"), "{e}");
        let e = parse_yaml::<FilesConfig>("name: a\npath: /b/x\nrpo: 1h\n", Path::new("c.yml"))
            .expect_err("unknown key")
            .to_string();
        assert!(e.contains("unknown field `rpo`"), "{e}");
    }
}
