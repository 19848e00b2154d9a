//! The decoding flags shared by `run`, `chat`, `eval` and `bench`, laid over the defaults that
//! the model file carries in its `diffusion.*` keys.

use dlm_runtime::decode::{Algorithm, CacheMode, DecodeParams, Schedule};
use std::error::Error;

/// How to denoise. Every flag left out takes the model file's default.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DecodeArgs {
    /// Where the model runs: cpu (default), cuda or cuda:N (a build with --features cuda).
    #[arg(long)]
    pub device: Option<String>,
    /// For a Hugging Face folder or GGUF file as the model: the storage it is converted to
    /// on first use (f16, bf16, f32, q8_0, q4_0, q4_k, q6_k, mixed, or llama.cpp's names such
    /// as Q4_K_M). Default: the checkpoint's own types (bf16 stays bf16).
    #[arg(long)]
    pub quant: Option<String>,
    /// Denoising steps in total (an upper bound under --threshold or --factor).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Tokens to generate (the canvas of masks after the prompt).
    #[arg(short = 'n', long)]
    pub gen_length: Option<usize>,
    /// Semi-autoregressive block length; must divide --gen-length. With the timesteps
    /// schedule it runs Dream in Fast-dLLM's blocks.
    #[arg(long)]
    pub block_length: Option<usize>,
    /// Which masked positions to commit: low_confidence, random (LLaDA; blocks schedule by
    /// default), maskgit_plus, topk_margin, entropy, origin (Dream; timesteps by default).
    #[arg(long)]
    pub algorithm: Option<String>,
    /// Step schedule: blocks (LLaDA's even split per block) or timesteps (Dream's; in blocks
    /// with --block-length or a cache). Default: the algorithm's own.
    #[arg(long)]
    pub schedule: Option<String>,
    /// Fast-dLLM parallel decoding: commit every masked position of the block whose confidence
    /// is at least this, in (0, 1] (always at least the best one); 0 turns it off (and a
    /// threshold the file stores).
    #[arg(long)]
    pub threshold: Option<f64>,
    /// With --threshold: commit at least this many positions per step (1 = Fast-dLLM), so a
    /// block of B tokens takes at most B/N steps; a step-distilled model stores its own.
    #[arg(long)]
    pub min_per_step: Option<usize>,
    /// Fast-dLLM factor rule: commit the n-th best while confidence ≥ 1 - factor/(n+1); 0 turns
    /// it off.
    #[arg(long)]
    pub factor: Option<f64>,
    /// KV cache between steps: none, prefix or dual (Fast-dLLM), or elastic (Elastic-Cache:
    /// queries for a window of masks, refresh from the layer where attention drifts).
    #[arg(long)]
    pub cache: Option<String>,
    /// Elastic cache: masks of the active block whose queries a step computes.
    #[arg(long)]
    pub window: Option<usize>,
    /// Elastic cache: refresh from the first layer whose tracked attention similarity falls
    /// below this, in [0, 1] (1 = refresh everything every step, 0 = never). Default: the
    /// model file's (`diffusion.elastic_gamma`; the demo model's is 0.98), else 0.9.
    #[arg(long)]
    pub gamma: Option<f64>,
    /// Elastic cache: most-attended tokens tracked per layer.
    #[arg(long)]
    pub track: Option<usize>,
    /// Elastic cache: no refresh at block starts (far masks then keep older keys/values).
    #[arg(long)]
    pub no_block_cache: bool,
    /// Elastic cache: open each block (after the first) by refreshing only the decoded text
    /// and the block, not the whole canvas; the masks beyond keep their earlier keys/values.
    /// Cheaper with --threshold, where a block often finishes in its opening pass. Only with
    /// block caching (under --no-block-cache blocks open with a window pass anyway). The
    /// model file's default: `diffusion.elastic_prefix_refresh` (`dlm inspect`).
    #[arg(long, conflicts_with = "no_prefix_refresh")]
    pub prefix_refresh: bool,
    /// Elastic cache: open every block over the whole canvas even where the model file
    /// stores prefix refresh as its default.
    #[arg(long)]
    pub no_prefix_refresh: bool,
    /// Sampling temperature; 0 is greedy.
    #[arg(long, visible_alias = "temp")]
    pub temperature: Option<f64>,
    /// Keep only the k most likely tokens before each softmax (confidences included); 0 turns
    /// off the model's default (Dream files default to 50, as the original sampler).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Sample among the most likely tokens whose probabilities sum to p.
    #[arg(long)]
    pub top_p: Option<f64>,
    /// Classifier-free guidance scale (0 = off; cache none only).
    #[arg(long)]
    pub cfg: Option<f64>,
    /// Dream: temperature of the position choice (0 = most confident first).
    #[arg(long)]
    pub alg_temp: Option<f64>,
    /// Dream: the last timestep, in (0, 1).
    #[arg(long)]
    pub eps: Option<f64>,
    /// Seed for sampling and random choices; the same seed repeats a run. run, chat and serve
    /// draw a random one when it is left out; eval and bench use the model file's (0).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Compute threads (default: one per core).
    #[arg(short = 't', long)]
    pub threads: Option<usize>,
    /// Run every planned step even after the answer has ended.
    #[arg(long)]
    pub no_early_stop: bool,
    /// Print the decoding settings in effect (the model's defaults with the flags given
    /// applied) and exit. `--help` with `-m MODEL` also lists that model's defaults.
    #[arg(long)]
    pub show_defaults: bool,
}

