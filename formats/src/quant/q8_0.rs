//! `q8_0`: 32 int8 values with an f16 scale (scalar quantize and dequantize).

use super::blocks::{BlockQ8_0, QK8_0};
use super::{f16_bits, f16_val};

/// Quantize `src` (`[n_blocks * 32]`) into `dst` (`[n_blocks]`): scale = max|x| / 127, values
/// rounded to nearest and clamped to [-127, 127]. `src` should be finite (`quantize` checks).
pub fn quantize_row_q8_0(src: &[f32], dst: &mut [BlockQ8_0]) {
    assert_eq!(
        src.len(),
        dst.len() * QK8_0,
        "quantize_row_q8_0: length mismatch"
    );
    for (x, b) in src.chunks_exact(QK8_0).zip(dst.iter_mut()) {
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        b.d = f16_bits(amax / 127.0);
        let d = f16_val(b.d);
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        for (q, v) in b.qs.iter_mut().zip(x) {
            *q = (v * id).round().clamp(-127.0, 127.0) as i8;
        }
    }
}

/// Dequantize `src` (`[n_blocks]`) into `dst` (`[n_blocks * 32]`).
pub fn dequantize_row_q8_0(src: &[BlockQ8_0], dst: &mut [f32]) {
    assert_eq!(
        dst.len(),
        src.len() * QK8_0,
        "dequantize_row_q8_0: length mismatch"
    );
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK8_0)) {
        let d = f16_val(b.d);
        for (o, &q) in y.iter_mut().zip(&b.qs) {
            *o = d * q as f32;
        }
    }
}
