//! AVX2 int8 GEMM kernels for many tokens: up to 4 weight rows against one 8-token activation
//! panel (`ActBlock8`) per pass, over the whole row.
//!
//! The panel holds quad g (columns `4g..4g + 4`) of all 8 tokens in one 32-byte vector, so a
//! quad of one weight row, broadcast to all lanes, meets 8 tokens in one `vpmaddubsw`; each
//! 32-bit lane of the products belongs to one token, and `vpmaddwd` with ones ends a block with
//! one i32 per token (no horizontal sums). Each activation vector is loaded once for 4 rows.
//! Weights are read in their stored blocks, unpacked per block into a 32-byte stack buffer.
//!
//! - `q4_0`: values `q - 8` with q in [0, 15] unsigned: `vpmaddubsw(q, a)` needs no sign trick
//!   (|pair| <= 2·15·127 = 3810), the 8 quads of a block add up in i16 (<= 30480, no
//!   overflow), and `Σ (q - 8)·a = Σ q·a − 8·Σ a` takes the panel's sums.
//! - `q8_0`: signed weights and activations in [-127, 127]: the sign trick per quad
//!   (`vpmaddubsw(|w|, sign(a, w))`, pairs <= 32258) and an i32 sum per quad.
//!
//! - `q4_k`: each 32-value sub-block of a super-block is a `q4_0`-like block with q in [0, 15],
//!   a scale `d · sc_j` and a min `dmin · m_j`: `Σ (d·sc_j·q − dmin·m_j)·a` is the unsigned
//!   product sum times the scale, minus the min times the panel's `d_a · Σ a` (one more FMA).
//!
//! Each block ends with one FMA per row: the exact integer sums of the 8 tokens (as f32) times
//! `d_w · d_a` for each token.

use crate::act::ActBlock8;
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ8_0, unpack_scales_q4k};
use std::arch::x86_64::*;

/// Weight rows per pass of a kernel.
const MR: usize = 4;

/// Runs `$inner::<R>` over the rows of `w` in groups of up to `MR`, each group against every
/// panel of `a` (`[n_groups, n_blocks]`), after `$prep` has unpacked the group's blocks once.
macro_rules! gemm_kernel {
    ($name:ident, $inner:ident, $prep:ident, $block:ty) => {
        /// `out[r][8g + t] = Σ w_r · a_{g,t}`: whole stored rows `w` against `n_groups` 8-token
        /// panels `a`; `out` is `[n_rows, 8 * n_groups]`.
        pub(super) fn $name(w: &[u8], a: &[ActBlock8], n_groups: usize, out: &mut [f32]) {
            let (wb, rows, nb) =
                crate::act::gemm_shape::<$block>(stringify!($name), w, a, n_groups, out.len());
            let np = 8 * n_groups;
            let mut unpacked = Unpacked::default();
            let mut r = 0;
            while r < rows {
                let k = (rows - r).min(MR);
                // SAFETY: reachable only through the `AVX2` table, handed out after detecting
                // avx2, fma and f16c.
                unsafe { $prep(&wb[r * nb..(r + k) * nb], nb, &mut unpacked) };
                let row = |i: usize| &wb[(r + i) * nb..(r + i + 1) * nb];
                for g in 0..n_groups {
                    let ag = &a[g * nb..(g + 1) * nb];
                    let mut o = [[0f32; 8]; MR];
                    // SAFETY: as above.
                    unsafe {
                        match k {
                            4 => {
                                $inner::<4>([row(0), row(1), row(2), row(3)], &unpacked, ag, &mut o)
                            }
                            3 => $inner::<3>([row(0), row(1), row(2)], &unpacked, ag, &mut o),
                            2 => $inner::<2>([row(0), row(1)], &unpacked, ag, &mut o),
                            _ => $inner::<1>([row(0)], &unpacked, ag, &mut o),
                        }
                    }
                    for (i, oi) in o.iter().enumerate().take(k) {
                        out[(r + i) * np + 8 * g..][..8].copy_from_slice(oi);
                    }
                }
                r += k;
            }
        }
    };
}

