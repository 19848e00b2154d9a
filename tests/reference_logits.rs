//! Golden test: logits of the converted reference checkpoints against those recorded from the
//! models' original PyTorch code, for f32, f16 and bf16 storage.

mod common;

use dlm_runtime::model::{Forward, Model};

/// Largest error of any logit, relative to its row's largest |logit|, over every `logits` case.
fn max_relative_error(name: &str, policy: &str) -> Option<f64> {
    let reference = common::reference_dir()?;
    let dir = common::temp_dir(&format!("logits-{name}-{policy}"));
    let path = common::convert_reference(&reference, name, policy, &dir);
    let model = Model::open(&path).expect("open converted model");
    let expected = common::expected_json(&reference, name);
    let tensors = common::read_safetensors(&reference.join(format!("{name}.expected.safetensors")));
    let vocab = model.vocab_size();
    let mut worst = 0f64;
    let cases = expected["logits"].as_array().expect("logits cases");
    assert!(!cases.is_empty());
    for case in cases {
        let input = &tensors[case["input"].as_str().unwrap()];
        let want = &tensors[case["logits"].as_str().unwrap()];
        let ids: Vec<u32> = input.values.iter().map(|&v| v as u32).collect();
        assert_eq!(
            want.values.len(),
            ids.len() * vocab,
            "expected logits shape"
        );
        let rows: Vec<usize> = (0..ids.len()).collect();
        let got = model.logits(&ids, &rows).expect("forward");
        for (g, w) in got.chunks(vocab).zip(want.values.chunks(vocab)) {
            let scale = w.iter().fold(0f64, |m, v| m.max(v.abs()));
            for (a, b) in g.iter().zip(w) {
                worst = worst.max((*a as f64 - b).abs() / scale);
            }
        }
    }
    std::fs::remove_dir_all(&dir).ok();
    println!("{name} {policy}: max relative logit error {worst:.3e}");
    Some(worst)
}

// The bound the issue sets for the exact path.
const F32_BOUND: f64 = 1e-4;
// The reference weights are bf16, so bf16 storage holds them exactly and f16 holds every value
// whose exponent fits (all of these): the same bound applies. Measured: ~1.3e-6 for all three.
const HALF_BOUND: f64 = 1e-4;

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn llada_f32_logits_match_reference() {
    if let Some(e) = max_relative_error("llada-tiny", "f32") {
        assert!(e < F32_BOUND, "llada f32 error {e}");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn dream_f32_logits_match_reference() {
    if let Some(e) = max_relative_error("dream-tiny", "f32") {
        assert!(e < F32_BOUND, "dream f32 error {e}");
    }
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn half_precision_storage_stays_within_bound() {
    for name in ["llada-tiny", "dream-tiny"] {
        for policy in ["f16", "bf16"] {
            if let Some(e) = max_relative_error(name, policy) {
                assert!(e < HALF_BOUND, "{name} {policy} error {e}");
            }
        }
    }
}
