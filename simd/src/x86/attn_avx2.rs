//! AVX2 + FMA attention tile kernels (contracts in `crate::attn`). A block's 16 queries sit in
//! two vectors; key and value elements are broadcast from their rows in place.
//!
//! Register blocking: scores keep 6 keys × 16 queries (12 accumulators) while walking
//! `head_dim`; accumulate keeps 6 `head_dim` columns × 16 queries while walking the keys. Both
//! issue 8–9 loads (2 of the block, 6 broadcasts, a row pointer) per 12 FMAs, so the two FMA
//! ports stay busy and 12 independent chains cover the FMA latency. Each accumulator is one FMA
//! chain in key (or `head_dim`) order, the scalar reference's order.

use crate::attn::{ATTN_LANES, AttentionKernels, check_rows, head_dim_of};
use std::arch::x86_64::*;

/// The AVX2 attention kernels; reachable only through `super::table` after feature detection.
pub(super) const AVX2_ATTENTION: AttentionKernels = AttentionKernels {
    scores,
    softmax,
    accumulate,
    probs,
};

/// Keys (scores) or `head_dim` columns (accumulate) per register block.
const NB: usize = 6;

#[target_feature(enable = "avx2,fma")]
fn load16(x: &[f32]) -> (__m256, __m256) {
    assert!(x.len() >= ATTN_LANES);
    // SAFETY: `x` has at least 16 readable values (checked); the loads are unaligned.
    unsafe {
        (
            _mm256_loadu_ps(x.as_ptr()),
            _mm256_loadu_ps(x.as_ptr().add(8)),
        )
    }
}

#[target_feature(enable = "avx2,fma")]
fn store16(x: &mut [f32], v: (__m256, __m256)) {
    assert!(x.len() >= ATTN_LANES);
    // SAFETY: `x` has at least 16 writable values (checked); the stores are unaligned.
    unsafe {
        _mm256_storeu_ps(x.as_mut_ptr(), v.0);
        _mm256_storeu_ps(x.as_mut_ptr().add(8), v.1);
    }
}

/// e^x per lane, within a few ulp of `f32::exp` for x in [-87.3, 88]: x = n·ln2 + r with
/// |r| <= ln2/2, e^r by the Cephes `expf` polynomial, 2^n through the exponent bits. Below
/// -87.3 (where e^x is subnormal) the result is 0, so e^-inf = 0; NaN stays NaN; above 88 the
/// result is that of 88 (attention only asks for x <= 0).
#[target_feature(enable = "avx2,fma")]
fn exp8(x: __m256) -> __m256 {
    let lo = _mm256_set1_ps(-87.336_55);
    // max/min return their second operand when one is NaN, so a NaN x goes through.
    let xc = _mm256_min_ps(_mm256_set1_ps(88.0), _mm256_max_ps(lo, x));
    let fx = _mm256_round_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(_mm256_mul_ps(
        xc,
        _mm256_set1_ps(std::f32::consts::LOG2_E),
    ));
    // r = x - n·ln2 in two steps (ln2 = 0.693359375 + -2.12194440e-4, the first exact)
    let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(0.693_359_4), xc);
    let r = _mm256_fnmadd_ps(fx, _mm256_set1_ps(-2.121_944_4e-4), r);
    let mut p = _mm256_set1_ps(1.987_569_2e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(c));
    }
    // 1 + r + r²·p: exactly 1 at r = 0, so e^0 = 1 and an unmoved max rescales by exactly 1
    let y = _mm256_fmadd_ps(
        p,
        _mm256_mul_ps(r, r),
        _mm256_add_ps(r, _mm256_set1_ps(1.0)),
    );
    let n = _mm256_cvtps_epi32(fx);
    let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(
        n,
        _mm256_set1_epi32(127),
    )));
    let e = _mm256_mul_ps(y, pow2n);
    // x < lo is false for NaN, which keeps its NaN
    _mm256_andnot_ps(_mm256_cmp_ps::<_CMP_LT_OQ>(x, lo), e)
}

