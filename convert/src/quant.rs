//! The quantization policy (which storage type each tensor gets) and the encoder seam that
//! turns f32 values into the bytes of that type.

use crate::error::{ConvertError, Result};
use dlm_formats::QuantType;
use rayon::prelude::*;

/// What a tensor is, as far as choosing its storage type goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TensorRole {
    /// Token embedding `[vocab, dim]` (rows are gathered, not multiplied).
    Embedding,
    /// Output head `[vocab, dim]`.
    Head,
    /// Query and key projections.
    AttnQk,
    /// Value projection (more sensitive to quantization).
    AttnV,
    /// Attention output projection.
    AttnOut,
    /// SwiGLU gate and up projections.
    FfnGateUp,
    /// SwiGLU down projection (more sensitive to quantization).
    FfnDown,
    /// RMSNorm weight vector: always f32.
    Norm,
    /// Bias vector: always f32.
    Bias,
}

/// Decides a [`QuantType`] per tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuantPolicy {
    /// Every matmul weight and the embedding in one type; norms and biases f32.
    Uniform(QuantType),
    /// q4_k for most matmuls, q6_k for the sensitive ones (value, down projection, head),
    /// q8_0 for the embedding; norms and biases f32.
    Mixed,
}

impl QuantPolicy {
    /// Parse a CLI name: a quant type name (`f32`, `f16`, `bf16`, `q8_0`, ...) or `mixed`.
    pub fn from_name(name: &str) -> Result<Self> {
        if name == "mixed" {
            return Ok(QuantPolicy::Mixed);
        }
        QuantType::from_name(name)
            .map(QuantPolicy::Uniform)
            .ok_or_else(|| ConvertError::UnknownPolicy(name.to_string()))
    }

    /// The name written to `general.quant_policy`.
    pub fn name(&self) -> &'static str {
        match self {
            QuantPolicy::Uniform(q) => q.name(),
            QuantPolicy::Mixed => "mixed",
        }
    }

    /// The storage type of a tensor of `role` and row-major `shape`. A block type whose block
    /// does not divide the row falls back to q8_0, then to f16.
    pub fn choose(&self, role: TensorRole, shape: &[u64]) -> QuantType {
        use QuantType as Q;
        use TensorRole as R;
        let wanted = match (self, role) {
            (_, R::Norm | R::Bias) => return Q::F32,
            (QuantPolicy::Uniform(q), _) => *q,
            (QuantPolicy::Mixed, R::Embedding) => Q::Q8_0,
            (QuantPolicy::Mixed, R::Head | R::AttnV | R::FfnDown) => Q::Q6K,
            (QuantPolicy::Mixed, R::AttnQk | R::AttnOut | R::FfnGateUp) => Q::Q4K,
        };
        let row_len = shape.last().copied().unwrap_or(1);
        [wanted, Q::Q8_0, Q::F16]
            .into_iter()
            .find(|q| row_len.is_multiple_of(q.block_len() as u64))
            .unwrap_or(Q::F16)
    }
}

/// Whether this build can encode `quant` (every type of the table: the block quantizers of
/// `dlm_formats::quant` are wired in).
pub fn encoder_available(quant: QuantType) -> bool {
    dlm_formats::ALL_QUANT_TYPES.contains(&quant)
}

/// The bytes of `values` (row-major, `shape`) stored as `quant`.
///
/// Blocks never straddle rows: the row length must be a whole number of blocks
/// (`BadQuantShape` otherwise). Non-finite values, values beyond f16 range for f16, and block
/// scales that overflow f16 are `Encode` errors (the caller fills in the tensor name).
pub fn encode_tensor(quant: QuantType, shape: &[u64], values: &[f32]) -> Result<Vec<u8>> {
    let n: u64 = shape.iter().product();
    assert_eq!(
        n,
        values.len() as u64,
        "encode_tensor: shape {shape:?} does not match {} values",
        values.len()
    );
    if !encoder_available(quant) {
        return Err(ConvertError::QuantUnavailable { quant });
    }
    let n_bytes = quant
        .tensor_bytes(shape)
        .and_then(|b| usize::try_from(b).ok())
        .ok_or_else(|| ConvertError::BadQuantShape {
            quant,
            tensor: String::new(),
            shape: shape.to_vec(),
        })?;
    let mut out = vec![0u8; n_bytes];
    if values.is_empty() {
        return Ok(out);
    }
    // Rows are independent: quantize chunks of whole rows on every core (the q4_k search is
    // the slow part of converting a large model).
    let row_len = shape.last().copied().unwrap_or(1).max(1) as usize;
    let row_bytes = n_bytes / (values.len() / row_len).max(1);
    let rows_per_chunk = (1 << 16) / row_len + 1;
    out.par_chunks_mut(row_bytes * rows_per_chunk)
        .zip(values.par_chunks(row_len * rows_per_chunk))
        .try_for_each(|(dst, src)| dlm_formats::quant::quantize(quant, src, dst))
        .map_err(|source| ConvertError::Encode {
            tensor: String::new(),
            quant,
            source,
        })?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policy_keeps_norms_f32_and_falls_back_on_odd_rows() {
        let p = QuantPolicy::from_name("q4_k").unwrap();
        assert_eq!(p.choose(TensorRole::Norm, &[4096]), QuantType::F32);
        assert_eq!(
            p.choose(TensorRole::FfnGateUp, &[11008, 4096]),
            QuantType::Q4K
        );
        assert_eq!(p.choose(TensorRole::FfnDown, &[4096, 96]), QuantType::Q8_0);
        assert_eq!(p.choose(TensorRole::FfnDown, &[4096, 100]), QuantType::F16);
        let m = QuantPolicy::Mixed;
        assert_eq!(m.choose(TensorRole::AttnV, &[512, 4096]), QuantType::Q6K);
        assert_eq!(m.choose(TensorRole::Bias, &[512]), QuantType::F32);
        assert!(matches!(
            QuantPolicy::from_name("q3"),
            Err(ConvertError::UnknownPolicy(_))
        ));
        assert_eq!(QuantPolicy::from_name("bf16").unwrap().name(), "bf16");
    }

    #[test]
    fn float_encoders_and_the_int_seam() {
        let v = [1.0f32, -2.0];
        assert_eq!(encode_tensor(QuantType::F32, &[2], &v).unwrap().len(), 8);
        assert_eq!(
            encode_tensor(QuantType::F16, &[2], &v).unwrap(),
            vec![0x00, 0x3c, 0x00, 0xc0]
        );
        assert_eq!(
            encode_tensor(QuantType::BF16, &[1, 2], &v).unwrap(),
            vec![0x80, 0x3f, 0x00, 0xc0]
        );
        let e = encode_tensor(QuantType::Q4K, &[1, 2], &v).unwrap_err();
        assert!(e.to_string().contains("q4_k"), "{e}");
        let row: Vec<f32> = (0..64).map(|i| i as f32 / 8.0 - 4.0).collect();
        assert_eq!(
            encode_tensor(QuantType::Q8_0, &[2, 32], &row)
                .unwrap()
                .len(),
            2 * 34
        );
        assert_eq!(
            encode_tensor(QuantType::Q4K, &[1, 256], &[0.5; 256])
                .unwrap()
                .len(),
            144
        );
        let e = encode_tensor(QuantType::F16, &[1], &[1e6]).unwrap_err();
        assert!(matches!(e, ConvertError::Encode { .. }), "{e}");
    }
}
