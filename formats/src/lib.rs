//! The `.dlm` container: a little-endian, versioned, mmap-friendly file holding a model's
//! weights, tokenizer, chat template and decoding defaults. `SPEC.md` beside this crate is the
//! byte-level specification.

pub mod chat;
pub mod checksum;
mod error;
mod family;
pub mod keys;
pub mod layout;
pub mod limits;
mod meta;
mod mmap;
pub mod quant;
mod quant_type;
mod reader;
mod tempfile;
pub mod tensors;
mod text;
mod writer;

pub use checksum::dlmh64;
pub use error::FormatError;
pub use family::Family;
pub use meta::MetaValue;
pub use mmap::{MappedFile, as_bf16_slice, as_f16_slice, as_f32_slice};
pub use quant_type::{ALL_QUANT_TYPES, QuantType};
pub use reader::{DlmFile, TensorInfo};
pub use tempfile::{TempFile, write_atomic};
pub use text::escape_controls;
pub use writer::{DlmWriter, TensorDecl, write_to_vec};
