//! `out = x · Wᵀ` on the device, by the shape of the call:
//! - q8_0, q4_0 and q4_k weights, up to `Tuning::int8_max_rows` rows (default 64):
//!   `matmul_i8_*` (int8.cu), after `quantize_act_i8` quantized the activations to int8 blocks
//!   exactly as the CPU does: integer tensor-core products, block scales applied in f32, so the
//!   GPU computes the CPU's sums (up to f32 summation order). Each weight byte is read once per
//!   64 tokens, into registers;
//! - many rows (full canvas): cuBLAS `cublasGemmEx` on tensor cores, f32 accumulation and f32
//!   output. f16/bf16 weights are read as stored, with the activations converted to the same
//!   type in a scratch buffer; quantized weights are first dequantized to bf16, a tile of rows
//!   at a time, into a scratch tile reused by every call; f32 weights run an f32 GEMM (no TF32);
//! - few rows (cached steps), quantized weights int8.cu does not take (q6_k, or all of them
//!   with `DLM_CUDA_INT8_MAX_ROWS=0`): `matmul_mma_*` (mma.cu, tensor cores, 9..64
//!   rows) or `matmul_few_*` (matmul.cu, CUDA cores), which stream each weight byte once and
//!   dequantize on the fly;
//! - few rows, f32/f16/bf16 weights (1..8 rows by default): `matmul_few_*`;
//! - anything else (rows not a multiple of 8 wide, or matmul.cu / cuBLAS missing): the simple
//!   `matmul_w` of kernels.cu.
//!
//! Thresholds: [`crate::Tuning`]. `DLM_CUDA_NO_CUBLAS=1` keeps cuBLAS out entirely.

use crate::kernels::{self, FEW_BLOCK_ROWS, FEW_THREADS, Int8Kernels, MatmulKernels, MmaKernels};
use crate::{CudaAct, CudaBackend, CudaMatrix, launch, ok};
use cudarc::cublas::{CudaBlas, result as blas, sys as bsys};
use cudarc::driver::{CudaSlice, DevicePtr, DevicePtrMut, LaunchConfig, PushKernelArg};
use std::ffi::c_void;
use std::sync::Mutex;

/// Default bf16 tile of dequantized weight rows: 128 MiB (64 Mi elements), a whole 8B-shaped
/// projection ([12288, 4096] or [4096, 12288]) in one GEMM. Smaller tiles stay in L2 between
/// the dequantizer and the GEMM, but give the GEMM too few row tiles: on an H100 at the 8B
/// shape a q8_0 full step took 51.1 ms with 16 MiB tiles (682 rows of a [4096, 12288]
/// matrix per GEMM) and 35.2 ms with 128 MiB (q4_k 52.1 and 36.1). `DLM_CUDA_TILE_MIB`
/// changes it.
const TILE_MIB: usize = 128;

/// cuBLAS and the scratch buffers of its path.
pub(crate) struct Gemm {
    blas: CudaBlas,
    scratch: Mutex<Scratch>,
    /// Elements of the bf16 weight tile.
    tile_elems: usize,
}

/// Reused device buffers (one stream: a buffer is free again once the next call is queued).
#[derive(Default)]
struct Scratch {
    act: Option<CudaSlice<u16>>,  // [n, cols] activations in f16/bf16
    tile: Option<CudaSlice<u16>>, // [tile_rows, cols] dequantized weight rows in bf16
    ptrs: Option<CudaSlice<u64>>, // [3, batch] A, B and C pointers of a batched GEMM
}

impl Gemm {
    /// cuBLAS on `be`'s stream, or `None` (with the reason) when it cannot be loaded.
    pub(crate) fn new(stream: &std::sync::Arc<cudarc::driver::CudaStream>) -> Result<Self, String> {
        if std::env::var("DLM_CUDA_NO_CUBLAS").as_deref() == Ok("1") {
            return Err("DLM_CUDA_NO_CUBLAS=1".into());
        }
        // SAFETY: only tries to dlopen libcublas by its usual names.
        if !unsafe { bsys::is_culib_present() } {
            return Err("libcublas.so (CUDA 13) not found".into());
        }
        let blas = CudaBlas::new(stream.clone()).map_err(|e| format!("cuBLAS: {e:?}"))?;
        let mib = std::env::var("DLM_CUDA_TILE_MIB")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&m| m > 0)
            .unwrap_or(TILE_MIB);
        Ok(Gemm {
            blas,
            scratch: Mutex::new(Scratch::default()),
            tile_elems: mib.saturating_mul(1 << 19), // bf16 elements; a tile never exceeds its matrix
        })
    }
}

