//! Activations quantized to int8 on the fly: 32-value blocks with an f32 scale and the sum of
//! the quants (for the mins of `q4_k`), the right-hand side of every integer dot product.

use dlm_formats::quant::QK8_0;

/// 32 activations as int8 in [-127, 127] with an f32 scale: value i is `d * qs[i]`.
/// `sum` is `Σ qs[i]`. A block holding NaN or ±inf gets `d = NaN`, so every dot with it is NaN.
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C)]
pub struct ActBlock {
    /// Scale.
    pub d: f32,
    /// Sum of the quants.
    pub sum: i32,
    /// The quants, in [-127, 127]. `[32]`
    pub qs: [i8; QK8_0],
}

impl ActBlock {
    /// A block of zeros.
    pub const ZERO: ActBlock = ActBlock {
        d: 0.0,
        sum: 0,
        qs: [0; QK8_0],
    };
}

/// Quantize `x` (`[n_blocks * 32]`) into `out` (`[n_blocks]`): scale = max|x| / 127, round to
/// nearest.
pub fn quantize_act(x: &[f32], out: &mut [ActBlock]) {
    assert_eq!(x.len(), out.len() * QK8_0, "quantize_act: length mismatch");
    for (xb, b) in x.chunks_exact(QK8_0).zip(out.iter_mut()) {
        let mut amax = 0f32;
        let mut finite = true;
        for &v in xb {
            finite &= v.is_finite();
            amax = amax.max(v.abs());
        }
        let d = amax / 127.0;
        let id = if d > 0.0 { 1.0 / d } else { 0.0 };
        let mut sum = 0i32;
        for (q, &v) in b.qs.iter_mut().zip(xb) {
            *q = (v * id).round().clamp(-127.0, 127.0) as i8;
            sum += *q as i32;
        }
        b.d = if finite { d } else { f32::NAN };
        b.sum = sum;
    }
}

/// Tokens per `ActBlock8`: the width of the int8 GEMM kernels' token panel.
pub const GEMM_TOKENS: usize = 8;

/// Eight tokens' activation blocks for one 32-column block, interleaved for the int8 GEMM
/// kernels: quad `g` (columns `4g..4g + 4`) of all eight tokens is one 32-byte row of `qs`, so
/// a kernel multiplies one broadcast quad of weights against eight tokens in one instruction.
/// Tokens missing from a partial panel are zeros (scale 0).
#[derive(Debug, Clone, Copy, PartialEq)]
#[repr(C, align(32))]
pub struct ActBlock8 {
    /// `qs[32g + 4t + j]` is token t's quant of column `4g + j`. `[8 quads, 8 tokens, 4]`
    pub qs: [i8; 256],
    /// The eight tokens' scales. `[8 tokens]`
    pub d: [f32; GEMM_TOKENS],
    /// The eight tokens' sums of quants. `[8 tokens]`
    pub sum: [i32; GEMM_TOKENS],
}

impl ActBlock8 {
    /// A panel block of zeros.
    pub const ZERO: ActBlock8 = ActBlock8 {
        qs: [0; 256],
        d: [0.0; GEMM_TOKENS],
        sum: [0; GEMM_TOKENS],
    };

    /// Token `t`'s block, as `quantize_act` wrote it.
    pub fn token(&self, t: usize) -> ActBlock {
        let mut qs = [0i8; QK8_0];
        for (g, q) in qs.chunks_exact_mut(4).enumerate() {
            q.copy_from_slice(&self.qs[32 * g + 4 * t..32 * g + 4 * t + 4]);
        }
        ActBlock {
            d: self.d[t],
            sum: self.sum[t],
            qs,
        }
    }
}

/// Quantize up to eight tokens `x` (`[n_tok, n_blocks * 32]`, `n_tok <= 8`) into one panel
/// `out` (`[n_blocks]`), exactly as `quantize_act` quantizes each token.
pub fn quantize_act8(x: &[f32], n_tok: usize, out: &mut [ActBlock8]) {
    assert!(n_tok <= GEMM_TOKENS, "quantize_act8: more than 8 tokens");
    assert_eq!(
        x.len(),
        n_tok * out.len() * QK8_0,
        "quantize_act8: length mismatch"
    );
    let cols = out.len() * QK8_0;
    out.fill(ActBlock8::ZERO);
    let mut tmp = [ActBlock::ZERO; 1];
    for t in 0..n_tok {
        let xt = &x[t * cols..(t + 1) * cols];
        for (b, xb) in out.iter_mut().zip(xt.chunks_exact(QK8_0)) {
            quantize_act(xb, &mut tmp);
            b.d[t] = tmp[0].d;
            b.sum[t] = tmp[0].sum;
            for (g, q) in tmp[0].qs.chunks_exact(4).enumerate() {
                b.qs[32 * g + 4 * t..32 * g + 4 * t + 4].copy_from_slice(q);
            }
        }
    }
}

/// The shape of an int8 GEMM call (`kernel`: its name for messages), checked: whole stored rows
/// `w` of blocks `B` against `n_groups` 8-token panels `a` (`[n_groups, n_blocks]`) into `out`
/// of `out_len = rows * 8 * n_groups`. Returns the weight blocks, the rows and the blocks per
/// row; every kernel of every architecture checks its arguments here.
pub(crate) fn gemm_shape<'w, B: dlm_formats::quant::Block>(
    kernel: &str,
    w: &'w [u8],
    a: &[ActBlock8],
    n_groups: usize,
    out_len: usize,
) -> (&'w [B], usize, usize) {
    let wb =
        dlm_formats::quant::as_blocks::<B>(w).unwrap_or_else(|| panic!("{kernel}: partial block"));
    let np = 8 * n_groups;
    let rows = out_len.checked_div(np).unwrap_or(0);
    let nb = a.len().checked_div(n_groups).unwrap_or(0);
    // activation blocks per weight block: 1, or 8 for the 256-value super-blocks
    let per_w = B::LEN / QK8_0;
    assert_eq!(out_len, rows * np, "{kernel}: output length");
    assert_eq!(a.len(), n_groups * nb, "{kernel}: panels");
    assert_eq!(wb.len() * per_w, rows * nb, "{kernel}: weight blocks");
    (wb, rows, nb)
}
