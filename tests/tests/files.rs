//! The exporter binary watching directories of backups (`collectors.files`): files written
//! with set modification times and sizes give exact counts, sizes, times and ages; a
//! directory that is missing, unreadable or a file is a state in a scrape that still
//! answers 200 with every other collector's data; a directory removed and restored is seen
//! again; the output passes promtool and the strict OpenMetrics parser, with no series twice.

use std::fs::{File, Permissions};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpwatch_tests::binaries::{start_exporter_unprivileged, workspace_binary};
use mcpwatch_tests::exposition::value_of;
use mcpwatch_tests::http::scrape_text;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};
use nix::unistd::Uid;

const DAY: u64 = 86_400;

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
}

/// Writes `size` bytes to `dir/name`, last modified at `modified` (seconds since the epoch).
fn backup(dir: &Path, name: &str, size: usize, modified: u64) {
    let path = dir.join(name);
    std::fs::write(&path, vec![b'b'; size]).expect("write backup");
    File::options()
        .write(true)
        .open(&path)
        .and_then(|f| f.set_modified(UNIX_EPOCH + Duration::from_secs(modified)))
        .expect("set the modification time");
}

fn chmod(path: &Path, mode: u32) {
    std::fs::set_permissions(path, Permissions::from_mode(mode)).expect("chmod");
}

/// One scrape in the classic format, with its status, checked for duplicate series.
async fn scrape(address: SocketAddr, accept: &str) -> String {
    scrape_text(address, Some(accept)).await
}

fn series(name: &str, target: &str) -> String {
    format!("{name}{{target=\"{target}\"}}")
}

fn state(target: &str, state: &str) -> String {
    format!("files_directory_state{{target=\"{target}\",state=\"{state}\"}}")
}

/// The one state of `target` that is 1, checking that the others are 0.
fn state_of(text: &str, target: &str) -> String {
    let states = ["ok", "missing", "unreadable", "not_a_directory"];
    let on: Vec<&str> = states
        .iter()
        .copied()
        .filter(|s| value_of(text, &state(target, s)) == Some(1.0))
        .collect();
    let off = states
        .iter()
        .filter(|s| value_of(text, &state(target, s)) == Some(0.0))
        .count();
    assert_eq!((on.len(), off), (1, 3), "{target}: states {on:?}\n{text}");
    on[0].to_owned()
}

fn success(text: &str, target: &str) -> Option<f64> {
    value_of(
        text,
        &format!("mcpwatch_scrape_collector_success{{collector=\"files\",target=\"{target}\"}}"),
    )
}

