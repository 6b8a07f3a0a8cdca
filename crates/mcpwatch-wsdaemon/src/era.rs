//! MCP protocol revisions and their eras: the legacy era opens a session with `initialize`
//! (revisions up to 2025-11-25), the modern era is stateless and carries the revision in
//! every request (2026-07-28 on). What a target is pinned to, and what the probe remembers
//! of a target it found by itself.

use std::sync::{Mutex, PoisonError};

/// Revisions of the legacy era the probe speaks, oldest first.
pub(crate) const LEGACY: [&str; 4] = ["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// Revisions of the modern era the probe speaks, oldest first.
pub(crate) const MODERN: [&str; 1] = ["2026-07-28"];
/// The first revision of the modern era; any later one is modern too.
const FIRST_MODERN: &str = "2026-07-28";

/// The newest legacy revision: what `initialize` asks for unless pinned.
pub(crate) fn latest_legacy() -> &'static str {
    LEGACY[LEGACY.len() - 1]
}

/// The newest modern revision: what `server/discover` is sent at unless pinned.
pub(crate) fn latest_modern() -> &'static str {
    MODERN[MODERN.len() - 1]
}

/// A protocol era; the `era` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Era {
    /// `initialize`, a session, `ping`.
    Legacy,
    /// Stateless: `server/discover`, per-request `_meta` and headers.
    Modern,
}

impl Era {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Era::Legacy => "legacy",
            Era::Modern => "modern",
        }
    }

    /// The era of a revision string: dates from 2026-07-28 on are modern, earlier dates
    /// legacy; `None` for a string that is no `YYYY-MM-DD` date.
    pub(crate) fn of(revision: &str) -> Option<Era> {
        let bytes = revision.as_bytes();
        let is_date = bytes.len() == 10
            && bytes.iter().enumerate().all(|(i, b)| match i {
                4 | 7 => *b == b'-',
                _ => b.is_ascii_digit(),
            });
        if !is_date {
            return None;
        }
        // ISO dates compare as text.
        Some(if revision >= FIRST_MODERN {
            Era::Modern
        } else {
            Era::Legacy
        })
    }
}

/// The `protocol:` setting of a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pin {
    /// Find the era, as the specification's backward-compatibility rules say.
    Auto,
    /// Speak this revision and no other.
    Revision(&'static str),
}

impl Pin {
    /// Reads `auto` or a revision the probe speaks.
    pub(crate) fn parse(text: &str) -> Result<Pin, String> {
        if text == "auto" {
            return Ok(Pin::Auto);
        }
        LEGACY
            .iter()
            .chain(MODERN.iter())
            .find(|known| **known == text)
            .map(|known| Pin::Revision(known))
            .ok_or_else(|| {
                format!(
                    "{text:?} is neither auto nor a revision the probe speaks ({}, {})",
                    LEGACY.join(", "),
                    MODERN.join(", ")
                )
            })
    }

    /// The era a pinned revision belongs to; `None` for `auto`.
    pub(crate) fn era(self) -> Option<Era> {
        match self {
            Pin::Auto => None,
            Pin::Revision(revision) => Era::of(revision),
        }
    }
}

/// The era a target was last found to speak, kept between probes so that a probe does
/// not detect it again every time; forgotten when a probe fails.
#[derive(Debug, Default)]
pub struct EraMemory(Mutex<Option<Era>>);

impl EraMemory {
    pub(crate) fn get(&self) -> Option<Era> {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn set(&self, era: Option<Era>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = era;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn eras_of_revisions() {
        assert_eq!(Era::of("2025-11-25"), Some(Era::Legacy));
        assert_eq!(Era::of("2024-11-05"), Some(Era::Legacy));
        assert_eq!(Era::of("2026-07-28"), Some(Era::Modern));
        assert_eq!(Era::of("2027-03-01"), Some(Era::Modern));
        assert_eq!(Era::of("DRAFT-2026-v1"), None);
        assert_eq!(Era::of("2026-7-28"), None);
        assert_eq!(latest_legacy(), "2025-11-25");
        assert_eq!(latest_modern(), "2026-07-28");
    }

    #[test]
    fn pins() {
        assert_eq!(Pin::parse("auto"), Ok(Pin::Auto));
        assert_eq!(Pin::parse("2026-07-28"), Ok(Pin::Revision("2026-07-28")));
        assert_eq!(
            Pin::parse("2025-06-18").map(Pin::era),
            Ok(Some(Era::Legacy))
        );
        let e = Pin::parse("2099-01-01").expect_err("unknown");
        assert!(e.contains("2025-11-25") && e.contains("2026-07-28"), "{e}");
        assert!(Pin::parse("latest").is_err());
    }
}
