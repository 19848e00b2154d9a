//! HF checkpoint folder or llama.cpp GGUF file to `.dlm`: safetensors shards, config and
//! tokenizer JSON, GGUF import, quantization policy. [`convert`] is the whole job; the modules are its steps in data-flow order.
#![forbid(unsafe_code)]

pub mod chat;
mod error;
pub mod gguf;
pub mod hf;
mod progress;
pub mod quant;
mod safetensors;
pub mod tokenizer;

pub use error::{ConvertError, Result};
pub use hf::Family;
pub use progress::{Progress, StderrProgress};
pub use quant::{QuantMix, QuantPolicy, TensorRole, encode_tensor};
pub use safetensors::check_safetensors_bytes;

use dlm_formats::{DlmWriter, MetaValue, QuantType, TensorDecl, keys};
use error::io_err;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What to convert, where to, and how to store the weights.
#[derive(Debug, Clone)]
pub struct ConvertOptions {
    /// The Hugging Face checkpoint folder.
    pub input: PathBuf,
    /// The `.dlm` file to write (through a unique temporary file beside it, renamed when
    /// complete and read back).
    pub output: PathBuf,
    /// Storage type per tensor (`--dtype` / `--quant`).
    pub policy: QuantPolicy,
    /// `general.name`; the input folder's name when `None`.
    pub name: Option<String>,
    /// Where the chat template comes from.
    pub chat_template: ChatTemplateSource,
}

/// The chat template to reduce into the file's `chat.*` keys.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ChatTemplateSource {
    /// `chat_template` of `tokenizer_config.json` (none when it has none).
    #[default]
    TokenizerConfig,
    /// A Jinja template read from this file (`--chat-template FILE`), for a checkpoint whose
    /// own template cannot be reduced.
    File(PathBuf),
    /// No chat template (`--no-chat-template`): the file gets no `chat.*` keys.
    None,
}

impl ConvertOptions {
    /// Convert `input` to `output` in f32 (the exact path), named after the folder.
    pub fn new(input: impl Into<PathBuf>, output: impl Into<PathBuf>) -> Self {
        ConvertOptions {
            input: input.into(),
            output: output.into(),
            policy: QuantPolicy::Uniform(QuantType::F32),
            name: None,
            chat_template: ChatTemplateSource::TokenizerConfig,
        }
    }
}

/// What a finished conversion did.
#[derive(Debug, Clone)]
pub struct ConvertReport {
    /// The family converted.
    pub family: Family,
    /// Tensors written.
    pub n_tensors: usize,
    /// Size of the written file in bytes.
    pub bytes_written: u64,
    /// Wall-clock seconds the conversion took.
    pub seconds: f64,
    /// Things the caller should know that did not stop the conversion (no chat template...).
    pub warnings: Vec<String>,
    /// Things done to the weights that the caller should hear of (transcodes, dequantized
    /// types of a GGUF file).
    pub notices: Vec<String>,
    /// What the file really holds per storage type, and which tensors fell back.
    pub mix: QuantMix,
}

/// Parse the JSON file at `path`.
pub(crate) fn read_json(path: &Path) -> Result<Value> {
    let bytes = std::fs::read(path).map_err(io_err(path))?;
    serde_json::from_slice(&bytes).map_err(|source| ConvertError::Json {
        path: path.to_path_buf(),
        source,
    })
}

fn read_required_json(path: &Path, needed_for: &'static str) -> Result<Value> {
    if !path.is_file() {
        return Err(ConvertError::MissingFile {
            path: path.to_path_buf(),
            needed_for,
        });
    }
    read_json(path)
}

fn read_optional_json(path: &Path) -> Result<Value> {
    if path.is_file() {
        read_json(path)
    } else {
        Ok(Value::Object(Default::default()))
    }
}

