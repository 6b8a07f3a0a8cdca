//! The `mcpwatch-notifier` binary, started on a free loopback port with a configuration
//! and a store in a temporary directory; restartable on the same store, killable with
//! SIGKILL.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::Value;

use crate::binaries::workspace_binary;
use crate::ports::free_port;
use crate::process::ServiceProcess;

/// A running notifier.
#[derive(Debug)]
pub struct NotifierProcess {
    process: Option<ServiceProcess>,
    dir: tempfile::TempDir,
    port: u16,
    starts: usize,
}

impl NotifierProcess {
    /// Writes `config` (YAML; `{dir}` in it is replaced by the temporary directory) to
    /// `notifier.yml`, starts the notifier and waits until `/health` answers.
    ///
    /// # Panics
    /// When it does not start.
    pub async fn start(config: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let text = config.replace("{dir}", &dir.path().display().to_string());
        let text = if text.contains("storage:") {
            text
        } else {
            format!(
                "storage:\n  path: {}/notifier.db\n{text}",
                dir.path().display()
            )
        };
        std::fs::write(dir.path().join("notifier.yml"), text).expect("write notifier.yml");
        let mut notifier = Self {
            process: None,
            dir,
            port: free_port(),
            starts: 0,
        };
        notifier.launch().await;
        notifier
    }

    async fn launch(&mut self) {
        let mut command = Command::new(workspace_binary("mcpwatch-notifier"));
        command
            .arg(format!("--config.file={}", self.config_path().display()))
            .arg(format!("--web.listen-address=127.0.0.1:{}", self.port))
            .arg("--log.level=debug")
            .current_dir(self.dir.path());
        self.starts += 1;
        let name = format!("notifier-{}", self.starts);
        self.process = Some(ServiceProcess::spawn(&name, command, self.dir.path()));
        let client = crate::http::client();
        let health = format!("{}/health", self.url());
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        let mut started = false;
        while !started && std::time::Instant::now() < deadline {
            started = client
                .get(&health)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if !started {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        assert!(started, "the notifier did not start:\n{}", self.log());
    }

    /// The configuration file.
    pub fn config_path(&self) -> PathBuf {
        self.dir.path().join("notifier.yml")
    }

    /// The process id of the running notifier.
    ///
    /// # Panics
    /// When it is not running.
    pub fn pid(&self) -> u32 {
        self.process
            .as_ref()
            .expect("the notifier is running")
            .pid()
    }

    /// The temporary directory (store, log channel files).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// The base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// `/webhook`.
    pub fn webhook_url(&self) -> String {
        format!("{}/webhook", self.url())
    }

    /// Everything every run of it wrote (standard output holds the log channel's lines).
    pub fn log(&self) -> String {
        (1..=self.starts)
            .map(|i| {
                std::fs::read_to_string(self.dir.path().join(format!("notifier-{i}.log")))
                    .unwrap_or_default()
            })
            .collect::<Vec<_>>()
            .join("\n--- restart ---\n")
    }

    /// Kills it with SIGKILL, at once.
    pub fn kill(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGKILL, Duration::from_secs(10));
        }
    }

    /// Stops it with SIGTERM.
    pub fn stop(&mut self) {
        if let Some(mut process) = self.process.take() {
            process.stop(Signal::SIGTERM, Duration::from_secs(20));
        }
    }

    /// Starts it again on the same port, configuration and store.
    pub async fn restart(&mut self) {
        self.stop();
        self.launch().await;
    }

    /// Starts it again after [`NotifierProcess::kill`].
    pub async fn start_again(&mut self) {
        assert!(self.process.is_none(), "still running");
        self.launch().await;
    }

    /// Posts a webhook body (JSON) with a bearer token; the status and the JSON answer.
    pub async fn post(&self, body: &Value, token: Option<&str>) -> (u16, Value) {
        self.post_text(body.to_string(), token).await
    }

