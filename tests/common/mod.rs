//! Helpers shared by the end-to-end tests: locating `../shared/reference`, converting the
//! reference checkpoints into temporary `.dlm` files, and reading the expected outputs.
#![allow(dead_code)]

use serde_json::Value;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// `../shared/reference` beside the checkout, or `None` (the test then prints a skip line).
pub fn reference_dir() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared not found");
        None
    }
}

/// A fresh temporary folder for one test, removed when dropped (also when the test fails:
/// a panic unwinds through the drop).
pub fn temp_dir(tag: &str) -> TempDir {
    TempDir::new(tag)
}

/// A temporary folder that removes itself; derefs to its path.
pub struct TempDir(PathBuf);

impl TempDir {
    /// A new empty folder named after `tag`, the process and the thread.
    pub fn new(tag: &str) -> Self {
        let d = std::env::temp_dir().join(format!(
            "dlm-test-{tag}-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).expect("create temp dir");
        TempDir(d)
    }

    /// Its path.
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl std::ops::Deref for TempDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TempDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<std::ffi::OsStr> for TempDir {
    fn as_ref(&self) -> &std::ffi::OsStr {
        self.0.as_os_str()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Convert reference checkpoint `name` (`llada-tiny`, `dream-tiny`) with `policy` into `dir`.
pub fn convert_reference(reference: &Path, name: &str, policy: &str, dir: &Path) -> PathBuf {
    let out = dir.join(format!("{name}-{policy}.dlm"));
    let mut opts = dlm_convert::ConvertOptions::new(reference.join(name), &out);
    opts.policy = dlm_convert::QuantPolicy::from_name(policy).expect("policy");
    dlm_convert::convert(&opts, &mut |_| {}).expect("convert reference checkpoint");
    out
}

/// `<name>.expected.json`.
pub fn expected_json(reference: &Path, name: &str) -> Value {
    let text = std::fs::read_to_string(reference.join(format!("{name}.expected.json")))
        .expect("read expected.json");
    serde_json::from_str(&text).expect("parse expected.json")
}

/// A tensor of `<name>.expected.safetensors` as f64 values with its shape (F32 and I64 only).
pub struct RefTensor {
    pub shape: Vec<usize>,
    pub values: Vec<f64>,
}

/// Every tensor of a safetensors file (the expected outputs hold F32 logits and I64 ids).
pub fn read_safetensors(path: &Path) -> HashMap<String, RefTensor> {
    let bytes = std::fs::read(path).expect("read safetensors");
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).expect("safetensors header");
    let data = &bytes[8 + n..];
    let mut out = HashMap::new();
    for (name, t) in header.as_object().unwrap() {
        if name == "__metadata__" {
            continue;
        }
        let shape: Vec<usize> = t["shape"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_u64().unwrap() as usize)
            .collect();
        let off = t["data_offsets"].as_array().unwrap();
        let raw = &data[off[0].as_u64().unwrap() as usize..off[1].as_u64().unwrap() as usize];
        let values: Vec<f64> = match t["dtype"].as_str().unwrap() {
            "F32" => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            "I64" => raw
                .chunks_exact(8)
                .map(|b| i64::from_le_bytes(b.try_into().unwrap()) as f64)
                .collect(),
            other => panic!("unexpected dtype {other} in {}", path.display()),
        };
        out.insert(name.clone(), RefTensor { shape, values });
    }
    out
}

/// A JSON array of integers as u32 ids.
pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("array of ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

/// The decoder parameters of one `generate` case of `expected.json` (the mapping of
/// `tests/generate_reference.rs`, shared so other tests decode the cases the same way).
pub fn decode_params(case: &Value) -> dlm_runtime::decode::DecodeParams {
    use dlm_runtime::decode::{Algorithm, CacheMode, DecodeParams};
    let field = |key: &str| {
        case[key]
            .as_u64()
            .unwrap_or_else(|| panic!("case field {key}")) as usize
    };
    let sampler = case["sampler"].as_str().expect("sampler");
    let base = DecodeParams {
        temperature: case["temperature"].as_f64().unwrap_or(0.0),
        stop_early: false,
        ..DecodeParams::default()
    };
    if sampler == "dream_diffusion_generate" {
        let alg = case["alg"].as_str().expect("alg");
        DecodeParams {
            algorithm: Algorithm::from_name(alg).unwrap_or_else(|| panic!("unknown alg {alg}")),
            steps: field("steps"),
            gen_length: field("max_new_tokens"),
            block_length: None,
            eps: case["eps"].as_f64().unwrap_or(1e-3),
            alg_temp: case["alg_temp"].as_f64().unwrap_or(0.0),
            ..base
        }
    } else {
        let remasking = case["remasking"].as_str().expect("remasking");
        let cache = match sampler {
            "generate" => CacheMode::None,
            "generate_with_prefix_cache" => CacheMode::Prefix,
            "generate_with_dual_cache" => CacheMode::Dual,
            other => panic!("unknown sampler {other}"),
        };
        DecodeParams {
            algorithm: Algorithm::from_name(remasking)
                .unwrap_or_else(|| panic!("unknown remasking {remasking}")),
            steps: field("steps"),
            gen_length: field("gen_length"),
            block_length: Some(field("block_length")),
            threshold: case["threshold"].as_f64(),
            cache,
            ..base
        }
    }
}

/// The decoder's special tokens from `expected.json` (`mask_id`, stop and pad ids) and the
/// model's `shift_logits`.
pub fn decode_tokens(expected: &Value, shift_logits: bool) -> dlm_runtime::decode::DecodeTokens {
    let specials = expected["special_ids"].as_object().expect("special_ids");
    let stop_ids: Vec<u32> = ["<|endoftext|>", "<|eot_id|>", "<|im_end|>"]
        .iter()
        .filter_map(|k| specials.get(*k).and_then(Value::as_u64).map(|v| v as u32))
        .collect();
    dlm_runtime::decode::DecodeTokens {
        mask_id: expected["mask_id"].as_u64().expect("mask_id") as u32,
        stop_ids,
        pad_id: specials
            .get("<|endoftext|>")
            .and_then(Value::as_u64)
            .map(|v| v as u32),
        shift_logits,
    }
}
