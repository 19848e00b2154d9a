//! The quant-type table: one row per storage type, from which every size and name derives.
//! Ids are written into files and are never reused or renumbered.
//!
//! Since format version 2 the ids live in 1000..2000, plainly apart from ggml's type ids (0..~40),
//! so that neither can be mistaken for the other; [`QuantType::from_v1_id`] reads the ids of
//! version-1 files, which overlapped ggml's.

use crate::FormatError;

/// How the elements of a tensor are stored. The discriminant is the id written in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum QuantType {
    /// IEEE-754 binary32.
    F32 = 1000,
    /// IEEE-754 binary16.
    F16 = 1001,
    /// bfloat16 (the top half of an f32).
    BF16 = 1002,
    /// 32 int8 values in [-127, 127] with one f16 scale (34 bytes a block).
    Q8_0 = 1010,
    /// 32 4-bit values (offset by 8) with one f16 scale (18 bytes a block).
    Q4_0 = 1011,
    /// 256-value super-block: 8 sub-blocks of 32 with 6-bit scales and mins, f16 super-scales.
    Q4K = 1020,
    /// 256-value super-block of 6-bit values with 16 int8 sub-scales and an f16 super-scale,
    /// in ggml's `Q6_K` layout.
    Q6K = 1021,
}

/// The id format version 1 gave the old `q6_k` block, whose `ql` packing differed from ggml's;
/// its files must be reconverted.
pub const V1_Q6K_ID: u32 = 14;

/// Every quant type, in id order.
pub const ALL_QUANT_TYPES: [QuantType; 7] = [
    QuantType::F32,
    QuantType::F16,
    QuantType::BF16,
    QuantType::Q8_0,
    QuantType::Q4_0,
    QuantType::Q4K,
    QuantType::Q6K,
];

impl QuantType {
    /// The type with file id `id`, or `UnknownQuantType`.
    pub fn from_id(id: u32) -> Result<Self, FormatError> {
        ALL_QUANT_TYPES
            .iter()
            .copied()
            .find(|q| q.id() == id)
            .ok_or(FormatError::UnknownQuantType(id))
    }

    /// The id written in the file.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// The type a format-version-1 file means by `id`, for the types whose bytes did not change
    /// in version 2 (f32 0, f16 1, bf16 2, q8_0 8, q4_0 9, q4_k 12). The old q6_k id
    /// ([`V1_Q6K_ID`]) is `ObsoleteQuantType`; any other id is `UnknownQuantType`.
    pub fn from_v1_id(id: u32) -> Result<Self, FormatError> {
        Ok(match id {
            0 => QuantType::F32,
            1 => QuantType::F16,
            2 => QuantType::BF16,
            8 => QuantType::Q8_0,
            9 => QuantType::Q4_0,
            12 => QuantType::Q4K,
            V1_Q6K_ID => {
                return Err(FormatError::ObsoleteQuantType {
                    name: "q6_k",
                    id,
                    version: 1,
                });
            }
            _ => return Err(FormatError::UnknownQuantType(id)),
        })
    }

    /// The type with id `id` in a file of format `version` (1 or 2).
    pub fn from_file_id(version: u32, id: u32) -> Result<Self, FormatError> {
        if version == 1 {
            Self::from_v1_id(id)
        } else {
            Self::from_id(id)
        }
    }

