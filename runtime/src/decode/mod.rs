//! Decoders: from a prompt and a forward pass to a denoised canvas. The LLaDA / Fast-dLLM
//! block-wise loop (with threshold and factor rules and the prefix and dual caches) and Dream's
//! timestep loop, reproducing the original PyTorch samplers token for token when greedy.
//!
//! The decoders see the model only through [`Forward`] and ask it for the logits rows of the
//! positions a step may commit, never for the whole canvas.

mod blocks;
mod rng;
mod sample;
mod schedule;
mod select;
mod timesteps;

pub use rng::Rng;
pub use schedule::{dream_timesteps, dream_transfer_count, llada_transfer_counts};

use crate::RuntimeError;
use crate::model::{Attend, Forward, KvCache};
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

/// The two step schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// LLaDA semi-autoregressive blocks: steps split evenly over blocks, and within a block
    /// `n / steps` commits per step (one more for the first `n % steps`), or Fast-dLLM's rules.
    Blocks,
    /// Dream: `t = linspace(1, eps, steps + 1)`, `int(n_masked * (1 - s/t))` per step.
    Timesteps,
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

    /// Which schedule the algorithm runs under.
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
}

impl CacheMode {
    /// `none`, `prefix` or `dual`.
    pub fn name(self) -> &'static str {
        match self {
            CacheMode::None => "none",
            CacheMode::Prefix => "prefix",
            CacheMode::Dual => "dual",
        }
    }

    /// The mode of a name; `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Self> {
        [CacheMode::None, CacheMode::Prefix, CacheMode::Dual]
            .into_iter()
            .find(|c| c.name() == name)
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
    /// Fast-dLLM factor rule: the n-th best is committed while its confidence is at least
    /// `1 - factor / (n + 1)`.
    pub factor: Option<f64>,
    /// KV cache between steps (block schedule only).
    pub cache: CacheMode,
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
}

impl Default for DecodeParams {
    fn default() -> Self {
        DecodeParams {
            algorithm: Algorithm::LowConfidence,
            steps: 128,
            gen_length: 128,
            block_length: Some(32),
            threshold: None,
            factor: None,
            cache: CacheMode::None,
            temperature: 0.0,
            top_k: None,
            top_p: None,
            cfg_scale: 0.0,
            alg_temp: 0.0,
            eps: 1e-3,
            seed: 0,
            stop_early: true,
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
        match self.algorithm.schedule() {
            Schedule::Blocks => {
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
            }
            Schedule::Timesteps => {
                let name = self.algorithm.name();
                if block != self.gen_length {
                    return Err(invalid(format!(
                        "algorithm {name} has no blocks: leave block_length unset or equal to gen_length"
                    )));
                }
                if self.threshold.is_some() || self.factor.is_some() {
                    return Err(invalid(format!(
                        "threshold and factor need the block schedule (low_confidence or random), not {name}"
                    )));
                }
                if self.cache != CacheMode::None {
                    return Err(invalid(format!(
                        "the {} cache needs the block schedule (low_confidence or random), not {name}",
                        self.cache.name()
                    )));
                }
                if !(self.eps > 0.0 && self.eps < 1.0) {
                    return Err(invalid(format!("eps must be in (0, 1), got {}", self.eps)));
                }
            }
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
#[derive(Debug, Clone, PartialEq, Eq)]
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
    let mut run = Run::new(model, tokens, prompt, params, on_step);
    match params.algorithm.schedule() {
        Schedule::Blocks => blocks::run(&mut run)?,
        Schedule::Timesteps => timesteps::run(&mut run)?,
    }
    Ok(run.finish())
}

/// State shared by both loops: the canvas, counters, the random generator and the callback.
struct Run<'a> {
    model: &'a dyn Forward,
    tokens: &'a DecodeTokens,
    params: &'a DecodeParams,
    on_step: &'a mut dyn FnMut(&StepEvent<'_>) -> bool,
    /// `[prompt_len + gen_length]`.
    canvas: Vec<u32>,
    prompt_len: usize,
    vocab: usize,
    rng: Rng,
    nfe: usize,
    steps: usize,
    stopped_early: bool,
}

impl<'a> Run<'a> {
    fn new(
        model: &'a dyn Forward,
        tokens: &'a DecodeTokens,
        prompt: &[u32],
        params: &'a DecodeParams,
        on_step: &'a mut dyn FnMut(&StepEvent<'_>) -> bool,
    ) -> Self {
        let mut canvas = prompt.to_vec();
        canvas.resize(prompt.len() + params.gen_length, tokens.mask_id);
        Run {
            model,
            tokens,
            params,
            on_step,
            canvas,
            prompt_len: prompt.len(),
            vocab: model.vocab_size(),
            rng: Rng::new(params.seed),
            nfe: 0,
            steps: 0,
            stopped_early: false,
        }
    }

