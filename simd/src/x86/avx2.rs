//! AVX2 + FMA (+ F16C for the block scales) row kernels. Every function here is
//! `#[target_feature]`; the table `AVX2` is the only way in, and `super::table` hands it out
//! only after detecting those features.
//!
//! A row kernel runs one weight row against up to 4 tokens at once, so each block of weights is
//! loaded and unpacked once for 4 dot products. The dequantize kernels write f32 rows for the
//! GEMM tiles, bit-identical to the scalar dequantizers (multiply, then subtract; no FMA).

use crate::act::ActBlock;
use crate::dispatch::{Dequantizers, Kernels};
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks};
use std::arch::x86_64::*;

/// The AVX2 kernels; reachable only through `super::table` after feature detection.
pub(super) static AVX2: Kernels = Kernels {
    name: "avx2",
    q8_0: row_q8_0,
    q4_0: row_q4_0,
    q4_k: row_q4_k,
    q6_k: row_q6_k,
    dequant: Dequantizers {
        f16: dequantize_f16,
        bf16: dequantize_bf16,
        q8_0: dequantize_q8_0,
        q4_0: dequantize_q4_0,
        q4_k: dequantize_q4_k,
        q6_k: dequantize_q6_k,
    },
    attention: super::attn_avx2::AVX2_ATTENTION,
    gemm_q8_0: Some(super::gemm::gemm_q8_0),
    gemm_q4_0: Some(super::gemm::gemm_q4_0),
    gemm_q4_k: Some(super::gemm::gemm_q4_k),
    rows_f32: Some(super::float::rows_f32),
    rows_f16: Some(super::float::rows_f16),
    rows_bf16: Some(super::float::rows_bf16),
    quantize_act: super::quant_act::quantize_act,
    quantize_act8: super::quant_act::quantize_act8,
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

/// Adds to `acc[t]` the dots of 8 consecutive 32-value blocks with token t's activation blocks
/// `a[t][i0..i0 + 8]`: `q[j]` holds block j's weights as int8 in [-127, 127] and lane j of `dw`
/// its scale. The 8 exact integer dots are reduced to one vector (lane j = block j), so each
/// token costs one conversion and one FMA per 8 blocks.
#[target_feature(enable = "avx2,fma,f16c")]
fn blocks8<const N: usize>(
    q: &[__m256i; 8],
    dw: __m256,
    a: &[&[ActBlock]; N],
    i0: usize,
    acc: &mut [__m256; N],
) {
    let ax: [__m256i; 8] = std::array::from_fn(|j| _mm256_sign_epi8(q[j], q[j]));
    let ones = _mm256_set1_epi16(1);
    for t in 0..N {
        let ab = &a[t][i0..i0 + 8];
        let p: [__m256i; 8] = std::array::from_fn(|j| {
            let y = _mm256_sign_epi8(load_i8(&ab[j].qs), q[j]);
            _mm256_madd_epi16(_mm256_maddubs_epi16(ax[j], y), ones)
        });
        let ps = _mm256_cvtepi32_ps(hsum8x8(p));
        let ad = _mm256_setr_ps(
            ab[0].d, ab[1].d, ab[2].d, ab[3].d, ab[4].d, ab[5].d, ab[6].d, ab[7].d,
        );
        acc[t] = _mm256_fmadd_ps(ps, _mm256_mul_ps(dw, ad), acc[t]);
    }
}

/// The f16 scales of 8 blocks as one f32 vector.
#[target_feature(enable = "avx2,fma,f16c")]
fn scales8(d: [[u8; 2]; 8]) -> __m256 {
    let h = d.map(|b| u16::from_le_bytes(b) as i16);
    _mm256_cvtph_ps(_mm_setr_epi16(
        h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7],
    ))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q8_0_n<const N: usize>(w: &[BlockQ8_0], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let n8 = w.len() / 8 * 8;
    for (g, wg) in w[..n8].chunks_exact(8).enumerate() {
        let q: [__m256i; 8] = std::array::from_fn(|j| load_i8(&wg[j].qs));
        let dw = scales8(std::array::from_fn(|j| wg[j].d));
        blocks8(&q, dw, &a, 8 * g, &mut acc);
    }
    for (i, wb) in w.iter().enumerate().skip(n8) {
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

/// The 32 values of a `q4_0` block as int8 in [-8, 7].
#[target_feature(enable = "avx2,fma,f16c")]
fn unpack_q4_0(wb: &BlockQ4_0) -> __m256i {
    let m4 = _mm_set1_epi8(0x0f);
    let raw = load_u8x16(&wb.qs);
    let lo = _mm_and_si128(raw, m4);
    let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), m4);
    _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8))
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q4_0_n<const N: usize>(w: &[BlockQ4_0], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let n8 = w.len() / 8 * 8;
    for (g, wg) in w[..n8].chunks_exact(8).enumerate() {
        let q: [__m256i; 8] = std::array::from_fn(|j| unpack_q4_0(&wg[j]));
        let dw = scales8(std::array::from_fn(|j| wg[j].d));
        blocks8(&q, dw, &a, 8 * g, &mut acc);
    }
    for (i, wb) in w.iter().enumerate().skip(n8) {
        let dw = f16(wb.d);
        let q = unpack_q4_0(wb);
        for t in 0..N {
            let ab = &a[t][i];
            let p = dot_i8(q, load_i8(&ab.qs));
            acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(p), _mm256_set1_ps(dw * ab.d), acc[t]);
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}

/// The 8 sub-block scales and mins of a `q4_k` block as f32: lanes j are `d * sc_j` and
/// `dmin * m_j` (layout in `BlockQ4K`), unpacked with word-wide bit operations.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4k_scales(b: &BlockQ4K) -> (__m256, __m256) {
    const LOW6: u32 = 0x3f3f_3f3f;
    const LOW4: u32 = 0x0f0f_0f0f;
    const LOW2: u32 = 0x0303_0303;
    let s = &b.scales;
    let word = |i: usize| u32::from_le_bytes([s[i], s[i + 1], s[i + 2], s[i + 3]]);
    let (w0, w1, w2) = (word(0), word(4), word(8));
    // byte j of each word is sub-block j (or j + 4) of its row
    let sc_lo = w0 & LOW6;
    let sc_hi = (w2 & LOW4) | (((w0 >> 6) & LOW2) << 4);
    let mn_lo = w1 & LOW6;
    let mn_hi = ((w2 >> 4) & LOW4) | (((w1 >> 6) & LOW2) << 4);
    let sc = _mm_set_epi32(0, 0, sc_hi as i32, sc_lo as i32);
    let mn = _mm_set_epi32(0, 0, mn_hi as i32, mn_lo as i32);
    let scf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(sc));
    let mnf = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(mn));
    (
        _mm256_mul_ps(scf, _mm256_set1_ps(f16(b.d))),
        _mm256_mul_ps(mnf, _mm256_set1_ps(f16(b.dmin))),
    )
}

