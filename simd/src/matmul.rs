//! Blocked, threaded matmul `y = x · Wᵀ` for every weight type. Weights are streamed once per
//! call: rayon splits the output rows into tiles, and each tile runs all tokens before moving on.
//!
//! Two paths for quantized weights, with the same numbers up to float summation order:
//! - few tokens (memory-bound): int8 row kernels against the activations quantized to int8;
//! - many tokens (compute-bound, `n >= gemm_min_tokens(type)`): each rayon task dequantizes a
//!   tile of weight rows to f32 in a thread-local buffer and runs the f32 GEMM on it, against
//!   the activations as the int8 path sees them (quantized, then dequantized). f16/bf16 weights
//!   always take this path (with the activations as given).

use crate::WeightRef;
use crate::act::{ActBlock, quantize_act};
use crate::dispatch::{DequantKernel, Kernels, RowKernel};
use dlm_formats::QuantType;
use dlm_formats::quant::QK8_0;
use rayon::prelude::*;
use std::cell::RefCell;

/// Output rows per rayon task.
const ROW_TILE: usize = 16;
/// Bytes of quantized activations a token tile may hold (kept in L2 while a row tile runs).
const ACT_TILE_BYTES: usize = 256 * 1024;
/// Rows per f32 tile dequantized before the f32 GEMM.
const GEMM_ROW_TILE: usize = 128;
/// From how many tokens on weights of type `q` go through dequantized tiles and the f32 GEMM:
/// the crossover measured at 4096×4096 on 2 cores of a Zen 4 (AVX2 row kernels, gemm with
/// AVX-512): about 80 tokens for `q8_0`/`q4_0`, 64 for `q6_k`, 96 for `q4_k`. A Xeon crosses
/// somewhat earlier; below the crossover the row kernels are at most ~25% slower there.
pub fn gemm_min_tokens(q: QuantType) -> usize {
    match q {
        QuantType::F32 | QuantType::F16 | QuantType::BF16 => 1,
        QuantType::Q8_0 | QuantType::Q4_0 => 80,
        QuantType::Q6K => 64,
        QuantType::Q4K => 96,
    }
}

thread_local! {
    /// The f32 weight tile of this thread. `[GEMM_ROW_TILE, cols]`
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y = x · Wᵀ with `kernels`; x is `[n, w.cols]`, y is `[n, w.rows]`, both row-major f32.
pub fn matmul_with(k: &Kernels, w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols, "matmul: x length");
    assert_eq!(y.len(), n * w.rows, "matmul: y length");
    assert_eq!(
        w.data.len(),
        w.rows * w.row_bytes(),
        "matmul: weight data length"
    );
    if n == 0 || w.rows == 0 {
        return;
    }
    if w.cols == 0 {
        y.fill(0.0);
        return;
    }
    match w.quant {
        QuantType::F32 => gemm_f32(&f32_weights(w.data), w.rows, w.cols, x, n, y, 0),
        QuantType::F16 => matmul_tiles(k.dequant.f16, w, x, n, y),
        QuantType::BF16 => matmul_tiles(k.dequant.bf16, w, x, n, y),
        QuantType::Q8_0 | QuantType::Q4_0 | QuantType::Q4K | QuantType::Q6K
            if n >= gemm_min_tokens(w.quant) =>
        {
            let xq = act_as_seen(x, w.cols); // [n, cols]
            let deq = k
                .dequant
                .get(w.quant)
                .expect("quantized types have a dequantizer");
            matmul_tiles(deq, w, &xq, n, y)
        }
        QuantType::Q8_0 => matmul_quant(k.q8_0, w, x, n, y),
        QuantType::Q4_0 => matmul_quant(k.q4_0, w, x, n, y),
        QuantType::Q4K => matmul_quant(k.q4_k, w, x, n, y),
        QuantType::Q6K => matmul_quant(k.q6_k, w, x, n, y),
    }
}

/// The activations `x` (`[n, cols]`) as the int8 kernels see them: quantized to `ActBlock`s and
/// back, so both quantized paths compute the same sums.
fn act_as_seen(x: &[f32], cols: usize) -> Vec<f32> {
    let mut xq = vec![0f32; x.len()]; // [n, cols]
    xq.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, xt)| {
            let mut blocks = [ActBlock::ZERO; 8];
            for (oc, xc) in o.chunks_mut(8 * QK8_0).zip(xt.chunks(8 * QK8_0)) {
                let b = &mut blocks[..xc.len() / QK8_0];
                quantize_act(xc, b);
                for (ob, ab) in oc.chunks_exact_mut(QK8_0).zip(b.iter()) {
                    for (v, &q) in ob.iter_mut().zip(&ab.qs) {
                        *v = ab.d * q as f32;
                    }
                }
            }
        });
    xq
}

