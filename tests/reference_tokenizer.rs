//! Golden test: the tokenizer stored by `dlm convert` gives exactly the ids of the Hugging Face
//! `tokenizers` library on every probe, and decodes them back.

mod common;

use dlm_runtime::Tokenizer;
use dlm_runtime::model::Model;

fn check(name: &str) {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let dir = common::temp_dir(&format!("tok-{name}"));
    let path = common::convert_reference(&reference, name, "f32", &dir);
    let model = Model::open(&path).expect("open");
    let tok = Tokenizer::from_file(model.file()).expect("tokenizer from file");
    let expected = common::expected_json(&reference, name);
    let probes = expected["tokenizer"].as_array().expect("probes");
    assert!(probes.len() >= 10);
    for p in probes {
        let text = p["text"].as_str().unwrap();
        let ids = common::ids(&p["ids"]);
        assert_eq!(tok.encode(text), ids, "{name}: encode {text:?}");
        let decoded = tok.decode(&ids, false).expect("decode");
        assert_eq!(
            decoded,
            p["decoded"].as_str().unwrap(),
            "{name}: decode {text:?}"
        );
    }
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn llada_tokenizer_matches_reference() {
    check("llada-tiny");
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn dream_tokenizer_matches_reference() {
    check("dream-tiny");
}
