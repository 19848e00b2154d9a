//! Where `dlm chat` reads its lines: on a terminal, a line editor (arrow keys, Home/End,
//! word moves, kill and yank, history with Up/Down and Ctrl-R: rustyline's emacs keys);
//! from a pipe or file, plain lines, with the prompt on stderr, as before.

use std::error::Error;
use std::io::{BufRead, IsTerminal, Write};

/// What one read gave.
pub enum Read {
    /// A line, without its end.
    Line(String),
    /// Ctrl-C at the prompt (terminal only).
    Interrupted,
    /// Ctrl-D, or the end of the input.
    End,
}

/// The source of a chat's lines.
pub enum LineInput {
    /// A terminal: edited lines with history.
    Editor(Box<rustyline::DefaultEditor>),
    /// Anything else: lines as they come.
    Plain(std::io::Lines<std::io::StdinLock<'static>>),
}

/// Entries the history keeps (oldest go first).
const HISTORY: usize = 1000;

impl LineInput {
    /// A line editor when stdin and stdout are a terminal (and `TERM` is not `dumb`), else
    /// plain lines.
    pub fn new() -> Self {
        let tty = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
        if tty {
            let config = rustyline::Config::builder()
                .max_history_size(HISTORY)
                .and_then(|b| b.history_ignore_dups(true))
                .map(|b| b.auto_add_history(false).build());
            if let Ok(config) = config
                && let Ok(ed) = rustyline::DefaultEditor::with_config(config)
            {
                return LineInput::Editor(Box::new(ed));
            }
        }
        LineInput::Plain(std::io::stdin().lock().lines())
    }

    /// Read one line after showing `prompt`.
    pub fn read(&mut self, prompt: &str) -> Result<Read, Box<dyn Error>> {
        match self {
            LineInput::Editor(ed) => match ed.readline(prompt) {
                Ok(line) => Ok(Read::Line(line)),
                Err(rustyline::error::ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(rustyline::error::ReadlineError::Eof) => Ok(Read::End),
                Err(e) => Err(format!("cannot read from the terminal: {e}").into()),
            },
            LineInput::Plain(lines) => {
                let mut err = std::io::stderr();
                let _ = write!(err, "{prompt}");
                let _ = err.flush();
                match lines.next() {
                    Some(line) => Ok(Read::Line(
                        line.map_err(|e| format!("cannot read from stdin: {e}"))?,
                    )),
                    None => Ok(Read::End),
                }
            }
        }
    }

    /// Keep `line` in the history (Up recalls it).
    pub fn remember(&mut self, line: &str) {
        if let LineInput::Editor(ed) = self {
            let _ = ed.add_history_entry(line);
        }
    }
}
