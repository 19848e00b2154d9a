//! A llama.cpp GGUF file of LLaDA or Dream → `.dlm`: the model shape from `<arch>.*`, tensor
//! names from ggml's to ours, LLaDA's q/k rows un-permuted, the tokenizer from
//! `tokenizer.ggml.*`, the chat template, the mask id, and each tensor's storage kept as the file
//! has it (byte copies where the layouts match, lossless transcodes, or f32 with a notice),
//! unless a `--quant` policy asks to re-quantize.

use super::ggml::{self, GgmlType, Import};
use super::reader::{self, GgufFile, TensorInfo, Value};
use crate::error::{ConvertError, Result};
use crate::hf::{self, Family, ModelConfig};
use crate::quant::{QuantMix, QuantPolicy, TensorRole};
use crate::{
    ChatTemplateSource, ConvertOptions, ConvertReport, Progress, Specials, chat, tokenizer,
};
use dlm_formats::{DlmWriter, MappedFile, MetaValue, QuantType, TensorDecl, keys, tensors};
use std::path::Path;
use std::time::Instant;

/// ggml's tensor names for ours (`{i}` is the block index in both).
const TENSOR_NAMES: &[(&str, &str)] = &[
    (tensors::TOK_EMBD, "token_embd.weight"),
    (tensors::ATTN_NORM, "blk.{i}.attn_norm.weight"),
    (tensors::WQ, "blk.{i}.attn_q.weight"),
    (tensors::WK, "blk.{i}.attn_k.weight"),
    (tensors::WV, "blk.{i}.attn_v.weight"),
    (tensors::BQ, "blk.{i}.attn_q.bias"),
    (tensors::BK, "blk.{i}.attn_k.bias"),
    (tensors::BV, "blk.{i}.attn_v.bias"),
    (tensors::WO, "blk.{i}.attn_output.weight"),
    (tensors::FFN_NORM, "blk.{i}.ffn_norm.weight"),
    (tensors::W_GATE, "blk.{i}.ffn_gate.weight"),
    (tensors::W_UP, "blk.{i}.ffn_up.weight"),
    (tensors::W_DOWN, "blk.{i}.ffn_down.weight"),
    (tensors::OUT_NORM, "output_norm.weight"),
    (tensors::HEAD, "output.weight"),
];
/// `tokenizer.ggml.pre` names whose splitting rule the runtime implements: (name, our `pre`,
/// normalizer, BPE `ignore_merges`). llama.cpp's `llama-bpe` is LLaMA-3's regex (whose HF
/// tokenizer sets `ignore_merges`); `qwen2` is Qwen2's regex behind an NFC normalizer.
const PRE_TOKENIZERS: &[(&str, &str, &str, bool)] = &[
    ("llama-bpe", "llama3", "none", true),
    ("llama3", "llama3", "none", true),
    ("qwen2", "qwen2", "nfc", false),
];

/// ggml token types: control tokens are special; user-defined ones are added but not special.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// Whether `path` is a GGUF file (by its magic).
pub fn is_gguf(path: &Path) -> bool {
    use std::io::Read;
    let mut magic = [0u8; 4];
    path.is_file()
        && std::fs::File::open(path)
            .and_then(|mut f| f.read_exact(&mut magic))
            .is_ok()
        && reader::has_magic(&magic)
}

/// Typed access to the metadata, with errors naming the key and the file.
struct Meta<'a> {
    file: &'a GgufFile,
    path: &'a Path,
}

