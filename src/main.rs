//! The `dlm` command-line tool: convert, inspect and run diffusion language models.
#![forbid(unsafe_code)]

mod cli;

use std::any::Any;
use std::process::ExitCode;

/// The status of a process that stopped because its output pipe closed, as shells report a
/// process killed by SIGPIPE (128 + 13).
const BROKEN_PIPE_EXIT: u8 = 141;

/// Whether a panic payload is the standard library's "failed printing to stdout/stderr"
/// panic for a closed pipe (`println!` on EPIPE; Rust ignores SIGPIPE).
fn is_broken_pipe_panic(payload: &(dyn Any + Send)) -> bool {
    let msg = payload
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| payload.downcast_ref::<&str>().copied())
        .unwrap_or("");
    msg.starts_with("failed printing to") && msg.contains("Broken pipe")
}

/// Whether an error (or one of its causes) is a closed pipe.
fn is_broken_pipe(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cur = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && io.kind() == std::io::ErrorKind::BrokenPipe
        {
            return true;
        }
        cur = err.source();
    }
    false
}

fn main() -> ExitCode {
    // A closed stdout (`dlm run ... | head -c 10`) ends the process quietly, like a C tool
    // killed by SIGPIPE; unwinding first runs the drops, so no temporary file stays behind.
    let default_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if !is_broken_pipe_panic(info.payload()) {
            default_hook(info);
        }
    }));
    let result = match std::panic::catch_unwind(cli::main) {
        Ok(r) => r,
        Err(payload) if is_broken_pipe_panic(payload.as_ref()) => {
            return ExitCode::from(BROKEN_PIPE_EXIT);
        }
        Err(payload) => std::panic::resume_unwind(payload),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if is_broken_pipe(e.as_ref()) => ExitCode::from(BROKEN_PIPE_EXIT),
        Err(e) => {
            let msg = format!("error: {}", dlm::error_chain(e.as_ref()));
            // Not eprintln!: with stderr closed too there is nobody to tell.
            use std::io::Write;
            let _ = writeln!(std::io::stderr(), "{msg}");
            ExitCode::FAILURE
        }
    }
}