fn matmul_quant(kernel: RowKernel, w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    let nb = w.cols / QK8_0;
    let mut acts = vec![ActBlock::ZERO; n * nb]; // [n, nb]
    acts.par_chunks_mut(nb)
        .zip(x.par_chunks(w.cols))
        .for_each(|(a, xt)| quantize_act(xt, a));
    let tok_tile = (ACT_TILE_BYTES / (nb * size_of::<ActBlock>())).clamp(4, 256) / 4 * 4;
    let rb = w.row_bytes();
    let mut yt = vec![0f32; w.rows * n]; // [rows, n]
    yt.par_chunks_mut(ROW_TILE * n)
        .enumerate()
        .for_each(|(ti, yt_tile)| {
            let r0 = ti * ROW_TILE;
            for t0 in (0..n).step_by(tok_tile) {
                let t1 = (t0 + tok_tile).min(n);
                let a = &acts[t0 * nb..t1 * nb];
                for (dr, out) in yt_tile.chunks_mut(n).enumerate() {
                    let r = r0 + dr;
                    kernel(&w.data[r * rb..(r + 1) * rb], a, &mut out[t0..t1]);
                }
            }
        });
    transpose_into(&yt, w.rows, n, y);
}

/// y[t, r] = yt[r, t]
fn transpose_into(yt: &[f32], rows: usize, n: usize, y: &mut [f32]) {
    y.par_chunks_mut(rows).enumerate().for_each(|(t, yr)| {
        for (r, o) in yr.iter_mut().enumerate() {
            *o = yt[r * n + t];
        }
    });
}

/// y = x · Wᵀ through f32 tiles: each rayon task dequantizes `GEMM_ROW_TILE` rows of `w` with
/// `deq` into its thread's tile and runs the single-threaded f32 GEMM on it.
fn matmul_tiles(deq: DequantKernel, w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    let rows = w.rows;
    let cols = w.cols;
    let rb = w.row_bytes();
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..rows.div_ceil(GEMM_ROW_TILE))
        .into_par_iter()
        .for_each(|ti| {
            let r0 = ti * GEMM_ROW_TILE;
            let r1 = (r0 + GEMM_ROW_TILE).min(rows);
            TILE.with_borrow_mut(|buf| {
                buf.resize(GEMM_ROW_TILE * cols, 0.0);
                let wt = &mut buf[..(r1 - r0) * cols]; // [r1 - r0, cols]
                for (r, o) in (r0..r1).zip(wt.chunks_exact_mut(cols)) {
                    deq(&w.data[r * rb..(r + 1) * rb], o);
                }
                let yp = y_ptr;
                // SAFETY: each task writes only columns r0..r1 of y (`[n, rows]`), disjoint from
                // every other task's; y outlives the parallel loop.
                unsafe { gemm_raw(wt, r1 - r0, cols, x, n, yp.0.add(r0), rows, false) };
            });
        });
}

/// The f32 values of little-endian f32 bytes: borrowed when aligned (as in a `.dlm` map),
/// copied otherwise.
fn f32_weights(data: &[u8]) -> std::borrow::Cow<'_, [f32]> {
    // SAFETY: every bit pattern is a valid f32 and `align_to` only yields aligned elements.
    let (head, mid, tail) = unsafe { data.align_to::<f32>() };
    if head.is_empty() && tail.is_empty() && cfg!(target_endian = "little") {
        std::borrow::Cow::Borrowed(mid)
    } else {
        let v = data
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        std::borrow::Cow::Owned(v.collect())
    }
}

#[derive(Clone, Copy)]
struct SendPtr(*mut f32);
// SAFETY: used only to hand disjoint column ranges of one output to rayon tasks.
unsafe impl Send for SendPtr {}
// SAFETY: as above; the pointer is never dereferenced through a shared path.
unsafe impl Sync for SendPtr {}

/// y[:, off..off+rows] = x · Wᵀ for f32 W `[rows, cols]`, threaded by gemm.
fn gemm_f32(w: &[f32], rows: usize, cols: usize, x: &[f32], n: usize, y: &mut [f32], off: usize) {
    let ld = y.len() / n;
    assert!(off + rows <= ld, "gemm_f32: output columns");
    // SAFETY: y is `[n, ld]` and is written only at columns off..off+rows of each row (checked
    // above); w, x have the lengths the strides address (checked by the caller).
    unsafe { gemm_raw(w, rows, cols, x, n, y.as_mut_ptr().add(off), ld, true) }
}

/// Raw f32 GEMM: y (`n` rows of stride `ld`, `rows` columns from `y`) = x `[n, cols]` · wᵀ,
/// w `[rows, cols]`.
///
/// # Safety
/// `y` must be valid for writes at `y + t*ld + r` for t < n, r < rows, and no other thread may
/// touch those elements during the call.
#[allow(clippy::too_many_arguments)]
unsafe fn gemm_raw(
    w: &[f32],
    rows: usize,
    cols: usize,
    x: &[f32],
    n: usize,
    y: *mut f32,
    ld: usize,
    parallel: bool,
) {
    assert_eq!(w.len(), rows * cols, "gemm_raw: w length");
    assert_eq!(x.len(), n * cols, "gemm_raw: x length");
    let par = if parallel {
        gemm::Parallelism::Rayon(rayon::current_num_threads())
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: lhs x is [n, cols] (row stride cols, col stride 1), rhs is wᵀ: element (k, r) at
    // w[r*cols + k] (row stride 1, col stride cols); dst is valid per the caller's contract.
    unsafe {
        gemm::gemm(
            n,
            rows,
            cols,
            y,
            1,
            ld as isize,
            false,
            x.as_ptr(),
            1,
            cols as isize,
            w.as_ptr(),
            cols as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            par,
        )
    }
}
