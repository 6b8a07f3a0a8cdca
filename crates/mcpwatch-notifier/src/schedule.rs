//! On-call schedules: who is on call at an instant, as rotations and overrides say.
//!
//! A **rotation** hands over from one member to the next at a local wall time in the
//! schedule's time zone: every day (`daily`), every week (`weekly`, on a weekday), or every
//! given stretch of at least an hour (`12h`). Handoffs are counted on the wall clock, not
//! in elapsed time: a daily 09:00 handoff stays at 09:00 across a daylight-saving change,
//! so that day's shift is 23 or 25 hours long (a week across it, 167 or 169 hours). A
//! handoff at a wall time the change skips (02:30 when clocks jump from 02:00 to 03:00)
//! happens at the moment that time would have been on the old offset (03:30); at a wall
//! time that happens twice (02:30 when clocks fall back from 03:00 to 02:00) at its first
//! occurrence. This is jiff's (and RFC 5545's, Temporal's) *compatible* rule. A shift the
//! change leaves with no time at all is skipped.
//!
//! Several rotations take over from one another in the order listed: each is in force from
//! its first handoff until the next one's first handoff, so a new rotation (other members,
//! another handoff time) is added below the old one with a later `start`. At any instant one
//! rotation is in force, or none before the first one starts.
//!
//! An **override** puts a person on call from one instant until another, whatever the
//! rotation says; where overrides overlap, the one listed later wins. Nobody on call (before
//! the first rotation starts, and no override) is a *gap*.

use std::collections::BTreeMap;
use std::sync::Arc;

use jiff::civil::{Date, DateTime, Time, Weekday};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};
use mcpwatch_core::config::Problem;

use crate::config::{NotifierConfig, PersonConfig, RotationConfig, ScheduleConfig, is_key};

/// The people schedules name, by key.
pub type People = BTreeMap<String, PersonConfig>;

/// The longest jump of a zone's clock the tz database knows (Samoa skipped a whole day in
/// 2011), with room to spare: handoffs within it are kept in order.
const LONGEST_JUMP: i64 = 26 * 3600;

/// Shifts one call to [`Schedule::shifts`] makes at most: a year of hourly shifts.
const MAX_SHIFTS: usize = 10_000;

/// How far [`Schedule::next_handoff`] looks ahead.
const NEXT_WITHIN_DAYS: i64 = 400;

/// The name a person is shown by.
pub fn display_name<'a>(key: &'a str, person: Option<&'a PersonConfig>) -> &'a str {
    person.and_then(|p| p.name.as_deref()).unwrap_or(key)
}

/// Every schedule of a configuration, and the people they name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Schedules {
    /// The people, by key.
    pub people: Arc<People>,
    /// The schedules, by name.
    pub schedules: BTreeMap<String, Arc<Schedule>>,
}

impl Schedules {
    /// Compiles the schedules of a configuration whose people are checked; the error names
    /// the key at fault (`schedules.primary.rotations[0].handoff`). Reading a configuration
    /// runs it as a check (see [`crate::config::Check`]).
    pub fn new(config: &NotifierConfig) -> Result<Self, Problem> {
        let people = Arc::new(config.people.clone());
        let schedules = config
            .schedules
            .iter()
            .map(|(name, schedule)| {
                Schedule::new(name, schedule, &people)
                    .map(|s| (name.clone(), Arc::new(s)))
                    .map_err(|(k, m)| (format!("schedules.{name}{k}"), m))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self { people, schedules })
    }
}

/// Where a shift comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A rotation's turn.
    Rotation {
        /// Its place in `rotations`, from 0.
        index: usize,
        /// Its name.
        name: Option<String>,
    },
    /// An override.
    Override {
        /// Its place in `overrides`, from 0.
        index: usize,
        /// Why.
        reason: Option<String>,
    },
}

/// A stretch of time one person is on call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shift {
    /// The person's key.
    pub person: String,
    /// When it starts.
    pub start: Timestamp,
    /// When it ends (excluded).
    pub end: Timestamp,
    /// Where it comes from.
    pub source: Source,
}

/// A checked schedule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    /// Its name.
    pub name: String,
    /// Its time zone's name, as configured.
    pub time_zone_name: String,
    /// Its time zone.
    pub time_zone: TimeZone,
    rotations: Vec<Rotation>,
    /// The overrides as one timeline: disjoint, in order, each piece with its override's
    /// index (a later override cuts the earlier ones it overlaps).
    overrides: Vec<(Timestamp, Timestamp, usize)>,
    override_people: Vec<(String, Option<String>)>,
}

/// A checked rotation.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rotation {
    name: Option<String>,
    members: Vec<String>,
    /// The first handoff, on the wall clock.
    first: DateTime,
    /// The first handoff.
    start: Timestamp,
    /// Seconds of wall-clock time between handoffs.
    step: i64,
    /// Handoffs looked back over to keep them in order across a jump of the clock.
    lookback: i64,
}

