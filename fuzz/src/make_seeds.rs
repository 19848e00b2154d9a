//! Writes the starting corpus of every fuzz target into `corpus/<target>/`: small inputs built
//! here (a whole tiny `.dlm` model, safetensors files, configs, templates) and, when
//! `../shared/reference` is beside the checkout, shrunken copies of the reference
//! checkpoints' JSON files. The corpus folder is not committed; `run.sh` calls this first.

use dlm_formats::{MetaValue, QuantType, TensorDecl, keys, write_to_vec};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};

fn put(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::create_dir_all(dir).unwrap();
    std::fs::write(dir.join(name), bytes).unwrap();
}

/// A complete, loadable `.dlm`: one layer, dim 8, 258 tokens (the 256 byte tokens, an
/// end token and a mask), seq_len 16, chat pieces and defaults.
fn tiny_dlm(family: &str) -> Vec<u8> {
    let (dim, hidden, vocab, seq) = (8u64, 16u64, 258u64, 16u64);
    let mut tokens: Vec<String> = dlm_runtime::tokenizer::byte_to_char_table()
        .iter()
        .map(|c| c.to_string())
        .collect();
    tokens.push("<|im_end|>".into());
    tokens.push("<|mask|>".into());
    let s = |v: &str| MetaValue::Str(v.into());
    let dream = family == "dream";
    let mut meta: Vec<(String, MetaValue)> = vec![
        (keys::model::FAMILY.into(), s(family)),
        (keys::model::DIM.into(), MetaValue::U32(dim as u32)),
        (keys::model::HIDDEN_DIM.into(), MetaValue::U32(hidden as u32)),
        (keys::model::N_LAYERS.into(), MetaValue::U32(1)),
        (keys::model::N_HEADS.into(), MetaValue::U32(2)),
        (keys::model::N_KV_HEADS.into(), MetaValue::U32(1)),
        (keys::model::VOCAB_SIZE.into(), MetaValue::U32(vocab as u32)),
        (keys::model::MAX_SEQ_LEN.into(), MetaValue::U32(seq as u32)),
        (keys::model::ROPE_THETA.into(), MetaValue::F32(10000.0)),
        (keys::model::NORM_EPS.into(), MetaValue::F32(1e-5)),
        (keys::model::QKV_BIAS.into(), MetaValue::Bool(dream)),
        (keys::model::TIED_HEAD.into(), MetaValue::Bool(false)),
        (keys::model::SHIFT_LOGITS.into(), MetaValue::Bool(dream)),
        (keys::tokenizer::MODEL.into(), s("bpe_bytelevel")),
        (keys::tokenizer::TOKENS.into(), MetaValue::ArrStr(tokens)),
        (keys::tokenizer::MERGES.into(), MetaValue::ArrStr(vec![])),
        (keys::tokenizer::ADDED_IDS.into(), MetaValue::ArrU32(vec![256, 257])),
        (keys::tokenizer::ADDED_FLAGS.into(), MetaValue::ArrU32(vec![1, 4])),
        (keys::tokenizer::SPECIAL_IDS.into(), MetaValue::ArrU32(vec![256, 257])),
        (keys::tokenizer::PRE.into(), s(if dream { "qwen2" } else { "llama3" })),
        (keys::tokenizer::NORMALIZER.into(), s(if dream { "nfc" } else { "none" })),
        (keys::tokenizer::EOS_ID.into(), MetaValue::U32(256)),
        (keys::tokenizer::EOT_ID.into(), MetaValue::U32(256)),
        (keys::chat::USER_PREFIX.into(), s("<u>")),
        (keys::chat::USER_SUFFIX.into(), s("<|im_end|>")),
        (keys::chat::GENERATION_PROMPT.into(), s("<a>")),
        (keys::diffusion::MASK_ID.into(), MetaValue::U32(257)),
        (
            keys::diffusion::ALGORITHM.into(),
            s(if dream { "maskgit_plus" } else { "low_confidence" }),
        ),
        (keys::diffusion::STEPS.into(), MetaValue::U32(4)),
        (keys::diffusion::GEN_LENGTH.into(), MetaValue::U32(4)),
        (keys::diffusion::BLOCK_LENGTH.into(), MetaValue::U32(4)),
        (keys::diffusion::TOP_K.into(), MetaValue::U32(if dream { 50 } else { 0 })),
    ];
    meta.sort_by(|a, b| a.0.cmp(&b.0));
    let (q, kv) = (dim, dim / 2);
    let mut shapes: Vec<(String, Vec<u64>)> = vec![
        ("tok_embd".into(), vec![vocab, dim]),
        ("head".into(), vec![vocab, dim]),
        ("out_norm".into(), vec![dim]),
    ];
    for (n, sh) in [
        ("attn_norm", vec![dim]),
        ("wq", vec![q, dim]),
        ("wk", vec![kv, dim]),
        ("wv", vec![kv, dim]),
        ("wo", vec![dim, q]),
        ("ffn_norm", vec![dim]),
        ("w_gate", vec![hidden, dim]),
        ("w_up", vec![hidden, dim]),
        ("w_down", vec![dim, hidden]),
    ] {
        shapes.push((format!("blk.0.{n}"), sh));
    }
    if dream {
        shapes.push(("blk.0.bq".into(), vec![q]));
        shapes.push(("blk.0.bk".into(), vec![kv]));
        shapes.push(("blk.0.bv".into(), vec![kv]));
    }
    let mut seed = 1u32;
    let tensors: Vec<(TensorDecl, Vec<u8>)> = shapes
        .into_iter()
        .map(|(name, shape)| {
            let n: u64 = shape.iter().product();
            let norm = name.contains("norm");
            let data: Vec<u8> = (0..n)
                .flat_map(|_| {
                    seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                    let v = if norm { 1.0 } else { (seed >> 8) as f32 / (1u32 << 24) as f32 - 0.5 };
                    v.to_le_bytes()
                })
                .collect();
            (TensorDecl { name, quant: QuantType::F32, shape }, data)
        })
        .collect();
    write_to_vec(&meta, &tensors).expect("tiny .dlm")
}

