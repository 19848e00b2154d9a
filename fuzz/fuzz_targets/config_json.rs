//! `config.json` / `generation_config.json` from arbitrary bytes: the shape table, the limits,
//! the decoding defaults of both families and the tensor plan.
#![no_main]

use dlm_convert::{Family, hf};
use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) else {
        return;
    };
    let path = Path::new("config.json");
    if let Ok(cfg) = hf::model_config(&v, path) {
        let plan = hf::tensor_plan(&cfg);
        assert!(!plan.is_empty());
    }
    for family in [Family::Llada, Family::Dream] {
        let _ = hf::diffusion_defaults(family, &v, Path::new("generation_config.json"));
    }
});
