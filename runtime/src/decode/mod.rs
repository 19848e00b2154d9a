//! Decoders: from a prompt and a forward pass to a denoised canvas, as three independent
//! choices — the **schedule** (LLaDA's semi-autoregressive blocks or Dream's timesteps, the
//! latter also in Fast-dLLM's blocks), the **position rule** (low_confidence, random,
//! maskgit_plus, topk_margin, entropy, origin, alg_temp, threshold, factor) and the **cache**
//! (none, prefix, dual). Greedy runs reproduce the original PyTorch samplers token for token.
//!
//! The decoders see the model only through [`Forward`] and ask it for proposals (token and
//! confidence) of the positions a step may commit, never for the whole canvas's logits.

mod blocks;
mod context;
mod elastic;
mod propose;
mod rng;
mod rule;
mod run;
mod sample;
mod schedule;
mod select;
mod timesteps;

pub use context::ContextCache;
pub use elastic::ElasticParams;
pub use propose::{Proposal, ProposeSpec, RowRule, propose_row, propose_rows};
pub use rng::Rng;
pub use sample::{DreamConfidence, Filter};
pub use schedule::{dream_timesteps, dream_transfer_count, llada_transfer_counts};

use crate::RuntimeError;
use crate::model::{Forward, Timings};
use run::Run;
use std::ops::Range;

/// How a step chooses positions and proposes tokens. The first two use LLaDA's block-wise
/// schedule ([`Schedule::Blocks`]), the others Dream's timesteps ([`Schedule::Timesteps`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// LLaDA `low_confidence`: commit the positions whose top-1 probability (f64) is highest.
    LowConfidence,
    /// LLaDA `random`: commit positions in a random order.
    Random,
    /// Dream `origin`: each mask is revealed with probability `1 - s/t`.
    Origin,
    /// Dream `maskgit_plus`: the most probable proposals first.
    MaskgitPlus,
    /// Dream `topk_margin`: the largest top-1 minus top-2 probability first.
    TopkMargin,
    /// Dream `entropy`: the lowest entropy first.
    Entropy,
}

/// How many positions each step commits, and how the canvas is cut into blocks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// LLaDA semi-autoregressive blocks: steps split evenly over blocks, and within a block
    /// `n / steps` commits per step (one more for the first `n % steps`), or Fast-dLLM's rules.
    Blocks,
    /// Dream: `t = linspace(1, eps, steps + 1)`, `int(n_masked * (1 - s/t))` per step. Over the
    /// whole canvas when no block length and no cache are given (Dream's `_sample`); otherwise
    /// in blocks as Fast-dLLM's Dream code runs it: each block opens with a full forward that
    /// commits the block's first position, then its steps follow the timesteps of the block.
    Timesteps,
}

impl Schedule {
    /// `blocks` or `timesteps`.
    pub fn name(self) -> &'static str {
        match self {
            Schedule::Blocks => "blocks",
            Schedule::Timesteps => "timesteps",
        }
    }

    /// The schedule of a name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Self> {
        [Schedule::Blocks, Schedule::Timesteps]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

impl Algorithm {
    /// Every algorithm, in a stable order.
    pub const ALL: [Algorithm; 6] = [
        Algorithm::LowConfidence,
        Algorithm::Random,
        Algorithm::Origin,
        Algorithm::MaskgitPlus,
        Algorithm::TopkMargin,
        Algorithm::Entropy,
    ];

    /// The name the original code uses (`low_confidence`, `maskgit_plus`, …).
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::LowConfidence => "low_confidence",
            Algorithm::Random => "random",
            Algorithm::Origin => "origin",
            Algorithm::MaskgitPlus => "maskgit_plus",
            Algorithm::TopkMargin => "topk_margin",
            Algorithm::Entropy => "entropy",
        }
    }

    /// The algorithm of an original name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.name() == name)
    }

    /// The schedule the algorithm's original sampler runs under (the default when
    /// [`DecodeParams::schedule`] is unset).
    pub fn schedule(self) -> Schedule {
        match self {
            Algorithm::LowConfidence | Algorithm::Random => Schedule::Blocks,
            _ => Schedule::Timesteps,
        }
    }
}

