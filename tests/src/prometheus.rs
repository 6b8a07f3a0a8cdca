//! A real Prometheus server, scraping what a test names.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use crate::ports::free_port;
use crate::process::ServiceProcess;
use crate::tools::require;

/// A Prometheus server on a free loopback port with its data in a temporary directory.
#[derive(Debug)]
pub struct Prometheus {
    process: ServiceProcess,
    url: String,
    _dir: tempfile::TempDir,
}

impl Prometheus {
    /// Starts Prometheus with these `scrape_configs` (a YAML list) and `rule_files`, scraping
    /// every second, and waits until it is ready.
    ///
    /// # Panics
    /// When Prometheus is missing or does not become ready.
    pub async fn start(scrape_configs: &str, rule_files: &[&Path]) -> Self {
        Self::start_alerting(scrape_configs, rule_files, None).await
    }

    /// As [`Prometheus::start`], and sends its alerts to the Alertmanager at
    /// `alertmanager` (`host:port`) when one is given.
    ///
    /// # Panics
    /// When Prometheus is missing or does not become ready.
    pub async fn start_alerting(
        scrape_configs: &str,
        rule_files: &[&Path],
        alertmanager: Option<&str>,
    ) -> Self {
        let binary = require("prometheus", "apt-get install -y prometheus");
        let dir = tempfile::tempdir().expect("tempdir");
        let rules = rule_files
            .iter()
            .map(|r| format!("  - {}\n", r.display()))
            .collect::<String>();
        let alerting = alertmanager.map_or_else(String::new, |address| {
            format!("alerting:\n  alertmanagers:\n    - static_configs:\n        - targets: ['{address}']\n")
        });
        let config = format!(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n\
             {alerting}rule_files:\n{rules}scrape_configs:\n{scrape_configs}"
        );
        let config_path = dir.path().join("prometheus.yml");
        std::fs::write(&config_path, config).expect("write prometheus.yml");
        let port = free_port();
        let mut command = Command::new(binary);
        command
            .arg(format!("--config.file={}", config_path.display()))
            .arg(format!(
                "--storage.tsdb.path={}",
                dir.path().join("data").display()
            ))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .arg("--log.level=warn");
        let process = ServiceProcess::spawn("prometheus", command, dir.path());
        let prometheus = Self {
            process,
            url: format!("http://127.0.0.1:{port}"),
            _dir: dir,
        };
        let client = crate::http::client();
        let ready = format!("{}/-/ready", prometheus.url);
        crate::wait_for_async("Prometheus to be ready", Duration::from_secs(60), || {
            let request = client.get(&ready).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        })
        .await;
        prometheus
    }

    /// The base URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Prometheus's own log, for failure messages.
    pub fn log(&self) -> String {
        self.process.output()
    }

    async fn api(&self, path: &str, query: &[(&str, &str)]) -> Value {
        let response = crate::http::client()
            .get(format!("{}{path}", self.url))
            .query(query)
            .send()
            .await
            .expect("Prometheus API request");
        let body: Value = serde_json::from_str(&response.text().await.expect("body"))
            .expect("Prometheus API JSON");
        assert_eq!(body["status"], "success", "Prometheus API {path}: {body}");
        body["data"].clone()
    }

    /// The active targets (`/api/v1/targets`).
    pub async fn active_targets(&self) -> Vec<Value> {
        self.api("/api/v1/targets", &[("state", "active")]).await["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The result vector of an instant query.
    pub async fn query(&self, expr: &str) -> Vec<Value> {
        let data = self.api("/api/v1/query", &[("query", expr)]).await;
        data["result"].as_array().cloned().unwrap_or_default()
    }

    /// The alerts Prometheus holds, pending and firing (`/api/v1/alerts`).
    pub async fn alerts(&self) -> Vec<Value> {
        self.api("/api/v1/alerts", &[]).await["alerts"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// The rule groups Prometheus loaded, with each rule's health (`/api/v1/rules`).
    pub async fn rule_groups(&self) -> Vec<Value> {
        self.api("/api/v1/rules", &[]).await["groups"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Waits until every active target's last scrape succeeded; returns the targets.
    ///
    /// # Panics
    /// When a target stays unhealthy for `limit`.
    pub async fn wait_for_healthy_targets(&self, limit: Duration) -> Vec<Value> {
        let targets = crate::wait_for_async("every target to be up", limit, || async {
            let targets = self.active_targets().await;
            (!targets.is_empty() && targets.iter().all(|t| t["health"] == "up")).then_some(targets)
        })
        .await;
        self.assert_no_duplicate_samples().await;
        targets
    }

    /// Fails when a scrape so far had a series twice: Prometheus drops the second sample
    /// and counts it in its own `prometheus_target_scrapes_sample_duplicate_timestamp_total`.
    ///
    /// # Panics
    /// When it counted any.
    pub async fn assert_no_duplicate_samples(&self) {
        let own = crate::http::client()
            .get(format!("{}/metrics", self.url))
            .send()
            .await
            .expect("GET Prometheus's /metrics")
            .text()
            .await
            .expect("Prometheus's metrics");
        let duplicates = crate::exposition::value_of(
            &own,
            "prometheus_target_scrapes_sample_duplicate_timestamp_total",
        );
        assert_eq!(
            duplicates,
            Some(0.0),
            "Prometheus dropped samples of a series written twice in one scrape"
        );
    }
}
