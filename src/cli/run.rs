//! `dlm run`: answer one prompt, printing the text (or JSON) and the speed.

use super::decode_args::{DecodeArgs, settings_text};
use super::{CliResult, json, model_path, visual};
use dlm_runtime::RuntimeError;
use dlm_runtime::chat::Role;
use dlm_runtime::final_text::FinalText;
use std::error::Error;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Generate an answer to one prompt.
///
/// With no -m, runs the demo model shipped in models/demo (converted on first use). The chat
/// template stored in the model is applied unless --raw is given. The answer is printed as it
/// becomes final (block by block); --json prints one document at the end instead.
///
/// Examples:
///   dlm run "Sort: 5 3 9 1"
///   dlm run -m llada.dlm -p "Explain ownership in Rust." -n 128 --cache dual --threshold 0.9
///   dlm run -m llada.dlm -f prompt.txt            # or: echo "..." | dlm run -m llada.dlm -p -
///   dlm run -m llada.dlm --prompt-ids 2042,39,906 --raw --json
#[derive(clap::Args)]
#[command(verbatim_doc_comment)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// The prompt (or give it as the positional argument); `-` reads it from stdin.
    #[arg(short, long, conflicts_with = "text")]
    prompt: Option<String>,
    /// The prompt, positionally.
    text: Option<String>,
    /// Read the prompt from this file.
    #[arg(short = 'f', long = "file", conflicts_with_all = ["prompt", "text"])]
    file: Option<PathBuf>,
    /// Start from these token ids instead of text (implies --raw).
    #[arg(long, value_delimiter = ',', conflicts_with_all = ["prompt", "text", "file"])]
    prompt_ids: Option<Vec<u32>>,
    /// Apply the model's chat template (the default when the model has one).
    #[arg(long, conflicts_with = "raw")]
    chat: bool,
    /// Use the prompt as plain text, without the chat template.
    #[arg(long)]
    raw: bool,
    /// Print `{"output_ids", "text", "nfe", "seconds", "tokens_per_s", "layer_forwards",
    /// "query_rows", "refreshes", "prompt_tokens", "completion_tokens", "gen_length", "seed",
    /// "unknown_ids"}` as JSON (`unknown_ids`: generated ids the tokenizer has no token for).
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

/// The prompt's text from `-p`, `-p -` (stdin), `-f FILE` or the positional argument.
fn prompt_text(a: &Args) -> Result<Option<String>, Box<dyn Error>> {
    if let Some(f) = &a.file {
        let t = std::fs::read_to_string(f)
            .map_err(|e| format!("cannot read the prompt file {}: {e}", f.display()))?;
        return Ok(Some(t));
    }
    match a.prompt.as_deref().or(a.text.as_deref()) {
        Some("-") => {
            let mut t = String::new();
            std::io::stdin()
                .read_to_string(&mut t)
                .map_err(|e| format!("cannot read the prompt from stdin: {e}"))?;
            Ok(Some(t))
        }
        Some(t) => Ok(Some(t.to_string())),
        None => Ok(None),
    }
}

pub fn run(a: Args) -> CliResult {
    a.decode.init_threads()?;
    let path = model_path::model_or_demo(&a.model)?;
    let engine =
        model_path::load_engine_with(&path, a.decode.device(), a.decode.quant(), a.verify)?;
    let params = a.decode.apply_random_seed(engine.defaults())?;
    if a.decode.show_defaults {
        print!(
            "{}",
            settings_text(&path, &engine, &params, a.decode.seed.is_none())
        );
        return Ok(());
    }
    let prompt = match (&a.prompt_ids, prompt_text(&a)?) {
        (Some(ids), _) => ids.clone(),
        (None, Some(text)) => {
            if a.raw || (!a.chat && engine.chat().is_none()) {
                engine.tokenizer().encode(&text)
            } else {
                engine.chat_ids(&[(Role::User, &text)])?
            }
        }
        (None, None) => return Err("give a prompt: dlm run \"...\" (see dlm run --help)".into()),
    };

    let mut view = a.visual.then(|| visual::Canvas::new(&engine));
    // Text goes out as it becomes final, unless the output is one JSON document or the
    // canvas is being drawn on the same terminal.
    let streaming = !a.json && !a.visual;
    let mut stream = FinalText::new(prompt.len(), engine.decode_tokens(), params.gen_length);
    let mut stdout = std::io::stdout().lock();
    let mut closed = false;
    let start = Instant::now();
    let result = engine.generate(&prompt, &params, &mut |ev| {
        if let Some(v) = view.as_mut() {
            v.draw(ev);
        }
        if streaming {
            let delta = stream.update(engine.tokenizer(), ev.canvas);
            if !delta.is_empty() && write_flush(&mut stdout, &delta).is_err() {
                // The reader went away (`| head`): stop working for nobody.
                closed = true;
                return false;
            }
        }
        true
    });
    let out = match result {
        // The reader went away: end as a closed pipe does (quietly, status 141).
        Err(RuntimeError::Cancelled) if closed => return Err(broken_pipe()),
        r => r?,
    };
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
    let printed = if a.json {
        let doc = format!(
            "{{\"output_ids\":{},\"text\":{},\"nfe\":{},\"seconds\":{},\"tokens_per_s\":{},\"layer_forwards\":{},\"query_rows\":{},\"refreshes\":{},\"prompt_tokens\":{},\"completion_tokens\":{},\"gen_length\":{},\"seed\":{},\"unknown_ids\":{}}}\n",
            json::numbers(&out.canvas),
            json::string(&text),
            out.nfe,
            json::float(seconds),
            json::float(tokens_per_s),
            out.layer_forwards,
            out.query_rows,
            out.refreshes,
            out.prompt_len,
            out.answer_ids().len(),
            params.gen_length,
            params.seed,
            json::numbers(&answer.unknown_ids)
        );
        write_flush(&mut stdout, &doc)
    } else if streaming {
        let rest = stream.finish(engine.tokenizer(), &out.canvas);
        write_flush(&mut stdout, &format!("{rest}\n"))
    } else {
        write_flush(&mut stdout, &format!("{text}\n"))
    };
    if let Err(e) = printed {
        return Err(e.into());
    }
    let _ = writeln!(
        std::io::stderr(),
        "[{} tokens in {:.2} s: {:.1} tokens/s, {} forward passes, {} cache, seed {}]",
        params.gen_length,
        seconds,
        tokens_per_s,
        out.nfe,
        params.cache.name(),
        params.seed
    );
    Ok(())
}

fn broken_pipe() -> Box<dyn Error> {
    Box::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe))
}

/// Write and flush; the error of a closed pipe is returned, not a panic as from `print!`.
pub fn write_flush(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    w.write_all(s.as_bytes())?;
    w.flush()
}