/// Which keys and values are kept between the steps of a block (Fast-dLLM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum CacheMode {
    /// Every step runs the whole canvas.
    #[default]
    None,
    /// At each block start a full forward stores every position; the block's later steps run
    /// `[block_start, len)` attending to the cached prefix.
    Prefix,
    /// At each block start a full forward stores every position; the block's later steps run
    /// only the block, attending to every cached position outside it.
    Dual,
    /// Elastic-Cache: each step computes queries only for a window of the first masks (and
    /// the tracked most-attended tokens); when the tracked token's attention drifts at some
    /// layer, every position is recomputed from that layer on ([`ElasticParams`]).
    Elastic,
}

impl CacheMode {
    /// Every mode, in a stable order.
    pub const ALL: [CacheMode; 4] = [
        CacheMode::None,
        CacheMode::Prefix,
        CacheMode::Dual,
        CacheMode::Elastic,
    ];

    /// `none`, `prefix`, `dual` or `elastic`.
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Prefix => "prefix",
            CacheMode::Dual => "dual",
            CacheMode::Elastic => "elastic",
        }
    }

    /// The mode of a name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.name() == name)
    }
}

/// What to generate and how. Floating-point options are f64 because the original code compares
/// and computes them as Python floats.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeParams {
    /// Position choice rule; also picks the schedule.
    pub algorithm: Algorithm,
    /// Total diffusion steps (an upper bound under a threshold or factor rule).
    pub steps: usize,
    /// Tokens to generate after the prompt.
    pub gen_length: usize,
    /// Block length of the semi-autoregressive schedule; `None` means one block of
    /// `gen_length`. Must divide `gen_length`. The timestep schedule takes only `None` or
    /// `gen_length`.
    pub block_length: Option<usize>,
    /// Fast-dLLM parallel decoding: commit every masked position of the active block whose
    /// confidence is at least τ ∈ (0, 1], and always the most confident one.
    pub threshold: Option<f64>,
    /// With `threshold`: each step commits at least this many positions (the most confident),
    /// instead of one, so a block of `b` masks takes at most `ceil(b / min)` steps whatever
    /// the confidences: the rule a step-distilled model decodes with (`diffusion.min_per_step`).
    /// `None` is Fast-dLLM's "at least one".
    pub min_per_step: Option<usize>,
    /// Fast-dLLM factor rule: the n-th best is committed while its confidence is at least
    /// `1 - factor / (n + 1)`.
    pub factor: Option<f64>,
    /// The step schedule; `None` takes the algorithm's own ([`Algorithm::schedule`]).
    pub schedule: Option<Schedule>,
    /// KV cache between steps.
    pub cache: CacheMode,
    /// Settings of the elastic cache.
    pub elastic: ElasticParams,
    /// 0 for greedy; otherwise Gumbel-max (LLaDA) or categorical (Dream) sampling.
    pub temperature: f64,
    /// Sample only among the `k` most likely tokens.
    pub top_k: Option<usize>,
    /// Sample only among the most likely tokens whose probability reaches `p` ∈ (0, 1].
    pub top_p: Option<f64>,
    /// Classifier-free guidance scale (LLaDA; 0 = off): an unconditional pass with the prompt
    /// replaced by masks, `u + (scale + 1)(c - u)`. Cache `none` only.
    pub cfg_scale: f64,
    /// Dream: when > 0, positions are drawn with probabilities `softmax(confidence / alg_temp)`
    /// instead of taking the most confident.
    pub alg_temp: f64,
    /// Dream: the last timestep, in (0, 1).
    pub eps: f64,
    /// Seed of the random numbers (sampling, random remasking, `origin`, `alg_temp`). Runs are
    /// repeatable for a seed but do not reproduce PyTorch's random stream.
    pub seed: u64,
    /// Stop as soon as the answer is final: a stop token is committed in the generated text and
    /// no mask remains before it. The masks left after it are filled with the pad token. Never
    /// changes the answer, only the tail of the canvas and the number of forward passes.
    pub stop_early: bool,
    /// Measure where each forward pass spends its time ([`GenerateOutput::timings`]).
    pub profile: bool,
}

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams {
            algorithm: Algorithm::LowConfidence,
            steps: 128,
            gen_length: 128,
            block_length: Some(32),
            threshold: None,
            min_per_step: None,
            factor: None,
            schedule: None,
            cache: CacheMode::None,
            elastic: ElasticParams::default(),
            temperature: 0.0,
            top_k: None,
            top_p: None,
            cfg_scale: 0.0,
            alg_temp: 0.0,
            eps: 1e-3,
            seed: 0,
            stop_early: true,
            profile: false,
        }
    }
}

