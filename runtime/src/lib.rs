//! Tokenizer, model, forward pass, KV caches and decoders for diffusion language models.
#![forbid(unsafe_code)]

mod error;
pub mod decode;
pub mod model;
pub mod tokenizer;

pub use error::RuntimeError;
pub use tokenizer::Tokenizer;
