//! Attention tile kernels: a block of [`ATTN_LANES`] query rows against a tile of key and value
//! rows, with the softmax carried online from tile to tile (flash-attention style).
//!
//! Layout: a block's queries are stored transposed, `qt` is `[head_dim, ATTN_LANES]` (lane i is
//! query i), so scores, softmax statistics and outputs are all computed with the queries in
//! vector lanes: one key value is broadcast against 16 queries, the max and sum over keys are
//! vertical (no horizontal reductions), and keys and values are read in place as rows
//! (`&[f32]` of at least `head_dim` values each), wherever they live. A tile's scores `s` are
//! `[keys.len(), ATTN_LANES]`; the block's output accumulator `ot` is `[head_dim, ATTN_LANES]`.
//!
//! One block over `n_keys` keys, tile by tile (`m = -inf`, `l = 0`, `ot = 0` to start):
//! `scores(qt, keys, s)`, `alpha = softmax(s, m, l)`, `accumulate(s, values, alpha, ot)`; at
//! the end query i's output is `ot[.., i] / l[i]`.
//!
//! The functions here are the scalar reference (and the scalar table's kernels): the fast
//! kernels compute the same sums in the same key and `head_dim` order, with FMA, and an `exp`
//! accurate to a few ulp.

/// Queries per block: the lanes of the tile kernels (two AVX2 vectors, four NEON vectors).
pub const ATTN_LANES: usize = 16;

/// `s[j][i] = Σ_d qt[d][i] · keys[j][d]` for every key j: `qt` is `[head_dim, ATTN_LANES]`
/// (`head_dim = qt.len() / ATTN_LANES`), every key row has at least `head_dim` values, `s` is
/// `[keys.len(), ATTN_LANES]`.
pub type ScoresKernel = fn(qt: &[f32], keys: &[&[f32]], s: &mut [f32]);

/// The online softmax step over one tile of scores `s` (`[n_keys, ATTN_LANES]`), per lane i:
/// `m' = max(m, max_j s[j][i])`, `s[j][i] = exp(s[j][i] - m')`,
/// `l = l · exp(m - m') + Σ_j s[j][i]`, `m = m'`. Returns `alpha[i] = exp(m - m')`, the factor
/// earlier accumulations must be scaled by (1 when the max did not move; 0 on the first tile,
/// where `m = -inf`). An empty tile changes nothing and returns 1.
pub type SoftmaxKernel =
    fn(s: &mut [f32], m: &mut [f32; ATTN_LANES], l: &mut [f32; ATTN_LANES]) -> [f32; ATTN_LANES];

/// `ot[d][i] = alpha[i] · ot[d][i] + Σ_j p[j][i] · values[j][d]`: `p` is `[values.len(),
/// ATTN_LANES]`, `ot` is `[head_dim, ATTN_LANES]`, every value row has at least `head_dim`
/// values.
pub type AccumulateKernel =
    fn(p: &[f32], values: &[&[f32]], alpha: &[f32; ATTN_LANES], ot: &mut [f32]);

/// `s[j][i] = exp(s[j][i] - m[i]) · c[i]` over a tile `s` (`[_, ATTN_LANES]`): the final
/// probabilities of a tile once the block's max `m` and `c = 1 / l` are known (the probe path).
pub type ProbsKernel = fn(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]);

/// `qt[d][i] = rows[i][d] · scale`: a block's queries (`rows.len() <= ATTN_LANES`, each at
/// least `head_dim` long) into `qt` (`[head_dim, ATTN_LANES]`); lanes from `rows.len()` on are 0.
pub type LoadKernel = fn(rows: &[&[f32]], scale: f32, qt: &mut [f32]);

/// `out[i][d] = ot[d][i] · c[i]`: the first `out.len() / head_dim` lanes of a block's outputs
/// (`ot`, `[head_dim, ATTN_LANES]`) into rows (`out`, `[lanes, head_dim]`).
pub type StoreKernel = fn(ot: &[f32], c: &[f32; ATTN_LANES], out: &mut [f32]);

/// One instruction set's attention kernels.
#[derive(Debug, Clone, Copy)]
pub struct AttentionKernels {
    /// A block's queries, transposed and scaled.
    pub load: LoadKernel,
    /// Scores of a query block against a tile of keys.
    pub scores: ScoresKernel,
    /// Online softmax update of a tile of scores.
    pub softmax: SoftmaxKernel,
    /// Probabilities × values into the output accumulator.
    pub accumulate: AccumulateKernel,
    /// Final probabilities of a tile of scores.
    pub probs: ProbsKernel,
    /// A block's outputs, transposed back to rows and scaled.
    pub store: StoreKernel,
}

/// The scalar reference kernels.
pub const SCALAR_ATTENTION: AttentionKernels = AttentionKernels {
    load,
    scores,
    softmax,
    accumulate,
    probs,
    store,
};

