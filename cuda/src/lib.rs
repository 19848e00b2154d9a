//! The CUDA backend of the dlm runtime: weights uploaded once in their stored type (f32, f16,
//! bf16, q8_0, q4_0, q4_k, q6_k), activations and the KV cache on the device, kernels in CUDA C
//! (`*.cu`) compiled by NVRTC when the backend starts, many-row matmuls on cuBLAS (tensor cores).
//!
//! Nothing here links CUDA: the driver, NVRTC and cuBLAS are opened with `dlopen` on
//! [`CudaBackend::new`], which first checks that the driver and NVRTC are present, so a
//! machine without a driver gets an error naming what is missing, never a panic; without
//! cuBLAS the backend runs its own (slower) kernels and says so in
//! [`CudaBackend::kernel_report`].
//!
//! The [`Backend`] ops return no `Result` (the forward pass checks requests before any op
//! runs); a CUDA failure inside an op (a lost device, an out-of-memory in `alloc` is reported
//! as an error before) panics with the driver's message, which the runtime's callers see as
//! a failed call.

mod attention;
mod kernels;
mod matmul;
mod profile;
mod propose;

use cudarc::driver::{
    CudaContext, CudaSlice, CudaStream, DriverError, LaunchArgs, LaunchConfig, PushKernelArg,
};
use dlm_formats::QuantType;
use dlm_runtime::RuntimeError;
use dlm_runtime::backend::{AttentionArgs, Backend, CacheShape};
use dlm_runtime::decode::{Proposal, ProposeSpec, Rng};
use dlm_runtime::model::{LayerAttention, Matrix};
use kernels::Kernels;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// Runs the forward pass on one CUDA device.
pub struct CudaBackend {
    ordinal: usize,
    stream: Arc<CudaStream>,
    k: Kernels,
    /// cuBLAS for many-row matmuls, when it loaded.
    gemm: Option<matmul::Gemm>,
    /// Which kernel serves which shape (see [`Tuning`]).
    tuning: Tuning,
    /// Streaming multiprocessors (sizes the split of mma.cu's columns).
    n_sms: usize,
    /// What compiled and loaded (see [`CudaBackend::kernel_report`]).
    report: Vec<String>,
    /// Recently uploaded index lists, oldest first (see `ints`).
    int_lists: Mutex<Vec<IntList>>,
    /// int8.cu's quantized activations, reused (see `matmul::int8`).
    i8_acts: Mutex<matmul::Int8Acts>,
    /// `[splits, n, rows]` partial sums of mma.cu's split matmuls, reused.
    partials: Mutex<Option<CudaSlice<f32>>>,
    /// flash_tc.cu's key splits: `[splits, n, q_dim]` outputs and `[splits, n, heads, 2]` row
    /// maxima and sums, reused.
    att_parts: Mutex<AttParts>,
    /// Set once an f32 matrix is uploaded: a model stored in f32 asks for f32 arithmetic, so
    /// attention stays off the bf16 tensor cores (its matmuls run f32 GEMMs already).
    precise: AtomicBool,
    /// GPU time per op (`DLM_CUDA_PROFILE=1`), printed when the backend is dropped.
    prof: profile::Profiler,
}

/// Partial attention outputs and their row maxima and sums (see `attention::flash`).
type AttParts = (Option<CudaSlice<f32>>, Option<CudaSlice<f32>>);

/// An index list and its device copy.
type IntList = (Vec<i32>, Arc<CudaSlice<i32>>);

/// Index lists kept on the device for reuse.
const INT_LISTS: usize = 16;

/// A weight matrix on the device, in its stored type: as stored (rows of blocks, back to back),
/// or for the types int8.cu multiplies, repacked into int8.cu's layout (fragment order, scales
/// apart; see int8.cu), which only int8.cu's kernels read.
pub struct CudaMatrix {
    data: CudaSlice<u8>,
    /// Kernel type id (`kernels::kernel_type`).
    quant: i32,
    /// Bytes of a stored row (of the file's layout, also when repacked).
    row_bytes: i64,
    rows: usize,
    cols: usize,
    /// Repacked for int8.cu: the byte offset of the scales in `data`.
    packed: Option<i64>,
}

/// An f32 buffer on the device with its logical length (CUDA refuses empty allocations,
/// so a zero-length buffer holds one unused element).
pub struct CudaAct {
    buf: CudaSlice<f32>,
    len: usize,
}

