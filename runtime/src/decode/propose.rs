//! From a logits row to what a decoder needs of it: the proposed token and the confidence its
//! position rule ranks by. A backend runs this next to the logits ([`crate::backend::Backend::propose`])
//! so that only these few numbers per row leave a device; the CPU backend and the host-side
//! paths (classifier-free guidance) share this one implementation.

use super::rng::Rng;
use super::sample::{DreamConfidence, Filter, dream_row, llada_row};

/// How a row's token and confidence are computed.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RowRule {
    /// LLaDA: Gumbel-max token (argmax when greedy), confidence the top-1 probability of the
    /// raw logits in f64; the filter restricts only the choice.
    Llada,
    /// Dream `sample_tokens`: temperature, filter, softmax, draw; the confidence by the rule,
    /// on the filtered distribution.
    Dream(DreamConfidence),
}

/// What [`propose_row`] computes for each row.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ProposeSpec {
    /// Token and confidence rule.
    pub rule: RowRule,
    /// 0 for greedy.
    pub temperature: f64,
    /// top-k / top-p.
    pub filter: Filter,
    /// LLaDA `random` remasking: after each row's token, a uniform draw replaces the
    /// confidence.
    pub random_confidence: bool,
}

/// A proposed token for one row and its confidence.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proposal {
    /// Proposed token.
    pub token: u32,
    /// Confidence; higher commits first.
    pub confidence: f64,
}

/// The proposal of one row, drawing from `rng` as the original samplers do.
pub fn propose_row(row: &[f32], spec: &ProposeSpec, rng: &mut Rng) -> Proposal {
    let (token, mut confidence) = match spec.rule {
        RowRule::Llada => llada_row(row, spec.temperature, spec.filter, rng),
        RowRule::Dream(c) => dream_row(row, spec.temperature, spec.filter, c, rng),
    };
    if spec.random_confidence {
        confidence = rng.uniform();
    }
    Proposal { token, confidence }
}

/// [`propose_row`] of every `vocab`-wide row of `logits`, in order.
pub fn propose_rows(
    logits: &[f32],
    vocab: usize,
    spec: &ProposeSpec,
    rng: &mut Rng,
) -> Vec<Proposal> {
    logits
        .chunks_exact(vocab)
        .map(|row| propose_row(row, spec, rng))
        .collect()
}
