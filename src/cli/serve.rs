//! `dlm serve`: the OpenAI-style HTTP server of the `dlm-serve` crate over one model.

use super::decode_args::{DecodeArgs, settings_text};
use super::{CliResult, model_path};
use std::path::PathBuf;
use std::time::Duration;

/// Serve a model over HTTP with an OpenAI-style API.
///
/// Endpoints: POST /v1/chat/completions, POST /v1/completions (`"stream": true` for
/// server-sent events), GET /v1/models, GET /health. Any `model` name is accepted. Diffusion
/// settings are extra request fields (steps, block_length, algorithm, threshold, factor,
/// cache, top_k, cfg, alg_temp, eps, stop_early, stream_canvas); the decoding flags below set
/// their defaults (the model file's when left out). `max_tokens` sets the generation length,
/// rounded up to a whole number of blocks where the schedule has blocks (the answer is cut
/// back to `max_tokens`).
///
/// Examples:
///   dlm serve                                   # the demo model on 127.0.0.1:8080
///   dlm serve -m llada.dlm --port 9000 --cache dual --threshold 0.9
///   dlm serve -m llada.dlm --host 0.0.0.0 --api-key "$KEY"
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// Address to bind; anything but loopback needs --api-key.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0 picks a free one; the address is printed on stderr).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// Require `Authorization: Bearer KEY` on every endpoint but /health.
    #[arg(long)]
    api_key: Option<String>,
    /// The model name /v1/models lists (default: the file's name).
    #[arg(long)]
    name: Option<String>,
    /// Requests that may wait for a worker; more are refused with 429.
    #[arg(long, default_value_t = 16)]
    queue: usize,
    /// Generations run side by side (each already uses every core).
    #[arg(long, default_value_t = 1)]
    parallel: usize,
    /// Seconds a request may take from arrival to its last token (504 after).
    #[arg(long, default_value_t = 600)]
    timeout: u64,
    /// Longest prompt in tokens (default: the model's context less one).
    #[arg(long)]
    max_prompt: Option<usize>,
    /// Largest generation length (default: 1024 or the context if smaller).
    #[arg(long)]
    max_gen_length: Option<usize>,
    /// Largest request body in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    max_body: usize,
    #[command(flatten)]
    decode: DecodeArgs,
}

pub fn run(a: Args) -> CliResult {
    a.decode.init_threads()?;
    let path = model_path::model_or_demo(&a.model)?;
    let engine = model_path::load_engine(&path, a.decode.device(), a.decode.quant())?;
    let name = a.name.clone().unwrap_or_else(|| {
        path.file_stem()
            .map(|s| s.to_string_lossy().into_owned())
            .unwrap_or_else(|| "dlm".into())
    });
    let mut cfg = dlm_serve::Config::new(&engine, name);
    cfg.defaults = a.decode.apply(engine.defaults())?;
    if a.decode.show_defaults {
        let text = settings_text(&path, &engine, &cfg.defaults, a.decode.seed.is_none());
        print!("{text}");
        return Ok(());
    }
    cfg.seed = a.decode.seed;
    cfg.host = a.host;
    cfg.port = a.port;
    cfg.api_key = a.api_key;
    cfg.max_queue = a.queue;
    cfg.workers = a.parallel;
    cfg.timeout = Duration::from_secs(a.timeout);
    cfg.max_body_bytes = a.max_body;
    if let Some(n) = a.max_prompt {
        cfg.limits.max_prompt_tokens = n;
    }
    if let Some(n) = a.max_gen_length {
        cfg.limits.max_gen_length = n;
    }
    // The defaults themselves must make a valid request.
    cfg.defaults
        .validate(1, Some(engine.model().config().seq_len))
        .map_err(|e| format!("the decoding defaults: {e}"))?;
    dlm_serve::serve(engine, cfg)?;
    Ok(())
}