/// Keys, values and optional hidden states of every canvas position, per layer, on the
/// device.
pub struct CudaCache {
    shape: CacheShape,
    k: Vec<CudaSlice<f32>>,
    v: Vec<CudaSlice<f32>>,
    h: Vec<CudaSlice<f32>>,
}

/// Which kernel serves which shape; the defaults can be changed with environment variables
/// read when the backend starts, so they can be tuned on the device without a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tuning {
    /// Rows of a matmul up to which q8_0, q4_0 and q4_k weights take int8.cu (activations
    /// quantized to int8 blocks as on the CPU, integer tensor-core products, so the sums are
    /// the CPU's): `DLM_CUDA_INT8_MAX_ROWS`, default 64; 0 never (then the bf16 paths below
    /// serve, as before int8.cu). Measured on an H100 at the LLaDA-8B shapes: at 32 rows
    /// int8.cu takes 0.3-0.65x the time of dequantize + cuBLAS, at 512 rows 1.4-3.7x (about
    /// 80 int8 TOP/s, against 120-300 bf16 TFLOP/s for cuBLAS), so full canvases stay on
    /// cuBLAS by default; a larger value buys the CPU's arithmetic there at that cost.
    pub int8_max_rows: usize,
    /// Rows of a matmul from which quantized weights go through cuBLAS (dequantized to bf16
    /// tiles): `DLM_CUDA_GEMM_MIN_ROWS`, default 9. `usize::MAX` never. Measured on an H100 at
    /// the LLaDA-8B shape (dual-cache steps of 32 rows): 23.8 ms per step at q8_0 and 25.5 at
    /// q4_k through cuBLAS, against 26.7 and 27.1 through the tensor-core kernel (mma.cu) and
    /// 95 and 73 through the CUDA-core one. So by default mma.cu is not used; it runs for 9..64
    /// rows with `DLM_CUDA_GEMM_MIN_ROWS=65`, for shapes where it may win.
    pub gemm_min_rows_quant: usize,
    /// Rows from which f32/f16/bf16 weights go through cuBLAS: `DLM_CUDA_GEMM_MIN_ROWS_FLOAT`,
    /// default 9.
    pub gemm_min_rows_float: usize,
    /// Rows from which quantized weights below the cuBLAS threshold take the tensor-core
    /// kernel (mma.cu, at most 64 rows) instead of the CUDA-core one (matmul.cu):
    /// `DLM_CUDA_MMA_MIN_ROWS`, default 9; `usize::MAX` never.
    pub mma_min_rows: usize,
    /// Span rows from which attention takes the tiled kernels (flash_tc.cu, or flash.cu for
    /// models with f32 matrices) over kernels.cu's one block per (row, head):
    /// `DLM_CUDA_FLASH_MIN_ROWS`, default 1.
    pub flash_min_rows: usize,
    /// Attention on tensor cores for models without f32 matrices: `DLM_CUDA_FLASH_TC=0` turns
    /// it off (f32 tiles, flash.cu).
    pub flash_tc: bool,
    /// The tensor-core attention's operands in f16 rather than bf16 (8x less rounding, at the
    /// same speed: 11.40 against 11.72 ms per cached 8B bf16 step on an H100):
    /// `DLM_CUDA_FLASH_F16`, default 1. The CPU computes attention in f32; against an f64
    /// reference the f16 kernel's error is 4.9e-5..1.5e-4, the bf16 one's 3.7e-4..1.2e-3.
    pub flash_f16: bool,
    /// Rows per block of int8.cu's matmul: 1 = 16 rows (default), 2 = 32 rows, anything else
    /// chooses: 32 unless that leaves multiprocessors without a block. `DLM_CUDA_I8_ROW_TILES`.
    /// On an H100 at the 8B shape (dual cache, 256 steps, ms per step) 16 rows gave 14.71 at
    /// q8_0 and 14.54 at q4_k, 32 rows 16.92 and 15.10, the choice 15.79 and 14.85.
    pub i8_row_tiles: usize,
    /// Blocks int8.cu's matmul aims for by splitting the columns when its row blocks are fewer:
    /// `DLM_CUDA_I8_BLOCKS`, default twice the multiprocessors (set when the backend starts);
    /// 0 never splits.
    pub i8_blocks: usize,
    /// Several f16/bf16 matrices of one input (q, k, v; gate, up) as one batched cuBLAS GEMM
    /// for many rows: `DLM_CUDA_BATCH=0` turns it off.
    pub batch_gemm: bool,
}

