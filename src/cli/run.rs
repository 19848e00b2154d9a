//! `dlm run`: answer one prompt, printing the text (or JSON) and the speed.

use super::decode_args::DecodeArgs;
use super::{CliResult, json, model_path, visual};
use dlm_runtime::chat::Role;
use std::path::PathBuf;
use std::time::Instant;

/// Generate an answer to one prompt.
///
/// With no -m, runs the demo model shipped in models/demo (converted on first use). The chat
/// template stored in the model is applied unless --raw is given.
///
/// Examples:
///   dlm run "Sort: 5 3 9 1"
///   dlm run -m llada.dlm -p "Explain ownership in Rust." --gen-length 128 --cache dual --threshold 0.9
///   dlm run -m llada.dlm --prompt-ids 2042,39,906 --raw --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The prompt (or give it as the positional argument).
    #[arg(short, long, conflicts_with = "text")]
    prompt: Option<String>,
    /// The prompt, positionally.
    text: Option<String>,
    /// Start from these token ids instead of text (implies --raw).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["prompt", "text"])]
    prompt_ids: Option<Vec<u32>>,
    /// Apply the model's chat template (the default when the model has one).
    #[arg(long, conflicts_with = "raw")]
    chat: bool,
    /// Use the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print `{"output_ids", "text", "nfe", "seconds", "tokens_per_s", ..., "unknown_ids"}` as JSON
    /// (`unknown_ids`: generated ids the tokenizer has no token for).
    #[arg(long)]
    json: bool,
    /// Redraw the canvas in the terminal as it denoises.
    #[arg(long)]
    visual: bool,
    /// Check every tensor of the model file against its checksum before running (reads the
    /// whole file once).
    #[arg(long)]
    verify: bool,
    #[command(flatten)]
    decode: DecodeArgs,
}

pub fn run(a: Args) -> CliResult {
    let path = a.model.clone().unwrap_or_else(model_path::default_model);
    let engine = model_path::load_engine_with(&path, a.verify)?;
    let params = a.decode.apply(engine.defaults())?;
    let prompt = match (&a.prompt_ids, a.prompt.as_ref().or(a.text.as_ref())) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            if a.raw || (!a.chat && engine.chat().is_none()) {
                engine.tokenizer().encode(text)
            } else {
                engine.chat_ids(&[(Role::User, text)])?
            }
        }
        (None, None) => return Err("give a prompt: dlm run \"...\" (see dlm run --help)".into()),
    };

    let mut view = a.visual.then(|| visual::Canvas::new(&engine));
    let start = Instant::now();
    let out = engine.generate(&prompt, &params, &mut |ev| {
        if let Some(v) = view.as_mut() {
            v.draw(ev);
        }
        true
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let answer = engine.answer(&out);
    let text = answer.text;
    if !answer.unknown_ids.is_empty() {
        // Padded embedding rows (LLaDA-8B has 126,464 rows for fewer tokens) can be generated;
        // the answer is kept, and they are shown as placeholders.
        eprintln!(
            "warning: {} generated id(s) have no token in the tokenizer ({}); shown as {}",
            answer.unknown_ids.len(),
            answer
                .unknown_ids
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(","),
            dlm_runtime::tokenizer::unknown_placeholder(answer.unknown_ids[0])
        );
    }
    let tokens_per_s = params.gen_length as f64 / seconds;
    if a.json {
        println!(
            "{{\"output_ids\":{},\"text\":{},\"nfe\":{},\"seconds\":{},\"tokens_per_s\":{},\"layer_forwards\":{},\"query_rows\":{},\"refreshes\":{},\"unknown_ids\":{}}}",
            json::numbers(&out.canvas),
            json::string(&text),
            out.nfe,
            json::float(seconds),
            json::float(tokens_per_s),
            out.layer_forwards,
            out.query_rows,
            out.refreshes,
            json::numbers(&answer.unknown_ids)
        );
    } else {
        println!("{text}");
        eprintln!(
            "[{} tokens in {:.2} s: {:.1} tokens/s, {} forward passes, {} cache]",
            params.gen_length,
            seconds,
            tokens_per_s,
            out.nfe,
            params.cache.name()
        );
    }
    Ok(())
}