fn invalid(msg: impl Into<String>) -> RuntimeError {
    RuntimeError::InvalidRequest(msg.into())
}

impl DecodeParams {
    /// The block length in effect (`gen_length` when unset).
    pub fn effective_block_length(&self) -> usize {
        self.block_length.unwrap_or(self.gen_length)
    }

    /// The schedule in effect.
    pub fn schedule(&self) -> Schedule {
        self.schedule.unwrap_or(self.algorithm.schedule())
    }

    /// Check the request before any work: lengths, divisibility, ranges, combinations, and
    /// that `prompt_len + gen_length` fits the model's context `max_seq_len` when given.
    pub fn validate(
        &self,
        prompt_len: usize,
        max_seq_len: Option<usize>,
    ) -> Result<(), RuntimeError> {
        if self.gen_length == 0 {
            return Err(invalid("gen_length must be at least 1"));
        }
        if self.steps == 0 {
            return Err(invalid("steps must be at least 1"));
        }
        // Bounded before anything is sized by it (Dream's timestep table is `[steps + 1]`).
        let max_steps = dlm_formats::limits::MAX_STEPS as usize;
        if self.steps > max_steps {
            return Err(invalid(format!(
                "steps {} is more than {max_steps}; no schedule uses more steps than tokens",
                self.steps
            )));
        }
        let total = prompt_len
            .checked_add(self.gen_length)
            .ok_or_else(|| invalid("prompt plus gen_length overflows"))?;
        if let Some(max) = max_seq_len
            && total > max
        {
            return Err(invalid(format!(
                "prompt ({prompt_len} tokens) plus gen_length ({}) is {total} tokens, longer than the model's context of {max}",
                self.gen_length
            )));
        }
        let block = self.effective_block_length();
        if block == 0 {
            return Err(invalid("block_length must be at least 1"));
        }
        if !self.gen_length.is_multiple_of(block) {
            return Err(invalid(format!(
                "block_length {block} does not divide gen_length {}",
                self.gen_length
            )));
        }
        let n_blocks = self.gen_length / block;
        if !self.steps.is_multiple_of(n_blocks) {
            return Err(invalid(format!(
                "steps {} is not divisible by the number of blocks {n_blocks} (gen_length {} / block_length {block})",
                self.steps, self.gen_length
            )));
        }
        let name = self.algorithm.name();
        let schedule = self.schedule();
        if schedule == Schedule::Timesteps && !(self.eps > 0.0 && self.eps < 1.0) {
            return Err(invalid(format!("eps must be in (0, 1), got {}", self.eps)));
        }
        if self.algorithm == Algorithm::Origin {
            if schedule == Schedule::Blocks {
                return Err(invalid(
                    "algorithm origin reveals by the timestep schedule; it cannot run under the blocks schedule",
                ));
            }
            if self.threshold.is_some() || self.factor.is_some() {
                return Err(invalid(
                    "algorithm origin reveals positions at random; it cannot take a threshold or factor",
                ));
            }
        }
        if self.cache == CacheMode::Elastic {
            self.elastic.validate()?;
        }
        if self.alg_temp > 0.0 && (self.threshold.is_some() || self.factor.is_some()) {
            return Err(invalid(format!(
                "alg_temp draws positions; it cannot be combined with a threshold or factor (algorithm {name})"
            )));
        }
        if let Some(t) = self.threshold
            && !(t > 0.0 && t <= 1.0)
        {
            return Err(invalid(format!("threshold must be in (0, 1], got {t}")));
        }
        if let Some(f) = self.factor
            && !(f > 0.0 && f.is_finite())
        {
            return Err(invalid(format!(
                "factor must be positive and finite, got {f}"
            )));
        }
        if let Some(m) = self.min_per_step {
            if m == 0 {
                return Err(invalid("min_per_step must be at least 1"));
            }
            if self.threshold.is_none() {
                return Err(invalid(
                    "min_per_step bounds the threshold rule: give a threshold with it",
                ));
            }
        }
        if self.threshold.is_some() && self.factor.is_some() {
            return Err(invalid("give threshold or factor, not both"));
        }
        if !(self.temperature >= 0.0 && self.temperature.is_finite()) {
            return Err(invalid(format!(
                "temperature must be ≥ 0 and finite, got {}",
                self.temperature
            )));
        }
        if self.top_k == Some(0) {
            return Err(invalid("top_k must be at least 1"));
        }
        if let Some(p) = self.top_p
            && !(p > 0.0 && p <= 1.0)
        {
            return Err(invalid(format!("top_p must be in (0, 1], got {p}")));
        }
        if !(self.cfg_scale >= 0.0 && self.cfg_scale.is_finite()) {
            return Err(invalid(format!(
                "cfg_scale must be ≥ 0 and finite, got {}",
                self.cfg_scale
            )));
        }
        if self.cfg_scale > 0.0 && self.cache != CacheMode::None {
            return Err(invalid(format!(
                "classifier-free guidance is not supported with the {} cache; use cache none",
                self.cache.name()
            )));
        }
        if !(self.alg_temp >= 0.0 && self.alg_temp.is_finite()) {
            return Err(invalid(format!(
                "alg_temp must be ≥ 0 and finite, got {}",
                self.alg_temp
            )));
        }
        Ok(())
    }
}

