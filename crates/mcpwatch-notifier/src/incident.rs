//! Incidents and their escalation: an alert group routed to an escalation policy opens an
//! incident that tells the policy's first level at once and each next level after its
//! delay, while it fires unacknowledged. Acknowledging stops the climb and is announced to
//! every channel told; resolving stops it and sends the resolve to every channel told.
//!
//! A level with a schedule tells whoever is on call in it at that instant, through each of
//! their contacts: the incident's list of who was told then holds `<channel>/<person>` (see
//! [`told_entry`]), so that the acknowledgement and the resolve reach the same person the
//! same way. Nobody on call: the level's channels are told, the message says so, and a
//! level with no channels of its own lets the next level be told at once.
//!
//! The decisions are made here, on plain rows; each store loads the row, applies one of
//! these functions and writes the row and the deliveries it asks for in one transaction,
//! so that a restart (or another replica) neither skips nor repeats a level.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config::NotifierConfig;
use crate::severity::Severities;
use crate::schedule::{People, Schedule, Schedules, instant};
use crate::time::format_rfc3339;
use crate::time::millis;
use crate::timeline::{AlertBrief, Note, kind};

/// One level of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Level {
    /// Who it is.
    pub name: Option<String>,
    /// How long after the previous level it is told (zero for the first).
    pub after: Duration,
    /// Its channels.
    pub channels: Vec<String>,
    /// The schedule whose on-call person it tells.
    pub schedule: Option<OnCallTarget>,
}

/// A level's schedule, and the people of the configuration it came with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OnCallTarget {
    /// The schedule.
    pub schedule: Arc<Schedule>,
    /// Everyone, with their contacts.
    pub people: Arc<People>,
}

/// Where a level's message goes at one instant.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Targets {
    /// Each channel, with the person the delivery is for (`None`: the channel's own
    /// recipients): the level's channels, then the contacts of whoever is on call.
    pub to: Vec<(String, Option<String>)>,
    /// The level's schedule.
    pub schedule: Option<String>,
    /// Nobody was on call in it.
    pub nobody_on_call: bool,
}

impl Level {
    /// Where this level's message goes at `now` (Unix ms).
    pub fn targets(&self, now: i64) -> Targets {
        let mut to: Vec<(String, Option<String>)> =
            self.channels.iter().map(|c| (c.clone(), None)).collect();
        let Some(target) = &self.schedule else {
            return Targets {
                to,
                ..Targets::default()
            };
        };
        let on_call = target.schedule.on_call(instant(now));
        let person = on_call
            .as_ref()
            .and_then(|shift| Some((&shift.person, target.people.get(&shift.person)?)));
        if let Some((key, person)) = person {
            to.extend(
                person
                    .contacts
                    .iter()
                    .map(|c| (c.channel.clone(), Some(key.clone()))),
            );
        }
        Targets {
            to,
            schedule: Some(target.schedule.name.clone()),
            nobody_on_call: person.is_none(),
        }
    }

    /// The channels a message with no incident behind it goes to at `now` (a maintenance
    /// window's hold, a resolve of an incident never opened): the level's own channels, or
    /// when it has none, those of the on-call person's contacts, with the channels' own
    /// recipients.
    pub fn plain_channels(&self, now: i64) -> Vec<String> {
        if !self.channels.is_empty() {
            return self.channels.clone();
        }
        let mut channels = Vec::new();
        for (channel, _) in self.targets(now).to {
            if !channels.contains(&channel) {
                channels.push(channel);
            }
        }
        channels
    }
}

/// How an incident's list of who was told names a delivery: the channel, or for a person
/// told through one of their contacts, `<channel>/<person>` (neither a channel name nor a
/// person's key holds a `/`).
pub fn told_entry(channel: &str, person: Option<&str>) -> String {
    match person {
        Some(person) => format!("{channel}/{person}"),
        None => channel.to_owned(),
    }
}

/// The channel and person of an entry [`told_entry`] wrote.
pub fn parse_told(entry: &str) -> (&str, Option<&str>) {
    match entry.split_once('/') {
        Some((channel, person)) => (channel, Some(person)),
        None => (entry, None),
    }
}

/// An escalation policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Its name.
    pub name: String,
    /// Its levels, at least one.
    pub levels: Vec<Level>,
    /// How often the last level is told again until someone acknowledges.
    pub repeat_last_level: Option<Duration>,
    /// The severity scale: how often an open incident is told a status update.
    pub severities: Arc<Severities>,
    /// Whether the first level waits for an opening incident's remediation to end.
    pub wait_for_remediation: bool,
}

/// Every policy, by name.
pub type Policies = BTreeMap<String, Policy>;

impl Policy {
    /// The policies of a checked configuration, with its schedules.
    pub fn all(config: &NotifierConfig, schedules: &Schedules) -> Policies {
        let severities = Arc::new(Severities::new(&config.severities));
        config
            .escalation_policies
            .iter()
            .map(|(name, policy)| {
                let levels = policy
                    .levels
                    .iter()
                    .map(|level| Level {
                        name: level.name.clone(),
                        after: level.after.unwrap_or_default(),
                        channels: level.channels.clone(),
                        schedule: level.schedule.as_ref().and_then(|name| {
                            Some(OnCallTarget {
                                schedule: schedules.schedules.get(name)?.clone(),
                                people: schedules.people.clone(),
                            })
                        }),
                    })
                    .collect();
                (
                    name.clone(),
                    Policy {
                        name: name.clone(),
                        levels,
                        repeat_last_level: policy.repeat_last_level,
                        severities: severities.clone(),
                        wait_for_remediation: policy.wait_for_remediation,
                    },
                )
            })
            .collect()
    }

    /// How long after level `level` (from 0) was told the next telling is due, if any.
    fn next_delay(&self, level: usize) -> Option<Duration> {
        match self.levels.get(level + 1) {
            Some(next) => Some(next.after),
            None => self.repeat_last_level,
        }
    }

    fn level(&self, level: usize) -> Option<&Level> {
        self.levels.get(level).or_else(|| self.levels.last())
    }

    /// How often an open, unacknowledged incident of `severity` is told a status update.
    fn update_interval(&self, severity: Option<&str>) -> Option<Duration> {
        self.severities.named(severity?)?.updates_every
    }
}

