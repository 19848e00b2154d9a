//! The CUDA C kernels, compiled by NVRTC for the device's architecture when the backend starts
//! (about a second), so the build needs no CUDA compiler. Each `.cu` file is its own NVRTC
//! program with `common.cuh` in front: `kernels.cu` (every op, simple) must compile; a faster
//! file that does not (`matmul.cu`, `flash.cu`, `int8.cu`, ..) is reported on stderr and in
//! [`crate::CudaBackend::kernel_report`], and the ops it serves fall back to `kernels.cu`, so one
//! slip in a new kernel costs speed, never the backend. `DLM_CUDA_STRICT=1` makes it an error.

use crate::device_err;
use cudarc::driver::{CudaContext, CudaFunction, CudaModule};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use dlm_formats::QuantType;
use dlm_runtime::RuntimeError;
use std::sync::Arc;

/// Helpers every file shares.
const COMMON: &str = include_str!("common.cuh");
/// The first, simple kernels: every op.
const CORE: &str = include_str!("kernels.cu");
/// Few-token matmul, dequantize-to-bf16 and f32-to-half for the cuBLAS path.
const MATMUL: &str = include_str!("matmul.cu");
/// Tiled attention.
const FLASH: &str = include_str!("flash.cu");
/// Few-row matmul on tensor cores (sm_80+).
const MMA: &str = include_str!("mma.cu");
/// Tiled attention on tensor cores (sm_80+).
const FLASH_TC: &str = include_str!("flash_tc.cu");
/// Greedy proposals of every confidence rule.
const PROPOSE: &str = include_str!("propose.cu");
/// Integer matmul of quantized weights against int8 activations, as the CPU computes it
/// (sm_80+).
const INT8: &str = include_str!("int8.cu");

/// Weight rows per matmul block (one warp each); must match `MM_WARPS` in kernels.cu.
pub const MM_WARPS: u32 = 8;
/// Tokens per matmul block; must match `MM_TOKENS` in kernels.cu.
pub const MM_TOKENS: u32 = 8;
/// Rows per block of `matmul_few_*`: `FEW_WARPS * FEW_ROWS` in matmul.cu.
pub const FEW_BLOCK_ROWS: u32 = 16;
/// Threads per block of `matmul_few_*`: `32 * FEW_WARPS` in matmul.cu.
pub const FEW_THREADS: u32 = 128;

/// The kernel type id of a storage type (common.cuh's `Q_*`; ggml's small ids, not the
/// file's 1000.. ids).
pub fn kernel_type(q: QuantType) -> i32 {
    match q {
        QuantType::F32 => 0,
        QuantType::F16 => 1,
        QuantType::BF16 => 2,
        QuantType::Q8_0 => 8,
        QuantType::Q4_0 => 9,
        QuantType::Q4K => 12,
        QuantType::Q6K => 14,
    }
}

/// Kernel type ids in the order of [`MatmulKernels`]' tables, with their kernel-name suffix.
pub const TYPES: [(i32, &str); 7] = [
    (0, "f32"),
    (1, "f16"),
    (2, "bf16"),
    (8, "q8_0"),
    (9, "q4_0"),
    (12, "q4_k"),
    (14, "q6_k"),
];

/// The name of kernel type `q` (`"?"` for an unknown id).
pub fn type_name(q: i32) -> &'static str {
    TYPES.iter().find(|t| t.0 == q).map_or("?", |t| t.1)
}

/// Where kernel type `q` sits in [`TYPES`].
pub fn slot(q: i32) -> Option<usize> {
    TYPES.iter().position(|t| t.0 == q)
}

/// Every kernel of kernels.cu, loaded.
pub struct Kernels {
    pub matmul: CudaFunction,
    pub embed: CudaFunction,
    pub rmsnorm: CudaFunction,
    pub add_bias: CudaFunction,
    pub add_assign: CudaFunction,
    pub swiglu: CudaFunction,
    pub rope: CudaFunction,
    pub gather: CudaFunction,
    pub scatter: CudaFunction,
    pub attention: CudaFunction,
    pub propose_llada_greedy: CudaFunction,
    /// matmul.cu, when it compiled.
    pub mm: Option<MatmulKernels>,
    /// flash.cu, when it compiled.
    pub flash: Option<CudaFunction>,
    /// flash_tc.cu (`attention_flash_tc`, `attention_combine`, `attention_flash_tc_f16`), when
    /// it compiled.
    pub flash_tc: Option<(CudaFunction, CudaFunction, CudaFunction)>,
    /// mma.cu, when it compiled.
    pub mma: Option<MmaKernels>,
    /// int8.cu, when it compiled.
    pub int8: Option<Int8Kernels>,
    /// propose.cu's `propose_greedy`, when it compiled.
    pub propose_greedy: Option<CudaFunction>,
    /// One line per file: compiled, or why not.
    pub report: Vec<String>,
}

