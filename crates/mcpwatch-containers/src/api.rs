//! The few Docker Engine API calls the collector makes, over HTTP/1.1 on the daemon's unix
//! socket, and the parts of their answers it reads.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use bytes::{Buf, Bytes};
use http::header::{HOST, USER_AGENT};
use http::{Request, StatusCode};
use http_body_util::{BodyExt, Empty, Limited};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::task::JoinHandle;
use tokio::time::{Instant, timeout_at};

const AGENT: &str = concat!("mcpwatch/", env!("CARGO_PKG_VERSION"));

/// The largest answer read for the daemon: a list of thousands of containers fits.
pub(crate) const MAX_LIST_BODY: usize = 32 * 1024 * 1024;

/// The largest answer read for one container (an inspection is some kilobytes; one with
/// hundreds of labels and variables still fits), so that the inspections and stats calls
/// in flight at once hold a bounded amount of memory, whatever a daemon sends.
pub(crate) const MAX_CONTAINER_BODY: usize = 1024 * 1024;

/// Why a call to the daemon failed. No secret is in any of it: the daemon is reached by a
/// path, and its answers hold no credentials the collector reads.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// The socket does not exist.
    #[error(
        "the Docker socket {0} does not exist: is Docker running on this host? With the \
         exporter in a container, mount the socket into it"
    )]
    NoSocket(PathBuf),
    /// The socket is there but the exporter may not use it.
    #[error(
        "permission denied on the Docker socket {0}: run the exporter in the socket's group \
         (docker) or give its user read and write access to the socket"
    )]
    PermissionDenied(PathBuf),
    /// Nothing listens on the socket.
    #[error("nothing listens on the Docker socket {0}: the Docker daemon is stopped")]
    Refused(PathBuf),
    /// Another failure to connect.
    #[error("connecting to the Docker socket {path}: {source}")]
    Connect {
        /// The socket.
        path: PathBuf,
        /// What the system said.
        source: std::io::Error,
    },
    /// The HTTP exchange failed.
    #[error("GET {what}: {source}")]
    Http {
        /// The request's path.
        what: String,
        /// What hyper said.
        source: hyper::Error,
    },
    /// The daemon answered with an error status.
    #[error("GET {what}: the daemon answered {status}: {message}")]
    Status {
        /// The request's path.
        what: String,
        /// The status.
        status: StatusCode,
        /// The daemon's message.
        message: String,
    },
    /// The answer could not be read or parsed.
    #[error("GET {what}: {message}")]
    Body {
        /// The request's path.
        what: String,
        /// What was wrong.
        message: String,
    },
    /// The deadline came first.
    #[error("GET {0}: no answer by the scrape's deadline")]
    Timeout(String),
}

impl ApiError {
    /// Whether the daemon said the container is gone (removed since it was listed).
    pub(crate) fn is_not_found(&self) -> bool {
        matches!(self, ApiError::Status { status, .. } if *status == StatusCode::NOT_FOUND)
    }

    /// The `docker_connect_failure` reason, for errors of connecting or of the exchange.
    pub(crate) fn connect_failure(&self) -> mcpwatch_core::connect_failure::ConnectFailure {
        use mcpwatch_core::connect_failure::ConnectFailure;
        match self {
            ApiError::NoSocket(_) | ApiError::Refused(_) => ConnectFailure::Refused,
            ApiError::PermissionDenied(_) => ConnectFailure::Auth,
            ApiError::Timeout(_) => ConnectFailure::Timeout,
            ApiError::Connect { source, .. } => {
                ConnectFailure::of_io(source.kind()).unwrap_or(ConnectFailure::Other)
            }
            ApiError::Http { .. } | ApiError::Status { .. } | ApiError::Body { .. } => {
                ConnectFailure::Protocol
            }
        }
    }
}

