//! Bidirectional attention on the CPU, blocked like flash attention: blocks of 16 (query row,
//! head) pairs against tiles of 64 keys, with the softmax carried online from tile to tile. The
//! span's fresh keys/values and the cached ones are read where they are (the kernels take row
//! slices); nothing is gathered per step. A task that runs several query blocks of one kv head
//! first packs that head's keys and values into a per-thread buffer (see `Ctx::pack` for why),
//! reading each cached row once.
//!
//! Why online softmax over 64-key tiles rather than a whole row of scores at a time: a tile's
//! scores (`[64, 16]`, 4 KiB) and the block's output accumulator (`[head_dim, 16]`) stay in L1
//! whatever the canvas length (a 4096-token chat included), and the price, rescaling the
//! accumulator when a tile raises a row's max, is `head_dim · 16` multiplies per tile against
//! `64 · head_dim · 16` multiply-adds of the tile's p·v, under 2 %. Two passes over the keys
//! (max first) would compute every score twice.
//!
//! The arithmetic is in the `dlm-simd` tile kernels ([`dlm_simd::attn`]); this file arranges
//! the blocks, the key tiles and the threads. Summation order differs from a row-at-a-time
//! softmax (the sum of exponentials grows tile by tile and the division by it comes last), so
//! outputs agree with it to rounding, not bit for bit.

use super::CpuBackend;
use crate::backend::AttentionArgs;
use crate::model::LayerAttention;
use dlm_simd::{ATTN_LANES, AttentionKernels, Kernels};
use rayon::prelude::*;
use std::cell::RefCell;

/// Keys per tile.
const KEY_TILE: usize = 64;
/// Query rows per task of the probe pass.
const PROBE_ROWS: usize = 16;
/// Rows per task when the result is copied back to `[n, q_dim]`.
const COPY_ROWS: usize = 32;
/// Query blocks a task must run for its kv head's keys and values to be packed (see
/// [`Ctx::pack`]); with fewer they are read in place.
const PACK_MIN_BLOCKS: usize = 3;
/// Rows ahead of the copy whose lines the pack asks for (a few L3 latencies' worth of copying).
const PACK_AHEAD: usize = 8;

/// A block's working set, one per thread, reused across calls.
#[derive(Default)]
struct BlockScratch {
    /// `[head_dim, ATTN_LANES]` the block's queries, transposed and scaled by 1/√d.
    qt: Vec<f32>,
    /// `[head_dim, ATTN_LANES]` the block's unnormalized outputs.
    ot: Vec<f32>,
    /// `[KEY_TILE, ATTN_LANES]` a tile's scores, then its probabilities.
    s: Vec<f32>,
    /// `[n_keys, ATTN_LANES]` every tile's probabilities, kept when the mass is probed.
    kept: Vec<f32>,
    /// The running max after each kept tile.
    kept_m: Vec<[f32; ATTN_LANES]>,
}

/// The per-call outputs before they go to `[n, q_dim]`, kept on the calling thread.
#[derive(Default)]
struct Stage {
    /// `[n_kv_heads, n * group, head_dim]`: each kv head's (row, head) pairs, row-major.
    out: Vec<f32>,
    /// `[n_kv_heads, n * group]` each pair's softmax max and sum (read by the probe pass).
    ml: Vec<[f32; 2]>,
}

/// One kv head's keys and values, contiguous.
#[derive(Default)]
struct PackedKv {
    /// `[n_keys, head_dim]`
    k: Vec<f32>,
    /// `[n_keys, head_dim]`
    v: Vec<f32>,
}

thread_local! {
    static PACKED: RefCell<PackedKv> = RefCell::default();
    static BLOCK: RefCell<BlockScratch> = RefCell::default();
    static STAGE: RefCell<Stage> = RefCell::default();
}

/// Runs `f` on this thread's stage, or on a fresh one when it is in use (attention called
/// again on this thread while an outer call waits for its tasks).
fn with_stage<R>(f: impl FnOnce(&mut Stage) -> R) -> R {
    STAGE.with(|c| match c.try_borrow_mut() {
        Ok(mut s) => f(&mut s),
        Err(_) => f(&mut Stage::default()),
    })
}

