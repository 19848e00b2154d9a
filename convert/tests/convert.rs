//! End-to-end conversion of the reference checkpoints, and every rejection, built by copying a
//! reference folder into a temp dir and damaging it.

use dlm_convert::{ConvertError, ConvertOptions, QuantPolicy, convert};
use dlm_formats::{DlmFile, QuantType, keys};
use serde_json::{Value, json};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

fn reference(name: &str) -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/reference")
        .join(name);
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared not found");
        None
    }
}

/// A fresh, empty temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "dlm-convert-test-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// A writable copy of a reference folder (in `tmp/model`).
fn copy_of(src: &Path, tmp: &TempDir) -> PathBuf {
    let dst = tmp.0.join("model");
    std::fs::create_dir_all(&dst).unwrap();
    for e in std::fs::read_dir(src).unwrap() {
        let e = e.unwrap();
        let to = dst.join(e.file_name());
        std::fs::copy(e.path(), &to).unwrap();
        let mut perm = std::fs::metadata(&to).unwrap().permissions();
        #[allow(clippy::permissions_set_readonly_false)]
        perm.set_readonly(false);
        std::fs::set_permissions(&to, perm).unwrap();
    }
    dst
}

fn run(
    input: &Path,
    output: &Path,
    policy: &str,
) -> Result<dlm_convert::ConvertReport, ConvertError> {
    let mut opts = ConvertOptions::new(input, output);
    opts.policy = QuantPolicy::from_name(policy).unwrap();
    convert(&opts, &mut |_| {})
}

/// Split a safetensors file into (header JSON, data section).
fn split_st(path: &Path) -> (Value, Vec<u8>) {
    let b = std::fs::read(path).unwrap();
    let n = u64::from_le_bytes(b[..8].try_into().unwrap()) as usize;
    (
        serde_json::from_slice(&b[8..8 + n]).unwrap(),
        b[8 + n..].to_vec(),
    )
}

