//! aarch64 kernels. NEON is part of the aarch64 baseline, so the table needs no detection.

mod attn_neon;
mod gemm;
mod neon;

use crate::dispatch::Kernels;

/// The NEON table: with the `sdot` int8 GEMM where the CPU has `dotprod`.
pub(crate) fn table() -> Option<&'static Kernels> {
    if !std::arch::is_aarch64_feature_detected!("neon") {
        None
    } else if std::arch::is_aarch64_feature_detected!("dotprod") {
        Some(&neon::NEON_DOTPROD)
    } else {
        Some(&neon::NEON)
    }
}
