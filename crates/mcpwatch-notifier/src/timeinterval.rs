//! Alertmanager's `time_intervals`, read from the same YAML and with the same meaning:
//! each interval is a list of specs, one matching is enough; within a spec every field given
//! must match (an absent field matches always), and within a field one range is enough.
//!
//! - `times`: `start_time`/`end_time` as `HH:MM`, the start included, the end not, up to
//!   `24:00`;
//! - `weekdays`: `sunday` to `saturday`, ranges such as `monday:friday`;
//! - `days_of_month`: 1 to 31, or -31 to -1 counting back from the month's last day
//!   (`-1` is the last day), ranges such as `1:5`, `-3:-1` or `1:-1`;
//! - `months`: `january` to `december` or 1 to 12, ranges;
//! - `years`: ranges of years;
//! - `location`: an IANA time zone (`Europe/Berlin`) or `Local`; UTC when absent.

use std::fmt;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde::Deserialize;

/// One spec of an interval, as written.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SpecConfig {
    /// Times of day.
    pub times: Vec<TimeRangeConfig>,
    /// Days of the week.
    pub weekdays: Vec<String>,
    /// Days of the month.
    pub days_of_month: Vec<String>,
    /// Months.
    pub months: Vec<String>,
    /// Years.
    pub years: Vec<String>,
    /// The time zone the fields are read in.
    pub location: Option<String>,
}

/// `start_time` and `end_time`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TimeRangeConfig {
    /// `HH:MM`, included.
    pub start_time: String,
    /// `HH:MM`, excluded; at most `24:00`.
    pub end_time: String,
}

/// An inclusive range of numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Range {
    start: i32,
    end: i32,
}

/// A checked spec.
#[derive(Clone)]
pub struct Spec {
    /// Minutes of the day, [start, end).
    times: Vec<(u32, u32)>,
    /// Sunday is 0.
    weekdays: Vec<Range>,
    days_of_month: Vec<Range>,
    months: Vec<Range>,
    years: Vec<Range>,
    location: TimeZone,
    location_name: String,
}

impl fmt::Debug for Spec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Spec")
            .field("times", &self.times)
            .field("weekdays", &self.weekdays)
            .field("days_of_month", &self.days_of_month)
            .field("months", &self.months)
            .field("years", &self.years)
            .field("location", &self.location_name)
            .finish()
    }
}

/// A checked interval: a time within any of its specs is within it.
#[derive(Debug, Clone)]
pub struct TimeInterval {
    specs: Vec<Spec>,
}

const WEEKDAYS: [&str; 7] = [
    "sunday",
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
];

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

impl TimeInterval {
    /// Checks the specs; an error names the spec, the field and what is wrong
    /// (`[1].weekdays[0]: ...`).
    pub fn new(specs: &[SpecConfig]) -> Result<Self, String> {
        specs
            .iter()
            .enumerate()
            .map(|(i, spec)| Spec::new(spec).map_err(|e| format!("[{i}].{e}")))
            .collect::<Result<Vec<_>, _>>()
            .map(|specs| Self { specs })
    }

    /// Whether `at` (Unix milliseconds) falls within the interval.
    pub fn contains(&self, at: i64) -> bool {
        let Ok(timestamp) = Timestamp::from_millisecond(at) else {
            return false;
        };
        self.specs.iter().any(|spec| spec.contains(timestamp))
    }
}

