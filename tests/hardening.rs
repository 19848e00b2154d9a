//! Regression tests of issue 15 through the `dlm` binary: closed pipes, write errors, the
//! model cache under concurrency and tampering, corrupt weights at load, padded
//! vocabularies, huge step counts and Dream's default top-k.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Instant;

fn dlm() -> Command {
    Command::new(env!("CARGO_BIN_EXE_dlm"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(o: &Output) {
    assert!(o.status.success(), "{}", text(&o.stderr));
}

/// A writable copy of a reference folder.
fn copy_folder(src: &Path, dst: &Path) {
    std::fs::create_dir_all(dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
        let mut perm = std::fs::metadata(&to).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&to, perm).unwrap();
    }
}

/// `f` applied to the bytes of tensor `name` of a copy of `model`.
fn damaged(model: &Path, name: &str, out: &Path, f: impl FnOnce(&mut [u8])) {
    let mut bytes = std::fs::read(model).unwrap();
    let file = dlm_formats::DlmFile::parse(&bytes).unwrap();
    let t = file.tensor(name).unwrap().clone();
    f(&mut bytes[t.offset as usize..(t.offset + t.len_bytes) as usize]);
    std::fs::write(out, bytes).unwrap();
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.to_string_lossy().ends_with(".tmp"))
        .collect()
}

#[test]
fn a_closed_stdout_ends_quietly_and_write_errors_name_the_path() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("harden-pipe");
    let model = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    for args in [
        vec![
            "tokenize",
            "-m",
            model.to_str().unwrap(),
            "Hello there, world.",
        ],
        vec![
            "run",
            "-m",
            model.to_str().unwrap(),
            "--prompt-ids",
            "2042,39,906",
            "--gen-length",
            "8",
            "--steps",
            "8",
            "--block-length",
            "8",
        ],
    ] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let o = dlm()
            .args(&args)
            .stdout(Stdio::from(writer))
            .stderr(Stdio::piped())
            .output()
            .unwrap();
        let err = text(&o.stderr);
        assert_eq!(o.status.code(), Some(141), "{args:?}: {err}");
        assert!(
            !err.contains("panicked") && !err.contains("Broken pipe"),
            "{err}"
        );
    }
    // dlm logits into a folder that does not exist: the error names the path.
    let missing = dir.join("no-such-dir/out.npy");
    let o = dlm()
        .args(["logits", "-m"])
        .arg(&model)
        .args(["--ids", "1,2,3", "-o"])
        .arg(&missing)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("no-such-dir/out.npy"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // A good one leaves no temporary file beside it.
    let good = dir.join("out.npy");
    let o = dlm()
        .args(["logits", "-m"])
        .arg(&model)
        .args(["--ids", "1,2,3", "-o"])
        .arg(&good)
        .output()
        .unwrap();
    ok(&o);
    assert!(good.exists() && temp_files(&dir).is_empty());
}