/// What every block of one call reads.
struct Ctx<'a> {
    kern: &'static AttentionKernels,
    /// `[n, q_dim]`
    q: &'a [f32],
    /// The span rows whose queries are attended, or `None` for all `n`.
    q_rows: Option<&'a [usize]>,
    /// `[n, kv_dim]` the span's keys and values.
    k: &'a [f32],
    v: &'a [f32],
    /// `[cache len, kv_dim]` the layer's cached keys and values (empty without `outside`).
    ck: &'a [f32],
    cv: &'a [f32],
    outside: &'a [usize],
    n: usize,
    hd: usize,
    q_dim: usize,
    kv_dim: usize,
    /// Query heads per kv head.
    group: usize,
    scale: f32,
}

impl Ctx<'_> {
    fn n_keys(&self) -> usize {
        self.n + self.outside.len()
    }

    /// Key j of the kv head at column `off`: the span's fresh row, or the cached one, in place.
    fn key(&self, j: usize, off: usize) -> &[f32] {
        if j < self.n {
            &self.k[j * self.kv_dim + off..][..self.hd]
        } else {
            &self.ck[self.outside[j - self.n] * self.kv_dim + off..][..self.hd]
        }
    }

    fn value(&self, j: usize, off: usize) -> &[f32] {
        if j < self.n {
            &self.v[j * self.kv_dim + off..][..self.hd]
        } else {
            &self.cv[self.outside[j - self.n] * self.kv_dim + off..][..self.hd]
        }
    }

    /// `qt` (`[hd, ATTN_LANES]`) = the queries of pairs `p0..p0 + len` of kv head `g`, scaled
    /// by 1/√d; lanes past `len` are zero. Pair p is query row `p / group` (of `q_rows` when
    /// given), head `g * group + p % group`.
    fn fill_qt(&self, g: usize, p0: usize, len: usize, qt: &mut Vec<f32>) {
        let hd = self.hd;
        let mut rows: [&[f32]; ATTN_LANES] = [&[]; ATTN_LANES];
        for (lane, r) in rows.iter_mut().enumerate().take(len) {
            let p = p0 + lane;
            let h = g * self.group + p % self.group;
            let i = p / self.group;
            let row = self.q_rows.map_or(i, |r| r[i]);
            *r = &self.q[row * self.q_dim + h * hd..][..hd];
        }
        qt.resize(hd * ATTN_LANES, 0.0);
        (self.kern.load)(&rows[..len], self.scale, qt);
    }

    /// One block, pairs `p0..p0 + len` of kv head `g`, over every key: leaves the outputs
    /// unnormalized in `sc.ot` and returns each lane's max and sum of exponentials.
    /// The keys and values are read from `packed` (kv head `g`'s, from [`Ctx::pack`]) when
    /// given, else in place. With `keep`, every tile's probabilities and the running max after
    /// it are kept in `sc` (for [`fold_mass`]).
    fn block(
        &self,
        g: usize,
        p0: usize,
        len: usize,
        packed: Option<&PackedKv>,
        keep: bool,
        sc: &mut BlockScratch,
    ) -> ([f32; ATTN_LANES], [f32; ATTN_LANES]) {
        let (hd, off, n_keys) = (self.hd, g * self.hd, self.n_keys());
        self.fill_qt(g, p0, len, &mut sc.qt);
        sc.ot.clear();
        sc.ot.resize(hd * ATTN_LANES, 0.0);
        sc.s.resize(KEY_TILE * ATTN_LANES, 0.0);
        sc.kept.clear();
        sc.kept_m.clear();
        let mut m = [f32::NEG_INFINITY; ATTN_LANES];
        let mut l = [0f32; ATTN_LANES];
        let mut rows: [&[f32]; KEY_TILE] = [&[]; KEY_TILE];
        for t0 in (0..n_keys).step_by(KEY_TILE) {
            let nt = (n_keys - t0).min(KEY_TILE);
            let s = &mut sc.s[..nt * ATTN_LANES];
            for (r, j) in rows.iter_mut().zip(t0..t0 + nt) {
                *r = match packed {
                    Some(kv) => &kv.k[j * hd..][..hd],
                    None => self.key(j, off),
                };
            }
            (self.kern.scores)(&sc.qt, &rows[..nt], s);
            let alpha = (self.kern.softmax)(s, &mut m, &mut l);
            if keep {
                sc.kept.extend_from_slice(s);
                sc.kept_m.push(m);
            }
            for (r, j) in rows.iter_mut().zip(t0..t0 + nt) {
                *r = match packed {
                    Some(kv) => &kv.v[j * hd..][..hd],
                    None => self.value(j, off),
                };
            }
            (self.kern.accumulate)(s, &rows[..nt], &alpha, &mut sc.ot);
        }
        (m, l)
    }

    /// Packs kv head `g`'s keys and values into `kv` (`[n_keys, hd]` each).
    ///
    /// Why: read in place, a kv head's keys are `hd` values every `kv_dim` (4 KiB apart at
    /// the 168M shape), each on its own page where the hardware prefetchers do not follow,
    /// and so many rows at one 4 KiB stride alias into a few cache sets that a head's keys
    /// and values do not even stay in L2. Packed, they are read from L2 by every query block
    /// of the task; the copy costs about one in-place pass, so it pays from
    /// [`PACK_MIN_BLOCKS`] blocks a task on.
    fn pack(&self, g: usize, kv: &mut PackedKv) {
        let (off, n_keys) = (g * self.hd, self.n_keys());
        kv.k.clear();
        kv.v.clear();
        for j in 0..n_keys {
            // Rows PACK_AHEAD on are requested now: each is on its own page, so nothing else
            // would fetch them before the copy stalls on them.
            if j + PACK_AHEAD < n_keys {
                dlm_simd::attn::prefetch(self.key(j + PACK_AHEAD, off));
                dlm_simd::attn::prefetch(self.value(j + PACK_AHEAD, off));
            }
            kv.k.extend_from_slice(self.key(j, off));
            kv.v.extend_from_slice(self.value(j, off));
        }
    }

    /// Adds the head-averaged probabilities of pairs `p0..p0 + len` of kv head `g` over the
    /// keys `cols` to `hp` (`[rows, cols.len()]` from query row `r0`), given their max and sum
    /// from the first pass. The scores are recomputed by the same kernel on the same inputs
    /// (each score is its own chain over `head_dim`, whichever keys share its tile), so they
    /// are the first pass's exactly and every probability is at most 1.
    #[allow(clippy::too_many_arguments)]
    fn probe_block(
        &self,
        g: usize,
        p0: usize,
        len: usize,
        ml: &[[f32; 2]],
        inv_heads: f32,
        r0: usize,
        cols: &[usize],
        hp: &mut [f32],
        sc: &mut BlockScratch,
    ) {
        let (off, n_cols) = (g * self.hd, cols.len());
        self.fill_qt(g, p0, len, &mut sc.qt);
        sc.s.resize(KEY_TILE * ATTN_LANES, 0.0);
        let mut m = [0f32; ATTN_LANES];
        let mut c = [0f32; ATTN_LANES];
        for lane in 0..len {
            let [mx, sum] = ml[lane];
            m[lane] = mx;
            c[lane] = inv_heads / sum;
        }
        let mut rows: [&[f32]; KEY_TILE] = [&[]; KEY_TILE];
        for t0 in (0..n_cols).step_by(KEY_TILE) {
            let nt = (n_cols - t0).min(KEY_TILE);
            let s = &mut sc.s[..nt * ATTN_LANES];
            for (r, &j) in rows.iter_mut().zip(&cols[t0..t0 + nt]) {
                *r = self.key(j, off);
            }
            (self.kern.scores)(&sc.qt, &rows[..nt], s);
            (self.kern.probs)(s, &m, &c);
            for lane in 0..len {
                let i = (p0 + lane) / self.group - r0;
                let row = &mut hp[i * n_cols + t0..][..nt];
                for (x, sj) in row.iter_mut().zip(s.chunks_exact(ATTN_LANES)) {
                    *x += sj[lane];
                }
            }
        }
    }
}

