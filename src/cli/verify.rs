//! `dlm verify`: a whole-file check of a `.dlm` — every checksum, and that the model, its
//! tokenizer, chat format and defaults load.

use super::CliResult;
use dlm_formats::DlmFile;
use dlm_runtime::Engine;
use std::path::PathBuf;

/// Check that a `.dlm` file is intact and loadable.
///
/// Reads every byte (checksums of all tensors), then loads the model exactly as `run` does.
#[derive(clap::Args)]
pub struct Args {
    /// The `.dlm` file.
    file: PathBuf,
}

pub fn run(a: Args) -> CliResult {
    super::model_path::require_dlm_file(&a.file)?;
    let (map, file) = DlmFile::open_mapped(&a.file)?;
    file.verify_checksums(map.bytes())?;
    let engine = Engine::open(&a.file)?;
    let cfg = engine.model().config();
    println!(
        "{}: ok ({} tensors checksummed; {} model, {} layers, dim {}, vocab {}, chat template: {})",
        a.file.display(),
        file.tensors.len(),
        cfg.family.name(),
        cfg.n_layers,
        cfg.dim,
        cfg.vocab_size,
        if engine.chat().is_some() { "yes" } else { "no" }
    );
    Ok(())
}
