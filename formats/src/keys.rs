//! Metadata keys: the contract between `dlm convert` (which writes them) and the runtime (which
//! reads them). `formats/SPEC.md` documents each one; nothing else spells these strings.

/// Format identity and provenance.
pub mod general {
    /// str: human-readable model name (the HF folder name by default).
    pub const NAME: &str = "general.name";
    /// str: the architecture the checkpoint declared (`LLaDAModelLM`, `DreamModel`).
    pub const ARCHITECTURE: &str = "general.architecture";
    /// str: the policy `dlm convert` used (`f32`, `q4_k`, `mixed`, ...).
    pub const QUANT_POLICY: &str = "general.quant_policy";
    /// str: the tool and version that wrote the file.
    pub const WRITER: &str = "general.writer";
    /// [str]: the storage types the tensors really use, one `"<type> <tensors> <bytes>"` per
    /// type in id order (a policy's fallbacks make it differ from `quant_policy`).
    pub const QUANT_MIX: &str = "general.quant_mix";
    /// str: the file a conversion read, when it was not a Hugging Face folder (`gguf v3`).
    pub const SOURCE_FORMAT: &str = "general.source_format";
}

/// Transformer shape, shared by every family.
pub mod model {
    /// str: `llada` or `dream`.
    pub const FAMILY: &str = "model.family";
    /// u32: residual width (`dim`).
    pub const DIM: &str = "model.dim";
    /// u32: SwiGLU hidden width.
    pub const HIDDEN_DIM: &str = "model.hidden_dim";
    /// u32: number of transformer blocks.
    pub const N_LAYERS: &str = "model.n_layers";
    /// u32: query heads.
    pub const N_HEADS: &str = "model.n_heads";
    /// u32: key/value heads (GQA when fewer than `n_heads`).
    pub const N_KV_HEADS: &str = "model.n_kv_heads";
    /// u32: rows of the embedding and the head.
    pub const VOCAB_SIZE: &str = "model.vocab_size";
    /// u32: longest sequence (prompt + generation) the model accepts.
    pub const MAX_SEQ_LEN: &str = "model.max_seq_len";
    /// f32: RoPE base.
    pub const ROPE_THETA: &str = "model.rope_theta";
    /// f32: RMSNorm epsilon.
    pub const NORM_EPS: &str = "model.norm_eps";
    /// bool: q/k/v projections carry biases (Dream).
    pub const QKV_BIAS: &str = "model.qkv_bias";
    /// bool: the head reuses the embedding (`head` tensor absent).
    pub const TIED_HEAD: &str = "model.tied_head";
    /// bool: token i is predicted from position i-1 (Dream).
    pub const SHIFT_LOGITS: &str = "model.shift_logits";
}

/// Byte-level BPE tokenizer data.
pub mod tokenizer {
    /// str: `bpe_bytelevel` (the only model so far).
    pub const MODEL: &str = "tokenizer.model";
    /// [str]: token strings indexed by id, in byte-level (GPT-2 byte-to-unicode) form; ids
    /// with no token hold the empty string.
    pub const TOKENS: &str = "tokenizer.tokens";
    /// [str]: merges in rank order, each `left right` with one space.
    pub const MERGES: &str = "tokenizer.merges";
    /// [u32]: ids of added tokens that are matched verbatim in input text.
    pub const ADDED_IDS: &str = "tokenizer.added_ids";
    /// [u32]: ids among the added ones that are special (skipped when decoding for display).
    pub const SPECIAL_IDS: &str = "tokenizer.special_ids";
    /// str: pre-tokenizer split: `llama3` or `qwen2`.
    pub const PRE: &str = "tokenizer.pre";
    /// str: normalizer: `none` or `nfc`.
    pub const NORMALIZER: &str = "tokenizer.normalizer";
    /// [u32]: per entry of `ADDED_IDS`, the added-token flags as bits ([`added_flags`]);
    /// absent = all zero.
    pub const ADDED_FLAGS: &str = "tokenizer.added_flags";
    /// bool: a pre-tokenized piece that is itself in the vocabulary is taken whole before any
    /// merge (Hugging Face BPE `ignore_merges`, set by LLaMA-3's tokenizer); absent = false.
    pub const IGNORE_MERGES: &str = "tokenizer.ignore_merges";
    /// u32: beginning-of-sequence id.
    pub const BOS_ID: &str = "tokenizer.bos_id";
    /// u32: end-of-sequence id.
    pub const EOS_ID: &str = "tokenizer.eos_id";
    /// u32: padding id.
    pub const PAD_ID: &str = "tokenizer.pad_id";
    /// u32: end-of-turn id (`<|eot_id|>`, `<|im_end|>`), when the chat format has one.
    pub const EOT_ID: &str = "tokenizer.eot_id";

