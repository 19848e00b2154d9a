//! The seam between the forward pass and the hardware it runs on.
//!
//! The transformer ([`crate::model::Transformer`]) is written once against [`Backend`]: a small
//! set of ops on buffers the backend owns. The CPU backend ([`cpu::CpuBackend`]) keeps borrowing
//! the weights from the file's memory map and runs the `dlm-simd` kernels; a device backend
//! (the `dlm-cuda` crate) uploads the weights once, keeps activations and the KV cache on the
//! device, and returns only what [`Backend::propose`] or [`Backend::to_host`] hand back.
//!
//! The cut is deliberately smaller than candle's (`Device`/`Storage`/`CustomOp`) or ggml's
//! (graph + scheduler): there is no graph and no shape inference, just the dozen ops one
//! diffusion-LM step needs, called in order by the forward pass. A backend that wants to
//! capture a step (a CUDA graph) can do so behind these calls.

pub mod cpu;

use crate::RuntimeError;
use crate::decode::{Proposal, ProposeSpec, Rng};
use crate::model::{LayerAttention, Matrix};

/// Dimensions of one attention call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionShape {
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (GQA when fewer than `n_heads`).
    pub n_kv_heads: usize,
    /// Width of one head.
    pub head_dim: usize,
}

impl AttentionShape {
    /// `n_heads * head_dim`.
    pub fn q_dim(&self) -> usize {
        self.n_heads * self.head_dim
    }

    /// `n_kv_heads * head_dim`.
    pub fn kv_dim(&self) -> usize {
        self.n_kv_heads * self.head_dim
    }
}

/// The shape of a KV cache: every layer's keys and values of `len` canvas positions, and on
/// request the hidden state that entered each layer (for refreshes that start mid-stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheShape {
    /// Layers.
    pub n_layers: usize,
    /// Canvas positions.
    pub len: usize,
    /// Width of one position's keys (or values).
    pub kv_dim: usize,
    /// Residual width when hidden states are kept, else `None`.
    pub hidden_dim: Option<usize>,
}

/// What one attention call reads and writes (see [`Backend::attention`]).
pub struct AttentionArgs<'a, B: Backend + ?Sized> {
    /// `[n, q_dim]` queries of the span, RoPE applied.
    pub q: &'a B::Act,
    /// `[n, kv_dim]` keys of the span, RoPE applied.
    pub k: &'a B::Act,
    /// `[n, kv_dim]` values of the span.
    pub v: &'a B::Act,
    /// Span rows.
    pub n: usize,
    /// Cached positions the span also attends to, ascending (none of them in the span); read
    /// in place from `cache` at `layer`.
    pub outside: &'a [usize],
    /// The cache holding `outside`; `None` when `outside` is empty.
    pub cache: Option<&'a B::Cache>,
    /// The layer whose cache entries are read.
    pub layer: usize,
    /// Heads and widths.
    pub shape: AttentionShape,
    /// When given, the head-averaged attention probabilities of these key columns (indices
    /// into the key order: span rows first, then `outside`) are returned for every query row.
    pub probe_keys: Option<&'a [usize]>,
    /// When true, the head-averaged probability mass every key receives, summed over the
    /// query rows, is returned (in key order).
    pub probe_mass: bool,
}

