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
    /// Keep each tensor's storage as the source has it (a GGUF file's own quantization; for a
    /// safetensors folder, its float type), converting only what `.dlm` cannot hold as is.
    Keep,
}

/// llama.cpp's preset names (`llama-quantize` file types), matched case-insensitively, and the
/// policy of ours closest to each: same bit width where we have one, else the next wider.
const LLAMA_PRESETS: &[(&str, QuantPolicy, &str)] = &[
    (
        "q4_k_m",
        QuantPolicy::Mixed,
        "q4_k matmuls, q6_k for attn_v/ffn_down/head, q8_0 embedding, like Q4_K_M",
    ),
    (
        "q4_k_s",
        QuantPolicy::Uniform(QuantType::Q4K),
        "q4_k everywhere",
    ),
    (
        "q4_1",
        QuantPolicy::Uniform(QuantType::Q4_0),
        "4-bit 32-blocks without a min",
    ),
    (
        "q5_0",
        QuantPolicy::Uniform(QuantType::Q6K),
        "dlm has no 5-bit type; the next wider",
    ),
    (
        "q5_1",
        QuantPolicy::Uniform(QuantType::Q6K),
        "dlm has no 5-bit type; the next wider",
    ),
    (
        "q5_k_s",
        QuantPolicy::Uniform(QuantType::Q6K),
        "dlm has no 5-bit type; the next wider",
    ),
    (
        "q5_k_m",
        QuantPolicy::Uniform(QuantType::Q6K),
        "dlm has no 5-bit type; the next wider",
    ),
    (
        "q3_k_s",
        QuantPolicy::Uniform(QuantType::Q4K),
        "dlm has no 3-bit type; the next wider",
    ),
    (
        "q3_k_m",
        QuantPolicy::Mixed,
        "dlm has no 3-bit type; the next wider mix",
    ),
    (
        "q3_k_l",
        QuantPolicy::Mixed,
        "dlm has no 3-bit type; the next wider mix",
    ),
    (
        "q2_k",
        QuantPolicy::Uniform(QuantType::Q4K),
        "dlm has no 2-bit type; the next wider",
    ),
];

impl QuantPolicy {
    /// Parse a CLI name, case-insensitively: a quant type name (`f32`, `f16`, `bf16`, `q8_0`,
    /// `q4_0`, `q4_k`, `q6_k`), `mixed`, `keep`, or one of llama.cpp's presets (`Q4_K_M`,
    /// `Q8_0`, `Q5_K_M`, ...; see [`QuantPolicy::explain_name`]).
    pub fn from_name(name: &str) -> Result<Self> {
        let lower = name.to_ascii_lowercase();
        match lower.as_str() {
            "mixed" => return Ok(QuantPolicy::Mixed),
            "keep" => return Ok(QuantPolicy::Keep),
            "q4_k" => return Ok(QuantPolicy::Uniform(QuantType::Q4K)),
            "q6_k" => return Ok(QuantPolicy::Uniform(QuantType::Q6K)),
            _ => {}
        }
        if let Some(q) = QuantType::from_name(&lower) {
            return Ok(QuantPolicy::Uniform(q));
        }
        LLAMA_PRESETS
            .iter()
            .find(|(n, _, _)| *n == lower)
            .map(|(_, p, _)| *p)
            .ok_or_else(|| ConvertError::UnknownPolicy(name.to_string()))
    }

    /// For a name that is not spelled exactly as one of ours (a llama.cpp preset or another
    /// case), the sentence saying which policy it maps to; `None` for our own names.
    pub fn explain_name(name: &str) -> Option<String> {
        let policy = Self::from_name(name).ok()?;
        if policy.name() == name {
            return None;
        }
        let lower = name.to_ascii_lowercase();
        let why = LLAMA_PRESETS
            .iter()
            .find(|(n, _, _)| *n == lower)
            .map(|(_, _, why)| format!(" ({why})"))
            .unwrap_or_default();
        Some(format!("policy {name} → {}{why}", policy.name()))
    }

