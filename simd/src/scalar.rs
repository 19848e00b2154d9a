//! Scalar reference dot products, one per weight type: the definition every fast kernel is
//! tested against. Integer sums are exact; floats are applied once per block.

use crate::act::{ActBlock, ActBlock8};
use dlm_formats::quant::{
    BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, QK_K, f16_val, q6k_value, unpack_scales_q4k,
};

/// Σ w·a over one row; `a` has one block per 32 weights.
pub fn dot_q8_0_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot_q8_0_q8_0: length mismatch");
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let s: i32 = wb
            .qs
            .iter()
            .zip(&ab.qs)
            .map(|(&x, &y)| x as i32 * y as i32)
            .sum();
        acc += f16_val(wb.d) * ab.d * s as f32;
    }
    acc
}

/// Σ w·a over one row; `a` has one block per 32 weights.
pub fn dot_q4_0_q8_0(w: &[BlockQ4_0], a: &[ActBlock]) -> f32 {
    assert_eq!(w.len(), a.len(), "dot_q4_0_q8_0: length mismatch");
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let mut s = 0i32;
        for j in 0..16 {
            s += ((wb.qs[j] & 0x0f) as i32 - 8) * ab.qs[j] as i32;
            s += ((wb.qs[j] >> 4) as i32 - 8) * ab.qs[j + 16] as i32;
        }
        acc += f16_val(wb.d) * ab.d * s as f32;
    }
    acc
}

/// Σ w·a over one row; `a` has 8 blocks per `q4_k` block.
pub fn dot_q4_k_q8_0(w: &[BlockQ4K], a: &[ActBlock]) -> f32 {
    assert_eq!(w.len() * 8, a.len(), "dot_q4_k_q8_0: length mismatch");
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a.chunks_exact(8)) {
        let d = f16_val(wb.d);
        let dmin = f16_val(wb.dmin);
        let (sc, mn) = unpack_scales_q4k(&wb.scales);
        for c in 0..4 {
            let (a0, a1) = (&ab[2 * c], &ab[2 * c + 1]);
            let (mut s0, mut s1) = (0i32, 0i32);
            for i in 0..32 {
                let q = wb.qs[c * 32 + i];
                s0 += (q & 0x0f) as i32 * a0.qs[i] as i32;
                s1 += (q >> 4) as i32 * a1.qs[i] as i32;
            }
            acc += d * sc[2 * c] as f32 * a0.d * s0 as f32;
            acc += d * sc[2 * c + 1] as f32 * a1.d * s1 as f32;
            acc -= dmin * mn[2 * c] as f32 * a0.d * a0.sum as f32;
            acc -= dmin * mn[2 * c + 1] as f32 * a1.d * a1.sum as f32;
        }
    }
    acc
}

/// Σ w·a over one row; `a` has 8 blocks per `q6_k` block.
pub fn dot_q6_k_q8_0(w: &[BlockQ6K], a: &[ActBlock]) -> f32 {
    assert_eq!(w.len() * 8, a.len(), "dot_q6_k_q8_0: length mismatch");
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a.chunks_exact(8)) {
        let d = f16_val(wb.d);
        for (k, akb) in ab.iter().enumerate() {
            let mut s = 0i32;
            for half in 0..2 {
                let mut p = 0i32;
                for i in 0..16 {
                    let v = k * 32 + half * 16 + i;
                    p += (q6k_value(wb, v) as i32 - 32) * akb.qs[half * 16 + i] as i32;
                }
                s += wb.scales[2 * k + half] as i32 * p;
            }
            acc += d * akb.d * s as f32;
        }
        debug_assert_eq!(ab.len() * 32, QK_K);
    }
    acc
}

/// `out[r][t] = Σ_b d_w · d_a · Σ_i w·a` for q8_0 rows `w` (`[n_rows, a.len()]` blocks) and an
/// 8-token panel `a`; `out` is `[n_rows, 8]`.
pub fn gemm_q8_0_q8_0(w: &[BlockQ8_0], a: &[ActBlock8], out: &mut [f32]) {
    gemm_ref(w, a, out, "gemm_q8_0_q8_0", |wb, k| {
        (f16_val(wb.d), wb.qs[k] as i32)
    })
}

