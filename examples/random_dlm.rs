//! Write a random LLaDA-shaped `.dlm` of any size directly, in any storage type, for
//! benchmarks at real model sizes (an 8B q4_k file is 4.5 GB; converting a 16 GB bf16
//! checkpoint to get one takes far longer than writing it).
//!
//! ```sh
//! dlm convert models/demo -o /tmp/demo.dlm     # the template: tokenizer, chat, defaults
//! cargo run --release --example random_dlm -- /tmp/demo.dlm /tmp/llada-8b-q4_k.dlm \
//!     --dim 4096 --layers 32 --heads 32 --mlp 12288 --vocab 126464 --ctx 4096 --quant q4_k
//! ```
//!
//! Metadata (tokenizer, chat template, decoding defaults) comes from the template file, with
//! the shape keys replaced; the embedding rows past the template's tokens have no token, as
//! in a padded checkpoint. Weights are uniform with standard deviation 0.02, norms are 1. To
//! write gigabytes quickly, each matrix repeats a pool of 64 distinct random rows, quantized
//! once: every row still has its own bytes in the file, so a step reads as much memory as a
//! real model's, but the values are not meaningful (a random model's answers never are).

use dlm_formats::keys::{general, model};
use dlm_formats::{DlmFile, DlmWriter, MetaValue, QuantType, TensorDecl, tensors};
use std::path::PathBuf;
use std::process::ExitCode;

/// Distinct random rows per matrix; the rest of the rows repeat them.
const POOL_ROWS: usize = 64;

struct Args {
    template: PathBuf,
    out: PathBuf,
    dim: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    mlp: u64,
    vocab: u64,
    ctx: u64,
    quant: QuantType,
    seed: u64,
}

const USAGE: &str = "usage: random_dlm TEMPLATE.dlm OUT.dlm [--dim N] [--layers N] [--heads N] \
[--kv-heads N] [--mlp N] [--vocab N] [--ctx N] [--quant f32|f16|bf16|q8_0|q4_0|q4_k|q6_k] [--seed N]";

fn parse_args() -> Result<Args, String> {
    let mut it = std::env::args().skip(1);
    let mut pos = Vec::new();
    let mut a = Args {
        template: PathBuf::new(),
        out: PathBuf::new(),
        dim: 4096,
        layers: 32,
        heads: 32,
        kv_heads: 0,
        mlp: 12288,
        vocab: 126_464,
        ctx: 4096,
        quant: QuantType::Q4K,
        seed: 1,
    };
    while let Some(x) = it.next() {
        let mut num = |name: &str| -> Result<u64, String> {
            let v = it.next().ok_or(format!("{name} needs a value"))?;
            v.parse()
                .map_err(|_| format!("{name}: {v:?} is not a number"))
        };
        match x.as_str() {
            "--dim" => a.dim = num("--dim")?,
            "--layers" => a.layers = num("--layers")?,
            "--heads" => a.heads = num("--heads")?,
            "--kv-heads" => a.kv_heads = num("--kv-heads")?,
            "--mlp" => a.mlp = num("--mlp")?,
            "--vocab" => a.vocab = num("--vocab")?,
            "--ctx" => a.ctx = num("--ctx")?,
            "--seed" => a.seed = num("--seed")?,
            "--quant" => {
                let v = it.next().ok_or("--quant needs a value")?;
                a.quant = QuantType::from_name(&v).ok_or(format!("unknown type {v:?}"))?;
            }
            "-h" | "--help" => return Err(USAGE.into()),
            _ if x.starts_with('-') => return Err(format!("unknown flag {x}\n{USAGE}")),
            _ => pos.push(PathBuf::from(x)),
        }
    }
    let [template, out] = <[PathBuf; 2]>::try_from(pos).map_err(|_| USAGE.to_string())?;
    a.template = template;
    a.out = out;
    if a.kv_heads == 0 {
        a.kv_heads = a.heads;
    }
    Ok(a)
}

/// xorshift64*: reproducible, no dependency.
struct Rng(u64);

impl Rng {
    /// Uniform in [-1, 1).
    fn next_f32(&mut self) -> f32 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let x = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
}

/// The template's value for `key`, re-typed to hold `v` (files store shape keys as u32 or u64).
fn set_num(meta: &mut [(String, MetaValue)], key: &str, v: u64) -> Result<(), String> {
    let slot = meta
        .iter_mut()
        .find(|(k, _)| k == key)
        .ok_or(format!("template has no {key}"))?;
    slot.1 = match slot.1 {
        MetaValue::U32(_) => MetaValue::U32(u32::try_from(v).map_err(|_| format!("{key} {v}"))?),
        _ => MetaValue::U64(v),
    };
    Ok(())
}

