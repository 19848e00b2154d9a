//! Where a command's model comes from: a Hugging Face folder converted on first use keeping
//! its own types (or `--quant`), the cache that `dlm cache` lists and empties, the demo model
//! found without the source tree, `--help -m` and `--show-defaults`, and what inspect and
//! verify say about a folder.

mod common;

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn dlm_in(cache: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_dlm"));
    c.current_dir(repo()).env("DLM_CACHE", cache);
    c
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", text(&o.stderr));
    text(&o.stdout)
}

/// One token, one step: what a test needs to make a command load its model.
const QUICK: [&str; 5] = ["x", "-n", "1", "--steps", "1"];

#[test]
fn a_folder_keeps_its_types_or_takes_quant_and_the_cache_lists_and_removes() {
    let dir = common::temp_dir("sources-cache");
    let cache = dir.join("cache");
    // The demo checkpoint is bf16: kept bf16, the size printed before writing.
    let o = dlm_in(&cache).arg("run").args(QUICK).output().unwrap();
    ok(&o);
    let err = text(&o.stderr);
    assert!(err.contains("policy keep"), "{err}");
    assert!(err.contains("writing 28.0 MiB of weights"), "{err}");
    assert!(err.contains("bf16: 44 tensors"), "{err}");
    let list = |c: &Path| -> Value {
        serde_json::from_str(&ok(&dlm_in(c)
            .args(["cache", "list", "--json"])
            .output()
            .unwrap()))
        .unwrap()
    };
    let v = list(&cache);
    let entries = v["entries"].as_array().unwrap();
    assert_eq!(entries.len(), 1, "{v}");
    assert_eq!(entries[0]["policy"], "keep");
    assert!(
        entries[0]["source"]
            .as_str()
            .unwrap()
            .ends_with("models/demo")
    );
    assert!(entries[0]["bytes"].as_u64().unwrap() < 30 << 20);
    // --quant converts once more, into its own entry; a second use converts nothing.
    for first in [true, false] {
        let o = dlm_in(&cache)
            .args(["run", "--quant", "q8_0"])
            .args(QUICK)
            .output()
            .unwrap();
        ok(&o);
        assert_eq!(text(&o.stderr).contains("first use"), first);
    }
    let v = list(&cache);
    let policies: Vec<&str> = v["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["policy"].as_str().unwrap())
        .collect();
    assert_eq!(policies.len(), 2, "{v}");
    assert!(policies.contains(&"q8_0") && policies.contains(&"keep"));
    let listed = ok(&dlm_in(&cache).args(["cache", "list"]).output().unwrap());
    assert!(listed.contains("2 entries"), "{listed}");
    // --quant on a .dlm file is an error that says why.
    let file = cache.join(v["entries"][0]["name"].as_str().unwrap());
    let o = dlm_in(&cache)
        .args(["run", "--quant", "q4_0", "-m"])
        .arg(&file)
        .args(QUICK)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("already a .dlm file"));
    // Remove: an unknown name is an error; a source name removes its every conversion.
    let o = dlm_in(&cache)
        .args(["cache", "remove", "nothing"])
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(text(&o.stderr).contains("no cache entry named nothing"));
    let o = dlm_in(&cache)
        .args(["cache", "remove", "demo"])
        .output()
        .unwrap();
    ok(&o);
    assert!(text(&o.stderr).contains("freed"));
    assert_eq!(list(&cache)["entries"].as_array().unwrap().len(), 0);
    let remaining: Vec<_> = std::fs::read_dir(&cache).unwrap().flatten().collect();
    assert!(remaining.is_empty(), "{remaining:?}");
    // --all on an empty cache removes nothing and says so.
    let o = dlm_in(&cache)
        .args(["cache", "remove", "--all"])
        .output()
        .unwrap();
    assert!(!o.status.success());
}