/// Convert the checkpoint folder (or llama.cpp GGUF file) `opts.input` into the `.dlm` file
/// `opts.output`, calling `progress` once before the first tensor is written (with the size
/// to be written) and after each tensor. Nothing appears under `opts.output`
/// unless it completes.
pub fn convert(
    opts: &ConvertOptions,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<ConvertReport> {
    if gguf::is_gguf(&opts.input) {
        return gguf::convert_gguf(opts, progress);
    }
    let start = Instant::now();
    refuse_output_naming_an_input(opts)?;
    let files = hf::FolderFiles::in_dir(&opts.input);
    let config = read_required_json(&files.config, "the model's shape")?;
    let cfg = hf::model_config(&config, &files.config)?;
    let gen_config = read_optional_json(&files.generation_config)?;
    let tok_config = read_optional_json(&files.tokenizer_config)?;
    let tok_json = read_required_json(&files.tokenizer, "the tokenizer")?;
    let tok = tokenizer::parse(&tok_json, &files.tokenizer, cfg.vocab_size)?;
    let mut warnings = Vec::new();

    let mut meta: Vec<(String, MetaValue)> = Vec::new();
    let mut put = |k: &str, v: MetaValue| meta.push((k.to_string(), v));
    let name = match &opts.name {
        Some(n) => n.clone(),
        None => folder_name(&opts.input),
    };
    put(keys::general::NAME, MetaValue::Str(name));
    put(
        keys::general::ARCHITECTURE,
        MetaValue::Str(cfg.architecture.clone()),
    );
    put(
        keys::general::QUANT_POLICY,
        MetaValue::Str(opts.policy.name().into()),
    );
    put(
        keys::general::WRITER,
        MetaValue::Str(format!("dlm-convert {}", env!("CARGO_PKG_VERSION"))),
    );
    model_meta(&cfg, &mut put);

    // Tokenizer and special ids.
    let specials = special_ids(&cfg, &config, &gen_config, &tok_config, &tok, &files)?;
    tokenizer_meta(&tok, &specials, &mut put);

    // Chat template.
    let chat = match &opts.chat_template {
        ChatTemplateSource::TokenizerConfig => {
            chat_pieces(&tok_config, &tok, &specials, &files.tokenizer_config, None)?
        }
        ChatTemplateSource::File(path) => {
            let source = std::fs::read_to_string(path).map_err(io_err(path))?;
            chat_pieces(&tok_config, &tok, &specials, path, Some(source))?
        }
        ChatTemplateSource::None => None,
    };
    match chat {
        Some(p) => chat_meta(&p, &mut put),
        None if opts.chat_template == ChatTemplateSource::None => {}
        None => warnings.push(format!(
            "{}: no chat template; the file has no chat.* keys",
            files.tokenizer_config.display()
        )),
    }

    // Decoding defaults.
    let d = hf::diffusion_defaults(cfg.family, &gen_config, &files.generation_config)?;
    diffusion_meta(specials.mask, d, &mut put);

    // Weights: check everything before writing anything.
    let ckpt = safetensors::Checkpoint::open(&opts.input)?;
    let plan = hf::tensor_plan(&cfg);
    let mut decls = Vec::with_capacity(plan.len());
    let mut bytes_total = 0u64;
    let mut mix = QuantMix::default();
    for t in &plan {
        let (file, entry) = ckpt.get(&t.hf)?;
        if entry.shape != t.shape {
            return Err(ConvertError::ShapeMismatch {
                path: file.path.clone(),
                tensor: t.hf.clone(),
                expected: t.shape.clone(),
                found: entry.shape.clone(),
            });
        }
        if safetensors::to_f32(entry.dtype, &[]).is_none() {
            return Err(ConvertError::UnsupportedDtype {
                path: file.path.clone(),
                tensor: t.hf.clone(),
                dtype: entry.dtype.name().into(),
            });
        }
        let source = match entry.dtype {
            safetensors::Dtype::F16 => QuantType::F16,
            safetensors::Dtype::BF16 => QuantType::BF16,
            _ => QuantType::F32,
        };
        let wanted = opts.policy.wanted(t.role, source);
        let quant = opts.policy.choose(t.role, &t.shape, source);
        if !quant::encoder_available(quant) {
            return Err(ConvertError::QuantUnavailable { quant });
        }
        let n_bytes = quant
            .tensor_bytes(&t.shape)
            .ok_or_else(|| ConvertError::BadQuantShape {
                quant,
                tensor: t.ours.clone(),
                shape: t.shape.clone(),
            })?;
        bytes_total += n_bytes;
        mix.add(&t.ours, wanted, quant, n_bytes);
        decls.push(TensorDecl {
            name: t.ours.clone(),
            quant,
            shape: t.shape.clone(),
        });
    }
    let used: std::collections::HashSet<&str> = plan.iter().map(|t| t.hf.as_str()).collect();
    let tied_head = hf::tensor_plan(&hf::ModelConfig {
        tied_head: false,
        ..cfg.clone()
    })
    .into_iter()
    .find(|t| t.ours == "head")
    .map(|t| t.hf);
    let mut unused: Vec<&str> = ckpt
        .names()
        .filter(|n| !used.contains(n) && !hf::is_ignorable(n) && Some(*n) != tied_head.as_deref())
        .collect();
    unused.sort_unstable();
    if let Some(n) = unused.first() {
        let (file, _) = ckpt.get(n)?;
        return Err(ConvertError::UnexpectedTensor {
            path: file.path.clone(),
            tensor: n.to_string(),
        });
    }

    meta.push((
        keys::general::QUANT_MIX.to_string(),
        MetaValue::ArrStr(mix.to_meta()),
    ));

    let format_err = |source| ConvertError::Format {
        path: opts.output.clone(),
        source,
    };
    let mut writer = DlmWriter::create(&opts.output, &meta, &decls).map_err(format_err)?;
    let mut bytes_done = 0u64;
    progress(Progress::start(decls.len(), bytes_total));
    for (i, (t, decl)) in plan.iter().zip(&decls).enumerate() {
        let (file, entry) = ckpt.get(&t.hf)?;
        let raw = file.read_bytes(entry)?;
        let passthrough = matches!(
            (entry.dtype, decl.quant),
            (safetensors::Dtype::F32, QuantType::F32)
                | (safetensors::Dtype::F16, QuantType::F16)
                | (safetensors::Dtype::BF16, QuantType::BF16)
        );
        let data = if passthrough {
            raw
        } else {
            let values = safetensors::to_f32(entry.dtype, &raw).ok_or_else(|| {
                ConvertError::UnsupportedDtype {
                    path: file.path.clone(),
                    tensor: t.hf.clone(),
                    dtype: entry.dtype.name().into(),
                }
            })?;
            drop(raw);
            encode_tensor(decl.quant, &decl.shape, &values).map_err(|e| match e {
                ConvertError::Encode { quant, source, .. } => ConvertError::Encode {
                    tensor: decl.name.clone(),
                    quant,
                    source,
                },
                e => e,
            })?
        };
        check_small_tensor(&file.path, decl, t.role, &data)?;
        writer.write_tensor(&decl.name, &data).map_err(format_err)?;
        bytes_done += data.len() as u64;
        progress(Progress {
            tensor: &decl.name,
            tensors_done: i + 1,
            tensors_total: decls.len(),
            bytes_done,
            bytes_total,
        });
    }
    let bytes_written = writer.finish().map_err(format_err)?;
    Ok(ConvertReport {
        family: cfg.family,
        n_tensors: decls.len(),
        bytes_written,
        seconds: start.elapsed().as_secs_f64(),
        warnings,
        notices: Vec::new(),
        mix,
    })
}

/// The `tokenizer.*` keys of `tok` and `specials`.
pub(crate) fn tokenizer_meta(
    tok: &tokenizer::Tokenizer,
    specials: &Specials,
    put: &mut impl FnMut(&str, MetaValue),
) {
    put(
        keys::tokenizer::MODEL,
        MetaValue::Str("bpe_bytelevel".into()),
    );
    put(
        keys::tokenizer::TOKENS,
        MetaValue::ArrStr(tok.tokens.clone()),
    );
    put(
        keys::tokenizer::MERGES,
        MetaValue::ArrStr(tok.merges.clone()),
    );
    put(
        keys::tokenizer::ADDED_IDS,
        MetaValue::ArrU32(tok.added_ids.clone()),
    );
    put(
        keys::tokenizer::ADDED_FLAGS,
        MetaValue::ArrU32(tok.added_flags.clone()),
    );
    put(
        keys::tokenizer::SPECIAL_IDS,
        MetaValue::ArrU32(tok.special_ids.clone()),
    );
    put(keys::tokenizer::PRE, MetaValue::Str(tok.pre.into()));
    put(
        keys::tokenizer::NORMALIZER,
        MetaValue::Str(tok.normalizer.into()),
    );
    put(
        keys::tokenizer::IGNORE_MERGES,
        MetaValue::Bool(tok.ignore_merges),
    );
    put(keys::tokenizer::BOS_ID, MetaValue::U32(specials.bos));
    put(keys::tokenizer::EOS_ID, MetaValue::U32(specials.eos));
    put(keys::tokenizer::PAD_ID, MetaValue::U32(specials.pad));
    if let Some(eot) = specials.eot {
        put(keys::tokenizer::EOT_ID, MetaValue::U32(eot));
    }
}

/// The `chat.*` keys of `p`.
pub(crate) fn chat_meta(p: &chat::ChatPieces, put: &mut impl FnMut(&str, MetaValue)) {
    for (k, v) in [
        (keys::chat::PREFIX, &p.prefix),
        (keys::chat::SYSTEM_PREFIX, &p.system_prefix),
        (keys::chat::SYSTEM_SUFFIX, &p.system_suffix),
        (keys::chat::USER_PREFIX, &p.user_prefix),
        (keys::chat::USER_SUFFIX, &p.user_suffix),
        (keys::chat::ASSISTANT_PREFIX, &p.assistant_prefix),
        (keys::chat::ASSISTANT_SUFFIX, &p.assistant_suffix),
        (keys::chat::GENERATION_PROMPT, &p.generation_prompt),
        (keys::chat::DEFAULT_SYSTEM, &p.default_system),
    ] {
        put(k, MetaValue::Str(v.clone()));
    }
    put(keys::chat::TRIM_CONTENT, MetaValue::Bool(p.trim_content));
}

/// The `diffusion.*` keys: the mask id and the decoding defaults `d`.
pub(crate) fn diffusion_meta(
    mask: u32,
    d: hf::DiffusionDefaults,
    put: &mut impl FnMut(&str, MetaValue),
) {
    put(keys::diffusion::MASK_ID, MetaValue::U32(mask));
    put(keys::diffusion::ALGORITHM, MetaValue::Str(d.algorithm));
    put(keys::diffusion::STEPS, MetaValue::U32(d.steps));
    put(keys::diffusion::GEN_LENGTH, MetaValue::U32(d.gen_length));
    put(
        keys::diffusion::BLOCK_LENGTH,
        MetaValue::U32(d.block_length),
    );
    put(keys::diffusion::THRESHOLD, MetaValue::F32(d.threshold));
    put(keys::diffusion::TEMPERATURE, MetaValue::F32(d.temperature));
    put(keys::diffusion::EPS, MetaValue::F32(d.eps));
    put(keys::diffusion::TOP_K, MetaValue::U32(d.top_k));
    put(
        keys::diffusion::MIN_PER_STEP,
        MetaValue::U32(d.min_per_step),
    );
    if let Some(w) = d.elastic.window {
        put(keys::diffusion::ELASTIC_WINDOW, MetaValue::U32(w));
    }
    if let Some(g) = d.elastic.gamma {
        put(keys::diffusion::ELASTIC_GAMMA, MetaValue::F32(g));
    }
    if let Some(t) = d.elastic.track {
        put(keys::diffusion::ELASTIC_TRACK, MetaValue::U32(t));
    }
    if let Some(r) = d.elastic.prefix_refresh {
        put(
            keys::diffusion::ELASTIC_PREFIX_REFRESH,
            MetaValue::U32(u32::from(r)),
        );
    }
}

fn folder_name(dir: &Path) -> String {
    let canon = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canon
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "model".into())
}