/// The model's special tokens as the decoder needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeTokens {
    /// The mask token of the canvas.
    pub mask_id: u32,
    /// Tokens that end the answer (end-of-sequence, end-of-turn).
    pub stop_ids: Vec<u32>,
    /// Filler for the masks left after an early stop; the stop token found when `None`.
    pub pad_id: Option<u32>,
    /// Dream: the logits of position `p` come from row `p - 1` (row 0 for position 0).
    pub shift_logits: bool,
}

/// What the step callback sees after every step.
#[derive(Debug, Clone, Copy)]
pub struct StepEvent<'a> {
    /// Index of the step just finished, from 0.
    pub step: usize,
    /// The requested number of steps (fewer may run under a threshold or factor rule).
    pub planned_steps: usize,
    /// Forward passes so far.
    pub nfe: usize,
    /// Masks left in the generated region.
    pub masks_left: usize,
    /// Positions committed by this step.
    pub committed: &'a [usize],
    /// The whole canvas: prompt then generated region.
    pub canvas: &'a [u32],
    /// Length of the prompt at the start of the canvas.
    pub prompt_len: usize,
}

/// The result of [`generate`].
#[derive(Debug, Clone, PartialEq)]
pub struct GenerateOutput {
    /// Prompt and generated tokens: `[prompt_len + gen_length]`.
    pub canvas: Vec<u32>,
    /// Length of the prompt at the start of the canvas.
    pub prompt_len: usize,
    /// The answer: from the end of the prompt to the first stop token (excluded) or the end.
    pub answer: Range<usize>,
    /// Forward passes made (an unconditional CFG pass counts as one).
    pub nfe: usize,
    /// Steps run.
    pub steps: usize,
    /// Whether the run stopped early because the answer was final.
    pub stopped_early: bool,
    /// Layers run over all forward passes (a pass from layer `l` counts `n_layers - l`).
    pub layer_forwards: usize,
    /// Query rows computed over all forward passes (span tokens × passes).
    pub query_rows: usize,
    /// Elastic cache: refreshes of every position (from some layer) made.
    pub refreshes: usize,
    /// Where the forward passes spent their time, when [`DecodeParams::profile`] was set.
    pub timings: Option<Timings>,
    /// Leading prompt positions whose keys and values came from an earlier generation
    /// ([`generate_with_context`]) and were not computed again; 0 otherwise.
    pub reused: usize,
}

