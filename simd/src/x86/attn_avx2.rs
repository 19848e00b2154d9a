//! AVX2 + FMA attention tile kernels (contracts in `crate::attn`). A block's 16 queries sit in
//! two vectors; key and value elements are broadcast from their rows in place.
//!
//! Register blocking: scores keep 6 keys × 16 queries (12 accumulators) while walking
//! `head_dim`; accumulate keeps 6 `head_dim` columns × 16 queries while walking the keys. Both
//! issue 8–9 loads (2 of the block, 6 broadcasts, a row pointer) per 12 FMAs, so the two FMA
//! ports stay busy and 12 independent chains cover the FMA latency. Each accumulator is one FMA
//! chain in key (or `head_dim`) order, the scalar reference's order.

use crate::attn::{ATTN_LANES, AttentionKernels, check_rows, head_dim_of, load_lanes, store_lanes};
use std::arch::x86_64::*;

/// The AVX2 attention kernels; reachable only through `super::table` after feature detection.
pub(super) const AVX2_ATTENTION: AttentionKernels = AttentionKernels {
    load,
    scores,
    softmax,
    accumulate,
    probs,
    store,
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

/// e^x per lane for x <= 0 (or NaN), within a few ulp of `f32::exp`: x = n·ln2 + r with
/// |r| <= ln2/2, e^r by the Cephes `expf` polynomial, 2^n through the exponent bits. x is
/// clamped below at -88; from there on n = -127, whose exponent bits are 0, so below about
/// -87.3 (where e^x is subnormal) the result is 0 or a subnormal, and e^-inf = 0 without a
/// compare. NaN stays NaN. Attention only asks for x <= 0 (a score minus a max at least as
/// large), so there is no upper clamp.
///
/// `N` vectors at once, stage by stage: the chains are independent and ~45 cycles long, so
/// handing them to the core interleaved keeps both FMA pipes busy (one vector at a time leaves
/// the out-of-order window too few independent operations).
#[target_feature(enable = "avx2,fma")]
fn exp8xn<const N: usize>(x: [__m256; N]) -> [__m256; N] {
    // t = x·log2e + 1.5·2^23 + 127 rounds x·log2e to the nearest integer n (ties to even) in
    // t's low mantissa bits, with the exponent bias already added: t - magic = n exactly, and
    // the bits of t shifted up by 23 are 2^n's (n + 127 is in [0, 127] since x is in
    // [-88, 0]). One FMA, one subtract and one shift instead of round, convert, add, shift.
    const MAGIC: f32 = 12_582_912.0 + 127.0;
    // max returns its second operand when one is NaN, so a NaN x goes through.
    let xc = x.map(|x| _mm256_max_ps(_mm256_set1_ps(-88.0), x));
    let t = xc.map(|x| {
        _mm256_fmadd_ps(
            x,
            _mm256_set1_ps(std::f32::consts::LOG2_E),
            _mm256_set1_ps(MAGIC),
        )
    });
    let fx = t.map(|t| _mm256_sub_ps(t, _mm256_set1_ps(MAGIC)));
    // r = x - n·ln2 in two steps (ln2 = 0.693359375 + -2.12194440e-4, the first exact)
    let mut r: [__m256; N] =
        std::array::from_fn(|i| _mm256_fnmadd_ps(fx[i], _mm256_set1_ps(0.693_359_4), xc[i]));
    for i in 0..N {
        r[i] = _mm256_fnmadd_ps(fx[i], _mm256_set1_ps(-2.121_944_4e-4), r[i]);
    }
    let mut p = [_mm256_set1_ps(1.987_569_2e-4); N];
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        for i in 0..N {
            p[i] = _mm256_fmadd_ps(p[i], r[i], _mm256_set1_ps(c));
        }
    }
    // 1 + r + r²·p: exactly 1 at r = 0, so e^0 = 1 and an unmoved max rescales by exactly 1
    std::array::from_fn(|i| {
        let y = _mm256_fmadd_ps(
            p[i],
            _mm256_mul_ps(r[i], r[i]),
            _mm256_add_ps(r[i], _mm256_set1_ps(1.0)),
        );
        let pow2n = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_castps_si256(t[i])));
        _mm256_mul_ps(y, pow2n)
    })
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
    // 4 keys at a time (8 independent exponentials), summed in key order.
    let mut quads = s.chunks_exact_mut(4 * ATTN_LANES);
    for sq in &mut quads {
        let x: [__m256; 8] = std::array::from_fn(|i| {
            let v = load16(&sq[i / 2 * ATTN_LANES..]);
            _mm256_sub_ps(
                if i % 2 == 0 { v.0 } else { v.1 },
                if i % 2 == 0 { x0 } else { x1 },
            )
        });
        let e = exp8xn(x);
        for (j, sj) in sq.chunks_exact_mut(ATTN_LANES).enumerate() {
            sum0 = _mm256_add_ps(sum0, e[2 * j]);
            sum1 = _mm256_add_ps(sum1, e[2 * j + 1]);
            store16(sj, (e[2 * j], e[2 * j + 1]));
        }
    }
    for sj in quads.into_remainder().chunks_exact_mut(ATTN_LANES) {
        let (a, b) = load16(sj);
        let [e0, e1] = exp8xn([_mm256_sub_ps(a, x0), _mm256_sub_ps(b, x1)]);
        sum0 = _mm256_add_ps(sum0, e0);
        sum1 = _mm256_add_ps(sum1, e1);
        store16(sj, (e0, e1));
    }
    let [al0, al1] = exp8xn([_mm256_sub_ps(m0, x0), _mm256_sub_ps(m1, x1)]);
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
        let [e0, e1] = exp8xn([_mm256_sub_ps(a, m0), _mm256_sub_ps(b, m1)]);
        store16(sj, (_mm256_mul_ps(e0, c0), _mm256_mul_ps(e1, c1)));
    }
}

