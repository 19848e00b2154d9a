//! AVX2 activation quantizers: `quantize_act` and `quantize_act8` bit for bit, 32 values per
//! block in four vectors instead of a scalar loop (whose `round` is a libm call on baseline
//! x86-64). The panel quantizer transposes 8 tokens' quads in registers.
//!
//! Exactness against `crate::act::quantize_act`: `max|x|` skips NaN as `f32::max` does
//! (`vmaxps` returns its second operand when either is NaN, and the running maximum is that
//! operand), `d = amax / 127` and `id = 1 / d` are the same IEEE operations, `x · id` is one
//! rounded multiply in both, rounding is half away from zero (`trunc`, plus ±1 where the exact
//! remainder `t − trunc(t)` is at least one half), and a NaN product becomes 0 as the
//! saturating `as i8` cast makes it.

use crate::act::{ActBlock, ActBlock8, GEMM_TOKENS};
use dlm_formats::quant::QK8_0;
use std::arch::x86_64::*;

/// One token's block of 32 values quantized: the scale (NaN for a non-finite block), the sum of
/// the quants, and the quants as 8 quads (i32 lanes, quad g = columns `4g..4g + 4`).
struct Block32 {
    d: f32,
    sum: i32,
    qs: __m256i,
}

/// Quantizes the 32 values `x` as `quantize_act` does.
#[target_feature(enable = "avx2,fma,f16c")]
fn block32(x: &[f32]) -> Block32 {
    assert!(x.len() >= QK8_0, "quant_act block32: short block");
    // SAFETY: `x` has at least 32 readable f32 (checked); the loads are unaligned.
    let v: [__m256; 4] = unsafe { std::array::from_fn(|i| _mm256_loadu_ps(x.as_ptr().add(8 * i))) };
    let abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fff_ffff));
    let inf = _mm256_set1_ps(f32::INFINITY);
    let mut amax = _mm256_setzero_ps();
    // every lane finite: |x| < inf is false for inf and NaN
    let mut finite = _mm256_castsi256_ps(_mm256_set1_epi32(-1));
    for &vi in &v {
        let a = _mm256_and_ps(vi, abs_mask);
        // NaN lanes keep the running maximum (the second operand), as f32::max skips NaN
        amax = _mm256_max_ps(a, amax);
        finite = _mm256_and_ps(finite, _mm256_cmp_ps::<_CMP_LT_OQ>(a, inf));
    }
    let m = _mm_max_ps(
        _mm256_castps256_ps128(amax),
        _mm256_extractf128_ps::<1>(amax),
    );
    let m = _mm_max_ps(m, _mm_movehl_ps(m, m));
    let m = _mm_max_ss(m, _mm_shuffle_ps::<1>(m, m));
    let amax = _mm_cvtss_f32(m);
    let all_finite = _mm256_movemask_ps(finite) == 0xff;
    let d = amax / 127.0;
    let id = if d > 0.0 { 1.0 / d } else { 0.0 };
    let idv = _mm256_set1_ps(id);
    let half = _mm256_set1_ps(0.5);
    let one = _mm256_set1_ps(1.0);
    let sign_mask = _mm256_set1_ps(-0.0);
    let lim = _mm256_set1_ps(127.0);
    let q: [__m256i; 4] = std::array::from_fn(|i| {
        let t = _mm256_mul_ps(v[i], idv);
        let r = _mm256_round_ps::<{ _MM_FROUND_TO_ZERO | _MM_FROUND_NO_EXC }>(t);
        // |t − trunc(t)| >= 0.5 (exact): step one away from zero; false for NaN and ±inf
        let frac = _mm256_and_ps(_mm256_sub_ps(t, r), abs_mask);
        let away = _mm256_and_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(frac, half), one);
        let r = _mm256_add_ps(r, _mm256_or_ps(away, _mm256_and_ps(t, sign_mask)));
        let r = _mm256_max_ps(
            _mm256_min_ps(r, lim),
            _mm256_sub_ps(_mm256_setzero_ps(), lim),
        );
        // NaN products quantize to 0 (min/max above would have turned them into ±127)
        let r = _mm256_and_ps(r, _mm256_cmp_ps::<_CMP_ORD_Q>(t, t));
        _mm256_cvttps_epi32(r)
    });
    let s = _mm256_add_epi32(_mm256_add_epi32(q[0], q[1]), _mm256_add_epi32(q[2], q[3]));
    let s = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256::<1>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    // per 128-bit lane: quads [q0 lo, q1 lo, q2 lo, q3 lo | q0 hi, q1 hi, q2 hi, q3 hi]
    let p = _mm256_packs_epi16(
        _mm256_packs_epi32(q[0], q[1]),
        _mm256_packs_epi32(q[2], q[3]),
    );
    let qs = _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
    Block32 {
        d: if all_finite { d } else { f32::NAN },
        sum: _mm_cvtsi128_si32(s),
        qs,
    }
}

