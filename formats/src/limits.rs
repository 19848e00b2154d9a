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
}
