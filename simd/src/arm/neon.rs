//! NEON row kernels (aarch64 baseline: widening multiplies, no `dotprod` needed). The table
//! `NEON` is handed out by `super::table`.
//!
//! Integer sums per block are exact and floats are applied once per block, in the same order as
//! the scalar reference; tokens run one after another against the row (the row stays in L1).

use crate::act::ActBlock;
use crate::dispatch::Kernels;
use dlm_formats::quant::{
    BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks, f16_val, unpack_scales_q4k,
};
use std::arch::aarch64::*;

/// The NEON kernels (int8 GEMM by widening multiplies).
pub(super) static NEON: Kernels = Kernels {
    name: "neon",
    q8_0: row_q8_0,
    q4_0: row_q4_0,
    q4_k: row_q4_k,
    q6_k: row_q6_k,
    dequant: crate::dispatch::SCALAR_DEQUANT,
    attention: super::attn_neon::NEON_ATTENTION,
    gemm_q8_0: Some(super::gemm::gemm_q8_0),
    gemm_q4_0: Some(super::gemm::gemm_q4_0),
    // q4_k keeps the row kernels and the f32 tiles on NEON (no int8 GEMM for it yet)
    gemm_q4_k: None,
    rows_f32: None,
    rows_f16: None,
    rows_bf16: None,
    quantize_act: crate::act::quantize_act,
    quantize_act8: crate::act::quantize_act8,
};

/// The NEON kernels with the int8 GEMM on `sdot` (CPUs with the `dotprod` feature).
pub(super) static NEON_DOTPROD: Kernels = Kernels {
    name: "neon+dotprod",
    gemm_q8_0: Some(super::gemm::gemm_q8_0_dot),
    gemm_q4_0: Some(super::gemm::gemm_q4_0_dot),
    ..NEON
};

#[target_feature(enable = "neon")]
fn ld_s8(b: &[i8]) -> int8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: `b` has at least 16 readable bytes (checked).
    unsafe { vld1q_s8(b.as_ptr()) }
}

#[target_feature(enable = "neon")]
fn ld_u8(b: &[u8]) -> uint8x16_t {
    assert!(b.len() >= 16);
    // SAFETY: `b` has at least 16 readable bytes (checked).
    unsafe { vld1q_u8(b.as_ptr()) }
}

/// Σ x·y over 16 int8 lanes (|x|, |y| <= 127: the i16 products cannot overflow).
#[target_feature(enable = "neon")]
fn dot16(x: int8x16_t, y: int8x16_t) -> i32 {
    let lo = vmull_s8(vget_low_s8(x), vget_low_s8(y));
    let hi = vmull_high_s8(x, y);
    vaddvq_s32(vpadalq_s16(vpaddlq_s16(lo), hi))
}

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
            for (t, o) in out.iter_mut().enumerate() {
                // SAFETY: NEON is part of the aarch64 baseline and `super::table` checks it.
                *o = unsafe { $inner(wb, &a[t * nb..(t + 1) * nb]) };
            }
        }
    };
}

row_kernel!(row_q8_0, dot_q8_0, BlockQ8_0, 1);
row_kernel!(row_q4_0, dot_q4_0, BlockQ4_0, 1);
row_kernel!(row_q4_k, dot_q4_k, BlockQ4K, 8);
row_kernel!(row_q6_k, dot_q6_k, BlockQ6K, 8);

#[target_feature(enable = "neon")]
fn dot_q8_0(w: &[BlockQ8_0], a: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    for (wb, ab) in w.iter().zip(a) {
        let s = dot16(ld_s8(&wb.qs[..16]), ld_s8(&ab.qs[..16]))
            + dot16(ld_s8(&wb.qs[16..]), ld_s8(&ab.qs[16..]));
        acc += f16_val(wb.d) * ab.d * s as f32;
    }
    acc
}

