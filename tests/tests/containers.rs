//! The exporter binary reading a real Docker daemon (`collectors.containers`), one daemon
//! for the file: containers from the imported busybox image that exit with a code, restart
//! under `on-failure:3`, fail their healthcheck, are OOM-killed under a memory limit, run
//! healthy, are paused or only created; each state, count, code and time exact in
//! `/metrics`, with the compose labels set by `--label`. The bound on containers is exact;
//! a missing socket and a socket the exporter may not use are `docker_up 0` with the reason
//! in the log, the scrape 200 and the other collectors intact; no series twice; promtool
//! and the strict OpenMetrics parser pass.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use mcpwatch_tests::binaries::{start_exporter, start_exporter_unprivileged};
use mcpwatch_tests::docker::Dockerd;
use mcpwatch_tests::exposition::value_of;
use mcpwatch_tests::http::scrape_text;
use mcpwatch_tests::tools::{parse_openmetrics, promtool_check_metrics};
use mcpwatch_tests::wait_for;

const LIMIT: Duration = Duration::from_secs(60);
const STATES: [&str; 7] = [
    "created",
    "running",
    "paused",
    "restarting",
    "removing",
    "exited",
    "dead",
];
const HEALTH: [&str; 4] = ["none", "starting", "healthy", "unhealthy"];

/// One scrape, checked for duplicate series.
async fn scrape(address: SocketAddr, accept: &str) -> String {
    scrape_text(address, Some(accept)).await
}

/// The labels of a compose service's container `shop-<service>-1` of target `target`.
fn labels(target: &str, service: &str) -> String {
    format!(
        "target=\"{target}\",name=\"shop-{service}-1\",compose_project=\"shop\",\
         compose_service=\"{service}\""
    )
}

/// An RFC 3339 time from `docker inspect`, in seconds since the epoch.
fn seconds(text: &str) -> f64 {
    humantime::parse_rfc3339(text)
        .unwrap_or_else(|e| panic!("{text:?}: {e}"))
        .duration_since(std::time::UNIX_EPOCH)
        .expect("after 1970")
        .as_secs_f64()
}

/// The one value of `set` that is 1 among `values` for these labels, the others 0.
fn one_of(text: &str, family: &str, labels: &str, set: &str, values: &[&str]) -> String {
    let series = |v: &str| format!("{family}{{{labels},{set}=\"{v}\"}}");
    let on: Vec<&str> = values
        .iter()
        .copied()
        .filter(|v| value_of(text, &series(v)) == Some(1.0))
        .collect();
    let off = values
        .iter()
        .filter(|v| value_of(text, &series(v)) == Some(0.0))
        .count();
    assert_eq!(
        (on.len(), off),
        (1, values.len() - 1),
        "{family}{{{labels}}}: {on:?}\n{text}"
    );
    on[0].to_owned()
}

/// Lines of `family` with `target`.
fn count(text: &str, family: &str, target: &str) -> usize {
    let prefix = format!("{family}{{target=\"{target}\",");
    text.lines().filter(|l| l.starts_with(&prefix)).count()
}

