//! The deployment files (`deploy/`): Prometheus's and Alertmanager's configurations pass
//! promtool and amtool, and a real Alertmanager routes and inhibits as they say; every YAML
//! and JSON file of `deploy/`, `alert-rules/` and `grafana-dashboards/` parses; the compose
//! stack, the Kubernetes manifests, the systemd units and the Dockerfile fit together; and
//! every shipped exporter and notifier configuration passes the binaries' `--check-config`
//! with the placeholder secrets of `deploy/secrets/`.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcpwatch_tests::alertmanager::{Alertmanager, alert, amtool, check_config};
use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::repo::{read, root, yaml, yaml_documents};
use mcpwatch_tests::stand_in::HttpStandIn;
use mcpwatch_tests::tools::require;
use mcpwatch_tests::wait_for_async;
use serde::Deserialize;
use serde_json::Value;

const LIMIT: Duration = Duration::from_secs(60);

/// The job names the alert rules select on.
const EXPORTER_JOB: &str = "mcpwatch";
const NOTIFIER_JOB: &str = "mcpwatch-notifier";

/// Where the stack's services find their secret files, and where systemd hands them over.
const COMPOSE_SECRETS: &str = "/run/secrets/";
const EXPORTER_CREDENTIALS: &str = "/run/credentials/mcpwatch-exporter.service/";
const NOTIFIER_CREDENTIALS: &str = "/run/credentials/mcpwatch-notifier.service/";

fn deploy() -> PathBuf {
    root().join("deploy")
}

fn yaml_str(what: &str, text: &str) -> Value {
    serde_norway::from_str(text).unwrap_or_else(|e| panic!("{what}: {e}"))
}

fn str_of<'a>(value: &'a Value, what: &str) -> &'a str {
    value
        .as_str()
        .unwrap_or_else(|| panic!("{what}: expected a string, got {value}"))
}

fn array_of<'a>(value: &'a Value, what: &str) -> &'a Vec<Value> {
    value
        .as_array()
        .unwrap_or_else(|| panic!("{what}: expected a list, got {value}"))
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter_map(|item| item.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

/// Runs a program; returns whether it succeeded and everything it printed.
fn run(program: &Path, args: &[&str]) -> (bool, String) {
    let output = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", program.display()));
    (
        output.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ),
    )
}

/// The file names after `prefix` in `text`: `/run/secrets/notifier_token` gives
/// `notifier_token`.
fn names_after(text: &str, prefix: &str) -> BTreeSet<String> {
    text.match_indices(prefix)
        .map(|(at, _)| {
            text[at + prefix.len()..]
                .chars()
                .take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
                .collect::<String>()
                .trim_end_matches('.')
                .to_owned()
        })
        .filter(|name| !name.is_empty())
        .collect()
}

