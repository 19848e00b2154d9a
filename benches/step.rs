//! Forward passes of a random LLaDA at the 168M shape (d 1024, 8 layers, 16 heads, mlp 2816,
//! vocab 32000) per weight type: a full step (every row of a 288-token sequence: a 32-token
//! prompt and a 256-token canvas, logits for one 32-token block) and a cached step (the 32
//! rows of one block against the stored keys and values of all 288, as the dual cache runs).
//! Groups `step_<type>/{full,cached}`; throughput in tokens run.
//!
//! The checkpoint is written at bench time (random bf16 weights, the tokenizer of
//! `../shared/reference/llada-tiny`, converted by `dlm-convert`), never committed; without
//! `../shared` the bench prints a skip line. `DLM_BENCH_TYPES=q4_0,f16` narrows the types;
//! `DLM_BENCH_KEEP=DIR` keeps the `.dlm` files there (for `dlm bench`).

#![allow(missing_docs)] // criterion_group! generates an undocumented fn

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use dlm_runtime::model::{Attend, Forward, Model, Positions, Request};
use std::path::{Path, PathBuf};
use std::time::Duration;

const D_MODEL: usize = 1024;
const N_LAYERS: usize = 8;
const N_HEADS: usize = 16;
const MLP: usize = 2816;
const VOCAB: usize = 32000;
const PROMPT: usize = 32;
const CANVAS: usize = 256;
const BLOCK: usize = 32;
const TYPES: [&str; 3] = ["q4_0", "q8_0", "f16"];

/// A seeded xorshift64* for the weights.
struct Rng(u64);

impl Rng {
    /// Uniform in [-a, a] with a = std·√3 (the variance of N(0, std²)).
    fn weight(&mut self, std: f32) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * u - 1.0) * std * 1.732_050_8
    }
}

/// (name, shape) of every tensor of a LLaDA checkpoint, in file order.
fn tensors() -> Vec<(String, Vec<usize>)> {
    let (d, f, v) = (D_MODEL, MLP, VOCAB);
    let mut out = vec![("model.transformer.wte.weight".to_string(), vec![v, d])];
    for i in 0..N_LAYERS {
        let p = format!("model.transformer.blocks.{i}.");
        for (n, s) in [
            ("attn_norm.weight", vec![d]),
            ("q_proj.weight", vec![d, d]),
            ("k_proj.weight", vec![d, d]),
            ("v_proj.weight", vec![d, d]),
            ("attn_out.weight", vec![d, d]),
            ("ff_norm.weight", vec![d]),
            ("ff_proj.weight", vec![f, d]),
            ("up_proj.weight", vec![f, d]),
            ("ff_out.weight", vec![d, f]),
        ] {
            out.push((format!("{p}{n}"), s));
        }
    }
    out.push(("model.transformer.ln_f.weight".into(), vec![d]));
    out.push(("model.transformer.ff_out.weight".into(), vec![v, d]));
    out
}