/// Starts the containers of compose project `shop` and waits until each is where the test
/// wants it.
fn start_containers(docker: &Dockerd, image: &str) {
    let run = |service: &str, options: &[&str], command: &[&str]| {
        docker.run_compose_service("shop", service, image, options, command);
    };
    // Started at once: each takes the daemon a few hundred milliseconds.
    std::thread::scope(|threads| {
        let run = &run;
        threads.spawn(|| run("job", &[], &["sh", "-c", "exit 3"]));
        threads.spawn(|| {
            run(
                "worker",
                &["--restart", "on-failure:3"],
                &["sh", "-c", "exit 1"],
            )
        });
        threads.spawn(|| {
            run(
                "web",
                &[
                    "--memory",
                    "64m",
                    "--health-cmd",
                    "true",
                    "--health-interval",
                    "1s",
                ],
                &["sleep", "1000"],
            )
        });
        threads.spawn(|| {
            run(
                "api",
                &[
                    "--health-cmd",
                    "false",
                    "--health-interval",
                    "1s",
                    "--health-retries",
                    "1",
                ],
                &["sleep", "1000"],
            )
        });
        // `tail` keeps the one endless line of /dev/zero in memory until the kernel kills
        // it.
        threads.spawn(|| {
            run(
                "cache",
                &["--memory", "16m", "--memory-swap", "16m"],
                &["tail", "/dev/zero"],
            )
        });
        threads.spawn(|| run("db", &["--memory", "32m"], &["sleep", "1000"]));
        run("idle", &[], &["sleep", "1000"]);
    });
    docker.run(&["pause", "shop-idle-1"]);
    docker.run(&[
        "create",
        "--network",
        "none",
        "--name",
        "shop-new-1",
        "--label",
        "com.docker.compose.project=shop",
        "--label",
        "com.docker.compose.service=new",
        image,
        "true",
    ]);
    let expected = [
        ("shop-job-1", "exited 0 false 3"),
        ("shop-worker-1", "exited 3 false 1"),
        ("shop-web-1", "running 0 false 0 healthy"),
        ("shop-api-1", "running 0 false 0 unhealthy"),
        ("shop-cache-1", "exited 0 true 137"),
        ("shop-db-1", "running 0 false 0"),
        ("shop-idle-1", "paused 0 false 0"),
        ("shop-new-1", "created 0 false 0"),
    ];
    let wanted: Vec<String> = expected
        .iter()
        .map(|(name, state)| format!("/{name} {state}"))
        .collect();
    let mut args = vec![
        "inspect",
        "--format",
        "{{.Name}} {{.State.Status}} {{.RestartCount}} {{.State.OOMKilled}} \
         {{.State.ExitCode}}{{if .State.Health}} {{.State.Health.Status}}{{end}}",
    ];
    args.extend(expected.iter().map(|(name, _)| *name));
    wait_for("the containers to settle", LIMIT, || {
        let found = docker.run(&args);
        let found: Vec<&str> = found.lines().collect();
        (found == wanted).then_some(())
    });
}