/// One HTTP/1.1 connection to the daemon; its driver task ends when it is dropped.
#[derive(Debug)]
pub(crate) struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    driver: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl Connection {
    /// Connects to `socket` by `deadline`.
    pub(crate) async fn open(socket: &Path, deadline: Instant) -> Result<Self, ApiError> {
        let what = || socket.display().to_string();
        let stream = match timeout_at(deadline, tokio::net::UnixStream::connect(socket)).await {
            Err(_) => return Err(ApiError::Timeout(what())),
            Ok(Ok(stream)) => stream,
            Ok(Err(error)) => {
                let path = socket.to_owned();
                return Err(match error.kind() {
                    std::io::ErrorKind::NotFound => ApiError::NoSocket(path),
                    std::io::ErrorKind::PermissionDenied => ApiError::PermissionDenied(path),
                    std::io::ErrorKind::ConnectionRefused => ApiError::Refused(path),
                    _ => ApiError::Connect {
                        path,
                        source: error,
                    },
                });
            }
        };
        let handshake = hyper::client::conn::http1::Builder::new()
            .max_buf_size(256 * 1024)
            .handshake(TokioIo::new(stream));
        let (sender, connection) = match timeout_at(deadline, handshake).await {
            Err(_) => return Err(ApiError::Timeout(what())),
            Ok(Err(source)) => {
                return Err(ApiError::Http {
                    what: what(),
                    source,
                });
            }
            Ok(Ok(pair)) => pair,
        };
        let driver = tokio::spawn(async move {
            if let Err(error) = connection.await {
                tracing::trace!(%error, "Docker API connection ended.");
            }
        });
        Ok(Self { sender, driver })
    }

    /// `GET path`, its JSON answer of at most `max_body` bytes parsed, by `deadline`.
    pub(crate) async fn get<T: DeserializeOwned>(
        &mut self,
        path: &str,
        max_body: usize,
        deadline: Instant,
    ) -> Result<T, ApiError> {
        let what = || path.to_owned();
        let request = Request::get(path)
            .header(HOST, "docker")
            .header(USER_AGENT, AGENT)
            .body(Empty::new())
            .map_err(|e| ApiError::Body {
                what: what(),
                message: format!("invalid request: {e}"),
            })?;
        let exchange = async {
            self.sender.ready().await?;
            let response = self.sender.send_request(request).await?;
            let status = response.status();
            let body = Limited::new(response.into_body(), max_body)
                .collect()
                .await
                .map(|b| b.aggregate());
            Ok::<_, hyper::Error>((status, body))
        };
        let (status, body) = match timeout_at(deadline, exchange).await {
            Err(_) => return Err(ApiError::Timeout(what())),
            Ok(Err(source)) => {
                return Err(ApiError::Http {
                    what: what(),
                    source,
                });
            }
            Ok(Ok(answer)) => answer,
        };
        let body = body.map_err(|e| ApiError::Body {
            what: what(),
            message: format!("reading the answer: {e}"),
        })?;
        if status != StatusCode::OK {
            #[derive(Deserialize)]
            struct Message {
                message: String,
            }
            let message = serde_json::from_reader::<_, Message>(body.reader())
                .map(|m| m.message.chars().take(200).collect())
                .unwrap_or_default();
            return Err(ApiError::Status {
                what: what(),
                status,
                message,
            });
        }
        serde_json::from_reader(body.reader()).map_err(|e| ApiError::Body {
            what: what(),
            message: format!("unexpected answer: {e}"),
        })
    }
}

/// `GET /version`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Version {
    #[serde(default)]
    pub version: String,
    #[serde(default)]
    pub api_version: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub arch: String,
    #[serde(default)]
    pub kernel_version: String,
}

/// One entry of `GET /containers/json?all=1`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Summary {
    pub id: String,
    #[serde(default)]
    pub names: Vec<String>,
    #[serde(default)]
    pub image: String,
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
}

impl Summary {
    /// The container's name, without the leading `/`.
    pub(crate) fn name(&self) -> &str {
        self.names
            .first()
            .map_or(self.id.get(..12).unwrap_or(&self.id), |n| {
                n.trim_start_matches('/')
            })
    }

    /// A label's value, empty when absent.
    pub(crate) fn label(&self, key: &str) -> &str {
        self.labels
            .as_ref()
            .and_then(|l| l.get(key))
            .map_or("", String::as_str)
    }
}

/// `GET /containers/{id}/json`, the parts read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Inspect {
    #[serde(default)]
    pub restart_count: u64,
    #[serde(default)]
    pub state: InspectState,
    #[serde(default)]
    pub host_config: Option<HostConfig>,
}

/// `State` of an inspected container.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct InspectState {
    #[serde(default)]
    pub status: String,
    #[serde(default, rename = "OOMKilled")]
    pub oom_killed: bool,
    #[serde(default)]
    pub exit_code: i64,
    #[serde(default)]
    pub started_at: String,
    #[serde(default)]
    pub finished_at: String,
    #[serde(default)]
    pub health: Option<Health>,
}

/// `State.Health`: present when the container has a healthcheck.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct Health {
    #[serde(default)]
    pub status: String,
    #[serde(default)]
    pub failing_streak: u64,
}

