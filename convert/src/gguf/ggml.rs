//! ggml's tensor types as GGUF files name them: the id table (with block sizes), which of them a
//! `.dlm` type holds byte for byte, and scalar decoders for the ones we transcode or dequantize
//! (`Q4_1`, `Q5_0`, `Q5_1`, `Q5_K`). Layouts follow ggml's `ggml-common.h`; the decoders are ours.

use dlm_formats::QuantType;
use dlm_formats::quant::{BlockQ8_0, f16_val, unpack_scales_q4k};

/// A ggml tensor type: its GGUF id, name and block shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgmlType {
    /// The id written in GGUF tensor infos.
    pub id: u32,
    /// ggml's name (`Q4_K`).
    pub name: &'static str,
    /// Elements per block.
    pub block_len: u64,
    /// Bytes per block.
    pub block_bytes: u64,
}

const fn t(id: u32, name: &'static str, block_len: u64, block_bytes: u64) -> GgmlType {
    GgmlType {
        id,
        name,
        block_len,
        block_bytes,
    }
}

/// ggml's types with their block sizes (ids 4, 5, 31..33, 36..38 are retired or layout
/// variants that GGUF files do not carry).
const TABLE: &[GgmlType] = &[
    t(0, "F32", 1, 4),
    t(1, "F16", 1, 2),
    t(2, "Q4_0", 32, 18),
    t(3, "Q4_1", 32, 20),
    t(6, "Q5_0", 32, 22),
    t(7, "Q5_1", 32, 24),
    t(8, "Q8_0", 32, 34),
    t(9, "Q8_1", 32, 36),
    t(10, "Q2_K", 256, 84),
    t(11, "Q3_K", 256, 110),
    t(12, "Q4_K", 256, 144),
    t(13, "Q5_K", 256, 176),
    t(14, "Q6_K", 256, 210),
    t(15, "Q8_K", 256, 292),
    t(16, "IQ2_XXS", 256, 66),
    t(17, "IQ2_XS", 256, 74),
    t(18, "IQ3_XXS", 256, 98),
    t(19, "IQ1_S", 256, 50),
    t(20, "IQ4_NL", 32, 18),
    t(21, "IQ3_S", 256, 110),
    t(22, "IQ2_S", 256, 82),
    t(23, "IQ4_XS", 256, 136),
    t(24, "I8", 1, 1),
    t(25, "I16", 1, 2),
    t(26, "I32", 1, 4),
    t(27, "I64", 1, 8),
    t(28, "F64", 1, 8),
    t(29, "IQ1_M", 256, 56),
    t(30, "BF16", 1, 2),
    t(34, "TQ1_0", 256, 54),
    t(35, "TQ2_0", 256, 66),
    t(39, "MXFP4", 32, 17),
];

/// How a ggml type becomes a `.dlm` type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Import {
    /// Same bytes: copied as they are.
    Native(QuantType),
    /// Transcoded block by block with every value kept exactly (`Q5_0` → `q8_0`).
    Lossless(QuantType),
    /// No `.dlm` type holds its values exactly: dequantized to f32 (exact, larger), with a notice.
    Dequantize,
}

