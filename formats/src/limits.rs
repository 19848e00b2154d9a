//! Upper bounds on every size a model file (or the `config.json` it was converted from) may
//! declare. The converter and the runtime check against the same numbers before allocating, so
//! a file that passes is one the runtime can load without a size computation overflowing and
//! without a table far larger than any real model needs.

/// Largest `dim`, `hidden_dim`, `n_heads`, `n_kv_heads` (real models: dim 4096, hidden 14336).
pub const MAX_DIM: u64 = 1 << 16;
/// Largest `n_layers` (real models: 28–80).
pub const MAX_LAYERS: u64 = 1 << 12;
/// Largest vocabulary (real models: 126,464 for LLaDA-8B, 152,064 for Dream-7B).
pub const MAX_VOCAB: u64 = 1 << 24;
/// Largest context (real models: 4,096 to 131,072).
pub const MAX_SEQ_LEN: u64 = 1 << 20;
/// Largest `max_seq_len * head_dim`: the RoPE tables (cos and sin, f32) built at load are
/// `4 * this` bytes; 2^26 is 256 MiB (Dream-7B's 131,072 × 128 is 2^24).
pub const MAX_ROPE_ENTRIES: u64 = 1 << 26;
/// Largest number of diffusion steps a request may ask for (a step commits at least one token
/// when it does anything, and no context is longer than [`MAX_SEQ_LEN`]).
pub const MAX_STEPS: u64 = MAX_SEQ_LEN;

/// Check the shape numbers a file or config declares against the limits above; the error
/// names the first value out of range.
pub fn check_shape(
    dim: u64,
    hidden_dim: u64,
    n_layers: u64,
    n_heads: u64,
    n_kv_heads: u64,
    vocab_size: u64,
    seq_len: u64,
) -> Result<(), String> {
    for (name, v, max) in [
        ("dim", dim, MAX_DIM),
        ("hidden_dim", hidden_dim, MAX_DIM),
        ("n_layers", n_layers, MAX_LAYERS),
        ("n_heads", n_heads, MAX_DIM),
        ("n_kv_heads", n_kv_heads, MAX_DIM),
        ("vocab_size", vocab_size, MAX_VOCAB),
        ("max_seq_len", seq_len, MAX_SEQ_LEN),
    ] {
        if v == 0 || v > max {
            return Err(format!("{name} = {v} (must be 1..={max})"));
        }
    }
    let head_dim = dim / n_heads;
    if seq_len.saturating_mul(head_dim) > MAX_ROPE_ENTRIES {
        return Err(format!(
            "max_seq_len {seq_len} × head_dim {head_dim} needs RoPE tables of {} MiB (the limit is {} MiB)",
            (seq_len.saturating_mul(head_dim) * 4) >> 20,
            (MAX_ROPE_ENTRIES * 4) >> 20
        ));
    }
    Ok(())
}

/// A model's shape as the runtime needs it: the numbers [`check_model`] checks.
#[derive(Debug, Clone, Copy)]
pub struct ModelShape {
    /// Model width.
    pub dim: u64,
    /// MLP width.
    pub hidden_dim: u64,
    /// Transformer layers.
    pub n_layers: u64,
    /// Query heads.
    pub n_heads: u64,
    /// Key/value heads.
    pub n_kv_heads: u64,
    /// Embedding rows.
    pub vocab_size: u64,
    /// Context length.
    pub seq_len: u64,
    /// RoPE base, as declared (the runtime computes with it as f32).
    pub rope_theta: f64,
    /// RMSNorm epsilon, as declared (used as f32).
    pub norm_eps: f64,
}

/// Every rule a model's shape must meet for the runtime to load it: the limits of
/// [`check_shape`], an even head size (RoPE rotates pairs), kv heads dividing heads, and a
/// RoPE base and norm epsilon that are finite as f32. The converter (both import paths) and
/// the runtime's loader call this one function, so a file the converter writes is one the
/// runtime accepts; the error names the first rule broken.
pub fn check_model(s: &ModelShape) -> Result<(), String> {
    check_shape(
        s.dim,
        s.hidden_dim,
        s.n_layers,
        s.n_heads,
        s.n_kv_heads,
        s.vocab_size,
        s.seq_len,
    )?;
    if !s.dim.is_multiple_of(s.n_heads) || !(s.dim / s.n_heads).is_multiple_of(2) {
        return Err(format!(
            "dim {} is not an even head size times {} heads (RoPE rotates pairs)",
            s.dim, s.n_heads
        ));
    }
    if !s.n_heads.is_multiple_of(s.n_kv_heads) {
        return Err(format!(
            "{} kv heads do not divide {} heads",
            s.n_kv_heads, s.n_heads
        ));
    }
    let (theta, eps) = (s.rope_theta as f32, s.norm_eps as f32);
    if !(theta > 0.0 && theta.is_finite()) {
        return Err(format!("rope_theta {} is not a positive f32", s.rope_theta));
    }
    if !(eps >= 0.0 && eps.is_finite()) {
        return Err(format!("norm_eps {} is not a finite f32", s.norm_eps));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn real_shapes_pass_and_absurd_ones_fail() {
        // LLaDA-8B and Dream-7B.
        check_shape(4096, 12288, 32, 32, 32, 126_464, 4096).unwrap();
        check_shape(3584, 18944, 28, 28, 4, 152_064, 131_072).unwrap();
        let e = check_shape(4096, 12288, u32::MAX as u64, 32, 32, 126_464, 4096).unwrap_err();
        assert!(e.contains("n_layers"), "{e}");
        assert!(check_shape(1 << 17, 8, 1, 1, 1, 8, 8).is_err());
        assert!(check_shape(8, 8, 1, 1, 1, 8, 0).is_err());
        let e = check_shape(1 << 16, 8, 1, 1, 1, 8, 1 << 20).unwrap_err();
        assert!(e.contains("RoPE"), "{e}");
    }

    #[test]
    fn model_rules_name_what_is_broken() {
        let good = ModelShape {
            dim: 64,
            hidden_dim: 128,
            n_layers: 2,
            n_heads: 4,
            n_kv_heads: 2,
            vocab_size: 100,
            seq_len: 64,
            rope_theta: 1e4,
            norm_eps: 1e-5,
        };
        check_model(&good).unwrap();
        let cases: [(ModelShape, &str); 6] = [
            (ModelShape { n_heads: 3, ..good }, "even head size"),
            (
                ModelShape {
                    dim: 72,
                    n_heads: 8,
                    ..good
                },
                "even head size",
            ),
            (
                ModelShape {
                    n_kv_heads: 3,
                    ..good
                },
                "kv heads do not divide",
            ),
            (
                ModelShape {
                    rope_theta: 1e300,
                    ..good
                },
                "rope_theta",
            ),
            (
                ModelShape {
                    norm_eps: f64::NAN,
                    ..good
                },
                "norm_eps",
            ),
            (
                ModelShape {
                    n_layers: 0,
                    ..good
                },
                "n_layers",
            ),
        ];
        for (s, what) in cases {
            let e = check_model(&s).unwrap_err();
            assert!(e.contains(what), "{s:?}: {e}");
        }
    }
}
