//! The model's shape and decoding defaults, read from a `.dlm` file's `model.*` and
//! `diffusion.*` keys.

use crate::RuntimeError;
use dlm_formats::DlmFile;
pub use dlm_formats::Family;
use dlm_formats::keys::{diffusion, model};

/// Transformer dimensions (names as in llama2.c).
#[derive(Debug, Clone, PartialEq)]
pub struct ModelConfig {
    /// Family the file was converted from.
    pub family: Family,
    /// Residual width.
    pub dim: usize,
    /// SwiGLU hidden width.
    pub hidden_dim: usize,
    /// Transformer blocks.
    pub n_layers: usize,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads.
    pub n_kv_heads: usize,
    /// Embedding / head rows.
    pub vocab_size: usize,
    /// Longest canvas (prompt + generation).
    pub seq_len: usize,
    /// RoPE base.
    pub rope_theta: f32,
    /// RMSNorm epsilon.
    pub norm_eps: f32,
    /// q/k/v carry biases.
    pub qkv_bias: bool,
    /// Head shares the embedding.
    pub tied_head: bool,
    /// Token i is predicted from row i-1.
    pub shift_logits: bool,
    /// The mask token.
    pub mask_id: u32,
}

impl ModelConfig {
    /// `dim / n_heads`.
    pub fn head_dim(&self) -> usize {
        self.dim / self.n_heads
    }

    /// Width of one position's keys: `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim()
    }

    /// Read and check the `model.*` keys.
    pub fn from_file(file: &DlmFile) -> Result<Self, RuntimeError> {
        let name = file.get_str(model::FAMILY)?;
        let family = Family::from_name(name).ok_or_else(|| {
            RuntimeError::Unsupported(format!(
                "model family {name:?} (this build runs llada and dream)"
            ))
        })?;
        let cfg = ModelConfig {
            family,
            dim: file.get_u32(model::DIM)? as usize,
            hidden_dim: file.get_u32(model::HIDDEN_DIM)? as usize,
            n_layers: file.get_u32(model::N_LAYERS)? as usize,
            n_heads: file.get_u32(model::N_HEADS)? as usize,
            n_kv_heads: file.get_u32(model::N_KV_HEADS)? as usize,
            vocab_size: file.get_u32(model::VOCAB_SIZE)? as usize,
            seq_len: file.get_u32(model::MAX_SEQ_LEN)? as usize,
            rope_theta: file.get_f32(model::ROPE_THETA)?,
            norm_eps: file.get_f32(model::NORM_EPS)?,
            qkv_bias: file.get_bool(model::QKV_BIAS)?,
            tied_head: file.get_bool(model::TIED_HEAD)?,
            shift_logits: file.get_bool(model::SHIFT_LOGITS)?,
            mask_id: file.get_u32(diffusion::MASK_ID)?,
        };
        cfg.check()?;
        // The RoPE tables are built at load: ask for their memory fallibly first, so a process
        // under a memory limit gets an error instead of an abort.
        crate::alloc::check_bytes(
            cfg.seq_len * cfg.head_dim() * 4,
            "the RoPE tables (max_seq_len × head_dim f32)",
        )?;
        Ok(cfg)
    }

    fn check(&self) -> Result<(), RuntimeError> {
        let bad = |what: String| Err(RuntimeError::Unsupported(what));
        // Limits shared with the converter keep every later size computation far from
        // overflow and the per-position tables small; checked before anything is allocated.
        // One home for the shape rules: the converter checks the same function, so a file it
        // writes always loads.
        if let Err(e) = dlm_formats::limits::check_model(&dlm_formats::limits::ModelShape {
            dim: self.dim as u64,
            hidden_dim: self.hidden_dim as u64,
            n_layers: self.n_layers as u64,
            n_heads: self.n_heads as u64,
            n_kv_heads: self.n_kv_heads as u64,
            vocab_size: self.vocab_size as u64,
            seq_len: self.seq_len as u64,
            rope_theta: self.rope_theta as f64,
            norm_eps: self.norm_eps as f64,
        }) {
            return bad(format!("model.{e}"));
        }
        if self.mask_id as usize >= self.vocab_size {
            return bad(format!("mask id {} outside the vocabulary", self.mask_id));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> ModelConfig {
        ModelConfig {
            family: Family::Llada,
            dim: 64,
            hidden_dim: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 4,
            vocab_size: 100,
            seq_len: 64,
            rope_theta: 1e4,
            norm_eps: 1e-5,
            qkv_bias: false,
            tied_head: false,
            shift_logits: false,
            mask_id: 1,
        }
    }

    #[test]
    fn sizes_that_would_allocate_gigabytes_are_refused_before_any_table() {
        cfg().check().unwrap();
        // Each within its own bound, together a 256 GiB RoPE table.
        let huge = ModelConfig {
            dim: 1 << 16,
            n_heads: 1,
            n_kv_heads: 1,
            seq_len: 1 << 20,
            ..cfg()
        };
        let e = huge.check().unwrap_err().to_string();
        assert!(e.contains("RoPE"), "{e}");
        for bad in [
            ModelConfig {
                n_layers: 1 << 13,
                ..cfg()
            },
            ModelConfig {
                vocab_size: (1 << 24) + 1,
                ..cfg()
            },
            ModelConfig {
                seq_len: (1 << 20) + 1,
                ..cfg()
            },
            ModelConfig {
                n_heads: 0,
                ..cfg()
            },
        ] {
            assert!(bad.check().is_err(), "{bad:?}");
        }
    }
}
