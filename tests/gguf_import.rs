//! `dlm convert x.gguf`: llama.cpp's own GGUF files of the reference checkpoints and of the
//! demo model (`../shared/reference/gguf`) convert and agree with the safetensors path of the
//! same model: the f32 file bit for bit, the Q8_0 files within q8_0's logits bound and
//! tensor by tensor within q8_0's rounding, the Q4_K_M files within the 4-bit bounds, and the
//! demo model's Q8_0 file answers its tasks like our own q8_0 conversion.

mod common;

use dlm_formats::{DlmFile, MetaValue, QuantType};
use dlm_runtime::model::{Forward, Model};
use std::path::{Path, PathBuf};
use std::process::Command;

/// `../shared/reference/gguf`, or `None` with a visible skip line.
fn gguf_dir() -> Option<PathBuf> {
    let dir = common::reference_dir()?.join("gguf");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared/reference/gguf not found");
        None
    }
}

/// Convert the GGUF `file` with `policy` (`keep` = its own types) into `dir`.
fn convert_gguf(file: &Path, policy: &str, dir: &Path) -> (PathBuf, dlm_convert::ConvertReport) {
    let name = file.file_stem().unwrap().to_string_lossy();
    let out = dir.join(format!("{name}-{policy}.dlm"));
    let mut opts = dlm_convert::ConvertOptions::new(file, &out);
    opts.policy = dlm_convert::QuantPolicy::from_name(policy).expect("policy");
    let report = dlm_convert::convert(&opts, &mut |_| {}).expect("convert gguf");
    (out, report)
}

struct Loaded {
    bytes: Vec<u8>,
    file: DlmFile,
}

fn load(path: &Path) -> Loaded {
    let bytes = std::fs::read(path).expect("read .dlm");
    let file = DlmFile::parse(&bytes).expect("parse .dlm");
    file.verify_checksums(&bytes).expect("checksums");
    Loaded { bytes, file }
}

impl Loaded {
    fn values(&self, name: &str) -> Vec<f32> {
        let t = self.file.tensor(name).expect("tensor");
        let mut out = vec![0f32; t.n_elements() as usize];
        dlm_formats::quant::dequantize(t.quant, self.file.tensor_bytes(&self.bytes, t), &mut out)
            .expect("dequantize");
        out
    }
    fn meta(&self, prefix: &str) -> Vec<(String, MetaValue)> {
        let mut m: Vec<_> = self
            .file
            .meta
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .cloned()
            .collect();
        m.sort_by(|a, b| a.0.cmp(&b.0));
        m
    }
}

/// The model, tokenizer and chat keys of an imported file equal those of the safetensors path,
/// except `tokenizer.ignore_merges`: GGUF does not record it, and the import follows llama.cpp,
/// which sets it for `llama-bpe` (as LLaMA-3's own tokenizer does), while the tiny reference
/// tokenizer leaves it off; the probes of [`tokenizes_like_the_reference`] show the ids agree.
fn same_model_keys(a: &Loaded, b: &Loaded) {
    for prefix in ["model.", "tokenizer.", "chat.", "diffusion.mask_id"] {
        let skip = |m: Vec<(String, MetaValue)>| -> Vec<(String, MetaValue)> {
            m.into_iter()
                .filter(|(k, _)| k != dlm_formats::keys::tokenizer::IGNORE_MERGES)
                .collect()
        };
        let (ma, mb) = (skip(a.meta(prefix)), skip(b.meta(prefix)));
        assert!(!ma.is_empty(), "{prefix}");
        for (x, y) in ma.iter().zip(&mb) {
            assert_eq!(x, y, "{prefix}");
        }
        assert_eq!(ma.len(), mb.len(), "{prefix}");
    }
}

/// RMS of (a − b) over RMS of b.
fn rel_rms(a: &[f32], b: &[f32]) -> f64 {
    let (mut e, mut n) = (0f64, 0f64);
    for (x, y) in a.iter().zip(b) {
        e += ((x - y) as f64).powi(2);
        n += (*y as f64).powi(2);
    }
    (e / n.max(1e-30)).sqrt()
}

