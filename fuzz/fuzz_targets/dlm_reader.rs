//! A `.dlm` file from arbitrary bytes: parse, checksums, model load (config, weights, norms,
//! RoPE), tokenizer, chat format and defaults; when the model is tiny, one short generation.
//! Nothing may panic, abort or hang.
#![no_main]

use dlm_runtime::Engine;
use dlm_runtime::model::{Model, ModelBytes};
use libfuzzer_sys::fuzz_target;
use std::sync::Arc;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = dlm_formats::DlmFile::parse(data) else {
        return;
    };
    let _ = file.verify_checksums(data);
    let bytes: ModelBytes = Arc::new(data.to_vec());
    let Ok(model) = Model::from_bytes(bytes) else {
        return;
    };
    let Ok(engine) = Engine::new(model) else {
        return;
    };
    let tok = engine.tokenizer();
    let ids = tok.encode("Hi <|im_end|> there, ünïcode 42!");
    let _ = tok.decode_lossy(&ids, true);
    let cfg = engine.model().config();
    // A forward pass over garbage weights is cheap only for tiny shapes.
    if cfg.dim * cfg.hidden_dim * cfg.n_layers <= 1 << 16 && cfg.vocab_size <= 1 << 12 {
        let mut p = engine.defaults().clone();
        p.gen_length = 2;
        p.steps = 2;
        p.block_length = p.block_length.map(|_| 2);
        let prompt: Vec<u32> = ids.iter().copied().filter(|&i| (i as usize) < cfg.vocab_size).take(4).collect();
        if !prompt.is_empty()
            && let Ok(out) = engine.generate(&prompt, &p, &mut |_| true)
        {
            let _ = engine.answer(&out);
        }
    }
});
