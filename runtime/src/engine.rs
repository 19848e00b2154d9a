//! One loaded model ready to answer: weights, tokenizer, chat format and decoding defaults,
//! with the prompt → ids → decode → text path that the CLI and the C ABI share.

use crate::RuntimeError;
use crate::chat::{ChatTemplate, Role};
use crate::decode::{self, Algorithm, DecodeParams, DecodeTokens, GenerateOutput, StepEvent};
use crate::model::{Model, ModelConfig};
use crate::tokenizer::Tokenizer;
use dlm_formats::DlmFile;
use dlm_formats::keys::{diffusion, tokenizer as tk};
use std::path::Path;

/// A model, its tokenizer and its defaults. Read-only: share it across threads.
#[derive(Debug)]
pub struct Engine {
    model: Model,
    tokenizer: Tokenizer,
    chat: Option<ChatTemplate>,
    tokens: DecodeTokens,
    defaults: DecodeParams,
}

impl Engine {
    /// Map and load the `.dlm` file at `path`.
    pub fn open(path: &Path) -> Result<Self, RuntimeError> {
        Self::new(Model::open(path)?)
    }

    /// Map and load the `.dlm` file at `path`, with `verify` also checking every tensor
    /// against its checksum and every matrix for NaN/Inf values (reads the whole file:
    /// `run --verify`, `dlm_model_open_verified`).
    pub fn open_with(path: &Path, verify: bool) -> Result<Self, RuntimeError> {
        Self::with_verify(Model::open(path)?, verify)
    }

    /// Wrap a loaded model (on any backend); with `verify`, check every tensor against its
    /// checksum and every matrix for NaN/Inf first.
    pub fn with_verify(model: Model, verify: bool) -> Result<Self, RuntimeError> {
        if verify {
            crate::integrity::verify_checksums(model.file(), model.bytes())?;
            crate::integrity::check_all_matrices(model.weights(), model.bytes())?;
        }
        Self::new(model)
    }

    /// Wrap a loaded model, reading its tokenizer, chat format and defaults.
    pub fn new(model: Model) -> Result<Self, RuntimeError> {
        let file = model.file();
        let tokenizer = Tokenizer::from_file(file)?;
        let chat = ChatTemplate::from_file(file)?;
        let tokens = decode_tokens(file, model.config())?;
        let defaults = default_params(file)?;
        Ok(Engine {
            model,
            tokenizer,
            chat,
            tokens,
            defaults,
        })
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The chat format, when the file has one.
    pub fn chat(&self) -> Option<&ChatTemplate> {
        self.chat.as_ref()
    }

    /// The special tokens the decoder uses.
    pub fn decode_tokens(&self) -> &DecodeTokens {
        &self.tokens
    }

    /// Decoding parameters from the file's `diffusion.*` keys.
    pub fn defaults(&self) -> &DecodeParams {
        &self.defaults
    }

    /// The ids of a conversation rendered with the chat format, ending with the opening of
    /// the assistant's turn. An error when the file has no chat format.
    pub fn chat_ids(&self, messages: &[(Role, &str)]) -> Result<Vec<u32>, RuntimeError> {
        let chat = self.chat.as_ref().ok_or_else(|| {
            RuntimeError::Unsupported("this model file has no chat template".into())
        })?;
        Ok(self.tokenizer.encode(&chat.render(messages, true)))
    }

    /// `params` with steps clamped ([`clamp_steps`]), checked against `prompt`, the model's
    /// context and the memory the request needs: what every generation checks first.
    fn checked_params(
        &self,
        prompt: &[u32],
        params: &DecodeParams,
    ) -> Result<DecodeParams, RuntimeError> {
        if prompt.is_empty() {
            return Err(RuntimeError::InvalidRequest("the prompt is empty".into()));
        }
        let params = clamp_steps(params);
        params.validate(prompt.len(), Some(self.model.config().seq_len))?;
        check_request_memory(self.model.config(), prompt.len(), &params)?;
        Ok(params)
    }

    /// Generate after `prompt` (ids), checking the request against the model's context and
    /// the memory it needs before any work. Steps beyond what can change the canvas are
    /// clamped ([`clamp_steps`]).
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &DecodeParams,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> bool,
    ) -> Result<GenerateOutput, RuntimeError> {
        let params = self.checked_params(prompt, params)?;
        decode::generate(&self.model, &self.tokens, prompt, &params, on_step)
    }

