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

/// A fresh temporary folder for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "dlm-test-{tag}-{}-{:?}",
        std::process::id(),
        std::thread::current().id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("create temp dir");
    d
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
