//! `--visual`: the canvas redrawn on stderr after every step, masks shown as `░`, committed
//! tokens appearing in place. On a terminal each frame replaces the last; otherwise frames
//! follow one another.

use dlm_runtime::Engine;
use dlm_runtime::decode::StepEvent;
use std::io::{IsTerminal, Write};

/// Draws the generated region of the canvas.
pub struct Canvas<'e> {
    engine: &'e Engine,
    terminal: bool,
}

impl<'e> Canvas<'e> {
    /// A view drawing for `engine`'s tokenizer.
    pub fn new(engine: &'e Engine) -> Self {
        Canvas {
            engine,
            terminal: std::io::stderr().is_terminal(),
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
        let header = format!(
            "step {:>3}/{}  masks left {:>4}  forward passes {:>3}",
            ev.step + 1,
            ev.planned_steps,
            ev.masks_left,
            ev.nfe
        );
        let mut err = std::io::stderr().lock();
        if self.terminal {
            // Redraw from the top of a cleared screen: counting the previous frame's rows
            // would need the terminal's width (answers wrap and hold newlines).
            let _ = write!(err, "\x1b[H\x1b[J");
        }
        let frame = format!("{header}\n{text}\n");
        let _ = err.write_all(frame.as_bytes());
        let _ = err.flush();
    }
}
