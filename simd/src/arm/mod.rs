//! aarch64 kernels. NEON is part of the aarch64 baseline, so the table needs no detection.

mod attn_neon;
mod neon;

use crate::dispatch::Kernels;

/// The NEON table.
pub(crate) fn table() -> Option<&'static Kernels> {
    if std::arch::is_aarch64_feature_detected!("neon") {
        Some(&neon::NEON)
    } else {
        None
    }
}