/// The `.yml`, `.yaml` and `.json` files under `dir`, recursively.
fn config_files(dir: &Path, found: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    entries.sort();
    for path in entries {
        if path.is_dir() {
            config_files(&path, found);
        } else if path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yml" | "yaml" | "json"))
        {
            found.push(path);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Prometheus
// ---------------------------------------------------------------------------------------

#[test]
fn promtool_accepts_the_prometheus_configuration() {
    let promtool = require("promtool", "apt-get install -y prometheus");
    let config_path = deploy().join("prometheus.yml");

    // As shipped: the rule files are where docker-compose mounts them, absent here.
    let (ok, output) = run(
        &promtool,
        &["check", "config", config_path.to_str().expect("path")],
    );
    assert!(ok, "promtool check config deploy/prometheus.yml:\n{output}");

    // With the rules read from alert-rules/, as the stack mounts them at /etc/prometheus/rules.
    let text = read(&config_path);
    assert!(text.contains("/etc/prometheus/rules/*.yml"), "{text}");
    let dir = tempfile::tempdir().expect("tempdir");
    let copy = dir.path().join("prometheus.yml");
    let rules = root().join("alert-rules");
    std::fs::write(
        &copy,
        text.replace(
            "/etc/prometheus/rules/",
            &format!("{}/", rules.to_str().expect("path")),
        ),
    )
    .expect("write prometheus.yml");
    let (ok, output) = run(
        &promtool,
        &["check", "config", copy.to_str().expect("path")],
    );
    assert!(
        ok,
        "promtool check config, rules from alert-rules/:\n{output}"
    );
    let rule_files = std::fs::read_dir(&rules).map_or(0, |entries| {
        entries
            .filter_map(Result::ok)
            .filter(|e| e.path().extension().is_some_and(|x| x == "yml"))
            .count()
    });
    if rule_files > 0 {
        assert!(
            output.contains(&format!("SUCCESS: {rule_files} rule files found")),
            "the rule_files glob should find the {rule_files} files of alert-rules/:\n{output}"
        );
    }

    let config = yaml(&config_path);
    assert_eq!(config["global"]["scrape_interval"], "15s");
    assert_eq!(config["global"]["evaluation_interval"], "15s");
    assert_eq!(
        strings(&config["rule_files"]),
        ["/etc/prometheus/rules/*.yml"]
    );
    assert_eq!(
        config["alerting"]["alertmanagers"][0]["static_configs"][0]["targets"][0],
        "alertmanager:9093"
    );
    let jobs: BTreeMap<&str, &Value> = array_of(&config["scrape_configs"], "scrape_configs")
        .iter()
        .map(|job| (str_of(&job["job_name"], "job_name"), job))
        .collect();
    for (job, target) in [
        (EXPORTER_JOB, "exporter:9810"),
        (NOTIFIER_JOB, "notifier:9811"),
        ("prometheus", "localhost:9090"),
        ("alertmanager", "alertmanager:9093"),
    ] {
        let scrape = jobs
            .get(job)
            .unwrap_or_else(|| panic!("no scrape job {job:?}: {jobs:?}"));
        assert_eq!(
            scrape["static_configs"][0]["targets"][0], target,
            "job {job}"
        );
    }
    // The exporter's scrape timeout fits in its interval, and is what exporter.yml's
    // scrape.timeout is sized for.
    assert_eq!(jobs[EXPORTER_JOB]["scrape_timeout"], "10s");
    assert_eq!(
        yaml(&deploy().join("exporter.yml"))["scrape"]["timeout"],
        "10s"
    );
}

// ---------------------------------------------------------------------------------------
// Alertmanager
// ---------------------------------------------------------------------------------------

fn receiver<'a>(config: &'a Value, name: &str) -> &'a Value {
    array_of(&config["receivers"], "receivers")
        .iter()
        .find(|r| r["name"] == name)
        .unwrap_or_else(|| panic!("no receiver {name:?}"))
}

/// The receivers amtool routes an alert with these labels to.
fn routed_to(config: &Path, labels: &[&str]) -> String {
    let mut args = vec![
        "config".to_owned(),
        "routes".to_owned(),
        "test".to_owned(),
        format!("--config.file={}", config.display()),
    ];
    args.extend(labels.iter().map(|l| (*l).to_owned()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, output) = run(&amtool(), &args);
    assert!(ok, "amtool config routes test {labels:?}: {output}");
    // amtool warns on stderr that --config.file overrides --alertmanager.url; the answer
    // is the line of receiver names.
    output
        .lines()
        .filter(|l| !l.starts_with("Warning:"))
        .collect::<Vec<_>>()
        .join("\n")
        .trim()
        .to_owned()
}

#[test]
fn amtool_accepts_the_alertmanager_configuration_and_routes_as_documented() {
    let path = deploy().join("alertmanager.yml");
    let (valid, output) = check_config(&path);
    assert!(
        valid,
        "amtool check-config deploy/alertmanager.yml:\n{output}"
    );

    let config = yaml(&path);
    let route = &config["route"];
    assert_eq!(route["receiver"], "mcpwatch-notifier");
    assert_eq!(
        strings(&route["group_by"]),
        ["alertname", "job", "instance", "target"]
    );
    for key in ["group_wait", "group_interval", "repeat_interval"] {
        assert!(route[key].is_string(), "route.{key}");
    }
    let webhook = &receiver(&config, "mcpwatch-notifier")["webhook_configs"][0];
    assert_eq!(webhook["url"], "http://notifier:9811/webhook");
    assert_eq!(webhook["send_resolved"], true);
    assert_eq!(webhook["max_alerts"], 0);
    assert_eq!(
        webhook["http_config"]["authorization"]["credentials_file"],
        "/run/secrets/notifier_token"
    );
    // The fallback does not go through the notifier.
    let fallback = receiver(&config, "fallback-email");
    assert!(fallback["webhook_configs"].is_null(), "{fallback}");
    let email = &fallback["email_configs"][0];
    assert!(
        email["to"].is_string() && email["smarthost"].is_string(),
        "{email}"
    );
    assert!(email["auth_password_file"].is_string(), "{email}");
    assert!(
        email["auth_password"].is_null(),
        "no inline password: {email}"
    );

    assert_eq!(
        routed_to(&path, &["alertname=McpDaemonDown", "severity=critical"]),
        "mcpwatch-notifier"
    );
    assert_eq!(
        routed_to(
            &path,
            &["alertname=McpwatchNotifierDown", "severity=critical"]
        ),
        "fallback-email"
    );
    assert_eq!(
        routed_to(
            &path,
            &["alertname=McpwatchNotifierDeadLetters", "severity=warning"]
        ),
        "fallback-email"
    );
    assert_eq!(
        routed_to(&path, &["alertname=McpwatchWatchdog", "severity=info"]),
        "watchdog"
    );
    assert_eq!(
        routed_to(
            &path,
            &["alertname=McpwatchExporterDown", "severity=critical"]
        ),
        "mcpwatch-notifier"
    );
}

/// What a test alert looks like in Alertmanager's and the webhook's JSON: its name, target,
/// instance and severity.
fn alert_key(labels: &Value) -> String {
    format!(
        "{}/{}/{}/{}",
        labels["alertname"].as_str().unwrap_or_default(),
        labels["target"].as_str().unwrap_or_default(),
        labels["instance"].as_str().unwrap_or_default(),
        labels["severity"].as_str().unwrap_or_default()
    )
}

/// The shipped alertmanager.yml in a real Alertmanager: the inhibitions mute what they
/// should and nothing else, the notifier gets the rest with the token of
/// `credentials_file`, and neither the watchdog nor the notifier's own alerts go to it.
/// Only timings and addresses are changed: the notifier is a local stand-in, the SMTP
/// server a closed local port, and groups wait one second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alertmanager_inhibits_and_notifies_as_documented() {
    let notifier = HttpStandIn::webhook().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let token = mcpwatch_tests::random_token("token-");
    let token_file = dir.path().join("notifier_token");
    std::fs::write(&token_file, &token).expect("write token");

    let mut config = yaml(&deploy().join("alertmanager.yml"));
    config["route"]["group_wait"] = Value::from("1s");
    for receiver in config["receivers"].as_array_mut().expect("receivers") {
        if let Some(hooks) = receiver["webhook_configs"].as_array_mut() {
            for hook in hooks {
                if hook["url"] == "http://notifier:9811/webhook" {
                    hook["url"] = Value::from(notifier.endpoint());
                    hook["http_config"]["authorization"]["credentials_file"] =
                        Value::from(token_file.to_str().expect("path"));
                }
            }
        }
        if let Some(emails) = receiver["email_configs"].as_array_mut() {
            for email in emails {
                email["smarthost"] = Value::from(mcpwatch_tests::ports::free_address().to_string());
            }
        }
    }
    // JSON is YAML.
    let am = Alertmanager::start(&config.to_string()).await;

    // (alertname, severity, target, instance, muted by an inhibition)
    let cases = [
        // A daemon down mutes the other McpDaemon* alerts about it, not about another one.
        ("McpDaemonDown", "critical", "exai", "exporter:9810", false),
        ("McpDaemonNoTools", "warning", "exai", "exporter:9810", true),
        // Except the alerts that name the cause the daemon reported.
        (
            "McpDaemonDependencyDown",
            "critical",
            "exai",
            "exporter:9810",
            false,
        ),
        (
            "McpDaemonProbeFailing",
            "warning",
            "other",
            "exporter:9810",
            false,
        ),
        // PostgreSQL and Redis alike, and the one does not mute the other.
        ("PostgresDown", "critical", "main", "exporter:9810", false),
        (
            "PostgresLockWaits",
            "warning",
            "main",
            "exporter:9810",
            true,
        ),
        ("RedisDown", "critical", "cache", "exporter:9810", false),
        (
            "RedisEvictingKeys",
            "warning",
            "cache",
            "exporter:9810",
            true,
        ),
        (
            "RedisEvictingKeys",
            "warning",
            "main",
            "exporter:9810",
            false,
        ),
        // A critical alert mutes the warning of the same alert about the same thing.
        ("HostDiskSpaceLow", "critical", "/", "host-a:9810", false),
        ("HostDiskSpaceLow", "warning", "/", "host-a:9810", true),
        ("HostDiskSpaceLow", "warning", "/", "host-b:9810", false),
        // An exporter down mutes the alerts of its instance.
        ("McpwatchExporterDown", "critical", "", "host-c:9810", false),
        ("HostHighCpuUsage", "warning", "", "host-c:9810", true),
        ("HostHighCpuUsage", "warning", "", "host-d:9810", false),
    ];
    let mut alerts: Vec<Value> = cases
        .iter()
        .map(|&(name, severity, target, instance, _)| {
            let mut labels = vec![
                ("alertname", name),
                ("severity", severity),
                ("job", EXPORTER_JOB),
                ("instance", instance),
            ];
            if !target.is_empty() {
                labels.push(("target", target));
            }
            alert(&labels, &[("summary", "test")])
        })
        .collect();
    alerts.push(alert(
        &[("alertname", "McpwatchWatchdog"), ("severity", "info")],
        &[],
    ));
    alerts.push(alert(
        &[
            ("alertname", "McpwatchNotifierDown"),
            ("severity", "critical"),
            ("job", NOTIFIER_JOB),
            ("instance", "notifier:9811"),
        ],
        &[],
    ));
    // The muting alerts go first, and the rest once Alertmanager holds them: a muted alert
    // must never be notified in the moment before its inhibitor is known.
    let mutes = |a: &Value| {
        a["labels"]["severity"] == "critical"
            || a["labels"]["alertname"]
                .as_str()
                .is_some_and(|n| n.ends_with("Down"))
    };
    let (sources, others): (Vec<Value>, Vec<Value>) = alerts.into_iter().partition(mutes);
    am.push_alerts(&sources).await;
    let source_keys: BTreeSet<String> = sources.iter().map(|a| alert_key(&a["labels"])).collect();
    wait_for_async("Alertmanager to hold the muting alerts", LIMIT, || async {
        let held: BTreeSet<String> = am
            .alerts()
            .await
            .iter()
            .map(|a| alert_key(&a["labels"]))
            .collect();
        source_keys.is_subset(&held).then_some(())
    })
    .await;
    am.push_alerts(&others).await;

    let expected: BTreeMap<String, bool> = cases
        .iter()
        .map(|&(name, severity, target, instance, muted)| {
            (format!("{name}/{target}/{instance}/{severity}"), muted)
        })
        .collect();
    assert_eq!(expected.len(), cases.len(), "distinct test alerts");
    // (alert, whether Alertmanager shows it suppressed); the inhibitor takes in the alerts
    // asynchronously, so poll until they settle or the limit passes.
    let start = std::time::Instant::now();
    let states = loop {
        let states: BTreeMap<String, bool> = am
            .alerts()
            .await
            .iter()
            .map(|a| {
                (
                    alert_key(&a["labels"]),
                    a["status"]["state"] == "suppressed",
                )
            })
            .filter(|(key, _)| expected.contains_key(key))
            .collect();
        if states == expected || start.elapsed() > LIMIT {
            break states;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(states, expected, "muted (true) or not\n{}", am.log());

    // The notifier gets every alert that is not muted, with the bearer token of the file.
    let delivered = |requests: &[mcpwatch_tests::stand_in::ReceivedRequest]| {
        requests
            .iter()
            .flat_map(|r| r.json()["alerts"].as_array().cloned().unwrap_or_default())
            .map(|a| alert_key(&a["labels"]))
            .collect::<BTreeSet<String>>()
    };
    let unmuted: BTreeSet<String> = expected
        .iter()
        .filter(|(_, muted)| !**muted)
        .map(|(key, _)| key.clone())
        .collect();
    let requests = wait_for_async("the notifier stand-in to get every alert", LIMIT, || {
        let requests = notifier.requests();
        let complete = unmuted.is_subset(&delivered(&requests));
        async move { complete.then_some(requests) }
    })
    .await;
    let seen = delivered(&requests);
    for (key, muted) in &expected {
        assert_eq!(seen.contains(key), !muted, "{key} delivered: {seen:?}");
    }
    assert!(
        !seen
            .iter()
            .any(|k| k.starts_with("McpwatchWatchdog/") || k.starts_with("McpwatchNotifier")),
        "the watchdog and the notifier's own alerts do not go to the notifier: {seen:?}"
    );
    for request in &requests {
        assert_eq!(
            request.header("authorization"),
            Some(format!("Bearer {token}").as_str())
        );
    }
}

// ---------------------------------------------------------------------------------------
// Every file parses
// ---------------------------------------------------------------------------------------

#[test]
fn every_yaml_and_json_file_parses() {
    let mut files = Vec::new();
    for dir in ["deploy", "alert-rules", "grafana-dashboards"] {
        config_files(&root().join(dir), &mut files);
    }
    assert!(
        files
            .iter()
            .any(|f| f.ends_with("deploy/docker-compose.yml")),
        "{files:?}"
    );
    for file in &files {
        let text = read(file);
        if file.extension().is_some_and(|e| e == "json") {
            serde_json::from_str::<Value>(&text)
                .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        } else {
            let mut documents = 0;
            for document in serde_norway::Deserializer::from_str(&text) {
                serde_norway::Value::deserialize(document)
                    .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
                documents += 1;
            }
            assert!(documents > 0, "{}: no YAML document", file.display());
        }
    }
}

// ---------------------------------------------------------------------------------------
// docker compose
// ---------------------------------------------------------------------------------------

/// A compose volume entry: (source, target).
fn compose_volume(entry: &Value) -> (String, String) {
    if let Some(short) = entry.as_str() {
        let mut parts = short.splitn(3, ':');
        let source = parts.next().unwrap_or_default().to_owned();
        let target = parts.next().unwrap_or_default().to_owned();
        (source, target)
    } else {
        (
            entry["source"].as_str().unwrap_or_default().to_owned(),
            entry["target"].as_str().unwrap_or_default().to_owned(),
        )
    }
}

#[test]
fn docker_compose_stack_is_complete_and_consistent() {
    let compose = yaml(&deploy().join("docker-compose.yml"));
    let services = compose["services"].as_object().expect("services");
    let names: BTreeSet<&str> = services.keys().map(String::as_str).collect();
    for required in [
        "exporter",
        "notifier",
        "prometheus",
        "alertmanager",
        "grafana",
        "postgres",
        "redis",
    ] {
        assert!(names.contains(required), "no service {required}: {names:?}");
    }
    let volumes: BTreeSet<&str> = compose["volumes"]
        .as_object()
        .map(|v| v.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let secrets = compose["secrets"].as_object().expect("top-level secrets");

    // Every secret is a file under deploy/secrets/ with a placeholder beside it.
    for (name, secret) in secrets {
        let file = str_of(&secret["file"], &format!("secrets.{name}.file"));
        let path = deploy().join(file);
        assert!(
            path.starts_with(deploy().join("secrets")),
            "secret {name}: {file} is not under deploy/secrets/"
        );
        let example = PathBuf::from(format!("{}.example", path.display()));
        assert!(
            example.is_file(),
            "secret {name}: no placeholder {}",
            example.display()
        );
    }

    let mut mounted = BTreeMap::new();
    for (name, service) in services {
        // An image, or a build whose context and Dockerfile exist.
        if let Some(build) = service.get("build") {
            let context = deploy().join(str_of(&build["context"], "build.context"));
            assert!(
                context.is_dir(),
                "{name}: build context {}",
                context.display()
            );
            let dockerfile = context.join(build["dockerfile"].as_str().unwrap_or("Dockerfile"));
            assert!(dockerfile.is_file(), "{name}: {}", dockerfile.display());
        } else {
            assert!(
                service["image"].is_string(),
                "{name}: neither image nor build"
            );
        }
        assert!(service["restart"].is_string(), "{name}: no restart policy");
        assert!(
            service["healthcheck"]["test"].is_array(),
            "{name}: no healthcheck"
        );

        let own_secrets: BTreeSet<String> = strings(&service["secrets"]).into_iter().collect();
        for secret in &own_secrets {
            assert!(
                secrets.contains_key(secret),
                "{name}: undeclared secret {secret}"
            );
        }
        // No secret value inline: secrets are passed as *_FILE paths of its own secrets.
        if let Some(environment) = service["environment"].as_object() {
            for (key, value) in environment {
                let upper = key.to_ascii_uppercase();
                if ["PASSWORD", "TOKEN", "SECRET", "_KEY"]
                    .iter()
                    .any(|word| upper.contains(word))
                {
                    assert!(
                        upper.ends_with("_FILE"),
                        "{name}: {key} holds a secret inline; use a secret file"
                    );
                    let path = str_of(value, key);
                    let secret = path.strip_prefix(COMPOSE_SECRETS).unwrap_or_default();
                    assert!(own_secrets.contains(secret), "{name}: {key}={path}");
                }
            }
        }
        // Every /run/secrets/ path it uses, in the service or in the files mounted into it,
        // is one of its secrets.
        let mut used = names_after(&service.to_string(), COMPOSE_SECRETS);
        for volume in service["volumes"].as_array().into_iter().flatten() {
            let (source, target) = compose_volume(volume);
            assert!(target.starts_with('/'), "{name}: volume target {target:?}");
            if source.starts_with('.') {
                let path = deploy().join(&source);
                assert!(
                    path.exists(),
                    "{name}: mounts {source}, which is not in the repository ({})",
                    path.display()
                );
                let mut files = Vec::new();
                if path.is_dir() {
                    for entry in std::fs::read_dir(&path).expect("read_dir").flatten() {
                        if entry.path().is_file() {
                            files.push(entry.path());
                        }
                    }
                } else {
                    files.push(path.clone());
                }
                for file in files {
                    used.extend(names_after(&read(&file), COMPOSE_SECRETS));
                }
                mounted.insert((name.clone(), target.clone()), source.clone());
            } else if !source.starts_with('/') {
                assert!(
                    volumes.contains(source.as_str()),
                    "{name}: volume {source} undeclared"
                );
            }
        }
        let missing: Vec<&String> = used.difference(&own_secrets).collect();
        assert!(
            missing.is_empty(),
            "{name} uses /run/secrets/{missing:?} without the secret"
        );
    }

    // The image built from deploy/Dockerfile, tagged with the workspace's version.
    for service in ["exporter", "notifier"] {
        assert_eq!(
            services[service]["image"],
            format!("mcpwatch:{}", env!("CARGO_PKG_VERSION")),
            "{service}"
        );
    }

    // The files go where the programs look for them.
    let mount = |service: &str, target: &str| {
        mounted
            .get(&(service.to_owned(), target.to_owned()))
            .cloned()
            .unwrap_or_else(|| panic!("{service}: nothing mounted at {target}: {mounted:?}"))
    };
    assert_eq!(
        mount("exporter", "/etc/mcpwatch/exporter.yml"),
        "./exporter.yml"
    );
    assert!(
        strings(&services["exporter"]["command"])
            .contains(&"--config.file=/etc/mcpwatch/exporter.yml".to_owned())
    );
    assert_eq!(
        mount("notifier", "/etc/mcpwatch/notifier.yml"),
        "./notifier.yml"
    );
    assert!(
        strings(&services["notifier"]["command"])
            .contains(&"--config.file=/etc/mcpwatch/notifier.yml".to_owned())
    );
    assert_eq!(
        strings(&services["notifier"]["entrypoint"]),
        ["/usr/local/bin/mcpwatch-notifier"]
    );
    // The notifier's store is on a named volume.
    let notifier_volumes: Vec<(String, String)> =
        array_of(&services["notifier"]["volumes"], "notifier.volumes")
            .iter()
            .map(compose_volume)
            .collect();
    let store = yaml(&deploy().join("notifier.yml"))["storage"]["path"]
        .as_str()
        .expect("storage.path")
        .to_owned();
    assert!(
        notifier_volumes.iter().any(|(source, target)| {
            volumes.contains(source.as_str())
                && Path::new(&store).parent() == Some(Path::new(target))
        }),
        "the notifier's store {store} is on no named volume: {notifier_volumes:?}"
    );
    assert_eq!(
        mount("prometheus", "/etc/prometheus/prometheus.yml"),
        "./prometheus.yml"
    );
    assert_eq!(
        mount("prometheus", "/etc/prometheus/rules"),
        "../alert-rules"
    );
    assert_eq!(
        mount("alertmanager", "/etc/alertmanager/alertmanager.yml"),
        "./alertmanager.yml"
    );
    assert_eq!(
        mount("grafana", "/etc/grafana/provisioning"),
        "./grafana/provisioning"
    );
    let provider = yaml(&deploy().join("grafana/provisioning/dashboards/mcpwatch.yml"));
    let dashboards = str_of(
        &provider["providers"][0]["options"]["path"],
        "providers[0].options.path",
    );
    assert_eq!(dashboards, "/var/lib/grafana/dashboards");
    assert_eq!(mount("grafana", dashboards), "../grafana-dashboards");
    let datasources = yaml(&deploy().join("grafana/provisioning/datasources/prometheus.yml"));
    let prometheus = array_of(&datasources["datasources"], "datasources")
        .iter()
        .find(|d| d["type"] == "prometheus")
        .expect("a Prometheus datasource");
    assert_eq!(prometheus["uid"], "prometheus");
    assert_eq!(prometheus["url"], "http://prometheus:9090");
}

// ---------------------------------------------------------------------------------------
// Kubernetes
// ---------------------------------------------------------------------------------------

fn labels_match(selector: &Value, labels: &Value) -> bool {
    selector.as_object().is_some_and(|selector| {
        !selector.is_empty() && selector.iter().all(|(k, v)| &labels[k] == v)
    })
}

/// kustomization.yaml applies the PrometheusRule; that the file is there and is the rule
/// files, as generated, is the rules test's check
/// (`the_prometheus_rule_is_generated_from_the_rule_files`).
#[test]
fn kubernetes_prometheus_rule_is_listed() {
    let dir = deploy().join("kubernetes");
    let resources = strings(&yaml(&dir.join("kustomization.yaml"))["resources"]);
    assert!(
        resources.contains(&"prometheusrule.yaml".to_owned()),
        "kustomization.yaml lists the generated PrometheusRule: {resources:?}"
    );
}

#[test]
fn kubernetes_manifests_are_complete_and_consistent() {
    let dir = deploy().join("kubernetes");
    let kustomization = yaml(&dir.join("kustomization.yaml"));
    let resources = strings(&kustomization["resources"]);
    // Every manifest is listed, and every one listed exists.
    let on_disk: BTreeSet<String> = std::fs::read_dir(&dir)
        .expect("read deploy/kubernetes")
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".yaml") && n != "kustomization.yaml")
        .collect();
    let listed: BTreeSet<String> = resources.iter().cloned().collect();
    let unlisted: Vec<&String> = on_disk.difference(&listed).collect();
    assert!(
        unlisted.is_empty(),
        "not in kustomization.yaml: {unlisted:?}"
    );

    let mut objects: Vec<Value> = Vec::new();
    for resource in &resources {
        let path = dir.join(resource);
        if resource == "prometheusrule.yaml" && !path.exists() {
            continue;
        }
        assert!(
            path.is_file(),
            "kustomization.yaml lists {resource}, which is missing"
        );
        for document in yaml_documents(&path) {
            if document.is_null() {
                continue;
            }
            for key in ["apiVersion", "kind"] {
                assert!(document[key].is_string(), "{resource}: no {key}");
            }
            assert!(
                document["metadata"]["name"].is_string(),
                "{resource}: no metadata.name"
            );
            objects.push(document);
        }
    }
    let of_kind =
        |kind: &str| -> Vec<&Value> { objects.iter().filter(|o| o["kind"] == kind).collect() };
    let named = |kind: &str, name: &str| -> &Value {
        objects
            .iter()
            .find(|o| o["kind"] == kind && o["metadata"]["name"] == name)
            .unwrap_or_else(|| panic!("no {kind} {name}"))
    };
    assert_eq!(kustomization["namespace"], "mcpwatch");
    // The image built from deploy/Dockerfile, tagged with the workspace's version.
    let image = format!("mcpwatch:{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(
        kustomization["images"][0]["newTag"],
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(named("Namespace", "mcpwatch")["kind"], "Namespace");

    // Workloads: non-root, read-only, bounded, probed on /health; what they mount exists.
    let workloads: Vec<&Value> = objects
        .iter()
        .filter(|o| matches!(o["kind"].as_str(), Some("Deployment" | "StatefulSet")))
        .collect();
    assert_eq!(workloads.len(), 2, "the exporter and the notifier");
    for workload in &workloads {
        let name = str_of(&workload["metadata"]["name"], "name");
        let spec = &workload["spec"];
        assert_eq!(spec["replicas"], 1, "{name}");
        assert!(
            labels_match(
                &spec["selector"]["matchLabels"],
                &spec["template"]["metadata"]["labels"]
            ),
            "{name}: the selector does not select the template"
        );
        let pod = &spec["template"]["spec"];
        assert_eq!(pod["securityContext"]["runAsNonRoot"], true, "{name}");
        assert_ne!(pod["securityContext"]["runAsUser"], 0, "{name}");
        let pod_volumes: BTreeMap<&str, &Value> = array_of(&pod["volumes"], "volumes")
            .iter()
            .map(|v| (str_of(&v["name"], "volume name"), v))
            .collect();
        for volume in pod_volumes.values() {
            if let Some(config_map) = volume["configMap"]["name"].as_str() {
                named("ConfigMap", config_map);
            }
            if let Some(claim) = volume["persistentVolumeClaim"]["claimName"].as_str() {
                named("PersistentVolumeClaim", claim);
            }
        }
        for container in array_of(&pod["containers"], "containers") {
            assert_eq!(container["image"], image, "{name}");
            let security = &container["securityContext"];
            assert_eq!(security["readOnlyRootFilesystem"], true, "{name}");
            assert_eq!(security["allowPrivilegeEscalation"], false, "{name}");
            assert!(
                strings(&security["capabilities"]["drop"]).contains(&"ALL".to_owned()),
                "{name}"
            );
            assert!(
                container["resources"]["requests"].is_object()
                    && container["resources"]["limits"]["memory"].is_string(),
                "{name}: resources"
            );
            let ports: BTreeSet<&str> = array_of(&container["ports"], "ports")
                .iter()
                .filter_map(|p| p["name"].as_str())
                .collect();
            for probe in ["livenessProbe", "readinessProbe"] {
                assert_eq!(
                    container[probe]["httpGet"]["path"], "/health",
                    "{name} {probe}"
                );
                let port = str_of(&container[probe]["httpGet"]["port"], probe);
                assert!(ports.contains(port), "{name} {probe}: port {port}");
            }
            for mount in array_of(&container["volumeMounts"], "volumeMounts") {
                let volume = str_of(&mount["name"], "volumeMount name");
                assert!(pod_volumes.contains_key(volume), "{name}: mounts {volume}");
            }
        }
    }

    // Services select the workloads' pods and name their ports.
    let services = of_kind("Service");
    for service in &services {
        let name = str_of(&service["metadata"]["name"], "name");
        let workload = workloads
            .iter()
            .find(|w| {
                labels_match(
                    &service["spec"]["selector"],
                    &w["spec"]["template"]["metadata"]["labels"],
                )
            })
            .unwrap_or_else(|| panic!("Service {name} selects no workload"));
        let container_ports: BTreeSet<&str> = array_of(
            &workload["spec"]["template"]["spec"]["containers"][0]["ports"],
            "ports",
        )
        .iter()
        .filter_map(|p| p["name"].as_str())
        .collect();
        for port in array_of(&service["spec"]["ports"], "ports") {
            let target = str_of(&port["targetPort"], "targetPort");
            assert!(
                container_ports.contains(target),
                "{name}: targetPort {target}"
            );
        }
    }
    let exporter_service = named("Service", "mcpwatch-exporter");
    assert!(
        array_of(&exporter_service["spec"]["ports"], "ports")
            .iter()
            .any(|p| p["name"] == "metrics" && p["port"] == 9810),
        "the exporter's Service port is named metrics: {exporter_service}"
    );
    assert!(
        array_of(
            &named("Service", "mcpwatch-notifier")["spec"]["ports"],
            "ports"
        )
        .iter()
        .any(|p| p["port"] == 9811)
    );

    // The ServiceMonitors select the Services by their labels and ports, and name the jobs
    // as the rules expect.
    let monitors = of_kind("ServiceMonitor");
    let mut jobs = BTreeMap::new();
    for monitor in &monitors {
        assert_eq!(monitor["apiVersion"], "monitoring.coreos.com/v1");
        let name = str_of(&monitor["metadata"]["name"], "name");
        let selected: Vec<&&Value> = services
            .iter()
            .filter(|s| {
                labels_match(
                    &monitor["spec"]["selector"]["matchLabels"],
                    &s["metadata"]["labels"],
                )
            })
            .collect();
        assert!(
            !selected.is_empty(),
            "ServiceMonitor {name} selects no Service"
        );
        for endpoint in array_of(&monitor["spec"]["endpoints"], "endpoints") {
            let port = str_of(&endpoint["port"], "endpoints[].port");
            for service in &selected {
                assert!(
                    array_of(&service["spec"]["ports"], "ports")
                        .iter()
                        .any(|p| p["name"] == port),
                    "ServiceMonitor {name}: Service {} has no port {port}",
                    service["metadata"]["name"]
                );
            }
            let job = array_of(&endpoint["relabelings"], "relabelings")
                .iter()
                .find(|r| r["targetLabel"] == "job")
                .and_then(|r| r["replacement"].as_str())
                .unwrap_or_else(|| panic!("ServiceMonitor {name} does not set job"));
            for service in &selected {
                jobs.insert(
                    str_of(&service["metadata"]["name"], "name").to_owned(),
                    job.to_owned(),
                );
            }
        }
    }
    assert_eq!(
        jobs,
        BTreeMap::from([
            ("mcpwatch-exporter".to_owned(), EXPORTER_JOB.to_owned()),
            ("mcpwatch-notifier".to_owned(), NOTIFIER_JOB.to_owned()),
        ])
    );

    // The notifier's ConfigMap is deploy/notifier.yml as it is.
    let notifier_config = named("ConfigMap", "mcpwatch-notifier");
    assert_eq!(
        str_of(&notifier_config["data"]["notifier.yml"], "notifier.yml"),
        read(&deploy().join("notifier.yml")),
        "kubernetes/notifier-configmap.yaml differs from deploy/notifier.yml"
    );
    // Each binary is given the file of its ConfigMap, where it is mounted; the notifier's
    // store is on the claim.
    for (workload, file) in [
        ("mcpwatch-exporter", "exporter.yml"),
        ("mcpwatch-notifier", "notifier.yml"),
    ] {
        let pod = &named("Deployment", workload)["spec"]["template"]["spec"];
        let container = &pod["containers"][0];
        let config_volume = array_of(&pod["volumes"], "volumes")
            .iter()
            .find(|v| v["configMap"]["name"] == workload)
            .unwrap_or_else(|| panic!("{workload}: no volume of its ConfigMap"));
        assert!(named("ConfigMap", workload)["data"][file].is_string());
        let mount = array_of(&container["volumeMounts"], "volumeMounts")
            .iter()
            .find(|m| m["name"] == config_volume["name"])
            .unwrap_or_else(|| panic!("{workload}: its ConfigMap is not mounted"));
        let path = format!("{}/{file}", str_of(&mount["mountPath"], "mountPath"));
        assert!(
            strings(&container["args"]).contains(&format!("--config.file={path}")),
            "{workload}: --config.file={path}"
        );
    }
    let notifier_pod = &named("Deployment", "mcpwatch-notifier")["spec"]["template"]["spec"];
    let data_volume = array_of(&notifier_pod["volumes"], "volumes")
        .iter()
        .find(|v| v["persistentVolumeClaim"].is_object())
        .expect("the notifier's claim");
    let store = yaml(&deploy().join("notifier.yml"))["storage"]["path"]
        .as_str()
        .expect("storage.path")
        .to_owned();
    assert!(
        array_of(
            &notifier_pod["containers"][0]["volumeMounts"],
            "volumeMounts"
        )
        .iter()
        .any(|m| m["name"] == data_volume["name"]
            && Path::new(&store).parent() == m["mountPath"].as_str().map(Path::new)),
        "the notifier's store {store} is not on its claim"
    );
}

// ---------------------------------------------------------------------------------------
// systemd
// ---------------------------------------------------------------------------------------

/// A unit file: section name to its (key, value) settings, in order.
fn unit_file(path: &Path) -> BTreeMap<String, Vec<(String, String)>> {
    let mut sections: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut current = String::new();
    for line in read(path).lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            current = section.to_owned();
            sections.entry(current.clone()).or_default();
        } else if let Some((key, value)) = line.split_once('=') {
            sections
                .entry(current.clone())
                .or_default()
                .push((key.trim().to_owned(), value.trim().to_owned()));
        } else {
            panic!("{}: not a setting: {line}", path.display());
        }
    }
    sections
}

fn settings(
    unit: &BTreeMap<String, Vec<(String, String)>>,
    section: &str,
    key: &str,
) -> Vec<String> {
    unit.get(section)
        .map(|s| {
            s.iter()
                .filter(|(k, _)| k == key)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .unwrap_or_default()
}

/// The credential names of `LoadCredential=NAME:PATH`.
fn credentials(unit: &BTreeMap<String, Vec<(String, String)>>) -> BTreeSet<String> {
    settings(unit, "Service", "LoadCredential")
        .iter()
        .map(|v| {
            v.split_once(':')
                .map_or(v.as_str(), |(name, _)| name)
                .to_owned()
        })
        .collect()
}

#[test]
fn systemd_units_run_the_right_binaries_hardened() {
    let dir = deploy().join("systemd");
    for binary in ["mcpwatch-exporter", "mcpwatch-notifier"] {
        let path = dir.join(format!("{binary}.service"));
        let unit = unit_file(&path);
        for section in ["Unit", "Service", "Install"] {
            assert!(
                unit.contains_key(section),
                "{binary}.service: no [{section}]"
            );
        }
        let exec = settings(&unit, "Service", "ExecStart");
        assert_eq!(exec.len(), 1, "{binary}: {exec:?}");
        let program = exec[0].split_whitespace().next().unwrap_or_default();
        assert!(
            program.starts_with('/') && program.ends_with(&format!("/{binary}")),
            "{binary}: ExecStart runs {program}"
        );
        assert!(
            exec[0].contains(&format!("--config.file=/etc/mcpwatch/{}.yml", &binary[9..])),
            "{binary}: {}",
            exec[0]
        );
        assert_eq!(
            settings(&unit, "Service", "ExecReload"),
            ["/bin/kill -HUP $MAINPID"]
        );
        assert_eq!(
            settings(&unit, "Install", "WantedBy"),
            ["multi-user.target"]
        );
        for (key, value) in [
            ("NoNewPrivileges", "yes"),
            ("CapabilityBoundingSet", ""),
            ("RestrictAddressFamilies", "AF_UNIX AF_INET AF_INET6"),
            ("SystemCallArchitectures", "native"),
        ] {
            assert_eq!(settings(&unit, "Service", key), [value], "{binary}: {key}");
        }
        // Its /etc/default file is shipped.
        for file in settings(&unit, "Service", "EnvironmentFile") {
            let file = file.trim_start_matches('-');
            let name = Path::new(file).file_name().expect("file name");
            assert!(
                dir.join(format!("{}.default", name.to_str().expect("name")))
                    .is_file(),
                "{binary}: {file} has no example"
            );
        }
        // Secrets come through LoadCredential=, from files named as in deploy/secrets/.
        for name in credentials(&unit) {
            assert!(
                deploy().join(format!("secrets/{name}.example")).is_file(),
                "{binary}: credential {name} has no placeholder in deploy/secrets/"
            );
        }
    }

    // The exporter runs as a user of its own, and none of the settings that would give it a
    // mount namespace of its own: its host collector reports the host's filesystems.
    let exporter = unit_file(&dir.join("mcpwatch-exporter.service"));
    assert!(!settings(&exporter, "Service", "User").is_empty());
    for key in [
        "DynamicUser",
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "TemporaryFileSystem",
    ] {
        assert!(
            settings(&exporter, "Service", key).is_empty(),
            "mcpwatch-exporter.service: {key}= would change the mounts the host collector sees"
        );
    }
    // Every credential the host configuration reads is loaded.
    let host_config = read(&dir.join("exporter.yml"));
    assert_eq!(
        names_after(&host_config, EXPORTER_CREDENTIALS),
        credentials(&exporter),
        "systemd/exporter.yml and mcpwatch-exporter.service's LoadCredential="
    );

    // The notifier: fully hardened, its store and audit log where notifier.yml puts them,
    // and a credential for every secret file notifier.yml reads.
    let notifier = unit_file(&dir.join("mcpwatch-notifier.service"));
    for (key, value) in [
        ("ProtectSystem", "strict"),
        ("ProtectHome", "yes"),
        ("PrivateTmp", "yes"),
        ("StateDirectory", "mcpwatch-notifier"),
        ("LogsDirectory", "mcpwatch-notifier"),
    ] {
        assert_eq!(
            settings(&notifier, "Service", key),
            [value],
            "notifier: {key}"
        );
    }
    let notifier_yml = yaml(&deploy().join("notifier.yml"));
    assert_eq!(
        notifier_yml["storage"]["path"],
        "/var/lib/mcpwatch-notifier/notifier.db"
    );
    assert!(
        read(&deploy().join("notifier.yml")).contains("path: /var/log/mcpwatch-notifier/"),
        "the audit log is in LogsDirectory="
    );
    assert_eq!(
        names_after(&read(&deploy().join("notifier.yml")), COMPOSE_SECRETS),
        credentials(&notifier),
        "notifier.yml's secret files and mcpwatch-notifier.service's LoadCredential="
    );
}

/// `systemd-analyze verify` accepts both units as shipped, without a warning. It runs on a
/// root laid out as deploy/README.md installs them: the units in /etc/systemd/system, the
/// binaries built from this workspace at their ExecStart= paths, and this machine's
/// systemd units and `kill` (ExecReload=) beside them, since verify follows the units'
/// dependencies (sysinit.target, ...) and checks that every command is executable.
#[test]
fn systemd_analyze_verifies_the_units() {
    let analyze = require("systemd-analyze", "apt-get install -y systemd");
    let root = tempfile::tempdir().expect("tempdir");
    let system = root.path().join("usr/lib/systemd");
    std::fs::create_dir_all(&system).expect("mkdir");
    let status = Command::new("cp")
        .args(["-a", "/usr/lib/systemd/system"])
        .arg(&system)
        .status()
        .expect("run cp");
    assert!(status.success(), "cp -a /usr/lib/systemd/system");
    let units = root.path().join("etc/systemd/system");
    std::fs::create_dir_all(&units).expect("mkdir");
    let mut names = Vec::new();
    for binary in ["mcpwatch-exporter", "mcpwatch-notifier"] {
        let name = format!("{binary}.service");
        std::fs::copy(deploy().join("systemd").join(&name), units.join(&name)).expect("copy unit");
        let unit = unit_file(&deploy().join("systemd").join(&name));
        for command in settings(&unit, "Service", "ExecStart")
            .iter()
            .chain(&settings(&unit, "Service", "ExecReload"))
        {
            let program = command.split_whitespace().next().unwrap_or_default();
            let target = root.path().join(program.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().expect("parent")).expect("mkdir");
            let source = if program.ends_with(&format!("/{binary}")) {
                workspace_binary(binary)
            } else {
                PathBuf::from(program)
            };
            std::fs::copy(&source, &target)
                .unwrap_or_else(|e| panic!("{name}: copy {}: {e}", source.display()));
        }
        names.push(name);
    }

    let mut args = vec![
        "verify".to_owned(),
        format!("--root={}", root.path().display()),
    ];
    args.extend(names.iter().cloned());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, output) = run(&analyze, &args);
    assert!(ok, "systemd-analyze verify:\n{output}");
    assert_eq!(output, "", "systemd-analyze verify warns");

    // The check itself: a unit with a setting systemd does not know is reported.
    let unit = units.join(&names[0]);
    let text = read(&unit).replace("[Install]", "ProtectEverything=yes\n\n[Install]");
    std::fs::write(&unit, text).expect("write unit");
    let (_, output) = run(&analyze, &args);
    assert!(
        output.contains("Unknown key 'ProtectEverything' in section [Service]"),
        "{output}"
    );
}

// ---------------------------------------------------------------------------------------
// Dockerfile
// ---------------------------------------------------------------------------------------

/// The instructions of a Dockerfile: (INSTRUCTION, arguments), continuation lines joined.
fn dockerfile(path: &Path) -> Vec<(String, String)> {
    let mut instructions = Vec::new();
    let mut pending = String::new();
    for line in read(path).lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || trimmed.is_empty() {
            continue;
        }
        if let Some(part) = trimmed.strip_suffix('\\') {
            pending.push_str(part);
            pending.push(' ');
            continue;
        }
        pending.push_str(trimmed);
        let (instruction, arguments) = pending.split_once(' ').unwrap_or((&pending, ""));
        instructions.push((
            instruction.to_ascii_uppercase(),
            arguments.trim().to_owned(),
        ));
        pending.clear();
    }
    instructions
}

/// The default of build argument `name` declared by `ARG name=default` among
/// `instructions`.
fn arg_default<'a>(instructions: &'a [(String, String)], name: &str) -> Option<&'a str> {
    instructions
        .iter()
        .filter(|(i, _)| i == "ARG")
        .find_map(|(_, a)| a.strip_prefix(name)?.strip_prefix('='))
}

