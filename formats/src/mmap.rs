//! Read-only memory maps of `.dlm` files and the casts that let aligned little-endian tensor
//! data be used in place. All of the crate's `unsafe` lives here.

use crate::FormatError;
use memmap2::Mmap;
use std::fs::File;
use std::path::Path;
use std::sync::Arc;

/// A whole file mapped read-only. Cloning is cheap (the map is shared) and the type is
/// `Send + Sync`, so one map can serve many threads and sessions.
#[derive(Debug, Clone)]
pub struct MappedFile {
    map: Arc<Mmap>,
}

impl MappedFile {
    /// Map the file at `path` read-only.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, FormatError> {
        let file = File::open(path.as_ref())?;
        // SAFETY: the map is read-only and private to this process, so we never write through
        // it. The remaining hazard, another process truncating or rewriting the file while it
        // is mapped, is outside what safe Rust can rule out; `.dlm` files are written once to a
        // temporary name and renamed into place (never modified in place), and SPEC.md states
        // that changing a file while a runtime has it open is unsupported.
        let map = unsafe { Mmap::map(&file) }?;
        Ok(MappedFile { map: Arc::new(map) })
    }

    /// The file's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// The file's size in bytes.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the file is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

impl AsRef<[u8]> for MappedFile {
    fn as_ref(&self) -> &[u8] {
        self.bytes()
    }
}

/// Reinterpret `bytes` as `[T]` when the pointer is aligned for `T`, the length is a whole
/// number of `T`, and the target is little-endian (the file's byte order).
///
/// # Safety
/// `T` must be a plain-old-data type for which every bit pattern of `size_of::<T>()` bytes is a
/// valid value, with no padding and no interior mutability.
unsafe fn cast_le<T>(bytes: &[u8]) -> Option<&[T]> {
    let size = size_of::<T>();
    if bytes.is_empty() && cfg!(target_endian = "little") {
        return Some(&[]);
    }
    if cfg!(target_endian = "big")
        || !bytes.len().is_multiple_of(size)
        || !(bytes.as_ptr() as usize).is_multiple_of(align_of::<T>())
    {
        return None;
    }
    // SAFETY: the pointer is non-null and aligned for `T` (checked above), the region of
    // `bytes.len()` bytes is a live shared borrow for the returned lifetime and holds exactly
    // `bytes.len() / size` values of `T`; the caller guarantees every bit pattern is a valid `T`,
    // and the little-endian check makes the value the one the file stores.
    Some(unsafe { std::slice::from_raw_parts(bytes.as_ptr().cast::<T>(), bytes.len() / size) })
}

/// `bytes` as little-endian f32 values, without copying; `None` when the data is not 4-byte
/// aligned, not a multiple of 4 bytes long, or the target is big-endian (then decode with
/// `f32::from_le_bytes`).
pub fn as_f32_slice(bytes: &[u8]) -> Option<&[f32]> {
    // SAFETY: f32 is plain old data: every 32-bit pattern is a valid f32 (possibly NaN).
    unsafe { cast_le::<f32>(bytes) }
}

/// `bytes` as little-endian IEEE binary16 values, without copying; `None` as for
/// [`as_f32_slice`].
pub fn as_f16_slice(bytes: &[u8]) -> Option<&[half::f16]> {
    // SAFETY: `half::f16` is `repr(transparent)` over u16; every 16-bit pattern is valid.
    unsafe { cast_le::<half::f16>(bytes) }
}

/// `bytes` as little-endian bfloat16 values, without copying; `None` as for [`as_f32_slice`].
pub fn as_bf16_slice(bytes: &[u8]) -> Option<&[half::bf16]> {
    // SAFETY: `half::bf16` is `repr(transparent)` over u16; every 16-bit pattern is valid.
    unsafe { cast_le::<half::bf16>(bytes) }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A buffer with `bytes` starting at a 4-byte aligned address, and that start.
    fn aligned_copy(bytes: &[u8]) -> (Vec<u8>, usize) {
        let mut buf = vec![0u8; bytes.len() + 8];
        let off = (4 - (buf.as_ptr() as usize) % 4) % 4;
        buf[off..off + bytes.len()].copy_from_slice(bytes);
        (buf, off)
    }

    #[test]
    fn f32_cast_checks_alignment_and_length() {
        let vals = [1.0f32, -2.5, 3.25, f32::MAX];
        let le: Vec<u8> = vals.iter().flat_map(|v| v.to_le_bytes()).collect();
        let (buf, off) = aligned_copy(&le);
        let view = &buf[off..off + le.len()];
        if cfg!(target_endian = "little") {
            assert_eq!(as_f32_slice(view), Some(&vals[..]));
        } else {
            assert_eq!(as_f32_slice(view), None);
        }
        assert_eq!(as_f32_slice(&buf[off + 1..off + 9]), None, "misaligned");
        assert_eq!(as_f32_slice(&buf[off..off + 7]), None, "ragged length");
        assert_eq!(as_f32_slice(&[]).map(<[f32]>::len), Some(0));
    }

    #[test]
    fn f16_and_bf16_casts() {
        let mut buf = [0u8; 16];
        let off = (2 - (buf.as_ptr() as usize) % 2) % 2;
        buf[off..off + 2].copy_from_slice(&half::f16::from_f32(1.5).to_le_bytes());
        buf[off + 2..off + 4].copy_from_slice(&half::bf16::from_f32(-2.0).to_le_bytes());
        if cfg!(target_endian = "little") {
            assert_eq!(
                as_f16_slice(&buf[off..off + 2]).map(|s| s[0].to_f32()),
                Some(1.5)
            );
            assert_eq!(
                as_bf16_slice(&buf[off + 2..off + 4]).map(|s| s[0].to_f32()),
                Some(-2.0)
            );
        }
        assert!(as_f16_slice(&buf[off + 1..off + 3]).is_none());
        assert!(as_bf16_slice(&buf[off..off + 3]).is_none());
    }
}
