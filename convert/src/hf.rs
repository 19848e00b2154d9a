//! The one table from Hugging Face names to ours: config keys, tensor names, and decoding
//! defaults per family. Nothing else in the project knows a Hugging Face name.
//!
//! LLaDA's feed-forward (`LLaDALlamaBlock` in `modeling_llada.py`): `x, x_up = ff_proj(x),
//! up_proj(x); x = act(x) * x_up; x = ff_out(x)` with `act` = SiLU. So `ff_proj` is the SiLU
//! (gate) branch → our `w_gate`, `up_proj` the linear branch → `w_up`, `ff_out` the down
//! projection → `w_down`. The block-level `ff_out` must not be confused with the model-level
//! `model.transformer.ff_out` (the head).

use crate::error::{ConvertError, Result};
use crate::quant::TensorRole;
pub use dlm_formats::Family;
use dlm_formats::tensors;
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The transformer shape, in our names, read from `config.json`.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Which family.
    pub family: Family,
    /// The architecture string the config declared.
    pub architecture: String,
    /// Residual width.
    pub dim: u64,
    /// SwiGLU hidden width.
    pub hidden_dim: u64,
    /// Transformer blocks.
    pub n_layers: u64,
    /// Query heads.
    pub n_heads: u64,
    /// Key/value heads.
    pub n_kv_heads: u64,
    /// Rows of the embedding and the head.
    pub vocab_size: u64,
    /// Longest sequence.
    pub max_seq_len: u64,
    /// RoPE base.
    pub rope_theta: f64,
    /// RMSNorm epsilon.
    pub norm_eps: f64,
    /// q/k/v carry biases.
    pub qkv_bias: bool,
    /// The head is the embedding.
    pub tied_head: bool,
}

impl ModelConfig {
    /// Width of one head.
    pub fn head_dim(&self) -> u64 {
        self.dim / self.n_heads
    }
}

/// How a config value is found per family: the first present key wins; `Default` when none is.
enum Source {
    /// Keys in order of preference.
    Keys(&'static [&'static str]),
    /// Not in this family's config: always this value.
    Const(f64),
}

/// A default used when no key of a row is present.
#[derive(Clone, Copy)]
enum Fallback {
    Required,
    Value(f64),
    /// Same as the field `n_heads` (for `n_kv_heads`).
    NHeads,
    /// `mlp_ratio × dim` (LLaDA's hidden width when `mlp_hidden_size` is null).
    MlpRatio,
}

/// One row of the config table: our field, where each family keeps it, and its default.
struct ConfigRow {
    ours: &'static str,
    llada: Source,
    dream: Source,
    fallback: Fallback,
}

use Source::{Const, Keys};

/// The config table. Booleans are 0/1.
const CONFIG_TABLE: &[ConfigRow] = &[
    ConfigRow {
        ours: "dim",
        llada: Keys(&["d_model"]),
        dream: Keys(&["hidden_size"]),
        fallback: Fallback::Required,
    },
    ConfigRow {
        ours: "n_heads",
        llada: Keys(&["n_heads"]),
        dream: Keys(&["num_attention_heads"]),
        fallback: Fallback::Required,
    },
    ConfigRow {
        ours: "n_kv_heads",
        llada: Keys(&["n_kv_heads"]),
        dream: Keys(&["num_key_value_heads"]),
        fallback: Fallback::NHeads,
    },
    ConfigRow {
        ours: "n_layers",
        llada: Keys(&["n_layers"]),
        dream: Keys(&["num_hidden_layers"]),
        fallback: Fallback::Required,
    },
    ConfigRow {
        ours: "hidden_dim",
        llada: Keys(&["mlp_hidden_size"]),
        dream: Keys(&["intermediate_size"]),
        fallback: Fallback::MlpRatio,
    },
    ConfigRow {
        ours: "vocab_size",
        llada: Keys(&["embedding_size", "vocab_size"]),
        dream: Keys(&["vocab_size"]),
        fallback: Fallback::Required,
    },
    ConfigRow {
        ours: "max_seq_len",
        llada: Keys(&["max_sequence_length"]),
        dream: Keys(&["max_position_embeddings"]),
        fallback: Fallback::Required,
    },
    ConfigRow {
        ours: "rope_theta",
        llada: Keys(&["rope_theta"]),
        dream: Keys(&["rope_theta"]),
        fallback: Fallback::Value(10000.0),
    },
    ConfigRow {
        ours: "norm_eps",
        llada: Keys(&["rms_norm_eps"]),
        dream: Keys(&["rms_norm_eps"]),
        fallback: Fallback::Value(1e-6),
    },
    ConfigRow {
        ours: "qkv_bias",
        llada: Keys(&["include_qkv_bias"]),
        dream: Const(1.0),
        fallback: Fallback::Value(0.0),
    },
    ConfigRow {
        ours: "tied_head",
        llada: Keys(&["weight_tying"]),
        dream: Keys(&["tie_word_embeddings"]),
        fallback: Fallback::Value(0.0),
    },
];