impl Meta<'_> {
    fn missing(&self, key: &str) -> ConvertError {
        ConvertError::MissingConfigKey {
            path: self.path.to_path_buf(),
            key: key.to_string(),
        }
    }
    fn bad(&self, key: &str, reason: String) -> ConvertError {
        ConvertError::BadConfigValue {
            path: self.path.to_path_buf(),
            key: key.to_string(),
            reason,
        }
    }
    fn str(&self, key: &str) -> Result<Option<&str>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.bad(key, format!("expected a string, found {v:?}"))),
        }
    }
    /// A positive integer below 2^32.
    fn uint(&self, key: &str) -> Result<Option<u64>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Int(v)) if (1..=u32::MAX as i64).contains(v) => Ok(Some(*v as u64)),
            Some(v) => Err(self.bad(key, format!("{v:?} is not a positive integer below 2^32"))),
        }
    }
    fn req_uint(&self, key: &str) -> Result<u64> {
        self.uint(key)?.ok_or_else(|| self.missing(key))
    }
    /// A token id (any integer >= 0 below 2^32).
    fn id(&self, key: &str) -> Result<Option<u32>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Int(v)) if (0..=u32::MAX as i64).contains(v) => Ok(Some(*v as u32)),
            Some(v) => Err(self.bad(key, format!("{v:?} is not a token id"))),
        }
    }
    fn float(&self, key: &str) -> Result<Option<f64>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Float(v)) if v.is_finite() && *v > 0.0 => Ok(Some(*v)),
            Some(v) => Err(self.bad(key, format!("{v:?} is not a positive number"))),
        }
    }
    fn bool(&self, key: &str) -> Result<Option<bool>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(self.bad(key, format!("expected a bool, found {v:?}"))),
        }
    }
    fn strs(&self, key: &str) -> Result<Vec<String>> {
        match self.file.get(key) {
            None => Err(self.missing(key)),
            Some(Value::Arr(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Str(s) => Ok(s.clone()),
                    v => Err(self.bad(key, format!("element {v:?} is not a string"))),
                })
                .collect(),
            Some(v) => Err(self.bad(key, format!("expected an array, found {v:?}"))),
        }
    }
    fn ints(&self, key: &str) -> Result<Option<Vec<i64>>> {
        match self.file.get(key) {
            None => Ok(None),
            Some(Value::Arr(a)) => a
                .iter()
                .map(|v| match v {
                    Value::Int(i) => Ok(*i),
                    v => Err(self.bad(key, format!("element {v:?} is not an integer"))),
                })
                .collect::<Result<Vec<_>>>()
                .map(Some),
            Some(v) => Err(self.bad(key, format!("expected an array, found {v:?}"))),
        }
    }
}

/// The family of `general.architecture`.
fn family_of(m: &Meta<'_>) -> Result<(Family, String)> {
    let key = "general.architecture";
    let arch = m.str(key)?.ok_or_else(|| m.missing(key))?;
    let family = match arch {
        "llada" => Family::Llada,
        "dream" => Family::Dream,
        other => {
            return Err(ConvertError::Unsupported {
                path: m.path.to_path_buf(),
                what: format!("architecture {other:?} (supported: llada, dream)"),
            });
        }
    };
    Ok((family, arch.to_string()))
}

