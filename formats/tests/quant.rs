//! Quantize → dequantize round trips of every quant type: stated error bounds, exhaustive f16,
//! zeros, huge values, non-finite values and bad lengths.

use dlm_formats::quant::{BlockQ6K, dequantize, quantize, quantize_weighted};
use dlm_formats::{ALL_QUANT_TYPES, FormatError, QuantType};

/// A small seeded generator (xorshift64*), so the tests need no crate.
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// Uniform in [-1, 1).
    fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
    }
    /// Roughly normal (sum of four uniforms), with an occasional outlier like real weights.
    fn weight(&mut self) -> f32 {
        let g = (self.uniform() + self.uniform() + self.uniform() + self.uniform()) * 0.866;
        if self.next_u64().is_multiple_of(97) {
            g * 6.0
        } else {
            g
        }
    }
}

fn round_trip(q: QuantType, x: &[f32]) -> Vec<f32> {
    let mut bytes = vec![0u8; q.row_bytes(x.len() as u64).unwrap() as usize];
    quantize(q, x, &mut bytes).unwrap();
    let mut y = vec![0f32; x.len()];
    dequantize(q, &bytes, &mut y).unwrap();
    y
}

/// Largest error within a block, relative to the block's max |x|, over many random blocks at
/// several magnitudes; and the RMS error relative to the RMS of the data.
fn measure(q: QuantType, seed: u64) -> (f32, f32) {
    let mut rng = Rng(seed);
    let bl = q.block_len().max(256);
    let (mut worst, mut se, mut sx) = (0f32, 0f64, 0f64);
    for mag in [1e-3f32, 1.0, 37.0, 1000.0] {
        let x: Vec<f32> = (0..bl * 64).map(|_| rng.weight() * mag).collect();
        let y = round_trip(q, &x);
        for (xb, yb) in x.chunks(bl).zip(y.chunks(bl)) {
            let amax = xb.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (a, b) in xb.iter().zip(yb) {
                worst = worst.max((a - b).abs() / amax);
                se += ((a - b) / mag) as f64 * ((a - b) / mag) as f64;
                sx += (a / mag) as f64 * (a / mag) as f64;
            }
        }
    }
    (worst, (se / sx).sqrt() as f32)
}

#[test]
fn round_trip_errors_are_within_the_stated_bounds() {
    // (type, bound on max error / block max |x|, bound on RMS error / RMS of x)
    // q8_0: half a step of max/127 plus the f16 rounding of the scale.
    // q4_0: at worst a full step of max/8 (the clamp of +8), typically half of it.
    // q4_k: half a step of the sub-block range/15, plus the 6-bit rounding of scale and min and
    //       the clamp that the least-squares refit accepts (measured 0.112).
    // q6_k: half a step of the sub-block max/32, plus the int8 rounding of the sub-scale and
    //       the refit's clamp (measured 0.041).
    // RMS bounds are relative to the RMS of data with 1% outliers (x6), which set block maxima.
    let cases = [
        (QuantType::F32, 0.0, 0.0),
        (QuantType::F16, 1.0 / 2048.0, 1.0 / 2048.0),
        (QuantType::BF16, 1.0 / 256.0, 1.0 / 256.0),
        (QuantType::Q8_0, 1.0 / 254.0 + 1.0 / 2048.0, 0.01),
        (QuantType::Q4_0, 1.0 / 8.0 + 1.0 / 512.0, 0.13),
        (QuantType::Q4K, 1.0 / 8.0, 0.095),
        (QuantType::Q6K, 1.0 / 20.0, 0.026),
    ];
    for (i, (q, max_bound, rms_bound)) in cases.into_iter().enumerate() {
        let (worst, rms) = measure(q, 0x9e37_79b9_7f4a_7c15 ^ i as u64);
        println!("{q}: max err / block max = {worst:.5}, rms err / rms = {rms:.5}");
        assert!(worst <= max_bound, "{q}: max error {worst} > {max_bound}");
        assert!(rms <= rms_bound, "{q}: rms error {rms} > {rms_bound}");
    }
}

#[test]
fn q4_k_beats_q4_0_and_q6_k_beats_q4_k() {
    let (_, r40) = measure(QuantType::Q4_0, 7);
    let (_, r4k) = measure(QuantType::Q4K, 7);
    let (_, r6k) = measure(QuantType::Q6K, 7);
    assert!(r4k < r40, "q4_k rms {r4k} not below q4_0 {r40}");
    assert!(r6k < r4k / 3.0, "q6_k rms {r6k} not well below q4_k {r4k}");
}

