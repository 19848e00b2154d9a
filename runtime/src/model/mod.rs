//! The model: configuration read from a `.dlm` file, weights viewed in the map, and the
//! bidirectional forward pass.

mod kv_cache;

pub use kv_cache::{Attend, KvCache};

use crate::RuntimeError;

/// The forward pass as a decoder sees it. `Model` implements it; tests use hand-made ones.
pub trait Forward {
    /// Rows of the embedding / head.
    fn vocab_size(&self) -> usize;

    /// A cache able to hold `len` positions of every layer.
    fn new_cache(&self, len: usize) -> KvCache;

    /// Run the span `tokens`, whose first token sits at absolute position `start`, attending to
    /// the span and to what `attend` names. When `store` is given, every layer's keys and
    /// values of the span are written into it at their absolute positions.
    /// Returns the logits of the span-relative rows `want`: `[want.len(), vocab_size]`.
    /// The logits are the raw outputs of each row (no `shift_logits` applied).
    fn forward(
        &self,
        tokens: &[u32],
        start: usize,
        attend: Attend<'_>,
        store: Option<&mut KvCache>,
        want: &[usize],
    ) -> Result<Vec<f32>, RuntimeError>;
}
