//! `q4_0`: 32 four-bit values offset by 8 with an f16 scale (scalar quantize and dequantize).

use super::blocks::{BlockQ4_0, QK4_0};
use super::{f16_bits, f16_val};

/// Quantize `src` (`[n_blocks * 32]`) into `dst` (`[n_blocks]`). Two scales are tried per block
/// (the extreme value mapped to -8, or |x| mapped symmetrically to ±7) and the one with the
/// smaller squared error is kept. `src` should be finite (`quantize` checks).
pub fn quantize_row_q4_0(src: &[f32], dst: &mut [BlockQ4_0]) {
    assert_eq!(
        src.len(),
        dst.len() * QK4_0,
        "quantize_row_q4_0: length mismatch"
    );
    for (x, b) in src.chunks_exact(QK4_0).zip(dst.iter_mut()) {
        // the value of largest magnitude, with its sign
        let mut max = 0f32;
        for &v in x {
            if v.abs() > max.abs() {
                max = v;
            }
        }
        let mut best: Option<(f32, [u8; 2])> = None;
        for cand in [max / -8.0, max.abs() / 7.0] {
            let bits = f16_bits(cand);
            let d = f16_val(bits);
            let err = block_error(x, d);
            if best.is_none_or(|(e, _)| err < e) {
                best = Some((err, bits));
            }
        }
        let bits = best.map_or([0, 0], |(_, b)| b);
        b.d = bits;
        let d = f16_val(bits);
        let id = if d != 0.0 { 1.0 / d } else { 0.0 };
        for j in 0..QK4_0 / 2 {
            let lo = quant(x[j], id);
            let hi = quant(x[j + QK4_0 / 2], id);
            b.qs[j] = lo | (hi << 4);
        }
    }
}

fn quant(v: f32, id: f32) -> u8 {
    ((v * id).round() + 8.0).clamp(0.0, 15.0) as u8
}

fn block_error(x: &[f32], d: f32) -> f32 {
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    x.iter()
        .map(|&v| {
            let e = v - d * (quant(v, id) as f32 - 8.0);
            e * e
        })
        .sum()
}

/// Dequantize `src` (`[n_blocks]`) into `dst` (`[n_blocks * 32]`).
pub fn dequantize_row_q4_0(src: &[BlockQ4_0], dst: &mut [f32]) {
    assert_eq!(
        dst.len(),
        src.len() * QK4_0,
        "dequantize_row_q4_0: length mismatch"
    );
    for (b, y) in src.iter().zip(dst.chunks_exact_mut(QK4_0)) {
        let d = f16_val(b.d);
        for (j, &q) in b.qs.iter().enumerate() {
            y[j] = d * ((q & 0x0f) as f32 - 8.0);
            y[j + QK4_0 / 2] = d * ((q >> 4) as f32 - 8.0);
        }
    }
}