pub(crate) fn model_meta(cfg: &hf::ModelConfig, put: &mut impl FnMut(&str, MetaValue)) {
    // model_config checked every integer is below 2^32.
    let u = |v: u64| MetaValue::U32(v as u32);
    put(
        keys::model::FAMILY,
        MetaValue::Str(cfg.family.name().into()),
    );
    put(keys::model::DIM, u(cfg.dim));
    put(keys::model::HIDDEN_DIM, u(cfg.hidden_dim));
    put(keys::model::N_LAYERS, u(cfg.n_layers));
    put(keys::model::N_HEADS, u(cfg.n_heads));
    put(keys::model::N_KV_HEADS, u(cfg.n_kv_heads));
    put(keys::model::VOCAB_SIZE, u(cfg.vocab_size));
    put(keys::model::MAX_SEQ_LEN, u(cfg.max_seq_len));
    put(
        keys::model::ROPE_THETA,
        MetaValue::F32(cfg.rope_theta as f32),
    );
    put(keys::model::NORM_EPS, MetaValue::F32(cfg.norm_eps as f32));
    put(keys::model::QKV_BIAS, MetaValue::Bool(cfg.qkv_bias));
    put(keys::model::TIED_HEAD, MetaValue::Bool(cfg.tied_head));
    put(
        keys::model::SHIFT_LOGITS,
        MetaValue::Bool(cfg.family == Family::Dream),
    );
}