impl Tuning {
    fn from_env(n_sms: usize) -> Self {
        let get = |name: &str, default: usize| {
            std::env::var(name)
                .ok()
                .and_then(|v| v.parse().ok())
                .unwrap_or(default)
        };
        Tuning {
            int8_max_rows: get("DLM_CUDA_INT8_MAX_ROWS", 64),
            gemm_min_rows_quant: get("DLM_CUDA_GEMM_MIN_ROWS", 9),
            gemm_min_rows_float: get("DLM_CUDA_GEMM_MIN_ROWS_FLOAT", 9),
            mma_min_rows: get("DLM_CUDA_MMA_MIN_ROWS", 9),
            flash_min_rows: get("DLM_CUDA_FLASH_MIN_ROWS", 1),
            flash_tc: get("DLM_CUDA_FLASH_TC", 1) != 0,
            flash_f16: get("DLM_CUDA_FLASH_F16", 1) != 0,
            i8_row_tiles: get("DLM_CUDA_I8_ROW_TILES", 1),
            i8_blocks: get("DLM_CUDA_I8_BLOCKS", 2 * n_sms),
            batch_gemm: get("DLM_CUDA_BATCH", 1) != 0,
        }
    }
}

/// Parse a device name: `cuda` (device 0) or `cuda:N`; `None` for anything else.
pub fn parse_device(name: &str) -> Option<usize> {
    match name {
        "cuda" => Some(0),
        _ => name.strip_prefix("cuda:")?.parse().ok(),
    }
}

fn device_err(what: &str, e: impl std::fmt::Display) -> RuntimeError {
    RuntimeError::Unsupported(format!("CUDA: {what}: {e}"))
}

/// A driver failure inside an op that cannot return an error (see the crate docs).
fn ok<T>(r: Result<T, DriverError>) -> T {
    r.unwrap_or_else(|e| panic!("CUDA call failed: {e}"))
}

/// Launch a kernel whose arguments are pushed on `b`.
fn launch(mut b: LaunchArgs<'_>, cfg: LaunchConfig) {
    // SAFETY: every kernel in kernels.cu is launched through one wrapper in this crate that
    // pushes exactly the parameters its CUDA signature declares, in order and of the same
    // sizes (device pointers, i32, i64, f32), and sizes its grid so that every index it
    // reads or writes lies inside the buffers passed (the callers' shape contracts).
    ok(unsafe { b.launch(cfg) });
}

