#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
pub mod config;
mod metrics;

#[cfg(test)]
mod hostile_tests;

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use mcpwatch_core::collector::READ_MARGIN;
use mcpwatch_core::{CollectError, Collector, MetricSink, ScrapeContext, async_trait};
use tokio::time::Instant;

pub use api::ApiError;
pub use config::ContainersConfig;

use crate::api::{Connection, Inspect, MAX_CONTAINER_BODY, MAX_LIST_BODY, Stats, Summary, Version};
use crate::metrics::{Container, Names, STATES, Snapshot, bounded};

/// Why a collector could not be built: the key at fault and what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{key}: {message}")]
pub struct ContainersError {
    /// The key, relative to the target's entry.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

/// Reads the containers of one Docker daemon (`docker_*`).
#[derive(Debug)]
pub struct ContainersCollector {
    config: Arc<ContainersConfig>,
}

impl ContainersCollector {
    /// Checks the configuration and creates the collector; nothing is read yet.
    pub fn new(config: ContainersConfig) -> Result<Self, ContainersError> {
        config
            .validate()
            .map_err(|(key, message)| ContainersError { key, message })?;
        Ok(Self {
            config: Arc::new(config),
        })
    }

    /// The configuration in use.
    pub fn config(&self) -> &ContainersConfig {
        &self.config
    }

    /// The version and the list of containers, on one connection handed back for reuse.
    async fn list(&self, stop: Instant) -> Result<(Version, Vec<Summary>, Connection), ApiError> {
        let mut connection = Connection::open(self.config.socket.path(), stop).await?;
        let version = connection.get("/version", MAX_LIST_BODY, stop).await?;
        let list = connection
            .get("/containers/json?all=1", MAX_LIST_BODY, stop)
            .await?;
        Ok((version, list, connection))
    }

    /// Runs `jobs` on at most `concurrency` connections (`open` first, then new ones),
    /// each request by `stop`. A job's answer is `None` when it was not done by then or its
    /// connection broke first; the connections still usable are handed back.
    async fn run(
        &self,
        jobs: &[Job<'_>],
        concurrency: usize,
        mut open: Vec<Connection>,
        stop: Instant,
    ) -> (Vec<Option<Answer>>, Vec<ApiError>, Vec<Connection>) {
        let next = AtomicUsize::new(0);
        let workers = concurrency.min(jobs.len());
        let given: Vec<Option<Connection>> = (0..workers).map(|_| open.pop()).collect();
        let runs = given.into_iter().map(|connection| {
            let next = &next;
            async move {
                let mut connection = match connection {
                    Some(c) => c,
                    None => match Connection::open(self.config.socket.path(), stop).await {
                        Ok(c) => c,
                        // The other workers take its share.
                        Err(error) => return (Vec::new(), vec![error], None),
                    },
                };
                let mut done = Vec::new();
                let mut errors = Vec::new();
                loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(job) = jobs.get(index) else {
                        return (done, errors, Some(connection));
                    };
                    match job.fetch(&mut connection, stop).await {
                        Ok(answer) => done.push((index, answer)),
                        // Removed since it was listed.
                        Err(error) if error.is_not_found() => done.push((index, Answer::Gone)),
                        // The daemon's answer about this one container was wrong: the
                        // connection still serves the next.
                        Err(error @ (ApiError::Status { .. } | ApiError::Body { .. })) => {
                            errors.push(error);
                        }
                        // The connection is unusable, or the deadline came: this worker
                        // stops, and what it did stands.
                        Err(error) => {
                            errors.push(error);
                            return (done, errors, None);
                        }
                    }
                }
            }
        });
        let mut answers: Vec<Option<Answer>> = vec![None; jobs.len()];
        let mut errors = Vec::new();
        let mut usable = open;
        for (done, failed, connection) in futures_util::future::join_all(runs).await {
            for (index, answer) in done {
                answers[index] = Some(answer);
            }
            errors.extend(failed);
            usable.extend(connection);
        }
        (answers, errors, usable)
    }
}

/// A request about one container.
#[derive(Debug, Clone, Copy)]
enum Job<'a> {
    Inspect(&'a str),
    Stats(&'a str),
}

impl Job<'_> {
    async fn fetch(&self, connection: &mut Connection, stop: Instant) -> Result<Answer, ApiError> {
        Ok(match self {
            Job::Inspect(id) => Answer::Inspect(Box::new(
                connection
                    .get(&format!("/containers/{id}/json"), MAX_CONTAINER_BODY, stop)
                    .await?,
            )),
            Job::Stats(id) => Answer::Stats(Box::new(
                connection
                    .get(
                        &format!("/containers/{id}/stats?stream=false&one-shot=true"),
                        MAX_CONTAINER_BODY,
                        stop,
                    )
                    .await?,
            )),
        })
    }
}

/// What the daemon said of one container.
#[derive(Debug, Clone)]
enum Answer {
    Inspect(Box<Inspect>),
    Stats(Box<Stats>),
    /// Removed between the list and the request.
    Gone,
}

/// The containers reported one by one: running, restarting, paused, removing and dead ones
/// before created and exited ones (old one-off runs pile up there), each group by name; at
/// most `max` of them, one per set of bounded names. The rest are counted.
fn choose(mut list: Vec<Summary>, max: usize) -> (Vec<(Names, Summary)>, usize) {
    let settled = |s: &Summary| matches!(s.state.as_str(), "created" | "exited");
    list.sort_by(|a, b| {
        (settled(a), a.name())
            .cmp(&(settled(b), b.name()))
            .then_with(|| a.id.cmp(&b.id))
    });
    let total = list.len();
    let mut seen = HashSet::new();
    let mut chosen = Vec::new();
    for summary in list {
        if chosen.len() == max {
            break;
        }
        let names = Names::of(&summary);
        // Two names alike once bounded would be one series written twice.
        if seen.insert(names.clone()) {
            chosen.push((names, summary));
        }
    }
    let omitted = total - chosen.len();
    (chosen, omitted)
}

#[async_trait]
impl Collector for ContainersCollector {
    fn name(&self) -> &str {
        "containers"
    }

