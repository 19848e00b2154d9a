//! `dlm chat`: a multi-turn conversation on stdin/stdout. Each turn renders the whole
//! conversation with the model's chat format (system message, earlier questions and answers,
//! the new question); when that and the answer's canvas no longer fit the context, the oldest
//! turns are dropped, with a notice, instead of failing. The keys and values of the earlier
//! turns are kept from one turn to the next (`--no-reuse` recomputes them every turn).

use super::decode_args::{DecodeArgs, settings_text};
use super::line_input::{LineInput, Read};
use super::run::write_flush;
use super::{CliResult, json, model_path};
use dlm_runtime::chat::Role;
use dlm_runtime::decode::ContextCache;
use dlm_runtime::final_text::FinalText;
use dlm_runtime::{Engine, RuntimeError};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

/// Talk with a model, one message per line.
///
/// Answers are printed as they become final. Ctrl-C stops the answer being generated (twice at
/// the prompt ends the session); Ctrl-D or /exit ends the session; /reset forgets the
/// conversation; /help lists the commands. On a terminal the line is edited with the usual
/// keys (arrows, Home/End, Ctrl-A/E/K/U/W, Alt-B/F) and Up/Down and Ctrl-R recall earlier
/// lines of the session; piped input is read line by line.
///
/// The earlier turns' keys and values are kept between turns, so a turn's cost does not grow
/// with the conversation (`--no-reuse` recomputes them; see docs/chat-reuse.md).
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
    /// Compute the whole conversation's keys and values again every turn, instead of reusing
    /// the earlier turns' (reuse is an approximation under bidirectional attention: the kept
    /// entries were computed before the newer turns existed; see docs/chat-reuse.md).
    #[arg(long)]
    no_reuse: bool,
    /// One JSON line per turn on stdout (`turn`, `text`, `prompt_tokens`, `reused_tokens`,
    /// `completion_tokens`, `nfe`, `query_rows`, `seconds`, `dropped_turns`, `seed`) instead
    /// of the streamed answer.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    decode: DecodeArgs,
}

const HELP: &str = "commands:
  /reset   forget the conversation so far
  /exit    end the session (also Ctrl-D, or Ctrl-C twice at the prompt)
  /help    this list
Ctrl-C while an answer is being generated stops it; the conversation goes on.";

