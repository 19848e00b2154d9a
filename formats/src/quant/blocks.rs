//! The block structs of the quantized types: byte layouts, compile-time size checks against the
//! quant-type table, and safe views of stored bytes as blocks.
//!
//! Every block holds only `u8`/`i8` arrays, so it has alignment 1 and no padding: any byte slice
//! of the right length is a valid slice of blocks, wherever it starts (a memory map included).

use crate::QuantType;

/// Elements of a `q8_0` / `q4_0` block.
pub const QK8_0: usize = 32;
/// Elements of a `q4_0` block.
pub const QK4_0: usize = 32;
/// Elements of a `q4_k` / `q6_k` super-block.
///
/// Every block struct here is byte-identical to ggml's block of the same name (`block_q8_0`,
/// `block_q4_0`, `block_q4_K`, `block_q6_K`), so a GGUF tensor of those types is copied as is.
pub const QK_K: usize = 256;

/// `q8_0`: 32 int8 values and one f16 scale; value i is `d * qs[i]`.
///
/// Kernel precondition: every `qs[i]` is in [-127, 127] (never -128), so sign tricks on it
/// cannot overflow; `quantize_row_q8_0` guarantees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ8_0 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// The values. `[32]`
    pub qs: [i8; QK8_0],
}

/// `q4_0`: 32 4-bit values offset by 8 and one f16 scale; value i is `d * (q_i - 8)`.
///
/// Nibble layout: byte j holds value j in its low nibble and value j + 16 in its high nibble.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4_0 {
    /// Scale, f16 little-endian bits.
    pub d: [u8; 2],
    /// Packed nibbles. `[16]`
    pub qs: [u8; QK4_0 / 2],
}

/// `q4_k`: a 256-value super-block of 8 sub-blocks of 32. Sub-block j has a 6-bit scale `sc_j`
/// and a 6-bit min `m_j`; value i of sub-block j is `d * sc_j * q_i - dmin * m_j`, q in [0, 15].
///
/// `scales` packs the 16 six-bit numbers in 12 bytes: for j < 4, byte j is `sc_j` in its low 6
/// bits and the top 2 bits of `sc_{j+4}` in its high 2 bits; byte 4 + j likewise holds `m_j` and
/// the top 2 bits of `m_{j+4}`; byte 8 + j holds the low 4 bits of `sc_{j+4}` (low nibble) and of
/// `m_{j+4}` (high nibble).
///
/// `qs` is 4 chunks of 32 bytes; chunk c holds sub-block 2c in its low nibbles and sub-block
/// 2c + 1 in its high nibbles (byte c*32 + i: values 64c + i and 64c + 32 + i).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ4K {
    /// Super-scale of the sub-block scales, f16 bits.
    pub d: [u8; 2],
    /// Super-scale of the sub-block mins, f16 bits.
    pub dmin: [u8; 2],
    /// Packed 6-bit scales and mins. `[12]`
    pub scales: [u8; 12],
    /// Packed nibbles. `[128]`
    pub qs: [u8; QK_K / 2],
}

/// `q6_k`: a 256-value super-block of 16 sub-blocks of 16 values. Value i is
/// `d * scales[i / 16] * (q_i - 32)`, q in [0, 63]. Byte-identical to ggml's `block_q6_K`
/// (since format version 2; version 1 packed `ql` differently).
///
/// The block is two halves of 128 values; value `128h + 32q + l` (q in 0..4, l in 0..32) keeps
/// its low 4 bits in `ql[64h + 32(q % 2) + l]`, in the low nibble for q < 2 and the high nibble
/// for q >= 2, and its high 2 bits in bits `2q..2q+2` of `qh[32h + l]` ([`super::q6k_position`]).
///
/// Kernel precondition: `scales` are in [-127, 127].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C)]
pub struct BlockQ6K {
    /// Low 4 bits of the values. `[128]`
    pub ql: [u8; QK_K / 2],
    /// High 2 bits of the values. `[64]`
    pub qh: [u8; QK_K / 4],
    /// Sub-block scales. `[16]`
    pub scales: [i8; QK_K / 16],
    /// Super-scale, f16 bits.
    pub d: [u8; 2],
}

// The structs must match the table byte for byte: a mismatch fails the build.
const _: () = assert!(std::mem::size_of::<BlockQ8_0>() == 34);
const _: () = assert!(std::mem::size_of::<BlockQ4_0>() == 18);
const _: () = assert!(std::mem::size_of::<BlockQ4K>() == 144);
const _: () = assert!(std::mem::size_of::<BlockQ6K>() == 210);
const _: () = assert!(std::mem::align_of::<BlockQ8_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4_0>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ4K>() == 1);
const _: () = assert!(std::mem::align_of::<BlockQ6K>() == 1);

mod sealed {
    pub trait Sealed {}
}

/// A block struct: `#[repr(C)]`, alignment 1, no padding, every bit pattern valid.
///
/// # Safety
/// Implementors must have alignment 1, size `QUANT.block_bytes()`, no padding, and accept every
/// bit pattern; the trait is sealed so only the structs of this module implement it.
pub unsafe trait Block: sealed::Sealed + Copy + 'static {
    /// The quant type whose block this is.
    const QUANT: QuantType;
    /// Elements in one block.
    const LEN: usize;
}

macro_rules! impl_block {
    ($t:ty, $q:expr, $len:expr) => {
        impl sealed::Sealed for $t {}
        // SAFETY: the const asserts above check size and alignment 1; the fields are byte arrays,
        // so there is no padding and every bit pattern is valid.
        unsafe impl Block for $t {
            const QUANT: QuantType = $q;
            const LEN: usize = $len;
        }
        const _: () =
            assert!(std::mem::size_of::<$t>() == $q.block_bytes() && $len == $q.block_len());
    };
}

impl_block!(BlockQ8_0, QuantType::Q8_0, QK8_0);
impl_block!(BlockQ4_0, QuantType::Q4_0, QK4_0);
impl_block!(BlockQ4K, QuantType::Q4K, QK_K);
impl_block!(BlockQ6K, QuantType::Q6K, QK_K);

/// View `bytes` as blocks, or `None` if the length is not a whole number of blocks.
pub fn as_blocks<B: Block>(bytes: &[u8]) -> Option<&[B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: `B` has alignment 1, no padding and accepts every bit pattern (trait contract), and
    // the length is a whole number of `B`, so the cast covers exactly the borrowed bytes.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<B>(), bytes.len() / size) })
}

/// View `bytes` as mutable blocks, or `None` if the length is not a whole number of blocks.
pub fn as_blocks_mut<B: Block>(bytes: &mut [u8]) -> Option<&mut [B]> {
    let size = std::mem::size_of::<B>();
    if !bytes.len().is_multiple_of(size) {
        return None;
    }
    // SAFETY: as in `as_blocks`; the exclusive borrow of the bytes becomes the exclusive borrow
    // of the blocks, and every byte pattern written through a block is a valid byte.
    Some(unsafe {
        std::slice::from_raw_parts_mut(bytes.as_mut_ptr().cast::<B>(), bytes.len() / size)
    })
}

/// The bytes of `blocks`.
pub fn blocks_as_bytes<B: Block>(blocks: &[B]) -> &[u8] {
    // SAFETY: a block is plain bytes without padding (trait contract), so its memory is
    // `size_of_val(blocks)` initialised bytes.
    unsafe {
        std::slice::from_raw_parts(blocks.as_ptr().cast::<u8>(), std::mem::size_of_val(blocks))
    }
}