/// Lane j of the result is the sum of the 8 lanes of `p[j]`.
#[target_feature(enable = "avx2,fma,f16c")]
fn hsum8x8(p: [__m256i; 8]) -> __m256i {
    let h01 = _mm256_hadd_epi32(p[0], p[1]);
    let h23 = _mm256_hadd_epi32(p[2], p[3]);
    let h45 = _mm256_hadd_epi32(p[4], p[5]);
    let h67 = _mm256_hadd_epi32(p[6], p[7]);
    // each 128-bit half: [Σ p0, Σ p1, Σ p2, Σ p3] of that half's lanes
    let h0123 = _mm256_hadd_epi32(h01, h23);
    let h4567 = _mm256_hadd_epi32(h45, h67);
    _mm256_add_epi32(
        _mm256_permute2x128_si256::<0x20>(h0123, h4567),
        _mm256_permute2x128_si256::<0x31>(h0123, h4567),
    )
}

/// `q4_k` against N tokens. Per super-block and token: 8 exact integer sub-block dots reduced to
/// one vector (lane j = sub-block j), then one FMA with the precomputed `d·sc_j` times the
/// activation scales, minus `dmin·m_j` times the activation block sums, all 8 lanes at once.
#[target_feature(enable = "avx2,fma,f16c")]
fn q4_k_n<const N: usize>(w: &[BlockQ4K], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    let m4 = _mm256_set1_epi8(0x0f);
    for (i, wb) in w.iter().enumerate() {
        let (sv, mv) = q4k_scales(wb);
        let mut q = [_mm256_setzero_si256(); 8]; // [8 sub-blocks] of 32 u4 in u8 lanes
        for c in 0..4 {
            let raw = load_u8(&wb.qs[c * 32..]);
            q[2 * c] = _mm256_and_si256(raw, m4);
            q[2 * c + 1] = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
        }
        for t in 0..N {
            let ab = &a[t][i * 8..i * 8 + 8];
            let p: [__m256i; 8] = std::array::from_fn(|j| dot_u4_i8(q[j], load_i8(&ab[j].qs)));
            let ps = _mm256_cvtepi32_ps(hsum8x8(p));
            let ad = _mm256_setr_ps(
                ab[0].d, ab[1].d, ab[2].d, ab[3].d, ab[4].d, ab[5].d, ab[6].d, ab[7].d,
            );
            let asum = _mm256_cvtepi32_ps(_mm256_setr_epi32(
                ab[0].sum, ab[1].sum, ab[2].sum, ab[3].sum, ab[4].sum, ab[5].sum, ab[6].sum,
                ab[7].sum,
            ));
            // Σ_j a.d_j · (d·sc_j · dot_j − dmin·m_j · sum_j)
            let v = _mm256_fmsub_ps(ps, sv, _mm256_mul_ps(mv, asum));
            acc[t] = _mm256_fmadd_ps(v, ad, acc[t]);
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}

/// The 32 signed values (in [-32, 31]) of sub-block pair `q` (0..4) of half `h` of a `q6_k`
/// block: values `128h + 32q ..+ 32` (ggml's layout, see `BlockQ6K`).
#[target_feature(enable = "avx2,fma,f16c")]
fn q6k_values(b: &BlockQ6K, h: usize, q: usize) -> __m256i {
    let m4 = _mm256_set1_epi8(0x0f);
    let m2 = _mm256_set1_epi8(0x03);
    let ql = load_u8(&b.ql[64 * h + 32 * (q % 2)..]);
    let qh = load_u8(&b.qh[32 * h..]);
    let lo = if q < 2 {
        _mm256_and_si256(ql, m4)
    } else {
        _mm256_and_si256(_mm256_srli_epi16::<4>(ql), m4)
    };
    let hi = _mm256_and_si256(_mm256_srl_epi16(qh, _mm_cvtsi32_si128(2 * q as i32)), m2);
    _mm256_sub_epi8(
        _mm256_or_si256(lo, _mm256_slli_epi16::<4>(hi)),
        _mm256_set1_epi8(32),
    )
}

#[target_feature(enable = "avx2,fma,f16c")]
fn q6_k_n<const N: usize>(w: &[BlockQ6K], a: [&[ActBlock]; N]) -> [f32; N] {
    let mut acc = [_mm256_setzero_ps(); N];
    for (i, wb) in w.iter().enumerate() {
        let d = f16(wb.d);
        for h in 0..2 {
            for q in 0..4 {
                // act block 4h + q; its halves use sub-scales 8h + 2q and 8h + 2q + 1
                let v = q6k_values(wb, h, q);
                let s = &wb.scales[8 * h + 2 * q..];
                let sc = _mm256_set_m128i(_mm_set1_epi16(s[1] as i16), _mm_set1_epi16(s[0] as i16));
                let av = _mm256_sign_epi8(v, v);
                for t in 0..N {
                    let ab = &a[t][i * 8 + 4 * h + q];
                    let p = _mm256_maddubs_epi16(av, _mm256_sign_epi8(load_i8(&ab.qs), v));
                    let p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p, sc));
                    acc[t] = _mm256_fmadd_ps(p, _mm256_set1_ps(d * ab.d), acc[t]);
                }
            }
        }
    }
    std::array::from_fn(|t| hsum(acc[t]))
}

