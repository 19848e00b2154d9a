//! Build script shared by the packages whose tests depend on the machine (`dlm`,
//! `dlm-runtime`, `dlm-convert`): it tells the tests what is there, as cfgs, so a test that
//! cannot run is marked `#[ignore = "why"]` and cargo's own summary counts it ("N ignored"),
//! instead of passing while checking nothing.
//!
//! - `dlm_shared`: `../shared/reference` exists beside the workspace.
//! - `dlm_test_static`: `DLM_TEST_STATIC=1` (the static-binary build check).
//! - `dlm_cc`: a C compiler `cc` runs (the C ABI example).
//! - `dlm_script`: util-linux `script` runs (it gives the pty tests a pseudo-terminal).
//! - `dlm_gpu`: `nvidia-smi -L` lists a GPU (the CUDA parity tests; a test binary built
//!   elsewhere runs them on a GPU machine with `--include-ignored`).
//!
//! A folder that appears after the first build is seen after `touch build/test_cfg.rs` (or
//! `cargo clean`): watching a missing path would re-run this script, and rebuild the package,
//! on every build.

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(dlm_shared)");
    println!("cargo::rustc-check-cfg=cfg(dlm_test_static)");
    println!("cargo::rustc-check-cfg=cfg(dlm_cc)");
    println!("cargo::rustc-check-cfg=cfg(dlm_gpu)");
    println!("cargo::rustc-check-cfg=cfg(dlm_script)");
    println!("cargo::rerun-if-env-changed=DLM_TEST_STATIC");

    // The workspace root: the nearest folder up from this package with a Cargo.lock.
    let mut root = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    while !root.join("Cargo.lock").exists() {
        if !root.pop() {
            break;
        }
    }
    println!(
        "cargo::rerun-if-changed={}",
        root.join("build/test_cfg.rs").display()
    );
    let shared = root.join("../shared/reference");
    if shared.is_dir() {
        println!("cargo::rustc-cfg=dlm_shared");
        println!("cargo::rerun-if-changed={}", shared.display());
    }
    if std::env::var("DLM_TEST_STATIC").as_deref() == Ok("1") {
        println!("cargo::rustc-cfg=dlm_test_static");
    }
    let cc = std::process::Command::new("cc")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if cc {
        println!("cargo::rustc-cfg=dlm_cc");
    }
    let script = std::process::Command::new("script")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if script {
        println!("cargo::rustc-cfg=dlm_script");
    }
    let gpu = std::process::Command::new("nvidia-smi")
        .arg("-L")
        .output()
        .is_ok_and(|o| o.status.success() && o.stdout.starts_with(b"GPU"));
    if gpu {
        println!("cargo::rustc-cfg=dlm_gpu");
    }
}