/// The columns of an 8 × 8 block: lane i of result d is lane d of `r[i]`.
#[target_feature(enable = "avx2,fma")]
fn transpose8(r: [__m256; 8]) -> [__m256; 8] {
    let t0 = _mm256_unpacklo_ps(r[0], r[1]); // a0 b0 a1 b1 | a4 b4 a5 b5
    let t1 = _mm256_unpackhi_ps(r[0], r[1]); // a2 b2 a3 b3 | a6 b6 a7 b7
    let t2 = _mm256_unpacklo_ps(r[2], r[3]);
    let t3 = _mm256_unpackhi_ps(r[2], r[3]);
    let t4 = _mm256_unpacklo_ps(r[4], r[5]);
    let t5 = _mm256_unpackhi_ps(r[4], r[5]);
    let t6 = _mm256_unpacklo_ps(r[6], r[7]);
    let t7 = _mm256_unpackhi_ps(r[6], r[7]);
    let u0 = _mm256_shuffle_ps::<0x44>(t0, t2); // a0 b0 c0 d0 | a4 b4 c4 d4
    let u1 = _mm256_shuffle_ps::<0xee>(t0, t2); // a1 b1 c1 d1 | a5 b5 c5 d5
    let u2 = _mm256_shuffle_ps::<0x44>(t1, t3);
    let u3 = _mm256_shuffle_ps::<0xee>(t1, t3);
    let u4 = _mm256_shuffle_ps::<0x44>(t4, t6); // e0 f0 g0 h0 | e4 f4 g4 h4
    let u5 = _mm256_shuffle_ps::<0xee>(t4, t6);
    let u6 = _mm256_shuffle_ps::<0x44>(t5, t7);
    let u7 = _mm256_shuffle_ps::<0xee>(t5, t7);
    [
        _mm256_permute2f128_ps::<0x20>(u0, u4),
        _mm256_permute2f128_ps::<0x20>(u1, u5),
        _mm256_permute2f128_ps::<0x20>(u2, u6),
        _mm256_permute2f128_ps::<0x20>(u3, u7),
        _mm256_permute2f128_ps::<0x31>(u0, u4),
        _mm256_permute2f128_ps::<0x31>(u1, u5),
        _mm256_permute2f128_ps::<0x31>(u2, u6),
        _mm256_permute2f128_ps::<0x31>(u3, u7),
    ]
}