impl GenerateOutput {
    /// The generated region, stop tokens included.
    pub fn generated(&self) -> &[u32] {
        &self.canvas[self.prompt_len..]
    }

    /// The answer's tokens (without the stop token).
    pub fn answer_ids(&self) -> &[u32] {
        &self.canvas[self.answer.clone()]
    }
}

/// Generate `params.gen_length` tokens after `prompt`, calling `on_step` after every step; it
/// returns `false` to cancel, which ends the run with [`RuntimeError::Cancelled`].
/// Call [`DecodeParams::validate`] with the model's context first to check the length.
pub fn generate(
    model: &dyn Forward,
    tokens: &DecodeTokens,
    prompt: &[u32],
    params: &DecodeParams,
    on_step: &mut dyn FnMut(&StepEvent<'_>) -> bool,
) -> Result<GenerateOutput, RuntimeError> {
    check_inputs(model, tokens, prompt, params)?;
    let mut run = Run::new(model, tokens, prompt, params, on_step);
    run_schedule(&mut run)?;
    Ok(run.finish())
}

fn run_schedule(run: &mut Run<'_>) -> Result<(), RuntimeError> {
    match run.params.schedule() {
        Schedule::Blocks => blocks::run(run),
        Schedule::Timesteps => timesteps::run(run),
    }
}

/// [`generate`], reusing the keys and values `context` kept from earlier generations for the
/// leading positions of `prompt` that repeat the tokens they were computed from (a chat's
/// earlier turns), and keeping this run's for the next one. Those positions are not run
/// again, so a turn costs what its new tokens cost, not the whole history.
///
/// Attention is bidirectional, so this is an approximation: the reused entries were computed
/// with the canvas of their own generation after them (its answer's masks, not this prompt's
/// new tokens). Runs with classifier-free guidance or the elastic cache do not reuse (they
/// run as [`generate`] does and leave `context` empty). A run that fails (other than by
/// cancellation, which ends between steps) empties `context`.
pub fn generate_with_context(
    model: &dyn Forward,
    tokens: &DecodeTokens,
    prompt: &[u32],
    params: &DecodeParams,
    context: &mut ContextCache,
    on_step: &mut dyn FnMut(&StepEvent<'_>) -> bool,
) -> Result<GenerateOutput, RuntimeError> {
    check_inputs(model, tokens, prompt, params)?;
    if !ContextCache::can_reuse(params) {
        context.clear();
        return generate(model, tokens, prompt, params, on_step);
    }
    let len = prompt.len() + params.gen_length;
    let (cache, stored, frozen) = context.take_for(model, tokens, prompt, len)?;
    let mut run = Run::new(model, tokens, prompt, params, on_step);
    run.attach_context(cache, stored, frozen);
    let result = run_schedule(&mut run);
    match (&result, run.detach_context()) {
        (Ok(()) | Err(RuntimeError::Cancelled), Some((cache, stored))) => {
            context.put_back(cache, stored)
        }
        _ => context.clear(),
    }
    result?;
    Ok(run.finish())
}

/// What every generation checks before any work.
fn check_inputs(
    model: &dyn Forward,
    tokens: &DecodeTokens,
    prompt: &[u32],
    params: &DecodeParams,
) -> Result<(), RuntimeError> {
    params.validate(prompt.len(), None)?;
    let vocab = model.vocab_size();
    if vocab == 0 {
        return Err(RuntimeError::Unsupported(
            "a model with an empty vocabulary".into(),
        ));
    }
    if tokens.mask_id as usize >= vocab {
        return Err(invalid(format!(
            "mask id {} is outside the vocabulary of {vocab}",
            tokens.mask_id
        )));
    }
    if let Some(&bad) = prompt.iter().find(|&&t| t as usize >= vocab) {
        return Err(invalid(format!(
            "prompt token {bad} is outside the vocabulary of {vocab}"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