/// out = x · Wᵀ: x is `[n, w.cols]`, out `[n, w.rows]`.
pub(crate) fn matmul(be: &CudaBackend, w: &CudaMatrix, x: &CudaAct, n: usize, out: &mut CudaAct) {
    if n == 0 || w.rows == 0 {
        return;
    }
    be.wrote(&out.buf);
    let slot = kernels::slot(w.quant);
    let aligned = w.cols.is_multiple_of(8);
    let t = be.tuning;
    let float = w.quant <= 2;
    if let (Some(off), Some(ik), Some(s)) =
        (w.packed, be.k.int8.as_ref(), kernels::int8_slot(w.quant))
    {
        // A repacked matrix: int8.cu, or for many rows dequantize + cuBLAS.
        match (be.gemm.as_ref(), be.k.mm.as_ref()) {
            (Some(g), Some(mm)) if n > t.int8_max_rows && n >= t.gemm_min_rows_quant => {
                gemm(be, g, mm, Some((ik, s, off)), 0, w, x, n, out)
            }
            _ => int8(be, ik, s, off, w, x, n, out),
        }
        return;
    }
    if let (Some(g), Some(mm), Some(s), true) = (be.gemm.as_ref(), be.k.mm.as_ref(), slot, aligned)
    {
        let min = if float {
            t.gemm_min_rows_float
        } else {
            t.gemm_min_rows_quant
        };
        if n >= min {
            gemm(be, g, mm, None, s, w, x, n, out);
            return;
        }
    }
    if let (Some(mk), Some(s), true, false) = (be.k.mma.as_ref(), slot, aligned, float)
        && n >= t.mma_min_rows
        && n <= MMA_MAX_ROWS
    {
        mma(be, mk, s, w, x, n, out);
        return;
    }
    if let (Some(mm), Some(s), true) = (be.k.mm.as_ref(), slot, aligned) {
        let (rows, cols, ni) = (w.rows as i32, w.cols as i32, n as i32);
        let mut b = be.stream.launch_builder(&mm.few[s]);
        b.arg(&w.data)
            .arg(&w.row_bytes)
            .arg(&rows)
            .arg(&cols)
            .arg(&x.buf)
            .arg(&ni)
            .arg(&mut out.buf);
        let cfg = LaunchConfig {
            grid_dim: ((w.rows as u32).div_ceil(FEW_BLOCK_ROWS), 1, 1),
            block_dim: (FEW_THREADS, 1, 1),
            shared_mem_bytes: 0,
        };
        launch(b, cfg);
        return;
    }
    simple(be, w, x, n, out);
}

