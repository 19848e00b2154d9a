//! Fixed numbers of the byte layout: magic, version, header fields, metadata type tags and the
//! limits a reader enforces. `SPEC.md` is the prose for every constant here.

use crate::MetaValue;

/// The first four bytes of every `.dlm` file.
pub const MAGIC: [u8; 4] = *b"DLM\0";

/// The format version this build writes and the newest it reads.
///
/// Version 2 (from version 1): quant ids moved to 1000.. (disjoint from ggml's) and `q6_k` took
/// ggml's `Q6_K` byte layout. Version-1 files still load, except those holding `q6_k`.
pub const VERSION: u32 = 2;

/// Size of the fixed header; the metadata section starts right after it.
pub const HEADER_BYTES: u64 = 64;

/// The alignment this build's writer uses for tensor data.
pub const DEFAULT_ALIGNMENT: u32 = 64;

/// The smallest alignment a reader accepts.
pub const MIN_ALIGNMENT: u32 = 64;

/// The largest alignment a reader accepts (1 MiB).
pub const MAX_ALIGNMENT: u32 = 1 << 20;

/// The most dimensions a tensor may have.
pub const MAX_DIMS: usize = 8;

/// The fewest bytes one metadata entry can take: key length, a 1-byte key, tag, 1-byte value.
pub const MIN_META_ENTRY_BYTES: u64 = 4 + 1 + 4 + 1;

/// The fewest bytes one directory entry can take: name length, a 1-byte name, quant id,
/// n_dims (0 dims), offset, len_bytes, checksum.
pub const MIN_DIR_ENTRY_BYTES: u64 = 4 + 1 + 4 + 4 + 8 + 8 + 8;

/// Byte offsets of the header fields.
pub mod header {
    /// `[u8; 4]` magic.
    pub const MAGIC: usize = 0;
    /// u32 version.
    pub const VERSION: usize = 4;
    /// u32 alignment of tensor data.
    pub const ALIGNMENT: usize = 8;
    /// u32 reserved, zero.
    pub const RESERVED: usize = 12;
    /// u64 number of metadata entries.
    pub const N_META: usize = 16;
    /// u64 number of tensors.
    pub const N_TENSORS: usize = 24;
    /// u64 absolute offset of the metadata section.
    pub const META_OFFSET: usize = 32;
    /// u64 absolute offset of the tensor directory.
    pub const DIR_OFFSET: usize = 40;
    /// u64 absolute offset of the data section.
    pub const DATA_OFFSET: usize = 48;
    /// u64 total file size in bytes.
    pub const FILE_BYTES: usize = 56;
}

/// Metadata value-type tags as written in the file. Never reused or renumbered.
pub mod tag {
    /// u32.
    pub const U32: u32 = 0;
    /// i32.
    pub const I32: u32 = 1;
    /// u64.
    pub const U64: u32 = 2;
    /// f32.
    pub const F32: u32 = 3;
    /// f64.
    pub const F64: u32 = 4;
    /// bool (one byte, 0 or 1).
    pub const BOOL: u32 = 5;
    /// string.
    pub const STR: u32 = 6;
    /// array of u32.
    pub const ARR_U32: u32 = 7;
    /// array of i32.
    pub const ARR_I32: u32 = 8;
    /// array of f32.
    pub const ARR_F32: u32 = 9;
    /// array of strings.
    pub const ARR_STR: u32 = 10;
}

/// The tag written for `value`.
pub fn meta_tag(value: &MetaValue) -> u32 {
    match value {
        MetaValue::U32(_) => tag::U32,
        MetaValue::I32(_) => tag::I32,
        MetaValue::U64(_) => tag::U64,
        MetaValue::F32(_) => tag::F32,
        MetaValue::F64(_) => tag::F64,
        MetaValue::Bool(_) => tag::BOOL,
        MetaValue::Str(_) => tag::STR,
        MetaValue::ArrU32(_) => tag::ARR_U32,
        MetaValue::ArrI32(_) => tag::ARR_I32,
        MetaValue::ArrF32(_) => tag::ARR_F32,
        MetaValue::ArrStr(_) => tag::ARR_STR,
    }
}

/// `x` rounded up to a multiple of `align` (a power of two), or `None` on overflow.
pub fn align_up(x: u64, align: u64) -> Option<u64> {
    debug_assert!(align.is_power_of_two());
    Some(x.checked_add(align - 1)? & !(align - 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn align_up_rounds_and_detects_overflow() {
        assert_eq!(align_up(0, 64), Some(0));
        assert_eq!(align_up(1, 64), Some(64));
        assert_eq!(align_up(64, 64), Some(64));
        assert_eq!(align_up(65, 64), Some(128));
        assert_eq!(align_up(u64::MAX - 3, 64), None);
    }

    #[test]
    fn header_fields_fit_the_header() {
        assert_eq!(header::FILE_BYTES as u64 + 8, HEADER_BYTES);
    }
}
