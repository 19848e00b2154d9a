//! Dream's `_sample` loop: `steps` steps over the whole canvas on the timesteps
//! `linspace(1, eps, steps + 1)`; `origin` reveals each mask with probability `1 - s/t`, the
//! other rules commit the `int(n_masked * (1 - s/t))` most confident (or drawn) positions.

use super::sample::{DreamConfidence, Filter, dream_row};
use super::schedule::{dream_reveal_probability, dream_timesteps, dream_transfer_count};
use super::select::{self, Candidate};
use super::{Algorithm, Run};
use crate::RuntimeError;
use crate::model::Attend;

/// Run the steps; a step with nothing to commit makes no forward pass (its logits would not
/// be used), and the loop ends once no mask is left.
pub(super) fn run(run: &mut Run<'_>) -> Result<(), RuntimeError> {
    let p = run.params;
    let len = run.canvas.len();
    let timesteps = dream_timesteps(p.steps, p.eps);
    let filter = Filter {
        top_k: p.top_k,
        top_p: p.top_p,
    };
    let rule = match p.algorithm {
        Algorithm::TopkMargin => DreamConfidence::Margin,
        Algorithm::Entropy => DreamConfidence::NegEntropy,
        _ => DreamConfidence::Probability,
    };
    for i in 0..p.steps {
        let masked = run.masked_in(0..len);
        if masked.is_empty() {
            break;
        }
        let mut committed = Vec::new();
        if p.algorithm == Algorithm::Origin {
            let reveal = dream_reveal_probability(&timesteps, i, p.steps) as f64;
            let chosen: Vec<usize> = masked
                .iter()
                .copied()
                .filter(|_| run.rng.uniform() < reveal)
                .collect();
            if !chosen.is_empty() {
                let tokens = run.canvas.clone();
                let logits = run.logits_for(&tokens, 0, Attend::SpanOnly, None, &chosen)?;
                for (k, &pos) in chosen.iter().enumerate() {
                    let row = &logits[k * run.vocab..(k + 1) * run.vocab];
                    let (token, _) = dream_row(row, p.temperature, filter, rule, &mut run.rng);
                    run.canvas[pos] = token;
                    committed.push(pos);
                }
            }
        } else {
            let k = dream_transfer_count(masked.len(), &timesteps, i, p.steps);
            if k > 0 {
                let tokens = run.canvas.clone();
                let logits = run.logits_for(&tokens, 0, Attend::SpanOnly, None, &masked)?;
                let mut cands = Vec::with_capacity(masked.len());
                for (j, &pos) in masked.iter().enumerate() {
                    let row = &logits[j * run.vocab..(j + 1) * run.vocab];
                    let (token, confidence) =
                        dream_row(row, p.temperature, filter, rule, &mut run.rng);
                    cands.push(Candidate {
                        pos,
                        token,
                        confidence,
                    });
                }
                let chosen = if p.alg_temp > 0.0 {
                    select::sample_by_confidence(&cands, k, p.alg_temp, &mut run.rng)
                } else {
                    select::top_k(&cands, k)
                };
                for &c in &chosen {
                    run.canvas[cands[c].pos] = cands[c].token;
                    committed.push(cands[c].pos);
                }
            }
        }
        if run.end_step(&committed)? {
            return Ok(());
        }
    }
    Ok(())
}