/// The special token ids the file records.
pub(crate) struct Specials {
    pub(crate) bos: u32,
    pub(crate) eos: u32,
    pub(crate) pad: u32,
    pub(crate) eot: Option<u32>,
    pub(crate) mask: u32,
}

fn special_ids(
    cfg: &hf::ModelConfig,
    config: &Value,
    gen_config: &Value,
    tok_config: &Value,
    tok: &tokenizer::Tokenizer,
    files: &hf::FolderFiles,
) -> Result<Specials> {
    let by_text = |key: &str| hf::text_from(tok_config, key).and_then(|t| tok.id_of(&t));
    let lookup = |id_key: &str, text_key: &str| {
        hf::id_from(&[config, gen_config], id_key).or_else(|| by_text(text_key).map(u64::from))
    };
    let check = |what: &str, id: Option<u64>| -> Result<u32> {
        let id = id.ok_or_else(|| ConvertError::Tokenizer {
            path: files.config.clone(),
            reason: format!(
                "no {what} id in config.json, generation_config.json or tokenizer_config.json"
            ),
        })?;
        if id >= cfg.vocab_size {
            return Err(ConvertError::BadConfigValue {
                path: files.config.clone(),
                key: format!("{what}_token_id"),
                reason: format!("{id} is not below the vocab size {}", cfg.vocab_size),
            });
        }
        Ok(id as u32)
    };
    let bos = check("bos", lookup(hf::BOS_ID_KEY, hf::BOS_TEXT_KEY))?;
    let eos = check("eos", lookup(hf::EOS_ID_KEY, hf::EOS_TEXT_KEY))?;
    let pad = match lookup(hf::PAD_ID_KEY, hf::PAD_TEXT_KEY) {
        Some(id) => check("pad", Some(id))?,
        None => eos,
    };
    let eot = hf::EOT_TOKEN_TEXTS.iter().find_map(|t| tok.id_of(t));
    let mask_guess = hf::id_from(&[config, gen_config], hf::MASK_ID_KEY)
        .or_else(|| {
            hf::MASK_TOKEN_TEXTS
                .iter()
                .find_map(|t| tok.id_of(t))
                .map(u64::from)
        })
        .or_else(|| by_text(hf::MASK_TEXT_KEY).map(u64::from))
        .or_else(|| {
            (cfg.family == Family::Llada && hf::LLADA_MASK_ID < cfg.vocab_size)
                .then_some(hf::LLADA_MASK_ID)
        });
    let mask = check("mask", mask_guess)?;
    Ok(Specials {
        bos,
        eos,
        pad,
        eot,
        mask,
    })
}