/// One GGUF metadata value.
enum G<'a> {
    U32(u32),
    F32(f32),
    Bool(bool),
    Str(&'a str),
    Strs(Vec<String>),
    I32s(Vec<i32>),
}

/// A GGUF v3 file (little-endian, data aligned to 32) of `kv` and `tensors` (name, ggml type
/// id, ggml dims with the row length first, data).
fn gguf(kv: &[(&str, G<'_>)], tensors: &[(String, u32, Vec<u64>, Vec<u8>)]) -> Vec<u8> {
    fn string(b: &mut Vec<u8>, s: &str) {
        b.extend((s.len() as u64).to_le_bytes());
        b.extend(s.as_bytes());
    }
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend((tensors.len() as u64).to_le_bytes());
    b.extend((kv.len() as u64).to_le_bytes());
    for (k, v) in kv {
        string(&mut b, k);
        match v {
            G::U32(x) => {
                b.extend(4u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            G::F32(x) => {
                b.extend(6u32.to_le_bytes());
                b.extend(x.to_le_bytes());
            }
            G::Bool(x) => {
                b.extend(7u32.to_le_bytes());
                b.push(u8::from(*x));
            }
            G::Str(x) => {
                b.extend(8u32.to_le_bytes());
                string(&mut b, x);
            }
            G::Strs(xs) => {
                b.extend(9u32.to_le_bytes());
                b.extend(8u32.to_le_bytes());
                b.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    string(&mut b, x);
                }
            }
            G::I32s(xs) => {
                b.extend(9u32.to_le_bytes());
                b.extend(5u32.to_le_bytes());
                b.extend((xs.len() as u64).to_le_bytes());
                for x in xs {
                    b.extend(x.to_le_bytes());
                }
            }
        }
    }
    let mut offset = 0u64;
    for (name, ty, ne, data) in tensors {
        string(&mut b, name);
        b.extend((ne.len() as u32).to_le_bytes());
        for d in ne {
            b.extend(d.to_le_bytes());
        }
        b.extend(ty.to_le_bytes());
        b.extend(offset.to_le_bytes());
        offset = (offset + data.len() as u64).next_multiple_of(32);
    }
    for (_, _, _, data) in tensors {
        b.resize(b.len().next_multiple_of(32), 0);
        b.extend(data);
    }
    b
}

/// A tiny GGUF file that imports: one block, dim 32, 2 heads, a padded vocabulary (259
/// tokens, 260 embedding rows), byte-level BPE with one merge, a chat template, and tensors in
/// several ggml types (F32, F16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1) so every import path is seeded.
fn tiny_gguf(family: &str) -> Vec<u8> {
    let dream = family == "dream";
    let (dim, hidden, rows, kv) = (32u64, 64u64, 260u64, 16u64);
    let mut tokens: Vec<String> = dlm_runtime::tokenizer::byte_to_char_table()
        .iter()
        .map(|c| c.to_string())
        .collect();
    tokens.push("ab".into());
    tokens.push("<|endoftext|>".into());
    tokens.push("<|mdm_mask|>".into());
    let mut types = vec![1i32; 256];
    types.extend([1, 3, 3]);
    let k = |s: &str| format!("{family}.{s}");
    let keys: Vec<String> = [
        "embedding_length",
        "feed_forward_length",
        "block_count",
        "attention.head_count",
        "attention.head_count_kv",
        "context_length",
        "rope.freq_base",
        "attention.layer_norm_rms_epsilon",
    ]
    .iter()
    .map(|s| k(s))
    .collect();
    let kvs: Vec<(&str, G<'_>)> = vec![
        ("general.architecture", G::Str(family)),
        ("general.name", G::Str("tiny")),
        (&keys[0], G::U32(dim as u32)),
        (&keys[1], G::U32(hidden as u32)),
        (&keys[2], G::U32(1)),
        (&keys[3], G::U32(2)),
        (&keys[4], G::U32(1)),
        (&keys[5], G::U32(64)),
        (&keys[6], G::F32(10000.0)),
        (&keys[7], G::F32(1e-5)),
        ("diffusion.shift_logits", G::Bool(dream)),
        ("tokenizer.ggml.model", G::Str("gpt2")),
        ("tokenizer.ggml.pre", G::Str(if dream { "qwen2" } else { "llama-bpe" })),
        ("tokenizer.ggml.tokens", G::Strs(tokens)),
        ("tokenizer.ggml.token_type", G::I32s(types)),
        ("tokenizer.ggml.merges", G::Strs(vec!["a b".into()])),
        ("tokenizer.ggml.bos_token_id", G::U32(257)),
        ("tokenizer.ggml.eos_token_id", G::U32(257)),
        ("tokenizer.ggml.mask_token_id", G::U32(258)),
        (
            "tokenizer.chat_template",
            G::Str("{% for message in messages %}{{ '<u>' + message['content'] + eos_token }}{% endfor %}{% if add_generation_prompt %}{{ '<a>' }}{% endif %}"),
        ),
    ];
    let mut seed = 7u32;
    let mut random = |n: u64| -> Vec<u8> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                (seed >> 24) as u8
            })
            .collect()
    };
    // Block bytes per ggml type id; quantized blocks start with an f16 scale of 0.01.
    let block = |ty: u32| -> (u64, u64) {
        match ty {
            0 => (1, 4),
            1 => (1, 2),
            2 => (32, 18),
            3 => (32, 20),
            6 => (32, 22),
            7 => (32, 24),
            8 => (32, 34),
            _ => unreachable!(),
        }
    };
    let mut tensor = |name: &str, ty: u32, ne: Vec<u64>, norm: bool| {
        let n: u64 = ne.iter().product();
        let data = if norm {
            (0..n).flat_map(|_| 1f32.to_le_bytes()).collect()
        } else if ty == 0 {
            (0..n)
                .flat_map(|i| (((i * 37) % 101) as f32 / 101.0 - 0.5).to_le_bytes())
                .collect()
        } else if ty == 1 {
            (0..n).flat_map(|_| 0x211fu16.to_le_bytes()).collect()
        } else {
            let (len, bytes) = block(ty);
            let mut d = random(n / len * bytes);
            for b in d.chunks_mut(bytes as usize) {
                b[..2].copy_from_slice(&0x211fu16.to_le_bytes());
                if ty == 3 || ty == 7 {
                    b[2..4].copy_from_slice(&0x211fu16.to_le_bytes());
                }
            }
            d
        };
        (name.to_string(), ty, ne, data)
    };
    let mut ts = vec![
        tensor("token_embd.weight", 8, vec![dim, rows], false),
        tensor("output_norm.weight", 0, vec![dim], true),
        tensor("output.weight", 1, vec![dim, rows], false),
        tensor("blk.0.attn_norm.weight", 0, vec![dim], true),
        tensor("blk.0.attn_q.weight", 2, vec![dim, dim], false),
        tensor("blk.0.attn_k.weight", 3, vec![dim, kv], false),
        tensor("blk.0.attn_v.weight", 6, vec![dim, kv], false),
        tensor("blk.0.attn_output.weight", 7, vec![dim, dim], false),
        tensor("blk.0.ffn_norm.weight", 0, vec![dim], true),
        tensor("blk.0.ffn_gate.weight", 8, vec![dim, hidden], false),
        tensor("blk.0.ffn_up.weight", 0, vec![dim, hidden], false),
        tensor("blk.0.ffn_down.weight", 8, vec![hidden, dim], false),
    ];
    if dream {
        ts.push(tensor("blk.0.attn_q.bias", 0, vec![dim], false));
        ts.push(tensor("blk.0.attn_k.bias", 0, vec![kv], false));
        ts.push(tensor("blk.0.attn_v.bias", 0, vec![kv], false));
    }
    gguf(&kvs, &ts)
}

