//! llama.cpp GGUF files → `.dlm`: the container reader, ggml's types, and the import of LLaDA
//! and Dream models (names, tokenizer, chat template, storage kept or transcoded exactly).

mod ggml;
mod import;
mod reader;

pub use import::{convert_gguf, is_gguf};
