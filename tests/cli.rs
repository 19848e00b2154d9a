//! End-to-end tests of the `dlm` binary's commands on the reference checkpoints.

mod common;

use std::process::Command;

fn dlm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn convert_inspect_tokenize_logits_round_trip() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("cli");
    let out = dir.join("llada.dlm");
    let st = dlm()
        .args(["convert"])
        .arg(reference.join("llada-tiny"))
        .arg("-o")
        .arg(&out)
        .args(["--dtype", "f16"])
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    assert!(out.exists() && !dir.join("llada.dlm.tmp").exists());

    let st = dlm()
        .arg("inspect")
        .arg(&out)
        .arg("--verify")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success());
    assert!(text.contains("model.family") && text.contains("blk.0.wq") && text.contains("f16"));
    assert!(text.contains("checksums: all 39 tensors ok"), "{text}");

    let st = dlm()
        .arg("inspect")
        .arg(&out)
        .arg("--json")
        .output()
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("inspect --json");
    assert_eq!(v["metadata"]["model.family"], "llada");
    assert_eq!(v["tensors"].as_array().unwrap().len(), 39);

    let st = dlm()
        .args(["tokenize", "-m"])
        .arg(&out)
        .arg("Hello, world! This is a test.")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).trim(),
        "39,906,307,11,276,1857,0,654,312,259,581,13"
    );
    let st = dlm()
        .args(["detokenize", "-m"])
        .arg(&out)
        .arg("39,906,307,11,276,1857")
        .output()
        .unwrap();
    assert_eq!(
        String::from_utf8_lossy(&st.stdout).trim_end(),
        "Hello, world"
    );

    let npy = dir.join("out.npy");
    let st = dlm()
        .args(["logits", "-m"])
        .arg(&out)
        .args(["--ids", "2042,39,906,2047"])
        .arg("-o")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let bytes = std::fs::read(&npy).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    let header = std::str::from_utf8(&bytes[10..10 + hlen]).unwrap();
    assert!(header.contains("'shape': (4, 2048)"), "{header}");
    assert_eq!((10 + hlen) % 64, 0);
    assert_eq!(bytes.len(), 10 + hlen + 4 * 2048 * 4);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn bad_input_gives_a_clear_error_not_a_panic() {
    let dir = common::temp_dir("cli-bad");
    let junk = dir.join("junk.dlm");
    std::fs::write(&junk, b"not a model at all").unwrap();
    let st = dlm().arg("inspect").arg(&junk).output().unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success());
    assert!(err.starts_with("error: "), "{err}");
    assert!(!err.contains("panicked"), "{err}");

    let st = dlm()
        .args(["convert"])
        .arg(&dir)
        .arg("-o")
        .arg(dir.join("x.dlm"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success() && err.contains("config.json"), "{err}");
    assert!(!dir.join("x.dlm").exists());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn run_eval_and_bench_work_and_reject_bad_flags() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("cli-run");
    let model = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let decode = ["--gen-length", "16", "--block-length", "8", "--steps", "16"];

    // run --json: the whole canvas, the text and the counters.
    let st = dlm()
        .args(["run", "-m"])
        .arg(&model)
        .args(["--prompt-ids", "2042,39,906", "--json", "--no-early-stop"])
        .args(decode)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("run --json");
    let ids = v["output_ids"].as_array().unwrap();
    assert_eq!(ids.len(), 3 + 16);
    assert_eq!(&ids[..3], &[2042, 39, 906]);
    assert!(
        ids[3..].iter().all(|t| t.as_u64().unwrap() != 2047),
        "no mask left"
    );
    assert_eq!(v["nfe"], 16);
    assert!(v["text"].is_string() && v["tokens_per_s"].as_f64().unwrap() > 0.0);

    // Chat prompt through the template, cached decoding.
    let st = dlm()
        .args(["run", "-m"])
        .arg(&model)
        .args(["-p", "Hello", "--cache", "dual", "--threshold", "0.9"])
        .args(decode)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );

    // --visual: one frame per step on stderr (not a terminal here: frames follow each other),
    // masks drawn as ░ and disappearing as the canvas fills.
    let st = dlm()
        .args(["run", "-m"])
        .arg(&model)
        .args(["--prompt-ids", "2042,39,906", "--visual", "--no-early-stop"])
        .args(decode)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let err = format!("\n{}", String::from_utf8_lossy(&st.stderr));
    let frames: Vec<&str> = err.split("\nstep ").skip(1).collect();
    assert_eq!(frames.len(), 16, "{err}");
    assert!(frames[0].contains("masks left   15") && frames[0].contains('░'));
    assert!(frames[15].contains("masks left    0") && !frames[15].contains('░'));

    // Bad flags: clear errors, no panic.
    for (bad, needle) in [
        (
            vec!["--gen-length", "30", "--block-length", "8"],
            "does not divide",
        ),
        (
            vec!["--gen-length", "16", "--block-length", "8", "--steps", "3"],
            "not divisible",
        ),
        (vec!["--threshold", "1.5"], "threshold"),
        (vec!["--cache", "triple"], "unknown --cache"),
        (vec!["--algorithm", "magic"], "unknown --algorithm"),
        (
            vec![
                "--gen-length",
                "5000",
                "--block-length",
                "5000",
                "--steps",
                "5000",
            ],
            "context",
        ),
    ] {
        let st = dlm()
            .args(["run", "-m"])
            .arg(&model)
            .args(["-p", "x"])
            .args(&bad)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&st.stderr);
        assert!(!st.status.success(), "{bad:?} should fail");
        assert!(
            err.contains(needle) && !err.contains("panicked"),
            "{bad:?}: {err}"
        );
    }

    // eval on a task file and on text.
    let tasks = dir.join("t.jsonl");
    std::fs::write(
        &tasks,
        "{\"prompt\":\"hi\",\"answer\":\"x\"}\n\n{\"prompt\":\"yo\",\"answer\":\"y\"}\n",
    )
    .unwrap();
    let text = dir.join("t.txt");
    std::fs::write(&text, "fn main() { println!(\"hello\"); } ".repeat(20)).unwrap();
    let st = dlm()
        .args(["eval", "-m"])
        .arg(&model)
        .arg("--tasks")
        .arg(&tasks)
        .arg("--text")
        .arg(&text)
        .args(["--seq-len", "32", "--mc", "2", "--json"])
        .args(decode)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("eval --json");
    assert_eq!(v["tasks"][0]["n"], 2);
    assert_eq!(v["tasks"][0]["mean_nfe"], 16.0);
    let nats = v["text"]["nats_per_token"].as_f64().unwrap();
    assert!(nats.is_finite() && nats > 0.0, "{nats}");

    // A malformed task line names the file and line.
    std::fs::write(&tasks, "{\"prompt\":\"hi\"}\n").unwrap();
    let st = dlm()
        .args(["eval", "-m"])
        .arg(&model)
        .arg("--tasks")
        .arg(&tasks)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&st.stderr);
    assert!(!st.status.success() && err.contains("t.jsonl:1"), "{err}");

    // bench: the three cache modes side by side.
    let st = dlm()
        .args(["bench", "-m"])
        .arg(&model)
        .arg("--json")
        .args(decode)
        .output()
        .unwrap();
    assert!(
        st.status.success(),
        "{}",
        String::from_utf8_lossy(&st.stderr)
    );
    let v: serde_json::Value = serde_json::from_slice(&st.stdout).expect("bench --json");
    let runs = v["runs"].as_array().unwrap();
    assert_eq!(runs.len(), 3);
    for r in runs {
        assert!(r["tokens_per_s"].as_f64().unwrap() > 0.0);
        assert!(r["matmul_s"].as_f64().unwrap() > 0.0);
        let first = r["first_step_s"].as_f64().unwrap();
        assert!(
            first > 0.0 && first <= r["seconds"].as_f64().unwrap(),
            "{r}"
        );
    }
    assert!(v["load_s"].as_f64().unwrap() > 0.0, "{v}");
    std::fs::remove_dir_all(&dir).ok();
}
