//! Command-line surface: argument definitions and dispatch to one module per command.

mod bench;
mod chat;
mod convert;
mod decode_args;
mod eval;
mod inspect;
mod json;
mod line_input;
mod logits;
mod model_path;
mod run;
mod serve;
mod tokenize;
mod verify;
mod visual;

use clap::{Parser, Subcommand};
use std::error::Error;

/// The result every command returns; errors print with their chain of causes.
pub type CliResult = Result<(), Box<dyn Error>>;

/// dlm: run diffusion language models (LLaDA, Dream) on small machines.
///
/// A diffusion LM starts from a block of mask tokens and unmasks many positions per forward
/// pass. Convert a Hugging Face checkpoint once with `dlm convert`, then run the `.dlm` file.
#[derive(Parser)]
#[command(name = "dlm", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size difference between variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
enum Command {
    Convert(convert::Args),
    Inspect(inspect::Args),
    Tokenize(tokenize::TokenizeArgs),
    Detokenize(tokenize::DetokenizeArgs),
    Logits(logits::Args),
    Run(run::Args),
    Chat(chat::Args),
    Serve(serve::Args),
    Bench(bench::Args),
    Eval(eval::Args),
    Verify(verify::Args),
}

/// Parse the arguments and run the command.
pub fn main() -> CliResult {
    match Cli::parse().command {
        Command::Convert(a) => convert::run(a),
        Command::Inspect(a) => inspect::run(a),
        Command::Tokenize(a) => tokenize::run_tokenize(a),
        Command::Detokenize(a) => tokenize::run_detokenize(a),
        Command::Logits(a) => logits::run(a),
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Eval(a) => eval::run(a),
        Command::Verify(a) => verify::run(a),
    }
}
