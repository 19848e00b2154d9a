//! The decoding flags shared by `run`, `chat`, `eval` and `bench`, laid over the defaults that
//! the model file carries in its `diffusion.*` keys.

use dlm_runtime::decode::{Algorithm, CacheMode, DecodeParams, Schedule};
use std::error::Error;

/// How to denoise. Every flag left out takes the model file's default.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DecodeArgs {
    /// Denoising steps in total (an upper bound under --threshold or --factor).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Tokens to generate (the canvas of masks after the prompt).
    #[arg(long)]
    pub gen_length: Option<usize>,
    /// Semi-autoregressive block length; must divide --gen-length. With the timesteps
    /// schedule it runs Dream in Fast-dLLM's blocks.
    #[arg(long)]
    pub block_length: Option<usize>,
    /// Which masked positions to commit: low_confidence, random (LLaDA; blocks schedule by
    /// default), maskgit_plus, topk_margin, entropy, origin (Dream; timesteps by default).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// Step schedule: blocks (LLaDA's even split per block) or timesteps (Dream's; in blocks
    /// with --block-length or a cache). Default: the algorithm's own.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Fast-dLLM parallel decoding: commit every masked position of the block whose confidence
    /// is at least this, in (0, 1] (always at least the best one).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// Fast-dLLM factor rule: commit the n-th best while confidence ≥ 1 - factor/(n+1).
    #[arg(long)]
    pub factor: Option<f64>,
    /// KV cache between steps: none, prefix or dual (Fast-dLLM), or elastic (Elastic-Cache:
    /// queries for a window of masks, refresh from the layer where attention drifts).
    #[arg(long)]
    pub cache: Option<String>,
    /// Elastic cache: masks of the active block whose queries a step computes.
    #[arg(long)]
    pub window: Option<usize>,
    /// Elastic cache: refresh from the first layer whose tracked attention similarity falls
    /// below this, in [0, 1] (1 = refresh everything every step, 0 = never).
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Elastic cache: most-attended tokens tracked per layer.
    #[arg(long)]
    pub track: Option<usize>,
    /// Elastic cache: no refresh at block starts (far masks then keep older keys/values).
    #[arg(long)]
    pub no_block_cache: bool,
    /// Sampling temperature; 0 is greedy.
    #[arg(long)]
    pub temperature: Option<f64>,
    /// Keep only the k most likely tokens before each softmax (confidences included); 0 turns
    /// off the model's default (Dream files default to 50, as the original sampler).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities sum to p.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Classifier-free guidance scale (0 = off; cache none only).
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Dream: temperature of the position choice (0 = most confident first).
    #[arg(long)]
    pub alg_temp: Option<f64>,
    /// Dream: the last timestep, in (0, 1).
    #[arg(long)]
    pub eps: Option<f64>,
    /// Seed for sampling and random choices; the same seed repeats a run.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run every planned step even after the answer has ended.
    #[arg(long)]
    pub no_early_stop: bool,
}

impl DecodeArgs {
    /// `defaults` with every given flag applied.
    pub fn apply(&self, defaults: &DecodeParams) -> Result<DecodeParams, Box<dyn Error>> {
        let mut p = defaults.clone();
        if let Some(a) = &self.algorithm {
            p.algorithm = Algorithm::from_name(a).ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                format!("unknown --algorithm {a:?}; one of {}", names.join(", "))
            })?;
            if p.algorithm.schedule() != defaults.algorithm.schedule() {
                // Switching between LLaDA blocks and Dream timesteps: the file's block length
                // belongs to the other schedule.
                p.block_length = None;
            }
        }
        if let Some(s) = &self.schedule {
            p.schedule =
                Some(Schedule::from_name(s).ok_or_else(|| {
                    format!("unknown --schedule {s:?}; one of blocks, timesteps")
                })?);
        }
        if let Some(v) = self.gen_length {
            p.gen_length = v;
            if self.block_length.is_none()
                && p.block_length
                    .is_some_and(|b| b == 0 || !v.is_multiple_of(b))
            {
                p.block_length = None;
            }
        }
        if let Some(v) = self.steps {
            p.steps = v;
        }
        if self.block_length.is_some() {
            p.block_length = self.block_length;
        }
        if self.threshold.is_some() {
            p.threshold = self.threshold;
        }
        if self.factor.is_some() {
            p.factor = self.factor;
        }
        if let Some(c) = &self.cache {
            p.cache = CacheMode::from_name(c).ok_or_else(|| {
                format!("unknown --cache {c:?}; one of none, prefix, dual, elastic")
            })?;
        }
        if let Some(v) = self.window {
            p.elastic.window = v;
        }
        if let Some(v) = self.gamma {
            p.elastic.gamma = v;
        }
        if let Some(v) = self.track {
            p.elastic.track = v;
        }
        if self.no_block_cache {
            p.elastic.block_cache = false;
        }
        if let Some(v) = self.temperature {
            p.temperature = v;
        }
        if let Some(k) = self.top_k {
            p.top_k = (k > 0).then_some(k);
        }
        if self.top_p.is_some() {
            p.top_p = self.top_p;
        }
        if let Some(v) = self.cfg {
            p.cfg_scale = v;
        }
        if let Some(v) = self.alg_temp {
            p.alg_temp = v;
        }
        if let Some(v) = self.eps {
            p.eps = v;
        }
        if let Some(v) = self.seed {
            p.seed = v;
        }
        if self.no_early_stop {
            p.stop_early = false;
        }
        Ok(p)
    }
}