#[test]
fn importance_weights_lower_the_weighted_error() {
    let mut rng = Rng(42);
    for q in [QuantType::Q4K, QuantType::Q6K] {
        let x: Vec<f32> = (0..256 * 32).map(|_| rng.weight()).collect();
        let w: Vec<f32> = (0..x.len())
            .map(|i| if i % 7 == 0 { 50.0 } else { 0.1 })
            .collect();
        let weighted_err = |y: &[f32]| -> f64 {
            x.iter()
                .zip(y)
                .zip(&w)
                .map(|((a, b), wi)| (*wi * (a - b) * (a - b)) as f64)
                .sum()
        };
        let plain = round_trip(q, &x);
        let mut bytes = vec![0u8; q.row_bytes(x.len() as u64).unwrap() as usize];
        quantize_weighted(q, &x, Some(&w), &mut bytes).unwrap();
        let mut y = vec![0f32; x.len()];
        dequantize(q, &bytes, &mut y).unwrap();
        let (e_plain, e_w) = (weighted_err(&plain), weighted_err(&y));
        assert!(
            e_w < e_plain * 0.9,
            "{q}: weighted {e_w} vs plain {e_plain}"
        );
    }
}

#[test]
fn every_f16_bit_pattern_round_trips_or_is_rejected() {
    let mut bytes = Vec::with_capacity(2 << 16);
    for b in 0..=u16::MAX {
        bytes.extend_from_slice(&b.to_le_bytes());
    }
    let mut x = vec![0f32; 1 << 16];
    dequantize(QuantType::F16, &bytes, &mut x).unwrap();
    let mut back = [0u8; 2];
    let mut n_rejected = 0;
    for (b, &v) in (0..=u16::MAX).zip(&x) {
        let exp = (b >> 10) & 0x1f;
        if exp == 0x1f {
            // inf and NaN come out as such and quantize refuses them
            assert_eq!(v.is_nan(), b & 0x3ff != 0, "bits {b:#06x}");
            assert!(v.is_nan() || v.is_infinite());
            assert!(quantize(QuantType::F16, &[v], &mut back).is_err());
            n_rejected += 1;
        } else {
            quantize(QuantType::F16, &[v], &mut back).unwrap();
            assert_eq!(u16::from_le_bytes(back), b, "f16 bits {b:#06x} (value {v})");
        }
    }
    assert_eq!(n_rejected, 2 * 1024);
    // the same for every bf16 pattern
    let mut x = vec![0f32; 1 << 16];
    dequantize(QuantType::BF16, &bytes, &mut x).unwrap();
    for (b, &v) in (0..=u16::MAX).zip(&x) {
        if v.is_nan() {
            assert_eq!(b & 0x7f80, 0x7f80);
        } else {
            assert_eq!(v.to_bits() >> 16, b as u32);
        }
        if v.is_finite() {
            quantize(QuantType::BF16, &[v], &mut back).unwrap();
            assert_eq!(u16::from_le_bytes(back), b);
        }
    }
}

#[test]
fn zeros_stay_zero_in_every_type() {
    for q in ALL_QUANT_TYPES {
        let x = vec![0f32; 512];
        assert!(round_trip(q, &x).iter().all(|&v| v == 0.0), "{q}");
    }
}

#[test]
fn constant_and_tiny_blocks_are_reproduced() {
    for q in ALL_QUANT_TYPES {
        // (blocks whose max |x| is below about 127 * 2^-25 flush to zero: the f16 scale
        // underflows; 1e-3 is far above that for every type)
        for c in [1.0f32, -3.5, 1e-3] {
            let x = vec![c; 256];
            let y = round_trip(q, &x);
            for v in y {
                assert!((v - c).abs() <= c.abs() * 0.07, "{q}: {c} came back as {v}");
            }
        }
    }
}

#[test]
fn huge_values_work_up_to_the_scale_limit_and_are_rejected_beyond() {
    let mut rng = Rng(3);
    // (type, largest magnitude that must work, a magnitude whose scale overflows f16)
    let cases = [
        (QuantType::F16, 6.0e4, 7.0e4),
        (QuantType::BF16, 3.0e38, f32::MAX),
        (QuantType::Q8_0, 8.0e6, 1.0e8),
        (QuantType::Q4_0, 4.0e5, 1.0e7),
        (QuantType::Q4K, 4.0e6, 1.0e9),
        (QuantType::Q6K, 1.0e8, 1.0e10),
    ];
    for (q, ok, too_big) in cases {
        let mut x: Vec<f32> = (0..256).map(|_| rng.uniform() * ok).collect();
        x[17] = ok;
        let y = round_trip(q, &x);
        for (a, b) in x.iter().zip(&y) {
            assert!((a - b).abs() <= ok * 0.2, "{q}: {a} came back as {b}");
        }
        x[17] = too_big;
        let mut bytes = vec![0u8; q.row_bytes(256).unwrap() as usize];
        let e = quantize(q, &x, &mut bytes).unwrap_err();
        assert!(matches!(e, FormatError::Invalid { .. }), "{q}: {e}");
        println!("{q}: {e}");
    }
    let x = [f32::MAX, -f32::MAX, f32::MIN_POSITIVE];
    assert_eq!(round_trip(QuantType::F32, &x), x);
}