#[test]
fn dockerfile_builds_both_binaries_and_runs_them_as_non_root() {
    let path = deploy().join("Dockerfile");
    // Docker 20.10's built-in frontend builds it: a `# syntax=` line would pull one.
    assert!(
        !read(&path)
            .lines()
            .take_while(|l| l.starts_with('#'))
            .any(|l| l.replace(' ', "").starts_with("#syntax=")),
        "deploy/Dockerfile names a frontend image"
    );
    let instructions = dockerfile(&path);
    let stages: Vec<usize> = instructions
        .iter()
        .enumerate()
        .filter(|(_, (i, _))| i == "FROM")
        .map(|(at, _)| at)
        .collect();
    assert!(stages.len() >= 2, "multi-stage: {instructions:?}");
    // The base images are build arguments declared before the first stage, whose
    // defaults are the public images.
    let global = &instructions[..stages[0]];
    let base_of = |stage: usize| -> String {
        let from = instructions[stage]
            .1
            .split_whitespace()
            .next()
            .unwrap_or_default();
        let Some(arg) = from.strip_prefix("${").and_then(|a| a.strip_suffix('}')) else {
            return from.to_owned();
        };
        arg_default(global, arg)
            .unwrap_or_else(|| panic!("FROM {from}: no ARG {arg}=default before the first FROM"))
            .to_owned()
    };
    let builder_from = base_of(stages[0]);
    assert!(
        builder_from.starts_with("rust:") && builder_from.contains("bookworm"),
        "the builder is the official rust image on bookworm: {builder_from}"
    );
    let build = instructions
        .iter()
        .find(|(i, a)| i == "RUN" && a.contains("cargo build"))
        .map(|(_, a)| a)
        .expect("a cargo build");
    for part in [
        "--locked",
        "--profile \"$CARGO_PROFILE\"",
        "mcpwatch-exporter",
        "mcpwatch-notifier",
        "--mount=type=cache,target=/usr/local/cargo/registry",
    ] {
        assert!(build.contains(part), "cargo build without {part}: {build}");
    }
    // What is shipped is the release build.
    assert_eq!(
        arg_default(&instructions[stages[0]..stages[1]], "CARGO_PROFILE"),
        Some("release")
    );

    let last = *stages.last().expect("a stage");
    let base = base_of(last);
    assert!(
        base.starts_with("gcr.io/distroless/") || base.contains("-slim"),
        "a small final image: {base}"
    );
    let final_stage = &instructions[last + 1..];
    let user = final_stage
        .iter()
        .rev()
        .find(|(i, _)| i == "USER")
        .map(|(_, a)| a.clone())
        .expect("the final stage sets USER");
    let user_name = user.split(':').next().unwrap_or_default();
    assert!(
        !matches!(user_name, "root" | "0" | ""),
        "the final stage runs as {user}"
    );
    let copies: Vec<&String> = final_stage
        .iter()
        .filter(|(i, _)| i == "COPY")
        .map(|(_, a)| a)
        .collect();
    for binary in ["mcpwatch-exporter", "mcpwatch-notifier"] {
        assert!(
            copies.iter().any(|c| c.contains(&format!("/{binary}"))),
            "the final stage does not copy {binary}: {copies:?}"
        );
    }
    let exposed: BTreeSet<&str> = final_stage
        .iter()
        .filter(|(i, _)| i == "EXPOSE")
        .flat_map(|(_, a)| a.split_whitespace())
        .collect();
    assert_eq!(exposed, BTreeSet::from(["9810", "9811"]));
    let entrypoint = final_stage
        .iter()
        .find(|(i, _)| i == "ENTRYPOINT")
        .map(|(_, a)| a.as_str())
        .expect("ENTRYPOINT");
    assert!(entrypoint.contains("/mcpwatch-exporter"), "{entrypoint}");

    // The build context leaves out what is built and what is secret.
    let ignore = read(&root().join(".dockerignore"));
    let patterns: BTreeSet<&str> = ignore
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.trim_end_matches('/'))
        .collect();
    for pattern in ["target", ".git", "deploy/secrets"] {
        assert!(patterns.contains(pattern), ".dockerignore: {pattern}");
    }
}

