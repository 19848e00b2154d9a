//! NEON int8 GEMM kernels for many tokens: up to 4 weight rows against one 8-token activation
//! panel (`ActBlock8`) per pass, as the AVX2 ones (see `x86/gemm.rs` for the panel layout).
//!
//! Each 4-row group is unpacked once per call into signed int8 values and f32 scales. With the
//! `dotprod` feature (detected at run time) one `sdot` by element multiplies a weight quad
//! (a 32-bit lane of a weight register) against 4 tokens' quads; without it, widening
//! multiplies (`smull`) and pairwise accumulation (`sadalp`) do the same in 4 steps. Integer
//! sums per block are exact (|products| <= 127²); floats are applied once per block.

use crate::act::ActBlock8;
use dlm_formats::quant::{BlockQ4_0, BlockQ8_0, f16_val};
use std::arch::aarch64::*;
use std::arch::asm;

/// Weight rows per pass of a kernel.
const MR: usize = 4;

/// One row group's blocks: signed values (`[R, n_blocks, 32]`) and f32 scales
/// (`[R, n_blocks]`).
#[derive(Default)]
struct Unpacked {
    d: Vec<f32>,
    q: Vec<[i8; 32]>,
}

/// `q4_0` blocks as values `q - 8` in [-8, 7].
#[target_feature(enable = "neon")]
fn prep_q4_0(w: &[BlockQ4_0], u: &mut Unpacked) {
    u.d.clear();
    u.q.clear();
    u.q.resize(w.len(), [0; 32]);
    let m4 = vdupq_n_u8(0x0f);
    let k8 = vdupq_n_s8(8);
    for (b, q) in w.iter().zip(u.q.iter_mut()) {
        u.d.push(f16_val(b.d));
        // SAFETY: `qs` is 16 readable bytes and `q` 32 writable ones.
        unsafe {
            let raw = vld1q_u8(b.qs.as_ptr());
            let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), k8);
            let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)), k8);
            vst1q_s8(q.as_mut_ptr(), lo);
            vst1q_s8(q.as_mut_ptr().add(16), hi);
        }
    }
}

/// `q8_0` blocks as stored.
#[target_feature(enable = "neon")]
fn prep_q8_0(w: &[BlockQ8_0], u: &mut Unpacked) {
    u.d.clear();
    u.q.clear();
    for b in w {
        u.d.push(f16_val(b.d));
        u.q.push(b.qs);
    }
}