/// Where 32 f32 values go.
fn out32(out: &mut [f32]) -> *mut f32 {
    assert!(out.len() >= 32, "dequantize: output block");
    out.as_mut_ptr()
}

/// `out[i] = s_{i/8} · q_i − m` for 32 int8 lanes `q` (multiply, then subtract: the same
/// rounding as the scalar dequantizers).
#[target_feature(enable = "avx2,fma,f16c")]
fn put32(q: __m256i, s: [__m256; 4], m: __m256, out: &mut [f32]) {
    let o = out32(out);
    let halves = [_mm256_castsi256_si128(q), _mm256_extracti128_si256::<1>(q)];
    for (g, sg) in s.iter().enumerate() {
        let h = halves[g / 2];
        let h = if g % 2 == 0 {
            h
        } else {
            _mm_srli_si128::<8>(h)
        };
        let v = _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(h));
        let v = _mm256_sub_ps(_mm256_mul_ps(v, *sg), m);
        // SAFETY: `out32` checked 32 writable values; lanes 8g..8g+8 are in range.
        unsafe { _mm256_storeu_ps(o.add(8 * g), v) };
    }
}

macro_rules! dequant_kernel {
    ($name:ident, $inner:ident, $block:ty) => {
        fn $name(w: &[u8], out: &mut [f32]) {
            let wb = as_blocks::<$block>(w).expect(concat!(stringify!($name), ": partial block"));
            assert_eq!(
                out.len(),
                wb.len() * <$block as dlm_formats::quant::Block>::LEN,
                concat!(stringify!($name), ": output length")
            );
            // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2,
            // fma and f16c.
            unsafe { $inner(wb, out) }
        }
    };
}