/// `v` as written: the shortest decimal of the f32 a file stores it as when that is `v`
/// (`0.001`, not `0.0010000000474974513`).
fn short(v: f64) -> String {
    if (v as f32) as f64 == v {
        (v as f32).to_string()
    } else {
        v.to_string()
    }
}

/// The decoding settings `p` as the flags that give them, one `--flag value` per entry.
pub fn describe(p: &DecodeParams) -> Vec<(String, String)> {
    let off = |v: Option<String>| v.unwrap_or_else(|| "0 (off)".into());
    let mut rows = vec![
        ("--gen-length".into(), p.gen_length.to_string()),
        ("--steps".into(), p.steps.to_string()),
        (
            "--block-length".into(),
            match p.block_length {
                Some(b) => b.to_string(),
                None => format!("{} (one block)", p.gen_length),
            },
        ),
        ("--algorithm".into(), p.algorithm.name().into()),
        ("--schedule".into(), p.schedule().name().into()),
        ("--threshold".into(), off(p.threshold.map(short))),
        (
            "--min-per-step".into(),
            p.min_per_step.unwrap_or(1).to_string(),
        ),
        ("--factor".into(), off(p.factor.map(short))),
        ("--cache".into(), p.cache.name().into()),
        ("--temperature".into(), short(p.temperature)),
        ("--top-k".into(), off(p.top_k.map(|k| k.to_string()))),
        ("--top-p".into(), p.top_p.map_or("1 (off)".into(), short)),
        ("--cfg".into(), short(p.cfg_scale)),
        ("--alg-temp".into(), short(p.alg_temp)),
        ("--eps".into(), short(p.eps)),
        (
            "--no-early-stop".into(),
            if p.stop_early { "no" } else { "yes" }.into(),
        ),
    ];
    if p.cache == CacheMode::Elastic {
        let e = &p.elastic;
        rows.push(("--window".into(), e.window.to_string()));
        rows.push(("--gamma".into(), short(e.gamma)));
        rows.push(("--track".into(), e.track.to_string()));
        let yes_no = |b: bool| if b { "yes" } else { "no" }.to_string();
        rows.push(("--no-block-cache".into(), yes_no(!e.block_cache)));
        rows.push(("--prefix-refresh".into(), yes_no(e.prefix_refresh)));
    }
    rows
}

/// What `--show-defaults` and `--help -m MODEL` print: the model, then the settings `p`;
/// `random_seed` says the command draws a seed unless `--seed` is given.
pub fn settings_text(
    path: &std::path::Path,
    engine: &dlm_runtime::Engine,
    p: &DecodeParams,
    random_seed: bool,
) -> String {
    let cfg = engine.model().config();
    let heading = format!(
        "Decoding settings for {} ({} model, {} layers, context {} tokens, chat template: {}):",
        path.display(),
        cfg.family.name(),
        cfg.n_layers,
        cfg.seq_len,
        if engine.chat().is_some() { "yes" } else { "no" }
    );
    let mut text = describe_text(&heading, p);
    let seed = if random_seed {
        "random unless given".to_string()
    } else {
        p.seed.to_string()
    };
    text.push_str(&format!("  {:<16} {seed}\n", "--seed"));
    text
}