/// `crate::act::quantize_act`, bit for bit.
pub(super) fn quantize_act(x: &[f32], out: &mut [ActBlock]) {
    assert_eq!(x.len(), out.len() * QK8_0, "quantize_act: length mismatch");
    for (xb, b) in x.chunks_exact(QK8_0).zip(out.iter_mut()) {
        // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2, fma
        // and f16c; `b.qs` is 32 writable bytes, the store unaligned.
        unsafe {
            let q = block32(xb);
            _mm256_storeu_si256(b.qs.as_mut_ptr().cast(), q.qs);
            b.d = q.d;
            b.sum = q.sum;
        }
    }
}

/// `crate::act::quantize_act8`, bit for bit: up to 8 tokens `x` (`[n_tok, n_blocks * 32]`)
/// into one panel `out` (`[n_blocks]`).
pub(super) fn quantize_act8(x: &[f32], n_tok: usize, out: &mut [ActBlock8]) {
    assert!(n_tok <= GEMM_TOKENS, "quantize_act8: more than 8 tokens");
    assert_eq!(
        x.len(),
        n_tok * out.len() * QK8_0,
        "quantize_act8: length mismatch"
    );
    let cols = out.len() * QK8_0;
    for (b, ob) in out.iter_mut().enumerate() {
        // SAFETY: as in `quantize_act`.
        unsafe { panel_block(x, cols, b, n_tok, ob) }
    }
}

/// Block `b` of the panel: each token's quads, transposed so quad g of all 8 tokens is one row.
#[target_feature(enable = "avx2,fma,f16c")]
fn panel_block(x: &[f32], cols: usize, b: usize, n_tok: usize, ob: &mut ActBlock8) {
    let mut rows = [_mm256_setzero_si256(); GEMM_TOKENS]; // [token][quad]
    ob.d = [0.0; GEMM_TOKENS];
    ob.sum = [0; GEMM_TOKENS];
    for (t, row) in rows.iter_mut().enumerate().take(n_tok) {
        let q = block32(&x[t * cols + b * QK8_0..][..QK8_0]);
        *row = q.qs;
        ob.d[t] = q.d;
        ob.sum[t] = q.sum;
    }
    // 8×8 transpose of i32 lanes: out[g] lane t = rows[t] lane g
    let [r0, r1, r2, r3, r4, r5, r6, r7] = rows;
    let t0 = _mm256_unpacklo_epi32(r0, r1);
    let t1 = _mm256_unpackhi_epi32(r0, r1);
    let t2 = _mm256_unpacklo_epi32(r2, r3);
    let t3 = _mm256_unpackhi_epi32(r2, r3);
    let t4 = _mm256_unpacklo_epi32(r4, r5);
    let t5 = _mm256_unpackhi_epi32(r4, r5);
    let t6 = _mm256_unpacklo_epi32(r6, r7);
    let t7 = _mm256_unpackhi_epi32(r6, r7);
    let u0 = _mm256_unpacklo_epi64(t0, t2);
    let u1 = _mm256_unpackhi_epi64(t0, t2);
    let u2 = _mm256_unpacklo_epi64(t1, t3);
    let u3 = _mm256_unpackhi_epi64(t1, t3);
    let u4 = _mm256_unpacklo_epi64(t4, t6);
    let u5 = _mm256_unpackhi_epi64(t4, t6);
    let u6 = _mm256_unpacklo_epi64(t5, t7);
    let u7 = _mm256_unpackhi_epi64(t5, t7);
    let out = [
        _mm256_permute2x128_si256::<0x20>(u0, u4),
        _mm256_permute2x128_si256::<0x20>(u1, u5),
        _mm256_permute2x128_si256::<0x20>(u2, u6),
        _mm256_permute2x128_si256::<0x20>(u3, u7),
        _mm256_permute2x128_si256::<0x31>(u0, u4),
        _mm256_permute2x128_si256::<0x31>(u1, u5),
        _mm256_permute2x128_si256::<0x31>(u2, u6),
        _mm256_permute2x128_si256::<0x31>(u3, u7),
    ];
    for (g, v) in out.into_iter().enumerate() {
        // SAFETY: `qs[32g..32g + 32]` is in bounds (g < 8, 256 bytes); the store is unaligned.
        unsafe { _mm256_storeu_si256(ob.qs[32 * g..].as_mut_ptr().cast(), v) };
    }
}
