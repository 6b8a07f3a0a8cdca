//! The `files_*` series of one target, from a listing.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use mcpwatch_core::MetricSink;

use crate::config::FilesConfig;
use crate::scan::{DirectoryState, Listing};

/// What a collection found: a listing, a directory state, or nothing in time.
#[derive(Debug)]
pub(crate) enum Found {
    Listed(Listing),
    State(DirectoryState),
    /// The listing did not end in time: whether the directory is there is not known.
    Unknown,
}

fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(d) => d.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// The median of `sizes` (the mean of the two middle ones for an even count).
fn median(sizes: &mut [u64]) -> Option<f64> {
    if sizes.is_empty() {
        return None;
    }
    sizes.sort_unstable();
    let mid = sizes.len() / 2;
    Some(if sizes.len() % 2 == 1 {
        sizes[mid] as f64
    } else {
        (sizes[mid - 1] as f64 + sizes[mid] as f64) / 2.0
    })
}

/// Writes the series of `found`, at `now`.
pub(crate) fn write(config: &FilesConfig, found: &Found, now: SystemTime, sink: &mut MetricSink) {
    let state = match found {
        Found::Listed(_) => Some(DirectoryState::Ok),
        Found::State(state) => Some(*state),
        Found::Unknown => None,
    };
    sink.gauge(
        "files_up",
        "Whether the directory could be listed, whatever it holds.",
    )
    .add(&[], f64::from(u8::from(state == Some(DirectoryState::Ok))));
    if let Some(state) = state {
        let family = sink.gauge(
            "files_directory_state",
            "State of the directory: 1 for the state it is in (ok, missing, unreadable, \
             not_a_directory), 0 for the others.",
        );
        for each in DirectoryState::ALL {
            family.add(
                &[("state", each.as_str())],
                f64::from(u8::from(each == state)),
            );
        }
    }
    if let Some(max_age) = config.max_age {
        sink.gauge(
            "files_max_age_seconds",
            "The configured max_age: how old the newest file may be (a recovery point \
             objective).",
        )
        .add(&[], max_age.as_secs_f64());
    }
    sink.gauge(
        "files_min_size_ratio",
        "The configured min_size_ratio: the newest file is suspicious below this share of \
         the previous files' median size; 0 when off.",
    )
    .add(&[], config.min_size_ratio);
    let Found::Listed(listing) = found else {
        return;
    };
    sink.gauge("files_matches", "Regular files that match the pattern.")
        .add(&[], listing.matches as f64);
    sink.gauge(
        "files_matched_bytes",
        "Total size of the matching files in bytes.",
    )
    .add(&[], listing.bytes as f64);
    let Some(newest) = listing.newest.first() else {
        return;
    };
    sink.gauge(
        "files_newest_modified_timestamp_seconds",
        "When the newest matching file was last modified, in seconds since the epoch.",
    )
    .add(&[], seconds(newest.modified));
    // A file dated in the future (a clock set wrong) is as new as can be, not younger.
    let age = now
        .duration_since(newest.modified)
        .unwrap_or(Duration::ZERO);
    sink.gauge(
        "files_newest_age_seconds",
        "Seconds since the newest matching file was last modified, at the scrape.",
    )
    .add(&[], age.as_secs_f64());
    sink.gauge(
        "files_newest_size_bytes",
        "Size of the newest matching file in bytes.",
    )
    .add(&[], newest.size as f64);
    let mut previous: Vec<u64> = listing.newest[1..]
        .iter()
        .take(config.previous_files)
        .map(|f| f.size)
        .collect();
    if let Some(median) = median(&mut previous) {
        sink.gauge(
            "files_previous_median_size_bytes",
            "Median size in bytes of the files before the newest (up to previous_files of \
             them, by modification time).",
        )
        .add(&[], median);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scan::FileEntry;
    use mcpwatch_core::config::ConfigPath;
    use std::path::PathBuf;

    fn config() -> FilesConfig {
        let mut config = FilesConfig::new("b".into(), ConfigPath::from(PathBuf::from("/b/*.db")));
        config.max_age = Some(Duration::from_secs(3600));
        config.previous_files = 3;
        config
    }

    fn at(seconds: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(seconds)
    }

    fn entry(name: &str, modified: u64, size: u64) -> FileEntry {
        FileEntry {
            modified: at(modified),
            name: name.into(),
            size,
        }
    }

    fn value(sink: &MetricSink, name: &str) -> Option<f64> {
        sink.find(name).and_then(|f| f.value(&[]))
    }

    #[test]
    fn medians() {
        assert_eq!(median(&mut []), None);
        assert_eq!(median(&mut [7]), Some(7.0));
        assert_eq!(median(&mut [9, 1, 5]), Some(5.0));
        assert_eq!(median(&mut [10, 1, 4, 100]), Some(7.0));
    }

    #[test]
    fn a_listing_with_previous_files() {
        let listing = Listing {
            matches: 5,
            bytes: 1_000,
            newest: vec![
                entry("e", 10_000, 100),
                entry("d", 9_000, 400),
                entry("c", 8_000, 300),
                entry("b", 7_000, 200),
            ],
        };
        let mut sink = MetricSink::default();
        write(&config(), &Found::Listed(listing), at(10_600), &mut sink);
        assert_eq!(value(&sink, "files_up"), Some(1.0));
        let state = sink.find("files_directory_state").expect("state");
        assert_eq!(state.value(&[("state", "ok")]), Some(1.0));
        assert_eq!(state.value(&[("state", "missing")]), Some(0.0));
        assert_eq!(state.samples().len(), 4);
        assert_eq!(value(&sink, "files_matches"), Some(5.0));
        assert_eq!(value(&sink, "files_matched_bytes"), Some(1_000.0));
        assert_eq!(
            value(&sink, "files_newest_modified_timestamp_seconds"),
            Some(10_000.0)
        );
        assert_eq!(value(&sink, "files_newest_age_seconds"), Some(600.0));
        assert_eq!(value(&sink, "files_newest_size_bytes"), Some(100.0));
        assert_eq!(
            value(&sink, "files_previous_median_size_bytes"),
            Some(300.0)
        );
        assert_eq!(value(&sink, "files_max_age_seconds"), Some(3600.0));
        assert_eq!(value(&sink, "files_min_size_ratio"), Some(0.5));
    }

    #[test]
    fn one_file_has_no_previous_and_a_future_file_has_no_negative_age() {
        let listing = Listing {
            matches: 1,
            bytes: 10,
            newest: vec![entry("a", 20_000, 10)],
        };
        let mut sink = MetricSink::default();
        let mut config = config();
        config.max_age = None;
        write(&config, &Found::Listed(listing), at(10_000), &mut sink);
        assert_eq!(value(&sink, "files_newest_age_seconds"), Some(0.0));
        assert_eq!(value(&sink, "files_previous_median_size_bytes"), None);
        assert!(sink.find("files_max_age_seconds").is_none());
    }

    #[test]
    fn an_empty_directory_and_a_missing_one() {
        let empty = Listing {
            matches: 0,
            bytes: 0,
            newest: Vec::new(),
        };
        let mut sink = MetricSink::default();
        write(&config(), &Found::Listed(empty), at(1), &mut sink);
        assert_eq!(value(&sink, "files_up"), Some(1.0));
        assert_eq!(value(&sink, "files_matches"), Some(0.0));
        assert!(sink.find("files_newest_age_seconds").is_none());

        let mut sink = MetricSink::default();
        write(
            &config(),
            &Found::State(DirectoryState::Missing),
            at(1),
            &mut sink,
        );
        assert_eq!(value(&sink, "files_up"), Some(0.0));
        let state = sink.find("files_directory_state").expect("state");
        assert_eq!(state.value(&[("state", "missing")]), Some(1.0));
        assert_eq!(state.value(&[("state", "ok")]), Some(0.0));
        assert!(sink.find("files_matches").is_none());
        assert_eq!(value(&sink, "files_max_age_seconds"), Some(3600.0));

        let mut sink = MetricSink::default();
        write(&config(), &Found::Unknown, at(1), &mut sink);
        assert_eq!(value(&sink, "files_up"), Some(0.0));
        assert!(sink.find("files_directory_state").is_none());
    }
}