/// What a delivery of an incident (or a maintenance summary) says besides the alerts.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Event {
    /// The incident's alerts, told to a level.
    Incident {
        /// Incident id.
        incident: i64,
        /// Its policy.
        policy: String,
        /// The level told, from 1.
        level: u32,
        /// The level's name.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        level_name: Option<String>,
        /// Why.
        step: Step,
        /// The incident's acknowledgement generation (links carry it).
        generation: i64,
        /// Who resolved it by hand.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
        /// The person this delivery is for: on call in the level's schedule, told through
        /// their contact on the delivery's channel.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
        /// The level's schedule, on the deliveries it concerns: with `person`, the schedule
        /// they are on call in; without, nobody was on call in it.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        schedule: Option<String>,
    },
    /// Someone acknowledged the incident.
    Acknowledged {
        /// Incident id.
        incident: i64,
        /// Its policy.
        policy: String,
        /// Who.
        by: String,
        /// The generation after the acknowledgement.
        generation: i64,
        /// The person told of the incident this announcement is for (see
        /// [`Event::Incident`]).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
    },
    /// Someone took the acknowledgement back: the climb goes on.
    Unacknowledged {
        /// Incident id.
        incident: i64,
        /// Its policy.
        policy: String,
        /// Who.
        by: String,
        /// The generation after.
        generation: i64,
        /// The person told of the incident this announcement is for.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        person: Option<String>,
    },
    /// A maintenance window ended: what it held, as one message.
    Summary {
        /// The window's key (a configured window's name, or `#<id>` for a one-off one).
        window: String,
        /// The held notifications and, in each, the alerts held for this channel.
        held: Vec<(i64, Vec<usize>)>,
    },
}

/// Why an incident's alerts are told.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    /// The incident opened: its first level.
    Opened,
    /// Nobody acknowledged in time: the next level.
    Escalated,
    /// The last level, again.
    Repeated,
    /// The group changed (an alert joined or resolved): the current level.
    Update,
    /// Every alert resolved (or someone resolved it by hand): every channel told.
    Resolved,
    /// Still open and unacknowledged: a status update to every channel told.
    Status,
}

impl Event {
    /// The incident this event is about.
    pub fn incident(&self) -> Option<i64> {
        match self {
            Event::Incident { incident, .. }
            | Event::Acknowledged { incident, .. }
            | Event::Unacknowledged { incident, .. } => Some(*incident),
            Event::Summary { .. } => None,
        }
    }

    /// The person this delivery is for, if it is for one.
    pub fn person(&self) -> Option<&str> {
        match self {
            Event::Incident { person, .. }
            | Event::Acknowledged { person, .. }
            | Event::Unacknowledged { person, .. } => person.as_deref(),
            Event::Summary { .. } => None,
        }
    }

    /// The event for `to` (a person, or the channel's own recipients).
    fn to(mut self, to: Option<&str>) -> Self {
        match &mut self {
            Event::Incident { person, .. }
            | Event::Acknowledged { person, .. }
            | Event::Unacknowledged { person, .. } => *person = to.map(str::to_owned),
            Event::Summary { .. } => {}
        }
        self
    }

    fn set_incident(&mut self, id: i64) {
        match self {
            Event::Incident { incident, .. }
            | Event::Acknowledged { incident, .. }
            | Event::Unacknowledged { incident, .. } => *incident = id,
            Event::Summary { .. } => {}
        }
    }

    /// As the stores keep it.
    pub fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// What [`Event::encode`] wrote; none when unreadable.
    pub fn decode(text: Option<&str>) -> Option<Self> {
        serde_json::from_str(text?).ok()
    }
}

/// An incident as the stores keep it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IncidentRow {
    /// Id (0 before it is first stored).
    pub id: i64,
    /// Its policy.
    pub policy: String,
    /// Alertmanager's receiver.
    pub receiver: String,
    /// The alert group.
    pub group_key: String,
    /// Firing (not resolved).
    pub open: bool,
    /// The highest level told, from 0.
    pub level: u32,
    /// Every channel told so far.
    pub told: Vec<String>,
    /// The latest notification of the group.
    pub notification_id: i64,
    /// Its alerts that climb this policy.
    pub alerts: Vec<usize>,
    /// When it opened, Unix ms.
    pub opened_at: i64,
    /// When the next level (or repeat) is due, Unix ms.
    pub next_at: Option<i64>,
    /// When it was acknowledged.
    pub acked_at: Option<i64>,
    /// By whom.
    pub acked_by: Option<String>,
    /// Counts acknowledgements and their withdrawals: a link signed for an earlier
    /// generation is refused as replayed.
    pub generation: i64,
    /// When it resolved.
    pub resolved_at: Option<i64>,
    /// Who resolved it by hand.
    pub resolved_by: Option<String>,
    /// Its severity: the most severe its alerts have had while it was open.
    pub severity: Option<String>,
    /// What it is about (its alerts' names).
    pub title: String,
    /// When the next status update is due, Unix ms.
    pub next_update_at: Option<i64>,
    /// The remediation actions the first level waits for (it is told when they end, or
    /// at `next_at` if they have not).
    pub waiting_for: Option<String>,
}

/// What a notification brings to one policy.
#[derive(Debug, Clone)]
pub struct Touch {
    /// The policy (as configured when the notification arrived).
    pub policy: Policy,
    /// Its alerts routed to this policy.
    pub alerts: Vec<usize>,
    /// Whether any of them fires.
    pub firing: bool,
    /// Channels that do not send resolved notifications.
    pub quiet_when_resolved: Vec<String>,
    /// The maintenance window holding every one of these alerts, if one does: no incident
    /// opens, and the first level hears of them in the window's summary.
    pub hold: Option<String>,
    /// The severity of the most severe of them that fires (of them all when none fires).
    pub severity: Option<String>,
    /// What they are about: the names of those firing.
    pub title: String,
    /// Them, as the timeline names them.
    pub briefs: Vec<AlertBrief>,
    /// The remediation actions of the routes the firing ones took: each runs once when
    /// an incident opens.
    pub remediations: Vec<String>,
    /// How long the first level waits for them at most (their longest timeout and a
    /// margin), when the policy waits.
    pub remediation_wait: Duration,
}

/// What to write: the row (when it changed) and the deliveries to make, each with the
/// incident's notification and alerts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Change {
    /// The row to store; `None`: nothing to store.
    pub row: Option<IncidentRow>,
    /// (channel, event) of each delivery; an event of a new incident gets its id once the
    /// row is stored ([`Change::with_id`]).
    pub tell: Vec<(String, Option<Event>)>,
    /// Without a row: the window the deliveries are held by.
    pub hold: Option<String>,
    /// What the incident's timeline records of it.
    pub notes: Vec<Note>,
    /// Remediation actions to queue for it (it just opened).
    pub remediate: Vec<String>,
}