fn grid1(len: usize, block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: ((len as u32).div_ceil(block).max(1), 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

fn rows_cfg(rows: usize, block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: (rows as u32, 1, 1),
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

impl CudaBackend {
    /// Open CUDA device `ordinal`: checks the driver and NVRTC libraries, creates a context
    /// and compiles the kernels.
    pub fn new(ordinal: usize) -> Result<Self, RuntimeError> {
        // SAFETY: `is_culib_present` only tries to dlopen the library by its usual names.
        if !unsafe { cudarc::driver::sys::is_culib_present() } {
            return Err(RuntimeError::Unsupported(
                "CUDA: no NVIDIA driver library (libcuda.so) found on this machine".into(),
            ));
        }
        // SAFETY: as above, for NVRTC.
        if !unsafe { cudarc::nvrtc::sys::is_culib_present() } {
            return Err(RuntimeError::Unsupported(
                "CUDA: the NVRTC library (libnvrtc.so, CUDA 13) was not found; install the CUDA \
                 runtime or put its lib64 folder on LD_LIBRARY_PATH"
                    .into(),
            ));
        }
        let count = CudaContext::device_count().map_err(|e| device_err("no usable GPU", e))?;
        if ordinal >= count.max(0) as usize {
            return Err(RuntimeError::Unsupported(format!(
                "CUDA: device cuda:{ordinal} asked for, but this machine has {count} GPU(s)"
            )));
        }
        let ctx = CudaContext::new(ordinal).map_err(|e| device_err("cannot open the device", e))?;
        // One stream only: cudarc's per-buffer event tracking (for several streams) is waste.
        // SAFETY: every buffer of this backend is used on this one stream only.
        unsafe { ctx.disable_event_tracking() };
        let stream = ctx.default_stream();
        let mut k = Kernels::compile(&ctx)?;
        let mut report = std::mem::take(&mut k.report);
        let gemm = match matmul::Gemm::new(&stream) {
            Ok(g) => {
                report.push("cuBLAS: ok".into());
                Some(g)
            }
            Err(e) => {
                eprintln!("dlm-cuda: cuBLAS not used ({e}); many-row matmuls run slower");
                report.push(format!("cuBLAS: not used ({e})"));
                None
            }
        };
        let n_sms = ctx
            .attribute(
                cudarc::driver::sys::CUdevice_attribute::CU_DEVICE_ATTRIBUTE_MULTIPROCESSOR_COUNT,
            )
            .map_err(|e| device_err("multiprocessor count", e))?
            .max(1) as usize;
        Ok(CudaBackend {
            ordinal,
            stream,
            k,
            gemm,
            tuning: Tuning::from_env(n_sms),
            n_sms,
            report,
            int_lists: Mutex::new(Vec::new()),
            i8_acts: Mutex::new(matmul::Int8Acts::default()),
            partials: Mutex::new(None),
            att_parts: Mutex::new((None, None)),
            precise: AtomicBool::new(false),
            prof: profile::Profiler::from_env(),
        })
    }

    /// Which kernel serves which shape.
    pub fn tuning(&self) -> Tuning {
        self.tuning
    }

    /// Choose other kernels by shape (the parity tests check every path this way).
    pub fn set_tuning(&mut self, t: Tuning) {
        self.tuning = t;
    }

    /// One line per kernel file and library: loaded, or why not (then the ops it serves run
    /// on the simple kernels). For logs and the parity tests.
    pub fn kernel_report(&self) -> &[String] {
        &self.report
    }

    /// A `[rows, cols]` weight matrix stored as `bytes` in `quant` (rows back to back), on the
    /// device: [`Backend::upload_matrix`] without a model file (tests and benchmarks).
    pub fn upload_weights(
        &self,
        quant: QuantType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<CudaMatrix, RuntimeError> {
        let row_bytes = bytes.len() / rows.max(1);
        if row_bytes * rows != bytes.len() || quant.row_bytes(cols as u64) != Some(row_bytes as u64)
        {
            return Err(RuntimeError::InvalidRequest(format!(
                "{} bytes are not a [{rows}, {cols}] {} matrix",
                bytes.len(),
                quant.name()
            )));
        }
        self.matrix(quant, rows, cols, bytes)
    }

    /// Upload `bytes`, a `[rows, cols]` matrix of `quant` in the file's layout: as stored, or
    /// repacked for int8.cu when it loaded and takes the type (`DLM_CUDA_PACK=0` keeps every
    /// matrix as stored, so quantized matmuls take the bf16 paths, as before int8.cu).
    fn matrix(
        &self,
        quant: QuantType,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<CudaMatrix, RuntimeError> {
        if quant == QuantType::F32 {
            self.precise.store(true, Ordering::Relaxed);
        }
        let q = kernels::kernel_type(quant);
        let row_bytes = (bytes.len() / rows.max(1)) as i64;
        let raw = self.upload(bytes)?;
        let pack = std::env::var("DLM_CUDA_PACK").as_deref() != Ok("0");
        if let (Some(ik), Some(s), true, true) = (
            self.k.int8.as_ref(),
            kernels::int8_slot(q),
            pack,
            cols.is_multiple_of(32) && rows > 0,
        ) {
            let (q_bytes, s_bytes) = matmul::packed_bytes(q, rows, cols);
            let mut data = self
                .stream
                .alloc_zeros::<u8>(q_bytes + s_bytes)
                .map_err(|e| device_err("allocation of a repacked matrix", e))?;
            let (r, c, off) = (rows as i32, cols as i32, q_bytes as i64);
            let mut b = self.stream.launch_builder(&ik.pack[s]);
            b.arg(&raw)
                .arg(&row_bytes)
                .arg(&r)
                .arg(&c)
                .arg(&mut data)
                .arg(&off);
            launch(b, grid1(q_bytes / 16, 256));
            return Ok(CudaMatrix {
                data,
                quant: q,
                row_bytes,
                rows,
                cols,
                packed: Some(off),
            });
        }
        Ok(CudaMatrix {
            data: raw,
            quant: q,
            row_bytes,
            rows,
            cols,
            packed: None,
        })
    }

    /// An activation buffer holding `v`.
    pub fn upload_act(&self, v: &[f32]) -> Result<CudaAct, RuntimeError> {
        let buf = self.upload(v)?;
        self.wrote(&buf);
        Ok(CudaAct { buf, len: v.len() })
    }

    fn upload<T: cudarc::driver::DeviceRepr + Clone + Default>(
        &self,
        v: &[T],
    ) -> Result<CudaSlice<T>, RuntimeError> {
        if v.is_empty() {
            return self
                .stream
                .memcpy_stod(&[T::default()])
                .map_err(|e| device_err("upload", e));
        }
        self.stream
            .memcpy_stod(v)
            .map_err(|e| device_err(&format!("upload of {} bytes", std::mem::size_of_val(v)), e))
    }

    /// `v` as i32 on the device. A forward pass uploads the same few lists many times (the
    /// span's positions for RoPE and the cache writes, the cached positions for attention, in
    /// every layer), and each upload from pageable memory waits for the copy: the last
    /// [`INT_LISTS`] lists are kept and handed out again (they are never written).
    fn ints(&self, v: &[usize]) -> Arc<CudaSlice<i32>> {
        let v: Vec<i32> = v.iter().map(|&x| x as i32).collect();
        let mut lists = self.int_lists.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(i) = lists.iter().position(|(k, _)| *k == v) {
            let hit = lists.remove(i);
            let d = hit.1.clone();
            lists.push(hit);
            return d;
        }
        let d = Arc::new(ok(self.stream.memcpy_stod(if v.is_empty() {
            &[0][..]
        } else {
            &v[..]
        })));
        if lists.len() >= INT_LISTS {
            lists.remove(0);
        }
        lists.push((v, d.clone()));
        d
    }

    /// `buf` was just written or allocated: int8.cu's quantized copy of it, if any, is stale.
    fn wrote(&self, buf: &CudaSlice<f32>) {
        use cudarc::driver::DevicePtr;
        let ptr = buf.device_ptr(&self.stream).0;
        let mut acts = self.i8_acts.lock().unwrap_or_else(|p| p.into_inner());
        acts.forget(ptr);
    }

    /// Time the op that follows until the returned span drops (`DLM_CUDA_PROFILE=1`).
    fn span(&self, name: impl FnOnce() -> String) -> Option<profile::Span<'_>> {
        self.prof.span(&self.stream, name)
    }

    fn zeros(&self, len: usize) -> Result<CudaSlice<f32>, RuntimeError> {
        self.stream.alloc_zeros::<f32>(len.max(1)).map_err(|e| {
            RuntimeError::InvalidRequest(format!(
                "cannot allocate {} MiB on cuda:{}: {e}",
                len.saturating_mul(4) >> 20,
                self.ordinal
            ))
        })
    }
}

impl Backend for CudaBackend {
    type Matrix = CudaMatrix;
    type Vector = CudaSlice<f32>;
    type Act = CudaAct;
    type Cache = CudaCache;

    fn name(&self) -> String {
        format!("cuda:{}", self.ordinal)
    }

    fn upload_matrix(&self, m: &Matrix, bytes: &[u8]) -> Result<CudaMatrix, RuntimeError> {
        let w = m.view(bytes);
        self.matrix(m.quant, m.rows, m.cols, w.data)
    }

    fn upload_vector(&self, v: &[f32]) -> Result<CudaSlice<f32>, RuntimeError> {
        self.upload(v)
    }

    fn alloc(&self, len: usize) -> Result<CudaAct, RuntimeError> {
        let buf = self.zeros(len)?;
        self.wrote(&buf);
        Ok(CudaAct { buf, len })
    }

    fn embed(&self, table: &CudaMatrix, tokens: &[u32], out: &mut CudaAct) {
        let _t = self.span(|| format!("embed n={}", tokens.len()));
        if tokens.is_empty() {
            return;
        }
        let t: Vec<usize> = tokens.iter().map(|&t| t as usize).collect();
        self.wrote(&out.buf);
        let t = self.ints(&t);
        let (n, cols) = (tokens.len() as i32, table.cols as i32);
        if let (Some(off), Some(ik), Some(s)) = (
            table.packed,
            self.k.int8.as_ref(),
            kernels::int8_slot(table.quant),
        ) {
            let mut b = self.stream.launch_builder(&ik.embed[s]);
            b.arg(&table.data)
                .arg(&off)
                .arg(&cols)
                .arg(&*t)
                .arg(&n)
                .arg(&mut out.buf);
            launch(b, rows_cfg(tokens.len(), 128));
            return;
        }
        let mut b = self.stream.launch_builder(&self.k.embed);
        b.arg(&table.data)
            .arg(&table.quant)
            .arg(&table.row_bytes)
            .arg(&cols)
            .arg(&*t)
            .arg(&n)
            .arg(&mut out.buf);
        launch(b, rows_cfg(tokens.len(), 256));
    }

    fn rmsnorm(&self, x: &CudaAct, w: &CudaSlice<f32>, eps: f32, out: &mut CudaAct) {
        let _t = self.span(|| format!("rmsnorm n={}", out.len / w.len().max(1)));
        let dim = w.len();
        let rows = out.len / dim.max(1);
        if rows == 0 {
            return;
        }
        self.wrote(&out.buf);
        let d = dim as i32;
        let mut b = self.stream.launch_builder(&self.k.rmsnorm);
        b.arg(&x.buf).arg(w).arg(&eps).arg(&d).arg(&mut out.buf);
        launch(b, rows_cfg(rows, 256));
    }

    fn matmul(&self, w: &CudaMatrix, x: &CudaAct, n: usize, out: &mut CudaAct) {
        let _t = self.span(|| {
            format!(
                "matmul {} n={n} [{}x{}]",
                kernels::type_name(w.quant),
                w.rows,
                w.cols
            )
        });
        matmul::matmul(self, w, x, n, out);
    }

    fn matmul_many(&self, ws: &[&CudaMatrix], x: &CudaAct, n: usize, outs: &mut [&mut CudaAct]) {
        let _t = self.span(|| {
            let w = ws.first().map_or((0, 0, 0), |w| (w.quant, w.rows, w.cols));
            let name = kernels::type_name(w.0);
            format!("matmul x{} {name} n={n} [{}x{}]", ws.len(), w.1, w.2)
        });
        if !matmul::many(self, ws, x, n, outs) {
            for (w, out) in ws.iter().zip(outs.iter_mut()) {
                matmul::matmul(self, w, x, n, out);
            }
        }
    }

    fn add_bias(&self, x: &mut CudaAct, bias: &CudaSlice<f32>) {
        let _t = self.span(|| format!("add_bias len={}", x.len));
        if x.len == 0 {
            return;
        }
        self.wrote(&x.buf);
        let (width, len) = (bias.len() as i32, x.len as i64);
        let mut b = self.stream.launch_builder(&self.k.add_bias);
        b.arg(&mut x.buf).arg(bias).arg(&width).arg(&len);
        launch(b, grid1(x.len, 256));
    }

    fn rope(
        &self,
        x: &mut CudaAct,
        width: usize,
        head_dim: usize,
        cos: &CudaSlice<f32>,
        sin: &CudaSlice<f32>,
        positions: &[usize],
    ) {
        let _t = self.span(|| format!("rope n={}", positions.len()));
        if positions.is_empty() {
            return;
        }
        self.wrote(&x.buf);
        let p = self.ints(positions);
        let (w, hd) = (width as i32, head_dim as i32);
        let mut b = self.stream.launch_builder(&self.k.rope);
        b.arg(&mut x.buf)
            .arg(&w)
            .arg(&hd)
            .arg(cos)
            .arg(sin)
            .arg(&*p);
        launch(b, rows_cfg(positions.len(), 128));
    }

    fn swiglu(&self, gate: &mut CudaAct, up: &CudaAct) {
        let _t = self.span(|| format!("swiglu len={}", gate.len));
        if gate.len == 0 {
            return;
        }
        self.wrote(&gate.buf);
        let len = gate.len as i64;
        let mut b = self.stream.launch_builder(&self.k.swiglu);
        b.arg(&mut gate.buf).arg(&up.buf).arg(&len);
        launch(b, grid1(gate.len, 256));
    }

    fn add_assign(&self, x: &mut CudaAct, y: &CudaAct) {
        let _t = self.span(|| format!("add_assign len={}", x.len));
        let len = x.len.min(y.len);
        if len == 0 {
            return;
        }
        self.wrote(&x.buf);
        let l = len as i64;
        let mut b = self.stream.launch_builder(&self.k.add_assign);
        b.arg(&mut x.buf).arg(&y.buf).arg(&l);
        launch(b, grid1(len, 256));
    }

    fn gather_rows(&self, x: &CudaAct, width: usize, rows: &[usize], out: &mut CudaAct) {
        let _t = self.span(|| format!("gather_rows n={}", rows.len()));
        if rows.is_empty() || width == 0 {
            return;
        }
        self.wrote(&out.buf);
        let r = self.ints(rows);
        let w = width as i32;
        let mut b = self.stream.launch_builder(&self.k.gather);
        b.arg(&x.buf).arg(&w).arg(&*r).arg(&mut out.buf);
        launch(b, rows_cfg(rows.len(), 256));
    }

    fn new_cache(&self, shape: CacheShape) -> Result<CudaCache, RuntimeError> {
        let per = shape
            .len
            .checked_mul(shape.kv_dim)
            .ok_or_else(|| RuntimeError::InvalidRequest("KV cache size overflows".into()))?;
        let mut c = CudaCache {
            shape,
            k: Vec::new(),
            v: Vec::new(),
            h: Vec::new(),
        };
        for _ in 0..shape.n_layers {
            c.k.push(self.zeros(per)?);
            c.v.push(self.zeros(per)?);
            if let Some(d) = shape.hidden_dim {
                c.h.push(self.zeros(shape.len.saturating_mul(d))?);
            }
        }
        Ok(c)
    }

    fn cache_shape(&self, cache: &CudaCache) -> CacheShape {
        cache.shape
    }

    fn store_kv(
        &self,
        cache: &mut CudaCache,
        layer: usize,
        positions: &[usize],
        k: &CudaAct,
        v: &CudaAct,
    ) {
        let _t = self.span(|| format!("store_kv n={}", positions.len()));
        let d = cache.shape.kv_dim;
        self.scatter(&mut cache.k[layer], d, positions, &k.buf);
        self.scatter(&mut cache.v[layer], d, positions, &v.buf);
    }

    fn store_hidden(&self, cache: &mut CudaCache, layer: usize, positions: &[usize], x: &CudaAct) {
        let _t = self.span(|| format!("store_hidden n={}", positions.len()));
        if let (Some(d), Some(h)) = (cache.shape.hidden_dim, cache.h.get_mut(layer)) {
            self.scatter(h, d, positions, &x.buf);
        }
    }

    fn load_hidden(&self, cache: &CudaCache, layer: usize, positions: &[usize], out: &mut CudaAct) {
        let _t = self.span(|| format!("load_hidden n={}", positions.len()));
        let d = cache
            .shape
            .hidden_dim
            .expect("checked: the cache keeps hidden states");
        if positions.is_empty() {
            return;
        }
        self.wrote(&out.buf);
        let r = self.ints(positions);
        let w = d as i32;
        let mut b = self.stream.launch_builder(&self.k.gather);
        b.arg(&cache.h[layer]).arg(&w).arg(&*r).arg(&mut out.buf);
        launch(b, rows_cfg(positions.len(), 256));
    }

    fn attention(
        &self,
        args: AttentionArgs<'_, Self>,
        out: &mut CudaAct,
    ) -> Option<LayerAttention> {
        let _t = self.span(|| format!("attention n={} outside={}", args.n, args.outside.len()));
        self.wrote(&out.buf);
        attention::attention(self, args, out)
    }

    fn to_host(&self, x: &CudaAct) -> Vec<f32> {
        let _t = self.span(|| format!("to_host len={}", x.len));
        let mut v = ok(self.stream.memcpy_dtov(&x.buf));
        v.truncate(x.len);
        v
    }

    fn propose(
        &self,
        logits: &CudaAct,
        vocab: usize,
        spec: &ProposeSpec,
        rng: &mut Rng,
    ) -> Vec<Proposal> {
        let _t = self.span(|| format!("propose rows={}", logits.len / vocab.max(1)));
        propose::propose(self, logits, vocab, spec, rng)
    }
}

impl Drop for CudaBackend {
    fn drop(&mut self) {
        let r = self.prof.report();
        if !r.is_empty() {
            eprint!("{r}");
        }
    }
}

impl CudaBackend {
    fn scatter(
        &self,
        dst: &mut CudaSlice<f32>,
        width: usize,
        positions: &[usize],
        src: &CudaSlice<f32>,
    ) {
        if positions.is_empty() || width == 0 {
            return;
        }
        let r = self.ints(positions);
        let w = width as i32;
        let mut b = self.stream.launch_builder(&self.k.scatter);
        b.arg(dst).arg(&w).arg(&*r).arg(src);
        launch(b, rows_cfg(positions.len(), 256));
    }
}
