//! The bidirectional transformer forward pass shared by LLaDA and Dream, written once over
//! [`Backend`]: embedding → N × [RMSNorm → q,k,v (+bias) → RoPE → attention → out-proj →
//! residual → RMSNorm → SwiGLU → residual] → RMSNorm → head, for the rows the decoder asks for.

use super::Forward;
use super::config::ModelConfig;
use super::kv_cache::KvCache;
use super::profile::{Clock, Part};
use super::request::{Attend, Output, Positions, Request, Response};
use super::weights::Weights;
use crate::RuntimeError;
use crate::backend::{AttentionArgs, AttentionShape, Backend, CacheShape};
use std::sync::RwLock;

/// One block's weights, as the backend holds them.
struct Layer<B: Backend> {
    attn_norm: B::Vector,                            // [dim]
    wq: B::Matrix,                                   // [q_dim, dim]
    wk: B::Matrix,                                   // [kv_dim, dim]
    wv: B::Matrix,                                   // [kv_dim, dim]
    bias: Option<(B::Vector, B::Vector, B::Vector)>, // [q_dim], [kv_dim], [kv_dim] (Dream)
    wo: B::Matrix,                                   // [dim, q_dim]
    ffn_norm: B::Vector,                             // [dim]
    w_gate: B::Matrix,                               // [hidden_dim, dim]
    w_up: B::Matrix,                                 // [hidden_dim, dim]
    w_down: B::Matrix,                               // [dim, hidden_dim]
}

/// RoPE tables for positions `0..len`: `[len, head_dim / 2]` each, grown on demand so a
/// model declaring a huge context costs nothing until a canvas uses it.
struct RopeTables<B: Backend> {
    len: usize,
    cos: B::Vector,
    sin: B::Vector,
}

/// A model's forward pass on backend `B`.
pub struct Transformer<B: Backend> {
    backend: B,
    cfg: ModelConfig,
    tok_embd: B::Matrix,     // [vocab, dim]
    head: Option<B::Matrix>, // [vocab, dim]; None when tied to the embedding
    out_norm: B::Vector,     // [dim]
    layers: Vec<Layer<B>>,
    rope: RwLock<RopeTables<B>>,
}

impl<B: Backend> std::fmt::Debug for Transformer<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transformer")
            .field("backend", &self.backend.name())
            .finish()
    }
}