impl Change {
    /// The events, with the id of the incident just stored.
    pub fn with_id(mut self, id: i64) -> Self {
        for (_, event) in &mut self.tell {
            if let Some(event) = event {
                event.set_incident(id);
            }
        }
        if let Some(row) = &mut self.row {
            row.id = id;
        }
        self
    }
}

fn at(now: i64, delay: Option<Duration>) -> Option<i64> {
    delay.map(|d| now.saturating_add(millis(d)))
}

fn incident_event(row: &IncidentRow, policy: &Policy, step: Step) -> Event {
    let level = usize::try_from(row.level).unwrap_or(0);
    Event::Incident {
        incident: row.id,
        policy: row.policy.clone(),
        level: row.level + 1,
        level_name: policy.level(level).and_then(|l| l.name.clone()),
        step,
        generation: row.generation,
        by: None,
        person: None,
        schedule: None,
    }
}

/// Tells the level the incident is at, as of `now`: its channels, and whoever is on call
/// in its schedule through each of their contacts.
fn tell_level(
    row: &mut IncidentRow,
    policy: &Policy,
    step: Step,
    now: i64,
) -> Vec<(String, Option<Event>)> {
    let level = usize::try_from(row.level).unwrap_or(0);
    let targets = policy
        .level(level)
        .map(|l| l.targets(now))
        .unwrap_or_default();
    let event = incident_event(row, policy, step);
    if targets.nobody_on_call {
        tracing::warn!(
            incident = row.id,
            group_key = %row.group_key,
            policy = %policy.name,
            level = row.level + 1,
            schedule = targets.schedule.as_deref().unwrap_or_default(),
            channels = targets.to.len(),
            "Nobody is on call in the level's schedule; only the level's own channels are told."
        );
    }
    targets
        .to
        .into_iter()
        .map(|(channel, person)| {
            let entry = told_entry(&channel, person.as_deref());
            if !row.told.contains(&entry) {
                row.told.push(entry);
            }
            let mut event = event.clone().to(person.as_deref());
            if let Event::Incident { schedule, .. } = &mut event
                && (person.is_some() || targets.nobody_on_call)
            {
                schedule.clone_from(&targets.schedule);
            }
            (channel, Some(event))
        })
        .collect()
}

/// Every delivery of who was told, each with `event` (for the person it names).
fn tell_told(
    row: &IncidentRow,
    event: &Event,
    quiet: &[String],
) -> Vec<(String, Option<Event>)> {
    row.told
        .iter()
        .map(|entry| parse_told(entry))
        .filter(|(channel, _)| !quiet.iter().any(|q| q == channel))
        .map(|(channel, person)| (channel.to_owned(), Some(event.clone().to(person))))
        .collect()
}

/// The timeline's entries of deliveries queued: one per channel, naming the person it
/// is for when it is for one.
fn told_notes(tell: &[(String, Option<Event>)], level: Option<u32>) -> Vec<Note> {
    tell.iter()
        .map(|(channel, event)| {
            let note = Note::new(kind::TOLD).channel(channel.clone());
            let note = match level {
                Some(level) => note.level(level),
                None => note,
            };
            match event {
                Some(Event::Incident {
                    person: Some(person),
                    schedule,
                    ..
                }) => note.detail(match schedule {
                    Some(schedule) => format!("for {person}, on call in {schedule}"),
                    None => format!("for {person}"),
                }),
                Some(Event::Incident {
                    person: None,
                    schedule: Some(schedule),
                    ..
                }) => note.detail(format!("nobody was on call in {schedule}")),
                Some(
                    Event::Acknowledged {
                        person: Some(person),
                        ..
                    }
                    | Event::Unacknowledged {
                        person: Some(person),
                        ..
                    },
                ) => note.detail(format!("for {person}")),
                _ => note,
            }
        })
        .collect()
}

/// A level that told nobody (nobody on call, and no channels of its own) lets the next
/// level be told at once.
fn nobody_told(row: &mut IncidentRow, policy: &Policy, tell: &[(String, Option<Event>)], now: i64) {
    let level = usize::try_from(row.level).unwrap_or(0);
    if tell.is_empty() && level + 1 < policy.levels.len() {
        row.next_at = Some(now);
    }
}

/// The more severe of a stored severity and a new one, on the policy's scale.
fn worse(policy: &Policy, stored: Option<&str>, new: Option<&str>) -> Option<String> {
    let scale = &policy.severities;
    let stored_level = stored.and_then(|s| scale.named(s));
    let new_level = new.and_then(|s| scale.named(s));
    match Severities::worst(stored_level, new_level) {
        Some(level) => Some(level.name.clone()),
        None => stored.or(new).map(str::to_owned),
    }
}