/// For `dlm <command> -m MODEL --help` (run, chat, serve, eval, bench): the settings text of
/// MODEL's own defaults; `None` for another command or without `-m`.
pub fn help_defaults(args: &[String]) -> Result<Option<String>, Box<dyn Error>> {
    let Some(command) = args.get(1) else {
        return Ok(None);
    };
    if !["run", "chat", "serve", "eval", "bench"].contains(&command.as_str()) {
        return Ok(None);
    }
    let mut model = None;
    let mut it = args[2..].iter();
    while let Some(a) = it.next() {
        if a == "-m" || a == "--model" {
            model = it.next().cloned();
        } else if let Some(v) = a.strip_prefix("--model=") {
            model = Some(v.to_string());
        } else if let Some(v) = a.strip_prefix("-m").filter(|v| !v.is_empty()) {
            model = Some(v.trim_start_matches('=').to_string());
        }
    }
    let Some(model) = model else {
        return Ok(None);
    };
    let path = std::path::PathBuf::from(model);
    let engine = super::model_path::load_engine(&path, "cpu", None)?;
    let random = matches!(command.as_str(), "run" | "chat" | "serve");
    let mut text = settings_text(&path, &engine, engine.defaults(), random);
    text.push_str(
        "(the flags above override them; --show-defaults prints them with the flags applied)",
    );
    Ok(Some(text))
}

/// `describe` as aligned lines under a heading.
pub fn describe_text(heading: &str, p: &DecodeParams) -> String {
    let mut out = format!("{heading}\n");
    for (flag, value) in describe(p) {
        out.push_str(&format!("  {flag:<16} {value}\n"));
    }
    out
}

impl DecodeArgs {
    /// `apply`, with a random seed when `--seed` is left out (run, chat, serve: two runs of
    /// a sampled decode differ unless a seed is given). The seed used is in the result.
    pub fn apply_random_seed(
        &self,
        defaults: &DecodeParams,
    ) -> Result<DecodeParams, Box<dyn Error>> {
        let mut p = self.apply(defaults)?;
        if self.seed.is_none() {
            p.seed = dlm_serve::random_seed();
        }
        Ok(p)
    }

    /// Size rayon's global pool from `--threads` (once per process, before any work).
    pub fn init_threads(&self) -> Result<(), Box<dyn Error>> {
        if let Some(n) = self.threads {
            if n == 0 {
                return Err("--threads must be at least 1".into());
            }
            rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build_global()
                .map_err(|e| format!("cannot start {n} threads: {e}"))?;
        }
        Ok(())
    }

    /// The `--quant` given.
    pub fn quant(&self) -> Option<&str> {
        self.quant.as_deref()
    }

    /// The `--device` given, `cpu` when left out.
    pub fn device(&self) -> &str {
        self.device.as_deref().unwrap_or("cpu")
    }

