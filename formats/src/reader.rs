//! Zero-copy reader: parses the header, metadata and tensor directory of a `.dlm` file held in
//! memory (usually a memory map) and hands out byte views of tensors. Every count, offset, shape
//! and alignment is checked before use.

use crate::{FormatError, MetaValue, QuantType};

/// One entry of the tensor directory.
#[derive(Debug, Clone, PartialEq)]
pub struct TensorInfo {
    /// Tensor name (ours, not Hugging Face's: `blk.0.wq`).
    pub name: String,
    /// Storage type.
    pub quant: QuantType,
    /// Row-major shape; the last dimension is the row.
    pub shape: Vec<u64>,
    /// Absolute offset of the data in the file.
    pub offset: u64,
    /// Length of the data in bytes.
    pub len_bytes: u64,
    /// Checksum of the data bytes (see SPEC.md).
    pub checksum: u64,
}

/// A parsed `.dlm` header: metadata and tensor directory, owned; tensor data stays in the
/// caller's bytes and is borrowed on demand.
#[derive(Debug, Clone)]
pub struct DlmFile {
    /// Format version of the file.
    pub version: u32,
    /// Metadata in file order.
    pub meta: Vec<(String, MetaValue)>,
    /// Tensor directory in file order.
    pub tensors: Vec<TensorInfo>,
}

impl DlmFile {
    /// Parse and validate the header of `bytes` (the whole file).
    pub fn parse(bytes: &[u8]) -> Result<Self, FormatError> {
        let _ = bytes;
        todo!("formats reader")
    }
}
