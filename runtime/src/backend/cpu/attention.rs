//! Bidirectional attention on the CPU, reading the span's fresh keys/values and the cached
//! ones in place: nothing is gathered or copied per step.
//!
//! The arithmetic is the milestone-1 order exactly (keys: the span's rows, then the cached
//! positions ascending; max, exp, sum and the weighted sum of values in that order), so
//! outputs are bit-identical to it.

use super::{CpuBackend, dot};
use crate::backend::AttentionArgs;
use crate::model::LayerAttention;
use rayon::prelude::*;

/// Query rows per task: each key and value row is loaded once for this many rows (times the
/// GQA group) instead of once per row.
const ROW_TILE: usize = 16;

/// out (`[n, q_dim]`) = softmax(q·kᵀ/√d)·v per head over the span's and the cached keys.
///
/// Work is split into (kv head, tile of query rows) tasks. Within a task every key row is
/// read once for all the task's (row, head) pairs; each pair's arithmetic (its dot products,
/// max, exp, sum and the weighted sum of values, all in key order) is the per-row loop's
/// exactly, so the result does not depend on the tiling.
pub(super) fn attention(
    a: AttentionArgs<'_, CpuBackend>,
    out: &mut [f32],
) -> Option<LayerAttention> {
    let sh = a.shape;
    let (hd, q_dim, kv_dim) = (sh.head_dim, sh.q_dim(), sh.kv_dim());
    let n = a.n;
    let n_keys = n + a.outside.len();
    let (ck, cv): (&[f32], &[f32]) = match a.cache {
        Some(c) if !a.outside.is_empty() => (&c.k[a.layer], &c.v[a.layer]),
        _ => (&[], &[]),
    };
    let (k, v, q) = (&a.k[..], &a.v[..], &a.q[..]);
    let outside = a.outside;
    let group = sh.n_heads / sh.n_kv_heads;
    let scale = 1.0 / (hd as f32).sqrt();
    let probing = a.probe_keys.is_some() || a.probe_mass;
    let inv_heads = 1.0 / sh.n_heads as f32;
    // Key j of head group g: the span's fresh row, or the cached one, read in place.
    let key = |j: usize, off: usize| -> &[f32] {
        if j < n {
            &k[j * kv_dim + off..][..hd]
        } else {
            &ck[outside[j - n] * kv_dim + off..][..hd]
        }
    };
    let value = |j: usize, off: usize| -> &[f32] {
        if j < n {
            &v[j * kv_dim + off..][..hd]
        } else {
            &cv[outside[j - n] * kv_dim + off..][..hd]
        }
    };

    let n_tiles = n.div_ceil(ROW_TILE);
    // Each task: (g, tile) -> its outputs [rows, group * hd] and, when probing, the
    // head-summed probabilities [rows, n_keys].
    let results: Vec<(Vec<f32>, Vec<f32>)> = (0..sh.n_kv_heads * n_tiles)
        .into_par_iter()
        .map(|task| {
            let (g, t) = (task / n_tiles, task % n_tiles);
            let off = g * hd;
            let rows = t * ROW_TILE..((t + 1) * ROW_TILE).min(n);
            let pairs = rows.len() * group; // (row, head) pairs, row-major
            let mut scores = vec![0f32; pairs * n_keys]; // [pairs, n_keys]
            let q_of = |p: usize| {
                let (i, h) = (rows.start + p / group, g * group + p % group);
                &q[i * q_dim + h * hd..][..hd]
            };
            for j in 0..n_keys {
                let kj = key(j, off);
                for p in 0..pairs {
                    scores[p * n_keys + j] = dot(q_of(p), kj) * scale;
                }
            }
            let mut inv = vec![0f32; pairs];
            for (p, sc) in scores.chunks_mut(n_keys).enumerate() {
                let max = sc.iter().fold(f32::NEG_INFINITY, |m, &x| m.max(x));
                let mut sum = 0f32;
                for x in sc.iter_mut() {
                    *x = (*x - max).exp();
                    sum += *x;
                }
                inv[p] = 1.0 / sum;
            }
            let mut o = vec![0f32; pairs * hd]; // [pairs, hd]
            for j in 0..n_keys {
                let vj = value(j, off);
                for p in 0..pairs {
                    let w = scores[p * n_keys + j] * inv[p];
                    for (ov, vv) in o[p * hd..(p + 1) * hd].iter_mut().zip(vj) {
                        *ov += w * vv;
                    }
                }
            }
            let mut hp = Vec::new();
            if probing {
                hp = vec![0f32; rows.len() * n_keys];
                for p in 0..pairs {
                    let r = p / group;
                    for (acc, sc) in hp[r * n_keys..(r + 1) * n_keys]
                        .iter_mut()
                        .zip(&scores[p * n_keys..(p + 1) * n_keys])
                    {
                        *acc += sc * inv[p] * inv_heads;
                    }
                }
            }
            (o, hp)
        })
        .collect();

    let mut hp_all = if probing {
        vec![0f32; n * n_keys]
    } else {
        Vec::new()
    }; // [n, n_keys]
    for (task, (o, hp)) in results.iter().enumerate() {
        let (g, t) = (task / n_tiles, task % n_tiles);
        let first = t * ROW_TILE;
        for (r, chunk) in o.chunks(group * hd).enumerate() {
            let i = first + r;
            out[i * q_dim + g * group * hd..][..group * hd].copy_from_slice(chunk);
        }
        if probing {
            for (r, row) in hp.chunks(n_keys).enumerate() {
                for (acc, x) in hp_all[(first + r) * n_keys..][..n_keys].iter_mut().zip(row) {
                    *acc += x;
                }
            }
        }
    }
    if !probing {
        return None;
    }
    let mut la = LayerAttention::default();
    if let Some(keys) = a.probe_keys {
        la.columns = Vec::with_capacity(keys.len() * n);
        for &j in keys {
            la.columns.extend((0..n).map(|i| hp_all[i * n_keys + j]));
        }
    }
    if a.probe_mass {
        la.mass = vec![0f32; n_keys];
        for r in hp_all.chunks(n_keys) {
            for (m, p) in la.mass.iter_mut().zip(r) {
                *m += p;
            }
        }
    }
    Some(la)
}