/// A notification of the group arrived: `open` is the group's open incident under this
/// policy, if any.
pub fn on_notification(
    open: Option<IncidentRow>,
    touch: &Touch,
    receiver: &str,
    group_key: &str,
    notification_id: i64,
    now: i64,
) -> Change {
    let policy = &touch.policy;
    let first_level = || {
        policy
            .levels
            .first()
            .map(|l| l.plain_channels(now))
            .unwrap_or_default()
    };
    let mut notes = Vec::new();
    match open {
        // An incident already open goes on whatever window began since; a new one does
        // not open inside a window that holds its alerts.
        None if touch.hold.is_some() => Change {
            tell: first_level().into_iter().map(|c| (c, None)).collect(),
            hold: touch.hold.clone(),
            ..Change::default()
        },
        None if touch.firing => {
            let mut row = IncidentRow {
                id: 0,
                policy: policy.name.clone(),
                receiver: receiver.to_owned(),
                group_key: group_key.to_owned(),
                open: true,
                level: 0,
                told: Vec::new(),
                notification_id,
                alerts: touch.alerts.clone(),
                opened_at: now,
                next_at: at(now, policy.next_delay(0)),
                acked_at: None,
                acked_by: None,
                generation: 0,
                resolved_at: None,
                resolved_by: None,
                severity: touch.severity.clone(),
                title: touch.title.clone(),
                next_update_at: at(now, policy.update_interval(touch.severity.as_deref())),
                waiting_for: None,
            };
            notes.push(Note::new(kind::OPENED).alerts(touch.briefs.clone()));
            let waits = policy.wait_for_remediation && !touch.remediations.is_empty();
            for action in &touch.remediations {
                let note = Note::new(kind::REMEDIATION_QUEUED).detail(if waits {
                    format!("{action}; level 1 is told when it ends")
                } else {
                    action.clone()
                });
                notes.push(note);
            }
            let tell = if waits {
                row.waiting_for = Some(touch.remediations.join(", "));
                row.next_at = at(now, Some(touch.remediation_wait));
                Vec::new()
            } else {
                let tell = tell_level(&mut row, policy, Step::Opened, now);
                nobody_told(&mut row, policy, &tell, now);
                notes.extend(told_notes(&tell, Some(row.level + 1)));
                tell
            };
            Change {
                row: Some(row),
                tell,
                hold: None,
                notes,
                remediate: touch.remediations.clone(),
            }
        }
        // Resolved with no incident open (it was never seen firing, or was pruned): the
        // first level hears it, as a plain notification.
        None => Change {
            tell: first_level()
                .into_iter()
                .filter(|c| !touch.quiet_when_resolved.contains(c))
                .map(|c| (c, None))
                .collect(),
            ..Change::default()
        },
        Some(mut row) if touch.firing => {
            // The group changed: the level the incident is at hears it; the climb goes on
            // (or stays stopped when acknowledged) from where it is.
            row.notification_id = notification_id;
            row.alerts.clone_from(&touch.alerts);
            row.severity = worse(policy, row.severity.as_deref(), touch.severity.as_deref());
            if !touch.title.is_empty() {
                row.title.clone_from(&touch.title);
            }
            if row.acked_at.is_none() && row.next_update_at.is_none() {
                row.next_update_at = at(now, policy.update_interval(row.severity.as_deref()));
            }
            notes.push(Note::new(kind::ALERTS_CHANGED).alerts(touch.briefs.clone()));
            let tell = tell_level(&mut row, policy, Step::Update, now);
            notes.extend(told_notes(&tell, Some(row.level + 1)));
            Change {
                row: Some(row),
                tell,
                hold: None,
                notes,
                remediate: Vec::new(),
            }
        }
        Some(mut row) => {
            row.notification_id = notification_id;
            row.alerts.clone_from(&touch.alerts);
            close(&mut row, now);
            notes.push(Note::new(kind::RESOLVED).alerts(touch.briefs.clone()));
            let event = incident_event(&row, policy, Step::Resolved);
            let tell = tell_told(&row, &event, &touch.quiet_when_resolved);
            notes.extend(told_notes(&tell, None));
            Change {
                row: Some(row),
                tell,
                hold: None,
                notes,
                remediate: Vec::new(),
            }
        }
    }
}

fn close(row: &mut IncidentRow, now: i64) {
    row.open = false;
    row.next_at = None;
    row.next_update_at = None;
    row.waiting_for = None;
    row.resolved_at = Some(now);
}

/// The first level's wait for the incident's remediation is over (`why`): tell it now,
/// if the incident is still open, and start the climb from there.
pub fn waited(mut row: IncidentRow, policy: Option<&Policy>, now: i64, why: &str) -> Change {
    if row.waiting_for.take().is_none() || !row.open {
        return store_only(row);
    }
    let Some(policy) = policy else {
        row.next_at = None;
        return store_only(row);
    };
    row.next_at = at(now, policy.next_delay(0));
    let notes = vec![Note::new(kind::ESCALATED).level(1).detail(why)];
    told_level(row, policy, Step::Opened, now, notes)
}

/// Tells the level the incident is at (see [`tell_level`]), after `notes`: a level that
/// told nobody lets the next be told at once.
fn told_level(
    mut row: IncidentRow,
    policy: &Policy,
    step: Step,
    now: i64,
    mut notes: Vec<Note>,
) -> Change {
    let tell = tell_level(&mut row, policy, step, now);
    nobody_told(&mut row, policy, &tell, now);
    notes.extend(told_notes(&tell, Some(row.level + 1)));
    Change {
        row: Some(row),
        tell,
        hold: None,
        notes,
        remediate: Vec::new(),
    }
}

/// A change that only stores the row.
fn store_only(row: IncidentRow) -> Change {
    Change {
        row: Some(row),
        ..Change::default()
    }
}

/// The incident's next level is due: tell it (or the last level again), and set the next
/// time. A policy no longer configured stops the climb.
pub fn escalate(mut row: IncidentRow, policy: Option<&Policy>, now: i64) -> Change {
    let Some(policy) = policy else {
        row.next_at = None;
        row.next_update_at = None;
        return store_only(row);
    };
    if !row.open || row.acked_at.is_some() {
        row.next_at = None;
        return store_only(row);
    }
    let level = usize::try_from(row.level).unwrap_or(0);
    let (step, note) = if level + 1 < policy.levels.len() {
        row.level += 1;
        (Step::Escalated, kind::ESCALATED)
    } else if policy.repeat_last_level.is_some() {
        // A policy shortened since: the last level it has.
        row.level = u32::try_from(policy.levels.len().saturating_sub(1)).unwrap_or(0);
        (Step::Repeated, kind::REPEATED)
    } else {
        row.next_at = None;
        return store_only(row);
    };
    row.next_at = at(
        now,
        policy.next_delay(usize::try_from(row.level).unwrap_or(0)),
    );
    let level_name = policy
        .level(usize::try_from(row.level).unwrap_or(0))
        .and_then(|l| l.name.clone());
    let notes = vec![match level_name {
        Some(name) => Note::new(note).level(row.level + 1).detail(name),
        None => Note::new(note).level(row.level + 1),
    }];
    told_level(row, policy, step, now, notes)
}

/// A status update is due: every channel told hears that the incident is still open, and
/// the next one is set. An acknowledged or resolved incident gets none.
pub fn status_update(mut row: IncidentRow, policy: Option<&Policy>, now: i64) -> Change {
    let interval = policy.and_then(|p| p.update_interval(row.severity.as_deref()));
    let (Some(policy), Some(interval), true, None) = (policy, interval, row.open, row.acked_at)
    else {
        row.next_update_at = None;
        return store_only(row);
    };
    row.next_update_at = at(now, Some(interval));
    let event = incident_event(&row, policy, Step::Status);
    let mut notes = vec![Note::new(kind::STATUS_UPDATE).level(row.level + 1)];
    let tell = tell_told(&row, &event, &[]);
    notes.extend(told_notes(&tell, None));
    Change {
        row: Some(row),
        tell,
        hold: None,
        notes,
        remediate: Vec::new(),
    }
}

