//! The collector against daemons that misbehave on the socket: silent, garbage, error
//! statuses, oversized, deeply nested and endless answers. Each scrape ends by its deadline
//! with `docker_up` and the reason exact, and the exporter survives.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use mcpwatch_core::{Collector, MetricSink, ScrapeContext};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;
use tokio::time::Instant;

use crate::{ContainersCollector, ContainersConfig};

/// What the fake daemon does with one request.
enum Reply {
    /// An answer with this status and body.
    Json(u16, String),
    /// These bytes, then the connection is closed.
    Raw(Vec<u8>),
    /// Nothing, ever.
    Silent,
    /// A chunked answer whose chunks never end, one every 10 ms.
    ChunkedForever,
}

type Answer = Arc<dyn Fn(&str) -> Reply + Send + Sync>;

const VERSION: &str = r#"{"Version":"99.0","ApiVersion":"1.99","Os":"linux","Arch":"amd64"}"#;

/// The request line's path of a request head.
fn path_of(head: &str) -> String {
    head.split(' ').nth(1).unwrap_or_default().to_owned()
}

async fn serve(mut stream: UnixStream, answer: Answer) {
    let mut buffer = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        buffer.drain(..end + 4);
        match answer(&path_of(&head)) {
            Reply::Json(status, body) => {
                let head = format!(
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n\
                     Content-Length: {}\r\n\r\n",
                    body.len()
                );
                if stream.write_all(head.as_bytes()).await.is_err()
                    || stream.write_all(body.as_bytes()).await.is_err()
                {
                    return;
                }
            }
            Reply::Raw(bytes) => {
                let _ = stream.write_all(&bytes).await;
                return;
            }
            Reply::Silent => {
                std::future::pending::<()>().await;
            }
            Reply::ChunkedForever => {
                let head = "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\
                            Transfer-Encoding: chunked\r\n\r\n1\r\n[\r\n";
                if stream.write_all(head.as_bytes()).await.is_err() {
                    return;
                }
                loop {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    if stream.write_all(b"4\r\n{},\n\r\n").await.is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// A fake daemon on a fresh socket; the socket's directory lives as long as the guard.
fn daemon(answer: impl Fn(&str) -> Reply + Send + Sync + 'static) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("docker.sock");
    let listener = tokio::net::UnixListener::bind(&socket).expect("bind");
    let answer: Answer = Arc::new(answer);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(serve(stream, answer.clone()));
        }
    });
    (dir, socket)
}

/// One collection with `budget`: its result, the sink, and whether it ended by the
/// deadline.
async fn collect(
    socket: &std::path::Path,
    budget: Duration,
) -> (Result<(), String>, MetricSink, bool) {
    let mut config = ContainersConfig::new("d".into());
    config.socket = socket.to_path_buf().into();
    config.stats = true;
    let collector = ContainersCollector::new(config).expect("collector");
    let mut sink = MetricSink::default();
    let deadline = Instant::now() + budget;
    let result = collector
        .collect(&ScrapeContext::new(deadline), &mut sink)
        .await
        .map_err(|e| e.to_string());
    (result, sink, Instant::now() <= deadline)
}

fn value(sink: &MetricSink, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    sink.find(name).and_then(|f| f.value(labels))
}

/// Down with exactly this reason.
fn down_for(sink: &MetricSink, reason: &str) {
    assert_eq!(value(sink, "docker_up", &[]), Some(0.0));
    let family = sink.find("docker_connect_failure").expect("reasons");
    let on: Vec<String> = family
        .samples()
        .iter()
        .filter(|s| matches!(s.value, mcpwatch_core::metrics::SampleValue::Number(v) if v == 1.0))
        .map(|s| format!("{:?}", s.labels))
        .collect();
    assert_eq!(on.len(), 1, "{on:?}");
    assert_eq!(
        value(sink, "docker_connect_failure", &[("reason", reason)]),
        Some(1.0)
    );
    assert!(sink.find("docker_containers").is_none());
}

const BUDGET: Duration = Duration::from_millis(800);

#[tokio::test]
async fn a_socket_that_accepts_and_never_answers_is_down_by_the_deadline() {
    let (_dir, socket) = daemon(|_| Reply::Silent);
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    let error = result.expect_err("silent");
    assert_eq!(error, "GET /version: no answer by the scrape's deadline");
    down_for(&sink, "timeout");
}

#[tokio::test]
async fn garbage_is_a_protocol_failure() {
    let (_dir, socket) = daemon(|_| Reply::Raw(b"SSH-2.0-OpenSSH_9.2\r\n\r\n".to_vec()));
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    let error = result.expect_err("garbage");
    assert!(error.starts_with("GET /version: "), "{error}");
    down_for(&sink, "protocol");
}

#[tokio::test]
async fn an_error_status_on_the_list_is_a_protocol_failure_with_the_message() {
    let (_dir, socket) = daemon(|path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        _ => Reply::Json(500, format!(r#"{{"message":"{}"}}"#, "x".repeat(10_000))),
    });
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    let error = result.expect_err("500");
    assert_eq!(
        error,
        format!(
            "GET /containers/json?all=1: the daemon answered 500 Internal Server Error: {}",
            "x".repeat(200)
        )
    );
    down_for(&sink, "protocol");
}

#[tokio::test]
async fn a_50_mb_list_is_refused_past_the_bound() {
    let item = r#"{"Id":"0123456789abcdef","Names":["/a"],"State":"running","Image":"i"},"#;
    let mut big = String::from("[");
    while big.len() < 50 << 20 {
        big.push_str(item);
    }
    big.push_str(r#"{"Id":"z"}]"#);
    let big = Arc::new(big);
    let (_dir, socket) = daemon(move |path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        _ => Reply::Json(200, big.to_string()),
    });
    let (result, sink, in_time) = collect(&socket, Duration::from_secs(20)).await;
    assert!(in_time);
    let error = result.expect_err("too big");
    assert_eq!(
        error,
        "GET /containers/json?all=1: reading the answer: length limit exceeded"
    );
    down_for(&sink, "protocol");
}

#[tokio::test]
async fn an_inspection_past_its_own_bound_is_refused_while_the_list_takes_more() {
    // A list of 2 MiB is read; an inspection of 2 MiB is not: 16 of them at once would
    // otherwise hold what the list's bound allows, each.
    let padding = "x".repeat(2 << 20);
    let list = format!(
        r#"[{{"Id":"a1","Names":["/a"],"State":"running","Image":"i","Labels":{{"pad":"{padding}"}}}}]"#
    );
    let inspect = format!(
        r#"{{"Id":"a1","Name":"/a","RestartCount":0,"State":{{"Status":"running","OOMKilled":false,"ExitCode":0,"StartedAt":"2024-01-02T03:04:05Z","FinishedAt":"0001-01-01T00:00:00Z"}},"Config":{{"Image":"i","Labels":{{"pad":"{padding}"}}}},"HostConfig":{{"Memory":0}}}}"#
    );
    let (_dir, socket) = daemon(move |path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        "/containers/json?all=1" => Reply::Json(200, list.clone()),
        _ => Reply::Json(200, inspect.clone()),
    });
    let (result, _sink, in_time) = collect(&socket, Duration::from_secs(20)).await;
    assert!(in_time);
    let error = result.expect_err("inspection too big");
    assert_eq!(
        error,
        "1 of 1 requests about containers not answered: GET /containers/a1/json: reading \
         the answer: length limit exceeded"
    );
}

#[tokio::test]
async fn deeply_nested_json_is_refused_without_overflowing_the_stack() {
    let deep = |n: usize| format!("{}{}", "[".repeat(n), "]".repeat(n));
    let (_dir, socket) = daemon(move |path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        "/containers/json?all=1" => Reply::Json(
            200,
            r#"[{"Id":"a1","Names":["/a"],"State":"running","Image":"i"},
                {"Id":"b1","Names":["/b"],"State":"running","Image":"i"}]"#
                .into(),
        ),
        // In a field the collector does not read, where serde skips the value.
        "/containers/a1/json" => Reply::Json(
            200,
            format!(
                r#"{{"Config":{{"Env":{}}},"RestartCount":7}}"#,
                deep(100_000)
            ),
        ),
        "/containers/b1/json" => Reply::Json(
            200,
            r#"{"RestartCount":2,"State":{"Status":"running"}}"#.into(),
        ),
        _ => Reply::Json(200, deep(100_000)),
    });
    let (result, sink, in_time) = collect(&socket, Duration::from_secs(5)).await;
    assert!(in_time);
    // The skipped value is read without recursion; where a value is read, the types
    // bound the depth: the stats answer is refused within its first bytes.
    let error = result.expect_err("nested");
    assert!(
        error.starts_with(
            "1 of 3 requests about containers not answered: \
             GET /containers/b1/stats?stream=false&one-shot=true: unexpected answer: \
             invalid type: sequence, expected "
        ),
        "{error}"
    );
    assert!(error.contains(" at line 1 column "), "{error}");
    assert_eq!(value(&sink, "docker_up", &[]), Some(1.0));
    let restarts = |name: &str| value(&sink, "docker_container_restarts_total", &[("name", name)]);
    assert_eq!(restarts("a"), Some(7.0));
    assert_eq!(restarts("b"), Some(2.0));
    assert!(
        sink.find("docker_container_pids")
            .is_none_or(|f| f.is_empty())
    );
}