/// `out[r][t] = Σ_b d_w · d_a · Σ_i w·a` for q4_0 rows `w` (`[n_rows, a.len()]` blocks) and an
/// 8-token panel `a`; `out` is `[n_rows, 8]`.
pub fn gemm_q4_0_q8_0(w: &[BlockQ4_0], a: &[ActBlock8], out: &mut [f32]) {
    gemm_ref(w, a, out, "gemm_q4_0_q8_0", |wb, k| {
        let q = if k < 16 {
            wb.qs[k] & 0x0f
        } else {
            wb.qs[k - 16] >> 4
        };
        (f16_val(wb.d), q as i32 - 8)
    })
}

/// `out[r][t]` = `dot_q4_k_q8_0` of q4_k row r (`[n_rows, a.len() / 8]` blocks) with token t
/// of the 8-token panel `a`, in the same order and arithmetic; `out` is `[n_rows, 8]`.
pub fn gemm_q4_k_q8_0(w: &[BlockQ4K], a: &[ActBlock8], out: &mut [f32]) {
    let nb = a.len();
    let rows = out.len() / 8;
    assert_eq!(out.len(), rows * 8, "gemm_q4_k_q8_0: output length");
    assert_eq!(w.len() * 8, rows * nb, "gemm_q4_k_q8_0: weight blocks");
    let nw = nb / 8;
    for t in 0..8 {
        let acts: Vec<ActBlock> = a.iter().map(|ab| ab.token(t)).collect();
        for (r, o) in out.chunks_exact_mut(8).enumerate() {
            o[t] = dot_q4_k_q8_0(&w[r * nw..(r + 1) * nw], &acts);
        }
    }
}

/// The panel GEMM over any 32-value block type: `value(block, k)` is (scale, integer k).
fn gemm_ref<B>(
    w: &[B],
    a: &[ActBlock8],
    out: &mut [f32],
    name: &str,
    value: impl Fn(&B, usize) -> (f32, i32),
) {
    let nb = a.len();
    let rows = out.len() / 8;
    assert_eq!(out.len(), rows * 8, "{name}: output length");
    assert_eq!(w.len(), rows * nb, "{name}: weight blocks");
    for (r, o) in out.chunks_exact_mut(8).enumerate() {
        for (t, ot) in o.iter_mut().enumerate() {
            let mut acc = 0f32;
            for (b, ab) in a.iter().enumerate() {
                let wb = &w[r * nb + b];
                let mut s = 0i32;
                let mut dw = 0f32;
                for k in 0..32 {
                    let (d, q) = value(wb, k);
                    dw = d;
                    s += q * ab.qs[32 * (k / 4) + 4 * t + k % 4] as i32;
                }
                acc += dw * ab.d[t] * s as f32;
            }
            *ot = acc;
        }
    }
}

/// `out[r][t] = Σ_k w[r][k] · x[t][k]` for float rows `w` (`n_rows * cols` values, value i is
/// `value(i)`) and tokens `x` (`[n, cols]`, `cols > 0`); `out` is `[n_rows, n]`.
pub fn float_rows(
    n_rows: usize,
    value: impl Fn(usize) -> f32,
    x: &[f32],
    cols: usize,
    out: &mut [f32],
) {
    assert!(cols > 0, "float_rows: no columns");
    let n = x.len() / cols;
    assert_eq!(x.len(), n * cols, "float_rows: partial token");
    assert_eq!(out.len(), n_rows * n, "float_rows: output length");
    for r in 0..n_rows {
        for t in 0..n {
            let mut acc = 0f32;
            for k in 0..cols {
                acc += value(r * cols + k) * x[t * cols + k];
            }
            out[r * n + t] = acc;
        }
    }
}