/// Several f16/bf16 matrices of one shape applied to one input as one batched cuBLAS GEMM
/// (`many` rows only, from `Tuning::gemm_min_rows_float`): a [4096, 4096] GEMM of 512 rows
/// leaves most of an H100's last wave of tiles empty, three at once fill it. `false` when the
/// matrices or the call do not qualify (then the caller runs them one by one), or with
/// `DLM_CUDA_BATCH=0`.
pub(crate) fn many(
    be: &CudaBackend,
    ws: &[&CudaMatrix],
    x: &CudaAct,
    n: usize,
    outs: &mut [&mut CudaAct],
) -> bool {
    use bsys::cudaDataType::{CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F};
    let (Some(g), Some(mm), Some(w0)) = (be.gemm.as_ref(), be.k.mm.as_ref(), ws.first()) else {
        return false;
    };
    let same = ws.iter().all(|w| {
        w.quant == w0.quant && w.rows == w0.rows && w.cols == w0.cols && w.packed.is_none()
    });
    if !be.tuning.batch_gemm
        || ws.len() < 2
        || ws.len() != outs.len()
        || !same
        || !(w0.quant == 1 || w0.quant == 2)
        || n < be.tuning.gemm_min_rows_float
        || !w0.cols.is_multiple_of(8)
        || w0.rows == 0
    {
        return false;
    }
    for o in outs.iter() {
        be.wrote(&o.buf);
    }
    let mut sc = g.scratch.lock().unwrap_or_else(|p| p.into_inner());
    let sc = &mut *sc;
    let (rows, cols, k) = (w0.rows, w0.cols, ws.len());
    let st = &be.stream;
    ok(st.context().bind_to_thread());
    let half_type = if w0.quant == 1 {
        CUDA_R_16F
    } else {
        CUDA_R_16BF
    };
    let to_bf16: i32 = i32::from(w0.quant != 1);
    let len = n * cols;
    let act = grown(be, &mut sc.act, len);
    let l = len as i64;
    let mut b = st.launch_builder(&mm.to_half);
    b.arg(&x.buf).arg(&l).arg(&to_bf16).arg(&mut *act);
    launch(b, grid_stride(len));
    let (act_ptr, _x) = act.device_ptr(st);
    // [A pointers, B pointers, C pointers]; the guards keep cudarc's bookkeeping until queued.
    let mut host = Vec::with_capacity(3 * k);
    let mut guards = Vec::new();
    for w in ws {
        let (p, gd) = w.data.device_ptr(st);
        host.push(p);
        guards.push(gd);
    }
    host.extend(std::iter::repeat_n(act_ptr, k));
    let mut out_guards = Vec::new();
    for o in outs.iter_mut() {
        let (p, gd) = o.buf.device_ptr_mut(st);
        host.push(p);
        out_guards.push(gd);
    }
    let dev = grown(be, &mut sc.ptrs, 3 * k);
    ok(st.memcpy_htod(&host, dev));
    let (ptrs, _p) = dev.device_ptr(st);
    let (alpha, beta) = (1f32, 0f32);
    // SAFETY: `ptrs` holds 3k device addresses, queued before this call on the handle's stream:
    // k weight matrices of rows x cols half values, k copies of the converted input (n x cols
    // half values) and k outputs of at least n x rows f32 (the callers' shape contracts, as for
    // gemm_ex); alpha and beta are host f32 for the f32 compute type in host pointer mode.
    let r = unsafe {
        bsys::cublasGemmBatchedEx(
            *g.blas.handle(),
            bsys::cublasOperation_t::CUBLAS_OP_T,
            bsys::cublasOperation_t::CUBLAS_OP_N,
            rows as i32,
            n as i32,
            cols as i32,
            (&alpha as *const f32).cast::<c_void>(),
            ptrs as *const *const c_void,
            half_type,
            cols as i32,
            (ptrs + 8 * k as u64) as *const *const c_void,
            half_type,
            cols as i32,
            (&beta as *const f32).cast::<c_void>(),
            (ptrs + 16 * k as u64) as *const *mut c_void,
            CUDA_R_32F,
            rows as i32,
            k as i32,
            bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
    };
    if r != bsys::cublasStatus_t::CUBLAS_STATUS_SUCCESS {
        panic!("cublasGemmBatchedEx failed: {r:?}");
    }
    true
}

/// int8.cu's activations: `[n_pad / 8, cols / 32, 32 lanes]` 16-byte words (quants in
/// fragment order and two tokens' scales) and `[n_pad / 8, cols / 32, 8]` sums of quants
/// (`quantize_act_i8`). `key` names what they hold: the activations' device address, rows and
/// width. A forward pass multiplies one input by several matrices (q, k and v; gate and up), so
/// the next matmul of the same input skips the quantizer; every op that writes an activation
/// buffer, and every new buffer, clears the key when the address is its
/// (`CudaBackend::wrote`).
#[derive(Default)]
pub(crate) struct Int8Acts {
    key: Option<(u64, usize, usize)>,
    q: Option<CudaSlice<u8>>,
    s: Option<CudaSlice<i32>>,
    /// `[splits, n, rows]` partial sums of split matmuls.
    part: Option<CudaSlice<f32>>,
}

impl Int8Acts {
    /// Drop the key if it names the buffer at `ptr`.
    pub(crate) fn forget(&mut self, ptr: u64) {
        if self.key.is_some_and(|k| k.0 == ptr) {
            self.key = None;
        }
    }
}

/// A device buffer of at least `len` elements, grown (never shrunk) on demand.
pub(crate) fn grown<'a, T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(
    be: &CudaBackend,
    slot: &'a mut Option<CudaSlice<T>>,
    len: usize,
) -> &'a mut CudaSlice<T> {
    if slot.as_ref().is_none_or(|s| s.len() < len) {
        *slot = None; // free the old one first
        *slot = Some(ok(be.stream.alloc_zeros::<T>(len.max(1))));
    }
    slot.as_mut().expect("just allocated")
}

