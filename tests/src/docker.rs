//! A private Docker daemon for one test: Debian's `dockerd` with its own data root, exec
//! root, socket and pid file in a temporary directory, no bridge network and no iptables
//! changes (containers run with `--network none` or `--network host`: only loopback traffic
//! is allowed on the test machines). No registry is reachable, so images are imported from
//! local root filesystems.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use nix::sys::signal::Signal;

use crate::process::ServiceProcess;

const DOCKERD: &str = "/usr/sbin/dockerd";
/// Debian's client (20.10, BuildKit built in); the 28.x client some machines have in
/// /usr/local/bin lacks buildx, so `DOCKER_BUILDKIT=1` builds would fail with it.
const DOCKER: &str = "/usr/bin/docker";
const BUSYBOX: &str = "/bin/busybox";
const INSTALL: &str = "apt-get install -y docker.io busybox-static";
const LIMIT: Duration = Duration::from_secs(60);
/// The tag [`Dockerd::busybox_image`] imports as.
const BUSYBOX_TAG: &str = "mcpwatch-busybox:latest";

/// A running Docker daemon. Dropping it removes its containers, stops it and removes its
/// directories.
#[derive(Debug)]
pub struct Dockerd {
    dir: tempfile::TempDir,
    socket: PathBuf,
    process: Option<ServiceProcess>,
    busybox: OnceLock<String>,
}