#[tokio::test]
async fn backups_are_counted_exactly_and_a_missing_directory_is_a_state() {
    // Whatever the umask, the exporter's user (nobody, as root) may read what it watches.
    let root = tempfile::tempdir().expect("tempdir");
    let dir = root.path();
    chmod(dir, 0o755);
    let backups = dir.join("backups");
    let locked = dir.join("locked");
    for each in [&backups, &dir.join("pg"), &locked] {
        std::fs::create_dir(each).expect("directory");
        chmod(each, 0o755);
    }
    std::fs::write(dir.join("afile"), "not a directory").expect("file");
    backup(&locked, "sql_app_backup_1.db", 10, 1_000);

    // Nine daily backups, the newest three hours old and a fifth of the usual size; a file
    // and a directory that do not count, and a link to nowhere.
    let now = unix_now();
    let newest = now - 3 * 3600;
    let sizes: [usize; 9] = [1000, 1100, 900, 1200, 1050, 950, 1150, 5000, 210];
    let mut total = 0u64;
    for (i, size) in sizes.iter().enumerate() {
        let age = (8 - i as u64) * DAY;
        backup(
            &backups,
            &format!("sql_app_backup_2026120{}.db", i + 1),
            *size,
            newest - age,
        );
        total += *size as u64;
    }
    backup(&backups, "sql_app.db", 123_456, now);
    std::fs::create_dir(backups.join("sql_app_backup_old.db")).expect("matching directory");
    std::os::unix::fs::symlink(
        backups.join("gone.db"),
        backups.join("sql_app_backup_gone.db"),
    )
    .expect("dangling link");

    std::fs::write(
        dir.join("exporter.yml"),
        format!(
            "collectors:\n  files:\n\
             \x20   - {{ name: sqlite_backups, path: '{}/sql_app_backup_*.db', max_age: 1h, min_size_ratio: 0.5 }}\n\
             \x20   - {{ name: pg_dumps, path: 'pg/backup-*.sql.gz' }}\n\
             \x20   - {{ name: misplaced, path: 'afile/*.db', max_age: 1d }}\n\
             \x20   - {{ name: locked, path: 'locked/*.db' }}\n",
            backups.display()
        ),
    )
    .expect("config");
    chmod(&dir.join("exporter.yml"), 0o644);
    // As root the exporter runs as `nobody`, for whom a directory with mode 000 is
    // unreadable.
    let (exporter, address) = start_exporter_unprivileged(dir, &["--log.level=debug"]).await;
    let privileged = Uid::effective().is_root();

    let before = unix_now();
    let text = scrape(address, "text/plain").await;
    let after = unix_now();
    let value = |name: &str, target: &str| value_of(&text, &series(name, target));

    // The backups: counts, sizes and times exact; the median of the seven before the newest
    // (1100, 900, 1200, 1050, 950, 1150, 5000); the eighth back is beyond previous_files.
    let t = "sqlite_backups";
    assert_eq!(value("files_up", t), Some(1.0), "{text}");
    assert_eq!(state_of(&text, t), "ok");
    assert_eq!(value("files_matches", t), Some(9.0));
    assert_eq!(value("files_matched_bytes", t), Some(total as f64));
    assert_eq!(
        value("files_newest_modified_timestamp_seconds", t),
        Some(newest as f64)
    );
    assert_eq!(value("files_newest_size_bytes", t), Some(210.0));
    assert_eq!(value("files_previous_median_size_bytes", t), Some(1100.0));
    let age = value("files_newest_age_seconds", t).expect("age");
    assert!(
        (before - newest) as f64 <= age && age <= (after + 1 - newest) as f64,
        "age {age} outside [{}, {}]",
        before - newest,
        after + 1 - newest
    );
    assert_eq!(value("files_max_age_seconds", t), Some(3600.0));
    assert_eq!(value("files_min_size_ratio", t), Some(0.5));

    // An empty directory (the path is relative to the configuration file): no newest.
    let t = "pg_dumps";
    assert_eq!(value("files_up", t), Some(1.0));
    assert_eq!(state_of(&text, t), "ok");
    assert_eq!(value("files_matches", t), Some(0.0));
    assert_eq!(value("files_matched_bytes", t), Some(0.0));
    for absent in [
        "files_newest_modified_timestamp_seconds",
        "files_newest_age_seconds",
        "files_newest_size_bytes",
        "files_previous_median_size_bytes",
        "files_max_age_seconds",
    ] {
        assert_eq!(value(absent, t), None, "{absent}");
    }
    assert_eq!(value("files_min_size_ratio", t), Some(0.5));

    // A file where a directory should be.
    let t = "misplaced";
    assert_eq!(value("files_up", t), Some(0.0));
    assert_eq!(state_of(&text, t), "not_a_directory");
    assert_eq!(value("files_matches", t), None);
    assert_eq!(value("files_max_age_seconds", t), Some(86_400.0));

    // A directory the exporter may not read: running as root, the exporter is `nobody`.
    chmod(&locked, 0o000);
    let text = scrape(address, "text/plain").await;
    let t = "locked";
    assert_eq!(state_of(&text, t), "unreadable", "privileged: {privileged}");
    assert_eq!(value_of(&text, &series("files_up", t)), Some(0.0));
    assert_eq!(value_of(&text, &series("files_matches", t)), None);
    chmod(&locked, 0o755);

    // Each state is served, not failed, and the output is clean for both parsers.
    for t in ["sqlite_backups", "pg_dumps", "misplaced", "locked"] {
        assert_eq!(success(&text, t), Some(1.0), "{t}");
    }
    assert_eq!(
        promtool_check_metrics(text.as_bytes()),
        "",
        "promtool findings"
    );
    let om = scrape(address, "application/openmetrics-text; version=1.0.0").await;
    parse_openmetrics(om.as_bytes()).expect("strict OpenMetrics parse");

    // The directory removed: a state, the scrape and the other collectors intact.
    std::fs::remove_dir_all(&backups).expect("remove the backups");
    let text = scrape(address, "text/plain").await;
    let t = "sqlite_backups";
    assert_eq!(state_of(&text, t), "missing");
    assert_eq!(value_of(&text, &series("files_up", t)), Some(0.0));
    for absent in ["files_matches", "files_newest_size_bytes"] {
        assert_eq!(value_of(&text, &series(absent, t)), None, "{absent}");
    }
    assert_eq!(
        value_of(&text, &series("files_max_age_seconds", t)),
        Some(3600.0)
    );
    assert_eq!(success(&text, t), Some(1.0));
    assert_eq!(state_of(&text, "pg_dumps"), "ok");
    assert!(
        value_of(&text, "host_cpus").is_some_and(|n| n >= 1.0),
        "the host collector is served"
    );
    assert_eq!(
        promtool_check_metrics(text.as_bytes()),
        "",
        "promtool findings"
    );

    // Restored with one fresh backup: seen at once, nothing left of before.
    std::fs::create_dir(&backups).expect("restore");
    chmod(&backups, 0o755);
    let restored = unix_now() - 60;
    backup(&backups, "sql_app_backup_20261210.db", 4321, restored);
    let text = scrape(address, "text/plain").await;
    let value = |name: &str| value_of(&text, &series(name, t));
    assert_eq!(state_of(&text, t), "ok");
    assert_eq!(value("files_up"), Some(1.0));
    assert_eq!(value("files_matches"), Some(1.0));
    assert_eq!(value("files_matched_bytes"), Some(4321.0));
    assert_eq!(value("files_newest_size_bytes"), Some(4321.0));
    assert_eq!(
        value("files_newest_modified_timestamp_seconds"),
        Some(restored as f64)
    );
    assert_eq!(value("files_previous_median_size_bytes"), None);
    assert!(
        !exporter.output().contains("panicked"),
        "{}",
        exporter.output()
    );
}

/// `--check-config` names the entry, key and line of a bad files target.
#[test]
fn check_config_names_a_bad_files_target() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config: PathBuf = dir.path().join("exporter.yml");
    std::fs::write(
        &config,
        "collectors:\n  files:\n    - name: backups\n      path: /backups/*/db.sql.gz\n",
    )
    .expect("config");
    let output = Command::new(workspace_binary("mcpwatch-exporter"))
        .arg(format!("--config.file={}", config.display()))
        .arg("--check-config")
        .output()
        .expect("run --check-config");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "{}:4:7: collectors.files[0].path: wildcards are allowed in the file name only",
            config.display()
        )),
        "{stderr}"
    );
}
