//! The LLaDA / Fast-dLLM block-wise schedule (`generate`, `generate_with_prefix_cache`,
//! `generate_with_dual_cache`): blocks left to right; within a block, steps until the block
//! has no mask, each committing the scheduled count, or as the threshold or factor rule says.
//! With a cache, each block starts with a full forward that refreshes every position's keys
//! and values, and at least one cached step follows it, as in the released Fast-dLLM code.

use super::run::{Pass, Run};
use super::schedule::llada_transfer_counts;
use crate::RuntimeError;

/// Run every block; stops early when [`Run::end_step`] says the answer is final.
pub(super) fn run(run: &mut Run<'_>) -> Result<(), RuntimeError> {
    let p = run.params;
    let block_len = p.effective_block_length();
    let n_blocks = p.gen_length / block_len;
    let steps_per_block = p.steps / n_blocks;
    run.open_cache()?;
    // A model that keeps proposing the mask token could loop forever; the original would
    // crash there. Bound the steps of one block generously.
    let max_block_steps = 4 * (steps_per_block + block_len) + 16;

    for b in 0..n_blocks {
        let start = run.prompt_len + b * block_len;
        let block = start..start + block_len;
        let counts = llada_transfer_counts(run.masked_in(block.clone()).len(), steps_per_block);
        let mut i = 0;
        loop {
            // The first step of a block (and every step without a cache) runs the whole
            // canvas; masks anywhere before the block end are candidates, as in the original.
            let pass = run.pass(i, &block);
            let cands = match pass {
                Pass::Full | Pass::ElasticOpen(_) => run.masked_in(0..block.end),
                Pass::Cached(_) | Pass::Elastic(_) => run.masked_in(block.clone()),
            };
            let k = counts.get(i).copied().unwrap_or(cands.len());
            let committed = run.step(&pass, &cands, k, None, false)?;
            i += 1;
            if run.end_step(&committed)? {
                return Ok(());
            }
            // Fast-dLLM's cached loops check the block after each cached step, so a block the
            // full first step completes still gets one cached step (which commits nothing):
            // the original's nfe counts it.
            if run.masked_in(block.clone()).is_empty() && (!run.extra_cached_step() || i >= 2) {
                break;
            }
            if i >= max_block_steps {
                return Err(RuntimeError::Unsupported(format!(
                    "block {b} still has masks after {i} steps: the model keeps proposing the mask token"
                )));
            }
        }
    }
    Ok(())
}