/// The kernels of matmul.cu, per weight type in [`TYPES`] order.
pub struct MatmulKernels {
    pub few: Vec<CudaFunction>,
    pub dequant: Vec<CudaFunction>,
    pub to_half: CudaFunction,
}

/// The kernels of mma.cu: `matmul_mma_*` per weight type in [`TYPES`] order, and the sum of
/// split partials.
pub struct MmaKernels {
    pub mma: Vec<CudaFunction>,
    pub sum_splits: CudaFunction,
}

/// The kernels of int8.cu: the activation quantizer, the sum of split partials, and per weight
/// type in [`INT8_TYPES`] order: `matmul_i8_*` (32 rows a block), `matmul_i8_*_m1` (16 rows),
/// `pack_*` (file layout to int8.cu's), `dequant_bf16_packed_*` and `embed_packed_*`.
pub struct Int8Kernels {
    pub quantize: CudaFunction,
    pub sum_splits: CudaFunction,
    pub mm: Vec<CudaFunction>,
    pub mm_m1: Vec<CudaFunction>,
    pub pack: Vec<CudaFunction>,
    pub dequant: Vec<CudaFunction>,
    pub embed: Vec<CudaFunction>,
}

/// Kernel type ids that int8.cu multiplies, with their kernel-name suffix. q6_k is not among
/// them yet (its 16-value sub-block scales need the k16 integer mma): it keeps the bf16 paths.
pub const INT8_TYPES: [(i32, &str); 3] = [(8, "q8_0"), (9, "q4_0"), (12, "q4_k")];

/// Where kernel type `q` sits in [`INT8_TYPES`].
pub fn int8_slot(q: i32) -> Option<usize> {
    INT8_TYPES.iter().position(|t| t.0 == q)
}

/// `compute_XY` for NVRTC; the architectures it knows need a static name.
fn arch(major: i32, minor: i32) -> &'static str {
    match (major, minor) {
        (7, 0) => "compute_70",
        (7, 5) => "compute_75",
        (8, 0) => "compute_80",
        (8, 6) => "compute_86",
        (8, 9) => "compute_89",
        (9, 0) => "compute_90",
        (10, 0) => "compute_100",
        (12, 0) => "compute_120",
        _ => "compute_75",
    }
}

