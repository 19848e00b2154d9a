//! Block quantization: the block structs of every quantized type, scalar quantize and
//! dequantize per type, and the generic entry points the converter and runtime use.
//!
//! Policy for bad input: `quantize` rejects NaN and ±inf (error naming the element), values
//! that overflow the target (an f16 or a block's f16 scale), and lengths that are not a whole
//! number of blocks. `dequantize` never rejects values: NaN/inf stored in a float tensor come
//! out as NaN/inf.

mod blocks;
mod q4_0;
mod q4_k;
mod q6_k;
mod q8_0;

pub use blocks::{
    Block, BlockQ4_0, BlockQ4K, BlockQ6K, BlockQ8_0, QK_K, QK4_0, QK8_0, as_blocks, as_blocks_mut,
    blocks_as_bytes,
};
pub use q4_0::{dequantize_row_q4_0, quantize_row_q4_0};
pub use q4_k::{dequantize_row_q4_k, pack_scales_q4k, quantize_row_q4_k, unpack_scales_q4k};
pub use q6_k::{dequantize_row_q6_k, q6k_position, q6k_value, quantize_row_q6_k};
pub use q8_0::{dequantize_row_q8_0, quantize_row_q8_0};

use crate::{FormatError, QuantType};
use half::{bf16, f16};

/// f16 little-endian bits of `x` (round to nearest even).
pub fn f16_bits(x: f32) -> [u8; 2] {
    f16::from_f32(x).to_le_bytes()
}

/// The f32 value of f16 little-endian bits.
pub fn f16_val(b: [u8; 2]) -> f32 {
    f16::from_le_bytes(b).to_f32()
}

fn invalid(what: String, offset: usize) -> FormatError {
    FormatError::Invalid {
        what,
        offset: offset as u64,
    }
}

/// Check lengths: `src_len` elements of `q` must be whole blocks filling exactly `dst_bytes`.
fn check_lengths(
    q: QuantType,
    n_elems: usize,
    n_bytes: usize,
    op: &str,
) -> Result<(), FormatError> {
    if !n_elems.is_multiple_of(q.block_len()) {
        return Err(invalid(
            format!(
                "{op} {q}: {n_elems} values are not a whole number of {}-value blocks",
                q.block_len()
            ),
            0,
        ));
    }
    let want = n_elems / q.block_len() * q.block_bytes();
    if n_bytes != want {
        return Err(invalid(
            format!("{op} {q}: {n_elems} values need {want} bytes, buffer has {n_bytes}"),
            0,
        ));
    }
    Ok(())
}

/// Quantize `src` into the stored bytes of type `q` (`dst.len() == q.row_bytes(src.len())`).
///
/// Errors (`FormatError::Invalid`, whose `offset` is the element index in `src`): a length that
/// is not a whole number of blocks or a wrong `dst` size, a NaN or infinite value, a value that
/// overflows f16/bf16, or a block whose scale overflows f16.
pub fn quantize(q: QuantType, src: &[f32], dst: &mut [u8]) -> Result<(), FormatError> {
    quantize_weighted(q, src, None, dst)
}

