//! NEON attention tile kernels (contracts in `crate::attn`): the AVX2 kernels' blocking with a
//! block's 16 queries in four vectors. Scores keep 6 keys × 16 queries and accumulate keeps 6
//! `head_dim` columns × 16 queries in registers (24 of the 32); each accumulator is one FMA
//! chain in the scalar reference's order.

use crate::attn::{ATTN_LANES, AttentionKernels, check_rows, head_dim_of};
use std::arch::aarch64::*;

/// The NEON attention kernels.
/// (The transposes on the way in and out are the scalar reference's: they are a few percent of
/// a block's work.)
pub(super) const NEON_ATTENTION: AttentionKernels = AttentionKernels {
    load: crate::attn::load,
    scores,
    softmax,
    accumulate,
    probs,
    store: crate::attn::store,
};

/// Keys (scores) or `head_dim` columns (accumulate) per register block.
const NB: usize = 6;

type V16 = [float32x4_t; 4];

#[target_feature(enable = "neon")]
fn load16(x: &[f32]) -> V16 {
    assert!(x.len() >= ATTN_LANES);
    // SAFETY: `x` has at least 16 readable values (checked).
    unsafe { std::array::from_fn(|k| vld1q_f32(x.as_ptr().add(4 * k))) }
}

#[target_feature(enable = "neon")]
fn store16(x: &mut [f32], v: V16) {
    assert!(x.len() >= ATTN_LANES);
    for (k, vk) in v.iter().enumerate() {
        // SAFETY: `x` has at least 16 writable values (checked), 4k + 4 <= 16.
        unsafe { vst1q_f32(x.as_mut_ptr().add(4 * k), *vk) };
    }
}

