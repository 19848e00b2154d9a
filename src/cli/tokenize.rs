//! `dlm tokenize` and `dlm detokenize`: text to ids and back with the model's own tokenizer.

use super::{CliResult, json, model_path};
use std::path::PathBuf;

/// Turn text into token ids with the tokenizer stored in the model file.
///
/// Special tokens written in the text (e.g. `<|eot_id|>`) are matched as single tokens; no BOS
/// is added.
#[derive(clap::Args)]
pub struct TokenizeArgs {
    /// Model: a `.dlm` file or a Hugging Face folder.
    #[arg(short, long)]
    model: PathBuf,
    /// Print `{"ids": [...], "tokens": [...]}` instead of comma-separated ids.
    #[arg(long)]
    json: bool,
    /// The text to tokenize.
    text: String,
}

/// Turn comma-separated token ids back into text.
#[derive(clap::Args)]
pub struct DetokenizeArgs {
    /// Model: a `.dlm` file or a Hugging Face folder.
    #[arg(short, long)]
    model: PathBuf,
    /// Leave special tokens out of the text.
    #[arg(long)]
    skip_special: bool,
    /// Comma-separated ids, e.g. `39,906,307`.
    #[arg(value_delimiter = ',', required = true)]
    ids: Vec<u32>,
}

pub fn run_tokenize(a: TokenizeArgs) -> CliResult {
    let engine = model_path::load_engine(&a.model, "cpu", None)?;
    let tok = engine.tokenizer();
    let ids = tok.encode(&a.text);
    if a.json {
        let tokens: Vec<String> = ids
            .iter()
            .map(|&i| json::string(tok.token_str(i).unwrap_or("")))
            .collect();
        println!(
            "{{\"ids\":{},\"tokens\":[{}]}}",
            json::numbers(&ids),
            tokens.join(",")
        );
    } else {
        let s: Vec<String> = ids.iter().map(|i| i.to_string()).collect();
        println!("{}", s.join(","));
    }
    Ok(())
}

pub fn run_detokenize(a: DetokenizeArgs) -> CliResult {
    let engine = model_path::load_engine(&a.model, "cpu", None)?;
    let tok = engine.tokenizer();
    println!("{}", tok.decode(&a.ids, a.skip_special)?);
    Ok(())
}
