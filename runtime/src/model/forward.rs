//! The bidirectional transformer forward pass shared by LLaDA and Dream:
//! embedding → N × [RMSNorm → q,k,v (+bias) → RoPE → attention → out-proj → residual →
//! RMSNorm → SwiGLU → residual] → RMSNorm → head, for the rows the decoder asks for.

use super::config::ModelConfig;
use super::kv_cache::{Attend, KvCache};
use super::profile::{Part, timed};
use super::weights::{LayerWeights, Weights};
use rayon::prelude::*;

/// Precomputed RoPE tables: `cos`/`sin` are `[seq_len, head_dim / 2]`.
#[derive(Debug, Clone)]
pub struct Rope {
    half: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl Rope {
    /// Tables for positions `0..seq_len` of heads `head_dim` wide with base `theta`.
    /// Computed as the reference does, in f32: `inv_freq = 1 / theta^(2i/d)`, `angle = pos * inv_freq`.
    pub fn new(head_dim: usize, seq_len: usize, theta: f32) -> Self {
        let half = head_dim / 2;
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
            .collect();
        let mut cos = Vec::with_capacity(seq_len * half);
        let mut sin = Vec::with_capacity(seq_len * half);
        for pos in 0..seq_len {
            for f in &inv_freq {
                let a = pos as f32 * f;
                cos.push(a.cos());
                sin.push(a.sin());
            }
        }
        Rope { half, cos, sin }
    }

    /// RoPE of every head of `x` (`[n, width]`, heads `head_dim` wide); row i sits at
    /// position `start + i`.
    fn apply_rows(&self, x: &mut [f32], width: usize, head_dim: usize, start: usize) {
        x.par_chunks_mut(width).enumerate().for_each(|(i, row)| {
            for head in row.chunks_mut(head_dim) {
                self.apply(head, start + i);
            }
        });
    }

    /// Rotate-half RoPE of one head vector `x` (`[head_dim]`) at position `pos`.
    fn apply(&self, x: &mut [f32], pos: usize) {
        let h = self.half;
        let (c, s) = (&self.cos[pos * h..][..h], &self.sin[pos * h..][..h]);
        let (x1, x2) = x.split_at_mut(h);
        for i in 0..h {
            let (a, b) = (x1[i], x2[i]);
            x1[i] = a * c[i] - b * s[i];
            x2[i] = b * c[i] + a * s[i];
        }
    }
}

/// y = x / rms(x) * w, per row of `x` (`[n, dim]`).
fn rmsnorm(x: &[f32], w: &[f32], eps: f32, out: &mut [f32]) {
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

/// Dot product with eight independent accumulators, so the compiler can vectorize it.
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = ac
        .remainder()
        .iter()
        .zip(bc.remainder())
        .map(|(x, y)| x * y)
        .sum();
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + tail
}

fn add_bias(x: &mut [f32], b: &[f32]) {
    for row in x.chunks_mut(b.len()) {
        for (v, bb) in row.iter_mut().zip(b) {
            *v += bb;
        }
    }
}

/// Scratch buffers of one forward pass over `n` span tokens.
struct Scratch {
    h: Vec<f32>,    // [n, dim]
    q: Vec<f32>,    // [n, n_heads*head_dim]
    k: Vec<f32>,    // [n, kv_dim]
    v: Vec<f32>,    // [n, kv_dim]
    att: Vec<f32>,  // [n, n_heads*head_dim]
    gate: Vec<f32>, // [n, hidden_dim]
    up: Vec<f32>,   // [n, hidden_dim]
}

/// Run the span; see [`super::Forward::forward`] for the contract.
#[allow(clippy::too_many_arguments)]
pub(crate) fn forward(
    cfg: &ModelConfig,
    w: &Weights,
    rope: &Rope,
    bytes: &[u8],
    tokens: &[u32],
    start: usize,
    attend: Attend<'_>,
    mut store: Option<&mut KvCache>,
    want: &[usize],
) -> Vec<f32> {
    let n = tokens.len();
    let (dim, hd, kv_dim) = (cfg.dim, cfg.head_dim(), cfg.kv_dim());
    let q_dim = cfg.n_heads * hd;

    // [n, dim] residual stream.
    let mut x = vec![0f32; n * dim];
    let embd = w.tok_embd.view(bytes);
    x.par_chunks_mut(dim)
        .zip(tokens.par_iter())
        .for_each(|(row, &t)| dlm_simd::dequantize_row(&embd, t as usize, row));

    let mut s = Scratch {
        h: vec![0.0; n * dim],
        q: vec![0.0; n * q_dim],
        k: vec![0.0; n * kv_dim],
        v: vec![0.0; n * kv_dim],
        att: vec![0.0; n * q_dim],
        gate: vec![0.0; n * cfg.hidden_dim],
        up: vec![0.0; n * cfg.hidden_dim],
    };
    for (l, lw) in w.layers.iter().enumerate() {
        let cached = match attend {
            Attend::SpanOnly => None,
            Attend::Prefix(c) | Attend::Dual(c) => Some((&c.k[l][..], &c.v[l][..], c.len)),
        };
        attention_block(cfg, lw, rope, bytes, &mut x, &mut s, start, attend, cached);
        if let Some(c) = store.as_deref_mut() {
            c.k[l][start * kv_dim..(start + n) * kv_dim].copy_from_slice(&s.k);
            c.v[l][start * kv_dim..(start + n) * kv_dim].copy_from_slice(&s.v);
        }
        mlp_block(cfg, lw, bytes, &mut x, &mut s);
    }

    // Only the rows the decoder wants go through the final norm and the head.
    let mut sel = vec![0f32; want.len() * dim]; // [want, dim]
    for (o, &r) in sel.chunks_mut(dim).zip(want) {
        o.copy_from_slice(&x[r * dim..(r + 1) * dim]);
    }
    timed(Part::Head, || {
        let mut normed = vec![0f32; want.len() * dim];
        rmsnorm(&sel, &w.out_norm, cfg.norm_eps, &mut normed);
        let mut logits = vec![0f32; want.len() * cfg.vocab_size]; // [want, vocab]
        dlm_simd::matmul(&w.head.view(bytes), &normed, want.len(), &mut logits);
        logits
    })
}

/// x += Wo · attention(RoPE(q), RoPE(k), v) of the normed x.
#[allow(clippy::too_many_arguments)]
fn attention_block(
    cfg: &ModelConfig,
    lw: &LayerWeights,
    rope: &Rope,
    bytes: &[u8],
    x: &mut [f32],
    s: &mut Scratch,
    start: usize,
    attend: Attend<'_>,
    cached: Option<(&[f32], &[f32], usize)>,
) {
    let n = x.len() / cfg.dim;
    let (hd, kv_dim) = (cfg.head_dim(), cfg.kv_dim());
    rmsnorm(x, &lw.attn_norm, cfg.norm_eps, &mut s.h);
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.wq.view(bytes), &s.h, n, &mut s.q)
    });
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.wk.view(bytes), &s.h, n, &mut s.k)
    });
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.wv.view(bytes), &s.h, n, &mut s.v)
    });
    if let Some((bq, bk, bv)) = &lw.bias {
        add_bias(&mut s.q, bq);
        add_bias(&mut s.k, bk);
        add_bias(&mut s.v, bv);
    }
    timed(Part::Attention, || {
        let q_dim = cfg.n_heads * hd;
        rope.apply_rows(&mut s.q, q_dim, hd, start);
        rope.apply_rows(&mut s.k, kv_dim, hd, start);

        // Key positions other than the span's own: [0, start) for prefix, all but the span
        // for dual.
        let outside: Vec<usize> = match (attend, cached) {
            (Attend::Prefix(_), Some(_)) => (0..start).collect(),
            (Attend::Dual(_), Some((_, _, len))) => (0..start).chain(start + n..len).collect(),
            _ => Vec::new(),
        };
        let n_keys = n + outside.len();
        // Gather every key/value head into contiguous [n_kv_heads, n_keys, head_dim] buffers
        // once, so the inner loops run over plain slices.
        let mut kh = vec![0f32; cfg.n_kv_heads * n_keys * hd];
        let mut vh = vec![0f32; cfg.n_kv_heads * n_keys * hd];
        kh.par_chunks_mut(n_keys * hd)
            .zip(vh.par_chunks_mut(n_keys * hd))
            .enumerate()
            .for_each(|(g, (kd, vd))| {
                let off = g * hd;
                for j in 0..n_keys {
                    let (src_k, src_v, p) = if j < n {
                        (&s.k[..], &s.v[..], j)
                    } else {
                        let (ck, cv, _) = cached.expect("outside keys come from the cache");
                        (ck, cv, outside[j - n])
                    };
                    kd[j * hd..][..hd].copy_from_slice(&src_k[p * kv_dim + off..][..hd]);
                    vd[j * hd..][..hd].copy_from_slice(&src_v[p * kv_dim + off..][..hd]);
                }
            });
        let group = cfg.n_heads / cfg.n_kv_heads;
        let scale = 1.0 / (hd as f32).sqrt();
        let q = &s.q;
        // One task per query row (all its heads): scores over every key, softmax, weighted sum.
        s.att.par_chunks_mut(q_dim).enumerate().for_each_init(
            || vec![0f32; n_keys],
            |scores, (i, out_row)| {
                for (h, out) in out_row.chunks_mut(hd).enumerate() {
                    let g = h / group;
                    let (kd, vd) = (
                        &kh[g * n_keys * hd..][..n_keys * hd],
                        &vh[g * n_keys * hd..][..n_keys * hd],
                    );
                    let qh = &q[i * q_dim + h * hd..][..hd];
                    let mut max = f32::NEG_INFINITY;
                    for (sc, kj) in scores.iter_mut().zip(kd.chunks_exact(hd)) {
                        *sc = dot(qh, kj) * scale;
                        max = max.max(*sc);
                    }
                    let mut sum = 0f32;
                    for sc in scores.iter_mut() {
                        *sc = (*sc - max).exp();
                        sum += *sc;
                    }
                    out.fill(0.0);
                    let inv = 1.0 / sum;
                    for (sc, vj) in scores.iter().zip(vd.chunks_exact(hd)) {
                        let p = sc * inv;
                        for (o, vv) in out.iter_mut().zip(vj) {
                            *o += p * vv;
                        }
                    }
                }
            },
        );
    });
    // Reuse `h` for the projection output.
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.wo.view(bytes), &s.att, n, &mut s.h)
    });
    for (a, b) in x.iter_mut().zip(&s.h) {
        *a += b;
    }
}

/// x += W_down · (silu(W_gate · h) ⊙ W_up · h), h = RMSNorm(x).
fn mlp_block(cfg: &ModelConfig, lw: &LayerWeights, bytes: &[u8], x: &mut [f32], s: &mut Scratch) {
    let n = x.len() / cfg.dim;
    rmsnorm(x, &lw.ffn_norm, cfg.norm_eps, &mut s.h);
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.w_gate.view(bytes), &s.h, n, &mut s.gate)
    });
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.w_up.view(bytes), &s.h, n, &mut s.up)
    });
    s.gate.par_iter_mut().zip(&s.up).for_each(|(g, u)| {
        let silu = *g / (1.0 + (-*g).exp());
        *g = silu * u;
    });
    timed(Part::Matmul, || {
        dlm_simd::matmul(&lw.w_down.view(bytes), &s.gate, n, &mut s.h)
    });
    for (a, b) in x.iter_mut().zip(&s.h) {
        *a += b;
    }
}