/// Config settings that must hold a given value, or the checkpoint uses something the runtime
/// lacks: (family, key, accepted values; `null` = absent or null).
const REQUIRED_SETTINGS: &[(Family, &str, &[&str])] = &[
    (Family::Llada, "block_type", &["llama"]),
    (Family::Llada, "layer_norm_type", &["rms", "null"]),
    (
        Family::Llada,
        "activation_type",
        &["silu", "swiglu", "null"],
    ),
    (Family::Llada, "alibi", &["false", "null"]),
    (Family::Llada, "rope", &["true", "null"]),
    (Family::Llada, "include_bias", &["false", "null"]),
    (Family::Llada, "attention_layer_norm", &["false", "null"]),
    (Family::Llada, "scale_logits", &["false", "null"]),
    (Family::Llada, "input_emb_norm", &["false", "null"]),
    (Family::Dream, "hidden_act", &["silu", "null"]),
    (Family::Dream, "rope_scaling", &["null"]),
    (Family::Dream, "use_sliding_window", &["false", "null"]),
];

/// Architecture strings (`architectures[0]`) and `model_type`s per family.
const ARCHITECTURES: &[(&str, Family)] = &[
    ("LLaDAModelLM", Family::Llada),
    ("llada", Family::Llada),
    ("DreamModel", Family::Dream),
    ("Dream", Family::Dream),
    ("dream", Family::Dream),
];

fn family_of(config: &Value, path: &Path) -> Result<(Family, String)> {
    let arch = config
        .get("architectures")
        .and_then(Value::as_array)
        .and_then(|a| a.first())
        .and_then(Value::as_str);
    let model_type = config.get("model_type").and_then(Value::as_str);
    for name in [arch, model_type].into_iter().flatten() {
        if let Some((_, fam)) = ARCHITECTURES.iter().find(|(a, _)| *a == name) {
            return Ok((*fam, arch.unwrap_or(name).to_string()));
        }
    }
    Err(ConvertError::UnknownArchitecture {
        path: path.to_path_buf(),
        architecture: arch.or(model_type).unwrap_or("<none declared>").to_string(),
    })
}

fn value_str(v: Option<&Value>) -> String {
    match v {
        None | Some(Value::Null) => "null".into(),
        Some(Value::String(s)) => s.clone(),
        Some(v) => v.to_string(),
    }
}