/// Every tensor of `got` against the f32 conversion `f32`: same names and shapes, and each
/// within `bound(type)` relative RMS error. Returns the types seen with their counts.
fn tensors_close(got: &Loaded, f32: &Loaded, bound: impl Fn(QuantType) -> f64) -> Vec<String> {
    assert_eq!(got.file.tensors.len(), f32.file.tensors.len());
    let mut seen: Vec<(QuantType, usize, f64)> = Vec::new();
    for t in &got.file.tensors {
        let r = f32.file.tensor(&t.name).expect("same tensor names");
        assert_eq!(t.shape, r.shape, "{}", t.name);
        let err = rel_rms(&got.values(&t.name), &f32.values(&t.name));
        assert!(
            err <= bound(t.quant),
            "{} ({}): relative rms error {err}",
            t.name,
            t.quant
        );
        match seen.iter_mut().find(|s| s.0 == t.quant) {
            Some(s) => {
                s.1 += 1;
                s.2 = s.2.max(err);
            }
            None => seen.push((t.quant, 1, err)),
        }
    }
    let lines: Vec<String> = seen
        .iter()
        .map(|(q, n, e)| format!("{q} x{n} (worst rel rms {e:.4})"))
        .collect();
    println!("{}", lines.join(", "));
    lines
}

/// Relative RMS bounds per stored type against the exact weights: half a step of each type
/// with margin (q8_0 ~0.4%, the 5-bit values of a Q5_0 transcode ~4%, q6_k ~2%, 4-bit ~10%).
/// A wrong nibble order or block layout gives errors of order 1.
fn type_bound(q: QuantType) -> f64 {
    match q {
        QuantType::F32 | QuantType::F16 | QuantType::BF16 => 0.0,
        QuantType::Q8_0 => 0.06,
        QuantType::Q6K => 0.04,
        QuantType::Q4K | QuantType::Q4_0 => 0.16,
    }
}

/// (KL mean, KL max, top-1 agreement) of `m` against `base` over the `logits` cases of `name`.
fn logits_vs(reference: &Path, name: &str, base: &Model, m: &Model) -> (f64, f64, f64) {
    let expected = common::expected_json(reference, name);
    let tensors = common::read_safetensors(&reference.join(format!("{name}.expected.safetensors")));
    let vocab = base.vocab_size();
    let (mut sum, mut max, mut n, mut top1) = (0f64, 0f64, 0usize, 0usize);
    for c in expected["logits"].as_array().expect("logits cases") {
        let ids: Vec<u32> = tensors[c["input"].as_str().unwrap()]
            .values
            .iter()
            .map(|&v| v as u32)
            .collect();
        let rows: Vec<usize> = (0..ids.len()).collect();
        let a = base.logits(&ids, &rows).unwrap();
        let b = m.logits(&ids, &rows).unwrap();
        for (p, q) in a.chunks(vocab).zip(b.chunks(vocab)) {
            let kl = kl(p, q);
            sum += kl;
            max = max.max(kl);
            n += 1;
            top1 += usize::from(argmax(p) == argmax(q));
        }
    }
    let r = (sum / n as f64, max, top1 as f64 / n as f64);
    println!(
        "{name}: KL mean {:.2e}, max {:.2e}, top-1 {:.1}%",
        r.0,
        r.1,
        100.0 * r.2
    );
    r
}

fn argmax(l: &[f32]) -> usize {
    (0..l.len()).fold(0, |b, i| if l[i] > l[b] { i } else { b })
}

fn kl(p: &[f32], q: &[f32]) -> f64 {
    let ls = |l: &[f32]| -> Vec<f64> {
        let m = l.iter().fold(f64::NEG_INFINITY, |m, &v| m.max(v as f64));
        let lse = m + l.iter().map(|&v| (v as f64 - m).exp()).sum::<f64>().ln();
        l.iter().map(|&v| v as f64 - lse).collect()
    };
    let (a, b) = (ls(p), ls(q));
    a.iter()
        .zip(&b)
        .map(|(x, y)| x.exp() * (x - y))
        .sum::<f64>()
        .max(0.0)
}

/// The tokenizer imported from `tokenizer.ggml.*` gives the reference ids on every probe.
fn tokenizes_like_the_reference(path: &Path, reference: &Path, name: &str) {
    let model = Model::open(path).expect("open");
    let tok = dlm_runtime::Tokenizer::from_file(model.file()).expect("tokenizer");
    let expected = common::expected_json(reference, name);
    for p in expected["tokenizer"].as_array().expect("probes") {
        let text = p["text"].as_str().unwrap();
        assert_eq!(tok.encode(text), common::ids(&p["ids"]), "{name}: {text:?}");
    }
}

