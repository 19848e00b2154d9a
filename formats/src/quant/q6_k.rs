//! `q6_k`: 256-value super-blocks of 6-bit values with 16 int8 sub-scales (scalar quantize, with
//! a rounding search per sub-block, and dequantize).

use super::blocks::{BlockQ6K, QK_K};
use super::{f16_bits, f16_val};

/// Where value `i` (0..256) of a block keeps its bits (ggml's `Q6_K` layout): value
/// `128h + 32q + l` has its low 4 bits in `ql[64h + 32(q % 2) + l]` (low nibble for q < 2, high
/// nibble for q >= 2) and its high 2 bits in bits `2q..2q+2` of `qh[32h + l]`.
/// Returns (ql byte, nibble shift, qh byte, bit shift).
pub const fn q6k_position(i: usize) -> (usize, u32, usize, u32) {
    let (h, q, l) = (i / 128, (i % 128) / 32, i % 32);
    (
        64 * h + 32 * (q % 2) + l,
        4 * (q / 2) as u32,
        32 * h + l,
        2 * q as u32,
    )
}

/// The 6-bit value `i` (0..256) of `b`, in [0, 63] (subtract 32 for the signed value).
pub fn q6k_value(b: &BlockQ6K, i: usize) -> u8 {
    let (lb, ls, hb, hs) = q6k_position(i);
    let low = (b.ql[lb] >> ls) & 0x0f;
    let high = (b.qh[hb] >> hs) & 3;
    low | (high << 4)
}

/// Fit `x ≈ scale * q` with q in [-32, 31] minimising the `w`-weighted squared error over
/// candidate inverse scales, each followed by a least-squares refit of the scale.
fn fit_scale(x: &[f32], w: &[f32]) -> f32 {
    let mut max = 0f32;
    for &v in x {
        if v.abs() > max.abs() {
            max = v;
        }
    }
    if max == 0.0 {
        return 0.0;
    }
    let err_of = |s: f32| -> f32 {
        let is = if s != 0.0 { 1.0 / s } else { 0.0 };
        x.iter()
            .zip(w)
            .map(|(&v, &wi)| {
                let e = s * (v * is).round().clamp(-32.0, 31.0) - v;
                wi * e * e
            })
            .sum()
    };
    let mut best = max / -32.0;
    let mut best_err = err_of(best);
    for k in -9..=9 {
        let is = (-32.0 + 0.1 * k as f32) / max;
        let (mut sll, mut slx) = (0f32, 0f32);
        for (&v, &wi) in x.iter().zip(w) {
            let l = (v * is).round().clamp(-32.0, 31.0);
            sll += wi * l * l;
            slx += wi * l * v;
        }
        if sll <= 0.0 {
            continue;
        }
        let s = slx / sll;
        let e = err_of(s);
        if e < best_err {
            best_err = e;
            best = s;
        }
    }
    best
}

/// Quantize `src` (`[n_blocks * 256]`) into `dst` (`[n_blocks]`), minimising the squared error
/// weighted by `weights` (`[n_blocks * 256]`, importance >= 0; `None` means all 1).
/// `src` should be finite (`quantize` checks).
pub fn quantize_row_q6_k(src: &[f32], weights: Option<&[f32]>, dst: &mut [BlockQ6K]) {
    assert_eq!(
        src.len(),
        dst.len() * QK_K,
        "quantize_row_q6_k: length mismatch"
    );
    if let Some(w) = weights {
        assert_eq!(
            w.len(),
            src.len(),
            "quantize_row_q6_k: weights length mismatch"
        );
    }
    let ones = [1f32; 16];
    for (bi, (x, b)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let mut scales = [0f32; 16]; // [16]
        for j in 0..16 {
            let ws = weights.map_or(&ones[..], |w| &w[bi * QK_K + j * 16..][..16]);
            scales[j] = fit_scale(&x[j * 16..(j + 1) * 16], ws);
        }
        let max_s = scales.iter().fold(0f32, |m, &v| m.max(v.abs()));
        b.d = f16_bits(max_s / 127.0);
        let d = f16_val(b.d);
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut q = [32u8; QK_K];
        for j in 0..16 {
            let sc = (scales[j] * id).round().clamp(-127.0, 127.0) as i8;
            b.scales[j] = sc;
            let s = d * sc as f32;
            let is = if s != 0.0 { 1.0 / s } else { 0.0 };
            for i in 0..16 {
                q[j * 16 + i] = ((x[j * 16 + i] * is).round().clamp(-32.0, 31.0) + 32.0) as u8;
            }
        }
        b.ql = [0; QK_K / 2];
        b.qh = [0; QK_K / 4];
        for (i, &v) in q.iter().enumerate() {
            let (lb, ls, hb, hs) = q6k_position(i);
            b.ql[lb] |= (v & 0x0f) << ls;
            b.qh[hb] |= (v >> 4) << hs;
        }
    }
}

/// Dequantize `src` (`[n_blocks]`) into `dst` (`[n_blocks * 256]`).
pub fn dequantize_row_q6_k(src: &[BlockQ6K], dst: &mut [f32]) {
    assert_eq!(
        dst.len(),
        src.len() * QK_K,
        "dequantize_row_q6_k: length mismatch"
    );
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_val(b.d);
        for (i, o) in y.iter_mut().enumerate() {
            *o = d * b.scales[i / 16] as f32 * (q6k_value(b, i) as f32 - 32.0);
        }
    }
}
