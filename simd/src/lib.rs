//! Matmul kernels per weight type. Every fast kernel has a scalar reference it is tested
//! against; the fastest kernel this CPU supports is chosen once at run time.

use dlm_formats::QuantType;
use rayon::prelude::*;

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
        self.quant.row_bytes(self.cols as u64).expect("WeightRef: bad row length") as usize
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
    let row = w.row(r);
    match w.quant {
        QuantType::F32 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        QuantType::F16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = half::f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        QuantType::BF16 => {
            for (o, b) in out.iter_mut().zip(row.chunks_exact(2)) {
                *o = half::bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        q => panic!("dequantize_row: {q} not supported yet"),
    }
}

/// y = x · Wᵀ; x is `[n, w.cols]`, y is `[n, w.rows]`, both row-major f32.
pub fn matmul(w: &WeightRef<'_>, x: &[f32], n: usize, y: &mut [f32]) {
    assert_eq!(x.len(), n * w.cols, "matmul: x length");
    assert_eq!(y.len(), n * w.rows, "matmul: y length");
    // Scalar reference path: threads over output rows, one dequantized row at a time.
    let mut yt = vec![0f32; w.rows * n]; // [rows, n]
    yt.par_chunks_mut(n).enumerate().for_each(|(r, out)| {
        let mut wr = vec![0f32; w.cols];
        dequantize_row(w, r, &mut wr);
        for (t, o) in out.iter_mut().enumerate() {
            let xt = &x[t * w.cols..(t + 1) * w.cols];
            *o = wr.iter().zip(xt).map(|(a, b)| a * b).sum();
        }
    });
    for r in 0..w.rows {
        for t in 0..n {
            y[t * w.rows + r] = yt[r * n + t];
        }
    }
}