fn safetensors(header: &Value, data_len: usize) -> Vec<u8> {
    let h = header.to_string().into_bytes();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend(std::iter::repeat_n(0u8, data_len));
    out
}

/// A reference tokenizer.json cut to ids below 512 (plus the added tokens) and the merges
/// among them, so the seed stays small.
fn shrunk_tokenizer(path: &Path) -> Option<Vec<u8>> {
    let mut t: Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    let vocab = t["model"]["vocab"].as_object_mut()?;
    vocab.retain(|_, id| id.as_u64().is_some_and(|i| i < 512));
    let kept: std::collections::HashSet<String> = vocab.keys().cloned().collect();
    let merges = t["model"]["merges"].as_array_mut()?;
    merges.retain(|m| {
        let pair: Option<(String, String)> = match m {
            Value::String(s) => s.split_once(' ').map(|(a, b)| (a.into(), b.into())),
            Value::Array(p) => p[0]
                .as_str()
                .zip(p.get(1).and_then(Value::as_str))
                .map(|(a, b)| (a.to_string(), b.to_string())),
            _ => None,
        };
        pair.is_some_and(|(a, b)| kept.contains(&a) && kept.contains(&b) && kept.contains(&format!("{a}{b}")))
    });
    merges.truncate(200);
    serde_json::to_vec(&t).ok()
}

