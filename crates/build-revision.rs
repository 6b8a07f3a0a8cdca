//! Records the source revision for `mcpwatch_build_info{revision}`: `MCPWATCH_REVISION` when
//! set (container builds without `.git`), else `git rev-parse`, else "unknown".

// A build script speaks to cargo on standard output.
#![allow(clippy::print_stdout)]

use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=MCPWATCH_REVISION");
    let revision = std::env::var("MCPWATCH_REVISION")
        .ok()
        .filter(|r| !r.is_empty())
        .or_else(|| {
            let out = Command::new("git")
                .args(["rev-parse", "--short=12", "HEAD"])
                .output()
                .ok()?;
            out.status
                .success()
                .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned());
    if let Ok(out) = Command::new("git")
        .args(["rev-parse", "--git-dir"])
        .output()
        && out.status.success()
    {
        let git_dir = String::from_utf8_lossy(&out.stdout).trim().to_owned();
        println!("cargo:rerun-if-changed={git_dir}/HEAD");
        println!("cargo:rerun-if-changed={git_dir}/refs/heads");
    }
    println!("cargo:rustc-env=MCPWATCH_REVISION={revision}");
}
