//! The CPU KV cache: per layer `[len, kv_dim]` keys (RoPE applied) and values, and on request
//! the `[len, dim]` hidden states entering each layer. Attention reads it in place.

use super::alloc_zeroed;
use crate::RuntimeError;
use crate::backend::CacheShape;

/// Keys, values and optional hidden states of every canvas position, per layer.
#[derive(Debug, Clone)]
pub struct CpuCache {
    /// What it holds.
    pub shape: CacheShape,
    /// Per layer: `[len, kv_dim]` keys.
    pub k: Vec<Vec<f32>>,
    /// Per layer: `[len, kv_dim]` values.
    pub v: Vec<Vec<f32>>,
    /// Per layer: `[len, dim]` hidden states entering the layer (empty when not kept).
    pub h: Vec<Vec<f32>>,
}

impl CpuCache {
    /// A zeroed cache; an error (not an abort) when memory runs out.
    pub fn new(shape: CacheShape) -> Result<Self, RuntimeError> {
        let per = shape
            .len
            .checked_mul(shape.kv_dim)
            .ok_or_else(|| RuntimeError::InvalidRequest("KV cache size overflows".into()))?;
        let mut k = Vec::with_capacity(shape.n_layers);
        let mut v = Vec::with_capacity(shape.n_layers);
        let mut h = Vec::new();
        for _ in 0..shape.n_layers {
            k.push(alloc_zeroed(per)?);
            v.push(alloc_zeroed(per)?);
            if let Some(dim) = shape.hidden_dim {
                h.push(alloc_zeroed(shape.len.saturating_mul(dim))?);
            }
        }
        Ok(CpuCache { shape, k, v, h })
    }

    pub(super) fn store_kv(&mut self, layer: usize, positions: &[usize], k: &[f32], v: &[f32]) {
        let d = self.shape.kv_dim;
        scatter(&mut self.k[layer], d, positions, k);
        scatter(&mut self.v[layer], d, positions, v);
    }

    pub(super) fn store_hidden(&mut self, layer: usize, positions: &[usize], x: &[f32]) {
        if let (Some(d), Some(h)) = (self.shape.hidden_dim, self.h.get_mut(layer)) {
            scatter(h, d, positions, x);
        }
    }

    pub(super) fn load_hidden(&self, layer: usize, positions: &[usize], out: &mut [f32]) {
        let d = self
            .shape
            .hidden_dim
            .expect("checked: the cache keeps hidden states");
        let h = &self.h[layer];
        for (o, &p) in out.chunks_mut(d).zip(positions) {
            o.copy_from_slice(&h[p * d..(p + 1) * d]);
        }
    }
}

/// dst row `positions[i]` = src row i (rows `width` wide); a contiguous run is one copy.
fn scatter(dst: &mut [f32], width: usize, positions: &[usize], src: &[f32]) {
    let n = positions.len();
    if n > 0 && positions[n - 1] - positions[0] == n - 1 {
        let s = positions[0] * width;
        dst[s..s + n * width].copy_from_slice(&src[..n * width]);
        return;
    }
    for (row, &p) in src.chunks(width).zip(positions) {
        dst[p * width..(p + 1) * width].copy_from_slice(row);
    }
}