/// What is due of `row` at `now`: its next level, its status update, or both (the climb
/// first); and whether it climbed.
pub fn due(row: IncidentRow, policy: Option<&Policy>, now: i64) -> (Change, bool) {
    let mut change = if row.next_at.is_some_and(|t| t <= now) && row.waiting_for.is_some() {
        waited(row, policy, now, "the remediation gave no result in time")
    } else if row.next_at.is_some_and(|t| t <= now) {
        escalate(row, policy, now)
    } else {
        store_only(row)
    };
    let climbed = !change.tell.is_empty();
    if let Some(row) = change
        .row
        .take_if(|r| r.next_update_at.is_some_and(|t| t <= now))
    {
        if climbed {
            // The level just told says as much as an update: the next one counts from now.
            let mut row = row;
            row.next_update_at = at(
                now,
                policy.and_then(|p| p.update_interval(row.severity.as_deref())),
            );
            change.row = Some(row);
        } else {
            let update = status_update(row, policy, now);
            change.row = update.row;
            change.tell.extend(update.tell);
            change.notes.extend(update.notes);
        }
    }
    (change, climbed)
}

/// Acknowledge or take back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckAction {
    /// Acknowledge: the climb stops.
    Ack,
    /// Take the acknowledgement back: the climb goes on from the current level.
    Unack,
}

/// Why an acknowledgement changed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AckRefused {
    /// No such incident.
    #[error("no incident {0}")]
    NotFound(i64),
    /// The link was made before the incident was last acknowledged or taken back.
    #[error("the link was used already, or the incident was acknowledged or taken back since")]
    Replayed,
    /// It resolved.
    #[error("incident {0} has resolved")]
    Resolved(i64),
    /// Acknowledged already.
    #[error("incident {id} is acknowledged already (by {by})")]
    AlreadyAcknowledged {
        /// The incident.
        id: i64,
        /// By whom.
        by: String,
    },
    /// Not acknowledged.
    #[error("incident {0} is not acknowledged")]
    NotAcknowledged(i64),
}

/// An acknowledgement (or its withdrawal) to record.
#[derive(Debug, Clone)]
pub struct AckRequest {
    /// Which.
    pub action: AckAction,
    /// Who (a name, or where the link was followed).
    pub by: String,
    /// The generation a signed link carried; `None` through the authenticated API.
    pub generation: Option<i64>,
    /// When, Unix ms.
    pub now: i64,
}

/// Acknowledges `row` (or takes it back), announcing it to every channel told.
pub fn acknowledge(
    mut row: IncidentRow,
    request: &AckRequest,
    policy: Option<&Policy>,
) -> Result<Change, AckRefused> {
    if request.generation.is_some_and(|g| g != row.generation) {
        return Err(AckRefused::Replayed);
    }
    if !row.open {
        return Err(AckRefused::Resolved(row.id));
    }
    let (event, note) = match request.action {
        AckAction::Ack => {
            if row.acked_at.is_some() {
                return Err(AckRefused::AlreadyAcknowledged {
                    id: row.id,
                    by: row.acked_by.clone().unwrap_or_default(),
                });
            }
            row.acked_at = Some(request.now);
            row.acked_by = Some(request.by.clone());
            row.next_at = None;
            row.next_update_at = None;
            row.generation += 1;
            let event = Event::Acknowledged {
                incident: row.id,
                policy: row.policy.clone(),
                by: request.by.clone(),
                generation: row.generation,
                person: None,
            };
            (event, kind::ACKNOWLEDGED)
        }
        AckAction::Unack => {
            if row.acked_at.is_none() {
                return Err(AckRefused::NotAcknowledged(row.id));
            }
            row.acked_at = None;
            row.acked_by = None;
            row.generation += 1;
            row.next_at = policy.and_then(|p| {
                at(
                    request.now,
                    p.next_delay(usize::try_from(row.level).unwrap_or(0)),
                )
            });
            row.next_update_at = policy.and_then(|p| {
                at(request.now, p.update_interval(row.severity.as_deref()))
            });
            let event = Event::Unacknowledged {
                incident: row.id,
                policy: row.policy.clone(),
                by: request.by.clone(),
                generation: row.generation,
                person: None,
            };
            (event, kind::UNACKNOWLEDGED)
        }
    };
    let mut notes = vec![Note::new(note).by(request.by.clone())];
    let tell = tell_told(&row, &event, &[]);
    notes.extend(told_notes(&tell, None));
    Ok(Change {
        row: Some(row),
        tell,
        hold: None,
        notes,
        remediate: Vec::new(),
    })
}

/// Resolves `row` by hand: the climb and the updates stop, and every channel told hears
/// who resolved it. Its alerts may still fire: the group's next notification that fires
/// opens a new incident.
pub fn resolve_by_hand(
    mut row: IncidentRow,
    by: &str,
    now: i64,
    policy: Option<&Policy>,
    quiet_when_resolved: &[String],
) -> Result<Change, AckRefused> {
    if !row.open {
        return Err(AckRefused::Resolved(row.id));
    }
    close(&mut row, now);
    row.resolved_by = Some(by.to_owned());
    row.generation += 1;
    let mut event = match policy {
        Some(policy) => incident_event(&row, policy, Step::Resolved),
        None => Event::Incident {
            incident: row.id,
            policy: row.policy.clone(),
            level: row.level + 1,
            level_name: None,
            step: Step::Resolved,
            generation: row.generation,
            by: None,
            person: None,
            schedule: None,
        },
    };
    if let Event::Incident { by: who, .. } = &mut event {
        *who = Some(by.to_owned());
    }
    let mut notes = vec![Note::new(kind::RESOLVED).by(by)];
    let tell = tell_told(&row, &event, quiet_when_resolved);
    notes.extend(told_notes(&tell, None));
    Ok(Change {
        row: Some(row),
        tell,
        hold: None,
        notes,
        remediate: Vec::new(),
    })
}

/// An incident as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct IncidentView {
    /// Id.
    pub id: i64,
    /// `open`, `acknowledged` or `resolved`.
    pub state: &'static str,
    /// Its severity on the configured scale.
    pub severity: Option<String>,
    /// What it is about.
    pub title: String,
    /// Its policy.
    pub policy: String,
    /// The highest level told, from 1.
    pub level: u32,
    /// Alertmanager's receiver.
    pub receiver: String,
    /// The alert group.
    pub group_key: String,
    /// Channels told.
    pub told: Vec<String>,
    /// The latest notification.
    pub notification_id: i64,
    /// Its alerts under this policy.
    pub alerts: usize,
    /// Their indices in the latest notification's alerts.
    #[serde(skip)]
    pub alert_indices: Vec<usize>,
    /// RFC 3339.
    pub opened_at: String,
    /// When it opened, Unix ms.
    #[serde(skip)]
    pub opened_ms: i64,
    /// When the next level (or repeat) is due, RFC 3339.
    pub next_escalation_at: Option<String>,
    /// When the next status update is due, RFC 3339.
    pub next_update_at: Option<String>,
    /// The remediation actions the first level waits for before it is told.
    pub waiting_for: Option<String>,
    /// RFC 3339.
    pub acknowledged_at: Option<String>,
    /// When it was acknowledged, Unix ms.
    #[serde(skip)]
    pub acknowledged_ms: Option<i64>,
    /// Who acknowledged.
    pub acknowledged_by: Option<String>,
    /// RFC 3339.
    pub resolved_at: Option<String>,
    /// When it resolved, Unix ms.
    #[serde(skip)]
    pub resolved_ms: Option<i64>,
    /// Who resolved it by hand (none when its alerts resolved).
    pub resolved_by: Option<String>,
    /// The acknowledgement generation.
    pub generation: i64,
}