impl GgmlType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<Self> {
        TABLE.iter().copied().find(|t| t.id == id)
    }

    /// Bytes of a tensor with ggml dims `ne` (`ne[0]` the row), or why it cannot be stored.
    pub fn tensor_bytes(&self, ne: &[u64]) -> Result<u64, String> {
        let row = ne.first().copied().unwrap_or(1);
        if !row.is_multiple_of(self.block_len) {
            return Err(format!(
                "row of {row} is not a whole number of {}-value {} blocks",
                self.block_len, self.name
            ));
        }
        let rows = ne[1.min(ne.len())..]
            .iter()
            .try_fold(1u64, |a, &d| a.checked_mul(d));
        rows.and_then(|r| {
            (row / self.block_len)
                .checked_mul(self.block_bytes)?
                .checked_mul(r)
        })
        .ok_or_else(|| format!("shape {ne:?} of {} overflows", self.name))
    }

    /// How this type is imported, or `None` when it is not supported at all.
    pub fn import(&self) -> Option<Import> {
        Some(match self.name {
            "F32" => Import::Native(QuantType::F32),
            "F16" => Import::Native(QuantType::F16),
            "BF16" => Import::Native(QuantType::BF16),
            "Q8_0" => Import::Native(QuantType::Q8_0),
            "Q4_0" => Import::Native(QuantType::Q4_0),
            "Q4_K" => Import::Native(QuantType::Q4K),
            "Q6_K" => Import::Native(QuantType::Q6K),
            "Q5_0" => Import::Lossless(QuantType::Q8_0),
            // Both carry a per-block min `m` (value = d·q + m): no int8-times-scale block holds
            // that exactly, so they are dequantized.
            "Q4_1" | "Q5_1" | "Q5_K" => Import::Dequantize,
            _ => return None,
        })
    }
}

fn f16_at(b: &[u8], at: usize) -> f32 {
    f16_val([b[at], b[at + 1]])
}

/// The 32 5-bit values (0..32) of a `Q5_0`/`Q5_1` block from its `qh` (bit j: the fifth bit of
/// value j) and `qs` (byte j: value j low nibble, value j + 16 high nibble).
fn q5_values(qh: &[u8], qs: &[u8]) -> [u8; 32] {
    let h = u32::from_le_bytes([qh[0], qh[1], qh[2], qh[3]]);
    std::array::from_fn(|i| {
        let low = if i < 16 { qs[i] & 0xf } else { qs[i - 16] >> 4 };
        low | ((((h >> i) & 1) as u8) << 4)
    })
}

/// Dequantize `src` (whole blocks of type `ty`, one of `Q4_1`, `Q5_0`, `Q5_1`, `Q5_K`) into
/// `dst`; `false` for any other type or mismatched lengths.
pub fn dequantize(ty: GgmlType, src: &[u8], dst: &mut [f32]) -> bool {
    let (bl, bb) = (ty.block_len as usize, ty.block_bytes as usize);
    if !src.len().is_multiple_of(bb) || src.len() / bb * bl != dst.len() {
        return false;
    }
    for (b, y) in src.chunks_exact(bb).zip(dst.chunks_exact_mut(bl)) {
        match ty.name {
            "Q4_1" => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for j in 0..16 {
                    y[j] = (b[4 + j] & 0xf) as f32 * d + m;
                    y[j + 16] = (b[4 + j] >> 4) as f32 * d + m;
                }
            }
            "Q5_0" => {
                let d = f16_at(b, 0);
                for (o, q) in y.iter_mut().zip(q5_values(&b[2..6], &b[6..22])) {
                    *o = (q as i32 - 16) as f32 * d;
                }
            }
            "Q5_1" => {
                let (d, m) = (f16_at(b, 0), f16_at(b, 2));
                for (o, q) in y.iter_mut().zip(q5_values(&b[4..8], &b[8..24])) {
                    *o = q as f32 * d + m;
                }
            }
            "Q5_K" => {
                // d, dmin @0, 6-bit scales/mins @4 (packed as q4_k's), qh @16, qs @48: chunk c
                // of 64 values has its low nibbles in qs[32c..], its fifth bits in bits 2c and
                // 2c + 1 of qh[l].
                let (d, dmin) = (f16_at(b, 0), f16_at(b, 2));
                let mut sc = [0u8; 12];
                sc.copy_from_slice(&b[4..16]);
                let (scales, mins) = unpack_scales_q4k(&sc);
                let (qh, qs) = (&b[16..48], &b[48..176]);
                for c in 0..4 {
                    for half in 0..2 {
                        let j = 2 * c + half;
                        let (dj, mj) = (d * scales[j] as f32, dmin * mins[j] as f32);
                        for l in 0..32 {
                            let low = (qs[32 * c + l] >> (4 * half)) & 0xf;
                            let high = (qh[l] >> j) & 1;
                            y[64 * c + 32 * half + l] = dj * (low | (high << 4)) as f32 - mj;
                        }
                    }
                }
            }
            _ => return false,
        }
    }
    true
}