    /// [`Engine::generate`], reusing the keys and values that `context` kept from earlier
    /// generations for the leading positions of `prompt` that repeat them (a chat's earlier
    /// turns; see [`decode::generate_with_context`] for what that approximates).
    pub fn generate_with_context(
        &self,
        prompt: &[u32],
        params: &DecodeParams,
        context: &mut decode::ContextCache,
        on_step: &mut dyn FnMut(&StepEvent<'_>) -> bool,
    ) -> Result<GenerateOutput, RuntimeError> {
        let params = self.checked_params(prompt, params)?;
        let cfg = self.model.config();
        let per_position = 2 * cfg.n_layers * cfg.kv_dim() * 4;
        crate::alloc::check_bytes(
            context.bytes_for(prompt.len() + params.gen_length, per_position),
            "the conversation's KV cache (n_layers × context × kv_dim f32)",
        )?;
        decode::generate_with_context(&self.model, &self.tokens, prompt, &params, context, on_step)
    }

    /// The answer of a run as text (up to the first stop token, special tokens left out).
    /// Never fails once the work is done: an id the tokenizer lacks (a padded embedding row)
    /// becomes a visible placeholder; [`Engine::answer`] also says which ids those were.
    pub fn answer_text(&self, out: &GenerateOutput) -> Result<String, RuntimeError> {
        Ok(self.answer(out).text)
    }

    /// The answer of a run as text, and the ids in it that the tokenizer has no token for.
    pub fn answer(&self, out: &GenerateOutput) -> Answer {
        let d = self.tokenizer.decode_lossy(out.answer_ids(), true);
        Answer {
            text: d.text,
            unknown_ids: d.unknown_ids,
        }
    }
}

/// An answer's text and what could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// The text; an unknown id shows as [`crate::tokenizer::unknown_placeholder`].
    pub text: String,
    /// Ids of the answer that name no token (embedding rows past the tokenizer's vocabulary,
    /// or holes), in order of appearance, repeated as they occur.
    pub unknown_ids: Vec<u32>,
}

/// `params` with `steps` clamped to what can change the canvas under LLaDA's block schedule:
/// a block of `b` masks commits at least one token per step that does anything, and the
/// original's split (`b / steps`, one more for the first `b % steps`) gives the steps past
/// `b` nothing to commit, so at most `gen_length` steps (`b` per block) run and the canvas is
/// the one the original computes (only its useless forward passes are left out). Dream's
/// timestep schedule (alone or inside blocks) depends on `steps` itself, so it is not
/// clamped; `validate` bounds it.
pub fn clamp_steps(params: &DecodeParams) -> DecodeParams {
    let mut p = params.clone();
    let block = p.effective_block_length();
    // Only a request `validate` accepts as given is clamped, so a bad one keeps its error.
    let divides = block > 0
        && p.gen_length.is_multiple_of(block)
        && p.steps.is_multiple_of(p.gen_length / block);
    // LLaDA's rules under LLaDA's split; Dream's rules inside blocks run timesteps per
    // block, which depend on the step count.
    let llada_split = p.schedule() == decode::Schedule::Blocks
        && matches!(p.algorithm, Algorithm::LowConfidence | Algorithm::Random);
    if llada_split && divides && p.steps > p.gen_length {
        p.steps = p.gen_length;
    }
    p
}

/// Ask for the largest buffers a run allocates before starting it: the logits of every
/// position a step may commit (`[gen_length, vocab]` f32, copied once), the KV caches
/// (`2 × n_layers × len × kv_dim` f32), and one forward's activations.
fn check_request_memory(
    cfg: &ModelConfig,
    prompt_len: usize,
    p: &DecodeParams,
) -> Result<(), RuntimeError> {
    use crate::alloc::{check_bytes, product};
    let len = prompt_len.saturating_add(p.gen_length);
    let logits = product(&[p.gen_length, cfg.vocab_size, 4, 2]);
    check_bytes(logits, "the logits (gen_length × vocab f32)")?;
    let cache = if p.cache == decode::CacheMode::None {
        0
    } else {
        product(&[2, cfg.n_layers, len, cfg.kv_dim(), 4])
    };
    let acts = product(&[len, 4 * cfg.dim + 3 * cfg.hidden_dim + cfg.n_heads, 4]);
    check_bytes(
        cache.saturating_add(acts),
        "the KV cache and activations (n_layers × context × kv_dim f32)",
    )
}

fn decode_tokens(file: &DlmFile, cfg: &ModelConfig) -> Result<DecodeTokens, RuntimeError> {
    let eos = file.get_u32(tk::EOS_ID)?;
    let mut stop_ids = vec![eos];
    if file.meta_get(tk::EOT_ID).is_some() {
        let eot = file.get_u32(tk::EOT_ID)?;
        if eot != eos {
            stop_ids.push(eot);
        }
    }
    Ok(DecodeTokens {
        mask_id: cfg.mask_id,
        stop_ids,
        pad_id: Some(file.get_u32_or(tk::PAD_ID, eos)?),
        shift_logits: cfg.shift_logits,
    })
}