    /// The bits of `ADDED_FLAGS` (Hugging Face `AddedToken` fields).
    pub mod added_flags {
        /// `lstrip`: the match also takes the whitespace before it.
        pub const LSTRIP: u32 = 1;
        /// `rstrip`: the match also takes the whitespace after it.
        pub const RSTRIP: u32 = 2;
        /// `single_word`: matched only when no word character touches either end.
        pub const SINGLE_WORD: u32 = 4;
        /// `normalized`: matched in the normalized text, after the other added tokens.
        pub const NORMALIZED: u32 = 8;
    }
}

/// The chat template, reduced at convert time to literal pieces around each message.
pub mod chat {
    /// str: text put once before the first message (e.g. the BOS token's text), may be empty.
    pub const PREFIX: &str = "chat.prefix";
    /// str: text before a system message's content.
    pub const SYSTEM_PREFIX: &str = "chat.system_prefix";
    /// str: text after a system message's content.
    pub const SYSTEM_SUFFIX: &str = "chat.system_suffix";
    /// str: text before a user message's content.
    pub const USER_PREFIX: &str = "chat.user_prefix";
    /// str: text after a user message's content.
    pub const USER_SUFFIX: &str = "chat.user_suffix";
    /// str: text before an assistant message's content.
    pub const ASSISTANT_PREFIX: &str = "chat.assistant_prefix";
    /// str: text after an assistant message's content.
    pub const ASSISTANT_SUFFIX: &str = "chat.assistant_suffix";
    /// str: text that opens the assistant's turn when a reply is wanted.
    pub const GENERATION_PROMPT: &str = "chat.generation_prompt";
    /// str: the system message the template inserts when the conversation has none ("" = none).
    pub const DEFAULT_SYSTEM: &str = "chat.default_system";
    /// bool: message contents are trimmed of surrounding whitespace.
    pub const TRIM_CONTENT: &str = "chat.trim_content";
}

/// Decoding defaults.
pub mod diffusion {
    /// u32: the mask token id.
    pub const MASK_ID: &str = "diffusion.mask_id";
    /// str: default algorithm: `low_confidence`, `random`, `maskgit_plus`, `topk_margin`,
    /// `entropy`, `origin`.
    pub const ALGORITHM: &str = "diffusion.algorithm";
    /// u32: default number of denoising steps.
    pub const STEPS: &str = "diffusion.steps";
    /// u32: default generation length.
    pub const GEN_LENGTH: &str = "diffusion.gen_length";
    /// u32: default semi-autoregressive block length.
    pub const BLOCK_LENGTH: &str = "diffusion.block_length";
    /// f32: default Fast-dLLM confidence threshold; 0 = off.
    pub const THRESHOLD: &str = "diffusion.threshold";
    /// f32: default sampling temperature (0 = greedy).
    pub const TEMPERATURE: &str = "diffusion.temperature";
    /// f32: Dream's final timestep `eps`.
    pub const EPS: &str = "diffusion.eps";
    /// u32: Elastic-Cache window: masks of the active block whose queries a step computes.
    pub const ELASTIC_WINDOW: &str = "diffusion.elastic_window";
    /// f32: Elastic-Cache drift threshold γ ∈ [0, 1].
    pub const ELASTIC_GAMMA: &str = "diffusion.elastic_gamma";
    /// u32: Elastic-Cache tracked most-attended tokens per layer.
    pub const ELASTIC_TRACK: &str = "diffusion.elastic_track";
    /// u32: Elastic-Cache block openings over the decoded text and the block only (1) or over
    /// the whole canvas (0, the default; absent = 0).
    pub const ELASTIC_PREFIX_REFRESH: &str = "diffusion.elastic_prefix_refresh";
    /// u32: with a threshold, the fewest positions a step commits (0 or absent = 1, Fast-dLLM's
    /// rule); a step-distilled model's few-step schedule is `steps`, `threshold` and this.
    pub const MIN_PER_STEP: &str = "diffusion.min_per_step";
    /// u32: default top-k filter before every step's softmax (confidences included); 0 = off.
    /// Dream files carry 50, the original sampler's inherited default.
    pub const TOP_K: &str = "diffusion.top_k";
}