/// out (`[n, q_dim]`) = softmax(q·kᵀ/√d)·v per head over the span's and the cached keys.
///
/// Tasks are (kv head, run of blocks of 16 (row, head) pairs), about four per thread; a block
/// walks every key tile once, and with GQA the heads of a group share each key and value load.
/// A task with [`PACK_MIN_BLOCKS`] blocks or more packs its kv head's keys and values once for
/// all of them. Results land in a per-thread stage (`[n_kv_heads, pairs, head_dim]`) and are
/// copied to `out` at the end, which lets heads and rows both be split across threads. A
/// probe's mass is summed from the tiles of this pass; its columns are a second pass over the
/// probed keys alone.
pub(super) fn attention(
    a: AttentionArgs<'_, CpuBackend>,
    out: &mut [f32],
) -> Option<LayerAttention> {
    attention_rows(a, None, out)
}

/// [`attention`] for the query rows `q_rows` only (span-relative, any order; all `n` when
/// `None`): out is `[q_rows.len(), q_dim]`, row i the output of query row `q_rows[i]`. Keys and
/// values are still the whole span's and `outside`. Probes need every query row, so none may
/// be asked for with `q_rows`.
pub(super) fn attention_rows(
    a: AttentionArgs<'_, CpuBackend>,
    q_rows: Option<&[usize]>,
    out: &mut [f32],
) -> Option<LayerAttention> {
    let sh = a.shape;
    let (hd, q_dim, kv_dim) = (sh.head_dim, sh.q_dim(), sh.kv_dim());
    let (n, n_kv) = (a.n, sh.n_kv_heads);
    let (ck, cv): (&[f32], &[f32]) = match a.cache {
        Some(c) if !a.outside.is_empty() => (&c.k[a.layer], &c.v[a.layer]),
        _ => (&[], &[]),
    };
    let group = sh.n_heads / n_kv;
    let n_q = q_rows.map_or(n, <[usize]>::len);
    if let Some(r) = q_rows {
        assert!(
            a.probe_keys.is_none() && !a.probe_mass,
            "attention_rows: a probe needs every query row"
        );
        assert!(
            r.iter().all(|&i| i < n),
            "attention_rows: a row past the span"
        );
    }
    let ctx = Ctx {
        kern: &Kernels::best().attention,
        q: &a.q[..n * q_dim],
        q_rows,
        k: &a.k[..n * kv_dim],
        v: &a.v[..n * kv_dim],
        ck,
        cv,
        outside: a.outside,
        n,
        hd,
        q_dim,
        kv_dim,
        group,
        scale: 1.0 / (hd as f32).sqrt(),
    };
    let n_keys = ctx.n_keys();
    let probing = a.probe_keys.is_some() || a.probe_mass;
    let pairs = n_q * group; // per kv head
    let gh = group * hd;

    let inv_heads = 1.0 / sh.n_heads as f32;
    // The probed keys' columns are recomputed in a second pass over those keys alone; the
    // mass is summed in the first pass from its kept tiles (see `fold_mass`).
    let cols: &[usize] = a.probe_keys.unwrap_or_default();
    let width = cols.len();
    let mass_keys = if a.probe_mass { n_keys } else { 0 };
    let (hp, mass) = with_stage(|st| {
        if n_q == 0 || hd == 0 {
            return (vec![0f32; n * width], vec![0f32; mass_keys]);
        }
        st.out.resize(n_q * q_dim, 0.0);
        st.ml.resize(n_q * sh.n_heads, [0.0; 2]);
        // A kv head's blocks are split into `splits` tasks only when there are too few kv heads
        // to keep the threads busy: the fewer tasks per head, the more blocks share one pack.
        let blocks = pairs.div_ceil(ATTN_LANES);
        let splits = (4 * rayon::current_num_threads())
            .div_ceil(n_kv)
            .clamp(1, blocks);
        let per = blocks.div_ceil(splits) * ATTN_LANES;
        // [n_kv_heads, splits, mass_keys] each task's share of the mass, summed in task order
        // below so the result does not depend on which thread ran what.
        // (One value per task without the mass: the zips below need a chunk for every task.)
        let part_len = mass_keys.max(1);
        let mut parts = vec![0f32; n_kv * splits * part_len];
        st.out
            .par_chunks_mut(pairs * hd)
            .zip(st.ml.par_chunks_mut(pairs))
            .zip(parts.par_chunks_mut(splits * part_len))
            .enumerate()
            .for_each(|(g, ((og, mlg), pg))| {
                og.par_chunks_mut(per * hd)
                    .zip(mlg.par_chunks_mut(per))
                    .zip(pg.par_chunks_mut(part_len))
                    .enumerate()
                    .for_each(|(c, ((oc, mlc), pm))| {
                        PACKED.with(|pk| {
                            let kv = &mut *pk.borrow_mut();
                            let pack = oc.len() >= PACK_MIN_BLOCKS * ATTN_LANES * hd;
                            if pack {
                                ctx.pack(g, kv);
                            }
                            BLOCK.with(|bc| {
                                let sc = &mut *bc.borrow_mut();
                                for (b, (ob, mlb)) in oc
                                    .chunks_mut(ATTN_LANES * hd)
                                    .zip(mlc.chunks_mut(ATTN_LANES))
                                    .enumerate()
                                {
                                    let p0 = c * per + b * ATTN_LANES;
                                    let kv = pack.then_some(&*kv);
                                    let len = mlb.len();
                                    let (m, l) = ctx.block(g, p0, len, kv, a.probe_mass, sc);
                                    (ctx.kern.store)(&sc.ot, &l.map(|x| 1.0 / x), ob);
                                    for (lane, ml) in mlb.iter_mut().enumerate() {
                                        *ml = [m[lane], l[lane]];
                                    }
                                    if a.probe_mass {
                                        fold_mass(sc, len, &m, &l, inv_heads, pm);
                                    }
                                }
                            })
                        })
                    })
            });
        // [n_kv_heads, n, gh] -> [n, n_kv_heads * gh], kv head by kv head within a task so the
        // stage is read front to back (a kv head's rows are a page or more from the next's).
        let stage = &st.out;
        out[..n_q * q_dim]
            .par_chunks_mut(COPY_ROWS * q_dim)
            .enumerate()
            .for_each(|(b, ob)| {
                let i0 = b * COPY_ROWS;
                for g in 0..n_kv {
                    let src = stage[(g * n_q + i0) * gh..].chunks_exact(gh);
                    for (dst, s) in ob.chunks_exact_mut(q_dim).zip(src) {
                        dst[g * gh..][..gh].copy_from_slice(s);
                    }
                }
            });
        let mut mass = vec![0f32; mass_keys];
        for part in parts.chunks_exact(part_len).filter(|_| mass_keys > 0) {
            for (m, x) in mass.iter_mut().zip(part) {
                *m += x;
            }
        }
        // [n, cols] the probed keys' head-averaged probabilities, a block of rows per task.
        let mut hp = vec![0f32; n * width];
        if width == 0 {
            return (hp, mass);
        }
        let ml = &st.ml;
        hp.par_chunks_mut(PROBE_ROWS * width)
            .enumerate()
            .for_each(|(b, hb)| {
                let r0 = b * PROBE_ROWS;
                let (pa, pb) = (r0 * group, (r0 + hb.len() / width) * group);
                BLOCK.with(|c| {
                    let sc = &mut *c.borrow_mut();
                    for g in 0..n_kv {
                        for p0 in (pa..pb).step_by(ATTN_LANES) {
                            let len = (pb - p0).min(ATTN_LANES);
                            let mlb = &ml[g * pairs + p0..][..len];
                            ctx.probe_block(g, p0, len, mlb, inv_heads, r0, cols, hb, sc);
                        }
                    }
                })
            });
        (hp, mass)
    });
    if !probing {
        return None;
    }
    let mut la = LayerAttention::default();
    if a.probe_keys.is_some() {
        la.columns = Vec::with_capacity(width * n);
        for c in 0..width {
            la.columns.extend((0..n).map(|i| hp[i * width + c]));
        }
    }
    la.mass = mass;
    Some(la)
}