/// How often a rotation hands over, in seconds of wall-clock time, and whether its handoff
/// names a weekday.
fn parse_every(text: &str) -> Result<(i64, bool), String> {
    match text.trim() {
        "daily" => Ok((86_400, false)),
        "weekly" => Ok((7 * 86_400, true)),
        other => {
            let d = humantime::parse_duration(other).map_err(|_| {
                format!("{other:?} is not daily, weekly or a duration such as 12h")
            })?;
            let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
            if d.subsec_nanos() != 0 || secs % 60 != 0 {
                return Err(format!("{other:?}: give whole minutes"));
            }
            if secs < 3600 {
                return Err(format!("{other:?}: a shift is at least 1h"));
            }
            if secs > 366 * 86_400 {
                return Err(format!("{other:?}: a shift is at most a year"));
            }
            Ok((secs, false))
        }
    }
}

fn parse_time(text: &str) -> Option<Time> {
    let (h, m) = text.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: i8 = h.parse().ok()?;
    let m: i8 = m.parse().ok()?;
    Time::new(h, m, 0, 0).ok()
}

fn parse_weekday(text: &str) -> Option<Weekday> {
    let days = [
        ("mon", Weekday::Monday),
        ("tue", Weekday::Tuesday),
        ("wed", Weekday::Wednesday),
        ("thu", Weekday::Thursday),
        ("fri", Weekday::Friday),
        ("sat", Weekday::Saturday),
        ("sun", Weekday::Sunday),
    ];
    let lower = text.to_ascii_lowercase();
    days.iter()
        .find(|(short, day)| {
            lower == *short || lower == format!("{day:?}").to_ascii_lowercase()
        })
        .map(|(_, day)| *day)
}

/// The handoff: a weekday (weekly rotations) and a wall time.
fn parse_handoff(text: &str, weekly: bool) -> Result<(Option<Weekday>, Time), String> {
    let text = text.trim();
    if weekly {
        let parsed = text
            .split_once(char::is_whitespace)
            .and_then(|(day, time)| Some((parse_weekday(day)?, parse_time(time.trim())?)));
        parsed
            .map(|(day, time)| (Some(day), time))
            .ok_or_else(|| format!("{text:?} is not a weekday and a time, such as \"Mon 09:00\""))
    } else {
        parse_time(text)
            .map(|time| (None, time))
            .ok_or_else(|| format!("{text:?} is not a time of day, such as \"09:00\""))
    }
}

fn resolve(tz: &TimeZone, at: DateTime) -> Option<Timestamp> {
    tz.to_ambiguous_timestamp(at).compatible().ok()
}

impl Rotation {
    fn new(config: &RotationConfig, tz: &TimeZone, people: &People) -> Result<Self, Problem> {
        if config.members.is_empty() {
            return Err(("members".into(), "give at least one member".into()));
        }
        for (i, member) in config.members.iter().enumerate() {
            if !people.contains_key(member) {
                return Err((
                    format!("members[{i}]"),
                    format!("no person is named {member:?} (see people)"),
                ));
            }
        }
        let (step, weekly) = parse_every(&config.every).map_err(|m| ("every".to_owned(), m))?;
        let (weekday, time) =
            parse_handoff(&config.handoff, weekly).map_err(|m| ("handoff".to_owned(), m))?;
        let start: Date = config.start.trim().parse().map_err(|_| {
            (
                "start".to_owned(),
                format!("{:?} is not a date such as 2026-03-02", config.start),
            )
        })?;
        let day = match weekday {
            Some(weekday) => {
                let ahead = (weekday.to_monday_zero_offset() - start.weekday().to_monday_zero_offset())
                    .rem_euclid(7);
                start
                    .checked_add(jiff::Span::new().days(i64::from(ahead)))
                    .map_err(|e| ("start".to_owned(), e.to_string()))?
            }
            None => start,
        };
        let first = day.to_datetime(time);
        let start = resolve(tz, first).ok_or_else(|| {
            (
                "start".to_owned(),
                format!("{first} is out of the range of dates handled"),
            )
        })?;
        Ok(Self {
            name: config.name.clone(),
            members: config.members.clone(),
            first,
            start,
            step,
            lookback: (LONGEST_JUMP + step - 1) / step,
        })
    }

    /// Handoff `k` (from 0) as the wall clock gives it; none past the dates handled.
    fn raw(&self, tz: &TimeZone, k: i64) -> Option<Timestamp> {
        let at = self
            .first
            .checked_add(SignedDuration::from_secs(k.checked_mul(self.step)?))
            .ok()?;
        resolve(tz, at)
    }