#[tokio::test]
async fn an_endless_chunked_list_ends_at_the_deadline() {
    let (_dir, socket) = daemon(|path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        _ => Reply::ChunkedForever,
    });
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    assert_eq!(
        result.expect_err("endless"),
        "GET /containers/json?all=1: no answer by the scrape's deadline"
    );
    down_for(&sink, "timeout");
}

#[tokio::test]
async fn a_container_removed_between_list_and_inspect_leaves_the_others() {
    let (_dir, socket) = daemon(|path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        "/containers/json?all=1" => Reply::Json(
            200,
            r#"[{"Id":"a1","Names":["/a"],"State":"running","Image":"i"},
                {"Id":"b1","Names":["/b"],"State":"exited","Image":"i"}]"#
                .into(),
        ),
        "/containers/a1/json" => Reply::Json(404, r#"{"message":"No such container: a1"}"#.into()),
        "/containers/b1/json" => Reply::Json(
            200,
            r#"{"RestartCount":1,"State":{"Status":"exited","ExitCode":2}}"#.into(),
        ),
        _ => Reply::Silent,
    });
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    assert_eq!(result, Ok(()));
    assert_eq!(value(&sink, "docker_up", &[]), Some(1.0));
    let state = sink.find("docker_container_state").expect("state");
    assert_eq!(
        state.samples().len(),
        crate::metrics::STATES.len(),
        "b only"
    );
    assert_eq!(
        value(&sink, "docker_container_exit_code", &[("name", "b")]),
        Some(2.0)
    );
}

