//! Tokenizer, model, forward pass, KV caches and decoders for diffusion language models.
#![forbid(unsafe_code)]

mod error;
pub mod model;

pub use error::RuntimeError;
