//! The post-incident report: an incident's facts, the alerts involved and its whole
//! timeline in Markdown, with the sections a review fills in (root cause, impact, action
//! items). Written from what the store holds, so the page, the API and a download agree.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::incident::IncidentView;
use crate::time::format_rfc3339;
use crate::timeline::{Entry, kind};

/// `1h 02m 05s`, `4m 12s`, `12s`.
pub fn duration_text(ms: i64) -> String {
    let total = ms.max(0) / 1000;
    let (h, m, s) = (total / 3600, (total % 3600) / 60, total % 60);
    if h > 0 {
        format!("{h}h {m:02}m {s:02}s")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Text made safe for one Markdown table cell: no line breaks, pipes escaped, and
/// nothing that Markdown or HTML would take for markup.
fn cell(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' => out.push(' '),
            '|' | '\\' | '`' | '*' | '_' | '[' | ']' | '<' | '>' | '#' => {
                out.push('\\');
                out.push(c);
            }
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Text made safe inside a Markdown code span on its own line: a fence that no
/// backtick run in the text can close.
fn code(text: &str) -> String {
    let longest = text
        .split(|c| c != '`')
        .map(str::len)
        .max()
        .unwrap_or(0);
    let fence = "`".repeat(longest + 1);
    format!("{fence} {} {fence}", text.replace(['\n', '\r'], " "))
}

/// The report of `incident` with its timeline, as of `now` (Unix ms).
pub fn markdown(incident: &IncidentView, timeline: &[Entry], now: i64) -> String {
    let mut out = String::new();
    let title = if incident.title.is_empty() {
        format!("Incident {}", incident.id)
    } else {
        format!("Incident {}: {}", incident.id, incident.title)
    };
    let _ = writeln!(out, "# {}\n", cell(&title));
    let opened = incident.opened_ms;
    let ended = incident.resolved_ms;
    let _ = writeln!(out, "| | |\n|---|---|");
    let mut fact = |name: &str, value: String| {
        let _ = writeln!(out, "| {name} | {value} |");
    };
    fact("State", incident.state.to_owned());
    fact(
        "Severity",
        cell(incident.severity.as_deref().unwrap_or("unknown")),
    );
    fact("Escalation policy", cell(&incident.policy));
    fact("Highest level told", incident.level.to_string());
    fact("Opened", format_rfc3339(opened));
    match (incident.acknowledged_ms, &incident.acknowledged_by) {
        (Some(at), by) => fact(
            "Acknowledged",
            format!(
                "{} by {} (time to acknowledge {})",
                format_rfc3339(at),
                cell(by.as_deref().unwrap_or("unknown")),
                duration_text(at - opened)
            ),
        ),
        (None, _) => fact("Acknowledged", acknowledged_in_timeline(timeline, opened)),
    }
    match ended {
        Some(at) => {
            let how = match &incident.resolved_by {
                Some(by) => format!(" by hand by {}", cell(by)),
                None => String::new(),
            };
            fact(
                "Resolved",
                format!(
                    "{}{how} (time to resolve {})",
                    format_rfc3339(at),
                    duration_text(at - opened)
                ),
            );
            fact("Duration", duration_text(at - opened));
        }
        None => {
            fact("Resolved", "not yet".into());
            fact(
                "Duration",
                format!("{} so far", duration_text(now - opened)),
            );
        }
    }
    fact("Channels told", cell(&incident.told.join(", ")));

    let _ = writeln!(out, "\n## Alerts involved\n");
    let mut alerts: BTreeMap<String, (i64, Option<i64>)> = BTreeMap::new();
    for entry in timeline {
        for alert in &entry.alerts {
            let seen = alerts.entry(alert.identity()).or_insert((entry.at_ms, None));
            if alert.status == "resolved" {
                seen.1.get_or_insert(entry.at_ms);
            } else {
                seen.1 = None;
            }
        }
    }
    if alerts.is_empty() {
        let _ = writeln!(out, "None recorded.");
    }
    for (identity, (first, resolved)) in &alerts {
        let until = match resolved {
            Some(at) => format!("resolved {}", format_rfc3339(*at)),
            None if ended.is_some() => "resolved with the incident".into(),
            None => "still firing".into(),
        };
        let _ = writeln!(
            out,
            "- {} first seen {}, {until}",
            code(identity),
            format_rfc3339(*first)
        );
    }

    let _ = writeln!(out, "\n## Timeline\n");
    let _ = writeln!(out, "| Time (UTC) | Since opened | Event | Who | Detail |");
    let _ = writeln!(out, "|---|---|---|---|---|");
    for entry in timeline {
        let _ = writeln!(
            out,
            "| {} | +{} | {} | {} | {} |",
            entry.at,
            duration_text(entry.at_ms - opened),
            cell(&entry.describe()),
            cell(entry.actor.as_deref().unwrap_or("")),
            cell(entry.detail.as_deref().unwrap_or(""))
        );
    }
    for section in ["Root cause", "Impact", "Action items"] {
        let _ = writeln!(out, "\n## {section}\n");
        let prompt = match section {
            "Root cause" => "_What caused it, and why it was not caught earlier._",
            "Impact" => "_Who and what was affected, how badly, for how long._",
            _ => "- [ ] _Owner: what, by when._",
        };
        let _ = writeln!(out, "{prompt}");
    }
    out
}

/// An incident not acknowledged now may have been before (and taken back since).
fn acknowledged_in_timeline(timeline: &[Entry], opened: i64) -> String {
    timeline
        .iter()
        .find(|e| e.kind == kind::ACKNOWLEDGED)
        .map_or_else(
            || "never".into(),
            |e| {
                format!(
                    "{} by {} (time to acknowledge {}), taken back since",
                    e.at,
                    cell(e.actor.as_deref().unwrap_or("unknown")),
                    duration_text(e.at_ms - opened)
                )
            },
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(12_400), "12s");
        assert_eq!(duration_text(252_000), "4m 12s");
        assert_eq!(duration_text(3_725_000), "1h 02m 05s");
        assert_eq!(duration_text(-5), "0s");
    }

    #[test]
    fn hostile_text_stays_in_its_cell() {
        assert_eq!(cell("a|b\nc<script>"), "a\\|b c\\<script\\>");
        assert_eq!(code("x`y``z"), "``` x`y``z ```");
    }
}
