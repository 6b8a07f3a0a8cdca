//! The `docker_*` series of one daemon, from a snapshot.

use mcpwatch_core::MetricSink;

use crate::api::{Inspect, InspectState, Stats, Summary, Version, timestamp};

/// One of the times `docker inspect` gives in a container's state.
type StateTime = fn(&InspectState) -> &str;

/// Container states, in label order: every state Docker reports.
pub(crate) const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];

/// Health states, in label order; `none` for a container without a healthcheck.
pub(crate) const HEALTH: [&str; 4] = ["none", "starting", "healthy", "unhealthy"];

/// Label values longer than this (in characters) are cut, and marked by a hash of the
/// whole value so that two long names still differ.
pub(crate) const MAX_LABEL_CHARS: usize = 100;

/// `text` as a label value: control characters replaced, at most [`MAX_LABEL_CHARS`]
/// characters; a longer value is cut to leave room for `~` and 8 hexadecimal digits of its
/// FNV-1a hash.
pub(crate) fn bounded(text: &str) -> String {
    let clean = |t: &str, n: usize| -> String {
        t.chars()
            .map(|c| if c.is_control() { '?' } else { c })
            .take(n)
            .collect()
    };
    if text.chars().nth(MAX_LABEL_CHARS).is_none() {
        return clean(text, MAX_LABEL_CHARS);
    }
    let hash = mcpwatch_core::fnv::hash(text.as_bytes());
    format!("{}~{:08x}", clean(text, MAX_LABEL_CHARS - 9), hash >> 32)
}

/// The labels that name a container in every per-container series.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct Names {
    pub name: String,
    pub project: String,
    pub service: String,
}

impl Names {
    /// The bounded names of a listed container.
    pub(crate) fn of(summary: &Summary) -> Self {
        Self {
            name: bounded(summary.name()),
            project: bounded(summary.label("com.docker.compose.project")),
            service: bounded(summary.label("com.docker.compose.service")),
        }
    }
}

/// One container reported one by one.
#[derive(Debug, Clone, Default)]
pub(crate) struct Container {
    /// Its state: as inspected, else as listed.
    pub state: String,
    /// Its image, bounded.
    pub image: String,
    /// What `GET /containers/{id}/json` said; `None` when it failed or came too late.
    pub inspect: Option<Inspect>,
    /// What the stats endpoint said, for a running container when stats are read.
    pub stats: Option<Stats>,
}

impl Container {
    /// Sets the state: the inspected one when there is one, else `listed`.
    pub(crate) fn resolve_state(&mut self, listed: &str) {
        self.state = self
            .inspect
            .as_ref()
            .map(|i| i.state.status.as_str())
            .filter(|s| !s.is_empty())
            .unwrap_or(listed)
            .to_owned();
    }
}

/// What a collection found on a daemon that answered.
#[derive(Debug, Default)]
pub(crate) struct Snapshot {
    pub version: Version,
    /// Containers by state ([`STATES`] order), of every container listed.
    pub counts: [u64; STATES.len()],
    /// Containers listed but past `max_containers`, not reported one by one.
    pub omitted: usize,
    /// The containers reported one by one, with their names.
    pub containers: Vec<(Names, Container)>,
}

/// Writes `docker_up` (and `docker_connect_failure`): 1 with no failure when the daemon
/// answered.
pub(crate) fn write_up(
    sink: &mut MetricSink,
    failure: Option<mcpwatch_core::connect_failure::ConnectFailure>,
) {
    sink.gauge(
        "docker_up",
        "Whether the Docker daemon answered on its socket.",
    )
    .add(&[], f64::from(u8::from(failure.is_none())));
    mcpwatch_core::connect_failure::write_connect_failure(sink, "docker", failure);
}

/// Writes the series of a daemon that answered.
pub(crate) fn write(snapshot: &Snapshot, sink: &mut MetricSink) {
    write_up(sink, None);
    let v = &snapshot.version;
    sink.info(
        "docker_engine_info",
        "The Docker daemon's version, API version, OS, architecture and kernel.",
    )
    .add(
        &[
            ("version", &bounded(&v.version)),
            ("api_version", &bounded(&v.api_version)),
            ("os", &bounded(&v.os)),
            ("arch", &bounded(&v.arch)),
            ("kernel_version", &bounded(&v.kernel_version)),
        ],
        1.0,
    );
    let family = sink.gauge(
        "docker_containers",
        "Containers by state, all of them (docker ps -a), including those past \
         max_containers.",
    );
    for (state, count) in STATES.iter().zip(snapshot.counts) {
        family.add(&[("state", state)], count as f64);
    }
    sink.gauge(
        "docker_containers_omitted",
        "Containers not reported one by one because max_containers was reached (exited \
         and created ones go first).",
    )
    .add(&[], snapshot.omitted as f64);
    write_containers(&snapshot.containers, sink);
}

