//! What a decoder asks of one forward pass, and what comes back.

use super::profile::Timings;
use crate::decode::{Proposal, ProposeSpec, Rng};

/// Where the span's tokens sit on the canvas.
#[derive(Debug, Clone, Copy)]
pub enum Positions<'a> {
    /// A contiguous run starting at this position.
    Run(usize),
    /// One position per token, ascending and distinct (a window of chosen queries).
    List(&'a [usize]),
}

impl Positions<'_> {
    /// The absolute position of every one of `n` span rows.
    pub fn to_vec(&self, n: usize) -> Vec<usize> {
        match *self {
            Positions::Run(start) => (start..start + n).collect(),
            Positions::List(p) => p.to_vec(),
        }
    }
}

/// Which keys the span's queries attend to besides the span's own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attend {
    /// Only the span: a full forward when the span is the whole canvas.
    Span,
    /// The span plus every cached position outside it, read in place from the cache
    /// (Fast-dLLM prefix cache: the span runs to the end; dual cache: the span is the block;
    /// a window: the span is a list of positions).
    Cache,
}

/// What the forward pass returns for the wanted rows.
#[derive(Debug)]
pub enum Output<'a> {
    /// The raw logits `[rows.len(), vocab]` (no shift applied).
    Logits,
    /// One proposal per wanted row, computed next to the logits.
    Propose {
        /// Token and confidence rule.
        spec: ProposeSpec,
        /// Draws for sampling, consumed row by row.
        rng: &'a mut Rng,
    },
}

/// Attention probabilities of one layer, averaged over heads (the drift signal of
/// Elastic-Cache).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LayerAttention {
    /// `[probe.keys.len(), n_query]`: for each probed key, its probability under each span
    /// query row.
    pub columns: Vec<f32>,
    /// `[n_keys]` in key order (span rows, then the cached positions outside the span
    /// ascending) when mass was asked for: the probability each key receives summed over
    /// the query rows.
    pub mass: Vec<f32>,
}

/// Attention to report from every layer the pass runs.
#[derive(Debug, Clone, Copy)]
pub struct Probe<'a> {
    /// Absolute canvas positions of the key columns to report.
    pub keys: &'a [usize],
    /// Also report each key's received mass.
    pub mass: bool,
}

/// One forward pass.
#[derive(Debug)]
pub struct Request<'a> {
    /// The span's tokens.
    pub tokens: &'a [u32],
    /// Where they sit.
    pub positions: Positions<'a>,
    /// Keys besides the span's.
    pub attend: Attend,
    /// Write the span's keys and values of every layer run (and hidden states, when the
    /// cache keeps them) into the cache at their positions.
    pub store: bool,
    /// Span-relative rows whose output is wanted, in the order wanted.
    pub rows: &'a [usize],
    /// First layer to run. 0 embeds the tokens; `l > 0` takes the hidden states entering
    /// layer `l` from the cache (which must keep them) and runs layers `l..n_layers`.
    pub from_layer: usize,
    /// Attention to report, per layer run.
    pub probe: Option<Probe<'a>>,
    /// Logits or proposals.
    pub output: Output<'a>,
    /// Measure where the time goes.
    pub profile: bool,
}

impl<'a> Request<'a> {
    /// A plain request: the span `tokens` from `start`, attending only to itself, logits of
    /// `rows`, nothing stored or probed.
    pub fn logits(tokens: &'a [u32], start: usize, rows: &'a [usize]) -> Self {
        Request {
            tokens,
            positions: Positions::Run(start),
            attend: Attend::Span,
            store: false,
            rows,
            from_layer: 0,
            probe: None,
            output: Output::Logits,
            profile: false,
        }
    }
}

/// What one forward pass returns.
#[derive(Debug, Default)]
pub struct Response {
    /// `[rows.len(), vocab]` for [`Output::Logits`], else empty.
    pub logits: Vec<f32>,
    /// `[rows.len()]` for [`Output::Propose`], else empty.
    pub proposals: Vec<Proposal>,
    /// One entry per layer run (from `from_layer`), when a probe was asked for.
    pub attention: Vec<LayerAttention>,
    /// Where the time went, when asked for.
    pub timings: Option<Timings>,
}