fn load(rows: &[&[f32]], scale: f32, qt: &mut [f32]) {
    let hd = head_dim_of(qt, "load");
    assert!(rows.len() <= ATTN_LANES, "load: {} rows", rows.len());
    check_rows(rows, hd, "load");
    let whole = hd / 8 * 8;
    for l0 in [0, 8] {
        if rows.len() >= l0 + 8 {
            // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2
            // and fma; rows l0..l0 + 8 exist and are `hd` long (checked), `qt` is `[hd, 16]`.
            unsafe { load8(&rows[l0..l0 + 8], scale, qt, l0, whole) };
            load_lanes(rows, scale, qt, hd, l0..l0 + 8, whole..hd);
        } else {
            load_lanes(rows, scale, qt, hd, l0..l0 + 8, 0..hd);
        }
    }
}

/// Lanes `l0..l0 + 8` of `qt`, columns `0..whole` (a multiple of 8), from 8 rows.
///
/// # Safety
/// avx2 and fma are available; `rows.len() == 8`, each row has at least `whole` values,
/// `l0 + 8 <= 16` and `qt.len() >= whole * 16`.
#[target_feature(enable = "avx2,fma")]
unsafe fn load8(rows: &[&[f32]], scale: f32, qt: &mut [f32], l0: usize, whole: usize) {
    let sc = _mm256_set1_ps(scale);
    let q = qt.as_mut_ptr();
    for d0 in (0..whole).step_by(8) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (x, row) in r.iter_mut().zip(rows) {
            // SAFETY: d0 + 8 <= whole <= the row's length.
            *x = unsafe { _mm256_loadu_ps(row.as_ptr().add(d0)) };
        }
        for (k, c) in transpose8(r).into_iter().enumerate() {
            // SAFETY: (d0 + k)·16 + l0 + 8 <= whole·16 (the caller's contract).
            unsafe { _mm256_storeu_ps(q.add((d0 + k) * ATTN_LANES + l0), _mm256_mul_ps(c, sc)) };
        }
    }
}

fn store(ot: &[f32], c: &[f32; ATTN_LANES], out: &mut [f32]) {
    let hd = head_dim_of(ot, "store");
    if hd == 0 {
        return;
    }
    assert!(
        out.len().is_multiple_of(hd) && out.len() <= ot.len(),
        "store: out is not whole rows of at most {ATTN_LANES}"
    );
    let lanes = out.len() / hd;
    let whole = hd / 8 * 8;
    for l0 in [0, 8] {
        let end = lanes.clamp(l0, l0 + 8);
        if end == l0 + 8 {
            // SAFETY: reachable only through the `AVX2` table, handed out after detecting avx2
            // and fma; `ot` is `[hd, 16]` and `out` has rows l0..l0 + 8 of `hd` (checked).
            unsafe { store8(ot, c, out, hd, l0, whole) };
            store_lanes(ot, c, out, hd, l0..end, whole..hd);
        } else {
            store_lanes(ot, c, out, hd, l0..end, 0..hd);
        }
    }
}

/// Rows `l0..l0 + 8` of `out` (`[_, hd]`), columns `0..whole` (a multiple of 8).
///
/// # Safety
/// avx2 and fma are available; `ot.len() == hd * 16`, `out.len() >= (l0 + 8) * hd`,
/// `whole <= hd`.
#[target_feature(enable = "avx2,fma")]
unsafe fn store8(
    ot: &[f32],
    c: &[f32; ATTN_LANES],
    out: &mut [f32],
    hd: usize,
    l0: usize,
    whole: usize,
) {
    let (src, dst) = (ot.as_ptr(), out.as_mut_ptr());
    for d0 in (0..whole).step_by(8) {
        let mut r = [_mm256_setzero_ps(); 8];
        for (k, x) in r.iter_mut().enumerate() {
            // SAFETY: (d0 + k)·16 + l0 + 8 <= hd·16.
            *x = unsafe { _mm256_loadu_ps(src.add((d0 + k) * ATTN_LANES + l0)) };
        }
        for (i, x) in transpose8(r).into_iter().enumerate() {
            let v = _mm256_mul_ps(x, _mm256_set1_ps(c[l0 + i]));
            // SAFETY: (l0 + i)·hd + d0 + 8 <= (l0 + 8)·hd (the caller's contract).
            unsafe { _mm256_storeu_ps(dst.add((l0 + i) * hd + d0), v) };
        }
    }
}