#[test]
fn help_with_a_model_shows_its_defaults_and_show_defaults_applies_the_flags() {
    let dir = common::temp_dir("sources-help");
    let o = dlm_in(&dir)
        .args(["run", "-m", "models/demo-fast", "--help"])
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(out.contains("Usage: dlm run"), "{out}");
    // demo-fast stores its few-step schedule: 4 steps, threshold and min_per_step.
    assert!(
        out.contains("Decoding settings for models/demo-fast"),
        "{out}"
    );
    // A setting's line, among the settings (clap's own help lists the flags too).
    let line = |s: &str, flag: &str| -> String {
        let settings = &s[s.find("Decoding settings").expect("settings")..];
        settings
            .lines()
            .find(|l| l.trim_start().starts_with(flag))
            .unwrap_or_else(|| panic!("no {flag} in {s}"))
            .to_string()
    };
    assert!(line(&out, "--steps").ends_with(" 4"), "{out}");
    assert!(line(&out, "--min-per-step").ends_with(" 8"), "{out}");
    // Without -m, plain help.
    let plain = ok(&dlm_in(&dir).args(["run", "--help"]).output().unwrap());
    assert!(!plain.contains("Decoding settings"));
    // --show-defaults: the flags given applied, nothing run.
    let o = dlm_in(&dir)
        .args(["chat", "--show-defaults", "-n", "64", "--cache", "dual"])
        .args(["--threshold", "0.9", "--seed", "7"])
        .output()
        .unwrap();
    let out = ok(&o);
    assert!(line(&out, "--gen-length").ends_with(" 64"), "{out}");
    assert!(line(&out, "--cache").ends_with(" dual"), "{out}");
    assert!(line(&out, "--threshold").ends_with(" 0.9"), "{out}");
    assert!(line(&out, "--seed").ends_with(" 7"), "{out}");
    assert!(line(&out, "--eps").ends_with(" 0.001"), "{out}");
}

#[test]
fn inspect_and_verify_say_what_to_do_with_a_folder() {
    let dir = common::temp_dir("sources-inspect");
    for cmd in ["inspect", "verify"] {
        let o = dlm_in(&dir).args([cmd, "models/demo"]).output().unwrap();
        assert!(!o.status.success());
        let err = text(&o.stderr);
        assert!(
            err.contains("is a Hugging Face folder")
                && err.contains("dlm convert models/demo -o model.dlm"),
            "{err}"
        );
    }
}

#[test]
fn the_demo_model_is_found_without_the_source_tree() {
    let dir = common::temp_dir("sources-demo");
    // The binary alone, run from a folder without models/ and with a home of its own.
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let exe = bin.join("dlm");
    std::fs::copy(env!("CARGO_BIN_EXE_dlm"), &exe).unwrap();
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let run = |env: &[(&str, &Path)]| {
        let mut c = Command::new(&exe);
        c.current_dir(&dir)
            .env_remove("DLM_MODELS")
            .env_remove("XDG_DATA_HOME")
            .env("HOME", &home)
            .env("DLM_CACHE", dir.join("cache"))
            .args(["run", "Sort: 42 7 93 15"]);
        for (k, v) in env {
            c.env(k, v);
        }
        c.output().unwrap()
    };
    let o = run(&[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("the demo model") && err.contains("DLM_MODELS"),
        "{err}"
    );
    assert!(err.contains(".local/share/dlm/models"), "{err}");
    // $DLM_MODELS names the folder holding demo/.
    let o = run(&[("DLM_MODELS", &repo().join("models"))]);
    assert_eq!(ok(&o).trim(), "7 15 42 93");
    // A converted demo.dlm in the user's data folder is found too.
    let data = home.join(".local/share/dlm/models");
    std::fs::create_dir_all(&data).unwrap();
    let o = dlm_in(&dir.join("cache"))
        .args(["convert", "models/demo", "-o"])
        .arg(data.join("demo.dlm"))
        .output()
        .unwrap();
    ok(&o);
    let o = run(&[]);
    assert_eq!(ok(&o).trim(), "7 15 42 93");
}
