//! `dlm convert`: a Hugging Face checkpoint folder to one `.dlm` file.

use super::CliResult;
use dlm_convert::{ConvertOptions, QuantPolicy, StderrProgress};
use std::error::Error;
use std::path::{Path, PathBuf};

/// Convert a Hugging Face LLaDA or Dream checkpoint folder into one `.dlm` file.
///
/// The folder holds `config.json`, `tokenizer.json`, `tokenizer_config.json`, optionally
/// `generation_config.json`, and `model.safetensors` or shards with
/// `model.safetensors.index.json` (bf16, f16 or f32). The output carries the weights, the
/// tokenizer, the chat template and the decoding defaults. It is written to `<OUTPUT>.tmp` and
/// renamed when complete, so an interrupted conversion leaves nothing under the final name.
///
/// Examples:
///   dlm convert ./LLaDA-8B-Instruct -o llada-q4.dlm --quant q4_k
///   dlm convert ./Dream-v0-Instruct-7B -o dream.dlm --dtype bf16
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The Hugging Face checkpoint folder.
    input: PathBuf,
    /// The `.dlm` file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Storage of the weights for the exact float path: f32, f16 or bf16 (norms stay f32).
    #[arg(long, default_value = "f32", conflicts_with = "quant")]
    dtype: Option<String>,
    /// Quantization policy: f16, q8_0, q4_0, q4_k, q6_k, or mixed (q4_k matmuls, q6_k for the
    /// sensitive ones, q8_0 embedding, f32 norms).
    #[arg(long)]
    quant: Option<String>,
    /// Model name stored in the file (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
}

pub fn run(a: Args) -> CliResult {
    let policy = a.quant.or(a.dtype).unwrap_or_else(|| "f32".into());
    let report = convert_with(&a.input, &a.output, &policy, a.name)?;
    eprintln!("{report}");
    Ok(())
}

/// Convert `input` to `output` with the named policy, drawing progress on stderr; returns a
/// one-line summary.
fn convert_with(
    input: &Path,
    output: &Path,
    policy: &str,
    name: Option<String>,
) -> Result<String, Box<dyn Error>> {
    let mut opts = ConvertOptions::new(input, output);
    opts.policy = QuantPolicy::from_name(policy)?;
    opts.name = name;
    let mut bar = StderrProgress::new();
    let report = dlm_convert::convert(&opts, &mut |p| bar.update(&p))?;
    bar.finish();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    Ok(format!(
        "wrote {} ({} model, {} tensors, {} bytes, policy {}) in {:.2} s",
        output.display(),
        report.family.name(),
        report.n_tensors,
        report.bytes_written,
        policy,
        report.seconds
    ))
}

/// Convert `input` to `output` (used when a command is given a folder).
pub fn convert_folder(input: &Path, output: &Path, policy: &str) -> Result<(), Box<dyn Error>> {
    let summary = convert_with(input, output, policy, None)?;
    eprintln!("{summary}");
    Ok(())
}
