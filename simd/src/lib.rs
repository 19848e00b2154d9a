//! Matmul and attention kernels. Every fast kernel has a scalar reference it is tested
//! against; the fastest kernel this CPU supports is chosen once at run time.
//!
//! Quantized weights multiply activations quantized on the fly to int8 blocks (`ActBlock`): with
//! int8 row kernels for a few tokens, and from `INT8_GEMM_MIN_TOKENS` on (`q8_0`, `q4_0`,
//! `q4_k`) with an int8 GEMM over 8-token activation panels (`ActBlock8`); `q6_k` (and tables
//! without the int8 GEMM, and `q8_0` from 80 tokens) dequantize a tile of rows at a time to f32 for the `gemm` crate from
//! `gemm_min_tokens` on. Float weights below `FLOAT_ROWS_MAX_TOKENS` tokens stream their stored
//! rows through few-token kernels (no packing); above, f32 goes to `gemm` directly and f16/bf16
//! through f32 tiles. `matmul_path` says which path a call takes.
//!
//! Attention tile kernels ([`attn`]): a block of 16 queries against a tile of key and value rows
//! read in place, with the softmax carried online from tile to tile.

mod act;
pub mod attn;
mod dispatch;
mod matmul;
pub mod scalar;
mod scatter;

#[cfg(target_arch = "aarch64")]
mod arm;
#[cfg(target_arch = "x86_64")]
mod x86;

pub use act::{ActBlock, ActBlock8, GEMM_TOKENS, quantize_act, quantize_act8};
pub use attn::{ATTN_LANES, AttentionKernels};
pub use dispatch::{
    DequantKernel, Dequantizers, FloatRowsKernel, GemmKernel, Kernels, QuantizeAct8Kernel,
    QuantizeActKernel, RowKernel,
};
pub use matmul::{
    FLOAT_ROWS_MAX_TOKENS, INT8_GEMM_MIN_TOKENS, MatmulPath, gemm_min_tokens, matmul_path,
    matmul_via, matmul_with,
};

use dlm_formats::QuantType;

/// A weight matrix viewed in its stored form: `rows` output features, each a row of `cols`
/// input features, row-major, in `quant`'s block layout.
#[derive(Debug, Clone, Copy)]
pub struct WeightRef<'a> {
    /// Storage type.
    pub quant: QuantType,
    /// Output features.
    pub rows: usize,
    /// Input features (the row length).
    pub cols: usize,
    /// The stored bytes: `rows * quant.row_bytes(cols)`.
    pub data: &'a [u8],
}

impl<'a> WeightRef<'a> {
    /// Bytes of one stored row.
    pub fn row_bytes(&self) -> usize {
        self.quant
            .row_bytes(self.cols as u64)
            .expect("WeightRef: bad row length") as usize
    }

    /// The stored bytes of row `r`.
    pub fn row(&self, r: usize) -> &'a [u8] {
        let rb = self.row_bytes();
        &self.data[r * rb..(r + 1) * rb]
    }
}

/// Dequantize row `r` of `w` into `out` (`out.len() == w.cols`).
pub fn dequantize_row(w: &WeightRef<'_>, r: usize, out: &mut [f32]) {
    assert_eq!(out.len(), w.cols, "dequantize_row: out length");
    dlm_formats::quant::dequantize(w.quant, w.row(r), out)
        .expect("dequantize_row: row length is whole blocks (checked by row_bytes)");
}

/// y = x · Wᵀ; x is `[n, w.cols]`, y is `[n, w.rows]`, both row-major f32. Uses
/// `Kernels::best()`.
pub fn matmul(w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_with(Kernels::best(), w, x, n, y)
}