fn write_st(path: &Path, header: &Value, data: &[u8]) {
    let h = serde_json::to_vec(header).unwrap();
    let mut out = (h.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(&h);
    out.extend_from_slice(data);
    std::fs::write(path, out).unwrap();
}

/// The shard holding `tensor`, per the index.
fn shard_of(dir: &Path, tensor: &str) -> PathBuf {
    let idx: Value =
        serde_json::from_slice(&std::fs::read(dir.join("model.safetensors.index.json")).unwrap())
            .unwrap();
    dir.join(idx["weight_map"][tensor].as_str().unwrap())
}

/// f32 values of a BF16 tensor in the source checkpoint.
fn source_values(dir: &Path, tensor: &str) -> (Vec<u64>, Vec<f32>, Vec<u8>) {
    let (h, data) = split_st(&shard_of(dir, tensor));
    let t = &h[tensor];
    assert_eq!(t["dtype"], "BF16");
    let shape = t["shape"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect();
    let [a, b] = [0, 1].map(|i| t["data_offsets"][i].as_u64().unwrap() as usize);
    let raw = data[a..b].to_vec();
    let vals = raw
        .chunks_exact(2)
        .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
        .collect();
    (shape, vals, raw)
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
        .collect()
}

fn edit_json(path: &Path, f: impl FnOnce(&mut Value)) {
    let mut v: Value = serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap();
    f(&mut v);
    std::fs::write(path, serde_json::to_vec_pretty(&v).unwrap()).unwrap();
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn llada_tiny_converts_in_f32() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    let tmp = TempDir::new("llada");
    let out = tmp.0.join("llada.dlm");
    let mut events = 0;
    let mut first = None;
    let mut opts = ConvertOptions::new(&src, &out);
    opts.name = Some("tiny".into());
    let report = convert(&opts, &mut |p| {
        events += 1;
        first.get_or_insert((p.tensors_done, p.bytes_done, p.bytes_total));
        assert!(p.tensors_done <= p.tensors_total && p.bytes_done <= p.bytes_total);
    })
    .unwrap();
    let bytes = std::fs::read(&out).unwrap();
    assert_eq!(report.bytes_written, bytes.len() as u64);
    assert_eq!(report.n_tensors, 1 + 4 * 9 + 2);
    // One report before any tensor is written (the size to come), then one per tensor.
    assert_eq!(events, report.n_tensors + 1);
    let (done, written, total) = first.unwrap();
    assert_eq!((done, written), (0, 0));
    assert!(total > 0 && total < report.bytes_written);
    let f = DlmFile::parse(&bytes).unwrap();
    f.verify_checksums(&bytes).unwrap();

    assert_eq!(f.get_str(keys::general::NAME).unwrap(), "tiny");
    assert_eq!(
        f.get_str(keys::general::ARCHITECTURE).unwrap(),
        "LLaDAModelLM"
    );
    assert_eq!(f.get_str(keys::model::FAMILY).unwrap(), "llada");
    for (k, v) in [
        (keys::model::DIM, 256),
        (keys::model::HIDDEN_DIM, 768),
        (keys::model::N_LAYERS, 4),
        (keys::model::N_HEADS, 4),
        (keys::model::N_KV_HEADS, 4),
        (keys::model::VOCAB_SIZE, 2048),
        (keys::model::MAX_SEQ_LEN, 4096),
        (keys::tokenizer::BOS_ID, 2042),
        (keys::tokenizer::EOS_ID, 2043),
        (keys::tokenizer::PAD_ID, 2043),
        (keys::tokenizer::EOT_ID, 2046),
        (keys::diffusion::MASK_ID, 2047),
        (keys::diffusion::STEPS, 128),
        (keys::diffusion::GEN_LENGTH, 128),
        (keys::diffusion::BLOCK_LENGTH, 32),
    ] {
        assert_eq!(f.get_u32(k).unwrap(), v, "{k}");
    }
    assert_eq!(f.get_f32(keys::model::ROPE_THETA).unwrap(), 500000.0);
    assert_eq!(f.get_f32(keys::model::NORM_EPS).unwrap(), 1e-5);
    assert!(!f.get_bool(keys::model::SHIFT_LOGITS).unwrap());
    assert!(!f.get_bool(keys::model::QKV_BIAS).unwrap());
    assert!(!f.get_bool(keys::model::TIED_HEAD).unwrap());
    assert_eq!(
        f.get_str(keys::diffusion::ALGORITHM).unwrap(),
        "low_confidence"
    );
    assert_eq!(f.get_f32(keys::diffusion::EPS).unwrap(), 1e-3);

    let tokens = f.get_str_array(keys::tokenizer::TOKENS).unwrap();
    assert_eq!(tokens.len(), 2048);
    assert_eq!(tokens[2047], "<|mdm_mask|>");
    assert!(tokens.iter().all(|t| !t.is_empty()));
    let merges = f.get_str_array(keys::tokenizer::MERGES).unwrap();
    assert_eq!(merges.len(), 1786);
    assert_eq!(merges[0], "Ġ Ġ");
    assert_eq!(f.get_str(keys::tokenizer::PRE).unwrap(), "llama3");
    assert_eq!(f.get_str(keys::tokenizer::NORMALIZER).unwrap(), "none");
    assert_eq!(
        f.get_u32_array(keys::tokenizer::SPECIAL_IDS).unwrap(),
        &[2042, 2043, 2044, 2045, 2046, 2047]
    );

    assert_eq!(f.get_str(keys::chat::PREFIX).unwrap(), "<|startoftext|>");
    assert_eq!(
        f.get_str(keys::chat::USER_PREFIX).unwrap(),
        "<|start_header_id|>user<|end_header_id|>\n\n"
    );
    assert_eq!(
        f.get_str(keys::chat::ASSISTANT_SUFFIX).unwrap(),
        "<|eot_id|>"
    );
    assert_eq!(f.get_str(keys::chat::DEFAULT_SYSTEM).unwrap(), "");
    assert!(f.get_bool(keys::chat::TRIM_CONTENT).unwrap());

    for (name, shape) in [
        ("tok_embd", vec![2048, 256]),
        ("blk.0.attn_norm", vec![256]),
        ("blk.3.wq", vec![256, 256]),
        ("blk.3.wo", vec![256, 256]),
        ("blk.2.w_gate", vec![768, 256]),
        ("blk.2.w_down", vec![256, 768]),
        ("out_norm", vec![256]),
        ("head", vec![2048, 256]),
    ] {
        let t = f.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(t.shape, shape, "{name}");
        assert_eq!(t.quant, QuantType::F32, "{name}");
    }
    assert!(f.tensor("blk.0.bq").is_none());
    for (ours, hf) in [
        ("blk.1.w_gate", "model.transformer.blocks.1.ff_proj.weight"),
        ("blk.1.w_up", "model.transformer.blocks.1.up_proj.weight"),
        ("blk.1.w_down", "model.transformer.blocks.1.ff_out.weight"),
        ("head", "model.transformer.ff_out.weight"),
        (
            "blk.0.attn_norm",
            "model.transformer.blocks.0.attn_norm.weight",
        ),
    ] {
        let (_, want, _) = source_values(&src, hf);
        let got = f32s(f.tensor_data(&bytes, ours).unwrap());
        assert_eq!(got, want, "{ours} vs {hf}");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn dream_tiny_converts_in_bf16_and_f16() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("dream");
    let out = tmp.0.join("dream.dlm");
    run(&src, &out, "bf16").unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let f = DlmFile::parse(&bytes).unwrap();
    assert_eq!(f.get_str(keys::model::FAMILY).unwrap(), "dream");
    assert_eq!(f.get_str(keys::general::QUANT_POLICY).unwrap(), "bf16");
    assert!(f.get_bool(keys::model::SHIFT_LOGITS).unwrap());
    assert!(f.get_bool(keys::model::QKV_BIAS).unwrap());
    assert_eq!(f.get_u32(keys::model::N_KV_HEADS).unwrap(), 2);
    assert_eq!(f.get_u32(keys::model::N_LAYERS).unwrap(), 3);
    assert_eq!(f.get_u32(keys::tokenizer::BOS_ID).unwrap(), 2046);
    assert_eq!(f.get_u32(keys::tokenizer::EOT_ID).unwrap(), 2045);
    assert_eq!(f.get_u32(keys::diffusion::MASK_ID).unwrap(), 2047);
    assert_eq!(f.get_str(keys::diffusion::ALGORITHM).unwrap(), "entropy");
    assert_eq!(f.get_u32(keys::diffusion::STEPS).unwrap(), 512);
    assert_eq!(f.get_u32(keys::diffusion::BLOCK_LENGTH).unwrap(), 128);
    assert_eq!(f.get_str(keys::tokenizer::PRE).unwrap(), "qwen2");
    assert_eq!(f.get_str(keys::tokenizer::NORMALIZER).unwrap(), "nfc");
    let tokens = f.get_str_array(keys::tokenizer::TOKENS).unwrap();
    assert_eq!((tokens.len(), tokens[2045].as_str()), (2048, "<|im_end|>"));
    assert_eq!(
        f.get_str_array(keys::tokenizer::MERGES).unwrap().len(),
        1787
    );
    assert_eq!(
        f.get_str(keys::chat::DEFAULT_SYSTEM).unwrap(),
        "You are a helpful assistant."
    );
    assert_eq!(
        f.get_str(keys::chat::GENERATION_PROMPT).unwrap(),
        "<|im_start|>assistant\n"
    );
    assert!(!f.get_bool(keys::chat::TRIM_CONTENT).unwrap());

    for (name, shape, quant) in [
        ("blk.0.wq", vec![256, 256], QuantType::BF16),
        ("blk.0.wk", vec![128, 256], QuantType::BF16),
        ("blk.0.wv", vec![128, 256], QuantType::BF16),
        ("blk.0.bq", vec![256], QuantType::F32),
        ("blk.0.bk", vec![128], QuantType::F32),
        ("blk.2.bv", vec![128], QuantType::F32),
        ("blk.2.ffn_norm", vec![256], QuantType::F32),
        ("head", vec![2048, 256], QuantType::BF16),
    ] {
        let t = f.tensor(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!((&t.shape, t.quant), (&shape, quant), "{name}");
    }
    // bf16 → bf16 is the source bytes; biases widen exactly to f32.
    let (_, _, raw) = source_values(&src, "model.layers.1.mlp.up_proj.weight");
    assert_eq!(f.tensor_data(&bytes, "blk.1.w_up").unwrap(), &raw[..]);
    let (_, bias, _) = source_values(&src, "model.layers.1.self_attn.k_proj.bias");
    assert_eq!(f32s(f.tensor_data(&bytes, "blk.1.bk").unwrap()), bias);

    let out16 = tmp.0.join("dream16.dlm");
    run(&src, &out16, "f16").unwrap();
    let b16 = std::fs::read(&out16).unwrap();
    let f16f = DlmFile::parse(&b16).unwrap();
    let (_, want, _) = source_values(&src, "lm_head.weight");
    let got: Vec<f32> = f16f
        .tensor_data(&b16, "head")
        .unwrap()
        .chunks_exact(2)
        .map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32())
        .collect();
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= w.abs() * 1e-3 + 1e-6, "{g} vs {w}");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn int_policies_quantize_matmuls_only() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("quant");
    let out = tmp.0.join("q8.dlm");
    run(&src, &out, "q8_0").unwrap();
    let bytes = std::fs::read(&out).unwrap();
    let f = DlmFile::parse(&bytes).unwrap();
    assert_eq!(f.tensor("blk.0.wq").unwrap().quant, QuantType::Q8_0);
    assert_eq!(f.tensor("blk.0.attn_norm").unwrap().quant, QuantType::F32);
    let (_, want, _) = source_values(&src, "model.layers.0.self_attn.q_proj.weight");
    let mut got = vec![0f32; want.len()];
    dlm_formats::quant::dequantize(
        QuantType::Q8_0,
        f.tensor_data(&bytes, "blk.0.wq").unwrap(),
        &mut got,
    )
    .unwrap();
    let max = want.iter().fold(0f32, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(&want) {
        assert!((g - w).abs() <= max / 127.0, "{g} vs {w}");
    }
    let mixed = tmp.0.join("mixed.dlm");
    run(&src, &mixed, "mixed").unwrap();
    let bm = std::fs::read(&mixed).unwrap();
    let fm = DlmFile::parse(&bm).unwrap();
    assert_eq!(fm.tensor("blk.0.wq").unwrap().quant, QuantType::Q4K);
    assert_eq!(fm.tensor("blk.0.wv").unwrap().quant, QuantType::Q6K);
    assert_eq!(fm.tensor("tok_embd").unwrap().quant, QuantType::Q8_0);
    assert!(bm.len() < bytes.len());
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn sizes_and_times_of_reference_conversions() {
    for name in ["llada-tiny", "dream-tiny"] {
        let Some(src) = reference(name) else { return };
        let tmp = TempDir::new("sizes");
        let mut sizes = Vec::new();
        for policy in ["f32", "f16", "bf16"] {
            let r = run(&src, &tmp.0.join(format!("{policy}.dlm")), policy).unwrap();
            println!(
                "{name} {policy}: {} bytes, {} tensors, {:.3} s",
                r.bytes_written, r.n_tensors, r.seconds
            );
            sizes.push(r.bytes_written);
        }
        // f16 and bf16 hold the same bytes of tensor data; their recorded storage mix
        // (`general.quant_mix`: "f16 …" vs "bf16 …") may move the aligned data by one block.
        assert!(
            sizes[1] < sizes[0] && sizes[1].abs_diff(sizes[2]) <= 64,
            "{sizes:?}"
        );
    }
}

/// Convert the damaged copy and return the error; the output must not exist.
fn fails(dir: &Path, tmp: &TempDir) -> ConvertError {
    let out = tmp.0.join("out.dlm");
    let e = run(dir, &out, "f32").expect_err("conversion should fail");
    assert!(!out.exists(), "a failed conversion left {}", out.display());
    assert!(
        no_temp_files(&tmp.0),
        "a failed conversion left its temporary file"
    );
    e
}

/// No `.tmp` file in `dir` (the writer's temporary names end in `.tmp`).
fn no_temp_files(dir: &Path) -> bool {
    std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .all(|e| !e.file_name().to_string_lossy().ends_with(".tmp"))
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn missing_shard_is_named() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    let tmp = TempDir::new("noshard");
    let dir = copy_of(&src, &tmp);
    std::fs::remove_file(dir.join("model-00003-of-00005.safetensors")).unwrap();
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::MissingFile { path, .. } if path.ends_with("model-00003-of-00005.safetensors")),
        "{e:?}"
    );
    assert!(e.to_string().contains("model-00003-of-00005.safetensors"));
}

/// Damages one file in place.
type Damage = dyn Fn(&Path);

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn corrupt_safetensors_headers_are_named() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let shard = "model-00002-of-00004.safetensors";
    let cases: [(&str, &Damage); 4] = [
        ("runs past the end", &|p: &Path| {
            let mut b = std::fs::read(p).unwrap();
            b[..8].copy_from_slice(&(1u64 << 40).to_le_bytes());
            std::fs::write(p, b).unwrap();
        }),
        ("not valid JSON", &|p: &Path| {
            let mut b = std::fs::read(p).unwrap();
            b[8] = b'x';
            std::fs::write(p, b).unwrap();
        }),
        ("out of range", &|p: &Path| {
            let (mut h, data) = split_st(p);
            let name = h
                .as_object()
                .unwrap()
                .keys()
                .find(|k| *k != "__metadata__")
                .unwrap()
                .clone();
            h[&name]["data_offsets"][1] = json!(data.len() as u64 + 2);
            write_st(p, &h, &data);
        }),
        ("too short", &|p: &Path| {
            std::fs::write(p, [1u8, 2, 3]).unwrap()
        }),
    ];
    for (want, damage) in cases {
        let tmp = TempDir::new("corrupt");
        let dir = copy_of(&src, &tmp);
        damage(&dir.join(shard));
        let e = fails(&dir, &tmp);
        let msg = e.to_string();
        assert!(
            matches!(e, ConvertError::BadSafetensors { .. }),
            "{want}: {e:?}"
        );
        assert!(msg.contains(shard) && msg.contains(want), "{want}: {msg}");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn shape_mismatch_is_named() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    // The config says something else than the tensors.
    let tmp = TempDir::new("shape");
    let dir = copy_of(&src, &tmp);
    edit_json(&dir.join("config.json"), |c| {
        c["mlp_hidden_size"] = json!(512)
    });
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::ShapeMismatch { tensor, expected, found, .. }
            if tensor == "model.transformer.blocks.0.ff_proj.weight" && expected == &[512, 256] && found == &[768, 256]),
        "{e:?}"
    );
    // A tensor whose header shape is transposed (same bytes).
    let tmp = TempDir::new("shape2");
    let dir = copy_of(&src, &tmp);
    let name = "model.transformer.blocks.1.ff_out.weight";
    let p = shard_of(&dir, name);
    let (mut h, data) = split_st(&p);
    h[name]["shape"] = json!([768, 256]);
    write_st(&p, &h, &data);
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::ShapeMismatch { tensor, .. } if tensor == name),
        "{e:?}"
    );
    assert!(
        e.to_string()
            .contains(p.file_name().unwrap().to_str().unwrap())
    );
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn unknown_architecture_is_named() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("arch");
    let dir = copy_of(&src, &tmp);
    edit_json(&dir.join("config.json"), |c| {
        c["architectures"] = json!(["GPT2LMHeadModel"]);
        c["model_type"] = json!("gpt2");
    });
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::UnknownArchitecture { architecture, .. } if architecture == "GPT2LMHeadModel"),
        "{e:?}"
    );
    assert!(e.to_string().contains("config.json"));
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn missing_tensor_is_named() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("notensor");
    let dir = copy_of(&src, &tmp);
    let name = "model.layers.2.self_attn.v_proj.bias";
    edit_json(&dir.join("model.safetensors.index.json"), |c| {
        c["weight_map"].as_object_mut().unwrap().remove(name);
    });
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::MissingTensor { tensor, .. } if tensor == name),
        "{e:?}"
    );
    // Listed in the index but absent from its shard.
    let tmp = TempDir::new("notensor2");
    let dir = copy_of(&src, &tmp);
    let p = shard_of(&dir, name);
    let (mut h, data) = split_st(&p);
    h.as_object_mut().unwrap().remove(name);
    write_st(&p, &h, &data);
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::MissingTensor { tensor, path } if tensor == name && path == &p),
        "{e:?}"
    );
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn unsupported_dtype_is_named() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    let tmp = TempDir::new("dtype");
    let dir = copy_of(&src, &tmp);
    let name = "model.transformer.blocks.2.attn_norm.weight";
    let p = shard_of(&dir, name);
    let (mut h, mut data) = split_st(&p);
    // Re-lay the tensor as I64 of the same shape at the end of the data section.
    let start = data.len() as u64;
    data.extend(std::iter::repeat_n(0u8, 256 * 8));
    h[name]["dtype"] = json!("I64");
    h[name]["data_offsets"] = json!([start, start + 256 * 8]);
    write_st(&p, &h, &data);
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::UnsupportedDtype { tensor, dtype, path } if tensor == name && dtype == "I64" && path == &p),
        "{e:?}"
    );
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn unexpected_tensor_is_named() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    let tmp = TempDir::new("extra");
    let dir = copy_of(&src, &tmp);
    edit_json(&dir.join("config.json"), |c| c["n_layers"] = json!(3));
    let e = fails(&dir, &tmp);
    assert!(
        matches!(&e, ConvertError::UnexpectedTensor { tensor, .. } if tensor.starts_with("model.transformer.blocks.3.")),
        "{e:?}"
    );
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn unknown_pre_tokenizer_is_named() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("pretok");
    let dir = copy_of(&src, &tmp);
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["pre_tokenizer"]["pretokenizers"][0]["pattern"]["Regex"] = json!(r"\s+|\w+");
    });
    let e = fails(&dir, &tmp);
    assert!(matches!(e, ConvertError::Tokenizer { .. }), "{e:?}");
    assert!(
        e.to_string().contains("tokenizer.json") && e.to_string().contains(r"\\s+|\\w+"),
        "{e}"
    );
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn interrupted_conversion_leaves_no_file() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("interrupt");
    let out = tmp.0.join("out.dlm");
    std::fs::write(&out, b"old file").unwrap();
    let result = std::panic::catch_unwind(|| {
        let opts = ConvertOptions::new(&src, &out);
        let _ = convert(&opts, &mut |p| {
            if p.tensors_done == 5 {
                panic!("interrupted");
            }
        });
    });
    assert!(result.is_err());
    assert_eq!(
        std::fs::read(&out).unwrap(),
        b"old file",
        "the old file was replaced"
    );
    assert!(no_temp_files(&tmp.0), "the temporary file was left behind");
    // A conversion that finishes replaces it.
    run(&src, &out, "f16").unwrap();
    assert!(DlmFile::parse(&std::fs::read(&out).unwrap()).is_ok());
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn reference_chat_templates_reassemble_exactly() {
    use dlm_convert::chat::{Role, Template, reduce};
    for name in ["llada-tiny", "dream-tiny"] {
        let Some(src) = reference(name) else { return };
        let tc: Value =
            serde_json::from_slice(&std::fs::read(src.join("tokenizer_config.json")).unwrap())
                .unwrap();
        let bos = tc["bos_token"].as_str().unwrap_or("");
        let eos = tc["eos_token"].as_str().unwrap_or("");
        let t = Template::new(tc["chat_template"].as_str().unwrap(), bos, eos).unwrap();
        let pieces = reduce(&t).unwrap();
        let with_system = [
            (Role::System, "You answer in French."),
            (Role::User, "What is the capital of Italy?"),
            (Role::Assistant, "Rome."),
            (Role::User, " And of Spain? "),
        ];
        for conv in [&with_system[..], &with_system[1..]] {
            for gp in [false, true] {
                assert_eq!(
                    pieces.assemble(conv, gp),
                    t.render(conv, gp).unwrap(),
                    "{name} {conv:?} {gp}"
                );
            }
        }
    }
}

