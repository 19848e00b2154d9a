//! AVX2 + FMA (+ F16C for the block scales) row kernels. Every function here is
//! `#[target_feature]`; the table `AVX2` is the only way in, and `super::table` hands it out
//! only after detecting those features.
//!
//! A row kernel runs one weight row against up to 4 tokens at once, so each block of weights is
//! loaded and unpacked once for 4 dot products.

use crate::act::ActBlock;
use crate::dispatch::Kernels;
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks, unpack_scales_q4k};
use std::arch::x86_64::*;

/// The AVX2 kernels; reachable only through `super::table` after feature detection.
pub(super) static AVX2: Kernels = Kernels {
    name: "avx2",
    q8_0: row_q8_0,
    q4_0: row_q4_0,
    q4_k: row_q4_k,
    q6_k: row_q6_k,
};

/// Tokens per pass of a row kernel.
const NT: usize = 4;

#[target_feature(enable = "avx2,fma,f16c")]
fn f16(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn load_i8(b: &[i8; 32]) -> __m256i {
    // SAFETY: `b` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8(b: &[u8]) -> __m256i {
    assert!(b.len() >= 32);
    // SAFETY: `b` has at least 32 readable bytes (checked); the load is unaligned.
    unsafe { _mm256_loadu_si256(b.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn load_u8x16(b: &[u8; 16]) -> __m128i {
    // SAFETY: `b` is 16 readable bytes; the load is unaligned.
    unsafe { _mm_loadu_si128(b.as_ptr().cast()) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)))
}

/// 8 i32 partial sums of `x · y` for signed `x`, `y` in [-127, 127] (never -128).
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_i8(x: __m256i, y: __m256i) -> __m256i {
    let p = _mm256_maddubs_epi16(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
    _mm256_madd_epi16(p, _mm256_set1_epi16(1))
}

/// 8 i32 partial sums of `q · y` for unsigned `q` in [0, 15] and signed `y`.
#[target_feature(enable = "avx2,fma,f16c")]
fn dot_u4_i8(q: __m256i, y: __m256i) -> __m256i {
    _mm256_madd_epi16(_mm256_maddubs_epi16(q, y), _mm256_set1_epi16(1))
}

/// Runs `f` (a kernel for `N` tokens) over `out` in groups of `NT` tokens.
macro_rules! row_kernel {
    ($name:ident, $inner:ident, $block:ty, $a_per_w:expr) => {
        fn $name(w: &[u8], a: &[ActBlock], out: &mut [f32]) {
            let wb = as_blocks::<$block>(w).expect(concat!(stringify!($name), ": partial block"));
            let nb = wb.len() * $a_per_w;
            assert_eq!(
                a.len(),
                nb * out.len(),
                concat!(stringify!($name), ": activations")
            );
            let mut t = 0;
            while t < out.len() {
                let at = |k: usize| &a[(t + k) * nb..(t + k + 1) * nb];
                let left = out.len() - t;
                // SAFETY: this function is reachable only through the `AVX2` table, which
                // `super::table` hands out after detecting avx2, fma and f16c.
                unsafe {
                    if left >= 4 {
                        let r = $inner::<4>(wb, [at(0), at(1), at(2), at(3)]);
                        out[t..t + 4].copy_from_slice(&r);
                        t += 4;
                    } else if left == 3 {
                        let r = $inner::<3>(wb, [at(0), at(1), at(2)]);
                        out[t..t + 3].copy_from_slice(&r);
                        t += 3;
                    } else if left == 2 {
                        let r = $inner::<2>(wb, [at(0), at(1)]);
                        out[t..t + 2].copy_from_slice(&r);
                        t += 2;
                    } else {
                        out[t] = $inner::<1>(wb, [at(0)])[0];
                        t += 1;
                    }
                }
            }
            let _ = NT;
        }
    };
}

row_kernel!(row_q8_0, q8_0_n, BlockQ8_0, 1);
row_kernel!(row_q4_0, q4_0_n, BlockQ4_0, 1);
row_kernel!(row_q4_k, q4_k_n, BlockQ4K, 8);
row_kernel!(row_q6_k, q6_k_n, BlockQ6K, 8);

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_n<const N: usize>(w: &[BlockQ8_0], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for (i, wb) in w.iter().enumerate() {
        let dw = f16(wb.d);
        let q = load_i8(&wb.qs);
        for t in 0..N {
            let ab = &a[t][i];
            let p = dot_i8(q, load_i8(&ab.qs));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), acc[t]);
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_n<const N: usize>(w: &[BlockQ4_0], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let m4 = _mm_set1_epi8(0x0f);
    for (i, wb) in w.iter().enumerate() {
        let dw = f16(wb.d);
        let raw = load_u8x16(&wb.qs);
        let lo = _mm_and_si128(raw, m4);
        let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), m4);
        let q = _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
        for t in 0..N {
            let ab = &a[t][i];
            let p = dot_i8(q, load_i8(&ab.qs));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), acc[t]);
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_n<const N: usize>(w: &[BlockQ4K], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let mut mins = [0f32; N];
    let m4 = _mm256_set1_epi8(0x0f);
    for (i, wb) in w.iter().enumerate() {
        let d = f16(wb.d);
        let dmin = f16(wb.dmin);
        let (sc, mn) = unpack_scales_q4k(&wb.scales);
        for c in 0..4 {
            let raw = load_u8(&wb.qs[c * 32..]);
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            let (s0, s1) = (d * sc[2 * c] as f32, d * sc[2 * c + 1] as f32);
            let (m0, m1) = (dmin * mn[2 * c] as f32, dmin * mn[2 * c + 1] as f32);
            for t in 0..N {
                let (a0, a1) = (&a[t][i * 8 + 2 * c], &a[t][i * 8 + 2 * c + 1]);
                let p0 = dot_u4_i8(lo, load_i8(&a0.qs));
                let p1 = dot_u4_i8(hi, load_i8(&a1.qs));
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p0), _mm256_set1_ps(s0 * a0.d), acc[t]);
                acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p1), _mm256_set1_ps(s1 * a1.d), acc[t]);
                mins[t] += m0 * a0.d * a0.sum as f32 + m1 * a1.d * a1.sum as f32;
            }
        }
    }
    std::array::from_fn(|t| hsum(acc[t]) - mins[t])
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_n<const N: usize>(w: &[BlockQ6K], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let k32 = _mm256_set1_epi8(32);
    for (i, wb) in w.iter().enumerate() {
        let d = f16(wb.d);
        for c in 0..4 {
            let ql = load_u8(&wb.ql[c * 32..]);
            let qh = load_u8(&wb.qh[(c / 2) * 32..]);
            let shift = 4 * (c % 2) as i32;
            let h0 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift)), m2);
            let h1 = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(shift + 2)), m2);
            let lo = _mm256_and_si256(ql, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(ql), m4);
            // signed values in [-32, 31] of act blocks 2c and 2c+1
            let q0 = _mm256_sub_epi8(_mm256_or_si256(lo, _mm256_slli_epi16::<4>(h0)), k32);
            let q1 = _mm256_sub_epi8(_mm256_or_si256(hi, _mm256_slli_epi16::<4>(h1)), k32);
            let s = &wb.scales[4 * c..4 * c + 4];
            let sc0 = _mm256_set_m128i(_mm_set1_epi16(s[1] as i16), _mm_set1_epi16(s[0] as i16));
            let sc1 = _mm256_set_m128i(_mm_set1_epi16(s[3] as i16), _mm_set1_epi16(s[2] as i16));
            let (ax0, ax1) = (_mm256_sign_epi8(q0, q0), _mm256_sign_epi8(q1, q1));
            for t in 0..N {
                let (a0, a1) = (&a[t][i * 8 + 2 * c], &a[t][i * 8 + 2 * c + 1]);
                let p0 = _mm256_maddubs_epi16(ax0, _mm256_sign_epi8(load_i8(&a0.qs), q0));
                let p1 = _mm256_maddubs_epi16(ax1, _mm256_sign_epi8(load_i8(&a1.qs), q1));
                let p0 = _mm256_cvtepi32_ps(_mm256_madd_epi16(p0, sc0));
                let p1 = _mm256_cvtepi32_ps(_mm256_madd_epi16(p1, sc1));
                acc[t] = _mm256_fmadd_ps(p0, _mm256_set1_ps(d * a0.d), acc[t]);
                acc[t] = _mm256_fmadd_ps(p1, _mm256_set1_ps(d * a1.d), acc[t]);
            }
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}