    /// Handoff `k`, never before an earlier one: where a jump of the clock is longer than a
    /// shift, the handoffs it swallows come at once.
    fn boundary(&self, tz: &TimeZone, k: i64) -> Option<Timestamp> {
        let mut latest = None;
        for j in k.saturating_sub(self.lookback).max(0)..=k {
            let at = self.raw(tz, j);
            if at.is_none() && j == k {
                return None;
            }
            latest = latest.max(at);
        }
        latest
    }

    /// The turn at `at`, at or after the first handoff.
    fn turn_at(&self, tz: &TimeZone, at: Timestamp) -> i64 {
        let local = tz.to_datetime(at);
        let mut k = local
            .duration_since(self.first)
            .as_secs()
            .div_euclid(self.step)
            .max(0);
        // The wall clock is off by at most the jump of a clock: a few turns either way.
        for _ in 0..=2 * self.lookback + 2 {
            match self.boundary(tz, k) {
                Some(b) if b > at && k > 0 => k -= 1,
                _ => break,
            }
        }
        for _ in 0..=2 * self.lookback + 2 {
            match self.boundary(tz, k + 1) {
                Some(b) if b <= at => k += 1,
                _ => break,
            }
        }
        k
    }

    fn member(&self, k: i64) -> &str {
        let n = i64::try_from(self.members.len()).unwrap_or(1).max(1);
        let i = usize::try_from(k.rem_euclid(n)).unwrap_or(0);
        &self.members[i]
    }
}

impl Schedule {
    /// Checks one schedule; the error's key is relative to it (`.rotations[0].handoff`).
    pub fn new(name: &str, config: &ScheduleConfig, people: &People) -> Result<Self, Problem> {
        if !is_key(name) || name.contains('.') {
            return Err((
                String::new(),
                "a schedule's name is letters, digits, '-' and '_'".into(),
            ));
        }
        let zone = config.time_zone.trim();
        let time_zone = TimeZone::get(zone).map_err(|_| {
            (
                ".time_zone".to_owned(),
                format!("{zone:?} is not a known IANA time zone (such as Europe/Berlin)"),
            )
        })?;
        let mut rotations: Vec<Rotation> = Vec::new();
        for (i, rotation) in config.rotations.iter().enumerate() {
            let at = format!(".rotations[{i}]");
            let rotation = Rotation::new(rotation, &time_zone, people)
                .map_err(|(k, m)| (format!("{at}.{k}"), m))?;
            if let Some(before) = rotations.last()
                && rotation.start <= before.start
            {
                return Err((
                    format!("{at}.start"),
                    format!(
                        "rotations take over in the order listed: this one's first handoff ({}) must come after that of the rotation before it ({})",
                        rotation.first, before.first
                    ),
                ));
            }
            rotations.push(rotation);
        }
        let mut timeline: Vec<(Timestamp, Timestamp, usize)> = Vec::new();
        let mut override_people = Vec::new();
        for (i, o) in config.overrides.iter().enumerate() {
            let at = format!(".overrides[{i}]");
            if !people.contains_key(&o.person) {
                return Err((
                    format!("{at}.person"),
                    format!("no person is named {:?} (see people)", o.person),
                ));
            }
            let instant = |field: &str, text: &str| {
                text.trim().parse::<Timestamp>().map_err(|_| {
                    (
                        format!("{at}.{field}"),
                        format!(
                            "{text:?} is not an RFC 3339 time with an offset, such as 2026-03-28T18:00:00+01:00"
                        ),
                    )
                })
            };
            let from = instant("from", &o.from)?;
            let until = instant("until", &o.until)?;
            if until <= from {
                return Err((
                    format!("{at}.until"),
                    format!("must be later than from ({from})"),
                ));
            }
            timeline = cut(timeline, from, until);
            timeline.push((from, until, i));
            timeline.sort();
            override_people.push((o.person.clone(), o.reason.clone()));
        }
        Ok(Self {
            name: name.to_owned(),
            time_zone_name: zone.to_owned(),
            time_zone,
            rotations,
            overrides: timeline,
            override_people,
        })
    }

    fn override_shift(&self, (start, end, index): (Timestamp, Timestamp, usize)) -> Shift {
        let (person, reason) = &self.override_people[index];
        Shift {
            person: person.clone(),
            start,
            end,
            source: Source::Override {
                index,
                reason: reason.clone(),
            },
        }
    }

