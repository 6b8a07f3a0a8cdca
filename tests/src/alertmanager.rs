//! A real Alertmanager (Debian's `prometheus-alertmanager`), alone or as a cluster of peers
//! gossiping on loopback, with the configuration a test writes; plus `amtool`, and the
//! alerts a test pushes to it in the shape Prometheus sends them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use serde_json::{Map, Value, json};

use crate::ports::free_port;
use crate::process::ServiceProcess;
use crate::tools::require;

const INSTALL: &str = "apt-get install -y prometheus-alertmanager";
const LIMIT: Duration = Duration::from_secs(60);

/// How often a cluster peer gossips: a tenth of the default, so that the notification log
/// and silences reach the other peers well within [`PEER_TIMEOUT`].
pub const GOSSIP_INTERVAL: Duration = Duration::from_millis(100);
/// `--cluster.peer-timeout` of a cluster: the peer at position `i` waits `i` times this
/// before it notifies, and does not when the notification log shows an earlier peer did.
pub const PEER_TIMEOUT: Duration = Duration::from_secs(2);

/// The path of `amtool`.
///
/// # Panics
/// When it is not installed.
pub fn amtool() -> PathBuf {
    require("amtool", INSTALL)
}

/// `amtool check-config <path>`: whether the configuration is valid, and what amtool said.
///
/// # Panics
/// When amtool is missing or cannot be run.
pub fn check_config(path: &Path) -> (bool, String) {
    let output = Command::new(amtool())
        .arg("check-config")
        .arg(path)
        .output()
        .expect("run amtool check-config");
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

fn label_map(pairs: &[(&str, &str)]) -> Value {
    Value::Object(
        pairs
            .iter()
            .map(|(name, value)| ((*name).to_owned(), Value::from(*value)))
            .collect::<Map<String, Value>>(),
    )
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}

/// A firing alert as Prometheus posts it to `/api/v2/alerts`: these labels and annotations,
/// started a minute ago, ending (unless sent again) in five minutes, with a generator URL.
pub fn alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Value {
    let now = SystemTime::now();
    json!({
        "labels": label_map(labels),
        "annotations": label_map(annotations),
        "startsAt": rfc3339(now - Duration::from_secs(60)),
        "endsAt": rfc3339(now + Duration::from_secs(300)),
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
    })
}

/// The same alert resolved: `endsAt` a second ago. Alertmanager notifies a resolved alert
/// only to a receiver it notified of the alert firing (and whose `send_resolved` is on).
pub fn resolved_alert(labels: &[(&str, &str)], annotations: &[(&str, &str)]) -> Value {
    let now = SystemTime::now();
    json!({
        "labels": label_map(labels),
        "annotations": label_map(annotations),
        "startsAt": rfc3339(now - Duration::from_secs(120)),
        "endsAt": rfc3339(now - Duration::from_secs(1)),
        "generatorURL": "http://127.0.0.1:9090/graph?g0.expr=up",
    })
}

/// One Alertmanager on a free loopback port, its storage in a temporary directory. Dropping
/// it kills it.
#[derive(Debug)]
pub struct Alertmanager {
    process: ServiceProcess,
    url: String,
    config_path: PathBuf,
    _dir: tempfile::TempDir,
}

impl Alertmanager {
    /// Starts a single Alertmanager (clustering off) with this `alertmanager.yml`, and waits
    /// until it is ready.
    ///
    /// # Panics
    /// When Alertmanager is missing, or rejects the configuration, or does not become ready.
    pub async fn start(config: &str) -> Self {
        let mut alertmanager = Self::spawn(
            config,
            "alertmanager",
            &[String::from("--cluster.listen-address=")],
        );
        alertmanager.wait_ready().await;
        alertmanager
    }

    /// Starts `n` Alertmanagers with this `alertmanager.yml`, clustered on loopback (each
    /// one's `--cluster.peer` names all the others; gossip every [`GOSSIP_INTERVAL`], full
    /// state exchange every second, [`PEER_TIMEOUT`]), and waits until every peer is ready,
    /// sees all `n` members and has settled. Which peer notifies first follows the order of
    /// their random names: see [`Alertmanager::cluster_position`].
    ///
    /// Alerts are not gossiped: like Prometheus, a test pushes each alert to every peer.
    ///
    /// # Panics
    /// When Alertmanager is missing, or the cluster does not form.
    pub async fn start_cluster(config: &str, n: usize) -> Vec<Self> {
        let cluster_ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let mut peers: Vec<Self> = cluster_ports
            .iter()
            .enumerate()
            .map(|(index, port)| {
                let mut args = vec![
                    format!("--cluster.listen-address=127.0.0.1:{port}"),
                    format!("--cluster.advertise-address=127.0.0.1:{port}"),
                    format!(
                        "--cluster.gossip-interval={}ms",
                        GOSSIP_INTERVAL.as_millis()
                    ),
                    "--cluster.pushpull-interval=1s".to_owned(),
                    "--cluster.probe-interval=200ms".to_owned(),
                    "--cluster.reconnect-interval=1s".to_owned(),
                    format!("--cluster.peer-timeout={}ms", PEER_TIMEOUT.as_millis()),
                    "--cluster.settle-timeout=5s".to_owned(),
                ];
                args.extend(
                    cluster_ports
                        .iter()
                        .filter(|other| *other != port)
                        .map(|other| format!("--cluster.peer=127.0.0.1:{other}")),
                );
                Self::spawn(config, &format!("alertmanager-{index}"), &args)
            })
            .collect();
        for peer in &mut peers {
            peer.wait_ready().await;
        }
        for peer in &peers {
            crate::wait_for_async(
                &format!("{} to see {n} settled cluster members", peer.url),
                LIMIT,
                || async {
                    let status = peer.status().await;
                    let cluster = &status["cluster"];
                    (cluster["status"] == "ready"
                        && cluster["peers"].as_array().map_or(0, Vec::len) == n)
                        .then_some(())
                },
            )
            .await;
        }
        peers
    }

    fn spawn(config: &str, name: &str, cluster_args: &[String]) -> Self {
        let binary = require("prometheus-alertmanager", INSTALL);
        let dir = tempfile::tempdir().expect("tempdir");
        let config_path = dir.path().join("alertmanager.yml");
        std::fs::write(&config_path, config).expect("write alertmanager.yml");
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg(format!("--web.external-url={url}"))
            .arg("--log.level=debug")
            .args(cluster_args);
        let process = ServiceProcess::spawn(name, command, dir.path());
        Self {
            process,
            url,
            config_path,
            _dir: dir,
        }
    }

    async fn wait_ready(&mut self) {
        let client = crate::http::client();
        let ready = format!("{}/-/ready", self.url);
        let process = &mut self.process;
        crate::wait_for_async("Alertmanager to be ready", LIMIT, || {
            assert!(
                process.is_running(),
                "Alertmanager exited: {}",
                process.output()
            );
            let request = client.get(&ready).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
    }

    /// The base URL, `http://127.0.0.1:<port>` (also its `--web.external-url`).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The path of the `alertmanager.yml` it runs with.
    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Alertmanager's own log (debug level: it names every notification sent or failed),
    /// for failure messages.
    pub fn log(&self) -> String {
        self.process.output()
    }

    /// Posts `alerts` to `/api/v2/alerts`, as Prometheus does.
    ///
    /// # Panics
    /// When Alertmanager does not accept them.
    pub async fn push_alerts(&self, alerts: &[Value]) {
        let response = crate::http::client()
            .post(format!("{}/api/v2/alerts", self.url))
            .header("content-type", "application/json")
            .body(Value::from(alerts.to_vec()).to_string())
            .send()
            .await
            .expect("post alerts to Alertmanager");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "Alertmanager refused the alerts: {status} {body}"
        );
    }

    /// `GET /api/v2/status`: the cluster's members and state, the configuration, the version.
    ///
    /// # Panics
    /// When the request fails.
    pub async fn status(&self) -> Value {
        self.get_json("/api/v2/status").await
    }

    /// Its position in the cluster (its name's rank among the members' names): position 0
    /// notifies at once, position `i` waits `i` times [`PEER_TIMEOUT`] and then notifies
    /// only what the gossiped notification log shows no other peer did. `None` when
    /// clustering is off.
    ///
    /// # Panics
    /// When the request fails.
    pub async fn cluster_position(&self) -> Option<usize> {
        let status = self.status().await;
        let cluster = &status["cluster"];
        let own = cluster["name"].as_str()?;
        let mut names: Vec<&str> = cluster["peers"]
            .as_array()?
            .iter()
            .filter_map(|peer| peer["name"].as_str())
            .collect();
        names.sort_unstable();
        names.iter().position(|name| *name == own)
    }

    /// Stops it with SIGTERM (a cluster peer leaves the cluster), killing it after 10 s.
    pub fn stop(&mut self) {
        self.process
            .stop(nix::sys::signal::Signal::SIGTERM, Duration::from_secs(10));
    }

    /// The alerts Alertmanager holds (`GET /api/v2/alerts`).
    ///
    /// # Panics
    /// When the request fails.
    pub async fn alerts(&self) -> Vec<Value> {
        self.get_json("/api/v2/alerts")
            .await
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Writes a new `alertmanager.yml` and has Alertmanager load it (`POST /-/reload`).
    ///
    /// # Panics
    /// When Alertmanager rejects it.
    pub async fn reload(&self, config: &str) {
        std::fs::write(&self.config_path, config).expect("write alertmanager.yml");
        let response = crate::http::client()
            .post(format!("{}/-/reload", self.url))
            .send()
            .await
            .expect("reload Alertmanager");
        let status = response.status();
        let body = response.text().await.unwrap_or_default();
        assert!(
            status.is_success(),
            "Alertmanager rejected the configuration: {status} {body}"
        );
    }

    async fn get_json(&self, path: &str) -> Value {
        let response = crate::http::client()
            .get(format!("{}{path}", self.url))
            .send()
            .await
            .expect("Alertmanager API request");
        let text = response.text().await.expect("body");
        serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("Alertmanager {path} is not JSON ({e}): {text}"))
    }
}