fn default_params(file: &DlmFile) -> Result<DecodeParams, RuntimeError> {
    let mut p = DecodeParams::default();
    let name = file.get_str_or(diffusion::ALGORITHM, p.algorithm.name())?;
    p.algorithm = Algorithm::from_name(name).ok_or_else(|| {
        RuntimeError::Unsupported(format!(
            "default algorithm {name:?} in {}",
            diffusion::ALGORITHM
        ))
    })?;
    p.gen_length = file.get_u32_or(diffusion::GEN_LENGTH, p.gen_length as u32)? as usize;
    // A default of more steps than tokens (Dream's generation_config says 512) only repeats
    // forward passes that commit nothing; one token per step is the most a schedule uses.
    p.steps = (file.get_u32_or(diffusion::STEPS, p.steps as u32)? as usize).min(p.gen_length);
    let block = file.get_u32_or(diffusion::BLOCK_LENGTH, p.gen_length as u32)? as usize;
    p.block_length = match p.algorithm.schedule() {
        decode::Schedule::Blocks => Some(block),
        decode::Schedule::Timesteps => None,
    };
    let threshold = decimal(file.get_f32_or(diffusion::THRESHOLD, 0.0)?);
    p.threshold = (threshold > 0.0).then_some(threshold);
    // A minimum per step only means something under a threshold (a step-distilled model's
    // few-step rule); without one the file's schedule is the fixed count per step.
    let min_per_step = file.get_u32_or(diffusion::MIN_PER_STEP, 0)? as usize;
    p.min_per_step = (min_per_step > 1 && p.threshold.is_some()).then_some(min_per_step);
    p.temperature = file.get_f32_or(diffusion::TEMPERATURE, 0.0)? as f64;
    p.eps = file.get_f32_or(diffusion::EPS, 1e-3)? as f64;
    let e = &mut p.elastic;
    e.window = file.get_u32_or(diffusion::ELASTIC_WINDOW, e.window as u32)? as usize;
    e.gamma = decimal(file.get_f32_or(diffusion::ELASTIC_GAMMA, e.gamma as f32)?);
    e.track = file.get_u32_or(diffusion::ELASTIC_TRACK, e.track as u32)? as usize;
    e.prefix_refresh = file.get_u32_or(diffusion::ELASTIC_PREFIX_REFRESH, 0)? != 0;
    // Dream's original sampler filters to its inherited top-k 50 before every softmax, which
    // changes its confidences; the file says so (0 or absent = no filter).
    let top_k = file.get_u32_or(diffusion::TOP_K, 0)?;
    p.top_k = (top_k > 0).then_some(top_k as usize);
    Ok(p)
}

/// The f64 nearest a stored f32's shortest decimal (0.9, not 0.8999999761581421): the value
/// the checkpoint's generation_config.json wrote, and the one a flag such as `--threshold 0.9`
/// gives.
fn decimal(v: f32) -> f64 {
    v.to_string().parse::<f64>().unwrap_or(v as f64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::Algorithm;

    fn cfg(vocab_size: usize, seq_len: usize) -> ModelConfig {
        ModelConfig {
            family: crate::model::Family::Llada,
            dim: 64,
            hidden_dim: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            vocab_size,
            seq_len,
            rope_theta: 1e4,
            norm_eps: 1e-5,
            qkv_bias: false,
            tied_head: false,
            shift_logits: false,
            mask_id: 0,
        }
    }

    #[test]
    fn huge_block_steps_are_clamped_to_the_canvas() {
        let p = DecodeParams {
            steps: 1_000_000_000,
            gen_length: 64,
            block_length: Some(32),
            ..DecodeParams::default()
        };
        let c = clamp_steps(&p);
        assert_eq!(c.steps, 64);
        c.validate(8, Some(128)).unwrap();
        // Not divisible by the number of blocks: left alone, so validate still says why.
        let odd = DecodeParams {
            steps: 1_000_000_001,
            ..p.clone()
        };
        assert_eq!(clamp_steps(&odd).steps, 1_000_000_001);
        assert!(clamp_steps(&odd).validate(8, Some(128)).is_err());
        // Dream's schedule depends on steps: not clamped, but bounded by validate, at once.
        let dream = DecodeParams {
            algorithm: Algorithm::MaskgitPlus,
            block_length: None,
            steps: 1_000_000_000,
            gen_length: 8,
            ..DecodeParams::default()
        };
        assert_eq!(clamp_steps(&dream).steps, 1_000_000_000);
        let e = dream.validate(4, Some(64)).unwrap_err().to_string();
        assert!(e.contains("steps 1000000000"), "{e}");
        DecodeParams {
            steps: 512,
            ..dream
        }
        .validate(4, Some(64))
        .unwrap();
    }

    #[test]
    fn requests_too_large_for_memory_are_errors() {
        let p = DecodeParams {
            gen_length: 1 << 20,
            steps: 1 << 20,
            block_length: None,
            ..DecodeParams::default()
        };
        // 2^20 positions of a 2^24 vocabulary: 2^47 bytes of logits.
        let e = check_request_memory(&cfg(1 << 24, 1 << 21), 4, &p).unwrap_err();
        assert!(matches!(e, RuntimeError::OutOfMemory { .. }), "{e}");
        assert!(e.to_string().contains("logits"), "{e}");
        let small = DecodeParams {
            gen_length: 32,
            steps: 32,
            ..p
        };
        check_request_memory(&cfg(1000, 128), 4, &small).unwrap();
    }
}
