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

/// out (`[n, q_dim]`) = softmax(q·kᵀ/√d)·v per head over the span's and the cached keys.
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

    // One query row (all its heads): scores over every key, softmax, weighted sum. When
    // probing, `hp` gathers the head-averaged probability of every key.
    let row = |scores: &mut Vec<f32>, i: usize, out_row: &mut [f32], mut hp: Option<&mut [f32]>| {
        for (h, o) in out_row.chunks_mut(hd).enumerate() {
            let off = (h / group) * hd;
            let qh = &q[i * q_dim + h * hd..][..hd];
            let mut max = f32::NEG_INFINITY;
            for (j, sc) in scores[..n].iter_mut().enumerate() {
                *sc = dot(qh, &k[j * kv_dim + off..][..hd]) * scale;
                max = max.max(*sc);
            }
            for (sc, &p) in scores[n..].iter_mut().zip(outside) {
                *sc = dot(qh, &ck[p * kv_dim + off..][..hd]) * scale;
                max = max.max(*sc);
            }
            let mut sum = 0f32;
            for sc in scores.iter_mut() {
                *sc = (*sc - max).exp();
                sum += *sc;
            }
            o.fill(0.0);
            let inv = 1.0 / sum;
            for (j, sc) in scores[..n].iter().enumerate() {
                let p = sc * inv;
                for (ov, vv) in o.iter_mut().zip(&v[j * kv_dim + off..][..hd]) {
                    *ov += p * vv;
                }
            }
            for (sc, &pos) in scores[n..].iter().zip(outside) {
                let p = sc * inv;
                for (ov, vv) in o.iter_mut().zip(&cv[pos * kv_dim + off..][..hd]) {
                    *ov += p * vv;
                }
            }
            if let Some(hp) = hp.as_deref_mut() {
                for (acc, sc) in hp.iter_mut().zip(scores.iter()) {
                    *acc += sc * inv * inv_heads;
                }
            }
        }
    };

    if !probing {
        out.par_chunks_mut(q_dim).enumerate().for_each_init(
            || vec![0f32; n_keys],
            |scores, (i, out_row)| row(scores, i, out_row, None),
        );
        return None;
    }
    let mut hp_all = vec![0f32; n * n_keys]; // [n, n_keys]
    out.par_chunks_mut(q_dim)
        .zip(hp_all.par_chunks_mut(n_keys))
        .enumerate()
        .for_each_init(
            || vec![0f32; n_keys],
            |scores, (i, (out_row, hp))| row(scores, i, out_row, Some(hp)),
        );
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