/// cos/sin of positions `0..len` for heads `head_dim` wide with base `theta`, computed as the
/// reference does, in f32: `inv_freq = 1 / theta^(2i/d)`, `angle = pos * inv_freq`.
fn rope_tables(head_dim: usize, len: usize, theta: f32) -> (Vec<f32>, Vec<f32>) {
    let half = head_dim / 2;
    let inv_freq: Vec<f32> = (0..half)
        .map(|i| 1.0 / theta.powf((2 * i) as f32 / head_dim as f32))
        .collect();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for pos in 0..len {
        for f in &inv_freq {
            let a = pos as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (cos, sin)
}

/// RoPE rows built up front: enough for every canvas of the demo and reference models.
const ROPE_INITIAL: usize = 4096;

impl<B: Backend> Transformer<B> {
    /// Hand the located `weights` (in `bytes`, the whole file) to `backend`.
    pub fn new(
        backend: B,
        cfg: ModelConfig,
        weights: &Weights,
        bytes: &[u8],
    ) -> Result<Self, RuntimeError> {
        let m = |x| backend.upload_matrix(x, bytes);
        let v = |x: &[f32]| backend.upload_vector(x);
        let mut layers = Vec::with_capacity(weights.layers.len());
        for lw in &weights.layers {
            layers.push(Layer {
                attn_norm: v(&lw.attn_norm)?,
                wq: m(&lw.wq)?,
                wk: m(&lw.wk)?,
                wv: m(&lw.wv)?,
                bias: match &lw.bias {
                    Some((q, k, b)) => Some((v(q)?, v(k)?, v(b)?)),
                    None => None,
                },
                wo: m(&lw.wo)?,
                ffn_norm: v(&lw.ffn_norm)?,
                w_gate: m(&lw.w_gate)?,
                w_up: m(&lw.w_up)?,
                w_down: m(&lw.w_down)?,
            });
        }
        let head = if cfg.tied_head {
            None
        } else {
            Some(m(&weights.head)?)
        };
        let len = cfg.seq_len.min(ROPE_INITIAL);
        let (cos, sin) = rope_tables(cfg.head_dim(), len, cfg.rope_theta);
        let rope = RopeTables {
            len,
            cos: v(&cos)?,
            sin: v(&sin)?,
        };
        Ok(Transformer {
            tok_embd: m(&weights.tok_embd)?,
            head,
            out_norm: v(&weights.out_norm)?,
            layers,
            rope: RwLock::new(rope),
            backend,
            cfg,
        })
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    fn cache_shape(&self, len: usize, hidden: bool) -> CacheShape {
        CacheShape {
            n_layers: self.cfg.n_layers,
            len,
            kv_dim: self.cfg.kv_dim(),
            hidden_dim: hidden.then_some(self.cfg.dim),
        }
    }

    /// Make sure the RoPE tables reach position `end - 1`.
    fn grow_rope(&self, end: usize) -> Result<(), RuntimeError> {
        if self.rope.read().map(|r| r.len >= end).unwrap_or(false) {
            return Ok(());
        }
        let mut r = self
            .rope
            .write()
            .map_err(|_| RuntimeError::Unsupported("RoPE tables poisoned".into()))?;
        if r.len < end {
            let len = end.next_power_of_two().min(self.cfg.seq_len).max(end);
            let (cos, sin) = rope_tables(self.cfg.head_dim(), len, self.cfg.rope_theta);
            *r = RopeTables {
                len,
                cos: self.backend.upload_vector(&cos)?,
                sin: self.backend.upload_vector(&sin)?,
            };
        }
        Ok(())
    }

    /// Check everything a request names before any op runs; returns the span's absolute
    /// positions and the cached positions it attends to besides itself.
    fn check(
        &self,
        req: &Request<'_>,
        cache: Option<(&B::Cache, usize)>,
    ) -> Result<(Vec<usize>, Vec<usize>), RuntimeError> {
        let bad = |m: String| Err(RuntimeError::InvalidRequest(m));
        let cfg = &self.cfg;
        let n = req.tokens.len();
        if n == 0 {
            return bad("the span is empty".into());
        }
        let positions = match req.positions {
            Positions::Run(start) => match start.checked_add(n) {
                Some(end) if end <= cfg.seq_len => (start..end).collect::<Vec<_>>(),
                _ => {
                    return bad(format!(
                        "span of {n} tokens at {start} does not fit the model's {} positions",
                        cfg.seq_len
                    ));
                }
            },
            Positions::List(p) => {
                if p.len() != n {
                    return bad(format!("{} positions for {n} tokens", p.len()));
                }
                if p.windows(2).any(|w| w[0] >= w[1]) {
                    return bad("span positions must be ascending and distinct".into());
                }
                if p[n - 1] >= cfg.seq_len {
                    return bad(format!(
                        "position {} outside the model's {} positions",
                        p[n - 1],
                        cfg.seq_len
                    ));
                }
                p.to_vec()
            }
        };
        if let Some(t) = req.tokens.iter().find(|&&t| t as usize >= cfg.vocab_size) {
            return bad(format!(
                "token id {t} outside the vocabulary of {}",
                cfg.vocab_size
            ));
        }
        if let Some(r) = req.rows.iter().find(|&&r| r >= n) {
            return bad(format!("logits row {r} outside the span of {n}"));
        }
        let needs_cache = req.attend == Attend::Cache || req.store || req.from_layer > 0;
        // The positions a request sees: the cache's active ones (`KvCache::active_len`).
        let shape = match cache {
            Some((c, active)) => Some(CacheShape {
                len: active.min(self.backend.cache_shape(c).len),
                ..self.backend.cache_shape(c)
            }),
            None if needs_cache => {
                return bad("this request needs a KV cache and none was given".into());
            }
            None => None,
        };
        if let Some(s) = shape
            && needs_cache
        {
            let end = positions[n - 1] + 1;
            if s.n_layers != cfg.n_layers || s.kv_dim != cfg.kv_dim() || s.len < end {
                return bad("the cache does not match this model or span".into());
            }
        }
        if req.from_layer > 0 {
            if req.from_layer >= cfg.n_layers {
                return bad(format!(
                    "from_layer {} but the model has {} layers",
                    req.from_layer, cfg.n_layers
                ));
            }
            if shape.and_then(|s| s.hidden_dim).is_none() {
                return bad("starting mid-stack needs a cache that keeps hidden states".into());
            }
        }
        let outside = match (req.attend, shape) {
            (Attend::Cache, Some(s)) => {
                let mut in_span = vec![false; s.len];
                for &p in &positions {
                    in_span[p] = true;
                }
                (0..s.len).filter(|&p| !in_span[p]).collect()
            }
            _ => Vec::new(),
        };
        if let Some(probe) = &req.probe
            && let Some(&p) = probe
                .keys
                .iter()
                .find(|p| positions.binary_search(p).is_err() && outside.binary_search(p).is_err())
        {
            return bad(format!("probed key position {p} is not attended to"));
        }
        Ok((positions, outside))
    }

    /// Run one request; see [`Forward::run`].
    fn run_request(
        &self,
        req: Request<'_>,
        mut cache: Option<&mut B::Cache>,
        active: usize,
    ) -> Result<Response, RuntimeError> {
        let (positions, outside) = self.check(&req, cache.as_deref().map(|c| (c, active)))?;
        self.grow_rope(positions[positions.len() - 1] + 1)?;
        let rope = self
            .rope
            .read()
            .map_err(|_| RuntimeError::Unsupported("RoPE tables poisoned".into()))?;
        let b = &self.backend;
        let cfg = &self.cfg;
        let n = req.tokens.len();
        let shape = AttentionShape {
            n_heads: cfg.n_heads,
            n_kv_heads: cfg.n_kv_heads,
            head_dim: cfg.head_dim(),
        };
        let (dim, hd, q_dim, kv_dim) = (cfg.dim, shape.head_dim, shape.q_dim(), shape.kv_dim());
        let mut clock = Clock::new(req.profile);

        // Key indices of the probed positions: span rows first, then `outside`.
        let probe_keys: Option<Vec<usize>> = req.probe.as_ref().map(|p| {
            p.keys
                .iter()
                .map(|pos| match positions.binary_search(pos) {
                    Ok(i) => i,
                    Err(_) => n + outside.binary_search(pos).unwrap_or(0),
                })
                .collect()
        });
        let probe_mass = req.probe.as_ref().is_some_and(|p| p.mass);

        // [n, dim] residual stream.
        let mut x = b.alloc(n * dim)?;
        if req.from_layer == 0 {
            b.embed(&self.tok_embd, req.tokens, &mut x);
        } else if let Some(c) = cache.as_deref() {
            b.load_hidden(c, req.from_layer, &positions, &mut x);
        }
        let mut h = b.alloc(n * dim)?; // [n, dim]
        let mut q = b.alloc(n * q_dim)?; // [n, q_dim]
        let mut k = b.alloc(n * kv_dim)?; // [n, kv_dim]
        let mut v = b.alloc(n * kv_dim)?; // [n, kv_dim]
        let mut att = b.alloc(n * q_dim)?; // [n, q_dim]
        let mut gate = b.alloc(n * cfg.hidden_dim)?; // [n, hidden_dim]
        let mut up = b.alloc(n * cfg.hidden_dim)?; // [n, hidden_dim]
        let mut attention = Vec::new();
        // Only the wanted rows of the last layer's output are read (by the head), so that layer
        // runs their queries, Wo and MLP alone when they are fewer than the span (a full step
        // wants one block of a whole canvas): every row's keys and values are still computed,
        // attended and stored. Probes report every query row, so they keep the whole layer.
        let prune_last = req.probe.is_none() && !req.rows.is_empty() && req.rows.len() < n;
        // Rows of `x` (and of the layer buffers) from here on: `n`, or the wanted rows once
        // the last layer has been cut down to them.
        let mut n_rows = n;

        for (l, lw) in self.layers.iter().enumerate().skip(req.from_layer) {
            if req.store
                && let Some(c) = cache.as_deref_mut()
            {
                b.store_hidden(c, l, &positions, &x);
            }
            // x += Wo · attention(RoPE(q), RoPE(k), v) of the normed x.
            b.rmsnorm(&x, &lw.attn_norm, cfg.norm_eps, &mut h);
            clock.time(Part::Matmul, || {
                b.matmul_many(
                    &[&lw.wq, &lw.wk, &lw.wv],
                    &h,
                    n,
                    &mut [&mut q, &mut k, &mut v],
                )
            });
            if let Some((bq, bk, bv)) = &lw.bias {
                b.add_bias(&mut q, bq);
                b.add_bias(&mut k, bk);
                b.add_bias(&mut v, bv);
            }
            let cache_ref = cache.as_deref();
            let last = prune_last && l + 1 == self.layers.len();
            let (probed, pruned) = clock.time(Part::Attention, || {
                b.rope(&mut q, q_dim, hd, &rope.cos, &rope.sin, &positions);
                b.rope(&mut k, kv_dim, hd, &rope.cos, &rope.sin, &positions);
                let args = || AttentionArgs {
                    q: &q,
                    k: &k,
                    v: &v,
                    n,
                    outside: &outside,
                    cache: cache_ref,
                    layer: l,
                    shape,
                    probe_keys: probe_keys.as_deref(),
                    probe_mass,
                };
                if last && b.attention_rows(args(), req.rows, &mut att) {
                    return (None, true);
                }
                (b.attention(args(), &mut att), false)
            });
            if let Some(p) = probed {
                attention.push(p);
            }
            if req.store
                && let Some(c) = cache.as_deref_mut()
            {
                b.store_kv(c, l, &positions, &k, &v);
            }
            if pruned {
                // [m, dim] buffers for the wanted rows, in the order wanted.
                let m = req.rows.len();
                let mut xs = b.alloc(m * dim)?;
                b.gather_rows(&x, dim, req.rows, &mut xs);
                x = xs;
                h = b.alloc(m * dim)?;
                gate = b.alloc(m * cfg.hidden_dim)?;
                up = b.alloc(m * cfg.hidden_dim)?;
                n_rows = m;
            }
            let n = n_rows;
            clock.time(Part::Matmul, || b.matmul(&lw.wo, &att, n, &mut h));
            b.add_assign(&mut x, &h);

            // x += W_down · (silu(W_gate · h) ⊙ W_up · h), h = RMSNorm(x).
            b.rmsnorm(&x, &lw.ffn_norm, cfg.norm_eps, &mut h);
            clock.time(Part::Matmul, || {
                b.matmul_many(&[&lw.w_gate, &lw.w_up], &h, n, &mut [&mut gate, &mut up])
            });
            b.swiglu(&mut gate, &up);
            clock.time(Part::Matmul, || b.matmul(&lw.w_down, &gate, n, &mut h));
            b.add_assign(&mut x, &h);
        }

        // Only the rows the decoder wants go through the final norm and the head.
        // After a cut-down last layer `x` holds the wanted rows, in order.
        let identity: Vec<usize>;
        let rows = if n_rows == n {
            req.rows
        } else {
            identity = (0..n_rows).collect();
            &identity
        };
        let vocab = cfg.vocab_size;
        let head = self.head.as_ref().unwrap_or(&self.tok_embd);
        let mut resp = Response::default();
        let out = clock.time(Part::Head, || -> Result<_, RuntimeError> {
            let mut sel = b.alloc(rows.len() * dim)?; // [rows, dim]
            b.gather_rows(&x, dim, rows, &mut sel);
            let mut normed = b.alloc(rows.len() * dim)?;
            b.rmsnorm(&sel, &self.out_norm, cfg.norm_eps, &mut normed);
            let mut logits = b.alloc(rows.len() * vocab)?; // [rows, vocab]
            b.matmul(head, &normed, rows.len(), &mut logits);
            Ok(match req.output {
                Output::Logits => (b.to_host(&logits), Vec::new()),
                Output::Propose { spec, rng } => {
                    (Vec::new(), b.propose(&logits, vocab, &spec, rng))
                }
            })
        })?;
        (resp.logits, resp.proposals) = out;
        resp.attention = attention;
        resp.timings = clock.finish();
        Ok(resp)
    }
}

impl<B: Backend> Forward for Transformer<B> {
    fn vocab_size(&self) -> usize {
        self.cfg.vocab_size
    }

    fn n_layers(&self) -> usize {
        self.cfg.n_layers
    }

    fn device(&self) -> String {
        self.backend.name()
    }

    fn new_cache(&self, len: usize, hidden: bool) -> Result<KvCache, RuntimeError> {
        if len == 0 || len > self.cfg.seq_len {
            return Err(RuntimeError::InvalidRequest(format!(
                "a cache of {len} positions for a model of {}",
                self.cfg.seq_len
            )));
        }
        let c = self.backend.new_cache(self.cache_shape(len, hidden))?;
        Ok(KvCache::new(len, hidden, c))
    }

    fn run(&self, req: Request<'_>, cache: Option<&mut KvCache>) -> Result<Response, RuntimeError> {
        let (cache, active) = match cache {
            Some(c) => {
                let active = c.active_len();
                let state = c.state_mut::<B::Cache>().ok_or_else(|| {
                    RuntimeError::InvalidRequest(format!(
                        "the cache was made by another backend than {}",
                        self.backend.name()
                    ))
                })?;
                (Some(state), active)
            }
            None => (None, 0),
        };
        self.run_request(req, cache, active)
    }
}
