//! The workspace's own binaries, built by cargo.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Mutex;

/// The binaries built (or found up to date) by this test process.
static BUILT: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The path of a workspace binary in the profile the tests run under, built (or found up
/// to date) by cargo once per test process: `cargo test` does not build another package's
/// binaries, and one left from an earlier build may be stale.
///
/// # Panics
/// When it cannot be built.
pub fn workspace_binary(name: &str) -> PathBuf {
    built(name, &["-p", name, "--bin", name], name)
}

/// The path of example `name` of workspace package `package`, built as
/// [`workspace_binary`] builds a binary.
///
/// # Panics
/// When it cannot be built.
pub fn workspace_example(package: &str, name: &str) -> PathBuf {
    built(
        &format!("{package}/examples/{name}"),
        &["-p", package, "--example", name],
        &format!("examples/{name}"),
    )
}

/// Builds (once per test process) with `selection` after `cargo build`; the path of
/// `artifact` under the profile's directory.
fn built(id: &str, selection: &[&str], artifact: &str) -> PathBuf {
    let name = id;
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test binary>
    let profile_dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("test binary under target/<profile>/deps")
        .to_path_buf();
    let path = profile_dir.join(artifact);
    let mut built = BUILT
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if !built.iter().any(|b| b == name) {
        let release = profile_dir.file_name().is_some_and(|p| p == "release");
        let mut cargo = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
        // The package of each binary is named as the binary; from this crate's directory
        // cargo would look for the binary in this package alone.
        cargo.arg("build").args(selection);
        // What cargo set for this test process describes this package, not the build: build
        // scripts that watch such variables (ring's watch CARGO_MANIFEST_DIR and CARGO_PKG_*)
        // would see them change, and the next `cargo test` would rebuild them once more.
        for (key, _) in std::env::vars_os() {
            let key = key.to_string_lossy();
            if key.starts_with("CARGO_PKG_")
                || [
                    "CARGO_MANIFEST_DIR",
                    "CARGO_MANIFEST_PATH",
                    "CARGO_MANIFEST_LINKS",
                    "CARGO_CRATE_NAME",
                    "CARGO_PRIMARY_PACKAGE",
                    "CARGO_TARGET_TMPDIR",
                    "CARGO_RUSTC_CURRENT_DIR",
                ]
                .contains(&key.as_ref())
            {
                cargo.env_remove(key.as_ref());
            }
        }
        if release {
            cargo.arg("--release");
        }
        let status = cargo.status().expect("run cargo build");
        assert!(
            status.success(),
            "cargo build {} failed",
            selection.join(" ")
        );
        built.push(name.to_owned());
    }
    path
}

/// The exporter binary with `config` written to `dir/exporter.yml`, on a free loopback port,
/// with `args` after `--config.file` and `--web.listen-address`; returned once it answers
/// `/health`.
///
/// # Panics
/// When the binary cannot be built, or does not answer within a minute.
pub async fn start_exporter(
    dir: &std::path::Path,
    config: &str,
    args: &[&str],
) -> (crate::process::ServiceProcess, std::net::SocketAddr) {
    std::fs::write(dir.join("exporter.yml"), config).expect("write exporter.yml");
    launch_exporter(
        Command::new(workspace_binary("mcpwatch-exporter")),
        dir,
        args,
    )
    .await
}

/// The exporter reading `dir/exporter.yml`, as [`start_exporter`] starts it, from a copy of
/// its binary in `dir`; when the tests run as root, as `nobody`, for whom a file or
/// directory with mode 000 is unreadable (root reads it anyway). The copy is reachable
/// whatever the permissions above the build directory; `dir` and the configuration must be
/// readable by `nobody`.
///
/// # Panics
/// When the binary cannot be built or copied, or does not answer within a minute.
pub async fn start_exporter_unprivileged(
    dir: &std::path::Path,
    args: &[&str],
) -> (crate::process::ServiceProcess, std::net::SocketAddr) {
    use std::os::unix::process::CommandExt;
    let binary = dir.join("mcpwatch-exporter");
    std::fs::copy(workspace_binary("mcpwatch-exporter"), &binary).expect("copy the exporter");
    let mut command = Command::new(&binary);
    if nix::unistd::Uid::effective().is_root() {
        let nobody = nix::unistd::User::from_name("nobody")
            .ok()
            .flatten()
            .expect("the nobody user");
        command.uid(nobody.uid.as_raw()).gid(nobody.gid.as_raw());
    }
    launch_exporter(command, dir, args).await
}

async fn launch_exporter(
    mut command: Command,
    dir: &std::path::Path,
    args: &[&str],
) -> (crate::process::ServiceProcess, std::net::SocketAddr) {
    let address = crate::ports::free_address();
    command
        .arg(format!(
            "--config.file={}",
            dir.join("exporter.yml").display()
        ))
        .arg(format!("--web.listen-address={address}"))
        .args(args);
    let process = crate::process::ServiceProcess::spawn("mcpwatch-exporter", command, dir);
    let health = format!("http://{address}/health");
    crate::wait_for_async(
        "the exporter to answer /health",
        std::time::Duration::from_secs(60),
        || {
            let request = crate::http::client().get(&health).send();
            async move { request.await.ok().filter(|r| r.status().is_success()) }
        },
    )
    .await;
    (process, address)
}