/// Refuse an output path that is one of the files of the input folder: the rename would put
/// the `.dlm` in its place. Compared by device and inode where the platform has them (a
/// symlink or hard link to an input counts), by canonical path elsewhere.
fn refuse_output_naming_an_input(opts: &ConvertOptions) -> Result<()> {
    let Ok(out_md) = std::fs::metadata(&opts.output) else {
        // Nothing there yet: it cannot be an input.
        return Ok(());
    };
    let Ok(entries) = std::fs::read_dir(&opts.input) else {
        // The folder's own errors are reported where it is read.
        return Ok(());
    };
    for e in entries.flatten() {
        let path = e.path();
        let Ok(md) = std::fs::metadata(&path) else {
            continue;
        };
        if same_file(&out_md, &md, &opts.output, &path) {
            return Err(ConvertError::OutputIsInput {
                output: opts.output.clone(),
                input: path,
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &std::fs::Metadata, b: &std::fs::Metadata, _: &Path, _: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &std::fs::Metadata, _: &std::fs::Metadata, a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}

fn chat_pieces(
    tok_config: &Value,
    tok: &tokenizer::Tokenizer,
    specials: &Specials,
    path: &Path,
    given: Option<String>,
) -> Result<Option<chat::ChatPieces>> {
    let from_config = if given.is_some() {
        None
    } else {
        tok_config.get(hf::CHAT_TEMPLATE_KEY)
    };
    let source = match (given, from_config) {
        (Some(s), _) => s,
        (None, v) => match v {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            // Newer files hold a list of named templates; the runtime uses the default one.
            Some(Value::Array(list)) => list
                .iter()
                .find(|t| t.get("name").and_then(Value::as_str) == Some("default"))
                .and_then(|t| t.get("template"))
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| ConvertError::ChatTemplate {
                    path: path.to_path_buf(),
                    reason: "a list of templates without one named \"default\"".into(),
                })?,
            Some(v) => {
                return Err(ConvertError::ChatTemplate {
                    path: path.to_path_buf(),
                    reason: format!("chat_template is neither a string nor a list: {v}"),
                });
            }
        },
    };
    let text = |key: &str, id: u32| {
        hf::text_from(tok_config, key)
            .unwrap_or_else(|| tok.tokens.get(id as usize).cloned().unwrap_or_default())
    };
    let bos = text(hf::BOS_TEXT_KEY, specials.bos);
    let eos = text(hf::EOS_TEXT_KEY, specials.eos);
    let err = |reason: String| ConvertError::ChatTemplate {
        path: path.to_path_buf(),
        reason,
    };
    let tmpl = chat::Template::new(&source, &bos, &eos).map_err(err)?;
    chat::reduce(&tmpl).map(Some).map_err(err)
}

/// A norm weight or bias to be written holds only finite values: the runtime refuses a file
/// whose do not, so the converter refuses it first, naming the tensor (a few KiB per model).
pub(crate) fn check_small_tensor(
    path: &Path,
    decl: &TensorDecl,
    role: TensorRole,
    data: &[u8],
) -> Result<()> {
    if !matches!(role, TensorRole::Norm | TensorRole::Bias) {
        return Ok(());
    }
    let n: u64 = decl.shape.iter().product();
    let mut v = vec![0f32; n as usize];
    dlm_formats::quant::dequantize(decl.quant, data, &mut v).map_err(|source| {
        ConvertError::Encode {
            tensor: decl.name.clone(),
            quant: decl.quant,
            source,
        }
    })?;
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(index) => Err(ConvertError::NonFinite {
            path: path.to_path_buf(),
            tensor: decl.name.clone(),
            index,
            value: v[index],
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by the gguf_reader fuzz target: a NaN in a norm weight reached the file and the
    /// runtime refused it at load; the converter refuses it, naming the tensor and index.
    #[test]
    fn a_non_finite_norm_is_refused_before_it_is_written() {
        let decl = TensorDecl {
            name: "out_norm".into(),
            quant: QuantType::F32,
            shape: vec![3],
        };
        let bytes = |v: [f32; 3]| -> Vec<u8> { v.iter().flat_map(|x| x.to_le_bytes()).collect() };
        let p = Path::new("m.gguf");
        check_small_tensor(p, &decl, TensorRole::Norm, &bytes([1.0, 2.0, 3.0])).unwrap();
        let e = check_small_tensor(p, &decl, TensorRole::Norm, &bytes([1.0, f32::NAN, 3.0]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("out_norm") && e.contains("index 1"), "{e}");
        let e = check_small_tensor(
            p,
            &decl,
            TensorRole::Bias,
            &bytes([f32::INFINITY, 0.0, 0.0]),
        );
        assert!(e.is_err());
        // Matrices are not checked here (the runtime's --verify reads them).
        check_small_tensor(p, &decl, TensorRole::AttnV, &bytes([f32::NAN; 3])).unwrap();
    }
}
