//! Golden test of the decoders: every `generate` case of
//! `../shared/reference/<name>.expected.json`, run on the f32 conversion of the reference
//! checkpoint, must give the original sampler's whole final canvas, and for LLaDA its number
//! of forward passes. Each case also runs with early stop on, which must not change the answer.

mod common;

use dlm_formats::keys::diffusion;
use dlm_runtime::decode::{self, DecodeParams, DecodeTokens, GenerateOutput};
use dlm_runtime::model::{Forward, Model};
use serde_json::Value;
use std::path::Path;

/// Convert `<ref>/<name>` to f32 in a temporary folder and open it.
fn open_model(reference: &Path, name: &str) -> Model {
    let dir = common::temp_dir(&format!("generate-{name}"));
    let path = common::convert_reference(reference, name, "f32", &dir);
    let model = Model::open(&path).unwrap_or_else(|e| panic!("open {name}: {e}"));
    std::fs::remove_dir_all(&dir).ok();
    model
}

fn run(
    model: &Model,
    tokens: &DecodeTokens,
    prompt: &[u32],
    params: &DecodeParams,
) -> GenerateOutput {
    params
        .validate(prompt.len(), Some(model.config().seq_len))
        .expect("valid params");
    decode::generate(model, tokens, prompt, params, &mut |_| true).expect("generate")
}

fn check_family(reference: &Path, name: &str) -> Vec<String> {
    let text = std::fs::read_to_string(reference.join(format!("{name}.expected.json")))
        .expect("expected.json");
    let expected: Value = serde_json::from_str(&text).expect("expected.json parses");
    let model = open_model(reference, name);
    assert_eq!(model.vocab_size(), model.config().vocab_size);
    let tokens = common::decode_tokens(&expected, model.config().shift_logits);
    let top_k = match model
        .file()
        .get_u32_or(diffusion::TOP_K, 0)
        .expect("diffusion.top_k")
    {
        0 => None,
        k => Some(k as usize),
    };
    if name.starts_with("dream") {
        assert_eq!(top_k, Some(50), "{name}: Dream's stored default top_k");
    }
    assert_eq!(tokens.mask_id, model.config().mask_id, "{name}: mask id");
    let mut failures = Vec::new();
    for (k, case) in expected["generate"]
        .as_array()
        .expect("generate cases")
        .iter()
        .enumerate()
    {
        let prompt = common::ids(&case["prompt"]);
        let want = common::ids(&case["output"]);
        let mut params = common::decode_params(case);
        // The file's default filter, applied as the engine applies its defaults: Dream files
        // carry top_k 50 (the original sampler's inherited default, which decides dream-tiny
        // case 1: shared/reference/README.md); the cases do not set top_k.
        if params.top_k.is_none() {
            params.top_k = top_k;
        }
        let label = format!(
            "{name} case {k} ({} {} steps {} gen {} block {:?} threshold {:?} cache {})",
            case["sampler"].as_str().unwrap_or("?"),
            params.algorithm.name(),
            params.steps,
            params.gen_length,
            params.block_length,
            params.threshold,
            params.cache.name()
        );
        let out = run(&model, &tokens, &prompt, &params);
        let mut ok = true;
        if out.canvas != want {
            let first = out
                .canvas
                .iter()
                .zip(&want)
                .position(|(a, b)| a != b)
                .unwrap_or(0);
            failures.push(format!(
                "{label}: canvas differs from position {first}\n  got  {:?}\n  want {:?}",
                &out.canvas[prompt.len()..],
                &want[prompt.len().min(want.len())..]
            ));
            ok = false;
        }
        if let Some(nfe) = case["nfe"].as_u64()
            && out.nfe != nfe as usize
        {
            failures.push(format!("{label}: nfe {} != {nfe}", out.nfe));
            ok = false;
        }
        let early = run(
            &model,
            &tokens,
            &prompt,
            &DecodeParams {
                stop_early: true,
                ..params.clone()
            },
        );
        if early.answer_ids() != out.answer_ids() {
            failures.push(format!("{label}: early stop changed the answer"));
            ok = false;
        }
        println!(
            "{} {label} (nfe {})",
            if ok { "pass" } else { "FAIL" },
            out.nfe
        );
    }
    failures
}

#[test]
#[cfg_attr(not(dlm_shared), ignore = "needs ../shared/reference")]
fn generate_matches_the_original_samplers() {
    let Some(reference) = common::reference_dir() else {
        return;
    };
    let mut failures = Vec::new();
    for name in ["llada-tiny", "dream-tiny"] {
        failures.extend(check_family(&reference, name));
    }
    assert!(
        failures.is_empty(),
        "{} case(s) differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
