//! Listing a directory for the files a pattern matches, in bounded memory: every match is
//! counted and its size added, but only the newest few are kept.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::ffi::OsString;
use std::io::ErrorKind;
use std::time::{Instant, SystemTime};

use mcpwatch_core::follow::FilePattern;

/// Entries read between two looks at the clock.
const CLOCK_EVERY: usize = 256;

/// What the directory is, as `files_directory_state` shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirectoryState {
    /// Listed.
    Ok,
    /// It, or a directory above it, does not exist.
    Missing,
    /// It exists but cannot be listed, or its files cannot be looked at (permissions, I/O).
    Unreadable,
    /// The path (or a component of it) is no directory.
    NotADirectory,
}

impl DirectoryState {
    /// Every state, in the order they are served.
    pub const ALL: [DirectoryState; 4] = [
        DirectoryState::Ok,
        DirectoryState::Missing,
        DirectoryState::Unreadable,
        DirectoryState::NotADirectory,
    ];

    /// The `state` label.
    pub fn as_str(self) -> &'static str {
        match self {
            DirectoryState::Ok => "ok",
            DirectoryState::Missing => "missing",
            DirectoryState::Unreadable => "unreadable",
            DirectoryState::NotADirectory => "not_a_directory",
        }
    }

    fn of(error: &std::io::Error) -> Self {
        match error.kind() {
            ErrorKind::NotFound => DirectoryState::Missing,
            ErrorKind::NotADirectory => DirectoryState::NotADirectory,
            _ => DirectoryState::Unreadable,
        }
    }
}

/// A matching file among the newest.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct FileEntry {
    /// Its modification time; ties are broken by name, so that `backup_2` is newer than
    /// `backup_1` written in the same second.
    pub modified: SystemTime,
    /// Its name in the directory.
    pub name: OsString,
    /// Its size in bytes.
    pub size: u64,
}

/// What a listing found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    /// Matching regular files.
    pub matches: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// The newest of them, newest first, at most as many as asked for.
    pub newest: Vec<FileEntry>,
}

/// Why a listing gave no result.
#[derive(Debug)]
pub enum ScanError {
    /// The directory is not listable; the error says why.
    State(DirectoryState, std::io::Error),
    /// The stop time came before the listing ended (a huge or hung directory).
    Stopped {
        /// Entries read by then.
        entries: usize,
    },
}