/// `quantize` with importance `weights` (`[src.len()]`, finite, >= 0) for the error that the
/// `q4_k` and `q6_k` rounding searches minimise; the other types ignore them.
pub fn quantize_weighted(
    q: QuantType,
    src: &[f32],
    weights: Option<&[f32]>,
    dst: &mut [u8],
) -> Result<(), FormatError> {
    check_lengths(q, src.len(), dst.len(), "quantize")?;
    if let Some(i) = src.iter().position(|v| !v.is_finite()) {
        return Err(invalid(
            format!("quantize {q}: value {} is not finite", src[i]),
            i,
        ));
    }
    if let Some(w) = weights {
        if w.len() != src.len() {
            return Err(invalid(
                format!(
                    "quantize {q}: {} importance weights for {} values",
                    w.len(),
                    src.len()
                ),
                0,
            ));
        }
        if let Some(i) = w.iter().position(|v| !(v.is_finite() && *v >= 0.0)) {
            return Err(invalid(
                format!(
                    "quantize {q}: importance weight {} is not finite and >= 0",
                    w[i]
                ),
                i,
            ));
        }
    }
    let overflow =
        |i: usize, v: f32, to: &str| invalid(format!("quantize {q}: value {v} overflows {to}"), i);
    // scale bits of every block, checked for f16 overflow after quantizing
    let scales: Vec<[u8; 2]> = match q {
        QuantType::F32 => {
            for (o, v) in dst.chunks_exact_mut(4).zip(src) {
                o.copy_from_slice(&v.to_le_bytes());
            }
            Vec::new()
        }
        QuantType::F16 => {
            for (i, (o, &v)) in dst.chunks_exact_mut(2).zip(src).enumerate() {
                let h = f16::from_f32(v);
                if h.is_infinite() {
                    return Err(overflow(i, v, "f16"));
                }
                o.copy_from_slice(&h.to_le_bytes());
            }
            Vec::new()
        }
        QuantType::BF16 => {
            for (i, (o, &v)) in dst.chunks_exact_mut(2).zip(src).enumerate() {
                let h = bf16::from_f32(v);
                if h.is_infinite() {
                    return Err(overflow(i, v, "bf16"));
                }
                o.copy_from_slice(&h.to_le_bytes());
            }
            Vec::new()
        }
        QuantType::Q8_0 => {
            let b = blocks_mut::<BlockQ8_0>(dst)?;
            quantize_row_q8_0(src, b);
            b.iter().map(|b| b.d).collect()
        }
        QuantType::Q4_0 => {
            let b = blocks_mut::<BlockQ4_0>(dst)?;
            quantize_row_q4_0(src, b);
            b.iter().map(|b| b.d).collect()
        }
        QuantType::Q4K => {
            let b = blocks_mut::<BlockQ4K>(dst)?;
            quantize_row_q4_k(src, weights, b);
            b.iter().flat_map(|b| [b.d, b.dmin]).collect()
        }
        QuantType::Q6K => {
            let b = blocks_mut::<BlockQ6K>(dst)?;
            quantize_row_q6_k(src, weights, b);
            b.iter().map(|b| b.d).collect()
        }
    };
    let per_block = scales
        .len()
        .checked_div(src.len() / q.block_len())
        .unwrap_or(0);
    if let Some(k) = scales.iter().position(|&s| !f16_val(s).is_finite()) {
        let blk = k / per_block.max(1);
        let x = &src[blk * q.block_len()..(blk + 1) * q.block_len()];
        let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
        return Err(invalid(
            format!("quantize {q}: block {blk} (max |x| = {amax}) needs a scale beyond f16"),
            blk * q.block_len(),
        ));
    }
    Ok(())
}

fn blocks_mut<B: Block>(dst: &mut [u8]) -> Result<&mut [B], FormatError> {
    as_blocks_mut::<B>(dst).ok_or_else(|| invalid(format!("{}: partial block", B::QUANT), 0))
}

fn blocks<B: Block>(src: &[u8]) -> Result<&[B], FormatError> {
    as_blocks::<B>(src).ok_or_else(|| invalid(format!("{}: partial block", B::QUANT), 0))
}

/// Dequantize the stored bytes `src` of type `q` into `dst` (`src.len() ==
/// q.row_bytes(dst.len())`). Errors only on sizes that do not match.
pub fn dequantize(q: QuantType, src: &[u8], dst: &mut [f32]) -> Result<(), FormatError> {
    check_lengths(q, dst.len(), src.len(), "dequantize")?;
    match q {
        QuantType::F32 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(4)) {
                *o = f32::from_le_bytes([b[0], b[1], b[2], b[3]]);
            }
        }
        QuantType::F16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = f16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        QuantType::BF16 => {
            for (o, b) in dst.iter_mut().zip(src.chunks_exact(2)) {
                *o = bf16::from_le_bytes([b[0], b[1]]).to_f32();
            }
        }
        QuantType::Q8_0 => dequantize_row_q8_0(blocks(src)?, dst),
        QuantType::Q4_0 => dequantize_row_q4_0(blocks(src)?, dst),
        QuantType::Q4K => dequantize_row_q4_k(blocks(src)?, dst),
        QuantType::Q6K => dequantize_row_q6_k(blocks(src)?, dst),
    }
    Ok(())
}