/// Read `config.json` (already parsed) into our shape, checking every value.
pub fn model_config(config: &Value, path: &Path) -> Result<ModelConfig> {
    let (family, architecture) = family_of(config, path)?;
    for (fam, key, accepted) in REQUIRED_SETTINGS {
        if *fam != family {
            continue;
        }
        let got = value_str(config.get(*key));
        if !accepted.contains(&got.as_str()) {
            return Err(ConvertError::Unsupported {
                path: path.to_path_buf(),
                what: format!("{key} = {got} (supported: {})", accepted.join(", ")),
            });
        }
    }
    let bad = |key: &str, reason: String| ConvertError::BadConfigValue {
        path: path.to_path_buf(),
        key: key.to_string(),
        reason,
    };
    let mut vals = std::collections::HashMap::new();
    for row in CONFIG_TABLE {
        let src = match family {
            Family::Llada => &row.llada,
            Family::Dream => &row.dream,
        };
        let found = match src {
            Const(c) => Some(*c),
            Keys(keys) => {
                let mut found = None;
                for key in *keys {
                    match config.get(*key) {
                        None | Some(Value::Null) => continue,
                        Some(Value::Bool(b)) => found = Some(if *b { 1.0 } else { 0.0 }),
                        Some(v) => {
                            found =
                                Some(v.as_f64().ok_or_else(|| {
                                    bad(key, format!("expected a number, found {v}"))
                                })?)
                        }
                    }
                    break;
                }
                found
            }
        };
        let v = match (found, row.fallback) {
            (Some(v), _) => v,
            (None, Fallback::Value(v)) => v,
            (None, Fallback::NHeads) => vals["n_heads"],
            (None, Fallback::MlpRatio) => {
                let ratio = config
                    .get("mlp_ratio")
                    .and_then(Value::as_f64)
                    .ok_or_else(|| missing(path, "mlp_hidden_size|mlp_ratio"))?;
                ratio * vals["dim"]
            }
            (None, Fallback::Required) => {
                let keys = match src {
                    Keys(k) => k.join("|"),
                    Const(_) => row.ours.to_string(),
                };
                return Err(missing(path, &keys));
            }
        };
        vals.insert(row.ours, v);
    }
    let int = |name: &str| -> Result<u64> {
        let v = vals[name];
        if v.fract() != 0.0 || !(1.0..=(u32::MAX as f64)).contains(&v) {
            return Err(bad(
                name,
                format!("{v} is not a positive integer below 2^32"),
            ));
        }
        Ok(v as u64)
    };
    let cfg = ModelConfig {
        family,
        architecture,
        dim: int("dim")?,
        hidden_dim: int("hidden_dim")?,
        n_layers: int("n_layers")?,
        n_heads: int("n_heads")?,
        n_kv_heads: int("n_kv_heads")?,
        vocab_size: int("vocab_size")?,
        max_seq_len: int("max_seq_len")?,
        rope_theta: vals["rope_theta"],
        norm_eps: vals["norm_eps"],
        qkv_bias: vals["qkv_bias"] != 0.0,
        tied_head: vals["tied_head"] != 0.0,
    };
    // The runtime's limits, checked before anything is sized by these numbers (the tensor
    // plan has n_layers entries, the tokenizer vocab_size slots).
    dlm_formats::limits::check_shape(
        cfg.dim,
        cfg.hidden_dim,
        cfg.n_layers,
        cfg.n_heads,
        cfg.n_kv_heads,
        cfg.vocab_size,
        cfg.max_seq_len,
    )
    .map_err(|e| {
        let key = e.split(' ').next().unwrap_or("config").to_string();
        bad(&key, e)
    })?;
    if !cfg.dim.is_multiple_of(cfg.n_heads) {
        return Err(bad(
            "n_heads",
            format!("dim {} is not divisible by {} heads", cfg.dim, cfg.n_heads),
        ));
    }
    if cfg.n_kv_heads > cfg.n_heads || !cfg.n_heads.is_multiple_of(cfg.n_kv_heads) {
        return Err(bad(
            "n_kv_heads",
            format!(
                "{} kv heads do not divide {} query heads",
                cfg.n_kv_heads, cfg.n_heads
            ),
        ));
    }
    if cfg.rope_theta.is_nan()
        || cfg.rope_theta <= 0.0
        || cfg.norm_eps.is_nan()
        || cfg.norm_eps <= 0.0
    {
        return Err(bad("rope_theta|rms_norm_eps", "must be positive".into()));
    }
    runtime_requirements(&cfg).map_err(|e| bad("config", e))?;
    Ok(cfg)
}

/// What the runtime requires of a model's shape when it loads the file (its limits, an even
/// head size for RoPE, rope_theta and norm_eps finite once stored as f32), checked by every
/// import path, so the converter never writes a file the runtime refuses.
pub(crate) fn runtime_requirements(cfg: &ModelConfig) -> std::result::Result<(), String> {
    dlm_formats::limits::check_model(&dlm_formats::limits::ModelShape {
        dim: cfg.dim,
        hidden_dim: cfg.hidden_dim,
        n_layers: cfg.n_layers,
        n_heads: cfg.n_heads,
        n_kv_heads: cfg.n_kv_heads,
        vocab_size: cfg.vocab_size,
        seq_len: cfg.max_seq_len,
        rope_theta: cfg.rope_theta,
        norm_eps: cfg.norm_eps,
    })
}

fn missing(path: &Path, key: &str) -> ConvertError {
    ConvertError::MissingConfigKey {
        path: path.to_path_buf(),
        key: key.to_string(),
    }
}

/// The shape of a tensor, in terms of the config.
#[derive(Clone, Copy)]
enum Shape {
    VocabDim,
    Dim,
    QDim,
    KvDim,
    DimQ,
    HiddenDim,
    DimHidden,
    Q,
    Kv,
}

/// When a row is present.
#[derive(Clone, Copy, PartialEq)]
enum When {
    Always,
    QkvBias,
    Untied,
}

/// One row of the tensor table: our name, LLaDA's, Dream's (`{i}` = layer), and what it is.
struct TensorRow {
    ours: &'static str,
    llada: &'static str,
    dream: &'static str,
    role: TensorRole,
    shape: Shape,
    when: When,
}

const fn row(
    ours: &'static str,
    llada: &'static str,
    dream: &'static str,
    role: TensorRole,
    shape: Shape,
    when: When,
) -> TensorRow {
    TensorRow {
        ours,
        llada,
        dream,
        role,
        shape,
        when,
    }
}

use TensorRole as R;

/// Tensors before the blocks.
const HEAD_ROWS: &[TensorRow] = &[row(
    tensors::TOK_EMBD,
    "model.transformer.wte.weight",
    "model.embed_tokens.weight",
    R::Embedding,
    Shape::VocabDim,
    When::Always,
)];

