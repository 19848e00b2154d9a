//! `dlm convert`: a Hugging Face checkpoint folder or a llama.cpp GGUF file to one `.dlm` file.

use super::CliResult;
use dlm_convert::{ChatTemplateSource, ConvertOptions, QuantPolicy, StderrProgress};
use std::error::Error;
use std::path::{Path, PathBuf};

/// Convert a Hugging Face LLaDA or Dream checkpoint folder, or a llama.cpp GGUF file of one,
/// into one `.dlm` file.
///
/// A GGUF file keeps its own quantization by default (F32, F16, BF16, Q8_0, Q4_0, Q4_K and Q6_K
/// are copied as they are, Q5_0 becomes q8_0 with every value exact, Q4_1, Q5_1 and Q5_K become
/// f32 with a notice); --quant re-quantizes. The folder holds `config.json`, `tokenizer.json`, `tokenizer_config.json`, optionally
/// `generation_config.json`, and `model.safetensors` or shards with
/// `model.safetensors.index.json` (bf16, f16 or f32). The output carries the weights, the
/// tokenizer, the chat template and the decoding defaults. It is written to a unique temporary
/// file beside OUTPUT, read back, and renamed only when complete and intact, so an interrupted
/// (or concurrent) conversion never leaves a partial file under the final name. OUTPUT may not
/// be one of the input files.
///
/// Examples:
///   dlm convert ./LLaDA-8B-Instruct -o llada-q4.dlm --quant q4_k
///   dlm convert ./Dream-v0-Instruct-7B -o dream.dlm --dtype bf16
///   dlm convert llada-8b-instruct.Q4_K_M.gguf -o llada.dlm
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// The Hugging Face checkpoint folder or GGUF file.
    input: PathBuf,
    /// The `.dlm` file to write.
    #[arg(short, long)]
    output: PathBuf,
    /// Storage of the weights for the exact float path: f32, f16 or bf16 (norms stay f32).
    /// Default: f32 for a folder, the file's own types for a GGUF file.
    #[arg(long, conflicts_with = "quant")]
    dtype: Option<String>,
    /// Quantization policy: f16, q8_0, q4_0, q4_k, q6_k, mixed (q4_k matmuls, q6_k for the
    /// sensitive ones, q8_0 embedding, f32 norms) or keep; llama.cpp's names (Q4_K_M, Q8_0, ...)
    /// are accepted, case-insensitively, and mapped to the closest (printed). Rows that a
    /// 256-block does not divide fall back to the same bit width (q4_k → q4_0, q6_k → q8_0).
    #[arg(long)]
    quant: Option<String>,
    /// Model name stored in the file (default: the folder's name).
    #[arg(long)]
    name: Option<String>,
    /// Reduce this Jinja chat template file instead of tokenizer_config.json's (for a
    /// checkpoint whose own template cannot be reduced).
    #[arg(long, value_name = "FILE", conflicts_with = "no_chat_template")]
    chat_template: Option<PathBuf>,
    /// Store no chat template (run then uses prompts as plain text).
    #[arg(long)]
    no_chat_template: bool,
}

pub fn run(a: Args) -> CliResult {
    let default = if dlm_convert::gguf::is_gguf(&a.input) {
        "keep"
    } else {
        "f32"
    };
    let policy = a.quant.or(a.dtype).unwrap_or_else(|| default.into());
    let chat = match (a.chat_template, a.no_chat_template) {
        (Some(f), _) => ChatTemplateSource::File(f),
        (None, true) => ChatTemplateSource::None,
        (None, false) => ChatTemplateSource::TokenizerConfig,
    };
    let report = convert_with(&a.input, &a.output, &policy, a.name, chat)?;
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
    chat_template: ChatTemplateSource,
) -> Result<String, Box<dyn Error>> {
    let mut opts = ConvertOptions::new(input, output);
    opts.policy = QuantPolicy::from_name(policy)?;
    if let Some(note) = QuantPolicy::explain_name(policy) {
        eprintln!("{note}");
    }
    opts.name = name;
    opts.chat_template = chat_template;
    let mut bar = StderrProgress::new();
    let report = dlm_convert::convert(&opts, &mut |p| {
        if p.tensors_done == 0 {
            eprintln!(
                "writing {} of weights to {} (policy {})",
                human_bytes(p.bytes_total),
                output.display(),
                opts.policy.name()
            );
        }
        bar.update(&p)
    })?;
    bar.finish();
    for w in &report.warnings {
        eprintln!("warning: {w}");
    }
    for n in &report.notices {
        eprintln!("note: {n}");
    }
    for line in report.mix.lines() {
        eprintln!("{line}");
    }
    Ok(format!(
        "wrote {} ({} model, {} tensors, {} bytes, policy {}) in {:.2} s",
        output.display(),
        report.family.name(),
        report.n_tensors,
        report.bytes_written,
        opts.policy.name(),
        report.seconds
    ))
}

/// Convert `input` to `output` (used when a command is given a folder or a GGUF file).
pub fn convert_folder(input: &Path, output: &Path, policy: &str) -> Result<(), Box<dyn Error>> {
    let summary = convert_with(input, output, policy, None, ChatTemplateSource::default())?;
    eprintln!("{summary}");
    Ok(())
}

/// `12.3 GiB`, `456.7 MiB`, `789 bytes`.
pub fn human_bytes(b: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    const MIB: f64 = (1u64 << 20) as f64;
    let f = b as f64;
    if f >= GIB {
        format!("{:.1} GiB", f / GIB)
    } else if f >= MIB {
        format!("{:.1} MiB", f / MIB)
    } else {
        format!("{b} bytes")
    }
}
