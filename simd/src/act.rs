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