impl Spec {
    fn new(config: &SpecConfig) -> Result<Self, String> {
        let times = config
            .times
            .iter()
            .enumerate()
            .map(|(i, t)| {
                let start =
                    minutes(&t.start_time).map_err(|e| format!("times[{i}].start_time: {e}"))?;
                let end = minutes(&t.end_time).map_err(|e| format!("times[{i}].end_time: {e}"))?;
                if start >= end {
                    return Err(format!(
                        "times[{i}]: start_time {} is not before end_time {}",
                        t.start_time, t.end_time
                    ));
                }
                Ok((start, end))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let weekdays = ranges("weekdays", &config.weekdays, |text| {
            named(text, &WEEKDAYS, 0).ok_or_else(|| format!("{text:?} is not a day of the week"))
        })?;
        let days_of_month = ranges("days_of_month", &config.days_of_month, |text| {
            let day: i32 = text
                .parse()
                .map_err(|_| format!("{text:?} is not a day of the month"))?;
            if day == 0 || !(-31..=31).contains(&day) {
                return Err(format!("{day} is not between 1 and 31 or -31 and -1"));
            }
            Ok(day)
        })?;
        for (i, range) in days_of_month.iter().enumerate() {
            if range.start < 0 && range.end > 0 {
                return Err(format!(
                    "days_of_month[{i}]: a range cannot go from a day counted from the end to one counted from the start"
                ));
            }
        }
        let months = ranges("months", &config.months, |text| {
            named(text, &MONTHS, 1)
                .or_else(|| text.parse().ok().filter(|m| (1..=12).contains(m)))
                .ok_or_else(|| format!("{text:?} is not a month (a name or 1 to 12)"))
        })?;
        let years = ranges("years", &config.years, |text| {
            text.parse()
                .ok()
                .filter(|y: &i32| *y > 0)
                .ok_or_else(|| format!("{text:?} is not a year"))
        })?;
        let location_name = config.location.clone().unwrap_or_else(|| "UTC".into());
        let location = match location_name.as_str() {
            "UTC" => TimeZone::UTC,
            "Local" => TimeZone::system(),
            name => TimeZone::get(name)
                .map_err(|_| format!("location: {name:?} is not a known time zone"))?,
        };
        Ok(Self {
            times,
            weekdays,
            days_of_month,
            months,
            years,
            location,
            location_name,
        })
    }

    fn contains(&self, timestamp: Timestamp) -> bool {
        let zoned = timestamp.to_zoned(self.location.clone());
        let minute =
            u32::try_from(i32::from(zoned.hour()) * 60 + i32::from(zoned.minute())).unwrap_or(0);
        if !self.times.is_empty()
            && !self
                .times
                .iter()
                .any(|(start, end)| (*start..*end).contains(&minute))
        {
            return false;
        }
        let weekday = i32::from(zoned.weekday().to_sunday_zero_offset());
        if !within(&self.weekdays, weekday) {
            return false;
        }
        if !self.days_of_month.is_empty() {
            let last = i32::from(zoned.days_in_month());
            let day = i32::from(zoned.day());
            let resolve = |d: i32| if d < 0 { last + d + 1 } else { d };
            if !self
                .days_of_month
                .iter()
                .any(|r| (resolve(r.start)..=resolve(r.end)).contains(&day))
            {
                return false;
            }
        }
        within(&self.months, i32::from(zoned.month()))
            && within(&self.years, i32::from(zoned.year()))
    }
}

fn within(ranges: &[Range], value: i32) -> bool {
    ranges.is_empty() || ranges.iter().any(|r| (r.start..=r.end).contains(&value))
}

/// `name`'s position in `names` (case-insensitive), counted from `first`.
fn named(name: &str, names: &[&str], first: i32) -> Option<i32> {
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name.trim()))
        .and_then(|i| i32::try_from(i).ok())
        .map(|i| i + first)
}