#[test]
fn llada_f32_gguf_is_bit_for_bit_the_f32_conversion() {
    let (Some(g), Some(reference)) = (gguf_dir(), common::reference_dir()) else {
        return;
    };
    let dir = common::temp_dir("gguf-f32");
    let (path, report) = convert_gguf(&g.join("llada-tiny.f32.gguf"), "keep", &dir);
    assert_eq!(report.notices.len(), 1, "{:?}", report.notices);
    let ours = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let (a, b) = (load(&path), load(&ours));
    same_model_keys(&a, &b);
    tokenizes_like_the_reference(&path, &reference, "llada-tiny");
    // Every tensor the same bytes: llama.cpp's q/k permutation undone exactly.
    for t in &b.file.tensors {
        let u = a.file.tensor(&t.name).expect("tensor");
        assert_eq!((u.quant, &u.shape), (t.quant, &t.shape), "{}", t.name);
        assert_eq!(u.checksum, t.checksum, "{} differs", t.name);
    }
    let (ma, mb) = (Model::open(&path).unwrap(), Model::open(&ours).unwrap());
    let (kl_mean, kl_max, top1) = logits_vs(&reference, "llada-tiny", &mb, &ma);
    assert_eq!((kl_mean, kl_max, top1), (0.0, 0.0, 1.0));
    // Asked to re-quantize, the same values give our own q8_0 file's bytes.
    let (q8, report) = convert_gguf(&g.join("llada-tiny.f32.gguf"), "q8_0", &dir);
    assert!(report.notices.iter().any(|n| n.contains("re-quantizing")));
    let ours_q8 = common::convert_reference(&reference, "llada-tiny", "q8_0", &dir);
    let (a, b) = (load(&q8), load(&ours_q8));
    for t in &b.file.tensors {
        assert_eq!(
            a.file.tensor(&t.name).unwrap().checksum,
            t.checksum,
            "{}",
            t.name
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A llama.cpp Q8_0 file of reference `name`: natively q8_0, each tensor within q8_0 rounding
/// of the exact weights, the same bytes as our q8_0 where llama.cpp rounded the same, and
/// logits within the q8_0 bound of `tests/quant_fidelity.rs` (KL mean 1e-2, max 5e-2, top-1
/// 85%).
fn check_q8_0(name: &str) {
    let (Some(g), Some(reference)) = (gguf_dir(), common::reference_dir()) else {
        return;
    };
    let dir = common::temp_dir(&format!("gguf-q8-{name}"));
    let (path, report) = convert_gguf(&g.join(format!("{name}.Q8_0.gguf")), "keep", &dir);
    assert_eq!(report.notices.len(), 1, "{:?}", report.notices);
    assert!(report.mix.fallbacks.is_empty());
    let f32 = load(&common::convert_reference(&reference, name, "f32", &dir));
    let q8 = load(&common::convert_reference(&reference, name, "q8_0", &dir));
    let got = load(&path);
    same_model_keys(&got, &f32);
    tokenizes_like_the_reference(&path, &reference, name);
    tensors_close(&got, &f32, type_bound);
    let (mut same, mut all) = (0usize, 0usize);
    for t in &q8.file.tensors {
        let u = got.file.tensor(&t.name).unwrap();
        assert_eq!(u.quant, t.quant, "{}", t.name);
        all += 1;
        same += usize::from(u.checksum == t.checksum);
    }
    println!("{name}: {same} of {all} tensors byte-identical to our q8_0 conversion");
    let base = Model::open(&common::convert_reference(&reference, name, "f32", &dir)).unwrap();
    let (kl_mean, kl_max, top1) = logits_vs(&reference, name, &base, &Model::open(&path).unwrap());
    assert!(kl_mean <= 1e-2 && kl_max <= 5e-2 && top1 >= 0.85);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn llada_q8_0_gguf_is_within_the_q8_0_bound() {
    check_q8_0("llada-tiny");
}

#[test]
fn dream_q8_0_gguf_is_within_the_q8_0_bound() {
    check_q8_0("dream-tiny");
}

#[test]
fn llada_q4_k_m_gguf_keeps_q4_k_and_q6_k_within_the_4_bit_bound() {
    let (Some(g), Some(reference)) = (gguf_dir(), common::reference_dir()) else {
        return;
    };
    let dir = common::temp_dir("gguf-q4km");
    let (path, _) = convert_gguf(&g.join("llada-tiny.Q4_K_M.gguf"), "keep", &dir);
    let f32_path = common::convert_reference(&reference, "llada-tiny", "f32", &dir);
    let (got, f32) = (load(&path), load(&f32_path));
    let seen = tensors_close(&got, &f32, type_bound);
    // The README's counts: Q4_K x25, Q6_K x5, F32 x9, all imported natively.
    assert!(seen.iter().any(|s| s.starts_with("q4_k x25")), "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("q6_k x5")), "{seen:?}");
    assert!(seen.iter().any(|s| s.starts_with("f32 x9")), "{seen:?}");
    let base = Model::open(&f32_path).unwrap();
    let (kl_mean, kl_max, top1) = logits_vs(
        &reference,
        "llada-tiny",
        &base,
        &Model::open(&path).unwrap(),
    );
    // tests/quant_fidelity.rs's q4_k bound (this mix has q6_k on the sensitive tensors).
    assert!(kl_mean <= 6e-1 && kl_max <= 2.6 && top1 >= 0.7);
    std::fs::remove_dir_all(&dir).ok();
}

fn dlm(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
        .args(args)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The demo's decoding defaults (its generation_config.json); a GGUF file carries none, so the
/// import writes the family's defaults and the comparison passes these to both models.
const DEMO_DECODE: [&str; 6] = [
    "--gen-length",
    "32",
    "--steps",
    "32",
    "--block-length",
    "32",
];

/// Sort accuracy of `model` on the first 12 shipped sort tasks (`dlm eval --json`).
fn sort_accuracy(model: &Path) -> f64 {
    let mut args = vec![
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--tasks",
        "models/demo/tasks/sort.jsonl",
        "--limit",
        "12",
        "--json",
    ];
    args.extend(DEMO_DECODE);
    let (ok, out, err) = dlm(&args);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("eval --json");
    v["tasks"][0]["accuracy"].as_f64().expect("accuracy")
}

#[test]
fn demo_q8_0_gguf_answers_like_our_q8_0_conversion() {
    let Some(g) = gguf_dir() else {
        return;
    };
    let dir = common::temp_dir("gguf-demo");
    let out = dir.join("demo-gguf.dlm");
    let gguf = g.join("demo.Q8_0.gguf");
    let (ok, _, err) = dlm(&[
        "convert",
        gguf.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("storage used: f32: 13 tensors"), "{err}");
    assert!(err.contains("q8_0: 44 tensors"), "{err}");
    let (ok, json, err) = dlm(&["inspect", "--json", out.to_str().unwrap()]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["quant_mix"][1]["type"], "q8_0");
    assert_eq!(v["quant_mix"][1]["tensors"], 44);
    assert_eq!(v["metadata"]["general.source_format"], "gguf v3");
    let mut args = vec!["run", "-m", out.to_str().unwrap(), "Sort: 42 7 93 15"];
    args.extend(DEMO_DECODE);
    let (ok, answer, err) = dlm(&args);
    assert!(ok, "{err}");
    assert_eq!(answer.trim(), "7 15 42 93");
    let ours = dir.join("demo-q8.dlm");
    let (ok, _, err) = dlm(&[
        "convert",
        "models/demo",
        "-o",
        ours.to_str().unwrap(),
        "--quant",
        "Q8_0",
    ]);
    assert!(ok, "{err}");
    assert!(err.contains("policy Q8_0 → q8_0"), "{err}");
    let (a, b) = (sort_accuracy(&out), sort_accuracy(&ours));
    println!("sort accuracy: gguf Q8_0 {a}, our q8_0 {b}");
    assert!(
        a >= 0.75 && (a - b).abs() <= 1.0 / 12.0 + 1e-9,
        "gguf {a} vs ours {b}"
    );
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn demo_q4_k_m_gguf_transcodes_q5_0_exactly_and_answers() {
    let Some(g) = gguf_dir() else {
        return;
    };
    let dir = common::temp_dir("gguf-demo-q4km");
    let (path, report) = convert_gguf(&g.join("demo.Q4_K_M.gguf"), "keep", &dir);
    // Q5_0 x39 → q8_0 exactly, Q8_0 x5 kept: 44 q8_0, 13 f32.
    assert_eq!(
        report.mix.to_meta()[0],
        format!("f32 13 {}", report.mix.entries[0].2)
    );
    assert!(
        report.mix.to_meta()[1].starts_with("q8_0 44 "),
        "{:?}",
        report.mix
    );
    assert!(
        report
            .notices
            .iter()
            .any(|n| n.starts_with("39 Q5_0 tensors transcoded to q8_0")),
        "{:?}",
        report.notices
    );
    let got = load(&path);
    assert!(matches!(
        got.file.meta_get(dlm_formats::keys::general::QUANT_MIX),
        Some(MetaValue::ArrStr(m)) if m[1].starts_with("q8_0 44 ")
    ));
    let mut args = vec!["run", "-m", path.to_str().unwrap(), "Sort: 42 7 93 15"];
    args.extend(DEMO_DECODE);
    let (ok, answer, err) = dlm(&args);
    assert!(ok, "{err}");
    assert_eq!(answer.trim(), "7 15 42 93");
    // `run -m x.gguf` converts the file into the cache on first use, then reuses it.
    let cache = dir.join("cache");
    for first in [true, false] {
        let out = Command::new(env!("CARGO_BIN_EXE_dlm"))
            .args(["run", "-m"])
            .arg(g.join("demo.Q4_K_M.gguf"))
            .arg("Sort: 42 7 93 15")
            .args(DEMO_DECODE)
            .env("DLM_CACHE", &cache)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{err}");
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "7 15 42 93");
        assert_eq!(err.contains("(first use)"), first, "{err}");
    }
    std::fs::remove_dir_all(&dir).ok();
}

/// A copy of fixture `name` with `from` replaced by `to` (same length) once.
fn patched(g: &Path, name: &str, from: &[u8], to: &[u8], dir: &Path) -> PathBuf {
    let mut b = std::fs::read(g.join(name)).unwrap();
    let at = b
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern");
    b[at..at + to.len()].copy_from_slice(to);
    let out = dir.join(format!("patched-{name}"));
    std::fs::write(&out, b).unwrap();
    out
}

fn convert_err(file: &Path, dir: &Path) -> String {
    let mut opts = dlm_convert::ConvertOptions::new(file, dir.join("x.dlm"));
    opts.policy = dlm_convert::QuantPolicy::Keep;
    let e = dlm_convert::convert(&opts, &mut |_| {})
        .unwrap_err()
        .to_string();
    assert!(!dir.join("x.dlm").exists());
    e
}

#[test]
fn unsupported_architecture_pre_tokenizer_and_type_are_named() {
    let Some(g) = gguf_dir() else {
        return;
    };
    let dir = common::temp_dir("gguf-bad");
    let f = patched(
        &g,
        "dream-tiny.Q8_0.gguf",
        b"\x05\0\0\0\0\0\0\0dream",
        b"\x05\0\0\0\0\0\0\0gemma",
        &dir,
    );
    let e = convert_err(&f, &dir);
    assert!(e.contains("architecture \"gemma\""), "{e}");
    let f = patched(&g, "dream-tiny.Q8_0.gguf", b"qwen2", b"qwen9", &dir);
    let e = convert_err(&f, &dir);
    assert!(e.contains("tokenizer.ggml.pre \"qwen9\""), "{e}");
    // output_norm.weight: name, n_dims 1, dim 256, then type 0 (F32) -> 26 (I32, same size).
    let mut from = b"output_norm.weight\x01\0\0\0".to_vec();
    from.extend_from_slice(&256u64.to_le_bytes());
    from.extend_from_slice(&0u32.to_le_bytes());
    let mut to = from.clone();
    let n = to.len();
    to[n - 4..].copy_from_slice(&26u32.to_le_bytes());
    let f = patched(&g, "dream-tiny.Q8_0.gguf", &from, &to, &dir);
    let e = convert_err(&f, &dir);
    assert!(e.contains("ggml type I32"), "{e}");
    // A truncated file is a clear container error.
    let b = std::fs::read(g.join("dream-tiny.Q8_0.gguf")).unwrap();
    let f = dir.join("truncated.gguf");
    std::fs::write(&f, &b[..b.len() / 2]).unwrap();
    let e = convert_err(&f, &dir);
    assert!(e.contains("bad GGUF file"), "{e}");
    std::fs::remove_dir_all(&dir).ok();
}