/// Tensors of block `{i}`, in file order.
const BLOCK_ROWS: &[TensorRow] = &[
    row(
        tensors::ATTN_NORM,
        "model.transformer.blocks.{i}.attn_norm.weight",
        "model.layers.{i}.input_layernorm.weight",
        R::Norm,
        Shape::Dim,
        When::Always,
    ),
    row(
        tensors::WQ,
        "model.transformer.blocks.{i}.q_proj.weight",
        "model.layers.{i}.self_attn.q_proj.weight",
        R::AttnQk,
        Shape::QDim,
        When::Always,
    ),
    row(
        tensors::WK,
        "model.transformer.blocks.{i}.k_proj.weight",
        "model.layers.{i}.self_attn.k_proj.weight",
        R::AttnQk,
        Shape::KvDim,
        When::Always,
    ),
    row(
        tensors::WV,
        "model.transformer.blocks.{i}.v_proj.weight",
        "model.layers.{i}.self_attn.v_proj.weight",
        R::AttnV,
        Shape::KvDim,
        When::Always,
    ),
    row(
        tensors::BQ,
        "model.transformer.blocks.{i}.q_proj.bias",
        "model.layers.{i}.self_attn.q_proj.bias",
        R::Bias,
        Shape::Q,
        When::QkvBias,
    ),
    row(
        tensors::BK,
        "model.transformer.blocks.{i}.k_proj.bias",
        "model.layers.{i}.self_attn.k_proj.bias",
        R::Bias,
        Shape::Kv,
        When::QkvBias,
    ),
    row(
        tensors::BV,
        "model.transformer.blocks.{i}.v_proj.bias",
        "model.layers.{i}.self_attn.v_proj.bias",
        R::Bias,
        Shape::Kv,
        When::QkvBias,
    ),
    row(
        tensors::WO,
        "model.transformer.blocks.{i}.attn_out.weight",
        "model.layers.{i}.self_attn.o_proj.weight",
        R::AttnOut,
        Shape::DimQ,
        When::Always,
    ),
    row(
        tensors::FFN_NORM,
        "model.transformer.blocks.{i}.ff_norm.weight",
        "model.layers.{i}.post_attention_layernorm.weight",
        R::Norm,
        Shape::Dim,
        When::Always,
    ),
    row(
        tensors::W_GATE,
        "model.transformer.blocks.{i}.ff_proj.weight",
        "model.layers.{i}.mlp.gate_proj.weight",
        R::FfnGateUp,
        Shape::HiddenDim,
        When::Always,
    ),
    row(
        tensors::W_UP,
        "model.transformer.blocks.{i}.up_proj.weight",
        "model.layers.{i}.mlp.up_proj.weight",
        R::FfnGateUp,
        Shape::HiddenDim,
        When::Always,
    ),
    row(
        tensors::W_DOWN,
        "model.transformer.blocks.{i}.ff_out.weight",
        "model.layers.{i}.mlp.down_proj.weight",
        R::FfnDown,
        Shape::DimHidden,
        When::Always,
    ),
];

/// Tensors after the blocks.
const TAIL_ROWS: &[TensorRow] = &[
    row(
        tensors::OUT_NORM,
        "model.transformer.ln_f.weight",
        "model.norm.weight",
        R::Norm,
        Shape::Dim,
        When::Always,
    ),
    row(
        tensors::HEAD,
        "model.transformer.ff_out.weight",
        "lm_head.weight",
        R::Head,
        Shape::VocabDim,
        When::Untied,
    ),
];

/// Checkpoint tensors that carry no weights (recomputed buffers) and may be ignored.
const IGNORED_SUFFIXES: &[&str] = &["rotary_emb.inv_freq"];

/// One tensor to convert: our name, its Hugging Face name, role and expected shape.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorMap {
    /// Our name (`blk.0.wq`).
    pub ours: String,
    /// The checkpoint's name.
    pub hf: String,
    /// What it is, for the quantization policy.
    pub role: TensorRole,
    /// Row-major shape the config implies.
    pub shape: Vec<u64>,
}