#[test]
fn verify_at_load_and_nan_norms() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("harden-verify");
    let model = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let run = |m: &Path, extra: &[&str]| {
        dlm()
            .args(["run", "-m"])
            .arg(m)
            .args(["--prompt-ids", "2042,39,906", "--gen-length", "8"])
            .args(["--steps", "8", "--block-length", "8"])
            .args(extra)
            .output()
            .unwrap()
    };
    ok(&run(&model, &["--verify"]));
    let flipped = dir.join("flipped.dlm");
    damaged(&model, "blk.2.w_up", &flipped, |d| d[1000] ^= 0x10);
    ok(&run(&flipped, &[]));
    let o = run(&flipped, &["--verify"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("corrupt") && err.contains("blk.2.w_up"),
        "{err}"
    );
    // A NaN block scale written with a valid checksum (a faulty writer): only --verify sees it.
    let q8 = common::convert_reference(&reference, "llada-tiny", "q8_0", &dir);
    let rewritten = dir.join("nan-scale.dlm");
    {
        let bytes = std::fs::read(&q8).unwrap();
        let file = dlm_formats::DlmFile::parse(&bytes).unwrap();
        let tensors: Vec<(dlm_formats::TensorDecl, Vec<u8>)> = file
            .tensors
            .iter()
            .map(|t| {
                let mut data = bytes[t.offset as usize..(t.offset + t.len_bytes) as usize].to_vec();
                if t.name == "blk.1.wk" {
                    assert_eq!(t.quant, dlm_formats::QuantType::Q8_0);
                    data[0..2].copy_from_slice(&0x7E00u16.to_le_bytes()); // f16 NaN
                }
                let decl = dlm_formats::TensorDecl {
                    name: t.name.clone(),
                    quant: t.quant,
                    shape: t.shape.clone(),
                };
                (decl, data)
            })
            .collect();
        let out = dlm_formats::write_to_vec(&file.meta, &tensors).unwrap();
        std::fs::write(&rewritten, out).unwrap();
    }
    ok(&run(&rewritten, &[]));
    let o = run(&rewritten, &["--verify"]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(err.contains("blk.1.wk") && err.contains("row 0"), "{err}");
    let nan = dir.join("nan.dlm");
    damaged(&model, "blk.0.ffn_norm", &nan, |d| {
        d[..4].copy_from_slice(&f32::INFINITY.to_le_bytes())
    });
    let o = run(&nan, &[]);
    assert!(!o.status.success());
    let err = text(&o.stderr);
    assert!(
        err.contains("blk.0.ffn_norm") && err.contains("inf"),
        "{err}"
    );
}

/// Removes token `id` from a tokenizer.json (vocab entry and every merge that uses or makes
/// it), leaving a hole: the model's row `id` then has no token, as a padded row has none.
fn punch_hole(tokenizer_json: &Path, id: u64) {
    let mut t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(tokenizer_json).unwrap()).unwrap();
    let vocab = t["model"]["vocab"].as_object_mut().unwrap();
    let name = vocab
        .iter()
        .find(|(_, v)| v.as_u64() == Some(id))
        .map(|(k, _)| k.clone())
        .expect("id in vocab");
    vocab.remove(&name);
    let merges = t["model"]["merges"].as_array_mut().unwrap();
    merges.retain(|m| {
        let (a, b) = match m {
            serde_json::Value::String(s) => {
                let (a, b) = s.split_once(' ').unwrap();
                (a.to_string(), b.to_string())
            }
            serde_json::Value::Array(p) => (
                p[0].as_str().unwrap().to_string(),
                p[1].as_str().unwrap().to_string(),
            ),
            _ => unreachable!(),
        };
        a != name && b != name && format!("{a}{b}") != name
    });
    std::fs::write(tokenizer_json, serde_json::to_vec(&t).unwrap()).unwrap();
}

#[test]
fn an_id_without_a_token_never_loses_the_answer() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("harden-padded");
    let run = |m: &Path| {
        dlm()
            .args(["run", "-m"])
            .arg(m)
            .args(["--prompt-ids", "2042,39,906", "--gen-length", "16"])
            .args(["--steps", "16", "--block-length", "16", "--json"])
            .output()
            .unwrap()
    };
    let model = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let o = run(&model);
    ok(&o);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["unknown_ids"], serde_json::json!([]));
    // The first generated id that is an ordinary vocabulary token (not an added one).
    let folder = dir.join("holed");
    copy_folder(&reference.join("llada-tiny"), &folder);
    let tok: serde_json::Value =
        serde_json::from_slice(&std::fs::read(folder.join("tokenizer.json")).unwrap()).unwrap();
    let added: Vec<u64> = tok["added_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["id"].as_u64().unwrap())
        .collect();
    let hole = v["output_ids"].as_array().unwrap()[3..]
        .iter()
        .map(|x| x.as_u64().unwrap())
        .find(|id| !added.contains(id))
        .expect("a generated vocabulary token");
    punch_hole(&folder.join("tokenizer.json"), hole);
    let holed = dir.join("holed.dlm");
    ok(&dlm()
        .arg("convert")
        .arg(&folder)
        .arg("-o")
        .arg(&holed)
        .output()
        .unwrap());
    let o = run(&holed);
    ok(&o);
    let w: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    // Same math: the same canvas.
    assert_eq!(w["output_ids"], v["output_ids"]);
    let unknown = w["unknown_ids"].as_array().unwrap();
    assert!(
        unknown.iter().any(|x| x.as_u64() == Some(hole)),
        "{w} (hole {hole})"
    );
    assert!(
        w["text"].as_str().unwrap().contains(&format!("unk {hole}")),
        "{w}"
    );
    assert!(text(&o.stderr).contains("no token in the tokenizer"));
}

