//! Whether the monitoring role sees every session and statement: read on every scrape
//! (`pg_monitor_privileges`), and logged when it changes, with what to do about it.

use std::sync::{Mutex, PoisonError};

/// What the server statement says of the monitoring role.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Visibility {
    /// It has the privileges of `pg_read_all_stats` (`pg_has_role(..., 'USAGE')`).
    pub reads_all: bool,
    /// It is a member of `pg_read_all_stats`, inheriting its privileges or not
    /// (`pg_has_role(..., 'MEMBER')`).
    pub member: bool,
    /// The role's name, quoted as an SQL identifier where it needs to be.
    pub role: String,
    /// `server_version_num`.
    pub version: u32,
}

/// How the role's visibility changed between two scrapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    /// From unknown or full to partial: logged as a warning.
    Lost,
    /// From partial to full: logged as information.
    Regained,
}

/// The visibility seen last, so that each change is logged once, not on every scrape.
#[derive(Debug, Default)]
pub(crate) struct PrivilegeWatch {
    reads_all: Mutex<Option<bool>>,
}

impl PrivilegeWatch {
    /// Notes what a scrape saw and logs it when it changed.
    pub(crate) fn observe(&self, target: &str, seen: &Visibility) -> Option<Change> {
        let before = self
            .reads_all
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .replace(seen.reads_all);
        let change = match (before, seen.reads_all) {
            (Some(false), true) => Change::Regained,
            (None | Some(true), false) => Change::Lost,
            (None | Some(true), true) | (Some(false), false) => return None,
        };
        match change {
            Change::Lost => tracing::warn!(
                target = %target,
                role = %seen.role,
                "The monitoring role lacks the privileges of pg_read_all_stats: other roles' \
                 sessions, transactions and statements are hidden from it, so connection \
                 counts, transaction ages and pg_stat_statements cover its own only. {}",
                advice(seen)
            ),
            Change::Regained => tracing::info!(
                target = %target,
                role = %seen.role,
                "The monitoring role has the privileges of pg_read_all_stats again: every \
                 role's sessions and statements are counted."
            ),
        }
        Some(change)
    }
}

/// What gives the role the privileges: a grant for a role that is no member, and
/// inheritance for a member that does not inherit (a NOINHERIT role; from PostgreSQL 16 a
/// grant's own INHERIT option, which ALTER ROLE leaves as it is).
pub(crate) fn advice(seen: &Visibility) -> String {
    let role = &seen.role;
    if !seen.member {
        format!("Grant it pg_monitor: GRANT pg_monitor TO {role};")
    } else if seen.version < 160_000 {
        format!(
            "It is a member of pg_read_all_stats (through pg_monitor) but does not inherit \
             its privileges (NOINHERIT): ALTER ROLE {role} INHERIT;"
        )
    } else {
        format!(
            "It is a member of pg_read_all_stats (through pg_monitor) but its membership does \
             not inherit privileges (made while the role was NOINHERIT, or granted WITH \
             INHERIT FALSE): GRANT pg_monitor TO {role} WITH INHERIT TRUE; (the role it was \
             granted, if not pg_monitor)"
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(reads_all: bool, member: bool, version: u32) -> Visibility {
        Visibility {
            reads_all,
            member,
            role: "\"Monitor\"".to_owned(),
            version,
        }
    }

    #[test]
    fn each_change_once() {
        let watch = PrivilegeWatch::default();
        let changes: Vec<Option<Change>> = [true, true, false, false, false, true, true, false]
            .into_iter()
            .map(|reads_all| watch.observe("db", &seen(reads_all, true, 150_000)))
            .collect();
        assert_eq!(
            changes,
            [
                None,
                None,
                Some(Change::Lost),
                None,
                None,
                Some(Change::Regained),
                None,
                Some(Change::Lost),
            ]
        );
        // Partial from the first scrape on: said at once.
        let watch = PrivilegeWatch::default();
        assert_eq!(
            watch.observe("db", &seen(false, false, 150_000)),
            Some(Change::Lost)
        );
    }

    #[test]
    fn advice_for_each_case() {
        assert_eq!(
            advice(&seen(false, false, 170_000)),
            "Grant it pg_monitor: GRANT pg_monitor TO \"Monitor\";"
        );
        let before_16 = advice(&seen(false, true, 150_000));
        assert!(
            before_16.ends_with("ALTER ROLE \"Monitor\" INHERIT;"),
            "{before_16}"
        );
        let from_16 = advice(&seen(false, true, 160_000));
        assert!(
            from_16.contains("GRANT pg_monitor TO \"Monitor\" WITH INHERIT TRUE;")
                && !from_16.contains("ALTER ROLE"),
            "{from_16}"
        );
    }
}
