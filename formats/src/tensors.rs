//! The names of the tensors in a `.dlm` file: the one place they are spelled. Block tensors
//! are templates with `{i}` standing for the block index ([`layer`] fills it in).

/// `[vocab, dim]` token embedding.
pub const TOK_EMBD: &str = "tok_embd";
/// `[dim]` final RMSNorm weight.
pub const OUT_NORM: &str = "out_norm";
/// `[vocab, dim]` output head (absent when tied to the embedding).
pub const HEAD: &str = "head";
/// `[dim]` RMSNorm weight before attention.
pub const ATTN_NORM: &str = "blk.{i}.attn_norm";
/// `[n_heads * head_dim, dim]` query projection.
pub const WQ: &str = "blk.{i}.wq";
/// `[kv_dim, dim]` key projection.
pub const WK: &str = "blk.{i}.wk";
/// `[kv_dim, dim]` value projection.
pub const WV: &str = "blk.{i}.wv";
/// `[n_heads * head_dim]` query bias (Dream).
pub const BQ: &str = "blk.{i}.bq";
/// `[kv_dim]` key bias (Dream).
pub const BK: &str = "blk.{i}.bk";
/// `[kv_dim]` value bias (Dream).
pub const BV: &str = "blk.{i}.bv";
/// `[dim, n_heads * head_dim]` attention output projection.
pub const WO: &str = "blk.{i}.wo";
/// `[dim]` RMSNorm weight before the MLP.
pub const FFN_NORM: &str = "blk.{i}.ffn_norm";
/// `[hidden_dim, dim]` SwiGLU gate (SiLU branch).
pub const W_GATE: &str = "blk.{i}.w_gate";
/// `[hidden_dim, dim]` SwiGLU linear branch.
pub const W_UP: &str = "blk.{i}.w_up";
/// `[dim, hidden_dim]` MLP down projection.
pub const W_DOWN: &str = "blk.{i}.w_down";

/// A block tensor's name for block `i` (`{i}` replaced); other names unchanged.
pub fn layer(template: &str, i: usize) -> String {
    template.replace("{i}", &i.to_string())
}

#[cfg(test)]
mod tests {
    #[test]
    fn layer_fills_the_index() {
        assert_eq!(super::layer(super::WQ, 12), "blk.12.wq");
        assert_eq!(super::layer(super::TOK_EMBD, 3), "tok_embd");
    }
}
