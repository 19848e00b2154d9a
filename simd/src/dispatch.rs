//! The kernel table: one set of row kernels per instruction set, chosen once at run time and
//! cached. `DLM_FORCE_SCALAR=1` forces the scalar table (for debugging and comparisons).
//!
//! A table has two kinds of kernels: row kernels (one weight row against a few tokens' int8
//! activations, for small token counts) and dequantize kernels (stored rows to f32, for the
//! tiles the f32 GEMM runs on when many tokens share the weights).

use crate::act::ActBlock;
use crate::attn::{AttentionKernels, SCALAR_ATTENTION};
use crate::scalar;
use dlm_formats::QuantType;
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks};
use std::sync::OnceLock;

/// `out[t] = Σ_i w[i] · a_t[i]` for one stored weight row `w` (whole blocks) and the tokens'
/// activations `a` (`[out.len(), n_blocks]`, one `ActBlock` per 32 columns).
pub type RowKernel = fn(w: &[u8], a: &[ActBlock], out: &mut [f32]);

/// `out = dequantize(w)` for whole stored blocks `w` of one type; `out.len()` is the values in
/// `w`. Results are bit-identical to `dlm_formats::quant::dequantize`.
pub type DequantKernel = fn(w: &[u8], out: &mut [f32]);

/// One dequantize kernel per stored type (float types included).
#[derive(Debug, Clone, Copy)]
pub struct Dequantizers {
    /// `f16` rows.
    pub f16: DequantKernel,
    /// `bf16` rows.
    pub bf16: DequantKernel,
    /// `q8_0` rows.
    pub q8_0: DequantKernel,
    /// `q4_0` rows.
    pub q4_0: DequantKernel,
    /// `q4_k` rows.
    pub q4_k: DequantKernel,
    /// `q6_k` rows.
    pub q6_k: DequantKernel,
}

impl Dequantizers {
    /// The kernel for `q`, or `None` for `f32` (used as stored).
    pub fn get(&self, q: QuantType) -> Option<DequantKernel> {
        match q {
            QuantType::F32 => None,
            QuantType::F16 => Some(self.f16),
            QuantType::BF16 => Some(self.bf16),
            QuantType::Q8_0 => Some(self.q8_0),
            QuantType::Q4_0 => Some(self.q4_0),
            QuantType::Q4K => Some(self.q4_k),
            QuantType::Q6K => Some(self.q6_k),
        }
    }
}

macro_rules! scalar_dequant {
    ($name:ident, $q:expr) => {
        fn $name(w: &[u8], out: &mut [f32]) {
            dlm_formats::quant::dequantize($q, w, out).expect(concat!(
                stringify!($name),
                ": partial block or length mismatch"
            ));
        }
    };
}
scalar_dequant!(dequantize_f16, QuantType::F16);
scalar_dequant!(dequantize_bf16, QuantType::BF16);
scalar_dequant!(dequantize_q8_0, QuantType::Q8_0);
scalar_dequant!(dequantize_q4_0, QuantType::Q4_0);
scalar_dequant!(dequantize_q4_k, QuantType::Q4K);
scalar_dequant!(dequantize_q6_k, QuantType::Q6K);

/// The scalar dequantizers of `dlm_formats`, always available.
pub const SCALAR_DEQUANT: Dequantizers = Dequantizers {
    f16: dequantize_f16,
    bf16: dequantize_bf16,
    q8_0: dequantize_q8_0,
    q4_0: dequantize_q4_0,
    q4_k: dequantize_q4_k,
    q6_k: dequantize_q6_k,
};

/// One instruction set's kernels.
#[derive(Debug)]
pub struct Kernels {
    /// `scalar`, `avx2` or `neon`.
    pub name: &'static str,
    /// Row kernel for `q8_0` weights.
    pub q8_0: RowKernel,
    /// Row kernel for `q4_0` weights.
    pub q4_0: RowKernel,
    /// Row kernel for `q4_k` weights.
    pub q4_k: RowKernel,
    /// Row kernel for `q6_k` weights.
    pub q6_k: RowKernel,
    /// Row dequantizers for the GEMM tiles.
    pub dequant: Dequantizers,
    /// Attention tile kernels.
    pub attention: AttentionKernels,
}

macro_rules! scalar_row {
    ($name:ident, $block:ty, $a_per_w:expr, $dot:path) => {
        fn $name(w: &[u8], a: &[ActBlock], out: &mut [f32]) {
            let wb = as_blocks::<$block>(w).expect(concat!(stringify!($name), ": partial block"));
            let nb = wb.len() * $a_per_w;
            assert_eq!(
                a.len(),
                nb * out.len(),
                concat!(stringify!($name), ": activations")
            );
            for (t, o) in out.iter_mut().enumerate() {
                *o = $dot(wb, &a[t * nb..(t + 1) * nb]);
            }
        }
    };
}
scalar_row!(row_q8_0, BlockQ8_0, 1, scalar::dot_q8_0_q8_0);
scalar_row!(row_q4_0, BlockQ4_0, 1, scalar::dot_q4_0_q8_0);
scalar_row!(row_q4_k, BlockQ4K, 8, scalar::dot_q4_k_q8_0);
scalar_row!(row_q6_k, BlockQ6K, 8, scalar::dot_q6_k_q8_0);

/// The scalar reference kernels, always available.
pub static SCALAR: Kernels = Kernels {
    name: "scalar",
    q8_0: row_q8_0,
    q4_0: row_q4_0,
    q4_k: row_q4_k,
    q6_k: row_q6_k,
    dequant: SCALAR_DEQUANT,
    attention: SCALAR_ATTENTION,
};

impl Kernels {
    /// The scalar table.
    pub fn scalar() -> &'static Kernels {
        &SCALAR
    }

    /// The AVX2+FMA+F16C table if this CPU has those features.
    pub fn avx2() -> Option<&'static Kernels> {
        #[cfg(target_arch = "x86_64")]
        {
            crate::x86::table()
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            None
        }
    }

    /// The NEON table on aarch64.
    pub fn neon() -> Option<&'static Kernels> {
        #[cfg(target_arch = "aarch64")]
        {
            crate::arm::table()
        }
        #[cfg(not(target_arch = "aarch64"))]
        {
            None
        }
    }

    /// The kernels `matmul` uses: the fastest this CPU supports, chosen on first use; the scalar
    /// table when `DLM_FORCE_SCALAR=1`.
    pub fn best() -> &'static Kernels {
        static BEST: OnceLock<&'static Kernels> = OnceLock::new();
        BEST.get_or_init(|| {
            if std::env::var("DLM_FORCE_SCALAR").is_ok_and(|v| v == "1") {
                return &SCALAR;
            }
            Kernels::avx2().or_else(Kernels::neon).unwrap_or(&SCALAR)
        })
    }
}