impl IncidentRow {
    /// `open`, `acknowledged` or `resolved`.
    pub fn state(&self) -> &'static str {
        match (self.open, self.acked_at.is_some()) {
            (false, _) => "resolved",
            (true, true) => "acknowledged",
            (true, false) => "open",
        }
    }

    /// As the API shows it.
    pub fn view(&self) -> IncidentView {
        IncidentView {
            id: self.id,
            state: self.state(),
            severity: self.severity.clone(),
            title: self.title.clone(),
            policy: self.policy.clone(),
            level: self.level + 1,
            receiver: self.receiver.clone(),
            group_key: self.group_key.clone(),
            told: self.told.clone(),
            notification_id: self.notification_id,
            alerts: self.alerts.len(),
            alert_indices: self.alerts.clone(),
            opened_at: format_rfc3339(self.opened_at),
            opened_ms: self.opened_at,
            next_escalation_at: self.next_at.map(format_rfc3339),
            next_update_at: self.next_update_at.map(format_rfc3339),
            waiting_for: self.waiting_for.clone(),
            acknowledged_at: self.acked_at.map(format_rfc3339),
            acknowledged_ms: self.acked_at,
            acknowledged_by: self.acked_by.clone(),
            resolved_at: self.resolved_at.map(format_rfc3339),
            resolved_ms: self.resolved_at,
            resolved_by: self.resolved_by.clone(),
            generation: self.generation,
        }
    }
}
#[cfg(test)]
mod tests {
    use super::*;

    fn policy(repeat: Option<u64>) -> Policy {
        let level = |after: u64, channels: &[&str]| Level {
            name: None,
            after: Duration::from_secs(after),
            channels: channels.iter().map(|c| (*c).to_owned()).collect(),
            schedule: None,
        };
        Policy {
            name: "default".into(),
            levels: vec![
                level(0, &["chat", "pager"]),
                level(900, &["senior"]),
                level(1800, &["manager"]),
            ],
            repeat_last_level: repeat.map(Duration::from_secs),
            severities: Arc::default(),
            wait_for_remediation: false,
        }
    }

    fn touch(firing: bool, repeat: Option<u64>) -> Touch {
        Touch {
            policy: policy(repeat),
            alerts: vec![0, 1],
            firing,
            quiet_when_resolved: vec!["pager".into()],
            hold: None,
            severity: Some("critical".into()),
            title: "HighErrorRate".into(),
            briefs: Vec::new(),
            remediations: Vec::new(),
            remediation_wait: Duration::ZERO,
        }
    }

    fn channels(change: &Change) -> Vec<&str> {
        change.tell.iter().map(|(c, _)| c.as_str()).collect()
    }

    #[test]
    fn climbs_level_by_level_then_stops_or_repeats() {
        let opened = on_notification(None, &touch(true, None), "r", "g", 1, 0).with_id(7);
        assert_eq!(channels(&opened), ["chat", "pager"]);
        let row = opened.row.clone().expect("row");
        assert_eq!((row.id, row.level, row.next_at), (7, 0, Some(900_000)));
        assert!(matches!(
            opened.tell[0].1,
            Some(Event::Incident {
                incident: 7,
                level: 1,
                step: Step::Opened,
                ..
            })
        ));
        let policy = policy(None);
        let second = escalate(row, Some(&policy), 900_000);
        assert_eq!(channels(&second), ["senior"]);
        let row = second.row.expect("row");
        assert_eq!((row.level, row.next_at), (1, Some(2_700_000)));
        let third = escalate(row, Some(&policy), 2_700_000);
        assert_eq!(channels(&third), ["manager"]);
        let row = third.row.expect("row");
        assert_eq!(row.next_at, None);
        assert_eq!(row.told, ["chat", "pager", "senior", "manager"]);
        assert!(
            escalate(row.clone(), Some(&policy), 9_000_000)
                .tell
                .is_empty()
        );

        let repeating = policy_repeat(row, 60);
        assert_eq!(channels(&repeating), ["manager"]);
        assert_eq!(repeating.row.expect("row").next_at, Some(9_060_000));
    }

    fn policy_repeat(row: IncidentRow, every: u64) -> Change {
        escalate(row, Some(&policy(Some(every))), 9_000_000)
    }

    #[test]
    fn resolving_tells_every_channel_told_and_acknowledging_stops_the_climb() {
        let row = on_notification(None, &touch(true, None), "r", "g", 1, 0)
            .with_id(3)
            .row
            .expect("row");
        let row = escalate(row, Some(&policy(None)), 900_000)
            .row
            .expect("row");
        // An update goes to the current level only.
        let update = on_notification(Some(row.clone()), &touch(true, None), "r", "g", 2, 1000);
        assert_eq!(channels(&update), ["senior"]);
        // The resolve goes to everyone told, but not to a channel that sends no resolved.
        let resolved = on_notification(Some(row.clone()), &touch(false, None), "r", "g", 3, 2000);
        assert_eq!(channels(&resolved), ["chat", "senior"]);
        let closed = resolved.row.expect("row");
        assert!(!closed.open && closed.next_at.is_none());
        assert_eq!(closed.state(), "resolved");

        let ack = AckRequest {
            action: AckAction::Ack,
            by: "alice".into(),
            generation: Some(0),
            now: 5000,
        };
        let acked = acknowledge(row.clone(), &ack, Some(&policy(None))).expect("ack");
        assert_eq!(channels(&acked), ["chat", "pager", "senior"]);
        let acked_row = acked.row.expect("row");
        assert_eq!(
            (acked_row.next_at, acked_row.generation, acked_row.state()),
            (None, 1, "acknowledged")
        );
        // The same link again: replayed. Through the API: acknowledged already.
        assert_eq!(
            acknowledge(acked_row.clone(), &ack, None),
            Err(AckRefused::Replayed)
        );
        let api = AckRequest {
            generation: None,
            ..ack.clone()
        };
        assert!(matches!(
            acknowledge(acked_row.clone(), &api, None),
            Err(AckRefused::AlreadyAcknowledged { .. })
        ));
        // An escalation due meanwhile does nothing.
        assert!(
            escalate(acked_row.clone(), Some(&policy(None)), 9_000_000)
                .tell
                .is_empty()
        );
        // A new alert joins: the current level hears it, the climb stays stopped.
        let joined = on_notification(
            Some(acked_row.clone()),
            &touch(true, None),
            "r",
            "g",
            4,
            6000,
        );
        assert_eq!(channels(&joined), ["senior"]);
        assert_eq!(joined.row.expect("row").next_at, None);
        // Taken back: the climb resumes from the current level.
        let unack = AckRequest {
            action: AckAction::Unack,
            by: "bob".into(),
            generation: None,
            now: 10_000,
        };
        let resumed = acknowledge(acked_row, &unack, Some(&policy(None)))
            .expect("unack")
            .row
            .expect("row");
        assert_eq!((resumed.next_at, resumed.generation), (Some(1_810_000), 2));
        assert_eq!(
            acknowledge(closed, &api, None),
            Err(AckRefused::Resolved(3))
        );
    }