/// Every tensor of the model `cfg` describes, in file order.
pub fn tensor_plan(cfg: &ModelConfig) -> Vec<TensorMap> {
    let q = cfg.n_heads * cfg.head_dim();
    let kv = cfg.n_kv_heads * cfg.head_dim();
    let shape = |s: Shape| -> Vec<u64> {
        match s {
            Shape::VocabDim => vec![cfg.vocab_size, cfg.dim],
            Shape::Dim => vec![cfg.dim],
            Shape::QDim => vec![q, cfg.dim],
            Shape::KvDim => vec![kv, cfg.dim],
            Shape::DimQ => vec![cfg.dim, q],
            Shape::HiddenDim => vec![cfg.hidden_dim, cfg.dim],
            Shape::DimHidden => vec![cfg.dim, cfg.hidden_dim],
            Shape::Q => vec![q],
            Shape::Kv => vec![kv],
        }
    };
    let present = |w: When| match w {
        When::Always => true,
        When::QkvBias => cfg.qkv_bias,
        When::Untied => !cfg.tied_head,
    };
    let mut out = Vec::new();
    let mut push = |r: &TensorRow, layer: Option<u64>| {
        if !present(r.when) {
            return;
        }
        let hf = match cfg.family {
            Family::Llada => r.llada,
            Family::Dream => r.dream,
        };
        let sub = |s: &str| match layer {
            Some(i) => s.replace("{i}", &i.to_string()),
            None => s.to_string(),
        };
        out.push(TensorMap {
            ours: sub(r.ours),
            hf: sub(hf),
            role: r.role,
            shape: shape(r.shape),
        });
    };
    HEAD_ROWS.iter().for_each(|r| push(r, None));
    for i in 0..cfg.n_layers {
        BLOCK_ROWS.iter().for_each(|r| push(r, Some(i)));
    }
    TAIL_ROWS.iter().for_each(|r| push(r, None));
    out
}

/// Whether a checkpoint tensor the plan does not use may be dropped silently.
pub fn is_ignorable(hf_name: &str) -> bool {
    IGNORED_SUFFIXES.iter().any(|s| hf_name.ends_with(s))
}

/// Tokenizer texts of the mask token, per family, tried in order when the config has no id.
pub const MASK_TOKEN_TEXTS: &[&str] = &["<|mdm_mask|>", "<|mask|>"];
/// LLaDA's mask id in the released checkpoints, the last resort when nothing names it.
pub const LLADA_MASK_ID: u64 = 126336;
/// End-of-turn token texts, tried in order.
pub const EOT_TOKEN_TEXTS: &[&str] = &["<|eot_id|>", "<|im_end|>"];

/// Config keys holding special token ids (in `config.json`, then `generation_config.json`).
pub const BOS_ID_KEY: &str = "bos_token_id";
/// See [`BOS_ID_KEY`].
pub const EOS_ID_KEY: &str = "eos_token_id";
/// See [`BOS_ID_KEY`].
pub const PAD_ID_KEY: &str = "pad_token_id";
/// See [`BOS_ID_KEY`].
pub const MASK_ID_KEY: &str = "mask_token_id";
/// `tokenizer_config.json` keys holding special token texts.
pub const BOS_TEXT_KEY: &str = "bos_token";
/// See [`BOS_TEXT_KEY`].
pub const EOS_TEXT_KEY: &str = "eos_token";
/// See [`BOS_TEXT_KEY`].
pub const PAD_TEXT_KEY: &str = "pad_token";
/// See [`BOS_TEXT_KEY`].
pub const MASK_TEXT_KEY: &str = "mask_token";
/// `tokenizer_config.json` key of the Jinja chat template.
pub const CHAT_TEMPLATE_KEY: &str = "chat_template";

/// Decoding defaults written to `diffusion.*`.
#[derive(Debug, Clone, PartialEq)]
pub struct DiffusionDefaults {
    /// Default algorithm name.
    pub algorithm: String,
    /// Denoising steps.
    pub steps: u32,
    /// Generated tokens.
    pub gen_length: u32,
    /// Semi-autoregressive block length.
    pub block_length: u32,
    /// Fast-dLLM threshold (0 = off).
    pub threshold: f32,
    /// With the threshold, the fewest commits per step (0 = Fast-dLLM's one): the few-step
    /// rule of a step-distilled model.
    pub min_per_step: u32,
    /// Sampling temperature (0 = greedy).
    pub temperature: f32,
    /// Dream's final timestep.
    pub eps: f32,
    /// Top-k filter before every softmax (0 = off).
    pub top_k: u32,
    /// Elastic-Cache settings the checkpoint was tuned with (`elastic_window`,
    /// `elastic_gamma`, `elastic_track`, `elastic_prefix_refresh` in
    /// `generation_config.json`); absent ones keep the
    /// runtime's defaults, so only a model that was measured carries them.
    pub elastic: ElasticDefaults,
}

/// Stored Elastic-Cache defaults; `None` = not written (the runtime's default applies).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct ElasticDefaults {
    /// Window: masks of the active block whose queries a step computes.
    pub window: Option<u32>,
    /// Drift threshold γ ∈ [0, 1].
    pub gamma: Option<f32>,
    /// Tracked most-attended tokens per layer.
    pub track: Option<u32>,
    /// Block openings over the decoded text and the block only (`--prefix-refresh`).
    pub prefix_refresh: Option<bool>,
}

