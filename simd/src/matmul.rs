//! Blocked, threaded matmul `y = x · Wᵀ` for every weight type. Weights are streamed from
//! where they are stored (the model's map): rayon splits the output rows into tiles, and each
//! tile runs all tokens before moving on.
//!
//! The paths, chosen by `matmul_path` from the weight type, the token count and the table:
//! - `Rows` (quantized, few tokens, memory-bound): int8 row kernels against the activations
//!   quantized to int8 (`ActBlock`);
//! - `Int8Gemm` (`q4_0`, `q8_0` and `q4_k` from 6 tokens): the activations
//!   quantized once per call into 8-token panels (`ActBlock8`), the weights read in their
//!   blocks, register-blocked over 4 rows × 8 tokens; same sums as `Rows` up to float
//!   summation order;
//! - `Tiles` (`q6_k`, or tables without an int8 GEMM, many tokens;
//!   f16/bf16 many tokens): each rayon task dequantizes a tile of weight rows to f32 in a
//!   thread-local buffer and runs the f32 GEMM on it, against the activations as the int8 path
//!   sees them (quantized, then dequantized) for quantized weights, as given for float ones;
//! - `FloatRows` (float weights, few tokens): the stored rows streamed by row-dot kernels over
//!   several tokens at once, no packing;
//! - `Gemm` (`f32`, many tokens): the `gemm` crate on the stored weights.

use crate::WeightRef;
use crate::act::{ActBlock, ActBlock8, GEMM_TOKENS};
use crate::dispatch::{DequantKernel, FloatRowsKernel, GemmKernel, Kernels, RowKernel};
use crate::scatter::scatter_tile;
use dlm_formats::QuantType;
use dlm_formats::quant::QK8_0;
use rayon::prelude::*;
use std::cell::RefCell;

/// Output rows per rayon task (row kernels).
const ROW_TILE: usize = 16;
/// Output rows per rayon task of the int8 GEMM (a multiple of its 4-row pass).
const INT8_ROW_TILE: usize = 32;
/// Output rows per rayon task of the float few-token kernels (a multiple of their 3-row pass).
const FLOAT_ROW_TILE: usize = 24;
/// Bytes of quantized activations a token tile may hold (kept in L2 while a row tile runs).
const ACT_TILE_BYTES: usize = 256 * 1024;
/// Bytes of f32 tokens a token tile of the float few-token kernels may hold.
const FLOAT_TOKEN_TILE_BYTES: usize = 128 * 1024;
/// Rows per f32 tile dequantized before the f32 GEMM.
const GEMM_ROW_TILE: usize = 128;

/// From how many tokens on weights of type `q` go through dequantized f32 tiles and the f32
/// GEMM when the table has no int8 GEMM for `q` (and always for `q6_k`): the crossover
/// measured at 4096×4096 on 2 cores (AVX2 row kernels against gemm): about 80 tokens for
/// `q8_0`/`q4_0`, 64 for `q6_k`, 96 for `q4_k`. f16/bf16 take the tiles from
/// `FLOAT_ROWS_MAX_TOKENS` on when the table has few-token float kernels, else always.
pub fn gemm_min_tokens(q: QuantType) -> usize {
    match q {
        QuantType::F32 | QuantType::F16 | QuantType::BF16 => 1,
        QuantType::Q8_0 | QuantType::Q4_0 => 80,
        QuantType::Q6K => 64,
        QuantType::Q4K => 96,
    }
}

/// From how many tokens `q8_0`/`q4_0` weights take the int8 GEMM (tables that have it).
/// Measured on 2 Zen 2 cores (GOP per CPU-second, one thread, `examples/gemm_cpu`): at 4
/// tokens (half a panel) the row kernels are 1.03–1.57× faster, at 8 the GEMM is 1.2–1.65×
/// faster at 1024- and 4096-wide shapes; 6 splits the difference (not measured itself).
pub const INT8_GEMM_MIN_TOKENS: usize = 6;

/// Below how many tokens float weights take the few-token row kernels (tables that have them).
/// Measured as above: the row kernels beat the f32 GEMM (which packs the weights every call)
/// 3–7× at 2–8 tokens, tie with it at 32 (1024 wide: 0.92×, 4096: 1.2×), lose at 64 (0.6–0.8×);
/// at one token the GEMM's own path is faster at 1024×1024 (row kernels 0.63–0.84× in two
/// runs), slower at 4096² (row kernels 1.2–1.25×).
pub const FLOAT_ROWS_MAX_TOKENS: usize = 40;

/// How `matmul_with` multiplies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MatmulPath {
    /// Int8 row kernels, a few tokens per weight row.
    Rows,
    /// The int8 GEMM over 8-token activation panels.
    Int8Gemm,
    /// Rows dequantized to f32 tiles, then the f32 GEMM.
    Tiles,
    /// Float rows streamed by the few-token kernels.
    FloatRows,
    /// The f32 GEMM on the stored f32 weights.
    Gemm,
}