/// The largest conversation KV cache made at its full size up front.
const WHOLE_CONTEXT_BYTES: usize = 256 << 20;

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
    let path = model_path::model_or_demo(&a.model)?;
    let engine = model_path::load_engine(&path, a.decode.device(), a.decode.quant())?;
    let params = a.decode.apply_random_seed(engine.defaults())?;
    if a.decode.show_defaults {
        print!(
            "{}",
            settings_text(&path, &engine, &params, a.decode.seed.is_none())
        );
        return Ok(());
    }
    if engine.chat().is_none() {
        return Err("this model has no chat template; use dlm run --raw".into());
    }
    let seq_len = engine.model().config().seq_len;
    let context_len = a.context.unwrap_or(seq_len).min(seq_len);
    if params.gen_length >= context_len {
        return Err(format!(
            "--gen-length {} leaves no room for a message in a context of {context_len}",
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
    let reuse = !a.no_reuse && ContextCache::can_reuse(&params);
    if !a.no_reuse && !reuse {
        let _ = writeln!(
            std::io::stderr(),
            "[the earlier turns' keys and values are computed again every turn: {} cannot reuse them]",
            if params.cfg_scale > 0.0 {
                "classifier-free guidance"
            } else {
                "the elastic cache"
            }
        );
    }
    // A context that costs little (the demo's: 9 MiB) is made whole at once; a large one
    // (an 8B model's 4096 positions: 4 GiB) grows with the conversation.
    let cfg = engine.model().config();
    let per_position = 2 * cfg.n_layers * cfg.kv_dim() * 4;
    let mut kept = if per_position.saturating_mul(context_len) <= WHOLE_CONTEXT_BYTES {
        ContextCache::whole(context_len)
    } else {
        ContextCache::new(context_len)
    };
    let mut n_turn = 0usize;
    let mut input = LineInput::new();
    let mut interrupts = 0;
    let mut err = std::io::stderr();
    let mut stdout = std::io::stdout();
    let _ = writeln!(
        err,
        "dlm chat: /help lists the commands; Ctrl-D ends the session."
    );
    loop {
        let line = match input.read("> ")? {
            Read::Line(l) => l,
            Read::End => break,
            // Ctrl-C at the editor's prompt: once is a notice, twice in a row ends.
            Read::Interrupted => {
                interrupts += 1;
                if interrupts >= 2 {
                    break;
                }
                let _ = writeln!(err, "[Ctrl-C again, Ctrl-D or /exit ends the session]");
                continue;
            }
        };
        interrupts = 0;
        let question = line.trim();
        if !question.is_empty() {
            input.remember(question);
        }
        match question {
            "" => continue,
            "/exit" | "/quit" | "/bye" => break,
            "/reset" | "/clear" => {
                turns.clear();
                kept.clear();
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
            if ids.len() + params.gen_length <= context_len {
                break Some(ids);
            }
            if dropped == turns.len() {
                let _ = writeln!(
                    err,
                    "[this message takes {} tokens: with the answer's {} it does not fit the context of {context_len}; shorten it or lower --gen-length]",
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
            // The kept turns moved to earlier positions: their keys and values are computed
            // again this turn (the matching prefix is what precedes the first turn).
            let _ = writeln!(
                err,
                "[context of {context_len} tokens full: dropped the oldest {dropped} turn{}{}]",
                if dropped == 1 { "" } else { "s" },
                if reuse {
                    "; the kept turns' keys and values are computed again"
                } else {
                    ""
                }
            );
        }

        stop.store(false, Ordering::Relaxed);
        let mut text = FinalText::new(prompt.len(), engine.decode_tokens(), params.gen_length);
        let mut closed = false;
        let start = Instant::now();
        let mut on_step = |ev: &dlm_runtime::decode::StepEvent<'_>| {
            if stop.load(Ordering::Relaxed) {
                return false;
            }
            if a.json {
                return true;
            }
            let delta = text.update(tok, ev.canvas);
            if !delta.is_empty() && write_flush(&mut stdout, &delta).is_err() {
                closed = true;
                return false;
            }
            true
        };
        let result = if reuse {
            engine.generate_with_context(&prompt, &params, &mut kept, &mut on_step)
        } else {
            engine.generate(&prompt, &params, &mut on_step)
        };
        match result {
            Ok(out) => {
                let seconds = start.elapsed().as_secs_f64();
                let answer = engine.answer_text(&out)?;
                let shown = if a.json {
                    format!(
                        "{{\"turn\":{n_turn},\"text\":{},\"prompt_tokens\":{},\"reused_tokens\":{},\"completion_tokens\":{},\"nfe\":{},\"query_rows\":{},\"seconds\":{},\"dropped_turns\":{dropped},\"seed\":{}}}\n",
                        json::string(&answer),
                        out.prompt_len,
                        out.reused,
                        out.answer_ids().len(),
                        out.nfe,
                        out.query_rows,
                        json::float(seconds),
                        params.seed
                    )
                } else {
                    format!("{}\n", text.finish(tok, &out.canvas))
                };
                if write_flush(&mut stdout, &shown).is_err() {
                    return Ok(());
                }
                n_turn += 1;
                turns.push((question.to_string(), answer));
                let reused = if reuse {
                    format!(
                        "{} of {} prompt tokens reused, ",
                        out.reused, out.prompt_len
                    )
                } else {
                    String::new()
                };
                let _ = writeln!(err, "[{seconds:.2} s, {reused}{} forward passes]", out.nfe);
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