#[test]
fn output_naming_an_input_is_refused() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("out-is-in");
    let dir = copy_of(&src, &tmp);
    let config = std::fs::read(dir.join("config.json")).unwrap();
    for name in ["config.json", "model-00001-of-00004.safetensors"] {
        let out = dir.join(name);
        if !out.exists() {
            continue;
        }
        let before = std::fs::read(&out).unwrap();
        let e = run(&dir, &out, "f32").expect_err("must refuse");
        assert!(matches!(e, ConvertError::OutputIsInput { .. }), "{e:?}");
        assert!(e.to_string().contains("destroy"), "{e}");
        assert_eq!(std::fs::read(&out).unwrap(), before);
    }
    // Through a symlink too.
    #[cfg(unix)]
    {
        let link = tmp.0.join("link.dlm");
        std::os::unix::fs::symlink(dir.join("config.json"), &link).unwrap();
        let e = run(&dir, &link, "f32").expect_err("must refuse");
        assert!(matches!(e, ConvertError::OutputIsInput { .. }), "{e:?}");
    }
    assert_eq!(std::fs::read(dir.join("config.json")).unwrap(), config);
}

#[test]
fn absurd_config_sizes_are_rejected_before_allocating() {
    let Some(src) = reference("llada-tiny") else {
        return;
    };
    for (key, v) in [
        ("n_layers", json!(4294967295u64)),
        ("d_model", json!(4294967295u64)),
        ("embedding_size", json!(4294967295u64)),
        ("max_sequence_length", json!(1u64 << 22)),
    ] {
        let tmp = TempDir::new("absurd");
        let dir = copy_of(&src, &tmp);
        edit_json(&dir.join("config.json"), |c| c[key] = v.clone());
        let t0 = std::time::Instant::now();
        let e = fails(&dir, &tmp);
        assert!(
            matches!(e, ConvertError::BadConfigValue { .. }),
            "{key}: {e:?}"
        );
        assert!(t0.elapsed().as_secs() < 5, "{key}: {:?}", t0.elapsed());
    }
}

