//! `dlm chat`: a multi-turn conversation on stdin/stdout. The history is kept as LLaDA's
//! `chat.py` keeps it: the previous canvas (prompt and answer, end-of-sequence padding removed)
//! followed by the new user turn without the conversation prefix (BOS).

use super::decode_args::DecodeArgs;
use super::{CliResult, model_path};
use dlm_runtime::chat::Role;
use std::io::{BufRead, Write};
use std::path::PathBuf;
use std::time::Instant;

/// Talk with a model, one question per line. An empty line or end of input quits.
///
/// Each turn is appended to the whole conversation so far, so later answers see earlier ones.
#[derive(clap::Args)]
pub struct Args {
    /// Model: a `.dlm` file or a Hugging Face folder (default: the shipped demo model).
    #[arg(short, long)]
    model: Option<PathBuf>,
    /// A system message for the conversation.
    #[arg(long)]
    system: Option<String>,
    #[command(flatten)]
    decode: DecodeArgs,
}

pub fn run(a: Args) -> CliResult {
    let path = a.model.clone().unwrap_or_else(model_path::default_model);
    let engine = model_path::load_engine(&path)?;
    let params = a.decode.apply(engine.defaults())?;
    let chat = engine
        .chat()
        .ok_or("this model has no chat template; use dlm run --raw")?;
    let tok = engine.tokenizer();
    let eos = engine.decode_tokens().stop_ids[0];
    let mut history: Vec<u32> = Vec::new();
    let stdin = std::io::stdin();
    let mut lines = stdin.lock().lines();
    loop {
        eprint!("> ");
        std::io::stderr().flush().ok();
        let Some(line) = lines.next() else { break };
        let line = line?;
        if line.trim().is_empty() {
            break;
        }
        let prompt = if history.is_empty() {
            let mut msgs = Vec::new();
            if let Some(s) = &a.system {
                msgs.push((Role::System, s.as_str()));
            }
            msgs.push((Role::User, line.as_str()));
            engine.chat_ids(&msgs)?
        } else {
            let turn = chat.next_turn(&line);
            let mut p = history.clone();
            p.extend(tok.encode(&turn));
            p
        };
        let start = Instant::now();
        let out = engine.generate(&prompt, &params, &mut |_| true)?;
        println!("{}", engine.answer_text(&out)?);
        eprintln!(
            "[{:.2} s, {} forward passes]",
            start.elapsed().as_secs_f64(),
            out.nfe
        );
        history = out.canvas.iter().copied().filter(|&t| t != eos).collect();
    }
    Ok(())
}