impl MatmulPath {
    /// A short name for benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            MatmulPath::Rows => "rows",
            MatmulPath::Int8Gemm => "int8_gemm",
            MatmulPath::Tiles => "gemm_tiles",
            MatmulPath::FloatRows => "float_rows",
            MatmulPath::Gemm => "gemm",
        }
    }
}

/// The path `matmul_with(k, ..)` takes for weights of type `q` and `n` tokens.
///
/// `q8_0` takes the int8 GEMM at every size from 6 tokens. Its signed products need one
/// `vpmaddwd` per quad (the sign trick), so where integer multiplies have one pipe (Zen 2) it
/// only ties the f32 tiles at full-step sizes (1.01–1.05× per core at 256 tokens, 0.97× on two
/// threads); on Zen 3 it beats them at every layer shape of the 168M model, 256–288 tokens,
/// two threads: 1.04–1.39× (docs/kernels-bench.md, sixth session).
pub fn matmul_path(k: &Kernels, q: QuantType, n: usize) -> MatmulPath {
    if !q.is_quantized() {
        return match k.float_rows(q) {
            Some(_) if n < FLOAT_ROWS_MAX_TOKENS => MatmulPath::FloatRows,
            _ if q == QuantType::F32 => MatmulPath::Gemm,
            _ => MatmulPath::Tiles,
        };
    }
    match k.gemm(q) {
        Some(_) if n >= INT8_GEMM_MIN_TOKENS => MatmulPath::Int8Gemm,
        Some(_) => MatmulPath::Rows,
        None if n >= gemm_min_tokens(q) => MatmulPath::Tiles,
        None => MatmulPath::Rows,
    }
}

thread_local! {
    /// The f32 weight tile of this thread. `[GEMM_ROW_TILE, cols]`
    static TILE: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// y = x · Wᵀ with `kernels`; x is `[n, w.cols]`, y is `[n, w.rows]`, both row-major f32.
pub fn matmul_with(k: &Kernels, w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    matmul_via(k, matmul_path(k, w.quant, n), w, x, n, y)
}

/// y = x · Wᵀ as `matmul_with`, on a given path (for benchmarks and tests). Panics where the
/// path does not apply: `Rows` or `Int8Gemm` on float weights, `Int8Gemm` or `FloatRows`
/// without the kernel in `k`, `Gemm` on other than f32.
pub fn matmul_via(
    k: &Kernels,
    path: MatmulPath,
    w: &WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
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
    let q = w.quant;
    match path {
        MatmulPath::FloatRows => {
            let kernel = k.float_rows(q).expect("matmul_via: no float row kernel");
            matmul_float_rows(kernel, w, x, n, y)
        }
        MatmulPath::Gemm => {
            assert_eq!(q, QuantType::F32, "matmul_via: Gemm takes f32 weights");
            gemm_f32(&f32_weights(w.data), w.rows, w.cols, x, n, y, 0)
        }
        MatmulPath::Tiles => {
            let deq = k.dequant.get(q);
            match deq {
                Some(deq) if q.is_quantized() => {
                    let xq = act_as_seen(k, x, w.cols); // [n, cols]
                    matmul_tiles(deq, w, &xq, n, y)
                }
                Some(deq) => matmul_tiles(deq, w, x, n, y),
                None => gemm_f32(&f32_weights(w.data), w.rows, w.cols, x, n, y, 0),
            }
        }
        MatmulPath::Int8Gemm => {
            let kernel = k.gemm(q).expect("matmul_via: no int8 GEMM kernel");
            matmul_int8(k, kernel, w, x, n, y)
        }
        MatmulPath::Rows => {
            let kernel = match q {
                QuantType::Q8_0 => k.q8_0,
                QuantType::Q4_0 => k.q4_0,
                QuantType::Q4K => k.q4_k,
                QuantType::Q6K => k.q6_k,
                _ => panic!("matmul_via: Rows takes quantized weights"),
            };
            matmul_quant(k, kernel, w, x, n, y)
        }
    }
}

/// y = x · Wᵀ by the int8 GEMM: the tokens quantized once into 8-token panels, then each rayon
/// task runs `INT8_ROW_TILE` weight rows against every panel and writes its columns of y.
fn matmul_int8(
    k: &Kernels,
    kernel: GemmKernel,
    w: &WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let (rows, cols) = (w.rows, w.cols);
    let nb = cols / QK8_0;
    let ng = n.div_ceil(GEMM_TOKENS);
    let mut acts = vec![ActBlock8::ZERO; ng * nb]; // [ng, nb]
    acts.par_chunks_mut(nb).enumerate().for_each(|(g, ag)| {
        let t0 = g * GEMM_TOKENS;
        let t1 = (t0 + GEMM_TOKENS).min(n);
        (k.quantize_act8)(&x[t0 * cols..t1 * cols], t1 - t0, ag);
    });
    let rb = w.row_bytes();
    // panels per token tile: the tile stays in L2 while a row tile runs over it
    let tile_groups = (ACT_TILE_BYTES / (nb * size_of::<ActBlock8>())).clamp(1, ng);
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..rows.div_ceil(INT8_ROW_TILE))
        .into_par_iter()
        .for_each(|ti| {
            let r0 = ti * INT8_ROW_TILE;
            let nr = (rows - r0).min(INT8_ROW_TILE);
            let wt = &w.data[r0 * rb..(r0 + nr) * rb];
            let mut out = vec![0f32; nr * tile_groups * GEMM_TOKENS]; // [nr, 8 * groups]
            for g0 in (0..ng).step_by(tile_groups) {
                let m = (ng - g0).min(tile_groups);
                let np = m * GEMM_TOKENS;
                let o = &mut out[..nr * np];
                kernel(wt, &acts[g0 * nb..(g0 + m) * nb], m, o);
                let t0 = g0 * GEMM_TOKENS;
                let yp = y_ptr;
                // SAFETY: y is `[n, rows]`; tokens t0.. t0 + count <= n, columns r0..r0 + nr
                // <= rows, which this task alone writes; y outlives the parallel loop.
                unsafe {
                    scatter_tile(o, np, nr, (n - t0).min(np), yp.0.add(t0 * rows + r0), rows)
                };
            }
        });
}