#[test]
fn dream_stores_its_effective_top_k_and_llada_none() {
    for (name, want) in [("dream-tiny", 50), ("llada-tiny", 0)] {
        let Some(src) = reference(name) else { return };
        let tmp = TempDir::new("topk");
        let out = tmp.0.join("m.dlm");
        run(&src, &out, "f32").unwrap();
        let f = DlmFile::parse(&std::fs::read(&out).unwrap()).unwrap();
        assert_eq!(f.get_u32(keys::diffusion::TOP_K).unwrap(), want, "{name}");
        // Added-token flags are stored, one per added id.
        let n_added = match f.meta_get(keys::tokenizer::ADDED_IDS) {
            Some(dlm_formats::MetaValue::ArrU32(v)) => v.len(),
            other => panic!("{other:?}"),
        };
        match f.meta_get(keys::tokenizer::ADDED_FLAGS) {
            Some(dlm_formats::MetaValue::ArrU32(v)) => assert_eq!(v.len(), n_added),
            other => panic!("{other:?}"),
        }
    }
    // A generation_config top_k wins.
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("topk-gc");
    let dir = copy_of(&src, &tmp);
    let gc = dir.join("generation_config.json");
    if !gc.exists() {
        std::fs::write(&gc, "{}").unwrap();
    }
    edit_json(&gc, |c| c["top_k"] = json!(7));
    let out = tmp.0.join("m.dlm");
    run(&dir, &out, "f32").unwrap();
    let f = DlmFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert_eq!(f.get_u32(keys::diffusion::TOP_K).unwrap(), 7);
}

