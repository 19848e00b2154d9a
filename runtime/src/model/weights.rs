//! Where each weight lives: byte ranges into the model file, checked against the config at load
//! time, so the forward pass uses the weights straight from the map without copying them.

use super::config::ModelConfig;
use crate::RuntimeError;
use dlm_formats::{DlmFile, FormatError, QuantType, TensorInfo, tensors};
use dlm_simd::WeightRef;

/// A matrix in the file: `rows` outputs of `cols` inputs in `quant` layout at `offset`.
#[derive(Debug, Clone, Copy)]
pub struct Matrix {
    /// Storage type.
    pub quant: QuantType,
    /// Output features.
    pub rows: usize,
    /// Input features.
    pub cols: usize,
    offset: usize,
    len: usize,
}

impl Matrix {
    /// The weight as the kernels see it, borrowed from the file bytes.
    pub fn view<'a>(&self, bytes: &'a [u8]) -> WeightRef<'a> {
        WeightRef {
            quant: self.quant,
            rows: self.rows,
            cols: self.cols,
            data: &bytes[self.offset..self.offset + self.len],
        }
    }
}

/// One transformer block's weights.
#[derive(Debug, Clone)]
pub struct LayerWeights {
    /// `[dim]` RMSNorm weight before attention.
    pub attn_norm: Vec<f32>,
    /// `[n_heads*head_dim, dim]`.
    pub wq: Matrix,
    /// `[kv_dim, dim]`.
    pub wk: Matrix,
    /// `[kv_dim, dim]`.
    pub wv: Matrix,
    /// `[n_heads*head_dim]`, `[kv_dim]`, `[kv_dim]` biases (Dream).
    pub bias: Option<(Vec<f32>, Vec<f32>, Vec<f32>)>,
    /// `[dim, n_heads*head_dim]`.
    pub wo: Matrix,
    /// `[dim]` RMSNorm weight before the MLP.
    pub ffn_norm: Vec<f32>,
    /// `[hidden_dim, dim]` SiLU branch.
    pub w_gate: Matrix,
    /// `[hidden_dim, dim]` linear branch.
    pub w_up: Matrix,
    /// `[dim, hidden_dim]`.
    pub w_down: Matrix,
}

/// Every weight of the model.
#[derive(Debug, Clone)]
pub struct Weights {
    /// `[vocab, dim]`.
    pub tok_embd: Matrix,
    /// Blocks in order.
    pub layers: Vec<LayerWeights>,
    /// `[dim]` final RMSNorm weight.
    pub out_norm: Vec<f32>,
    /// `[vocab, dim]` (the embedding when tied).
    pub head: Matrix,
}

impl Weights {
    /// Find every tensor the config calls for and check its shape.
    pub fn locate(file: &DlmFile, bytes: &[u8], cfg: &ModelConfig) -> Result<Self, RuntimeError> {
        let (dim, hd) = (cfg.dim, cfg.head_dim());
        let q_dim = cfg.n_heads * hd;
        let kv_dim = cfg.kv_dim();
        let matrix = |name: &str, rows: usize, cols: usize| matrix(file, name, rows, cols);
        let vector = |name: &str, len: usize| vector(file, bytes, name, len);
        let mut layers = Vec::with_capacity(cfg.n_layers);
        for i in 0..cfg.n_layers {
            let n = |t: &str| tensors::layer(t, i);
            let bias = if cfg.qkv_bias {
                Some((
                    vector(&n(tensors::BQ), q_dim)?,
                    vector(&n(tensors::BK), kv_dim)?,
                    vector(&n(tensors::BV), kv_dim)?,
                ))
            } else {
                None
            };
            layers.push(LayerWeights {
                attn_norm: vector(&n(tensors::ATTN_NORM), dim)?,
                wq: matrix(&n(tensors::WQ), q_dim, dim)?,
                wk: matrix(&n(tensors::WK), kv_dim, dim)?,
                wv: matrix(&n(tensors::WV), kv_dim, dim)?,
                bias,
                wo: matrix(&n(tensors::WO), dim, q_dim)?,
                ffn_norm: vector(&n(tensors::FFN_NORM), dim)?,
                w_gate: matrix(&n(tensors::W_GATE), cfg.hidden_dim, dim)?,
                w_up: matrix(&n(tensors::W_UP), cfg.hidden_dim, dim)?,
                w_down: matrix(&n(tensors::W_DOWN), dim, cfg.hidden_dim)?,
            });
        }
        let tok_embd = matrix(tensors::TOK_EMBD, cfg.vocab_size, dim)?;
        let head = if cfg.tied_head {
            tok_embd
        } else {
            matrix(tensors::HEAD, cfg.vocab_size, dim)?
        };
        Ok(Weights {
            tok_embd,
            layers,
            out_norm: vector(tensors::OUT_NORM, dim)?,
            head,
        })
    }
}

fn find<'f>(file: &'f DlmFile, name: &str) -> Result<&'f TensorInfo, RuntimeError> {
    file.tensors
        .iter()
        .find(|t| t.name == name)
        .ok_or_else(|| FormatError::MissingTensor(name.to_string()).into())
}

fn bad_shape(t: &TensorInfo, want: &[usize]) -> RuntimeError {
    FormatError::BadShape {
        tensor: t.name.clone(),
        reason: format!("shape {:?}, the config needs {:?}", t.shape, want),
    }
    .into()
}

fn matrix(file: &DlmFile, name: &str, rows: usize, cols: usize) -> Result<Matrix, RuntimeError> {
    let t = find(file, name)?;
    if t.shape != [rows as u64, cols as u64] {
        return Err(bad_shape(t, &[rows, cols]));
    }
    // The reader has checked that offset + len lies inside the file and matches the shape.
    Ok(Matrix {
        quant: t.quant,
        rows,
        cols,
        offset: t.offset as usize,
        len: t.len_bytes as usize,
    })
}

fn vector(file: &DlmFile, bytes: &[u8], name: &str, len: usize) -> Result<Vec<f32>, RuntimeError> {
    let t = find(file, name)?;
    if t.shape != [len as u64] {
        return Err(bad_shape(t, &[len]));
    }
    let m = Matrix {
        quant: t.quant,
        rows: 1,
        cols: len,
        offset: t.offset as usize,
        len: t.len_bytes as usize,
    };
    let mut out = vec![0.0; len];
    dlm_simd::dequantize_row(&m.view(bytes), 0, &mut out);
    Ok(out)
}