/// One row group's blocks prepared for the kernels: scales as f32 (`[R, n_blocks]`) and, for
/// `q4_0`, the values unpacked to one byte each (`[R, n_blocks, 32]`).
#[derive(Default)]
struct Unpacked {
    d: Vec<f32>,
    q: Vec<[u8; 32]>,
    /// `q4_k` only: each sub-block's min `dmin · m_j`. `[R, n_blocks]`
    m: Vec<f32>,
}

gemm_kernel!(gemm_q4_0, q4_0_panel, prep_q4_0, BlockQ4_0);
gemm_kernel!(gemm_q8_0, q8_0_panel, prep_q8_0, BlockQ8_0);

/// Scales and one byte per value (q in [0, 15]) of `q4_0` rows `w` (`[R, nb]` blocks).
#[target_feature(enable = "avx2,fma,f16c")]
fn prep_q4_0(w: &[BlockQ4_0], nb: usize, u: &mut Unpacked) {
    let _ = nb;
    let m4 = _mm_set1_epi8(0x0f);
    u.d.clear();
    u.q.clear();
    u.q.resize(w.len(), [0; 32]);
    for (wb, q) in w.iter().zip(u.q.iter_mut()) {
        u.d.push(f16(wb.d));
        // SAFETY: `qs` is 16 readable bytes and `q` 32 writable ones; unaligned.
        unsafe {
            let raw = _mm_loadu_si128(wb.qs.as_ptr().cast());
            let lo = _mm_and_si128(raw, m4);
            let hi = _mm_and_si128(_mm_srli_epi16::<4>(raw), m4);
            _mm256_storeu_si256(q.as_mut_ptr().cast(), _mm256_set_m128i(hi, lo));
        }
    }
}

/// One `q4_k` row group `w` (`[R, nb / 8]` super-blocks) as 32-value sub-blocks: scales
/// `d · sc_j`, mins `dmin · m_j` and one byte per value (q in [0, 15]).
#[target_feature(enable = "avx2,fma,f16c")]
fn prep_q4_k(w: &[BlockQ4K], u: &mut Unpacked) {
    let m4 = _mm256_set1_epi8(0x0f);
    u.d.clear();
    u.m.clear();
    u.q.clear();
    u.q.resize(8 * w.len(), [0; 32]);
    for (wb, q) in w.iter().zip(u.q.chunks_exact_mut(8)) {
        let (d, dmin) = (f16(wb.d), f16(wb.dmin));
        let (sc, mn) = unpack_scales_q4k(&wb.scales);
        for j in 0..8 {
            u.d.push(d * sc[j] as f32);
            u.m.push(dmin * mn[j] as f32);
        }
        for c in 0..4 {
            // SAFETY: `qs[32c..32c + 32]` is 32 readable bytes, `q[2c]`, `q[2c + 1]` 32
            // writable ones; the accesses are unaligned.
            unsafe {
                let raw = _mm256_loadu_si256(wb.qs[32 * c..].as_ptr().cast());
                let lo = _mm256_and_si256(raw, m4);
                let hi = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), m4);
                _mm256_storeu_si256(q[2 * c].as_mut_ptr().cast(), lo);
                _mm256_storeu_si256(q[2 * c + 1].as_mut_ptr().cast(), hi);
            }
        }
    }
}

