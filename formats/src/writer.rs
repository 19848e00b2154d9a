//! Streaming writer: declares metadata and the tensor directory up front, then takes tensor data
//! in declared order, writes to `<path>.tmp` and renames onto `path` only when finished.

use crate::{FormatError, MetaValue, QuantType};
use std::path::Path;

/// A tensor to be written: name, type and shape; its bytes come later.
#[derive(Debug, Clone)]
pub struct TensorDecl {
    /// Tensor name.
    pub name: String,
    /// Storage type.
    pub quant: QuantType,
    /// Row-major shape.
    pub shape: Vec<u64>,
}

/// Writes one `.dlm` file.
pub struct DlmWriter {
    _private: (),
}

impl DlmWriter {
    /// Start writing `path` (through `path` + `.tmp`) with this metadata and directory.
    pub fn create(
        path: &Path,
        meta: &[(String, MetaValue)],
        tensors: &[TensorDecl],
    ) -> Result<Self, FormatError> {
        let _ = (path, meta, tensors);
        todo!("formats writer")
    }
}
