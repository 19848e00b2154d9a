//! The tokenizer against Hugging Face `tokenizers`: the probes of
//! `../shared/reference/<name>.expected.json`, and (ignored by default) a large comparison file
//! written by `tools/compare_tokenizer.py`.

use std::path::PathBuf;

use dlm_runtime::Tokenizer;
use dlm_runtime::tokenizer::{PreTokenizer, TokenizerData};
use serde_json::Value;

fn reference_dir() -> Option<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/reference");
    if dir.is_dir() {
        Some(dir)
    } else {
        println!("skipped: ../shared not found");
        None
    }
}

/// Build `TokenizerData` from a `tokenizer.json` the way `dlm convert` stores it.
fn data_from_tokenizer_json(json: &Value) -> TokenizerData {
    let model = &json["model"];
    assert_eq!(model["type"], "BPE");
    let vocab = model["vocab"].as_object().expect("model.vocab");
    let added = json["added_tokens"].as_array().expect("added_tokens");
    let mut n = 0usize;
    for v in vocab.values() {
        n = n.max(v.as_u64().expect("vocab id") as usize + 1);
    }
    for a in added {
        n = n.max(a["id"].as_u64().expect("added id") as usize + 1);
    }
    let mut tokens = vec![String::new(); n];
    for (t, v) in vocab {
        tokens[v.as_u64().expect("vocab id") as usize] = t.clone();
    }
    let mut added_ids = Vec::new();
    let mut added_flags = Vec::new();
    let mut special_ids = Vec::new();
    for a in added {
        use dlm_formats::keys::tokenizer::added_flags as f;
        let id = a["id"].as_u64().expect("added id") as u32;
        tokens[id as usize] = a["content"].as_str().expect("content").to_string();
        added_ids.push(id);
        let on = |key: &str| a[key].as_bool() == Some(true);
        let flags = [
            ("lstrip", f::LSTRIP),
            ("rstrip", f::RSTRIP),
            ("single_word", f::SINGLE_WORD),
            ("normalized", f::NORMALIZED),
        ];
        added_flags.push(
            flags
                .iter()
                .filter(|(k, _)| on(k))
                .fold(0, |acc, (_, bit)| acc | bit),
        );
        if a["special"].as_bool() == Some(true) {
            special_ids.push(id);
        }
    }
    let merges = model["merges"]
        .as_array()
        .expect("model.merges")
        .iter()
        .map(|m| match m {
            Value::Array(p) => (
                p[0].as_str().expect("left").to_string(),
                p[1].as_str().expect("right").to_string(),
            ),
            Value::String(s) => {
                let (a, b) = s.split_once(' ').expect("left right");
                (a.to_string(), b.to_string())
            }
            other => panic!("merge {other}"),
        })
        .collect();
    let pre_json = json["pre_tokenizer"].to_string();
    let pre = if pre_json.contains(r"\\p{N}{1,3}") {
        PreTokenizer::Llama3
    } else {
        assert!(
            pre_json.contains(r"\\p{N}|"),
            "unknown pre-tokenizer {pre_json}"
        );
        PreTokenizer::Qwen2
    };
    let nfc = json["normalizer"]["type"] == "NFC";
    TokenizerData {
        tokens,
        merges,
        added_ids,
        added_flags,
        special_ids,
        pre,
        nfc,
        ignore_merges: model["ignore_merges"].as_bool() == Some(true),
        bos_id: None,
        eos_id: None,
        pad_id: None,
        eot_id: None,
    }
}

fn load(dir: &std::path::Path, name: &str) -> (Tokenizer, Value) {
    let read = |p: PathBuf| -> Value {
        let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
        serde_json::from_str(&text).expect("json")
    };
    let tok_json = read(dir.join(name).join("tokenizer.json"));
    let expected = read(dir.join(format!("{name}.expected.json")));
    let tok = Tokenizer::new(data_from_tokenizer_json(&tok_json)).expect("tokenizer");
    (tok, expected)
}

fn ids_of(v: &Value) -> Vec<u32> {
    v.as_array()
        .expect("ids")
        .iter()
        .map(|x| x.as_u64().expect("id") as u32)
        .collect()
}