/// `out[r][8g + t] = Σ w_r · a_{g,t}`: whole stored `q4_k` rows `w` against `n_groups` 8-token
/// panels `a`; `out` is `[n_rows, 8 * n_groups]`.
pub(super) fn gemm_q4_k(w: &[u8], a: &[ActBlock8], n_groups: usize, out: &mut [f32]) {
    let (wb, rows, nb) = crate::act::gemm_shape::<BlockQ4K>("gemm_q4_k", w, a, n_groups, out.len());
    let nw = nb / 8; // super-blocks per row
    let np = 8 * n_groups;
    let mut u = Unpacked::default();
    let mut r = 0;
    while r < rows {
        let k = (rows - r).min(MR);
        // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2, fma
        // and f16c.
        unsafe { prep_q4_k(&wb[r * nw..(r + k) * nw], &mut u) };
        for g in 0..n_groups {
            let ag = &a[g * nb..(g + 1) * nb];
            let mut o = [[0f32; 8]; MR];
            // SAFETY: as above.
            unsafe {
                match k {
                    4 => q4_k_panel::<4>(&u, ag, &mut o),
                    3 => q4_k_panel::<3>(&u, ag, &mut o),
                    2 => q4_k_panel::<2>(&u, ag, &mut o),
                    _ => q4_k_panel::<1>(&u, ag, &mut o),
                }
            }
            for (i, oi) in o.iter().enumerate().take(k) {
                out[(r + i) * np + 8 * g..][..8].copy_from_slice(oi);
            }
        }
        r += k;
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // r indexes the rows of several arrays
fn q4_k_panel<const R: usize>(u: &Unpacked, a: &[ActBlock8], out: &mut [[f32; 8]; MR]) {
    let nb = a.len();
    assert!(u.q.len() >= R * nb && u.d.len() >= R * nb && u.m.len() >= R * nb);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, ab) in a.iter().enumerate() {
        let s16 = unsigned_block_sums::<R>(u, nb, b, ab);
        let (ad, sum) = scales_sums(ab);
        let dsum = _mm256_mul_ps(ad, _mm256_cvtepi32_ps(sum));
        for r in 0..R {
            let s = _mm256_madd_epi16(s16[r], ones);
            let sc = _mm256_mul_ps(_mm256_set1_ps(u.d[r * nb + b]), ad);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[r]);
            acc[r] = _mm256_fnmadd_ps(_mm256_set1_ps(u.m[r * nb + b]), dsum, acc[r]);
        }
    }
    store_rows(acc, out)
}

/// For block `b` of each of R rows of unsigned 4-bit values (`u.q`, `[R, nb]`): the 16-bit
/// pair sums of value × activation over the panel's 8 quads (q4_0 and q4_k sub-blocks alike;
/// 8 × 2 × 15 × 128 fits in i16).
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // r indexes the rows of u.q and the sums
fn unsigned_block_sums<const R: usize>(
    u: &Unpacked,
    nb: usize,
    b: usize,
    ab: &ActBlock8,
) -> [__m256i; R] {
    let mut s16 = [_mm256_setzero_si256(); R];
    for g in 0..8 {
        let av = quad(ab, g);
        for r in 0..R {
            let p = _mm256_maddubs_epi16(bcast4(&u.q[r * nb + b], g), av);
            s16[r] = _mm256_add_epi16(s16[r], p);
        }
    }
    s16
}

/// Scales of `q8_0` rows `w` (`[R, nb]` blocks); the values are used as stored.
#[target_feature(enable = "avx2,fma,f16c")]
fn prep_q8_0(w: &[BlockQ8_0], nb: usize, u: &mut Unpacked) {
    let _ = nb;
    u.d.clear();
    u.d.extend(w.iter().map(|b| f16(b.d)));
}

#[target_feature(enable = "avx2,fma,f16c")]
fn f16(b: [u8; 2]) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(
        _mm_cvtsi32_si128(u16::from_le_bytes(b) as i32),
    ))
}

/// Quad g of the panel block: 8 tokens × 4 int8.
#[target_feature(enable = "avx2,fma,f16c")]
fn quad(ab: &ActBlock8, g: usize) -> __m256i {
    let q = &ab.qs[32 * g..32 * g + 32];
    // SAFETY: `q` is 32 readable bytes; the load is unaligned.
    unsafe { _mm256_loadu_si256(q.as_ptr().cast()) }
}

