//! A file, or a pattern of file names (`*` and `?` as in a shell) in one directory.

use std::path::{Path, PathBuf};

use mcpwatch_core::config::Pattern;

/// A directory and a pattern its file names must match.
#[derive(Debug, Clone, PartialEq)]
pub struct FilePattern {
    dir: PathBuf,
    name: Pattern,
}

impl FilePattern {
    /// Checks `path`: wildcards only in the file name.
    pub fn new(path: &Path) -> Result<Self, String> {
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .ok_or_else(|| "give a file name or a pattern of file names".to_owned())?;
        let dir = path.parent().unwrap_or(Path::new("."));
        if dir.to_string_lossy().contains(['*', '?']) {
            return Err(
                "wildcards are allowed in the file name only: the directory is watched as \
                 a whole (missing, unreadable)"
                    .to_owned(),
            );
        }
        Ok(Self {
            dir: if dir.as_os_str().is_empty() {
                PathBuf::from(".")
            } else {
                dir.to_owned()
            },
            name: Pattern::new(&glob_regex(name)).map_err(|e| e.to_string())?,
        })
    }

    /// The directory listed.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether a file name matches.
    pub fn matches(&self, name: &str) -> bool {
        self.name.is_match(name)
    }
}

/// The anchored regular expression of a shell pattern of file names: `*` is any run of
/// characters, `?` any one, everything else stands for itself.
pub fn glob_regex(name: &str) -> String {
    let mut regex = String::from("^");
    for c in name.chars() {
        match c {
            '*' => regex.push_str("[^/]*"),
            '?' => regex.push_str("[^/]"),
            c => regex.push_str(&regex_lite::escape(c.encode_utf8(&mut [0; 4]))),
        }
    }
    regex.push('$');
    regex
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_as_in_a_shell() {
        let p = FilePattern::new(Path::new("/backups/sql_app_backup_*.db")).expect("glob");
        assert_eq!(p.dir(), Path::new("/backups"));
        assert!(p.matches("sql_app_backup_20261206.db"));
        assert!(p.matches("sql_app_backup_.db"));
        assert!(!p.matches("sql_app_backup_20261206.db.tmp"));
        assert!(!p.matches("xsql_app_backup_1.db"));
        assert!(!p.matches("sql_app_backup_1xdb"), "the dot is no wildcard");
        let p = FilePattern::new(Path::new("/var/backups/pg/backup-????????.sql.gz")).expect("?");
        assert!(p.matches("backup-20240117.sql.gz"));
        assert!(!p.matches("backup-2024011.sql.gz"));
        let p = FilePattern::new(Path::new("dump.rdb")).expect("plain name");
        assert_eq!(p.dir(), Path::new("."));
        assert!(p.matches("dump.rdb"));
        assert!(!p.matches("dump.rdb.1"));
        let p = FilePattern::new(Path::new("/b/a+b[1](x)^$.db")).expect("regex characters");
        assert!(p.matches("a+b[1](x)^$.db"));
        assert!(!p.matches("aab1x.db"));
    }

    #[test]
    fn wildcards_in_directories_are_refused() {
        let e = FilePattern::new(Path::new("/backups/*/db.sql.gz")).expect_err("dir glob");
        assert!(e.contains("file name only"), "{e}");
        assert!(FilePattern::new(Path::new("/")).is_err());
    }
}