/// y = x · Wᵀ for float weights by the few-token kernel: each rayon task streams
/// `FLOAT_ROW_TILE` stored rows against the tokens, a token tile at a time.
fn matmul_float_rows(
    kernel: FloatRowsKernel,
    w: &WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let (rows, cols) = (w.rows, w.cols);
    let rb = w.row_bytes();
    let tok_tile = (FLOAT_TOKEN_TILE_BYTES / (4 * cols)).clamp(4, 64) / 4 * 4;
    let y_ptr = SendPtr(y.as_mut_ptr());
    (0..rows.div_ceil(FLOAT_ROW_TILE))
        .into_par_iter()
        .for_each(|ti| {
            let r0 = ti * FLOAT_ROW_TILE;
            let nr = (rows - r0).min(FLOAT_ROW_TILE);
            let wt = &w.data[r0 * rb..(r0 + nr) * rb];
            let mut out = [0f32; FLOAT_ROW_TILE * 64]; // [nr, m]
            for t0 in (0..n).step_by(tok_tile) {
                let m = (n - t0).min(tok_tile);
                let o = &mut out[..nr * m];
                kernel(wt, cols, &x[t0 * cols..(t0 + m) * cols], o);
                let yp = y_ptr;
                // SAFETY: y is `[n, rows]`; tokens t0..t0 + m <= n, columns r0..r0 + nr <=
                // rows, which this task alone writes; y outlives the parallel loop.
                unsafe { scatter_tile(o, m, nr, m, yp.0.add(t0 * rows + r0), rows) };
            }
        });
}

/// The activations `x` (`[n, cols]`) as the int8 kernels see them: quantized to `ActBlock`s and
/// back, so both quantized paths compute the same sums.
fn act_as_seen(k: &Kernels, x: &[f32], cols: usize) -> Vec<f32> {
    let mut xq = vec![0f32; x.len()]; // [n, cols]
    xq.par_chunks_mut(cols)
        .zip(x.par_chunks(cols))
        .for_each(|(o, xt)| {
            let mut blocks = [ActBlock::ZERO; 8];
            for (oc, xc) in o.chunks_mut(8 * QK8_0).zip(xt.chunks(8 * QK8_0)) {
                let b = &mut blocks[..xc.len() / QK8_0];
                (k.quantize_act)(xc, b);
                for (ob, ab) in oc.chunks_exact_mut(QK8_0).zip(b.iter()) {
                    for (v, &q) in ob.iter_mut().zip(&ab.qs) {
                        *v = ab.d * q as f32;
                    }
                }
            }
        });
    xq
}

fn matmul_quant(
    k: &Kernels,
    kernel: RowKernel,
    w: &WeightRef<'_>,
    x: &[f32],
    n: usize,
    y: &mut [f32],
) {
    let nb = w.cols / QK8_0;
    let mut acts = vec![ActBlock::ZERO; n * nb]; // [n, nb]
    acts.par_chunks_mut(nb)
        .zip(x.par_chunks(w.cols))
        .for_each(|(a, xt)| (k.quantize_act)(xt, a));
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