fn scores(qt: &[f32], keys: &[&[f32]], s: &mut [f32]) {
    let hd = head_dim_of(qt, "scores");
    assert_eq!(s.len(), keys.len() * ATTN_LANES, "scores: s length");
    check_rows(keys, hd, "scores");
    let mut j = 0;
    while j < keys.len() {
        let n = (keys.len() - j).min(NB);
        let sj = &mut s[j * ATTN_LANES..(j + n) * ATTN_LANES];
        let kj = &keys[j..j + n];
        // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2 and
        // fma; the rows are `hd` long (checked above), `qt` is `[hd, 16]`.
        unsafe {
            match n {
                6 => scores_n::<6>(qt, kj, hd, sj),
                5 => scores_n::<5>(qt, kj, hd, sj),
                4 => scores_n::<4>(qt, kj, hd, sj),
                3 => scores_n::<3>(qt, kj, hd, sj),
                2 => scores_n::<2>(qt, kj, hd, sj),
                _ => scores_n::<1>(qt, kj, hd, sj),
            }
        }
        j += n;
    }
}

/// Scores of `N` keys (`keys.len() == N`, each at least `hd` long) against the block `qt`
/// (`[hd, 16]`) into `s` (`[N, 16]`).
///
/// # Safety
/// avx2 and fma are available; every row of `keys` has at least `hd` values and
/// `qt.len() == hd * 16`.
#[target_feature(enable = "avx2,fma")]
unsafe fn scores_n<const N: usize>(qt: &[f32], keys: &[&[f32]], hd: usize, s: &mut [f32]) {
    let k: [*const f32; N] = std::array::from_fn(|t| keys[t].as_ptr());
    let q = qt.as_ptr();
    let mut acc = [[_mm256_setzero_ps(); 2]; N];
    for d in 0..hd {
        // SAFETY: d < hd and `qt` is `[hd, 16]`: lanes 16d..16d + 16 are in range.
        let (q0, q1) = unsafe {
            (
                _mm256_loadu_ps(q.add(d * ATTN_LANES)),
                _mm256_loadu_ps(q.add(d * ATTN_LANES + 8)),
            )
        };
        for t in 0..N {
            // SAFETY: d < hd and row t has at least hd values (the caller's contract).
            let kv = unsafe { _mm256_broadcast_ss(&*k[t].add(d)) };
            acc[t][0] = _mm256_fmadd_ps(q0, kv, acc[t][0]);
            acc[t][1] = _mm256_fmadd_ps(q1, kv, acc[t][1]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        store16(&mut s[t * ATTN_LANES..], (a[0], a[1]));
    }
}

fn softmax(
    s: &mut [f32],
    m: &mut [f32; ATTN_LANES],
    l: &mut [f32; ATTN_LANES],
) -> [f32; ATTN_LANES] {
    assert!(
        s.len().is_multiple_of(ATTN_LANES),
        "softmax: s is not whole lanes"
    );
    if s.is_empty() {
        return [1.0; ATTN_LANES];
    }
    // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2 and fma.
    unsafe { softmax_avx2(s, m, l) }
}

#[target_feature(enable = "avx2,fma")]
fn softmax_avx2(
    s: &mut [f32],
    m: &mut [f32; ATTN_LANES],
    l: &mut [f32; ATTN_LANES],
) -> [f32; ATTN_LANES] {
    let (m0, m1) = load16(m);
    let (mut x0, mut x1) = (m0, m1);
    for sj in s.chunks_exact(ATTN_LANES) {
        let (a, b) = load16(sj);
        x0 = _mm256_max_ps(x0, a);
        x1 = _mm256_max_ps(x1, b);
    }
    let (mut sum0, mut sum1) = (_mm256_setzero_ps(), _mm256_setzero_ps());
    for sj in s.chunks_exact_mut(ATTN_LANES) {
        let (a, b) = load16(sj);
        let (e0, e1) = (exp8(_mm256_sub_ps(a, x0)), exp8(_mm256_sub_ps(b, x1)));
        sum0 = _mm256_add_ps(sum0, e0);
        sum1 = _mm256_add_ps(sum1, e1);
        store16(sj, (e0, e1));
    }
    let al0 = exp8(_mm256_sub_ps(m0, x0));
    let al1 = exp8(_mm256_sub_ps(m1, x1));
    let (l0, l1) = load16(l);
    store16(
        l,
        (
            _mm256_fmadd_ps(l0, al0, sum0),
            _mm256_fmadd_ps(l1, al1, sum1),
        ),
    );
    store16(m, (x0, x1));
    let mut alpha = [0f32; ATTN_LANES];
    store16(&mut alpha, (al0, al1));
    alpha
}

fn accumulate(p: &[f32], values: &[&[f32]], alpha: &[f32; ATTN_LANES], ot: &mut [f32]) {
    let hd = head_dim_of(ot, "accumulate");
    assert_eq!(p.len(), values.len() * ATTN_LANES, "accumulate: p length");
    check_rows(values, hd, "accumulate");
    let mut d = 0;
    while d < hd {
        let n = (hd - d).min(NB);
        let od = &mut ot[d * ATTN_LANES..(d + n) * ATTN_LANES];
        // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2 and
        // fma; the rows are `hd` long (checked above) and d + n <= hd.
        unsafe {
            match n {
                6 => accumulate_n::<6>(p, values, alpha, d, od),
                5 => accumulate_n::<5>(p, values, alpha, d, od),
                4 => accumulate_n::<4>(p, values, alpha, d, od),
                3 => accumulate_n::<3>(p, values, alpha, d, od),
                2 => accumulate_n::<2>(p, values, alpha, d, od),
                _ => accumulate_n::<1>(p, values, alpha, d, od),
            }
        }
        d += n;
    }
}

/// Columns `d0..d0 + N` of the accumulator (`od`, `[N, 16]`): `od = alpha · od + pᵀ·v`.
///
/// # Safety
/// avx2 and fma are available; every row of `values` has at least `d0 + N` values and
/// `p.len() == values.len() * 16`.
#[target_feature(enable = "avx2,fma")]
unsafe fn accumulate_n<const N: usize>(
    p: &[f32],
    values: &[&[f32]],
    alpha: &[f32; ATTN_LANES],
    d0: usize,
    od: &mut [f32],
) {
    let (a0, a1) = load16(alpha);
    let mut acc: [[__m256; 2]; N] = std::array::from_fn(|t| {
        let (o0, o1) = load16(&od[t * ATTN_LANES..]);
        [_mm256_mul_ps(o0, a0), _mm256_mul_ps(o1, a1)]
    });
    let pp = p.as_ptr();
    for (j, vj) in values.iter().enumerate() {
        // SAFETY: j < values.len() and `p` is `[values.len(), 16]`.
        let (p0, p1) = unsafe {
            (
                _mm256_loadu_ps(pp.add(j * ATTN_LANES)),
                _mm256_loadu_ps(pp.add(j * ATTN_LANES + 8)),
            )
        };
        let v = vj.as_ptr();
        for (t, a) in acc.iter_mut().enumerate() {
            // SAFETY: d0 + t < d0 + N <= the row's length (the caller's contract).
            let vv = unsafe { _mm256_broadcast_ss(&*v.add(d0 + t)) };
            a[0] = _mm256_fmadd_ps(p0, vv, a[0]);
            a[1] = _mm256_fmadd_ps(p1, vv, a[1]);
        }
    }
    for (t, a) in acc.iter().enumerate() {
        store16(&mut od[t * ATTN_LANES..], (a[0], a[1]));
    }
}

fn probs(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]) {
    assert!(
        s.len().is_multiple_of(ATTN_LANES),
        "probs: s is not whole lanes"
    );
    // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2 and fma.
    unsafe { probs_avx2(s, m, c) }
}

#[target_feature(enable = "avx2,fma")]
fn probs_avx2(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]) {
    let (m0, m1) = load16(m);
    let (c0, c1) = load16(c);
    for sj in s.chunks_exact_mut(ATTN_LANES) {
        let (a, b) = load16(sj);
        let e0 = _mm256_mul_ps(exp8(_mm256_sub_ps(a, m0)), c0);
        let e1 = _mm256_mul_ps(exp8(_mm256_sub_ps(b, m1)), c1);
        store16(sj, (e0, e1));
    }
}