/// The top-k the original Dream sampler applies when the caller gives none.
pub const DREAM_TOP_K: u32 = 50;

/// Dream algorithms the runtime knows (`generation_config.alg`).
const DREAM_ALGS: &[&str] = &["origin", "maskgit_plus", "topk_margin", "entropy"];

/// Decoding defaults for `family`, from `generation_config.json` where it says.
pub fn diffusion_defaults(
    family: Family,
    gen_config: &Value,
    gen_path: &Path,
) -> Result<DiffusionDefaults> {
    let num = |key: &str| gen_config.get(key).and_then(Value::as_f64);
    // Optional positive integers; a present but unusable value is an error naming the key.
    let count = |key: &str| -> Result<Option<u32>> {
        match gen_config.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v
                .as_u64()
                .filter(|&s| (1..=u32::MAX as u64).contains(&s))
                .map(|s| Some(s as u32))
                .ok_or_else(|| ConvertError::BadConfigValue {
                    path: gen_path.to_path_buf(),
                    key: key.into(),
                    reason: format!("{v} is not a positive integer"),
                }),
        }
    };
    // Optional non-negative integer, 0 when absent.
    let count_or_zero = |key: &str| -> Result<u32> {
        match gen_config.get(key) {
            None | Some(Value::Null) => Ok(0),
            Some(v) => v
                .as_u64()
                .and_then(|s| u32::try_from(s).ok())
                .ok_or_else(|| ConvertError::BadConfigValue {
                    path: gen_path.to_path_buf(),
                    key: key.into(),
                    reason: format!("{v} is not a non-negative integer"),
                }),
        }
    };
    let temperature = num("temperature").unwrap_or(0.0) as f32;
    let eps = num("eps").unwrap_or(1e-3) as f32;
    // `threshold` (Fast-dLLM), `steps`, `gen_length` / `max_new_tokens` and `block_length`
    // are read when a checkpoint's generation_config.json carries them (Dream's does for
    // steps; our demo model's for all); otherwise each family's usual values apply.
    let threshold = num("threshold").unwrap_or(0.0) as f32;
    // A step-distilled model's few-step rule (`min_per_step`, with `threshold`): checked here,
    // since a file whose stored defaults fail validation would fail every run.
    let min_per_step = count("min_per_step")?.unwrap_or(0);
    if min_per_step > 0 && threshold <= 0.0 {
        return Err(ConvertError::BadConfigValue {
            path: gen_path.to_path_buf(),
            key: "min_per_step".into(),
            reason: "it bounds the threshold rule, and there is no positive \"threshold\"".into(),
        });
    }
    let gen_length = match count("gen_length")? {
        Some(g) => Some(g),
        None => count("max_new_tokens")?,
    };
    let gamma = match gen_config.get("elastic_gamma") {
        None | Some(Value::Null) => None,
        Some(v) => Some(
            v.as_f64()
                .filter(|g| (0.0..=1.0).contains(g))
                .ok_or_else(|| ConvertError::BadConfigValue {
                    path: gen_path.to_path_buf(),
                    key: "elastic_gamma".into(),
                    reason: format!("{v} is not a number in [0, 1]"),
                })? as f32,
        ),
    };
    let prefix_refresh = match gen_config.get("elastic_prefix_refresh") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_bool().ok_or_else(|| ConvertError::BadConfigValue {
            path: gen_path.to_path_buf(),
            key: "elastic_prefix_refresh".into(),
            reason: format!("{v} is not true or false"),
        })?),
    };
    let elastic = ElasticDefaults {
        window: count("elastic_window")?,
        gamma,
        track: count("elastic_track")?,
        prefix_refresh,
    };
    Ok(match family {
        Family::Llada => {
            let gen_length = gen_length.unwrap_or(128);
            DiffusionDefaults {
                algorithm: "low_confidence".into(),
                steps: count("steps")?.unwrap_or(gen_length),
                gen_length,
                block_length: count("block_length")?.unwrap_or(32.min(gen_length)),
                threshold,
                min_per_step,
                temperature,
                eps,
                top_k: count_or_zero("top_k")?,
                elastic,
            }
        }
        Family::Dream => {
            let alg = gen_config
                .get("alg")
                .and_then(Value::as_str)
                .unwrap_or("entropy");
            if !DREAM_ALGS.contains(&alg) {
                return Err(ConvertError::Unsupported {
                    path: gen_path.to_path_buf(),
                    what: format!("alg {alg:?} (supported: {})", DREAM_ALGS.join(", ")),
                });
            }
            let gen_length = gen_length.unwrap_or(128);
            DiffusionDefaults {
                algorithm: alg.into(),
                steps: count("steps")?.unwrap_or(512),
                gen_length,
                block_length: gen_length,
                threshold,
                min_per_step,
                temperature,
                eps,
                // Dream's `diffusion_generate` builds its config from the model config, which
                // under the transformers releases Dream pins carries the generation default
                // top_k = 50: the original filters to 50 tokens before every softmax, also at
                // temperature 0 (shared/reference/README.md). A generation_config value wins.
                top_k: match gen_config.get("top_k") {
                    None | Some(Value::Null) => DREAM_TOP_K,
                    Some(_) => count_or_zero("top_k")?,
                },
                elastic,
            }
        }
    })
}