/// Asks the CPU to start fetching `x`'s cache lines into L1, for data about to be read that the
/// hardware prefetchers cannot see coming (rows a page or more apart, as one head's keys are in
/// a `[tokens, kv_dim]` buffer). A hint only: it never faults and changes no result.
pub fn prefetch(x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    for line in x.chunks(16) {
        use std::arch::x86_64::{_MM_HINT_T0, _mm_prefetch};
        // SAFETY: a prefetch reads nothing architecturally and cannot fault; the address is
        // inside `x` (sse is part of the x86-64 baseline).
        unsafe { _mm_prefetch::<_MM_HINT_T0>(line.as_ptr().cast()) };
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = x;
}

/// `head_dim` of a transposed block `qt` or `ot`, checking it is whole lanes.
pub(crate) fn head_dim_of(t: &[f32], what: &str) -> usize {
    assert!(
        t.len().is_multiple_of(ATTN_LANES),
        "{what}: [head_dim, {ATTN_LANES}] block expected, got {} values",
        t.len()
    );
    t.len() / ATTN_LANES
}

/// Checks every row is at least `hd` long (so a kernel may read `row[..hd]` unchecked).
pub(crate) fn check_rows(rows: &[&[f32]], hd: usize, what: &str) {
    for r in rows {
        assert!(
            r.len() >= hd,
            "{what}: row of {} values, head_dim {hd}",
            r.len()
        );
    }
}

/// Scalar reference of [`LoadKernel`].
pub fn load(rows: &[&[f32]], scale: f32, qt: &mut [f32]) {
    let hd = head_dim_of(qt, "load");
    assert!(rows.len() <= ATTN_LANES, "load: {} rows", rows.len());
    check_rows(rows, hd, "load");
    load_lanes(rows, scale, qt, hd, 0..ATTN_LANES, 0..hd);
}

/// The scalar reference over lanes `lanes` and columns `cols` only (the fast kernels' edges).
pub(crate) fn load_lanes(
    rows: &[&[f32]],
    scale: f32,
    qt: &mut [f32],
    hd: usize,
    lanes: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    debug_assert_eq!(qt.len(), hd * ATTN_LANES);
    for i in lanes {
        for d in cols.clone() {
            qt[d * ATTN_LANES + i] = rows.get(i).map_or(0.0, |r| r[d] * scale);
        }
    }
}

/// Scalar reference of [`StoreKernel`].
pub fn store(ot: &[f32], c: &[f32; ATTN_LANES], out: &mut [f32]) {
    let hd = head_dim_of(ot, "store");
    if hd == 0 {
        return;
    }
    assert!(
        out.len().is_multiple_of(hd) && out.len() <= ot.len(),
        "store: out is not whole rows of at most {ATTN_LANES}"
    );
    store_lanes(ot, c, out, hd, 0..out.len() / hd, 0..hd);
}

/// The scalar reference over lanes `lanes` and columns `cols` only (the fast kernels' edges).
pub(crate) fn store_lanes(
    ot: &[f32],
    c: &[f32; ATTN_LANES],
    out: &mut [f32],
    hd: usize,
    lanes: std::ops::Range<usize>,
    cols: std::ops::Range<usize>,
) {
    for i in lanes {
        for d in cols.clone() {
            out[i * hd + d] = ot[d * ATTN_LANES + i] * c[i];
        }
    }
}

/// Scalar reference of [`ScoresKernel`].
pub fn scores(qt: &[f32], keys: &[&[f32]], s: &mut [f32]) {
    let hd = head_dim_of(qt, "scores");
    assert_eq!(s.len(), keys.len() * ATTN_LANES, "scores: s length");
    check_rows(keys, hd, "scores");
    for (sj, kj) in s.chunks_exact_mut(ATTN_LANES).zip(keys) {
        for (i, o) in sj.iter_mut().enumerate() {
            let mut acc = 0f32;
            for d in 0..hd {
                acc += qt[d * ATTN_LANES + i] * kj[d];
            }
            *o = acc;
        }
    }
}

/// Scalar reference of [`SoftmaxKernel`].
pub fn softmax(
    s: &mut [f32],
    m: &mut [f32; ATTN_LANES],
    l: &mut [f32; ATTN_LANES],
) -> [f32; ATTN_LANES] {
    assert!(
        s.len().is_multiple_of(ATTN_LANES),
        "softmax: s is not whole lanes"
    );
    if s.is_empty() {
        return [1.0; ATTN_LANES];
    }
    let mut alpha = [0f32; ATTN_LANES];
    for i in 0..ATTN_LANES {
        // f32::max ignores NaN; a NaN score still makes its row NaN through exp and the sum.
        let tile_max = s
            .iter()
            .skip(i)
            .step_by(ATTN_LANES)
            .fold(f32::NEG_INFINITY, |a, &x| a.max(x));
        let m_new = m[i].max(tile_max);
        let mut sum = 0f32;
        for x in s.iter_mut().skip(i).step_by(ATTN_LANES) {
            *x = (*x - m_new).exp();
            sum += *x;
        }
        alpha[i] = (m[i] - m_new).exp();
        l[i] = l[i] * alpha[i] + sum;
        m[i] = m_new;
    }
    alpha
}

/// Scalar reference of [`AccumulateKernel`].
pub fn accumulate(p: &[f32], values: &[&[f32]], alpha: &[f32; ATTN_LANES], ot: &mut [f32]) {
    let hd = head_dim_of(ot, "accumulate");
    assert_eq!(p.len(), values.len() * ATTN_LANES, "accumulate: p length");
    check_rows(values, hd, "accumulate");
    for (d, od) in ot.chunks_exact_mut(ATTN_LANES).enumerate() {
        for (i, o) in od.iter_mut().enumerate() {
            let mut acc = *o * alpha[i];
            for (j, vj) in values.iter().enumerate() {
                acc += p[j * ATTN_LANES + i] * vj[d];
            }
            *o = acc;
        }
    }
}

/// Scalar reference of [`ProbsKernel`].
pub fn probs(s: &mut [f32], m: &[f32; ATTN_LANES], c: &[f32; ATTN_LANES]) {
    assert!(
        s.len().is_multiple_of(ATTN_LANES),
        "probs: s is not whole lanes"
    );
    for sj in s.chunks_exact_mut(ATTN_LANES) {
        for i in 0..ATTN_LANES {
            sj[i] = (sj[i] - m[i]).exp() * c[i];
        }
    }
}
