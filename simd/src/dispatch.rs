//! The kernel table: one set of row kernels per instruction set, chosen once at run time and
//! cached. `DLM_FORCE_SCALAR=1` forces the scalar table (for debugging and comparisons).
//!
//! A table has two kinds of kernels: row kernels (one weight row against a few tokens' int8
//! activations, for small token counts) and dequantize kernels (stored rows to f32, for the
//! tiles the f32 GEMM runs on when many tokens share the weights).

use crate::act::{ActBlock, ActBlock8};
use crate::attn::{AttentionKernels, SCALAR_ATTENTION};
use crate::scalar;
use dlm_formats::QuantType;
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks};
use std::sync::OnceLock;

/// `out[t] = Σ_i w[i] · a_t[i]` for one stored weight row `w` (whole blocks) and the tokens'
/// activations `a` (`[out.len(), n_blocks]`, one `ActBlock` per 32 columns).
pub type RowKernel = fn(w: &[u8], a: &[ActBlock], out: &mut [f32]);

/// `out[r][8g + t] = Σ_i w_r[i] · a_{g,t}[i]` for whole stored weight rows `w` (`[n_rows,
/// n_blocks]` blocks of 32 values) and `n_groups` 8-token activation panels `a` (`[n_groups,
/// n_blocks]`); `out` is `[n_rows, 8 * n_groups]`. The int8 GEMM for many tokens.
pub type GemmKernel = fn(w: &[u8], a: &[ActBlock8], n_groups: usize, out: &mut [f32]);

/// `out[r][t] = Σ_k w[r][k] · x[t][k]` for float weight rows `w` (`[n_rows, cols]`, stored
/// bytes), tokens `x` (`[n, cols]`, `cols > 0`); `out` is `[n_rows, n]`. Streams the rows as
/// stored (no packing), for few tokens.
pub type FloatRowsKernel = fn(w: &[u8], cols: usize, x: &[f32], out: &mut [f32]);

/// `crate::act::quantize_act`'s contract: `x` (`[n_blocks * 32]`) into `out` (`[n_blocks]`),
/// bit for bit as the scalar quantizer.
pub type QuantizeActKernel = fn(x: &[f32], out: &mut [ActBlock]);

/// `crate::act::quantize_act8`'s contract: up to 8 tokens `x` (`[n_tok, n_blocks * 32]`) into
/// one panel `out` (`[n_blocks]`), bit for bit as the scalar quantizer.
pub type QuantizeAct8Kernel = fn(x: &[f32], n_tok: usize, out: &mut [ActBlock8]);

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
    /// Int8 GEMM for `q8_0` weights (`None`: many tokens take the f32 tiles).
    pub gemm_q8_0: Option<GemmKernel>,
    /// Int8 GEMM for `q4_0` weights (`None`: many tokens take the f32 tiles).
    pub gemm_q4_0: Option<GemmKernel>,
    /// Int8 GEMM for `q4_k` weights (`None`: row kernels, then the f32 tiles).
    pub gemm_q4_k: Option<GemmKernel>,
    /// Few-token kernel for `f32` weights (`None`: the f32 GEMM for every token count).
    pub rows_f32: Option<FloatRowsKernel>,
    /// As `rows_f32`, for `f16` rows (`None`: the f32 tiles).
    pub rows_f16: Option<FloatRowsKernel>,
    /// As `rows_f32`, for `bf16` rows (`None`: the f32 tiles).
    pub rows_bf16: Option<FloatRowsKernel>,
    /// Activations to int8 blocks for the row kernels and the tiles.
    pub quantize_act: QuantizeActKernel,
    /// Activations to 8-token panels for the int8 GEMM.
    pub quantize_act8: QuantizeAct8Kernel,
}

impl Kernels {
    /// The int8 GEMM kernel for `q`, if this table has one.
    pub fn gemm(&self, q: QuantType) -> Option<GemmKernel> {
        match q {
            QuantType::Q8_0 => self.gemm_q8_0,
            QuantType::Q4_0 => self.gemm_q4_0,
            QuantType::Q4K => self.gemm_q4_k,
            _ => None,
        }
    }

    /// The few-token kernel for float type `q`.
    pub fn float_rows(&self, q: QuantType) -> Option<FloatRowsKernel> {
        match q {
            QuantType::F32 => self.rows_f32,
            QuantType::F16 => self.rows_f16,
            QuantType::BF16 => self.rows_bf16,
            _ => None,
        }
    }
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

macro_rules! scalar_gemm {
    ($name:ident, $block:ty, $gemm:path) => {
        fn $name(w: &[u8], a: &[ActBlock8], n_groups: usize, out: &mut [f32]) {
            let (wb, rows, nb) =
                crate::act::gemm_shape::<$block>(stringify!($name), w, a, n_groups, out.len());
            let np = 8 * n_groups;
            let mut o = vec![0f32; rows * 8];
            for g in 0..n_groups {
                let ag = &a[g * nb..(g + 1) * nb];
                $gemm(wb, ag, &mut o);
                for r in 0..rows {
                    out[r * np + 8 * g..][..8].copy_from_slice(&o[r * 8..(r + 1) * 8]);
                }
            }
        }
    };
}
scalar_gemm!(gemm_q8_0, BlockQ8_0, scalar::gemm_q8_0_q8_0);
scalar_gemm!(gemm_q4_0, BlockQ4_0, scalar::gemm_q4_0_q8_0);
scalar_gemm!(gemm_q4_k, BlockQ4K, scalar::gemm_q4_k_q8_0);

/// Little-endian f32 bytes: value i.
fn le_f32(w: &[u8], i: usize) -> f32 {
    f32::from_le_bytes([w[4 * i], w[4 * i + 1], w[4 * i + 2], w[4 * i + 3]])
}

/// The scalar few-token kernels: `$val(w, i)` is value i of the stored row bytes.
macro_rules! scalar_float_rows {
    ($name:ident, $size:expr, $val:expr) => {
        fn $name(w: &[u8], cols: usize, x: &[f32], out: &mut [f32]) {
            assert!(cols > 0, concat!(stringify!($name), ": no columns"));
            let rows = w.len() / ($size * cols);
            assert_eq!(
                w.len(),
                rows * $size * cols,
                concat!(stringify!($name), ": partial row")
            );
            scalar::float_rows(rows, |i| $val(w, i), x, cols, out)
        }
    };
}
scalar_float_rows!(rows_f32, 4, le_f32);
scalar_float_rows!(rows_f16, 2, |w: &[u8], i: usize| {
    half::f16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32()
});
scalar_float_rows!(rows_bf16, 2, |w: &[u8], i: usize| {
    half::bf16::from_le_bytes([w[2 * i], w[2 * i + 1]]).to_f32()
});

/// The scalar reference kernels, always available.
pub static SCALAR: Kernels = Kernels {
    name: "scalar",
    q8_0: row_q8_0,
    q4_0: row_q4_0,
    q4_k: row_q4_k,
    q6_k: row_q6_k,
    dequant: SCALAR_DEQUANT,
    attention: SCALAR_ATTENTION,
    gemm_q8_0: Some(gemm_q8_0),
    gemm_q4_0: Some(gemm_q4_0),
    gemm_q4_k: Some(gemm_q4_k),
    rows_f32: Some(rows_f32),
    rows_f16: Some(rows_f16),
    rows_bf16: Some(rows_bf16),
    quantize_act: crate::act::quantize_act,
    quantize_act8: crate::act::quantize_act8,
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