/// `HostConfig`, the parts read.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub(crate) struct HostConfig {
    /// The memory limit in bytes; 0 for none.
    #[serde(default)]
    pub memory: i64,
}

/// `GET /containers/{id}/stats?stream=false&one-shot=true`, the parts read.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct Stats {
    /// When the daemon sampled them: Docker's zero time when the container stopped before
    /// it could (the rest is then zeros, not values).
    #[serde(default)]
    pub read: String,
    #[serde(default)]
    pub cpu_stats: CpuStats,
    #[serde(default)]
    pub memory_stats: MemoryStats,
    #[serde(default)]
    pub pids_stats: PidsStats,
}

impl Stats {
    /// Whether the daemon sampled the container: it answers zeros, with its zero time, for
    /// one that stopped between the inspection and the stats request.
    pub(crate) fn sampled(&self) -> bool {
        timestamp(&self.read).is_some()
    }
}

/// `cpu_stats`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CpuStats {
    #[serde(default)]
    pub cpu_usage: CpuUsage,
}

/// `cpu_stats.cpu_usage`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct CpuUsage {
    /// Nanoseconds of CPU time (both cgroup versions).
    #[serde(default)]
    pub total_usage: u64,
}

/// `memory_stats`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct MemoryStats {
    #[serde(default)]
    pub usage: Option<u64>,
    #[serde(default)]
    pub stats: HashMap<String, u64>,
}

impl MemoryStats {
    /// Memory in use as `docker stats` shows it: the usage less the inactive page cache
    /// (`total_inactive_file` under cgroup v1, `inactive_file` under v2), which the kernel
    /// reclaims before it kills.
    pub(crate) fn working_set(&self) -> Option<u64> {
        let usage = self.usage?;
        let inactive = self
            .stats
            .get("total_inactive_file")
            .or_else(|| self.stats.get("inactive_file"))
            .copied()
            .unwrap_or(0);
        // As the docker client computes it: the cache is left out only when below the usage.
        Some(if inactive < usage {
            usage - inactive
        } else {
            usage
        })
    }
}

/// `pids_stats`.
#[derive(Debug, Clone, Default, Deserialize)]
pub(crate) struct PidsStats {
    #[serde(default)]
    pub current: Option<u64>,
}

/// An RFC 3339 time as Docker writes it, in seconds since the epoch; `None` for Docker's
/// zero time (`0001-01-01T00:00:00Z`: never started or never finished).
pub(crate) fn timestamp(text: &str) -> Option<f64> {
    let time = humantime::parse_rfc3339(text).ok()?;
    let since = time.duration_since(std::time::UNIX_EPOCH).ok()?;
    (!since.is_zero()).then_some(since.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_the_zero_time() {
        assert_eq!(timestamp("2024-01-02T03:04:05.5Z"), Some(1_704_164_645.5));
        assert_eq!(
            timestamp("2024-01-02T03:04:05.123456789Z").map(|t| (t * 1000.0).round()),
            Some(1_704_164_645_123.0)
        );
        assert_eq!(timestamp("0001-01-01T00:00:00Z"), None);
        assert_eq!(timestamp(""), None);
    }

    #[test]
    fn memory_in_use_leaves_out_inactive_cache() {
        let v1: MemoryStats = serde_json::from_str(
            r#"{"usage": 1000, "stats": {"total_inactive_file": 300, "cache": 500}}"#,
        )
        .expect("json");
        assert_eq!(v1.working_set(), Some(700));
        let v2: MemoryStats =
            serde_json::from_str(r#"{"usage": 1000, "stats": {"inactive_file": 100}}"#)
                .expect("json");
        assert_eq!(v2.working_set(), Some(900));
        let stopped: MemoryStats = serde_json::from_str("{}").expect("json");
        assert_eq!(stopped.working_set(), None);
    }

    #[test]
    fn names_and_labels_of_a_summary() {
        let s: Summary = serde_json::from_str(
            r#"{"Id": "0123456789abcdef", "Names": ["/app-web-1"], "State": "running",
                "Labels": {"com.docker.compose.project": "app"}}"#,
        )
        .expect("json");
        assert_eq!(s.name(), "app-web-1");
        assert_eq!(s.label("com.docker.compose.project"), "app");
        assert_eq!(s.label("com.docker.compose.service"), "");
        let s: Summary =
            serde_json::from_str(r#"{"Id": "0123456789abcdef", "Labels": null}"#).expect("json");
        assert_eq!(s.name(), "0123456789ab");
    }
}