/// What `docker inspect` says of `containers` with `format`, one line each.
fn inspect_all(docker: &Dockerd, containers: &[String], format: &str) -> Vec<String> {
    let mut args = vec!["inspect", "--format", format];
    args.extend(containers.iter().map(String::as_str));
    docker.run(&args).lines().map(str::to_owned).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containers_of_a_real_daemon_exactly() {
    let docker = Dockerd::start();
    let image = docker.busybox_image();
    start_containers(&docker, &image);
    let socket = docker.socket().display().to_string();

    let dir = tempfile::tempdir().expect("tempdir");
    let config = format!(
        "collectors:\n  containers:\n\
         \x20   - {{ name: main, socket: '{socket}', stats: true }}\n\
         \x20   - {{ name: bounded, socket: '{socket}', max_containers: 3, concurrency: 1 }}\n\
         \x20   - {{ name: gone, socket: '{}/missing/docker.sock' }}\n",
        dir.path().display()
    );
    let (exporter, address) = start_exporter(dir.path(), &config, &[]).await;
    let text = scrape(address, "text/plain").await;
    let v = |series: &str| value_of(&text, series);

    // The daemon and its counts.
    assert_eq!(v("docker_up{target=\"main\"}"), Some(1.0), "{text}");
    for reason in ["refused", "timeout", "auth", "protocol", "other"] {
        assert_eq!(
            v(&format!(
                "docker_connect_failure{{target=\"main\",reason=\"{reason}\"}}"
            )),
            Some(0.0)
        );
    }
    let version = docker.run(&[
        "version",
        "--format",
        "{{.Server.Version}} {{.Server.APIVersion}}",
    ]);
    let (version, api) = version.split_once(' ').expect("two fields");
    let info = format!(
        "docker_engine_info{{target=\"main\",version=\"{version}\",api_version=\"{api}\",\
         os=\"linux\",arch=\""
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with(&info) && l.ends_with(" 1")),
        "{info}\n{text}"
    );
    for (state, expected) in [
        ("created", 1.0),
        ("running", 3.0),
        ("paused", 1.0),
        ("restarting", 0.0),
        ("removing", 0.0),
        ("exited", 3.0),
        ("dead", 0.0),
    ] {
        assert_eq!(
            v(&format!(
                "docker_containers{{target=\"main\",state=\"{state}\"}}"
            )),
            Some(expected),
            "{state}"
        );
    }
    assert_eq!(v("docker_containers_omitted{target=\"main\"}"), Some(0.0));
    assert_eq!(
        count(&text, "docker_container_state", "main"),
        8 * STATES.len()
    );
    assert_eq!(
        count(&text, "docker_container_health_status", "main"),
        8 * HEALTH.len()
    );

    // Each container: state, health, restarts, OOM kill, exit code, times.
    let names: Vec<String> = ["job", "worker", "web", "api", "cache", "db", "idle", "new"]
        .iter()
        .map(|s| format!("shop-{s}-1"))
        .collect();
    let times: std::collections::HashMap<String, (String, String)> = inspect_all(
        &docker,
        &names,
        "{{.Name}} {{.State.StartedAt}} {{.State.FinishedAt}}",
    )
    .iter()
    .map(|line| {
        let mut parts = line.split(' ').map(str::to_owned);
        let mut next = || parts.next().expect("three fields");
        (next(), (next(), next()))
    })
    .collect();
    let per = |family: &str, service: &str| v(&format!("{family}{{{}}}", labels("main", service)));
    for (service, state, health, restarts, oom, exit) in [
        ("job", "exited", "none", 0.0, 0.0, Some(3.0)),
        ("worker", "exited", "none", 3.0, 0.0, Some(1.0)),
        ("web", "running", "healthy", 0.0, 0.0, None),
        ("api", "running", "unhealthy", 0.0, 0.0, None),
        ("cache", "exited", "none", 0.0, 1.0, Some(137.0)),
        ("db", "running", "none", 0.0, 0.0, None),
        ("idle", "paused", "none", 0.0, 0.0, None),
        ("new", "created", "none", 0.0, 0.0, None),
    ] {
        let l = labels("main", service);
        assert_eq!(
            one_of(&text, "docker_container_state", &l, "state", &STATES),
            state,
            "{service}"
        );
        assert_eq!(
            one_of(
                &text,
                "docker_container_health_status",
                &l,
                "status",
                &HEALTH
            ),
            health,
            "{service}"
        );
        assert_eq!(
            per("docker_container_restarts_total", service),
            Some(restarts),
            "{service}"
        );
        assert_eq!(
            per("docker_container_oom_killed", service),
            Some(oom),
            "{service}"
        );
        assert_eq!(
            per("docker_container_exit_code", service),
            exit,
            "{service}"
        );
        assert_eq!(
            v(&format!(
                "docker_container_info{{{l},image=\"mcpwatch-busybox:latest\"}}"
            )),
            Some(1.0),
            "{service}"
        );
        // Times as the daemon keeps them.
        let (started, finished) = times.get(&format!("/shop-{service}-1")).expect("inspected");
        let time = |t: &str| (!t.starts_with("0001-")).then(|| seconds(t));
        assert_eq!(
            per("docker_container_started_timestamp_seconds", service),
            time(started),
            "{service} started {started}"
        );
        assert_eq!(
            per("docker_container_finished_timestamp_seconds", service),
            time(finished),
            "{service} finished {finished}"
        );
    }
    assert_eq!(
        per("docker_container_health_failing_streak", "web"),
        Some(0.0)
    );
    assert!(per("docker_container_health_failing_streak", "api").is_some_and(|s| s >= 1.0));
    assert_eq!(per("docker_container_health_failing_streak", "db"), None);
    for (service, limit) in [
        ("cache", Some(16.0)),
        ("db", Some(32.0)),
        ("web", Some(64.0)),
        ("api", None),
    ] {
        assert_eq!(
            per("docker_container_memory_limit_bytes", service),
            limit.map(|m| m * 1024.0 * 1024.0),
            "{service}"
        );
    }

    // Stats of the running containers only: `sleep` alone in its container.
    assert_eq!(per("docker_container_pids", "db"), Some(1.0));
    let memory = per("docker_container_memory_usage_bytes", "db").expect("memory");
    assert!(memory > 0.0 && memory < 32.0 * 1024.0 * 1024.0, "{memory}");
    assert!(per("docker_container_cpu_seconds_total", "db").is_some_and(|c| c > 0.0));
    for family in [
        "docker_container_pids",
        "docker_container_memory_usage_bytes",
        "docker_container_cpu_seconds_total",
    ] {
        assert_eq!(
            count(&text, family, "main"),
            3,
            "{family}: the running ones"
        );
        assert_eq!(count(&text, family, "bounded"), 0, "{family}: stats off");
    }

    // The bound: the running and paused containers first, by name; the rest counted.
    assert_eq!(v("docker_up{target=\"bounded\"}"), Some(1.0));
    assert_eq!(
        v("docker_containers_omitted{target=\"bounded\"}"),
        Some(5.0)
    );
    assert_eq!(
        v("docker_containers{target=\"bounded\",state=\"exited\"}"),
        Some(3.0)
    );
    assert_eq!(
        count(&text, "docker_container_state", "bounded"),
        3 * STATES.len()
    );
    for (service, reported) in [("api", true), ("db", true), ("idle", true), ("web", false)] {
        assert_eq!(
            v(&format!(
                "docker_container_restarts_total{{{}}}",
                labels("bounded", service)
            ))
            .is_some(),
            reported,
            "{service}"
        );
    }

    // A socket that is not there: down, with the reason; the others untouched.
    assert_eq!(v("docker_up{target=\"gone\"}"), Some(0.0));
    assert_eq!(
        v("docker_connect_failure{target=\"gone\",reason=\"refused\"}"),
        Some(1.0)
    );
    assert_eq!(count(&text, "docker_containers", "gone"), 0);
    let success = |target: &str| {
        v(&format!(
            "mcpwatch_scrape_collector_success{{collector=\"containers\",target=\"{target}\"}}"
        ))
    };
    assert_eq!(success("gone"), Some(0.0));
    assert_eq!(success("main"), Some(1.0));
    assert_eq!(success("bounded"), Some(1.0));
    assert_eq!(
        v("mcpwatch_scrape_collector_success{collector=\"host\",target=\"\"}"),
        Some(1.0)
    );
    let log = exporter.output();
    assert!(
        log.lines().any(|l| l.contains("Collector failed")
            && l.contains("gone")
            && l.contains("missing/docker.sock does not exist")),
        "{log}"
    );

    assert_eq!(promtool_check_metrics(text.as_bytes()), "");
    let om = scrape(address, "application/openmetrics-text; version=1.0.0").await;
    parse_openmetrics(om.as_bytes()).expect("strict OpenMetrics parse");
    drop(exporter);

    permission_denied(docker.socket()).await;
}

/// The exporter as `nobody` (the tests run as root): the daemon's socket, in a directory
/// only root may enter, is refused to it.
async fn permission_denied(socket: &Path) {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let config = dir.path().join("exporter.yml");
    std::fs::write(
        &config,
        format!(
            "collectors:\n  containers:\n    - {{ name: denied, socket: '{}' }}\n",
            socket.display()
        ),
    )
    .expect("config");
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let (exporter, address) = start_exporter_unprivileged(dir.path(), &[]).await;
    let text = scrape(address, "text/plain").await;
    assert_eq!(value_of(&text, "docker_up{target=\"denied\"}"), Some(0.0));
    assert_eq!(
        value_of(
            &text,
            "docker_connect_failure{target=\"denied\",reason=\"auth\"}"
        ),
        Some(1.0),
        "{text}"
    );
    let log = exporter.output();
    assert!(
        log.contains("permission denied on the Docker socket"),
        "{log}"
    );
}
