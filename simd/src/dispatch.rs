//! The kernel table: one set of row kernels per instruction set, chosen once at run time and
//! cached. `DLM_FORCE_SCALAR=1` forces the scalar table (for debugging and comparisons).

use crate::act::ActBlock;
use crate::scalar;
use dlm_formats::quant::{BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, as_blocks};
use std::sync::OnceLock;

/// `out[t] = Σ_i w[i] · a_t[i]` for one stored weight row `w` (whole blocks) and the tokens'
/// activations `a` (`[out.len(), n_blocks]`, one `ActBlock` per 32 columns).
pub type RowKernel = fn(w: &[u8], a: &[ActBlock], out: &mut [f32]);

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
