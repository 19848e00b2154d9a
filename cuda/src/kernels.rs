//! The CUDA C kernels (`kernels.cu`), compiled by NVRTC for the device's architecture when
//! the backend starts (about a second), so the build needs no CUDA compiler.

use crate::device_err;
use cudarc::driver::{CudaContext, CudaFunction};
use cudarc::nvrtc::{CompileOptions, compile_ptx_with_opts};
use dlm_runtime::RuntimeError;
use std::sync::Arc;

/// The kernel source.
const SOURCE: &str = include_str!("kernels.cu");

/// Weight rows per matmul block (one warp each); must match `MM_WARPS` in kernels.cu.
pub const MM_WARPS: u32 = 8;
/// Tokens per matmul block; must match `MM_TOKENS` in kernels.cu.
pub const MM_TOKENS: u32 = 8;

/// Every kernel, loaded.
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

impl Kernels {
    /// Compile and load the kernels for `ctx`'s device.
    pub fn compile(ctx: &Arc<CudaContext>) -> Result<Self, RuntimeError> {
        let (major, minor) = ctx
            .compute_capability()
            .map_err(|e| device_err("compute capability", e))?;
        let opts = CompileOptions {
            arch: Some(arch(major, minor)),
            ..Default::default()
        };
        let ptx = compile_ptx_with_opts(SOURCE, opts)
            .map_err(|e| device_err("NVRTC could not compile the kernels", e))?;
        let m = ctx
            .load_module(ptx)
            .map_err(|e| device_err("loading the kernels", e))?;
        let f = |name: &str| {
            m.load_function(name)
                .map_err(|e| device_err(&format!("kernel {name}"), e))
        };
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
        })
    }
}
