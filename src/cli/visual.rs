//! `--visual`: the canvas redrawn on stderr after every step, masks shown as `░`, committed
//! tokens appearing in place. On a terminal each frame replaces the last in place, touching
//! only the rows the last frame used (what was on the screen above stays); otherwise frames
//! follow one another.
//!
//! Replacing a frame means moving the cursor up by the rows it took, which depends on how its
//! lines wrap: the terminal's width is read once (`stty size` on the controlling terminal, so no
//! unsafe ioctl is needed here, then `$COLUMNS`/`$LINES`, then 80x24), and a frame is cut to fit
//! the screen, since the cursor cannot move above its top.

use dlm_runtime::Engine;
use dlm_runtime::decode::StepEvent;
use std::io::{IsTerminal, Write};

/// Draws the generated region of the canvas.
pub struct Canvas<'e> {
    engine: &'e Engine,
    /// `(columns, rows)` of the terminal; `None` when stderr is not one.
    screen: Option<(usize, usize)>,
    /// Rows the last frame took (the cursor is on the row below it).
    last_rows: usize,
}

/// The terminal's `(columns, rows)`.
fn terminal_size() -> (usize, usize) {
    let from_stty = std::fs::File::open("/dev/tty").ok().and_then(|tty| {
        let out = std::process::Command::new("stty")
            .arg("size")
            .stdin(tty)
            .stderr(std::process::Stdio::null())
            .output()
            .ok()?;
        let text = String::from_utf8(out.stdout).ok()?;
        let mut it = text.split_whitespace().map(|v| v.parse::<usize>().ok());
        let (rows, cols) = (it.next()??, it.next()??);
        (rows > 0 && cols > 0).then_some((cols, rows))
    });
    from_stty.unwrap_or_else(|| {
        let env = |k: &str, d: usize| {
            std::env::var(k)
                .ok()
                .and_then(|v| v.parse().ok())
                .filter(|&v| v > 0)
                .unwrap_or(d)
        };
        (env("COLUMNS", 80), env("LINES", 24))
    })
}

/// Rows `line` takes on a terminal `cols` wide (a line of exactly `cols` characters takes one:
/// terminals defer the wrap until the next character).
pub fn rows_of(line: &str, cols: usize) -> usize {
    line.chars().count().div_ceil(cols.max(1)).max(1)
}

/// `text` cut to at most `max_rows` rows of `cols` columns, ending with `…` when cut.
pub fn fit(text: &str, cols: usize, max_rows: usize) -> String {
    let mut out = String::new();
    let mut rows = 0;
    for line in text.split('\n') {
        let r = rows_of(line, cols);
        if rows + r > max_rows {
            let room = (max_rows - rows) * cols.max(1);
            if room > 0 {
                let keep: String = line.chars().take(room.saturating_sub(1)).collect();
                out.push_str(&keep);
                out.push('…');
            } else if out.ends_with('\n') {
                out.pop();
                out.push('…');
            }
            return out;
        }
        rows += r;
        out.push_str(line);
        out.push('\n');
    }
    out.pop();
    out
}

impl<'e> Canvas<'e> {
    /// A view drawing for `engine`'s tokenizer.
    pub fn new(engine: &'e Engine) -> Self {
        let terminal = std::io::stderr().is_terminal();
        Canvas {
            engine,
            screen: terminal.then(terminal_size),
            last_rows: 0,
        }
    }

    /// Redraw after a step.
    pub fn draw(&mut self, ev: &StepEvent<'_>) {
        let mask = self.engine.decode_tokens().mask_id;
        let tok = self.engine.tokenizer();
        let mut text = String::new();
        for &id in &ev.canvas[ev.prompt_len..] {
            if id == mask {
                text.push('░');
            } else if let Ok(s) = tok.decode(&[id], true) {
                text.push_str(&s);
            }
        }
        // Carriage returns and tabs would move the cursor in ways the row count ignores.
        let text = text.replace(['\r', '\t'], " ");
        let header = format!(
            "step {:>3}/{}  masks left {:>4}  forward passes {:>3}",
            ev.step + 1,
            ev.planned_steps,
            ev.masks_left,
            ev.nfe
        );
        let mut err = std::io::stderr().lock();
        let frame = match self.screen {
            Some((cols, rows)) => {
                // One row is left for the cursor below the frame.
                let body = fit(
                    &format!("{header}\n{text}"),
                    cols,
                    rows.saturating_sub(1).max(1),
                );
                let mut out = String::new();
                if self.last_rows > 0 {
                    // Back to the first row of the last frame, and clear from there down.
                    out.push_str(&format!("\x1b[{}A", self.last_rows));
                }
                out.push_str("\r\x1b[J");
                out.push_str(&body);
                out.push('\n');
                self.last_rows = body.split('\n').map(|l| rows_of(l, cols)).sum();
                out
            }
            None => format!("{header}\n{text}\n"),
        };
        let _ = err.write_all(frame.as_bytes());
        let _ = err.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_count_wrapped_lines() {
        assert_eq!(rows_of("", 10), 1);
        assert_eq!(rows_of("abc", 10), 1);
        assert_eq!(rows_of(&"x".repeat(10), 10), 1);
        assert_eq!(rows_of(&"x".repeat(11), 10), 2);
        assert_eq!(rows_of(&"░".repeat(25), 10), 3);
    }

    #[test]
    fn fit_cuts_to_the_screen() {
        assert_eq!(fit("ab\ncd", 10, 5), "ab\ncd");
        let long = "x".repeat(35);
        let cut = fit(&format!("head\n{long}"), 10, 3);
        assert_eq!(cut.split('\n').map(|l| rows_of(l, 10)).sum::<usize>(), 3);
        assert!(cut.ends_with('…'));
        let cut = fit("a\nb\nc\nd", 10, 2);
        assert_eq!(cut, "a\nb…");
    }
}
