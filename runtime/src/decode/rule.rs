//! The position rule of a run: how each row's proposal and confidence are computed (the
//! [`ProposeSpec`] a backend runs) and which candidates a step commits. Independent of the
//! schedule (which supplies the count) and of the cache (which decides the span).

use super::propose::{Proposal, ProposeSpec, RowRule};
use super::rng::Rng;
use super::sample::{DreamConfidence, Filter};
use super::select::{self, Candidate};
use super::{Algorithm, DecodeParams};

/// Which of the proposed candidates a step commits.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Select {
    /// The schedule's count, most confident first.
    TopK,
    /// Fast-dLLM: every candidate at or above τ, and always the `min` best (Fast-dLLM: 1; a
    /// step-distilled model's `min_per_step`).
    Threshold { tau: f64, min: usize },
    /// Fast-dLLM's factor rule.
    Factor(f64),
    /// Dream `alg_temp`: the schedule's count drawn by `softmax(confidence / alg_temp)`.
    AlgTemp(f64),
    /// Dream `origin`: every position the reveal draw picked (before the forward).
    Revealed,
}

/// A run's position rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Rule {
    /// What each row proposes.
    pub spec: ProposeSpec,
    /// What a step commits.
    pub select: Select,
}

impl Rule {
    /// The rule the parameters describe (they are validated).
    pub fn new(p: &DecodeParams) -> Self {
        let rule = match p.algorithm {
            Algorithm::LowConfidence | Algorithm::Random => RowRule::Llada,
            Algorithm::Origin | Algorithm::MaskgitPlus => {
                RowRule::Dream(DreamConfidence::Probability)
            }
            Algorithm::TopkMargin => RowRule::Dream(DreamConfidence::Margin),
            Algorithm::Entropy => RowRule::Dream(DreamConfidence::NegEntropy),
        };
        let select = if p.algorithm == Algorithm::Origin {
            Select::Revealed
        } else if let Some(t) = p.threshold {
            Select::Threshold {
                tau: t,
                min: p.min_per_step.unwrap_or(1),
            }
        } else if let Some(f) = p.factor {
            Select::Factor(f)
        } else if p.alg_temp > 0.0 {
            Select::AlgTemp(p.alg_temp)
        } else {
            Select::TopK
        };
        Rule {
            spec: ProposeSpec {
                rule,
                temperature: p.temperature,
                filter: Filter {
                    top_k: p.top_k,
                    top_p: p.top_p,
                },
                random_confidence: p.algorithm == Algorithm::Random,
            },
            select,
        }
    }

    /// Whether the count from the schedule decides how many are committed (so a count of 0
    /// commits nothing).
    pub fn uses_count(&self) -> bool {
        matches!(self.select, Select::TopK | Select::AlgTemp(_))
    }

    /// Whether the rule may finish a block in fewer steps than scheduled (so the loop runs
    /// until the block has no mask rather than for a fixed number of steps).
    pub fn is_adaptive(&self) -> bool {
        matches!(self.select, Select::Threshold { .. } | Select::Factor(_))
    }

    /// Indices into `cands` to commit, given the schedule's count `k`.
    pub fn choose(&self, cands: &[Candidate], k: usize, rng: &mut Rng) -> Vec<usize> {
        match self.select {
            Select::TopK => select::top_k(cands, k),
            Select::Threshold { tau, min } => select::threshold(cands, tau, min),
            Select::Factor(f) => select::factor(cands, f),
            Select::AlgTemp(t) => select::sample_by_confidence(cands, k, t, rng),
            Select::Revealed => (0..cands.len()).collect(),
        }
    }
}

/// Candidates from positions and their proposals.
pub(super) fn candidates(positions: &[usize], proposals: &[Proposal]) -> Vec<Candidate> {
    positions
        .iter()
        .zip(proposals)
        .map(|(&pos, pr)| Candidate {
            pos,
            token: pr.token,
            confidence: pr.confidence,
        })
        .collect()
}
