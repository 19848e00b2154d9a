//! Conversion progress: the event `convert` reports after each tensor, and a tiny progress bar
//! on stderr for command-line use.

use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// Where a conversion stands, reported once before any tensor is written (`tensors_done` 0,
/// `bytes_total` the tensor data to be written) and after each tensor is written.
#[derive(Debug, Clone, Copy)]
pub struct Progress<'a> {
    /// Our name of the tensor just written.
    pub tensor: &'a str,
    /// Tensors written so far.
    pub tensors_done: usize,
    /// Tensors in the file.
    pub tensors_total: usize,
    /// Tensor data bytes written so far.
    pub bytes_done: u64,
    /// Tensor data bytes in the file.
    pub bytes_total: u64,
}

impl Progress<'_> {
    /// The report before the first tensor: nothing written yet.
    pub fn start(tensors_total: usize, bytes_total: u64) -> Progress<'static> {
        Progress {
            tensor: "",
            tensors_done: 0,
            tensors_total,
            bytes_done: 0,
            bytes_total,
        }
    }
}

/// Draws `[#####     ] 12/345 tensors, 1.2/4.5 GiB` on stderr, redrawn at most 10 times a
/// second, and only when stderr is a terminal.
pub struct StderrProgress {
    last: Option<Instant>,
    enabled: bool,
    drew: bool,
}

impl Default for StderrProgress {
    fn default() -> Self {
        Self::new()
    }
}

impl StderrProgress {
    /// A bar that draws when stderr is a terminal.
    pub fn new() -> Self {
        StderrProgress {
            last: None,
            enabled: std::io::stderr().is_terminal(),
            drew: false,
        }
    }

    /// Redraw for `p` (rate-limited; the last tensor always draws).
    pub fn update(&mut self, p: &Progress<'_>) {
        let last_one = p.tensors_done == p.tensors_total;
        if !self.enabled
            || (!last_one
                && self
                    .last
                    .is_some_and(|t| t.elapsed() < Duration::from_millis(100)))
        {
            return;
        }
        self.last = Some(Instant::now());
        const WIDTH: usize = 30;
        let frac = if p.bytes_total == 0 {
            1.0
        } else {
            p.bytes_done as f64 / p.bytes_total as f64
        };
        let filled = ((frac * WIDTH as f64) as usize).min(WIDTH);
        let gib = |b: u64| b as f64 / (1u64 << 30) as f64;
        let mut err = std::io::stderr().lock();
        let _ = write!(
            err,
            "\r[{}{}] {}/{} tensors, {:.2}/{:.2} GiB  {:<24.24}",
            "#".repeat(filled),
            " ".repeat(WIDTH - filled),
            p.tensors_done,
            p.tensors_total,
            gib(p.bytes_done),
            gib(p.bytes_total),
            p.tensor
        );
        let _ = err.flush();
        self.drew = true;
    }

    /// End the bar's line.
    pub fn finish(&mut self) {
        if self.drew {
            eprintln!();
            self.drew = false;
        }
    }
}