#[test]
fn the_folder_cache_is_private_keyed_by_content_and_safe_under_concurrency() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("harden-cache");
    let folder = dir.join("dream-tiny");
    copy_folder(&reference.join("dream-tiny"), &folder);
    let cache = dir.join("xdg");
    let run = |xdg: &Path| {
        dlm()
            .env_remove("DLM_CACHE")
            .env("XDG_CACHE_HOME", xdg)
            .args(["run", "-m"])
            .arg(&folder)
            .args(["--prompt-ids", "1,2,3", "--gen-length", "4", "--steps", "4"])
            .output()
            .unwrap()
    };
    // Three first uses at once all succeed.
    let outs: Vec<Output> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| run(&cache))).collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for o in &outs {
        ok(o);
    }
    let cached: Vec<PathBuf> = std::fs::read_dir(cache.join("dlm"))
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "dlm"))
        .collect();
    assert_eq!(cached.len(), 1, "{cached:?}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(cache.join("dlm"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o077, 0, "cache folder mode {mode:o}");
    }
    // A second use converts nothing.
    let o = run(&cache);
    ok(&o);
    assert!(
        !text(&o.stderr).contains("converting"),
        "{}",
        text(&o.stderr)
    );
    // A content change that keeps the size and the modification time is seen.
    let cfg = folder.join("generation_config.json");
    let mtime = std::fs::metadata(&cfg).unwrap().modified().unwrap();
    let old = std::fs::read_to_string(&cfg).unwrap();
    let new = old.replace("\"steps\": 512", "\"steps\": 256");
    assert_ne!(old, new);
    assert_eq!(old.len(), new.len());
    std::fs::write(&cfg, new).unwrap();
    std::fs::File::options()
        .write(true)
        .open(&cfg)
        .unwrap()
        .set_modified(mtime)
        .unwrap();
    let o = run(&cache);
    ok(&o);
    assert!(
        text(&o.stderr).contains("converting"),
        "{}",
        text(&o.stderr)
    );
    // A cache folder that others can write to is refused.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let shared = dir.join("shared");
        std::fs::create_dir_all(shared.join("dlm")).unwrap();
        std::fs::set_permissions(shared.join("dlm"), std::fs::Permissions::from_mode(0o777))
            .unwrap();
        let o = run(&shared);
        assert!(!o.status.success());
        assert!(
            text(&o.stderr).contains("not writable by others"),
            "{}",
            text(&o.stderr)
        );
    }
}

#[test]
fn huge_steps_are_quick_and_dream_top_k_can_be_turned_off() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir("harden-steps");
    let llada = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let dream = common::convert_reference(&reference, "dream-tiny", "f32", &dir);
    let run = |m: &Path, extra: &[&str]| {
        let t0 = Instant::now();
        let o = dlm()
            .args(["run", "-m"])
            .arg(m)
            .args(["--prompt-ids", "1,2,3", "--json"])
            .args(extra)
            .output()
            .unwrap();
        (o, t0.elapsed())
    };
    let (o, t) = run(
        &llada,
        &[
            "--gen-length",
            "8",
            "--block-length",
            "8",
            "--steps",
            "1000000000",
        ],
    );
    ok(&o);
    assert!(t.as_secs() < 30, "{t:?}");
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["nfe"].as_u64().unwrap() <= 8, "{v}");
    let (o, t) = run(&dream, &["--gen-length", "8", "--steps", "1000000000"]);
    assert!(!o.status.success());
    assert!(
        text(&o.stderr).contains("steps 1000000000"),
        "{}",
        text(&o.stderr)
    );
    assert!(t.as_secs() < 30, "{t:?}");
    for k in ["0", "50", "3"] {
        let (o, _) = run(&dream, &["--gen-length", "8", "--steps", "8", "--top-k", k]);
        ok(&o);
    }
}
