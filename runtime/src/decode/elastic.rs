//! Elastic-Cache (Nguyen-Tri, Ranjan, Shen, arXiv 2510.14973): decide *when* and *from which
//! layer* to refresh the KV cache from the attention itself.
//!
//! How dlm runs it, step by step (within the schedule's blocks):
//! - A **refresh** is a pass over the whole canvas from layer `l` (layer 0: a full forward;
//!   `l > 0`: the hidden states entering layer `l` come from the cache), storing every
//!   position's keys, values and hidden states. The run starts with one, and with block
//!   caching each block does too (the masks beyond the block keep the K/V of that refresh: they
//!   act mostly as a length bias).
//! - Every other step is a **window pass**: queries only for the first `window` masks of the
//!   block, the rows that predict them, and the tracked tokens; every other key and value is
//!   read from the cache. The pass stores what it computed.
//! - **Tracked tokens**: per layer, the `track` positions that received the most attention in
//!   the last refresh. Their attention column (the probability every query row gives them,
//!   averaged over heads) is compared, by cosine over the query rows both passes computed,
//!   with the previous pass's. At the first layer `l` where it falls below `gamma`, the step
//!   refreshes from layer `l` and takes its proposals from that refresh.
//!
//! Anchors: `gamma = 1` refreshes from layer 0 at every step (so the canvas equals the
//! uncached decoder's); `gamma = 0` never refreshes after the first pass (a cosine of
//! non-negative probabilities is never below 0).

use crate::RuntimeError;
use crate::model::LayerAttention;

/// Settings of [`super::CacheMode::Elastic`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ElasticParams {
    /// Masks of the active block whose queries a window pass computes (β).
    pub window: usize,
    /// Refresh when the tracked token's attention similarity falls below this (γ ∈ [0, 1]).
    pub gamma: f64,
    /// Tracked most-attended tokens per layer.
    pub track: usize,
    /// Refresh at every block start (masks beyond the block then keep that refresh's K/V).
    pub block_cache: bool,
    /// At a block's first step (after the run's first pass), refresh only the decoded text
    /// and the block, not the whole canvas: the masks beyond keep the keys and values of the
    /// run's first pass (or of the last refresh that reached them). Cheaper block openings for
    /// threshold decoding, where a block often finishes in its opening pass. Only with
    /// `block_cache` (without it blocks open with a window pass anyway).
    pub prefix_refresh: bool,
}

impl Default for ElasticParams {
    fn default() -> Self {
        ElasticParams {
            window: 16,
            gamma: 0.9,
            track: 1,
            block_cache: true,
            prefix_refresh: false,
        }
    }
}

impl ElasticParams {
    /// Check the ranges.
    pub fn validate(&self) -> Result<(), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidRequest(m));
        if self.window == 0 {
            return bad("the elastic window must be at least 1".into());
        }
        if !(0.0..=1.0).contains(&self.gamma) {
            return bad(format!(
                "elastic gamma must be in [0, 1], got {}",
                self.gamma
            ));
        }
        if self.track == 0 {
            return bad("elastic track must be at least 1".into());
        }
        Ok(())
    }
}

/// One layer's columns: for each tracked token, `(query position, probability)` ascending by
/// position.
type Columns = Vec<Vec<(usize, f32)>>;

/// What the elastic cache remembers between steps.
#[derive(Debug, Default)]
pub(super) struct ElasticState {
    /// Per layer: the tracked key positions.
    pub tracked: Vec<Vec<usize>>,
    /// Per layer: the tracked tokens' columns in the last pass.
    prev: Vec<Columns>,
}

impl ElasticState {
    /// Every tracked position, ascending and distinct.
    pub fn tracked_union(&self) -> Vec<usize> {
        let mut all: Vec<usize> = self.tracked.iter().flatten().copied().collect();
        all.sort_unstable();
        all.dedup();
        all
    }

    /// After a refresh over every position (`queries`, ascending; its probe asked for the
    /// columns of `probe_keys`, the tracked tokens before it, and for the mass): pick each
    /// layer's tracked tokens from the mass, and remember their columns where they did not
    /// change (a new tracked token's columns come from the next pass).
    pub fn after_refresh(
        &mut self,
        from_layer: usize,
        layers: &[LayerAttention],
        probe_keys: &[usize],
        queries: &[usize],
        track: usize,
    ) {
        let n_layers = from_layer + layers.len();
        self.tracked.resize(n_layers, Vec::new());
        self.prev.resize(n_layers, Vec::new());
        for (i, la) in layers.iter().enumerate() {
            let l = from_layer + i;
            // The span is every position in order, so a key's index is its position.
            let mut order: Vec<usize> = (0..la.mass.len()).collect();
            order.sort_by(|&a, &b| la.mass[b].total_cmp(&la.mass[a]).then(a.cmp(&b)));
            order.truncate(track);
            order.sort_unstable();
            if order == self.tracked[l] {
                self.prev[l] = self.columns(l, la, probe_keys, queries);
            } else {
                self.tracked[l] = order;
                self.prev[l].clear();
            }
        }
    }