// ---------------------------------------------------------------------------------------
// The shipped configurations pass --check-config
// ---------------------------------------------------------------------------------------

/// Writes `config` into a temporary directory with its secret files, log and state
/// directories moved there (the secrets hold the placeholders of `deploy/secrets/`), runs
/// `binary --check-config` on it and asserts that it passes.
fn assert_check_config_passes(binary: &str, what: &str, config: &str) {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = dir.path().join("secrets");
    let log = dir.path().join("log");
    let state = dir.path().join("lib");
    for d in [&secrets, &log, &state] {
        std::fs::create_dir(d).expect("mkdir");
    }
    let mut local = config.to_owned();
    for prefix in [COMPOSE_SECRETS, EXPORTER_CREDENTIALS, NOTIFIER_CREDENTIALS] {
        for name in names_after(config, prefix) {
            let example = deploy().join(format!("secrets/{name}.example"));
            assert!(
                example.is_file(),
                "{what}: {prefix}{name} has no placeholder {}",
                example.display()
            );
            std::fs::copy(&example, secrets.join(&name)).expect("copy placeholder");
        }
        local = local.replace(prefix, &format!("{}/", secrets.display()));
    }
    local = local
        .replace(
            "/var/log/mcpwatch-notifier/",
            &format!("{}/", log.display()),
        )
        .replace(
            "/var/lib/mcpwatch-notifier/",
            &format!("{}/", state.display()),
        );
    let path = dir.path().join("config.yml");
    std::fs::write(&path, local).expect("write config");
    let (ok, output) = run(
        &workspace_binary(binary),
        &[
            &format!("--config.file={}", path.display()),
            "--check-config",
        ],
    );
    assert!(ok, "{binary} --check-config on {what}:\n{output}");
    assert!(
        output.contains("configuration is valid"),
        "{what}: {output}"
    );
}