dequant_kernel!(dequantize_q8_0, dequant_q8_0, BlockQ8_0);
dequant_kernel!(dequantize_q4_0, dequant_q4_0, BlockQ4_0);
dequant_kernel!(dequantize_q4_k, dequant_q4_k, BlockQ4K);
dequant_kernel!(dequantize_q6_k, dequant_q6_k, BlockQ6K);

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_q8_0(w: &[BlockQ8_0], out: &mut [f32]) {
    let zero = _mm256_setzero_ps();
    for (b, o) in w.iter().zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16(b.d));
        put32(load_i8(&b.qs), [d; 4], zero, o);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_q4_0(w: &[BlockQ4_0], out: &mut [f32]) {
    let zero = _mm256_setzero_ps();
    for (b, o) in w.iter().zip(out.chunks_exact_mut(32)) {
        let d = _mm256_set1_ps(f16(b.d));
        put32(unpack_q4_0(b), [d; 4], zero, o);
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_q4_k(w: &[BlockQ4K], out: &mut [f32]) {
    let m4 = _mm256_set1_epi8(0x0f);
    for (b, o) in w.iter().zip(out.chunks_exact_mut(256)) {
        let (sv, mv) = q4k_scales(b);
        let mut s = [0f32; 8];
        let mut m = [0f32; 8];
        // SAFETY: `s` and `m` are 8 writable f32 each; the stores are unaligned.
        unsafe {
            _mm256_storeu_ps(s.as_mut_ptr(), sv);
            _mm256_storeu_ps(m.as_mut_ptr(), mv);
        }
        for c in 0..4 {
            let raw = load_u8(&b.qs[c * 32..]);
            let lo = _mm256_and_si256(raw, m4);
            let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
            let (j0, j1) = (2 * c, 2 * c + 1);
            let s0 = _mm256_set1_ps(s[j0]);
            let s1 = _mm256_set1_ps(s[j1]);
            put32(lo, [s0; 4], _mm256_set1_ps(m[j0]), &mut o[64 * c..]);
            put32(hi, [s1; 4], _mm256_set1_ps(m[j1]), &mut o[64 * c + 32..]);
        }
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_q6_k(w: &[BlockQ6K], out: &mut [f32]) {
    let zero = _mm256_setzero_ps();
    for (b, o) in w.iter().zip(out.chunks_exact_mut(256)) {
        let d = f16(b.d);
        // d · scale of each 16-value group, as the scalar dequantizer rounds it
        let ds: [__m256; 16] = std::array::from_fn(|g| _mm256_set1_ps(d * b.scales[g] as f32));
        for h in 0..2 {
            for q in 0..4 {
                let g = 8 * h + 2 * q;
                let s = [ds[g], ds[g], ds[g + 1], ds[g + 1]];
                put32(q6k_values(b, h, q), s, zero, &mut o[128 * h + 32 * q..]);
            }
        }
    }
}

fn dequantize_f16(w: &[u8], out: &mut [f32]) {
    assert_eq!(w.len(), 2 * out.len(), "dequantize_f16: length mismatch");
    // SAFETY: reachable only through the `AVX2` table, handed out after detecting f16c.
    unsafe { dequant_f16(w, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_f16(w: &[u8], out: &mut [f32]) {
    let mut wc = w.chunks_exact(16);
    let mut oc = out.chunks_exact_mut(8);
    for (b, o) in (&mut wc).zip(&mut oc) {
        // SAFETY: `b` is 16 readable bytes and `o` 8 writable f32 (exact chunks); unaligned.
        unsafe {
            let h = _mm_loadu_si128(b.as_ptr().cast());
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_cvtph_ps(h));
        }
    }
    for (b, o) in wc.remainder().chunks_exact(2).zip(oc.into_remainder()) {
        *o = f16([b[0], b[1]]);
    }
}

fn dequantize_bf16(w: &[u8], out: &mut [f32]) {
    assert_eq!(w.len(), 2 * out.len(), "dequantize_bf16: length mismatch");
    // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2.
    unsafe { dequant_bf16(w, out) }
}

#[target_feature(enable = "avx2,fma,f16c")]
fn dequant_bf16(w: &[u8], out: &mut [f32]) {
    let mut wc = w.chunks_exact(16);
    let mut oc = out.chunks_exact_mut(8);
    for (b, o) in (&mut wc).zip(&mut oc) {
        // SAFETY: `b` is 16 readable bytes and `o` 8 writable f32 (exact chunks); unaligned.
        unsafe {
            let h = _mm_loadu_si128(b.as_ptr().cast());
            let v = _mm256_slli_epi32::<16>(_mm256_cvtepu16_epi32(h));
            _mm256_storeu_ps(o.as_mut_ptr(), _mm256_castsi256_ps(v));
        }
    }
    for (b, o) in wc.remainder().chunks_exact(2).zip(oc.into_remainder()) {
        *o = f32::from_bits((u16::from_le_bytes([b[0], b[1]]) as u32) << 16);
    }
}