fn main() {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let corpus = |t: &str| here.join("corpus").join(t);
    let reference: PathBuf = here.join("../../shared/reference");

    put(&corpus("dlm_reader"), "tiny-llada.dlm", &tiny_dlm("llada"));
    put(&corpus("dlm_reader"), "tiny-dream.dlm", &tiny_dlm("dream"));

    for family in ["llada", "dream"] {
        let dir = corpus("gguf_reader");
        put(&dir, &format!("tiny-{family}.gguf"), &tiny_gguf(family));
        // The seeds must import, or mutations start at the first check that refuses them.
        let out = std::env::temp_dir().join(format!("dlm-seed-{}-{family}.dlm", std::process::id()));
        let opts = dlm_convert::ConvertOptions::new(dir.join(format!("tiny-{family}.gguf")), &out);
        if let Err(e) = dlm_convert::gguf::convert_gguf(&opts, &mut |_| {}) {
            panic!("the {family} GGUF seed does not import: {e}");
        }
        let _ = std::fs::remove_file(&out);
    }

    let st = corpus("safetensors_header");
    put(&st, "one.st", &safetensors(
        &json!({"__metadata__": {"format": "pt"}, "w": {"dtype": "BF16", "shape": [2, 3], "data_offsets": [0, 12]}}),
        12,
    ));
    put(&st, "two.st", &safetensors(
        &json!({"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 16]}, "b": {"dtype": "F16", "shape": [2, 2], "data_offsets": [16, 24]}}),
        24,
    ));
    put(&st, "empty.st", &safetensors(&json!({}), 0));

    let cfg = corpus("config_json");
    put(&cfg, "llada.json", json!({"architectures": ["LLaDAModelLM"], "d_model": 64, "n_heads": 4,
        "n_kv_heads": 2, "n_layers": 2, "mlp_hidden_size": 96, "embedding_size": 100,
        "vocab_size": 90, "max_sequence_length": 512, "rope_theta": 1e4, "rms_norm_eps": 1e-5,
        "weight_tying": false, "steps": 64, "gen_length": 64, "block_length": 16}).to_string().as_bytes());
    put(&cfg, "dream.json", json!({"architectures": ["DreamModel"], "hidden_size": 64,
        "num_attention_heads": 4, "num_key_value_heads": 2, "num_hidden_layers": 2,
        "intermediate_size": 96, "vocab_size": 100, "max_position_embeddings": 512,
        "rope_theta": 1e4, "rms_norm_eps": 1e-6, "tie_word_embeddings": false, "alg": "entropy",
        "steps": 512, "top_k": 50, "eps": 1e-3}).to_string().as_bytes());

    let tpl = corpus("chat_template");
    put(&tpl, "llama3.jinja", b"{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}");
    put(&tpl, "chatml.jinja", b"{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n' }}{% endif %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}");

    for name in ["llada-tiny", "dream-tiny"] {
        let dir = reference.join(name);
        if !dir.is_dir() {
            println!("skipped: {} not found (reference seeds)", dir.display());
            continue;
        }
        for f in ["config.json", "generation_config.json"] {
            if let Ok(b) = std::fs::read(dir.join(f)) {
                put(&cfg, &format!("{name}-{f}"), &b);
            }
        }
        if let Some(b) = shrunk_tokenizer(&dir.join("tokenizer.json")) {
            put(&corpus("tokenizer_json"), &format!("{name}.json"), &b);
        }
        if let Ok(b) = std::fs::read(dir.join("tokenizer_config.json"))
            && let Ok(v) = serde_json::from_slice::<Value>(&b)
            && let Some(t) = v["chat_template"].as_str()
        {
            put(&tpl, &format!("{name}.jinja"), t.as_bytes());
        }
    }
    println!("seeds written under {}", here.join("corpus").display());
}
