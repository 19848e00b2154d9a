//! The `.dlm` container: a little-endian, versioned, mmap-friendly file holding a model's
//! weights, tokenizer, chat template and decoding defaults. `SPEC.md` beside this crate is the
//! byte-level specification.

mod error;
pub mod keys;
mod meta;
mod quant_type;
mod reader;
mod writer;

pub use error::FormatError;
pub use meta::MetaValue;
pub use quant_type::{ALL_QUANT_TYPES, QuantType};
pub use reader::{DlmFile, TensorInfo};
pub use writer::{DlmWriter, TensorDecl};
