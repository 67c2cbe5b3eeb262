//! The real `billsync` binary, for tests that run it as a child process (and kill it).
//!
//! Cargo hands `CARGO_BIN_EXE_billsync` only to the CLI crate's own tests; elsewhere the
//! binary is found beside this test executable in the target directory, built first with the
//! same profile so that it is never stale.

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;

/// Path of an up-to-date `billsync` binary (built once per test process).
pub fn billsync_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("billsync", "billsync")).clone()
}

/// Path of an up-to-date `billsync-sandbox` binary (built once per test process).
pub fn sandbox_binary() -> PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| build("billsync-sandbox", "billsync-sandbox"))
        .clone()
}

fn build(package: &str, bin: &str) -> PathBuf {
    // target/<profile>/deps/<test binary>, or target/<profile>/<benchmark binary>
    let exe = std::env::current_exe().expect("the test executable's path");
    let parent = exe.parent().expect("executables live in target/<profile>");
    let profile_dir = if parent.file_name().is_some_and(|name| name == "deps") {
        parent.parent().expect("target/<profile>/deps has a parent")
    } else {
        parent
    };
    let release = profile_dir
        .file_name()
        .is_some_and(|name| name == "release");
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut command = Command::new(cargo);
    command.args(["build", "--quiet", "-p", package, "--bin", bin]);
    if release {
        command.arg("--release");
    }
    // The variables Cargo and nextest set for a test process describe the test crate, not
    // the build: build scripts that watch some of them would rebuild half the workspace
    // here, and again on the next `cargo build` from a shell.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("NEXTEST")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "OUT_DIR",
                "RUST_TEST_THREADS",
                "RUST_BACKTRACE",
            ]
            .contains(&name.as_ref())
        {
            command.env_remove(name.as_ref());
        }
    }
    let status = command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .unwrap_or_else(|e| panic!("run cargo build -p {package}: {e}"));
    assert!(status.success(), "cargo build -p {package} failed");
    let binary = profile_dir.join(bin);
    assert!(
        binary.exists(),
        "{} is missing after the build",
        binary.display()
    );
    binary
}