    /// The rotations' shifts that overlap [`from`, `until`), each within the time its
    /// rotation is in force.
    fn rotation_shifts(&self, from: Timestamp, until: Timestamp) -> Vec<Shift> {
        let tz = &self.time_zone;
        let mut shifts = Vec::new();
        for (index, rotation) in self.rotations.iter().enumerate() {
            let in_force_until = self.rotations.get(index + 1).map(|r| r.start);
            let low = from.max(rotation.start);
            let high = in_force_until.map_or(until, |end| end.min(until));
            if low >= high {
                continue;
            }
            let mut k = rotation.turn_at(tz, low);
            let Some(mut start) = rotation.boundary(tz, k) else {
                continue;
            };
            while shifts.len() < MAX_SHIFTS {
                let next = rotation.boundary(tz, k + 1);
                let end = match (next, in_force_until) {
                    (Some(next), Some(limit)) => next.min(limit),
                    (Some(next), None) => next,
                    (None, Some(limit)) => limit,
                    (None, None) => Timestamp::MAX,
                };
                let start_in_force = start.max(rotation.start);
                if start_in_force < end {
                    shifts.push(Shift {
                        person: rotation.member(k).to_owned(),
                        start: start_in_force,
                        end,
                        source: Source::Rotation {
                            index,
                            name: rotation.name.clone(),
                        },
                    });
                }
                match next {
                    Some(next) if end < high => {
                        start = next;
                        k += 1;
                    }
                    _ => break,
                }
            }
        }
        shifts
    }

    /// Every shift overlapping [`from`, `until`), in order, without overlaps: the
    /// rotations' shifts with the overrides cut into them, and the overrides. Each keeps its
    /// own start and end (the first may start before `from`, the last end after `until`).
    pub fn shifts(&self, from: Timestamp, until: Timestamp) -> Vec<Shift> {
        let mut shifts = Vec::new();
        for shift in self.rotation_shifts(from, until) {
            // The override pieces overlapping this shift, in order.
            let first = self.overrides.partition_point(|(_, end, _)| *end <= shift.start);
            let mut start = shift.start;
            for &(o_start, o_end, _) in &self.overrides[first..] {
                if o_start >= shift.end {
                    break;
                }
                if o_start > start {
                    shifts.push(Shift {
                        start,
                        end: o_start,
                        ..shift.clone()
                    });
                }
                start = start.max(o_end);
            }
            if start < shift.end {
                shifts.push(Shift { start, ..shift });
            }
        }
        let first = self.overrides.partition_point(|(_, end, _)| *end <= from);
        shifts.extend(
            self.overrides[first..]
                .iter()
                .take_while(|(start, _, _)| *start < until)
                .map(|piece| self.override_shift(*piece)),
        );
        shifts.retain(|s| s.end > from && s.start < until);
        shifts.sort_by_key(|s| s.start);
        shifts
    }

    /// Who is on call at `at`, and the shift; none in a gap.
    pub fn on_call(&self, at: Timestamp) -> Option<Shift> {
        let after = at.checked_add(SignedDuration::from_nanos(1)).ok()?;
        self.shifts(at, after)
            .into_iter()
            .find(|s| s.start <= at && at < s.end)
    }

    /// The next handoff after `at` to someone other than whoever is on call then: that
    /// person's shift. None when nobody else is on call within 400 days.
    pub fn next_handoff(&self, at: Timestamp) -> Option<Shift> {
        let now = self.on_call(at).map(|s| s.person);
        let week = SignedDuration::from_hours(7 * 24);
        let mut from = at;
        for _ in 0..NEXT_WITHIN_DAYS / 7 + 1 {
            let until = from.checked_add(week).ok()?;
            if let Some(next) = self
                .shifts(from, until)
                .into_iter()
                .find(|s| s.start > at && now.as_deref() != Some(s.person.as_str()))
            {
                return Some(next);
            }
            from = until;
        }
        None
    }
}

/// The timeline without [`from`, `until`): pieces it overlaps are cut back.
fn cut(
    timeline: Vec<(Timestamp, Timestamp, usize)>,
    from: Timestamp,
    until: Timestamp,
) -> Vec<(Timestamp, Timestamp, usize)> {
    let mut kept = Vec::with_capacity(timeline.len() + 1);
    for (start, end, index) in timeline {
        if end <= from || start >= until {
            kept.push((start, end, index));
            continue;
        }
        if start < from {
            kept.push((start, from, index));
        }
        if end > until {
            kept.push((until, end, index));
        }
    }
    kept
}

