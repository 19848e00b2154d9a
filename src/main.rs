//! The `dlm` command-line tool: convert, inspect and run diffusion language models.
#![forbid(unsafe_code)]

mod cli;

use std::process::ExitCode;

fn main() -> ExitCode {
    match cli::main() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let msg = format!("error: {}", dlm::error_chain(e.as_ref()));
            eprintln!("{msg}");
            ExitCode::FAILURE
        }
    }
}