    /// The name written to `general.quant_policy`.
    pub fn name(&self) -> &'static str {
        match self {
            QuantPolicy::Uniform(q) => q.name(),
            QuantPolicy::Mixed => "mixed",
            QuantPolicy::Keep => "keep",
        }
    }

    /// The type the policy asks for a tensor of `role`, before any fallback; `Keep` asks for
    /// `source`, the type the input stores the tensor in.
    pub fn wanted(&self, role: TensorRole, source: QuantType) -> QuantType {
        use QuantType as Q;
        use TensorRole as R;
        match (self, role) {
            (_, R::Norm | R::Bias) => Q::F32,
            (QuantPolicy::Keep, _) => source,
            (QuantPolicy::Uniform(q), _) => *q,
            (QuantPolicy::Mixed, R::Embedding) => Q::Q8_0,
            (QuantPolicy::Mixed, R::Head | R::AttnV | R::FfnDown) => Q::Q6K,
            (QuantPolicy::Mixed, R::AttnQk | R::AttnOut | R::FfnGateUp) => Q::Q4K,
        }
    }

    /// The storage type of a tensor of `role` and row-major `shape` (`source` as for
    /// [`QuantPolicy::wanted`]). A block type whose block does not divide the row falls back to
    /// [`fallback_chain`]: the same bit width where one fits, else wider, never narrower.
    pub fn choose(&self, role: TensorRole, shape: &[u64], source: QuantType) -> QuantType {
        fit(self.wanted(role, source), shape)
    }
}

/// The types tried, in order, for a wanted type whose block may not divide a row: a 4-bit
/// request falls back to q4_0 (same width, 32-value blocks), a 6-bit one to q8_0 (we have no
/// other 6-bit type, so the next wider), and every block type finally to f16.
pub fn fallback_chain(wanted: QuantType) -> &'static [QuantType] {
    use QuantType as Q;
    match wanted {
        Q::Q4K => &[Q::Q4K, Q::Q4_0, Q::F16],
        Q::Q6K => &[Q::Q6K, Q::Q8_0, Q::F16],
        Q::Q8_0 => &[Q::Q8_0, Q::F16],
        Q::Q4_0 => &[Q::Q4_0, Q::F16],
        Q::F32 => &[Q::F32],
        Q::F16 => &[Q::F16],
        Q::BF16 => &[Q::BF16],
    }
}

/// The first type of `wanted`'s fallback chain whose block divides the row of `shape`.
pub fn fit(wanted: QuantType, shape: &[u64]) -> QuantType {
    let row_len = shape.last().copied().unwrap_or(1);
    fallback_chain(wanted)
        .iter()
        .copied()
        .find(|q| row_len.is_multiple_of(q.block_len() as u64))
        .unwrap_or(QuantType::F16)
}

/// What the written file really holds, per storage type: the numbers behind "policy q4_k".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QuantMix {
    /// (type, tensors, bytes), in the table's id order.
    pub entries: Vec<(QuantType, usize, u64)>,
    /// (tensor, wanted, used) for each tensor that did not get the type its policy asked for.
    pub fallbacks: Vec<(String, QuantType, QuantType)>,
}

impl QuantMix {
    /// Count a tensor of `bytes` stored as `used`, asked for as `wanted`.
    pub fn add(&mut self, tensor: &str, wanted: QuantType, used: QuantType, bytes: u64) {
        match self.entries.iter_mut().find(|e| e.0 == used) {
            Some(e) => {
                e.1 += 1;
                e.2 += bytes;
            }
            None => {
                self.entries.push((used, 1, bytes));
                self.entries.sort_by_key(|e| e.0.id());
            }
        }
        if wanted != used {
            self.fallbacks.push((tensor.to_string(), wanted, used));
        }
    }

