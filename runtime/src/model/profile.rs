//! Per-call wall-clock accounting of a forward pass by part (matmuls, attention, head, the
//! rest), for `dlm bench`. A request asks for it; nothing is global, so two sessions in one
//! process never mix their figures. When not asked for, a part costs one branch.

use std::time::Instant;

/// Seconds spent in each part of one or more forward passes.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Projection and MLP matmuls.
    pub matmul: f64,
    /// RoPE, scores, softmax and the weighted sum of values.
    pub attention: f64,
    /// Final norm and head of the wanted rows (and their proposals).
    pub head: f64,
    /// The whole pass (the rest is this minus the parts above).
    pub total: f64,
}

impl Timings {
    /// Everything not in the named parts.
    pub fn other(&self) -> f64 {
        (self.total - self.matmul - self.attention - self.head).max(0.0)
    }

    /// Add another pass's figures.
    pub fn add(&mut self, o: &Timings) {
        self.matmul += o.matmul;
        self.attention += o.attention;
        self.head += o.head;
        self.total += o.total;
    }
}

/// The parts of a forward pass that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Part {
    Matmul,
    Attention,
    Head,
}

/// A clock for one pass: on only when the request asked for timings.
pub(crate) struct Clock {
    on: bool,
    start: Option<Instant>,
    t: Timings,
}

impl Clock {
    pub(crate) fn new(on: bool) -> Self {
        Clock {
            on,
            start: on.then(Instant::now),
            t: Timings::default(),
        }
    }

    /// Run `f`, adding its wall time to `part` when on.
    pub(crate) fn time<T>(&mut self, part: Part, f: impl FnOnce() -> T) -> T {
        if !self.on {
            return f();
        }
        let t = Instant::now();
        let r = f();
        let s = t.elapsed().as_secs_f64();
        match part {
            Part::Matmul => self.t.matmul += s,
            Part::Attention => self.t.attention += s,
            Part::Head => self.t.head += s,
        }
        r
    }

    /// The figures, when on.
    pub(crate) fn finish(self) -> Option<Timings> {
        let start = self.start?;
        let mut t = self.t;
        t.total = start.elapsed().as_secs_f64();
        Some(t)
    }
}