/// `HH:MM` as minutes of the day, `24:00` included.
fn minutes(text: &str) -> Result<u32, String> {
    let bad = || format!("{text:?} is not a time of day (HH:MM)");
    let (h, m) = text.split_once(':').ok_or_else(bad)?;
    if h.len() != 2 || m.len() != 2 {
        return Err(bad());
    }
    let (h, m): (u32, u32) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m > 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// Each entry: one value or `start:end`, both ends included and in order.
fn ranges(
    field: &str,
    entries: &[String],
    value: impl Fn(&str) -> Result<i32, String>,
) -> Result<Vec<Range>, String> {
    entries
        .iter()
        .enumerate()
        .map(|(i, entry)| {
            let at = |e: String| format!("{field}[{i}]: {e}");
            let (start, end) = match entry.split_once(':') {
                Some((a, b)) => (value(a).map_err(at)?, value(b).map_err(at)?),
                None => {
                    let v = value(entry).map_err(at)?;
                    (v, v)
                }
            };
            // Days counted from the end are ordered among themselves (-3:-1); a range from
            // the start to the end (1:-1) is resolved month by month.
            let ordered = if start > 0 && end < 0 {
                true
            } else {
                start <= end
            };
            if !ordered {
                return Err(at(format!("{entry:?} ends before it starts")));
            }
            Ok(Range { start, end })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn interval(yaml: &str) -> TimeInterval {
        let specs: Vec<SpecConfig> =
            mcpwatch_core::config::parse_yaml(yaml, std::path::Path::new("t.yml")).expect("yaml");
        TimeInterval::new(&specs).expect("interval")
    }

    fn at(text: &str) -> i64 {
        text.parse::<Timestamp>().expect("time").as_millisecond()
    }

    #[test]
    fn sunday_night_maintenance() {
        let window =
            interval("- weekdays: [sunday]\n  times: [{start_time: '02:00', end_time: '04:00'}]\n");
        // 2026-11-22 is a Sunday.
        assert!(window.contains(at("2026-11-22T02:00:00Z")));
        assert!(window.contains(at("2026-11-22T03:59:59Z")));
        assert!(
            !window.contains(at("2026-11-22T04:00:00Z")),
            "the end is excluded"
        );
        assert!(!window.contains(at("2026-11-22T01:59:59Z")));
        assert!(!window.contains(at("2026-11-23T02:30:00Z")), "a Monday");
    }

    #[test]
    fn location_days_from_the_end_months_and_years() {
        let berlin = interval(
            "- times: [{start_time: '00:00', end_time: '01:00'}]\n  location: Europe/Berlin\n",
        );
        // Midnight in Berlin (UTC+1 in November) is 23:00 UTC the day before.
        assert!(berlin.contains(at("2026-11-21T23:30:00Z")));
        assert!(!berlin.contains(at("2026-11-22T00:30:00Z")));
        let last_days = interval(
            "- days_of_month: ['-2:-1']\n  months: ['february']\n  years: ['2026:2027']\n",
        );
        assert!(last_days.contains(at("2026-02-27T12:00:00Z")));
        assert!(last_days.contains(at("2026-02-28T12:00:00Z")));
        assert!(!last_days.contains(at("2026-02-26T12:00:00Z")));
        assert!(
            !last_days.contains(at("2026-03-31T12:00:00Z")),
            "not February"
        );
        assert!(
            !last_days.contains(at("2028-02-29T12:00:00Z")),
            "not 2026-2027"
        );
        let whole_month =
            interval("- days_of_month: ['1:-1']\n  months: ['2', 'november:december']\n");
        assert!(whole_month.contains(at("2026-11-30T12:00:00Z")));
        assert!(whole_month.contains(at("2026-02-01T00:00:00Z")));
        assert!(!whole_month.contains(at("2026-10-31T12:00:00Z")));
        // Either spec is enough; within one, every field must hold.
        let either = interval(
            "- weekdays: ['saturday']\n- weekdays: ['monday:friday']\n  times: [{start_time: '22:00', end_time: '24:00'}]\n",
        );
        assert!(either.contains(at("2026-11-21T10:00:00Z")));
        assert!(either.contains(at("2026-11-24T23:59:00Z")));
        assert!(!either.contains(at("2026-11-24T21:59:00Z")));
        assert!(
            !either.contains(at("2026-11-22T23:00:00Z")),
            "Sunday is in neither"
        );
    }

    #[test]
    fn errors_name_the_spec_and_field() {
        let error = |yaml: &str| {
            let specs: Vec<SpecConfig> =
                mcpwatch_core::config::parse_yaml(yaml, std::path::Path::new("t.yml"))
                    .expect("yaml");
            TimeInterval::new(&specs).expect_err("invalid")
        };
        assert_eq!(
            error("- {}\n- weekdays: [monday, funday]\n"),
            "[1].weekdays[1]: \"funday\" is not a day of the week"
        );
        assert!(error("- weekdays: ['friday:monday']\n").contains("ends before it starts"));
        assert!(
            error("- times: [{start_time: '04:00', end_time: '02:00'}]\n")
                .starts_with("[0].times[0]: start_time")
        );
        assert!(
            error("- times: [{start_time: '4:00', end_time: '05:00'}]\n")
                .contains("not a time of day")
        );
        assert!(error("- days_of_month: ['0']\n").contains("between 1 and 31"));
        assert!(error("- days_of_month: ['-1:5']\n").contains("counted from the end"));
        assert!(error("- months: ['13']\n").contains("not a month"));
        assert!(error("- location: Mars/Olympus\n").starts_with("[0].location"));
    }
}