/// The model shape from `<arch>.*` and the tensors present.
fn model_config(m: &Meta<'_>, family: Family, arch: &str) -> Result<ModelConfig> {
    let k = |s: &str| format!("{arch}.{s}");
    let emb = m
        .file
        .tensor("token_embd.weight")
        .ok_or_else(|| ConvertError::MissingTensor {
            path: m.path.to_path_buf(),
            tensor: "token_embd.weight".into(),
        })?;
    let dim = m.req_uint(&k("embedding_length"))?;
    let n_heads = m.req_uint(&k("attention.head_count"))?;
    let n_kv_heads = m.uint(&k("attention.head_count_kv"))?.unwrap_or(n_heads);
    let vocab_size = match emb.ne.as_slice() {
        [d, v] if *d == dim => *v,
        ne => {
            return Err(m.bad(
                &k("embedding_length"),
                format!("token_embd.weight has dims {ne:?}, not [{dim}, vocab]"),
            ));
        }
    };
    let cfg = ModelConfig {
        family,
        architecture: arch.to_string(),
        dim,
        hidden_dim: m.req_uint(&k("feed_forward_length"))?,
        n_layers: m.req_uint(&k("block_count"))?,
        n_heads,
        n_kv_heads,
        vocab_size,
        max_seq_len: m.req_uint(&k("context_length"))?,
        rope_theta: m.float(&k("rope.freq_base"))?.unwrap_or(10_000.0),
        norm_eps: m
            .float(&k("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| m.missing(&k("attention.layer_norm_rms_epsilon")))?,
        qkv_bias: m.file.tensor("blk.0.attn_q.bias").is_some(),
        tied_head: m.file.tensor("output.weight").is_none(),
    };
    // The runtime's limits and shape rules (even head size, kv heads dividing heads).
    hf::runtime_requirements(&cfg).map_err(|what| ConvertError::Unsupported {
        path: m.path.to_path_buf(),
        what: format!("model shape: {what}"),
    })?;
    // Counts that size allocations are bounded by what the file really holds: every block has
    // at least 7 tensors (2 norms, q, k, v, out, and the feed-forward's 3 minus biases), and no
    // tokenizer has more than a few hundred thousand tokens.
    if cfg.n_layers.saturating_mul(7) > m.file.tensors.len() as u64 {
        return Err(m.bad(
            &k("block_count"),
            format!(
                "{} blocks, but the file has only {} tensors",
                cfg.n_layers,
                m.file.tensors.len()
            ),
        ));
    }
    if cfg.vocab_size > reader::MAX_ARRAY_LEN {
        return Err(m.bad(
            &k("embedding_length"),
            format!(
                "an embedding of {} rows is larger than any vocabulary",
                cfg.vocab_size
            ),
        ));
    }
    if let Some(rd) = m.uint(&k("rope.dimension_count"))?
        && rd != cfg.head_dim()
    {
        return Err(ConvertError::Unsupported {
            path: m.path.to_path_buf(),
            what: format!("RoPE over {rd} of {} head dims", cfg.head_dim()),
        });
    }
    if m.bool(&k("attention.causal"))? == Some(true) {
        return Err(ConvertError::Unsupported {
            path: m.path.to_path_buf(),
            what: format!("{arch}.attention.causal = true (diffusion models attend both ways)"),
        });
    }
    Ok(cfg)
}

/// The ggml name of our tensor `ours`.
fn ggml_name(ours: &str) -> Option<String> {
    let (layer, rest) = match ours.strip_prefix("blk.") {
        Some(r) => {
            let (i, rest) = r.split_once('.')?;
            (Some(i), format!("blk.{{i}}.{rest}"))
        }
        None => (None, ours.to_string()),
    };
    let (_, g) = TENSOR_NAMES.iter().find(|(o, _)| *o == rest)?;
    Some(match layer {
        Some(i) => g.replace("{i}", i),
        None => g.to_string(),
    })
}

/// The tokenizer and special ids from `tokenizer.ggml.*`.
fn tokenizer_of(m: &Meta<'_>, cfg: &ModelConfig) -> Result<(tokenizer::Tokenizer, Specials)> {
    let terr = |reason: String| ConvertError::Tokenizer {
        path: m.path.to_path_buf(),
        reason,
    };
    let model = m.str("tokenizer.ggml.model")?.unwrap_or("");
    if model != "gpt2" {
        return Err(terr(format!(
            "tokenizer.ggml.model {model:?}: only byte-level BPE (\"gpt2\") is supported"
        )));
    }
    let pre_name = m.str("tokenizer.ggml.pre")?.unwrap_or("default");
    let &(_, pre, normalizer, ignore_merges) = PRE_TOKENIZERS
        .iter()
        .find(|p| p.0 == pre_name)
        .ok_or_else(|| {
            let known: Vec<&str> = PRE_TOKENIZERS.iter().map(|p| p.0).collect();
            terr(format!(
                "tokenizer.ggml.pre {pre_name:?} has no splitting rule in dlm (known: {})",
                known.join(", ")
            ))
        })?;
    let mut tokens = m.strs("tokenizer.ggml.tokens")?;
    if tokens.len() as u64 > cfg.vocab_size {
        return Err(terr(format!(
            "{} tokens for an embedding of {} rows",
            tokens.len(),
            cfg.vocab_size
        )));
    }
    let types = m.ints("tokenizer.ggml.token_type")?.unwrap_or_default();
    if !types.is_empty() && types.len() != tokens.len() {
        return Err(terr(format!(
            "{} token types for {} tokens",
            types.len(),
            tokens.len()
        )));
    }
    let added_ids: Vec<u32> = (0..types.len())
        .filter(|&i| matches!(types[i], TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
        .map(|i| i as u32)
        .collect();
    let special_ids: Vec<u32> = (0..types.len())
        .filter(|&i| types[i] == TOKEN_TYPE_CONTROL)
        .map(|i| i as u32)
        .collect();
    tokens.resize(cfg.vocab_size as usize, String::new());
    let merges = m.strs("tokenizer.ggml.merges")?;
    if let Some(bad) = merges.iter().find(|x| x.split(' ').count() != 2) {
        return Err(terr(format!(
            "merge {bad:?} is not two tokens and one space"
        )));
    }
    // Every merge joins two tokens into a third: the runtime refuses a file whose merges do not.
    let known: std::collections::HashSet<&str> = tokens
        .iter()
        .map(String::as_str)
        .filter(|t| !t.is_empty())
        .collect();
    for (i, mg) in merges.iter().enumerate() {
        let (a, b) = mg.split_once(' ').unwrap_or((mg, ""));
        let ab = format!("{a}{b}");
        if let Some(t) = [a, b, ab.as_str()].into_iter().find(|t| !known.contains(t)) {
            return Err(terr(format!(
                "merge {i} ({mg:?}) refers to {t:?}, which is not in the vocabulary"
            )));
        }
    }
    let tok = tokenizer::Tokenizer::from_parts(
        tokens,
        merges,
        added_ids,
        special_ids,
        pre,
        normalizer,
        ignore_merges,
    );
    let check = |key: &str, id: Option<u32>| -> Result<Option<u32>> {
        match id {
            Some(i) if u64::from(i) >= cfg.vocab_size => Err(m.bad(
                key,
                format!("{i} is not below the vocab size {}", cfg.vocab_size),
            )),
            id => Ok(id),
        }
    };
    // bos, eos, pad and eot are written as text (chat template, output): each must name a
    // token, not a padded embedding row, or the runtime refuses the file (the mask id may be
    // any row).
    let named = |key: &str, id: Option<u32>| -> Result<Option<u32>> {
        match check(key, id)? {
            Some(i) if tok.tokens.get(i as usize).is_none_or(|t| t.is_empty()) => Err(m.bad(
                key,
                format!(
                    "{i} names no token (the vocabulary has {})",
                    tok.tokens.len()
                ),
            )),
            id => Ok(id),
        }
    };
    let need = |key: &str| -> Result<u32> { named(key, m.id(key)?)?.ok_or_else(|| m.missing(key)) };
    let bos = need("tokenizer.ggml.bos_token_id")?;
    let eos = need("tokenizer.ggml.eos_token_id")?;
    let pad = named(
        "tokenizer.ggml.padding_token_id",
        m.id("tokenizer.ggml.padding_token_id")?,
    )?
    .unwrap_or(eos);
    let eot = match named(
        "tokenizer.ggml.eot_token_id",
        m.id("tokenizer.ggml.eot_token_id")?,
    )? {
        Some(e) => Some(e),
        None => hf::EOT_TOKEN_TEXTS.iter().find_map(|t| tok.id_of(t)),
    };
    let mask_key = "tokenizer.ggml.mask_token_id";
    let mask = match check(mask_key, m.id(mask_key)?)? {
        Some(id) => id,
        None => hf::MASK_TOKEN_TEXTS
            .iter()
            .find_map(|t| tok.id_of(t))
            .ok_or_else(|| m.missing(mask_key))?,
    };
    Ok((
        tok,
        Specials {
            bos,
            eos,
            pad,
            eot,
            mask,
        },
    ))
}

/// The chat pieces of the template `given` selects: the file's `tokenizer.chat_template` (none
/// when it has none), a Jinja file (`--chat-template FILE`), or none (`--no-chat-template`).
fn chat_of(
    m: &Meta<'_>,
    tok: &tokenizer::Tokenizer,
    s: &Specials,
    given: &ChatTemplateSource,
) -> Result<Option<chat::ChatPieces>> {
    let (source, from) = match given {
        ChatTemplateSource::None => return Ok(None),
        ChatTemplateSource::File(path) => {
            let source = std::fs::read_to_string(path).map_err(|source| ConvertError::Io {
                path: path.clone(),
                source,
            })?;
            (source, path.as_path())
        }
        ChatTemplateSource::TokenizerConfig => match m.str("tokenizer.chat_template")? {
            Some(source) => (source.to_string(), m.path),
            None => return Ok(None),
        },
    };
    let text = |id: u32| tok.tokens[id as usize].clone();
    let err = |reason: String| ConvertError::ChatTemplate {
        path: from.to_path_buf(),
        reason,
    };
    let tmpl = chat::Template::new(&source, &text(s.bos), &text(s.eos)).map_err(err)?;
    chat::reduce(&tmpl).map(Some).map_err(err)
}

/// Undo llama.cpp's LLaDA q/k permutation of the rows of `data` (`rows` rows of equal bytes):
/// its converter stores original row `h·hd + j·hd/2 + i` of head h at `h·hd + 2i + j`
/// (interleaving the two rotate-half halves for its RoPE); this puts each row back.
fn unpermute_rows(data: &[u8], rows: usize, n_heads: usize) -> Vec<u8> {
    let rb = data.len() / rows;
    let hd = rows / n_heads;
    let mut out = vec![0u8; data.len()];
    for h in 0..n_heads {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let (o, p) = (h * hd + j * (hd / 2) + i, h * hd + 2 * i + j);
                out[o * rb..(o + 1) * rb].copy_from_slice(&data[p * rb..(p + 1) * rb]);
            }
        }
    }
    out
}

/// The f32 values of a tensor stored as ggml type `ty`.
fn to_f32(ty: GgmlType, import: Import, data: &[u8], n: usize) -> Option<Vec<f32>> {
    let mut out = vec![0f32; n];
    match import {
        Import::Native(q) => dlm_formats::quant::dequantize(q, data, &mut out).ok()?,
        Import::Lossless(_) | Import::Dequantize => {
            if !ggml::dequantize(ty, data, &mut out) {
                return None;
            }
        }
    }
    Some(out)
}

/// One tensor to write: where it comes from and how.
struct Planned<'a> {
    decl: TensorDecl,
    src: &'a TensorInfo,
    import: Import,
    /// Heads of a LLaDA q/k projection whose rows to un-permute.
    unpermute: Option<u64>,
    role: TensorRole,
}

/// Convert the GGUF file `opts.input` into `opts.output` (see [`crate::convert`]).
pub fn convert_gguf(
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ConvertReport> {
    let start = Instant::now();
    let path = opts.input.as_path();
    let map = MappedFile::open(path).map_err(|e| match e {
        dlm_formats::FormatError::Io(source) => ConvertError::Io {
            path: path.to_path_buf(),
            source,
        },
        e => ConvertError::BadGguf {
            path: path.to_path_buf(),
            offset: 0,
            reason: e.to_string(),
        },
    })?;
    let bytes = map.bytes();
    let file = reader::parse(bytes).map_err(|e| ConvertError::BadGguf {
        path: path.to_path_buf(),
        offset: e.offset,
        reason: e.reason,
    })?;
    let m = Meta { file: &file, path };
    let (family, arch) = family_of(&m)?;
    let cfg = model_config(&m, family, &arch)?;
    let (tok, specials) = tokenizer_of(&m, &cfg)?;
    let mut warnings = Vec::new();
    let mut notices = Vec::new();

    let mut meta: Vec<(String, MetaValue)> = Vec::new();
    let mut put = |k: &str, v: MetaValue| meta.push((k.to_string(), v));
    let name = match (&opts.name, m.str("general.name")?) {
        (Some(n), _) => n.clone(),
        (None, Some(n)) => n.to_string(),
        (None, None) => path
            .file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "model".into()),
    };
    put(keys::general::NAME, MetaValue::Str(name));
    put(keys::general::ARCHITECTURE, MetaValue::Str(arch.clone()));
    put(
        keys::general::SOURCE_FORMAT,
        MetaValue::Str(format!("gguf v{}", file.version)),
    );
    put(
        keys::general::QUANT_POLICY,
        MetaValue::Str(opts.policy.name().into()),
    );
    put(
        keys::general::WRITER,
        MetaValue::Str(format!("dlm-convert {}", env!("CARGO_PKG_VERSION"))),
    );
    crate::model_meta(&cfg, &mut put);
    // llama.cpp's LLaDA files say it; Dream's follows from the architecture (model_meta).
    if let Some(shift) = m.bool("diffusion.shift_logits")? {
        put(keys::model::SHIFT_LOGITS, MetaValue::Bool(shift));
    }
    crate::tokenizer_meta(&tok, &specials, &mut put);
    match chat_of(&m, &tok, &specials, &opts.chat_template)? {
        Some(p) => crate::chat_meta(&p, &mut put),
        None if opts.chat_template == ChatTemplateSource::None => {}
        None => warnings.push(format!(
            "{}: no tokenizer.chat_template; the file has no chat.* keys",
            path.display()
        )),
    }
    let empty = serde_json::Value::Object(Default::default());
    let d = hf::diffusion_defaults(family, &empty, path)?;
    notices.push(format!(
        "a GGUF file carries no decoding defaults: wrote {}'s (steps {}, gen_length {}, \
         block_length {}); override them with --steps, --gen-length, --block-length",
        family.name(),
        d.steps,
        d.gen_length,
        d.block_length
    ));
    crate::diffusion_meta(specials.mask, d, &mut put);
    // A later duplicate (shift_logits) replaces the earlier value.
    let mut seen = std::collections::HashSet::new();
    meta.reverse();
    meta.retain(|(k, _)| seen.insert(k.clone()));
    meta.reverse();

    // Plan every tensor, checking names, shapes and types before writing anything.
    let plan = hf::tensor_plan(&cfg);
    let mut planned = Vec::with_capacity(plan.len());
    let mut mix = QuantMix::default();
    let mut used = std::collections::HashSet::new();
    let mut by_import: Vec<(&'static str, Import, usize)> = Vec::new();
    for t in &plan {
        let gname = ggml_name(&t.ours).ok_or_else(|| ConvertError::Unsupported {
            path: path.to_path_buf(),
            what: format!("tensor {} has no ggml name", t.ours),
        })?;
        let src = file
            .tensor(&gname)
            .ok_or_else(|| ConvertError::MissingTensor {
                path: path.to_path_buf(),
                tensor: gname.clone(),
            })?;
        used.insert(gname.clone());
        if src.shape() != t.shape {
            return Err(ConvertError::ShapeMismatch {
                path: path.to_path_buf(),
                tensor: gname,
                expected: t.shape.clone(),
                found: src.shape(),
            });
        }
        let import = src.ty.import().ok_or_else(|| ConvertError::Unsupported {
            path: path.to_path_buf(),
            what: format!(
                "tensor {gname} has ggml type {} (supported: F32, F16, BF16, Q8_0, Q4_0, Q4_1, \
                 Q5_0, Q5_1, Q4_K, Q5_K, Q6_K)",
                src.ty.name
            ),
        })?;
        let source = match import {
            Import::Native(q) | Import::Lossless(q) => q,
            Import::Dequantize => QuantType::F32,
        };
        let wanted = opts.policy.wanted(t.role, source);
        let quant = opts.policy.choose(t.role, &t.shape, source);
        let n_bytes = quant
            .tensor_bytes(&t.shape)
            .ok_or_else(|| ConvertError::BadQuantShape {
                quant,
                tensor: t.ours.clone(),
                shape: t.shape.clone(),
            })?;
        mix.add(&t.ours, wanted, quant, n_bytes);
        if opts.policy == QuantPolicy::Keep && !matches!(import, Import::Native(_)) {
            match by_import.iter_mut().find(|e| e.0 == src.ty.name) {
                Some(e) => e.2 += 1,
                None => by_import.push((src.ty.name, import, 1)),
            }
        }
        let unpermute = match (family, t.role) {
            (Family::Llada, TensorRole::AttnQk) if t.ours.ends_with(".wq") => Some(cfg.n_heads),
            (Family::Llada, TensorRole::AttnQk) => Some(cfg.n_kv_heads),
            _ => None,
        };
        planned.push(Planned {
            decl: TensorDecl {
                name: t.ours.clone(),
                quant,
                shape: t.shape.clone(),
            },
            src,
            import,
            unpermute,
            role: t.role,
        });
    }
    if let Some(extra) = file.tensors.iter().find(|t| !used.contains(&t.name)) {
        return Err(ConvertError::UnexpectedTensor {
            path: path.to_path_buf(),
            tensor: extra.name.clone(),
        });
    }
    for (name, import, n) in by_import {
        notices.push(match import {
            Import::Lossless(q) => format!(
                "{n} {name} tensors transcoded to {q} with every value exact (dlm has no {name} \
                 type)"
            ),
            _ => format!(
                "{n} {name} tensors dequantized to f32 (exact, but larger): no .dlm block holds \
                 {name}'s values exactly; pass --quant to re-quantize them"
            ),
        });
    }
    if opts.policy != QuantPolicy::Keep {
        notices.push(format!(
            "re-quantizing every tensor from its GGUF type with policy {}",
            opts.policy.name()
        ));
    }
    meta.push((
        keys::general::QUANT_MIX.to_string(),
        MetaValue::ArrStr(mix.to_meta()),
    ));

    let decls: Vec<TensorDecl> = planned.iter().map(|p| p.decl.clone()).collect();
    let bytes_total: u64 = mix.entries.iter().map(|e| e.2).sum();
    let format_err = |source| ConvertError::Format {
        path: opts.output.clone(),
        source,
    };
    let mut writer = DlmWriter::create(&opts.output, &meta, &decls).map_err(format_err)?;
    let mut bytes_done = 0u64;
    progress(Progress::start(planned.len(), bytes_total));
    for (i, p) in planned.iter().enumerate() {
        let raw = file.data(bytes, p.src);
        let raw: std::borrow::Cow<'_, [u8]> = match p.unpermute {
            Some(heads) => unpermute_rows(raw, p.decl.shape[0] as usize, heads as usize).into(),
            None => raw.into(),
        };
        let data: std::borrow::Cow<'_, [u8]> = match p.import {
            Import::Native(q) if q == p.decl.quant => raw,
            Import::Lossless(q) if q == p.decl.quant => ggml::q5_0_to_q8_0(&raw)
                .ok_or_else(|| ConvertError::BadGguf {
                    path: path.to_path_buf(),
                    offset: p.src.offset,
                    reason: format!("tensor {}: partial block", p.src.name),
                })?
                .into(),
            import => {
                let n: u64 = p.decl.shape.iter().product();
                let values = to_f32(p.src.ty, import, &raw, n as usize).ok_or_else(|| {
                    ConvertError::BadGguf {
                        path: path.to_path_buf(),
                        offset: p.src.offset,
                        reason: format!("tensor {}: cannot decode its data", p.src.name),
                    }
                })?;
                crate::encode_tensor(p.decl.quant, &p.decl.shape, &values)
                    .map_err(|e| match e {
                        ConvertError::Encode { quant, source, .. } => ConvertError::Encode {
                            tensor: p.decl.name.clone(),
                            quant,
                            source,
                        },
                        e => e,
                    })?
                    .into()
            }
        };
        crate::check_small_tensor(path, &p.decl, p.role, &data)?;
        writer
            .write_tensor(&p.decl.name, &data)
            .map_err(format_err)?;
        bytes_done += data.len() as u64;
        progress(Progress {
            tensor: &p.decl.name,
            tensors_done: i + 1,
            tensors_total: planned.len(),
            bytes_done,
            bytes_total,
        });
    }
    let bytes_written = writer.finish().map_err(format_err)?;
    Ok(ConvertReport {
        family,
        n_tensors: planned.len(),
        bytes_written,
        seconds: start.elapsed().as_secs_f64(),
        warnings,
        notices,
        mix,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_both_ways_for_every_planned_tensor() {
        assert_eq!(ggml_name("tok_embd").as_deref(), Some("token_embd.weight"));
        assert_eq!(
            ggml_name("blk.11.wk").as_deref(),
            Some("blk.11.attn_k.weight")
        );
        assert_eq!(ggml_name("blk.0.bv").as_deref(), Some("blk.0.attn_v.bias"));
        assert_eq!(ggml_name("head").as_deref(), Some("output.weight"));
        assert_eq!(ggml_name("blk.0.nope"), None);
    }

    /// A GGUF string array value (type 9 of element type 8).
    fn gstrs(items: &[&str]) -> Vec<u8> {
        let mut v = 8u32.to_le_bytes().to_vec();
        v.extend_from_slice(&(items.len() as u64).to_le_bytes());
        for s in items {
            v.extend(super::super::reader::tests::gstr(s));
        }
        v
    }

    #[test]
    fn an_end_of_text_id_on_a_padded_row_is_refused_at_import() {
        // Found by the gguf_reader fuzz target: 4 tokens, 8 embedding rows, eos on row 6 (a
        // padded row, no token). The runtime refuses such a tokenizer, so the importer must.
        let tokens = ["a", "b", "ab", "<eos>"];
        let file = |eos: u32| {
            let mut b = super::super::reader::tests::Builder::new()
                .kv_str("tokenizer.ggml.model", "gpt2")
                .kv_str("tokenizer.ggml.pre", "qwen2")
                .kv_u32("tokenizer.ggml.bos_token_id", 3)
                .kv_u32("tokenizer.ggml.eos_token_id", eos)
                .kv_u32("tokenizer.ggml.mask_token_id", 7);
            b.kv.push(("tokenizer.ggml.tokens".into(), 9, gstrs(&tokens)));
            b.kv.push(("tokenizer.ggml.merges".into(), 9, gstrs(&["a b"])));
            reader::parse(&b.build()).unwrap()
        };
        let cfg = tiny_config(8);
        let path = Path::new("t.gguf");
        let good = file(3);
        let (_, specials) = tokenizer_of(&Meta { file: &good, path }, &cfg).unwrap();
        assert_eq!((specials.eos, specials.mask), (3, 7));
        let bad = file(6);
        let e = tokenizer_of(&Meta { file: &bad, path }, &cfg)
            .err()
            .expect("eos on a padded row")
            .to_string();
        assert!(
            e.contains("tokenizer.ggml.eos_token_id") && e.contains("names no token"),
            "{e}"
        );
    }

    /// A one-layer LLaDA config of width 8 and `vocab` tokens, for the tokenizer tests.
    fn tiny_config(vocab: u64) -> ModelConfig {
        ModelConfig {
            family: Family::Llada,
            architecture: "llada".into(),
            dim: 8,
            hidden_dim: 16,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 2,
            vocab_size: vocab,
            max_seq_len: 16,
            rope_theta: 1e4,
            norm_eps: 1e-5,
            qkv_bias: false,
            tied_head: false,
        }
    }

    #[test]
    fn the_chat_template_flags_apply_to_a_gguf_file() {
        // A template without a generation prompt cannot be reduced; `--no-chat-template` and
        // `--chat-template FILE` must get past it, as the error message says they do.
        let tokens = ["a", "b", "ab", "<s>", "</s>"];
        let mut b = super::super::reader::tests::Builder::new()
            .kv_str("tokenizer.ggml.model", "gpt2")
            .kv_str("tokenizer.ggml.pre", "qwen2")
            .kv_str(
                "tokenizer.chat_template",
                "{% for m in messages %}{{ m['content'] }}{% endfor %}",
            )
            .kv_u32("tokenizer.ggml.bos_token_id", 3)
            .kv_u32("tokenizer.ggml.eos_token_id", 4)
            .kv_u32("tokenizer.ggml.mask_token_id", 2);
        b.kv.push(("tokenizer.ggml.tokens".into(), 9, gstrs(&tokens)));
        b.kv.push(("tokenizer.ggml.merges".into(), 9, gstrs(&["a b"])));
        let file = reader::parse(&b.build()).unwrap();
        let cfg = tiny_config(5);
        let m = Meta {
            file: &file,
            path: Path::new("t.gguf"),
        };
        let (tok, specials) = tokenizer_of(&m, &cfg).unwrap();

        let e = chat_of(&m, &tok, &specials, &ChatTemplateSource::TokenizerConfig)
            .expect_err("a template without a generation prompt")
            .to_string();
        assert!(e.contains("t.gguf"), "{e}");
        assert!(
            chat_of(&m, &tok, &specials, &ChatTemplateSource::None)
                .unwrap()
                .is_none()
        );

        let dir = std::env::temp_dir().join(format!("dlm-gguf-chat-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let given = dir.join("chat.jinja");
        std::fs::write(
            &given,
            "{% for m in messages %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}\
             {% if add_generation_prompt %}<assistant>{% endif %}",
        )
        .unwrap();
        let pieces = chat_of(
            &m,
            &tok,
            &specials,
            &ChatTemplateSource::File(given.clone()),
        );
        let missing = dir.join("missing.jinja");
        let e = chat_of(&m, &tok, &specials, &ChatTemplateSource::File(missing))
            .expect_err("no such file")
            .to_string();
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(pieces.unwrap().is_some());
        assert!(e.contains("missing.jinja"), "{e}");
    }

    #[test]
    fn unpermute_inverts_llama_cpp_s_permutation() {
        // llama.cpp: reshape(heads, 2, hd/2, ...).swapaxes(1, 2): permuted row h·hd + 2i + j
        // holds original row h·hd + j·hd/2 + i. Build that from labelled rows and undo it.
        let (heads, hd, rb) = (3usize, 8usize, 5usize);
        let rows = heads * hd;
        let orig: Vec<u8> = (0..rows * rb).map(|x| (x / rb) as u8).collect();
        let mut permuted = vec![0u8; orig.len()];
        for h in 0..heads {
            for i in 0..hd / 2 {
                for j in 0..2 {
                    let (o, p) = (h * hd + j * hd / 2 + i, h * hd + 2 * i + j);
                    permuted[p * rb..(p + 1) * rb].copy_from_slice(&orig[o * rb..(o + 1) * rb]);
                }
            }
        }
        assert_ne!(permuted, orig);
        assert_eq!(unpermute_rows(&permuted, rows, heads), orig);
    }
}