    /// `defaults` with every given flag applied.
    pub fn apply(&self, defaults: &DecodeParams) -> Result<DecodeParams, Box<dyn Error>> {
        let mut p = defaults.clone();
        if let Some(a) = &self.algorithm {
            p.algorithm = Algorithm::from_name(a).ok_or_else(|| {
                let names: Vec<&str> = Algorithm::ALL.iter().map(|a| a.name()).collect();
                format!("unknown --algorithm {a:?}; one of {}", names.join(", "))
            })?;
            if p.algorithm.schedule() != defaults.algorithm.schedule() {
                // Switching between LLaDA blocks and Dream timesteps: the file's block length
                // belongs to the other schedule.
                p.block_length = None;
            }
        }
        if let Some(s) = &self.schedule {
            p.schedule =
                Some(Schedule::from_name(s).ok_or_else(|| {
                    format!("unknown --schedule {s:?}; one of blocks, timesteps")
                })?);
        }
        if let Some(v) = self.gen_length {
            p.gen_length = v;
            if self.block_length.is_none()
                && p.block_length
                    .is_some_and(|b| b == 0 || !v.is_multiple_of(b))
            {
                p.block_length = None;
            }
        }
        if let Some(v) = self.steps {
            p.steps = v;
        }
        if self.block_length.is_some() {
            p.block_length = self.block_length;
        }
        if let Some(t) = self.threshold {
            // 0 means off, as llama.cpp-style tools read a zero threshold; it also turns off a
            // threshold the file stores (a step-distilled model's) and the minimum bounding it.
            p.threshold = (t != 0.0).then_some(t);
            if t == 0.0 {
                p.min_per_step = None;
            }
        }
        if let Some(f) = self.factor {
            p.factor = (f != 0.0).then_some(f);
            if f != 0.0 && self.threshold.is_none() {
                // --factor replaces the file's threshold rule (and its minimum per step).
                p.threshold = None;
                p.min_per_step = None;
            }
        }
        if let Some(m) = self.min_per_step {
            p.min_per_step = (m != 1).then_some(m);
        }
        if let Some(c) = &self.cache {
            p.cache = CacheMode::from_name(c).ok_or_else(|| {
                format!("unknown --cache {c:?}; one of none, prefix, dual, elastic")
            })?;
        }
        if let Some(v) = self.window {
            p.elastic.window = v;
        }
        if let Some(v) = self.gamma {
            p.elastic.gamma = v;
        }
        if let Some(v) = self.track {
            p.elastic.track = v;
        }
        if self.no_block_cache {
            p.elastic.block_cache = false;
        }
        if self.prefix_refresh {
            p.elastic.prefix_refresh = true;
        }
        if self.no_prefix_refresh {
            p.elastic.prefix_refresh = false;
        }
        if let Some(v) = self.temperature {
            p.temperature = v;
        }
        if let Some(k) = self.top_k {
            p.top_k = (k > 0).then_some(k);
        }
        if self.top_p.is_some() {
            p.top_p = self.top_p;
        }
        if let Some(v) = self.cfg {
            p.cfg_scale = v;
        }
        if let Some(v) = self.alg_temp {
            p.alg_temp = v;
        }
        if let Some(v) = self.eps {
            p.eps = v;
        }
        if let Some(v) = self.seed {
            p.seed = v;
        }
        if self.no_early_stop {
            p.stop_early = false;
        }
        Ok(p)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A step-distilled model's stored defaults: threshold 0.9, at least 8 per step.
    fn few_step() -> DecodeParams {
        DecodeParams {
            steps: 4,
            gen_length: 32,
            block_length: Some(32),
            threshold: Some(0.9),
            min_per_step: Some(8),
            ..DecodeParams::default()
        }
    }

    #[test]
    fn no_flags_keep_the_stored_few_step_schedule() {
        let d = few_step();
        assert_eq!(DecodeArgs::default().apply(&d).unwrap(), d);
    }

    #[test]
    fn threshold_zero_turns_the_stored_rule_off() {
        let a = DecodeArgs {
            threshold: Some(0.0),
            ..DecodeArgs::default()
        };
        let p = a.apply(&few_step()).unwrap();
        assert_eq!((p.threshold, p.min_per_step), (None, None));
        assert!(p.validate(3, None).is_ok());
    }

    #[test]
    fn factor_replaces_the_stored_threshold_and_min_per_step_overrides() {
        let a = DecodeArgs {
            factor: Some(1.0),
            ..DecodeArgs::default()
        };
        let p = a.apply(&few_step()).unwrap();
        assert_eq!(
            (p.threshold, p.min_per_step, p.factor),
            (None, None, Some(1.0))
        );
        assert!(p.validate(3, None).is_ok());
        let a = DecodeArgs {
            min_per_step: Some(16),
            ..DecodeArgs::default()
        };
        assert_eq!(a.apply(&few_step()).unwrap().min_per_step, Some(16));
        // 1 is Fast-dLLM's own rule.
        let a = DecodeArgs {
            min_per_step: Some(1),
            ..DecodeArgs::default()
        };
        assert_eq!(a.apply(&few_step()).unwrap().min_per_step, None);
        // 0 is carried to validation, which names it.
        let a = DecodeArgs {
            min_per_step: Some(0),
            ..DecodeArgs::default()
        };
        let e = a.apply(&few_step()).unwrap().validate(3, None).unwrap_err();
        assert!(e.to_string().contains("min_per_step"), "{e}");
    }
}
