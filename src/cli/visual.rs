//! `--visual`: the canvas redrawn on stderr after every step, masks shown as `░`, committed
//! tokens appearing in place.

use dlm_runtime::Engine;
use dlm_runtime::decode::StepEvent;
use std::io::{IsTerminal, Write};

/// Draws the generated region of the canvas.
pub struct Canvas<'e> {
    engine: &'e Engine,
    terminal: bool,
    lines: usize,
}

impl<'e> Canvas<'e> {
    /// A view drawing for `engine`'s tokenizer.
    pub fn new(engine: &'e Engine) -> Self {
        Canvas {
            engine,
            terminal: std::io::stderr().is_terminal(),
            lines: 0,
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
        if self.terminal && self.lines > 0 {
            // Move back over the previous frame and clear it.
            let _ = write!(err, "\x1b[{}F\x1b[J", self.lines);
        }
        let frame = format!("{header}\n{text}\n");
        self.lines = frame.lines().count();
        let _ = err.write_all(frame.as_bytes());
        let _ = err.flush();
    }
}