    fn updating_policy(every: u64) -> Policy {
        let config: crate::severity::SeverityConfig = mcpwatch_core::config::parse_yaml(
            &format!(
                "levels:\n  - {{name: P0, values: [critical], status: outage, updates_every: {every}s}}\n"
            ),
            std::path::Path::new("t.yml"),
        )
        .expect("scale");
        Policy {
            severities: Arc::new(Severities::new(&config)),
            ..policy(None)
        }
    }

    fn kinds(change: &Change) -> Vec<&str> {
        change.notes.iter().map(|n| n.kind).collect()
    }

    #[test]
    fn status_updates_until_acknowledged_and_the_timeline_of_each_step() {
        let policy = updating_policy(60);
        let touch = Touch {
            policy: policy.clone(),
            severity: Some("P0".into()),
            ..touch(true, None)
        };
        let opened = on_notification(None, &touch, "r", "g", 1, 0).with_id(5);
        assert_eq!(kinds(&opened), ["opened", "told", "told"]);
        let row = opened.row.expect("row");
        assert_eq!((row.next_at, row.next_update_at), (Some(900_000), Some(60_000)));
        // The update is due first: every channel told hears it; the next one is set.
        let (update, climbed) = due(row, Some(&policy), 60_000);
        assert!(!climbed);
        assert_eq!(channels(&update), ["chat", "pager"]);
        assert!(update.tell.iter().all(|(_, e)| matches!(
            e,
            Some(Event::Incident {
                step: Step::Status,
                ..
            })
        )));
        assert_eq!(kinds(&update), ["status_update", "told", "told"]);
        let row = update.row.expect("row");
        assert_eq!(row.next_update_at, Some(120_000));
        // Both due at once: the level is told, the update waits a full interval.
        let (both, climbed) = due(
            IncidentRow {
                next_update_at: Some(900_000),
                ..row.clone()
            },
            Some(&policy),
            900_000,
        );
        assert!(climbed);
        assert_eq!(channels(&both), ["senior"]);
        assert_eq!(kinds(&both), ["escalated", "told"]);
        assert_eq!(both.notes[0].detail, None);
        assert_eq!(both.row.expect("row").next_update_at, Some(960_000));
        // Acknowledged: no more updates; taken back: a full interval later.
        let ack = AckRequest {
            action: AckAction::Ack,
            by: "alice".into(),
            generation: None,
            now: 100_000,
        };
        let acked = acknowledge(row, &ack, Some(&policy)).expect("ack");
        assert_eq!(kinds(&acked), ["acknowledged", "told", "told"]);
        assert_eq!(acked.notes[0].actor.as_deref(), Some("alice"));
        let acked = acked.row.expect("row");
        assert_eq!(acked.next_update_at, None);
        assert!(status_update(acked.clone(), Some(&policy), 200_000).tell.is_empty());
        let unack = AckRequest {
            action: AckAction::Unack,
            now: 300_000,
            ..ack
        };
        let resumed = acknowledge(acked, &unack, Some(&policy)).expect("unack");
        assert_eq!(resumed.row.expect("row").next_update_at, Some(360_000));
    }

    #[test]
    fn resolving_by_hand_tells_who_and_closes_once() {
        let row = on_notification(None, &touch(true, None), "r", "g", 1, 0)
            .with_id(9)
            .row
            .expect("row");
        let quiet = vec!["pager".to_owned()];
        let resolved = resolve_by_hand(row, "carol", 5000, Some(&policy(None)), &quiet)
            .expect("resolved");
        assert_eq!(channels(&resolved), ["chat"]);
        assert!(matches!(
            &resolved.tell[0].1,
            Some(Event::Incident { step: Step::Resolved, by: Some(by), .. }) if by == "carol"
        ));
        assert_eq!(kinds(&resolved), ["resolved", "told"]);
        let row = resolved.row.expect("row");
        assert_eq!(
            (row.open, row.next_at, row.next_update_at, row.resolved_by.as_deref()),
            (false, None, None, Some("carol"))
        );
        assert_eq!(
            resolve_by_hand(row, "carol", 6000, None, &quiet),
            Err(AckRefused::Resolved(9))
        );
    }

    /// Level 1 tells whoever is on call in `primary` (alice until 2026-03-02 09:00 UTC,
    /// then bob; nobody before 2026-02-23), level 2 the manager channel and nobody else.
    fn on_call_policy(level_1_channels: &str) -> Policy {
        let config = NotifierConfig::parse(
            &format!(
                "channels:\n  mail:\n    email: {{smarthost: 'mx:587', from: a@example.com, to: [team@example.com]}}\n\
                 \x20 chat:\n    slack: {{url: 'https://hooks.example.com/x'}}\n  manager:\n    log: {{}}\n\
                 people:\n  alice:\n    contacts: [{{channel: mail, address: alice@example.com}}, {{channel: chat, slack_member: U0ALICE}}]\n\
                 \x20 bob:\n    contacts: [{{channel: mail, address: bob@example.com}}]\n\
                 schedules:\n  primary:\n    time_zone: UTC\n    rotations:\n\
                 \x20     - {{members: [alice, bob], every: weekly, handoff: 'Mon 09:00', start: 2026-02-23}}\n\
                 escalation_policies:\n  p:\n    levels:\n      - {{schedule: primary, channels: {level_1_channels}}}\n\
                 \x20     - {{after: 15m, channels: [manager]}}\n"
            ),
            std::path::Path::new("notifier.yml"),
        )
        .expect("config");
        let schedules = Schedules::new(&config).expect("schedules");
        Policy::all(&config, &schedules).remove("p").expect("policy p")
    }

