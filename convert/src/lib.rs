//! HF checkpoint folder to `.dlm`: safetensors shards, config and tokenizer JSON, quantization policy.
#![forbid(unsafe_code)]