/// Adds a block's share of the mass to `pm` (`[n_keys]`): for every key j,
/// `Σ_lane p_final[j][lane] / n_heads` over the block's `len` lanes, from the tiles its first
/// pass kept (`sc.kept`, each tile's probabilities against the running max `sc.kept_m` of
/// that tile). The final probability is the kept one times `exp(m_tile - m) / l` for the
/// lane's final max `m` and sum `l`; so the mass costs a multiply-add per score instead of
/// recomputing every score and its exponential (a second pass over the whole canvas, which
/// made an elastic refresh about a quarter dearer than a dual-cache pass on the demo models).
fn fold_mass(
    sc: &BlockScratch,
    len: usize,
    m: &[f32; ATTN_LANES],
    l: &[f32; ATTN_LANES],
    inv_heads: f32,
    pm: &mut [f32],
) {
    let mut t0 = 0;
    for mt in &sc.kept_m {
        let mut c = [0f32; ATTN_LANES];
        for lane in 0..len {
            c[lane] = (mt[lane] - m[lane]).exp() * (inv_heads / l[lane]);
        }
        let nt = (pm.len() - t0).min(KEY_TILE);
        let tile = &sc.kept[t0 * ATTN_LANES..(t0 + nt) * ATTN_LANES];
        for (x, pj) in pm[t0..t0 + nt]
            .iter_mut()
            .zip(tile.chunks_exact(ATTN_LANES))
        {
            *x += pj.iter().zip(&c).map(|(p, c)| p * c).sum::<f32>();
        }
        t0 += nt;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::cpu::CpuCache;
    use crate::backend::{AttentionShape, CacheShape};

    /// A small seeded generator (xorshift64*), values in [-1, 1).
    struct Rng(u64);

    impl Rng {
        fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
            (0..n)
                .map(|_| {
                    self.0 ^= self.0 >> 12;
                    self.0 ^= self.0 << 25;
                    self.0 ^= self.0 >> 27;
                    let u = (self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 40) as f32;
                    (u / (1u64 << 23) as f32 - 1.0) * scale
                })
                .collect()
        }
    }

    /// Output `[n, q_dim]` and head-averaged probabilities `[n, n_keys]` in f64, one row and
    /// head at a time, the keys gathered explicitly.
    fn reference(
        q: &[f32],
        keys: &[Vec<f32>],
        values: &[Vec<f32>],
        n: usize,
        sh: AttentionShape,
    ) -> (Vec<f64>, Vec<f64>) {
        let (hd, q_dim) = (sh.head_dim, sh.q_dim());
        let group = sh.n_heads / sh.n_kv_heads;
        let n_keys = keys.len();
        let mut out = vec![0f64; n * q_dim];
        let mut hp = vec![0f64; n * n_keys];
        for i in 0..n {
            for h in 0..sh.n_heads {
                let off = (h / group) * hd;
                let qr = &q[i * q_dim + h * hd..][..hd];
                let s: Vec<f64> = keys
                    .iter()
                    .map(|k| {
                        let dot: f64 = (0..hd).map(|d| qr[d] as f64 * k[off + d] as f64).sum();
                        dot / (hd as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let sum: f64 = s.iter().map(|x| (x - max).exp()).sum();
                for (j, v) in values.iter().enumerate() {
                    let p = (s[j] - max).exp() / sum;
                    hp[i * n_keys + j] += p / sh.n_heads as f64;
                    for d in 0..hd {
                        out[i * q_dim + h * hd + d] += p * v[off + d] as f64;
                    }
                }
            }
        }
        (out, hp)
    }

    /// `attention_rows` on several row subsets (none, the last, every third backwards, a
    /// repeated row, all) against the rows of the whole call `out` (`[n, q_dim]`): equal bit
    /// for bit, since every (row, head) pair is a lane of its own in the kernels and walks the
    /// same key tiles whichever block it lands in.
    fn check_rows(
        args: AttentionArgs<'_, CpuBackend>,
        out: &[f32],
        n: usize,
        q_dim: usize,
        ctx: &str,
    ) {
        let subsets: [Vec<usize>; 5] = [
            vec![],
            vec![n - 1],
            (0..n).rev().step_by(3).collect(),
            vec![n / 2, 0, n / 2],
            (0..n).collect(),
        ];
        for rows in subsets {
            let a = AttentionArgs::<CpuBackend> { ..args };
            let mut got = vec![f32::NAN; rows.len() * q_dim + 1];
            assert!(attention_rows(a, Some(&rows), &mut got).is_none());
            for (i, &r) in rows.iter().enumerate() {
                let (g, w) = (&got[i * q_dim..][..q_dim], &out[r * q_dim..][..q_dim]);
                assert!(
                    g.iter().zip(w).all(|(x, y)| x.to_bits() == y.to_bits()),
                    "{ctx} rows {rows:?}: row {r}"
                );
            }
            assert!(
                got[rows.len() * q_dim].is_nan(),
                "{ctx}: wrote past the rows"
            );
        }
    }

    /// Rows of extreme queries (scores far past exp's range, zeros, a NaN row) through
    /// `attention_rows` against the whole call: the same bits, and a NaN stays in its row.
    #[test]
    fn attention_rows_matches_the_whole_call_on_extreme_queries() {
        let mut rng = Rng(0xbad);
        for (n_heads, n_kv_heads, head_dim, n) in [(4, 2, 8, 37), (16, 16, 64, 50), (3, 1, 5, 3)] {
            let sh = AttentionShape {
                n_heads,
                n_kv_heads,
                head_dim,
            };
            let (q_dim, kv_dim) = (sh.q_dim(), sh.kv_dim());
            let mut q = rng.vec(n * q_dim, 1e4);
            q[..q_dim].fill(0.0);
            q[(n - 1) * q_dim] = f32::NAN;
            let k = rng.vec(n * kv_dim, 30.0);
            let v = rng.vec(n * kv_dim, 1e30);
            let args = AttentionArgs::<CpuBackend> {
                q: &q,
                k: &k,
                v: &v,
                n,
                outside: &[],
                cache: None,
                layer: 0,
                shape: sh,
                probe_keys: None,
                probe_mass: false,
            };
            let mut out = vec![f32::NAN; n * q_dim];
            attention(AttentionArgs { ..args }, &mut out);
            let nan_rows: Vec<usize> = (0..n)
                .filter(|&i| out[i * q_dim..][..q_dim].iter().any(|x| x.is_nan()))
                .collect();
            assert_eq!(nan_rows, [n - 1], "shape {sh:?}: NaN rows");
            check_rows(args, &out, n, q_dim, &format!("extreme {sh:?}"));
        }
    }

    /// Blocked attention with a cache and the probe against the reference, over GQA shapes,
    /// odd head widths, row counts around the block size and key counts around the tile size.
    #[test]
    fn blocked_attention_matches_a_plain_softmax() {
        let mut rng = Rng(0x5eed);
        let shapes = [(4, 4, 8), (8, 2, 16), (6, 3, 7), (16, 16, 64), (4, 1, 33)];
        for (n_heads, n_kv_heads, head_dim) in shapes {
            let sh = AttentionShape {
                n_heads,
                n_kv_heads,
                head_dim,
            };
            let (q_dim, kv_dim) = (sh.q_dim(), sh.kv_dim());
            // Up to 40 rows a task has one or two blocks (keys read in place); at 70 and more
            // a kv head's task has several and packs its keys and values.
            for n in [1, 5, 16, 17, 40, 70] {
                for n_out in [0, 3, 70] {
                    let len = n_out * 2 + 1;
                    let outside: Vec<usize> = (0..n_out).map(|x| 2 * x + 1).collect();
                    let mut cache = CpuCache::new(CacheShape {
                        n_layers: 2,
                        len,
                        kv_dim,
                        hidden_dim: None,
                    })
                    .unwrap();
                    cache.k[1] = rng.vec(len * kv_dim, 2.0);
                    cache.v[1] = rng.vec(len * kv_dim, 1.0);
                    let q = rng.vec(n * q_dim, 2.0);
                    let k = rng.vec(n * kv_dim, 2.0);
                    let v = rng.vec(n * kv_dim, 1.0);
                    let row = |x: &[f32], r: usize| x[r * kv_dim..(r + 1) * kv_dim].to_vec();
                    let keys: Vec<Vec<f32>> = (0..n)
                        .map(|j| row(&k, j))
                        .chain(outside.iter().map(|&p| row(&cache.k[1], p)))
                        .collect();
                    let values: Vec<Vec<f32>> = (0..n)
                        .map(|j| row(&v, j))
                        .chain(outside.iter().map(|&p| row(&cache.v[1], p)))
                        .collect();
                    let n_keys = keys.len();
                    let (want, want_hp) = reference(&q, &keys, &values, n, sh);
                    let probe_keys = [0, n_keys / 2, n_keys - 1];
                    let args = |probe: bool| AttentionArgs::<CpuBackend> {
                        q: &q,
                        k: &k,
                        v: &v,
                        n,
                        outside: &outside,
                        cache: (n_out > 0).then_some(&cache),
                        layer: 1,
                        shape: sh,
                        probe_keys: probe.then_some(&probe_keys[..]),
                        probe_mass: probe,
                    };
                    let ctx = format!("shape {sh:?} n {n} outside {n_out}");
                    let mut out = vec![f32::NAN; n * q_dim];
                    assert!(attention(args(false), &mut out).is_none(), "{ctx}");
                    for (x, (g, w)) in out.iter().zip(&want).enumerate() {
                        assert!((*g as f64 - w).abs() < 2e-5, "{ctx} out {x}: {g} vs {w}");
                    }
                    let mut out2 = vec![f32::NAN; n * q_dim];
                    let la = attention(args(true), &mut out2).expect("probed");
                    assert_eq!(out, out2, "{ctx}: the probe changes the outputs");
                    assert_eq!(la.columns.len(), probe_keys.len() * n, "{ctx}");
                    for (c, &j) in probe_keys.iter().enumerate() {
                        for i in 0..n {
                            let (g, w) = (la.columns[c * n + i], want_hp[i * n_keys + j]);
                            assert!((g as f64 - w).abs() < 1e-6, "{ctx} column {j} row {i}");
                        }
                    }
                    assert_eq!(la.mass.len(), n_keys, "{ctx}");
                    for j in 0..n_keys {
                        let w: f64 = (0..n).map(|i| want_hp[i * n_keys + j]).sum();
                        let g = la.mass[j];
                        assert!((g as f64 - w).abs() < 1e-5, "{ctx} mass {j}: {g} vs {w}");
                    }
                    // The columns alone (a window pass's probe) are computed over the probed
                    // keys only, and are the same bits as with the mass.
                    let cols_only = AttentionArgs::<CpuBackend> {
                        probe_mass: false,
                        ..args(true)
                    };
                    let mut out3 = vec![f32::NAN; n * q_dim];
                    let lc = attention(cols_only, &mut out3).expect("probed");
                    assert_eq!(out, out3, "{ctx}: the column probe changes the outputs");
                    assert!(lc.mass.is_empty(), "{ctx}: mass without asking");
                    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                    assert_eq!(bits(&lc.columns), bits(&la.columns), "{ctx}: columns alone");
                    check_rows(args(false), &out, n, q_dim, &ctx);
                }
            }
        }
    }
}

#[cfg(test)]
mod timing {
    use super::*;
    use crate::backend::cpu::CpuCache;
    use crate::backend::{AttentionShape, CacheShape};
    use std::time::Instant;

    /// Seconds of a fixed scalar loop (8 independent multiply-add chains): the machine's
    /// speed right now, to divide the timings by when it is shared.
    fn calibrate() -> f64 {
        let t = Instant::now();
        let mut a = [1f32; 8];
        let (x, y) = (
            std::hint::black_box(0.9999f32),
            std::hint::black_box(1e-4f32),
        );
        for _ in 0..100_000 {
            for v in a.iter_mut() {
                *v = *v * x + y;
            }
        }
        std::hint::black_box(a);
        t.elapsed().as_secs_f64()
    }

    /// Attention alone at the 168M shape (16 heads of 64): the whole canvas (269 rows) and a
    /// dual-cache block (32 rows against 237 cached keys), and the 296-row canvas of a 40-token prompt. `cargo test --release -p
    /// dlm-runtime --lib attention_timing -- --ignored --nocapture`
    #[test]
    #[ignore = "timing; run in release"]
    fn attention_timing() {
        let sh = AttentionShape {
            n_heads: 16,
            n_kv_heads: 16,
            head_dim: 64,
        };
        let (q_dim, kv_dim) = (sh.q_dim(), sh.kv_dim());
        let len = 269;
        let mut cache = CpuCache::new(CacheShape {
            n_layers: 1,
            len,
            kv_dim,
            hidden_dim: None,
        })
        .unwrap();
        let fill = |x: &mut Vec<f32>| {
            for (i, v) in x.iter_mut().enumerate() {
                *v = ((i * 7919) % 1000) as f32 / 500.0 - 1.0;
            }
        };
        fill(&mut cache.k[0]);
        fill(&mut cache.v[0]);
        for (n, n_out) in [(269, 0), (296, 0), (32, 237)] {
            let mut q = vec![0f32; n * q_dim];
            let mut k = vec![0f32; n * kv_dim];
            fill(&mut q);
            fill(&mut k);
            let v = k.clone();
            let outside: Vec<usize> = (n..n + n_out).collect();
            let mut out = vec![0f32; n * q_dim];
            let flop = 4.0 * (n * (n + n_out) * q_dim) as f64;
            for threads in [1, 2] {
                let pool = rayon::ThreadPoolBuilder::new()
                    .num_threads(threads)
                    .build()
                    .unwrap();
                // Min and median over short calls: on a shared machine the min is the call
                // that ran undisturbed.
                let mut cal = f64::MAX;
                let mut t: Vec<f64> = (0..60)
                    .map(|_| {
                        cal = cal.min(calibrate());
                        let a = AttentionArgs::<CpuBackend> {
                            q: &q,
                            k: &k,
                            v: &v,
                            n,
                            outside: &outside,
                            cache: (n_out > 0).then_some(&cache),
                            layer: 0,
                            shape: sh,
                            probe_keys: None,
                            probe_mass: false,
                        };
                        let t0 = Instant::now();
                        pool.install(|| attention(a, &mut out));
                        t0.elapsed().as_secs_f64()
                    })
                    .collect();
                t.sort_by(f64::total_cmp);
                println!(
                    "n {n} keys {} threads {threads}: min {:.3} ms ({:.1} GFLOP/s), median {:.3} ms, min / calibration {:.3}",
                    n + n_out,
                    t[0] * 1e3,
                    flop / t[0] / 1e9,
                    t[t.len() / 2] * 1e3,
                    t[0] / cal
                );
            }
        }
    }
}
