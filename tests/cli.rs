//! End-to-end tests of the `dlm` binary's commands on the reference checkpoints.

mod common;

use std::process::Command;

fn dlm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
}

#[test]
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
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
    assert!(out.exists() && !dir.join("llada.dlm.tmp").exists());

    let st = dlm().arg("inspect").arg(&out).arg("--verify").output().unwrap();
    let text = String::from_utf8_lossy(&st.stdout);
    assert!(st.status.success());
    assert!(text.contains("model.family") && text.contains("blk.0.wq") && text.contains("f16"));
    assert!(text.contains("checksums: all 39 tensors ok"), "{text}");

    let st = dlm().arg("inspect").arg(&out).arg("--json").output().unwrap();
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
    assert_eq!(String::from_utf8_lossy(&st.stdout).trim_end(), "Hello, world");

    let npy = dir.join("out.npy");
    let st = dlm()
        .args(["logits", "-m"])
        .arg(&out)
        .args(["--ids", "2042,39,906,2047"])
        .arg("-o")
        .arg(&npy)
        .output()
        .unwrap();
    assert!(st.status.success(), "{}", String::from_utf8_lossy(&st.stderr));
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
