//! A llama.cpp GGUF file from arbitrary bytes through the whole import: the container (header,
//! metadata, tensor infos, offsets), the model shape, the tokenizer and chat template, the
//! tensor plan and every tensor's copy, transcode or dequantization, then the `.dlm` written.
//! Nothing may panic, abort or hang, and a file the importer wrote must load in the runtime:
//! the converter may not accept what the runtime refuses.
#![no_main]

use dlm_convert::{ConvertOptions, QuantPolicy};
use dlm_formats::QuantType;
use dlm_runtime::Engine;
use dlm_runtime::model::{Model, ModelBytes};
use libfuzzer_sys::fuzz_target;
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// This process's scratch folder (the importer reads a path and writes a file).
fn scratch() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = if std::path::Path::new("/dev/shm").is_dir() {
            PathBuf::from("/dev/shm")
        } else {
            std::env::temp_dir()
        };
        let d = base.join(format!("dlm-fuzz-gguf-{}", std::process::id()));
        std::fs::create_dir_all(&d).expect("scratch folder");
        d
    })
}

fuzz_target!(|data: &[u8]| {
    if !data.starts_with(b"GGUF") {
        return;
    }
    let input = scratch().join("in.gguf");
    let output = scratch().join("out.dlm");
    std::fs::write(&input, data).expect("write the input");
    let _ = std::fs::remove_file(&output);
    let mut opts = ConvertOptions::new(&input, &output);
    // The stored types kept (byte copies, transcodes), or every tensor re-encoded.
    opts.policy = match data.len() % 3 {
        0 => QuantPolicy::Keep,
        1 => QuantPolicy::Uniform(QuantType::F32),
        _ => QuantPolicy::Uniform(QuantType::Q8_0),
    };
    if dlm_convert::gguf::convert_gguf(&opts, &mut |_| {}).is_err() {
        return;
    }
    let bytes = std::fs::read(&output).expect("the importer's output exists");
    let model = Model::from_bytes(Arc::new(bytes) as ModelBytes)
        .unwrap_or_else(|e| panic!("the runtime refuses what the importer wrote: {e}"));
    let engine = Engine::new(model)
        .unwrap_or_else(|e| panic!("the runtime refuses what the importer wrote: {e}"));
    let ids = engine.tokenizer().encode("Hi there, ünïcode 42!");
    let _ = engine.tokenizer().decode_lossy(&ids, true);
});