    /// The short name used by the CLI and `inspect` (`f32`, `q4_k`, ...).
    pub fn name(self) -> &'static str {
        match self {
            QuantType::F32 => "f32",
            QuantType::F16 => "f16",
            QuantType::BF16 => "bf16",
            QuantType::Q8_0 => "q8_0",
            QuantType::Q4_0 => "q4_0",
            QuantType::Q4K => "q4_k",
            QuantType::Q6K => "q6_k",
        }
    }

    /// Parse a CLI name (`f32`, `q8_0`, ...).
    pub fn from_name(name: &str) -> Option<Self> {
        ALL_QUANT_TYPES.iter().copied().find(|q| q.name() == name)
    }

    /// Elements per block (1 for the float types).
    pub const fn block_len(self) -> usize {
        match self {
            QuantType::F32 | QuantType::F16 | QuantType::BF16 => 1,
            QuantType::Q8_0 | QuantType::Q4_0 => 32,
            QuantType::Q4K | QuantType::Q6K => 256,
        }
    }

    /// Bytes per block.
    pub const fn block_bytes(self) -> usize {
        match self {
            QuantType::F32 => 4,
            QuantType::F16 | QuantType::BF16 => 2,
            QuantType::Q8_0 => 34,
            QuantType::Q4_0 => 18,
            QuantType::Q4K => 144,
            QuantType::Q6K => 210,
        }
    }

    /// Whether this is one of the block-quantized integer types.
    pub fn is_quantized(self) -> bool {
        self.block_len() > 1
    }

    /// Bytes of one row of `row_len` elements, or `None` if `row_len` is not a whole number of
    /// blocks or the size overflows.
    pub fn row_bytes(self, row_len: u64) -> Option<u64> {
        let bl = self.block_len() as u64;
        if !row_len.is_multiple_of(bl) {
            return None;
        }
        (row_len / bl).checked_mul(self.block_bytes() as u64)
    }

    /// Bytes of a tensor of `shape` (row-major, last dimension is the row), checked for
    /// overflow and block divisibility.
    pub fn tensor_bytes(self, shape: &[u64]) -> Option<u64> {
        let (row_len, outer) = match shape.split_last() {
            None => (1, &[][..]),
            Some((last, outer)) => (*last, outer),
        };
        let rows = outer.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))?;
        self.row_bytes(row_len)?.checked_mul(rows)
    }
}

impl std::fmt::Display for QuantType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip_and_unknown_ids_are_rejected() {
        for q in ALL_QUANT_TYPES {
            assert_eq!(QuantType::from_id(q.id()).unwrap(), q);
            assert_eq!(QuantType::from_name(q.name()), Some(q));
        }
        // No id of ours is a ggml type id (0..=39 today) or a version-1 id.
        for id in [0u32, 1, 2, 3, 7, 8, 9, 12, 14, 30, 99, u32::MAX] {
            assert!(matches!(
                QuantType::from_id(id),
                Err(FormatError::UnknownQuantType(x)) if x == id
            ));
        }
        for q in ALL_QUANT_TYPES {
            assert!((1000..2000).contains(&q.id()), "{q} id {}", q.id());
        }
    }

    #[test]
    fn version_1_ids_map_to_the_unchanged_types_and_q6_k_asks_for_reconversion() {
        let v1 = [
            (0, QuantType::F32),
            (1, QuantType::F16),
            (2, QuantType::BF16),
            (8, QuantType::Q8_0),
            (9, QuantType::Q4_0),
            (12, QuantType::Q4K),
        ];
        for (id, q) in v1 {
            assert_eq!(QuantType::from_v1_id(id).unwrap(), q);
            assert_eq!(QuantType::from_file_id(1, id).unwrap(), q);
            assert_eq!(QuantType::from_file_id(2, q.id()).unwrap(), q);
        }
        let e = QuantType::from_file_id(1, 14).unwrap_err();
        assert!(matches!(e, FormatError::ObsoleteQuantType { id: 14, .. }));
        assert!(e.to_string().contains("reconvert"), "{e}");
        assert!(matches!(
            QuantType::from_v1_id(1010),
            Err(FormatError::UnknownQuantType(1010))
        ));
    }

    #[test]
    fn sizes_check_blocks_and_overflow() {
        assert_eq!(QuantType::F32.tensor_bytes(&[3, 5]), Some(60));
        assert_eq!(QuantType::Q8_0.tensor_bytes(&[2, 64]), Some(2 * 2 * 34));
        assert_eq!(QuantType::Q8_0.tensor_bytes(&[2, 33]), None);
        assert_eq!(QuantType::Q4K.row_bytes(512), Some(288));
        assert_eq!(QuantType::F32.tensor_bytes(&[u64::MAX, 4]), None);
        assert_eq!(QuantType::F32.tensor_bytes(&[]), Some(4));
    }
}