#[test]
fn added_token_flags_are_read_from_tokenizer_json() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("flags");
    let dir = copy_of(&src, &tmp);
    edit_json(&dir.join("tokenizer.json"), |t| {
        let added = t["added_tokens"].as_array_mut().unwrap();
        added[0]["lstrip"] = json!(true);
        added[0]["single_word"] = json!(true);
        added[1]["rstrip"] = json!(true);
        added[1]["normalized"] = json!(true);
    });
    let out = tmp.0.join("m.dlm");
    run(&dir, &out, "f32").unwrap();
    let f = DlmFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    use keys::tokenizer::added_flags as fl;
    match f.meta_get(keys::tokenizer::ADDED_FLAGS) {
        Some(dlm_formats::MetaValue::ArrU32(v)) => {
            assert_eq!(v[0], fl::LSTRIP | fl::SINGLE_WORD);
            assert_eq!(v[1], fl::RSTRIP | fl::NORMALIZED);
        }
        other => panic!("{other:?}"),
    }
    edit_json(&dir.join("tokenizer.json"), |t| {
        t["added_tokens"][0]["lstrip"] = json!("yes");
    });
    let e = fails(&dir, &tmp);
    assert!(matches!(e, ConvertError::Tokenizer { .. }), "{e:?}");
}

