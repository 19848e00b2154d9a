//! `q4_k`: 256-value super-blocks of 8 sub-blocks with 6-bit scales and mins (scalar quantize,
//! with a rounding search per sub-block, and dequantize).

use super::blocks::{BlockQ4K, QK_K};
use super::{f16_bits, f16_val};

/// Unpack the 8 six-bit scales and 8 six-bit mins of a `q4_k` block (layout in `BlockQ4K`).
pub fn unpack_scales_q4k(s: &[u8; 12]) -> ([u8; 8], [u8; 8]) {
    let mut sc = [0u8; 8];
    let mut mn = [0u8; 8];
    for j in 0..4 {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = (s[j + 8] & 0x0f) | ((s[j] >> 6) << 4);
        mn[j + 4] = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
    }
    (sc, mn)
}

/// Pack 8 scales and 8 mins (each < 64) into the 12-byte layout of `BlockQ4K`.
pub fn pack_scales_q4k(sc: &[u8; 8], mn: &[u8; 8]) -> [u8; 12] {
    let mut s = [0u8; 12];
    for j in 0..4 {
        s[j] = (sc[j] & 63) | ((sc[j + 4] >> 4) << 6);
        s[j + 4] = (mn[j] & 63) | ((mn[j + 4] >> 4) << 6);
        s[j + 8] = (sc[j + 4] & 0x0f) | ((mn[j + 4] & 0x0f) << 4);
    }
    s
}

/// Fit `x ≈ scale * q - min` with q in [0, 15], `scale >= 0`, `min >= 0`, minimising the
/// `w`-weighted squared error over a range of candidate inverse scales, each followed by a
/// least-squares refit of scale and offset. Returns `(scale, min)`.
fn fit_scale_min(x: &[f32], w: &[f32]) -> (f32, f32) {
    let lo = x.iter().fold(f32::INFINITY, |m, &v| m.min(v)).min(0.0);
    let hi = x.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    if hi <= lo {
        return (0.0, -lo);
    }
    let err_of = |s: f32, b: f32| -> f32 {
        let is = if s > 0.0 { 1.0 / s } else { 0.0 };
        x.iter()
            .zip(w)
            .map(|(&v, &wi)| {
                let q = ((v - b) * is).round().clamp(0.0, 15.0);
                let e = s * q + b - v;
                wi * e * e
            })
            .sum()
    };
    let mut best = ((hi - lo) / 15.0, lo);
    let mut best_err = err_of(best.0, best.1);
    for k in -10..=10 {
        let is = (15.0 + 0.1 * k as f32) / (hi - lo);
        let (mut sw, mut sl, mut sll, mut sx, mut slx) = (0f32, 0f32, 0f32, 0f32, 0f32);
        for (&v, &wi) in x.iter().zip(w) {
            let l = ((v - lo) * is).round().clamp(0.0, 15.0);
            sw += wi;
            sl += wi * l;
            sll += wi * l * l;
            sx += wi * v;
            slx += wi * l * v;
        }
        let det = sw * sll - sl * sl;
        if det <= 0.0 {
            continue;
        }
        let mut s = (sw * slx - sl * sx) / det;
        let mut b = (sll * sx - sl * slx) / det;
        if b > 0.0 {
            // the offset must be <= 0 (min >= 0): refit the scale alone with offset 0
            b = 0.0;
            s = if sll > 0.0 { slx / sll } else { 0.0 };
        }
        if s <= 0.0 {
            continue;
        }
        let e = err_of(s, b);
        if e < best_err {
            best_err = e;
            best = (s, b);
        }
    }
    (best.0, -best.1)
}

/// Quantize `src` (`[n_blocks * 256]`) into `dst` (`[n_blocks]`), minimising the squared error
/// weighted by `weights` (`[n_blocks * 256]`, importance >= 0; `None` means all 1).
/// `src` should be finite (`quantize` checks).
pub fn quantize_row_q4_k(src: &[f32], weights: Option<&[f32]>, dst: &mut [BlockQ4K]) {
    assert_eq!(
        src.len(),
        dst.len() * QK_K,
        "quantize_row_q4_k: length mismatch"
    );
    if let Some(w) = weights {
        assert_eq!(
            w.len(),
            src.len(),
            "quantize_row_q4_k: weights length mismatch"
        );
    }
    let ones = [1f32; 32];
    for (bi, (x, b)) in src.chunks_exact(QK_K).zip(dst.iter_mut()).enumerate() {
        let mut scales = [0f32; 8]; // [8]
        let mut mins = [0f32; 8]; // [8]
        for j in 0..8 {
            let xs = &x[j * 32..(j + 1) * 32];
            let ws = weights.map_or(&ones[..], |w| &w[bi * QK_K + j * 32..][..32]);
            (scales[j], mins[j]) = fit_scale_min(xs, ws);
        }
        let max_s = scales.iter().fold(0f32, |m, &v| m.max(v));
        let max_m = mins.iter().fold(0f32, |m, &v| m.max(v));
        b.d = f16_bits(max_s / 63.0);
        b.dmin = f16_bits(max_m / 63.0);
        let d = f16_val(b.d);
        let dmin = f16_val(b.dmin);
        let mut sc = [0u8; 8];
        let mut mn = [0u8; 8];
        for j in 0..8 {
            sc[j] = if d > 0.0 {
                (scales[j] / d).round().clamp(0.0, 63.0) as u8
            } else {
                0
            };
            mn[j] = if dmin > 0.0 {
                (mins[j] / dmin).round().clamp(0.0, 63.0) as u8
            } else {
                0
            };
        }
        b.scales = pack_scales_q4k(&sc, &mn);
        // requantize with the scales as stored
        let mut q = [0u8; QK_K];
        for j in 0..8 {
            let s = d * sc[j] as f32;
            let m = dmin * mn[j] as f32;
            let is = if s > 0.0 { 1.0 / s } else { 0.0 };
            for i in 0..32 {
                q[j * 32 + i] = ((x[j * 32 + i] + m) * is).round().clamp(0.0, 15.0) as u8;
            }
        }
        for c in 0..4 {
            for i in 0..32 {
                b.qs[c * 32 + i] = q[c * 64 + i] | (q[c * 64 + 32 + i] << 4);
            }
        }
    }
}

/// Dequantize `src` (`[n_blocks]`) into `dst` (`[n_blocks * 256]`).
pub fn dequantize_row_q4_k(src: &[BlockQ4K], dst: &mut [f32]) {
    assert_eq!(
        dst.len(),
        src.len() * QK_K,
        "dequantize_row_q4_k: length mismatch"
    );
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK_K)) {
        let d = f16_val(b.d);
        let dmin = f16_val(b.dmin);
        let (sc, mn) = unpack_scales_q4k(&b.scales);
        for c in 0..4 {
            let (s0, m0) = (d * sc[2 * c] as f32, dmin * mn[2 * c] as f32);
            let (s1, m1) = (d * sc[2 * c + 1] as f32, dmin * mn[2 * c + 1] as f32);
            for i in 0..32 {
                let q = b.qs[c * 32 + i];
                y[c * 64 + i] = s0 * (q & 0x0f) as f32 - m0;
                y[c * 64 + 32 + i] = s1 * (q >> 4) as f32 - m1;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_packing_round_trips_every_six_bit_value() {
        for v in 0..64u8 {
            let sc = [v, 63 - v, v / 2, 1, v, 0, 63, v ^ 21];
            let mn = [63 - v, v, 5, v / 3, 0, v, v ^ 42, 63];
            assert_eq!(unpack_scales_q4k(&pack_scales_q4k(&sc, &mn)), (sc, mn));
        }
    }
}