/// Bytes of int8.cu's layout of a `[rows, cols]` matrix of kernel type `q` (q8_0, q4_0 or
/// q4_k; cols a multiple of 32): the quants, then the scales (see int8.cu).
pub(crate) fn packed_bytes(q: i32, rows: usize, cols: usize) -> (usize, usize) {
    let r16 = rows.div_ceil(16);
    let nb = cols / 32;
    match q {
        8 => (r16 * nb * 512, r16 * nb * 32),
        9 => (r16 * nb.div_ceil(2) * 512, r16 * nb.div_ceil(2) * 64),
        _ => (r16 * (cols / 256) * 2048, r16 * (cols / 256) * 256),
    }
}

/// Column units of a packed row (int8.cu's `pack_units`): 32-column blocks (q8_0), pairs of
/// them (q4_0), 256-column blocks (q4_k).
fn packed_units(q: i32, cols: usize) -> usize {
    match q {
        8 => cols / 32,
        9 => (cols / 32).div_ceil(2),
        _ => cols / 256,
    }
}

/// Tokens per block of `matmul_i8_*` (`8 * I8_TILES`), threads (`32 * I8_WARPS`), warps.
const I8_TOKENS: usize = 64;
const I8_THREADS: u32 = 256;
const I8_WARPS: usize = 8;

