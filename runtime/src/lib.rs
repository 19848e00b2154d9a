//! Tokenizer, model, forward pass, KV caches and decoders for diffusion language models.
#![forbid(unsafe_code)]

pub mod backend;
pub mod chat;
pub mod decode;
mod engine;
mod error;
pub mod final_text;
pub mod model;
pub mod tokenizer;

pub use engine::Engine;
pub use error::RuntimeError;
pub use tokenizer::Tokenizer;