fn run(a: &Args) -> Result<(), String> {
    let (_map, file) = DlmFile::open_mapped(&a.template).map_err(|e| e.to_string())?;
    if file.get_str(model::FAMILY).map_err(|e| e.to_string())? != "llada" {
        return Err("the template must be a LLaDA file (e.g. models/demo converted)".into());
    }
    if file.get_bool_or(model::TIED_HEAD, false).unwrap_or(false) {
        return Err("the template has a tied head; use an untied LLaDA file".into());
    }
    dlm_formats::limits::check_model(&dlm_formats::limits::ModelShape {
        dim: a.dim,
        hidden_dim: a.mlp,
        n_layers: a.layers,
        n_heads: a.heads,
        n_kv_heads: a.kv_heads,
        vocab_size: a.vocab,
        seq_len: a.ctx,
        rope_theta: 10_000.0,
        norm_eps: 1e-5,
    })?;
    let mut meta = file.meta.clone();
    for (key, v) in [
        (model::DIM, a.dim),
        (model::HIDDEN_DIM, a.mlp),
        (model::N_LAYERS, a.layers),
        (model::N_HEADS, a.heads),
        (model::N_KV_HEADS, a.kv_heads),
        (model::VOCAB_SIZE, a.vocab),
        (model::MAX_SEQ_LEN, a.ctx),
    ] {
        set_num(&mut meta, key, v)?;
    }
    meta.retain(|(k, _)| k != general::QUANT_MIX);
    for (k, v) in meta.iter_mut() {
        match k.as_str() {
            general::NAME => *v = MetaValue::Str(format!("random-llada-d{}-l{}", a.dim, a.layers)),
            general::QUANT_POLICY => *v = MetaValue::Str(a.quant.name().to_string()),
            _ => {}
        }
    }

    let head_dim = a.dim / a.heads;
    let kv_dim = a.kv_heads * head_dim;
    let mut decls = Vec::new();
    let mut add =
        |name: String, quant, shape: Vec<u64>| decls.push(TensorDecl { name, quant, shape });
    add(tensors::TOK_EMBD.into(), a.quant, vec![a.vocab, a.dim]);
    for i in 0..a.layers as usize {
        let l = |t| tensors::layer(t, i);
        add(l(tensors::ATTN_NORM), QuantType::F32, vec![a.dim]);
        add(l(tensors::WQ), a.quant, vec![a.dim, a.dim]);
        add(l(tensors::WK), a.quant, vec![kv_dim, a.dim]);
        add(l(tensors::WV), a.quant, vec![kv_dim, a.dim]);
        add(l(tensors::WO), a.quant, vec![a.dim, a.dim]);
        add(l(tensors::FFN_NORM), QuantType::F32, vec![a.dim]);
        add(l(tensors::W_GATE), a.quant, vec![a.mlp, a.dim]);
        add(l(tensors::W_UP), a.quant, vec![a.mlp, a.dim]);
        add(l(tensors::W_DOWN), a.quant, vec![a.dim, a.mlp]);
    }
    add(tensors::OUT_NORM.into(), QuantType::F32, vec![a.dim]);
    add(tensors::HEAD.into(), a.quant, vec![a.vocab, a.dim]);

    let mut w = DlmWriter::create(&a.out, &meta, &decls).map_err(|e| e.to_string())?;
    eprintln!(
        "writing {} ({:.2} GB, {} tensors)",
        a.out.display(),
        w.file_bytes() as f64 / 1e9,
        decls.len()
    );
    let mut rng = Rng(a.seed.max(1));
    // One pool of encoded rows per (type, row length), reused by every matrix of that width.
    let mut pools: Vec<((QuantType, u64), Vec<u8>)> = Vec::new();
    for (i, d) in decls.iter().enumerate() {
        let cols = *d.shape.last().expect("shapes are non-empty");
        let rows: u64 = d.shape[..d.shape.len() - 1].iter().product();
        let data = if d.shape.len() == 1 {
            let ones = vec![1f32; cols as usize];
            dlm_convert::encode_tensor(d.quant, &d.shape, &ones).map_err(|e| e.to_string())?
        } else {
            let key = (d.quant, cols);
            if !pools.iter().any(|(k, _)| *k == key) {
                let vals: Vec<f32> = (0..POOL_ROWS * cols as usize)
                    .map(|_| rng.next_f32() * 0.0346) // uniform on ±0.0346: std 0.02
                    .collect();
                let enc = dlm_convert::encode_tensor(d.quant, &[POOL_ROWS as u64, cols], &vals)
                    .map_err(|e| e.to_string())?;
                pools.push((key, enc));
            }
            let pool = &pools
                .iter()
                .find(|(k, _)| *k == key)
                .expect("added above")
                .1;
            let row_bytes = pool.len() / POOL_ROWS;
            let mut data = Vec::with_capacity(rows as usize * row_bytes);
            for r in 0..rows as usize {
                let p = (r * 7 + i) % POOL_ROWS; // matrices start at different pool rows
                data.extend_from_slice(&pool[p * row_bytes..(p + 1) * row_bytes]);
            }
            data
        };
        w.write_tensor(&d.name, &data).map_err(|e| e.to_string())?;
    }
    let bytes = w.finish().map_err(|e| e.to_string())?;
    eprintln!("wrote {} bytes", bytes);
    Ok(())
}

fn main() -> ExitCode {
    match parse_args().and_then(|a| run(&a)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("random_dlm: {e}");
            ExitCode::FAILURE
        }
    }
}