#[test]
fn runaway_chat_template_is_an_error_and_the_flags_get_past_it() {
    use dlm_convert::ChatTemplateSource;
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("runaway");
    let dir = copy_of(&src, &tmp);
    let good = {
        let tc: Value =
            serde_json::from_slice(&std::fs::read(dir.join("tokenizer_config.json")).unwrap())
                .unwrap();
        tc["chat_template"].as_str().unwrap().to_string()
    };
    edit_json(&dir.join("tokenizer_config.json"), |c| {
        c["chat_template"] = json!(
            "{% for a in range(100000) %}{% for b in range(100000) %}{{ a }}{% endfor %}{% endfor %}"
        );
    });
    let t0 = std::time::Instant::now();
    let e = fails(&dir, &tmp);
    assert!(matches!(e, ConvertError::ChatTemplate { .. }), "{e:?}");
    assert!(e.to_string().contains("--chat-template"), "{e}");
    assert!(t0.elapsed().as_secs() < 20, "{:?}", t0.elapsed());

    let out = tmp.0.join("m.dlm");
    let mut opts = ConvertOptions::new(&dir, &out);
    opts.chat_template = ChatTemplateSource::None;
    let report = convert(&opts, &mut |_| {}).unwrap();
    assert!(report.warnings.iter().all(|w| !w.contains("chat template")));
    let f = DlmFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert!(f.meta_get(keys::chat::USER_PREFIX).is_none());

    let file = tmp.0.join("chat.jinja");
    std::fs::write(&file, &good).unwrap();
    opts.chat_template = ChatTemplateSource::File(file);
    convert(&opts, &mut |_| {}).unwrap();
    let f = DlmFile::parse(&std::fs::read(&out).unwrap()).unwrap();
    assert!(f.get_str(keys::chat::USER_PREFIX).unwrap().contains("user"));
    opts.chat_template = ChatTemplateSource::File(tmp.0.join("missing.jinja"));
    let e = convert(&opts, &mut |_| {}).unwrap_err();
    assert!(e.to_string().contains("missing.jinja"), "{e}");
}

#[test]
fn concurrent_converts_to_one_output_all_succeed_with_a_whole_file() {
    let Some(src) = reference("dream-tiny") else {
        return;
    };
    let tmp = TempDir::new("concurrent");
    let out = tmp.0.join("m.dlm");
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..3).map(|_| s.spawn(|| run(&src, &out, "f16"))).collect();
        for h in hs {
            h.join().unwrap().unwrap();
        }
    });
    let bytes = std::fs::read(&out).unwrap();
    let f = DlmFile::parse(&bytes).unwrap();
    f.verify_checksums(&bytes).unwrap();
    assert!(no_temp_files(&tmp.0));
}