/// Compile `src` (after common.cuh) and load it.
fn build(ctx: &Arc<CudaContext>, arch: &'static str, src: &str) -> Result<Arc<CudaModule>, String> {
    // DLM_CUDA_NVRTC_OPTS: extra NVRTC options, whitespace-separated, for tuning a kernel's
    // compile-time constants on the device without a rebuild (`-DI8_UNROLL=4`).
    let extra = std::env::var("DLM_CUDA_NVRTC_OPTS").unwrap_or_default();
    let opts = CompileOptions {
        arch: Some(arch),
        options: extra.split_whitespace().map(String::from).collect(),
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(format!("{COMMON}\n{src}"), opts)
        .map_err(|e| format!("NVRTC: {e}"))?;
    ctx.load_module(ptx).map_err(|e| format!("load: {e}"))
}

fn function(m: &Arc<CudaModule>, name: &str) -> Result<CudaFunction, String> {
    m.load_function(name)
        .map_err(|e| format!("kernel {name}: {e}"))
}

impl Kernels {
    /// Compile and load the kernels for `ctx`'s device.
    pub fn compile(ctx: &Arc<CudaContext>) -> Result<Self, RuntimeError> {
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| device_err("compute capability", e))?;
        let arch = arch(major, minor);
        let m = build(ctx, arch, CORE)
            .map_err(|e| device_err("the kernels (kernels.cu) did not compile", e))?;
        let f = |name: &str| function(&m, name).map_err(|e| device_err("kernels.cu", e));
        let mut report = vec![format!("kernels.cu: ok ({arch})")];
        let strict = std::env::var("DLM_CUDA_STRICT").as_deref() == Ok("1");
        let mut optional = |file: &str, r: Result<(), String>| -> Result<(), RuntimeError> {
            match r {
                Ok(()) => report.push(format!("{file}: ok")),
                Err(e) => {
                    let line = format!("{file}: not used ({e})");
                    eprintln!("dlm-cuda: {line}");
                    if strict {
                        return Err(device_err(file, e));
                    }
                    report.push(line);
                }
            }
            Ok(())
        };
        let mm = build(ctx, arch, MATMUL).and_then(|m| {
            let few = TYPES
                .iter()
                .map(|(_, n)| function(&m, &format!("matmul_few_{n}")))
                .collect::<Result<Vec<_>, _>>()?;
            let dequant = TYPES
                .iter()
                .map(|(_, n)| function(&m, &format!("dequant_bf16_{n}")))
                .collect::<Result<Vec<_>, _>>()?;
            Ok(MatmulKernels {
                few,
                dequant,
                to_half: function(&m, "to_half")?,
            })
        });
        let (mm, e) = split(mm);
        optional("matmul.cu", e)?;
        let mma = build(ctx, arch, MMA).and_then(|m| {
            Ok(MmaKernels {
                mma: TYPES
                    .iter()
                    .map(|(_, n)| function(&m, &format!("matmul_mma_{n}")))
                    .collect::<Result<Vec<_>, _>>()?,
                sum_splits: function(&m, "mma_sum_splits")?,
            })
        });
        let (mma, e) = split(mma);
        optional("mma.cu", e)?;
        let ftc = build(ctx, arch, FLASH_TC).and_then(|m| {
            Ok((
                function(&m, "attention_flash_tc")?,
                function(&m, "attention_combine")?,
                function(&m, "attention_flash_tc_f16")?,
            ))
        });
        let (flash_tc, e) = split(ftc);
        optional("flash_tc.cu", e)?;
        let i8k = build(ctx, arch, INT8).and_then(|m| {
            let per_type = |prefix: &str, suffix: &str| {
                INT8_TYPES
                    .iter()
                    .map(|(_, n)| function(&m, &format!("{prefix}{n}{suffix}")))
                    .collect::<Result<Vec<_>, _>>()
            };
            Ok(Int8Kernels {
                quantize: function(&m, "quantize_act_i8")?,
                sum_splits: function(&m, "i8_sum_splits")?,
                mm: per_type("matmul_i8_", "")?,
                mm_m1: per_type("matmul_i8_", "_m1")?,
                pack: per_type("pack_", "")?,
                dequant: per_type("dequant_bf16_packed_", "")?,
                embed: per_type("embed_packed_", "")?,
            })
        });
        let (int8, e) = split(i8k);
        optional("int8.cu", e)?;
        let pg = build(ctx, arch, PROPOSE).and_then(|m| function(&m, "propose_greedy"));
        let (propose_greedy, e) = split(pg);
        optional("propose.cu", e)?;
        let flash = build(ctx, arch, FLASH).and_then(|m| function(&m, "attention_flash"));
        let (flash, e) = split(flash);
        optional("flash.cu", e)?;
        Ok(Kernels {
            matmul: f("matmul_w")?,
            embed: f("embed")?,
            rmsnorm: f("rmsnorm")?,
            add_bias: f("add_bias")?,
            add_assign: f("add_assign")?,
            swiglu: f("swiglu")?,
            rope: f("rope")?,
            gather: f("gather")?,
            scatter: f("scatter")?,
            attention: f("attention")?,
            propose_llada_greedy: f("propose_llada_greedy")?,
            mm,
            flash,
            flash_tc,
            mma,
            int8,
            propose_greedy,
            report,
        })
    }
}

/// `Ok(x)` to `(Some(x), Ok(()))`, `Err(e)` to `(None, Err(e))`.
fn split<T>(r: Result<T, String>) -> (Option<T>, Result<(), String>) {
    match r {
        Ok(x) => (Some(x), Ok(())),
        Err(e) => (None, Err(e)),
    }
}
