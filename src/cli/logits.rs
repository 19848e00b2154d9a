//! `dlm logits`: the raw model outputs for a list of token ids, as a `.npy` file.

use super::{CliResult, model_path};
use dlm_runtime::model::Forward;
use std::path::{Path, PathBuf};

/// Run one full forward pass over the given ids and save every row's logits.
///
/// The output is a standard NumPy `.npy` file of f32 `[len, vocab]`: the raw outputs of each
/// position, before Dream's shift. Mask tokens may appear among the ids.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (converted on first use).
    #[arg(short, long)]
    model: PathBuf,
    /// Comma-separated token ids, e.g. `1,2,3`.
    #[arg(long, value_delimiter = ',', required = true)]
    ids: Vec<u32>,
    /// Where to write the `.npy` file.
    #[arg(short, long)]
    output: PathBuf,
    /// Where the model runs: cpu, cuda or cuda:N (a build with --features cuda).
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub fn run(a: Args) -> CliResult {
    let model = model_path::load(&a.model, &a.device, None)?;
    // `[len, vocab]` f32: asked for fallibly before the forward builds it.
    let need = a.ids.len().saturating_mul(model.vocab_size());
    Vec::<f32>::new().try_reserve_exact(need).map_err(|_| {
        format!(
            "the logits of {} ids × {} rows ({} MiB) cannot be allocated",
            a.ids.len(),
            model.vocab_size(),
            need.saturating_mul(4) >> 20
        )
    })?;
    let rows: Vec<usize> = (0..a.ids.len()).collect();
    let logits = model.logits(&a.ids, &rows)?;
    write_npy(&a.output, &logits, a.ids.len(), model.vocab_size())?;
    eprintln!(
        "wrote {} ([{}, {}] f32)",
        a.output.display(),
        a.ids.len(),
        model.vocab_size()
    );
    Ok(())
}

/// Write `data` (`[rows, cols]` row-major) as a version 1.0 `.npy` file of little-endian f32.
pub fn write_npy(path: &Path, data: &[f32], rows: usize, cols: usize) -> std::io::Result<()> {
    let mut header =
        format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    // Magic (6) + version (2) + length (2) + header + '\n' is padded to a multiple of 64.
    let unpadded = 10 + header.len() + 1;
    header.push_str(&" ".repeat(unpadded.next_multiple_of(64) - unpadded));
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + data.len() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in data {
        out.extend_from_slice(&v.to_le_bytes());
    }
    // A unique temporary file beside `path`, renamed when whole; an error names the path and
    // leaves nothing behind.
    dlm_formats::write_atomic(path, &out)
}