impl Dockerd {
    /// Starts the daemon and waits until it answers `GET /_ping`.
    ///
    /// # Panics
    /// When Docker is not installed, or the daemon does not answer within a minute (with
    /// its log).
    pub fn start() -> Self {
        for program in [DOCKERD, DOCKER] {
            assert!(
                Path::new(program).is_file(),
                "{program} is not installed: run ./tests/run.sh, or as root: {INSTALL}"
            );
        }
        // Under /tmp, short: the daemon's and containerd's sockets live under it, and a
        // unix socket path is limited to 108 bytes.
        let dir = tempfile::Builder::new()
            .prefix("dkr")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let socket = dir.path().join("docker.sock");
        // An empty configuration file, so that the machine's /etc/docker/daemon.json (if
        // any) does not change this daemon.
        let config = dir.path().join("daemon.json");
        std::fs::write(&config, "{}\n").expect("write daemon.json");
        let mut command = Command::new(DOCKERD);
        command
            .args(["--bridge=none", "--iptables=false", "--ip6tables=false"])
            .arg("--data-root")
            .arg(dir.path().join("data"))
            .arg("--exec-root")
            .arg(dir.path().join("x"))
            .arg("--host")
            .arg(format!("unix://{}", socket.display()))
            .arg("--pidfile")
            .arg(dir.path().join("dockerd.pid"))
            .arg("--config-file")
            .arg(&config);
        let mut process = ServiceProcess::spawn("dockerd", command, dir.path());
        let start = Instant::now();
        while !ping(&socket) {
            assert!(
                process.is_running(),
                "dockerd exited at start; its log:\n{}",
                process.output()
            );
            assert!(
                start.elapsed() < LIMIT,
                "dockerd did not answer /_ping within {LIMIT:?}; its log:\n{}",
                process.output()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            dir,
            socket,
            process: Some(process),
            busybox: OnceLock::new(),
        }
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.process
            .as_ref()
            .map(ServiceProcess::output)
            .unwrap_or_default()
    }

    /// Debian's `docker` client talking to this daemon (`DOCKER_HOST` set, BuildKit on, no
    /// client configuration of the machine's user).
    pub fn docker(&self) -> Command {
        let mut command = Command::new(DOCKER);
        command
            .env("DOCKER_HOST", format!("unix://{}", self.socket.display()))
            .env("DOCKER_BUILDKIT", "1")
            .env("DOCKER_CONFIG", self.dir.path().join("client"))
            .stdin(Stdio::null());
        command
    }

    /// Runs `docker args`; its standard output, trimmed.
    ///
    /// # Panics
    /// When the command fails (with its standard error and the daemon's log).
    pub fn run(&self, args: &[&str]) -> String {
        let out = self
            .docker()
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run docker {args:?}: {e}"));
        self.checked(&format!("docker {}", args.join(" ")), &out);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    /// Starts (`docker run -d --network none`) the container of a compose service as
    /// compose names and labels it: `<project>-<service>-1`, with the labels
    /// `com.docker.compose.project` and `com.docker.compose.service`; `options` go before
    /// the image, `command` after it.
    pub fn run_compose_service(
        &self,
        project: &str,
        service: &str,
        image: &str,
        options: &[&str],
        command: &[&str],
    ) {
        let name = format!("{project}-{service}-1");
        let project = format!("com.docker.compose.project={project}");
        let service = format!("com.docker.compose.service={service}");
        let mut args = vec![
            "run",
            "-d",
            "--network",
            "none",
            "--name",
            &name,
            "--label",
            &project,
            "--label",
            &service,
        ];
        args.extend_from_slice(options);
        args.push(image);
        args.extend_from_slice(command);
        self.run(&args);
    }

    fn checked(&self, what: &str, out: &Output) {
        assert!(
            out.status.success(),
            "{what} failed ({}): {}\ndaemon log:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            self.log()
        );
    }

    /// Imports a root filesystem (a directory, or a tar archive) as image `tag`.
    ///
    /// # Panics
    /// When the import fails.
    pub fn import_rootfs(&self, rootfs_dir_or_tar: &Path, tag: &str) {
        let what = format!("docker import {} {tag}", rootfs_dir_or_tar.display());
        if rootfs_dir_or_tar.is_dir() {
            let mut tar = Command::new("tar")
                .arg("-C")
                .arg(rootfs_dir_or_tar)
                .args(["--numeric-owner", "-c", "."])
                .stdout(Stdio::piped())
                .spawn()
                .expect("run tar");
            let stdout = tar.stdout.take().expect("tar's stdout");
            let out = self
                .docker()
                .args(["import", "-", tag])
                .stdin(stdout)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
            let status = tar.wait().expect("wait for tar");
            assert!(status.success(), "tar of {rootfs_dir_or_tar:?} failed");
            self.checked(&what, &out);
        } else {
            let out = self
                .docker()
                .arg("import")
                .arg(rootfs_dir_or_tar)
                .arg(tag)
                .output()
                .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
            self.checked(&what, &out);
        }
    }

    /// A minimal image made from Debian's static busybox (`/bin/busybox` and a link per
    /// applet in `/bin`), imported once per daemon; its tag.
    ///
    /// # Panics
    /// When busybox-static is not installed or the import fails.
    pub fn busybox_image(&self) -> String {
        self.busybox
            .get_or_init(|| {
                let binary = std::fs::read(BUSYBOX).unwrap_or_else(|e| {
                    panic!("{BUSYBOX}: {e}: run ./tests/run.sh, or as root: {INSTALL}")
                });
                assert!(
                    is_static_elf(&binary),
                    "{BUSYBOX} is linked dynamically (Debian's busybox package): the image has \
                     no libraries; run as root: apt-get install -y busybox-static"
                );
                let rootfs = tempfile::tempdir().expect("tempdir");
                let bin = rootfs.path().join("bin");
                std::fs::create_dir(&bin).expect("mkdir bin");
                std::fs::copy(BUSYBOX, bin.join("busybox")).expect("copy busybox");
                let list = Command::new(BUSYBOX)
                    .arg("--list")
                    .output()
                    .expect("busybox --list");
                for applet in String::from_utf8_lossy(&list.stdout).split_whitespace() {
                    if applet != "busybox" {
                        std::os::unix::fs::symlink("busybox", bin.join(applet))
                            .expect("link an applet");
                    }
                }
                std::fs::create_dir(rootfs.path().join("tmp")).expect("mkdir tmp");
                self.import_rootfs(rootfs.path(), BUSYBOX_TAG);
                BUSYBOX_TAG.to_owned()
            })
            .clone()
    }
}

/// Whether `elf` (a 64-bit little-endian ELF file) has no program interpreter.
fn is_static_elf(elf: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u32_at = |at: usize| {
        elf.get(at..at + 4)
            .map(|b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .and_then(|b| <[u8; 8]>::try_from(b).ok())
            .map(u64::from_le_bytes)
    };
    if !elf.starts_with(b"\x7fELF\x02\x01") {
        return false;
    }
    let (Some(phoff), Some(size), Some(count)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    let Ok(phoff) = usize::try_from(phoff) else {
        return false;
    };
    (0..usize::from(count)).all(|i| u32_at(phoff + i * usize::from(size)) != Some(PT_INTERP))
}

/// Whether the daemon on `socket` answers `GET /_ping` with 200.
fn ping(socket: &Path) -> bool {
    let Ok(mut stream) = UnixStream::connect(socket) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    response.starts_with(b"HTTP/1.0 200") || response.starts_with(b"HTTP/1.1 200")
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let Some(mut process) = self.process.take() else {
            return;
        };
        if process.is_running() {
            let listed = self.docker().args(["ps", "-aq"]).output();
            if let Ok(listed) = listed {
                let ids: Vec<String> = String::from_utf8_lossy(&listed.stdout)
                    .split_whitespace()
                    .map(str::to_owned)
                    .collect();
                if !ids.is_empty() {
                    let _ = self
                        .docker()
                        .args(["rm", "-f", "-v"])
                        .args(&ids)
                        .stdout(Stdio::null())
                        .stderr(Stdio::null())
                        .status();
                }
            }
        }
        let containerd =
            std::fs::read_to_string(self.dir.path().join("x/containerd/containerd.pid"))
                .ok()
                .and_then(|pid| pid.trim().parse::<i32>().ok());
        // dockerd stops its containerd and unmounts its data root on SIGTERM.
        process.stop(Signal::SIGTERM, LIMIT);
        // Had it to be killed, its containerd would be left running.
        if let Some(pid) = containerd {
            let pid = nix::unistd::Pid::from_raw(pid);
            if nix::sys::signal::kill(pid, None).is_ok() {
                let _ = nix::sys::signal::kill(pid, Signal::SIGKILL);
            }
        }
        // Whatever a daemon killed on the way left mounted under the directory goes too,
        // deepest first, so that the directory can be removed.
        let mut mounted: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|line| line.split(' ').nth(4).map(str::to_owned))
            .filter(|point| Path::new(point).starts_with(self.dir.path()))
            .collect();
        mounted.sort_by_key(|point| std::cmp::Reverse(point.len()));
        for point in mounted {
            let _ = Command::new("umount")
                .args(["-l", &point])
                .stderr(Stdio::null())
                .status();
        }
    }
}
