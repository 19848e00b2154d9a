//! Writing one GEMM task's output tile `o` (`[nr, np]`: weight rows × tokens) into its columns
//! of the row-major output `y` (`[n, ld]`).
//!
//! Why a prefetch: a task owns a strip of `y`'s columns, so it writes a short run (`nr` values)
//! in every token's row, and those rows are `ld · 4` bytes apart (4 KiB at 1024 wide). A store
//! to a line not in L1 waits for the line, and at one 4 KiB stride every run falls into the
//! same few cache sets, where the hardware prefetchers do not follow, so those waits came one
//! after another: the copy was 5.2–5.6 % of a one-thread q4_0 full step in `perf`. Asking for
//! the lines of the run [`AHEAD`] tokens on while this one is written overlaps the waits
//! (3.6–4.2 %; docs/kernels-bench.md, seventh session). Further ahead, the lines asked for
//! are evicted from those few L1 sets before they are written; streaming stores measured
//! about the same and need 64-byte aligned runs, which `y` does not promise.

/// Tokens ahead of the one written whose lines are asked for.
const AHEAD: usize = 4;

/// `y[t * ld + r] = o[r * np + t]` for `t < count`, `r < nr`.
///
/// # Safety
/// `y` is valid for writes at every `t * ld + r` with `t < count`, `r < nr`, and no other
/// thread accesses those values during the call.
// Not inlined: called once per tile, and `perf` then shows the copy under its own name.
#[inline(never)]
pub(crate) unsafe fn scatter_tile(
    o: &[f32],
    np: usize,
    nr: usize,
    count: usize,
    y: *mut f32,
    ld: usize,
) {
    assert!(
        count <= np && o.len() >= nr * np,
        "scatter_tile: tile too short"
    );
    if nr == 0 {
        return;
    }
    for t in 0..count {
        if t + AHEAD < count {
            let run = (t + AHEAD) * ld;
            // One address per 64-byte line of the run, its last value included.
            for r in (0..nr).step_by(16).chain([nr - 1]) {
                // SAFETY: the address is inside the caller's range (t + AHEAD < count,
                // r < nr); a prefetch is only a hint and never faults.
                unsafe { prefetch(y.add(run + r)) };
            }
        }
        for r in 0..nr {
            // SAFETY: t < count and r < nr (the caller's contract).
            unsafe { *y.add(t * ld + r) = o[r * np + t] };
        }
    }
}

/// Asks for the line holding `p` in L1 (a hint; nothing where there is none).
#[inline(always)]
fn prefetch(p: *const f32) {
    #[cfg(target_arch = "x86_64")]
    // SAFETY: a prefetch reads nothing architecturally and cannot fault (sse is part of the
    // x86-64 baseline).
    unsafe {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        _mm_prefetch::<_MM_HINT_T0>(p.cast())
    };
    #[cfg(not(target_arch = "x86_64"))]
    let _ = p;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Token counts below, at and past the prefetch distance, row counts that are and are not
    /// multiples of a line, with NaN and infinities in the tile: `y` equals the plain transpose
    /// bit for bit, and the values around each run are untouched.
    #[test]
    fn scatter_tile_is_a_transpose() {
        for (nr, np, count, ld) in [
            (32, 64, 64, 1024),
            (32, 64, 61, 1024),
            (4, 8, 3, 4),
            (8, 16, 16, 12),
            (7, 9, 9, 9),
            (96, 24, 23, 100),
            (17, 8, 5, 17),
            (1, 1, 1, 1),
            (0, 8, 8, 4),
            (5, 8, 0, 8),
        ] {
            let mut o: Vec<f32> = (0..nr * np).map(|i| i as f32 * 0.5 - 3.0).collect();
            for (i, special) in [f32::NAN, f32::INFINITY, -0.0, f32::NEG_INFINITY]
                .into_iter()
                .enumerate()
            {
                if let Some(x) = o.get_mut(i * 7) {
                    *x = special;
                }
            }
            // One spare value after y, to see nothing is written past it.
            let mut y = vec![f32::MAX; count * ld + 1];
            // SAFETY: y holds count·ld values, t·ld + r < count·ld for r < nr <= ld.
            unsafe { scatter_tile(&o, np, nr, count, y.as_mut_ptr(), ld) };
            for t in 0..count {
                for c in 0..ld {
                    let got = y[t * ld + c];
                    let want = if c < nr { o[c * np + t] } else { f32::MAX };
                    assert_eq!(
                        got.to_bits(),
                        want.to_bits(),
                        "nr {nr} np {np} count {count} ld {ld}: t {t} c {c}"
                    );
                }
            }
            assert_eq!(
                y[count * ld],
                f32::MAX,
                "nr {nr} count {count}: wrote past y"
            );
        }
    }
}
