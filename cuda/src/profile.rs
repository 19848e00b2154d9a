//! GPU time per op, measured with CUDA events, for finding where a step's time goes:
//! `DLM_CUDA_PROFILE=1` brackets every op of the backend with two timing events and prints,
//! when the backend is dropped, a table of milliseconds per op name (which carries the op's
//! row count, so full and cached steps fall in separate lines) to stderr. Off by default; off,
//! an op pays one branch.
//!
//! The times are the GPU's (end event minus start event), so they hold even though ops are
//! queued asynchronously; the sum of all lines against the wall time of a run says how much
//! of the run the GPU sat idle waiting for the host (launch-bound).

use cudarc::driver::{CudaContext, CudaEvent, CudaStream};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Event pairs kept before they are read and folded into the totals (each read waits for the
/// GPU, so this is rare).
const PENDING_MAX: usize = 4096;

/// Per-op GPU time, when `DLM_CUDA_PROFILE=1`.
pub(crate) struct Profiler {
    on: bool,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    /// Queued ops not yet read: name, start, end.
    pending: Vec<(String, CudaEvent, CudaEvent)>,
    /// Name → (milliseconds, calls).
    totals: HashMap<String, (f64, u64)>,
}

/// Records the end event of one op when dropped.
pub(crate) struct Span<'a> {
    prof: &'a Profiler,
    stream: &'a Arc<CudaStream>,
    name: String,
    start: Option<CudaEvent>,
}

impl Profiler {
    /// On when `DLM_CUDA_PROFILE=1`.
    pub(crate) fn from_env() -> Self {
        Profiler {
            on: std::env::var("DLM_CUDA_PROFILE").as_deref() == Ok("1"),
            state: Mutex::new(State::default()),
        }
    }

    /// Start timing one op named by `name` (called only when on).
    pub(crate) fn span<'a>(
        &'a self,
        stream: &'a Arc<CudaStream>,
        name: impl FnOnce() -> String,
    ) -> Option<Span<'a>> {
        if !self.on {
            return None;
        }
        let start = event(stream.context())?;
        start.record(stream).ok()?;
        Some(Span {
            prof: self,
            stream,
            name: name(),
            start: Some(start),
        })
    }

    /// The totals so far as a table, slowest first (empty when off).
    pub(crate) fn report(&self) -> String {
        if !self.on {
            return String::new();
        }
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        fold(&mut st);
        let mut rows: Vec<_> = st.totals.iter().collect();
        rows.sort_by(|a, b| b.1.0.total_cmp(&a.1.0));
        let all: f64 = rows.iter().map(|r| r.1.0).sum();
        let mut s = format!("dlm-cuda profile: {all:.1} ms of GPU time in all ops\n");
        s.push_str("      total ms    calls    us/call  op\n");
        for (name, (ms, calls)) in rows {
            let per = ms * 1000.0 / (*calls).max(1) as f64;
            s.push_str(&format!("{ms:14.2} {calls:8} {per:10.1}  {name}\n"));
        }
        s
    }
}

impl Drop for Span<'_> {
    fn drop(&mut self) {
        let (Some(start), Some(end)) = (self.start.take(), event(self.stream.context())) else {
            return;
        };
        if end.record(self.stream).is_err() {
            return;
        }
        let mut st = self.prof.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pending
            .push((std::mem::take(&mut self.name), start, end));
        if st.pending.len() >= PENDING_MAX {
            fold(&mut st);
        }
    }
}

/// A timing event (`None` if the driver refuses one: the op is then not counted).
fn event(ctx: &Arc<CudaContext>) -> Option<CudaEvent> {
    ctx.new_event(Some(cudarc::driver::sys::CUevent_flags::CU_EVENT_DEFAULT))
        .ok()
}

/// Read the pending event pairs (waits for them) into the totals.
fn fold(st: &mut State) {
    for (name, start, end) in st.pending.drain(..) {
        if let Ok(ms) = start.elapsed_ms(&end) {
            let t = st.totals.entry(name).or_insert((0.0, 0));
            t.0 += f64::from(ms);
            t.1 += 1;
        }
    }
}