#[test]
fn shipped_exporter_configurations_pass_check_config() {
    assert_check_config_passes(
        "mcpwatch-exporter",
        "deploy/exporter.yml",
        &read(&deploy().join("exporter.yml")),
    );
    assert_check_config_passes(
        "mcpwatch-exporter",
        "deploy/systemd/exporter.yml",
        &read(&deploy().join("systemd/exporter.yml")),
    );
    let config_map = yaml(&deploy().join("kubernetes/exporter-configmap.yaml"));
    assert_check_config_passes(
        "mcpwatch-exporter",
        "deploy/kubernetes/exporter-configmap.yaml",
        str_of(&config_map["data"]["exporter.yml"], "data.exporter.yml"),
    );
    // The compose configuration watches what the compose stack runs.
    let compose = yaml_str("deploy/exporter.yml", &read(&deploy().join("exporter.yml")));
    assert_eq!(
        compose["collectors"]["wsdaemon"][0]["health_url"],
        "http://mcp-daemon:3001/health"
    );
    assert_eq!(
        compose["collectors"]["redis"][0]["url"],
        "redis://redis:6379"
    );
    assert_eq!(
        compose["collectors"]["postgres"][0]["dsn_file"],
        "/run/secrets/postgres_dsn"
    );
}

#[test]
fn shipped_notifier_configuration_passes_check_config() {
    let config = read(&deploy().join("notifier.yml"));
    // docker compose and Kubernetes (the ConfigMap is the same file).
    assert_check_config_passes("mcpwatch-notifier", "deploy/notifier.yml", &config);
    // systemd: the file with its secrets read from the service's credentials, as
    // deploy/README.md installs it.
    assert_check_config_passes(
        "mcpwatch-notifier",
        "deploy/notifier.yml for systemd",
        &config.replace(COMPOSE_SECRETS, NOTIFIER_CREDENTIALS),
    );
}