/// Unix milliseconds as an instant (the notifier's clock is in milliseconds).
pub fn instant(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ContactConfig, OverrideConfig};

    fn people(keys: &[&str]) -> People {
        keys.iter()
            .map(|k| {
                (
                    (*k).to_owned(),
                    PersonConfig {
                        name: None,
                        contacts: vec![ContactConfig {
                            channel: "log".into(),
                            address: None,
                            slack_member: None,
                            teams_user: None,
                        }],
                    },
                )
            })
            .collect()
    }

    fn rotation(members: &[&str], every: &str, handoff: &str, start: &str) -> RotationConfig {
        RotationConfig {
            name: Some("main".into()),
            members: members.iter().map(|m| (*m).to_owned()).collect(),
            every: every.into(),
            handoff: handoff.into(),
            start: start.into(),
        }
    }

    fn schedule(
        zone: &str,
        rotations: Vec<RotationConfig>,
        overrides: &[(&str, &str, &str)],
    ) -> Result<Schedule, Problem> {
        let config = ScheduleConfig {
            time_zone: zone.into(),
            rotations,
            overrides: overrides
                .iter()
                .map(|(person, from, until)| OverrideConfig {
                    person: (*person).into(),
                    from: (*from).into(),
                    until: (*until).into(),
                    reason: None,
                })
                .collect(),
        };
        Schedule::new("primary", &config, &people(&["alice", "bob", "carol"]))
    }

    fn at(text: &str) -> Timestamp {
        text.parse().expect("timestamp")
    }

    fn hours(shift: &Shift) -> i64 {
        shift.end.duration_since(shift.start).as_secs() / 3600
    }

    /// The shift starting at `start` (UTC), its person and length in hours.
    fn shift_at(schedule: &Schedule, start: &str) -> (String, i64, Timestamp) {
        let shift = schedule.on_call(at(start)).expect("someone on call");
        assert_eq!(shift.start, at(start), "{shift:?}");
        (shift.person.clone(), hours(&shift), shift.end)
    }

    #[test]
    fn a_daily_handoff_keeps_its_wall_time_across_both_changes() {
        let s = schedule(
            "Europe/Berlin",
            vec![rotation(&["alice", "bob"], "daily", "09:00", "2026-03-27")],
            &[],
        )
        .expect("schedule");
        // 09:00 CET is 08:00 UTC; from 2026-03-29 on, 09:00 CEST is 07:00 UTC.
        assert_eq!(shift_at(&s, "2026-03-27T08:00:00Z").0, "alice");
        let (who, length, end) = shift_at(&s, "2026-03-28T08:00:00Z");
        assert_eq!((who.as_str(), length), ("bob", 23));
        assert_eq!(end, at("2026-03-29T07:00:00Z"));
        assert_eq!(shift_at(&s, "2026-03-29T07:00:00Z").1, 24);
        // Back to CET on 2026-10-25: the shift of the 24th is 25 hours.
        let (_, length, end) = shift_at(&s, "2026-10-24T07:00:00Z");
        assert_eq!((length, end), (25, at("2026-10-25T08:00:00Z")));
        assert_eq!(shift_at(&s, "2026-10-25T08:00:00Z").1, 24);
        // 212 days from 2026-03-27: turn 212 is alice's again.
        assert_eq!(shift_at(&s, "2026-10-25T08:00:00Z").0, "alice");
    }

    #[test]
    fn a_weekly_handoff_spanning_a_change_is_167_or_169_hours() {
        let s = schedule(
            "Europe/Berlin",
            vec![rotation(&["alice", "bob", "carol"], "weekly", "Mon 09:00", "2026-03-18")],
            &[],
        )
        .expect("schedule");
        // The first Monday on or after Wednesday 2026-03-18 is the 23rd.
        assert_eq!(s.on_call(at("2026-03-23T07:59:59Z")), None);
        let (who, length, end) = shift_at(&s, "2026-03-23T08:00:00Z");
        assert_eq!((who.as_str(), length), ("alice", 167));
        assert_eq!(end, at("2026-03-30T07:00:00Z"));
        let (who, length, _) = shift_at(&s, "2026-10-19T07:00:00Z");
        // 30 weeks after the first: 30 % 3 = 0.
        assert_eq!((who.as_str(), length), ("alice", 169));
        assert_eq!(shift_at(&s, "2026-10-26T08:00:00Z").1, 168);
    }

    #[test]
    fn handoffs_at_skipped_and_repeated_wall_times_follow_the_compatible_rule() {
        // Berlin: 02:00 -> 03:00 on 2026-03-29, 03:00 -> 02:00 on 2026-10-25.
        let berlin = schedule(
            "Europe/Berlin",
            vec![rotation(&["alice", "bob"], "daily", "02:30", "2026-03-27")],
            &[],
        )
        .expect("schedule");
        // 02:30 does not exist on the 29th: the handoff is at 03:30 CEST (01:30 UTC, the
        // instant 02:30 CET would have been), so the shifts around it last 24 h and 23 h.
        let (_, length, end) = shift_at(&berlin, "2026-03-28T01:30:00Z");
        assert_eq!((length, end), (24, at("2026-03-29T01:30:00Z")));
        let (_, length, end) = shift_at(&berlin, "2026-03-29T01:30:00Z");
        assert_eq!((length, end), (23, at("2026-03-30T00:30:00Z")));
        // 02:30 happens twice on 2026-10-25: the first, 02:30 CEST (00:30 UTC).
        let (_, length, end) = shift_at(&berlin, "2026-10-24T00:30:00Z");
        assert_eq!((length, end), (24, at("2026-10-25T00:30:00Z")));
        let (_, length, end) = shift_at(&berlin, "2026-10-25T00:30:00Z");
        assert_eq!((length, end), (25, at("2026-10-26T01:30:00Z")));

        // New York: 02:00 -> 03:00 on 2026-03-08 (02:30 skipped), 02:00 -> 01:00 on
        // 2026-11-01 (01:30 twice; 02:30 once).
        let skipped = schedule(
            "America/New_York",
            vec![rotation(&["alice", "bob"], "daily", "02:30", "2026-03-06")],
            &[],
        )
        .expect("schedule");
        // 02:30 EST is 07:30 UTC; on the 8th the handoff is 03:30 EDT, also 07:30 UTC.
        let (_, length, end) = shift_at(&skipped, "2026-03-07T07:30:00Z");
        assert_eq!((length, end), (24, at("2026-03-08T07:30:00Z")));
        let (_, length, end) = shift_at(&skipped, "2026-03-08T07:30:00Z");
        assert_eq!((length, end), (23, at("2026-03-09T06:30:00Z")));
        // 02:30 on 2026-11-01 is once, EST (07:30 UTC): the shift before it is 25 h.
        let (_, length, end) = shift_at(&skipped, "2026-10-31T06:30:00Z");
        assert_eq!((length, end), (25, at("2026-11-01T07:30:00Z")));
        let repeated = schedule(
            "America/New_York",
            vec![rotation(&["alice", "bob"], "daily", "01:30", "2026-10-30")],
            &[],
        )
        .expect("schedule");
        // 01:30 happens twice on 2026-11-01: the first, 01:30 EDT (05:30 UTC).
        let (_, length, end) = shift_at(&repeated, "2026-10-31T05:30:00Z");
        assert_eq!((length, end), (24, at("2026-11-01T05:30:00Z")));
        let (_, length, end) = shift_at(&repeated, "2026-11-01T05:30:00Z");
        assert_eq!((length, end), (25, at("2026-11-02T06:30:00Z")));
    }

    #[test]
    fn hourly_shifts_across_a_change_skip_the_hour_that_does_not_exist() {
        let s = schedule(
            "Europe/Berlin",
            vec![rotation(&["alice", "bob"], "1h", "00:00", "2026-03-29")],
            &[],
        )
        .expect("schedule");
        let shifts = s.shifts(at("2026-03-28T23:00:00Z"), at("2026-03-29T03:00:00Z"));
        let starts: Vec<(String, String)> = shifts
            .iter()
            .map(|s| (s.person.clone(), s.start.to_string()))
            .collect();
        // 00:00 alice, 01:00 bob, 02:00 (skipped: it is 03:00) alice's turn has no time,
        // 03:00 bob, 04:00 alice.
        assert_eq!(
            starts,
            [
                ("alice".to_owned(), "2026-03-28T23:00:00Z".to_owned()),
                ("bob".to_owned(), "2026-03-29T00:00:00Z".to_owned()),
                ("bob".to_owned(), "2026-03-29T01:00:00Z".to_owned()),
                ("alice".to_owned(), "2026-03-29T02:00:00Z".to_owned()),
            ]
        );
        assert!(shifts.iter().all(|s| hours(s) == 1), "{shifts:?}");
    }

    #[test]
    fn a_skipped_day_swallows_shifts_without_overlaps() {
        // Samoa moved across the date line: 2011-12-30 did not happen in Pacific/Apia.
        let daily = schedule(
            "Pacific/Apia",
            vec![rotation(&["alice", "bob", "carol"], "daily", "09:00", "2011-12-28")],
            &[],
        )
        .expect("schedule");
        let shifts = daily.shifts(at("2011-12-28T00:00:00Z"), at("2012-01-02T00:00:00Z"));
        let turns: Vec<(&str, i64)> = shifts.iter().map(|s| (s.person.as_str(), hours(s))).collect();
        // The 29th's shift runs to the 31st's handoff, 24 h later; the 30th's turn (carol's)
        // has no time.
        assert_eq!(
            turns,
            [("alice", 24), ("bob", 24), ("alice", 24), ("bob", 24), ("carol", 24)]
        );
        let hourly = schedule(
            "Pacific/Apia",
            vec![rotation(&["alice", "bob"], "1h", "00:00", "2011-12-29")],
            &[],
        )
        .expect("schedule");
        let shifts = hourly.shifts(at("2011-12-29T10:00:00Z"), at("2011-12-31T10:00:00Z"));
        for pair in shifts.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{pair:?}");
        }
        assert!(shifts.iter().all(|s| hours(s) == 1), "{shifts:?}");
        assert_eq!(shifts.len(), 48);
    }

    #[test]
    fn overrides_cut_into_shifts_and_the_later_one_wins() {
        let s = schedule(
            "Europe/Berlin",
            vec![rotation(&["alice", "bob"], "weekly", "Mon 09:00", "2026-03-23")],
            &[
                ("carol", "2026-03-25T12:00:00+01:00", "2026-03-26T12:00:00+01:00"),
                ("bob", "2026-03-25T18:00:00+01:00", "2026-03-25T20:00:00+01:00"),
            ],
        )
        .expect("schedule");
        let shifts = s.shifts(at("2026-03-23T08:00:00Z"), at("2026-03-30T07:00:00Z"));
        let pieces: Vec<(&str, String, String)> = shifts
            .iter()
            .map(|s| (s.person.as_str(), s.start.to_string(), s.end.to_string()))
            .collect();
        assert_eq!(
            pieces,
            [
                ("alice", "2026-03-23T08:00:00Z".into(), "2026-03-25T11:00:00Z".into()),
                ("carol", "2026-03-25T11:00:00Z".into(), "2026-03-25T17:00:00Z".into()),
                ("bob", "2026-03-25T17:00:00Z".into(), "2026-03-25T19:00:00Z".into()),
                ("carol", "2026-03-25T19:00:00Z".into(), "2026-03-26T11:00:00Z".into()),
                ("alice", "2026-03-26T11:00:00Z".into(), "2026-03-30T07:00:00Z".into()),
            ]
        );
        assert!(matches!(
            shifts[2].source,
            Source::Override { index: 1, .. }
        ));
        assert!(matches!(
            shifts[4].source,
            Source::Rotation { index: 0, .. }
        ));
        let now = s.on_call(at("2026-03-25T18:00:00Z")).expect("bob");
        assert_eq!(now.person, "bob");
        // Next: carol again at 19:00 UTC.
        let next = s.next_handoff(at("2026-03-25T18:00:00Z")).expect("next");
        assert_eq!((next.person.as_str(), next.start), ("carol", at("2026-03-25T19:00:00Z")));
        // From alice's last piece, the next person is bob at the weekly handoff.
        let next = s.next_handoff(at("2026-03-27T00:00:00Z")).expect("next");
        assert_eq!((next.person.as_str(), next.start), ("bob", at("2026-03-30T07:00:00Z")));
    }

    #[test]
    fn gaps_before_the_first_rotation_and_outside_overrides() {
        let only_overrides = schedule(
            "UTC",
            Vec::new(),
            &[("alice", "2026-05-01T00:00:00Z", "2026-05-02T00:00:00Z")],
        )
        .expect("schedule");
        assert_eq!(only_overrides.on_call(at("2026-04-30T23:59:59Z")), None);
        assert_eq!(
            only_overrides.on_call(at("2026-05-01T00:00:00Z")).map(|s| s.person),
            Some("alice".to_owned())
        );
        assert_eq!(only_overrides.on_call(at("2026-05-02T00:00:00Z")), None);
        // In a gap, the next handoff is the next person on call.
        assert_eq!(
            only_overrides
                .next_handoff(at("2026-04-20T00:00:00Z"))
                .map(|s| s.start),
            Some(at("2026-05-01T00:00:00Z"))
        );
        assert_eq!(only_overrides.next_handoff(at("2026-05-01T01:00:00Z")), None);
        let empty = schedule("UTC", Vec::new(), &[]).expect("schedule");
        assert!(empty.shifts(at("2026-01-01T00:00:00Z"), at("2027-01-01T00:00:00Z")).is_empty());
    }

    #[test]
    fn a_later_rotation_takes_over_at_its_first_handoff() {
        let s = schedule(
            "Europe/Berlin",
            vec![
                rotation(&["alice", "bob"], "weekly", "Mon 09:00", "2026-03-02"),
                rotation(&["carol"], "daily", "18:00", "2026-03-11"),
            ],
            &[],
        )
        .expect("schedule");
        // bob's week (from Monday the 9th) ends when carol's rotation starts, 18:00 on the
        // 11th.
        let shift = s.on_call(at("2026-03-10T12:00:00Z")).expect("bob");
        assert_eq!(
            (shift.person.as_str(), shift.end),
            ("bob", at("2026-03-11T17:00:00Z"))
        );
        assert_eq!(
            s.on_call(at("2026-03-11T17:00:00Z")).map(|s| s.person),
            Some("carol".to_owned())
        );
        let out_of_order = schedule(
            "Europe/Berlin",
            vec![
                rotation(&["alice"], "daily", "09:00", "2026-03-11"),
                rotation(&["bob"], "daily", "09:00", "2026-03-02"),
            ],
            &[],
        )
        .expect_err("out of order");
        assert_eq!(out_of_order.0, ".rotations[1].start");
    }

    #[test]
    fn shifts_are_ordered_without_overlaps_and_cover_everything() {
        let s = schedule(
            "America/New_York",
            vec![
                rotation(&["alice", "bob", "carol"], "12h", "08:00", "2026-01-01"),
                rotation(&["bob", "alice"], "weekly", "Sun 02:30", "2026-06-01"),
            ],
            &[
                ("carol", "2026-03-07T20:00:00-05:00", "2026-03-09T10:00:00-04:00"),
                ("alice", "2026-10-31T22:00:00-04:00", "2026-11-01T01:30:00-05:00"),
                ("bob", "2026-03-08T00:00:00-05:00", "2026-03-08T12:00:00-04:00"),
            ],
        )
        .expect("schedule");
        let (from, until) = (at("2026-01-01T13:00:00Z"), at("2027-01-01T00:00:00Z"));
        let shifts = s.shifts(from, until);
        assert!(shifts.len() > 300, "{}", shifts.len());
        assert!(shifts[0].start <= from && shifts.last().expect("last").end >= until);
        for pair in shifts.windows(2) {
            assert_eq!(pair[0].end, pair[1].start, "{pair:?}");
            assert!(pair[0].start < pair[0].end, "{pair:?}");
        }
        // Every shift of the 12-hour rotation starts at 08:00 or 20:00 New York time.
        for shift in &shifts {
            if matches!(shift.source, Source::Rotation { index: 0, .. }) {
                let local = s.time_zone.to_datetime(shift.start);
                assert!(
                    matches!(local.hour(), 8 | 20) || s.overrides.iter().any(|o| o.1 == shift.start),
                    "{shift:?} at {local}"
                );
            }
        }
        // Asking for any sub-range gives the same shifts.
        let part = s.shifts(at("2026-03-08T06:00:00Z"), at("2026-03-10T00:00:00Z"));
        let same: Vec<&Shift> = shifts
            .iter()
            .filter(|x| x.end > at("2026-03-08T06:00:00Z") && x.start < at("2026-03-10T00:00:00Z"))
            .collect();
        assert_eq!(part.iter().collect::<Vec<_>>(), same);
    }

    #[test]
    fn bad_schedules_name_the_key() {
        let cases: Vec<(ScheduleConfig, &str, &str)> = vec![
            (
                ScheduleConfig {
                    time_zone: "Mars/Olympus_Mons".into(),
                    rotations: Vec::new(),
                    overrides: Vec::new(),
                },
                ".time_zone",
                "not a known IANA time zone",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&["alice", "dave"], "daily", "09:00", "2026-01-01")],
                    overrides: Vec::new(),
                },
                ".rotations[0].members[1]",
                "no person is named \"dave\"",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&[], "daily", "09:00", "2026-01-01")],
                    overrides: Vec::new(),
                },
                ".rotations[0].members",
                "at least one member",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&["alice"], "weekly", "09:00", "2026-01-01")],
                    overrides: Vec::new(),
                },
                ".rotations[0].handoff",
                "not a weekday and a time",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&["alice"], "daily", "9am", "2026-01-01")],
                    overrides: Vec::new(),
                },
                ".rotations[0].handoff",
                "not a time of day",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&["alice"], "30m", "09:00", "2026-01-01")],
                    overrides: Vec::new(),
                },
                ".rotations[0].every",
                "at least 1h",
            ),
            (
                ScheduleConfig {
                    time_zone: "UTC".into(),
                    rotations: vec![rotation(&["alice"], "daily", "09:00", "01/02/2026")],
                    overrides: Vec::new(),
                },
                ".rotations[0].start",
                "not a date",
            ),
        ];
        for (config, key, message) in cases {
            let error = Schedule::new("primary", &config, &people(&["alice"])).expect_err(key);
            assert_eq!(error.0, key, "{error:?}");
            assert!(error.1.contains(message), "{error:?}");
        }
        let error = schedule("UTC", Vec::new(), &[("zoe", "2026-01-01T00:00:00Z", "2026-01-02T00:00:00Z")])
            .expect_err("unknown person");
        assert_eq!(error.0, ".overrides[0].person");
        let error = schedule("UTC", Vec::new(), &[("alice", "2026-01-02T00:00:00Z", "2026-01-02T00:00:00Z")])
            .expect_err("empty override");
        assert_eq!(error.0, ".overrides[0].until");
        let error = schedule("UTC", Vec::new(), &[("alice", "2026-01-02T00:00:00", "2026-01-03T00:00:00Z")])
            .expect_err("no offset");
        assert_eq!(error.0, ".overrides[0].from");
    }
}