/// `Q5_0` blocks → `q8_0` blocks with the same scale: value `d·(q − 16)` becomes `d·qs` with
/// `qs = q − 16` in [-16, 15], so every value is the same f32 product.
pub fn q5_0_to_q8_0(src: &[u8]) -> Option<Vec<u8>> {
    if !src.len().is_multiple_of(22) {
        return None;
    }
    let mut out = Vec::with_capacity(src.len() / 22 * 34);
    for b in src.chunks_exact(22) {
        let q = q5_values(&b[2..6], &b[6..22]);
        let blk = BlockQ8_0 {
            d: [b[0], b[1]],
            qs: std::array::from_fn(|i| q[i] as i8 - 16),
        };
        out.extend_from_slice(&blk.d);
        out.extend(blk.qs.iter().map(|&v| v as u8));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_formats::quant::dequantize as dlm_dequantize;

    fn rng(seed: u64) -> impl FnMut() -> u8 {
        let mut s = seed;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 32) as u8
        }
    }

    /// Random blocks of `bb` bytes whose f16 fields at `f16s` are finite, normal-sized scales.
    fn blocks(n: usize, bb: usize, f16s: &[usize], seed: u64) -> Vec<u8> {
        let mut r = rng(seed);
        let mut v: Vec<u8> = (0..n * bb).map(|_| r()).collect();
        for (i, b) in v.chunks_exact_mut(bb).enumerate() {
            for &at in f16s {
                let x = (i as f32 * 0.37 + at as f32).sin() * 0.05;
                b[at..at + 2].copy_from_slice(&half::f16::from_f32(x).to_le_bytes());
            }
        }
        v
    }

    #[test]
    fn q5_0_to_q8_0_keeps_every_value_bit_for_bit() {
        let q5 = GgmlType::from_id(6).unwrap();
        let n = 4096;
        let src = blocks(n, 22, &[0], 1);
        let mut want = vec![0f32; n * 32];
        assert!(dequantize(q5, &src, &mut want));
        let q8 = q5_0_to_q8_0(&src).unwrap();
        let mut got = vec![0f32; n * 32];
        dlm_dequantize(QuantType::Q8_0, &q8, &mut got).unwrap();
        assert!(
            want.iter()
                .zip(&got)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        // the q8_0 precondition (never -128) holds: values are in [-16, 15]
        assert!(
            q8.chunks_exact(34)
                .all(|b| b[2..].iter().all(|&v| (v as i8) >= -16 && (v as i8) <= 15))
        );
        // and the values span the whole 5-bit range, so the check is not vacuous
        let q: Vec<i8> = q8
            .chunks_exact(34)
            .flat_map(|b| b[2..].to_vec())
            .map(|v| v as i8)
            .collect();
        assert_eq!((q.iter().min(), q.iter().max()), (Some(&-16), Some(&15)));
    }

    #[test]
    fn q4_1_and_q5_1_carry_a_min_that_q8_0_cannot_hold() {
        // Why they are dequantized. Value 0 of a block is its min m, so a q8_0 block holding
        // it exactly needs d' = m / k for an integer k in 1..=127 (f16 × small int products are
        // exact in f32, so d' · k = m means d' is exactly m / k); no such d' fits this block.
        let mut b = vec![0u8; 20];
        b[0..2].copy_from_slice(&half::f16::from_f32(0.0123).to_le_bytes());
        for j in 0..16 {
            b[4 + j] = (j as u8) | ((15 - j as u8) << 4);
        }
        let mut y = [0f32; 32];
        b[2..4].copy_from_slice(&half::f16::from_f32(0.3337).to_le_bytes());
        assert!(dequantize(GgmlType::from_id(3).unwrap(), &b, &mut y));
        let m = y[0];
        let fits_any = (1..=127).any(|k: i32| {
            let d = half::f16::from_f32(m / k as f32).to_f32();
            y.iter().all(|v| {
                let q = (v / d).round();
                q.abs() <= 127.0 && q * d == *v
            })
        });
        assert!(!fits_any);
    }

    #[test]
    fn q5_1_and_q5_k_without_fifth_bits_equal_q4_1_and_q4_k() {
        // Q5_1 with qh = 0 is Q4_1 with the same d, m, qs.
        let q41 = blocks(64, 20, &[0, 2], 2);
        let mut q51 = Vec::new();
        for b in q41.chunks_exact(20) {
            q51.extend_from_slice(&b[0..4]);
            q51.extend_from_slice(&[0; 4]);
            q51.extend_from_slice(&b[4..20]);
        }
        let (mut a, mut b) = (vec![0f32; 64 * 32], vec![0f32; 64 * 32]);
        assert!(dequantize(GgmlType::from_id(3).unwrap(), &q41, &mut a));
        assert!(dequantize(GgmlType::from_id(7).unwrap(), &q51, &mut b));
        assert_eq!(a, b);
        // Q5_K with qh = 0 is Q4_K (ours, ggml's layout) with the same d, dmin, scales, qs.
        let q4k = blocks(16, 144, &[0, 2], 3);
        let mut q5k = Vec::new();
        for b in q4k.chunks_exact(144) {
            q5k.extend_from_slice(&b[0..16]);
            q5k.extend_from_slice(&[0; 32]);
            q5k.extend_from_slice(&b[16..144]);
        }
        let (mut a, mut b) = (vec![0f32; 16 * 256], vec![0f32; 16 * 256]);
        dlm_dequantize(QuantType::Q4K, &q4k, &mut a).unwrap();
        assert!(dequantize(GgmlType::from_id(13).unwrap(), &q5k, &mut b));
        assert_eq!(a, b);
        // Setting the fifth bit of value 64c + 32h + l adds 16 steps of its sub-block's scale.
        let mut q5k1 = q5k[..176].to_vec();
        q5k1[16 + 5] |= 1 << 3; // qh[5] bit 3: chunk 1, high half, l = 5 -> value 101
        let mut c = vec![0f32; 256];
        assert!(dequantize(GgmlType::from_id(13).unwrap(), &q5k1, &mut c));
        let mut sc = [0u8; 12];
        sc.copy_from_slice(&q5k1[4..16]);
        let step = f16_at(&q5k1, 0) * unpack_scales_q4k(&sc).0[3] as f32;
        for (i, (x, y)) in c.iter().zip(&b[..256]).enumerate() {
            if i == 101 {
                assert!(
                    (x - y - 16.0 * step).abs() <= 1e-6 * (1.0 + x.abs()),
                    "{x} {y}"
                );
            } else {
                assert_eq!(x, y, "value {i}");
            }
        }
    }

    #[test]
    fn sizes_and_support() {
        let q4k = GgmlType::from_id(12).unwrap();
        assert_eq!(q4k.tensor_bytes(&[512, 3]), Ok(2 * 144 * 3));
        assert!(q4k.tensor_bytes(&[384, 3]).is_err());
        assert!(
            GgmlType::from_id(0)
                .unwrap()
                .tensor_bytes(&[u64::MAX, 2])
                .is_err()
        );
        assert_eq!(
            GgmlType::from_id(14).unwrap().import(),
            Some(Import::Native(QuantType::Q6K))
        );
        assert_eq!(
            GgmlType::from_id(6).unwrap().import(),
            Some(Import::Lossless(QuantType::Q8_0))
        );
        assert_eq!(GgmlType::from_id(16).unwrap().import(), None);
        assert_eq!(GgmlType::from_id(4), None);
    }
}
