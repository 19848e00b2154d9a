//! The LLaDA / Fast-dLLM block-wise loop (`generate`, `generate_with_prefix_cache`,
//! `generate_with_dual_cache`): blocks left to right; within a block, steps until the block
//! has no mask, each committing the scheduled count, or Fast-dLLM's threshold or factor rule.
//! With a cache, each block starts with a full forward that refreshes every position's keys
//! and values, and at least one cached step follows it, as in the released Fast-dLLM code.

use super::sample::{Filter, cfg_combine, llada_row};
use super::schedule::llada_transfer_counts;
use super::select::{self, Candidate};
use super::{Algorithm, CacheMode, Run};
use crate::RuntimeError;
use crate::model::{Attend, KvCache};

/// Run every block; stops early when [`Run::end_step`] says the answer is final.
pub(super) fn run(run: &mut Run<'_>) -> Result<(), RuntimeError> {
    let p = run.params;
    let len = run.canvas.len();
    let block_len = p.effective_block_length();
    let n_blocks = p.gen_length / block_len;
    let steps_per_block = p.steps / n_blocks;
    // CFG: the prompt's own tokens (not masks in it) are masked in the unconditional pass.
    let prompt_index: Vec<bool> = (0..len)
        .map(|i| i < run.prompt_len && !run.is_mask(i))
        .collect();
    let mut cache: Option<KvCache> = match p.cache {
        CacheMode::None => None,
        CacheMode::Prefix | CacheMode::Dual => Some(run.model.new_cache(len)),
    };
    let shift = usize::from(run.tokens.shift_logits);
    // A model that keeps proposing the mask token could loop forever; the original would
    // crash there. Bound the steps of one block generously.
    let max_block_steps = 4 * (steps_per_block + block_len) + 16;

    for b in 0..n_blocks {
        let start = run.prompt_len + b * block_len;
        let end = start + block_len;
        let schedule = llada_transfer_counts(run.masked_in(start..end).len(), steps_per_block);
        let mut i = 0;
        loop {
            // The first step of a block (and every step without a cache) runs the whole
            // canvas; masks anywhere before the block end are candidates, as in the original.
            let full = cache.is_none() || i == 0;
            let positions = if full {
                run.masked_in(0..end)
            } else {
                run.masked_in(start..end)
            };
            let logits = if full {
                let tokens = run.canvas.clone();
                let mut logits =
                    run.logits_for(&tokens, 0, Attend::SpanOnly, cache.as_mut(), &positions)?;
                if p.cfg_scale > 0.0 {
                    let uncond: Vec<u32> = tokens
                        .iter()
                        .zip(&prompt_index)
                        .map(|(&t, &is_prompt)| if is_prompt { run.tokens.mask_id } else { t })
                        .collect();
                    let un = run.logits_for(&uncond, 0, Attend::SpanOnly, None, &positions)?;
                    for (c, u) in logits
                        .chunks_exact_mut(run.vocab)
                        .zip(un.chunks_exact(run.vocab))
                    {
                        cfg_combine(c, u, p.cfg_scale);
                    }
                }
                logits
            } else {
                let kv = cache
                    .as_ref()
                    .ok_or_else(|| RuntimeError::Unsupported("cache missing".into()))?;
                // With shifted logits the row before the block is needed too.
                let span_start = start.saturating_sub(shift);
                let (span_end, attend) = match p.cache {
                    CacheMode::Dual => (end, Attend::Dual(kv)),
                    _ => (len, Attend::Prefix(kv)),
                };
                let tokens = run.canvas[span_start..span_end].to_vec();
                run.logits_for(&tokens, span_start, attend, None, &positions)?
            };

            let filter = Filter {
                top_k: p.top_k,
                top_p: p.top_p,
            };
            let mut cands = Vec::with_capacity(positions.len());
            for (k, &pos) in positions.iter().enumerate() {
                let row = &logits[k * run.vocab..(k + 1) * run.vocab];
                let (token, prob) = llada_row(row, p.temperature, filter, &mut run.rng);
                let confidence = match p.algorithm {
                    Algorithm::Random => run.rng.uniform(),
                    _ => prob,
                };
                cands.push(Candidate {
                    pos,
                    token,
                    confidence,
                });
            }
            let chosen = if let Some(tau) = p.threshold {
                select::threshold(&cands, tau)
            } else if let Some(f) = p.factor {
                select::factor(&cands, f)
            } else {
                let k = schedule.get(i).copied().unwrap_or(cands.len());
                select::top_k(&cands, k)
            };
            let committed: Vec<usize> = chosen.iter().map(|&c| cands[c].pos).collect();
            for &c in &chosen {
                run.canvas[cands[c].pos] = cands[c].token;
            }
            i += 1;
            if run.end_step(&committed)? {
                return Ok(());
            }
            // Fast-dLLM's cached loops check the block after each cached step, so a block the
            // full first step completes still gets one cached step (which commits nothing):
            // the original's nfe counts it.
            if run.masked_in(start..end).is_empty() && (cache.is_none() || i >= 2) {
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
