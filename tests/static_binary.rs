//! The single static `dlm` binary: built with glibc's static C runtime into its own target
//! folder, then checked to need no shared library and to run. Slow (a release build), so it
//! runs only when `DLM_TEST_STATIC=1`.
//!
//! The build: `RUSTFLAGS="-C target-feature=+crt-static" cargo build --release --bin dlm
//! --target x86_64-unknown-linux-gnu` (the explicit `--target` keeps the flag off build
//! scripts and proc macros). The test builds the same with the `static-check` profile
//! (release settings without optimization or LTO): linking is what it checks, and an
//! optimized build of every crate took 12 of the test suite's minutes on a 2-core machine.

use std::path::Path;
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

#[test]
#[cfg_attr(
    not(dlm_test_static),
    ignore = "set DLM_TEST_STATIC=1 to build and check the static binary"
)]
fn static_dlm_binary_builds_and_runs() {
    if std::env::var("DLM_TEST_STATIC").as_deref() != Ok("1") {
        println!("skipped: set DLM_TEST_STATIC=1 to build and check the static binary");
        return;
    }
    if !cfg!(all(
        target_os = "linux",
        target_arch = "x86_64",
        target_env = "gnu"
    )) {
        println!("skipped: the static build is checked on x86_64 Linux (glibc) only");
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    // A folder of its own: the flags differ from the normal build's, and sharing would
    // rebuild everything twice.
    let base = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    let target_dir = base.join("static");
    let st = Command::new(env!("CARGO"))
        .args([
            "build",
            "--profile",
            "static-check",
            "--bin",
            "dlm",
            "--target",
            TARGET,
        ])
        .arg("--target-dir")
        .arg(&target_dir)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .current_dir(root)
        .status()
        .expect("run cargo build");
    assert!(st.success(), "static build failed");
    let exe = target_dir.join(TARGET).join("static-check/dlm");
    let size = std::fs::metadata(&exe).expect("static binary").len();
    println!(
        "static dlm: {} ({:.1} MiB)",
        exe.display(),
        size as f64 / 1048576.0
    );

    let ldd = Command::new("ldd").arg(&exe).output().expect("run ldd");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&ldd.stdout),
        String::from_utf8_lossy(&ldd.stderr)
    );
    assert!(
        said.contains("not a dynamic executable") || said.contains("statically linked"),
        "ldd says the binary is dynamic:\n{said}"
    );
    let out = Command::new(&exe)
        .arg("--version")
        .output()
        .expect("run dlm --version");
    assert!(out.status.success(), "dlm --version failed");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
}
