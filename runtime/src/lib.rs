//! Tokenizer, model, forward pass, KV caches and decoders for diffusion language models.
#![forbid(unsafe_code)]

mod alloc;
pub mod backend;
pub mod chat;
pub mod decode;
mod engine;
mod error;
pub mod final_text;
pub mod integrity;
pub mod model;
pub mod tokenizer;

pub use engine::{Answer, Engine, clamp_steps};
pub use error::RuntimeError;
pub use tokenizer::Tokenizer;