#[target_feature(enable = "neon")]
fn dot_q4_0(w: &[BlockQ4_0], a: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    let m4 = vdupq_n_u8(0x0f);
    let k8 = vdupq_n_s8(8);
    for (wb, ab) in w.iter().zip(a) {
        let raw = ld_u8(&wb.qs);
        let lo = vsubq_s8(vreinterpretq_s8_u8(vandq_u8(raw, m4)), k8);
        let hi = vsubq_s8(vreinterpretq_s8_u8(vshrq_n_u8::<4>(raw)), k8);
        let s = dot16(lo, ld_s8(&ab.qs[..16])) + dot16(hi, ld_s8(&ab.qs[16..]));
        acc += f16_val(wb.d) * ab.d * s as f32;
    }
    acc
}

#[target_feature(enable = "neon")]
fn dot_q4_k(w: &[BlockQ4K], a: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    let m4 = vdupq_n_u8(0x0f);
    for (wb, ab) in w.iter().zip(a.chunks_exact(8)) {
        let d = f16_val(wb.d);
        let dmin = f16_val(wb.dmin);
        let (sc, mn) = unpack_scales_q4k(&wb.scales);
        for c in 0..4 {
            let r0 = ld_u8(&wb.qs[c * 32..]);
            let r1 = ld_u8(&wb.qs[c * 32 + 16..]);
            let (a0, a1) = (&ab[2 * c], &ab[2 * c + 1]);
            let lo = |r| vreinterpretq_s8_u8(vandq_u8(r, m4));
            let hi = |r| vreinterpretq_s8_u8(vshrq_n_u8::<4>(r));
            let s0 = dot16(lo(r0), ld_s8(&a0.qs[..16])) + dot16(lo(r1), ld_s8(&a0.qs[16..]));
            let s1 = dot16(hi(r0), ld_s8(&a1.qs[..16])) + dot16(hi(r1), ld_s8(&a1.qs[16..]));
            acc += d * sc[2 * c] as f32 * a0.d * s0 as f32;
            acc += d * sc[2 * c + 1] as f32 * a1.d * s1 as f32;
            acc -= dmin * mn[2 * c] as f32 * a0.d * a0.sum as f32;
            acc -= dmin * mn[2 * c + 1] as f32 * a1.d * a1.sum as f32;
        }
    }
    acc
}

#[target_feature(enable = "neon")]
fn dot_q6_k(w: &[BlockQ6K], a: &[ActBlock]) -> f32 {
    let mut acc = 0f32;
    let m4 = vdupq_n_u8(0x0f);
    let m2 = vdupq_n_u8(0x03);
    let k32 = vdupq_n_s8(32);
    for (wb, ab) in w.iter().zip(a.chunks_exact(8)) {
        let d = f16_val(wb.d);
        // ggml's layout (see `BlockQ6K`): values 128h + 32q + l, act block 4h + q
        for h in 0..2 {
            for q in 0..4 {
                let ak = &ab[4 * h + q];
                let mut s = 0i32;
                for half in 0..2 {
                    let ql = ld_u8(&wb.ql[64 * h + 32 * (q % 2) + 16 * half..]);
                    let qh = ld_u8(&wb.qh[32 * h + 16 * half..]);
                    let lo = if q < 2 {
                        vandq_u8(ql, m4)
                    } else {
                        vshrq_n_u8::<4>(ql)
                    };
                    let hi = vandq_u8(vshlq_u8(qh, vdupq_n_s8(-2 * q as i8)), m2);
                    let v = vorrq_u8(lo, vshlq_n_u8::<4>(hi));
                    let v = vsubq_s8(vreinterpretq_s8_u8(v), k32);
                    let sc = wb.scales[8 * h + 2 * q + half] as i32;
                    s += sc * dot16(v, ld_s8(&ak.qs[16 * half..]));
                }
                acc += d * ak.d * s as f32;
            }
        }
    }
    acc
}
