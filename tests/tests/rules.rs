//! The shipped alert rules (`alert-rules/`): mixtool's lint rules and ours (every alert has
//! a runbook section, and promtool unit tests where it fires and where it must not), every
//! expression parses, the PrometheusRule in `deploy/kubernetes/` is generated from them, and
//! a real Prometheus loaded with them fires `RedisDown` when Redis stops and resolves it when
//! Redis is back, through Alertmanager to the notifier.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use mcpwatch_tests::alertmanager::Alertmanager;
use mcpwatch_tests::binaries::workspace_binary;
use mcpwatch_tests::notifier::NotifierProcess;
use mcpwatch_tests::ports::free_address;
use mcpwatch_tests::process::ServiceProcess;
use mcpwatch_tests::prometheus::Prometheus;
use mcpwatch_tests::redis::RedisServer;
use mcpwatch_tests::repo::{read, root, yaml};
use mcpwatch_tests::wait_for_async;
use serde_json::Value;

/// The areas, one rule file each.
const AREAS: [&str; 13] = [
    "host",
    "postgres",
    "redis",
    "wsdaemon",
    "mcp",
    "http",
    "files",
    "logs",
    "exporter",
    "notifier",
    "certificates",
    "containers",
    "kubernetes",
];
const SEVERITIES: [&str; 3] = ["critical", "warning", "info"];
const RUNBOOKS: &str = "https://github.com/mcpwatch/mcpwatch/blob/main/docs/runbooks.md#";
const PROMETHEUS_RULE: &str = "deploy/kubernetes/prometheusrule.yaml";
const UPDATE: &str = "MCPWATCH_UPDATE_GENERATED";
const LIMIT: Duration = Duration::from_secs(90);

fn rule_file(area: &str) -> PathBuf {
    root().join("alert-rules").join(format!("{area}.yml"))
}

/// Every rule of every area: (area, group name, rule).
fn rules() -> Vec<(&'static str, String, Value)> {
    let mut all = Vec::new();
    for area in AREAS {
        let file = yaml(&rule_file(area));
        let groups = file["groups"].as_array().cloned().unwrap_or_default();
        assert!(!groups.is_empty(), "{area}.yml has no groups");
        for group in groups {
            let name = group["name"].as_str().unwrap_or_default().to_owned();
            for rule in group["rules"].as_array().cloned().unwrap_or_default() {
                all.push((area, name.clone(), rule));
            }
        }
    }
    all
}

fn text<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

/// mixtool's `^([A-Z]+[a-z0-9]+)+$`: ASCII letters and digits, upper-case first, not
/// upper-case last.
fn camel_case(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
        && name.chars().all(|c| c.is_ascii_alphanumeric())
        && !name.ends_with(|c: char| c.is_ascii_uppercase())
}

/// `level:metric:operations`, each part snake case.
fn recording_name(name: &str) -> bool {
    let parts: Vec<&str> = name.split(':').collect();
    parts.len() == 3
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        })
}

fn templated(s: &str) -> bool {
    s.find("{{")
        .is_some_and(|open| s[open + 2..].find("}}").is_some_and(|close| close > 0))
}