/// Runs the panel kernel `$panel::<R>` over the rows of `w` in groups of up to `MR`.
macro_rules! gemm_kernel {
    ($name:ident, $panel:ident, $prep:ident, $block:ty) => {
        /// `out[r][8g + t] = Σ w_r · a_{g,t}`: whole stored rows `w` against `n_groups` 8-token
        /// panels `a`; `out` is `[n_rows, 8 * n_groups]`.
        pub(super) fn $name(w: &[u8], a: &[ActBlock8], n_groups: usize, out: &mut [f32]) {
            let (wb, rows, nb) =
                crate::act::gemm_shape::<$block>(stringify!($name), w, a, n_groups, out.len());
            let np = 8 * n_groups;
            let mut u = Unpacked::default();
            let mut r = 0;
            while r < rows {
                let k = (rows - r).min(MR);
                // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it
                // (and `dotprod` before handing out the tables whose kernels use it).
                unsafe { $prep(&wb[r * nb..(r + k) * nb], &mut u) };
                for g in 0..n_groups {
                    let ag = &a[g * nb..(g + 1) * nb];
                    let mut o = [[0f32; 8]; MR];
                    // SAFETY: as above.
                    unsafe {
                        match k {
                            4 => $panel::<4>(&u, ag, &mut o),
                            3 => $panel::<3>(&u, ag, &mut o),
                            2 => $panel::<2>(&u, ag, &mut o),
                            _ => $panel::<1>(&u, ag, &mut o),
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

gemm_kernel!(gemm_q4_0_dot, panel_dot, prep_q4_0, BlockQ4_0);
gemm_kernel!(gemm_q8_0_dot, panel_dot, prep_q8_0, BlockQ8_0);
gemm_kernel!(gemm_q4_0, panel_plain, prep_q4_0, BlockQ4_0);
gemm_kernel!(gemm_q8_0, panel_plain, prep_q8_0, BlockQ8_0);

/// `acc[j] += Σ_i a[4j + i] · b[4L + i]` (`sdot` by element).
#[target_feature(enable = "neon,dotprod")]
fn sdot_lane<const L: i32>(acc: int32x4_t, a: int8x16_t, b: int8x16_t) -> int32x4_t {
    let mut acc = acc;
    // SAFETY: `sdot` (by element) reads three vector registers and writes one; the `dotprod`
    // feature is enabled on this function and detected before its table is handed out.
    unsafe {
        asm!(
            "sdot {acc:v}.4s, {a:v}.16b, {b:v}.4b[{l}]",
            acc = inout(vreg) acc,
            a = in(vreg) a,
            b = in(vreg) b,
            l = const L,
            options(pure, nomem, nostack)
        )
    };
    acc
}

/// `sdot_lane` with the lane chosen by `l` (folded where `l` is a constant).
#[target_feature(enable = "neon,dotprod")]
fn sdot_by(acc: int32x4_t, a: int8x16_t, b: int8x16_t, l: usize) -> int32x4_t {
    match l {
        0 => sdot_lane::<0>(acc, a, b),
        1 => sdot_lane::<1>(acc, a, b),
        2 => sdot_lane::<2>(acc, a, b),
        _ => sdot_lane::<3>(acc, a, b),
    }
}

/// Quad g of the panel block: tokens 0..4 and 4..8, 4 int8 each.
#[target_feature(enable = "neon")]
fn quad(ab: &ActBlock8, g: usize) -> (int8x16_t, int8x16_t) {
    let q = &ab.qs[32 * g..32 * g + 32];
    // SAFETY: `q` is 32 readable bytes.
    unsafe { (vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))) }
}

/// The panel's 8 scales, as tokens 0..4 and 4..8.
#[target_feature(enable = "neon")]
fn scales(ab: &ActBlock8) -> (float32x4_t, float32x4_t) {
    // SAFETY: `d` is 8 readable f32.
    unsafe { (vld1q_f32(ab.d.as_ptr()), vld1q_f32(ab.d.as_ptr().add(4))) }
}

/// Row r's block b as two registers (values 0..16, 16..32).
#[target_feature(enable = "neon")]
fn weights(u: &Unpacked, i: usize) -> [int8x16_t; 2] {
    let q = &u.q[i];
    // SAFETY: `q` is 32 readable bytes.
    unsafe { [vld1q_s8(q.as_ptr()), vld1q_s8(q.as_ptr().add(16))] }
}

/// Adds the block's 8 integer sums times `d_w · d_a` to each row's accumulators.
#[target_feature(enable = "neon")]
fn scale_add<const R: usize>(
    u: &Unpacked,
    nb: usize,
    b: usize,
    ab: &ActBlock8,
    s: [[int32x4_t; 2]; R],
    acc: &mut [[float32x4_t; 2]; R],
) {
    let (d_lo, d_hi) = scales(ab);
    for (r, (sr, ar)) in s.iter().zip(acc.iter_mut()).enumerate() {
        let dw = vdupq_n_f32(u.d[r * nb + b]);
        ar[0] = vfmaq_f32(ar[0], vcvtq_f32_s32(sr[0]), vmulq_f32(dw, d_lo));
        ar[1] = vfmaq_f32(ar[1], vcvtq_f32_s32(sr[1]), vmulq_f32(dw, d_hi));
    }
}

#[target_feature(enable = "neon")]
fn store_rows<const R: usize>(acc: [[float32x4_t; 2]; R], out: &mut [[f32; 8]; MR]) {
    for (o, v) in out.iter_mut().zip(acc) {
        // SAFETY: `o` is 8 writable f32.
        unsafe {
            vst1q_f32(o.as_mut_ptr(), v[0]);
            vst1q_f32(o.as_mut_ptr().add(4), v[1]);
        }
    }
}

#[target_feature(enable = "neon,dotprod")]
fn panel_dot<const R: usize>(u: &Unpacked, a: &[ActBlock8], out: &mut [[f32; 8]; MR]) {
    let nb = a.len();
    assert!(
        u.q.len() >= R * nb && u.d.len() >= R * nb,
        "panel_dot: unpacked rows"
    );
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, ab) in a.iter().enumerate() {
        let wv: [[int8x16_t; 2]; R] = std::array::from_fn(|r| weights(u, r * nb + b));
        let mut s = [[vdupq_n_s32(0); 2]; R];
        for g in 0..8 {
            let (lo, hi) = quad(ab, g);
            for (sr, wr) in s.iter_mut().zip(&wv) {
                sr[0] = sdot_by(sr[0], lo, wr[g / 4], g % 4);
                sr[1] = sdot_by(sr[1], hi, wr[g / 4], g % 4);
            }
        }
        scale_add(u, nb, b, ab, s, &mut acc);
    }
    store_rows(acc, out)
}

/// Weight quad `l` of `w` in every 32-bit lane.
#[target_feature(enable = "neon")]
fn dup_quad(w: int8x16_t, l: usize) -> int8x16_t {
    let v = vreinterpretq_s32_s8(w);
    vreinterpretq_s8_s32(match l {
        0 => vdupq_laneq_s32::<0>(v),
        1 => vdupq_laneq_s32::<1>(v),
        2 => vdupq_laneq_s32::<2>(v),
        _ => vdupq_laneq_s32::<3>(v),
    })
}

#[target_feature(enable = "neon")]
fn panel_plain<const R: usize>(u: &Unpacked, a: &[ActBlock8], out: &mut [[f32; 8]; MR]) {
    let nb = a.len();
    assert!(
        u.q.len() >= R * nb && u.d.len() >= R * nb,
        "panel_plain: unpacked rows"
    );
    let mut acc = [[vdupq_n_f32(0.0); 2]; R];
    for (b, ab) in a.iter().enumerate() {
        // [R][token pairs 01, 23, 45, 67]: lanes hold (token, half-quad) partial sums
        let mut p = [[vdupq_n_s32(0); 4]; R];
        for g in 0..8 {
            let (lo, hi) = quad(ab, g);
            for (r, pr) in p.iter_mut().enumerate() {
                let wq = dup_quad(weights(u, r * nb + b)[g / 4], g % 4);
                pr[0] = vpadalq_s16(pr[0], vmull_s8(vget_low_s8(lo), vget_low_s8(wq)));
                pr[1] = vpadalq_s16(pr[1], vmull_high_s8(lo, wq));
                pr[2] = vpadalq_s16(pr[2], vmull_s8(vget_low_s8(hi), vget_low_s8(wq)));
                pr[3] = vpadalq_s16(pr[3], vmull_high_s8(hi, wq));
            }
        }
        let s: [[int32x4_t; 2]; R] =
            std::array::from_fn(|r| [vpaddq_s32(p[r][0], p[r][1]), vpaddq_s32(p[r][2], p[r][3])]);
        scale_add(u, nb, b, ab, s, &mut acc);
    }
    store_rows(acc, out)
}