/// An integer token id under `key` in any of `sources` (first wins); lists give their first.
pub fn id_from(sources: &[&Value], key: &str) -> Option<u64> {
    sources.iter().find_map(|v| match v.get(key)? {
        Value::Array(a) => a.first()?.as_u64(),
        v => v.as_u64(),
    })
}

/// A token text under `key` of `tokenizer_config.json` (a string or `{ "content": ... }`).
pub fn text_from(tok_config: &Value, key: &str) -> Option<String> {
    match tok_config.get(key)? {
        Value::String(s) => Some(s.clone()),
        Value::Object(o) => o.get("content")?.as_str().map(str::to_string),
        _ => None,
    }
}

/// Paths of the JSON files of a checkpoint folder.
pub struct FolderFiles {
    /// `config.json` (required).
    pub config: PathBuf,
    /// `generation_config.json` (optional).
    pub generation_config: PathBuf,
    /// `tokenizer.json` (required).
    pub tokenizer: PathBuf,
    /// `tokenizer_config.json` (optional).
    pub tokenizer_config: PathBuf,
}

impl FolderFiles {
    /// The file names Hugging Face uses, in `dir`.
    pub fn in_dir(dir: &Path) -> Self {
        FolderFiles {
            config: dir.join("config.json"),
            generation_config: dir.join("generation_config.json"),
            tokenizer: dir.join("tokenizer.json"),
            tokenizer_config: dir.join("tokenizer_config.json"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Found by the gguf_reader fuzz target: shapes the runtime refuses at load (an odd head
    /// size, a context past its limit, rope_theta that overflows f32) are refused here, by
    /// every import path, instead of being written.
    #[test]
    fn shapes_the_runtime_refuses_are_refused_at_convert() {
        let c = json!({"architectures": ["LLaDAModelLM"], "d_model": 64, "n_heads": 4, "n_kv_heads": 2,
            "n_layers": 2, "mlp_hidden_size": 96, "embedding_size": 100, "vocab_size": 90,
            "max_sequence_length": 512, "rope_theta": 1e4, "rms_norm_eps": 1e-5, "weight_tying": true,
            "include_qkv_bias": false, "block_type": "llama"});
        let good = model_config(&c, Path::new("config.json")).unwrap();
        runtime_requirements(&good).unwrap();
        let odd = ModelConfig {
            dim: 60,
            n_heads: 4,
            n_kv_heads: 4,
            ..good.clone()
        };
        assert!(
            runtime_requirements(&odd)
                .unwrap_err()
                .contains("even head size")
        );
        let long = ModelConfig {
            max_seq_len: 2_147_483_712,
            ..good.clone()
        };
        assert!(
            runtime_requirements(&long)
                .unwrap_err()
                .contains("max_seq_len")
        );
        let theta = ModelConfig {
            rope_theta: 1e300,
            ..good.clone()
        };
        assert!(
            runtime_requirements(&theta)
                .unwrap_err()
                .contains("rope_theta")
        );
        let mut c2 = c.clone();
        c2["rope_theta"] = json!(1e300);
        let e = model_config(&c2, Path::new("config.json"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("rope_theta"), "{e}");
    }

    #[test]
    fn llada_config_maps_and_plans() {
        let c = json!({"architectures": ["LLaDAModelLM"], "d_model": 64, "n_heads": 4, "n_kv_heads": 2,
            "n_layers": 2, "mlp_hidden_size": null, "mlp_ratio": 3, "embedding_size": 100, "vocab_size": 90,
            "max_sequence_length": 512, "rope_theta": 1e4, "rms_norm_eps": 1e-5, "weight_tying": true,
            "include_qkv_bias": false, "block_type": "llama"});
        let cfg = model_config(&c, Path::new("config.json")).unwrap();
        assert_eq!(
            (cfg.dim, cfg.hidden_dim, cfg.vocab_size, cfg.n_kv_heads),
            (64, 192, 100, 2)
        );
        assert!(cfg.tied_head && !cfg.qkv_bias);
        let plan = tensor_plan(&cfg);
        assert_eq!(plan.len(), 1 + 2 * 9 + 1);
        assert!(plan.iter().all(|t| t.ours != "head"));
        let wk = plan.iter().find(|t| t.ours == "blk.1.wk").unwrap();
        assert_eq!(wk.hf, "model.transformer.blocks.1.k_proj.weight");
        assert_eq!(wk.shape, vec![32, 64]);
        let gate = plan.iter().find(|t| t.ours == "blk.0.w_gate").unwrap();
        assert_eq!(gate.hf, "model.transformer.blocks.0.ff_proj.weight");
    }

    #[test]
    fn unsupported_settings_and_bad_values_are_rejected() {
        let base = json!({"architectures": ["DreamModel"], "hidden_size": 64, "num_attention_heads": 4,
            "num_hidden_layers": 1, "intermediate_size": 128, "vocab_size": 10, "max_position_embeddings": 8});
        assert!(model_config(&base, Path::new("c")).is_ok());
        let mut v = base.clone();
        v["rope_scaling"] = json!({"type": "yarn"});
        assert!(matches!(
            model_config(&v, Path::new("c")),
            Err(ConvertError::Unsupported { .. })
        ));
        let mut v = base.clone();
        v["num_key_value_heads"] = json!(3);
        assert!(matches!(
            model_config(&v, Path::new("c")),
            Err(ConvertError::BadConfigValue { .. })
        ));
        let mut v = base.clone();
        v["hidden_size"] = json!("wide");
        assert!(matches!(
            model_config(&v, Path::new("c")),
            Err(ConvertError::BadConfigValue { .. })
        ));
        let mut v = base;
        v.as_object_mut().unwrap().remove("num_hidden_layers");
        assert!(matches!(
            model_config(&v, Path::new("c")),
            Err(ConvertError::MissingConfigKey { .. })
        ));
    }

    #[test]
    fn few_step_schedule_is_read_from_generation_config() {
        let p = Path::new("generation_config.json");
        // The student's file (models/demo-fast): steps, lengths, threshold and minimum.
        let g = json!({"steps": 4, "gen_length": 32, "block_length": 32, "threshold": 0.9,
            "min_per_step": 8});
        let d = diffusion_defaults(Family::Llada, &g, p).unwrap();
        assert_eq!((d.steps, d.gen_length, d.block_length), (4, 32, 32));
        assert_eq!((d.threshold, d.min_per_step), (0.9, 8));
        // Absent: Fast-dLLM's rule (0 = at least one) and no threshold.
        let d = diffusion_defaults(Family::Llada, &json!({"steps": 32}), p).unwrap();
        assert_eq!((d.threshold, d.min_per_step), (0.0, 0));
        // A minimum without a threshold would fail every run: rejected, naming the key.
        for g in [
            json!({"min_per_step": 8}),
            json!({"min_per_step": 8, "threshold": 0}),
        ] {
            match diffusion_defaults(Family::Llada, &g, p) {
                Err(ConvertError::BadConfigValue { key, .. }) => assert_eq!(key, "min_per_step"),
                other => panic!("{other:?}"),
            }
        }
        // Not a positive integer.
        for bad in [json!(0), json!(-1), json!(2.5), json!("8")] {
            let g = json!({"threshold": 0.9, "min_per_step": bad});
            assert!(matches!(
                diffusion_defaults(Family::Llada, &g, p),
                Err(ConvertError::BadConfigValue { .. })
            ));
        }
    }

    #[test]
    fn elastic_defaults_are_read_only_where_given() {
        let p = Path::new("generation_config.json");
        let d = diffusion_defaults(Family::Llada, &json!({"steps": 32}), p).unwrap();
        assert_eq!(d.elastic, ElasticDefaults::default());
        let g = json!({"elastic_gamma": 0.98, "elastic_window": 8, "elastic_track": 2,
                       "elastic_prefix_refresh": true});
        for family in [Family::Llada, Family::Dream] {
            let d = diffusion_defaults(family, &g, p).unwrap();
            assert_eq!(
                d.elastic,
                ElasticDefaults {
                    window: Some(8),
                    gamma: Some(0.98),
                    track: Some(2),
                    prefix_refresh: Some(true),
                }
            );
        }
        for (key, bad) in [
            ("elastic_gamma", json!(1.5)),
            ("elastic_gamma", json!(-0.1)),
            ("elastic_gamma", json!("0.9")),
            ("elastic_window", json!(0)),
            ("elastic_track", json!(1.5)),
            ("elastic_prefix_refresh", json!(1)),
            ("elastic_prefix_refresh", json!("true")),
        ] {
            let mut g = json!({});
            g[key] = bad;
            match diffusion_defaults(Family::Llada, &g, p) {
                Err(ConvertError::BadConfigValue { key: k, .. }) => assert_eq!(k, key),
                other => panic!("{key}: {other:?}"),
            }
        }
    }
}