    /// The columns of layer `l`'s tracked tokens in a pass.
    fn columns(
        &self,
        l: usize,
        la: &LayerAttention,
        probe_keys: &[usize],
        queries: &[usize],
    ) -> Columns {
        let n = queries.len();
        if la.columns.len() != probe_keys.len() * n {
            return Vec::new();
        }
        self.tracked[l]
            .iter()
            .map(|key| match probe_keys.binary_search(key) {
                Ok(k) => queries
                    .iter()
                    .copied()
                    .zip(la.columns[k * n..(k + 1) * n].iter().copied())
                    .collect(),
                Err(_) => Vec::new(),
            })
            .collect()
    }

    /// Compare a window pass's columns (`layers[i]` is layer `from_layer + i`; its columns are
    /// of `probe_keys` over `queries`) with the previous pass's, and remember them. Returns
    /// the first layer where the similarity of some tracked token falls below `gamma`.
    pub fn drift(
        &mut self,
        from_layer: usize,
        layers: &[LayerAttention],
        probe_keys: &[usize],
        queries: &[usize],
        gamma: f64,
    ) -> Option<usize> {
        let mut first = None;
        for (i, la) in layers.iter().enumerate() {
            let l = from_layer + i;
            if l >= self.tracked.len() {
                continue;
            }
            let cols = self.columns(l, la, probe_keys, queries);
            if first.is_none() && !cols.is_empty() && self.prev[l].len() == cols.len() {
                let drifted = cols
                    .iter()
                    .zip(&self.prev[l])
                    .any(|(now, before)| cosine(now, before).is_some_and(|c| c < gamma));
                if drifted {
                    first = Some(l);
                }
            }
            self.prev[l] = cols;
        }
        first
    }
}

/// Cosine similarity of two sparse vectors over the positions both have; `None` when they
/// share none or one of them is zero there.
fn cosine(a: &[(usize, f32)], b: &[(usize, f32)]) -> Option<f64> {
    let (mut i, mut j) = (0, 0);
    let (mut dot, mut na, mut nb, mut common) = (0f64, 0f64, 0f64, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].0.cmp(&b[j].0) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                let (x, y) = (a[i].1 as f64, b[j].1 as f64);
                dot += x * y;
                na += x * x;
                nb += y * y;
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    if common == 0 || na == 0.0 || nb == 0.0 {
        return None;
    }
    Some(dot / (na.sqrt() * nb.sqrt()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cosine_over_common_positions() {
        let a = [(1, 1.0), (2, 0.0), (5, 1.0)];
        let b = [(1, 1.0), (3, 9.0), (5, 1.0)];
        assert!((cosine(&a, &b).unwrap() - 1.0).abs() < 1e-12);
        let c = [(1, 1.0), (5, 0.0)];
        assert!((cosine(&a, &c).unwrap() - 1.0 / 2f64.sqrt()).abs() < 1e-12);
        assert_eq!(cosine(&a, &[(7, 1.0)]), None);
    }

    #[test]
    fn drift_reports_the_first_layer_below_gamma() {
        let mut s = ElasticState {
            tracked: vec![vec![0], vec![0], vec![0]],
            prev: vec![Vec::new(); 3],
        };
        let queries = [4usize, 5];
        let la = |c: [f32; 2]| LayerAttention {
            columns: c.to_vec(),
            mass: Vec::new(),
        };
        // First pass: nothing to compare with.
        let first = [la([0.5, 0.5]), la([0.5, 0.5]), la([0.5, 0.5])];
        assert_eq!(s.drift(0, &first, &[0], &queries, 0.9), None);
        // Layer 1 turns towards the second query: cosine 0.707 < 0.9; layer 2 too, but the
        // first layer is the answer.
        let second = [la([0.5, 0.5]), la([0.0, 1.0]), la([1.0, 0.0])];
        assert_eq!(s.drift(0, &second, &[0], &queries, 0.9), Some(1));
        // gamma 0 never fires.
        assert_eq!(s.drift(0, &first, &[0], &queries, 0.0), None);
    }

    #[test]
    fn ranges_are_checked() {
        assert!(ElasticParams::default().validate().is_ok());
        for p in [
            ElasticParams {
                window: 0,
                ..Default::default()
            },
            ElasticParams {
                gamma: 1.5,
                ..Default::default()
            },
            ElasticParams {
                track: 0,
                ..Default::default()
            },
        ] {
            assert!(p.validate().is_err());
        }
    }
}