/// e^x per lane, the AVX2 kernels' algorithm (Cephes `expf` polynomial, 2^n through the exponent
/// bits, x clamped to [-88, 88]): below about -87.3 the result is 0 or a
/// subnormal (e^-inf = 0), NaN stays NaN.
#[target_feature(enable = "neon")]
fn exp4(x: float32x4_t) -> float32x4_t {
    // vmaxq/vminq return NaN when either operand is NaN
    let xc = vminq_f32(vdupq_n_f32(88.0), vmaxq_f32(vdupq_n_f32(-88.0), x));
    let fx = vrndnq_f32(vmulq_n_f32(xc, std::f32::consts::LOG2_E));
    let r = vfmsq_f32(xc, fx, vdupq_n_f32(0.693_359_4));
    let r = vfmsq_f32(r, fx, vdupq_n_f32(-2.121_944_4e-4));
    let mut p = vdupq_n_f32(1.987_569_2e-4);
    for c in [
        1.398_199_9e-3,
        8.333_452e-3,
        4.166_579_6e-2,
        1.666_666_5e-1,
        0.5,
    ] {
        p = vfmaq_f32(vdupq_n_f32(c), p, r);
    }
    let y = vfmaq_f32(vaddq_f32(r, vdupq_n_f32(1.0)), p, vmulq_f32(r, r));
    let n = vcvtq_s32_f32(fx);
    let pow2n = vreinterpretq_f32_s32(vshlq_n_s32::<23>(vaddq_s32(n, vdupq_n_s32(127))));
    // from x = -88 on n = -127, whose exponent bits are 0: e^x = 0
    vmulq_f32(y, pow2n)
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
        // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it; the rows
        // are `hd` long (checked above), `qt` is `[hd, 16]`.
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

/// Scores of `N` keys against the block `qt` (`[hd, 16]`) into `s` (`[N, 16]`).
///
/// # Safety
/// NEON is available; every row of `keys` has at least `hd` values and `qt.len() == hd * 16`.
#[target_feature(enable = "neon")]
unsafe fn scores_n<const N: usize>(qt: &[f32], keys: &[&[f32]], hd: usize, s: &mut [f32]) {
    let k: [*const f32; N] = std::array::from_fn(|t| keys[t].as_ptr());
    let q = qt.as_ptr();
    let mut acc = [[vdupq_n_f32(0.0); 4]; N];
    for d in 0..hd {
        // SAFETY: d < hd and `qt` is `[hd, 16]`: lanes 16d..16d + 16 are in range.
        let qv: V16 = unsafe { std::array::from_fn(|c| vld1q_f32(q.add(d * ATTN_LANES + 4 * c))) };
        for t in 0..N {
            // SAFETY: d < hd and row t has at least hd values (the caller's contract).
            let kv = unsafe { *k[t].add(d) };
            for c in 0..4 {
                acc[t][c] = vfmaq_n_f32(acc[t][c], qv[c], kv);
            }
        }
    }
    for (t, a) in acc.iter().enumerate() {
        store16(&mut s[t * ATTN_LANES..], *a);
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
    // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it.
    unsafe { softmax_neon(s, m, l) }
}

#[target_feature(enable = "neon")]
fn softmax_neon(
    s: &mut [f32],
    m: &mut [f32; ATTN_LANES],
    l: &mut [f32; ATTN_LANES],
) -> [f32; ATTN_LANES] {
    let m_old = load16(m);
    let mut x = m_old;
    for sj in s.chunks_exact(ATTN_LANES) {
        let v = load16(sj);
        for c in 0..4 {
            x[c] = vmaxq_f32(x[c], v[c]);
        }
    }
    let mut sum = [vdupq_n_f32(0.0); 4];
    for sj in s.chunks_exact_mut(ATTN_LANES) {
        let v = load16(sj);
        let e: V16 = std::array::from_fn(|c| exp4(vsubq_f32(v[c], x[c])));
        for c in 0..4 {
            sum[c] = vaddq_f32(sum[c], e[c]);
        }
        store16(sj, e);
    }
    let al: V16 = std::array::from_fn(|c| exp4(vsubq_f32(m_old[c], x[c])));
    let lv = load16(l);
    store16(l, std::array::from_fn(|c| vfmaq_f32(sum[c], lv[c], al[c])));
    store16(m, x);
    let mut alpha = [0f32; ATTN_LANES];
    store16(&mut alpha, al);
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
        // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it; the rows
        // are `hd` long (checked above) and d + n <= hd.
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
/// NEON is available; every row of `values` has at least `d0 + N` values and
/// `p.len() == values.len() * 16`.
#[target_feature(enable = "neon")]
unsafe fn accumulate_n<const N: usize>(
    p: &[f32],
    values: &[&[f32]],
    alpha: &[f32; ATTN_LANES],
    d0: usize,
    od: &mut [f32],
) {
    let a = load16(alpha);
    let mut acc: [V16; N] = std::array::from_fn(|t| {
        let o = load16(&od[t * ATTN_LANES..]);
        std::array::from_fn(|c| vmulq_f32(o[c], a[c]))
    });
    let pp = p.as_ptr();
    for (j, vj) in values.iter().enumerate() {
        // SAFETY: j < values.len() and `p` is `[values.len(), 16]`.
        let pv: V16 = unsafe { std::array::from_fn(|c| vld1q_f32(pp.add(j * ATTN_LANES + 4 * c))) };
        let v = vj.as_ptr();
        for (t, at) in acc.iter_mut().enumerate() {
            // SAFETY: d0 + t < d0 + N <= the row's length (the caller's contract).
            let vv = unsafe { *v.add(d0 + t) };
            for c in 0..4 {
                at[c] = vfmaq_n_f32(at[c], pv[c], vv);
            }
        }
    }
    for (t, at) in acc.iter().enumerate() {
        store16(&mut od[t * ATTN_LANES..], *at);
    }
}

fn probs(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]) {
    assert!(
        s.len().is_multiple_of(ATTN_LANES),
        "probs: s is not whole lanes"
    );
    // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it.
    unsafe { probs_neon(s, m, c) }
}

#[target_feature(enable = "neon")]
fn probs_neon(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]) {
    let mv = load16(m);
    let cv = load16(c);
    for sj in s.chunks_exact_mut(ATTN_LANES) {
        let v = load16(sj);
        store16(
            sj,
            std::array::from_fn(|k| vmulq_f32(exp4(vsubq_f32(v[k], mv[k])), cv[k])),
        );
    }
}