/// What Docker 20.10 answers for the stats of a container that stopped after it was
/// inspected (taken from a real daemon): zeros and the zero time, with status 200.
const STATS_OF_A_STOPPED_CONTAINER: &str = r#"{"read":"0001-01-01T00:00:00Z",
    "preread":"0001-01-01T00:00:00Z","pids_stats":{},"num_procs":0,"storage_stats":{},
    "cpu_stats":{"cpu_usage":{"total_usage":0,"usage_in_kernelmode":0,"usage_in_usermode":0},
    "throttling_data":{"periods":0,"throttled_periods":0,"throttled_time":0}},
    "memory_stats":{},"name":"/a","id":"a1"}"#;

#[tokio::test]
async fn a_container_that_stops_during_its_stats_call_reports_no_cpu_time_of_zero() {
    let (_dir, socket) = daemon(|path| match path {
        "/version" => Reply::Json(200, VERSION.into()),
        "/containers/json?all=1" => Reply::Json(
            200,
            r#"[{"Id":"a1","Names":["/a"],"State":"running","Image":"i"},
                {"Id":"b1","Names":["/b"],"State":"running","Image":"i"}]"#
                .into(),
        ),
        "/containers/a1/json" | "/containers/b1/json" => Reply::Json(
            200,
            r#"{"State":{"Status":"running","StartedAt":"2024-01-02T03:04:05Z"}}"#.into(),
        ),
        "/containers/a1/stats?stream=false&one-shot=true" => {
            Reply::Json(200, STATS_OF_A_STOPPED_CONTAINER.into())
        }
        "/containers/b1/stats?stream=false&one-shot=true" => Reply::Json(
            200,
            r#"{"read":"2024-01-02T03:04:06Z","pids_stats":{"current":1},
                "cpu_stats":{"cpu_usage":{"total_usage":2500000000}},
                "memory_stats":{"usage":1000,"stats":{"inactive_file":100}}}"#
                .into(),
        ),
        _ => Reply::Silent,
    });
    let (result, sink, in_time) = collect(&socket, BUDGET).await;
    assert!(in_time);
    assert_eq!(result, Ok(()));
    let cpu = |name: &str| {
        value(
            &sink,
            "docker_container_cpu_seconds_total",
            &[("name", name)],
        )
    };
    // Not a counter fallen to 0.
    assert_eq!(cpu("a"), None);
    assert_eq!(cpu("b"), Some(2.5));
    assert_eq!(
        value(
            &sink,
            "docker_container_memory_usage_bytes",
            &[("name", "b")]
        ),
        Some(900.0)
    );
    assert_eq!(
        sink.find("docker_container_cpu_seconds_total")
            .map(|f| f.samples().len()),
        Some(1)
    );
}