    fn ms(text: &str) -> i64 {
        text.parse::<jiff::Timestamp>()
            .expect("time")
            .as_millisecond()
    }

    fn persons(change: &Change) -> Vec<(&str, Option<&str>)> {
        change
            .tell
            .iter()
            .map(|(c, e)| (c.as_str(), e.as_ref().and_then(Event::person)))
            .collect()
    }

    #[test]
    fn a_schedule_level_tells_whoever_is_on_call_then_and_the_same_person_hears_the_rest() {
        let policy = on_call_policy("[]");
        let touch = Touch {
            policy: policy.clone(),
            alerts: vec![0],
            firing: true,
            quiet_when_resolved: Vec::new(),
            ..touch(true, None)
        };
        let opened_at = ms("2026-03-02T08:59:00Z");
        let opened = on_notification(None, &touch, "r", "g", 1, opened_at).with_id(5);
        assert_eq!(
            persons(&opened),
            [("mail", Some("alice")), ("chat", Some("alice"))]
        );
        assert!(matches!(
            &opened.tell[0].1,
            Some(Event::Incident { schedule: Some(s), person: Some(p), .. }) if s == "primary" && p == "alice"
        ));
        let row = opened.row.expect("row");
        assert_eq!(row.told, ["mail/alice", "chat/alice"]);
        // Escalated after the handoff: level 2 is the manager's; alice's entries stay.
        let row = escalate(row, Some(&policy), ms("2026-03-02T09:14:00Z"))
            .row
            .expect("row");
        assert_eq!(row.told, ["mail/alice", "chat/alice", "manager"]);
        let ack = AckRequest {
            action: AckAction::Ack,
            by: "bob".into(),
            generation: None,
            now: ms("2026-03-02T09:20:00Z"),
        };
        let acked = acknowledge(row.clone(), &ack, Some(&policy)).expect("ack");
        assert_eq!(
            persons(&acked),
            [("mail", Some("alice")), ("chat", Some("alice")), ("manager", None)]
        );
        let resolved = Touch {
            firing: false,
            quiet_when_resolved: vec!["chat".into()],
            ..touch.clone()
        };
        let closed = on_notification(Some(row), &resolved, "r", "g", 2, ms("2026-03-02T10:00:00Z"));
        assert_eq!(persons(&closed), [("mail", Some("alice")), ("manager", None)]);

        // Opened after the handoff: bob, through his one contact.
        let later = on_notification(None, &touch, "r", "g2", 3, ms("2026-03-02T09:00:00Z"));
        assert_eq!(persons(&later), [("mail", Some("bob"))]);
    }

    #[test]
    fn nobody_on_call_tells_the_level_channels_or_moves_on_at_once() {
        let before = ms("2026-02-20T12:00:00Z");
        let with_channels = on_call_policy("[manager]");
        let touch = |policy: &Policy| Touch {
            policy: policy.clone(),
            alerts: vec![0],
            firing: true,
            quiet_when_resolved: Vec::new(),
            ..touch(true, None)
        };
        let opened = on_notification(None, &touch(&with_channels), "r", "g", 1, before);
        assert_eq!(persons(&opened), [("manager", None)]);
        assert!(matches!(
            &opened.tell[0].1,
            Some(Event::Incident { schedule: Some(s), person: None, .. }) if s == "primary"
        ));
        assert_eq!(opened.row.expect("row").next_at, Some(before + 900_000));
        // Someone on call: the level's channel hears it plainly, beside the person.
        let opened = on_notification(None, &touch(&with_channels), "r", "g", 1, ms("2026-02-24T00:00:00Z"));
        assert_eq!(persons(&opened), [("manager", None), ("mail", Some("alice")), ("chat", Some("alice"))]);
        assert!(matches!(&opened.tell[0].1, Some(Event::Incident { schedule: None, .. })));

        let alone = on_call_policy("[]");
        let opened = on_notification(None, &touch(&alone), "r", "g", 1, before);
        assert!(opened.tell.is_empty());
        // Nobody heard level 1: level 2 is due at once.
        let row = opened.row.expect("row");
        assert_eq!(row.next_at, Some(before));
        let second = escalate(row, Some(&alone), before + 1000);
        assert_eq!(persons(&second), [("manager", None)]);
        // Held by a window, or resolved without an incident: the first level's own
        // channels, else the on-call person's contact channels, plainly.
        let held = Touch {
            hold: Some("nightly".into()),
            ..touch(&alone)
        };
        let change = on_notification(None, &held, "r", "g", 1, ms("2026-02-24T00:00:00Z"));
        assert_eq!(persons(&change), [("mail", None), ("chat", None)]);
        assert!(change.tell.iter().all(|(_, e)| e.is_none()));
    }

    #[test]
    fn told_entries_name_the_channel_and_the_person() {
        assert_eq!(told_entry("mail", Some("alice")), "mail/alice");
        assert_eq!(told_entry("mail", None), "mail");
        assert_eq!(parse_told("mail/alice"), ("mail", Some("alice")));
        assert_eq!(parse_told("mail"), ("mail", None));
        // Events stored before people existed still decode.
        let old = r#"{"kind":"incident","incident":1,"policy":"p","level":1,"step":"opened","generation":0}"#;
        assert!(matches!(
            Event::decode(Some(old)),
            Some(Event::Incident { person: None, schedule: None, .. })
        ));
        let old = r#"{"kind":"acknowledged","incident":1,"policy":"p","by":"x","generation":1}"#;
        assert_eq!(Event::decode(Some(old)).and_then(|e| e.person().map(str::to_owned)), None);
        let event = Event::Acknowledged {
            incident: 1,
            policy: "p".into(),
            by: "x".into(),
            generation: 1,
            person: Some("alice".into()),
        };
        assert_eq!(Event::decode(Some(&event.encode())), Some(event));
    }

    #[test]
    fn events_round_trip() {
        let event = Event::Summary {
            window: "#4".into(),
            held: vec![(1, vec![0, 2])],
        };
        assert_eq!(Event::decode(Some(&event.encode())), Some(event));
        assert_eq!(Event::decode(Some("{\"kind\":\"other\"}")), None);
        assert_eq!(Event::decode(None), None);
    }
}