#[test]
fn every_alert_follows_the_lint_rules_and_has_a_runbook_section() {
    let runbooks = read(&root().join("docs/runbooks.md"));
    let sections: BTreeSet<&str> = runbooks
        .lines()
        .filter_map(|l| l.strip_prefix("## "))
        .map(str::trim)
        .collect();
    let mut problems = Vec::new();
    let mut alerts = BTreeSet::new();
    let mut group_sizes: BTreeMap<String, usize> = BTreeMap::new();
    for (area, group, rule) in rules() {
        *group_sizes.entry(group.clone()).or_default() += 1;
        if !group.starts_with("mcpwatch-") || group.len() > 40 {
            problems.push(format!(
                "{area}.yml: group {group:?}: names start with mcpwatch- and have at most 40 characters"
            ));
        }
        let expr = text(&rule, "expr");
        if let Err(e) = promql_parser::parser::parse(expr) {
            problems.push(format!("{area}.yml: {group}: {expr:?} does not parse: {e}"));
        }
        if let Some(record) = rule["record"].as_str() {
            if !recording_name(record) {
                problems.push(format!(
                    "{area}.yml: recording rule {record}: not level:metric:operations"
                ));
            }
            continue;
        }
        let name = text(&rule, "alert");
        let at = format!("{area}.yml: {name}");
        alerts.insert(name.to_owned());
        if !camel_case(name) || name.len() > 40 {
            problems.push(format!("{at}: not CamelCase of at most 40 characters"));
        }
        let prefixes: &[&str] = match area {
            "host" => &["Host"],
            "postgres" => &["Postgres"],
            "redis" => &["Redis"],
            "wsdaemon" => &["McpDaemon"],
            "mcp" => &["Mcp"],
            "http" => &["HttpEndpoint"],
            "files" => &["Files"],
            "logs" => &["Log"],
            "certificates" => &["TlsCertificate", "CertificateFile"],
            "containers" => &["Container", "Docker"],
            "kubernetes" => &["Pod"],
            _ => &["Mcpwatch"],
        };
        if !prefixes.iter().any(|prefix| name.starts_with(prefix)) {
            problems.push(format!(
                "{at}: alerts of {area}.yml start with one of {prefixes:?}"
            ));
        }
        let severity = text(&rule["labels"], "severity");
        if !SEVERITIES.contains(&severity) {
            problems.push(format!(
                "{at}: severity {severity:?} is not one of {SEVERITIES:?}"
            ));
        }
        match rule["for"].as_str() {
            Some(d) if humantime::parse_duration(d).is_ok_and(|d| !d.is_zero()) => {}
            other => problems.push(format!("{at}: `for` {other:?}: every alert waits a while")),
        }
        let annotations = &rule["annotations"];
        let summary = text(annotations, "summary");
        if summary.is_empty()
            || summary.contains("{{")
            || !summary.starts_with(|c: char| c.is_ascii_uppercase())
            || !summary.ends_with('.')
        {
            problems.push(format!(
                "{at}: summary {summary:?}: a static sentence, capitalised, ending in a period"
            ));
        }
        let description = text(annotations, "description");
        if !templated(description) {
            problems.push(format!(
                "{at}: description {description:?} must show the value or target"
            ));
        }
        let runbook = text(annotations, "runbook_url");
        if runbook != format!("{RUNBOOKS}{}", name.to_lowercase()) {
            problems.push(format!("{at}: runbook_url {runbook:?}"));
        }
        if !sections.contains(name) {
            problems.push(format!("{at}: no `## {name}` section in docs/runbooks.md"));
        }
        let keys: BTreeSet<&str> = annotations
            .as_object()
            .map(|o| o.keys().map(String::as_str).collect())
            .unwrap_or_default();
        if keys != BTreeSet::from(["description", "runbook_url", "summary"]) {
            problems.push(format!("{at}: annotations {keys:?}"));
        }
    }
    for (group, size) in group_sizes {
        if size > 20 {
            problems.push(format!("group {group}: {size} rules, at most 20"));
        }
    }
    for section in &sections {
        if !alerts.contains(*section) {
            problems.push(format!(
                "docs/runbooks.md: section {section} is not an alert"
            ));
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// Every alert name and severity fires in a promtool test case and stays quiet in another;
/// every firing case checks the annotations; every recording rule is evaluated.
#[test]
fn every_alert_has_a_firing_and_a_quiet_unit_test() {
    let mut problems = Vec::new();
    for area in AREAS {
        let test_path = root().join(format!("alert-rules/tests/{area}_test.yml"));
        let tests = yaml(&test_path);
        let files: Vec<&str> = tests["rule_files"]
            .as_array()
            .map(|f| f.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if !files.contains(&format!("../{area}.yml").as_str()) {
            problems.push(format!("{area}_test.yml: rule_files lacks ../{area}.yml"));
        }
        let mut fired: BTreeSet<(String, String)> = BTreeSet::new();
        let mut quiet: BTreeSet<(String, String)> = BTreeSet::new();
        let mut exprs = String::new();
        for case in tests["tests"].as_array().cloned().unwrap_or_default() {
            for check in case["promql_expr_test"].as_array().into_iter().flatten() {
                exprs.push_str(text(check, "expr"));
                exprs.push('\n');
            }
            for check in case["alert_rule_test"].as_array().into_iter().flatten() {
                let name = text(check, "alertname").to_owned();
                let expected = check["exp_alerts"].as_array().cloned().unwrap_or_default();
                let severities: BTreeSet<&str> = expected
                    .iter()
                    .map(|a| text(&a["exp_labels"], "severity"))
                    .collect();
                for severity in SEVERITIES {
                    let key = (name.clone(), severity.to_owned());
                    if severities.contains(severity) {
                        fired.insert(key);
                    } else {
                        quiet.insert(key);
                    }
                }
                for alert in &expected {
                    for annotation in ["summary", "description", "runbook_url"] {
                        if text(&alert["exp_annotations"], annotation).is_empty() {
                            problems.push(format!(
                                "{area}_test.yml: a firing case of {name} does not check its {annotation}"
                            ));
                        }
                    }
                }
            }
        }
        let file = yaml(&rule_file(area));
        for group in file["groups"].as_array().into_iter().flatten() {
            for rule in group["rules"].as_array().into_iter().flatten() {
                if let Some(record) = rule["record"].as_str() {
                    if !exprs.contains(record) {
                        problems.push(format!(
                            "{area}_test.yml: no promql_expr_test evaluates {record}"
                        ));
                    }
                    continue;
                }
                let key = (
                    text(rule, "alert").to_owned(),
                    text(&rule["labels"], "severity").to_owned(),
                );
                if !fired.contains(&key) {
                    problems.push(format!("{area}_test.yml: {key:?} never fires"));
                }
                if !quiet.contains(&key) {
                    problems.push(format!(
                        "{area}_test.yml: {key:?} has no case where it must not fire"
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

/// The PrometheusRule the Kubernetes manifests apply: the rule files' groups, in area
/// order, as they are written.
fn prometheus_rule() -> String {
    let mut out = format!(
        "# Generated from alert-rules/*.yml: do not edit. Regenerate with\n\
         #   {UPDATE}=1 cargo test -p mcpwatch-tests --test rules\n\
         # The Prometheus Operator loads it when its ruleSelector matches these labels.\n\
         apiVersion: monitoring.coreos.com/v1\n\
         kind: PrometheusRule\n\
         metadata:\n  name: mcpwatch\n  namespace: mcpwatch\n  labels:\n\
         \x20   app.kubernetes.io/name: mcpwatch\n    app.kubernetes.io/part-of: mcpwatch\n\
         spec:\n  groups:\n"
    );
    for area in AREAS {
        out.push_str(&format!("    # alert-rules/{area}.yml\n"));
        let source = read(&rule_file(area));
        let body = source
            .lines()
            .skip_while(|l| *l != "groups:")
            .skip(1)
            .collect::<Vec<_>>();
        assert!(!body.is_empty(), "{area}.yml has no top-level `groups:`");
        for line in body {
            if !line.is_empty() {
                out.push_str("  ");
                out.push_str(line);
            }
            out.push('\n');
        }
    }
    out
}

#[test]
fn the_prometheus_rule_is_generated_from_the_rule_files() {
    let path = root().join(PROMETHEUS_RULE);
    let expected = prometheus_rule();
    if std::env::var_os(UPDATE).is_some() {
        std::fs::write(&path, &expected).expect("write the PrometheusRule");
    }
    let shipped = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        shipped == expected,
        "{PROMETHEUS_RULE} differs from alert-rules/*.yml: run {UPDATE}=1 cargo test -p mcpwatch-tests --test rules"
    );
    // And what Kubernetes reads is what Prometheus reads.
    let manifest = yaml(&path);
    let groups: Vec<Value> = AREAS
        .iter()
        .flat_map(|area| {
            yaml(&rule_file(area))["groups"]
                .as_array()
                .cloned()
                .unwrap_or_default()
        })
        .collect();
    assert_eq!(manifest["spec"]["groups"], Value::Array(groups));
    assert_eq!(manifest["kind"], "PrometheusRule");
}

/// The rule files with `RedisDown`'s `for` cut to `wait`, written to `dir`.
fn rules_with_short_redis_down(dir: &Path, wait: &str) -> Vec<PathBuf> {
    AREAS
        .iter()
        .map(|area| {
            let mut source = read(&rule_file(area));
            if *area == "redis" {
                let at = source.find("- alert: RedisDown").expect("RedisDown");
                let offset = source[at..].find("for: 2m").expect("RedisDown's for") + at;
                source.replace_range(offset..offset + "for: 2m".len(), &format!("for: {wait}"));
            }
            let path = dir.join(format!("{area}.yml"));
            std::fs::write(&path, source).expect("write rules");
            path
        })
        .collect()
}

async fn redis_down_alert(prometheus: &Prometheus) -> Option<Value> {
    prometheus
        .alerts()
        .await
        .into_iter()
        .find(|a| a["labels"]["alertname"] == "RedisDown")
}

/// The notifier's audit lines about `RedisDown` with this status.
fn notified(audit: &Path, status: &str) -> Vec<Value> {
    std::fs::read_to_string(audit)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|n| {
            n["status"] == status
                && n["alerts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["labels"]["alertname"] == "RedisDown")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_down_fires_when_redis_stops_and_resolves_when_it_is_back() {
    let mut redis = RedisServer::start(&[]).await;
    let notifier = NotifierProcess::start(
        "channels:\n  audit:\n    log: {path: '{dir}/alerts.jsonl', format: json}\n\
         route:\n  channels: [audit]\n",
    )
    .await;
    let audit = notifier.dir().join("alerts.jsonl");
    let alertmanager = Alertmanager::start(&format!(
        "route:\n  receiver: mcpwatch\n  group_by: [alertname, target]\n  group_wait: 1s\n\
         \x20 group_interval: 1s\n  repeat_interval: 1h\n\
         receivers:\n  - name: mcpwatch\n    webhook_configs:\n      - url: {}\n        send_resolved: true\n",
        notifier.webhook_url()
    ))
    .await;

    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(
        dir.path().join("exporter.yml"),
        format!(
            "collectors:\n  redis:\n    - name: cache\n      url: '{}'\n",
            redis.url()
        ),
    )
    .expect("exporter config");
    let address = free_address();
    let mut command = Command::new(workspace_binary("mcpwatch-exporter"));
    command
        .arg(format!("--web.listen-address={address}"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("exporter.yml").display()
        ))
        .arg("--no-collector.host");
    let exporter = ServiceProcess::spawn("mcpwatch-exporter", command, dir.path());

    let rules_dir = dir.path().join("rules");
    std::fs::create_dir(&rules_dir).expect("rules dir");
    let rules = rules_with_short_redis_down(&rules_dir, "5s");
    let rule_refs: Vec<&Path> = rules.iter().map(PathBuf::as_path).collect();
    let am_address = alertmanager.url().trim_start_matches("http://").to_owned();
    let prometheus = Prometheus::start_alerting(
        &format!("  - job_name: mcpwatch\n    static_configs:\n      - targets: ['{address}']\n"),
        &rule_refs,
        Some(&am_address),
    )
    .await;
    let start = std::time::Instant::now();
    while prometheus
        .query("redis_up{target=\"cache\"} == 1")
        .await
        .is_empty()
    {
        assert!(
            start.elapsed() < LIMIT,
            "redis_up never 1 in Prometheus: {:?}\n{}\n{}",
            prometheus.active_targets().await,
            exporter.output(),
            prometheus.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Every shipped rule loads and evaluates without error on the exporter's real series.
    let groups = wait_for_async("every rule evaluated", LIMIT, || async {
        let groups = prometheus.rule_groups().await;
        let evaluated = groups
            .iter()
            .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
            .all(|r| r["health"] != "unknown");
        (evaluated && !groups.is_empty()).then_some(groups)
    })
    .await;
    let loaded: BTreeSet<&str> = groups.iter().filter_map(|g| g["name"].as_str()).collect();
    let shipped: usize = AREAS
        .iter()
        .map(|area| {
            yaml(&rule_file(area))["groups"]
                .as_array()
                .map_or(0, Vec::len)
        })
        .sum();
    assert_eq!(loaded.len(), shipped, "rule groups: {loaded:?}");
    for group in &groups {
        for rule in group["rules"].as_array().into_iter().flatten() {
            assert_eq!(
                rule["health"], "ok",
                "{} in {}: {}",
                rule["name"], group["name"], rule["lastError"]
            );
        }
    }
    assert!(redis_down_alert(&prometheus).await.is_none());

    redis.stop();
    let pending = wait_for_async("RedisDown pending", LIMIT, || async {
        redis_down_alert(&prometheus).await
    })
    .await;
    assert_eq!(
        pending["state"], "pending",
        "it waits its `for` before it fires: {pending}"
    );
    let firing = wait_for_async("RedisDown firing", LIMIT, || async {
        redis_down_alert(&prometheus)
            .await
            .filter(|a| a["state"] == "firing")
    })
    .await;
    assert_eq!(firing["labels"]["severity"], "critical");
    assert_eq!(firing["labels"]["target"], "cache");
    assert_eq!(firing["labels"]["job"], "mcpwatch");
    assert_eq!(firing["annotations"]["summary"], "Redis is unreachable.");
    assert_eq!(
        firing["annotations"]["runbook_url"],
        format!("{RUNBOOKS}redisdown")
    );
    assert_eq!(
        firing["annotations"]["description"],
        format!("The exporter on {address} has not reached Redis cache for 2 minutes.")
    );
    let told = wait_for_async("the notifier told of RedisDown", LIMIT, || async {
        let lines = notified(&audit, "firing");
        (!lines.is_empty()).then_some(lines)
    })
    .await;
    assert_eq!(told[0]["alerts"][0]["labels"]["target"], "cache");

    redis.restart().await;
    wait_for_async("RedisDown resolved in Prometheus", LIMIT, || async {
        redis_down_alert(&prometheus).await.is_none().then_some(())
    })
    .await;
    wait_for_async("the notifier told RedisDown resolved", LIMIT, || async {
        (!notified(&audit, "resolved").is_empty()).then_some(())
    })
    .await;
    assert_eq!(
        notified(&audit, "firing").len(),
        1,
        "told once while firing:\n{}\n{}",
        alertmanager.log(),
        exporter.output()
    );
    prometheus.assert_no_duplicate_samples().await;
}