#[test]
fn non_finite_values_are_rejected_with_their_index() {
    for q in ALL_QUANT_TYPES {
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut x = vec![0.5f32; 256];
            x[100] = bad;
            let mut bytes = vec![0u8; q.row_bytes(256).unwrap() as usize];
            match quantize(q, &x, &mut bytes) {
                Err(FormatError::Invalid { what, offset }) => {
                    assert_eq!(offset, 100, "{q}");
                    assert!(what.contains("not finite"), "{q}: {what}");
                }
                other => panic!("{q}: {bad} gave {other:?}"),
            }
        }
    }
    let x = vec![0.5f32; 256];
    let mut w = vec![1f32; 256];
    w[3] = -1.0;
    let mut bytes = vec![0u8; QuantType::Q4K.row_bytes(256).unwrap() as usize];
    assert!(quantize_weighted(QuantType::Q4K, &x, Some(&w), &mut bytes).is_err());
    assert!(quantize_weighted(QuantType::Q4K, &x, Some(&w[..10]), &mut bytes).is_err());
}

#[test]
fn odd_lengths_and_wrong_buffers_are_rejected() {
    for q in ALL_QUANT_TYPES.into_iter().filter(|q| q.is_quantized()) {
        let bl = q.block_len();
        for n in [1, bl - 1, bl + 1, 2 * bl + 3] {
            let x = vec![1f32; n];
            let mut bytes = vec![0u8; (n / bl + 1) * q.block_bytes()];
            assert!(
                quantize(q, &x, &mut bytes).is_err(),
                "{q}: {n} values accepted"
            );
            let mut y = vec![0f32; n];
            assert!(
                dequantize(q, &bytes, &mut y).is_err(),
                "{q}: {n} values accepted"
            );
        }
    }
    for q in ALL_QUANT_TYPES {
        let x = vec![1f32; 256];
        let good = q.row_bytes(256).unwrap() as usize;
        for len in [0, good - 1, good + 1] {
            let mut bytes = vec![0u8; len];
            assert!(
                quantize(q, &x, &mut bytes).is_err(),
                "{q}: dst of {len} bytes"
            );
            let mut y = vec![0f32; 256];
            assert!(
                dequantize(q, &bytes, &mut y).is_err(),
                "{q}: src of {len} bytes"
            );
        }
        // empty input is a valid (empty) tensor
        assert!(quantize(q, &[], &mut []).is_ok());
    }
}

/// ggml's `Q6_K` decoding, written from its loop structure (two halves of 128 values; within a
/// half, `ql[l]` and `ql[l + 32]` give values l, l + 32 from their low nibbles and l + 64,
/// l + 96 from their high nibbles; `qh[l]` gives the top bits of the four, two bits each).
fn ggml_q6_k_decode(b: &BlockQ6K) -> [f32; 256] {
    let d = half::f16::from_le_bytes(b.d).to_f32();
    let mut y = [0f32; 256];
    for h in 0..2 {
        let (ql, qh, sc) = (&b.ql[64 * h..], &b.qh[32 * h..], &b.scales[8 * h..]);
        for l in 0..32 {
            let is = l / 16;
            let q = [
                (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &qk) in q.iter().enumerate() {
                y[128 * h + 32 * k + l] = d * sc[is + 2 * k] as f32 * (qk as i32 - 32) as f32;
            }
        }
    }
    y
}

#[test]
fn q6_k_block_is_ggml_s_layout() {
    // Random bytes (any pattern is a valid block) decode as ggml decodes them...
    let mut rng = Rng(0x6b);
    for _ in 0..50 {
        let mut raw = [0u8; 210];
        for v in raw.iter_mut() {
            *v = (rng.next_u64() >> 56) as u8;
        }
        raw[208..].copy_from_slice(&half::f16::from_f32(0.01).to_le_bytes());
        let b = dlm_formats::quant::as_blocks::<BlockQ6K>(&raw).unwrap()[0];
        let mut ours = [0f32; 256];
        dlm_formats::quant::dequantize_row_q6_k(&[b], &mut ours);
        assert_eq!(ours, ggml_q6_k_decode(&b));
    }
    // ...and what we quantize decodes the same both ways, close to the input.
    let x: Vec<f32> = (0..256)
        .map(|i| ((i * 37 % 101) as f32 - 50.0) / 7.0)
        .collect();
    let mut blk = [0u8; 210];
    quantize(QuantType::Q6K, &x, &mut blk).unwrap();
    let b = dlm_formats::quant::as_blocks::<BlockQ6K>(&blk).unwrap()[0];
    let g = ggml_q6_k_decode(&b);
    let mut ours = [0f32; 256];
    dequantize(QuantType::Q6K, &blk, &mut ours).unwrap();
    assert_eq!(ours, g);
    for (a, e) in g.iter().zip(&x) {
        assert!((a - e).abs() < 0.2, "{a} vs {e}");
    }
}
