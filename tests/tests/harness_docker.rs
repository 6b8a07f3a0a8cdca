//! The Docker harness: a private daemon runs a container from the imported busybox image,
//! and once dropped leaves nothing running or mounted and its directory gone.

use mcpwatch_tests::docker::Dockerd;

/// The processes whose command line mentions `needle`.
fn processes_mentioning(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .expect("read /proc")
        .filter_map(|entry| {
            let entry = entry.ok()?;
            entry.file_name().to_str()?.parse::<u32>().ok()?;
            let cmdline = std::fs::read(entry.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(cmdline)
        })
        .collect()
}

#[test]
fn a_container_runs_and_the_drop_leaves_nothing_behind() {
    let docker = Dockerd::start();
    let dir = docker
        .socket()
        .parent()
        .expect("the socket's directory")
        .to_path_buf();
    let needle = dir.display().to_string();
    let image = docker.busybox_image();
    assert_eq!(image, docker.busybox_image(), "imported once");
    let out = docker.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        &image,
        "sh",
        "-c",
        "echo hello from $(uname -s)",
    ]);
    assert_eq!(out, "hello from Linux");
    // One left running, for the drop to remove.
    docker.run(&["run", "-d", "--network", "none", &image, "sleep", "1000"]);
    assert_eq!(
        docker
            .run(&["ps", "-q"])
            .lines()
            .filter(|l| !l.is_empty())
            .count(),
        1
    );
    let mut programs: Vec<String> = processes_mentioning(&needle)
        .iter()
        .filter_map(|cmdline| cmdline.split(' ').next())
        .filter_map(|program| program.rsplit('/').next().map(str::to_owned))
        .collect();
    programs.sort();
    assert_eq!(
        programs,
        ["containerd", "containerd-shim-runc-v2", "dockerd"],
        "the daemon, its containerd and the running container's shim"
    );
    drop(docker);
    assert_eq!(processes_mentioning(&needle), Vec::<String>::new());
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(&needle),
        "left mounted under {needle}:\n{mounts}"
    );
    assert!(!dir.exists(), "{needle} was not removed");
}