fn check_probes(name: &str) {
    let Some(dir) = reference_dir() else { return };
    let (tok, expected) = load(&dir, name);
    let probes = expected["tokenizer"].as_array().expect("tokenizer probes");
    assert!(!probes.is_empty());
    for p in probes {
        let text = p["text"].as_str().expect("text");
        let ids = ids_of(&p["ids"]);
        assert_eq!(tok.encode(text), ids, "{name}: encode {text:?}");
        let decoded = tok.decode(&ids, false).expect("decode");
        assert_eq!(
            decoded,
            p["decoded"].as_str().expect("decoded"),
            "{name}: decode {text:?}"
        );
    }
    // Special ids of the reference agree with the added tokens.
    for (text, id) in expected["special_ids"].as_object().expect("special_ids") {
        let id = id.as_u64().expect("id") as u32;
        assert_eq!(tok.id_of(text), Some(id), "{name}: {text}");
        assert!(tok.is_special(id));
        assert_eq!(tok.decode(&[id], true).expect("decode"), "");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn llada_tiny_probes() {
    check_probes("llada-tiny");
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn dream_tiny_probes() {
    check_probes("dream-tiny");
}

/// Every case of a file written by `tools/compare_tokenizer.py` (path in
/// `DLM_TOKENIZER_COMPARE`): one JSON object per line, `{"name", "text", "ids", "decoded"}`.
#[test]
#[ignore = "needs a file from tools/compare_tokenizer.py"]
fn compare_file() {
    let Ok(path) = std::env::var("DLM_TOKENIZER_COMPARE") else {
        println!("skipped: DLM_TOKENIZER_COMPARE not set");
        return;
    };
    let Some(dir) = reference_dir() else { return };
    let tokenizers: Vec<(String, Tokenizer)> = ["llada-tiny", "dream-tiny"]
        .iter()
        .map(|n| (n.to_string(), load(&dir, n).0))
        .collect();
    let text = std::fs::read_to_string(&path).expect("compare file");
    let (mut n_cases, mut n_bad, mut n_ids) = (0usize, 0usize, 0usize);
    let mut seconds = 0.0f64;
    for line in text.lines() {
        let case: Value = serde_json::from_str(line).expect("case");
        let name = case["name"].as_str().expect("name");
        let tok = &tokenizers
            .iter()
            .find(|(n, _)| n == name)
            .expect("tokenizer name")
            .1;
        let input = case["text"].as_str().expect("text");
        let want = ids_of(&case["ids"]);
        let t0 = std::time::Instant::now();
        let got = tok.encode(input);
        let dt = t0.elapsed().as_secs_f64();
        seconds += dt;
        if input.len() >= 1 << 20 {
            let mb = input.len() as f64 / 1e6;
            println!(
                "{name}: {mb:.2} MB in one text: {dt:.3} s, {:.1} MB/s",
                mb / dt
            );
        }
        n_cases += 1;
        n_ids += want.len();
        let decoded = tok.decode(&want, false).expect("decode");
        let want_decoded = case["decoded"].as_str().expect("decoded");
        if got != want || decoded != want_decoded {
            n_bad += 1;
            if n_bad <= 10 {
                let k = got.iter().zip(&want).take_while(|(a, b)| a == b).count();
                println!(
                    "MISMATCH {name} {:?}\n  at id {k}: got {:?} want {:?}\n  decoded ok: {}",
                    input.chars().take(200).collect::<String>(),
                    &got[k..got.len().min(k + 8)],
                    &want[k..want.len().min(k + 8)],
                    decoded == want_decoded
                );
            }
        }
    }
    println!("compared {n_cases} cases, {n_ids} ids, {n_bad} mismatches, encode {seconds:.3} s");
    assert!(n_cases > 0);
    assert_eq!(n_bad, 0);
}

/// Time to encode the 6 MB corpus `../shared/corpus/rustdocs.txt` from a cold cache (run with
/// `--release -- --ignored --nocapture`).
#[test]
#[ignore = "timing; run in release"]
fn corpus_speed() {
    let Some(dir) = reference_dir() else { return };
    let Ok(corpus) = std::fs::read_to_string(dir.join("../corpus/rustdocs.txt")) else {
        println!("skipped: corpus not found");
        return;
    };
    for name in ["llada-tiny", "dream-tiny"] {
        let tok = load(&dir, name).0;
        for pass in ["cold", "warm"] {
            let t0 = std::time::Instant::now();
            let ids = tok.encode(&corpus);
            let dt = t0.elapsed().as_secs_f64();
            let mb = corpus.len() as f64 / 1e6;
            println!(
                "{name} {pass}: {mb:.2} MB -> {} ids in {dt:.3} s",
                ids.len()
            );
            let t0 = std::time::Instant::now();
            let text = tok.decode(&ids, false).expect("decode");
            println!("  decode {:.3} s", t0.elapsed().as_secs_f64());
            assert_eq!(text, corpus);
        }
    }
}
