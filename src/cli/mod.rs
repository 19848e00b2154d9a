//! Command-line surface: argument definitions and dispatch to one module per command.

mod bench;
mod cache;
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
    Cache(cache::Args),
}

/// Parse the arguments and run the command.
pub fn main() -> CliResult {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        // `dlm run -m MODEL --help`: the help, then that model's defaults.
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelp => {
            e.print()?;
            let args: Vec<String> = std::env::args().collect();
            if let Some(text) = decode_args::help_defaults(&args)? {
                println!("\n{text}");
            }
            return Ok(());
        }
        Err(e) => e.exit(),
    };
    match cli.command {
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
        Command::Cache(a) => cache::run(a),
    }
}
