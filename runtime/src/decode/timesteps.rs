//! Dream's timestep schedule, in two forms.
//!
//! - **Whole canvas** (no block length, no cache): Dream's `_sample` loop, `steps` steps on
//!   `linspace(1, eps, steps + 1)`; `origin` reveals each mask with probability `1 - s/t`, the
//!   other rules commit the `int(n_masked * (1 - s/t))` best (or drawn) positions.
//! - **Blocks** (a block length or a cache): Fast-dLLM's `generation_utils_block.py`. Each
//!   block opens with a full forward (refreshing the cache) that commits the block's first
//!   position; the block's other steps follow `linspace(1, eps, steps_per_block + 1)` from
//!   its second timestep, over the block's masks, on the span the cache mode gives.
//!
//! A step with nothing to commit makes no forward pass (its logits would not be used). Under
//! the threshold or factor rule a block (or the canvas) runs until it has no mask.

use super::CacheMode;
use super::run::{Pass, Run};
use super::schedule::{dream_reveal_probability, dream_timesteps, dream_transfer_count};
use crate::RuntimeError;
use std::ops::Range;

/// Run the schedule; stops early when [`Run::end_step`] says the answer is final.
pub(super) fn run(run: &mut Run<'_>) -> Result<(), RuntimeError> {
    let p = run.params;
    if p.block_length.is_none() && p.cache == CacheMode::None {
        let len = run.canvas.len();
        return steps(run, 0..len, 0, p.steps, 0..len).map(|_| ());
    }
    let block_len = p.effective_block_length();
    let n_blocks = p.gen_length / block_len;
    let steps_per_block = p.steps / n_blocks;
    run.open_cache()?;
    for b in 0..n_blocks {
        let start = run.prompt_len + b * block_len;
        let block = start..start + block_len;
        let first = if run.is_mask(start) {
            vec![start]
        } else {
            Vec::new()
        };
        let committed = run.commit_all(&Pass::Full, &first)?;
        if run.end_step(&committed)? {
            return Ok(());
        }
        if steps(run, block.clone(), 1, steps_per_block, block)? {
            return Ok(());
        }
    }
    Ok(())
}

/// Steps `first..` of a schedule of `n_steps` over the masks in `cands_in`, with `block` the
/// block the cache mode works around. Returns whether the run stopped early.
fn steps(
    run: &mut Run<'_>,
    cands_in: Range<usize>,
    first: usize,
    n_steps: usize,
    block: Range<usize>,
) -> Result<bool, RuntimeError> {
    let p = run.params;
    let timesteps = dream_timesteps(n_steps, p.eps);
    let adaptive = run.rule.is_adaptive();
    // A model that keeps proposing the mask token could loop forever under an adaptive rule.
    let max_steps = 4 * (n_steps + cands_in.len()) + 16;
    let mut i = first;
    loop {
        let masked = run.masked_in(cands_in.clone());
        if masked.is_empty() || (!adaptive && i >= n_steps) {
            return Ok(false);
        }
        if i >= max_steps {
            return Err(RuntimeError::Unsupported(format!(
                "masks remain after {i} steps: the model keeps proposing the mask token"
            )));
        }
        let pass = run.pass(i, &block);
        let reveal = dream_reveal_probability(&timesteps, i, n_steps) as f64;
        let k = dream_transfer_count(masked.len(), &timesteps, i, n_steps);
        let committed = run.step(&pass, &masked, k, Some(reveal), true)?;
        i += 1;
        if run.end_step(&committed)? {
            return Ok(true);
        }
    }
}
