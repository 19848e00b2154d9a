//! The CPU backend: weights borrowed from the file's bytes (the memory map), activations in
//! `Vec<f32>`, the `dlm-simd` kernels, rayon over rows.

mod attention;
mod cache;

pub use cache::CpuCache;

use super::{AttentionArgs, Backend, CacheShape};
use crate::RuntimeError;
use crate::decode::{Proposal, ProposeSpec, Rng, propose_rows};
use crate::model::{LayerAttention, Matrix, ModelBytes};
use dlm_simd::WeightRef;
use rayon::prelude::*;

/// Runs the forward pass on this machine's cores.
pub struct CpuBackend {
    bytes: ModelBytes,
}

impl CpuBackend {
    /// A backend reading weights from `bytes`, the whole model file (usually its map).
    pub fn new(bytes: ModelBytes) -> Self {
        CpuBackend { bytes }
    }

    fn view(&self, m: &Matrix) -> WeightRef<'_> {
        m.view((*self.bytes).as_ref())
    }
}

impl Backend for CpuBackend {
    type Matrix = Matrix;
    type Vector = Vec<f32>;
    type Act = Vec<f32>;
    type Cache = CpuCache;

    fn name(&self) -> String {
        "cpu".into()
    }

    fn upload_matrix(&self, m: &Matrix, _bytes: &[u8]) -> Result<Matrix, RuntimeError> {
        // The matrix already points into the same bytes this backend holds.
        Ok(*m)
    }

    fn upload_vector(&self, v: &[f32]) -> Result<Vec<f32>, RuntimeError> {
        Ok(v.to_vec())
    }

    fn alloc(&self, len: usize) -> Result<Vec<f32>, RuntimeError> {
        alloc_zeroed(len)
    }

    fn embed(&self, table: &Matrix, tokens: &[u32], out: &mut Vec<f32>) {
        let embd = self.view(table);
        out.par_chunks_mut(table.cols)
            .zip(tokens.par_iter())
            .for_each(|(row, &t)| dlm_simd::dequantize_row(&embd, t as usize, row));
    }

    fn rmsnorm(&self, x: &Vec<f32>, w: &Vec<f32>, eps: f32, out: &mut Vec<f32>) {
        let dim = w.len();
        out.par_chunks_mut(dim)
            .zip(x.par_chunks(dim))
            .for_each(|(o, xr)| {
                let ss: f32 = xr.iter().map(|v| v * v).sum::<f32>() / dim as f32;
                let r = 1.0 / (ss + eps).sqrt();
                for ((o, v), g) in o.iter_mut().zip(xr).zip(w) {
                    *o = v * r * g;
                }
            });
    }

    fn matmul(&self, w: &Matrix, x: &Vec<f32>, n: usize, out: &mut Vec<f32>) {
        dlm_simd::matmul(&self.view(w), &x[..n * w.cols], n, &mut out[..n * w.rows]);
    }

    fn add_bias(&self, x: &mut Vec<f32>, b: &Vec<f32>) {
        for row in x.chunks_mut(b.len()) {
            for (v, bb) in row.iter_mut().zip(b) {
                *v += bb;
            }
        }
    }

    fn rope(
        &self,
        x: &mut Vec<f32>,
        width: usize,
        head_dim: usize,
        cos: &Vec<f32>,
        sin: &Vec<f32>,
        positions: &[usize],
    ) {
        let h = head_dim / 2;
        // A row is a few hundred rotations: tasks of 16 rows keep rayon's overhead small.
        let rows = x.par_chunks_mut(width).enumerate().with_min_len(16);
        rows.for_each(|(i, row)| {
            let pos = positions[i];
            let (c, s) = (&cos[pos * h..][..h], &sin[pos * h..][..h]);
            for head in row.chunks_mut(head_dim) {
                let (x1, x2) = head.split_at_mut(h);
                for j in 0..h {
                    let (a, b) = (x1[j], x2[j]);
                    x1[j] = a * c[j] - b * s[j];
                    x2[j] = b * c[j] + a * s[j];
                }
            }
        });
    }

    fn swiglu(&self, gate: &mut Vec<f32>, up: &Vec<f32>) {
        gate.par_iter_mut().zip(up).for_each(|(g, u)| {
            let silu = *g / (1.0 + (-*g).exp());
            *g = silu * u;
        });
    }

    fn add_assign(&self, x: &mut Vec<f32>, y: &Vec<f32>) {
        for (a, b) in x.iter_mut().zip(y) {
            *a += b;
        }
    }

    fn gather_rows(&self, x: &Vec<f32>, width: usize, rows: &[usize], out: &mut Vec<f32>) {
        for (o, &r) in out.chunks_mut(width).zip(rows) {
            o.copy_from_slice(&x[r * width..(r + 1) * width]);
        }
    }

    fn new_cache(&self, shape: CacheShape) -> Result<CpuCache, RuntimeError> {
        CpuCache::new(shape)
    }

    fn cache_shape(&self, cache: &CpuCache) -> CacheShape {
        cache.shape
    }

    fn store_kv(
        &self,
        cache: &mut CpuCache,
        layer: usize,
        positions: &[usize],
        k: &Vec<f32>,
        v: &Vec<f32>,
    ) {
        cache.store_kv(layer, positions, k, v);
    }

    fn store_hidden(&self, cache: &mut CpuCache, layer: usize, positions: &[usize], x: &Vec<f32>) {
        cache.store_hidden(layer, positions, x);
    }

    fn load_hidden(&self, cache: &CpuCache, layer: usize, positions: &[usize], out: &mut Vec<f32>) {
        cache.load_hidden(layer, positions, out);
    }

    fn attention(
        &self,
        args: AttentionArgs<'_, Self>,
        out: &mut Vec<f32>,
    ) -> Option<LayerAttention> {
        attention::attention(args, out)
    }

    fn attention_rows(
        &self,
        args: AttentionArgs<'_, Self>,
        rows: &[usize],
        out: &mut Vec<f32>,
    ) -> bool {
        attention::attention_rows(args, Some(rows), out);
        true
    }

    fn to_host(&self, x: &Vec<f32>) -> Vec<f32> {
        x.clone()
    }

    fn propose(
        &self,
        logits: &Vec<f32>,
        vocab: usize,
        spec: &ProposeSpec,
        rng: &mut Rng,
    ) -> Vec<Proposal> {
        propose_rows(logits, vocab, spec, rng)
    }
}

/// A zeroed buffer, allocated fallibly so a huge request is an error, not an abort.
pub(crate) fn alloc_zeroed(len: usize) -> Result<Vec<f32>, RuntimeError> {
    crate::alloc::zeroed_f32(len, "activations or KV cache")
}