/// One per-container family: its samples are added by `each` for every container that
/// has a value.
fn per_container<'a>(
    sink: &mut MetricSink,
    containers: &'a [(Names, Container)],
    family: mcpwatch_core::MetricFamily,
    extra: &'static str,
    mut each: impl FnMut(&'a Container) -> Vec<(&'a str, f64)>,
) {
    let family = sink.family(family);
    for (names, container) in containers {
        for (value_label, value) in each(container) {
            let mut labels = vec![
                ("name", names.name.as_str()),
                ("compose_project", names.project.as_str()),
                ("compose_service", names.service.as_str()),
            ];
            if !extra.is_empty() {
                labels.push((extra, value_label));
            }
            family.add(&labels, value);
        }
    }
}

fn write_containers(containers: &[(Names, Container)], sink: &mut MetricSink) {
    use mcpwatch_core::MetricFamily as F;
    let one = |v: bool| f64::from(u8::from(v));
    per_container(
        sink,
        containers,
        F::info(
            "docker_container_info",
            "A container reported one by one, with its image.",
        ),
        "image",
        |c| vec![(c.image.as_str(), 1.0)],
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_state",
            "State of the container: 1 for the state it is in (created, running, paused, \
             restarting, removing, exited, dead), 0 for the others.",
        ),
        "state",
        |c| STATES.iter().map(|s| (*s, one(*s == c.state))).collect(),
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_health_status",
            "Health of the container by its healthcheck: 1 for the status it has (none \
             without a healthcheck, starting, healthy, unhealthy), 0 for the others.",
        ),
        "status",
        |c| {
            let Some(inspect) = &c.inspect else {
                return Vec::new();
            };
            let status = inspect
                .state
                .health
                .as_ref()
                .map_or("none", |h| h.status.as_str());
            let status = if HEALTH.contains(&status) {
                status
            } else {
                "none"
            };
            HEALTH.iter().map(|s| (*s, one(*s == status))).collect()
        },
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_health_failing_streak",
            "Consecutive failed healthchecks of the container (with a healthcheck).",
        ),
        "",
        |c| {
            c.inspect
                .as_ref()
                .and_then(|i| i.state.health.as_ref())
                .map(|h| vec![("", h.failing_streak as f64)])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::counter(
            "docker_container_restarts_total",
            "Times Docker restarted the container under its restart policy (reset when it \
             is started by hand).",
        ),
        "",
        |c| {
            c.inspect
                .as_ref()
                .map(|i| vec![("", i.restart_count as f64)])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_oom_killed",
            "Whether the container's last run ended killed by the kernel for want of \
             memory (OOM).",
        ),
        "",
        |c| {
            c.inspect
                .as_ref()
                .map(|i| vec![("", one(i.state.oom_killed))])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_exit_code",
            "Exit code of the container's last run, while it is exited, dead or \
             restarting.",
        ),
        "",
        |c| match &c.inspect {
            Some(i) if matches!(c.state.as_str(), "exited" | "dead" | "restarting") => {
                vec![("", i.state.exit_code as f64)]
            }
            _ => Vec::new(),
        },
    );
    let times: [(&'static str, &'static str, StateTime); 2] = [
        (
            "docker_container_started_timestamp_seconds",
            "When the container last started, in seconds since the epoch.",
            |s| &s.started_at,
        ),
        (
            "docker_container_finished_timestamp_seconds",
            "When the container's last run ended, in seconds since the epoch.",
            |s| &s.finished_at,
        ),
    ];
    for (name, help, at) in times {
        per_container(sink, containers, F::gauge(name, help), "", |c| {
            c.inspect
                .as_ref()
                .and_then(|i| timestamp(at(&i.state)))
                .map(|t| vec![("", t)])
                .unwrap_or_default()
        });
    }
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_memory_limit_bytes",
            "The container's memory limit in bytes (with a limit set).",
        ),
        "",
        |c| {
            c.inspect
                .as_ref()
                .and_then(|i| i.host_config.as_ref())
                .filter(|h| h.memory > 0)
                .map(|h| vec![("", h.memory as f64)])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::counter(
            "docker_container_cpu_seconds_total",
            "CPU time the running container used, in seconds (stats: true).",
        ),
        "",
        |c| {
            c.stats
                .as_ref()
                .map(|s| vec![("", s.cpu_stats.cpu_usage.total_usage as f64 / 1e9)])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_memory_usage_bytes",
            "Memory the running container uses, in bytes, less the inactive page cache, as \
             docker stats shows it (stats: true).",
        ),
        "",
        |c| {
            c.stats
                .as_ref()
                .and_then(|s| s.memory_stats.working_set())
                .map(|m| vec![("", m as f64)])
                .unwrap_or_default()
        },
    );
    per_container(
        sink,
        containers,
        F::gauge(
            "docker_container_pids",
            "Processes and threads in the running container (stats: true).",
        ),
        "",
        |c| {
            c.stats
                .as_ref()
                .and_then(|s| s.pids_stats.current)
                .map(|p| vec![("", p as f64)])
                .unwrap_or_default()
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::{Health, HostConfig, InspectState};

    #[test]
    fn long_label_values_are_cut_and_stay_apart() {
        assert_eq!(bounded("app-web-1"), "app-web-1");
        assert_eq!(bounded("a\nb"), "a?b");
        let exact = "x".repeat(MAX_LABEL_CHARS);
        assert_eq!(bounded(&exact), exact);
        let a = bounded(&format!("{}a", "x".repeat(MAX_LABEL_CHARS)));
        let b = bounded(&format!("{}b", "x".repeat(MAX_LABEL_CHARS)));
        assert_eq!(a.chars().count(), MAX_LABEL_CHARS);
        assert_eq!(b.chars().count(), MAX_LABEL_CHARS);
        assert_ne!(a, b);
        assert!(a.starts_with(&"x".repeat(MAX_LABEL_CHARS - 9)), "{a}");
        assert_eq!(a.chars().nth(MAX_LABEL_CHARS - 9), Some('~'));
    }

    fn container(name: &str, state: &str, inspect: Option<Inspect>) -> (Names, Container) {
        let summary: Summary = serde_json::from_value(serde_json::json!({
            "Id": format!("{name}-id"), "Names": [format!("/{name}")], "Image": "busybox",
            "State": state,
            "Labels": {"com.docker.compose.project": "app", "com.docker.compose.service": name},
        }))
        .expect("summary");
        let mut c = Container {
            state: String::new(),
            image: bounded(&summary.image),
            inspect,
            stats: None,
        };
        c.resolve_state(&summary.state);
        (Names::of(&summary), c)
    }

    #[test]
    fn a_snapshot_of_an_exited_and_an_unhealthy_container() {
        let exited = Inspect {
            restart_count: 3,
            state: InspectState {
                status: "exited".into(),
                oom_killed: true,
                exit_code: 137,
                started_at: "2024-01-02T03:04:05Z".into(),
                finished_at: "2024-01-02T03:04:06Z".into(),
                health: None,
            },
            host_config: Some(HostConfig { memory: 16 << 20 }),
        };
        let unhealthy = Inspect {
            restart_count: 0,
            state: InspectState {
                status: "running".into(),
                started_at: "2024-01-02T03:04:05Z".into(),
                finished_at: "0001-01-01T00:00:00Z".into(),
                health: Some(Health {
                    status: "unhealthy".into(),
                    failing_streak: 4,
                }),
                ..InspectState::default()
            },
            host_config: Some(HostConfig { memory: 0 }),
        };
        let snapshot = Snapshot {
            version: Version {
                version: "20.10.24".into(),
                ..Version::default()
            },
            counts: [0, 2, 0, 0, 0, 1, 0],
            omitted: 1,
            containers: vec![
                container("job", "exited", Some(exited)),
                container("web", "running", Some(unhealthy)),
                container("gone", "running", None),
            ],
        };
        let mut sink = MetricSink::default();
        write(&snapshot, &mut sink);
        let v = |name: &str, labels: &[(&str, &str)]| sink.find(name).and_then(|f| f.value(labels));
        assert_eq!(v("docker_up", &[]), Some(1.0));
        assert_eq!(
            v("docker_engine_info", &[("version", "20.10.24")]),
            Some(1.0)
        );
        assert_eq!(v("docker_containers", &[("state", "running")]), Some(2.0));
        assert_eq!(v("docker_containers_omitted", &[]), Some(1.0));
        let job = [("name", "job"), ("compose_project", "app")];
        let web = [("name", "web"), ("compose_service", "web")];
        let gone = [("name", "gone")];
        assert_eq!(v("docker_container_restarts_total", &job), Some(3.0));
        assert_eq!(v("docker_container_oom_killed", &job), Some(1.0));
        assert_eq!(v("docker_container_exit_code", &job), Some(137.0));
        assert_eq!(v("docker_container_exit_code", &web), None);
        assert_eq!(
            v("docker_container_memory_limit_bytes", &job),
            Some(16_777_216.0)
        );
        assert_eq!(v("docker_container_memory_limit_bytes", &web), None);
        assert_eq!(
            v("docker_container_finished_timestamp_seconds", &job),
            Some(1_704_164_646.0)
        );
        assert_eq!(v("docker_container_finished_timestamp_seconds", &web), None);
        let state = sink.find("docker_container_state").expect("state");
        assert_eq!(state.samples().len(), 3 * STATES.len());
        assert_eq!(state.value(&[job[0], ("state", "exited")]), Some(1.0));
        assert_eq!(state.value(&[job[0], ("state", "running")]), Some(0.0));
        assert_eq!(state.value(&[gone[0], ("state", "running")]), Some(1.0));
        let health = sink.find("docker_container_health_status").expect("health");
        assert_eq!(health.samples().len(), 2 * HEALTH.len(), "none for gone");
        assert_eq!(health.value(&[web[0], ("status", "unhealthy")]), Some(1.0));
        assert_eq!(health.value(&[job[0], ("status", "none")]), Some(1.0));
        assert_eq!(v("docker_container_health_failing_streak", &web), Some(4.0));
        assert_eq!(
            v("docker_container_info", &[gone[0], ("image", "busybox")]),
            Some(1.0)
        );
        assert!(
            sink.find("docker_container_cpu_seconds_total")
                .is_none_or(|f| f.is_empty())
        );
    }
}
