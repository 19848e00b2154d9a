//! `tokenizer.json` from arbitrary bytes: the converter's parse, then the runtime tokenizer
//! built from what it keeps, encoding and decoding a few texts.
#![no_main]

use dlm_runtime::tokenizer::{PreTokenizer, Tokenizer, TokenizerData};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    // The reference tokenizers have 2,048 ids; leave room for mutated ids.
    let Ok(t) = dlm_convert::tokenizer::parse(&v, Path::new("tokenizer.json"), 4096) else {
        return;
    };
    let Some(pre) = PreTokenizer::from_name(t.pre) else {
        return;
    };
    let merges = t
        .merges
        .iter()
        .filter_map(|m| m.split_once(' '))
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let Ok(tok) = Tokenizer::new(TokenizerData {
        tokens: t.tokens.clone(),
        merges,
        added_ids: t.added_ids.clone(),
        added_flags: t.added_flags.clone(),
        special_ids: t.special_ids.clone(),
        pre,
        nfc: t.normalizer == "nfc",
        ignore_merges: t.ignore_merges,
        bos_id: None,
        eos_id: None,
        pad_id: None,
        eot_id: None,
    }) else {
        return;
    };
    for text in [
        "Hello, world! It's 2024.",
        "  <|im_start|>user\nünïcödé e\u{301} 日本語\t\r\n<|endoftext|>",
        "",
    ] {
        let ids = tok.encode(text);
        let _ = tok.decode_lossy(&ids, false);
        let _ = tok.decode(&ids, true);
    }
});