    /// Posts a JSON text as it is (a `serde_json::Value` cannot hold every legal body: deep
    /// nesting, several megabytes built elsewhere) to `/webhook`: status and JSON answer.
    ///
    /// # Panics
    /// When the request cannot be sent.
    pub async fn post_text(&self, text: String, token: Option<&str>) -> (u16, Value) {
        let mut request = crate::http::client()
            .post(self.webhook_url())
            .header("Content-Type", "application/json")
            .body(text);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await.expect("POST /webhook");
        let status = response.status().as_u16();
        let text = response.text().await.unwrap_or_default();
        (status, serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// GETs a JSON endpoint.
    pub async fn get_json(&self, path: &str) -> Value {
        crate::http::client()
            .get(format!("{}{path}", self.url()))
            .send()
            .await
            .expect("GET")
            .text()
            .await
            .ok()
            .and_then(|t| serde_json::from_str(&t).ok())
            .unwrap_or(Value::Null)
    }

    /// The value of one series in `/metrics`, 0 when absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = crate::http::client()
            .get(format!("{}/metrics", self.url()))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text");
        crate::exposition::value_of(&crate::exposition::checked(text), series).unwrap_or(0.0)
    }
}

impl Drop for NotifierProcess {
    fn drop(&mut self) {
        // A failing test shows what the notifier said.
        if std::thread::panicking() {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("--- mcpwatch-notifier log ---\n{}", self.log());
            }
        }
    }
}

/// Webhook `i` of load worker `worker`: its group key (distinct for every pair) and body,
/// one firing alert.
pub fn load_payload(worker: usize, i: usize) -> (String, Value) {
    let key = format!("{{}}:{{alertname=\"Load{worker}x{i}\"}}");
    let body = payload(
        "mcpwatch",
        &key,
        &[(
            &[("alertname", "Load"), ("n", &format!("{worker}-{i}"))],
            "firing",
            "2026-11-22T10:00:00Z",
        )],
        "http://am:9093",
    );
    (key, body)
}

/// An alert of [`payload`]: its labels, status and `startsAt`.
pub type TestAlert<'a> = (&'a [(&'a str, &'a str)], &'a str, &'a str);

/// A webhook payload as Alertmanager 0.25+ sends it, grouped by `alertname`.
pub fn payload(
    receiver: &str,
    group_key: &str,
    alerts: &[TestAlert<'_>],
    external_url: &str,
) -> Value {
    let alerts: Vec<Value> = alerts
        .iter()
        .map(|(labels, status, starts)| {
            let labels: serde_json::Map<String, Value> = labels
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::String((*v).to_owned())))
                .collect();
            let name = labels
                .get("alertname")
                .and_then(Value::as_str)
                .unwrap_or("Test")
                .to_owned();
            let fingerprint = format!("{:016x}", mcpwatch_core::fnv::hash(serde_json::to_string(&labels).unwrap_or_default().as_bytes()));
            serde_json::json!({
                "status": status,
                "labels": labels,
                "annotations": {
                    "summary": format!("{name} is happening."),
                    "description": format!("{name} has been happening for a while."),
                    "runbook_url": format!("https://example.com/runbooks#{}", name.to_lowercase()),
                },
                "startsAt": starts,
                "endsAt": if *status == "resolved" { "2026-11-22T12:00:00Z" } else { "0001-01-01T00:00:00Z" },
                "generatorURL": "http://prometheus.example:9090/graph?g0.expr=up",
                "fingerprint": fingerprint,
            })
        })
        .collect();
    let firing = alerts.iter().any(|a| a["status"] == "firing");
    // Grouped by alertname, as most Alertmanager routes are.
    let group_labels = alerts.first().map_or(
        Value::Null,
        |a| serde_json::json!({"alertname": a["labels"]["alertname"]}),
    );
    serde_json::json!({
        "receiver": receiver,
        "status": if firing { "firing" } else { "resolved" },
        "alerts": alerts,
        "groupLabels": group_labels,
        "commonLabels": {},
        "commonAnnotations": {},
        "externalURL": external_url,
        "version": "4",
        "groupKey": group_key,
        "truncatedAlerts": 0,
    })
}
