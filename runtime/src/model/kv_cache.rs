//! Per-layer keys and values of every canvas position, kept between diffusion steps by the
//! Fast-dLLM prefix and dual caches.

/// Keys and values of `len` positions for every layer.
#[derive(Debug, Clone)]
pub struct KvCache {
    /// Positions held.
    pub len: usize,
    /// Width of one position's keys (or values): `n_kv_heads * head_dim`.
    pub kv_dim: usize,
    /// Per layer: `[len, kv_dim]` keys, RoPE already applied.
    pub k: Vec<Vec<f32>>,
    /// Per layer: `[len, kv_dim]` values.
    pub v: Vec<Vec<f32>>,
}

impl KvCache {
    /// An empty (zeroed) cache of `len` positions for `n_layers` layers.
    pub fn new(n_layers: usize, len: usize, kv_dim: usize) -> Self {
        KvCache {
            len,
            kv_dim,
            k: vec![vec![0.0; len * kv_dim]; n_layers],
            v: vec![vec![0.0; len * kv_dim]; n_layers],
        }
    }
}

/// Which positions the span of a forward pass attends to besides itself.
#[derive(Debug, Clone, Copy)]
pub enum Attend<'c> {
    /// Only the span's own tokens: a full forward when the span is the whole canvas.
    SpanOnly,
    /// The span plus cached positions `[0, start)` (Fast-dLLM prefix cache; the span runs to
    /// the end of the canvas).
    Prefix(&'c KvCache),
    /// The span plus every cached position outside the span (Fast-dLLM dual cache).
    Dual(&'c KvCache),
}
