//! `dlm chat`: a multi-turn conversation on stdin/stdout. Each turn renders the whole
//! conversation with the model's chat format (system message, earlier questions and answers,
//! the new question); when that and the answer's canvas no longer fit the context, the oldest
//! turns are dropped, with a notice, instead of failing.

use super::decode_args::DecodeArgs;
use super::run::write_flush;
use super::{CliResult, model_path};
use dlm_runtime::chat::Role;
use dlm_runtime::final_text::FinalText;
use dlm_runtime::{Engine, RuntimeError};
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Talk with a model, one message per line.
///
/// Answers are printed as they become final. Ctrl-C stops the answer being generated (twice at
/// the prompt ends the session); Ctrl-D or /exit ends the session; /reset forgets the
/// conversation; /help lists the commands. Line editing is the terminal's own (wrap the
/// command in `rlwrap` for history).
#[derive(clap::Args)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// A system message for the conversation.
    #[arg(long)]
    system: Option<String>,
    /// Tokens of context for the conversation and the answer (default and most: the model's).
    #[arg(short = 'c', long)]
    context: Option<usize>,
    #[command(flatten)]
    decode: DecodeArgs,
}

const HELP: &str = "commands:
  /reset   forget the conversation so far
  /exit    end the session (also Ctrl-D, or Ctrl-C twice at the prompt)
  /help    this list
Ctrl-C while an answer is being generated stops it; the conversation goes on.";

/// The prompt of a conversation: the system message, earlier turns, then `question`.
fn render(
    engine: &Engine,
    system: Option<&str>,
    turns: &[(String, String)],
    question: &str,
) -> Result<Vec<u32>, RuntimeError> {
    let mut msgs: Vec<(Role, &str)> = Vec::new();
    if let Some(s) = system {
        msgs.push((Role::System, s));
    }
    for (q, a) in turns {
        msgs.push((Role::User, q));
        msgs.push((Role::Assistant, a));
    }
    msgs.push((Role::User, question));
    engine.chat_ids(&msgs)
}

pub fn run(a: Args) -> CliResult {
    a.decode.init_threads()?;
    let path = a.model.clone().unwrap_or_else(model_path::default_model);
    let engine = model_path::load_engine(&path, a.decode.device())?;
    let params = a.decode.apply_random_seed(engine.defaults())?;
    if engine.chat().is_none() {
        return Err("this model has no chat template; use dlm run --raw".into());
    }
    let seq_len = engine.model().config().seq_len;
    let context = a.context.unwrap_or(seq_len).min(seq_len);
    if params.gen_length >= context {
        return Err(format!(
            "--gen-length {} leaves no room for a message in a context of {context}",
            params.gen_length
        )
        .into());
    }

    // The first Ctrl-C sets the flag (the step callback sees it and stops the answer); one
    // more while it is still set, at the prompt, ends the process as Ctrl-C usually does.
    let stop = Arc::new(AtomicBool::new(false));
    use signal_hook::consts::SIGINT;
    signal_hook::flag::register_conditional_shutdown(SIGINT, 130, stop.clone())
        .and_then(|_| signal_hook::flag::register(SIGINT, stop.clone()))
        .map_err(|e| format!("cannot handle Ctrl-C: {e}"))?;

    let tok = engine.tokenizer();
    let mut turns: Vec<(String, String)> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    let mut err = std::io::stderr();
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        err,
        "dlm chat: /help lists the commands; Ctrl-D ends the session."
    );
    loop {
        let _ = write!(err, "> ");
        let _ = err.flush();
        let Some(line) = lines.next() else { break };
        let line = line.map_err(|e| format!("cannot read from stdin: {e}"))?;
        let question = line.trim();
        match question {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/reset" | "/clear" => {
                turns.clear();
                let _ = writeln!(err, "[conversation cleared]");
                continue;
            }
            "/help" | "/?" => {
                let _ = writeln!(err, "{HELP}");
                continue;
            }
            c if c.starts_with('/') => {
                let _ = writeln!(err, "[unknown command {c}; /help lists them]");
                continue;
            }
            _ => {}
        }

        // Drop the oldest turns until the conversation and the answer fit.
        let mut dropped = 0;
        let prompt = loop {
            let ids = render(&engine, a.system.as_deref(), &turns[dropped..], question)?;
            if ids.len() + params.gen_length <= context {
                break Some(ids);
            }
            if dropped == turns.len() {
                let _ = writeln!(
                    err,
                    "[this message takes {} tokens: with the answer's {} it does not fit the context of {context}; shorten it or lower --gen-length]",
                    ids.len(),
                    params.gen_length
                );
                break None;
            }
            dropped += 1;
        };
        let Some(prompt) = prompt else { continue };
        if dropped > 0 {
            turns.drain(..dropped);
            let _ = writeln!(
                err,
                "[context of {context} tokens full: dropped the oldest {dropped} turn{}]",
                if dropped == 1 { "" } else { "s" }
            );
        }

        stop.store(false, Ordering::Relaxed);
        let mut text = FinalText::new(prompt.len(), engine.decode_tokens(), params.gen_length);
        let mut closed = false;
        let start = Instant::now();
        let result = engine.generate(&prompt, &params, &mut |ev| {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            let delta = text.update(tok, ev.canvas);
            if !delta.is_empty() && write_flush(&mut stdout, &delta).is_err() {
                closed = true;
                return false;
            }
            true
        });
        match result {
            Ok(out) => {
                let rest = text.finish(tok, &out.canvas);
                if write_flush(&mut stdout, &format!("{rest}\n")).is_err() {
                    return Ok(());
                }
                turns.push((question.to_string(), engine.answer_text(&out)?));
                let _ = writeln!(
                    err,
                    "[{:.2} s, {} forward passes]",
                    start.elapsed().as_secs_f64(),
                    out.nfe
                );
            }
            Err(RuntimeError::Cancelled) if closed => return Ok(()),
            Err(RuntimeError::Cancelled) => {
                stop.store(false, Ordering::Relaxed);
                let _ = write_flush(&mut stdout, "\n");
                let _ = writeln!(err, "[stopped; this turn is not kept]");
            }
            // A request the model cannot take ends the turn, not the conversation.
            Err(e) => {
                let _ = writeln!(err, "error: {e}");
            }
        }
    }
    Ok(())
}