/// The ops a forward pass needs, on buffers the backend owns.
///
/// Shapes are row-major and given in each op's contract; an op may assume the forward pass
/// passes consistent sizes (the forward pass checks the request before any op runs).
pub trait Backend: Send + Sync + 'static {
    /// A weight matrix in its stored type.
    type Matrix: Send + Sync;
    /// An f32 vector (norm weights, biases, RoPE tables).
    type Vector: Send + Sync;
    /// An f32 activation buffer.
    type Act: Send;
    /// Keys and values (and optionally hidden states) of the canvas, kept between steps.
    type Cache: Send + 'static;

    /// A short name for messages and `--json`: `cpu`, `cuda:0`.
    fn name(&self) -> String;

    /// Make `m` (stored in `bytes`, the whole model file) usable by [`Backend::matmul`] and
    /// [`Backend::embed`]. The CPU borrows; a device copies once.
    fn upload_matrix(&self, m: &Matrix, bytes: &[u8]) -> Result<Self::Matrix, RuntimeError>;

    /// Make `v` usable as a norm weight, bias or RoPE table.
    fn upload_vector(&self, v: &[f32]) -> Result<Self::Vector, RuntimeError>;

    /// A zeroed activation buffer of `len` f32.
    fn alloc(&self, len: usize) -> Result<Self::Act, RuntimeError>;

    /// out[i] = table row `tokens[i]` as f32: out is `[tokens.len(), table.cols]`.
    fn embed(&self, table: &Self::Matrix, tokens: &[u32], out: &mut Self::Act);

    /// out = x / rms(x) * w per row; rows are `w`'s length wide.
    fn rmsnorm(&self, x: &Self::Act, w: &Self::Vector, eps: f32, out: &mut Self::Act);

    /// out = x · Wᵀ: x is `[n, cols]`, out `[n, rows]`.
    fn matmul(&self, w: &Self::Matrix, x: &Self::Act, n: usize, out: &mut Self::Act);

    /// outs[i] = x · ws[i]ᵀ for every i: several matrices applied to one input (q, k and v;
    /// gate and up), which a backend may run as one batch. The default runs
    /// [`Backend::matmul`] per matrix.
    fn matmul_many(
        &self,
        ws: &[&Self::Matrix],
        x: &Self::Act,
        n: usize,
        outs: &mut [&mut Self::Act],
    ) {
        assert_eq!(ws.len(), outs.len(), "matmul_many: one output per matrix");
        for (w, out) in ws.iter().zip(outs.iter_mut()) {
            self.matmul(w, x, n, out);
        }
    }

    /// x[i] += b for every row of x (rows are `b`'s length wide).
    fn add_bias(&self, x: &mut Self::Act, b: &Self::Vector);

    /// Rotate-half RoPE of every `head_dim`-wide head of x (`[positions.len(), width]`); row
    /// i sits at canvas position `positions[i]`. `cos`/`sin` are `[seq_len, head_dim / 2]`.
    fn rope(
        &self,
        x: &mut Self::Act,
        width: usize,
        head_dim: usize,
        cos: &Self::Vector,
        sin: &Self::Vector,
        positions: &[usize],
    );

    /// gate = silu(gate) ⊙ up, elementwise.
    fn swiglu(&self, gate: &mut Self::Act, up: &Self::Act);

    /// x += y, elementwise.
    fn add_assign(&self, x: &mut Self::Act, y: &Self::Act);

    /// out[j] = x[rows[j]]: x is `[_, width]`, out `[rows.len(), width]`.
    fn gather_rows(&self, x: &Self::Act, width: usize, rows: &[usize], out: &mut Self::Act);

    /// An empty (zeroed) cache.
    fn new_cache(&self, shape: CacheShape) -> Result<Self::Cache, RuntimeError>;

    /// The shape a cache was made with.
    fn cache_shape(&self, cache: &Self::Cache) -> CacheShape;

    /// Write the span's keys and values (`[positions.len(), kv_dim]`) of `layer` at
    /// `positions`.
    fn store_kv(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        positions: &[usize],
        k: &Self::Act,
        v: &Self::Act,
    );

    /// Write the hidden states entering `layer` (`[positions.len(), dim]`) at `positions`;
    /// a no-op for a cache made without hidden states.
    fn store_hidden(
        &self,
        cache: &mut Self::Cache,
        layer: usize,
        positions: &[usize],
        x: &Self::Act,
    );

    /// Read the hidden states entering `layer` at `positions` into `out`.
    fn load_hidden(
        &self,
        cache: &Self::Cache,
        layer: usize,
        positions: &[usize],
        out: &mut Self::Act,
    );

    /// Bidirectional attention of the span's queries over the span's keys and the cached
    /// `outside` positions, read in place: out (`[n, q_dim]`) = softmax(q·kᵀ/√d)·v per head.
    /// Returns what `probe_keys` / `probe_mass` ask for, else `None`.
    fn attention(
        &self,
        args: AttentionArgs<'_, Self>,
        out: &mut Self::Act,
    ) -> Option<LayerAttention>;

    /// [`Backend::attention`] for the span rows `rows` only (no probe): out is
    /// `[rows.len(), q_dim]`, row i the output of query row `rows[i]`, every key and value
    /// still attended. Returns false, having done nothing, where the backend has no such path
    /// (the caller then runs every row).
    fn attention_rows(
        &self,
        _args: AttentionArgs<'_, Self>,
        _rows: &[usize],
        _out: &mut Self::Act,
    ) -> bool {
        false
    }

    /// The buffer's values on the host.
    fn to_host(&self, x: &Self::Act) -> Vec<f32>;

    /// From `[n_rows, vocab]` logits to one proposal per row (token and confidence by
    /// `spec`), drawing from `rng` row by row; only these few numbers leave a device.
    fn propose(
        &self,
        logits: &Self::Act,
        vocab: usize,
        spec: &ProposeSpec,
        rng: &mut Rng,
    ) -> Vec<Proposal>;
}