/// int8.cu: quantize x's rows to int8 blocks, then the integer matmul of the packed matrix
/// `w` (scales at byte `off`); `s` is the weight type's slot in `kernels::INT8_TYPES`.
///
/// Blocks: 32 rows (or 16 when the 32-row blocks would not give every multiprocessor one) by
/// 64 tokens; when those are still fewer than `DLM_CUDA_I8_BLOCKS` (default twice the
/// multiprocessors), the columns are split over more blocks, each split at least 4 units a
/// warp, and the partial sums added in split order (`i8_sum_splits`).
#[allow(clippy::too_many_arguments)]
fn int8(
    be: &CudaBackend,
    ik: &Int8Kernels,
    s: usize,
    off: i64,
    w: &CudaMatrix,
    x: &CudaAct,
    n: usize,
    out: &mut CudaAct,
) {
    let n_pad = n.div_ceil(8) * 8;
    let nb = w.cols / 32;
    let mut acts = be.i8_acts.lock().unwrap_or_else(|p| p.into_inner());
    let acts = &mut *acts;
    let key = (x.buf.device_ptr(&be.stream).0, n, w.cols);
    let fresh = acts.key == Some(key) && acts.q.is_some();
    acts.key = None; // set again below once the quantizer is queued
    let (cols, ni, np) = (w.cols as i32, n as i32, n_pad as i32);
    if !fresh {
        let q = grown(be, &mut acts.q, n_pad * w.cols * 2);
        let sums = grown(be, &mut acts.s, n_pad * nb);
        let mut b = be.stream.launch_builder(&ik.quantize);
        b.arg(&x.buf).arg(&cols).arg(&ni).arg(&np).arg(q).arg(sums);
        let warps = n_pad * nb;
        launch(b, grid_stride(warps * 32));
    }
    acts.key = Some(key);
    let t = be.tuning;
    let r16 = w.rows.div_ceil(16);
    let groups = n.div_ceil(I8_TOKENS);
    let m1 = match t.i8_row_tiles {
        1 => true,
        2 => false,
        _ => r16.div_ceil(2) * groups < be.n_sms,
    };
    let row_blocks = if m1 { r16 } else { r16.div_ceil(2) };
    let units = packed_units(w.quant, w.cols);
    let max_splits = (units / (4 * I8_WARPS)).max(1);
    let want = t
        .i8_blocks
        .div_ceil(row_blocks * groups)
        .clamp(1, max_splits);
    let ups = units.div_ceil(want);
    let splits = units.div_ceil(ups);
    let (rows, ups_i) = (w.rows as i32, ups as i32);
    let cfg = LaunchConfig {
        grid_dim: (groups as u32, row_blocks as u32, splits as u32),
        block_dim: (I8_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    let kernel = if m1 { &ik.mm_m1[s] } else { &ik.mm[s] };
    let q = acts.q.as_ref().expect("quantized above");
    let sums = acts.s.as_ref().expect("quantized above");
    let len = n * w.rows;
    if splits == 1 {
        let mut b = be.stream.launch_builder(kernel);
        b.arg(&w.data)
            .arg(&off)
            .arg(&rows)
            .arg(&cols)
            .arg(q)
            .arg(sums)
            .arg(&ni)
            .arg(&ups_i)
            .arg(&mut out.buf);
        launch(b, cfg);
        return;
    }
    let mut part = acts.part.take();
    let p = grown(be, &mut part, splits * len);
    let mut b = be.stream.launch_builder(kernel);
    b.arg(&w.data)
        .arg(&off)
        .arg(&rows)
        .arg(&cols)
        .arg(q)
        .arg(sums)
        .arg(&ni)
        .arg(&ups_i)
        .arg(&mut *p);
    launch(b, cfg);
    let (sp, l) = (splits as i32, len as i64);
    let mut b = be.stream.launch_builder(&ik.sum_splits);
    b.arg(&*p).arg(&sp).arg(&l).arg(&mut out.buf);
    launch(b, grid_stride(len));
    acts.part = part;
}

/// Activation rows mma.cu takes at most (`MMA_MAXN`).
const MMA_MAX_ROWS: usize = 64;
/// Weight rows per block of mma.cu (`MMA_ROWS`), columns per tile (`MMA_KC`), threads.
const MMA_BLOCK_ROWS: usize = 64;
const MMA_KC: usize = 128;
const MMA_THREADS: u32 = 128;

/// mma.cu: tensor cores for 9..64 rows. The columns are split over enough blocks to fill the
/// GPU twice (weight matrices of 4096 rows make only 64 row blocks); partial sums then go to a
/// scratch buffer and are added in split order.
fn mma(
    be: &CudaBackend,
    mk: &MmaKernels,
    s: usize,
    w: &CudaMatrix,
    x: &CudaAct,
    n: usize,
    out: &mut CudaAct,
) {
    let row_blocks = w.rows.div_ceil(MMA_BLOCK_ROWS);
    let n_chunks = w.cols.div_ceil(MMA_KC).max(1);
    let want = (2 * be.n_sms).div_ceil(row_blocks).clamp(1, n_chunks);
    let cps = n_chunks.div_ceil(want);
    let splits = n_chunks.div_ceil(cps);
    let (rows, cols, ni, cps_i) = (w.rows as i32, w.cols as i32, n as i32, cps as i32);
    let cfg = LaunchConfig {
        grid_dim: (row_blocks as u32, splits as u32, 1),
        block_dim: (MMA_THREADS, 1, 1),
        shared_mem_bytes: 0,
    };
    if splits == 1 {
        let mut b = be.stream.launch_builder(&mk.mma[s]);
        b.arg(&w.data)
            .arg(&w.row_bytes)
            .arg(&rows)
            .arg(&cols)
            .arg(&x.buf)
            .arg(&ni)
            .arg(&cps_i)
            .arg(&mut out.buf);
        launch(b, cfg);
        return;
    }
    let len = n * w.rows;
    let mut part = be.partials.lock().unwrap_or_else(|p| p.into_inner());
    if part.as_ref().is_none_or(|p| p.len() < splits * len) {
        *part = None;
        *part = Some(ok(be.stream.alloc_zeros::<f32>(splits * len)));
    }
    let part = part.as_mut().expect("just allocated");
    let mut b = be.stream.launch_builder(&mk.mma[s]);
    b.arg(&w.data)
        .arg(&w.row_bytes)
        .arg(&rows)
        .arg(&cols)
        .arg(&x.buf)
        .arg(&ni)
        .arg(&cps_i)
        .arg(&mut *part);
    launch(b, cfg);
    let (sp, l) = (splits as i32, len as i64);
    let mut b = be.stream.launch_builder(&mk.sum_splits);
    b.arg(&*part).arg(&sp).arg(&l).arg(&mut out.buf);
    launch(b, grid_stride(len));
}

/// kernels.cu's `matmul_w`: any width, any type.
fn simple(be: &CudaBackend, w: &CudaMatrix, x: &CudaAct, n: usize, out: &mut CudaAct) {
    let (rows, cols, ni) = (w.rows as i32, w.cols as i32, n as i32);
    let mut b = be.stream.launch_builder(&be.k.matmul);
    b.arg(&w.data)
        .arg(&w.quant)
        .arg(&w.row_bytes)
        .arg(&rows)
        .arg(&cols)
        .arg(&x.buf)
        .arg(&ni)
        .arg(&mut out.buf);
    let cfg = LaunchConfig {
        grid_dim: (
            (w.rows as u32).div_ceil(kernels::MM_WARPS),
            (n as u32).div_ceil(kernels::MM_TOKENS),
            1,
        ),
        block_dim: (32 * kernels::MM_WARPS, 1, 1),
        shared_mem_bytes: 0,
    };
    launch(b, cfg);
}

fn grid_stride(len: usize) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((len as u32).div_ceil(256).clamp(1, 65_535), 1, 1),
        block_dim: (256, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// The GEMM path (see the module doc); `s` is the weight type's slot in `kernels::TYPES`, or
/// for a repacked matrix `packed` names int8.cu's dequantizer (its slot) and the scales'
/// offset.
#[allow(clippy::too_many_arguments)]
fn gemm(
    be: &CudaBackend,
    g: &Gemm,
    mm: &MatmulKernels,
    packed: Option<(&Int8Kernels, usize, i64)>,
    s: usize,
    w: &CudaMatrix,
    x: &CudaAct,
    n: usize,
    out: &mut CudaAct,
) {
    use bsys::cudaDataType::{CUDA_R_16BF, CUDA_R_16F, CUDA_R_32F};
    let mut sc = g.scratch.lock().unwrap_or_else(|p| p.into_inner());
    let sc = &mut *sc;
    let (rows, cols) = (w.rows, w.cols);
    let st = &be.stream;
    // cuBLAS runs in the calling thread's current context (a kernel launch binds it, a raw
    // cuBLAS call does not): the forward pass may run on any thread.
    ok(st.context().bind_to_thread());
    let (out_ptr, _o) = out.buf.device_ptr_mut(st);
    if w.quant == 0 {
        let (a, _a) = w.data.device_ptr(st);
        let (b, _b) = x.buf.device_ptr(st);
        gemm_ex(g, rows, n, cols, a, CUDA_R_32F, b, CUDA_R_32F, out_ptr);
        return;
    }
    // Activations in the type the weights are multiplied in.
    let half_type = if w.quant == 1 {
        CUDA_R_16F
    } else {
        CUDA_R_16BF
    };
    let to_bf16: i32 = i32::from(w.quant != 1);
    let len = n * cols;
    let act = grown(be, &mut sc.act, len);
    let l = len as i64;
    let mut b = st.launch_builder(&mm.to_half);
    b.arg(&x.buf).arg(&l).arg(&to_bf16).arg(&mut *act);
    launch(b, grid_stride(len));
    let (act_ptr, _x) = act.device_ptr(st);
    if w.quant <= 2 {
        let (a, _a) = w.data.device_ptr(st);
        gemm_ex(g, rows, n, cols, a, half_type, act_ptr, half_type, out_ptr);
        return;
    }
    let tile_rows = (g.tile_elems / cols).clamp(1, rows);
    let tile = grown(be, &mut sc.tile, tile_rows * cols);
    let cols_i = cols as i32;
    let mut r0 = 0usize;
    while r0 < rows {
        let nr = tile_rows.min(rows - r0);
        let (r0_i, nr_i) = (r0 as i64, nr as i32);
        let mut b = match &packed {
            Some((ik, ps, off)) => {
                let mut b = st.launch_builder(&ik.dequant[*ps]);
                b.arg(&w.data).arg(off);
                b
            }
            None => {
                let mut b = st.launch_builder(&mm.dequant[s]);
                b.arg(&w.data).arg(&w.row_bytes);
                b
            }
        };
        b.arg(&r0_i).arg(&nr_i).arg(&cols_i).arg(&mut *tile);
        launch(b, grid_stride(nr * cols / 8));
        let (t, _t) = tile.device_ptr(st);
        // Rows r0.. of the output are columns r0.. of cuBLAS's column-major [rows, n] view.
        let c = out_ptr + (r0 * std::mem::size_of::<f32>()) as u64;
        gemm_ex_ld(
            g,
            nr,
            n,
            cols,
            t,
            CUDA_R_16BF,
            act_ptr,
            CUDA_R_16BF,
            c,
            rows,
        );
        r0 += nr;
    }
}

/// `C = Aᵀ·B` in cuBLAS's column-major terms, which is row-major `out[n, m] = x[n, k] · W[m, k]ᵀ`:
/// A is W (`k × m` column-major, transposed), B is x (`k × n`), C is out (`m × n`, leading
/// dimension `m`). f32 accumulation, f32 output.
#[allow(clippy::too_many_arguments)]
fn gemm_ex(
    g: &Gemm,
    m: usize,
    n: usize,
    k: usize,
    a: u64,
    a_type: bsys::cudaDataType,
    b: u64,
    b_type: bsys::cudaDataType,
    c: u64,
) {
    gemm_ex_ld(g, m, n, k, a, a_type, b, b_type, c, m);
}

/// [`gemm_ex`] with C's leading dimension `ldc` (a tile of output columns).
#[allow(clippy::too_many_arguments)]
fn gemm_ex_ld(
    g: &Gemm,
    m: usize,
    n: usize,
    k: usize,
    a: u64,
    a_type: bsys::cudaDataType,
    b: u64,
    b_type: bsys::cudaDataType,
    c: u64,
    ldc: usize,
) {
    let (alpha, beta) = (1f32, 0f32);
    // SAFETY: a, b and c are live device allocations of this backend on the handle's stream:
    // a holds m rows of k elements of a_type, b n rows of k elements of b_type, and c at least
    // (n - 1) * ldc + m f32 (the callers' shape contracts); alpha and beta are host f32, as
    // the f32 compute type expects in the default (host) pointer mode.
    let r = unsafe {
        blas::gemm_ex(
            *g.blas.handle(),
            bsys::cublasOperation_t::CUBLAS_OP_T,
            bsys::cublasOperation_t::CUBLAS_OP_N,
            m as i32,
            n as i32,
            k as i32,
            (&alpha as *const f32).cast::<c_void>(),
            a as *const c_void,
            a_type,
            k as i32,
            b as *const c_void,
            b_type,
            k as i32,
            (&beta as *const f32).cast::<c_void>(),
            c as *mut c_void,
            bsys::cudaDataType::CUDA_R_32F,
            ldc as i32,
            bsys::cublasComputeType_t::CUBLAS_COMPUTE_32F,
            bsys::cublasGemmAlgo_t::CUBLAS_GEMM_DFALT,
        )
    };
    r.unwrap_or_else(|e| panic!("cublasGemmEx failed: {e:?}"));
}