    fn is_mask(&self, pos: usize) -> bool {
        self.canvas[pos] == self.tokens.mask_id
    }

    /// Masked positions in `range`, ascending.
    fn masked_in(&self, range: Range<usize>) -> Vec<usize> {
        range.filter(|&p| self.is_mask(p)).collect()
    }

    /// The logits row that predicts position `pos`.
    fn source_row(&self, pos: usize) -> usize {
        if self.tokens.shift_logits {
            pos.saturating_sub(1)
        } else {
            pos
        }
    }

    /// Logits for the absolute `positions` from a forward of `tokens` (the span starting at
    /// `span_start`): `[positions.len(), vocab]`, the shift already applied.
    fn logits_for(
        &mut self,
        tokens: &[u32],
        span_start: usize,
        attend: Attend<'_>,
        store: Option<&mut KvCache>,
        positions: &[usize],
    ) -> Result<Vec<f32>, RuntimeError> {
        // Span-relative rows, ascending and distinct (with the shift, positions 0 and 1 share
        // row 0).
        let mut rows: Vec<usize> = positions
            .iter()
            .map(|&p| self.source_row(p) - span_start)
            .collect();
        rows.sort_unstable();
        rows.dedup();
        let out = self
            .model
            .forward(tokens, span_start, attend, store, &rows)?;
        self.nfe += 1;
        let vocab = self.vocab;
        if out.len() != rows.len() * vocab {
            return Err(RuntimeError::Unsupported(format!(
                "forward returned {} logits for {} rows of vocabulary {vocab}",
                out.len(),
                rows.len()
            )));
        }
        let mut logits = Vec::with_capacity(positions.len() * vocab);
        for &p in positions {
            let r = self.source_row(p) - span_start;
            let i = rows.binary_search(&r).unwrap_or(0);
            logits.extend_from_slice(&out[i * vocab..(i + 1) * vocab]);
        }
        Ok(logits)
    }

    /// Report the step just run; `Err(Cancelled)` when the callback says stop. Returns whether
    /// the run may stop early.
    fn end_step(&mut self, committed: &[usize]) -> Result<bool, RuntimeError> {
        let masks_left = self.canvas[self.prompt_len..]
            .iter()
            .filter(|&&t| t == self.tokens.mask_id)
            .count();
        let event = StepEvent {
            step: self.steps,
            planned_steps: self.params.steps,
            nfe: self.nfe,
            masks_left,
            committed,
            canvas: &self.canvas,
            prompt_len: self.prompt_len,
        };
        self.steps += 1;
        if !(self.on_step)(&event) {
            return Err(RuntimeError::Cancelled);
        }
        if self.params.stop_early
            && masks_left > 0
            && let Some(stop_at) = self.final_answer_end()
        {
            let pad = self.tokens.pad_id.unwrap_or(self.canvas[stop_at]);
            let mask = self.tokens.mask_id;
            for t in &mut self.canvas[stop_at + 1..] {
                if *t == mask {
                    *t = pad;
                }
            }
            self.stopped_early = true;
            return Ok(true);
        }
        Ok(false)
    }

    /// The position of the first stop token of the generated region when no mask precedes
    /// it: the answer can no longer change.
    fn final_answer_end(&self) -> Option<usize> {
        for p in self.prompt_len..self.canvas.len() {
            let t = self.canvas[p];
            if t == self.tokens.mask_id {
                return None;
            }
            if self.tokens.stop_ids.contains(&t) {
                return Some(p);
            }
        }
        None
    }

    fn finish(self) -> GenerateOutput {
        let end = (self.prompt_len..self.canvas.len())
            .find(|&p| self.tokens.stop_ids.contains(&self.canvas[p]))
            .unwrap_or(self.canvas.len());
        GenerateOutput {
            answer: self.prompt_len..end,
            canvas: self.canvas,
            prompt_len: self.prompt_len,
            nfe: self.nfe,
            steps: self.steps,
            stopped_early: self.stopped_early,
        }
    }
}

#[cfg(test)]
mod tests;