/// Writes the random Hugging Face folder `dir` (config and tokenizer from `reference`).
fn write_checkpoint(reference: &Path, dir: &Path) {
    std::fs::create_dir_all(dir).expect("checkpoint folder");
    let cfg = std::fs::read_to_string(reference.join("config.json")).expect("reference config");
    let mut cfg: serde_json::Value = serde_json::from_str(&cfg).expect("reference config json");
    for (k, v) in [
        ("d_model", D_MODEL),
        ("n_layers", N_LAYERS),
        ("n_heads", N_HEADS),
        ("n_kv_heads", N_HEADS),
        ("mlp_hidden_size", MLP),
        ("vocab_size", VOCAB),
        ("embedding_size", VOCAB),
    ] {
        cfg[k] = v.into();
    }
    std::fs::write(dir.join("config.json"), cfg.to_string()).expect("config");
    for f in [
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        if reference.join(f).exists() {
            std::fs::copy(reference.join(f), dir.join(f)).expect("tokenizer files");
        }
    }
    let list = tensors();
    let mut header = serde_json::Map::new();
    header.insert("__metadata__".into(), serde_json::json!({"format": "pt"}));
    let mut offset = 0usize;
    for (name, shape) in &list {
        let bytes = 2 * shape.iter().product::<usize>();
        header.insert(
            name.clone(),
            serde_json::json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let mut text = serde_json::Value::Object(header).to_string().into_bytes();
    text.resize(text.len().next_multiple_of(8), b' ');
    let mut data = Vec::with_capacity(8 + text.len() + offset);
    data.extend_from_slice(&(text.len() as u64).to_le_bytes());
    data.extend_from_slice(&text);
    let mut rng = Rng(0x5eed_1680);
    for (name, shape) in &list {
        let n: usize = shape.iter().product();
        let norm = name.ends_with("norm.weight");
        for _ in 0..n {
            let v = if norm { 1.0 } else { rng.weight(0.02) };
            data.extend_from_slice(&half::bf16::from_f32(v).to_le_bytes());
        }
    }
    std::fs::write(dir.join("model.safetensors"), data).expect("weights");
}

/// The converted `.dlm` of each type asked for, in `out`.
fn models(reference: &Path, out: &Path, types: &[String]) -> Vec<(String, PathBuf)> {
    let hf = out.join("hf");
    write_checkpoint(reference, &hf);
    let list = types
        .iter()
        .map(|t| {
            let path = out.join(format!("r168-{t}.dlm"));
            let mut opts = dlm_convert::ConvertOptions::new(&hf, &path);
            opts.policy = dlm_convert::QuantPolicy::from_name(t).expect("quant type");
            dlm_convert::convert(&opts, &mut |_| {}).expect("convert the random checkpoint");
            (t.clone(), path)
        })
        .collect();
    std::fs::remove_dir_all(&hf).ok();
    list
}

fn bench(c: &mut Criterion) {
    let reference = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/llada-tiny");
    if !reference.is_dir() {
        println!("skipped: ../shared/reference/llada-tiny not found");
        return;
    }
    let types: Vec<String> = match std::env::var("DLM_BENCH_TYPES") {
        Ok(s) => s.split(',').map(|t| t.trim().to_string()).collect(),
        Err(_) => TYPES.iter().map(|t| t.to_string()).collect(),
    };
    let keep = std::env::var_os("DLM_BENCH_KEEP").map(PathBuf::from);
    let out = keep.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("dlm-bench-step-{}", std::process::id()))
    });
    let len = PROMPT + CANVAS;
    let tokens: Vec<u32> = (0..len).map(|i| (i * 37 % 1900) as u32 + 3).collect();
    let block = PROMPT..PROMPT + BLOCK;
    for (t, path) in models(&reference, &out, &types) {
        let model = Model::open(&path).expect("open the random model");
        let mut g = c.benchmark_group(format!("step_{t}"));
        g.sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        let rows: Vec<usize> = block.clone().collect();
        g.throughput(Throughput::Elements(len as u64));
        g.bench_function("full", |b| {
            b.iter(|| {
                model
                    .run(Request::logits(&tokens, 0, &rows), None)
                    .expect("full step")
            })
        });
        // the dual cache: one full pass stores every key and value, then each step runs the
        // block's rows against them
        let mut cache = model.new_cache(len, false).expect("cache");
        let mut store = Request::logits(&tokens, 0, &rows);
        store.store = true;
        model.run(store, Some(&mut cache)).expect("store pass");
        let block_tokens = &tokens[block.clone()];
        let block_rows: Vec<usize> = (0..BLOCK).collect();
        g.throughput(Throughput::Elements(BLOCK as u64));
        g.bench_function("cached", |b| {
            b.iter(|| {
                let mut req = Request::logits(block_tokens, block.start, &block_rows);
                req.positions = Positions::Run(block.start);
                req.attend = Attend::Cache;
                model.run(req, Some(&mut cache)).expect("cached step")
            })
        });
        g.finish();
        drop(model);
        if keep.is_none() {
            std::fs::remove_file(&path).ok();
        }
    }
    if keep.is_none() {
        std::fs::remove_dir_all(&out).ok();
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default();
    targets = bench
}
criterion_main!(benches);
