//! The binary's command line: configuration errors exit 1 with the file, line and key, and
//! nothing is served; `--check-config` validates without serving.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Command, Output};

fn exporter(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mcpwatch-exporter"))
        .args(args)
        .output()
        .expect("run mcpwatch-exporter")
}

fn free_address() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

/// Runs the exporter with a broken configuration and checks it fails before listening.
#[track_caller]
fn fails_without_serving(args: &[&str], expected: &[&str]) {
    let address = free_address();
    let listen = format!("--web.listen-address={address}");
    let mut all = args.to_vec();
    all.push(&listen);
    let out = exporter(&all);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "stderr: {stderr}");
    for part in expected {
        assert!(stderr.contains(part), "{part:?} not in: {stderr}");
    }
    // The port is still free: the exporter never listened.
    TcpListener::bind(&address).expect("nothing was served");
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.display().to_string()
}

#[test]
fn unknown_key_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "exporter.yml",
        "collectors:\n  host:\n    enabled: true\n    mountpoint_exclude: '^/proc'\n",
    );
    let config_flag = format!("--config.file={config}");
    fails_without_serving(
        &[&config_flag],
        &[
            &format!("{config}:4:5: collectors.host.mountpoint_exclude: unknown field"),
            "expected one of",
        ],
    );
}

#[test]
fn wrong_type_names_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "exporter.yml", "scrape:\n  timeout: [10s]\n");
    let config_flag = format!("--config.file={config}");
    fails_without_serving(
        &[&config_flag],
        &[&format!(
            "{config}:2:12: scrape.timeout: invalid type: sequence"
        )],
    );
}

#[test]
fn missing_file_is_named() {
    fails_without_serving(
        &["--config.file=/nonexistent/mcpwatch/exporter.yml"],
        &["/nonexistent/mcpwatch/exporter.yml: cannot read: No such file or directory"],
    );
}

#[test]
fn unreadable_secret_file_is_named() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A directory where a key file is expected cannot be read, even by root.
    std::fs::create_dir(dir.path().join("server.key")).expect("mkdir");
    let web = write(
        dir.path(),
        "web.yml",
        "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n",
    );
    write(dir.path(), "server.crt", "");
    let web_flag = format!("--web.config.file={web}");
    fails_without_serving(
        &[&web_flag],
        &[&format!(
            "{web}:3:3: tls_server_config.key_file: cannot read "
        )],
    );
}

#[test]
fn bad_web_config_value_is_named_without_its_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let web = write(
        dir.path(),
        "web.yml",
        "basic_auth_users:\n  prometheus: hunter2-not-a-hash\n",
    );
    let web_flag = format!("--web.config.file={web}");
    fails_without_serving(
        &[&web_flag, "--check-config"],
        &[&format!(
            "{web}:2:3: basic_auth_users.prometheus: not a bcrypt hash"
        )],
    );
    let out = exporter(&[&web_flag, "--check-config"]);
    assert!(!String::from_utf8_lossy(&out.stderr).contains("hunter2"));
}

#[test]
fn check_config_accepts_a_valid_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(
        dir.path(),
        "exporter.yml",
        "collectors:\n  host: { enabled: true, mountpoints_exclude: \"^/(proc|sys|dev)\" }\n\
         scrape:\n  timeout: 10s\nprobe:\n  modules:\n    mcp:\n      \
         allowed_targets: 'https://[a-z0-9-]+\\.mcp\\.internal/mcp'\n",
    );
    let out = exporter(&[&format!("--config.file={config}"), "--check-config"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("configuration is valid"));
}

#[test]
fn check_config_rejects_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write(dir.path(), "exporter.yml", "collectors:\n  hots: {}\n");
    let out = exporter(&[&format!("--config.file={config}"), "--check-config"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("{config}:2:3: collectors.hots: unknown field")),
        "{stderr}"
    );
}

#[test]
fn listen_address_in_use_is_reported() {
    let taken = TcpListener::bind("127.0.0.1:0").expect("bind");
    let address = taken.local_addr().expect("addr").to_string();
    let out = exporter(&[&format!("--web.listen-address={address}")]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!("--web.listen-address {address}: ")),
        "{stderr}"
    );
}

#[test]
fn check_config_builds_every_collector() {
    let dir = tempfile::tempdir().expect("tempdir");
    write(dir.path(), "ca.pem", "this is not a certificate\n");
    let config = write(
        dir.path(),
        "exporter.yml",
        "collectors:\n  postgres:\n    - name: main\n      \
         dsn: 'postgresql://m:hunter2@db.example/app?sslmode=verify-full'\n      ca_file: ca.pem\n",
    );
    let out = exporter(&[&format!("--config.file={config}"), "--check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("postgres target \"main\": ca_file: sslrootcert ")
            && stderr.contains("ca.pem: no PEM certificate"),
        "{stderr}"
    );
    assert!(!stderr.contains("hunter2"));

    let config = write(
        dir.path(),
        "exporter.yml",
        "collectors:\n  wsdaemon:\n    - name: exai\n      \
         websocket_url: wss://daemon.example:3001/\n      ca_file: ca.pem\n",
    );
    let out = exporter(&[&format!("--config.file={config}"), "--check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("wsdaemon target \"exai\": ca_file: ") && stderr.contains("no PEM"),
        "{stderr}"
    );

    let config = write(
        dir.path(),
        "exporter.yml",
        "probe:\n  modules:\n    fleet:\n      allowed_targets: 'https://.*'\n      \
         ca_file: ca.pem\n",
    );
    let out = exporter(&[&format!("--config.file={config}"), "--check-config"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("probe module \"fleet\": ca_file: ") && stderr.contains("no PEM"),
        "{stderr}"
    );
}