/// Bytes `4g..4g + 4` of `b` broadcast to all 8 lanes.
#[target_feature(enable = "avx2,fma,f16c")]
fn bcast4(b: &[u8; 32], g: usize) -> __m256i {
    _mm256_set1_epi32(i32::from_le_bytes([
        b[4 * g],
        b[4 * g + 1],
        b[4 * g + 2],
        b[4 * g + 3],
    ]))
}

/// The panel's 8 scales and 8 quant sums.
#[target_feature(enable = "avx2,fma,f16c")]
fn scales_sums(ab: &ActBlock8) -> (__m256, __m256i) {
    // SAFETY: `d` and `sum` are 8 readable f32 / i32 each; the loads are unaligned.
    unsafe {
        (
            _mm256_loadu_ps(ab.d.as_ptr()),
            _mm256_loadu_si256(ab.sum.as_ptr().cast()),
        )
    }
}

/// Stores the 8 token lanes of each row's accumulator into `out`.
#[target_feature(enable = "avx2,fma,f16c")]
fn store_rows<const R: usize>(acc: [__m256; R], out: &mut [[f32; 8]; MR]) {
    for (o, v) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 8 writable f32 (exact chunk); the store is unaligned.
        unsafe { _mm256_storeu_ps(o.as_mut_ptr(), v) };
    }
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // r indexes the rows of several arrays
fn q4_0_panel<const R: usize>(
    w: [&[BlockQ4_0]; R],
    u: &Unpacked,
    a: &[ActBlock8],
    out: &mut [[f32; 8]; MR],
) {
    let nb = a.len();
    assert!(u.q.len() >= R * nb && u.d.len() >= R * nb && w.len() == R);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, ab) in a.iter().enumerate() {
        let s16 = unsigned_block_sums::<R>(u, nb, b, ab);
        let (ad, sum) = scales_sums(ab);
        let corr = _mm256_slli_epi32::<3>(sum);
        for r in 0..R {
            let s = _mm256_sub_epi32(_mm256_madd_epi16(s16[r], ones), corr);
            let sc = _mm256_mul_ps(_mm256_set1_ps(u.d[r * nb + b]), ad);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s), sc, acc[r]);
        }
    }
    store_rows(acc, out)
}

#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::needless_range_loop)] // r indexes the rows of several arrays
fn q8_0_panel<const R: usize>(
    w: [&[BlockQ8_0]; R],
    u: &Unpacked,
    a: &[ActBlock8],
    out: &mut [[f32; 8]; MR],
) {
    let nb = a.len();
    assert!(u.d.len() >= R * nb);
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_ps(); R];
    for (b, ab) in a.iter().enumerate() {
        let mut s32 = [_mm256_setzero_si256(); R];
        for g in 0..8 {
            let av = quad(ab, g);
            for r in 0..R {
                let wv = bcast4(bytemuck_i8(&w[r][b].qs), g);
                let p = _mm256_maddubs_epi16(_mm256_sign_epi8(wv, wv), _mm256_sign_epi8(av, wv));
                s32[r] = _mm256_add_epi32(s32[r], _mm256_madd_epi16(p, ones));
            }
        }
        let (ad, _) = scales_sums(ab);
        for r in 0..R {
            let sc = _mm256_mul_ps(_mm256_set1_ps(u.d[r * nb + b]), ad);
            acc[r] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s32[r]), sc, acc[r]);
        }
    }
    store_rows(acc, out)
}

/// The bytes of 32 int8 quants.
fn bytemuck_i8(q: &[i8; 32]) -> &[u8; 32] {
    // SAFETY: i8 and u8 have the same size, alignment and validity (every bit pattern).
    unsafe { &*(q as *const [i8; 32]).cast::<[u8; 32]>() }
}
