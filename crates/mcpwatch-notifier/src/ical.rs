//! iCalendar (RFC 5545) feeds: a `VCALENDAR` of `VEVENT`s with times in UTC, lines ended by
//! CRLF and folded at 75 octets (never inside a UTF-8 character), and text values escaped.

use jiff::Timestamp;

/// One event of a feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CalendarEvent {
    /// Its `UID`: the same event keeps it from one fetch of the feed to the next.
    pub uid: String,
    /// Its `SUMMARY`.
    pub summary: String,
    /// Its `DESCRIPTION`.
    pub description: String,
    /// `DTSTART`.
    pub start: Timestamp,
    /// `DTEND`.
    pub end: Timestamp,
}

/// The longest content line, in octets, before it is folded (RFC 5545 3.1).
const LINE_OCTETS: usize = 75;

/// A TEXT value with `\`, `;`, `,` and line breaks escaped (RFC 5545 3.3.11).
pub fn escape_text(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' => escaped.push_str("\\\\"),
            ';' => escaped.push_str("\\;"),
            ',' => escaped.push_str("\\,"),
            '\r' => {
                // CRLF and a lone CR are one line break.
                if chars.peek() == Some(&'\n') {
                    chars.next();
                }
                escaped.push_str("\\n");
            }
            '\n' => escaped.push_str("\\n"),
            // Other control characters are not allowed in a TEXT value.
            c if c.is_control() => {}
            c => escaped.push(c),
        }
    }
    escaped
}

/// Appends one content line, folded: at most 75 octets a line, each continuation starting
/// with a space, never splitting a character.
fn push_line(out: &mut String, line: &str) {
    let mut rest = line;
    let mut limit = LINE_OCTETS;
    loop {
        if rest.len() <= limit {
            out.push_str(rest);
            out.push_str("\r\n");
            return;
        }
        let mut cut = limit;
        while !rest.is_char_boundary(cut) {
            cut -= 1;
        }
        out.push_str(&rest[..cut]);
        out.push_str("\r\n ");
        rest = &rest[cut..];
        // The leading space counts towards the next line's octets.
        limit = LINE_OCTETS - 1;
    }
}

fn utc(at: Timestamp) -> String {
    at.strftime("%Y%m%dT%H%M%SZ").to_string()
}

/// A feed named `name` of `events`, stamped `stamp` (`DTSTAMP`: when it was made).
pub fn calendar(name: &str, time_zone: &str, events: &[CalendarEvent], stamp: Timestamp) -> String {
    let mut out = String::new();
    let stamp = utc(stamp);
    for line in [
        "BEGIN:VCALENDAR",
        "VERSION:2.0",
        concat!(
            "PRODID:-//mcpwatch//mcpwatch-notifier ",
            env!("CARGO_PKG_VERSION"),
            "//EN"
        ),
        "CALSCALE:GREGORIAN",
        "METHOD:PUBLISH",
    ] {
        push_line(&mut out, line);
    }
    push_line(&mut out, &format!("X-WR-CALNAME:{}", escape_text(name)));
    push_line(&mut out, &format!("X-WR-TIMEZONE:{}", escape_text(time_zone)));
    for event in events {
        push_line(&mut out, "BEGIN:VEVENT");
        push_line(&mut out, &format!("UID:{}", escape_text(&event.uid)));
        push_line(&mut out, &format!("DTSTAMP:{stamp}"));
        push_line(&mut out, &format!("DTSTART:{}", utc(event.start)));
        push_line(&mut out, &format!("DTEND:{}", utc(event.end)));
        push_line(&mut out, &format!("SUMMARY:{}", escape_text(&event.summary)));
        push_line(
            &mut out,
            &format!("DESCRIPTION:{}", escape_text(&event.description)),
        );
        push_line(&mut out, "TRANSP:TRANSPARENT");
        push_line(&mut out, "END:VEVENT");
    }
    push_line(&mut out, "END:VCALENDAR");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_is_escaped() {
        assert_eq!(
            escape_text("a\\b;c,d\ne\r\nf\u{7}g"),
            "a\\\\b\\;c\\,d\\ne\\nfg"
        );
    }

    #[test]
    fn long_lines_fold_at_75_octets_between_characters() {
        let mut out = String::new();
        // Three-octet characters: 75 is not a boundary after the 9-octet prefix plus 22.
        let line = format!("SUMMARY:{}", "☎".repeat(60));
        push_line(&mut out, &line);
        let lines: Vec<&str> = out.split("\r\n").filter(|l| !l.is_empty()).collect();
        assert!(lines.len() > 2, "{lines:?}");
        for (i, l) in lines.iter().enumerate() {
            assert!(l.len() <= 75, "{i}: {} octets", l.len());
            assert_eq!(i > 0, l.starts_with(' '), "{l:?}");
        }
        // Unfolded, it is the line again.
        assert_eq!(out.replace("\r\n ", ""), format!("{line}\r\n"));
        let mut short = String::new();
        push_line(&mut short, &"x".repeat(75));
        assert_eq!(short, format!("{}\r\n", "x".repeat(75)));
    }
}
