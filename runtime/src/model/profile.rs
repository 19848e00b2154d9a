//! Optional wall-clock accounting of the forward pass by part (matmuls, attention, head,
//! the rest), for `dlm bench`. Off by default; when off, a part costs one relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

/// The parts of a forward pass that are timed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The q/k/v/out projections and the MLP matmuls.
    Matmul,
    /// RoPE, scores, softmax and the weighted sum of values.
    Attention,
    /// The final norm and the output head of the wanted rows.
    Head,
    /// The whole forward pass (the rest is this minus the parts above).
    Forward,
}

const N_PARTS: usize = 4;
static ENABLED: AtomicBool = AtomicBool::new(false);
static NANOS: [AtomicU64; N_PARTS] = [const { AtomicU64::new(0) }; N_PARTS];

/// Seconds spent in each part since the last [`reset`].
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Breakdown {
    /// Projection and MLP matmuls.
    pub matmul: f64,
    /// Attention.
    pub attention: f64,
    /// Final norm and head.
    pub head: f64,
    /// Everything else in the forward pass.
    pub other: f64,
}

impl Breakdown {
    /// Sum of the parts.
    pub fn total(&self) -> f64 {
        self.matmul + self.attention + self.head + self.other
    }
}

/// Turn the accounting on or off (process-wide).
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Zero the counters.
pub fn reset() {
    for n in &NANOS {
        n.store(0, Ordering::Relaxed);
    }
}

/// The counters now.
pub fn snapshot() -> Breakdown {
    let s = |p: Part| NANOS[p as usize].load(Ordering::Relaxed) as f64 * 1e-9;
    Breakdown {
        matmul: s(Part::Matmul),
        attention: s(Part::Attention),
        head: s(Part::Head),
        other: (s(Part::Forward) - s(Part::Matmul) - s(Part::Attention) - s(Part::Head)).max(0.0),
    }
}

/// Run `f`, adding its wall time to `part` when accounting is on.
pub(crate) fn timed<T>(part: Part, f: impl FnOnce() -> T) -> T {
    if !ENABLED.load(Ordering::Relaxed) {
        return f();
    }
    let t = Instant::now();
    let r = f();
    NANOS[part as usize].fetch_add(t.elapsed().as_nanos() as u64, Ordering::Relaxed);
    r
}
