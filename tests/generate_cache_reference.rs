//! Golden test of Dream in blocks with Fast-dLLM's prefix and dual caches: every case of
//! `../shared/reference/dream-tiny.expected-cache.json` (Fast-dLLM's
//! `dream/model/generation_utils_block.py`, greedy, f32) must give the whole final canvas.
//!
//! How the original's `alg` maps onto dlm's choices:
//! - `confidence_threshold` is `--algorithm maskgit_plus --threshold 0.9`.
//! - `maskgit_plus` and `entropy`: the original's non-threshold branch calls
//!   `sample_tokens(..., neg_entropy=True)` whatever `alg` says, so both rank by negative
//!   entropy (their recorded canvases are identical). They are checked as `--algorithm
//!   entropy`; dlm's own `maskgit_plus` keeps its probability rule, and its canvas on these
//!   cases is reported, not asserted.

mod common;

use dlm_runtime::decode::{self, Algorithm, CacheMode, DecodeParams, GenerateOutput, Schedule};
use dlm_runtime::model::Model;
use serde_json::Value;

fn run(
    model: &Model,
    case: &Value,
    algorithm: Algorithm,
    tokens: &decode::DecodeTokens,
) -> GenerateOutput {
    let field = |k: &str| case[k].as_u64().unwrap_or_else(|| panic!("case field {k}")) as usize;
    let alg = case["alg"].as_str().expect("alg");
    let params = DecodeParams {
        algorithm,
        schedule: Some(Schedule::Timesteps),
        steps: field("steps"),
        gen_length: field("max_new_tokens"),
        block_length: Some(field("block_length")),
        threshold: (alg == "confidence_threshold")
            .then(|| case["threshold"].as_f64().expect("threshold")),
        cache: if case["dual_cache"].as_bool().expect("dual_cache") {
            CacheMode::Dual
        } else {
            CacheMode::Prefix
        },
        top_k: Some(field("effective_top_k")),
        temperature: case["temperature"].as_f64().unwrap_or(0.0),
        eps: case["eps"].as_f64().unwrap_or(1e-3),
        stop_early: false,
        ..DecodeParams::default()
    };
    let prompt = common::ids(&case["prompt"]);
    params
        .validate(prompt.len(), Some(model.config().seq_len))
        .expect("valid params");
    decode::generate(model, tokens, &prompt, &params, &mut |_| true).expect("generate")
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn dream_block_caches_match_fast_dllm() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let text = std::fs::read_to_string(reference.join("dream-tiny.expected-cache.json"))
        .expect("expected-cache.json");
    let cases: Value = serde_json::from_str(&text).expect("parses");
    let dir = common::temp_dir("generate-cache");
    let path = common::convert_reference(&reference, "dream-tiny", "f32", &dir);
    let model = Model::open(&path).expect("open dream-tiny");
    std::fs::remove_dir_all(&dir).ok();
    let expected = common::expected_json(&reference, "dream-tiny");
    let tokens = common::decode_tokens(&expected, model.config().shift_logits);
    let mut failures = Vec::new();
    let all = cases["generate"].as_array().expect("generate cases");
    assert_eq!(all.len(), 12, "the reference has 12 cases");
    for (k, case) in all.iter().enumerate() {
        let alg = case["alg"].as_str().expect("alg");
        let want = common::ids(&case["output"]);
        let label = format!(
            "case {k} ({alg}, {}, prompt {} tokens)",
            if case["dual_cache"].as_bool() == Some(true) {
                "dual"
            } else {
                "prefix"
            },
            common::ids(&case["prompt"]).len()
        );
        let algorithm = match alg {
            "confidence_threshold" => Algorithm::MaskgitPlus,
            _ => Algorithm::Entropy,
        };
        let out = run(&model, case, algorithm, &tokens);
        if out.canvas == want {
            println!("pass {label} (nfe {})", out.nfe);
        } else {
            let first = out
                .canvas
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            failures.push(format!("{label}: canvas differs from position {first}"));
        }
        if alg == "maskgit_plus" {
            let own = run(&model, case, Algorithm::MaskgitPlus, &tokens);
            println!(
                "  dlm's maskgit_plus (probability rule) on {label}: {}",
                if own.canvas == want {
                    "same canvas"
                } else {
                    "differs (expected: the original ranks by entropy here)"
                }
            );
        }
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