    fn target(&self) -> &str {
        &self.config.name
    }

    async fn collect(
        &self,
        ctx: &ScrapeContext,
        sink: &mut MetricSink,
    ) -> Result<(), CollectError> {
        // Time kept after the last answer for the series to be written.
        let stop = ctx
            .deadline()
            .checked_sub(READ_MARGIN)
            .unwrap_or(ctx.deadline());
        let (version, list, connection) = match self.list(stop).await {
            Ok(found) => found,
            Err(error) => {
                metrics::write_up(sink, Some(error.connect_failure()));
                return Err(error.into());
            }
        };
        let mut counts = [0u64; STATES.len()];
        for summary in &list {
            if let Some(i) = STATES.iter().position(|s| *s == summary.state) {
                counts[i] += 1;
            }
        }
        let (chosen, omitted) = choose(list, self.config.max_containers);
        let inspections: Vec<Job<'_>> = chosen
            .iter()
            .map(|(_, summary)| Job::Inspect(&summary.id))
            .collect();
        let (inspected, mut errors, open) = self
            .run(
                &inspections,
                self.config.concurrency,
                vec![connection],
                stop,
            )
            .await;
        // The stats of the running containers asked at once (up to stats_concurrency), after
        // the inspections: the daemon samples the containers asked for together, once a
        // second, and each request waits for the next sample.
        let running: Vec<usize> = if self.config.stats {
            (0..chosen.len())
                .filter(|&i| {
                    matches!(&inspected[i], Some(Answer::Inspect(found)) if found.state.status == "running")
                })
                .collect()
        } else {
            Vec::new()
        };
        let asked: Vec<Job<'_>> = running
            .iter()
            .map(|&i| Job::Stats(&chosen[i].1.id))
            .collect();
        let (mut sampled, stats_errors, _) = self
            .run(&asked, self.config.stats_concurrency, open, stop)
            .await;
        errors.extend(stats_errors);
        let unanswered = inspected
            .iter()
            .chain(&sampled)
            .filter(|a| a.is_none())
            .count();
        let requests = inspections.len() + asked.len();
        let mut stats: Vec<Option<Stats>> = vec![None; chosen.len()];
        for (&i, answer) in running.iter().zip(sampled.iter_mut()) {
            if let Some(Answer::Stats(found)) = answer.take()
                && found.sampled()
            {
                stats[i] = Some(*found);
            }
        }
        let containers = chosen
            .into_iter()
            .zip(inspected)
            .zip(stats)
            .filter_map(|(((names, summary), inspected), stats)| {
                let inspect = match inspected {
                    Some(Answer::Gone) => return None,
                    Some(Answer::Inspect(found)) => Some(*found),
                    _ => None,
                };
                let mut container = Container {
                    state: String::new(),
                    image: bounded(&summary.image),
                    inspect,
                    stats,
                };
                container.resolve_state(&summary.state);
                Some((names, container))
            })
            .collect();
        let snapshot = Snapshot {
            version,
            counts,
            omitted,
            containers,
        };
        metrics::write(&snapshot, sink);
        if unanswered == 0 {
            return Ok(());
        }
        let what =
            format_args!("{unanswered} of {requests} requests about containers not answered");
        Err(match errors.into_iter().next() {
            Some(error) => CollectError::from(error).context(what),
            None => CollectError::msg(what),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn summary(name: &str, state: &str) -> Summary {
        serde_json::from_value(serde_json::json!({
            "Id": format!("{name}-id"), "Names": [format!("/{name}")], "State": state,
        }))
        .expect("summary")
    }

    #[test]
    fn the_bound_keeps_active_containers_first_then_by_name() {
        let list = vec![
            summary("c", "exited"),
            summary("b", "running"),
            summary("a", "exited"),
            summary("d", "restarting"),
            summary("e", "created"),
        ];
        let (chosen, omitted) = choose(list.clone(), 3);
        let names: Vec<_> = chosen.iter().map(|(n, _)| n.name.as_str()).collect();
        assert_eq!(names, ["b", "d", "a"]);
        assert_eq!(omitted, 2);
        let (chosen, omitted) = choose(list, 10);
        assert_eq!(chosen.len(), 5);
        assert_eq!(omitted, 0);
    }

    #[test]
    fn names_alike_once_bounded_are_reported_once() {
        let long = "x".repeat(200);
        let mut a = summary(&long, "running");
        a.id = "1".into();
        let mut b = summary(&long, "running");
        b.id = "2".into();
        let (chosen, omitted) = choose(vec![a, b], 10);
        assert_eq!((chosen.len(), omitted), (1, 1));
    }

    /// A daemon on a unix socket that answers the list and `/version`, and holds every
    /// inspection until the test ends.
    async fn stalling_daemon(socket: std::path::PathBuf) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut buffer = vec![0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buffer).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    let head = String::from_utf8_lossy(&buffer[..n]).into_owned();
                    let body = if head.starts_with("GET /version ") {
                        r#"{"Version":"99.0","ApiVersion":"1.99","Os":"linux","Arch":"amd64"}"#
                            .to_owned()
                    } else if head.starts_with("GET /containers/json") {
                        r#"[{"Id":"a1","Names":["/a"],"State":"running","Image":"i"},
                           {"Id":"b1","Names":["/b"],"State":"exited","Image":"i"}]"#
                            .to_owned()
                    } else {
                        std::future::pending::<()>().await;
                        return;
                    };
                    let answer = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                         Content-Length: {}\r\n\r\n{body}",
                        body.len()
                    );
                    if stream.write_all(answer.as_bytes()).await.is_err() {
                        return;
                    }
                }
            });
        }
    }

    #[tokio::test]
    async fn a_stalled_inspection_ends_at_the_deadline_with_what_was_listed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("docker.sock");
        let daemon = tokio::spawn(stalling_daemon(socket.clone()));
        tokio::task::yield_now().await;
        let mut config = ContainersConfig::new("d".into());
        config.socket = std::path::PathBuf::from(&socket).into();
        let collector = ContainersCollector::new(config).expect("collector");
        let mut sink = MetricSink::default();
        let deadline = Instant::now() + Duration::from_millis(500);
        let result = collector
            .collect(&ScrapeContext::new(deadline), &mut sink)
            .await;
        assert!(Instant::now() <= deadline, "finished before the deadline");
        let error = result.expect_err("inspections unfinished").to_string();
        assert!(
            error.starts_with("2 of 2 requests about containers not answered: GET /containers/"),
            "{error}"
        );
        let v = |name: &str, labels: &[(&str, &str)]| sink.find(name).and_then(|f| f.value(labels));
        assert_eq!(v("docker_up", &[]), Some(1.0));
        assert_eq!(v("docker_engine_info", &[("version", "99.0")]), Some(1.0));
        assert_eq!(v("docker_containers", &[("state", "exited")]), Some(1.0));
        assert_eq!(
            v(
                "docker_container_state",
                &[("name", "a"), ("state", "running")]
            ),
            Some(1.0)
        );
        assert!(
            sink.find("docker_container_restarts_total")
                .is_none_or(|f| f.is_empty())
        );
        daemon.abort();
    }

    #[tokio::test]
    async fn a_missing_socket_is_down_with_the_reason() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut config = ContainersConfig::new("d".into());
        config.socket = dir.path().join("docker.sock").into();
        let collector = ContainersCollector::new(config).expect("collector");
        let mut sink = MetricSink::default();
        let ctx = ScrapeContext::new(Instant::now() + Duration::from_secs(5));
        let error = collector
            .collect(&ctx, &mut sink)
            .await
            .expect_err("no socket")
            .to_string();
        assert!(error.starts_with("the Docker socket /"), "{error}");
        assert!(error.contains("does not exist"), "{error}");
        let v = |name: &str, labels: &[(&str, &str)]| sink.find(name).and_then(|f| f.value(labels));
        assert_eq!(v("docker_up", &[]), Some(0.0));
        assert_eq!(
            v("docker_connect_failure", &[("reason", "refused")]),
            Some(1.0)
        );
        assert!(sink.find("docker_containers").is_none());
    }
}