    /// The value of `general.quant_mix`: one `"<type> <tensors> <bytes>"` per type used.
    pub fn to_meta(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|(q, n, b)| format!("{q} {n} {b}"))
            .collect()
    }

    /// Lines for the end of `convert`: the mix, then each fallback grouped by (wanted, used).
    pub fn lines(&self) -> Vec<String> {
        let mix: Vec<String> = self
            .entries
            .iter()
            .map(|(q, n, b)| format!("{q}: {n} tensors, {b} bytes"))
            .collect();
        let mut out = vec![format!("storage used: {}", mix.join("; "))];
        let mut groups: Vec<(QuantType, QuantType, Vec<&str>)> = Vec::new();
        for (t, w, u) in &self.fallbacks {
            match groups.iter_mut().find(|g| g.0 == *w && g.1 == *u) {
                Some(g) => g.2.push(t),
                None => groups.push((*w, *u, vec![t])),
            }
        }
        for (w, u, names) in groups {
            let shown: Vec<&str> = names.iter().take(4).copied().collect();
            let more = if names.len() > 4 { ", ..." } else { "" };
            out.push(format!(
                "{} tensors asked for {w} are stored as {u}: their rows are not a whole number \
                 of {}-value blocks ({}{more})",
                names.len(),
                w.block_len(),
                shown.join(", ")
            ));
        }
        out
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
        let f = QuantType::F32;
        let p = QuantPolicy::from_name("q4_k").unwrap();
        assert_eq!(p.choose(TensorRole::Norm, &[4096], f), QuantType::F32);
        assert_eq!(
            p.choose(TensorRole::FfnGateUp, &[11008, 4096], f),
            QuantType::Q4K
        );
        // A 4-bit request stays 4-bit where 256 does not divide the row (the demo's d 384).
        assert_eq!(
            p.choose(TensorRole::FfnDown, &[384, 384], f),
            QuantType::Q4_0
        );
        assert_eq!(
            p.choose(TensorRole::FfnDown, &[4096, 96], f),
            QuantType::Q4_0
        );
        assert_eq!(
            p.choose(TensorRole::FfnDown, &[4096, 100], f),
            QuantType::F16
        );
        let m = QuantPolicy::Mixed;
        assert_eq!(m.choose(TensorRole::AttnV, &[512, 4096], f), QuantType::Q6K);
        // 6 bits has no 32-block type: the next wider, never narrower.
        assert_eq!(m.choose(TensorRole::AttnV, &[512, 384], f), QuantType::Q8_0);
        assert_eq!(
            m.choose(TensorRole::AttnQk, &[512, 384], f),
            QuantType::Q4_0
        );
        assert_eq!(m.choose(TensorRole::Bias, &[512], f), QuantType::F32);
        let k = QuantPolicy::Keep;
        assert_eq!(
            k.choose(TensorRole::AttnV, &[4, 64], QuantType::Q8_0),
            QuantType::Q8_0
        );
        assert_eq!(
            k.choose(TensorRole::Norm, &[64], QuantType::BF16),
            QuantType::F32
        );
        for q in dlm_formats::ALL_QUANT_TYPES {
            let chain = fallback_chain(q);
            assert_eq!(chain[0], q);
            // never fewer bits per value than asked for
            let bits = |t: QuantType| t.block_bytes() as f64 * 8.0 / t.block_len() as f64;
            assert!(chain.iter().all(|&t| bits(t) >= bits(q) - 0.5), "{q}");
        }
        assert!(matches!(
            QuantPolicy::from_name("q3"),
            Err(ConvertError::UnknownPolicy(_))
        ));
        assert_eq!(QuantPolicy::from_name("bf16").unwrap().name(), "bf16");
    }

    #[test]
    fn llama_cpp_presets_map_case_insensitively_and_say_so() {
        let cases = [
            ("Q4_K_M", "mixed"),
            ("q4_k_m", "mixed"),
            ("Q8_0", "q8_0"),
            ("Q4_0", "q4_0"),
            ("Q6_K", "q6_k"),
            ("Q4_K", "q4_k"),
            ("Q4_K_S", "q4_k"),
            ("Q5_K_M", "q6_k"),
            ("Q3_K_M", "mixed"),
            ("F16", "f16"),
            ("BF16", "bf16"),
            ("F32", "f32"),
            ("MIXED", "mixed"),
        ];
        for (name, ours) in cases {
            assert_eq!(QuantPolicy::from_name(name).unwrap().name(), ours, "{name}");
            let note = QuantPolicy::explain_name(name).unwrap();
            assert!(note.contains(ours) && note.contains(name), "{note}");
        }
        assert_eq!(QuantPolicy::explain_name("q8_0"), None);
        assert!(
            QuantPolicy::explain_name("Q5_K_M")
                .unwrap()
                .contains("5-bit")
        );
        assert!(QuantPolicy::from_name("IQ2_XXS").is_err());
    }

    #[test]
    fn the_mix_counts_types_and_fallbacks() {
        let mut m = QuantMix::default();
        m.add("a", QuantType::Q4K, QuantType::Q4_0, 18);
        m.add("b", QuantType::Q4K, QuantType::Q4K, 144);
        m.add("c", QuantType::F32, QuantType::F32, 4);
        m.add("d", QuantType::Q4K, QuantType::Q4_0, 36);
        assert_eq!(m.to_meta(), ["f32 1 4", "q4_0 2 54", "q4_k 1 144"]);
        let lines = m.lines();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert!(
            lines[1].starts_with("2 tensors asked for q4_k are stored as q4_0"),
            "{lines:?}"
        );
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
