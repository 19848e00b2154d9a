//! x86-64 kernels, handed out only after run-time feature detection.

mod attn_avx2;
mod avx2;
mod float;
mod gemm;
mod quant_act;

use crate::dispatch::Kernels;

/// The AVX2 table if this CPU has AVX2, FMA and F16C.
pub(crate) fn table() -> Option<&'static Kernels> {
    if is_x86_feature_detected!("avx2")
        && is_x86_feature_detected!("fma")
        && is_x86_feature_detected!("f16c")
    {
        Some(&avx2::AVX2)
    } else {
        None
    }
}
