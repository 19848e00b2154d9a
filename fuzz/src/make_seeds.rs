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