/// Lists the files of `pattern`, keeping the `keep` newest. Symbolic links are followed (a
/// link to a regular file counts as that file, as `ls -L` shows it; a dangling link is no
/// file); directories and other non-regular files that match are left out; a file removed
/// between the listing and its `stat` was never there. Gives up at `stop`.
pub fn list(pattern: &FilePattern, keep: usize, stop: Instant) -> Result<Listing, ScanError> {
    let entries = std::fs::read_dir(pattern.dir())
        .map_err(|e| ScanError::State(DirectoryState::of(&e), e))?;
    let mut matches = 0u64;
    let mut bytes = 0u64;
    // The `keep` newest, the oldest of them on top to be pushed out.
    let mut newest: BinaryHeap<Reverse<FileEntry>> = BinaryHeap::with_capacity(keep + 1);
    for (read, entry) in entries.enumerate() {
        if read % CLOCK_EVERY == CLOCK_EVERY - 1 && Instant::now() >= stop {
            return Err(ScanError::Stopped { entries: read + 1 });
        }
        // The directory went away or broke while being read: what was read is incomplete.
        let entry = entry.map_err(|e| ScanError::State(DirectoryState::Unreadable, e))?;
        let name = entry.file_name();
        if !name.to_str().is_some_and(|n| pattern.matches(n)) {
            continue;
        }
        let meta = match std::fs::metadata(entry.path()) {
            Ok(meta) => meta,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            // The directory can be listed but not searched (r without x).
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                return Err(ScanError::State(DirectoryState::Unreadable, e));
            }
            Err(error) => {
                tracing::debug!(file = %entry.path().display(), %error, "Matching file not looked at.");
                continue;
            }
        };
        if !meta.is_file() {
            continue;
        }
        matches += 1;
        bytes = bytes.saturating_add(meta.len());
        if keep == 0 {
            continue;
        }
        let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
        let file = FileEntry {
            modified,
            name,
            size: meta.len(),
        };
        if newest.len() < keep {
            newest.push(Reverse(file));
        } else if newest.peek().is_some_and(|Reverse(oldest)| file > *oldest) {
            newest.pop();
            newest.push(Reverse(file));
        }
    }
    let mut newest: Vec<FileEntry> = newest.into_iter().map(|Reverse(f)| f).collect();
    newest.sort_by(|a, b| b.cmp(a));
    Ok(Listing {
        matches,
        bytes,
        newest,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs::File;
    use std::os::unix::fs::PermissionsExt;
    use std::path::Path;
    use std::time::Duration;

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn write(dir: &Path, name: &str, size: usize, modified_unix: u64) {
        let path = dir.join(name);
        std::fs::write(&path, vec![b'x'; size]).expect("write");
        File::options()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(modified_unix))
            })
            .expect("set mtime");
    }

    fn pattern(dir: &Path, name: &str) -> FilePattern {
        FilePattern::new(&dir.join(name)).expect("pattern")
    }

    #[test]
    fn counts_every_match_and_keeps_the_newest() {
        let dir = tempfile::tempdir().expect("tempdir");
        for day in 1..=20u64 {
            write(
                dir.path(),
                &format!("sql_app_backup_{day:02}.db"),
                100 * day as usize,
                1_000_000 + day * 86_400,
            );
        }
        write(dir.path(), "other.db", 5, 9_000_000_000);
        std::fs::create_dir(dir.path().join("sql_app_backup_99.db"))
            .expect("a directory that matches");
        let listing = list(&pattern(dir.path(), "sql_app_backup_*.db"), 3, later()).expect("list");
        assert_eq!(listing.matches, 20);
        assert_eq!(listing.bytes, (1..=20).map(|d| 100 * d).sum::<u64>());
        let names: Vec<_> = listing
            .newest
            .iter()
            .map(|f| f.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "sql_app_backup_20.db",
                "sql_app_backup_19.db",
                "sql_app_backup_18.db"
            ]
        );
        assert_eq!(listing.newest[0].size, 2000);
        assert_eq!(
            listing.newest[0].modified,
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000 + 20 * 86_400)
        );
    }

    #[test]
    fn the_newest_is_by_modification_time_not_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        write(dir.path(), "b_1.db", 10, 2_000);
        write(dir.path(), "b_2.db", 20, 1_000);
        write(dir.path(), "b_3.db", 30, 2_000);
        let listing = list(&pattern(dir.path(), "b_*.db"), 8, later()).expect("list");
        let names: Vec<_> = listing
            .newest
            .iter()
            .map(|f| f.name.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            ["b_3.db", "b_1.db", "b_2.db"],
            "equal times: by name"
        );
    }

    #[test]
    fn links_are_followed_and_dangling_ones_are_no_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let elsewhere = tempfile::tempdir().expect("tempdir");
        write(elsewhere.path(), "real.db", 70, 5_000);
        std::os::unix::fs::symlink(
            elsewhere.path().join("real.db"),
            dir.path().join("b_link.db"),
        )
        .expect("link");
        std::os::unix::fs::symlink(dir.path().join("gone.db"), dir.path().join("b_dangling.db"))
            .expect("link");
        let listing = list(&pattern(dir.path(), "b_*.db"), 2, later()).expect("list");
        assert_eq!((listing.matches, listing.bytes), (1, 70));
        assert_eq!(listing.newest[0].name, "b_link.db");
    }

    #[test]
    fn directory_states() {
        let dir = tempfile::tempdir().expect("tempdir");
        let state = |p: &Path| match list(&pattern(p, "*.db"), 1, later()) {
            Ok(_) => DirectoryState::Ok,
            Err(ScanError::State(state, _)) => state,
            Err(other) => panic!("{other:?}"),
        };
        assert_eq!(state(dir.path()), DirectoryState::Ok);
        assert_eq!(state(&dir.path().join("missing")), DirectoryState::Missing);
        assert_eq!(
            state(&dir.path().join("missing/deeper")),
            DirectoryState::Missing
        );
        write(dir.path(), "file", 1, 1);
        assert_eq!(
            state(&dir.path().join("file")),
            DirectoryState::NotADirectory
        );
        assert_eq!(
            state(&dir.path().join("file/below")),
            DirectoryState::NotADirectory
        );
        // Without permissions it is unreadable, unless this process may read it anyway
        // (root): then it is listed, as it would be for an exporter running as root.
        let locked = dir.path().join("locked");
        std::fs::create_dir(&locked).expect("dir");
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o000)).expect("chmod");
        let expected = if std::fs::read_dir(&locked).is_ok() {
            DirectoryState::Ok
        } else {
            DirectoryState::Unreadable
        };
        assert_eq!(state(&locked), expected);
        std::fs::set_permissions(&locked, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }

    #[test]
    fn a_huge_directory_is_given_up_at_the_stop() {
        let dir = tempfile::tempdir().expect("tempdir");
        for i in 0..CLOCK_EVERY * 2 {
            std::fs::write(dir.path().join(format!("f{i}")), "").expect("write");
        }
        match list(&pattern(dir.path(), "*"), 1, Instant::now()) {
            Err(ScanError::Stopped { entries }) => assert_eq!(entries, CLOCK_EVERY),
            other => panic!("{other:?}"),
        }
    }
}
